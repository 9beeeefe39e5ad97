/*
 * Segment sets (issue 14, migration 7). A set is checked by the data set's
 * own parser (common/segset.c) and kept as its compacted JSON, with the
 * one host all its members are on and its members by name. Every change
 * creates a policy version noting that host, in the change's transaction,
 * as grants do.
 */
#include "db/store_int.h"
#include "common/jsonv.h"
#include "common/segset.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_segsets_free(struct store_segset *l, unsigned n)
{
	for (unsigned i = 0; l && i < n; i++)
		free(l[i].json);
	free(l);
}

void store_segset_clear(struct store_segset *one)
{
	if (one) {
		free(one->json);
		one->json = NULL;
	}
}

int db_policy_note_host(struct store *s, uint64_t v, const char *host,
			struct parley_err *err)
{
	static const char q[] = "INSERT INTO policy_hosts (version, host) "
				"VALUES (?1, ?2) ON CONFLICT DO NOTHING";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)v);
	db_bind_text(st, 2, host);
	return db_run(s, st, "note host", err);
}

/* The parser names the entry "segsets[0] (\"bus\")": a single set is
 * "segset (\"bus\")". */
static void rename_entry(struct parley_err *err)
{
	static const char pre[] = "segsets[0]";
	size_t n = sizeof(pre) - 1, keep = strlen("segset");
	if (err && !strncmp(err->msg, pre, n))
		memmove(err->msg + keep, err->msg + n,
			strlen(err->msg + n) + 1);
}

/* Parse one set's JSON text with the data set's checks; *text gets its
 * compacted form (malloc'd). */
static int parse_one(const char *json, size_t len, struct segset_def *def,
		     char **text, struct parley_err *err)
{
	*text = NULL;
	if (!json)
		return perr(err, -EINVAL, "segset: missing");
	if (len > STORE_SEGSET_JSON_MAX)
		return perr(err, -E2BIG, "segset: %zu bytes, at most %d", len,
			    STORE_SEGSET_JSON_MAX);
	json_error_t je;
	json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		/* jansson quotes the bytes near the error: quoted again. */
		jv_syntax_error(&je, err);
		perr_prefix(err, "segset: not JSON");
		return -EINVAL;
	}
	json_t *arr = json_array();
	struct segset_doc doc = { 0 };
	int rc = !arr || json_array_append(arr, o) < 0
			 ? perr(err, -ENOMEM, "out of memory")
			 : segset_doc_from_json(arr, NULL, &doc, err);
	/* The parser's -EEXIST is a name twice within the set (a member, a
	 * reader, a segment): the set itself is malformed. Here -EEXIST
	 * means only "the name is taken in the store" (409 through the API,
	 * where a bad body is 400). */
	if (rc == -EEXIST)
		rc = -EINVAL;
	if (rc == 0 && json_is_object(o))
		*def = doc.s[0];
	else if (rc == 0)
		rc = perr(err, -EINVAL, "segset: not an object");
	if (rc == 0 && !(*text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)))
		rc = perr(err, -ENOMEM, "out of memory");
	if (rc < 0)
		rename_entry(err);
	segset_doc_free(&doc);
	json_decref(arr);
	json_decref(o);
	return rc;
}

/* Every member exists and all are on one host: *host gets it. */
static int members_host(struct store *s, const struct segset_def *d,
			char host[STORE_NAME_MAX], struct parley_err *err)
{
	char h[STORE_NAME_MAX];
	for (unsigned i = 0; i < d->nmembers; i++) {
		int rc = db_need_partition(s, d->member[i], h, err);
		if (rc < 0)
			return db_prefix(err, rc, "segset (\"%s\").members[%u]",
					 d->name, i);
		if (i == 0)
			memcpy(host, h, STORE_NAME_MAX);
		else if (strcmp(h, host))
			return perr(err, -EINVAL, "segset (\"%s\").members[%u]: "
				    "\"%s\" is on host \"%s\", \"%s\" on \"%s\": "
				    "a set's segments are one host's memory, so "
				    "its members must all be on one host",
				    d->name, i, d->member[i], h, d->member[0],
				    host);
	}
	return 0;
}

static int count_q(struct store *s, const char *q, const char *a,
		   int64_t *n, struct parley_err *err)
{
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, a);
	return db_int(s, st, "count segsets", n, err);
}

/* The host's bundle carries all its sets: keep them within what one
 * bundle may hold. */
static int host_room(struct store *s, const char *host, size_t add,
		     struct parley_err *err)
{
	static const char q_n[] = "SELECT COUNT(*) FROM segsets WHERE host = ?1";
	static const char q_len[] = "SELECT COALESCE(SUM(LENGTH(set_json)), 0) "
				    "FROM segsets WHERE host = ?1";
	int64_t n, len;
	int rc = count_q(s, q_n, host, &n, err);
	if (rc == 0)
		rc = count_q(s, q_len, host, &len, err);
	if (rc == 0 && n + 1 > SEGSETS_MAX)
		rc = perr(err, -E2BIG, "host \"%s\" has %lld segment sets, at "
			  "most %d", host, (long long)n, SEGSETS_MAX);
	if (rc == 0 && (uint64_t)len + add > STORE_SEGSETS_HOST_JSON_MAX)
		rc = perr(err, -E2BIG, "host \"%s\": its segment sets would "
			  "take %llu bytes, at most %d", host,
			  (unsigned long long)((uint64_t)len + add),
			  STORE_SEGSETS_HOST_JSON_MAX);
	return rc;
}

static int insert(struct store *s, const struct segset_def *d,
		  const char *host, const char *text, uint64_t v,
		  struct parley_err *err)
{
	static const char q_set[] =
		"INSERT INTO segsets (name, host, set_json, version) "
		"VALUES (?1, ?2, ?3, ?4)";
	static const char q_mem[] =
		"INSERT INTO segset_members (segset, pos, partition) "
		"VALUES (?1, ?2, ?3)";
	struct db_stmt *st;
	int rc = db_prep(s, q_set, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, d->name);
	db_bind_text(st, 2, host);
	db_bind_text(st, 3, text);
	db_bind_i64(st, 4, (int64_t)v);
	rc = db_run(s, st, "add segset", err);
	for (unsigned i = 0; rc == 0 && i < d->nmembers; i++) {
		rc = db_prep(s, q_mem, &st, err);
		if (rc < 0)
			break;
		db_bind_text(st, 1, d->name);
		db_bind_i64(st, 2, i);
		db_bind_text(st, 3, d->member[i]);
		rc = db_run(s, st, "add segset member", err);
	}
	return rc;
}

static int put(struct store *s, const struct segset_def *d, const char *text,
	       uint64_t *v, struct parley_err *err)
{
	static const char q_has[] = "SELECT COUNT(*) FROM segsets "
				    "WHERE name = ?1";
	char host[STORE_NAME_MAX], change[STORE_NAME_MAX + 16];
	int64_t n;
	int rc = count_q(s, q_has, d->name, &n, err);
	if (rc == 0 && n)
		rc = perr(err, -EEXIST, "segset \"%s\" exists; remove it first",
			  d->name);
	if (rc == 0)
		rc = members_host(s, d, host, err);
	if (rc == 0)
		rc = host_room(s, host, strlen(text), err);
	snprintf(change, sizeof(change), "segset add %s", d->name);
	if (rc == 0)
		rc = db_policy_new_version(s, change, v, err);
	if (rc == 0)
		rc = insert(s, d, host, text, *v, err);
	if (rc == 0)
		rc = db_policy_note_host(s, *v, host, err);
	return rc;
}

int store_put_segset(struct store *s, const char *set_json, size_t len,
		     char *name, uint64_t *version,
		     struct parley_err *err)
{
	struct segset_def *d = calloc(1, sizeof(*d));
	char *text = NULL;
	uint64_t v = 0;
	int rc = d ? parse_one(set_json, len, d, &text, err)
		   : perr(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc == 0)
		rc = db_op_end(s, put(s, d, text, &v, err), err);
	if (rc == 0 && name)
		snprintf(name, STORE_NAME_MAX, "%s", d->name);
	if (version)
		*version = rc < 0 ? 0 : v;
	free(text);
	free(d);
	return rc;
}

/* ---- reads ---- */

#define SET_COLS "name, host, version, set_json"

int db_set_row(struct store *s, struct db_stmt *st, void *elem,
	       struct parley_err *err)
{
	struct store_segset *o = elem;
	memset(o, 0, sizeof(*o));
	int rc = db_col_name(s, st, 0, o->name, sizeof(o->name), err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, o->host, sizeof(o->host), err);
	o->version = (uint64_t)db_col_i64(st, 2);
	if (rc == 0 && !(o->json = strdup(db_col_str(st, 3))))
		rc = perr(err, -ENOMEM, "store: out of memory");
	return rc;
}

static void set_drop(void *elem)
{
	store_segset_clear(elem);
}

int store_list_segsets(struct store *s, const char *host,
		       struct store_segset **out, struct parley_err *err)
{
	static const char q_all[] = "SELECT " SET_COLS " FROM segsets "
				    "ORDER BY name";
	static const char q_host[] = "SELECT " SET_COLS " FROM segsets "
				     "WHERE host = ?1 ORDER BY name";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_prep_host(s, host, q_all, q_host, &st, err);
	return rc < 0 ? rc : db_rows(s, st, "list segsets", sizeof(**out),
				     db_set_row, set_drop, (void **)out, err);
}

static int get(struct store *s, const char *name, struct store_segset *out,
	       struct parley_err *err)
{
	static const char q[] = "SELECT " SET_COLS " FROM segsets "
				"WHERE name = ?1";
	struct db_stmt *st;
	memset(out, 0, sizeof(*out));
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_step(s, st, "get segset", err);
	if (rc == 1)
		rc = db_set_row(s, st, out, err);
	else if (rc == 0)
		rc = perr(err, -ENOENT, "segset \"%s\": no such set", name);
	db_reset(st);
	if (rc < 0)
		store_segset_clear(out);
	return rc;
}

int store_get_segset(struct store *s, const char *name,
		     struct store_segset *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("segset name", name, err);
	return rc < 0 ? rc : get(s, name, out, err);
}

/* ---- delete ---- */

static int del(struct store *s, const char *name, uint64_t *v,
	       struct parley_err *err)
{
	static const char q[] = "DELETE FROM segsets WHERE name = ?1";
	struct store_segset old;
	char change[STORE_NAME_MAX + 16];
	int rc = get(s, name, &old, err);
	snprintf(change, sizeof(change), "segset remove %s", name);
	if (rc == 0)
		rc = db_policy_new_version(s, change, v, err);
	if (rc == 0)
		rc = db_policy_note_host(s, *v, old.host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, name);
		rc = db_run(s, st, "delete segset", err);
	}
	store_segset_clear(&old);
	return rc;
}

int store_del_segset(struct store *s, const char *name, uint64_t *version,
		     struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_check_name("segset name", name, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc == 0)
		rc = db_op_end(s, del(s, name, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

/* ---- what names a partition ---- */

int db_policy_refs(struct store *s, const char *p, int64_t *sets,
		   int64_t *rules, struct parley_err *err)
{
	static const char q_sets[] = "SELECT COUNT(*) FROM segset_members "
				     "WHERE partition = ?1";
	static const char q_rules[] = "SELECT COUNT(*) FROM svc_rules "
				      "WHERE source = ?1 OR target = ?1";
	int rc = count_q(s, q_sets, p, sets, err);
	return rc < 0 ? rc : count_q(s, q_rules, p, rules, err);
}
