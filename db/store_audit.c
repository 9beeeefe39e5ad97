/*
 * The audit trail: append-only and hash-chained (DESIGN.md section 6).
 * Each append batch reads the chain's head once, hashes and inserts its
 * rows with ids head+1, head+2, ..., and moves the head by compare-and-set
 * in the same transaction. Verification recomputes the chain from row 1.
 */
#include "db/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bumped if the serialization below ever changes; it is hashed, so rows
 * written under an older format still verify under theirs. */
#define AUDIT_FORMAT 1
#define AUDIT_NFIELDS 7

#define AUDIT_COLS "id, time_ms, host, event, partition, channel, reason, " \
		   "file, detail, prev_hash, hash"

/* The chain's end: the last id and its hash (zeros before row 1). */
struct chain {
	uint64_t id;
	uint8_t hash[STORE_DIGEST];
};

/* ---- the hash ---- */

static size_t put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	return bytes;
}

/* Enough for the largest row the checks let in; verify refuses rows
 * whose fields would not fit (only an edited file has them). */
#define SER_MAX (STORE_DIGEST + 4 + 16 + \
		 (AUDIT_NFIELDS - 1) * (4 + STORE_NAME_MAX) + \
		 4 + STORE_DETAIL_MAX)

/* prev_hash || u32 format || u64 id || i64 time || (u32 len || bytes)*7,
 * big-endian: every field length-prefixed, so no two rows serialize the
 * same. */
static int audit_hash(struct store *s, const uint8_t *prev, uint64_t id,
		      int64_t time_ms, const char *const f[AUDIT_NFIELDS],
		      uint8_t out[STORE_DIGEST])
{
	uint8_t buf[SER_MAX];
	size_t n = 0;
	memcpy(buf, prev, STORE_DIGEST);
	n += STORE_DIGEST;
	n += put_be(buf + n, AUDIT_FORMAT, 4);
	n += put_be(buf + n, id, 8);
	n += put_be(buf + n, (uint64_t)time_ms, 8);
	for (unsigned i = 0; i < AUDIT_NFIELDS; i++) {
		size_t len = strlen(f[i]);
		if (len > sizeof(buf) - n - 4)
			return -E2BIG;
		n += put_be(buf + n, len, 4);
		memcpy(buf + n, f[i], len);
		n += len;
	}
	unsigned olen;
	if (EVP_DigestInit_ex(s->md, s->sha256, NULL) != 1 ||
	    EVP_DigestUpdate(s->md, buf, n) != 1 ||
	    EVP_DigestFinal_ex(s->md, out, &olen) != 1)
		return -EIO;
	return 0;
}

/* ---- checks ---- */

static const char *nz(const char *v)
{
	return v ? v : "";
}

typedef int (*check_fn)(const char *what, const char *v,
			struct parley_err *err);

static int check_event(const char *what, const struct store_audit_in *e,
		       struct parley_err *err)
{
	const struct {
		const char *field, *v;
		check_fn check;
	} f[] = {
		{ "event", e->event, db_check_name },
		{ "host", e->host, db_check_opt_name },
		{ "partition", e->partition, db_check_opt_name },
		{ "channel", e->channel, db_check_opt_name },
		{ "reason", e->reason, db_check_opt_name },
		{ "file", e->file, db_check_opt_file_name },
	};
	char lbl[64];
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		snprintf(lbl, sizeof(lbl), "%s.%s", what, f[i].field);
		int rc = f[i].check(lbl, f[i].v, err);
		if (rc < 0)
			return rc;
	}
	snprintf(lbl, sizeof(lbl), "%s.detail", what);
	int rc = db_check_text(lbl, nz(e->detail), strlen(nz(e->detail)),
			       STORE_DETAIL_MAX, err);
	if (rc == 0 && e->time_ms < 0)
		rc = perr(err, -EINVAL, "%s.time_ms: %lld is negative", what,
			  (long long)e->time_ms);
	return rc;
}

/* Agent events also carry increasing seqs and no other host's name. */
static int check_events(const char *host, const struct store_audit_in *ev,
			unsigned n, struct parley_err *err)
{
	char what[32];
	if (n && !ev)
		return perr(err, -EINVAL, "events: missing");
	for (unsigned i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "events[%u]", i);
		int rc = check_event(what, &ev[i], err);
		if (rc == 0 && host)
			rc = db_seq_check_order("events", i ? ev[i - 1].seq : 0,
						ev[i].seq, i, err);
		if (rc == 0 && host && ev[i].host && ev[i].host[0] &&
		    strcmp(ev[i].host, host) != 0)
			rc = perr(err, -EPERM, "%s.host: \"%s\" in a batch "
				  "from host \"%s\"", what, ev[i].host, host);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- the head ---- */

static int head_load(struct store *s, struct chain *c, struct parley_err *err)
{
	static const char q[] = "SELECT last_id, last_hash FROM audit_head "
				"WHERE one = 1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	rc = db_step(s, st, "audit head", err);
	memset(c, 0, sizeof(*c));
	if (rc == 0)
		rc = perr(err, -EBADMSG, "store %s: the audit head is missing",
			  s->path);
	if (rc == 1)
		c->id = (uint64_t)db_col_i64(st, 0);
	if (rc == 1 && c->id)
		rc = db_col_digest(s, st, 1, c->hash, err);
	db_reset(st);
	return rc < 0 ? rc : 0;
}

/* Compare-and-set: only if nobody moved the head since head_load. */
static int head_store(struct store *s, uint64_t was, const struct chain *c,
		      struct parley_err *err)
{
	static const char q[] = "UPDATE audit_head SET last_id = ?1, "
				"last_hash = ?2 WHERE one = 1 AND last_id = ?3";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)c->id);
	db_bind_blob(st, 2, c->hash, STORE_DIGEST);
	db_bind_i64(st, 3, (int64_t)was);
	rc = db_run(s, st, "move audit head", err);
	if (rc == 0 && db_changes(s) != 1)
		rc = perr(err, -EAGAIN, "store %s: another writer extended the "
			  "audit chain; retry", s->path);
	return rc;
}

/* ---- append ---- */

/* Rows go in several to an INSERT: each statement costs the server a
 * parse-free but still whole execution (a portal, executor start and
 * end), which one row at a time was most of an ingest's time on
 * PostgreSQL. A batch's rows go 32 to a statement, the rest 4 and then
 * 1 at a time; the SQL of each size is made once per process. */
#define AUDIT_PARAMS 11
#define ROWS_BIG 32
#define ROWS_MID 4

static const unsigned row_sizes[] = { ROWS_BIG, ROWS_MID, 1 };
static char *q_rows[3];
static pthread_once_t q_rows_once = PTHREAD_ONCE_INIT;

static char *rows_sql(unsigned rows)
{
	static const char head[] = "INSERT INTO audit (" AUDIT_COLS ") VALUES ";
	/* "(?NNN, ... )," per row, each parameter at most 6 bytes and ", " */
	size_t cap = sizeof(head) + rows * (AUDIT_PARAMS * 8 + 4);
	char *q = malloc(cap);
	if (!q)
		return NULL;
	size_t n = (size_t)snprintf(q, cap, "%s", head);
	for (unsigned r = 0; r < rows; r++)
		for (unsigned k = 0; k < AUDIT_PARAMS; k++)
			n += (size_t)snprintf(q + n, cap - n, "%s?%u%s",
					      k ? ", " : r ? ", (" : "(",
					      r * AUDIT_PARAMS + k + 1,
					      k == AUDIT_PARAMS - 1 ? ")" : "");
	return q;
}

static void q_rows_make(void)
{
	for (unsigned i = 0; i < 3; i++)
		q_rows[i] = rows_sql(row_sizes[i]);
}

/* One row, hashed onto the chain, waiting for its statement. The
 * fields point into the caller's events. */
struct row {
	int64_t id, t;
	const char *f[AUDIT_NFIELDS];
	uint8_t prev[STORE_DIGEST], hash[STORE_DIGEST];
};

struct rows {
	struct row r[ROWS_BIG];
	unsigned n;
};

/* Insert the first k queued rows with the statement for k (a size of
 * row_sizes[]): pipelined on PostgreSQL (db_run_deferred: one round trip
 * per batch, not per statement); head_store's answer comes after. */
static int rows_insert(struct store *s, const struct row *r, unsigned which,
		       struct parley_err *err)
{
	pthread_once(&q_rows_once, q_rows_make);
	if (!q_rows[which])
		return perr(err, -ENOMEM, "store: out of memory");
	struct db_stmt *st;
	int rc = db_prep(s, q_rows[which], &st, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < row_sizes[which]; i++) {
		int p = (int)(i * AUDIT_PARAMS);
		db_bind_i64(st, p + 1, r[i].id);
		db_bind_i64(st, p + 2, r[i].t);
		for (int k = 0; k < AUDIT_NFIELDS; k++)
			db_bind_text(st, p + 3 + k, r[i].f[k]);
		db_bind_blob(st, p + 10, r[i].prev, STORE_DIGEST);
		db_bind_blob(st, p + 11, r[i].hash, STORE_DIGEST);
	}
	return db_run_deferred(s, st, "append audit", err);
}

/* Everything queued, in statements of the sizes that fit. */
static int rows_flush(struct store *s, struct rows *q, struct parley_err *err)
{
	unsigned at = 0;
	int rc = 0;
	for (unsigned w = 0; rc == 0 && w < 3; w++)
		while (rc == 0 && q->n - at >= row_sizes[w]) {
			rc = rows_insert(s, q->r + at, w, err);
			at += row_sizes[w];
		}
	q->n = 0;
	return rc;
}

static int audit_insert(struct store *s, struct chain *c, struct rows *q,
			const char *host, const struct store_audit_in *e,
			struct parley_err *err)
{
	struct row *r = &q->r[q->n];
	const char *f[AUDIT_NFIELDS] = {
		nz(host), e->event, nz(e->partition), nz(e->channel),
		nz(e->reason), nz(e->file), nz(e->detail),
	};
	memcpy(r->f, f, sizeof(f));
	r->t = e->time_ms ? e->time_ms : db_now_ms();
	r->id = (int64_t)c->id + 1;
	memcpy(r->prev, c->hash, STORE_DIGEST);
	if (audit_hash(s, c->hash, c->id + 1, r->t, f, r->hash) < 0)
		return perr(err, -EIO, "store: SHA-256 failed");
	c->id++;
	memcpy(c->hash, r->hash, STORE_DIGEST);
	return ++q->n == ROWS_BIG ? rows_flush(s, q, err) : 0;
}

/* An agent's event may name a partition the store does not know (one it
 * runs from a local spec), but not one of another host's. */
static int own_partition(struct store *s, const char *host, unsigned i,
			 const char *p, char last_ok[STORE_NAME_MAX],
			 struct parley_err *err)
{
	char on[STORE_NAME_MAX];
	/* Events come in runs about one partition: ask once per run. */
	if (!p || !p[0] || !strcmp(p, last_ok))
		return 0;
	int rc = db_need_partition(s, p, on, err);
	if (rc == -ENOENT || (rc == 0 && !strcmp(on, host))) {
		if (err)
			*err = (struct parley_err){ 0 };
		snprintf(last_ok, STORE_NAME_MAX, "%s", p);
		return 0;
	}
	if (rc == 0)
		rc = perr(err, -EPERM, "events[%u]: host \"%s\" reported on "
			  "partition \"%s\" of host \"%s\"", i, host, p, on);
	return rc;
}

/* host NULL: the daemon's own events (each names its host); else an
 * agent's, deduplicated by seq against the host's number. */
static int append(struct store *s, const char *host,
		  const struct store_audit_in *ev, unsigned n,
		  struct store_ingest *res, uint64_t *last_id,
		  struct parley_err *err)
{
	struct chain c = { 0 };
	struct rows *q = malloc(sizeof(*q));
	if (!q)
		return perr(err, -ENOMEM, "store: out of memory");
	q->n = 0;
	uint64_t held = 0;
	char last_ok[STORE_NAME_MAX] = "";
	int rc = host ? db_seq_load(s, host, &held, err) : 0;
	if (rc == 0)
		rc = head_load(s, &c, err);
	uint64_t was = c.id;
	res->seq = held;
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (host && ev[i].seq <= held) {
			res->skipped++;
			continue;
		}
		if (host)
			rc = own_partition(s, host, i, ev[i].partition,
					   last_ok, err);
		if (rc == 0)
			rc = audit_insert(s, &c, q, host ? host : ev[i].host,
					  &ev[i], err);
		res->stored++;
		if (host)
			res->seq = ev[i].seq;
	}
	if (rc == 0)
		rc = rows_flush(s, q, err);
	free(q);
	if (rc == 0 && c.id != was)
		rc = head_store(s, was, &c, err);
	if (rc == 0 && host && res->seq > held)
		rc = db_seq_raise(s, host, res->seq, err);
	*last_id = c.id;
	return rc;
}

int store_audit_append(struct store *s, const struct store_audit_in *ev,
		       unsigned n, uint64_t *last_id, struct parley_err *err)
{
	struct store_ingest r = { 0 };
	uint64_t last = 0;
	int rc = check_events(NULL, ev, n, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, append(s, NULL, ev, n, &r, &last, err), err);
	if (last_id)
		*last_id = rc < 0 ? 0 : last;
	return rc;
}

int store_ingest_audit(struct store *s, const char *host,
		       const struct store_audit_in *ev, unsigned n,
		       struct store_ingest *res, struct parley_err *err)
{
	struct store_ingest r = { 0 };
	uint64_t last;
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = check_events(host, ev, n, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, append(s, host, ev, n, &r, &last, err), err);
	if (res)
		*res = rc < 0 ? (struct store_ingest){ 0 } : r;
	return rc;
}

/* ---- reading ---- */

static const char q_walk[] = "SELECT " AUDIT_COLS " FROM audit "
			     "WHERE id > ?1 ORDER BY id LIMIT ?2";

static int audit_row(struct store *s, struct db_stmt *st, struct store_audit *r,
		     struct parley_err *err)
{
	r->id = (uint64_t)db_col_i64(st, 0);
	r->time_ms = db_col_i64(st, 1);
	const char **f[AUDIT_NFIELDS] = { &r->host, &r->event, &r->partition,
					  &r->channel, &r->reason, &r->file,
					  &r->detail };
	for (int i = 0; i < AUDIT_NFIELDS; i++)
		*f[i] = db_col_str(st, 2 + i);
	int rc = db_col_digest(s, st, 9, r->prev_hash, err);
	if (rc == 0)
		rc = db_col_digest(s, st, 10, r->hash, err);
	return rc < 0 ? db_prefix(err, rc, "audit row %llu",
				  (unsigned long long)r->id) : 0;
}

/* Each row of a prepared statement to cb until it says stop; the number
 * passed, or -errno. Resets the statement. */
static int pass_rows(struct store *s, struct db_stmt *st, const char *what,
		     store_audit_cb cb, void *ctx, struct parley_err *err)
{
	struct store_audit r;
	int n = 0, rc;
	while ((rc = db_step(s, st, what, err)) == 1) {
		if ((rc = audit_row(s, st, &r, err)) < 0)
			break;
		n++;
		if (cb(&r, ctx))
			break;
	}
	db_reset(st);
	return rc < 0 ? rc : n;
}

int store_audit_list(struct store *s, uint64_t after_id, unsigned limit,
		     store_audit_cb cb, void *ctx, struct parley_err *err)
{
	struct db_stmt *st;
	if (after_id > INT64_MAX)
		return 0;
	int rc = db_prep(s, q_walk, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)after_id);
	db_bind_i64(st, 2, limit ? (int64_t)limit : INT64_MAX);
	return pass_rows(s, st, "list audit", cb, ctx, err);
}

/* ---- reading, filtered ---- */

/* One statement per order; an empty text or a zero bound matches all, so
 * the filter needs no SQL built at run time. */
#define AUDIT_FIND "SELECT " AUDIT_COLS " FROM audit WHERE id > ?1 " \
	"AND id < ?2 AND (?3 = '' OR host = ?3) " \
	"AND (?4 = '' OR partition = ?4) AND (?5 = '' OR event = ?5) " \
	"AND (?6 = '' OR reason = ?6) AND time_ms >= ?7 AND time_ms <= ?8 "
static const char q_find_asc[] = AUDIT_FIND "ORDER BY id LIMIT ?9";
static const char q_find_desc[] = AUDIT_FIND "ORDER BY id DESC LIMIT ?9";

static int check_filter(const struct store_audit_filter *f, unsigned limit,
			struct parley_err *err)
{
	const struct {
		const char *what, *v;
	} names[] = {
		{ "filter.host", f->host }, { "filter.partition", f->partition },
		{ "filter.event", f->event }, { "filter.reason", f->reason },
	};
	int rc = db_check_limit(limit, err);
	for (size_t i = 0; rc == 0 && i < sizeof(names) / sizeof(*names); i++)
		rc = db_check_opt_name(names[i].what, names[i].v, err);
	if (rc == 0 && (f->since_ms < 0 || f->until_ms < 0))
		rc = perr(err, -EINVAL, "filter: a negative time");
	return rc;
}

int store_audit_find(struct store *s, const struct store_audit_filter *f,
		     unsigned limit, store_audit_cb cb, void *ctx,
		     struct parley_err *err)
{
	struct db_stmt *st;
	int rc = check_filter(f, limit, err);
	if (rc < 0)
		return rc;
	if (f->after_id > INT64_MAX)
		return 0;
	rc = db_prep(s, f->newest_first ? q_find_desc : q_find_asc, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, (int64_t)f->after_id);
	db_bind_i64(st, 2, f->before_id && f->before_id <= INT64_MAX
				   ? (int64_t)f->before_id : INT64_MAX);
	db_bind_text(st, 3, nz(f->host));
	db_bind_text(st, 4, nz(f->partition));
	db_bind_text(st, 5, nz(f->event));
	db_bind_text(st, 6, nz(f->reason));
	db_bind_i64(st, 7, f->since_ms);
	db_bind_i64(st, 8, f->until_ms ? f->until_ms : INT64_MAX);
	db_bind_i64(st, 9, limit);
	return pass_rows(s, st, "find audit", cb, ctx, err);
}

/* ---- verification ---- */

struct walk {
	struct chain c;          /* the last good row */
	uint64_t rows;
};

static int bad(struct store *s, uint64_t id, uint64_t *first_bad,
	       struct parley_err *err, const char *why)
{
	*first_bad = id;
	return perr(err, -EBADMSG, "store %s: audit row %llu: %s", s->path,
		    (unsigned long long)id, why);
}

static int verify_row(struct store *s, const struct store_audit *r,
		      struct walk *w, uint64_t *first_bad,
		      struct parley_err *err)
{
	const char *f[AUDIT_NFIELDS] = { r->host, r->event, r->partition,
					 r->channel, r->reason, r->file,
					 r->detail };
	uint8_t h[STORE_DIGEST];
	if (r->id != w->c.id + 1)
		return bad(s, w->c.id + 1, first_bad, err, r->id > w->c.id + 1 ?
			   "missing (a gap in the ids)" : "out of order");
	if (memcmp(r->prev_hash, w->c.hash, STORE_DIGEST) != 0)
		return bad(s, r->id, first_bad, err, "prev_hash does not link "
			   "to the row before it");
	if (audit_hash(s, w->c.hash, r->id, r->time_ms, f, h) < 0 ||
	    memcmp(h, r->hash, STORE_DIGEST) != 0)
		return bad(s, r->id, first_bad, err, "its contents do not "
			   "match its hash (edited)");
	w->c.id = r->id;
	memcpy(w->c.hash, h, STORE_DIGEST);
	w->rows++;
	return 0;
}

/* A tail cut off, or rows added behind the store's back, show as a head
 * that disagrees with the last row. */
static int verify_head(struct store *s, const struct walk *w,
		       uint64_t *first_bad, struct parley_err *err)
{
	struct chain head;
	int rc = head_load(s, &head, err);
	if (rc < 0)
		return rc;
	if (head.id > w->c.id)
		return bad(s, w->c.id + 1, first_bad, err, "missing (the "
			   "chain's head says it exists)");
	if (head.id < w->c.id)
		return bad(s, head.id + 1, first_bad, err, "beyond the chain's "
			   "head (added behind the store's back)");
	if (memcmp(head.hash, w->c.hash, STORE_DIGEST) != 0)
		return bad(s, head.id, first_bad, err, "does not match the "
			   "chain's head");
	return 0;
}

/* Rows 1..limit (in id order) each checked against the one before. */
static int walk_rows(struct store *s, int64_t limit, struct walk *w,
		     uint64_t *first_bad, struct parley_err *err)
{
	struct db_stmt *st;
	struct store_audit r;
	int rc = db_prep(s, q_walk, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, 0);
	db_bind_i64(st, 2, limit);
	while ((rc = db_step(s, st, "verify audit", err)) == 1) {
		rc = audit_row(s, st, &r, err);
		if (rc < 0)
			*first_bad = r.id;
		else
			rc = verify_row(s, &r, w, first_bad, err);
		if (rc < 0)
			break;
	}
	db_reset(st);
	return rc < 0 ? rc : 0;
}

static int verify(struct store *s, struct walk *w, uint64_t *first_bad,
		  struct parley_err *err)
{
	int rc = walk_rows(s, INT64_MAX, w, first_bad, err);
	return rc < 0 ? rc : verify_head(s, w, first_bad, err);
}

int store_audit_verify(struct store *s, uint64_t *first_bad, uint64_t *rows,
		       struct parley_err *err)
{
	struct walk w = { 0 };
	uint64_t fb = 0;
	int rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = db_rd_end(s, verify(s, &w, &fb, err), err);
	if (first_bad)
		*first_bad = fb;
	if (rows)
		*rows = w.rows;
	return rc;
}

/* ---- the head, and verification up to a checkpoint ---- */

int store_audit_head(struct store *s, uint64_t *id,
		     uint8_t hash[STORE_DIGEST], struct parley_err *err)
{
	struct chain c;
	int rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = db_rd_end(s, head_load(s, &c, err), err);
	*id = rc == 0 ? c.id : 0;
	memcpy(hash, rc == 0 ? c.hash : (uint8_t[STORE_DIGEST]){ 0 },
	       STORE_DIGEST);
	return rc;
}

/* Rows 1..id only: what came after the checkpoint is not its business
 * (store_audit_verify covers the whole chain). */
static int verify_to(struct store *s, uint64_t id, const uint8_t *hash,
		     struct walk *w, uint64_t *first_bad,
		     struct parley_err *err)
{
	int rc = walk_rows(s, (int64_t)id, w, first_bad, err);
	if (rc < 0)
		return rc;
	if (w->c.id != id)
		return bad(s, w->c.id + 1, first_bad, err, "missing (the "
			   "checkpoint covers it)");
	if (memcmp(w->c.hash, hash, STORE_DIGEST) != 0)
		return bad(s, id, first_bad, err, "its hash is not the one the "
			   "checkpoint signed (history rewritten)");
	return 0;
}

int store_audit_verify_to(struct store *s, uint64_t id,
			  const uint8_t hash[STORE_DIGEST],
			  uint64_t *first_bad, struct parley_err *err)
{
	struct walk w = { 0 };
	uint64_t fb = 0;
	if (id == 0 || id > INT64_MAX)
		return perr(err, -EINVAL, "checkpoint id %llu out of range",
			    (unsigned long long)id);
	int rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = db_rd_end(s, verify_to(s, id, hash, &w, &fb, err), err);
	if (first_bad)
		*first_bad = fb;
	return rc;
}
