/*
 * Baselines (the safe values of DESIGN.md section 1) and the measurements
 * agents report. Both keep a partition digest in their own row and the
 * per-file and per-segment digests in a child table, one row each.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- digest rows, shared by baselines and measurements ---- */

/* The owner of a set of digest rows: a partition (baselines) or a
 * (host, seq) pair (measurements). Statements bind it after the digest's
 * own four parameters: ?5 the text, ?6 the number when there is one. */
struct dkey {
	const char *text;
	int64_t num;
};

static void bind_key(struct db_stmt *st, int first, const struct dkey *k)
{
	db_bind_text(st, first, k->text);
	if (db_bind_count(st) > first)
		db_bind_i64(st, first + 1, k->num);
}

static int digest_row(struct store *s, const char *sql, const struct dkey *k,
		      const char *kind, unsigned pos, const char *name,
		      const void *sha, struct parley_err *err)
{
	struct db_stmt *st;
	int rc = db_prep(s, sql, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, kind);
	db_bind_i64(st, 2, pos);
	db_bind_text(st, 3, name);
	db_bind_blob(st, 4, sha, STORE_DIGEST);
	bind_key(st, 5, k);
	return db_run(s, st, "write digest", err);
}

static int digests_write(struct store *s, const char *sql,
			 const struct dkey *k, const struct store_digests_in *d,
			 struct parley_err *err)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < d->nfile; i++)
		rc = digest_row(s, sql, k, "file", i, d->file[i].name,
				d->file[i].sha256.p, err);
	for (unsigned i = 0; rc == 0 && i < d->nseg; i++)
		rc = digest_row(s, sql, k, "segment", i, "", d->seg[i].p, err);
	return rc;
}

int db_digest_take(struct store *s, struct db_stmt *st,
		   struct store_digests *d, struct parley_err *err)
{
	bool file = strcmp(db_col_str(st, 0), "file") == 0;
	if (file && d->nfile < STORE_FILES_MAX) {
		struct store_file_digest *f = &d->file[d->nfile++];
		int rc = db_col_name(s, st, 1, f->name, sizeof(f->name), err);
		return rc < 0 ? rc : db_col_digest(s, st, 2, f->sha256, err);
	}
	if (!file && d->nseg < STORE_SEGS_MAX)
		return db_col_digest(s, st, 2, d->seg[d->nseg++], err);
	return perr(err, -EBADMSG, "store %s: more digests than a partition "
		    "can have", s->path);
}

static int digests_read(struct store *s, const char *sql, const struct dkey *k,
			struct store_digests *d, struct parley_err *err)
{
	struct db_stmt *st;
	int rc = db_prep(s, sql, &st, err);
	if (rc < 0)
		return rc;
	bind_key(st, 1, k);
	while ((rc = db_step(s, st, "read digests", err)) == 1)
		if ((rc = db_digest_take(s, st, d, err)) < 0)
			break;
	db_reset(st);
	return rc;
}

/* ---- baselines ---- */

static const char q_bl_digest_ins[] =
	"INSERT INTO baseline_digests (kind, pos, name, sha256, partition) "
	"VALUES (?1, ?2, ?3, ?4, ?5)";
static const char q_bl_digest_sel[] =
	"SELECT kind, name, sha256 FROM baseline_digests "
	"WHERE partition = ?1 ORDER BY kind, pos";

/* -1: none, else golden (0/1). */
static int baseline_kind(struct store *s, const char *p, int *golden,
			 struct parley_err *err)
{
	static const char q[] = "SELECT golden FROM baselines "
				"WHERE partition = ?1";
	struct db_stmt *st;
	int rc = db_need_partition(s, p, NULL, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, p);
	rc = db_step(s, st, "find baseline", err);
	*golden = rc == 1 ? db_col_int(st, 0) != 0 : -1;
	db_reset(st);
	return rc < 0 ? rc : 0;
}

static int baseline_remove(struct store *s, const char *p,
			   struct parley_err *err)
{
	static const char q[] = "DELETE FROM baselines WHERE partition = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, p);
	return db_run(s, st, "delete baseline", err);
}

/* A baseline is in the bundle of every host whose grants name the
 * partition: a new version for them, if there are any. */
static int baseline_version(struct store *s, const char *p, uint64_t *v,
			    struct parley_err *err)
{
	char change[STORE_NAME_MAX + 16];
	int64_t n;
	*v = 0;
	int64_t sets = 0, rules = 0;
	int rc = db_grants_naming(s, p, &n, err);
	if (rc == 0)
		rc = db_policy_refs(s, p, &sets, &rules, err);
	if (rc < 0 || n + sets + rules == 0)
		return rc;
	snprintf(change, sizeof(change), "baseline %s", p);
	rc = db_policy_new_version(s, change, v, err);
	if (rc == 0)
		rc = db_policy_note_grants_of(s, *v, p, err);
	/* Sets and rules are on p's own host: its bundle carries p's
	 * baseline for them. */
	if (rc == 0 && sets + rules > 0)
		rc = db_policy_note_parts(s, *v, p, p, err);
	return rc;
}

static int baseline_insert(struct store *s, const char *p,
			   const struct store_digests_in *d, bool golden,
			   struct parley_err *err)
{
	static const char q[] = "INSERT INTO baselines "
				"(partition, digest, golden, time_ms) "
				"VALUES (?1, ?2, ?3, ?4)";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, p);
	db_bind_blob(st, 2, d->digest.p, STORE_DIGEST);
	db_bind_i64(st, 3, golden);
	db_bind_i64(st, 4, db_now_ms());
	rc = db_run(s, st, "put baseline", err);
	struct dkey k = { .text = p };
	return rc < 0 ? rc : digests_write(s, q_bl_digest_ins, &k, d, err);
}

static int baseline_put(struct store *s, const char *p,
			const struct store_digests_in *d, bool golden,
			uint64_t *v, struct parley_err *err)
{
	int had;
	int rc = baseline_kind(s, p, &had, err);
	if (rc == 0 && had >= 0 && !golden)
		rc = perr(err, -EEXIST, "partition \"%s\" already has %s "
			  "baseline; enrolment only sets the first", p,
			  had ? "a golden" : "an enrolled");
	if (rc == 0 && had >= 0)
		rc = baseline_remove(s, p, err);
	if (rc == 0)
		rc = baseline_insert(s, p, d, golden, err);
	return rc < 0 ? rc : baseline_version(s, p, v, err);
}

int store_baseline_put(struct store *s, const char *partition,
		       const struct store_digests_in *d, bool golden,
		       uint64_t *policy_version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = db_check_digests("baseline", d, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, baseline_put(s, partition, d, golden, &v, err), err);
	if (policy_version)
		*policy_version = rc < 0 ? 0 : v;
	return rc;
}

static int baseline_get(struct store *s, const char *p,
			struct store_baseline *out, struct parley_err *err)
{
	static const char q[] = "SELECT digest, golden, time_ms FROM baselines "
				"WHERE partition = ?1";
	struct db_stmt *st;
	int rc = db_need_partition(s, p, NULL, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, p);
	rc = db_step(s, st, "get baseline", err);
	if (rc == 1) {
		out->golden = db_col_int(st, 1) != 0;
		out->time_ms = db_col_i64(st, 2);
		rc = db_col_digest(s, st, 0, out->d.digest, err);
	} else if (rc == 0) {
		rc = perr(err, -ENOENT, "partition \"%s\" has no baseline", p);
	}
	db_reset(st);
	struct dkey k = { .text = p };
	return rc < 0 ? rc : digests_read(s, q_bl_digest_sel, &k, &out->d, err);
}

int store_baseline_get(struct store *s, const char *partition,
		       struct store_baseline *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	snprintf(out->partition, sizeof(out->partition), "%s", partition);
	return db_rd_end(s, baseline_get(s, partition, out, err), err);
}

static int baseline_delete(struct store *s, const char *p, uint64_t *v,
			   struct parley_err *err)
{
	int had;
	int rc = baseline_kind(s, p, &had, err);
	if (rc == 0 && had < 0)
		rc = perr(err, -ENOENT, "partition \"%s\" has no baseline", p);
	if (rc == 0)
		rc = baseline_remove(s, p, err);
	return rc < 0 ? rc : baseline_version(s, p, v, err);
}

int store_baseline_delete(struct store *s, const char *partition,
			  uint64_t *policy_version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, baseline_delete(s, partition, &v, err), err);
	if (policy_version)
		*policy_version = rc < 0 ? 0 : v;
	return rc;
}

/* ---- measurements ---- */

static const char q_ms_digest_ins[] =
	"INSERT INTO measurement_digests "
	"(kind, pos, name, sha256, host, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char q_ms_digest_sel[] =
	"SELECT kind, name, sha256 FROM measurement_digests "
	"WHERE host = ?1 AND seq = ?2 ORDER BY kind, pos";

static int check_measurements(const char *host,
			      const struct store_measure_in *m, unsigned n,
			      struct parley_err *err)
{
	char lbl[48];
	int rc = db_check_name("host name", host, err);
	if (rc == 0 && n && !m)
		rc = perr(err, -EINVAL, "measurements: missing");
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		snprintf(lbl, sizeof(lbl), "measurements[%u]", i);
		rc = db_seq_check_order("measurements", i ? m[i - 1].seq : 0,
					m[i].seq, i, err);
		if (rc == 0 && m[i].time_ms < 0)
			rc = perr(err, -EINVAL, "%s: time %lld", lbl,
				  (long long)m[i].time_ms);
		if (rc == 0 && (rc = db_check_name("partition name",
						   m[i].partition, err)) < 0)
			db_prefix(err, rc, "%s", lbl);
		if (rc == 0)
			rc = db_check_digests(lbl, &m[i].d, err);
	}
	return rc;
}

static int measurement_one(struct store *s, const char *host,
			   const struct store_measure_in *m, unsigned i,
			   struct parley_err *err)
{
	static const char q[] = "INSERT INTO measurements "
				"(host, seq, partition, time_ms, digest) "
				"VALUES (?1, ?2, ?3, ?4, ?5)";
	char on[STORE_NAME_MAX];
	struct db_stmt *st;
	int rc = db_need_partition(s, m->partition, on, err);
	if (rc < 0)
		return db_prefix(err, rc, "measurements[%u]", i);
	if (strcmp(on, host) != 0)
		return perr(err, -EPERM, "measurements[%u]: host \"%s\" "
			    "reported partition \"%s\", which is on host "
			    "\"%s\"", i, host, m->partition, on);
	rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, (int64_t)m->seq);
	db_bind_text(st, 3, m->partition);
	db_bind_i64(st, 4, m->time_ms ? m->time_ms : db_now_ms());
	db_bind_blob(st, 5, m->d.digest.p, STORE_DIGEST);
	rc = db_run(s, st, "add measurement", err);
	struct dkey k = { .text = host, .num = (int64_t)m->seq };
	return rc < 0 ? rc : digests_write(s, q_ms_digest_ins, &k, &m->d, err);
}

static int ingest_measurements(struct store *s, const char *host,
			       const struct store_measure_in *m, unsigned n,
			       struct store_ingest *res,
			       struct parley_err *err)
{
	int rc = db_seq_load(s, host, &res->seq, err);
	uint64_t held = res->seq;
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (m[i].seq <= held) {
			res->skipped++;
			continue;
		}
		rc = measurement_one(s, host, &m[i], i, err);
		res->stored++;
		res->seq = m[i].seq;
	}
	if (rc == 0 && res->seq > held)
		rc = db_seq_raise(s, host, res->seq, err);
	return rc;
}

int store_ingest_measurements(struct store *s, const char *host,
			      const struct store_measure_in *m, unsigned n,
			      struct store_ingest *res, struct parley_err *err)
{
	struct store_ingest r = { 0 };
	int rc = check_measurements(host, m, n, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, ingest_measurements(s, host, m, n, &r, err), err);
	if (res)
		*res = rc < 0 ? (struct store_ingest){ 0 } : r;
	return rc;
}

static int latest_row(struct store *s, struct db_stmt *st,
		      struct store_measurement *m, struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	int rc = db_col_name(s, st, 0, m->host, sizeof(m->host), err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, m->partition, sizeof(m->partition),
				 err);
	if (rc == 0)
		rc = db_col_digest(s, st, 4, m->d.digest, err);
	m->seq = (uint64_t)db_col_i64(st, 2);
	m->time_ms = db_col_i64(st, 3);
	return rc;
}

static int latest_rows(struct store *s, struct db_stmt *st,
		       struct store_measurement **out, unsigned *n,
		       struct parley_err *err)
{
	unsigned cap = 0;
	int rc;
	while ((rc = db_step(s, st, "latest measurements", err)) == 1) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			void *p = realloc(*out, cap * sizeof(**out));
			if (!p) {
				rc = perr(err, -ENOMEM, "store: out of memory");
				break;
			}
			*out = p;
		}
		if ((rc = latest_row(s, st, &(*out)[(*n)++], err)) < 0)
			break;
	}
	db_reset(st);
	return rc;
}

/* The latest = the highest seq its current host reported. */
static int latest(struct store *s, const char *host,
		  struct store_measurement **out, unsigned *n,
		  struct parley_err *err)
{
	static const char q[] =
		"SELECT m.host, m.partition, m.seq, m.time_ms, m.digest "
		"FROM measurements m JOIN partitions p "
		"ON p.name = m.partition AND p.host = m.host "
		"WHERE (?1 = '' OR m.host = ?1) AND m.seq = "
		"(SELECT MAX(x.seq) FROM measurements x "
		" WHERE x.host = m.host AND x.partition = m.partition) "
		"ORDER BY m.partition";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = latest_rows(s, st, out, n, err);
	for (unsigned i = 0; rc == 0 && i < *n; i++) {
		struct store_measurement *m = &(*out)[i];
		struct dkey k = { .text = m->host, .num = (int64_t)m->seq };
		rc = digests_read(s, q_ms_digest_sel, &k, &m->d, err);
	}
	return rc;
}

int store_measurement_latest(struct store *s, const char *host,
			     struct store_measurement **out,
			     struct parley_err *err)
{
	unsigned n = 0;
	*out = NULL;
	int rc = db_check_opt_name("host name", host, err);
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_rd_end(s, latest(s, host, out, &n, err), err);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		return rc;
	}
	return (int)n;
}
