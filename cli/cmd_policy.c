/* parleyctl policy: the current policy version and which hosts have
 * acknowledged it (GET /v1/policy). */
#include "cli/ctl.h"

#include <stdio.h>

static const char usage[] =
	"usage: parleyctl policy show\n"
	"\n"
	"The policy version, and per host the version pushed and acknowledged.\n";

static const struct ctl_col cols[] = {
	{ "HOST", "host" },
	{ "VERSION", "version" },
	{ "ACKED", "acked" },
	{ NULL, NULL },
};

static int policy_show(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (ctl_opt(argc, argv, opts, usage) != -1 ||
	    ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	json_t *p;
	int rc = ctl_call(c, "GET", "/v1/policy", NULL, &p);
	if (rc)
		return rc;
	json_t *v = json_object_get(p, "version");
	json_t *hosts = json_object_get(p, "hosts");
	if (!json_is_integer(v) || !json_is_array(hosts)) {
		json_decref(p);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "GET /v1/policy: no "
				"version or hosts");
	}
	if (c->json)
		return ctl_show_object(c, p);
	printf("policy version %" JSON_INTEGER_FORMAT "\n\n",
	       json_integer_value(v));
	ctl_show_list(c, json_pack("{s:O}", "items", hosts), cols);
	json_decref(p);
	return CTL_OK;
}

static const struct ctl_verb verbs[] = {
	{ "show", policy_show },
	{ NULL, NULL },
};

int cmd_policy(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
