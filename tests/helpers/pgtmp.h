/*
 * A throw-away PostgreSQL cluster for the tests, and store locations on
 * either backend, so one test body runs on SQLite and on PostgreSQL.
 *
 * The cluster is started on first use, once per test run: the runner
 * (a Criterion report hook) names the run before any worker starts, the
 * first worker that needs PostgreSQL runs initdb (as the `postgres` system
 * user when the tests run as root) into /tmp/parley-pg-<run>/ and pg_ctl
 * start with a private unix socket directory and no TCP listener, under a
 * lock so the other workers wait and then share it; every test gets a
 * database of its own (CREATE DATABASE), dropped at its end. When the run
 * ends, the runner stops the cluster by its postmaster PID and removes the
 * directory. Where PostgreSQL cannot be started, the test is skipped with
 * the reason (a failure when PARLEY_REQUIRE has "postgresql").
 */
#ifndef PARLEY_TESTS_PGTMP_H
#define PARLEY_TESTS_PGTMP_H

#include <stdbool.h>
#include <stddef.h>

/* The backend the running test stores on (set by STORE_TEST's wrapper). */
extern bool t_store_pg;

/* NULL when the run's cluster is up (started now if need be), else why
 * not. *base is "host=<socket dir> port=<p> user=postgres". */
const char *t_pg_cluster(const char **base);

/* A fresh, empty store location for the running test: dir/<name> on
 * SQLite, a new database on PostgreSQL (skipping the test with the reason
 * when there is no cluster). */
void t_store_uri(const char *dir, const char *name, char *uri, size_t cap);
/* Drop the database a PostgreSQL uri names (nothing for SQLite: the
 * directory goes with the test's). Connections to it are ended. */
void t_store_uri_drop(const char *uri);

/* One SQL statement through libpq on a store uri t_store_uri made
 * (tests that look behind the store's back); cr_asserts it ran. */
void t_pg_exec(const char *uri, const char *sql);
/* The first column of the first row as text (malloc'd). */
char *t_pg_text(const char *uri, const char *sql);

/* A test that runs on both backends: suite `store` on SQLite, `store_pg`
 * on PostgreSQL; the body sees the backend in t_store_pg. */
#define STORE_TEST(suite, name, ...)                                      \
	static void suite##_##name##_body(void);                          \
	Test(suite, name, ##__VA_ARGS__)                                  \
	{                                                                 \
		t_store_pg = false;                                       \
		suite##_##name##_body();                                  \
	}                                                                 \
	Test(suite##_pg, name, ##__VA_ARGS__)                             \
	{                                                                 \
		t_store_pg = true;                                        \
		suite##_##name##_body();                                  \
	}                                                                 \
	static void suite##_##name##_body(void)

#endif
