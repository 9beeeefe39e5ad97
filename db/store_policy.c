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

/* Every host's version read at once (store_policy_read, no lists), then
 * the updates: on PostgreSQL pipelined (db_run_deferred), so the lot is
 * a few round trips rather than four per ack. Inside one operation: an
 * update that fails fails them all (nothing written), as one ack's
 * failure would have failed the batch's commit. */
static int ack_many(struct store *s, const char *const *hosts,
		    const uint64_t *versions, unsigned n, int *res,
		    struct parley_err *err)
{
	static const char q[] = "UPDATE hosts SET policy_acked = ?2 "
				"WHERE name = ?1 AND policy_acked < ?2";
	const char **ok = malloc((n ? n : 1) * sizeof(*ok));
	uint64_t *never = malloc((n ? n : 1) * sizeof(*never));
	struct store_policy_read r;
	unsigned k = 0;
	if (!ok || !never) {
		free(ok);
		free(never);
		return perr(err, -ENOMEM, "store: out of memory");
	}
	for (unsigned i = 0; i < n; i++) {
		res[i] = db_check_name("host name", hosts[i], NULL);
		if (res[i] == 0) {
			never[k] = UINT64_MAX;   /* versions only */
			ok[k++] = hosts[i];
		}
	}
	int rc = store_policy_read(s, ok, never, k, &r, err);
	free(ok);
	free(never);
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (res[i] < 0)
			continue;
		const struct store_policy_host *h =
			store_policy_read_find(&r, hosts[i]);
		if (!h || !h->found) {
			res[i] = -ENOENT;
		} else if (versions[i] > h->version) {
			res[i] = -EINVAL;
		} else {
			struct db_stmt *st;
			rc = db_prep(s, q, &st, err);
			if (rc < 0)
				break;
			db_bind_text(st, 1, hosts[i]);
			db_bind_i64(st, 2, (int64_t)versions[i]);
			rc = db_run_deferred(s, st, "ack", err);
		}
	}
	store_policy_read_free(&r);
	return rc;
}

int store_policy_ack_many(struct store *s, const char *const *hosts,
			  const uint64_t *versions, unsigned n, int *rc,
			  struct parley_err *err)
{
	if (n && (!hosts || !versions || !rc))
		return perr(err, -EINVAL, "acknowledgements: missing");
	if (!n)
		return 0;
	int r = db_op_begin(s, err);
	if (r < 0)
		return r;
	return db_op_end(s, ack_many(s, hosts, versions, n, rc, err), err);
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
