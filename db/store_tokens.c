/*
 * Tokens: API bearer tokens (with a scope) and one-time host join tokens,
 * both held as the SHA-256 of their secret only.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *store_scope_name(enum store_scope sc)
{
	return sc == STORE_SCOPE_ADMIN ? "admin" : "read";
}

int store_token_add(struct store *s, const char *name, enum store_scope scope,
		    struct store_blob sha256, struct parley_err *err)
{
	/* id = max + 1 inside the statement: portable, no rowid; a second
	 * writer taking the same id gets a constraint error, not a merge. */
	static const char q[] =
		"INSERT INTO api_tokens (id, name, scope, sha256, created_ms) "
		"SELECT COALESCE(MAX(id), 0) + 1, ?1, ?2, ?3, ?4 "
		"FROM api_tokens";
	if (scope != STORE_SCOPE_READ && scope != STORE_SCOPE_ADMIN)
		return perr(err, -EINVAL, "token scope %d unknown", (int)scope);
	int rc = db_check_name("token name", name, err);
	if (rc == 0)
		rc = db_check_digest("token digest", sha256, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, store_scope_name(scope));
	db_bind_blob(st, 3, sha256.p, sha256.len);
	db_bind_i64(st, 4, db_now_ms());
	return db_run(s, st, "add token", err);
}

int store_token_find(struct store *s, struct store_blob sha256,
		     enum store_scope *scope, char name[STORE_NAME_MAX],
		     struct parley_err *err)
{
	static const char q[] =
		"SELECT scope, name FROM api_tokens WHERE sha256 = ?1";
	struct db_stmt *st;
	int rc = db_check_digest("token digest", sha256, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_blob(st, 1, sha256.p, sha256.len);
	rc = db_step(s, st, "find token", err);
	if (rc == 1) {
		const char *sc = db_col_str(st, 0);
		*scope = !strcmp(sc, "admin") ? STORE_SCOPE_ADMIN
					      : STORE_SCOPE_READ;
		if (name)
			snprintf(name, STORE_NAME_MAX, "%s", db_col_str(st, 1));
		rc = 0;
	} else if (rc == 0) {
		rc = perr(err, -ENOENT, "no such token");
	}
	db_reset(st);
	return rc;
}

int store_token_scope(struct store *s, struct store_blob sha256,
		      enum store_scope *scope, struct parley_err *err)
{
	return store_token_find(s, sha256, scope, NULL, err);
}

int store_token_count(struct store *s, uint64_t *n, struct parley_err *err)
{
	static const char q[] = "SELECT COUNT(*) FROM api_tokens";
	struct db_stmt *st;
	int64_t v = 0;
	int rc = db_prep(s, q, &st, err);
	if (rc == 0)
		rc = db_int(s, st, "count tokens", &v, err);
	*n = rc == 0 ? (uint64_t)v : 0;
	return rc;
}

int store_join_token_add(struct store *s, const char *host,
			 struct store_blob sha256, int64_t expires_ms,
			 struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO join_tokens (host, sha256, expires_ms, used_ms) "
		"VALUES (?1, ?2, ?3, NULL)";
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_check_digest("join token digest", sha256, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_blob(st, 2, sha256.p, sha256.len);
	db_bind_i64(st, 3, expires_ms);
	return db_run(s, st, "add join token", err);
}

/* Under the write lock: read the row, decide, mark it used. */
static int join_use(struct store *s, struct store_blob sha256, int64_t now_ms,
		    char *host_out, struct parley_err *err)
{
	static const char q_get[] =
		"SELECT host, expires_ms, used_ms FROM join_tokens "
		"WHERE sha256 = ?1";
	static const char q_use[] =
		"UPDATE join_tokens SET used_ms = ?2 WHERE sha256 = ?1 "
		"AND used_ms IS NULL";
	struct db_stmt *st;
	int rc = db_prep(s, q_get, &st, err);
	if (rc < 0)
		return rc;
	db_bind_blob(st, 1, sha256.p, sha256.len);
	rc = db_step(s, st, "find join token", err);
	if (rc == 0)
		rc = perr(err, -ENOENT, "no such join token");
	if (rc == 1)
		rc = db_col_name(s, st, 0, host_out, STORE_NAME_MAX, err);
	if (rc == 0 && !db_col_isnull(st, 2))
		rc = perr(err, -EEXIST, "join token for host \"%s\" was used "
			  "already", host_out);
	else if (rc == 0 && now_ms >= db_col_i64(st, 1))
		rc = perr(err, -ETIMEDOUT, "join token for host \"%s\" has "
			  "expired", host_out);
	db_reset(st);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q_use, &st, err);
	if (rc < 0)
		return rc;
	db_bind_blob(st, 1, sha256.p, sha256.len);
	db_bind_i64(st, 2, now_ms);
	rc = db_run(s, st, "use join token", err);
	/* The write lock makes this impossible; the guard in the statement
	 * keeps a token single-use even for a writer without it. */
	if (rc == 0 && db_changes(s) != 1)
		rc = perr(err, -EEXIST, "join token for host \"%s\" was used "
			  "already", host_out);
	return rc;
}

int store_join_token_use(struct store *s, struct store_blob sha256,
			 int64_t now_ms, char *host_out,
			 struct parley_err *err)
{
	host_out[0] = '\0';
	int rc = db_check_digest("join token digest", sha256, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = join_use(s, sha256, now_ms, host_out, err);
	return db_op_end(s, rc, err);
}
