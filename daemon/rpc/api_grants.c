/*
 * API routes: grants (each change a policy version), baselines,
 * measurements, the audit trail.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/policy/diskkeys.h"
#include "common/grant.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "db/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *grant_json(const struct grant *g)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "channel", g->channel,
			 "endpoint_a", g->a, "endpoint_b", g->b, "direction",
			 grant_dir_name(g->dir), "ring_bytes",
			 (json_int_t)g->ring_bytes, "require_integrity",
			 g->require_integrity);
}

void api_grants_list(struct api_req *q)
{
	struct grant_set set = { 0 };
	struct parley_err err = { 0 };
	int rc = store_grant_list(q->a->store, &set, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	json_t *items = json_array();
	for (unsigned i = 0; i < set.n; i++)
		json_array_append_new(items, grant_json(&set.g[i]));
	grant_set_free(&set);
	api_reply(q, 200, api_page(items, NULL));
}

void api_grants_add(struct api_req *q)
{
	json_t *b = api_body(q, NULL);
	struct grant g;
	struct parley_err err = { 0 };
	uint64_t v = 0;
	if (!b)
		return;
	int rc = grant_from_json(b, &g, &err);
	if (rc == 0)
		api_subject(q, NULL, NULL, g.channel);
	if (rc == 0)
		rc = store_grant_add(q->a->store, &g, &v, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 201, json_pack("{s:o,s:I}", "grant",
					    grant_json(&g), "policy_version",
					    (json_int_t)v));
	json_decref(b);
}

void api_grants_delete(struct api_req *q)
{
	struct parley_err err = { 0 };
	uint64_t v = 0;
	if (!api_name_ok(q, "channel", q->arg))
		return;
	api_subject(q, NULL, NULL, q->arg);
	int rc = store_grant_remove(q->a->store, q->arg, &v, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, json_pack("{s:I}", "policy_version",
					    (json_int_t)v));
}

/* ---- baselines and measurements ---- */

static json_t *hex_json(const uint8_t d[STORE_DIGEST])
{
	char hex[2 * STORE_DIGEST + 1];
	pki_hex(d, STORE_DIGEST, hex);
	return json_string(hex);
}

static void digests_json(json_t *o, const struct store_digests *d)
{
	json_t *files = json_object(), *segs = json_array();
	for (unsigned i = 0; i < d->nfile; i++)
		json_object_set_new(files, d->file[i].name,
				    hex_json(d->file[i].sha256));
	for (unsigned i = 0; i < d->nseg; i++)
		json_array_append_new(segs, hex_json(d->seg[i]));
	json_object_set_new(o, "digest", hex_json(d->digest));
	json_object_set_new(o, "files", files);
	json_object_set_new(o, "segments", segs);
}

static json_t *baseline_json(const struct store_baseline *b)
{
	json_t *o = json_pack("{s:s,s:b,s:I}", "partition", b->partition,
			      "golden", b->golden, "time_ms",
			      (json_int_t)b->time_ms);
	digests_json(o, &b->d);
	return o;
}

/* Every partition's baseline, paging through the partitions. */
static int baselines_all(struct store *s, json_t *items,
			 struct parley_err *err)
{
	char after[STORE_NAME_MAX] = "";
	int n;
	do {
		struct store_partition *p = NULL;
		n = store_partition_list(s, NULL, after, STORE_LIST_MAX, &p,
					 err);
		for (int i = 0; i < n; i++) {
			struct store_baseline *b = malloc(sizeof(*b));
			if (b && store_baseline_get(s, p[i].name, b, NULL) == 0)
				json_array_append_new(items, baseline_json(b));
			free(b);
			memcpy(after, p[i].name, sizeof(after));
		}
		if (n > 0)
			store_partition_list_free(p, (unsigned)n);
	} while (n == STORE_LIST_MAX);
	return n < 0 ? n : 0;
}

void api_baselines_list(struct api_req *q)
{
	struct parley_err err = { 0 };
	json_t *items = json_array();
	int rc = baselines_all(q->a->store, items, &err);
	if (rc < 0) {
		json_decref(items);
		api_fail(q, rc, &err);
		return;
	}
	api_reply(q, 200, api_page(items, NULL));
}

void api_baselines_get(struct api_req *q)
{
	struct parley_err err = { 0 };
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	struct store_baseline *b = calloc(1, sizeof(*b));
	int rc = b ? store_baseline_get(q->a->store, q->arg, b, &err) : -ENOMEM;
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, baseline_json(b));
	free(b);
}

/* The digests of a PUT body, decoded into `raw` (borrowed by d). */
struct digests_buf {
	struct store_file_in file[STORE_FILES_MAX];
	struct store_blob seg[STORE_SEGS_MAX];
	uint8_t raw[1 + STORE_FILES_MAX + STORE_SEGS_MAX][STORE_DIGEST];
};

static int unhex(json_t *v, const char *lbl, uint8_t *out,
		 struct parley_err *err)
{
	const char *s = json_string_value(v);
	if (!s)
		return v ? jv_type_error(v, lbl, "a hex string", err)
			 : perr(err, -EINVAL, "%s: missing", lbl);
	if (strlen(s) != 2 * STORE_DIGEST)
		return perr(err, -EINVAL, "%s: expected %d hex digits", lbl,
			    2 * STORE_DIGEST);
	for (unsigned i = 0; i < STORE_DIGEST; i++) {
		char *end, two[3] = { s[2 * i], s[2 * i + 1], 0 };
		unsigned long x = strtoul(two, &end, 16);
		if (*end || two[0] == '+' || two[0] == '-' || two[0] == ' ')
			return perr(err, -EINVAL, "%s: not hex", lbl);
		out[i] = (uint8_t)x;
	}
	return 0;
}

static int files_in(json_t *files, struct digests_buf *b,
		    struct store_digests_in *d, struct parley_err *err)
{
	if (!files)
		return 0;
	if (!json_is_object(files))
		return jv_type_error(files, "files", "an object", err);
	if (json_object_size(files) > STORE_FILES_MAX)
		return perr(err, -EINVAL, "files: more than %d",
			    STORE_FILES_MAX);
	const char *k;
	json_t *v;
	json_object_foreach(files, k, v) {
		int rc = unhex(v, "files.<name>", b->raw[1 + d->nfile], err);
		if (rc < 0)
			return rc;
		b->file[d->nfile].name = k;
		b->file[d->nfile].sha256 = (struct store_blob){
			b->raw[1 + d->nfile], STORE_DIGEST };
		d->nfile++;
	}
	return 0;
}

static int segs_in(json_t *segs, struct digests_buf *b,
		   struct store_digests_in *d, struct parley_err *err)
{
	if (!segs)
		return 0;
	if (!json_is_array(segs))
		return jv_type_error(segs, "segments", "an array", err);
	if (json_array_size(segs) > STORE_SEGS_MAX)
		return perr(err, -EINVAL, "segments: more than %d",
			    STORE_SEGS_MAX);
	for (size_t i = 0; i < json_array_size(segs); i++, d->nseg++) {
		uint8_t *r = b->raw[1 + STORE_FILES_MAX + i];
		int rc = unhex(json_array_get(segs, i), "segments[]", r, err);
		if (rc < 0)
			return rc;
		b->seg[i] = (struct store_blob){ r, STORE_DIGEST };
	}
	return 0;
}

static int digests_in(json_t *body, struct digests_buf *b,
		      struct store_digests_in *d, struct parley_err *err)
{
	memset(d, 0, sizeof(*d));
	d->file = b->file;
	d->seg = b->seg;
	d->digest = (struct store_blob){ b->raw[0], STORE_DIGEST };
	int rc = unhex(json_object_get(body, "digest"), "digest", b->raw[0],
		       err);
	if (rc == 0)
		rc = files_in(json_object_get(body, "files"), b, d, err);
	if (rc == 0)
		rc = segs_in(json_object_get(body, "segments"), b, d, err);
	return rc;
}

void api_baselines_put(struct api_req *q)
{
	static const char *const known[] = { "files", "segments", "digest",
					     NULL };
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	api_subject(q, NULL, q->arg, NULL);
	json_t *body = api_body(q, known);
	if (!body)
		return;
	struct digests_buf *b = calloc(1, sizeof(*b));
	struct store_digests_in d;
	struct parley_err err = { 0 };
	int rc = b ? digests_in(body, b, &d, &err) : -ENOMEM;
	if (rc == 0)
		rc = store_baseline_put(q->a->store, q->arg, &d, true, NULL,
					&err);
	if (rc == 0)
		rc = diskkeys_refresh(q->a->store, q->arg, &err);
	free(b);
	json_decref(body);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_baselines_get(q);
}

void api_baselines_delete(struct api_req *q)
{
	struct parley_err err = { 0 };
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	api_subject(q, NULL, q->arg, NULL);
	int rc = store_baseline_delete(q->a->store, q->arg, NULL, &err);
	if (rc == 0)
		rc = diskkeys_refresh(q->a->store, q->arg, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 204, NULL);
}

void api_measurements_list(struct api_req *q)
{
	const char *host = api_query(q, "host");
	if (host && !api_name_ok(q, "host", host))
		return;
	struct store_measurement *m = NULL;
	struct parley_err err = { 0 };
	int n = store_measurement_latest(q->a->store, host, &m, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	json_t *items = json_array();
	for (int i = 0; i < n; i++) {
		json_t *o = json_pack("{s:s,s:s,s:I,s:I}", "host", m[i].host,
				      "partition", m[i].partition, "seq",
				      (json_int_t)m[i].seq, "time_ms",
				      (json_int_t)m[i].time_ms);
		digests_json(o, &m[i].d);
		json_array_append_new(items, o);
	}
	free(m);
	api_reply(q, 200, api_page(items, NULL));
}
