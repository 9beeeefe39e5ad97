/*
 * The PostgreSQL backend (`--store postgresql://...`), through libpq. The
 * only file that speaks libpq. What it adds to the portable SQL:
 *
 *  - `?N` parameters become `$N` when a statement is prepared; each store
 *    connection prepares a statement once (named p1, p2, ...) at its
 *    first execution, with the parameter types of that execution (BIGINT,
 *    TEXT, BYTEA), so `?1 + 1` and COALESCE(?2, ...) type-check.
 *  - Parameters go in binary (no escaping, no copies); results come back
 *    as text and are read as SQLite would hand them (BYTEA decoded).
 *  - Writers serialise on one transaction-scoped advisory lock taken at
 *    BEGIN: the exact counterpart of SQLite's BEGIN IMMEDIATE, so every
 *    read-then-write the store does (audit head, host sequence, policy
 *    version, join token) sees the last committed state and no other
 *    writer can slip in between. db/README.md says why this rather than
 *    SERIALIZABLE with retries.
 *  - The migrations' types become BIGINT, BYTEA and TEXT COLLATE "C"
 *    (names order by bytes, which the pagination cursors rely on).
 *  - A commit that changes policy or stored commands NOTIFYs channel
 *    parley_changed; a second connection (pg_listen) LISTENs for other
 *    replicas' and hands its socket to the daemon's event loop.
 *  - A connection lost (server restart, network cut) is made again at the
 *    next transaction or lone statement, its statements prepared again;
 *    the operation it broke fails (-ECONNRESET), nothing is retried that
 *    may have committed.
 */
#include "db/store_int.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Type OIDs (catalog/pg_type_d.h is in the server headers). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* The write lock: "Prly". */
#define WRITE_LOCK_KEY 1349676153
/* A writer waits this long for another before -EAGAIN (SQLite's busy
 * timeout in store_sqlite.c). */
#define LOCK_TIMEOUT "5s"

/* Writes sent in pipeline mode and not answered yet (run_deferred); a
 * bound keeps the server's answers well inside the socket's buffer, so
 * neither side blocks writing while the other is not reading. */
#define PIPE_MAX 256

/* A connection being made again is given this long to answer (a server
 * that accepts and then says nothing: a stopped postmaster, a network
 * that drops packets); then it is started afresh. libpq's connect_timeout
 * is its blocking connect's only: in the steps below it never fires. */
#define CONNECT_WAIT_MS 10000
/* After a failed attempt the next starts no sooner than this: each
 * operation on a store that is away must not be a connection attempt. */
#define CONNECT_RETRY_MS 250
/* The call that starts an attempt waits this long for it (a server that
 * is there answers in a few ms, and the operation then goes through as
 * with a blocking connect); later calls only take the steps ready now.
 * The most a store that is away costs the event loop: this, once per
 * attempt (every CONNECT_WAIT_MS when it accepts and never answers). */
#define CONNECT_FIRST_WAIT_MS 500

/* A connection being made in steps that never block (PQconnectPoll):
 * what the last step waits for on its socket, since when, and when the
 * next attempt may start after a failure. */
struct pg_dial {
	bool on;
	PostgresPollingStatusType want;
	int64_t since_ms, retry_ms;
};

struct pg_conn {
	PGconn *c;
	PGconn *lc;            /* the LISTEN connection, or NULL */
	bool lc_ready;         /* lc connected and LISTENing */
	struct pg_dial dial, ldial;
	char *conninfo;        /* to connect again */
	unsigned next_name;
	int64_t changes;
	unsigned pending;
	const char *pending_what[PIPE_MAX];
};

struct pg_param {
	const char *v;
	int len;
	int fmt;
	Oid type;
	uint8_t i64[8];
};

struct pg_stmt {
	struct db_stmt base;
	struct store *s;
	char *sql;             /* translated: $N */
	char name[16];         /* "" until prepared */
	bool write;            /* not a SELECT: commits when alone */
	int nparams;
	struct pg_param *p;
	Oid *ptypes;           /* as prepared */
	PGresult *res;
	int row, nrows, ncols;
	unsigned char **blob;  /* this row's decoded BYTEA columns */
	size_t *bloblen;
};

static struct pg_conn *pc(struct store *s)
{
	return s->conn;
}

static struct pg_stmt *ps(struct db_stmt *st)
{
	return (struct pg_stmt *)st;
}

/* ---- errors ---- */

static int errno_of_state(const char *state)
{
	if (!state || strlen(state) != 5)
		return -EIO;
	if (!strcmp(state, "23505"))
		return -EEXIST;
	if (!strcmp(state, "23503"))
		return -ENOENT;
	if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2))
		return -EINVAL;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
	    !strcmp(state, "55P03") || !strcmp(state, "57014"))
		return -EAGAIN;
	if (!strcmp(state, "25006"))
		return -EROFS;
	if (!strncmp(state, "53", 2))
		return !strcmp(state, "53100") ? -ENOSPC : -ENOMEM;
	if (!strcmp(state, "42501") || !strncmp(state, "28", 2))
		return -EACCES;
	if (!strncmp(state, "08", 2))
		return -ECONNRESET;
	return -EIO;
}

/* The message without libpq's trailing newline. */
static int pgerr(struct store *s, const PGresult *r, const char *what,
		 struct parley_err *err)
{
	const char *msg = r ? PQresultErrorMessage(r) : "";
	if (!msg[0])
		msg = PQerrorMessage(pc(s)->c);
	int len = (int)strcspn(msg, "\n");
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	int code = state ? errno_of_state(state)
		   : PQstatus(pc(s)->c) == CONNECTION_BAD ? -ECONNRESET : -EIO;
	return perr(err, code, "store %s: %s: %.*s", s->path, what, len, msg);
}

static bool in_tx(struct store *s)
{
	PGTransactionStatusType t = PQtransactionStatus(pc(s)->c);
	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR ||
	       t == PQTRANS_ACTIVE;
}

/* Collect the answers to the pipelined writes and leave pipeline mode:
 * the first failure, or 0. */
static int flush(struct store *s, struct parley_err *err)
{
	struct pg_conn *c = pc(s);
	if (!c->pending)
		return 0;
	int rc = 0;
	if (PQpipelineSync(c->c) != 1)
		rc = pgerr(s, NULL, "pipeline", err);
	for (unsigned i = 0; i < c->pending; i++) {
		PGresult *r = PQgetResult(c->c);
		ExecStatusType st = PQresultStatus(r);
		/* pg_notify() is a SELECT: its row is its success */
		if (rc == 0 && st != PGRES_COMMAND_OK &&
		    st != PGRES_TUPLES_OK)
			rc = st == PGRES_PIPELINE_ABORTED
				? perr(err, -EIO, "store %s: %s: not run",
				       s->path, c->pending_what[i])
				: pgerr(s, r, c->pending_what[i], err);
		else if (st == PGRES_COMMAND_OK)
			c->changes = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		/* each query's results end with a NULL */
		while ((r = PQgetResult(c->c)) != NULL)
			PQclear(r);
	}
	PGresult *r;
	/* the sync's own result, then nothing */
	while ((r = PQgetResult(c->c)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC)
			break;
	}
	c->pending = 0;
	if (PQexitPipelineMode(c->c) != 1 && rc == 0)
		rc = pgerr(s, NULL, "pipeline", err);
	return rc;
}

/* libpq prints NOTICEs (e.g. "relation exists, skipping") on stderr by
 * default; the store reports what matters through its errors. */
static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* What every connection of the store sets (a new one after a loss too). */
static int session(struct store *s, PGconn *conn, struct parley_err *err)
{
	static const char q[] = "SET lock_timeout = '" LOCK_TIMEOUT "'; "
				"SET client_min_messages = warning; "
				"SET synchronous_commit = on";
	PQsetNoticeProcessor(conn, quiet, NULL);
	PGresult *r = PQexec(conn, q);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *m = PQerrorMessage(conn);
		rc = perr(err, -ECONNRESET, "store %s: session: %.*s", s->path,
			  (int)strcspn(m, "\n"), m);
	}
	PQclear(r);
	return rc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The steps of a connection being made (PQconnectPoll, or PQresetPoll
 * for one made again), as far as its socket allows within wait_ms: a
 * step is taken only when the socket is ready for what the last one
 * waits for, so nothing here waits longer. 1 made, 0 not yet (*why: what
 * it waits for), -1 failed or out of time. */
static int dial_step(PGconn *pg, struct pg_dial *d, bool reset,
		     int wait_ms, const char **why)
{
	int64_t until = mono_ms() + wait_ms;
	for (;;) {
		struct pollfd pf = {
			.fd = PQsocket(pg),
			.events = d->want == PGRES_POLLING_READING ? POLLIN
								   : POLLOUT
		};
		if (pf.fd < 0)
			return -1;
		int64_t left = until - mono_ms();
		int n = poll(&pf, 1, left > 0 ? (int)left : 0);
		if (n < 0)
			return -1;
		if (n == 0) {
			*why = "the server has not answered yet";
			if (mono_ms() - d->since_ms < CONNECT_WAIT_MS)
				return 0;
			*why = "no answer within 10 s";
			return -1;
		}
		d->want = reset ? PQresetPoll(pg) : PQconnectPoll(pg);
		if (d->want == PGRES_POLLING_OK)
			return 1;
		if (d->want == PGRES_POLLING_FAILED)
			return -1;
	}
}

/* A new dial starts as libpq says: as if the last step asked to write. */
static void dial_start(struct pg_dial *d)
{
	d->on = true;
	d->want = PGRES_POLLING_WRITING;
	d->since_ms = mono_ms();
}

static void dial_failed(struct pg_dial *d)
{
	d->on = false;
	d->retry_ms = mono_ms() + CONNECT_RETRY_MS;
}

/* The connection back if it was lost, before a transaction or a lone
 * statement starts (never inside one: what it did is gone with the
 * server's session, and its caller must hear that). Every statement
 * prepared on the old session is prepared again at its next use.
 * Never blocks (the daemon's event loop calls this): the new connection
 * is made in steps, one call after another; until it is made each call
 * is -ECONNRESET at once (the API answers 503), and a server that
 * accepts but does not answer is given up on after CONNECT_WAIT_MS and
 * tried again. */
static int revive(struct store *s, struct parley_err *err)
{
	struct pg_conn *c = pc(s);
	/* An idle session the server ended (restart, terminate) has its
	 * goodbye waiting on the socket: read it now, so that the loss is
	 * known before a statement is sent rather than after (when a write
	 * could not be told from one that committed). */
	/* (Its FATAL message first, the end of the stream at a later read.) */
	for (int i = 0; i < 4 && !c->dial.on &&
			PQstatus(c->c) == CONNECTION_OK; i++) {
		struct pollfd pf = { .fd = PQsocket(c->c), .events = POLLIN };
		if (pf.fd < 0 || poll(&pf, 1, 0) != 1 ||
		    PQconsumeInput(c->c) != 1)
			break;
	}
	if (!c->dial.on && PQstatus(c->c) == CONNECTION_OK)
		return 0;
	const char *why = NULL;
	bool first = false;
	if (!c->dial.on) {
		if (mono_ms() < c->dial.retry_ms)
			return perr(err, -ECONNRESET, "store %s: connection "
				    "lost; connecting again shortly", s->path);
		c->pending = 0;
		PQexitPipelineMode(c->c);
		if (PQresetStart(c->c) != 1) {
			const char *m = PQerrorMessage(c->c);
			dial_failed(&c->dial);
			return perr(err, -ECONNRESET, "store %s: connection "
				    "lost, and connecting again failed: %.*s",
				    s->path, (int)strcspn(m, "\n"), m);
		}
		dial_start(&c->dial);
		first = true;
	}
	int r = dial_step(c->c, &c->dial, true,
			  first ? CONNECT_FIRST_WAIT_MS : 0, &why);
	if (r == 0)
		return perr(err, -ECONNRESET, "store %s: connection lost; "
			    "connecting again (%s)", s->path, why);
	if (r < 0) {
		const char *m = why ? why : PQerrorMessage(c->c);
		dial_failed(&c->dial);
		return perr(err, -ECONNRESET, "store %s: connection lost, and "
			    "connecting again failed: %.*s", s->path,
			    (int)strcspn(m, "\n"), m);
	}
	c->dial.on = false;
	for (unsigned i = 0; i < STORE_STMT_SLOTS; i++)
		if (s->stmt[i].st)
			((struct pg_stmt *)s->stmt[i].st)->name[0] = 0;
	return session(s, c->c, err);
}

/* No transaction of the store's is open: a lost connection loses
 * nothing by being made again. (libpq's own transaction status says
 * "unknown" once the connection is lost, so it cannot tell.) */
static bool outside(struct store *s)
{
	return !s->batch && !s->in_op && !s->reading && !s->rd_own;
}

static bool lost(struct store *s)
{
	return PQstatus(pc(s)->c) == CONNECTION_BAD;
}

static int exec_once(struct store *s, const char *sql, struct parley_err *err);

static int pg_exec(struct store *s, const char *sql, struct parley_err *err)
{
	/* A BEGIN has nothing behind it yet: on a connection found lost
	 * (before or by the BEGIN itself) it is made again and the BEGIN
	 * sent once more. */
	bool begin = !strncmp(sql, "BEGIN", 5) && outside(s);
	if (begin && revive(s, err) < 0)
		return -ECONNRESET;
	int rc = exec_once(s, sql, err);
	if (begin && rc < 0 && lost(s) && revive(s, err) == 0)
		rc = exec_once(s, sql, err);
	return rc;
}

static int exec_once(struct store *s, const char *sql, struct parley_err *err)
{
	/* Pipelined writes answer first; a failure among them fails
	 * whatever comes next -- except a rollback, which undoes them. */
	bool undo = !strncmp(sql, "ROLLBACK", 8);
	int f = flush(s, undo ? NULL : err);
	if (f < 0 && !undo)
		return f;
	PGresult *r = PQexec(pc(s)->c, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = pgerr(s, r, sql, err);
	/* COMMIT of a transaction an error had aborted answers ROLLBACK:
	 * nothing was committed, and the caller must hear it. */
	else if (!strcmp(sql, "COMMIT") &&
		 !strcmp(PQcmdStatus(r), "ROLLBACK"))
		rc = perr(err, -EIO, "store %s: the transaction was rolled "
			  "back by an earlier error; nothing was committed",
			  s->path);
	else if (!strcmp(sql, "COMMIT"))
		db_commit_notify(s);
	PQclear(r);
	return rc;
}

/* ---- statements ---- */

/* `?N` to `$N` outside quotes; the highest N. */
static char *translate(const char *sql, int *nparams)
{
	size_t n = strlen(sql);
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	char quote = 0;
	*nparams = 0;
	for (const char *p = sql; *p; p++) {
		if (quote) {
			if (*p == quote)
				quote = 0;
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
		} else if (*p == '?') {
			/* Every statement numbers its parameters. */
			PARLEY_ASSERT(isdigit((unsigned char)p[1]));
			int v = atoi(p + 1);
			if (v > *nparams)
				*nparams = v;
			*o++ = '$';
			continue;
		}
		*o++ = *p;
	}
	*o = 0;
	return out;
}

static void drop_row(struct pg_stmt *p)
{
	for (int i = 0; p->blob && i < p->ncols; i++) {
		PQfreemem(p->blob[i]);
		p->blob[i] = NULL;
	}
}

static void pg_reset(struct db_stmt *st)
{
	struct pg_stmt *p = ps(st);
	drop_row(p);
	free(p->blob);
	free(p->bloblen);
	p->blob = NULL;
	p->bloblen = NULL;
	PQclear(p->res);
	p->res = NULL;
	p->row = p->nrows = p->ncols = 0;
	for (int i = 0; i < p->nparams; i++)
		p->p[i] = (struct pg_param){ 0 };
}

static void pg_finalize(struct db_stmt *st)
{
	if (!st)
		return;
	struct pg_stmt *p = ps(st);
	pg_reset(st);
	free(p->sql);
	free(p->p);
	free(p->ptypes);
	free(p);
}

static int pg_prepare(struct store *s, const char *sql, struct db_stmt **out,
		      struct parley_err *err)
{
	struct pg_stmt *p = calloc(1, sizeof(*p));
	if (!p)
		return perr(err, -ENOMEM, "store: out of memory");
	p->base.ops = &db_pg_ops;
	p->s = s;
	p->sql = translate(sql, &p->nparams);
	int np = p->nparams ? p->nparams : 1;
	p->p = calloc((size_t)np, sizeof(*p->p));
	p->ptypes = calloc((size_t)np, sizeof(*p->ptypes));
	if (!p->sql || !p->p || !p->ptypes) {
		pg_finalize(&p->base);
		return perr(err, -ENOMEM, "store: out of memory");
	}
	const char *w = sql + strspn(sql, " \t\n");
	p->write = strncasecmp(w, "SELECT", 6) != 0;
	*out = &p->base;
	return 0;
}

/* Prepare on first use, and again if a parameter's type changed (a
 * statement bound with a NULL keeps the type it was prepared with). */
static int ensure_prepared(struct store *s, struct pg_stmt *p,
			   struct parley_err *err)
{
	bool same = p->name[0] != 0;
	for (int i = 0; i < p->nparams; i++) {
		if (!p->p[i].v && p->name[0])
			p->p[i].type = p->ptypes[i];
		if (p->p[i].type != p->ptypes[i])
			same = false;
	}
	if (same)
		return 0;
	for (int i = 0; i < p->nparams; i++)
		p->ptypes[i] = p->p[i].type;
	snprintf(p->name, sizeof(p->name), "p%u", ++pc(s)->next_name);
	PGresult *r = PQprepare(pc(s)->c, p->name, p->sql, p->nparams,
				p->ptypes);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = pgerr(s, r, "prepare", err);
		p->name[0] = 0;
	}
	PQclear(r);
	return rc;
}

#define PARAMS(p) ((p)->nparams ? (p)->nparams : 1)

static void param_arrays(struct pg_stmt *p, const char **vals, int *lens,
			 int *fmts)
{
	for (int i = 0; i < p->nparams; i++) {
		vals[i] = p->p[i].v;
		lens[i] = p->p[i].len;
		fmts[i] = p->p[i].fmt;
	}
}

static int pg_step(struct store *s, struct db_stmt *st, const char *what,
		   struct parley_err *err);

/* Send without waiting (pipeline mode), inside a transaction. */
static int pg_run_deferred(struct store *s, struct db_stmt *st,
			   const char *what, struct parley_err *err)
{
	struct pg_stmt *p = ps(st);
	struct pg_conn *c = pc(s);
	/* Preparing waits for its answer: before the pipeline opens. A lone
	 * write in a batch wants its own savepoint: the plain path. */
	bool ready = p->name[0];
	for (int i = 0; ready && i < p->nparams; i++)
		if (p->p[i].v && p->p[i].type != p->ptypes[i])
			ready = false;
	if (!ready || (s->batch && !s->in_op) || c->pending >= PIPE_MAX) {
		int rc = flush(s, err);
		if (rc == 0 && !ready)
			rc = ensure_prepared(s, p, err);
		if (rc < 0) {
			pg_reset(st);
			return rc;
		}
		if (s->batch && !s->in_op) {
			int r = pg_step(s, st, what, err);
			pg_reset(st);
			return r < 0 ? r : 0;
		}
	}
	for (int i = 0; i < p->nparams; i++)
		if (!p->p[i].v)
			p->p[i].type = p->ptypes[i];
	if (!c->pending && PQenterPipelineMode(c->c) != 1) {
		pg_reset(st);
		return pgerr(s, NULL, "pipeline", err);
	}
	const char *vals[PARAMS(p)];
	int lens[PARAMS(p)], fmts[PARAMS(p)];
	param_arrays(p, vals, lens, fmts);
	int ok = PQsendQueryPrepared(c->c, p->name, p->nparams, vals, lens,
				     fmts, 0);
	pg_reset(st);
	if (ok != 1) {
		int rc = pgerr(s, NULL, what, err);
		flush(s, NULL);
		return rc;
	}
	c->pending_what[c->pending++] = what;
	return 0;
}

static int execute_once(struct store *s, struct pg_stmt *p,
			const char *what, struct parley_err *err);

/* A lone statement (autocommit) on a lost connection: made again first;
 * a read that found it lost is sent once more (a write is not: it may
 * have committed before the loss). */
static int execute(struct store *s, struct pg_stmt *p, const char *what,
		   struct parley_err *err)
{
	bool alone = outside(s);
	if (alone && revive(s, err) < 0)
		return -ECONNRESET;
	int rc = execute_once(s, p, what, err);
	if (rc < 0 && alone && !p->write && lost(s) && revive(s, err) == 0)
		rc = execute_once(s, p, what, err);
	return rc;
}

static int execute_once(struct store *s, struct pg_stmt *p,
			const char *what, struct parley_err *err)
{
	int rc = flush(s, err);
	if (rc == 0)
		rc = ensure_prepared(s, p, err);
	if (rc < 0)
		return rc;
	const char *vals[PARAMS(p)];
	int lens[PARAMS(p)], fmts[PARAMS(p)];
	param_arrays(p, vals, lens, fmts);
	/* A lone write inside a caller's batch, outside any operation's
	 * savepoint: SQLite lets the batch go on after it fails, PostgreSQL
	 * aborts the whole transaction, so give it a savepoint of its own. */
	bool guard = s->batch && !s->in_op && p->write;
	if (guard && (rc = pg_exec(s, "SAVEPOINT store_st", err)) < 0)
		return rc;
	PGresult *r = PQexecPrepared(pc(s)->c, p->name, p->nparams, vals, lens,
				     fmts, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		rc = pgerr(s, r, what, err);
		PQclear(r);
		/* Likewise inside a read snapshot (a write refused there):
		 * back to its start, which keeps the snapshot. */
		if (guard)
			pg_exec(s, "ROLLBACK TO store_st", NULL);
		else if (s->reading && in_tx(s))
			pg_exec(s, "ROLLBACK TO store_read", NULL);
		return rc;
	}
	if (guard && (rc = pg_exec(s, "RELEASE store_st", err)) < 0) {
		PQclear(r);
		return rc;
	}
	pc(s)->changes = strtoll(PQcmdTuples(r), NULL, 10);
	p->res = r;
	p->nrows = st == PGRES_TUPLES_OK ? PQntuples(r) : 0;
	p->ncols = st == PGRES_TUPLES_OK ? PQnfields(r) : 0;
	p->row = -1;
	if (p->ncols) {
		p->blob = calloc((size_t)p->ncols, sizeof(*p->blob));
		p->bloblen = calloc((size_t)p->ncols, sizeof(*p->bloblen));
		if (!p->blob || !p->bloblen)
			return perr(err, -ENOMEM, "store: out of memory");
	}
	if (p->write && !in_tx(s))
		db_commit_notify(s);
	return 0;
}

/* The whole result is fetched at the first step; later steps walk it. */
static int pg_step(struct store *s, struct db_stmt *st, const char *what,
		   struct parley_err *err)
{
	struct pg_stmt *p = ps(st);
	if (!p->res) {
		int rc = execute(s, p, what, err);
		if (rc < 0)
			return rc;
	}
	drop_row(p);
	if (p->row < p->nrows)
		p->row++;
	return p->row < p->nrows ? 1 : 0;
}

static struct pg_param *param(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	/* As sqlite3_bind_*: an index out of range is a programming error. */
	PARLEY_ASSERT(i >= 1 && i <= p->nparams);
	return &p->p[i - 1];
}

static void pg_bind_text(struct db_stmt *st, int i, const char *v, size_t len)
{
	PARLEY_ASSERT(len <= INT32_MAX);
	*param(st, i) = (struct pg_param){ .v = v, .len = (int)len, .fmt = 1,
					   .type = OID_TEXT };
}

static void pg_bind_blob(struct db_stmt *st, int i, const void *p, size_t len)
{
	PARLEY_ASSERT(len <= INT32_MAX);
	/* A zero-length blob still needs a non-NULL pointer (NULL is SQL
	 * NULL to libpq). */
	*param(st, i) = (struct pg_param){ .v = len ? p : "", .len = (int)len,
					   .fmt = 1, .type = OID_BYTEA };
}

static void pg_bind_i64(struct db_stmt *st, int i, int64_t v)
{
	struct pg_param *p = param(st, i);
	*p = (struct pg_param){ .len = 8, .fmt = 1, .type = OID_INT8 };
	uint64_t u = (uint64_t)v;
	for (int k = 7; k >= 0; k--, u >>= 8)
		p->i64[k] = (uint8_t)u;
	p->v = (const char *)p->i64;
}

static void pg_bind_null(struct db_stmt *st, int i)
{
	*param(st, i) = (struct pg_param){ 0 };
}

static int pg_bind_count(struct db_stmt *st)
{
	return ps(st)->nparams;
}

static bool on_row(struct pg_stmt *p, int i)
{
	return p->res && p->row >= 0 && p->row < p->nrows && i >= 0 &&
	       i < p->ncols;
}

static bool pg_col_isnull(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	return !on_row(p, i) || PQgetisnull(p->res, p->row, i);
}

static const char *pg_col_text(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	return pg_col_isnull(st, i) ? NULL : PQgetvalue(p->res, p->row, i);
}

static int64_t pg_col_i64(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	const char *v = pg_col_text(st, i);
	if (!v)
		return 0;
	if (PQftype(p->res, i) == OID_BOOL)
		return v[0] == 't';
	return strtoll(v, NULL, 10);
}

/* BYTEA comes as text (\x hex): decoded once per row and column. */
static bool decode(struct pg_stmt *p, int i)
{
	if (p->blob[i])
		return true;
	p->blob[i] = PQunescapeBytea((const unsigned char *)
				     PQgetvalue(p->res, p->row, i),
				     &p->bloblen[i]);
	return p->blob[i] != NULL;
}

static const void *pg_col_blob(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	if (pg_col_isnull(st, i))
		return NULL;
	if (PQftype(p->res, i) != OID_BYTEA)
		return PQgetvalue(p->res, p->row, i);
	if (!decode(p, i))
		return NULL;
	/* SQLite hands a zero-length blob as NULL too. */
	return p->bloblen[i] ? p->blob[i] : NULL;
}

static size_t pg_col_bytes(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	if (pg_col_isnull(st, i))
		return 0;
	if (PQftype(p->res, i) != OID_BYTEA)
		return (size_t)PQgetlength(p->res, p->row, i);
	return decode(p, i) ? p->bloblen[i] : 0;
}

static const char *pg_col_name(struct db_stmt *st, int i)
{
	struct pg_stmt *p = ps(st);
	const char *n = p->res && i >= 0 && i < p->ncols
		? PQfname(p->res, i) : NULL;
	return n ? n : "?";
}

static int64_t pg_changes(struct store *s)
{
	flush(s, NULL);
	return pc(s)->changes;
}

static bool pg_in_tx(struct store *s)
{
	return in_tx(s);
}

/* ---- transactions ---- */

/* READ COMMITTED, so that each statement after the lock sees what the
 * previous holder committed (a REPEATABLE READ snapshot would be taken
 * before the wait and miss it). */
static int pg_begin_write(struct store *s, struct parley_err *err)
{
	static const char q[] = "BEGIN ISOLATION LEVEL READ COMMITTED";
	static const char lock[] = "SELECT pg_advisory_xact_lock(1349676153)";
	_Static_assert(WRITE_LOCK_KEY == 1349676153, "the lock's key");
	int rc = pg_exec(s, q, err);
	if (rc == 0 && (rc = pg_exec(s, lock, err)) < 0)
		pg_exec(s, "ROLLBACK", NULL);
	return rc;
}

/* The lock if free, else -EBUSY at once (no lock_timeout wait). */
static int pg_try_write(struct store *s, struct parley_err *err)
{
	static const char q[] = "BEGIN ISOLATION LEVEL READ COMMITTED";
	static const char lock[] =
		"SELECT pg_try_advisory_xact_lock(1349676153)";
	int rc = pg_exec(s, q, err);
	if (rc < 0)
		return rc;
	PGresult *r = PQexec(pc(s)->c, lock);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		rc = pgerr(s, r, lock, err);
	else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		rc = perr(err, -EBUSY, "store %s: another writer holds the "
			  "lock", s->path);
	PQclear(r);
	if (rc < 0)
		pg_exec(s, "ROLLBACK", NULL);
	return rc;
}

/* The savepoint lets a statement that fails inside (a write refused)
 * leave the snapshot usable, as it stays on SQLite. */
static int pg_begin_read(struct store *s, struct parley_err *err)
{
	return pg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
		       "SAVEPOINT store_read", err);
}

static void pg_end_read(struct store *s)
{
	if (in_tx(s))
		pg_exec(s, PQtransactionStatus(pc(s)->c) == PQTRANS_INERROR
			? "ROLLBACK" : "COMMIT", NULL);
}

/* ---- open / close ---- */

static int pg_open(struct store *s, const char *conninfo,
		   struct parley_err *err)
{
	struct pg_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return perr(err, -ENOMEM, "store: out of memory");
	s->conn = c;
	c->c = PQconnectdb(conninfo);
	if (!c->c)
		return perr(err, -ENOMEM, "store: out of memory");
	if (PQstatus(c->c) != CONNECTION_OK) {
		const char *m = PQerrorMessage(c->c);
		int len = (int)strcspn(m, "\n");
		return perr(err, -ECONNREFUSED, "store %s: cannot connect: "
			    "%.*s", s->path, len, m);
	}
	c->conninfo = strdup(conninfo);
	if (!c->conninfo)
		return perr(err, -ENOMEM, "store: out of memory");
	return session(s, c->c, err);
}

static void pg_close(struct store *s)
{
	struct pg_conn *c = pc(s);
	if (!c)
		return;
	if (c->c)
		flush(s, NULL);
	if (c->c)
		PQfinish(c->c);
	if (c->lc)
		PQfinish(c->lc);
	free(c->conninfo);
	free(c);
	s->conn = NULL;
}

/* ---- change notifications ---- */

#define CHANNEL "parley_changed"

/* Sent inside the writer's transaction: PostgreSQL delivers it at the
 * commit (one per transaction: identical ones are merged), and not at all
 * if the transaction (or the operation's savepoint) rolls back. A SELECT,
 * so that it is prepared and pipelined like the writes around it (NOTIFY
 * itself cannot be prepared). */
static int pg_notify(struct store *s, struct parley_err *err)
{
	static const char q[] = "SELECT pg_notify('" CHANNEL "', '')";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	return rc < 0 ? rc : db_run_deferred(s, st, "notify", err);
}

static void pg_unlisten(struct store *s)
{
	struct pg_conn *c = pc(s);
	if (c && c->lc) {
		PQfinish(c->lc);
		c->lc = NULL;
	}
	if (c) {
		c->lc_ready = false;
		c->ldial.on = false;
	}
}

/* A connection of its own: the store's is busy with transactions, and a
 * notification is read only between them. Made in steps like revive's:
 * -EINPROGRESS until it is (call again soon); never blocks. */
static int pg_listen(struct store *s, int *fd, struct parley_err *err)
{
	struct pg_conn *c = pc(s);
	const char *why = NULL;
	if (c->lc_ready)
		pg_unlisten(s);
	bool first = false;
	if (!c->lc) {
		c->lc = PQconnectStart(c->conninfo);
		if (!c->lc)
			return perr(err, -ENOMEM, "store: out of memory");
		dial_start(&c->ldial);
		first = true;
	}
	int rc = 0;
	int r = PQstatus(c->lc) == CONNECTION_BAD
		? -1 : dial_step(c->lc, &c->ldial, false,
				 first ? CONNECT_FIRST_WAIT_MS : 0, &why);
	if (r == 0)
		return perr(err, -EINPROGRESS, "store %s: listener: "
			    "connecting (%s)", s->path, why);
	c->ldial.on = false;
	if (r < 0) {
		const char *m = why ? why : PQerrorMessage(c->lc);
		rc = perr(err, -ECONNREFUSED, "store %s: listener cannot "
			  "connect: %.*s", s->path, (int)strcspn(m, "\n"), m);
	} else if ((rc = session(s, c->lc, err)) == 0) {
		PGresult *res = PQexec(c->lc, "LISTEN " CHANNEL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			const char *m = PQerrorMessage(c->lc);
			rc = perr(err, -ECONNRESET, "store %s: LISTEN: %.*s",
				  s->path, (int)strcspn(m, "\n"), m);
		}
		PQclear(res);
	}
	if (rc == 0 && PQsetnonblocking(c->lc, 1) != 0)
		rc = perr(err, -EIO, "store %s: listener: cannot set "
			  "non-blocking", s->path);
	if (rc < 0) {
		pg_unlisten(s);
		return rc;
	}
	c->lc_ready = true;
	*fd = PQsocket(c->lc);
	return 0;
}

/* Read what arrived: 1 if any notification, 0 if none, -ECONNRESET if
 * the listener's connection is lost (pg_listen again). */
static int pg_listen_take(struct store *s, struct parley_err *err)
{
	struct pg_conn *c = pc(s);
	if (!c->lc || !c->lc_ready)
		return perr(err, -ENOTCONN, "store %s: not listening",
			    s->path);
	if (PQconsumeInput(c->lc) != 1 || PQstatus(c->lc) != CONNECTION_OK) {
		const char *m = PQerrorMessage(c->lc);
		return perr(err, -ECONNRESET, "store %s: listener: %.*s",
			    s->path, (int)strcspn(m, "\n"), m);
	}
	int n = 0;
	PGnotify *nt;
	while ((nt = PQnotifies(c->lc)) != NULL) {
		n++;
		PQfreemem(nt);
	}
	return n > 0;
}

/* The portable schema in PostgreSQL's types, word by word outside
 * quotes: INTEGER -> BIGINT (SQLite's INTEGER is 64-bit), BLOB -> BYTEA,
 * TEXT -> TEXT COLLATE "C" (byte order, as SQLite compares). */
static char *pg_ddl(const char *sql)
{
	static const struct {
		const char *from, *to;
	} map[] = { { "INTEGER", "BIGINT" }, { "BLOB", "BYTEA" },
		    { "TEXT", "TEXT COLLATE \"C\"" } };
	size_t cap = strlen(sql) * 2 + 64, n = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	char quote = 0;
	for (const char *p = sql; *p;) {
		if (n + 32 > cap) {
			char *o = realloc(out, cap *= 2);
			if (!o) {
				free(out);
				return NULL;
			}
			out = o;
		}
		if (quote || *p == '\'' || *p == '"') {
			if (quote && *p == quote)
				quote = 0;
			else if (!quote)
				quote = *p;
			out[n++] = *p++;
			continue;
		}
		if (isalpha((unsigned char)*p) || *p == '_') {
			const char *e = p;
			while (isalnum((unsigned char)*e) || *e == '_')
				e++;
			const char *w = NULL;
			for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++)
				if ((size_t)(e - p) == strlen(map[k].from) &&
				    !strncmp(p, map[k].from, (size_t)(e - p)))
					w = map[k].to;
			size_t wl = w ? strlen(w) : (size_t)(e - p);
			while (n + wl + 32 > cap) {
				char *o = realloc(out, cap *= 2);
				if (!o) {
					free(out);
					return NULL;
				}
				out = o;
			}
			memcpy(out + n, w ? w : p, wl);
			n += wl;
			p = e;
			continue;
		}
		out[n++] = *p++;
	}
	out[n] = 0;
	return out;
}

/* A conninfo libpq accepts, and a printable form: the URI's host, port,
 * database and user, never its password. */
int db_pg_conninfo_check(const char *conninfo, char **shown,
			 struct parley_err *err)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(conninfo, &msg);
	if (!o) {
		int rc = perr(err, msg ? -EINVAL : -ENOMEM, "store: bad "
			      "PostgreSQL connection string: %.*s",
			      msg ? (int)strcspn(msg, "\n") : 13,
			      msg ? msg : "out of memory");
		PQfreemem(msg);
		return rc;
	}
	const char *host = "", *port = "", *db = "", *user = "",
		   *service = "";
	for (PQconninfoOption *k = o; k->keyword; k++) {
		const char *v = k->val ? k->val : "";
		if (!strcmp(k->keyword, "host"))
			host = v;
		else if (!strcmp(k->keyword, "port"))
			port = v;
		else if (!strcmp(k->keyword, "dbname"))
			db = v;
		else if (!strcmp(k->keyword, "user"))
			user = v;
		else if (!strcmp(k->keyword, "service"))
			service = v;
	}
	int n = asprintf(shown, "postgresql://%s%s%s%s%s/%s%s%s", user,
			 user[0] ? "@" : "", host, port[0] ? ":" : "", port,
			 db, service[0] ? "?service=" : "", service);
	PQconninfoFree(o);
	if (n < 0) {
		*shown = NULL;
		return perr(err, -ENOMEM, "store: out of memory");
	}
	return 0;
}

const struct db_ops db_pg_ops = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.prepare = pg_prepare,
	.finalize = pg_finalize,
	.reset = pg_reset,
	.step = pg_step,
	.bind_text = pg_bind_text,
	.bind_blob = pg_bind_blob,
	.bind_i64 = pg_bind_i64,
	.bind_null = pg_bind_null,
	.bind_count = pg_bind_count,
	.col_i64 = pg_col_i64,
	.col_text = pg_col_text,
	.col_blob = pg_col_blob,
	.col_bytes = pg_col_bytes,
	.col_isnull = pg_col_isnull,
	.col_name = pg_col_name,
	.changes = pg_changes,
	.run_deferred = pg_run_deferred,
	.exec = pg_exec,
	.in_tx = pg_in_tx,
	.begin_write = pg_begin_write,
	.try_write = pg_try_write,
	.notify = pg_notify,
	.listen = pg_listen,
	.listen_take = pg_listen_take,
	.unlisten = pg_unlisten,
	.begin_read = pg_begin_read,
	.end_read = pg_end_read,
	.rd_begin_sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	/* An array made once (an InitPlan): planned as index lookups with
	 * the array's names as keys, whatever their number (store_push.c
	 * has the measurements). */
	.name_list = "= ANY (ARRAY(SELECT jsonb_array_elements_text("
		     "CAST(?1 AS jsonb))))",
	.ddl = pg_ddl,
	/* A parley store is marked by the comment on schema_version (a
	 * database with some other schema_version is not one). */
	.q_app = "SELECT CASE WHEN obj_description(to_regclass("
		 "'schema_version'), 'pg_class') = 'parley store' "
		 "THEN 1349676153 ELSE 0 END",
	.q_any = "SELECT COUNT(*) FROM information_schema.tables "
		 "WHERE table_schema = current_schema()",
	.app_set = "COMMENT ON TABLE schema_version IS 'parley store'",
	.q_tables = "SELECT COUNT(*) FROM information_schema.tables "
		    "WHERE table_schema = current_schema() "
		    "AND table_type = 'BASE TABLE'",
};
