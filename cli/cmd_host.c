/* parleyctl host: the hosts parleyd knows (GET/POST/DELETE /v1/hosts). */
#include "cli/ctl.h"
#include "common/fileio.h"

#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
	"usage: parleyctl host list [--limit N]\n"
	"       parleyctl host show NAME\n"
	"       parleyctl host add NAME [--libvirt-uri URI]\n"
	"       parleyctl host remove NAME\n"
	"       parleyctl host update NAME --package FILE\n"
	"       parleyctl host rollback NAME [--expect VERSION]\n"
	"\n"
	"add prints the host's one-time join token.\n"
	"update sends a signed agent package (parley-pkg) to the daemon, which\n"
	"checks it, stores it and hands it to the host's agent; host list and\n"
	"host show say how far it is (update_state, update.reason).\n"
	"rollback asks the host's agent to hand over to the version it keeps as\n"
	"previous (with --expect, only if previous holds VERSION); host list\n"
	"shows rollback-requested, then rollback-committed VERSION, or\n"
	"rollback-refused / rollback-failed (host show: rollback.reason).\n";

static const struct ctl_col cols[] = {
	{ "NAME", "name" },
	{ "LIBVIRT_URI", "libvirt_uri" },
	{ "CONNECTED", "connected" },
	{ "POLICY_ACKED", "policy_acked" },
	{ "AGENT_SEQ", "agent_seq" },
	{ "AGENT_VERSION", "agent_version" },
	{ "UPDATE", "update_state" },
	{ NULL, NULL },
};

static int host_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long limit = 0;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1)
		if (o != 'l' || ctl_limit(optarg, &limit, usage))
			return CTL_USAGE;
	if (ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	json_t *list;
	int rc = ctl_list(c, "/v1/hosts", "", limit, &list);
	return rc ? rc : ctl_show_list(c, list, cols);
}

static int host_show(struct ctl *c, int argc, char **argv)
{
	const char *name = ctl_one_arg(argc, argv, usage);
	if (!name)
		return CTL_USAGE;
	char *path = ctl_path("/v1/hosts", name, "");
	json_t *h;
	int rc = ctl_call(c, "GET", path, NULL, &h);
	free(path);
	return rc ? rc : ctl_show_object(c, h);
}

static int host_remove(struct ctl *c, int argc, char **argv)
{
	const char *name = ctl_one_arg(argc, argv, usage);
	if (!name)
		return CTL_USAGE;
	char *path = ctl_path("/v1/hosts", name, "");
	int rc = ctl_call(c, "DELETE", path, NULL, NULL);
	free(path);
	if (!rc && !c->json)
		printf("host %s removed\n", name);
	return rc;
}

static int host_added(struct ctl *c, json_t *r)
{
	json_t *h = json_object_get(r, "host");
	const char *tok = json_string_value(json_object_get(r, "join_token"));
	if (!json_is_object(h) || !tok) {
		json_decref(r);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "POST /v1/hosts: "
				"no host or join_token in the response");
	}
	if (c->json)
		return ctl_show_object(c, r);
	ctl_show_object(c, json_incref(h));
	printf("join_token:  %s\n", tok);
	json_t *exp = json_object_get(r, "expires_unix_ms");
	if (json_is_integer(exp))
		printf("expires_ms:  %" JSON_INTEGER_FORMAT "\n",
		       json_integer_value(exp));
	json_decref(r);
	return CTL_OK;
}

static int host_add(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "libvirt-uri", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o != 'u')
			return CTL_USAGE;
		uri = optarg;
	}
	if (ctl_args(argc, argv, 1, usage))
		return CTL_USAGE;
	json_t *body = json_pack("{s:s}", "name", argv[optind]), *r;
	if (uri)
		json_object_set_new(body, "libvirt_uri", json_string(uri));
	int rc = ctl_call(c, "POST", "/v1/hosts", body, &r);
	json_decref(body);
	return rc ? rc : host_added(c, r);
}

/* The package goes as it is (application/octet-stream): the daemon
 * checks it and refuses with the reason (API.md). */
static int host_update(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "package", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o != 'p')
			return CTL_USAGE;
		file = optarg;
	}
	if (ctl_args(argc, argv, 1, usage))
		return CTL_USAGE;
	if (!file)
		return ctl_usage_error(usage, "host update: --package FILE "
				       "is required");
	uint8_t *pkg = NULL;
	size_t len = 0;
	struct parley_err err = { 0 };
	/* The daemon's cap and a little more, so it is the one to say 413. */
	if (file_read_all(file, (64u << 20) + 1, &pkg, &len, &err) < 0)
		return ctl_fail(CTL_ERR, "PACKAGE", "%s", perr_msg(&err));
	char *path = ctl_path("/v1/hosts", argv[optind], "/update");
	json_t *r;
	int rc = ctl_call_bytes(c, "POST", path, pkg, len,
				"application/octet-stream", &r);
	free(path);
	free(pkg);
	if (rc)
		return rc;
	if (c->json)
		return ctl_show_object(c, r);
	const char *v = json_string_value(json_object_get(r, "version"));
	const char *sha = json_string_value(json_object_get(r, "sha256"));
	printf("host %s: update to %s requested (%" JSON_INTEGER_FORMAT
	       " bytes, sha256 %s)\n", argv[optind], v ? v : "?",
	       json_integer_value(json_object_get(r, "size")),
	       sha ? sha : "?");
	json_decref(r);
	return CTL_OK;
}

/* The answer comes later, from the agent: host list shows it. */
static int host_rollback(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "expect", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *expect = NULL;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o != 'e')
			return CTL_USAGE;
		expect = optarg;
	}
	if (ctl_args(argc, argv, 1, usage))
		return CTL_USAGE;
	json_t *body = expect ? json_pack("{s:s}", "expect_version", expect)
			      : json_object();
	char *path = ctl_path("/v1/hosts", argv[optind], "/rollback");
	json_t *r;
	int rc = ctl_call(c, "POST", path, body, &r);
	free(path);
	json_decref(body);
	if (rc)
		return rc;
	if (c->json)
		return ctl_show_object(c, r);
	const char *from = json_string_value(json_object_get(r,
							     "agent_version"));
	printf("host %s: rollback from %s requested (request %"
	       JSON_INTEGER_FORMAT ")\n", argv[optind], from ? from : "?",
	       json_integer_value(json_object_get(r, "request")));
	json_decref(r);
	return CTL_OK;
}

static const struct ctl_verb verbs[] = {
	{ "list", host_list },
	{ "show", host_show },
	{ "add", host_add },
	{ "remove", host_remove },
	{ "update", host_update },
	{ "rollback", host_rollback },
	{ NULL, NULL },
};

int cmd_host(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
