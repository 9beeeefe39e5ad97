/*
 * Updating an agent from the daemon (issue 12, suite update_daemon):
 * `POST /v1/hosts/{host}/update` and `parleyctl host update` against a
 * real parleyd -- each refusal with its reason and nothing stored, a good
 * package stored once -- and the whole way with a real agent in serve
 * mode running a ping/pong pair: the package goes over the agent link in
 * chunks, the agent stages and hands over, the new agent ("+next")
 * reconnects and the daemon marks the update committed; a package whose
 * agent is /bin/false rolls back and the daemon marks it failed with the
 * reason.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <parley/abi.h>

#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "db/store_updates.h"
#include "common/grant.h"
#include "common/version.h"
#include "common/wire.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_key_new(&k, &err), 0, "%s", perr_msg(&err));
	return k;
}

/* The running version with `bump` added to its minor. */
static void version_plus(char *out, size_t cap, int bump)
{
	struct updpkg_running r;
	updpkg_running_self(&r);
	snprintf(out, cap, "%u.%d.%u", r.version.v[0],
		 (int)r.version.v[1] + bump, r.version.v[2]);
}

/* A package of `agent` (a file) and the build's vmm, signed with key
 * (NULL: unsigned). */
static uint8_t *package(const char *agent, int bump, EVP_PKEY *key,
			size_t *len)
{
	uint8_t *ab, *vb, *pkg;
	size_t al, vl;
	struct parley_err err = { 0 };
	cr_assert_eq(file_read_all(agent, 256 << 20, &ab, &al, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(file_read_all(T_VMM, 256 << 20, &vb, &vl, &err), 0, "%s",
		     perr_msg(&err));
	char ver[32], abi_max[16];
	version_plus(ver, sizeof(ver), bump);
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct updpkg_input in[] = { { "parley-agent", ab, al },
				     { "parley-vmm", vb, vl } };
	cr_assert_eq(updpkg_build(ver, "0.0.0", "1.0", abi_max, in, 2, &pkg,
				  len, &err), 0, "%s", perr_msg(&err));
	if (key)
		cr_assert_eq(updpkg_sign(pkg, *len, key, &err), 0, "%s",
			     perr_msg(&err));
	free(ab);
	free(vb);
	return pkg;
}

/* POST the bytes as they are, with the given Content-Type. */
static void post_pkg(struct api_client *c, const char *host,
		     const char *ctype, const void *body, size_t len,
		     struct ac_resp *r)
{
	size_t cap = len + 1024;
	char *req = malloc(cap);
	int n = snprintf(req, cap, "POST /v1/hosts/%s/update HTTP/1.1\r\n"
			 "Host: 127.0.0.1\r\nConnection: close\r\n"
			 "Authorization: Bearer %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\n\r\n", host, c->admin, ctype,
			 len);
	memcpy(req + n, body, len);
	ac_raw(c->port, req, (size_t)n + len, r);
	free(req);
}

static void put_release(struct api_client *c, EVP_PKEY *k, const char *dir)
{
	char pub[700];
	struct parley_err err = { 0 };
	snprintf(pub, sizeof(pub), "%s/release.pub", dir ? dir : c->f.dir);
	cr_assert_eq(sign_write_pub(pub, k, &err), 0, "%s", perr_msg(&err));
}

static int count_audit(const struct store_audit *row, void *ctx)
{
	const char **want = ctx;
	if (!strcmp(row->event, want[0]) && !strcmp(row->host, want[1]))
		want[2]++;
	return 0;
}

/* How many audit rows of event `ev` about host `host`. */
static unsigned audited(struct store *s, const char *ev, const char *host)
{
	const char *want[3] = { ev, host, NULL };
	struct parley_err err = { 0 };
	cr_assert_geq(store_audit_list(s, 0, 0, count_audit, want, &err), 0,
		      "%s", perr_msg(&err));
	return (unsigned)(uintptr_t)want[2];
}

static void refused(struct ac_resp *r, int status, const char *code,
		    const char *msg)
{
	cr_expect_eq(r->status, status, "%d, not %d: %s", r->status, status,
		     r->raw);
	cr_expect_str_eq(ac_code(r), code, "%s", r->raw);
	if (msg)
		cr_expect(strstr(ac_msg(r), msg), "\"%s\" not in %s", msg,
			  ac_msg(r));
	ac_free(r);
}

Test(update_daemon, refusals_name_the_reason_nothing_stored, .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct store *s = fd_store(&c.f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_assert_eq(store_host_put(s, "host-b", "", (struct store_blob){ 0 },
				    NULL), 0);
	char running[64];
	snprintf(running, sizeof(running), "%s", parley_version());
	cr_assert_eq(store_host_agent_set(s, "host-a", running, &err), 0, "%s",
		     perr_msg(&err));
	EVP_PKEY *rel = new_key(), *other = new_key();
	size_t len, ulen, olen, slen;
	uint8_t *good = package(T_AGENT, 1, rel, &len);
	uint8_t *unsig = package(T_AGENT, 1, NULL, &ulen);
	uint8_t *oth = package(T_AGENT, 1, other, &olen);
	uint8_t *same = package(T_AGENT, 0, rel, &slen);
	struct ac_resp r;
	const char *oct = "application/octet-stream";

	/* No release key at the daemon yet: nothing can be checked. */
	post_pkg(&c, "host-a", oct, good, len, &r);
	refused(&r, 409, "NO_RELEASE_KEY", "release.pub");
	put_release(&c, rel, NULL);
	post_pkg(&c, "nohost", oct, good, len, &r);
	refused(&r, 404, "UNKNOWN_HOST", "nohost");
	post_pkg(&c, "host-b", oct, good, len, &r);
	refused(&r, 409, "AGENT_VERSION_UNKNOWN", "host-b");
	post_pkg(&c, "host-a", oct, unsig, ulen, &r);
	refused(&r, 422, "PACKAGE_REFUSED", "unsigned");
	post_pkg(&c, "host-a", oct, oth, olen, &r);
	refused(&r, 422, "PACKAGE_REFUSED", "bad-signature");
	post_pkg(&c, "host-a", oct, same, slen, &r);
	refused(&r, 422, "PACKAGE_REFUSED", "not-newer");
	post_pkg(&c, "host-a", oct, good, len - 7, &r);
	refused(&r, 422, "PACKAGE_REFUSED", "truncated");
	post_pkg(&c, "host-a", oct, good, 40, &r);
	refused(&r, 400, "BAD_PACKAGE", "truncated");
	/* JSON (or anything not octets) keeps the JSON cap: a package does
	 * not fit it; a small one is refused for its type. */
	post_pkg(&c, "host-a", "application/json", good, len, &r);
	refused(&r, 413, "TOO_LARGE", NULL);
	post_pkg(&c, "host-a", "application/json", "{}", 2, &r);
	refused(&r, 415, "UNSUPPORTED_MEDIA_TYPE", "octet-stream");
	/* Beyond the upload cap: refused on the header, body never read. */
	char big[512];
	int n = snprintf(big, sizeof(big), "POST /v1/hosts/host-a/update "
			 "HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/octet-stream\r\n"
			 "Content-Length: %u\r\n\r\n", c.admin,
			 (64u << 20) + 1);
	ac_raw(c.port, big, (size_t)n, &r);
	refused(&r, 413, "TOO_LARGE", NULL);
	/* The exception is for that route only. */
	n = snprintf(big, sizeof(big), "POST /v1/hosts/host-a HTTP/1.1\r\n"
		     "Host: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
		     "application/octet-stream\r\nContent-Length: %u\r\n\r\n",
		     c.admin, 1u << 20);
	ac_raw(c.port, big, (size_t)n, &r);
	refused(&r, 413, "TOO_LARGE", NULL);
	/* Without credentials the exception does not apply: an anonymous
	 * client cannot make the daemon buffer a package-sized body; it is
	 * told so before the body, as the route would (401). */
	n = snprintf(big, sizeof(big), "POST /v1/hosts/host-a/update "
		     "HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
		     "octet-stream\r\nContent-Length: %u\r\n\r\n", 1u << 20);
	ac_raw(c.port, big, (size_t)n, &r);
	refused(&r, 401, "UNAUTHENTICATED", NULL);
	ac_free(&r);

	struct store_update u;
	cr_expect_eq(store_update_get(s, "host-a", &u, NULL), -ENOENT);
	cr_expect_eq(store_update_get(s, "host-b", &u, NULL), -ENOENT);
	cr_expect_eq(audited(s, "update_requested", "host-a"), 0);

	/* The good one: stored once, asked for, audited. */
	post_pkg(&c, "host-a", oct, good, len, &r);
	cr_assert_eq(r.status, 202, "%s", r.raw);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "pending");
	ac_free(&r);
	post_pkg(&c, "host-a", oct, good, len, &r);
	cr_assert_eq(r.status, 202, "%s", r.raw);
	ac_free(&r);
	cr_assert_eq(store_update_get(s, "host-a", &u, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_str_eq(u.state, "pending");
	cr_expect_eq(u.size, len);
	uint8_t sha[32], back[64];
	unsigned sl;
	EVP_Digest(good, len, sha, &sl, EVP_sha256(), NULL);
	cr_expect_eq(memcmp(u.sha256, sha, 32), 0);
	size_t got = 0;
	cr_assert_eq(store_update_read(s, (struct store_blob){ sha, 32 },
				       len - 10, back, sizeof(back), &got,
				       &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(got, 10);
	cr_expect_eq(memcmp(back, good + len - 10, 10), 0);
	cr_expect_eq(audited(s, "update_requested", "host-a"), 2);

	/* host show/list say it; the read token may look, not ask. */
	ac_call(&c, "GET", "/v1/hosts/host-a", c.admin, NULL, &r);
	cr_expect_str_eq(json_string_value(json_object_get(r.json,
							   "agent_version")),
			 running);
	json_t *up = json_object_get(r.json, "update");
	cr_expect_str_eq(json_string_value(json_object_get(up, "state")),
			 "pending", "%s", r.raw);
	ac_free(&r);

	free(good);
	free(unsig);
	free(oth);
	free(same);
	EVP_PKEY_free(rel);
	EVP_PKEY_free(other);
	store_close(s);
	ac_stop(&c);
}

/* parleyctl host update: the package as it is; a refusal's reason on
 * stderr with a failing exit; --help names the verb. */
Test(update_daemon, parleyctl_host_update, .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct store *s = fd_store(&c.f);
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_assert_eq(store_host_agent_set(s, "host-a", parley_version(),
					  NULL), 0);
	EVP_PKEY *rel = new_key(), *other = new_key();
	put_release(&c, rel, NULL);
	size_t len, olen;
	uint8_t *good = package(T_AGENT, 1, rel, &len);
	uint8_t *oth = package(T_AGENT, 1, other, &olen);
	char *gp = t_write(c.f.dir, "good.pkg", good, len);
	char *op = t_write(c.f.dir, "other.pkg", oth, olen);
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", c.port);
	char *out = NULL, *er = NULL;
	char *bad[] = { T_BIN("parleyctl"), "--server", server, "--token",
			c.admin, "host", "update", "host-a", "--package", op,
			NULL };
	int rc = t_exec(bad, NULL, &out, &er);
	cr_expect_neq(rc, 0);
	cr_expect(strstr(er, "bad-signature"), "%s", er);
	free(out);
	free(er);
	char *ok[] = { T_BIN("parleyctl"), "--server", server, "--token",
		       c.admin, "host", "update", "host-a", "--package", gp,
		       NULL };
	rc = t_exec(ok, NULL, &out, &er);
	cr_expect_eq(rc, 0, "%s%s", out, er);
	cr_expect(strstr(out, "host host-a: update to "), "%s", out);
	free(out);
	free(er);
	char *list[] = { T_BIN("parleyctl"), "--server", server, "--token",
			 c.admin, "host", "list", NULL };
	rc = t_exec(list, NULL, &out, &er);
	cr_expect_eq(rc, 0, "%s", er);
	cr_expect(strstr(out, "AGENT_VERSION"), "%s", out);
	cr_expect(strstr(out, " pending"), "%s", out);
	free(out);
	free(er);
	char *nopkg[] = { T_BIN("parleyctl"), "--server", server, "host",
			  "update", "host-a", NULL };
	rc = t_exec(nopkg, NULL, &out, &er);
	cr_expect_neq(rc, 0);
	cr_expect(strstr(er, "--package"), "%s", er);
	free(out);
	free(er);
	free(gp);
	free(op);
	free(good);
	free(oth);
	EVP_PKEY_free(rel);
	EVP_PKEY_free(other);
	store_close(s);
	ac_stop(&c);
}

/* ---- the whole way: a joined agent in serve mode, ping and pong -------- */

struct e2e {
	struct api_client c;
	struct store *s;
	struct fd_agent *h;
	EVP_PKEY *rel;
};

static void e2e_start(struct e2e *e)
{
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ac_start(&e->c);
	e->s = fd_store(&e->c.f);
	struct store *s = e->s;
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	static const char *const names[] = { "ping", "pong" };
	for (int i = 0; i < 2; i++) {
		struct store_part_in in = { .name = names[i],
					    .host = "host-a",
					    .kind = STORE_PART_THIN,
					    .spec_json = "{}", .spec_len = 2,
					    .state = "defined" };
		cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	}
	struct grant g = { .channel = "pingpong", .a = "ping", .b = "pong",
			   .dir = GRANT_BOTH, .ring_bytes = 65536,
			   .require_integrity = true };
	struct parley_err err = { 0 };
	cr_assert_eq(store_grant_add(s, &g, NULL, &err), 0, "%s",
		     perr_msg(&err));
	e->h = fd_host(&e->c.f, "host-a", NULL);
	e->rel = new_key();
	put_release(&e->c, e->rel, NULL);      /* the daemon's */
	put_release(&e->c, e->rel, e->h->dir); /* what a join leaves */
	static const char *const conf[] = { "ping.conf", "pong.conf" };
	for (int i = 0; i < 2; i++) {
		char src[600];
		uint8_t *b;
		size_t n;
		snprintf(src, sizeof(src), PARLEY_SOURCE_DIR "/examples/%s",
			 conf[i]);
		cr_assert_eq(file_read_all(src, 1 << 20, &b, &n, NULL), 0);
		free(t_write(e->h->dir, conf[i], b, n));
		free(b);
	}
	const char *specs[] = {
		"{\"name\":\"ping\",\"image\":\"ping.elf\",\"memory\":\"8M\","
		"\"config\":[{\"name\":\"ping.conf\",\"path\":\"ping.conf\"}],"
		"\"cmdline\":\"count=2000000000 report=20000\"}",
		"{\"name\":\"pong\",\"image\":\"pong.elf\",\"memory\":\"8M\","
		"\"config\":[{\"name\":\"pong.conf\",\"path\":\"pong.conf\"}],"
		"\"cmdline\":\"count=2000000000\"}",
		NULL };
	const char *extra[] = { "--backend", t_backend_name(), NULL };
	fd_start_agent_with(&e->c.f, e->h, specs, extra);
}

struct want_log {
	struct fd_agent *h;
	const char *what;
	unsigned n;
};

static bool log_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_log *w = ctx;
	char *log = fd_agent_log(w->h);
	unsigned k = 0;
	for (const char *p = log; (p = strstr(p, w->what)); p++)
		k++;
	free(log);
	return k >= w->n;
}

static unsigned log_count(struct fd_agent *h, const char *what)
{
	char *log = fd_agent_log(h);
	unsigned k = 0;
	for (const char *p = log; (p = strstr(p, what)); p++)
		k++;
	free(log);
	return k;
}

struct want_row {
	struct store *s;
	const char *state;
	struct store_update u;
};

static bool row_is(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_row *w = ctx;
	return store_update_get(w->s, "host-a", &w->u, NULL) == 0 &&
	       !strcmp(w->u.state, w->state);
}

static bool connected_again(struct fleetd *f, void *ctx)
{
	(void)f;
	struct e2e *e = ctx;
	struct ac_resp r;
	ac_call(&e->c, "GET", "/v1/hosts/host-a", e->c.admin, NULL, &r);
	bool up = json_is_true(json_object_get(r.json, "connected"));
	ac_free(&r);
	return up;
}

static char *host_list(struct e2e *e)
{
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", e->c.port);
	char *out = NULL, *er = NULL;
	char *argv[] = { T_BIN("parleyctl"), "--server", server, "--token",
			 e->c.admin, "host", "list", NULL };
	cr_expect_eq(t_exec(argv, NULL, &out, &er), 0, "%s", er);
	free(er);
	return out;
}

static void e2e_update(struct e2e *e, const char *agent)
{
	size_t len;
	uint8_t *pkg = package(agent, 1, e->rel, &len);
	char *path = t_write(e->c.f.dir, "update.pkg", pkg, len);
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", e->c.port);
	char *out = NULL, *er = NULL;
	char *argv[] = { T_BIN("parleyctl"), "--server", server, "--token",
			 e->c.admin, "host", "update", "host-a", "--package",
			 path, NULL };
	cr_assert_eq(t_exec(argv, NULL, &out, &er), 0, "%s%s", out, er);
	free(out);
	free(er);
	free(path);
	free(pkg);
}

static void e2e_stop(struct e2e *e)
{
	EVP_PKEY_free(e->rel);
	store_close(e->s);
	ac_stop(&e->c);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* Wait for ping's counter to show up `more` more times. */
static void counters_rise(struct e2e *e, unsigned more)
{
	struct want_log w = { e->h, "ping| ping: ",
			      log_count(e->h, "ping| ping: ") + more };
	cr_assert(fd_wait(log_has, &e->c.f, &w, 60000), "ping's counter "
		  "stopped:\n%s", fd_agent_log(e->h));
}

struct span {
	int64_t requested, committed;
};

static int span_row(const struct store_audit *row, void *ctx)
{
	struct span *sp = ctx;
	if (strcmp(row->host, "host-a"))
		return 0;
	if (!strcmp(row->event, "update_requested") && !sp->requested)
		sp->requested = row->time_ms;
	if (!strcmp(row->event, "update_committed") &&
	    row->time_ms > sp->committed)
		sp->committed = row->time_ms;
	return 0;
}

T_BACKEND_TEST(update_daemon, good_package_from_the_daemon_takes_over,
	       .timeout = 240)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	e2e_update(&e, T_BIN("parley-agent-next"));
	struct want_row w = { .s = e.s, .state = "committed" };
	cr_assert(fd_wait(row_is, &e.c.f, &w, 120000), "update %s (%s):\n%s\n"
		  "daemon:\n%s", w.u.state, w.u.reason, fd_agent_log(e.h),
		  fd_daemon_log(&e.c.f));
	cr_expect_eq(w.u.received, w.u.size);
	struct want_log nl = { e.h, "+next took over from", 1 };
	cr_expect(fd_wait(log_has, &e.c.f, &nl, 10000), "%s",
		  fd_agent_log(e.h));
	/* The old agent left; the new one is ours to stop at the end. */
	int st = 0;
	cr_expect_eq(waitpid(e.h->pid, &st, 0), e.h->pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x", st);
	char *log = fd_agent_log(e.h);
	const char *at = strstr(log, "handed over to pid ");
	cr_assert(at, "%s", log);
	e.h->pid = (pid_t)atoi(at + strlen("handed over to pid "));
	free(log);
	/* Partitions untouched: the same ping goes on counting (it checks
	 * every reply's bytes) under the new agent. */
	cr_expect_eq(log_count(e.h, "ping| ping: open failed"), 0);
	counters_rise(&e, 2);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	char *list = host_list(&e);
	cr_expect(strstr(list, "+next"), "%s", list);
	cr_expect(strstr(list, " committed"), "%s", list);
	free(list);
	cr_expect_eq(audited(e.s, "update_requested", "host-a"), 1);
	/* The daemon's records and the agents' own (same names, ingested
	 * from host-a's outbox): at least one each. */
	cr_expect_geq(audited(e.s, "update_committed", "host-a"), 1);
	cr_expect_geq(audited(e.s, "update_staged", "host-a"), 1);
	/* A figure, not asserted: request to the host's committed report. */
	struct span sp = { 0 };
	store_audit_list(e.s, 0, 0, span_row, &sp, NULL);
	fprintf(stderr, "update_daemon: %s: %llu-byte package, requested to "
		"committed %lld ms\n", t_backend_name(),
		(unsigned long long)w.u.size,
		(long long)(sp.committed - sp.requested));
	e2e_stop(&e);
}

struct want_part {
	struct e2e *e;
	const char *name;
};

static bool part_running(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_part *w = ctx;
	struct store_partition p;
	bool yes = false;
	if (store_partition_get(w->e->s, w->name, &p, NULL) == 0) {
		yes = !strcmp(p.state, "running");
		store_partition_free(&p);
	}
	return yes;
}

static void api_part(struct e2e *e, const char *name)
{
	char body[300];
	snprintf(body, sizeof(body), "{\"host\":\"host-a\",\"backend\":"
		 "\"thin\",\"spec\":{\"name\":\"%s\",\"image\":"
		 "\"chantest.elf\",\"memory\":\"4M\",\"cmdline\":"
		 "\"steps=sleep:600000\"}}", name);
	struct ac_resp r;
	ac_call(&e->c, "POST", "/v1/partitions", e->c.admin, body, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	ac_free(&r);
	struct want_part w = { e, name };
	cr_assert(fd_wait(part_running, &e->c.f, &w, 60000), "%s not "
		  "running:\n%s", name, fd_agent_log(e->h));
}

/* A partition destroyed before the hand-over leaves a free slot among
 * the agent's and a free record in its grant manager: the hand-over
 * carries only the partitions there (ping, pong, y), the new agent takes
 * them over, and a partition created afterwards runs under it. */
T_BACKEND_TEST(update_daemon, hand_over_after_a_destroy_skips_its_slot,
	       .timeout = 240)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	api_part(&e, "x");
	api_part(&e, "y");
	struct ac_resp r;
	ac_call(&e.c, "DELETE", "/v1/partitions/x", e.c.admin, NULL, &r);
	cr_assert_eq(r.status, 204, "%s", r.body);
	ac_free(&r);
	struct want_log gone = { e.h, "partition x destroyed", 1 };
	cr_assert(fd_wait(log_has, &e.c.f, &gone, 30000), "%s",
		  fd_agent_log(e.h));
	e2e_update(&e, T_BIN("parley-agent-next"));
	struct want_row w = { .s = e.s, .state = "committed" };
	cr_assert(fd_wait(row_is, &e.c.f, &w, 120000), "update %s (%s):\n%s",
		  w.u.state, w.u.reason, fd_agent_log(e.h));
	struct want_log nl = { e.h, "+next took over from", 1 };
	cr_assert(fd_wait(log_has, &e.c.f, &nl, 10000), "%s",
		  fd_agent_log(e.h));
	char *log = fd_agent_log(e.h);
	cr_assert(strstr(log, ": 3 partitions, grant manager paused"), "%s",
		  log);
	waitpid(e.h->pid, NULL, 0);
	const char *at = strstr(log, "handed over to pid ");
	cr_assert(at, "%s", log);
	e.h->pid = (pid_t)atoi(at + strlen("handed over to pid "));
	free(log);
	counters_rise(&e, 2);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	api_part(&e, "z");
	cr_expect_eq(log_count(e.h, "ping| ping: open failed"), 0);
	e2e_stop(&e);
}

T_BACKEND_TEST(update_daemon, agent_that_cannot_start_rolls_back,
	       .timeout = 240)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	e2e_update(&e, "/bin/false");
	struct want_row w = { .s = e.s, .state = "failed" };
	cr_assert(fd_wait(row_is, &e.c.f, &w, 120000), "update %s (%s):\n%s",
		  w.u.state, w.u.reason, fd_agent_log(e.h));
	cr_expect(w.u.reason[0], "no reason");
	struct want_log rb = { e.h, "update rolled back", 1 };
	cr_expect(fd_wait(log_has, &e.c.f, &rb, 10000), "%s",
		  fd_agent_log(e.h));
	/* The old agent serves on: same pid, partitions counting. */
	cr_expect_eq(kill(e.h->pid, 0), 0);
	counters_rise(&e, 2);
	char *list = host_list(&e);
	cr_expect(!strstr(list, "+next"), "%s", list);
	cr_expect(strstr(list, " failed"), "%s", list);
	free(list);
	cr_expect_geq(audited(e.s, "update_failed", "host-a"), 1);
	cr_expect_eq(audited(e.s, "update_committed", "host-a"), 0);
	e2e_stop(&e);
}

/* ---- the frames (common/wire.c), hostile ones included ----------------- */

static const uint8_t zsha[32] = { 1, 2, 3 };

static int check_offer(const char *version, uint64_t size, size_t shalen,
		       struct parley_err *err)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateOffer o;
	wire_init_envelope(&e, 0);
	parley__v1__update_offer__init(&o);
	o.version = (char *)version;
	o.size = size;
	wire_bytes(&o.sha256, zsha, shalen);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER;
	e.update_offer = &o;
	return wire_check(&e, err);
}

static int check_chunk(uint64_t off, size_t len, size_t shalen,
		       struct parley_err *err)
{
	static uint8_t data[WIRE_UPDATE_CHUNK_MAX + 1];
	Parley__V1__Envelope e;
	Parley__V1__UpdateChunk c;
	wire_init_envelope(&e, 0);
	parley__v1__update_chunk__init(&c);
	wire_bytes(&c.sha256, zsha, shalen);
	c.offset = off;
	wire_bytes(&c.data, data, len);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK;
	e.update_chunk = &c;
	return wire_check(&e, err);
}

static int check_progress(const char *state, uint64_t rx, const char *reason,
			  size_t shalen, struct parley_err *err)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateProgress p;
	wire_init_envelope(&e, 0);
	parley__v1__update_progress__init(&p);
	wire_bytes(&p.sha256, shalen ? zsha : NULL, shalen);
	p.state = (char *)state;
	p.received = rx;
	p.reason = (char *)reason;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS;
	e.update_progress = &p;
	return wire_check(&e, err);
}

Test(update_daemon, update_frames_checked_field_by_field)
{
	struct parley_err err = { 0 };
	cr_expect_eq(check_offer("0.5.0", 1000, 32, &err), 0, "%s", err.msg);
	cr_expect_eq(check_offer("0.5.0", 79, 32, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_offer.size"), "%s", err.msg);
	cr_expect_eq(check_offer("0.5.0", (256ull << 20) + 1, 32, &err),
		     -EINVAL);
	cr_expect_eq(check_offer("0.5.0-rc1", 1000, 32, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_offer.version"), "%s", err.msg);
	cr_expect_eq(check_offer("0.5", 1000, 32, &err), -EINVAL);
	cr_expect_eq(check_offer("", 1000, 32, &err), -EINVAL);
	cr_expect_eq(check_offer("0.5.0", 1000, 31, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_offer.sha256"), "%s", err.msg);

	cr_expect_eq(check_chunk(0, 1, 32, &err), 0, "%s", err.msg);
	cr_expect_eq(check_chunk(0, WIRE_UPDATE_CHUNK_MAX, 32, &err), 0);
	cr_expect_eq(check_chunk(0, WIRE_UPDATE_CHUNK_MAX + 1, 32, &err),
		     -EINVAL);
	cr_expect(strstr(err.msg, "update_chunk.data"), "%s", err.msg);
	cr_expect_eq(check_chunk(0, 0, 32, &err), -EINVAL);
	cr_expect_eq(check_chunk((256ull << 20) - 1, 2, 32, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_chunk.offset"), "%s", err.msg);
	cr_expect_eq(check_chunk(UINT64_MAX - 1, 4, 32, &err), -EINVAL);
	cr_expect_eq(check_chunk(0, 1, 0, &err), -EINVAL);

	cr_expect_eq(check_progress("receiving", 100, "", 32, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(check_progress("committed", 0, "", 0, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(check_progress("done", 0, "", 32, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_progress.state"), "%s", err.msg);
	cr_expect_eq(check_progress(NULL, 0, "", 32, &err), -EINVAL);
	cr_expect_eq(check_progress("failed", 0, "why\x1b[31m", 32, &err),
		     -EINVAL);
	cr_expect(strstr(err.msg, "update_progress.reason"), "%s", err.msg);
	cr_expect_eq(check_progress("failed", (256ull << 20) + 1, "", 32,
				    &err), -EINVAL);
	cr_expect_eq(check_progress("failed", 0, "", 5, &err), -EINVAL);
}

/* The store checks what it keeps (db/store_updates.c). */
Test(update_daemon, store_refuses_hostile_arguments, .timeout = 60)
{
	char *dir = t_tmpdir();
	char path[600];
	snprintf(path, sizeof(path), "%s/s.db", dir);
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h", "", (struct store_blob){ 0 },
				    NULL), 0);
	uint8_t sha[32] = { 9 }, other[32] = { 8 };
	struct store_blob d = { sha, 32 }, o = { other, 32 };
	static const uint8_t pkg[100] = { 'P' };
	cr_expect_eq(store_update_put_package(s, d, "1.2", pkg, 100, &err),
		     -EINVAL);
	cr_expect_eq(store_update_put_package(s, d, "1.2.3x", pkg, 100, &err),
		     -EINVAL);
	cr_expect_eq(store_update_put_package(s, (struct store_blob){ sha, 31 },
					      "1.2.3", pkg, 100, &err),
		     -EINVAL);
	cr_expect_eq(store_update_request(s, "h", d, &err), -ENOENT);
	cr_assert_eq(store_update_put_package(s, d, "1.2.3", pkg, 100, &err),
		     0, "%s", perr_msg(&err));
	cr_expect_eq(store_update_request(s, "nohost", d, &err), -ENOENT);
	cr_expect_eq(store_update_request(s, "../h", d, &err), -EINVAL);
	cr_assert_eq(store_update_request(s, "h", d, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(store_update_set(s, "h", d, "bogus", 0, "", &err),
		     -EINVAL);
	cr_expect_eq(store_update_set(s, "h", d, "receiving", 101, "", &err),
		     -ENOENT, "beyond the size");
	cr_expect_eq(store_update_set(s, "h", o, "receiving", 1, "", &err),
		     -ENOENT, "another package");
	cr_expect_eq(store_update_set(s, "h", d, "failed", 1, "a\xff", &err),
		     -EINVAL);
	cr_expect_eq(store_update_set(s, "h", d, "failed", 100, "gone", &err),
		     0, "%s", perr_msg(&err));
	struct store_update u;
	cr_assert_eq(store_update_get(s, "h", &u, &err), 0);
	cr_expect_str_eq(u.state, "failed");
	cr_expect_str_eq(u.reason, "gone");
	cr_expect_eq(u.received, 100);
	uint8_t buf[200];
	size_t got;
	cr_expect_eq(store_update_read(s, d, 90, buf, sizeof(buf), &got,
				       &err), 0);
	cr_expect_eq(got, 10);
	cr_expect_eq(store_update_read(s, d, 1000, buf, sizeof(buf), &got,
				       &err), 0);
	cr_expect_eq(got, 0);
	cr_expect_eq(store_update_read(s, o, 0, buf, sizeof(buf), &got, &err),
		     -ENOENT);
	cr_expect_eq(store_host_agent_set(s, "h", "v\x01", &err), 0,
		     "control bytes are UTF-8; the wire refuses them first");
	char big[100];
	memset(big, 'x', sizeof(big) - 1);
	big[99] = 0;
	cr_expect_eq(store_host_agent_set(s, "h", big, &err), -E2BIG);
	/* Deleting the host takes its rows along. */
	cr_expect_eq(store_host_delete(s, "h", &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(store_update_get(s, "h", &u, NULL), -ENOENT);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

/* ---- the agent's side of the daemon's stream (agent/update/stage.c) ---- */

#include "agent/partition.h"
#include "agent/spec.h"
#include "agent/update/stage.h"

static void feed(struct upd_stage *st, const uint8_t *sha, const uint8_t *p,
		 size_t len, size_t from, struct upd_report *r)
{
	for (size_t off = from; off < len; off += WIRE_UPDATE_CHUNK_MAX) {
		size_t n = len - off < WIRE_UPDATE_CHUNK_MAX
				   ? len - off : WIRE_UPDATE_CHUNK_MAX;
		cr_assert(upd_daemon_chunk(st, sha, off, p + off, n, r));
		if (off + n < len)
			cr_assert_str_eq(r->state, "receiving", "%s",
					 r->reason);
	}
}

/* One stage at a time, a reconnect goes on from what is held, a chunk
 * out of order is not written, the last one verifies and stages. */
Test(update_daemon, agent_stages_the_daemons_stream, .timeout = 60)
{
	char *dir = t_tmpdir();
	EVP_PKEY *rel = new_key(), *other = new_key();
	char pub[600];
	snprintf(pub, sizeof(pub), "%s/release.pub", dir);
	cr_assert_eq(sign_write_pub(pub, rel, NULL), 0);
	struct upd_stage st;
	struct parley_err err = { 0 };
	cr_assert_eq(upd_stage_open(&st, dir, NULL, &err), 0, "%s",
		     perr_msg(&err));
	size_t len, olen;
	uint8_t *pkg = package(T_BIN("parley-agent-next"), 1, rel, &len);
	uint8_t *oth = package(T_AGENT, 1, other, &olen);
	uint8_t sha[32], osha[32];
	unsigned sl;
	EVP_Digest(pkg, len, sha, &sl, EVP_sha256(), NULL);
	EVP_Digest(oth, olen, osha, &sl, EVP_sha256(), NULL);
	struct upd_report r;

	/* A partition streaming: the daemon's offer is busy, nothing
	 * touched; the partition's stream goes on. */
	struct partition p = { 0 };
	snprintf(p.name, sizeof(p.name), "updater");
	p.caps = SPEC_CAP_UPDATE;
	struct ctl_update_req q = { .op = CTL_UPD_BEGIN, .arg = 1000 };
	struct ctl_update_reply rep;
	upd_answer(&st, &p, &q, &rep);
	cr_assert_eq(rep.status, PARLEY_OK, "%s", rep.detail);
	upd_daemon_offer(&st, sha, len, "0.5.0", &r);
	cr_expect_str_eq(r.state, "busy");
	cr_expect(strstr(r.reason, "updater"), "%s", r.reason);
	cr_expect_str_eq(st.owner, "updater");
	upd_stage_gone(&st, "updater");

	/* The daemon's stream: a partition's BEGIN is refused meanwhile. */
	upd_daemon_offer(&st, sha, len, "0.5.0", &r);
	cr_assert_str_eq(r.state, "receiving", "%s", r.reason);
	cr_expect_eq(r.received, 0);
	upd_answer(&st, &p, &q, &rep);
	cr_expect_eq(rep.status, PARLEY_E_LIMIT);
	cr_expect(strstr(rep.detail, "the daemon is staging"), "%s",
		  rep.detail);
	/* Half of it, then a chunk from elsewhere: not written. */
	size_t half = 2 * WIRE_UPDATE_CHUNK_MAX;
	cr_assert_gt(len, half + WIRE_UPDATE_CHUNK_MAX);
	for (size_t off = 0; off < half; off += WIRE_UPDATE_CHUNK_MAX)
		cr_assert(upd_daemon_chunk(&st, sha, off, pkg + off,
					   WIRE_UPDATE_CHUNK_MAX, &r));
	cr_expect_eq(r.received, half);
	cr_assert(upd_daemon_chunk(&st, sha, half + 8, pkg + half, 8, &r));
	cr_expect_str_eq(r.state, "receiving");
	cr_expect_eq(r.received, half, "an out-of-order chunk was written");
	/* A chunk of another package: not ours, no answer. */
	cr_expect(!upd_daemon_chunk(&st, osha, half, pkg + half, 8, &r));
	/* The link came back: the same offer goes on from what is held. */
	upd_daemon_offer(&st, sha, len, "0.5.0", &r);
	cr_expect_str_eq(r.state, "receiving");
	cr_expect_eq(r.received, half);
	feed(&st, sha, pkg, len, half, &r);
	cr_expect_str_eq(r.state, "staged", "%s", r.reason);
	cr_expect_eq(r.received, len);
	char staged[700];
	snprintf(staged, sizeof(staged), "%s/update/stage/parley-agent", dir);
	cr_expect_eq(access(staged, X_OK), 0);
	char inc[700];
	snprintf(inc, sizeof(inc), "%s/update/incoming.pkg", dir);
	cr_expect_neq(access(inc, F_OK), 0);

	/* Another key: refused with the reason, nothing new staged. */
	st.state = PARLEY_UPDATE_IDLE; /* as after a hand-over */
	upd_daemon_offer(&st, osha, olen, "0.5.0", &r);
	cr_assert_str_eq(r.state, "receiving", "%s", r.reason);
	feed(&st, osha, oth, olen, 0, &r);
	cr_expect_str_eq(r.state, "refused");
	cr_expect(!strncmp(r.reason, "bad-signature", 13), "%s", r.reason);
	/* A chunk beyond the offered size ends the stream. */
	upd_daemon_offer(&st, osha, 100, "0.5.0", &r);
	cr_assert_str_eq(r.state, "receiving", "%s", r.reason);
	cr_assert(upd_daemon_chunk(&st, osha, 0, oth, 101, &r));
	cr_expect_str_eq(r.state, "failed");
	cr_expect_neq(access(inc, F_OK), 0);
	upd_stage_close(&st);
	free(pkg);
	free(oth);
	EVP_PKEY_free(rel);
	EVP_PKEY_free(other);
	t_rmtree(dir);
	free(dir);
}

/* ---- the daemon's side of the link (daemon/rpc/link_update.c) ---------- */

#include "tests/helpers/linkpeer.h"

static void add_progress(uint8_t *buf, size_t cap, size_t *len,
			 const uint8_t *sha, const char *state, uint64_t rx)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateProgress p;
	wire_init_envelope(&e, 0);
	parley__v1__update_progress__init(&p);
	wire_bytes(&p.sha256, sha, 32);
	p.state = (char *)state;
	p.received = rx;
	p.reason = "";
	p.version = "";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS;
	e.update_progress = &p;
	lp_add(buf, cap, len, &e);
}

/* An agent's progress moves only its own host's row, and only for the
 * package offered: another package's is ignored; one claiming more bytes
 * than the package has is refused. The hello's version is stored. */
Test(update_daemon, progress_checked_against_the_hosts_own_update,
     .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_assert_eq(store_host_put(s, "host-b", "", (struct store_blob){ 0 },
				    NULL), 0);
	uint8_t sha[32] = { 7 }, other[32] = { 6 };
	static uint8_t pkg[1000];
	struct store_blob d = { sha, 32 };
	cr_assert_eq(store_update_put_package(s, d, "9.9.9", pkg, sizeof(pkg),
					      &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_update_request(s, "host-a", d, &err), 0);
	cr_assert_eq(store_update_request(s, "host-b", d, &err), 0);
	fd_start_daemon(&f);
	struct fd_agent *a = fd_host(&f, "host-a", NULL);
	uint8_t buf[4096];
	size_t n = 0;
	lp_add_hello(buf, sizeof(buf), &n, "host-a");
	add_progress(buf, sizeof(buf), &n, other, "failed", 0);
	add_progress(buf, sizeof(buf), &n, sha, "receiving", 1001);
	struct lp_result r;
	lp_session(f.port, a->dir, buf, n, 0, &r);
	cr_expect(r.handshake);
	cr_expect_str_eq(r.error_code, "BAD_UPDATE_PROGRESS", "%s: %s",
			 r.error_code, r.error_msg);
	struct store_update u;
	cr_assert_eq(store_update_get(s, "host-a", &u, &err), 0);
	cr_expect_str_eq(u.state, "pending", "the foreign package's failure "
			 "was taken");
	/* host-b's row is host-b's: host-a's words never reached it. */
	cr_assert_eq(store_update_get(s, "host-b", &u, &err), 0);
	cr_expect_str_eq(u.state, "pending");
	/* A good one moves the row. */
	n = 0;
	lp_add_hello(buf, sizeof(buf), &n, "host-a");
	add_progress(buf, sizeof(buf), &n, sha, "refused", 0);
	lp_session(f.port, a->dir, buf, n, 4, &r);
	/* Waiting for the daemon's write, not timing it. */
	for (int i = 0; i < 50; i++) {
		if (store_update_get(s, "host-a", &u, NULL) == 0 &&
		    !strcmp(u.state, "refused"))
			break;
		usleep(100000);
	}
	cr_expect_str_eq(u.state, "refused");
	cr_expect_eq(audited(s, "update_refused", "host-a"), 1);
	store_close(s);
	fd_stop(&f);
}

/* ---- an operator's rollback through the daemon -------------------------- */

#include <jansson.h>

/* parleyctl host rollback HOST [--expect V]: its exit code, out and err
 * (the caller frees). */
static int ctl_rollback(struct api_client *c, const char *host,
			const char *expect, char **out, char **er)
{
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", c->port);
	char *argv[] = { T_BIN("parleyctl"), "--server", server, "--token",
			 c->admin, "host", "rollback", (char *)host,
			 expect ? "--expect" : NULL, (char *)expect, NULL };
	return t_exec(argv, NULL, out, er);
}

static void post_rollback(struct api_client *c, const char *host,
			  const char *token, const char *body,
			  struct ac_resp *r)
{
	char target[128];
	snprintf(target, sizeof(target), "/v1/hosts/%s/rollback", host);
	ac_call(c, "POST", target, token, body, r);
}

/* The API's refusals, each before anything is stored; then a request,
 * recorded, audited, shown; asked again, it takes the next id. */
Test(update_daemon, rollback_api_refusals_and_request, .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct store *s = fd_store(&c.f);
	struct parley_err err = { 0 };
	static const char *const hosts[] = { "host-a", "host-b", "host-c",
					     "host-d" };
	for (int i = 0; i < 4; i++)
		cr_assert_eq(store_host_put(s, hosts[i], "",
					    (struct store_blob){ 0 }, NULL), 0);
	cr_assert_eq(store_host_agent_set(s, "host-a", parley_version(),
					  &err), 0, "%s", perr_msg(&err));
	/* host-b never said hello; host-c's agent predates rollbacks;
	 * host-d has an update under way. */
	cr_assert_eq(store_host_agent_set(s, "host-c", "0.0.1", &err), 0);
	cr_assert_eq(store_host_agent_set(s, "host-d", parley_version(),
					  &err), 0);
	uint8_t sha[32] = { 5 };
	static uint8_t pkg[200];
	struct store_blob d = { sha, 32 };
	cr_assert_eq(store_update_put_package(s, d, "99.0.0", pkg, sizeof(pkg),
					      &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_update_request(s, "host-d", d, &err), 0);
	struct ac_resp r;
	post_rollback(&c, "nohost", c.admin, NULL, &r);
	refused(&r, 404, "UNKNOWN_HOST", "nohost");
	post_rollback(&c, "host-b", c.admin, NULL, &r);
	refused(&r, 409, "AGENT_VERSION_UNKNOWN", "host-b");
	post_rollback(&c, "host-c", c.admin, NULL, &r);
	refused(&r, 409, "AGENT_TOO_OLD", "0.0.1");
	post_rollback(&c, "host-d", c.admin, NULL, &r);
	refused(&r, 409, "UPDATE_IN_PROGRESS", "pending");
	post_rollback(&c, "host-a", c.admin, "{\"expect_version\":\"v1\"}",
		      &r);
	refused(&r, 400, "BAD_REQUEST", "expect_version");
	post_rollback(&c, "host-a", c.admin, "{\"expect_version\":7}", &r);
	refused(&r, 400, "BAD_REQUEST", "expect_version");
	post_rollback(&c, "host-a", c.admin,
		      "{\"expect_version\":\"1.2.3 \\u001b[31m\"}", &r);
	refused(&r, 400, "BAD_REQUEST", "control");
	post_rollback(&c, "host-a", c.admin, "{\"other\":1}", &r);
	refused(&r, 400, "BAD_REQUEST", NULL);
	post_rollback(&c, "..", c.admin, NULL, &r);
	cr_expect_eq(r.status, 400, "%s", r.raw);
	ac_free(&r);
	/* The read token may look, not ask. */
	ac_call(&c, "POST", "/v1/tokens", c.admin,
		"{\"scope\":\"read\",\"name\":\"ro\"}", &r);
	cr_assert_eq(r.status, 201);
	char ro[128];
	snprintf(ro, sizeof(ro), "%s", json_string_value(json_object_get(
		r.json, "token")));
	ac_free(&r);
	post_rollback(&c, "host-a", ro, NULL, &r);
	cr_expect_eq(r.status, 403, "%s", r.raw);
	ac_free(&r);
	struct store_rollback rb;
	for (int i = 0; i < 4; i++)
		cr_expect_eq(store_rollback_get(s, hosts[i], &rb, NULL),
			     -ENOENT, "%s", hosts[i]);
	cr_expect_eq(audited(s, "update_rollback_requested", "host-a"), 0);

	/* The request: recorded, audited; shown by host list and show. */
	char *out = NULL, *er = NULL;
	cr_expect_eq(ctl_rollback(&c, "host-a", "0.4.0", &out, &er), 0,
		     "%s%s", out, er);
	cr_expect(strstr(out, "host host-a: rollback from "), "%s", out);
	cr_expect(strstr(out, "(request 1)"), "%s", out);
	free(out);
	free(er);
	cr_assert_eq(store_rollback_get(s, "host-a", &rb, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_str_eq(rb.state, "requested");
	cr_expect_eq(rb.request, 1);
	cr_expect_str_eq(rb.expect_version, "0.4.0");
	cr_expect_str_eq(rb.from_version, parley_version());
	cr_expect_eq(audited(s, "update_rollback_requested", "host-a"), 1);
	char *list = host_list(&(struct e2e){ .c = c });
	cr_expect(strstr(list, "rollback-requested"), "%s", list);
	free(list);
	ac_call(&c, "GET", "/v1/hosts/host-a", c.admin, NULL, &r);
	json_t *j = json_object_get(r.json, "rollback");
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")),
			 "requested", "%s", r.raw);
	cr_expect_str_eq(json_string_value(json_object_get(r.json,
							   "update_state")),
			 "rollback-requested");
	ac_free(&r);
	/* Asked again (no body at all): the next id, nothing expected. */
	post_rollback(&c, "host-a", c.admin, NULL, &r);
	cr_expect_eq(r.status, 202, "%s", r.raw);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "request")),
		     2, "%s", r.raw);
	ac_free(&r);
	cr_assert_eq(store_rollback_get(s, "host-a", &rb, &err), 0);
	cr_expect_eq(rb.request, 2);
	cr_expect_str_eq(rb.expect_version, "");
	/* While it waits for the agent's answer, no update: the updated
	 * agent's hello would be taken for the rollback's outcome. */
	EVP_PKEY *rel = new_key();
	put_release(&c, rel, NULL);
	size_t len;
	uint8_t *good = package(T_AGENT, 1, rel, &len);
	post_pkg(&c, "host-a", "application/octet-stream", good, len, &r);
	refused(&r, 409, "ROLLBACK_IN_PROGRESS", "request 2");
	cr_expect_eq(store_update_get(s, "host-a", &(struct store_update){ 0 },
				      NULL), -ENOENT);
	free(good);
	EVP_PKEY_free(rel);
	/* parleyctl says a refusal on stderr with a failing exit. */
	cr_expect_neq(ctl_rollback(&c, "nohost", NULL, &out, &er), 0);
	cr_expect(strstr(er, "UNKNOWN_HOST") || strstr(er, "no such host"),
		  "%s", er);
	free(out);
	free(er);
	store_close(s);
	ac_stop(&c);
}

/* The store checks what it keeps (db/store_rollbacks.c); an answer moves
 * only the row still waiting for that very request. */
Test(update_daemon, rollback_store_refuses_hostile_arguments, .timeout = 60)
{
	char *dir = t_tmpdir();
	char path[600];
	snprintf(path, sizeof(path), "%s/s.db", dir);
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h", "", (struct store_blob){ 0 },
				    NULL), 0);
	uint64_t id = 9;
	char big[100];
	memset(big, 'x', sizeof(big) - 1);
	big[99] = 0;
	cr_expect_eq(store_rollback_request(s, "nohost", "", "1.0.0", &id,
					    &err), -ENOENT);
	cr_expect_eq(id, 0);
	cr_expect_eq(store_rollback_request(s, "../h", "", "1.0.0", &id,
					    &err), -EINVAL);
	cr_expect_eq(store_rollback_request(s, "h", big, "1.0.0", &id, &err),
		     -E2BIG);
	cr_expect_eq(store_rollback_request(s, "h", "a\xff", "1.0.0", &id,
					    &err), -EINVAL);
	cr_assert_eq(store_rollback_request(s, "h", "1.0.0", "2.0.0", &id,
					    &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(id, 1);
	cr_expect_eq(store_rollback_set(s, "h", 1, "bogus", "", "", &err),
		     -EINVAL);
	cr_expect_eq(store_rollback_set(s, "h", 1, "requested", "", "", &err),
		     -EINVAL);
	cr_expect_eq(store_rollback_set(s, "h", 0, "failed", "", "x", &err),
		     -EINVAL);
	cr_expect_eq(store_rollback_set(s, "h", 2, "failed", "", "x", &err),
		     -ENOENT, "another request's answer");
	cr_expect_eq(store_rollback_set(s, "h", 1, "failed", "", "a\xff",
					&err), -EINVAL);
	cr_expect_eq(store_rollback_set(s, "h", 1, "failed", "", "gone",
					&err), 0, "%s", perr_msg(&err));
	cr_expect_eq(store_rollback_set(s, "h", 1, "committed", "1.0.0", "",
					&err), -ENOENT, "answered already");
	struct store_rollback rb;
	cr_assert_eq(store_rollback_get(s, "h", &rb, &err), 0);
	cr_expect_str_eq(rb.state, "failed");
	cr_expect_str_eq(rb.reason, "gone");
	cr_expect_str_eq(rb.from_version, "2.0.0");
	cr_assert_eq(store_rollback_request(s, "h", "", "2.0.0", &id, &err), 0);
	cr_expect_eq(id, 2);
	cr_assert_eq(store_rollback_get(s, "h", &rb, &err), 0);
	cr_expect_str_eq(rb.state, "requested");
	cr_expect_str_eq(rb.reason, "");
	cr_expect_eq(store_host_delete(s, "h", &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(store_rollback_get(s, "h", &rb, NULL), -ENOENT);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

static void add_rb_progress(uint8_t *buf, size_t cap, size_t *len,
			    const char *state, const char *reason)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateProgress p;
	wire_init_envelope(&e, 0);
	parley__v1__update_progress__init(&p);
	p.state = (char *)state;
	p.reason = (char *)reason;
	p.version = "";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS;
	e.update_progress = &p;
	lp_add(buf, cap, len, &e);
}

struct want_rb {
	struct store *s;
	const char *host, *state;
	struct store_rollback r;
};

static bool rb_is(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_rb *w = ctx;
	return store_rollback_get(w->s, w->host, &w->r, NULL) == 0 &&
	       !strcmp(w->r.state, w->state);
}

/* An UpdateProgress without a digest about a rollback: taken for the
 * sender's own host while it waits for an answer; from a host never
 * asked for one it is refused and moves nobody's row; a repeat after the
 * answer is only logged. */
Test(update_daemon, rollback_progress_only_for_a_rollback_asked_for,
     .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_assert_eq(store_host_put(s, "host-b", "", (struct store_blob){ 0 },
				    NULL), 0);
	uint64_t id = 0;
	/* The linkpeer says hello with no version: asked of that. */
	cr_assert_eq(store_rollback_request(s, "host-b", "", "", &id, &err), 0,
		     "%s", perr_msg(&err));
	fd_start_daemon(&f);
	struct fd_agent *a = fd_host(&f, "host-a", NULL);
	struct fd_agent *b = fd_host(&f, "host-b", NULL);
	uint8_t buf[4096];
	size_t n = 0;
	struct lp_result r;
	/* host-a: a "committed" without a digest is any new agent's (not a
	 * refusal); a "failed" one is about a rollback nobody asked for. */
	lp_add_hello(buf, sizeof(buf), &n, "host-a");
	add_rb_progress(buf, sizeof(buf), &n, "committed", "");
	add_rb_progress(buf, sizeof(buf), &n, "failed", "made up");
	lp_session(f.port, a->dir, buf, n, 0, &r);
	cr_expect(r.handshake);
	cr_expect_str_eq(r.error_code, "BAD_UPDATE_PROGRESS", "%s: %s",
			 r.error_code, r.error_msg);
	cr_expect(strstr(r.error_msg, "no rollback was asked"), "%s",
		  r.error_msg);
	struct store_rollback rb;
	cr_expect_eq(store_rollback_get(s, "host-a", &rb, NULL), -ENOENT);
	cr_assert_eq(store_rollback_get(s, "host-b", &rb, &err), 0);
	cr_expect_str_eq(rb.state, "requested", "host-a's words moved "
			 "host-b's row");
	cr_expect_eq(audited(s, "update_rollback_sent", "host-b"), 0);
	/* host-b: sent its request at hello; its refusal is taken. */
	n = 0;
	lp_add_hello(buf, sizeof(buf), &n, "host-b");
	add_rb_progress(buf, sizeof(buf), &n, "refused", "no previous");
	add_rb_progress(buf, sizeof(buf), &n, "refused", "again");
	lp_session(f.port, b->dir, buf, n, 0, &r);
	cr_expect_eq(r.errors, 0, "%s: %s", r.error_code, r.error_msg);
	cr_expect_geq(r.frames, 2, "welcome and the rollback");
	struct want_rb w = { .s = s, .host = "host-b", .state = "refused" };
	cr_expect(fd_wait(rb_is, &f, &w, 10000), "row %s", w.r.state);
	cr_expect_str_eq(w.r.reason, "no previous", "the repeat moved it");
	cr_expect_eq(audited(s, "update_rollback_sent", "host-b"), 1);
	cr_expect_eq(audited(s, "update_rollback_refused", "host-b"), 1);
	/* Asked again, and host-b comes back running another version:
	 * committed at its hello. */
	cr_assert_eq(store_rollback_request(s, "host-b", "", "9.9.9", &id,
					    &err), 0);
	n = 0;
	lp_add_hello(buf, sizeof(buf), &n, "host-b");
	lp_session(f.port, b->dir, buf, n, 1, &r);
	w.state = "committed";
	cr_expect(fd_wait(rb_is, &f, &w, 10000), "row %s", w.r.state);
	cr_expect_eq(audited(s, "update_rollback_committed", "host-b"), 1);
	store_close(s);
	fd_stop(&f);
}

/* The frame itself (common/wire.c), hostile ones included. */
static int check_rollback(const char *expect, uint64_t request,
			  struct parley_err *err)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateRollback m;
	wire_init_envelope(&e, 0);
	parley__v1__update_rollback__init(&m);
	m.expect_version = (char *)expect;
	m.request = request;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK;
	e.update_rollback = &m;
	return wire_check(&e, err);
}

Test(update_daemon, rollback_frame_checked_field_by_field)
{
	struct parley_err err = { 0 };
	cr_expect_eq(check_rollback("", 1, &err), 0, "%s", err.msg);
	cr_expect_eq(check_rollback(NULL, 1, &err), 0, "%s", err.msg);
	cr_expect_eq(check_rollback("0.4.0", 7, &err), 0, "%s", err.msg);
	cr_expect_eq(check_rollback("0.4.0 (36e23e5-dirty)", 7, &err), 0,
		     "%s", err.msg);
	cr_expect_eq(check_rollback("0.4.0", 0, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_rollback.request"), "%s", err.msg);
	cr_expect_eq(check_rollback("v0.4.0", 1, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_rollback.expect_version"), "%s",
		  err.msg);
	cr_expect_eq(check_rollback("0.4", 1, &err), -EINVAL);
	cr_expect_eq(check_rollback("0.4.0 \x1b[31m", 1, &err), -EINVAL);
	cr_expect_eq(check_rollback("0.4.0 \xff", 1, &err), -EINVAL);
	char big[100];
	memset(big, '1', sizeof(big) - 1);
	big[99] = 0;
	big[1] = big[3] = '.';
	cr_expect_eq(check_rollback(big, 1, &err), -EINVAL);
	cr_expect(strstr(err.msg, "bytes"), "%s", err.msg);
}

/* The version a kept directory of host-a's agent names. */
static void kept_version(struct e2e *e, const char *which, char *out,
			 size_t cap)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/update/%s/manifest.json", e->h->dir, which);
	json_error_t je;
	json_t *m = json_load_file(p, 0, &je);
	cr_assert(m, "%s: %s", p, je.text);
	snprintf(out, cap, "%s",
		 json_string_value(json_object_get(m, "version")) ?: "");
	json_decref(m);
}

/* The pid the last "handed over to pid N" of the agents' log names: the
 * agent now serving, ours to stop at the end. */
static pid_t handed_to(struct e2e *e)
{
	char *log = fd_agent_log(e->h);
	const char *at = NULL, *k = "handed over to pid ";
	for (const char *p = log; (p = strstr(p, k)); p++)
		at = p;
	cr_assert(at, "%s", log);
	pid_t pid = (pid_t)atoi(at + strlen(k));
	free(log);
	return pid;
}

/* The old agent handed over and left: reap it, follow the new one. */
static void follow_handover(struct e2e *e)
{
	int st = 0;
	cr_expect_eq(waitpid(e->h->pid, &st, 0), e->h->pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x", st);
	e->h->pid = handed_to(e);
}

/* An update from the daemon to "+next", then `parleyctl host rollback`:
 * the agent hands over to the version it keeps as previous (the one it
 * ran first), partitions untouched; the daemon marks the rollback
 * committed with that version; current and previous swapped. */
T_BACKEND_TEST(update_daemon, rollback_through_the_daemon_runs_previous,
	       .timeout = 300)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	e2e_update(&e, T_BIN("parley-agent-next"));
	struct want_row w = { .s = e.s, .state = "committed" };
	cr_assert(fd_wait(row_is, &e.c.f, &w, 120000), "update %s (%s):\n%s",
		  w.u.state, w.u.reason, fd_agent_log(e.h));
	struct want_log nl = { e.h, "+next took over from", 1 };
	cr_assert(fd_wait(log_has, &e.c.f, &nl, 10000), "%s",
		  fd_agent_log(e.h));
	follow_handover(&e);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	/* The daemon's view before: the "+next" agent runs. */
	char *list = host_list(&e);
	cr_expect(strstr(list, "+next"), "%s", list);
	free(list);
	char cur[128], prev[128];
	kept_version(&e, "current", cur, sizeof(cur));
	kept_version(&e, "previous", prev, sizeof(prev));
	cr_expect_str_eq(prev, parley_version(), "previous is the first");
	cr_expect_str_neq(cur, prev);

	/* The rollback, expecting what previous holds. */
	char *out = NULL, *er = NULL;
	cr_assert_eq(ctl_rollback(&e.c, "host-a", parley_version(), &out,
				  &er), 0, "%s%s", out, er);
	free(out);
	free(er);
	struct want_rb rb = { .s = e.s, .host = "host-a",
			      .state = "committed" };
	cr_assert(fd_wait(rb_is, &e.c.f, &rb, 120000), "rollback %s (%s):\n"
		  "%s\ndaemon:\n%s", rb.r.state, rb.r.reason,
		  fd_agent_log(e.h), fd_daemon_log(&e.c.f));
	cr_expect_str_eq(rb.r.version, parley_version());
	struct want_log tl = { e.h, "took over from", 2 };
	cr_assert(fd_wait(log_has, &e.c.f, &tl, 10000), "%s",
		  fd_agent_log(e.h));
	follow_handover(&e);
	/* Partitions untouched: the same ping goes on counting, every
	 * reply's bytes checked, under the agent rolled back to. */
	cr_expect_eq(log_count(e.h, "ping| ping: open failed"), 0);
	counters_rise(&e, 2);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	list = host_list(&e);
	cr_expect(!strstr(list, "+next"), "%s", list);
	cr_expect(strstr(list, "rollback-committed"), "%s", list);
	free(list);
	char cur2[128], prev2[128];
	kept_version(&e, "current", cur2, sizeof(cur2));
	kept_version(&e, "previous", prev2, sizeof(prev2));
	cr_expect_str_eq(cur2, prev, "current and previous swapped");
	cr_expect_str_eq(prev2, cur, "current and previous swapped");
	/* Every step audited: the daemon's records and the agents' own. */
	cr_expect_geq(audited(e.s, "update_rollback_requested", "host-a"), 2);
	cr_expect_geq(audited(e.s, "update_rollback_sent", "host-a"), 1);
	cr_expect_geq(audited(e.s, "update_rollback_received", "host-a"), 1);
	cr_expect_geq(audited(e.s, "update_rollback_committed", "host-a"), 1);
	cr_expect_eq(audited(e.s, "update_rollback_refused", "host-a"), 0);
	e2e_stop(&e);
}

/* A rollback of an agent that keeps no previous version (it was never
 * updated): refused with the reason, shown and audited; the agent serves
 * on (same process, partitions counting, link up). */
T_BACKEND_TEST(update_daemon, rollback_with_no_previous_is_refused,
	       .timeout = 240)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	char *out = NULL, *er = NULL;
	cr_assert_eq(ctl_rollback(&e.c, "host-a", NULL, &out, &er), 0,
		     "%s%s", out, er);
	free(out);
	free(er);
	struct want_rb rb = { .s = e.s, .host = "host-a",
			      .state = "refused" };
	cr_assert(fd_wait(rb_is, &e.c.f, &rb, 60000), "rollback %s (%s):\n%s",
		  rb.r.state, rb.r.reason, fd_agent_log(e.h));
	cr_expect(strstr(rb.r.reason, "no previous version"), "%s",
		  rb.r.reason);
	cr_expect_eq(kill(e.h->pid, 0), 0);
	cr_expect_eq(log_count(e.h, "handed over to pid"), 0);
	counters_rise(&e, 2);
	cr_expect(fd_wait(connected_again, &e.c.f, &e, 30000));
	char *list = host_list(&e);
	cr_expect(strstr(list, "rollback-refused"), "%s", list);
	free(list);
	struct ac_resp r;
	ac_call(&e.c, "GET", "/v1/hosts/host-a", e.c.admin, NULL, &r);
	cr_expect(strstr(json_string_value(json_object_get(json_object_get(
		  r.json, "rollback"), "reason")) ?: "", "no previous version"),
		  "%s", r.raw);
	ac_free(&r);
	/* The daemon's refusal record and the agent's own. */
	cr_expect_geq(audited(e.s, "update_rollback_refused", "host-a"), 1);
	cr_expect_geq(audited(e.s, "update_rollback_sent", "host-a"), 1);
	e2e_stop(&e);
}

/* A rollback whose hand-over fails (previous's agent is /bin/false): the
 * running agent serves on and says failed with the reason once its link
 * is back; the daemon sends the same request again at that hello and the
 * agent answers it again, without handing over a second time. */
T_BACKEND_TEST(update_daemon, rollback_that_cannot_start_fails_and_serves_on,
	       .timeout = 300)
{
	struct e2e e;
	e2e_start(&e);
	counters_rise(&e, 1);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	e2e_update(&e, T_BIN("parley-agent-next"));
	struct want_row w = { .s = e.s, .state = "committed" };
	cr_assert(fd_wait(row_is, &e.c.f, &w, 120000), "update %s (%s):\n%s",
		  w.u.state, w.u.reason, fd_agent_log(e.h));
	struct want_log nl = { e.h, "+next took over from", 1 };
	cr_assert(fd_wait(log_has, &e.c.f, &nl, 10000), "%s",
		  fd_agent_log(e.h));
	follow_handover(&e);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	/* What previous keeps cannot run. */
	char p[700];
	snprintf(p, sizeof(p), "%s/update/previous/parley-agent", e.h->dir);
	uint8_t *b;
	size_t n;
	cr_assert_eq(file_read_all("/bin/false", 16 << 20, &b, &n, NULL), 0);
	cr_assert_eq(unlink(p), 0, "%s", p);
	snprintf(p, sizeof(p), "%s/update/previous", e.h->dir);
	free(t_write(p, "parley-agent", b, n));
	free(b);
	snprintf(p, sizeof(p), "%s/update/previous/parley-agent", e.h->dir);
	cr_assert_eq(chmod(p, 0755), 0);
	pid_t serving = e.h->pid;

	char *out = NULL, *er = NULL;
	cr_assert_eq(ctl_rollback(&e.c, "host-a", NULL, &out, &er), 0,
		     "%s%s", out, er);
	free(out);
	free(er);
	struct want_rb rb = { .s = e.s, .host = "host-a", .state = "failed" };
	cr_assert(fd_wait(rb_is, &e.c.f, &rb, 120000), "rollback %s (%s):\n%s",
		  rb.r.state, rb.r.reason, fd_agent_log(e.h));
	cr_expect(rb.r.reason[0], "no reason");
	/* /bin/false fails before the commit: the link stayed up and the
	 * answer went at once. */
	cr_expect_geq(audited(e.s, "update_rollback_sent", "host-a"), 1);
	cr_expect_eq(kill(serving, 0), 0);
	cr_expect_eq(e.h->pid, serving);
	counters_rise(&e, 2);
	cr_assert(fd_wait(connected_again, &e.c.f, &e, 30000));
	cr_expect_eq(log_count(e.h, "update rolled back"), 1, "%s",
		     fd_agent_log(e.h));
	char *list = host_list(&e);
	cr_expect(strstr(list, "+next"), "%s", list);
	cr_expect(strstr(list, "rollback-failed"), "%s", list);
	free(list);
	cr_expect_geq(audited(e.s, "update_rollback_failed", "host-a"), 1);
	cr_expect_eq(audited(e.s, "update_rollback_committed", "host-a"), 0);
	e2e_stop(&e);
}

/* The agent's side of a request (agent/update/rollback.c): refused with
 * the reason (no previous, another version), busy, a hand-over only with
 * a previous of the version expected; the same request answered the same
 * and never handed over twice. */
#include "agent/update/keep.h"
#include "agent/update/rollback.h"

Test(update_daemon, agent_takes_a_rollback_request_once, .timeout = 60)
{
	char *dir = t_tmpdir();
	struct upd_rollback rb = { 0 };
	enum upd_rb_do d = upd_rollback_take(&rb, NULL, dir, "", 1, NULL);
	cr_expect_eq(d, UPD_RB_ANSWER);
	cr_expect_str_eq(rb.state, "refused");
	cr_expect(strstr(rb.reason, "no previous version"), "%s", rb.reason);
	/* The same request: the same answer, nothing looked at again. */
	char prev[700];
	snprintf(prev, sizeof(prev), "%s/update", dir);
	cr_assert_eq(mkdir(prev, 0700), 0);
	snprintf(prev, sizeof(prev), "%s/update/previous", dir);
	cr_assert_eq(mkdir(prev, 0700), 0);
	free(t_write(prev, "manifest.json", "{\"version\":\"1.2.3 (abc)\"}",
		     25));
	d = upd_rollback_take(&rb, NULL, dir, "", 1, NULL);
	cr_expect_eq(d, UPD_RB_ANSWER);
	cr_expect_str_eq(rb.state, "refused");
	/* Another version expected than previous holds. */
	d = upd_rollback_take(&rb, NULL, dir, "1.2.4", 2, NULL);
	cr_expect_eq(d, UPD_RB_ANSWER);
	cr_expect(strstr(rb.reason, "previous holds 1.2.3 (abc), not 1.2.4"),
		  "%s", rb.reason);
	/* Busy: an update under way. */
	d = upd_rollback_take(&rb, NULL, dir, "", 3, "a stream");
	cr_expect_eq(d, UPD_RB_ANSWER);
	cr_expect_str_eq(rb.state, "busy");
	cr_expect_str_eq(rb.reason, "a stream");
	/* The version as numbers: a hand-over to previous. */
	d = upd_rollback_take(&rb, NULL, dir, "1.2.3", 4, NULL);
	cr_expect_eq(d, UPD_RB_HAND_OVER);
	cr_expect_str_eq(rb.dir, prev);
	cr_expect_str_eq(rb.state, "");
	/* Sent again while it is handed over: nothing; after it failed:
	 * the failure again, no second hand-over. */
	cr_expect_eq(upd_rollback_take(&rb, NULL, dir, "1.2.3", 4, NULL),
		     UPD_RB_NOTHING);
	upd_rollback_done(&rb, "failed", "the new agent exited");
	cr_expect_str_eq(rb.dir, "");
	cr_expect_eq(upd_rollback_take(&rb, NULL, dir, "1.2.3", 4, NULL),
		     UPD_RB_ANSWER);
	cr_expect_str_eq(rb.state, "failed");
	cr_expect_str_eq(rb.reason, "the new agent exited");
	/* No state directory: nothing kept. */
	d = upd_rollback_take(&rb, NULL, NULL, "", 5, NULL);
	cr_expect_eq(d, UPD_RB_ANSWER);
	cr_expect_str_eq(rb.state, "refused");
	char v[64];
	cr_expect_eq(upd_rollback_version(prev, v, sizeof(v), NULL), 0);
	cr_expect_str_eq(v, "1.2.3 (abc)");
	t_rmtree(dir);
	free(dir);
}
