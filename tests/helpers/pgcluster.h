/*
 * A throw-away PostgreSQL cluster in a directory of the caller's: initdb
 * (as the `postgres` system user when running as root: initdb refuses
 * root) into DIR/data, pg_ctl start with its unix socket in DIR/sock and
 * no TCP listener; stopped by its postmaster's PID. Plain C: the tests
 * (tests/helpers/pgtmp.c) and bench/bench_store.c share it.
 */
#ifndef PARLEY_TESTS_PGCLUSTER_H
#define PARLEY_TESTS_PGCLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#define PGC_BIN "/usr/lib/postgresql/15/bin"
/* Any number: the socket is in a directory of its own. */
#define PGC_PORT "5432"

/* Start it in dir (which exists), or find it started: dir/ready and
 * dir/failed (holding the reason) keep the outcome for later callers,
 * who must hold a lock around this. NULL when up, else why not (in why).
 * fsync off for tests (a cluster that dies is thrown away anyway). */
const char *pgc_start(const char *dir, bool fsync, char *why, size_t cap);
/* "host=DIR/sock port=5432 user=postgres" */
void pgc_conninfo(const char *dir, char *out, size_t cap);
/* pg_ctl restart (fast: every session is ended) with the options it was
 * started with; NULL when up again, else why not. */
const char *pgc_restart(const char *dir, char *why, size_t cap);
/* The postmaster's PID (0: none found). */
long pgc_postmaster(const char *dir);
/* Stop the postmaster by PID (fast shutdown, then SIGKILL after 10 s) and
 * remove dir. */
void pgc_stop(const char *dir);
/* Stop and remove every cluster DIR/PREFIX<pid> whose <pid> is not alive
 * (a run killed before its clean-up left it running); its DIR/PREFIX<pid>
 * .lock too. A live PID (another run, or a reused PID) is left alone.
 * Answers how many were reaped. */
int pgc_reap_dead(const char *dir, const char *prefix);

#endif
