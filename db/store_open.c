/*
 * Opening and closing the store, the statement cache, SQLite results as
 * errno values, and the transaction discipline every operation follows.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A writer waiting for another (a second parleyd, a checkpoint) gives up
 * after this long with -EAGAIN; long enough for any batch we write. */
#define BUSY_TIMEOUT_MS 5000

int64_t db_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- errors ---- */

static int errno_of(struct store *s, int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE:
		return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return -ENOENT;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EAGAIN;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_MISMATCH:
		return -EBADMSG;
	case SQLITE_CONSTRAINT:
		return -EINVAL;
	case SQLITE_CANTOPEN: {
		int e = s && s->db ? sqlite3_system_errno(s->db) : 0;
		return e > 0 ? -e : -EACCES;
	}
	}
	return -EIO;
}

int db_sqlerr(struct store *s, int rc, const char *what,
	      struct parley_err *err)
{
	const char *msg = s && s->db ? sqlite3_errmsg(s->db)
				     : sqlite3_errstr(rc);
	return perr(err, errno_of(s, rc), "store %s: %s: %s",
		    s && s->path ? s->path : "?", what, msg);
}

int db_exec(struct store *s, const char *sql, struct parley_err *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(s, rc, sql, err);
	return 0;
}

/* ---- statements ---- */

static unsigned slot_of(const char *sql)
{
	uint64_t h = (uint64_t)(uintptr_t)sql * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % STORE_STMT_SLOTS;
}

int db_prep(struct store *s, const char *sql, sqlite3_stmt **st,
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
		int rc = sqlite3_prepare_v3(s->db, sql, -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &e->st, NULL);
		if (rc != SQLITE_OK) {
			e->st = NULL;
			return db_sqlerr(s, rc, "prepare", err);
		}
		e->sql = sql;
		*st = e->st;
		return 0;
	}
	/* More statements than slots: raise STORE_STMT_SLOTS. */
	PARLEY_ASSERT(!"statement cache full");
	return -ENOMEM;
}

void db_reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int db_step(struct store *s, sqlite3_stmt *st, const char *what,
	    struct parley_err *err)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_sqlerr(s, sqlite3_extended_errcode(s->db), what, err);
}

int db_run(struct store *s, sqlite3_stmt *st, const char *what,
	   struct parley_err *err)
{
	int rc;
	while ((rc = db_step(s, st, what, err)) == 1)
		;
	db_reset(st);
	return rc;
}

int db_int(struct store *s, sqlite3_stmt *st, const char *what, int64_t *v,
	   struct parley_err *err)
{
	int rc = db_step(s, st, what, err);
	if (rc == 1)
		*v = sqlite3_column_int64(st, 0);
	else if (rc == 0)
		*v = 0;
	db_reset(st);
	return rc < 0 ? rc : 0;
}

void db_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	int rc = sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

void db_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	int rc = p ? sqlite3_bind_blob(st, i, p, (int)len, SQLITE_STATIC)
		   : sqlite3_bind_null(st, i);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

void db_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	int rc = sqlite3_bind_int64(st, i, v);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

const char *db_col_str(sqlite3_stmt *st, int i)
{
	const char *v = (const char *)sqlite3_column_text(st, i);
	return v ? v : "";
}

int db_col_name(struct store *s, sqlite3_stmt *st, int i, char *buf,
		size_t cap, struct parley_err *err)
{
	const char *v = db_col_str(st, i);
	size_t len = strlen(v);
	if (len >= cap)
		return perr(err, -EBADMSG, "store %s: column %s holds %zu "
			    "bytes, at most %zu", s->path,
			    sqlite3_column_name(st, i), len, cap - 1);
	memcpy(buf, v, len + 1);
	return 0;
}

int db_col_digest(struct store *s, sqlite3_stmt *st, int i, uint8_t *out,
		  struct parley_err *err)
{
	const void *p = sqlite3_column_blob(st, i);
	int len = sqlite3_column_bytes(st, i);
	if (!p || len != STORE_DIGEST)
		return perr(err, -EBADMSG, "store %s: column %s holds %d "
			    "bytes, not a SHA-256", s->path,
			    sqlite3_column_name(st, i), len);
	memcpy(out, p, STORE_DIGEST);
	return 0;
}

/* ---- transactions ---- */

/* Undo after a failure; its own error would hide the one that matters. */
static void exec_quiet(struct store *s, const char *sql)
{
	sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

int db_op_begin(struct store *s, struct parley_err *err)
{
	if (s->reading)
		return perr(err, -EBUSY, "store %s: a write inside a read "
			    "snapshot", s->path);
	return db_exec(s, s->batch ? "SAVEPOINT store_op" : "BEGIN IMMEDIATE",
		       err);
}

static int op_end_batch(struct store *s, int rc, struct parley_err *err)
{
	/* SQLite abandons the whole transaction on some errors (disk full,
	 * I/O): the savepoint is gone too; store_commit reports it. */
	if (sqlite3_get_autocommit(s->db))
		return rc < 0 ? rc : perr(err, -EIO, "store %s: the batch "
					  "was rolled back", s->path);
	if (rc < 0)
		exec_quiet(s, "ROLLBACK TO store_op");
	int r = db_exec(s, "RELEASE store_op", rc < 0 ? NULL : err);
	return rc < 0 ? rc : r < 0 ? r : rc;
}

int db_op_end(struct store *s, int rc, struct parley_err *err)
{
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

int db_rd_begin(struct store *s, struct parley_err *err)
{
	return db_exec(s, "SAVEPOINT store_rd", err);
}

int db_rd_end(struct store *s, int rc, struct parley_err *err)
{
	if (sqlite3_get_autocommit(s->db))
		return rc;
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
	int rc = db_exec(s, "BEGIN IMMEDIATE", err);
	if (rc == 0)
		s->batch = true;
	return rc;
}

int store_read_begin(struct store *s, struct parley_err *err)
{
	if (s->batch || s->reading)
		return perr(err, -EBUSY, "store %s: a read snapshot inside a "
			    "%s", s->path, s->batch ? "batch" : "snapshot");
	/* query_only: a write inside (one-statement writes do not pass
	 * db_op_begin) fails with -EROFS rather than turning the snapshot
	 * into a write transaction that holds the lock. */
	int rc = db_exec(s, "PRAGMA query_only = 1", err);
	if (rc == 0 && (rc = db_exec(s, "BEGIN DEFERRED", err)) < 0)
		exec_quiet(s, "PRAGMA query_only = 0");
	if (rc == 0)
		s->reading = true;
	return rc;
}

void store_read_end(struct store *s)
{
	if (!s->reading)
		return;
	s->reading = false;
	/* Nothing was written: ending it cannot lose anything. */
	if (!sqlite3_get_autocommit(s->db) &&
	    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		exec_quiet(s, "ROLLBACK");
	exec_quiet(s, "PRAGMA query_only = 0");
}


int store_commit(struct store *s, struct parley_err *err)
{
	if (!s->batch)
		return perr(err, -EINVAL, "store %s: commit without a batch",
			    s->path);
	s->batch = false;
	if (sqlite3_get_autocommit(s->db))
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
	if (sqlite3_get_autocommit(s->db))
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

static int pragma_wal(struct store *s, struct parley_err *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(s, rc, "journal_mode", err);
	rc = db_step(s, st, "journal_mode", err);
	const char *mode = rc == 1 ? db_col_str(st, 0) : "";
	if (rc == 1 && strcmp(mode, "wal") != 0)
		rc = perr(err, -ENOTSUP, "store %s: cannot use WAL here "
			  "(journal mode stays \"%s\")", s->path, mode);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

/* Foreign keys are off by default in SQLite and can only change outside
 * a transaction: set once per connection. synchronous=FULL makes every
 * commit durable before it returns (acknowledged = on disk). */
static int configure(struct store *s, struct parley_err *err)
{
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(s->db, 1);
	int rc = db_exec(s, "PRAGMA foreign_keys=ON", err);
	if (rc == 0)
		rc = pragma_wal(s, err);
	if (rc == 0)
		rc = db_exec(s, "PRAGMA synchronous=FULL", err);
	return rc;
}

static int open_db(struct store *s, const char *path, struct parley_err *err)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		    SQLITE_OPEN_NOMUTEX;
	int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(s, rc, "open", err);
	rc = configure(s, err);
	/* SQLite reads the header at the first statement. */
	if (rc < 0 && sqlite3_errcode(s->db) == SQLITE_NOTADB)
		rc = perr(err, -EINVAL, "store %s: not a parley store (not "
			  "an SQLite database)", path);
	return rc;
}

static struct store *store_alloc(const char *path)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->path = strdup(path);
	s->md = EVP_MD_CTX_new();
	s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!s->path || !s->md || !s->sha256) {
		store_close(s);
		return NULL;
	}
	return s;
}

int store_open_upto(const char *path, unsigned upto, struct store **out,
		    struct parley_err *err)
{
	*out = NULL;
	if (!path || !path[0])
		return perr(err, -EINVAL, "store: empty path");
	struct store *s = store_alloc(path);
	if (!s)
		return perr(err, -ENOMEM, "store %s: out of memory", path);
	int rc = open_db(s, path, err);
	if (rc == 0)
		rc = db_migrate(s, upto, err);
	if (rc < 0) {
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int store_open(const char *path, struct store **out, struct parley_err *err)
{
	return store_open_upto(path, store_schema_latest(), out, err);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < STORE_STMT_SLOTS; i++)
		sqlite3_finalize(s->stmt[i].st);
	if (s->db && !sqlite3_get_autocommit(s->db))
		exec_quiet(s, "ROLLBACK");
	if (s->db)
		sqlite3_close_v2(s->db);
	EVP_MD_CTX_free(s->md);
	EVP_MD_free(s->sha256);
	free(s->path);
	free(s);
}

int db_rows(struct store *s, sqlite3_stmt *st, const char *what, size_t elem,
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
		 const char *by_host, sqlite3_stmt **st,
		 struct parley_err *err)
{
	int rc = host ? db_check_name("host name", host, err) : 0;
	if (rc == 0)
		rc = db_prep(s, host ? by_host : all, st, err);
	if (rc == 0 && host)
		db_bind_text(*st, 1, host);
	return rc;
}
