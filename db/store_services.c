/*
 * Service rules (issue 14, migration 8): who may call which partition's
 * named service, allow or deny. One rule per (source, target, service);
 * both partitions on one host, since the agent of that host is the proxy
 * that connects a call. Every change creates a policy version noting that
 * host, in the change's transaction, as grants do.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_COLS "r.id, r.source, r.target, r.service, r.action, r.version"

static int check_rule(const struct svc_rule *r, struct parley_err *err)
{
	if (!r)
		return perr(err, -EINVAL, "service rule: missing");
	int rc = db_check_name_array("service rule source", r->source,
				     sizeof(r->source), err);
	if (rc == 0)
		rc = db_check_name_array("service rule target", r->target,
					 sizeof(r->target), err);
	if (rc == 0)
		rc = db_check_name_array("service rule service", r->service,
					 sizeof(r->service), err);
	if (rc == 0 && !strcmp(r->source, r->target))
		rc = perr(err, -EINVAL, "service rule: source and target are "
			  "both \"%s\"", r->source);
	return rc;
}

int db_rule_row(struct store *s, struct db_stmt *st, void *elem,
		struct parley_err *err)
{
	struct store_svc_rule *o = elem;
	memset(o, 0, sizeof(*o));
	o->id = (uint64_t)db_col_i64(st, 0);
	int rc = db_col_name(s, st, 1, o->r.source, sizeof(o->r.source), err);
	if (rc == 0)
		rc = db_col_name(s, st, 2, o->r.target, sizeof(o->r.target),
				 err);
	if (rc == 0)
		rc = db_col_name(s, st, 3, o->r.service, sizeof(o->r.service),
				 err);
	const char *a = db_col_str(st, 4);
	if (rc == 0 && strcmp(a, "allow") && strcmp(a, "deny"))
		rc = perr(err, -EBADMSG, "store %s: service rule %llu has "
			  "action \"%.16s\"", s->path,
			  (unsigned long long)o->id, a);
	o->r.allow = !strcmp(a, "allow");
	o->version = (uint64_t)db_col_i64(st, 5);
	return rc;
}

/* 1 and *o if the rule exists, 0 if not. */
static int load(struct store *s, struct db_stmt *st, struct store_svc_rule *o,
		struct parley_err *err)
{
	int rc = db_step(s, st, "get service rule", err);
	if (rc == 1) {
		int r = db_rule_row(s, st, o, err);
		rc = r < 0 ? r : 1;
	}
	db_reset(st);
	return rc;
}

static int load_triple(struct store *s, const struct svc_rule *r,
		       struct store_svc_rule *o, struct parley_err *err)
{
	static const char q[] = "SELECT " RULE_COLS " FROM svc_rules r "
				"WHERE r.source = ?1 AND r.target = ?2 "
				"AND r.service = ?3";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, r->source);
	db_bind_text(st, 2, r->target);
	db_bind_text(st, 3, r->service);
	return load(s, st, o, err);
}

static int load_id(struct store *s, uint64_t id, struct store_svc_rule *o,
		   struct parley_err *err)
{
	static const char q[] = "SELECT " RULE_COLS " FROM svc_rules r "
				"WHERE r.id = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)id);
	return load(s, st, o, err);
}

/* Both partitions exist and are on one host: *host gets it. */
static int rule_host(struct store *s, const struct svc_rule *r,
		     char host[STORE_NAME_MAX], struct parley_err *err)
{
	char th[STORE_NAME_MAX];
	int rc = db_need_partition(s, r->source, host, err);
	if (rc < 0)
		return db_prefix(err, rc, "service rule: source");
	rc = db_need_partition(s, r->target, th, err);
	if (rc < 0)
		return db_prefix(err, rc, "service rule: target");
	if (strcmp(host, th))
		return perr(err, -EINVAL, "service rule: source \"%s\" is on "
			    "host \"%s\", target \"%s\" on \"%s\": a call is "
			    "connected by one host's agent, so both must be on "
			    "one host", r->source, host, r->target, th);
	return 0;
}

/* A host's bundle carries all its rules: at most SVC_RULES_MAX (what
 * an agent takes in one bundle). */
static int host_room(struct store *s, const char *host,
		     struct parley_err *err)
{
	static const char q[] = "SELECT COUNT(*) FROM svc_rules r "
				"JOIN partitions p ON p.name = r.source "
				"WHERE p.host = ?1";
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_int(s, st, "count service rules", &n, err);
	if (rc == 0 && n >= SVC_RULES_MAX)
		rc = perr(err, -E2BIG, "host \"%s\" has %lld service rules, "
			  "at most %d", host, (long long)n, SVC_RULES_MAX);
	return rc;
}

static int write_rule(struct store *s, uint64_t id, const struct svc_rule *r,
		      uint64_t v, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO svc_rules "
		"(id, source, target, service, action, version) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
		"ON CONFLICT (id) DO UPDATE SET action = excluded.action, "
		"version = excluded.version";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)id);
	db_bind_text(st, 2, r->source);
	db_bind_text(st, 3, r->target);
	db_bind_text(st, 4, r->service);
	db_bind_text(st, 5, r->allow ? "allow" : "deny");
	db_bind_i64(st, 6, (int64_t)v);
	return db_run(s, st, "write service rule", err);
}

/* The next id, from a counter that only grows (under the write lock), so
 * an id is never given twice, even after its rule was deleted. */
static int next_id(struct store *s, uint64_t *id, struct parley_err *err)
{
	int rc = db_exec(s, "UPDATE svc_rule_seq SET last = last + 1", err);
	if (rc < 0)
		return rc;
	static const char q[] = "SELECT last FROM svc_rule_seq";
	struct db_stmt *st;
	int64_t n = 0;
	rc = db_prep(s, q, &st, err);
	if (rc == 0)
		rc = db_int(s, st, "service rule id", &n, err);
	*id = (uint64_t)n;
	return rc;
}

static int put(struct store *s, const struct svc_rule *r, uint64_t *id,
	       bool *created, uint64_t *v, struct parley_err *err)
{
	struct store_svc_rule old;
	char host[STORE_NAME_MAX], change[3 * STORE_NAME_MAX + 16];
	int had = load_triple(s, r, &old, err);
	if (had < 0)
		return had;
	*created = !had;
	*id = had ? old.id : 0;
	if (had && old.r.allow == r->allow)
		return db_policy_current(s, v, err);   /* nothing changes */
	int rc = rule_host(s, r, host, err);
	if (rc == 0 && !had)
		rc = host_room(s, host, err);
	if (rc == 0 && !had)
		rc = next_id(s, id, err);
	snprintf(change, sizeof(change), "service %s %s %s %s",
		 r->allow ? "allow" : "deny", r->source, r->target,
		 r->service);
	if (rc == 0)
		rc = db_policy_new_version(s, change, v, err);
	if (rc == 0)
		rc = write_rule(s, *id, r, *v, err);
	if (rc == -EEXIST)
		rc = perr(err, -EAGAIN, "service rule id %llu was taken by "
			  "another writer; retry", (unsigned long long)*id);
	if (rc == 0)
		rc = db_policy_note_host(s, *v, host, err);
	return rc;
}

int store_put_svc_rule(struct store *s, const struct svc_rule *r,
		       uint64_t *id, bool *created, uint64_t *version,
		       struct parley_err *err)
{
	uint64_t v = 0, i = 0;
	bool c = false;
	int rc = check_rule(r, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc == 0)
		rc = db_op_end(s, put(s, r, &i, &c, &v, err), err);
	if (id)
		*id = rc < 0 ? 0 : i;
	if (created)
		*created = rc == 0 && c;
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

/* ---- reads ---- */

int store_list_svc_rules(struct store *s, const char *host,
			 struct store_svc_rule **out, struct parley_err *err)
{
	static const char q_all[] = "SELECT " RULE_COLS " FROM svc_rules r "
				    "ORDER BY r.id";
	/* Both ends are on one host (rule_host): the source's says it. */
	static const char q_host[] = "SELECT " RULE_COLS " FROM svc_rules r "
				     "JOIN partitions p ON p.name = r.source "
				     "WHERE p.host = ?1 ORDER BY r.id";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_prep_host(s, host, q_all, q_host, &st, err);
	return rc < 0 ? rc : db_rows(s, st, "list service rules",
				     sizeof(**out), db_rule_row, NULL,
				     (void **)out, err);
}

int store_get_svc_rule(struct store *s, uint64_t id,
		       struct store_svc_rule *out, struct parley_err *err)
{
	int rc = load_id(s, id, out, err);
	if (rc == 0)
		rc = perr(err, -ENOENT, "service rule %llu: no such rule",
			  (unsigned long long)id);
	return rc < 0 ? rc : 0;
}

/* ---- delete ---- */

static int del(struct store *s, uint64_t id, const struct svc_rule *by,
	       uint64_t *v, struct parley_err *err)
{
	static const char q[] = "DELETE FROM svc_rules WHERE id = ?1";
	struct store_svc_rule old;
	char host[STORE_NAME_MAX], change[3 * STORE_NAME_MAX + 16];
	int rc = by ? load_triple(s, by, &old, err) : load_id(s, id, &old, err);
	if (rc == 0 && by)
		rc = perr(err, -ENOENT, "service rule %s -> %s \"%s\": no such "
			  "rule", by->source, by->target, by->service);
	else if (rc == 0)
		rc = perr(err, -ENOENT, "service rule %llu: no such rule",
			  (unsigned long long)id);
	if (rc < 0)
		return rc;
	rc = db_need_partition(s, old.r.source, host, err);
	snprintf(change, sizeof(change), "service remove %s %s %s",
		 old.r.source, old.r.target, old.r.service);
	if (rc == 0)
		rc = db_policy_new_version(s, change, v, err);
	if (rc == 0)
		rc = db_policy_note_host(s, *v, host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_i64(st, 1, (int64_t)old.id);
		rc = db_run(s, st, "delete service rule", err);
	}
	return rc;
}

static int del_op(struct store *s, uint64_t id, const struct svc_rule *by,
		  uint64_t *version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_op_begin(s, err);
	if (rc == 0)
		rc = db_op_end(s, del(s, id, by, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

int store_del_svc_rule(struct store *s, uint64_t id, uint64_t *version,
		       struct parley_err *err)
{
	if (id == 0 || id > INT64_MAX) {
		if (version)
			*version = 0;
		return perr(err, -EINVAL, "service rule id: %llu is not an id",
			    (unsigned long long)id);
	}
	return del_op(s, id, NULL, version, err);
}

int store_del_svc_rule_named(struct store *s, const struct svc_rule *r,
			     uint64_t *version, struct parley_err *err)
{
	int rc = check_rule(r, err);
	if (rc < 0) {
		if (version)
			*version = 0;
		return rc;
	}
	return del_op(s, 0, r, version, err);
}
