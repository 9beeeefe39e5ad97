/*
 * A thin partition's lifecycle through the daemon, as an operator drives
 * it: a real parleyd and a real `parley-agent serve` on loopback (TLS),
 * partitions created, started, stopped and destroyed through the API. A
 * partition that stopped starts again (a second run, measured and
 * admitted again, its channel opened again, a quarantine of the old run
 * lifted and audited; a config changed on the host refused as at
 * create); a destroyed one is gone from the agent and its name can be
 * created anew; create/destroy cycles never run out of the agent's slots;
 * partitions lost with a killed agent are created and started again.
 */
#include <criterion/criterion.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

struct sp {
	struct api_client c;
	struct fd_agent *a;
	char conf[600];
	const char *extra[8];
};

static struct sp *cur;

static void sp_fini(void)
{
	if (!cur)
		return;
	if (cur->a)
		fd_stop_agent(cur->a);
	ac_stop(&cur->c);
	cur = NULL;
}

#define call_ok(t, m, p, b, w, k) ac_call_ok(&(t)->c, m, p, b, w, k)

/* parleyd, host h1, the agent's config directory; the agent on the
 * running test's backend. */
static void setup(struct sp *t)
{
	memset(t, 0, sizeof(*t));
	cur = t;
	ac_start(&t->c);
	call_ok(t, "POST", "/v1/hosts", "{\"name\":\"h1\"}", 201, NULL);
	t->a = fd_host(&t->c.f, "h1", NULL);
	snprintf(t->conf, sizeof(t->conf), "%s/conf", t->c.f.dir);
	cr_assert_eq(mkdir(t->conf, 0700), 0);
	const char *x[] = { "--config-dir", t->conf, "--backend",
			    t_backend ? t_backend_name() : "auto", NULL };
	memcpy(t->extra, x, sizeof(x));
}

static void agent_up(struct sp *t)
{
	fd_start_agent_with(&t->c.f, t->a, NULL, t->extra);
}

/* A thin partition on h1 running chantest with `steps`, 4 MiB; config
 * app.conf (a file in the config dir) if conf. */
static void create(struct sp *t, const char *name, const char *steps,
		   bool conf)
{
	char body[600];
	snprintf(body, sizeof(body), "{\"host\":\"h1\",\"backend\":\"thin\","
		 "\"spec\":{\"name\":\"%s\",\"image\":\"chantest.elf\","
		 "\"memory\":\"4M\",\"cmdline\":\"steps=%s\"%s}}", name, steps,
		 conf ? ",\"config\":[{\"name\":\"app.conf\",\"path\":"
			"\"app.conf\"}]" : "");
	call_ok(t, "POST", "/v1/partitions", body, 201, NULL);
}

static void action(struct sp *t, const char *name, const char *what,
		   int want)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/partitions/%s/%s", name, what);
	call_ok(t, "POST", path, NULL, want, NULL);
}

static void destroy(struct sp *t, const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/partitions/%s", name);
	call_ok(t, "DELETE", path, NULL, 204, NULL);
}

/* Its state in the API ("" when there is no row). */
static void part_state(struct sp *t, const char *name, char *state,
		       size_t cap)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/partitions/%s", name);
	struct ac_resp r;
	ac_call(&t->c, "GET", path, t->c.admin, NULL, &r);
	const char *s = r.status == 200 ? json_string_value(
		json_object_get(r.json, "state")) : NULL;
	snprintf(state, cap, "%s", s ? s : "");
	ac_free(&r);
}

/* The daemon's audit events `event` of `part`: counted, each one's
 * [reason|detail] into out. */
static int audit_count(struct sp *t, const char *event, const char *part,
		       char *out, size_t cap)
{
	char path[200];
	snprintf(path, sizeof(path), "/v1/audit?limit=1000&event=%s"
		 "&partition=%s", event, part);
	struct ac_resp r;
	call_ok(t, "GET", path, NULL, 200, &r);
	json_t *items = json_object_get(r.json, "items"), *it;
	size_t i;
	if (out && cap)
		out[0] = 0;
	json_array_foreach(items, i, it) {
		const char *d = json_string_value(json_object_get(it, "detail"));
		const char *re = json_string_value(json_object_get(it, "reason"));
		size_t n = out ? strlen(out) : 0;
		if (out && n + 1 < cap)
			snprintf(out + n, cap - n, "[%s|%s]", re ? re : "",
				 d ? d : "");
	}
	int n = (int)json_array_size(items);
	ac_free(&r);
	return n;
}

/* How many times `text` is in the agent's log. */
static int log_count(struct sp *t, const char *text)
{
	char *l = fd_agent_log(t->a);
	int n = 0;
	for (const char *p = l; p && (p = strstr(p, text)); p += strlen(text))
		n++;
	free(l);
	return n;
}

struct want {
	struct sp *t;
	const char *name, *what, *text;
	int n;
};

static bool state_is(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want *w = ctx;
	char st[64];
	part_state(w->t, w->name, st, sizeof(st));
	return !strcmp(st, w->what);
}

static void fail_with_log(struct sp *t, const char *fmt, const char *a,
			  const char *b)
{
	char *l = fd_agent_log(t->a);
	char msg[300];
	snprintf(msg, sizeof(msg), fmt, a, b);
	cr_assert_fail("%s; agent:\n%s", msg, l ? l : "");
	free(l);
}

static void wait_state(struct sp *t, const char *name, const char *state)
{
	struct want w = { t, name, state, NULL, 0 };
	if (!fd_wait(state_is, &t->c.f, &w, 60000))
		fail_with_log(t, "%s never \"%s\"", name, state);
}

static bool audit_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want *w = ctx;
	static char d[16384];
	int n = audit_count(w->t, w->what, w->name, d, sizeof(d));
	return w->text ? strstr(d, w->text) != NULL : n >= w->n;
}

/* At least n audit events `event` of `part`. */
static void wait_audit(struct sp *t, const char *event, const char *part,
		       int n)
{
	struct want w = { t, part, event, NULL, n };
	if (!fd_wait(audit_has, &t->c.f, &w, 60000)) {
		char d[4096];
		audit_count(t, event, part, d, sizeof(d));
		fail_with_log(t, "no %s events enough: %s", event, d);
	}
}

/* An audit event `event` of `part` whose reason or detail has text. */
static void wait_detail(struct sp *t, const char *event, const char *part,
			const char *text)
{
	struct want w = { t, part, event, text, 0 };
	if (!fd_wait(audit_has, &t->c.f, &w, 60000)) {
		char d[4096];
		audit_count(t, event, part, d, sizeof(d));
		fail_with_log(t, "no \"%s\" in %s", text, d);
	}
}

static bool log_has_n(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want *w = ctx;
	return log_count(w->t, w->text) >= w->n;
}

static void wait_log(struct sp *t, const char *text, int n)
{
	struct want w = { t, NULL, NULL, text, n };
	if (!fd_wait(log_has_n, &t->c.f, &w, 60000))
		fail_with_log(t, "\"%s\" not %s times in the agent's log",
			      text, n == 1 ? "1" : n == 2 ? "2" : "n");
}

/* ---- stop, then start ---------------------------------------------------- */

/* Two partitions that exchange ten messages over c1 and exit: started
 * again by the daemon's START, each runs a second time (a new vmm: its
 * console shows the exchange twice) and the channel opens again. A STOP
 * of one that runs, then a START: running again. */
T_BACKEND_TEST(serve_parts, stopped_partition_starts_again_with_its_channel,
	       .timeout = 240, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	/* (a stays a second after sending: b's open finds the channel
	 * a's made, not a peer already gone) */
	create(&t, "a", "open:c1,send:0:10,sleep:1000", false);
	create(&t, "b", "open:c1,recv:0:10", false);
	create(&t, "s", "sleep:600000", false);
	call_ok(&t, "POST", "/v1/grants", "{\"channel\":\"c1\",\"endpoint_a\":"
		"\"a\",\"endpoint_b\":\"b\",\"direction\":\"a_to_b\","
		"\"ring_bytes\":\"4K\"}", 201, NULL);
	agent_up(&t);
	wait_log(&t, "b| received 10", 1);
	wait_log(&t, "a| sent 10", 1);
	wait_state(&t, "a", "stopped");
	wait_state(&t, "b", "stopped");
	wait_state(&t, "s", "running");
	cr_assert_eq(audit_count(&t, "open_allowed", "b", NULL, 0), 1);

	/* Both ended on their own (exit 0): started again. */
	action(&t, "b", "start", 200);
	action(&t, "a", "start", 200);
	wait_log(&t, "b| received 10", 2);
	wait_log(&t, "a| sent 10", 2);
	wait_audit(&t, "open_allowed", "b", 2);
	wait_audit(&t, "open_allowed", "a", 2);
	wait_log(&t, "partition b started again", 1);
	wait_state(&t, "a", "stopped");
	wait_state(&t, "b", "stopped");
	/* And again: no third run left behind by the second. */
	action(&t, "a", "start", 200);
	action(&t, "b", "start", 200);
	wait_log(&t, "b| received 10", 3);
	wait_state(&t, "b", "stopped");

	/* Stopped by the daemon while it runs, then started: running. */
	action(&t, "s", "stop", 200);
	wait_state(&t, "s", "stopped");
	action(&t, "s", "start", 200);
	wait_state(&t, "s", "running");
	wait_log(&t, "partition s started again", 1);
	char d[4096];
	audit_count(&t, "partition_state", "s", d, sizeof(d));
	cr_assert(strstr(d, "-> stopped (exit 0, killed)"), "%s", d);
	cr_assert_eq(log_count(&t, "too many partitions"), 0);
}

/* A partition quarantined in its first run (it tampered with its config
 * in memory, then asked for a channel): stopped and started again, the
 * new run is measured from the host's file, admitted, and the quarantine
 * lifted, audited quarantine_lifted -- the second run's own tamper is
 * caught afresh (a second quarantine: the old one did not carry over).
 * Then the file changed on the host: the START is refused against the
 * golden baseline as a create is (baseline_refused, start_failed,
 * reported stopped baseline-refused), nothing runs. */
T_BACKEND_TEST(serve_parts, restart_lifts_quarantine_and_refuses_tampered,
	       .timeout = 240, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	const char *conf = "mode=strict\n";
	free(t_write(t.conf, "app.conf", conf, strlen(conf)));
	create(&t, "r", "tamper:app.conf,open:c2,sleep:600000", true);
	create(&t, "q", "sleep:600000", false);
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256((const uint8_t *)conf, strlen(conf), md);
	char hex[65], golden[400];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(golden, sizeof(golden), "{\"files\":{\"app.conf\":\"%s\"},"
		 "\"segments\":[],\"digest\":\"%s\"}", hex, hex);
	call_ok(&t, "PUT", "/v1/baselines/r", golden, 200, NULL);
	/* (the grant puts r's baseline into the host's bundle) */
	call_ok(&t, "POST", "/v1/grants", "{\"channel\":\"c2\",\"endpoint_a\":"
		"\"r\",\"endpoint_b\":\"q\",\"direction\":\"a_to_b\","
		"\"ring_bytes\":\"4K\"}", 201, NULL);
	agent_up(&t);
	wait_audit(&t, "quarantine", "r", 1);
	cr_assert_eq(audit_count(&t, "quarantine_lifted", "r", NULL, 0), 0);

	action(&t, "r", "stop", 200);
	wait_state(&t, "r", "stopped");
	action(&t, "r", "start", 200);
	wait_audit(&t, "quarantine_lifted", "r", 1);
	wait_audit(&t, "quarantine", "r", 2);
	wait_state(&t, "r", "running");
	cr_assert_eq(audit_count(&t, "baseline_refused", "r", NULL, 0), 0);

	/* Its config changed on the host: refused at the next start. */
	action(&t, "r", "stop", 200);
	wait_state(&t, "r", "stopped");
	free(t_write(t.conf, "app.conf", "mode=lax\n", 9));
	int runs = log_count(&t, "partition r started again");
	action(&t, "r", "start", 200);
	wait_audit(&t, "baseline_refused", "r", 1);
	wait_detail(&t, "start_failed", "r", "baseline-refused");
	wait_detail(&t, "partition_state", "r", "baseline-refused");
	wait_state(&t, "r", "stopped");
	cr_assert_eq(log_count(&t, "partition r started again"), runs);
	/* Put back, it starts again. */
	free(t_write(t.conf, "app.conf", conf, strlen(conf)));
	action(&t, "r", "start", 200);
	wait_audit(&t, "quarantine", "r", 3);
}

/* ---- destroy ------------------------------------------------------------- */

/* Destroyed: gone from the agent (its vmm with it), reported destroyed,
 * audited partition_destroyed; a partition of the same name created
 * afterwards is a new one that runs. The daemon keeps its link to the
 * agent throughout (a report about a row deleted first is no refusal). */
T_BACKEND_TEST(serve_parts, destroyed_then_created_again_under_its_name,
	       .timeout = 240, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	create(&t, "d", "sleep:600000", false);
	agent_up(&t);
	wait_state(&t, "d", "running");
	destroy(&t, "d");
	wait_audit(&t, "partition_destroyed", "d", 1);
	wait_log(&t, "partition d destroyed", 1);
	create(&t, "d", "open:c9,sleep:600000", false);
	wait_state(&t, "d", "running");
	/* the second d is a new partition: its own steps, its own vmm */
	wait_detail(&t, "open_denied", "d", "NO_GRANT");
	char *dl = fd_daemon_log(&t.c.f);
	cr_assert(!strstr(dl, "BAD_STATUS"), "%s", dl);
	free(dl);
	cr_assert_eq(log_count(&t, "the daemon refused this agent"), 0);
}

struct many {
	struct sp *t;
	int from, n;
	const char *state;
};

static bool all_state(struct fleetd *f, void *ctx)
{
	(void)f;
	struct many *m = ctx;
	for (int i = m->from; i < m->from + m->n; i++) {
		char name[16], st[64];
		snprintf(name, sizeof(name), "p%d", i);
		part_state(m->t, name, st, sizeof(st));
		if (strcmp(st, m->state))
			return false;
	}
	return true;
}

static bool destroyed_n(struct fleetd *f, void *ctx)
{
	(void)f;
	struct many *m = ctx;
	return log_count(m->t, "destroyed\n") >= m->n;
}

/* 70 partitions created and destroyed in one agent run, ten at a time
 * (more than SERVE_PARTS_MAX, 64, in all): every one runs; slots,
 * console entries and grant manager records are reused, never exhausted.
 * Then one more runs. */
T_BACKEND_TEST(serve_parts, seventy_create_destroy_cycles, .timeout = 600,
	       .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	agent_up(&t);
	for (int k = 0; k < 70; k += 10) {
		for (int i = k; i < k + 10; i++) {
			char name[16];
			snprintf(name, sizeof(name), "p%d", i);
			create(&t, name, "sleep:600000", false);
		}
		struct many m = { &t, k, 10, "running" };
		char first[16];
		snprintf(first, sizeof(first), "p%d", k);
		if (!fd_wait(all_state, &t.c.f, &m, 120000))
			fail_with_log(&t, "%s and the 9 after it: not all %s",
				      first, "running");
		for (int i = k; i < k + 10; i++) {
			char name[16];
			snprintf(name, sizeof(name), "p%d", i);
			destroy(&t, name);
		}
		struct many g = { &t, 0, k + 10, NULL };
		if (!fd_wait(destroyed_n, &t.c.f, &g, 120000))
			fail_with_log(&t, "%s and the 9 after it: not all %s",
				      first, "destroyed");
	}
	create(&t, "last", "sleep:600000", false);
	wait_state(&t, "last", "running");
	cr_assert_eq(log_count(&t, "too many partitions"), 0);
	cr_assert_eq(log_count(&t, "the daemon refused this agent"), 0);
}

/* ---- names not here ------------------------------------------------------ */

/* The agent killed and started again (it keeps no thin partition across
 * that; not a hand-over): its hello lists what it holds, nothing, so the
 * daemon records the one that ran as lost -- "defined" again, audited
 * partition_lost AGENT_RESTARTED -- and has it created and started again
 * from the stored spec (measured and admitted again: a second
 * baseline_ok). One that had stopped stays stopped, and an operator's
 * START runs it again (the daemon sends its CREATE first, which an agent
 * that has it takes as a repeat). Destroying works as before; a START
 * after it finds no row (404). Before: both stayed lost, the first
 * "running" in the store for good, and every START was answered
 * no-such-partition. */
T_BACKEND_TEST(serve_parts, lost_with_a_killed_agent_created_and_started_again,
	       .timeout = 240, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	create(&t, "u", "sleep:600000", false);
	create(&t, "w", "sleep:1", false);
	agent_up(&t);
	wait_state(&t, "u", "running");
	wait_state(&t, "w", "stopped");
	fd_kill_agent(t.a);
	agent_up(&t);
	wait_detail(&t, "partition_lost", "u", "AGENT_RESTARTED");
	wait_detail(&t, "partition_lost", "u", "running -> defined");
	wait_audit(&t, "baseline_ok", "u", 2);
	wait_state(&t, "u", "running");
	/* w had stopped: nothing lost, nothing run */
	cr_assert_eq(audit_count(&t, "partition_lost", "w", NULL, 0), 0);
	char st[64];
	part_state(&t, "w", st, sizeof(st));
	cr_assert_str_eq(st, "stopped");
	action(&t, "w", "start", 200);
	wait_audit(&t, "baseline_ok", "w", 2);
	cr_assert_eq(log_count(&t, "command for w: no such partition here"), 0);
	destroy(&t, "u");
	wait_detail(&t, "partition_destroyed", "u", "DESTROY");
	action(&t, "u", "start", 404);
	/* a hello now lists w, whatever it did since: reconnecting loses
	 * nothing more */
	create(&t, "v", "sleep:600000", false);
	wait_state(&t, "v", "running");
	cr_assert_eq(audit_count(&t, "partition_lost", "v", NULL, 0), 0);
	cr_assert_eq(log_count(&t, "the daemon refused this agent"), 0);
	char *dl = fd_daemon_log(&t.c.f);
	cr_assert(!strstr(dl, "BAD_STATUS"), "%s", dl);
	free(dl);
}

/* The daemon repeats CREATE and START (request id 0) for every row still
 * "defined" at each hello and change: such a START for a partition that
 * ran and stopped meanwhile does not start it again -- only an
 * operator's START (a stored command) does. The row is put back to
 * "defined" by hand to make the daemon repeat them. */
Test(serve_parts, repeated_start_does_not_restart_a_stopped_one,
     .timeout = 120, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	create(&t, "e", "sleep:1", false);
	agent_up(&t);
	wait_state(&t, "e", "stopped");
	struct store *s = fd_store(&t.c.f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_set_state(s, "e", "defined", 0, NULL,
					       &err), 0, "%s", perr_msg(&err));
	store_close(s);
	create(&t, "f", "sleep:600000", false); /* a change: the repeats */
	wait_state(&t, "f", "running");
	wait_state(&t, "e", "stopped");
	cr_assert_eq(log_count(&t, "partition e started again"), 0);
	/* (one admission: one vmm ever made for it) */
	cr_assert_eq(audit_count(&t, "baseline_ok", "e", NULL, 0), 1);
	/* The operator's START does. */
	action(&t, "e", "start", 200);
	wait_log(&t, "partition e started again", 1);
	wait_audit(&t, "baseline_ok", "e", 2);
}

/* Its vmm killed: the partition stops (vmm-died), and its devices with
 * it -- each one the vmm left running is reported "failed" (before, the
 * console stayed "running" in the store for a stopped partition). */
T_BACKEND_TEST(serve_parts, a_killed_vmm_leaves_no_device_running,
	       .timeout = 120, .fini = sp_fini)
{
	static struct sp t;
	setup(&t);
	create(&t, "k", "sleep:600000", false);
	agent_up(&t);
	wait_state(&t, "k", "running");
	pid_t kids[16];
	int n = t_children_of(t.a->pid, kids, 16), killed = 0;
	for (int i = 0; i < n; i++) {
		char p[64], comm[32] = "";
		snprintf(p, sizeof(p), "/proc/%d/comm", (int)kids[i]);
		FILE *f = fopen(p, "r");
		if (f && fgets(comm, sizeof(comm), f) &&
		    !strncmp(comm, "parley-vmm", 10) && kill(kids[i], SIGKILL) == 0)
			killed++;
		if (f)
			fclose(f);
	}
	cr_assert_eq(killed, 1, "%d of the agent's %d children were vmms",
		     killed, n);
	wait_state(&t, "k", "stopped");
	wait_detail(&t, "partition_state", "k", "vmm-died");
	struct ac_resp r;
	ac_call(&t.c, "GET", "/v1/partitions/k", t.c.admin, NULL, &r);
	json_t *devs = json_object_get(r.json, "devices"), *d;
	size_t i;
	cr_assert_gt(json_array_size(devs), 0, "%s", r.raw);
	json_array_foreach(devs, i, d) {
		const char *st = json_string_value(json_object_get(d, "state"));
		cr_expect(st && strcmp(st, "running"), "%s", r.raw);
	}
	ac_free(&r);
}
