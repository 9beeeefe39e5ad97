/* parleyctl health: GET /healthz (no token needed); exit 0 when the
 * server says "ok". */
#include "cli/ctl.h"

#include <string.h>

static const char usage[] =
	"usage: parleyctl health\n"
	"\n"
	"Asks /healthz: status, policy version, connected agents.\n";

int cmd_health(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (ctl_opt(argc, argv, opts, usage) != -1 ||
	    ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	json_t *h;
	int rc = ctl_call(c, "GET", "/healthz", NULL, &h);
	if (rc)
		return rc;
	const char *st = json_string_value(json_object_get(h, "status"));
	if (!st) {
		json_decref(h);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "GET /healthz: no status");
	}
	rc = strcmp(st, "ok") ? CTL_ERR : CTL_OK;
	ctl_show_object(c, h);
	return rc;
}
