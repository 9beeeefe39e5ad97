/* parleyctl grant: channels between partitions (/v1/grants). Every change
 * makes a new policy version, which the commands print. */
#include "cli/ctl.h"
#include "common/size.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl grant add --channel C --a A --b B\n"
	"           --direction both|a_to_b|b_to_a --ring-bytes SIZE "
	"[--no-integrity]\n"
	"       parleyctl grant remove CHANNEL\n"
	"       parleyctl grant list [--limit N]\n"
	"\n"
	"SIZE as 65536, 64K or 64KiB. Both ends must match their integrity\n"
	"baselines unless --no-integrity.\n";

static const struct ctl_col cols[] = {
	{ "CHANNEL", "channel" },
	{ "A", "endpoint_a" },
	{ "B", "endpoint_b" },
	{ "DIRECTION", "direction" },
	{ "RING_BYTES", "ring_bytes" },
	{ "INTEGRITY", "require_integrity" },
	{ NULL, NULL },
};

static int grant_list(struct ctl *c, int argc, char **argv)
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
	int rc = ctl_list(c, "/v1/grants", "", limit, &list);
	return rc ? rc : ctl_show_list(c, list, cols);
}

static int grant_remove(struct ctl *c, int argc, char **argv)
{
	const char *ch = ctl_one_arg(argc, argv, usage);
	if (!ch)
		return CTL_USAGE;
	char *path = ctl_path("/v1/grants", ch, "");
	json_t *r;
	int rc = ctl_call(c, "DELETE", path, NULL, &r);
	free(path);
	return rc ? rc : ctl_show_version(c, r, "grant removed");
}

struct add_args {
	const char *channel, *a, *b, *dir, *ring;
	bool no_integrity;
};

static int add_opts(int argc, char **argv, struct add_args *a)
{
	static const struct option opts[] = {
		{ "channel", required_argument, NULL, 'c' },
		{ "a", required_argument, NULL, 'a' },
		{ "b", required_argument, NULL, 'b' },
		{ "direction", required_argument, NULL, 'd' },
		{ "ring-bytes", required_argument, NULL, 'r' },
		{ "no-integrity", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		switch (o) {
		case 'c':
			a->channel = optarg;
			break;
		case 'a':
			a->a = optarg;
			break;
		case 'b':
			a->b = optarg;
			break;
		case 'd':
			a->dir = optarg;
			break;
		case 'r':
			a->ring = optarg;
			break;
		case 'n':
			a->no_integrity = true;
			break;
		default:
			return CTL_USAGE;
		}
	}
	return ctl_args(argc, argv, 0, usage);
}

static int add_check(const struct add_args *a, uint64_t *ring)
{
	if (!a->channel || !a->a || !a->b || !a->dir || !a->ring)
		return ctl_usage_error(usage, "add needs --channel, --a, --b, "
				       "--direction and --ring-bytes");
	if (strcmp(a->dir, "both") && strcmp(a->dir, "a_to_b") &&
	    strcmp(a->dir, "b_to_a"))
		return ctl_usage_error(usage, "--direction: \"%s\" is not both, "
				       "a_to_b or b_to_a", a->dir);
	if (parse_size(a->ring, ring) < 0 || *ring > (uint64_t)INT64_MAX)
		return ctl_usage_error(usage, "--ring-bytes: \"%s\" is not a "
				       "size", a->ring);
	return 0;
}

static int grant_add(struct ctl *c, int argc, char **argv)
{
	struct add_args a = { 0 };
	uint64_t ring;
	if (add_opts(argc, argv, &a) || add_check(&a, &ring))
		return CTL_USAGE;
	json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "channel",
				 a.channel, "endpoint_a", a.a, "endpoint_b", a.b,
				 "direction", a.dir, "ring_bytes",
				 (json_int_t)ring, "require_integrity",
				 !a.no_integrity);
	json_t *r;
	int rc = ctl_call(c, "POST", "/v1/grants", body, &r);
	json_decref(body);
	return rc ? rc : ctl_show_version(c, r, "grant added");
}

static const struct ctl_verb verbs[] = {
	{ "add", grant_add },
	{ "remove", grant_remove },
	{ "list", grant_list },
	{ NULL, NULL },
};

int cmd_grant(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
