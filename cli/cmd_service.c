/* parleyctl service: service rules (/v1/services, issue 14): may partition
 * SRC call service SVC offered by partition TGT. A call no rule names is
 * denied. Each change is a policy version. */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl service allow SOURCE TARGET SERVICE\n"
	"       parleyctl service deny SOURCE TARGET SERVICE\n"
	"       parleyctl service list [--host H] [--limit N]\n"
	"       parleyctl service remove ID | SOURCE TARGET SERVICE\n"
	"\n"
	"SOURCE calls SERVICE offered by TARGET; both on one host. allow/deny\n"
	"create the rule or change its action; a call no rule names is "
	"denied.\n";

static const struct ctl_col cols[] = {
	{ "ID", "id" },
	{ "SOURCE", "source" },
	{ "TARGET", "target" },
	{ "SERVICE", "service" },
	{ "ACTION", "action" },
	{ "VERSION", "version" },
	{ NULL, NULL },
};

static int service_list(struct ctl *c, int argc, char **argv)
{
	return ctl_list_by_host(c, argc, argv, "/v1/services", cols, usage);
}

static int put(struct ctl *c, int argc, char **argv, const char *action)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (ctl_opt(argc, argv, opts, usage) != -1 ||
	    ctl_args(argc, argv, 3, usage))
		return CTL_USAGE;
	char **a = argv + optind;
	json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "source", a[0], "target",
				 a[1], "service", a[2], "action", action);
	json_t *r;
	int rc = ctl_call(c, "POST", "/v1/services", body, &r);
	json_decref(body);
	if (rc)
		return rc;
	char what[256];
	snprintf(what, sizeof(what), "%.64s may %s%.64s of %.64s", a[0],
		 strcmp(action, "allow") ? "not call " : "call ", a[2], a[1]);
	return ctl_show_version(c, r, what);
}

static int service_allow(struct ctl *c, int argc, char **argv)
{
	return put(c, argc, argv, "allow");
}

static int service_deny(struct ctl *c, int argc, char **argv)
{
	return put(c, argc, argv, "deny");
}

/* "/v1/services/ID" or "/v1/services/SRC:TGT:SVC", each name
 * percent-encoded on its own (':' separates them). */
static char *rule_path(char **a, int n)
{
	if (n == 1)
		return ctl_path("/v1/services", a[0], "");
	char *p[3], *out;
	for (int i = 0; i < 3; i++)
		p[i] = ctl_path("", a[i], "");   /* "/<encoded>" */
	size_t len = strlen("/v1/services") + strlen(p[0]) + strlen(p[1]) +
		     strlen(p[2]) + 1;
	out = malloc(len);
	if (!out)
		abort();
	snprintf(out, len, "/v1/services%s:%s:%s", p[0], p[1] + 1, p[2] + 1);
	for (int i = 0; i < 3; i++)
		free(p[i]);
	return out;
}

static int service_remove(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (ctl_opt(argc, argv, opts, usage) != -1)
		return CTL_USAGE;
	int n = argc - optind;
	if (n != 1 && n != 3)
		return ctl_usage_error(usage, "remove takes an ID, or SOURCE "
				       "TARGET SERVICE");
	char *path = rule_path(argv + optind, n);
	json_t *r;
	int rc = ctl_call(c, "DELETE", path, NULL, &r);
	free(path);
	return rc ? rc : ctl_show_version(c, r, "service rule removed");
}

static const struct ctl_verb verbs[] = {
	{ "allow", service_allow },
	{ "deny", service_deny },
	{ "list", service_list },
	{ "remove", service_remove },
	{ NULL, NULL },
};

int cmd_service(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
