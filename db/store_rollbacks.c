/*
 * An operator's rollback of a host's agent through the daemon (issue 12,
 * migration 14; store_updates.h): one row per host, the rollback last
 * asked of it. A request replaces the row and takes the next request id
 * (the agent answers a request it already handled with that outcome
 * again: the id tells a repeat from a new request); an answer moves only
 * a row that still waits for that very request.
 */
#include "db/store_int.h"
#include "db/store_updates.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const rb_states[] = { "requested", "committed",
					 "refused", "failed", NULL };

static int check_rb_state(const char *v, struct parley_err *err)
{
	for (const char *const *k = rb_states; *k; k++)
		if (v && !strcmp(v, *k))
			return 0;
	return perr(err, -EINVAL, "rollback state \"%s\" unknown",
		    v ? v : "(null)");
}

static int check_ver(const char *what, const char *v, struct parley_err *err)
{
	return db_check_text(what, v ? v : "", v ? strlen(v) : 0,
			     STORE_AGENT_VERSION_MAX, err);
}

int store_rollback_request(struct store *s, const char *host,
			   const char *expect_version,
			   const char *from_version, uint64_t *request,
			   struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO host_rollbacks (host, request, state, "
		"expect_version, from_version, version, reason, requested_ms, "
		"updated_ms) VALUES (?1, 1, 'requested', ?2, ?3, '', '', ?4, "
		"?4) ON CONFLICT (host) DO UPDATE SET "
		"request = host_rollbacks.request + 1, state = 'requested', "
		"expect_version = ?2, from_version = ?3, version = '', "
		"reason = '', requested_ms = ?4, updated_ms = ?4";
	static const char q_id[] =
		"SELECT request FROM host_rollbacks WHERE host = ?1";
	*request = 0;
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = check_ver("expected version", expect_version, err);
	if (rc == 0)
		rc = check_ver("agent version", from_version, err);
	if (rc < 0)
		return rc;
	rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_need_host(s, host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, host);
		db_bind_text(st, 2, expect_version ? expect_version : "");
		db_bind_text(st, 3, from_version ? from_version : "");
		db_bind_i64(st, 4, db_now_ms());
		rc = db_run(s, st, "request rollback", err);
	}
	int64_t id = 0;
	if (rc == 0)
		rc = db_prep(s, q_id, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, host);
		rc = db_int(s, st, "rollback request id", &id, err);
	}
	if (rc == 0 && id < 1)
		rc = perr(err, -EBADMSG, "host \"%s\": rollback request id "
			  "%lld", host, (long long)id);
	if (rc == 0)
		*request = (uint64_t)id;
	return db_op_end(s, rc, err);
}

int store_rollback_get(struct store *s, const char *host,
		       struct store_rollback *out, struct parley_err *err)
{
	static const char q[] =
		"SELECT request, state, expect_version, from_version, version, "
		"reason, requested_ms, updated_ms FROM host_rollbacks "
		"WHERE host = ?1";
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("host name", host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_step(s, st, "get rollback", err);
	if (rc == 1) {
		snprintf(out->host, sizeof(out->host), "%s", host);
		int64_t id = db_col_i64(st, 0);
		out->request = id < 1 ? 0 : (uint64_t)id;
		rc = db_col_name(s, st, 1, out->state, sizeof(out->state),
				 err);
		if (rc == 0)
			rc = db_col_name(s, st, 2, out->expect_version,
					 sizeof(out->expect_version), err);
		if (rc == 0)
			rc = db_col_name(s, st, 3, out->from_version,
					 sizeof(out->from_version), err);
		if (rc == 0)
			rc = db_col_name(s, st, 4, out->version,
					 sizeof(out->version), err);
		if (rc == 0)
			rc = db_col_name(s, st, 5, out->reason,
					 sizeof(out->reason), err);
		out->requested_ms = db_col_i64(st, 6);
		out->updated_ms = db_col_i64(st, 7);
	} else if (rc == 0) {
		rc = perr(err, -ENOENT, "host \"%s\": no rollback", host);
	}
	db_reset(st);
	return rc;
}

int store_rollback_set(struct store *s, const char *host, uint64_t request,
		       const char *state, const char *version,
		       const char *reason, struct parley_err *err)
{
	static const char q[] =
		"UPDATE host_rollbacks SET state = ?3, version = ?4, "
		"reason = ?5, updated_ms = ?6 WHERE host = ?1 AND "
		"request = ?2 AND state = 'requested'";
	const char *r = reason ? reason : "";
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = check_rb_state(state, err);
	if (rc == 0 && !strcmp(state, "requested"))
		rc = perr(err, -EINVAL, "a rollback is answered, not asked "
			  "for, here");
	if (rc == 0)
		rc = check_ver("running version", version, err);
	if (rc == 0)
		rc = db_check_text("rollback reason", r, strlen(r),
				   STORE_UPD_REASON_MAX, err);
	if (rc == 0 && (request < 1 || request > INT64_MAX))
		rc = perr(err, -EINVAL, "rollback request %llu out of range",
			  (unsigned long long)request);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, (int64_t)request);
	db_bind_text(st, 3, state);
	db_bind_text(st, 4, version ? version : "");
	db_bind_text(st, 5, r);
	db_bind_i64(st, 6, db_now_ms());
	rc = db_run(s, st, "answer rollback", err);
	if (rc == 0 && db_changes(s) == 0)
		rc = perr(err, -ENOENT, "host \"%s\": no rollback %llu waiting "
			  "for its answer", host, (unsigned long long)request);
	return rc;
}
