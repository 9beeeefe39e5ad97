/*
 * Audit checkpoints (migration 6): signed (id, hash, time) of the chain's
 * head, kept so they can be exported. The signature is made and checked
 * elsewhere (daemon/keys/, common/checkpoint.h); this file checks shapes.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool hex64(const char *s)
{
	size_t n = strnlen(s, 65);
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int store_checkpoint_add(struct store *s, const struct store_checkpoint *c,
			 uint64_t *id, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO audit_checkpoints (id, seq, hash, time_ms, key_id,"
		" signature) SELECT COALESCE(MAX(id), 0) + 1, ?1, ?2, ?3, ?4, ?5"
		" FROM audit_checkpoints";
	static const char q_id[] = "SELECT MAX(id) FROM audit_checkpoints";
	if (c->seq == 0 || c->seq > INT64_MAX)
		return perr(err, -EINVAL, "checkpoint: audit id %llu out of "
			    "range", (unsigned long long)c->seq);
	if (!hex64(c->key_id))
		return perr(err, -EINVAL, "checkpoint: key id is not 64 hex "
			    "digits");
	int rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	struct db_stmt *st;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_i64(st, 1, (int64_t)c->seq);
		db_bind_blob(st, 2, c->hash, STORE_DIGEST);
		db_bind_i64(st, 3, c->time_ms);
		db_bind_text(st, 4, c->key_id);
		db_bind_blob(st, 5, c->sig, sizeof(c->sig));
		rc = db_run(s, st, "add checkpoint", err);
	}
	int64_t v = 0;
	if (rc == 0)
		rc = db_prep(s, q_id, &st, err);
	if (rc == 0)
		rc = db_int(s, st, "checkpoint id", &v, err);
	rc = db_op_end(s, rc, err);
	if (id)
		*id = rc == 0 ? (uint64_t)v : 0;
	return rc;
}

static int row(struct store *s, struct db_stmt *st, struct store_checkpoint *c,
	       struct parley_err *err)
{
	memset(c, 0, sizeof(*c));
	c->id = (uint64_t)db_col_i64(st, 0);
	c->seq = (uint64_t)db_col_i64(st, 1);
	c->time_ms = db_col_i64(st, 3);
	snprintf(c->key_id, sizeof(c->key_id), "%s", db_col_str(st, 4));
	int rc = db_col_digest(s, st, 2, c->hash, err);
	if (rc == 0 && db_col_bytes(st, 5) != sizeof(c->sig))
		rc = perr(err, -EBADMSG, "store %s: checkpoint %llu: signature "
			  "of %zu bytes", s->path, (unsigned long long)c->id,
			  db_col_bytes(st, 5));
	if (rc == 0)
		memcpy(c->sig, db_col_blob(st, 5), sizeof(c->sig));
	return rc;
}

int store_checkpoint_list(struct store *s, uint64_t before, unsigned limit,
			  struct store_checkpoint *out,
			  struct parley_err *err)
{
	static const char q[] =
		"SELECT id, seq, hash, time_ms, key_id, signature"
		" FROM audit_checkpoints WHERE id < ?1 ORDER BY id DESC"
		" LIMIT ?2";
	int rc = db_check_limit(limit, err);
	if (rc < 0)
		return rc;
	if (before == 0 || before > INT64_MAX)
		before = INT64_MAX;
	struct db_stmt *st;
	rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	int n = 0;
	if (rc == 0) {
		db_bind_i64(st, 1, (int64_t)before);
		db_bind_i64(st, 2, limit);
		while ((rc = db_step(s, st, "list checkpoints", err)) == 1 &&
		       (rc = row(s, st, &out[n], err)) == 0)
			n++;
		db_reset(st);
	}
	rc = db_rd_end(s, rc, err);
	return rc < 0 ? rc : n;
}
