/* parleyctl baseline: integrity baselines per partition (/v1/baselines). */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl baseline list [--limit N]\n"
	"       parleyctl baseline show PARTITION\n"
	"       parleyctl baseline enroll PARTITION\n"
	"       parleyctl baseline set PARTITION --file NAME=HEX [--file ...]\n"
	"           [--segment HEX ...] [--digest HEX]\n"
	"\n"
	"enroll forgets the baseline, so the next measurement becomes it.\n"
	"set makes a golden baseline from the given hashes.\n";

static const struct ctl_col cols[] = {
	{ "PARTITION", "partition" },
	{ "GOLDEN", "golden" },
	{ "DIGEST", "digest" },
	{ "TIME_MS", "time_ms" },
	{ NULL, NULL },
};

static int base_list(struct ctl *c, int argc, char **argv)
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
	int rc = ctl_list(c, "/v1/baselines", "", limit, &list);
	return rc ? rc : ctl_show_list(c, list, cols);
}

static int base_show(struct ctl *c, int argc, char **argv)
{
	const char *p = ctl_one_arg(argc, argv, usage);
	if (!p)
		return CTL_USAGE;
	char *path = ctl_path("/v1/baselines", p, "");
	json_t *b;
	int rc = ctl_call(c, "GET", path, NULL, &b);
	free(path);
	if (!rc && !b)
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "show: empty response");
	return rc ? rc : ctl_show_object(c, b);
}

static int base_enroll(struct ctl *c, int argc, char **argv)
{
	const char *p = ctl_one_arg(argc, argv, usage);
	if (!p)
		return CTL_USAGE;
	char *path = ctl_path("/v1/baselines", p, "");
	int rc = ctl_call(c, "DELETE", path, NULL, NULL);
	free(path);
	if (!rc && !c->json)
		printf("baseline of %s cleared; the next measurement is "
		       "enrolled\n", p);
	return rc;
}

static bool is_hex(const char *s)
{
	size_t n = strlen(s);
	return n && n % 2 == 0 && strspn(s, "0123456789abcdefABCDEF") == n;
}

/* --file NAME=HEX into files; 0 or a usage error. */
static int add_file(json_t *files, const char *arg)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || !is_hex(eq + 1))
		return ctl_usage_error(usage, "--file: \"%s\" is not NAME=HEX",
				       arg);
	char *name = strndup(arg, (size_t)(eq - arg));
	json_object_set_new(files, name, json_string(eq + 1));
	free(name);
	return 0;
}

static int set_opt(json_t *body, int o, const char *arg)
{
	if (o == 'f')
		return add_file(json_object_get(body, "files"), arg);
	if (!is_hex(arg))
		return ctl_usage_error(usage, "\"%s\" is not hex", arg);
	if (o == 's')
		return json_array_append_new(json_object_get(body, "segments"),
					     json_string(arg)), 0;
	if (o == 'd')
		return json_object_set_new(body, "digest", json_string(arg)), 0;
	return CTL_USAGE;
}

static int base_set(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "segment", required_argument, NULL, 's' },
		{ "digest", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *body = json_pack("{s:{},s:[]}", "files", "segments"), *b;
	int o, rc = 0;
	while (!rc && (o = ctl_opt(argc, argv, opts, usage)) != -1)
		rc = set_opt(body, o, optarg);
	if (!rc && ctl_args(argc, argv, 1, usage))
		rc = CTL_USAGE;
	if (!rc && !json_object_size(json_object_get(body, "files")))
		rc = ctl_usage_error(usage, "set needs at least one --file");
	if (rc) {
		json_decref(body);
		return CTL_USAGE;
	}
	char *path = ctl_path("/v1/baselines", argv[optind], "");
	rc = ctl_call(c, "PUT", path, body, &b);
	free(path);
	json_decref(body);
	if (!rc && !b)
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "set: empty response");
	return rc ? rc : ctl_show_object(c, b);
}

static const struct ctl_verb verbs[] = {
	{ "list", base_list },
	{ "show", base_show },
	{ "enroll", base_enroll },
	{ "set", base_set },
	{ NULL, NULL },
};

int cmd_baseline(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
