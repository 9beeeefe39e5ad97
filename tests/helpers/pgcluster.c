/*
 * tests/helpers/pgcluster.h: a throw-away PostgreSQL cluster in a
 * directory. Plain C (no Criterion): the tests (pgtmp.c) and the store
 * bench use it.
 */
#include "tests/helpers/pgcluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

const char *pgc_start(const char *dir, bool fsync, char *why, size_t cap)
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
	if (access(PGC_BIN "/initdb", X_OK) != 0) {
		snprintf(why, cap, "no %s/initdb (./dev deps --test installs "
			 "postgresql)", PGC_BIN);
		rc = -1;
	}
	if (rc == 0 && ((mkdir(sock, 0755) < 0 && errno != EEXIST) ||
			chown_pg(dir) < 0 || chown_pg(sock) < 0)) {
		snprintf(why, cap, "%s: %s", sock, strerror(errno));
		rc = -1;
	}
	if (rc == 0) {
		char *argv[] = { PGC_BIN "/initdb", "-D", data, "-A", "trust",
				 "-U", "postgres", "-E", "UTF8",
				 "--locale=C", "--no-sync", NULL };
		rc = run_as_pg(argv, log, why, cap);
	}
	if (rc == 0) {
		char opts[512];
		/* No TCP at all. */
		snprintf(opts, sizeof(opts), "-k %s -p " PGC_PORT
			 " -c listen_addresses='' -c fsync=%s"
			 " -c max_connections=200", sock, fsync ? "on" : "off");
		char *argv[] = { PGC_BIN "/pg_ctl", "-D", data, "-l", log,
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

const char *pgc_restart(const char *dir, char *why, size_t cap)
{
	char data[256], log[256];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	char *argv[] = { PGC_BIN "/pg_ctl", "-D", data, "-l", log, "-w",
			 "-t", "60", "-m", "fast", "restart", NULL };
	return run_as_pg(argv, log, why, cap) == 0 ? NULL : why;
}

void pgc_conninfo(const char *dir, char *out, size_t cap)
{
	snprintf(out, cap, "host=%s/sock port=" PGC_PORT " user=postgres",
		 dir);
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* A stale postmaster.pid (its postmaster gone, the PID reused) must not
 * get another process signalled. */
static bool is_postgres(pid_t pid)
{
	char p[64], comm[32] = "";
	snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return false;
	bool ok = fgets(comm, sizeof(comm), f) &&
		  strncmp(comm, "postgres", 8) == 0;
	fclose(f);
	return ok;
}

/* The postmaster's PID is the first line of postmaster.pid. */
long pgc_postmaster(const char *dir)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/data/postmaster.pid", dir);
	FILE *f = fopen(p, "r");
	long pid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

/* It is not our child (pg_ctl detached it), so poll for it to go. */
void pgc_stop(const char *dir)
{
	long pid = pgc_postmaster(dir);
	if (pid > 1 && is_postgres((pid_t)pid) &&
	    kill((pid_t)pid, SIGINT) == 0) {
		for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
			nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
		if (kill((pid_t)pid, 0) == 0)
			kill((pid_t)pid, SIGKILL);
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int pgc_reap_dead(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t plen = strlen(prefix);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) != 0)
			continue;
		char *end;
		errno = 0;
		long pid = strtol(e->d_name + plen, &end, 10);
		if (errno || end == e->d_name + plen || *end || pid <= 1 ||
		    pid > INT_MAX)
			continue; /* not a run's cluster (e.g. its .lock) */
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		pgc_stop(p);
		snprintf(p, sizeof(p), "%s/%s.lock", dir, e->d_name);
		unlink(p);
		n++;
	}
	closedir(d);
	return n;
}
