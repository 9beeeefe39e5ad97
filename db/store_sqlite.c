/*
 * The SQLite backend: the embedded default (`--store sqlite:PATH`). The
 * only file besides migrations' identity strings that speaks SQLite: its
 * API, its result codes, its pragmas and its commit hook.
 */
#include "db/store_int.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* A writer waiting for another (a second parleyd, a checkpoint) gives up
 * after this long with -EAGAIN; long enough for any batch we write. */
#define BUSY_TIMEOUT_MS 5000

struct lite_stmt {
	struct db_stmt base;
	sqlite3_stmt *st;
};

static sqlite3 *conn(struct store *s)
{
	return s->conn;
}

static sqlite3_stmt *raw(struct db_stmt *st)
{
	return ((struct lite_stmt *)st)->st;
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
		int e = s && s->conn ? sqlite3_system_errno(conn(s)) : 0;
		return e > 0 ? -e : -EACCES;
	}
	}
	return -EIO;
}

/* SQLite's result code as a negative errno, with "store P: what: msg". */
static int sqlerr(struct store *s, int rc, const char *what,
		  struct parley_err *err)
{
	const char *msg = s && s->conn ? sqlite3_errmsg(conn(s))
				       : sqlite3_errstr(rc);
	return perr(err, errno_of(s, rc), "store %s: %s: %s",
		    s && s->path ? s->path : "?", what, msg);
}

static int lite_exec(struct store *s, const char *sql, struct parley_err *err)
{
	int rc = sqlite3_exec(conn(s), sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(s, rc, sql, err);
	return 0;
}

/* ---- statements ---- */

static int lite_prepare(struct store *s, const char *sql, struct db_stmt **out,
			struct parley_err *err)
{
	struct lite_stmt *l = calloc(1, sizeof(*l));
	if (!l)
		return perr(err, -ENOMEM, "store: out of memory");
	l->base.ops = &db_sqlite_ops;
	int rc = sqlite3_prepare_v3(conn(s), sql, -1,
				    SQLITE_PREPARE_PERSISTENT, &l->st, NULL);
	if (rc != SQLITE_OK) {
		free(l);
		return sqlerr(s, rc, "prepare", err);
	}
	*out = &l->base;
	return 0;
}

static void lite_finalize(struct db_stmt *st)
{
	if (!st)
		return;
	sqlite3_finalize(raw(st));
	free(st);
}

static void lite_reset(struct db_stmt *st)
{
	sqlite3_reset(raw(st));
	sqlite3_clear_bindings(raw(st));
}

static int lite_step(struct store *s, struct db_stmt *st, const char *what,
		     struct parley_err *err)
{
	int rc = sqlite3_step(raw(st));
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sqlerr(s, sqlite3_extended_errcode(conn(s)), what, err);
}

/* Binding borrows the bytes (SQLITE_STATIC); fails only on a programming
 * error (index out of range), which aborts. */
static void lite_bind_text(struct db_stmt *st, int i, const char *v,
			   size_t len)
{
	int rc = sqlite3_bind_text(raw(st), i, v, (int)len, SQLITE_STATIC);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

static void lite_bind_blob(struct db_stmt *st, int i, const void *p,
			   size_t len)
{
	int rc = sqlite3_bind_blob(raw(st), i, p, (int)len, SQLITE_STATIC);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

static void lite_bind_i64(struct db_stmt *st, int i, int64_t v)
{
	int rc = sqlite3_bind_int64(raw(st), i, v);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

static void lite_bind_null(struct db_stmt *st, int i)
{
	int rc = sqlite3_bind_null(raw(st), i);
	PARLEY_ASSERT(rc == SQLITE_OK);
}

static int lite_bind_count(struct db_stmt *st)
{
	return sqlite3_bind_parameter_count(raw(st));
}

static int64_t lite_col_i64(struct db_stmt *st, int i)
{
	return sqlite3_column_int64(raw(st), i);
}

static const char *lite_col_text(struct db_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(raw(st), i);
}

static const void *lite_col_blob(struct db_stmt *st, int i)
{
	return sqlite3_column_blob(raw(st), i);
}

static size_t lite_col_bytes(struct db_stmt *st, int i)
{
	return (size_t)sqlite3_column_bytes(raw(st), i);
}

static bool lite_col_isnull(struct db_stmt *st, int i)
{
	return sqlite3_column_type(raw(st), i) == SQLITE_NULL;
}

static const char *lite_col_name(struct db_stmt *st, int i)
{
	const char *n = sqlite3_column_name(raw(st), i);
	return n ? n : "?";
}

static int64_t lite_changes(struct store *s)
{
	return sqlite3_changes64(conn(s));
}

static bool lite_in_tx(struct store *s)
{
	return !sqlite3_get_autocommit(conn(s));
}

/* ---- transactions ---- */

static int lite_begin_write(struct store *s, struct parley_err *err)
{
	return lite_exec(s, "BEGIN IMMEDIATE", err);
}

/* The BEGIN alone without a busy timeout: once it holds the write lock,
 * nothing else in the transaction waits for another writer (WAL). */
static int lite_try_write(struct store *s, struct parley_err *err)
{
	sqlite3_busy_timeout(conn(s), 0);
	int rc = sqlite3_exec(conn(s), "BEGIN IMMEDIATE", NULL, NULL, NULL);
	sqlite3_busy_timeout(conn(s), BUSY_TIMEOUT_MS);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return perr(err, -EBUSY, "store %s: another writer holds "
			    "the lock", s->path);
	return rc == SQLITE_OK ? 0 : sqlerr(s, rc, "BEGIN IMMEDIATE", err);
}

/* Moves when another connection (another process, another replica, a
 * second handle) committed; this connection's own commits leave it. */
static int lite_data_version(struct store *s, uint64_t *v,
			     struct parley_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(conn(s), "PRAGMA data_version", -1, &st,
				    NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = (uint64_t)sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : sqlerr(s, rc, "PRAGMA data_version", err);
}

/* query_only: a write inside (one-statement writes do not pass
 * db_op_begin) fails with -EROFS rather than turning the snapshot into a
 * write transaction that holds the lock. */
static int lite_begin_read(struct store *s, struct parley_err *err)
{
	int rc = lite_exec(s, "PRAGMA query_only = 1", err);
	if (rc == 0 && (rc = lite_exec(s, "BEGIN DEFERRED", err)) < 0)
		sqlite3_exec(conn(s), "PRAGMA query_only = 0", NULL, NULL,
			     NULL);
	return rc;
}

static void lite_end_read(struct store *s)
{
	/* Nothing was written: ending it cannot lose anything. */
	if (lite_in_tx(s) &&
	    sqlite3_exec(conn(s), "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sqlite3_exec(conn(s), "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(conn(s), "PRAGMA query_only = 0", NULL, NULL, NULL);
}

/* ---- open / close ---- */

static int pragma_wal(struct store *s, struct parley_err *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(conn(s), "PRAGMA journal_mode=WAL", -1,
				    &st, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(s, rc, "journal_mode", err);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		rc = sqlerr(s, sqlite3_extended_errcode(conn(s)),
			    "journal_mode", err);
	} else {
		const char *mode = rc == SQLITE_ROW
			? (const char *)sqlite3_column_text(st, 0) : NULL;
		rc = 0;
		if (!mode || strcmp(mode, "wal") != 0)
			rc = perr(err, -ENOTSUP, "store %s: cannot use WAL "
				  "here (journal mode stays \"%s\")", s->path,
				  mode ? mode : "");
	}
	sqlite3_finalize(st);
	return rc;
}

/* Foreign keys are off by default in SQLite and can only change outside
 * a transaction: set once per connection. synchronous=FULL makes every
 * commit durable before it returns (acknowledged = on disk). */
static int configure(struct store *s, struct parley_err *err)
{
	sqlite3_busy_timeout(conn(s), BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(conn(s), 1);
	int rc = lite_exec(s, "PRAGMA foreign_keys=ON", err);
	if (rc == 0)
		rc = pragma_wal(s, err);
	if (rc == 0)
		rc = lite_exec(s, "PRAGMA synchronous=FULL", err);
	return rc;
}

static int on_commit(void *arg)
{
	db_commit_notify(arg);
	return 0; /* never veto the commit */
}

static int lite_open(struct store *s, const char *path,
		     struct parley_err *err)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		    SQLITE_OPEN_NOMUTEX;
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	s->conn = db;
	if (rc != SQLITE_OK)
		return sqlerr(s, rc, "open", err);
	rc = configure(s, err);
	/* SQLite reads the header at the first statement. */
	if (rc < 0 && sqlite3_errcode(db) == SQLITE_NOTADB)
		rc = perr(err, -EINVAL, "store %s: not a parley store (not "
			  "an SQLite database)", path);
	/* The hook only forwards "a transaction is committing" to the
	 * store's watch (store_watch.c), which reads nothing inside. */
	if (rc == 0)
		sqlite3_commit_hook(db, on_commit, s);
	return rc;
}

static void lite_close(struct store *s)
{
	if (!s->conn)
		return;
	if (lite_in_tx(s))
		sqlite3_exec(conn(s), "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close_v2(conn(s));
	s->conn = NULL;
}

/* The schema is written in SQLite's types already. */
static char *lite_ddl(const char *portable)
{
	return strdup(portable);
}

const struct db_ops db_sqlite_ops = {
	.name = "sqlite",
	.open = lite_open,
	.close = lite_close,
	.prepare = lite_prepare,
	.finalize = lite_finalize,
	.reset = lite_reset,
	.step = lite_step,
	.bind_text = lite_bind_text,
	.bind_blob = lite_bind_blob,
	.bind_i64 = lite_bind_i64,
	.bind_null = lite_bind_null,
	.bind_count = lite_bind_count,
	.col_i64 = lite_col_i64,
	.col_text = lite_col_text,
	.col_blob = lite_col_blob,
	.col_bytes = lite_col_bytes,
	.col_isnull = lite_col_isnull,
	.col_name = lite_col_name,
	.changes = lite_changes,
	.exec = lite_exec,
	.in_tx = lite_in_tx,
	.begin_write = lite_begin_write,
	.try_write = lite_try_write,
	.data_version = lite_data_version,
	.begin_read = lite_begin_read,
	.end_read = lite_end_read,
	.rd_begin_sql = NULL, /* a savepoint opens one */
	/* The JSON functions are built in (3.38 and later; Debian 12 has
	 * 3.40); the subquery's rows drive the column's index. */
	.name_list = "IN (SELECT value FROM json_each(?1))",
	.ddl = lite_ddl,
	/* "Prly" in the SQLite header: a parley store, not some other
	 * database (1349676153 = 0x50726c79). */
	.q_app = "PRAGMA application_id",
	.q_any = "SELECT COUNT(*) FROM sqlite_master",
	.app_set = "PRAGMA application_id = 1349676153",
	.q_tables = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
};
