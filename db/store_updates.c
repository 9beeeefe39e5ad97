/*
 * Agent updates from the daemon (store_updates.h, migration 9). Package
 * bytes go in once, in parts of STORE_UPD_PART, and are read back a
 * chunk at a time from the parts that hold it: the daemon holds no whole
 * package in memory while it sends one, and a read costs the chunk, not
 * the package.
 */
#include "db/store_int.h"
#include "db/store_updates.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const states[] = { "pending", "receiving", "staged",
				      "committed", "failed", "refused",
				      NULL };

static int check_state(const char *v, struct parley_err *err)
{
	for (const char *const *k = states; *k; k++)
		if (v && !strcmp(v, *k))
			return 0;
	return perr(err, -EINVAL, "update state \"%s\" unknown",
		    v ? v : "(null)");
}

/* X.Y.Z: digits and two dots, as updpkg printed it. */
static int check_version(const char *v, struct parley_err *err)
{
	size_t len = v ? strlen(v) : 0, dots = 0;
	if (!len || len >= STORE_UPD_VERSION_MAX)
		return perr(err, -EINVAL, "package version: %zu bytes", len);
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '.')
			dots++;
		else if (v[i] < '0' || v[i] > '9')
			return perr(err, -EINVAL, "package version \"%s\" is "
				    "not X.Y.Z", v);
	}
	return dots == 2 ? 0 : perr(err, -EINVAL, "package version \"%s\" "
				    "is not X.Y.Z", v);
}

/* The bytes as parts 0..n-1 (inside the caller's operation). */
static int put_parts(struct store *s, struct store_blob sha256,
		     const uint8_t *data, size_t len, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO update_package_parts (sha256, idx, data) "
		"VALUES (?1, ?2, ?3)";
	int rc = 0;
	for (size_t off = 0, i = 0; rc == 0 && off < len;
	     off += STORE_UPD_PART, i++) {
		size_t n = len - off < STORE_UPD_PART ? len - off
						      : STORE_UPD_PART;
		struct db_stmt *st;
		rc = db_prep(s, q, &st, err);
		if (rc < 0)
			break;
		db_bind_blob(st, 1, sha256.p, sha256.len);
		db_bind_i64(st, 2, (int64_t)i);
		db_bind_blob(st, 3, data + off, n);
		rc = db_run(s, st, "store package part", err);
	}
	return rc;
}

int store_update_put_package(struct store *s, struct store_blob sha256,
			     const char *version, const void *data,
			     size_t len, struct parley_err *err)
{
	static const char q_has[] =
		"SELECT COUNT(*) FROM update_packages WHERE sha256 = ?1";
	static const char q[] =
		"INSERT INTO update_packages (sha256, version, size, "
		"created_ms) VALUES (?1, ?2, ?3, ?4)";
	int rc = db_check_digest("package digest", sha256, err);
	if (rc == 0)
		rc = check_version(version, err);
	if (rc == 0 && (!data || !len || len > INT32_MAX))
		rc = perr(err, -EINVAL, "package: %zu bytes", len);
	if (rc < 0)
		return rc;
	rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	struct db_stmt *st;
	int64_t n = 0;
	rc = db_prep(s, q_has, &st, err);
	if (rc == 0) {
		db_bind_blob(st, 1, sha256.p, sha256.len);
		rc = db_int(s, st, "find package", &n, err);
	}
	if (rc == 0 && n == 0) /* stored once */
		rc = db_prep(s, q, &st, err);
	if (rc == 0 && n == 0) {
		db_bind_blob(st, 1, sha256.p, sha256.len);
		db_bind_text(st, 2, version);
		db_bind_i64(st, 3, (int64_t)len);
		db_bind_i64(st, 4, db_now_ms());
		rc = db_run(s, st, "store package", err);
		if (rc == 0)
			rc = put_parts(s, sha256, data, len, err);
	}
	return db_op_end(s, rc, err);
}

static int need_package(struct store *s, struct store_blob sha256,
			struct parley_err *err)
{
	static const char q[] =
		"SELECT COUNT(*) FROM update_packages WHERE sha256 = ?1";
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_blob(st, 1, sha256.p, sha256.len);
	rc = db_int(s, st, "find package", &n, err);
	if (rc == 0 && n == 0)
		rc = perr(err, -ENOENT, "no such package");
	return rc;
}

int store_update_request(struct store *s, const char *host,
			 struct store_blob sha256, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO host_updates (host, sha256, state, received, "
		"reason, requested_ms, updated_ms) "
		"VALUES (?1, ?2, 'pending', 0, '', ?3, ?3) "
		"ON CONFLICT (host) DO UPDATE SET sha256 = ?2, "
		"state = 'pending', received = 0, reason = '', "
		"requested_ms = ?3, updated_ms = ?3";
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_check_digest("package digest", sha256, err);
	if (rc < 0)
		return rc;
	rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_need_host(s, host, err);
	if (rc == 0)
		rc = need_package(s, sha256, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, host);
		db_bind_blob(st, 2, sha256.p, sha256.len);
		db_bind_i64(st, 3, db_now_ms());
		rc = db_run(s, st, "request update", err);
	}
	return db_op_end(s, rc, err);
}

int store_update_get(struct store *s, const char *host,
		     struct store_update *out, struct parley_err *err)
{
	static const char q[] =
		"SELECT u.sha256, p.version, p.size, u.received, u.state, "
		"u.reason, u.requested_ms, u.updated_ms "
		"FROM host_updates u JOIN update_packages p "
		"ON p.sha256 = u.sha256 WHERE u.host = ?1";
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("host name", host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_step(s, st, "get update", err);
	if (rc == 1) {
		snprintf(out->host, sizeof(out->host), "%s", host);
		rc = db_col_digest(s, st, 0, out->sha256, err);
		if (rc == 0)
			rc = db_col_name(s, st, 1, out->version,
					 sizeof(out->version), err);
		out->size = (uint64_t)db_col_i64(st, 2);
		out->received = (uint64_t)db_col_i64(st, 3);
		if (rc == 0)
			rc = db_col_name(s, st, 4, out->state,
					 sizeof(out->state), err);
		if (rc == 0)
			rc = db_col_name(s, st, 5, out->reason,
					 sizeof(out->reason), err);
		out->requested_ms = db_col_i64(st, 6);
		out->updated_ms = db_col_i64(st, 7);
	} else if (rc == 0) {
		rc = perr(err, -ENOENT, "host \"%s\": no update", host);
	}
	db_reset(st);
	return rc;
}

int store_update_set(struct store *s, const char *host,
		     struct store_blob sha256, const char *state,
		     uint64_t received, const char *reason,
		     struct parley_err *err)
{
	static const char q[] =
		"UPDATE host_updates SET state = ?3, received = ?4, "
		"reason = ?5, updated_ms = ?6 WHERE host = ?1 AND sha256 = ?2 "
		"AND ?4 <= (SELECT size FROM update_packages p "
		"WHERE p.sha256 = ?2)";
	const char *r = reason ? reason : "";
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_check_digest("package digest", sha256, err);
	if (rc == 0)
		rc = check_state(state, err);
	if (rc == 0)
		rc = db_check_text("update reason", r, strlen(r),
				   STORE_UPD_REASON_MAX, err);
	if (rc == 0 && received > INT64_MAX)
		rc = perr(err, -EINVAL, "update received: out of range");
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_blob(st, 2, sha256.p, sha256.len);
	db_bind_text(st, 3, state);
	db_bind_i64(st, 4, (int64_t)received);
	db_bind_text(st, 5, r);
	db_bind_i64(st, 6, db_now_ms());
	rc = db_run(s, st, "set update", err);
	if (rc == 0 && db_changes(s) == 0)
		rc = perr(err, -ENOENT, "host \"%s\": no update of that "
			  "package (or received beyond its size)", host);
	return rc;
}

int store_update_read(struct store *s, struct store_blob sha256,
		      uint64_t offset, void *buf, size_t cap, size_t *got,
		      struct parley_err *err)
{
	static const char q_size[] =
		"SELECT size FROM update_packages WHERE sha256 = ?1";
	static const char q_part[] =
		"SELECT data FROM update_package_parts "
		"WHERE sha256 = ?1 AND idx = ?2";
	*got = 0;
	int rc = db_check_digest("package digest", sha256, err);
	if (rc == 0 && (offset > INT32_MAX || cap > INT32_MAX || !cap))
		rc = perr(err, -EINVAL, "package read: %llu + %zu out of "
			  "range", (unsigned long long)offset, cap);
	if (rc < 0)
		return rc;
	rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	struct db_stmt *st;
	int64_t size = -1;
	rc = db_prep(s, q_size, &st, err);
	if (rc == 0) {
		db_bind_blob(st, 1, sha256.p, sha256.len);
		rc = db_step(s, st, "read package", err);
		if (rc == 1)
			size = db_col_i64(st, 0);
		db_reset(st);
		rc = rc < 0 ? rc : size < 0 ? perr(err, -ENOENT, "no such "
						   "package") : 0;
	}
	uint64_t off = offset;
	while (rc == 0 && *got < cap && off < (uint64_t)size) {
		uint64_t idx = off / STORE_UPD_PART, in = off % STORE_UPD_PART;
		rc = db_prep(s, q_part, &st, err);
		if (rc < 0)
			break;
		db_bind_blob(st, 1, sha256.p, sha256.len);
		db_bind_i64(st, 2, (int64_t)idx);
		rc = db_step(s, st, "read package part", err);
		if (rc == 1) {
			const uint8_t *p = db_col_blob(st, 0);
			int n = (int)db_col_bytes(st, 0);
			if (!p || n <= 0 || (uint64_t)n <= in ||
			    (uint64_t)n > STORE_UPD_PART) {
				rc = perr(err, -EBADMSG, "store %s: package "
					  "part %llu holds %d bytes", s->path,
					  (unsigned long long)idx, n);
			} else {
				size_t take = (size_t)((uint64_t)n - in);
				if (take > cap - *got)
					take = cap - *got;
				memcpy((uint8_t *)buf + *got, p + in, take);
				*got += take;
				off += take;
				rc = 0;
			}
		} else if (rc == 0) {
			rc = perr(err, -EBADMSG, "store %s: package part %llu "
				  "missing", s->path, (unsigned long long)idx);
		}
		db_reset(st);
	}
	return db_rd_end(s, rc, err);
}

int store_host_agent_set(struct store *s, const char *host,
			 const char *version, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO host_agents (host, agent_version, seen_ms) "
		"VALUES (?1, ?2, ?3) ON CONFLICT (host) DO UPDATE SET "
		"agent_version = ?2, seen_ms = ?3";
	const char *v = version ? version : "";
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_check_text("agent version", v, strlen(v),
				   STORE_AGENT_VERSION_MAX, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_text(st, 2, v);
	db_bind_i64(st, 3, db_now_ms());
	return db_run(s, st, "set agent version", err);
}

int store_host_agent_get(struct store *s, const char *host,
			 char out[STORE_AGENT_VERSION_MAX],
			 struct parley_err *err)
{
	static const char q[] =
		"SELECT agent_version FROM host_agents WHERE host = ?1";
	out[0] = 0;
	int rc = db_check_name("host name", host, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_step(s, st, "get agent version", err);
	if (rc == 1)
		rc = db_col_name(s, st, 0, out, STORE_AGENT_VERSION_MAX, err);
	db_reset(st);
	return rc;
}
