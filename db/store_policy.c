/*
 * Policy versions as the hosts see them: which version each host's bundle
 * carries, which hosts a version affected, what each host acknowledged,
 * and who is behind.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int store_policy_version(struct store *s, uint64_t *version,
			 struct parley_err *err)
{
	return db_policy_current(s, version, err);
}

static int host_version(struct store *s, const char *host, uint64_t *v,
			struct parley_err *err)
{
	static const char q[] = "SELECT COALESCE(MAX(version), 0) "
				"FROM policy_hosts WHERE host = ?1";
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_need_host(s, host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_int(s, st, "host version", &n, err);
	*v = (uint64_t)n;
	return rc;
}

int store_policy_host_version(struct store *s, const char *host,
			      uint64_t *version, struct parley_err *err)
{
	*version = 0;
	int rc = db_check_name("host name", host, err);
	return rc < 0 ? rc : host_version(s, host, version, err);
}

static int affected(struct store *s, uint64_t v, struct store_names *out,
		    struct parley_err *err)
{
	static const char q_has[] =
		"SELECT COUNT(*) FROM policy_versions WHERE version = ?1";
	static const char q[] = "SELECT host FROM policy_hosts "
				"WHERE version = ?1 ORDER BY host";
	struct db_stmt *st;
	int64_t n;
	int rc = db_prep(s, q_has, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)v);
	rc = db_int(s, st, "find version", &n, err);
	if (rc == 0 && n == 0)
		rc = perr(err, -ENOENT, "no policy version %llu",
			  (unsigned long long)v);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)v);
	while ((rc = db_step(s, st, "affected hosts", err)) == 1)
		if (db_names_push(out, db_col_str(st, 0)) < 0) {
			rc = perr(err, -ENOMEM, "store: out of memory");
			break;
		}
	db_reset(st);
	return rc;
}

int store_policy_affected(struct store *s, uint64_t version,
			  struct store_names *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (version > INT64_MAX)
		return perr(err, -ENOENT, "no policy version %llu",
			    (unsigned long long)version);
	int rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_rd_end(s, affected(s, version, out, err), err);
	if (rc < 0)
		store_names_free(out);
	return rc;
}

/* ---- acknowledgements ---- */

/* Only forward, by compare: a late ack of an older bundle (or a second
 * daemon's) never moves a host back. */
static int ack(struct store *s, const char *host, uint64_t v,
	       struct parley_err *err)
{
	static const char q[] = "UPDATE hosts SET policy_acked = ?2 "
				"WHERE name = ?1 AND policy_acked < ?2";
	uint64_t want;
	struct db_stmt *st;
	int rc = host_version(s, host, &want, err);
	if (rc == 0 && v > want)
		rc = perr(err, -EINVAL, "host \"%s\" acknowledged policy "
			  "version %llu, but its bundle is at version %llu",
			  host, (unsigned long long)v,
			  (unsigned long long)want);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, (int64_t)v);
	return db_run(s, st, "ack", err);
}

int store_policy_ack(struct store *s, const char *host, uint64_t version,
		     struct parley_err *err)
{
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	return db_op_end(s, ack(s, host, version, err), err);
}

int store_policy_acked(struct store *s, const char *host, uint64_t *version,
		       struct parley_err *err)
{
	struct store_host h;
	int rc = store_host_get(s, host, &h, err);
	*version = rc < 0 ? 0 : h.policy_acked;
	return rc;
}

static int lag_row(struct store *s, struct db_stmt *st, void *elem,
		   struct parley_err *err)
{
	struct store_lag *e = elem;
	int rc = db_col_name(s, st, 0, e->host, sizeof(e->host), err);
	e->acked = (uint64_t)db_col_i64(st, 1);
	e->want = (uint64_t)db_col_i64(st, 2);
	return rc;
}

int store_policy_lagging(struct store *s, struct store_lag **out,
			 struct parley_err *err)
{
	static const char q[] =
		"SELECT h.name, h.policy_acked, MAX(p.version) "
		"FROM hosts h JOIN policy_hosts p ON p.host = h.name "
		"GROUP BY h.name, h.policy_acked "
		"HAVING MAX(p.version) > h.policy_acked ORDER BY h.name";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_prep(s, q, &st, err);
	return rc < 0 ? rc : db_rows(s, st, "lagging hosts", sizeof(**out),
				     lag_row, NULL, (void **)out, err);
}
