#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"
#include "common/fileio.h"
#include "agent/outbox.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define T_PKI T_BIN("parley-pki")

static void run_ok(char *const argv[])
{
	char *out;
	int rc = t_run(argv, &out, 30);
	cr_assert_eq(rc, 0, "%s failed: %s", argv[0], out);
	free(out);
}

static pid_t spawn_logged(char *const argv[], const char *log)
{
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void stop_pid(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	for (int i = 0; i < 500; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

void fd_init(struct fleetd *f)
{
	memset(f, 0, sizeof(*f));
	f->dir = t_tmpdir();
	char ca[600];
	snprintf(ca, sizeof(ca), "%s/ca", f->dir);
	char *a1[] = { T_PKI, "ca", ca, NULL };
	run_ok(a1);
	char *a2[] = { T_PKI, "issue", ca, "parleyd", "--server", NULL };
	run_ok(a2);
	snprintf(f->store, sizeof(f->store), "%s/parley.db", f->dir);
	struct store *s = fd_store(f);
	store_close(s);
}

struct store *fd_store(struct fleetd *f)
{
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(f->store, &s, &err), 0, "%s", perr_msg(&err));
	return s;
}

void fd_each_host(struct store *s, void (*cb)(const char *name, void *ctx),
		  void *ctx)
{
	char after[STORE_NAME_MAX] = "";
	int n;
	do {
		struct store_host *h = NULL;
		n = store_host_list(s, after, STORE_LIST_MAX, &h, NULL);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++)
			cb(h[i].name, ctx);
		if (n > 0)
			snprintf(after, sizeof(after), "%s", h[n - 1].name);
		free(h);
	} while (n == STORE_LIST_MAX);
}

void fd_each_partition(struct store *s,
		       void (*cb)(const char *name, void *ctx), void *ctx)
{
	char after[STORE_NAME_MAX] = "";
	int n;
	do {
		struct store_partition *p = NULL;
		n = store_partition_list(s, NULL, after, STORE_LIST_MAX, &p,
					 NULL);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++)
			cb(p[i].name, ctx);
		if (n > 0) {
			snprintf(after, sizeof(after), "%s", p[n - 1].name);
			store_partition_list_free(p, (unsigned)n);
		}
	} while (n == STORE_LIST_MAX);
}

static bool port_known(struct fleetd *f, void *ctx)
{
	(void)ctx;
	char path[600];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/parleyd.port", f->dir);
	if (file_read_all(path, 64, &buf, &len, NULL) < 0)
		return false;
	f->port = atoi((char *)buf);
	free(buf);
	return f->port > 0;
}

void fd_start_daemon(struct fleetd *f)
{
	char path[600], ca[600], crt[600], key[600], pol[600], log[600];
	snprintf(path, sizeof(path), "%s/parleyd.port", f->dir);
	unlink(path);
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", f->dir);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", f->dir);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", f->dir);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", f->dir);
	snprintf(log, sizeof(log), "%s/parleyd.log", f->dir);
	char listen[64];
	/* The same port again after a restart, so agents find it. */
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", f->port);
	char *argv[] = { T_PARLEYD, "--listen", listen, "--state-dir", f->dir,
			 "--ca", ca, "--cert", crt, "--key", key,
			 "--policy-key", pol, "--store", f->store, NULL };
	f->daemon = spawn_logged(argv, log);
	cr_assert(fd_wait(port_known, f, NULL, 10000), "parleyd did not start");
}

void fd_kill_daemon(struct fleetd *f)
{
	stop_pid(&f->daemon, SIGKILL);
}

static void copy_file(const char *from, const char *to)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(file_read_all(from, 1 << 20, &buf, &len, NULL), 0, "%s",
		     from);
	FILE *o = fopen(to, "wb");
	cr_assert(o, "%s", to);
	cr_assert_eq(fwrite(buf, 1, len, o), len);
	fclose(o);
	chmod(to, 0600);
	free(buf);
}

struct fd_agent *fd_host(struct fleetd *f, const char *name,
			 const char *variant)
{
	cr_assert_lt(f->n, FD_AGENTS_MAX);
	struct fd_agent *a = &f->agent[f->n++];
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(a->dir, sizeof(a->dir), "%s/agent-%s", f->dir, name);
	snprintf(a->log, sizeof(a->log), "%s/agent-%s.log", f->dir, name);
	cr_assert_eq(mkdir(a->dir, 0700), 0);
	char ca[600];
	snprintf(ca, sizeof(ca), "%s/ca", f->dir);
	if (variant && !strcmp(variant, "foreign")) {
		snprintf(ca, sizeof(ca), "%s/other-ca", f->dir);
		char *a0[] = { T_PKI, "ca", ca, NULL };
		if (access(ca, F_OK) != 0)
			run_ok(a0);
	}
	char *a1[] = { T_PKI, "issue", ca, (char *)name,
		       variant && !strcmp(variant, "expired") ? "--expired"
							      : NULL, NULL };
	run_ok(a1);
	char from[700], to[700];
	snprintf(from, sizeof(from), "%s/%s.crt", ca, name);
	snprintf(to, sizeof(to), "%s/host.crt", a->dir);
	copy_file(from, to);
	snprintf(from, sizeof(from), "%s/%s.key", ca, name);
	snprintf(to, sizeof(to), "%s/host.key", a->dir);
	copy_file(from, to);
	/* The CA and policy key of the real fleet, whatever signed the cert. */
	snprintf(from, sizeof(from), "%s/ca/ca.crt", f->dir);
	snprintf(to, sizeof(to), "%s/ca.crt", a->dir);
	copy_file(from, to);
	snprintf(from, sizeof(from), "%s/ca/policy.pub", f->dir);
	snprintf(to, sizeof(to), "%s/policy.pub", a->dir);
	copy_file(from, to);
	return a;
}

void fd_start_agent(struct fleetd *f, struct fd_agent *a,
		    const char *const *specs)
{
	fd_start_agent_with(f, a, specs, NULL);
}

void fd_start_agent_with(struct fleetd *f, struct fd_agent *a,
			 const char *const *specs, const char *const *extra)
{
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%d", f->port);
	char *argv[32] = { T_AGENT, "serve", "--state-dir", a->dir, "--server",
			   server, "--vmm", T_VMM, "--image-dir",
			   PARLEY_BUILD_DIR "/guest", "--rehash-interval", "0" };
	int n = 12;
	for (int i = 0; extra && extra[i] && n < 20; i++)
		argv[n++] = strdup(extra[i]);
	for (int i = 0; specs && specs[i] && n < 30; i++) {
		char name[64];
		snprintf(name, sizeof(name), "spec%d.json", i);
		argv[n++] = t_write(a->dir, name, specs[i], strlen(specs[i]));
	}
	argv[n] = NULL;
	a->pid = spawn_logged(argv, a->log);
	for (int i = 12; i < n; i++)
		free(argv[i]);
}

void fd_stop_agent(struct fd_agent *a)
{
	stop_pid(&a->pid, SIGTERM);
}

void fd_kill_agent(struct fd_agent *a)
{
	cr_assert_gt(a->pid, 0, "agent %s is not running", a->name);
	kill(a->pid, SIGKILL);
	waitpid(a->pid, NULL, 0);
	a->pid = 0;
}

struct ob_walk {
	void (*cb)(const char *event, const char *channel, void *ctx);
	void *ctx;
};

static int ob_rec(uint64_t seq, const uint8_t *frame, size_t len,
		  const Parley__V1__Envelope *e, void *ctx)
{
	struct ob_walk *w = ctx;
	(void)seq, (void)frame, (void)len;
	if (e->body_case != PARLEY__V1__ENVELOPE__BODY_AUDIT)
		return 0;
	for (size_t i = 0; i < e->audit->n_events; i++)
		w->cb(e->audit->events[i]->event, e->audit->events[i]->channel,
		      w->ctx);
	return 0;
}

void fd_outbox_events(const struct fd_agent *a,
		      void (*cb)(const char *event, const char *channel,
				 void *ctx), void *ctx)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/outbox", a->dir);
	uint8_t *buf;
	size_t len;
	if (file_read_all(path, OUTBOX_FILE_MAX, &buf, &len, NULL) < 0)
		return;
	struct ob_walk w = { cb, ctx };
	struct outbox_scan sc;
	outbox_parse(buf, len, ob_rec, &w, &sc);
	free(buf);
}

bool fd_wait(bool (*cond)(struct fleetd *, void *), struct fleetd *f,
	     void *ctx, int ms)
{
	for (int waited = 0; waited < ms; waited += 20) {
		if (cond(f, ctx))
			return true;
		usleep(20000);
	}
	return cond(f, ctx);
}

static char *slurp(const char *path)
{
	uint8_t *buf;
	size_t len;
	if (file_read_all(path, 16 << 20, &buf, &len, NULL) < 0)
		return strdup("");
	return (char *)buf;
}

char *fd_agent_log(const struct fd_agent *a)
{
	return slurp(a->log);
}

char *fd_daemon_log(const struct fleetd *f)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/parleyd.log", f->dir);
	return slurp(path);
}

void fd_stop(struct fleetd *f)
{
	for (unsigned i = 0; i < f->n; i++)
		fd_stop_agent(&f->agent[i]);
	stop_pid(&f->daemon, SIGTERM);
	t_rmtree(f->dir);
	free(f->dir);
	f->dir = NULL;
}

bool fd_acked(struct fleetd *f, void *ctx)
{
	const struct fd_ack *a = ctx;
	struct store *s = fd_store(f);
	uint64_t v = 0;
	store_policy_acked(s, a->host, &v, NULL);
	store_close(s);
	return v >= a->want;
}
