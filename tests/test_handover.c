/* Updating the agent by hand-over, with real processes (process backend:
 * it runs everywhere): `parley-agent run` with ping and pong exchanging
 * checksummed messages for ever, SIGUSR1, and a stage holding the test
 * build parley-agent-next (the same code, a version that says "+next", and
 * the faults PARLEY_TEST_HANDOVER_FAULT asks for).
 *
 * The test process is a child subreaper: the new agent (started by the old
 * one, which exits) and the vmm processes it adopted become its children,
 * so it can wait for and kill them by pid. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/ctl/ctl.h"
#include "common/fileio.h"
#include "common/version.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

struct run {
	char *dir;
	pid_t old;
	char out[512], audit[512];
};



/* Wait (up to secs) until the output holds `needle` at least n times
 * after byte `from`; returns the output then (caller frees) or fails the
 * test with what was there. */
static char *await_out(struct run *r, size_t from, const char *needle, int n,
		       int secs)
{
	for (int i = 0; i < secs * 20; i++) {
		char *s = t_slurp(r->out);
		if (strlen(s) >= from && t_count(s + from, needle) >= n)
			return s;
		free(s);
		usleep(50000);
	}
	char *s = t_slurp(r->out);
	cr_assert_fail("no %d x \"%s\" after byte %zu within %d s:\n%s", n,
		       needle, from, secs, s);
	return s;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	free(t_write(dir, name, text, strlen(text)));
}

/* The stage at DIR/at (its parent directories made 0700). */
static void stage_at(struct run *r, const char *at, const char *agent)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", r->dir, at);
	for (char *p = path + strlen(r->dir) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(path, 0700);
		*p = '/';
	}
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/%s/parley-agent", r->dir, at);
	cr_assert_eq(symlink(agent, path), 0);
	snprintf(path, sizeof(path), "%s/%s/parley-vmm", r->dir, at);
	cr_assert_eq(symlink(T_VMM, path), 0);
	snprintf(path, sizeof(path), "%s/%s", r->dir, at);
	write_file(path, "manifest.json", "{\"version\":\"9.9.9-test\"}");
}

static void stage(struct run *r, const char *agent)
{
	stage_at(r, "stage", agent);
}

/* The running test's directory, for the clean-up after an assertion
 * ended it: its agents (the new one reparented to the test, the
 * subreaper) and their vmms killed by pid, the directory removed. */
static char *run_dir;
static char notify_dir[32]; /* pingpong's notify socket's, "": none */

static void handover_fini(void)
{
	t_kill_children();
	t_rmtree(run_dir);
	run_dir = NULL;
	if (notify_dir[0])
		t_rmtree(notify_dir);
	notify_dir[0] = 0;
}

TestSuite(handover, .fini = handover_fini);

/* ping and pong for ever, ping saying "ping: N ok" every 20000 replies;
 * with spam, a third partition asking SPAM times for a channel it has no
 * grant for (each a CHAN_OPEN the grant manager answers and audits). */
#define SPAM 20000
/* keep: with --state-dir state and --update-stage state/update/previous
 * (an operator's explicit rollback), +next there and no stage. */
static void start_with(struct run *r, const char *fault, const char *timeout,
		       bool spam, bool keep)
{
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	r->dir = t_tmpdir();
	run_dir = r->dir;
	if (keep)
		stage_at(r, "state/update/previous",
			 T_BIN("parley-agent-next"));
	else
		stage(r, T_BIN("parley-agent-next"));
	char src[600];
	snprintf(src, sizeof(src), "%s/ping.conf", r->dir);
	static const char *const conf[] = { "ping.conf", "pong.conf" };
	for (int i = 0; i < 2; i++) {
		char *c;
		snprintf(src, sizeof(src), PARLEY_SOURCE_DIR "/examples/%s",
			 conf[i]);
		c = t_slurp(src);
		write_file(r->dir, conf[i], c);
		free(c);
	}
	write_file(r->dir, "ping.json", "{\"name\":\"ping\",\"image\":"
		   "\"ping.elf\",\"memory\":\"8M\",\"config\":[{\"name\":"
		   "\"ping.conf\",\"path\":\"ping.conf\"}],\"cmdline\":"
		   "\"count=2000000000 report=20000\"}");
	write_file(r->dir, "pong.json", "{\"name\":\"pong\",\"image\":"
		   "\"pong.elf\",\"memory\":\"8M\",\"config\":[{\"name\":"
		   "\"pong.conf\",\"path\":\"pong.conf\"}],\"cmdline\":"
		   "\"count=2000000000\"}");
	write_file(r->dir, "grants.json", "{\"grants\":[{\"channel\":"
		   "\"pingpong\",\"endpoint_a\":\"ping\",\"endpoint_b\":"
		   "\"pong\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}]}");
	char spam_cmd[200];
	snprintf(spam_cmd, sizeof(spam_cmd), "{\"name\":\"spam\",\"image\":"
		 "\"chantest.elf\",\"memory\":\"8M\",\"cmdline\":"
		 "\"steps=sleep:200,spam:%d:nogrant\"}", SPAM);
	write_file(r->dir, "spam.json", spam_cmd);
	snprintf(r->out, sizeof(r->out), "%s/run.out", r->dir);
	snprintf(r->audit, sizeof(r->audit), "%s/audit.jsonl", r->dir);
	pid_t self = getpid();
	r->old = fork();
	cr_assert_neq(r->old, -1);
	if (r->old == 0) {
		t_child_dies_with_parent(self);
		if (chdir(r->dir) < 0)
			_exit(127);
		int fd = open("run.out", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fault)
			setenv("PARLEY_TEST_HANDOVER_FAULT", fault, 1);
		/* The old agent is the production build: it never reads
		 * that variable; the new one (parley-agent-next) does. */
		char *argv[] = { T_AGENT, "run", "--backend", "process",
			"--vmm", T_VMM, "--image-dir", PARLEY_BUILD_DIR "/guest",
			"--policy", "grants.json", "--audit", "audit.jsonl",
			"--audit-refusals", "all", /* spam's: every one */
			"--update-stage", "stage", "--update-timeout",
			(char *)(timeout ? timeout : "20"), "ping.json",
			"pong.json", spam ? "spam.json" : NULL, NULL };
		char *kargv[] = { T_AGENT, "run", "--backend", "process",
			"--vmm", T_VMM, "--image-dir", PARLEY_BUILD_DIR "/guest",
			"--policy", "grants.json", "--audit", "audit.jsonl",
			"--state-dir", "state", "--update-stage",
			"state/update/previous", "ping.json", "pong.json",
			NULL };
		execv(T_AGENT, keep ? kargv : argv);
		_exit(127);
	}
}

static void start(struct run *r, const char *fault, const char *timeout)
{
	start_with(r, fault, timeout, false, false);
}

/* Stop an agent by SIGTERM (its partitions with it) and reap it, and the
 * vmm processes that became ours. */
static int stop(pid_t pid)
{
	int st = 0;
	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return st;
}

static void finish(struct run *r)
{
	run_dir = NULL;
	t_rmtree(r->dir);
	free(r->dir);
}

static pid_t new_pid_of(const char *out)
{
	const char *at = strstr(out, "handed over to pid ");
	cr_assert(at, "%s", out);
	return (pid_t)atoi(at + strlen("handed over to pid "));
}

Test(handover, pingpong_keeps_running_across_the_hand_over,
     .timeout = 120)
{
	struct run r;
	/* A service manager's notify socket: the old agent must name the
	 * new one as the main process before it leaves. */
	snprintf(notify_dir, sizeof(notify_dir), "/tmp/parley-notify-XXXXXX");
	cr_assert(mkdtemp(notify_dir));
	const char *npath = notify_dir;
	char sock_path[64];
	snprintf(sock_path, sizeof(sock_path), "%s/notify", npath);
	int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	cr_assert_eq(bind(nfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	start_with(&r, NULL, NULL, true, false);
	unsetenv("NOTIFY_SOCKET");
	char *s = await_out(&r, 0, "ping| ping: ", 1, 60);
	size_t before = strlen(s);
	cr_assert_null(strstr(s, "spammed"), "the spam ended before the "
		       "hand-over began: raise SPAM\n%s", s);
	free(s);
	kill(r.old, SIGUSR1);
	s = await_out(&r, before, "handed over to pid ", 1, 60);
	pid_t np = new_pid_of(s);
	free(s);
	/* The old one leaves by itself, with status 0, having named the new
	 * one the service's main process. */
	int st = 0;
	cr_assert_eq(waitpid(r.old, &st, 0), r.old);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x", st);
	char note[64] = { 0 }, want_note[64];
	ssize_t nn = recv(nfd, note, sizeof(note) - 1, MSG_DONTWAIT);
	snprintf(want_note, sizeof(want_note), "MAINPID=%d\n", (int)np);
	cr_expect(nn > 0 && !strcmp(note, want_note), "notify: \"%s\"", note);
	close(nfd);
	unlink(sock_path);
	rmdir(npath);
	notify_dir[0] = 0;
	/* The counter keeps rising under the new agent: ping checks every
	 * reply's sequence and checksum and would stop at the first bad one
	 * ("reply N damaged", exit 1). */
	s = await_out(&r, 0, "took over from", 1, 30);
	size_t at = strstr(s, "took over from") - s;
	free(s);
	s = await_out(&r, at, "ping| ping: ", 3, 60);
	cr_expect(strstr(s, "+next took over from"), "%s", s);
	cr_expect(strstr(s, "ping still runs vmm "), "%s", s);
	cr_expect_null(strstr(s, "damaged"), "%s", s);
	cr_expect_null(strstr(s, "stopped:"), "%s", s);
	free(s);
	/* Channel opens asked before, during (they wait in the vmm's control
	 * socket) and after the hand-over: each answered once, each audited
	 * once, by whichever agent served it. */
	s = await_out(&r, 0, "spam| spammed ", 1, 90);
	char want[64];
	snprintf(want, sizeof(want), "spam| spammed %d (0 allowed)", SPAM);
	cr_expect(strstr(s, want), "%s", s);
	cr_expect_lt(strstr(s, "took over from"), strstr(s, "spammed"),
		     "the spam ended before the hand-over: raise SPAM");
	free(s);
	s = t_slurp(r.audit);
	cr_expect_eq(t_count(s, "\"event\":\"open_denied\",\"partition\":"
				 "\"spam\""), SPAM, "audit records lost or "
		     "duplicated");
	free(s);
	st = stop(np);
	cr_expect(WIFEXITED(st), "new: %#x", st);
	s = t_slurp(r.out);
	cr_expect(strstr(s, "  ping                 process  killed"), "%s", s);
	free(s);
	/* Audit: each record once, the hand-over's from the new agent. */
	s = t_slurp(r.audit);
	cr_expect_eq(t_count(s, "\"event\":\"update_committed\""), 1, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"open_allowed\",\"partition\":"
				 "\"ping\""), 1, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback\""), 0, "%s", s);
	free(s);
	finish(&r);
}

static char *slurp_in(struct run *r, const char *rel)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/%s", r->dir, rel);
	return t_slurp(p);
}

/* An operator's explicit rollback (agent/update/keep.h): the agent runs
 * with --state-dir and --update-stage STATE/update/previous. previous
 * holds +next: the first SIGUSR1 hands over to it (current is seeded from
 * the running build first, then current and previous swap: +next current,
 * this build previous); the second rolls back to this build, with the
 * ping/pong pair running through both and its vmm processes untouched. */
Test(handover, explicit_rollback_to_the_previous_version, .timeout = 120)
{
	struct run r;
	start_with(&r, NULL, NULL, false, true);
	char *s = await_out(&r, 0, "ping| ping: ", 1, 60);
	free(s);
	kill(r.old, SIGUSR1);
	s = await_out(&r, 0, "versions kept: ", 1, 60);
	pid_t next = new_pid_of(s);
	size_t at = strstr(s, "versions kept: ") - s;
	cr_expect(strstr(s, "+next took over from"), "%s", s);
	free(s);
	cr_assert_eq(waitpid(r.old, NULL, 0), r.old);
	char *m = slurp_in(&r, "state/update/current/manifest.json");
	cr_expect(strstr(m, "9.9.9-test"), "current: %s", m);
	free(m);
	m = slurp_in(&r, "state/update/previous/manifest.json");
	char want[200];
	snprintf(want, sizeof(want), "{\"version\":\"%s\"}", parley_version());
	cr_expect_str_eq(m, want, "previous: the build that ran");
	free(m);
	/* ping/pong rises under +next, then the operator rolls back. */
	s = await_out(&r, at, "ping| ping: ", 2, 60);
	at = strlen(s);
	free(s);
	kill(next, SIGUSR1);
	s = await_out(&r, at, "versions kept: ", 1, 60);
	const char *hand = strstr(s + at, "handed over to pid ");
	cr_assert(hand, "%s", s + at);
	pid_t back = (pid_t)atoi(hand + strlen("handed over to pid "));
	char took[200];
	snprintf(took, sizeof(took), "%s took over from %s+next",
		 parley_version(), parley_version());
	cr_expect(strstr(s + at, took), "wanted \"%s\":\n%s", took, s + at);
	cr_expect(strstr(s + at, "versions kept: rolled back"), "%s", s + at);
	size_t at2 = strlen(s);
	free(s);
	cr_assert_eq(waitpid(next, NULL, 0), next);
	s = await_out(&r, at2, "ping| ping: ", 2, 60);
	cr_expect_null(strstr(s, "damaged"), "%s", s);
	cr_expect_null(strstr(s, "stopped:"), "%s", s);
	free(s);
	m = slurp_in(&r, "state/update/current/manifest.json");
	cr_expect_str_eq(m, want, "current: this build again");
	free(m);
	m = slurp_in(&r, "state/update/previous/manifest.json");
	cr_expect(strstr(m, "9.9.9-test"), "previous: +next's stage: %s", m);
	free(m);
	int st = stop(back);
	cr_expect(WIFEXITED(st), "back: %#x", st);
	s = t_slurp(r.out);
	/* The partitions ran through both hand-overs: killed only now. */
	cr_expect(strstr(s, "  ping                 process  killed"), "%s", s);
	free(s);
	s = t_slurp(r.audit);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback_requested\""),
		     2, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"update_committed\""), 2, "%s",
		     s);
	cr_expect_eq(t_count(s, "\"event\":\"update_kept\""), 2, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback\""), 0, "%s",
		     s);
	free(s);
	finish(&r);
}

/* No previous kept: SIGUSR1 with --update-stage STATE/update/previous is
 * refused with the reason, audited, and the agent serves on. */
Test(handover, explicit_rollback_without_previous_refused, .timeout = 120)
{
	struct run r;
	start_with(&r, NULL, NULL, false, true);
	char p[700];
	snprintf(p, sizeof(p), "%s/state/update/previous", r.dir);
	t_rmtree(p);
	char *s = await_out(&r, 0, "ping| ping: ", 1, 60);
	free(s);
	kill(r.old, SIGUSR1);
	s = await_out(&r, 0, "update refused", 1, 60);
	size_t at = strstr(s, "update refused") - s;
	cr_expect(strstr(s + at, "no previous version to roll back to"), "%s",
		  s + at);
	cr_expect_null(strstr(s, "handed over"), "%s", s);
	free(s);
	s = await_out(&r, at, "ping| ping: ", 2, 60);
	cr_expect_null(strstr(s, "stopped:"), "%s", s);
	free(s);
	int st = stop(r.old);
	cr_expect(WIFEXITED(st), "old: %#x", st);
	s = t_slurp(r.audit);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback_refused\""),
		     1, "%s", s);
	cr_expect(strstr(s, "no previous version"), "%s", s);
	free(s);
	finish(&r);
}

/* Each failure of the new binary: the old one rolls back, keeps serving
 * (the counter rises after the rollback), and the audit says why. */
static void rollback_case(const char *fault, const char *timeout,
			  const char *why)
{
	struct run r;
	start(&r, fault, timeout);
	char *s = await_out(&r, 0, "ping| ping: ", 2, 60);
	free(s);
	kill(r.old, SIGUSR1);
	s = await_out(&r, 0, "update rolled back", 1, 60);
	size_t at = strstr(s, "update rolled back") - s;
	cr_expect(strstr(s + at, why), "wanted \"%s\":\n%s", why, s + at);
	cr_expect_null(strstr(s, "handed over to pid"), "%s", s);
	free(s);
	s = await_out(&r, at, "ping| ping: ", 3, 60);
	cr_expect_null(strstr(s, "damaged"), "%s", s);
	/* Nothing the new one did is held against a vmm (a PONG it asked
	 * for and never read reaches the old agent: ignored). */
	cr_expect_null(strstr(s, "stopped:"), "%s", s);
	cr_expect_null(strstr(s, "unsolicited"), "%s", s);
	free(s);
	int st = stop(r.old);
	cr_expect(WIFEXITED(st), "old: %#x", st);
	s = t_slurp(r.out);
	cr_expect(strstr(s, "  ping                 process  killed"), "%s", s);
	free(s);
	s = t_slurp(r.audit);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback\""), 1, "%s", s);
	cr_expect(strstr(s, why), "wanted \"%s\" in the audit:\n%s", why, s);
	cr_expect_eq(t_count(s, "\"event\":\"update_committed\""), 0, "%s", s);
	free(s);
	finish(&r);
}

Test(handover, new_binary_crashing_at_start_rolls_back, .timeout = 120)
{
	rollback_case("crash", NULL, "killed by signal 6");
}

Test(handover, new_binary_never_confirming_rolls_back, .timeout = 120)
{
	rollback_case("noconfirm", "3", "did not confirm within the deadline");
}

Test(handover, new_binary_failing_to_adopt_rolls_back, .timeout = 120)
{
	rollback_case("adopt", NULL, "pong: not adopted");
}

Test(handover, new_binary_dying_after_its_pings_rolls_back, .timeout = 120)
{
	rollback_case("pingdie", NULL, "exited with status 3 while adopting");
}

/* A stage without the new binary: refused before anything starts. */
Test(handover, incomplete_stage_refused, .timeout = 120)
{
	struct run r;
	start(&r, NULL, NULL);
	char path[600];
	snprintf(path, sizeof(path), "%s/stage/parley-agent", r.dir);
	cr_assert_eq(unlink(path), 0);
	char *s = await_out(&r, 0, "ping| ping: ", 1, 60);
	free(s);
	kill(r.old, SIGUSR1);
	s = await_out(&r, 0, "update rolled back", 1, 60);
	cr_expect(strstr(s, "lacks parley-agent"), "%s", s);
	free(s);
	stop(r.old);
	finish(&r);
}

/* ---- under a daemon (`parley-agent serve`) ------------------------------ */

#define SERVE_EVENTS 3000

/* How many times the store holds each of host-a's denials c0..c2999, and
 * whether it holds the hand-over's own record. */
struct stored_tally {
	uint8_t n[SERVE_EVENTS];
	unsigned total, stray, committed;
};

static struct store *reader;

static int stored_row(const struct store_audit *row, void *ctx)
{
	struct stored_tally *t = ctx;
	unsigned k;
	char tail;
	if (strcmp(row->host, "host-a"))
		return 0;
	if (!strcmp(row->event, "update_committed"))
		t->committed++;
	if (strcmp(row->event, "open_denied"))
		return 0;
	if (sscanf(row->channel, "c%u%c", &k, &tail) != 1 ||
	    k >= SERVE_EVENTS) {
		t->stray++;
		return 0;
	}
	if (t->n[k] < 255)
		t->n[k]++;
	t->total++;
	return 0;
}

static void tally(struct stored_tally *t)
{
	struct parley_err err = { 0 };
	memset(t, 0, sizeof(*t));
	cr_assert_geq(store_audit_list(reader, 0, 0, stored_row, t, &err), 0,
		      "%s", perr_msg(&err));
}

struct want_stored {
	unsigned total, committed;
	struct stored_tally t;
};

static bool enough_stored(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_stored *w = ctx;
	tally(&w->t);
	return w->t.total >= w->total && w->t.committed >= w->committed;
}

/* The agent under a daemon hands over while a partition streams audit
 * events (3,000 channel opens without a grant, each naming its own
 * channel): its outbox is synced and its link closed just before the
 * commit, the new agent opens the same outbox and reconnects, and the
 * store ends with every event exactly once, and the hand-over's own. */
Test(handover, under_a_daemon_every_audit_event_stored_once,
     .timeout = 240)
{
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	cr_assert_eq(store_host_put(s, "host-a", "", (struct store_blob){ 0 },
				    NULL), 0);
	struct store_part_in in = { .name = "a", .host = "host-a",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	reader = s;
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	struct run r = { .dir = t_tmpdir() };
	stage(&r, T_BIN("parley-agent-next"));
	char stage_dir[600];
	snprintf(stage_dir, sizeof(stage_dir), "%s/stage", r.dir);
	char spec[256];
	snprintf(spec, sizeof(spec), "{\"name\":\"a\",\"image\":"
		 "\"chantest.elf\",\"memory\":\"4M\",\"cmdline\":"
		 "\"steps=spamn:%d:c,sleep:60000\"}", SERVE_EVENTS);
	const char *specs[] = { spec, NULL };
	/* The refusals are this test's stream of records: every one. */
	const char *extra[] = { "--update-stage", stage_dir,
				"--audit-refusals", "all", NULL };
	fd_start_agent_with(&f, h, specs, extra);
	static struct want_stored w;
	w = (struct want_stored){ .total = 200 };
	cr_assert(fd_wait(enough_stored, &f, &w, 60000), "%u stored:\n%s",
		  w.t.total, fd_agent_log(h));
	cr_assert_lt(w.t.total, SERVE_EVENTS, "the stream ended before the "
		     "hand-over: raise SERVE_EVENTS");
	kill(h->pid, SIGUSR1);
	int st = 0;
	cr_assert_eq(waitpid(h->pid, &st, 0), h->pid);
	char *log = fd_agent_log(h);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x\n%s", st,
		  log);
	const char *at = strstr(log, "handed over to pid ");
	cr_assert(at, "%s", log);
	h->pid = (pid_t)atoi(at + strlen("handed over to pid "));
	free(log);
	w = (struct want_stored){ .total = SERVE_EVENTS, .committed = 1 };
	cr_assert(fd_wait(enough_stored, &f, &w, 120000), "%u of %d stored, "
		  "committed %u:\n%s", w.t.total, SERVE_EVENTS, w.t.committed,
		  fd_agent_log(h));
	unsigned missing = 0, twice = 0;
	for (unsigned k = 0; k < SERVE_EVENTS; k++) {
		missing += w.t.n[k] == 0;
		twice += w.t.n[k] > 1;
	}
	cr_expect_eq(missing, 0);
	cr_expect_eq(twice, 0);
	cr_expect_eq(w.t.total, SERVE_EVENTS);
	cr_expect_eq(w.t.committed, 1);
	cr_expect_eq(w.t.stray, 0);
	log = fd_agent_log(h);
	cr_expect(strstr(log, "+next took over from"), "%s", log);
	free(log);
	fd_stop(&f);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	finish(&r);
}
