/*
 * Hosts: the registry of agents (name = certificate CN, libvirt URI, the
 * pinned certificate), and each host's agent sequence number, which makes
 * ingest exactly-once.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_COLS "name, libvirt_uri, cert_sha256, agent_seq, policy_acked, " \
		  "created_ms, updated_ms"

int db_need_host(struct store *s, const char *name, struct parley_err *err)
{
	static const char q[] = "SELECT COUNT(*) FROM hosts WHERE name = ?1";
	struct db_stmt *st;
	int64_t n;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_int(s, st, "find host", &n, err);
	if (rc == 0 && n == 0)
		rc = perr(err, -ENOENT, "host \"%s\": no such host", name);
	return rc;
}

static int check_cert(const char *name, struct store_blob cert,
		      struct parley_err *err)
{
	if (!cert.p && !cert.len)
		return 0;
	char lbl[STORE_NAME_MAX + 48];
	snprintf(lbl, sizeof(lbl), "host \"%s\": certificate fingerprint",
		 name);
	return db_check_digest(lbl, cert, err);
}

int store_host_put(struct store *s, const char *name, const char *libvirt_uri,
		   struct store_blob cert_sha256, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO hosts (name, libvirt_uri, cert_sha256, "
		"created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?4) "
		"ON CONFLICT (name) DO UPDATE SET "
		"libvirt_uri = excluded.libvirt_uri, "
		"cert_sha256 = excluded.cert_sha256, "
		"updated_ms = excluded.updated_ms";
	int rc = db_check_name("host name", name, err);
	if (rc == 0)
		rc = db_check_uri(libvirt_uri, err);
	if (rc == 0)
		rc = check_cert(name, cert_sha256, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	/* One statement: atomic on its own, in a batch or not. */
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, libvirt_uri);
	db_bind_blob(st, 3, cert_sha256.p, cert_sha256.len);
	db_bind_i64(st, 4, db_now_ms());
	return db_run(s, st, "put host", err);
}

static int host_row(struct store *s, struct db_stmt *st, struct store_host *h,
		    struct parley_err *err)
{
	memset(h, 0, sizeof(*h));
	int rc = db_col_name(s, st, 0, h->name, sizeof(h->name), err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, h->libvirt_uri,
				 sizeof(h->libvirt_uri), err);
	if (rc == 0 && !db_col_isnull(st, 2)) {
		h->has_cert = true;
		rc = db_col_digest(s, st, 2, h->cert_sha256, err);
	}
	h->agent_seq = (uint64_t)db_col_i64(st, 3);
	h->policy_acked = (uint64_t)db_col_i64(st, 4);
	h->created_ms = db_col_i64(st, 5);
	h->updated_ms = db_col_i64(st, 6);
	return rc;
}

int store_host_get(struct store *s, const char *name, struct store_host *out,
		   struct parley_err *err)
{
	static const char q[] = "SELECT " HOST_COLS " FROM hosts "
				"WHERE name = ?1";
	struct db_stmt *st;
	int rc = db_check_name("host name", name, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_step(s, st, "get host", err);
	if (rc == 1)
		rc = host_row(s, st, out, err);
	else if (rc == 0)
		rc = perr(err, -ENOENT, "host \"%s\": no such host", name);
	db_reset(st);
	return rc;
}

/* Name order is byte order (PostgreSQL: COLLATE "C"), which the
 * `after` cursor relies on. */
int store_host_list(struct store *s, const char *after, unsigned limit,
		    struct store_host **out, struct parley_err *err)
{
	static const char q[] = "SELECT " HOST_COLS " FROM hosts "
				"WHERE name > ?1 ORDER BY name LIMIT ?2";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_check_limit(limit, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	struct store_host *h = calloc(limit, sizeof(*h));
	if (!h)
		return perr(err, -ENOMEM, "store: out of memory");
	db_bind_text(st, 1, after);
	db_bind_i64(st, 2, limit);
	unsigned n = 0;
	while ((rc = db_step(s, st, "list hosts", err)) == 1 && n < limit)
		if ((rc = host_row(s, st, &h[n++], err)) < 0)
			break;
	db_reset(st);
	if (rc < 0) {
		free(h);
		return rc;
	}
	*out = h;
	return (int)n;
}

static int host_delete(struct store *s, const char *name,
		       struct parley_err *err)
{
	static const char q_parts[] =
		"SELECT COUNT(*) FROM partitions WHERE host = ?1";
	static const char q_del[] = "DELETE FROM hosts WHERE name = ?1";
	struct db_stmt *st;
	int64_t n;
	int rc = db_need_host(s, name, err);
	if (rc == 0)
		rc = db_prep(s, q_parts, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_int(s, st, "count partitions", &n, err);
	if (rc == 0 && n > 0)
		rc = perr(err, -EBUSY, "host \"%s\" has %lld partition(s); "
			  "delete them first", name, (long long)n);
	/* Its certificate goes with it: re-adding the host takes a new
	 * join, not the old key. */
	if (rc == 0)
		rc = db_cert_revoke_pinned(s, name, "deleted", err);
	if (rc == 0)
		rc = db_prep(s, q_del, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	return db_run(s, st, "delete host", err);
}

int store_host_delete(struct store *s, const char *name,
		      struct parley_err *err)
{
	int rc = db_check_name("host name", name, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	return db_op_end(s, host_delete(s, name, err), err);
}

/* ---- agent sequence numbers ---- */

int db_seq_load(struct store *s, const char *host, uint64_t *seq,
		struct parley_err *err)
{
	static const char q[] = "SELECT agent_seq FROM hosts WHERE name = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_step(s, st, "load seq", err);
	if (rc == 1)
		*seq = (uint64_t)db_col_i64(st, 0);
	else if (rc == 0)
		rc = perr(err, -ENOENT, "host \"%s\": no such host", host);
	db_reset(st);
	return rc < 0 ? rc : 0;
}

/* Only upward: a second writer that stored a later batch first keeps its
 * higher number. */
int db_seq_raise(struct store *s, const char *host, uint64_t seq,
		 struct parley_err *err)
{
	static const char q[] = "UPDATE hosts SET agent_seq = ?2 "
				"WHERE name = ?1 AND agent_seq < ?2";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, (int64_t)seq);
	return db_run(s, st, "raise seq", err);
}

int db_seq_check_order(const char *what, uint64_t prev, uint64_t seq,
		       unsigned i, struct parley_err *err)
{
	/* SQL integers are signed 64-bit. */
	if (seq == 0 || seq > INT64_MAX)
		return perr(err, -EINVAL, "%s[%u]: seq %llu is not 1..2^63-1",
			    what, i, (unsigned long long)seq);
	if (seq <= prev)
		return perr(err, -EINVAL, "%s[%u]: seq %llu after %llu: not "
			    "increasing", what, i, (unsigned long long)seq,
			    (unsigned long long)prev);
	return 0;
}

int store_host_seq(struct store *s, const char *host, uint64_t *seq,
		   struct parley_err *err)
{
	*seq = 0;
	int rc = db_check_name("host name", host, err);
	return rc < 0 ? rc : db_seq_load(s, host, seq, err);
}
