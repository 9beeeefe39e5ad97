/* The web console in headless Chromium (tests/browser/console_e2e.js over
 * the DevTools protocol): parleyd with the demo's host, partitions and
 * grants (examples/grants.json), rogue quarantined by its agent; login
 * with a wrong token, then the right one; the graph's nodes and edges; a
 * rogue open refused by the agent (sent over the agent link, as a host)
 * shown live in the graph and the audit view; a service rule and a segment
 * set in their views and the rule as an edge, a rule added while the page
 * is open shown without reload; host-1's agent version, host-2's unknown;
 * keyboard navigation (graph and tabs); no
 * request outside the daemon's origin; a screenshot in the build tree.
 * And the console over 10,000 partitions (tests/browser/console_scale.js):
 * paged, the graph by host or channel with its edge table, keyboard, the
 * audit view filtered by the server, a change redrawing only its views. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/grant.h"
#include "common/wire.h"
#include "db/store.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/linkpeer.h"
#include "tests/helpers/testutil.h"

#define BUF 8192

#define call_ok(c, m, p, b, w) ac_call_ok(c, m, p, b, w, NULL)

/* host-1's agent says hello with a version (the hosts view shows it;
 * host-2's never does: shown as unknown). Every session says it, as the
 * daemon stores what the last hello said. */
#define AGENT_VERSION "0.9.1"

static void hello_v(uint8_t *b, size_t *n, const char *host)
{
	Parley__V1__Envelope e;
	Parley__V1__Hello h;
	wire_init_envelope(&e, 1);
	parley__v1__hello__init(&h);
	h.host = (char *)host;
	h.next_seq = 1;
	h.agent_version = (char *)AGENT_VERSION;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	lp_add(b, BUF, n, &e);
}

/* What the agent of host-1 reports: one event in an audit batch, after
 * its hello. */
static void agent_event(struct api_client *c, const char *dir, uint64_t seq,
			const char *event, const char *part,
			const char *chan, const char *reason, const char *file)
{
	uint8_t b[BUF];
	size_t n = 0;
	hello_v(b, &n, "host-1");
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch ab;
	Parley__V1__AuditEvent ev, *evp = &ev;
	wire_init_envelope(&e, 200 + seq);
	parley__v1__audit_batch__init(&ab);
	parley__v1__audit_event__init(&ev);
	ev.seq = seq;
	ev.event = (char *)event;
	ev.partition = (char *)part;
	ev.channel = (char *)(chan ? chan : "");
	ev.reason = (char *)(reason ? reason : "");
	ev.file = (char *)(file ? file : "");
	ab.events = &evp;
	ab.n_events = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &ab;
	lp_add(b, BUF, &n, &e);
	struct lp_result r;
	/* Welcome, the policy bundle, the Ack: then it may go. */
	lp_session(c->f.port, dir, b, n, 3, &r);
	cr_assert(r.handshake, "the agent link refused host-1's certificate");
	cr_assert_geq(r.acks, 1, "%s not acknowledged (%u frames, error %s)",
		      event, r.frames, r.error_code);
}

/* What console_e2e.js must find. */
#define E2E_EXPECT "{\"nodes\":[\"ping\",\"pong\",\"rogue\"," \
	"\"hello\"],\"edges\":[\"pingpong:ping>pong\"," \
	"\"telemetry:rogue>pong\",\"metrics:ping>pong\"]," \
	"\"services\":[\"metrics:ping>pong\"],\"segset\":" \
	"{\"name\":\"bus\",\"host\":\"host-1\",\"members\":" \
	"\"ping, pong, rogue\",\"segments\":[\"cmd (pipe, " \
	"64K): ping → pong, rogue\",\"ev (queue, queue events, " \
	"16K): pong → ping\"]},\"versions\":{\"host-1\":\"" \
	AGENT_VERSION "\",\"host-2\":\"unknown\"}," \
	"\"live_rule\":{\"service\":\"logs\",\"source\":" \
	"\"pong\",\"target\":\"ping\",\"action\":\"deny\"}," \
	"\"quarantined\":[\"rogue\"]," \
	"\"open\":[\"pingpong\"],\"rogue\":{\"partition\":" \
	"\"rogue\",\"channel\":\"pingpong\"}}"

/* Starts tests/browser/SCRIPT under node with env set, hands each line it
 * prints to cb (which may answer on out), keeps them in log; returns its
 * wait status. */
typedef void (*driver_cb)(const char *line, FILE *out, void *ctx);

static int run_driver(const char *script, const char *const env[][2],
		      size_t nenv, driver_cb cb, void *ctx, char *log,
		      size_t cap)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/tests/browser/%s", PARLEY_SOURCE_DIR,
		 script);
	int to[2], from[2];
	cr_assert_eq(pipe(to), 0);
	cr_assert_eq(pipe(from), 0);
	pid_t parent = getpid(), pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent);
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		for (size_t i = 0; i < nenv; i++)
			setenv(env[i][0], env[i][1], 1);
		execlp("node", "node", path, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	FILE *in = fdopen(from[0], "r"), *out = fdopen(to[1], "w");
	char line[4096];
	log[0] = 0;
	while (fgets(line, sizeof(line), in)) {
		strncat(log, line, cap - strlen(log) - 1);
		cb(line, out, ctx);
	}
	fclose(out);
	fclose(in);
	int st;
	waitpid(pid, &st, 0);
	cr_log_info("%s:\n%s", script, log);
	return st;
}

/* The tests' answers to a driver's requests: INJECT, a refused open of
 * rogue's as host-1's agent reports it; ADDRULE, the rule added through
 * the API while the page is open. */
struct e2e {
	struct api_client *c;
	const char *dir, *rule;
	bool injected, added;
};

static void e2e_line(const char *line, FILE *out, void *ctx)
{
	struct e2e *e = ctx;
	if (!strcmp(line, "INJECT\n") && e->dir) {
		agent_event(e->c, e->dir, 3, "open_denied", "rogue",
			    "pingpong", "NO_GRANT", NULL);
		fputs("INJECTED\n", out);
		e->injected = true;
	} else if (!strcmp(line, "ADDRULE\n")) {
		call_ok(e->c, "POST", "/v1/services", e->rule, 201);
		fputs("ADDED\n", out);
		e->added = true;
	}
	fflush(out);
}

static bool have(const char *exe)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", exe);
	return system(cmd) == 0;
}

Test(console_browser, graph_live_refusal_quarantine_login_origin,
     .timeout = 240)
{
	cr_assert(have("node") && (have("chromium") || getenv("CHROMIUM")),
		  "node and chromium are needed (./dev deps --test installs Debian's "
		  "nodejs and chromium)");
	struct api_client c;
	ac_start(&c);
	call_ok(&c, "POST", "/v1/hosts", "{\"name\":\"host-1\"}", 201);
	call_ok(&c, "POST", "/v1/hosts", "{\"name\":\"host-2\"}", 201);
	static const char *const parts[][2] = {
		{ "ping", "host-1" }, { "pong", "host-1" },
		{ "rogue", "host-1" }, { "hello", "host-2" },
	};
	for (size_t i = 0; i < 4; i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"host\":\"%s\",\"backend\":"
			 "\"thin\",\"spec\":{\"name\":\"%s\",\"image\":"
			 "\"%s.elf\"}}", parts[i][1], parts[i][0],
			 parts[i][0]);
		call_ok(&c, "POST", "/v1/partitions", body, 201);
	}
	/* examples/grants.json */
	call_ok(&c, "POST", "/v1/grants", "{\"channel\":\"pingpong\","
		"\"endpoint_a\":\"ping\",\"endpoint_b\":\"pong\",\"direction\":"
		"\"both\",\"ring_bytes\":\"64K\",\"require_integrity\":true}",
		201);
	call_ok(&c, "POST", "/v1/grants", "{\"channel\":\"telemetry\","
		"\"endpoint_a\":\"rogue\",\"endpoint_b\":\"pong\","
		"\"direction\":\"a_to_b\",\"ring_bytes\":\"4K\"}", 201);
	/* A service rule and a segment set (both on host-1). */
	call_ok(&c, "POST", "/v1/services", "{\"source\":\"ping\","
		"\"target\":\"pong\",\"service\":\"metrics\","
		"\"action\":\"allow\"}", 201);
	call_ok(&c, "POST", "/v1/segsets", "{\"name\":\"bus\",\"members\":"
		"[\"ping\",\"pong\",\"rogue\"],\"segments\":[{\"name\":"
		"\"cmd\",\"kind\":\"pipe\",\"writer\":\"ping\",\"size\":"
		"\"64K\"},{\"name\":\"ev\",\"kind\":\"queue\",\"queue\":"
		"\"events\",\"writer\":\"pong\",\"size\":\"16K\","
		"\"readers\":[\"ping\"]}]}", 201);
	struct fd_agent *host = fd_host(&c.f, "host-1", NULL);
	/* rogue tampered with its config: its agent quarantined it. */
	agent_event(&c, host->dir, 1, "quarantine", "rogue", NULL,
		    "INTEGRITY", "app.conf");
	/* ping opened its channel: drawn as open, not merely granted. */
	agent_event(&c, host->dir, 2, "open_allowed", "ping", "pingpong",
		    NULL, NULL);

	char url[64], shot[600];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", c.port);
	snprintf(shot, sizeof(shot), "%s/console/graph.png", PARLEY_BUILD_DIR);
	unlink(shot);
	struct e2e e = {
		.c = &c, .dir = host->dir,
		.rule = "{\"source\":\"pong\",\"target\":\"ping\","
			"\"service\":\"logs\",\"action\":\"deny\"}",
	};
	const char *env[][2] = {
		{ "PARLEY_URL", url }, { "PARLEY_TOKEN", c.admin },
		{ "PARLEY_SHOT", shot }, { "PARLEY_EXPECT", E2E_EXPECT },
	};
	char log[16384];
	int st = run_driver("console_e2e.js", env, 4, e2e_line, &e, log,
			    sizeof(log));
	bool injected = e.injected, added = e.added;
	cr_expect(injected, "the driver never asked for the refused open");
	cr_expect(added, "the driver never asked for the live rule");
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "console_e2e.js "
		  "failed:\n%s", log);
	cr_expect(strstr(log, "\nPASS\n") || !strncmp(log, "PASS\n", 5),
		  "%s", log);
	cr_expect_eq(access(shot, R_OK), 0, "no screenshot at %s", shot);
	ac_stop(&c);
}

/* ---- 10,000 partitions ------------------------------------------------- */

#define S_HOSTS 100
#define S_PER_HOST 100
#define S_AUDIT_PARTS 50      /* partitions with audit rows */
#define S_AUDIT_EACH 6        /* rows each: every third QUOTA */

/* 100 hosts of 100 partitions, each granted a channel to its neighbour on
 * its host (10,000 grants), and 300 audit rows: written through the store
 * in one transaction (the API would take minutes under the sanitizers). */
static void fill_store(struct api_client *c)
{
	struct store *s = fd_store(&c->f);
	struct parley_err err = { 0 };
	static const char spec[] = "{}";
	char host[32], part[32];
	cr_assert_eq(store_begin(s, &err), 0, "%s", perr_msg(&err));
	for (unsigned h = 0; h < S_HOSTS; h++) {
		snprintf(host, sizeof(host), "host-%03u", h);
		cr_assert_eq(store_host_put(s, host, "", (struct store_blob){
			NULL, 0 }, &err), 0, "%s", perr_msg(&err));
		for (unsigned i = 0; i < S_PER_HOST; i++) {
			snprintf(part, sizeof(part), "p-%03u-%02u", h, i);
			struct store_part_in p = {
				.name = part, .host = host,
				.kind = STORE_PART_THIN, .spec_json = spec,
				.spec_len = sizeof(spec) - 1, .state = "defined",
			};
			cr_assert_eq(store_partition_put(s, &p, NULL, &err), 0,
				     "%s", perr_msg(&err));
		}
	}
	for (unsigned h = 0; h < S_HOSTS; h++) {
		for (unsigned i = 0; i < S_PER_HOST; i++) {
			struct grant g = { .dir = GRANT_A_TO_B,
					   .ring_bytes = 4096 };
			snprintf(g.channel, sizeof(g.channel), "ch-%03u-%02u", h,
				 i);
			snprintf(g.a, sizeof(g.a), "p-%03u-%02u", h, i);
			snprintf(g.b, sizeof(g.b), "p-%03u-%02u", h,
				 (i + 1) % S_PER_HOST);
			cr_assert_eq(store_grant_add(s, &g, NULL, &err), 0,
				     "%s", perr_msg(&err));
		}
	}
	cr_assert_eq(store_commit(s, &err), 0, "%s", perr_msg(&err));
	/* Refused opens of partitions p-042-00..49, interleaved. */
	static struct store_audit_in ev[S_AUDIT_PARTS * S_AUDIT_EACH];
	static char names[S_AUDIT_PARTS][32];
	for (unsigned k = 0; k < S_AUDIT_EACH; k++)
		for (unsigned i = 0; i < S_AUDIT_PARTS; i++) {
			snprintf(names[i], sizeof(names[i]), "p-042-%02u", i);
			ev[k * S_AUDIT_PARTS + i] = (struct store_audit_in){
				.host = "host-042", .event = "open_denied",
				.partition = names[i], .channel = "nope",
				.reason = k % 3 ? "NO_GRANT" : "QUOTA",
			};
		}
	cr_assert_eq(store_audit_append(s, ev, S_AUDIT_PARTS * S_AUDIT_EACH,
					NULL, &err), 0, "%s", perr_msg(&err));
	store_close(s);
}

Test(console_browser, ten_thousand_partitions, .timeout = 480)
{
	cr_assert(have("node") && (have("chromium") || getenv("CHROMIUM")),
		  "node and chromium are needed (./dev deps --test installs Debian's "
		  "nodejs and chromium)");
	struct api_client c;
	ac_start(&c);
	fill_store(&c);
	char url[64], expect[1024];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", c.port);
	snprintf(expect, sizeof(expect),
		 "{\"parts\":%u,\"grants\":%u,\"hosts\":%u,\"per_host\":%u,"
		 "\"page\":200,\"host\":\"host-042\",\"part_prefix\":"
		 "\"p-042-\",\"host_grants\":%u,\"host_edges\":%u,\"channel\":\"ch-017-05\","
		 "\"audit\":{\"partition\":\"p-042-07\",\"rows\":%u,"
		 "\"reason\":\"QUOTA\",\"reason_rows\":%u},\"rule\":{"
		 "\"service\":\"stats\",\"source\":\"p-042-03\",\"target\":"
		 "\"p-042-04\"}}", S_HOSTS * S_PER_HOST, S_HOSTS * S_PER_HOST,
		 S_HOSTS, S_PER_HOST, S_PER_HOST, S_PER_HOST + S_AUDIT_PARTS,
		 S_AUDIT_EACH,
		 (S_AUDIT_EACH + 2) / 3);
	struct e2e e = {
		.c = &c,
		.rule = "{\"source\":\"p-042-03\",\"target\":\"p-042-04\","
			"\"service\":\"stats\",\"action\":\"allow\"}",
	};
	const char *env[][2] = {
		{ "PARLEY_URL", url }, { "PARLEY_TOKEN", c.admin },
		{ "PARLEY_EXPECT", expect },
	};
	char log[16384];
	int st = run_driver("console_scale.js", env, 3, e2e_line, &e, log,
			    sizeof(log));
	bool added = e.added;
	cr_expect(added, "the driver never asked for the live rule");
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "console_scale.js "
		  "failed:\n%s", log);
	cr_expect(strstr(log, "\nPASS\n") || !strncmp(log, "PASS\n", 5),
		  "%s", log);
	ac_stop(&c);
}
