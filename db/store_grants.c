/*
 * Grants and policy versions. Every change to the grants creates a policy
 * version and records the hosts it affects (the hosts of both endpoints,
 * before and after), in the same transaction as the change itself.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRANT_COLS "channel, endpoint_a, endpoint_b, direction, ring_bytes, " \
		   "require_integrity"

int db_grants_naming(struct store *s, const char *p, int64_t *n,
		     struct parley_err *err)
{
	static const char q[] = "SELECT COUNT(*) FROM grants "
				"WHERE endpoint_a = ?1 OR endpoint_b = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, p);
	return db_int(s, st, "count grants", n, err);
}

/* ---- versions ---- */

int db_policy_current(struct store *s, uint64_t *v, struct parley_err *err)
{
	static const char q[] =
		"SELECT COALESCE(MAX(version), 0) FROM policy_versions";
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_prep(s, q, &st, err);
	if (rc == 0)
		rc = db_int(s, st, "policy version", &n, err);
	*v = (uint64_t)n;
	return rc;
}

/* current + 1, inserted under its primary key: a second writer that took
 * the same number first makes this fail (-EAGAIN) rather than fork the
 * history. */
int db_policy_new_version(struct store *s, const char *change, uint64_t *v,
			  struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO policy_versions (version, time_ms, change) "
		"VALUES (?1, ?2, ?3)";
	struct db_stmt *st;
	int rc = db_policy_current(s, v, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	*v += 1;
	db_bind_i64(st, 1, (int64_t)*v);
	db_bind_i64(st, 2, db_now_ms());
	db_bind_text(st, 3, change);
	rc = db_run(s, st, "new policy version", err);
	if (rc == 0)
		rc = db_note_changed(s, err);
	if (rc == -EEXIST)
		rc = perr(err, -EAGAIN, "policy version %llu was taken by "
			  "another writer; retry", (unsigned long long)*v);
	return rc;
}

int db_policy_note_parts(struct store *s, uint64_t v, const char *a,
			 const char *b, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO policy_hosts (version, host) "
		"SELECT DISTINCT ?1, host FROM partitions "
		"WHERE name = ?2 OR name = ?3 ON CONFLICT DO NOTHING";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)v);
	db_bind_text(st, 2, a);
	db_bind_text(st, 3, b);
	return db_run(s, st, "note hosts", err);
}

int db_policy_note_grants_of(struct store *s, uint64_t v, const char *p,
			     struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO policy_hosts (version, host) "
		"SELECT DISTINCT ?1, pt.host FROM grants g JOIN partitions pt "
		"ON pt.name = g.endpoint_a OR pt.name = g.endpoint_b "
		"WHERE g.endpoint_a = ?2 OR g.endpoint_b = ?2 "
		"ON CONFLICT DO NOTHING";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)v);
	db_bind_text(st, 2, p);
	return db_run(s, st, "note hosts", err);
}

/* Create the version on the first actual change, once per operation. */
static int bump(struct store *s, uint64_t *v, const char *change,
		struct parley_err *err)
{
	return *v ? 0 : db_policy_new_version(s, change, v, err);
}

/* ---- rows ---- */

static int parse_dir(const char *d, enum grant_dir *out)
{
	for (int i = GRANT_A_TO_B; i <= GRANT_BOTH; i++)
		if (strcmp(d, grant_dir_name(i)) == 0) {
			*out = i;
			return 0;
		}
	return -EBADMSG;
}

int db_grant_row(struct store *s, struct db_stmt *st, struct grant *g,
		     struct parley_err *err)
{
	memset(g, 0, sizeof(*g));
	int rc = db_col_name(s, st, 0, g->channel, sizeof(g->channel), err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, g->a, sizeof(g->a), err);
	if (rc == 0)
		rc = db_col_name(s, st, 2, g->b, sizeof(g->b), err);
	if (rc == 0 && parse_dir(db_col_str(st, 3), &g->dir) < 0)
		rc = perr(err, -EBADMSG, "store %s: grant \"%s\" has direction "
			  "\"%.16s\"", s->path, g->channel, db_col_str(st, 3));
	g->ring_bytes = (uint64_t)db_col_i64(st, 4);
	g->require_integrity = db_col_i64(st, 5) != 0;
	return rc;
}

/* 1 and *g if the grant exists, 0 if not. */
static int grant_load(struct store *s, const char *channel, struct grant *g,
		      struct parley_err *err)
{
	static const char q[] = "SELECT " GRANT_COLS " FROM grants "
				"WHERE channel = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, channel);
	rc = db_step(s, st, "get grant", err);
	if (rc == 1) {
		int r = db_grant_row(s, st, g, err);
		rc = r < 0 ? r : 1;
	}
	db_reset(st);
	return rc;
}

static int grant_write(struct store *s, const struct grant *g, uint64_t v,
		       struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO grants (" GRANT_COLS ", version) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
		"ON CONFLICT (channel) DO UPDATE SET "
		"endpoint_a = excluded.endpoint_a, "
		"endpoint_b = excluded.endpoint_b, "
		"direction = excluded.direction, "
		"ring_bytes = excluded.ring_bytes, "
		"require_integrity = excluded.require_integrity, "
		"version = excluded.version";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, g->channel);
	db_bind_text(st, 2, g->a);
	db_bind_text(st, 3, g->b);
	db_bind_text(st, 4, grant_dir_name(g->dir));
	db_bind_i64(st, 5, (int64_t)g->ring_bytes);
	db_bind_i64(st, 6, g->require_integrity);
	db_bind_i64(st, 7, (int64_t)v);
	return db_run(s, st, "write grant", err);
}

static int grant_delete(struct store *s, const char *channel,
			struct parley_err *err)
{
	static const char q[] = "DELETE FROM grants WHERE channel = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, channel);
	return db_run(s, st, "delete grant", err);
}

static bool grant_same(const struct grant *x, const struct grant *y)
{
	return strcmp(x->a, y->a) == 0 && strcmp(x->b, y->b) == 0 &&
	       x->dir == y->dir && x->ring_bytes == y->ring_bytes &&
	       x->require_integrity == y->require_integrity;
}

static int need_endpoints(struct store *s, const struct grant *g,
			  struct parley_err *err)
{
	int rc = db_need_partition(s, g->a, NULL, err);
	if (rc < 0)
		return db_prefix(err, rc, "grant \"%s\": endpoint_a",
				 g->channel);
	rc = db_need_partition(s, g->b, NULL, err);
	if (rc < 0)
		return db_prefix(err, rc, "grant \"%s\": endpoint_b",
				 g->channel);
	return 0;
}

/* Bring grant g->channel to *g (NULL: remove `channel`), creating version
 * *v if anything changes, and noting the hosts before and after. */
static int grant_apply(struct store *s, const char *channel,
		       const struct grant *g, uint64_t *v,
		       struct parley_err *err)
{
	struct grant old;
	char change[STORE_NAME_MAX + 16];
	int had = grant_load(s, channel, &old, err);
	if (had < 0 || (had && g && grant_same(&old, g)) || (!had && !g))
		return had < 0 ? had : 0;
	int rc = g ? need_endpoints(s, g, err) : 0;
	snprintf(change, sizeof(change), "%s %s", !g ? "remove" :
		 had ? "update" : "add", channel);
	if (rc == 0)
		rc = bump(s, v, change, err);
	if (rc == 0 && had)
		rc = db_policy_note_parts(s, *v, old.a, old.b, err);
	if (rc == 0)
		rc = g ? grant_write(s, g, *v, err) : grant_delete(s, channel,
								  err);
	if (rc == 0 && g)
		rc = db_policy_note_parts(s, *v, g->a, g->b, err);
	return rc;
}

/* ---- add, update, remove, replace ---- */

enum grant_op { OP_ADD, OP_UPDATE, OP_REMOVE };

static int grant_op(struct store *s, enum grant_op op, const char *channel,
		    const struct grant *g, uint64_t *v, struct parley_err *err)
{
	struct grant old;
	int had = grant_load(s, channel, &old, err);
	if (had < 0)
		return had;
	if (op == OP_ADD && had)
		return perr(err, -EEXIST, "grant \"%s\" exists", channel);
	if (op != OP_ADD && !had)
		return perr(err, -ENOENT, "grant \"%s\": no such grant",
			    channel);
	int rc = grant_apply(s, channel, op == OP_REMOVE ? NULL : g, v, err);
	if (rc == 0 && !*v)
		rc = db_policy_current(s, v, err);
	return rc;
}

static int grant_change(struct store *s, enum grant_op op, const char *channel,
			const struct grant *g, uint64_t *version,
			struct parley_err *err)
{
	uint64_t v = 0;
	int rc = op != OP_REMOVE ? db_check_grant(g, err)
				 : db_check_name("grant channel", channel, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, grant_op(s, op, channel, g, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

int store_grant_add(struct store *s, const struct grant *g, uint64_t *version,
		    struct parley_err *err)
{
	return grant_change(s, OP_ADD, g ? g->channel : NULL, g, version, err);
}

int store_grant_update(struct store *s, const struct grant *g,
		       uint64_t *version, struct parley_err *err)
{
	return grant_change(s, OP_UPDATE, g ? g->channel : NULL, g, version,
			    err);
}

int store_grant_remove(struct store *s, const char *channel,
		       uint64_t *version, struct parley_err *err)
{
	return grant_change(s, OP_REMOVE, channel, NULL, version, err);
}

/* ---- lists ---- */

static int grants_query(struct store *s, struct db_stmt *st,
			struct grant_set *out, struct parley_err *err)
{
	unsigned cap = 0;
	int rc;
	while ((rc = db_step(s, st, "list grants", err)) == 1) {
		if (out->n == cap) {
			cap = cap ? cap * 2 : 16;
			void *p = realloc(out->g, cap * sizeof(*out->g));
			if (!p) {
				rc = perr(err, -ENOMEM, "store: out of memory");
				break;
			}
			out->g = p;
		}
		if ((rc = db_grant_row(s, st, &out->g[out->n++], err)) < 0)
			break;
	}
	db_reset(st);
	if (rc < 0)
		grant_set_free(out);
	return rc;
}

static int grants_all(struct store *s, struct grant_set *out,
		      struct parley_err *err)
{
	static const char q[] = "SELECT " GRANT_COLS " FROM grants "
				"ORDER BY channel";
	struct db_stmt *st;
	memset(out, 0, sizeof(*out));
	int rc = db_prep(s, q, &st, err);
	return rc < 0 ? rc : grants_query(s, st, out, err);
}

int store_grant_list(struct store *s, struct grant_set *out,
		     struct parley_err *err)
{
	return grants_all(s, out, err);
}

int store_grant_get(struct store *s, const char *channel, struct grant *out,
		    struct parley_err *err)
{
	int rc = db_check_name("grant channel", channel, err);
	if (rc == 0)
		rc = grant_load(s, channel, out, err);
	if (rc == 0)
		rc = perr(err, -ENOENT, "grant \"%s\": no such grant",
			  channel);
	return rc < 0 ? rc : 0;
}

static int for_host(struct store *s, const char *host, struct grant_set *out,
		    struct parley_err *err)
{
	static const char q[] =
		/* Two indexed joins rather than one OR over both ends: the
		 * OR walks every grant (6.5 ms at 10,000 hosts, on every
		 * agent's hello), the union 0.008 ms. */
		"SELECT g.channel, g.endpoint_a, g.endpoint_b, g.direction, "
		"g.ring_bytes, g.require_integrity FROM grants g "
		"JOIN partitions pa ON pa.name = g.endpoint_a "
		"WHERE pa.host = ?1 "
		"UNION "
		"SELECT g.channel, g.endpoint_a, g.endpoint_b, g.direction, "
		"g.ring_bytes, g.require_integrity FROM grants g "
		"JOIN partitions pb ON pb.name = g.endpoint_b "
		"WHERE pb.host = ?1 ORDER BY 1";
	struct db_stmt *st;
	int rc = db_need_host(s, host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	return grants_query(s, st, out, err);
}

int store_grants_for_host(struct store *s, const char *host,
			  struct grant_set *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	return db_rd_end(s, for_host(s, host, out, err), err);
}

/* ---- replace ---- */

static int check_set(const struct grant_set *set, struct parley_err *err)
{
	if (!set || (set->n && !set->g))
		return perr(err, -EINVAL, "grants: missing");
	if (set->n > GRANTS_MAX)
		return perr(err, -E2BIG, "%u grants, at most %d", set->n,
			    GRANTS_MAX);
	for (unsigned i = 0; i < set->n; i++) {
		int rc = db_check_grant(&set->g[i], err);
		if (rc < 0)
			return db_prefix(err, rc, "grants[%u]", i);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(set->g[i].channel, set->g[j].channel) == 0)
				return perr(err, -EEXIST, "grants[%u]: "
					    "channel \"%s\" twice", i,
					    set->g[i].channel);
	}
	return 0;
}

static bool in_set(const struct grant_set *set, const char *channel)
{
	for (unsigned i = 0; i < set->n; i++)
		if (strcmp(set->g[i].channel, channel) == 0)
			return true;
	return false;
}

static int replace(struct store *s, const struct grant_set *set, uint64_t *v,
		   struct parley_err *err)
{
	struct grant_set old;
	int rc = grants_all(s, &old, err);
	for (unsigned i = 0; rc == 0 && i < old.n; i++)
		if (!in_set(set, old.g[i].channel))
			rc = grant_apply(s, old.g[i].channel, NULL, v, err);
	grant_set_free(&old);
	for (unsigned i = 0; rc == 0 && i < set->n; i++)
		rc = grant_apply(s, set->g[i].channel, &set->g[i], v, err);
	if (rc == 0 && !*v)
		rc = db_policy_current(s, v, err);
	return rc;
}

int store_grant_replace(struct store *s, const struct grant_set *set,
			uint64_t *version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = check_set(set, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, replace(s, set, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}
