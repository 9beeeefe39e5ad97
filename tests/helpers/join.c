#include "tests/helpers/join.h"
#include "tests/helpers/testutil.h"
#include "common/fileio.h"
#include "common/pki.h"
#include "daemon/join.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pid_t spawn_logged(char *const argv[], const char *log)
{
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int read_port(const char *dir, const char *name)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (file_read_all(path, 64, &buf, &len, NULL) < 0)
		return 0;
	int port = atoi((char *)buf);
	free(buf);
	return port;
}

static bool ports_known(struct fleetd *f, void *ctx)
{
	struct jn *j = ctx;
	f->port = read_port(f->dir, "parleyd.port");
	j->join_port = read_port(f->dir, "parleyd.join-port");
	return f->port > 0 && j->join_port > 0;
}

char *jn_path(struct jn *j, const char *name)
{
	char *p = NULL;
	cr_assert_geq(asprintf(&p, "%s/%s", j->f.dir, name), 0);
	return p;
}

static void start(struct jn *j, bool release)
{
	memset(j, 0, sizeof(*j));
	struct fleetd *f = &j->f;
	fd_init(f);
	if (release) {
		char *out;
		char *argv[] = { T_BIN("parley-pki"), "release-key", f->dir,
				 NULL };
		int rc = t_run(argv, &out, 30);
		cr_assert_eq(rc, 0, "parley-pki release-key: %s", out);
		free(out);
	}
	char *ca = jn_path(j, "ca/ca.crt"), *crt = jn_path(j, "ca/parleyd.crt"),
	     *key = jn_path(j, "ca/parleyd.key"),
	     *cakey = jn_path(j, "ca/ca.key"),
	     *pol = jn_path(j, "ca/policy.key"), *log = jn_path(j, "parleyd.log");
	X509 *x = NULL;
	cr_assert_eq(pki_read_cert(ca, &x, NULL), 0);
	pki_fingerprint(x, j->ca_sha256);
	X509_free(x);
	char *argv[] = { T_BIN("parleyd"), "--listen", "127.0.0.1:0",
			 "--join-listen", "127.0.0.1:0", "--ca-key", cakey,
			 "--state-dir", f->dir, "--ca", ca, "--cert", crt,
			 "--key", key, "--policy-key", pol, "--store", f->store,
			 NULL };
	f->daemon = spawn_logged(argv, log);
	cr_assert(fd_wait(ports_known, f, j, 10000), "parleyd did not start");
	free(ca), free(crt), free(key), free(cakey), free(pol), free(log);
}

void jn_start(struct jn *j)
{
	start(j, false);
}

void jn_start_release(struct jn *j)
{
	start(j, true);
}

void jn_token(struct jn *j, const char *host, int64_t ttl_ms, char token[69])
{
	uint8_t d[32];
	cr_assert_eq(join_token_new(token, d), 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	struct store *s = fd_store(&j->f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_join_token_add(s, host,
					  (struct store_blob){ d, sizeof(d) },
					  now + ttl_ms, &err),
		     0, "%s", perr_msg(&err));
	store_close(s);
}

int jn_join(struct jn *j, const char *dir, const char *token,
	    const char *pin, char **out)
{
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%d", j->join_port);
	char *d = jn_path(j, dir);
	char *argv[] = { T_AGENT, "join", "--server", server, "--token",
			 (char *)token, "--ca-sha256",
			 (char *)(pin ? pin : j->ca_sha256), "--state-dir", d,
			 NULL };
	int rc = t_run(argv, out, 30);
	free(d);
	return rc;
}
