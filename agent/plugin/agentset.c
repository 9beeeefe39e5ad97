/* The agent's plugin set (agentset.h). */
#include "agent/plugin/agentset.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int plugin_set_for_agent(const char *given, struct plugin_set *s,
			 bool *have, struct parley_err *err)
{
	char dir[PATH_MAX] = "";
	*have = false;
	if (given) {
		snprintf(dir, sizeof(dir), "%s", given);
	} else if (geteuid() != 0) {
		/* An unprivileged agent's vmm cannot be given plugins
		 * (vmm_jail.h): the built-in devices, unless asked. */
		return 0;
	} else {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = 0;
			snprintf(dir, sizeof(dir), "%s/../plugins",
				 dirname(exe));
		}
		if (!dir[0] || !is_dir(dir))
			snprintf(dir, sizeof(dir), "%s", PLUGIN_DIR_DEFAULT);
		if (!is_dir(dir))
			return 0;
	}
	char man[PATH_MAX + 16];
	snprintf(man, sizeof(man), "%s/manifests", dir);
	int rc = plugin_set_load(man, dir, s, err);
	if (rc < 0)
		return perr_prefix(err, "plugins in %s", dir), rc;
	*have = true;
	return 0;
}

void plugin_audit_state(struct audit *a, const char *partition,
			const char *device, const char *plugin,
			const char *state, const char *detail)
{
	char d[400];
	snprintf(d, sizeof(d), "device %s (plugin %s): %s%s%s", device,
		 plugin, state, detail ? ": " : "", detail ? detail : "");
	struct audit_event e = { .event = "device_state",
				 .partition = partition, .detail = d };
	audit_emit(a, &e);
}
