/*
 * tests/helpers/pgtmp.h: the run's throw-away PostgreSQL cluster.
 */
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/pgcluster.h"
#include "tests/helpers/testutil.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_ENV "PARLEY_PG_RUN"

bool t_store_pg;

static char run_dir[128];

static const char *run_name(void)
{
	const char *r = getenv(RUN_ENV);
	if (!r) {
		/* No report hook ran (a tool linking this file): this process
		 * is the run. */
		char buf[32];
		snprintf(buf, sizeof(buf), "%d", (int)getpid());
		setenv(RUN_ENV, buf, 1);
		r = getenv(RUN_ENV);
	}
	snprintf(run_dir, sizeof(run_dir), "/tmp/parley-pg-%s", r);
	return run_dir;
}

const char *t_pg_cluster(const char **base)
{
	static char why[512], conn[300];
	static bool up;
	const char *dir = run_name();
	pgc_conninfo(dir, conn, sizeof(conn));
	*base = conn;
	if (up)
		return NULL;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(why, sizeof(why), "%s: %s", dir, strerror(errno));
		return why;
	}
	char lockp[160];
	snprintf(lockp, sizeof(lockp), "%s.lock", dir);
	int fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		snprintf(why, sizeof(why), "%s: %s", lockp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return why;
	}
	const char *r = pgc_start(dir, false, why, sizeof(why));
	close(fd);
	up = r == NULL;
	return r;
}

static PGconn *admin(const char *base)
{
	char ci[400];
	snprintf(ci, sizeof(ci), "%s dbname=postgres", base);
	PGconn *c = PQconnectdb(ci);
	cr_assert(c && PQstatus(c) == CONNECTION_OK, "connect %s: %s", ci,
		  c ? PQerrorMessage(c) : "out of memory");
	return c;
}

static void admin_exec(const char *base, const char *sql)
{
	PGconn *c = admin(base);
	PGresult *r = PQexec(c, sql);
	cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql,
		     PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
}

void t_store_uri(const char *dir, const char *name, char *uri, size_t cap)
{
	if (!t_store_pg) {
		snprintf(uri, cap, "%s/%s", dir, name);
		return;
	}
	const char *base;
	const char *why = t_pg_cluster(&base);
	if (why && t_required("postgresql"))
		cr_assert_fail("PARLEY_REQUIRE=postgresql: %s", why);
	if (why)
		cr_skip_test("needs a PostgreSQL cluster: %s", why);
	static unsigned n;
	char db[64], sql[160];
	snprintf(db, sizeof(db), "t%d_%u", (int)getpid(), n++);
	/* FILE_COPY: a copy of the small template, faster than logging it
	 * block by block. */
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE template0 "
		 "STRATEGY FILE_COPY", db);
	admin_exec(base, sql);
	snprintf(uri, cap, "postgresql:%s dbname=%s", base, db);
	(void)name;
}

void t_store_uri_drop(const char *uri)
{
	const char *db = strstr(uri, "dbname=");
	if (strncmp(uri, "postgresql:", 11) != 0 || !db)
		return;
	const char *base;
	if (t_pg_cluster(&base))
		return;
	char sql[160];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
		 db + strlen("dbname="));
	admin_exec(base, sql);
}

static PGresult *raw(const char *uri, const char *sql, PGconn **c)
{
	cr_assert(strncmp(uri, "postgresql:", 11) == 0, "%s", uri);
	*c = PQconnectdb(uri + 11);
	cr_assert(*c && PQstatus(*c) == CONNECTION_OK, "connect %s", uri);
	PGresult *r = PQexec(*c, sql);
	ExecStatusType s = PQresultStatus(r);
	cr_assert(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s",
		  sql, PQresultErrorMessage(r));
	return r;
}

void t_pg_exec(const char *uri, const char *sql)
{
	PGconn *c;
	PQclear(raw(uri, sql, &c));
	PQfinish(c);
}

char *t_pg_text(const char *uri, const char *sql)
{
	PGconn *c;
	PGresult *r = raw(uri, sql, &c);
	cr_assert(PQntuples(r) >= 1 && PQnfields(r) >= 1, "%s: no row", sql);
	char *v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

/* ---- the run: named before the workers start, cleaned up after ---- */

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	/* Runs killed before their POST_ALL left clusters running. */
	int n = pgc_reap_dead("/tmp", "parley-pg-");
	if (n > 0)
		fprintf(stderr, "pgtmp: stopped %d cluster(s) of dead runs\n",
			n);
	char buf[32];
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	setenv(RUN_ENV, buf, 1);
}

/* Stop the cluster by its postmaster's PID, remove its directory. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	const char *dir = run_name();
	if (access(dir, F_OK) == 0)
		pgc_stop(dir);
	char p[256];
	snprintf(p, sizeof(p), "%s.lock", dir);
	unlink(p);
}
