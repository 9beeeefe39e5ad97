/*
 * Private to db/: the store handle, the prepared-statement cache, one
 * transaction discipline for every operation, and the argument checks the
 * areas share. Nothing outside db/ includes this.
 */
#ifndef PARLEY_DB_STORE_INT_H
#define PARLEY_DB_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>
#include "db/store.h"

/* A prepared statement of either backend. Each backend's statement
 * starts with this header, so the db_* helpers below can dispatch on it
 * without knowing which engine is behind (store_sqlite.c, store_pg.c). */
struct db_ops;
struct db_stmt {
	const struct db_ops *ops;
};

/* Prepared statements, keyed by the address of their SQL text (each is a
 * static string beside the code that runs it). Open addressing; the
 * store has about 70 statements. */
#define STORE_STMT_SLOTS 256

struct store_stmt {
	const char *sql;
	struct db_stmt *st;
};

/* Which engine: `sqlite:PATH` (or a bare path) or `postgresql://...` /
 * `postgres://...` / `postgresql:` + libpq keyword string (store_uri.c). */
enum db_kind { DB_SQLITE, DB_PG };

struct store {
	const struct db_ops *ops;
	void *conn;              /* the backend's connection */
	char *path;              /* for messages: the file, or the URI
				  * without its password */
	enum db_kind kind;
	bool batch;              /* a caller's store_begin is open */
	bool reading;            /* a caller's store_read_begin is open */
	bool rd_own;             /* db_rd_begin opened the transaction (PG) */
	bool in_op;              /* between db_op_begin and db_op_end */
	EVP_MD_CTX *md;          /* reused for the audit chain */
	EVP_MD *sha256;          /* fetched once, not per event */
	uint64_t commits;        /* this connection's commits (store_mark) */
	void (*hook)(void *ctx); /* store_watch_commits */
	void *hook_ctx;
	struct store_stmt stmt[STORE_STMT_SLOTS];
};

/* One backend. Everything engine-specific is behind these; store_open.c
 * holds the cache and the transaction discipline on top of them. */
struct db_ops {
	const char *name;
	int (*open)(struct store *s, const char *target,
		    struct parley_err *err);
	void (*close)(struct store *s);
	int (*prepare)(struct store *s, const char *sql, struct db_stmt **st,
		       struct parley_err *err);
	void (*finalize)(struct db_stmt *st);
	void (*reset)(struct db_stmt *st);      /* and clear bindings */
	int (*step)(struct store *s, struct db_stmt *st, const char *what,
		    struct parley_err *err);
	void (*bind_text)(struct db_stmt *st, int i, const char *v,
			  size_t len);
	void (*bind_blob)(struct db_stmt *st, int i, const void *p,
			  size_t len);
	void (*bind_i64)(struct db_stmt *st, int i, int64_t v);
	void (*bind_null)(struct db_stmt *st, int i);
	int (*bind_count)(struct db_stmt *st);
	int64_t (*col_i64)(struct db_stmt *st, int i);
	const char *(*col_text)(struct db_stmt *st, int i);  /* NULL: null */
	const void *(*col_blob)(struct db_stmt *st, int i);
	size_t (*col_bytes)(struct db_stmt *st, int i);
	bool (*col_isnull)(struct db_stmt *st, int i);
	const char *(*col_name)(struct db_stmt *st, int i);
	int64_t (*changes)(struct store *s);
	/* db_run_deferred (NULL: db_run): may return before the statement
	 * ran; its error then comes from the connection's next statement. */
	int (*run_deferred)(struct store *s, struct db_stmt *st,
			    const char *what, struct parley_err *err);
	int (*exec)(struct store *s, const char *sql, struct parley_err *err);
	bool (*in_tx)(struct store *s);
	/* A write transaction that holds the store's write lock from its
	 * first statement (SQLite: BEGIN IMMEDIATE; PG: see store_pg.c). */
	int (*begin_write)(struct store *s, struct parley_err *err);
	/* begin_write that does not wait: -EBUSY at once when another
	 * writer holds the lock (SQLite: busy timeout 0 for the BEGIN; PG:
	 * pg_try_advisory_xact_lock). */
	int (*try_write)(struct store *s, struct parley_err *err);
	/* Change notifications (NULL: none, the daemon polls): notify inside
	 * a write transaction, delivered to listeners at its commit;
	 * store_listen & co. (store.h). */
	int (*notify)(struct store *s, struct parley_err *err);
	int (*listen)(struct store *s, int *fd, struct parley_err *err);
	int (*listen_take)(struct store *s, struct parley_err *err);
	void (*unlisten)(struct store *s);
	/* A number that moves whenever another connection committed
	 * (SQLite: PRAGMA data_version, which reads no page); NULL: the
	 * backend cannot tell (store_mark is -ENOTSUP). */
	int (*data_version)(struct store *s, uint64_t *v,
			    struct parley_err *err);
	/* A read-only snapshot; end_read closes it (nothing to lose). */
	int (*begin_read)(struct store *s, struct parley_err *err);
	void (*end_read)(struct store *s);
	/* "matches one of the names in the JSON array ?1", after a column
	 * (store_push.c: many hosts' rows in one statement). */
	const char *name_list;
	/* db_rd_begin outside any transaction: a snapshot of its own. */
	const char *rd_begin_sql;
	/* A migration's DDL in this dialect: malloc'd, or NULL (ENOMEM). */
	char *(*ddl)(const char *portable);
	/* The file's identity: the parley id (0 when unmarked), any table at
	 * all; and the statement that marks a fresh store (NULL: none). */
	const char *q_app, *q_any, *app_set;
	/* How many tables (store_copy.c: it must know each). */
	const char *q_tables;
};

extern const struct db_ops db_sqlite_ops;
extern const struct db_ops db_pg_ops;

/* Parse a --store value (store_uri.c): the kind and the target the
 * backend opens (a path; a libpq conninfo), and a printable form without
 * any password. Both malloc'd. */
int db_uri_parse(const char *uri, enum db_kind *kind, char **target,
		 char **shown, struct parley_err *err);

/* A libpq conninfo (URI or keywords) libpq accepts (-EINVAL with its
 * reason otherwise), and its printable form postgresql://user@host:port/db
 * (malloc'd, never the password) (store_pg.c). */
int db_pg_conninfo_check(const char *conninfo, char **shown,
			 struct parley_err *err);

/* Call the commit watch, if any (backends without a commit hook call it
 * after each commit). */
void db_commit_notify(struct store *s);

/* ---- statements (store_open.c) ---- */

/* *st = the cached statement for `sql`, prepared on first use. Reset it
 * (db_reset, or db_run/db_int do) after use. */
int db_prep(struct store *s, const char *sql, struct db_stmt **st,
	    struct parley_err *err);
void db_reset(struct db_stmt *st);
/* Step once: 1 = a row, 0 = done, < 0 = error (err set, `what` in it).
 * The statement is not reset. */
int db_step(struct store *s, struct db_stmt *st, const char *what,
	    struct parley_err *err);
/* Step to completion and reset: for statements that return no rows. */
int db_run(struct store *s, struct db_stmt *st, const char *what,
	   struct parley_err *err);
/* db_run for a write whose outcome nothing reads before the operation
 * goes on (no db_changes, no -EEXIST to act on): on PostgreSQL it is
 * pipelined (sent without waiting for its answer), and a failure is
 * returned by the next statement or by the commit, so the operation
 * still fails as a whole. Inside a transaction only; else db_run. */
int db_run_deferred(struct store *s, struct db_stmt *st, const char *what,
		    struct parley_err *err);
/* Step a single-integer query (e.g. SELECT COUNT(*)) and reset. */
int db_int(struct store *s, struct db_stmt *st, const char *what, int64_t *v,
	   struct parley_err *err);

/* Step st to its end, each row read by `row` into a new element of
 * `elem` bytes at the end of a growing array, then reset st. Returns the
 * count with *out the array (malloc'd; NULL for none), or an error with
 * nothing kept: `drop` (may be NULL) is called on each element read so
 * far and the array freed. `row` leaves nothing to free when it fails. */
typedef int (*db_row_fn)(struct store *s, struct db_stmt *st, void *elem,
			 struct parley_err *err);
int db_rows(struct store *s, struct db_stmt *st, const char *what, size_t elem,
	    db_row_fn row, void (*drop)(void *elem), void **out,
	    struct parley_err *err);

/* A list with an optional host filter: `all` when host is NULL, else
 * `by_host` with ?1 bound to the checked host name. */
int db_prep_host(struct store *s, const char *host, const char *all,
		 const char *by_host, struct db_stmt **st,
		 struct parley_err *err);

/* Binding borrows the bytes (SQLITE_STATIC): they must outlive the step.
 * Binding fails only on a programming error, which aborts. */
void db_bind_text(struct db_stmt *st, int i, const char *v);
void db_bind_blob(struct db_stmt *st, int i, const void *p, size_t len);
void db_bind_i64(struct db_stmt *st, int i, int64_t v);
/* Text of `len` bytes, not NUL-terminated. */
void db_bind_textn(struct db_stmt *st, int i, const char *v, size_t len);
void db_bind_null(struct db_stmt *st, int i);
/* The statement's highest parameter number. */
int db_bind_count(struct db_stmt *st);

/* Columns into fixed buffers. A value longer than the buffer or a blob of
 * the wrong size can only come from someone editing the file: -EBADMSG. */
int db_col_name(struct store *s, struct db_stmt *st, int i, char *buf,
		size_t cap, struct parley_err *err);
int db_col_digest(struct store *s, struct db_stmt *st, int i, uint8_t *out,
		  struct parley_err *err);
const char *db_col_str(struct db_stmt *st, int i);   /* never NULL */
int64_t db_col_i64(struct db_stmt *st, int i);      /* NULL: 0 */
int db_col_int(struct db_stmt *st, int i);
const void *db_col_blob(struct db_stmt *st, int i); /* NULL: NULL */
size_t db_col_bytes(struct db_stmt *st, int i);
bool db_col_isnull(struct db_stmt *st, int i);
const char *db_col_label(struct db_stmt *st, int i); /* its name */
/* Rows the last INSERT/UPDATE/DELETE of this connection changed. */
int64_t db_changes(struct store *s);
/* Outside any transaction (SQLite's autocommit). */
bool db_autocommit(struct store *s);

/* Run literal SQL (pragmas, transaction control, migrations). */
int db_exec(struct store *s, const char *sql, struct parley_err *err);

/* ---- transactions (store_open.c) ---- */

/* Every operation brackets its statements with one of these. A write
 * outside a batch is its own BEGIN IMMEDIATE .. COMMIT (taking the write
 * lock up front, so a read-then-write never deadlocks with another
 * writer); inside a batch, a savepoint, so a failed operation leaves
 * nothing behind and the batch goes on. db_op_end commits or rolls back
 * according to rc and returns rc (or the commit's error). */
int db_op_begin(struct store *s, struct parley_err *err);
int db_op_end(struct store *s, int rc, struct parley_err *err);
/* db_op_begin for background bookkeeping (a replica's heartbeat) run in
 * the daemon's event loop: it never waits for another writer, -EBUSY at
 * once instead, and the caller tries again on its next turn. Inside a
 * caller's batch the lock is held already: as db_op_begin. */
int db_op_try_begin(struct store *s, struct parley_err *err);
/* Reads that take several statements: a consistent snapshot. */
int db_rd_begin(struct store *s, struct parley_err *err);
int db_rd_end(struct store *s, int rc, struct parley_err *err);

int64_t db_now_ms(void);

/* This transaction changes what replicas push to agents (a policy
 * version, a stored command): other replicas' listeners hear of it at its
 * commit (PostgreSQL's NOTIFY; nothing on SQLite, where they poll). */
int db_note_changed(struct store *s, struct parley_err *err);

/* ---- argument checks (store_check.c) ---- */

/* `what` names the argument in the message: "host name", "grants[2]...". */
int db_check_name(const char *what, const char *v, struct parley_err *err);
/* NULL or "" allowed (the empty name), else db_check_name. */
int db_check_opt_name(const char *what, const char *v,
		      struct parley_err *err);
/* A name in a fixed array (struct grant): must be NUL-terminated in it. */
int db_check_name_array(const char *what, const char *v, size_t cap,
			struct parley_err *err);
int db_check_file_name(const char *what, const char *v,
		       struct parley_err *err);
int db_check_opt_file_name(const char *what, const char *v,
			   struct parley_err *err);
int db_check_digest(const char *what, struct store_blob b,
		    struct parley_err *err);
/* Valid UTF-8 without NUL, at most cap-1 bytes. */
int db_check_text(const char *what, const char *v, size_t len, size_t cap,
		  struct parley_err *err);
int db_check_uri(const char *v, struct parley_err *err);
int db_check_digests(const char *what, const struct store_digests_in *d,
		     struct parley_err *err);
int db_check_grant(const struct grant *g, struct parley_err *err);
int db_check_limit(unsigned limit, struct parley_err *err);

/* ---- shared between areas ---- */

/* -ENOENT unless host / partition `name` exists. */
int db_need_host(struct store *s, const char *name, struct parley_err *err);
int db_need_partition(struct store *s, const char *name, char *host_out,
		      struct parley_err *err);
/* The ingest discipline (store_hosts.c): read the host's seq, and after
 * storing, raise it. */
int db_seq_load(struct store *s, const char *host, uint64_t *seq,
		struct parley_err *err);
int db_seq_raise(struct store *s, const char *host, uint64_t seq,
		 struct parley_err *err);
/* Record i of `what` has seq `seq` after `prev`: 1..2^63-1 and
 * increasing, else -EINVAL. */
int db_seq_check_order(const char *what, uint64_t prev, uint64_t seq,
		       unsigned i, struct parley_err *err);
/* The latest policy version (0: none). */
int db_policy_current(struct store *s, uint64_t *v, struct parley_err *err);
/* Create policy version current+1 with a description (store_grants.c). */
int db_policy_new_version(struct store *s, const char *change, uint64_t *v,
			  struct parley_err *err);
/* Record that version v affects the hosts of partitions a and b. */
int db_policy_note_parts(struct store *s, uint64_t v, const char *a,
			 const char *b, struct parley_err *err);
/* Record that version v affects the hosts of every grant naming
 * partition p (a baseline of p changed). */
int db_policy_note_grants_of(struct store *s, uint64_t v, const char *p,
			     struct parley_err *err);
/* Record that version v affects `host` (store_segsets.c). */
int db_policy_note_host(struct store *s, uint64_t v, const char *host,
			struct parley_err *err);
/* Segment sets with partition p as a member, service rules naming p
 * (store_segsets.c). */
int db_policy_refs(struct store *s, const char *p, int64_t *sets,
		   int64_t *rules, struct parley_err *err);
/* Number of grants naming partition p. */
int db_grants_naming(struct store *s, const char *p, int64_t *n,
		     struct parley_err *err);

/* Row readers the areas share with store_push.c (the same row, read for
 * one host or for many): columns from 0 as each area's own SELECT has
 * them. */
int db_grant_row(struct store *s, struct db_stmt *st, struct grant *g,
		 struct parley_err *err);
int db_rule_row(struct store *s, struct db_stmt *st, void *elem,
		struct parley_err *err);      /* struct store_svc_rule */
int db_set_row(struct store *s, struct db_stmt *st, void *elem,
	       struct parley_err *err);       /* struct store_segset */
int db_key_row(struct store *s, struct db_stmt *st, void *elem,
	       struct parley_err *err);       /* struct store_disk_key */
/* One baseline_digests row (kind, name, sha256) into d. */
int db_digest_take(struct store *s, struct db_stmt *st,
		   struct store_digests *d, struct parley_err *err);

/* Put host's pinned certificate, if any, on the revocation list
 * (store_certs.c); `why` says "deleted" or "rejoined". */
int db_cert_revoke_pinned(struct store *s, const char *host, const char *why,
			  struct parley_err *err);

/* Migrations (migrations.c): bring the file to `upto`. */
int db_migrate(struct store *s, unsigned upto, struct parley_err *err);

/* perr_prefix that keeps `rc` when err is NULL (perr_prefix cannot know
 * the code then). Returns rc. */
int db_prefix(struct parley_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Names lists. */
int db_names_push(struct store_names *l, const char *name);

#endif
