/*
 * The fleet suite's surroundings: a temporary directory, the PKI made
 * in-process, the store filled before the daemon starts, parleyd as a child
 * process, and what /proc says about it.
 */
#include "bench/fleet_bench.h"
#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "db/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DAY_S 86400L
#define LEAF_DAYS 30
#define DAEMON_START_MS 10000
#define DAEMON_STOP_MS 10000

uint64_t fleet_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double fleet_since_s(uint64_t t0_ns)
{
	return (double)(fleet_now_ns() - t0_ns) / 1e9;
}

static int join(char *out, const char *dir, const char *name,
		struct parley_err *err)
{
	if (path_join(out, PATH_MAX, dir, name) < 0)
		return perr(err, -ENAMETOOLONG, "%s/%s: path too long", dir,
			    name);
	return 0;
}

int fleet_env_init(struct fleet_env *e, struct parley_err *err)
{
	char self[PATH_MAX];
	memset(e, 0, sizeof(*e));
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return perr(err, -errno, "/proc/self/exe: %m");
	self[n] = 0;
	/* <build>/bench/bench_fleet: two levels up is the build directory. */
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(self, '/');
		if (!slash)
			return perr(err, -ENOENT, "cannot place %s in a build "
				    "directory", self);
		*slash = 0;
	}
	int rc = join(e->parleyd, self[0] ? self : "/", "bin/parleyd", err);
	if (rc < 0)
		return rc;
	if (access(e->parleyd, X_OK) < 0)
		return perr(err, -errno, "%s: %m (build parleyd first)",
			    e->parleyd);
	const char *tmp = getenv("TMPDIR");
	snprintf(e->dir, sizeof(e->dir), "%s/parley-bench-fleet.XXXXXX",
		 tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(e->dir))
		return perr(err, -errno, "mkdtemp %s: %m", e->dir);
	rc = join(e->store, e->dir, "parley.db", err);
	if (rc == 0)
		rc = join(e->log, e->dir, "parleyd.log", err);
	if (rc == 0)
		rc = join(e->ca, e->dir, "ca.crt", err);
	if (rc == 0)
		rc = join(e->ctx_crt, e->dir, "client.crt", err);
	if (rc == 0)
		rc = join(e->ctx_key, e->dir, "client.key", err);
	return rc;
}

/* dir's files, and those of its subdirectories (a replica's state). */
static void remove_tree(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) == 0 || depth > 2)
				continue;
			char sub[PATH_MAX];
			if (path_join(sub, sizeof(sub), dir, de->d_name) == 0)
				remove_tree(sub, depth + 1);
		}
		closedir(d);
	}
	rmdir(dir);
}

void fleet_env_remove(struct fleet_env *e)
{
	if (!e->dir[0])
		return;
	remove_tree(e->dir, 0);
	e->dir[0] = 0;
}

long fleet_raise_nofile(long want)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) < 0)
		return -1;
	if (r.rlim_max != RLIM_INFINITY && r.rlim_max < (rlim_t)want) {
		struct rlimit h = { (rlim_t)want, (rlim_t)want };
		if (setrlimit(RLIMIT_NOFILE, &h) == 0)
			r = h;
	}
	if (r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
	getrlimit(RLIMIT_NOFILE, &r);
	return r.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)r.rlim_cur;
}

/* ---- PKI ---------------------------------------------------------------- */

static int write_pair(const char *dir, const char *name, EVP_PKEY *k, X509 *x,
		      struct parley_err *err)
{
	char kp[PATH_MAX], cp[PATH_MAX], base[64];
	snprintf(base, sizeof(base), "%s.key", name);
	int rc = join(kp, dir, base, err);
	snprintf(base, sizeof(base), "%s.crt", name);
	if (rc == 0)
		rc = join(cp, dir, base, err);
	if (rc == 0)
		rc = pki_write_key(kp, k, err);
	if (rc == 0)
		rc = pki_write_cert(cp, x, err);
	return rc;
}

/* A key and a certificate from the CA, CN = name. */
static int issue(EVP_PKEY *ca_k, X509 *ca_x, const char *name, bool server,
		 EVP_PKEY **k, X509 **x, struct parley_err *err)
{
	*k = NULL;
	*x = NULL;
	int rc = pki_key_new(k, err);
	if (rc == 0)
		rc = pki_issue(ca_k, ca_x, *k, name, -PKI_SKEW_S,
			       LEAF_DAYS * DAY_S, server, x, err);
	if (rc < 0) {
		EVP_PKEY_free(*k);
		*k = NULL;
	}
	return rc;
}

/* The daemon's files: ca.crt, parleyd.crt/.key, policy.key; and the
 * client context's default identity. */
static int daemon_files(struct fleet_env *e, EVP_PKEY *ca_k, X509 *ca_x,
			struct parley_err *err)
{
	EVP_PKEY *k = NULL, *pol = NULL;
	X509 *x = NULL;
	char pp[PATH_MAX];
	int rc = pki_write_cert(e->ca, ca_x, err);
	if (rc == 0)
		rc = issue(ca_k, ca_x, "parleyd", true, &k, &x, err);
	if (rc == 0)
		rc = write_pair(e->dir, "parleyd", k, x, err);
	EVP_PKEY_free(k);
	X509_free(x);
	k = NULL;
	x = NULL;
	if (rc == 0)
		rc = issue(ca_k, ca_x, "fleet-client", false, &k, &x, err);
	if (rc == 0)
		rc = write_pair(e->dir, "client", k, x, err);
	EVP_PKEY_free(k);
	X509_free(x);
	if (rc == 0)
		rc = pki_key_new(&pol, err);
	if (rc == 0)
		rc = join(pp, e->dir, "policy.key", err);
	if (rc == 0)
		rc = pki_write_key(pp, pol, err);
	EVP_PKEY_free(pol);
	return rc;
}

int fleet_pki(struct fleet_env *e, unsigned n, struct fleet_id **out,
	      struct parley_err *err)
{
	EVP_PKEY *ca_k = NULL;
	X509 *ca_x = NULL;
	*out = NULL;
	struct fleet_id *ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids)
		return perr(err, -ENOMEM, "out of memory");
	int rc = pki_ca_new("parley-bench-ca", 30, &ca_k, &ca_x, err);
	if (rc == 0)
		rc = daemon_files(e, ca_k, ca_x, err);
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		snprintf(ids[i].name, sizeof(ids[i].name), "fleet-%05u", i);
		rc = issue(ca_k, ca_x, ids[i].name, false, &ids[i].key,
			   &ids[i].cert, err);
	}
	EVP_PKEY_free(ca_k);
	X509_free(ca_x);
	if (rc < 0) {
		fleet_ids_free(ids, n);
		return rc;
	}
	*out = ids;
	return 0;
}

void fleet_ids_free(struct fleet_id *ids, unsigned n)
{
	if (!ids)
		return;
	for (unsigned i = 0; i < n; i++) {
		X509_free(ids[i].cert);
		EVP_PKEY_free(ids[i].key);
	}
	free(ids);
}

/* ---- the store ---------------------------------------------------------- */

void fleet_part_name(char *out, const char *host, char ab)
{
	snprintf(out, FLEET_NAME_MAX + 4, "%s-%c", host, ab);
}

void fleet_chan_name(char *out, const char *host)
{
	snprintf(out, FLEET_NAME_MAX + 4, "%s-ch", host);
}

/* Each host as a join leaves it: its certificate pinned (a host without
 * a pin would have it pinned at its first hello, one transaction each).
 * Hosts no simulated agent speaks for (the API bench's extra ones) have
 * no certificate and get no pin. */
static int populate_host(struct store *s, const struct fleet_id *id,
			 uint64_t *version, struct parley_err *err)
{
	static const char spec[] = "{}";
	const char *host = id->name;
	char a[FLEET_NAME_MAX + 4], b[FLEET_NAME_MAX + 4];
	uint8_t fp[32];
	unsigned fpn = 0;
	fleet_part_name(a, host, 'a');
	fleet_part_name(b, host, 'b');
	if (id->cert && (X509_digest(id->cert, EVP_sha256(), fp, &fpn) != 1 ||
			 fpn != sizeof(fp)))
		return perr(err, -EIO, "%s: certificate fingerprint", host);
	int rc = store_host_put(s, host, "",
				(struct store_blob){ fpn ? fp : NULL, fpn },
				err);
	for (int i = 0; rc == 0 && i < 2; i++) {
		struct store_part_in p = {
			.name = i ? b : a, .host = host,
			.kind = STORE_PART_THIN, .spec_json = spec,
			.spec_len = sizeof(spec) - 1, .state = "defined",
		};
		rc = store_partition_put(s, &p, NULL, err);
	}
	if (rc < 0)
		return rc;
	struct grant g = { .dir = GRANT_BOTH, .ring_bytes = FLEET_RING_BEFORE,
			   .require_integrity = true };
	fleet_chan_name(g.channel, host);
	snprintf(g.a, sizeof(g.a), "%s", a);
	snprintf(g.b, sizeof(g.b), "%s", b);
	return store_grant_add(s, &g, version, err);
}

int fleet_populate(const struct fleet_env *e, struct fleet_id *ids,
		   unsigned n, struct parley_err *err)
{
	struct store *s = NULL;
	int rc = store_open(e->store, &s, err);
	if (rc == 0)
		rc = store_begin(s, err);
	for (unsigned i = 0; rc == 0 && i < n; i++)
		rc = populate_host(s, &ids[i], &ids[i].version, err);
	if (rc == 0)
		rc = store_commit(s, err);
	else if (s)
		store_rollback(s, NULL);
	store_close(s);
	return rc;
}

/* ---- parleyd ------------------------------------------------------------ */

static int read_port(const char *dir)
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	if (join(path, dir, "parleyd.port", NULL) < 0 ||
	    file_read_all(path, 64, &buf, &len, NULL) < 0)
		return 0;
	int port = atoi((char *)buf);
	free(buf);
	return port;
}

static bool alive(pid_t *pid)
{
	if (*pid <= 0)
		return false;
	if (waitpid(*pid, NULL, WNOHANG) == *pid) {
		*pid = 0;
		return false;
	}
	return true;
}

/* parleyd on e's certificates, keys and store, with `state` as its state
 * directory and `log` as its log; *pid and *port once it wrote the port. */
static int start_in(const struct fleet_env *e, const char *state,
		    const char *log, pid_t *pid, int *port,
		    struct parley_err *err)
{
	char crt[PATH_MAX], key[PATH_MAX], pol[PATH_MAX];
	int rc = join(crt, e->dir, "parleyd.crt", err);
	if (rc == 0)
		rc = join(key, e->dir, "parleyd.key", err);
	if (rc == 0)
		rc = join(pol, e->dir, "policy.key", err);
	if (rc < 0)
		return rc;
	/* Free ports for everything: tests and other benches may run. */
	char *argv[] = { (char *)e->parleyd, "--listen", "127.0.0.1:0",
			 "--api-listen", "127.0.0.1:0",
			 "--state-dir", (char *)state, "--ca", (char *)e->ca,
			 "--cert", crt, "--key", key, "--policy-key", pol,
			 "--store", (char *)e->store, NULL };
	*pid = fork();
	if (*pid < 0)
		return perr(err, -errno, "fork: %m");
	if (*pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	for (int waited = 0; waited < DAEMON_START_MS; waited += 10) {
		if ((*port = read_port(state)) > 0)
			return 0;
		if (!alive(pid))
			return perr(err, -ECHILD, "parleyd exited at start "
				    "(see %s)", log);
		usleep(10000);
	}
	return perr(err, -ETIMEDOUT, "parleyd did not write its port in "
		    "%d ms (see %s)", DAEMON_START_MS, log);
}

int fleet_daemon_start(struct fleet_env *e, struct parley_err *err)
{
	return start_in(e, e->dir, e->log, &e->pid, &e->port, err);
}

int fleet_replica_start(const struct fleet_env *e, const char *name,
			pid_t *pid, int *port, struct parley_err *err)
{
	char state[PATH_MAX], log[PATH_MAX + 8];
	int rc = join(state, e->dir, name, err);
	if (rc < 0)
		return rc;
	if (mkdir(state, 0700) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %m", state);
	snprintf(log, sizeof(log), "%s.log", state);
	return start_in(e, state, log, pid, port, err);
}

bool fleet_daemon_alive(struct fleet_env *e)
{
	if (e->pid <= 0)
		return false;
	if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
		e->pid = 0;
		return false;
	}
	return true;
}

void fleet_daemon_stop(struct fleet_env *e)
{
	if (e->pid <= 0)
		return;
	kill(e->pid, SIGTERM);
	for (int waited = 0; waited < DAEMON_STOP_MS; waited += 10) {
		if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
			e->pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(e->pid, SIGKILL);
	waitpid(e->pid, NULL, 0);
	e->pid = 0;
}

/* ---- /proc -------------------------------------------------------------- */

long fleet_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

double fleet_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command may hold spaces and parentheses: fields start after
	 * the last ')'. utime and stime are fields 14 and 15. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double rusage_s(int who)
{
	struct rusage r;
	if (getrusage(who, &r) < 0)
		return 0;
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double fleet_self_cpu_s(void)
{
	return rusage_s(RUSAGE_SELF);
}

double fleet_family_cpu_s(void)
{
	return rusage_s(RUSAGE_SELF) + rusage_s(RUSAGE_CHILDREN);
}

int fleet_host_cpu(double *proc_s, double *irq_s)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -errno;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
		       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return -EINVAL;
	/* user nice system [idle iowait] irq softirq [steal] */
	double hz = (double)sysconf(_SC_CLK_TCK);
	*proc_s = (double)(v[0] + v[1] + v[2]) / hz;
	*irq_s = (double)(v[5] + v[6]) / hz;
	return 0;
}
