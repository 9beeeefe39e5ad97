/*
 * Opening and closing the store (either backend, by its URI), the
 * statement cache, the db_* helpers every area calls, and the transaction
 * discipline every operation follows. Engine-neutral: the engines are
 * store_sqlite.c and store_pg.c.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t db_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- statements ---- */

int db_exec(struct store *s, const char *sql, struct parley_err *err)
{
	return s->ops->exec(s, sql, err);
}

static unsigned slot_of(const char *sql)
{
	uint64_t h = (uint64_t)(uintptr_t)sql * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % STORE_STMT_SLOTS;
}

int db_prep(struct store *s, const char *sql, struct db_stmt **st,
	    struct parley_err *err)
{
	unsigned i = slot_of(sql);
	for (unsigned probe = 0; probe < STORE_STMT_SLOTS; probe++) {
		struct store_stmt *e = &s->stmt[(i + probe) % STORE_STMT_SLOTS];
		if (e->sql == sql) {
			*st = e->st;
			return 0;
		}
		if (e->sql)
			continue;
		int rc = s->ops->prepare(s, sql, &e->st, err);
		if (rc < 0) {
			e->st = NULL;
			return rc;
		}
		e->sql = sql;
		*st = e->st;
		return 0;
	}
	/* More statements than slots: raise STORE_STMT_SLOTS. */
	PARLEY_ASSERT(!"statement cache full");
	return -ENOMEM;
}

void db_reset(struct db_stmt *st)
{
	st->ops->reset(st);
}

int db_step(struct store *s, struct db_stmt *st, const char *what,
	    struct parley_err *err)
{
	return s->ops->step(s, st, what, err);
}

int db_run(struct store *s, struct db_stmt *st, const char *what,
	   struct parley_err *err)
{
	int rc;
	while ((rc = db_step(s, st, what, err)) == 1)
		;
	db_reset(st);
	return rc;
}

int db_run_deferred(struct store *s, struct db_stmt *st, const char *what,
		    struct parley_err *err)
{
	if (!s->ops->run_deferred || db_autocommit(s))
		return db_run(s, st, what, err);
	return s->ops->run_deferred(s, st, what, err);
}

int db_int(struct store *s, struct db_stmt *st, const char *what, int64_t *v,
	   struct parley_err *err)
{
	int rc = db_step(s, st, what, err);
	if (rc == 1)
		*v = db_col_i64(st, 0);
	else if (rc == 0)
		*v = 0;
	db_reset(st);
	return rc < 0 ? rc : 0;
}

void db_bind_text(struct db_stmt *st, int i, const char *v)
{
	v = v ? v : "";
	st->ops->bind_text(st, i, v, strlen(v));
}

void db_bind_textn(struct db_stmt *st, int i, const char *v, size_t len)
{
	st->ops->bind_text(st, i, v ? v : "", v ? len : 0);
}

void db_bind_blob(struct db_stmt *st, int i, const void *p, size_t len)
{
	if (p)
		st->ops->bind_blob(st, i, p, len);
	else
		st->ops->bind_null(st, i);
}

void db_bind_i64(struct db_stmt *st, int i, int64_t v)
{
	st->ops->bind_i64(st, i, v);
}

void db_bind_null(struct db_stmt *st, int i)
{
	st->ops->bind_null(st, i);
}

int db_bind_count(struct db_stmt *st)
{
	return st->ops->bind_count(st);
}

const char *db_col_str(struct db_stmt *st, int i)
{
	const char *v = st->ops->col_text(st, i);
	return v ? v : "";
}

int64_t db_col_i64(struct db_stmt *st, int i)
{
	return st->ops->col_i64(st, i);
}

int db_col_int(struct db_stmt *st, int i)
{
	return (int)st->ops->col_i64(st, i);
}

const void *db_col_blob(struct db_stmt *st, int i)
{
	return st->ops->col_blob(st, i);
}

size_t db_col_bytes(struct db_stmt *st, int i)
{
	return st->ops->col_bytes(st, i);
}

bool db_col_isnull(struct db_stmt *st, int i)
{
	return st->ops->col_isnull(st, i);
}

const char *db_col_label(struct db_stmt *st, int i)
{
	return st->ops->col_name(st, i);
}

int64_t db_changes(struct store *s)
{
	return s->ops->changes(s);
}

bool db_autocommit(struct store *s)
{
	return !s->ops->in_tx(s);
}

void db_commit_notify(struct store *s)
{
	s->commits++;
	if (s->hook)
		s->hook(s->hook_ctx);
}

int db_col_name(struct store *s, struct db_stmt *st, int i, char *buf,
		size_t cap, struct parley_err *err)
{
	const char *v = db_col_str(st, i);
	size_t len = strlen(v);
	if (len >= cap)
		return perr(err, -EBADMSG, "store %s: column %s holds %zu "
			    "bytes, at most %zu", s->path,
			    db_col_label(st, i), len, cap - 1);
	memcpy(buf, v, len + 1);
	return 0;
}

int db_col_digest(struct store *s, struct db_stmt *st, int i, uint8_t *out,
		  struct parley_err *err)
{
	const void *p = db_col_blob(st, i);
	size_t len = db_col_bytes(st, i);
	if (!p || len != STORE_DIGEST)
		return perr(err, -EBADMSG, "store %s: column %s holds %zu "
			    "bytes, not a SHA-256", s->path,
			    db_col_label(st, i), len);
	memcpy(out, p, STORE_DIGEST);
	return 0;
}

/* ---- transactions ---- */

/* Undo after a failure; its own error would hide the one that matters. */
static void exec_quiet(struct store *s, const char *sql)
{
	s->ops->exec(s, sql, NULL);
}

int db_op_begin(struct store *s, struct parley_err *err)
{
	if (s->reading)
		return perr(err, -EBUSY, "store %s: a write inside a read "
			    "snapshot", s->path);
	int rc = s->batch ? db_exec(s, "SAVEPOINT store_op", err)
			  : s->ops->begin_write(s, err);
	s->in_op = rc == 0;
	return rc;
}

int db_note_changed(struct store *s, struct parley_err *err)
{
	return s->ops->notify ? s->ops->notify(s, err) : 0;
}

int store_listen(struct store *s, int *fd, struct parley_err *err)
{
	*fd = -1;
	if (!s->ops->listen)
		return perr(err, -ENOTSUP, "store %s: %s has no change "
			    "notifications (the daemon polls)", s->path,
			    s->ops->name);
	return s->ops->listen(s, fd, err);
}

int store_listen_take(struct store *s, struct parley_err *err)
{
	if (!s->ops->listen_take)
		return perr(err, -ENOTSUP, "store %s: not listening", s->path);
	return s->ops->listen_take(s, err);
}

void store_unlisten(struct store *s)
{
	if (s && s->ops->unlisten)
		s->ops->unlisten(s);
}

int db_op_try_begin(struct store *s, struct parley_err *err)
{
	if (s->batch || s->reading)
		return db_op_begin(s, err);
	int rc = s->ops->try_write(s, err);
	s->in_op = rc == 0;
	return rc;
}

static int op_end_batch(struct store *s, int rc, struct parley_err *err)
{
	/* SQLite abandons the whole transaction on some errors (disk full,
	 * I/O): the savepoint is gone too; store_commit reports it. */
	if (db_autocommit(s))
		return rc < 0 ? rc : perr(err, -EIO, "store %s: the batch "
					  "was rolled back", s->path);
	if (rc < 0)
		exec_quiet(s, "ROLLBACK TO store_op");
	int r = db_exec(s, "RELEASE store_op", rc < 0 ? NULL : err);
	return rc < 0 ? rc : r < 0 ? r : rc;
}

int db_op_end(struct store *s, int rc, struct parley_err *err)
{
	s->in_op = false;
	if (s->batch)
		return op_end_batch(s, rc, err);
	if (rc < 0) {
		exec_quiet(s, "ROLLBACK");
		return rc;
	}
	int c = db_exec(s, "COMMIT", err);
	if (c < 0) {
		exec_quiet(s, "ROLLBACK");
		return c;
	}
	return rc;
}

/* SQLite: a savepoint, which opens a transaction when none is. PG: a
 * savepoint only exists inside one, so outside it opens a snapshot of
 * its own (rd_begin_sql) and db_rd_end closes it. */
int db_rd_begin(struct store *s, struct parley_err *err)
{
	if (s->ops->rd_begin_sql && db_autocommit(s)) {
		int rc = db_exec(s, s->ops->rd_begin_sql, err);
		s->rd_own = rc == 0;
		return rc;
	}
	return db_exec(s, "SAVEPOINT store_rd", err);
}

int db_rd_end(struct store *s, int rc, struct parley_err *err)
{
	if (db_autocommit(s)) {
		s->rd_own = false;
		return rc;
	}
	if (s->rd_own) {
		s->rd_own = false;
		/* Nothing was written: ending it cannot lose anything. */
		exec_quiet(s, rc < 0 ? "ROLLBACK" : "COMMIT");
		return rc;
	}
	/* After an error PG refuses everything until the savepoint is
	 * rolled back to; on SQLite this undoes nothing (a read). */
	if (rc < 0)
		exec_quiet(s, "ROLLBACK TO store_rd");
	int r = db_exec(s, "RELEASE store_rd", rc < 0 ? NULL : err);
	return rc < 0 ? rc : r < 0 ? r : rc;
}

int store_begin(struct store *s, struct parley_err *err)
{
	if (s->reading)
		return perr(err, -EBUSY, "store %s: a batch inside a read "
			    "snapshot", s->path);
	if (s->batch)
		return perr(err, -EBUSY, "store %s: a batch is already open "
			    "(batches do not nest)", s->path);
	int rc = s->ops->begin_write(s, err);
	if (rc == 0)
		s->batch = true;
	return rc;
}

int store_mark(struct store *s, uint64_t *mark, struct parley_err *err)
{
	uint64_t v = 0;
	*mark = 0;
	if (!s->ops->data_version)
		return perr(err, -ENOTSUP, "store %s: %s cannot tell whether "
			    "anything changed", s->path, s->ops->name);
	int rc = s->ops->data_version(s, &v, err);
	/* Both only grow: their sum moves when either does. */
	if (rc == 0)
		*mark = v + s->commits;
	return rc;
}

uint64_t store_own_commits(const struct store *s)
{
	return s->commits;
}

int store_try_begin(struct store *s, struct parley_err *err)
{
	if (s->reading || s->batch)
		return perr(err, -EBUSY, "store %s: a batch inside a batch or "
			    "read snapshot", s->path);
	int rc = s->ops->try_write(s, err);
	if (rc == 0)
		s->batch = true;
	return rc;
}

int store_read_begin(struct store *s, struct parley_err *err)
{
	if (s->batch || s->reading)
		return perr(err, -EBUSY, "store %s: a read snapshot inside a "
			    "%s", s->path, s->batch ? "batch" : "snapshot");
	int rc = s->ops->begin_read(s, err);
	if (rc == 0)
		s->reading = true;
	return rc;
}

void store_read_end(struct store *s)
{
	if (!s->reading)
		return;
	s->reading = false;
	s->ops->end_read(s);
}

int store_commit(struct store *s, struct parley_err *err)
{
	if (!s->batch)
		return perr(err, -EINVAL, "store %s: commit without a batch",
			    s->path);
	s->batch = false;
	if (db_autocommit(s))
		return perr(err, -EIO, "store %s: the batch was rolled back "
			    "by an earlier error; nothing was committed",
			    s->path);
	int rc = db_exec(s, "COMMIT", err);
	if (rc < 0)
		exec_quiet(s, "ROLLBACK");
	return rc;
}

int store_rollback(struct store *s, struct parley_err *err)
{
	if (!s->batch)
		return perr(err, -EINVAL, "store %s: rollback without a batch",
			    s->path);
	s->batch = false;
	if (db_autocommit(s))
		return 0;
	return db_exec(s, "ROLLBACK", err);
}

int store_join_begin(struct store *s, bool *own, struct parley_err *err)
{
	*own = !s->batch;
	return *own ? store_begin(s, err) : 0;
}

int store_join_end(struct store *s, bool own, int rc, struct parley_err *err)
{
	if (!own)
		return rc;
	if (rc == 0)
		return store_commit(s, err);
	store_rollback(s, NULL);
	return rc;
}

/* ---- open / close ---- */

static struct store *store_alloc(void)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->md = EVP_MD_CTX_new();
	s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!s->md || !s->sha256) {
		store_close(s);
		return NULL;
	}
	return s;
}

int store_open_upto(const char *uri, unsigned upto, struct store **out,
		    struct parley_err *err)
{
	*out = NULL;
	if (!uri || !uri[0])
		return perr(err, -EINVAL, "store: empty path");
	struct store *s = store_alloc();
	if (!s)
		return perr(err, -ENOMEM, "store %s: out of memory", uri);
	char *target = NULL;
	int rc = db_uri_parse(uri, &s->kind, &target, &s->path, err);
	if (rc == 0) {
		s->ops = s->kind == DB_PG ? &db_pg_ops : &db_sqlite_ops;
		rc = s->ops->open(s, target, err);
	}
	free(target);
	if (rc == 0)
		rc = db_migrate(s, upto, err);
	if (rc < 0) {
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int store_open(const char *uri, struct store **out, struct parley_err *err)
{
	return store_open_upto(uri, store_schema_latest(), out, err);
}

const char *store_backend(const struct store *s)
{
	return s->ops->name;
}

const char *store_name(const struct store *s)
{
	return s->path;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < STORE_STMT_SLOTS; i++)
		if (s->stmt[i].st)
			s->stmt[i].st->ops->finalize(s->stmt[i].st);
	if (s->ops)
		s->ops->close(s);
	EVP_MD_CTX_free(s->md);
	EVP_MD_free(s->sha256);
	free(s->path);
	free(s);
}

int db_rows(struct store *s, struct db_stmt *st, const char *what, size_t elem,
	    db_row_fn row, void (*drop)(void *elem), void **out,
	    struct parley_err *err)
{
	unsigned n = 0, cap = 0;
	char *l = NULL;
	int rc;
	*out = NULL;
	while ((rc = db_step(s, st, what, err)) == 1) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			void *p = realloc(l, cap * elem);
			if (!p) {
				rc = perr(err, -ENOMEM, "store: out of memory");
				break;
			}
			l = p;
		}
		if ((rc = row(s, st, l + n * elem, err)) < 0)
			break;
		n++;
	}
	db_reset(st);
	if (rc < 0) {
		for (unsigned i = 0; drop && i < n; i++)
			drop(l + i * elem);
		free(l);
		return rc;
	}
	*out = l;
	return (int)n;
}

int db_prep_host(struct store *s, const char *host, const char *all,
		 const char *by_host, struct db_stmt **st,
		 struct parley_err *err)
{
	int rc = host ? db_check_name("host name", host, err) : 0;
	if (rc == 0)
		rc = db_prep(s, host ? by_host : all, st, err);
	if (rc == 0 && host)
		db_bind_text(*st, 1, host);
	return rc;
}
