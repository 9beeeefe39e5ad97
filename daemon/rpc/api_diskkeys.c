/*
 * Disk keys through the API (API.md "Disk keys"): what the store holds
 * about a partition's keys -- never a key, wrapped or sealed -- and a
 * rekey (daemon/policy/diskkeys.h).
 */
#include "daemon/rpc/api_int.h"
#include "daemon/policy/diskkeys.h"

#include <errno.h>
#include <stdlib.h>

void api_diskkeys_list(struct api_req *q)
{
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	struct store_partition p = { 0 };
	struct store_disk_key *l = NULL;
	struct parley_err err = { 0 };
	int rc = store_partition_get(q->a->store, q->arg, &p, &err);
	store_partition_free(&p);
	int n = rc < 0 ? rc : store_disk_keys_list(q->a->store, NULL, q->arg,
						   &l, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	json_t *items = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(items, json_pack(
			"{s:s, s:I, s:i, s:b, s:s, s:I}",
			"disk", l[i].disk,
			"key_version", (json_int_t)l[i].version,
			"versions_held", (int)l[i].versions,
			"released", !l[i].withheld[0],
			"withheld", l[i].withheld,
			"created_ms", (json_int_t)l[i].created_ms));
	free(l);
	api_reply(q, 200, json_pack("{s:o}", "items", items));
}

void api_diskkeys_rekey(struct api_req *q)
{
	static const char *const known[] = { "disk", NULL };
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	api_subject(q, NULL, q->arg, NULL);
	json_t *b = api_body(q, known);
	if (!b)
		return;
	const char *disk = json_string_value(json_object_get(b, "disk"));
	struct parley_err err = { 0 };
	uint64_t v = 0;
	int rc = !disk ? perr(&err, -EINVAL, "disk: expected a string")
		       : diskkeys_rekey(q->a->store, q->a->keys, q->arg, disk,
					&v, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, json_pack("{s:s, s:s, s:I}", "partition",
					    q->arg, "disk", disk,
					    "key_version", (json_int_t)v));
	json_decref(b);
}
