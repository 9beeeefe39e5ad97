/*
 * tests/helpers/pgtmp.h: the run's throw-away PostgreSQL cluster.
 */
#include "tests/helpers/pgtmp.h"
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

#define PG_BIN "/usr/lib/postgresql/15/bin"
/* Any number: the socket is in a directory of the run's own and the
 * cluster listens on no TCP port at all. */
#define PG_PORT "5432"
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

/* Run argv (as `postgres` when we are root: initdb refuses root), its
 * output to log; 0 or why not in why. */
static int run_as_pg(char *const argv[], const char *log, char *why,
		     size_t cap)
{
	struct passwd *pw = NULL;
	if (geteuid() == 0 && !(pw = getpwnam("postgres"))) {
		snprintf(why, cap, "running as root and there is no "
			 "\"postgres\" user to run the cluster as");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, cap, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		if (pw && (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
			   setuid(pw->pw_uid) < 0))
			_exit(126);
		/* Opened as that user: pg_ctl -l appends to it too. */
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	snprintf(why, cap, "%s exited with %d (log: %s)", argv[0],
		 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), log);
	return -1;
}

static int chown_pg(const char *path)
{
	struct passwd *pw = geteuid() == 0 ? getpwnam("postgres") : NULL;
	return pw ? chown(path, pw->pw_uid, pw->pw_gid) : 0;
}

/* Under the run's lock: initdb and start, or find it started. The
 * outcome is kept in files, so later callers (other workers) answer at
 * once: `ready` or `failed` (holding the reason). */
static const char *start_locked(const char *dir, char *why, size_t cap)
{
	char p[256], data[256], sock[256], log[256];
	snprintf(p, sizeof(p), "%s/ready", dir);
	if (access(p, F_OK) == 0)
		return NULL;
	snprintf(p, sizeof(p), "%s/failed", dir);
	FILE *f = fopen(p, "r");
	if (f) {
		size_t n = fread(why, 1, cap - 1, f);
		why[n] = 0;
		fclose(f);
		return why;
	}
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	int rc = 0;
	if (access(PG_BIN "/initdb", X_OK) != 0) {
		snprintf(why, cap, "no %s/initdb (./dev deps installs "
			 "postgresql)", PG_BIN);
		rc = -1;
	}
	if (rc == 0 && ((mkdir(sock, 0700) < 0 && errno != EEXIST) ||
			chown_pg(dir) < 0 || chown_pg(sock) < 0)) {
		snprintf(why, cap, "%s: %s", sock, strerror(errno));
		rc = -1;
	}
	if (rc == 0) {
		char *argv[] = { PG_BIN "/initdb", "-D", data, "-A", "trust",
				 "-U", "postgres", "-E", "UTF8",
				 "--locale=C", "--no-sync", NULL };
		rc = run_as_pg(argv, log, why, cap);
	}
	if (rc == 0) {
		char opts[512];
		/* No TCP at all; fsync off: a test cluster that dies is
		 * thrown away anyway, and the store's durability is SQLite's
		 * tests' and PostgreSQL's business. */
		snprintf(opts, sizeof(opts), "-k %s -p " PG_PORT
			 " -c listen_addresses='' -c fsync=off"
			 " -c max_connections=200", sock);
		char *argv[] = { PG_BIN "/pg_ctl", "-D", data, "-l", log,
				 "-w", "-t", "60", "-o", opts, "start", NULL };
		rc = run_as_pg(argv, log, why, cap);
	}
	snprintf(p, sizeof(p), "%s/%s", dir, rc == 0 ? "ready" : "failed");
	f = fopen(p, "w");
	if (f) {
		if (rc < 0)
			fputs(why, f);
		fclose(f);
	}
	return rc == 0 ? NULL : why;
}

const char *t_pg_cluster(const char **base)
{
	static char why[512], conn[300];
	static bool up;
	const char *dir = run_name();
	snprintf(conn, sizeof(conn), "host=%s/sock port=" PG_PORT
		 " user=postgres", dir);
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
	const char *r = start_locked(dir, why, sizeof(why));
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
	char buf[32];
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	setenv(RUN_ENV, buf, 1);
}

/* Stop the cluster by its postmaster's PID (the first line of
 * postmaster.pid), wait for it to go, remove the directory. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	const char *dir = run_name();
	char p[256];
	snprintf(p, sizeof(p), "%s/data/postmaster.pid", dir);
	FILE *f = fopen(p, "r");
	long pid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid > 1 && kill((pid_t)pid, SIGINT) == 0) {
		/* Fast shutdown; not our child, so poll rather than wait. */
		for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
			nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
		if (kill((pid_t)pid, 0) == 0)
			kill((pid_t)pid, SIGKILL);
	}
	if (access(dir, F_OK) == 0)
		t_rmtree(dir);
	snprintf(p, sizeof(p), "%s.lock", dir);
	unlink(p);
}
