/* parleyctl disk: encrypted disks' keys (issue 13). The daemon makes,
 * wraps and releases them; this shows their state (never a key) and asks
 * for a rekey: a new key version, the image re-encrypted offline by its
 * agent, the old version dropped once the agent says it is done. */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
	"usage: parleyctl disk keys PARTITION\n"
	"       parleyctl disk rekey PARTITION DISK\n"
	"\n"
	"keys: each encrypted disk's key version, whether it is released to\n"
	"the partition's host (or withheld, and why).\n"
	"rekey: the partition must be stopped; its agent re-encrypts the disk\n"
	"image from the old key to the new one (audit disk_key_rekeyed).\n";

static const struct ctl_col cols[] = {
	{ "DISK", "disk" },
	{ "KEY_VERSION", "key_version" },
	{ "VERSIONS_HELD", "versions_held" },
	{ "RELEASED", "released" },
	{ "WITHHELD", "withheld" },
	{ NULL, NULL },
};

static int disk_keys(struct ctl *c, int argc, char **argv)
{
	const char *part = ctl_one_arg(argc, argv, usage);
	if (!part)
		return CTL_USAGE;
	char *path = ctl_path("/v1/partitions", part, "/disk-keys");
	json_t *r;
	int rc = ctl_call(c, "GET", path, NULL, &r);
	free(path);
	return rc ? rc : ctl_show_list(c, r, cols);
}

static int disk_rekey(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1)
		if (o == '?')
			return CTL_USAGE;
	if (ctl_args(argc, argv, 2, usage))
		return CTL_USAGE;
	const char *part = argv[optind], *disk = argv[optind + 1];
	char *path = ctl_path("/v1/partitions", part, "/disk-keys/rekey");
	json_t *body = json_pack("{s:s}", "disk", disk), *r;
	int rc = ctl_call(c, "POST", path, body, &r);
	json_decref(body);
	free(path);
	if (rc)
		return rc;
	if (c->json)
		return ctl_show_object(c, r);
	printf("disk %s of %s: key version %lld; its agent re-encrypts the "
	       "image offline\n", disk, part,
	       (long long)json_integer_value(json_object_get(r,
							     "key_version")));
	json_decref(r);
	return CTL_OK;
}

static const struct ctl_verb verbs[] = {
	{ "keys", disk_keys },
	{ "rekey", disk_rekey },
	{ NULL, NULL },
};

int cmd_disk(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
