/* The README's operator walkthrough, end to end, as an operator runs it:
 * parleyd, parleyctl, `parley-agent join` and `parley-agent serve` as real
 * processes; every check through parleyctl's JSON output. */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/pki.h"
#include <openssl/evp.h>
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

#define W_CTL T_BIN("parleyctl")

struct walk {
	struct fleetd f;
	char api[64], join[64], link[64], token[160], pin[80];
	pid_t agent;
	bool https;
};

static char *trimmed(const char *dir, const char *name)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int i = 0; i < 500; i++) {
		if (file_read_all(path, 4096, &buf, &len, NULL) == 0 && len) {
			while (len && (buf[len - 1] == '\n'))
				buf[--len] = 0;
			return (char *)buf;
		}
		usleep(20000);
	}
	cr_assert_fail("%s never appeared", path);
	return NULL;
}

static pid_t spawn(char *const argv[], const char *log)
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

static void start_daemon(struct walk *w)
{
	const char *d = w->f.dir;
	char ca[600], crt[600], key[600], pol[600], cakey[600], log[600];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", d);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", d);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", d);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", d);
	snprintf(cakey, sizeof(cakey), "%s/ca/ca.key", d);
	snprintf(log, sizeof(log), "%s/parleyd.log", d);
	char *argv[] = { T_BIN("parleyd"), "--listen", "127.0.0.1:0",
			 "--api-listen", "127.0.0.1:0", "--join-listen",
			 "127.0.0.1:0", "--ca-key", cakey, "--state-dir",
			 (char *)d, "--ca", ca, "--cert", crt, "--key", key,
			 "--policy-key", pol, "--store", w->f.store,
			 w->https ? "--api-cert" : NULL, crt, "--api-key", key,
			 NULL };
	w->f.daemon = spawn(argv, log);
	char *p = trimmed(d, "parleyd.api-port");
	snprintf(w->api, sizeof(w->api), "%s://127.0.0.1:%s",
		 w->https ? "https" : "http", p);
	free(p);
	p = trimmed(d, "parleyd.join-port");
	snprintf(w->join, sizeof(w->join), "127.0.0.1:%s", p);
	free(p);
	p = trimmed(d, "parleyd.port");
	snprintf(w->link, sizeof(w->link), "127.0.0.1:%s", p);
	free(p);
	p = trimmed(d, "admin.token");
	snprintf(w->token, sizeof(w->token), "%s", p);
	free(p);
}

/* parleyctl with the server and token, -o json; returns the exit code. */
static int ctl(struct walk *w, char **out, const char *const *args)
{
	static char ca[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", w->f.dir);
	char *argv[32] = { W_CTL, "--server", w->api, "--token", w->token,
			   "-o", "json", "--ca", ca };
	int n = 9;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	return t_run(argv, out, 30);
}

static json_t *ctl_json(struct walk *w, const char *const *args)
{
	char *out;
	int rc = ctl(w, &out, args);
	cr_assert_eq(rc, 0, "parleyctl %s %s: exit %d: %s", args[0], args[1],
		     rc, out);
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	cr_assert(j, "not JSON: %s", out);
	free(out);
	return j;
}

/* `host add NAME`, then `parley-agent join` with its one-time token,
 * pinning the CA: the host's state directory into sdir. */
static void join_host(struct walk *w, const char *const *hadd, char *sdir,
		      size_t cap)
{
	json_t *h = ctl_json(w, hadd);
	const char *tok = json_string_value(json_object_get(h, "join_token"));
	cr_assert(tok && !strncmp(tok, "prj_", 4));
	char cacrt[700];
	snprintf(cacrt, sizeof(cacrt), "%s/ca/ca.crt", w->f.dir);
	snprintf(sdir, cap, "%s/%s", w->f.dir, hadd[2]);
	X509 *x = NULL;
	cr_assert_eq(pki_read_cert(cacrt, &x, NULL), 0);
	pki_fingerprint(x, w->pin);
	X509_free(x);
	char *jargv[] = { T_AGENT, "join", "--server", w->join, "--token",
			  (char *)tok, "--ca-sha256", w->pin, "--state-dir",
			  sdir, NULL };
	char *out;
	cr_assert_eq(t_run(jargv, &out, 30), 0, "join: %s", out);
	free(out);
	json_decref(h);
}

static const char *spec_a =
	"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
	"\"cmdline\":\"steps=open:c1,send:0:10,sleep:4000\"}";
static const char *spec_b =
	"{\"name\":\"b\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
	"\"cmdline\":\"steps=open:c1,recv:0:10,sleep:4000\"}";
static const char *spec_r =
	"{\"name\":\"r\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
	"\"config\":[{\"name\":\"app.conf\",\"path\":\"app.conf\"}],"
	"\"cmdline\":\"steps=sleep:300,open:c1,tamper:app.conf,open:c2,"
	"sleep:1000\"}";

static bool has_event(json_t *items, const char *event, const char *reason)
{
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		const char *e = json_string_value(json_object_get(it, "event"));
		const char *r = json_string_value(json_object_get(it, "reason"));
		if (e && !strcmp(e, event) && (!reason || (r && !strcmp(r, reason))))
			return true;
	}
	return false;
}

Test(walkthrough, empty_daemon_to_refused_tamper_via_parleyctl,
     .timeout = 120)
{
	struct walk w = { 0 };
	fd_init(&w.f);
	start_daemon(&w);
	/* A host, and its one-time join token. */
	const char *hadd[] = { "host", "add", "host-1", NULL };
	json_t *h = ctl_json(&w, hadd);
	const char *tok = json_string_value(json_object_get(h, "join_token"));
	cr_assert(tok && !strncmp(tok, "prj_", 4));
	/* The agent joins with it, pinning the CA. */
	char cacrt[700], sdir[700];
	snprintf(cacrt, sizeof(cacrt), "%s/ca/ca.crt", w.f.dir);
	snprintf(sdir, sizeof(sdir), "%s/host-1", w.f.dir);
	X509 *x = NULL;
	cr_assert_eq(pki_read_cert(cacrt, &x, NULL), 0);
	pki_fingerprint(x, w.pin);
	X509_free(x);
	char *jargv[] = { T_AGENT, "join", "--server", w.join, "--token",
			  (char *)tok, "--ca-sha256", w.pin, "--state-dir",
			  sdir, NULL };
	char *out;
	cr_assert_eq(t_run(jargv, &out, 30), 0, "join: %s", out);
	free(out);
	/* The same token again: refused. */
	char sdir2[720];
	snprintf(sdir2, sizeof(sdir2), "%s-again", sdir);
	jargv[9] = sdir2;
	cr_assert_neq(t_run(jargv, &out, 30), 0);
	cr_assert(strstr(out, "TOKEN_USED"), "%s", out);
	free(out);
	json_decref(h);
	/* Partitions and grants. */
	const char *specs[] = { spec_a, spec_b, spec_r };
	const char *names[] = { "a", "b", "r" };
	for (int i = 0; i < 3; i++) {
		char file[32];
		snprintf(file, sizeof(file), "%s.json", names[i]);
		char *path = t_write(w.f.dir, file, specs[i], strlen(specs[i]));
		const char *pc[] = { "partition", "create", "--host", "host-1",
				     "--backend", "thin", "--spec", path, NULL };
		json_decref(ctl_json(&w, pc));
		free(path);
	}
	const char *g1[] = { "grant", "add", "--channel", "c1", "--a", "a",
			     "--b", "b", "--direction", "both", "--ring-bytes",
			     "64K", NULL };
	const char *g2[] = { "grant", "add", "--channel", "c2", "--a", "r",
			     "--b", "b", "--direction", "a_to_b",
			     "--ring-bytes", "4K", NULL };
	json_decref(ctl_json(&w, g1));
	json_decref(ctl_json(&w, g2));
	/* The agent, with its state directory and the directories the
	 * daemon's specs may take files from (never the state dir). */
	char cdir[700];
	snprintf(cdir, sizeof(cdir), "%s/conf", w.f.dir);
	cr_assert_eq(mkdir(cdir, 0700), 0);
	free(t_write(cdir, "app.conf", "mode=strict\n", 12));
	char log[720];
	snprintf(log, sizeof(log), "%s/agent.log", w.f.dir);
	char *sargv[] = { T_AGENT, "serve", "--state-dir", sdir, "--server",
			  w.link, "--vmm", T_VMM, "--image-dir",
			  PARLEY_BUILD_DIR "/guest", "--config-dir", cdir, NULL };
	w.agent = spawn(sargv, log);
	/* What the operator then sees. */
	const char *al[] = { "audit", "list", "--partition", "r", NULL };
	bool seen = false;
	json_t *a = NULL;
	for (int i = 0; i < 300 && !seen; i++) {
		usleep(50000);
		json_decref(a);
		a = ctl_json(&w, al);
		json_t *items = json_object_get(a, "items");
		seen = has_event(items, "open_denied", "NO_GRANT") &&
		       has_event(items, "open_denied", "INTEGRITY") &&
		       has_event(items, "quarantine", "INTEGRITY");
	}
	cr_assert(seen, "audit for r: %s", json_dumps(a, 0));
	json_decref(a);
	const char *ab[] = { "audit", "list", "--partition", "b", NULL };
	a = ctl_json(&w, ab);
	cr_assert(has_event(json_object_get(a, "items"), "open_allowed", NULL));
	json_decref(a);
	const char *ver[] = { "audit", "verify", NULL };
	a = ctl_json(&w, ver);
	cr_assert(json_is_true(json_object_get(a, "ok")), "%s",
		  json_dumps(a, 0));
	json_decref(a);
	const char *pol[] = { "policy", "show", NULL };
	a = ctl_json(&w, pol);
	cr_assert_geq(json_integer_value(json_object_get(a, "version")), 2);
	json_decref(a);
	/* The operator's own changes are in the trail too. */
	const char *chg[] = { "audit", "list", "--event", "api_change", NULL };
	a = ctl_json(&w, chg);
	cr_assert_geq(json_array_size(json_object_get(a, "items")), 6,
		      "%s", json_dumps(a, 0));
	json_decref(a);
	kill(w.agent, SIGTERM);
	waitpid(w.agent, NULL, 0);
	fd_stop(&w.f);
}

/* A libvirt partition (libvirt's test driver) on a joined host: defined
 * through parleyctl, its key configuration file measured by the host's
 * agent and enrolled as its baseline. */
Test(walkthrough, libvirt_partition_config_measured_by_its_agent,
     .timeout = 120)
{
	struct walk w = { 0 };
	fd_init(&w.f);
	start_daemon(&w);
	const char *hadd[] = { "host", "add", "lv", "--libvirt-uri",
			       "test:///default", NULL };
	char sdir[700], *out;
	join_host(&w, hadd, sdir, sizeof(sdir));
	char log[720];
	snprintf(log, sizeof(log), "%s/agent.log", w.f.dir);
	char *sargv[] = { T_AGENT, "serve", "--state-dir", sdir, "--server",
			  w.link, "--vmm", T_VMM, NULL };
	w.agent = spawn(sargv, log);
	char *conf = t_write(w.f.dir, "vm.conf", "role=db\n", 8);
	char spec[1024];
	snprintf(spec, sizeof(spec), "{\"name\":\"vm1\",\"memory\":\"64M\","
		 "\"config\":[{\"name\":\"vm.conf\",\"path\":\"%s\"}]}", conf);
	char *sp = t_write(w.f.dir, "vm1.json", spec, strlen(spec));
	const char *pc[] = { "partition", "create", "--host", "lv",
			     "--backend", "libvirt", "--spec", sp, NULL };
	json_decref(ctl_json(&w, pc));
	const char *bs[] = { "baseline", "show", "vm1", NULL };
	json_t *b = NULL;
	for (int i = 0; i < 300 && !b; i++) {
		usleep(50000);
		if (ctl(&w, &out, bs) == 0)
			b = json_loads(out, 0, NULL);
		free(out);
	}
	cr_assert(b, "no baseline for vm1:\n%s", fd_daemon_log(&w.f));
	/* sha256("role=db\n") */
	const char *want = json_string_value(json_object_get(
		json_object_get(b, "files"), "vm.conf"));
	cr_assert(want && strlen(want) == 64, "%s", json_dumps(b, 0));
	uint8_t *buf;
	size_t len;
	cr_assert_eq(file_read_all(conf, 64, &buf, &len, NULL), 0);
	uint8_t d[32];
	char hex[65];
	unsigned int dl;
	EVP_Digest(buf, len, d, &dl, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	cr_assert_str_eq(want, hex);
	free(buf);
	json_decref(b);
	free(conf);
	free(sp);
	kill(w.agent, SIGTERM);
	waitpid(w.agent, NULL, 0);
	fd_stop(&w.f);
}

Test(walkthrough, api_over_https_verifies_the_server, .timeout = 60)
{
	struct walk w = { .https = true };
	fd_init(&w.f);
	start_daemon(&w);
	const char *hadd[] = { "host", "add", "h1", NULL };
	json_decref(ctl_json(&w, hadd));
	const char *hl[] = { "host", "list", NULL };
	json_t *l = ctl_json(&w, hl);
	cr_assert_eq(json_array_size(json_object_get(l, "items")), 1);
	json_decref(l);
	/* Without the CA, or over plain HTTP, nothing is said. */
	char *out;
	char *noca[] = { W_CTL, "--server", w.api, "--token", w.token, "host",
			 "list", NULL };
	cr_assert_neq(t_run(noca, &out, 30), 0, "%s", out);
	cr_assert(strstr(out, "TLS handshake failed"), "%s", out);
	free(out);
	char plain[80];
	snprintf(plain, sizeof(plain), "http://%s", w.api + strlen("https://"));
	char *http[] = { W_CTL, "--server", plain, "--token", w.token, "host",
			 "list", NULL };
	cr_assert_neq(t_run(http, &out, 30), 0, "%s", out);
	free(out);
	fd_stop(&w.f);
}

/* Services through the daemon (issue 14), on the process backend: a call
 * no rule names is denied and audited; `service allow client auth auth`
 * reaches the agent in its bundle and the client's calls are answered;
 * `service deny` again reaches the running agent, which cuts the call
 * off. A segment set travels in the same bundle. A partition runs once,
 * and a rule can only name a partition the store has, so the denied
 * caller is another partition ("early"), and "client" is created with
 * its rule while the agent is down: on its return the agent holds the
 * new bundle before any partition runs (partitions wait, paused, for the
 * policy the daemon announced). */
static bool agent_log_has(struct walk *w, const char *what)
{
	char path[720];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/agent.log", w->f.dir);
	if (file_read_all(path, 8 << 20, &buf, &len, NULL) < 0)
		return false;
	buf[len ? len - 1 : 0] = 0;
	bool has = strstr((char *)buf, what) != NULL;
	free(buf);
	return has;
}

static bool audit_has(struct walk *w, const char *const *q,
		      const char *event, const char *reason)
{
	json_t *a = ctl_json(w, q);
	bool has = has_event(json_object_get(a, "items"), event, reason);
	json_decref(a);
	return has;
}

static pid_t serve_process(struct walk *w, const char *sdir, const char *cdir)
{
	char log[720];
	snprintf(log, sizeof(log), "%s/agent.log", w->f.dir);
	char *sargv[] = { T_AGENT, "serve", "--state-dir", (char *)sdir,
			  "--server", w->link, "--vmm", T_VMM, "--backend",
			  "process", "--image-dir", PARLEY_BUILD_DIR "/guest",
			  "--config-dir", (char *)cdir, NULL };
	return spawn(sargv, log);
}

static void create(struct walk *w, const char *name, const char *spec)
{
	char file[64];
	snprintf(file, sizeof(file), "%s.json", name);
	char *path = t_write(w->f.dir, file, spec, strlen(spec));
	const char *pc[] = { "partition", "create", "--host", "host-1",
			     "--backend", "thin", "--spec", path, NULL };
	json_decref(ctl_json(w, pc));
	free(path);
}

static json_int_t change(struct walk *w, const char *const *args)
{
	json_t *r = ctl_json(w, args);
	json_int_t v = json_integer_value(json_object_get(r, "policy_version"));
	cr_assert_gt(v, 0, "%s", json_dumps(r, 0));
	json_decref(r);
	return v;
}

/* The version host-1's agent acknowledged, as `policy show` says. */
static json_int_t acked(struct walk *w)
{
	const char *pol[] = { "policy", "show", NULL };
	json_t *p = ctl_json(w, pol);
	json_t *h = json_array_get(json_object_get(p, "hosts"), 0);
	json_int_t v = json_integer_value(json_object_get(h, "acked"));
	json_decref(p);
	return v;
}

#define WAIT_FOR(cond, ...)                                                 \
	do {                                                                \
		bool ok_ = false;                                           \
		for (int i_ = 0; i_ < 600 && !(ok_ = (cond)); i_++)         \
			usleep(50000);                                      \
		cr_assert(ok_, __VA_ARGS__);                                \
	} while (0)

Test(walkthrough, service_rules_and_segsets_reach_the_agent, .timeout = 180)
{
	struct walk w = { 0 };
	fd_init(&w.f);
	start_daemon(&w);
	const char *hadd[] = { "host", "add", "host-1", NULL };
	char sdir[700], cdir[700];
	join_host(&w, hadd, sdir, sizeof(sdir));
	snprintf(cdir, sizeof(cdir), "%s/conf", w.f.dir);
	cr_assert_eq(mkdir(cdir, 0700), 0);
	uint8_t *keys;
	size_t klen;
	cr_assert_eq(file_read_all(PARLEY_SOURCE_DIR "/examples/auth.keys",
				   4096, &keys, &klen, NULL), 0);
	free(t_write(cdir, "auth.keys", keys, klen));
	free(keys);
	/* 1. No rule: early's call is denied, and the trail says why. */
	create(&w, "early", "{\"name\":\"early\",\"image\":"
	       "\"authclient.elf\",\"memory\":\"8M\",\"cmdline\":"
	       "\"target=auth\"}");
	w.agent = serve_process(&w, sdir, cdir);
	const char *ae[] = { "audit", "list", "--partition", "early", NULL };
	WAIT_FOR(audit_has(&w, ae, "svc_call_denied", "NO_POLICY"),
		 "early's call never denied: %s", fd_daemon_log(&w.f));
	kill(w.agent, SIGTERM);
	waitpid(w.agent, NULL, 0);
	/* 2. With the agent away: the provider, the client, a set of the
	 * two, and the rule. */
	create(&w, "auth", "{\"name\":\"auth\",\"image\":\"authsvc.elf\","
	       "\"memory\":\"8M\",\"config\":[{\"name\":\"keys\","
	       "\"path\":\"auth.keys\"}],\"cmdline\":\"callers=1\"}");
	create(&w, "client", "{\"name\":\"client\",\"image\":"
	       "\"authclient.elf\",\"memory\":\"8M\",\"cmdline\":"
	       "\"user=alice pass=secret n=100000000 inflight=8\"}");
	static const char set[] =
		"{\"name\":\"bus\",\"members\":[\"auth\",\"client\"],"
		"\"segments\":[{\"name\":\"st\",\"kind\":\"area\","
		"\"writer\":\"agent\",\"size\":\"4K\"}]}";
	char *sf = t_write(w.f.dir, "bus.json", set, strlen(set));
	const char *sa[] = { "segset", "add", sf, NULL };
	change(&w, sa);
	free(sf);
	const char *allow[] = { "service", "allow", "client", "auth", "auth",
				NULL };
	json_int_t v = change(&w, allow);
	w.agent = serve_process(&w, sdir, cdir);
	char want[160];
	snprintf(want, sizeof(want), "enforcing policy version %lld (0 grants, "
		 "1 service rules, 1 segment sets)", (long long)v);
	const char *ac[] = { "audit", "list", "--partition", "client", NULL };
	WAIT_FOR(audit_has(&w, ac, "svc_call_allowed", NULL) &&
		 agent_log_has(&w, "client| right password: status 0"),
		 "client's calls never answered");
	cr_assert(agent_log_has(&w, want), "agent never enforced: %s", want);
	/* 3. Deny again, while the client calls: the running agent takes
	 * the new bundle and cuts the call off. */
	const char *deny[] = { "service", "deny", "client", "auth", "auth",
			       NULL };
	json_int_t v2 = change(&w, deny);
	cr_assert_gt(v2, v);
	snprintf(want, sizeof(want), "enforcing policy version %lld (0 grants, "
		 "1 service rules, 1 segment sets)", (long long)v2);
	const char *rv[] = { "audit", "list", "--event", "revoke", NULL };
	WAIT_FOR(audit_has(&w, rv, "revoke", "SERVICE_RULE_REMOVED") &&
		 agent_log_has(&w, want), "the deny never reached the agent");
	WAIT_FOR(acked(&w) == v2, "host-1 never acknowledged %lld",
		 (long long)v2);
	const char *ver[] = { "audit", "verify", NULL };
	json_t *a = ctl_json(&w, ver);
	cr_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	kill(w.agent, SIGTERM);
	waitpid(w.agent, NULL, 0);
	fd_stop(&w.f);
}
