/* parleyctl token: API tokens (POST /v1/tokens). The token is shown once. */
#include "cli/ctl.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl token create --scope read|admin [--name N]\n"
	"\n"
	"Prints the new token; the server keeps only its hash.\n";

static int token_create(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scope", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *scope = NULL, *name = NULL;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o == 's')
			scope = optarg;
		else if (o == 'n')
			name = optarg;
		else
			return CTL_USAGE;
	}
	if (ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	if (!scope || (strcmp(scope, "read") && strcmp(scope, "admin")))
		return ctl_usage_error(usage, "--scope read or --scope admin");
	json_t *body = json_pack("{s:s}", "scope", scope), *r;
	if (name)
		json_object_set_new(body, "name", json_string(name));
	int rc = ctl_call(c, "POST", "/v1/tokens", body, &r);
	json_decref(body);
	if (rc)
		return rc;
	const char *tok = json_string_value(json_object_get(r, "token"));
	if (!tok) {
		json_decref(r);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "POST /v1/tokens: no "
				"token in the response");
	}
	if (c->json)
		return ctl_show_object(c, r);
	printf("%s\n", tok);
	json_decref(r);
	return CTL_OK;
}

static const struct ctl_verb verbs[] = {
	{ "create", token_create },
	{ NULL, NULL },
};

int cmd_token(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
