/*
 * The store under kill -9 and under several writers (db/):
 *  - crash_*: a child process ingests audit batches in a loop and, after
 *    each commit, reports the last committed id through a pipe; the
 *    parent SIGKILLs it at a random moment, reopens the file and checks
 *    that every id reported is there, the chain verifies, and the host's
 *    sequence number matches what was stored (never one without the
 *    other).
 *  - several processes appending audit events and adding grants on one
 *    file at once: ids without gaps, one version per change.
 *  Both run on SQLite (suite store) and PostgreSQL (store_pg: several
 *  connections to one database, one verifiable chain).
 *  - the audit ingest rate at several batch sizes, printed (BENCH-style
 *    figures, never asserted).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/store.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

#define NOCERT ((struct store_blob){ NULL, 0 })

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct cfx {
	char *dir;
	char path[600];
};

static void cfx_new(struct cfx *f)
{
	f->dir = t_tmpdir();
	t_store_uri(f->dir, "parley.db", f->path, sizeof(f->path));
}

static void cfx_free(struct cfx *f)
{
	t_store_uri_drop(f->path);
	t_rmtree(f->dir);
	free(f->dir);
}

static struct store *cfx_open(const struct cfx *f)
{
	struct store *s;
	struct parley_err e = { 0 };
	int rc = store_open(f->path, &s, &e);
	cr_assert_eq(rc, 0, "store_open: %s", perr_msg(&e));
	return s;
}

/* n agent events with seqs from `first`, realistic sizes; detail points
 * into buf (n * 96 bytes). */
static void events(struct store_audit_in *ev, char *buf, unsigned n,
		   uint64_t first)
{
	for (unsigned i = 0; i < n; i++) {
		char *d = buf + 96 * i;
		snprintf(d, 96, "re-measured motd: page 3 differs from its "
			 "baseline (seq %llu)",
			 (unsigned long long)(first + i));
		ev[i] = (struct store_audit_in){
			.seq = first + i, .event = "open_denied",
			.partition = "partition-17", .channel = "telemetry",
			.reason = "INTEGRITY", .file = "motd", .detail = d,
		};
	}
}

/* ---- kill -9 ---- */

#define CRASH_BATCH 64

/* The child: ingest batches forever, reporting each committed last id. */
static void __attribute__((noreturn)) crash_child(const char *path, int wfd)
{
	struct store *s;
	struct store_audit_in ev[CRASH_BATCH];
	static char buf[CRASH_BATCH * 96];
	if (store_open(path, &s, NULL) < 0)
		_exit(2);
	for (uint64_t seq = 1;; seq += CRASH_BATCH) {
		events(ev, buf, CRASH_BATCH, seq);
		struct store_ingest r;
		if (store_ingest_audit(s, "h1", ev, CRASH_BATCH, &r, NULL) < 0)
			_exit(3);
		/* Committed: now, and only now, say so. */
		uint64_t last = r.seq;
		if (write(wfd, &last, sizeof(last)) != sizeof(last))
			_exit(4);
	}
}

/* Read the child's reports until `until`; the highest id seen. */
static uint64_t collect(int rfd, double until, bool drain)
{
	uint64_t best = 0, v[64];
	for (;;) {
		int ms = drain ? 0 : (int)((until - now_s()) * 1000);
		if (!drain && ms <= 0)
			return best;
		struct pollfd p = { .fd = rfd, .events = POLLIN };
		if (poll(&p, 1, ms) <= 0) {
			if (drain)
				return best;
			continue;
		}
		ssize_t n = read(rfd, v, sizeof(v));
		if (n <= 0)
			return best;
		cr_assert_eq(n % 8, 0, "torn report");
		for (ssize_t i = 0; i < n / 8; i++)
			best = v[i] > best ? v[i] : best;
	}
}

static void check_after_crash(const struct cfx *f, uint64_t reported,
			      int round)
{
	struct store *s = cfx_open(f);
	struct parley_err e = { 0 };
	uint64_t bad, rows, seq;
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0,
		     "round %d: %s", round, perr_msg(&e));
	cr_expect_geq(rows, reported, "round %d: %llu rows, child reported "
		      "%llu committed", round, (unsigned long long)rows,
		      (unsigned long long)reported);
	cr_assert_eq(store_host_seq(s, "h1", &seq, &e), 0);
	/* Every event's seq is its id: the seq moved with the rows. */
	cr_expect_eq(seq, rows, "round %d: seq %llu, %llu rows", round,
		     (unsigned long long)seq, (unsigned long long)rows);
	cr_expect_eq(rows % CRASH_BATCH, 0, "round %d: a torn batch", round);
	store_close(s);
}

static void crash_round(int round, unsigned delay_ms)
{
	struct cfx f;
	cfx_new(&f);
	struct store *s = cfx_open(&f);
	cr_assert_eq(store_host_put(s, "h1", "", NOCERT, NULL), 0);
	store_close(s);
	int fd[2];
	cr_assert_eq(pipe(fd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fd[0]);
		crash_child(f.path, fd[1]);
	}
	close(fd[1]);
	/* The random moment is counted from the first commit, so a slow
	 * start (sanitizers, a loaded machine) cannot leave nothing to
	 * check. */
	uint64_t reported = 0;
	for (double give_up = now_s() + 10; !reported && now_s() < give_up;)
		reported = collect(fd[0], now_s() + 0.01, false);
	cr_assert_gt(reported, 0, "round %d: the child committed nothing",
		     round);
	uint64_t first = reported;
	uint64_t more = collect(fd[0], now_s() + delay_ms / 1000.0, false);
	/* A child descheduled through the whole delay (a loaded machine)
	 * gets more time: the kill must come while it is still writing. */
	for (double give_up = now_s() + 10; more <= first && now_s() < give_up;)
		more = collect(fd[0], now_s() + 0.01, false);
	reported = more > reported ? more : reported;
	kill(pid, SIGKILL);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	/* The kill landed mid-stream: the child was still committing
	 * batches after the first (so the kill cannot have come after the
	 * writes stopped) and it died of the kill, not by itself. */
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		  "round %d: the child ended by itself (status %d)", round, st);
	cr_assert_gt(reported, first, "round %d: no commit after the first "
		     "in %u ms and 10 s more: the stream had stopped", round,
		     delay_ms);
	uint64_t late = collect(fd[0], 0, true);
	reported = late > reported ? late : reported;
	close(fd[0]);
	check_after_crash(&f, reported, round);
	cfx_free(&f);
}

STORE_TEST(store, crash_kill9_loses_nothing_committed, .timeout = 60)
{
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	for (int round = 0; round < 5; round++) {
		unsigned delay = 40 + (unsigned)(rand_r(&seed) % 400);
		crash_round(round, delay);
	}
}

/* ---- several writers ---- */

#define WRITERS 3
#define W_ROUNDS 20
#define W_BATCH 50

/* Child k: W_ROUNDS times, append W_BATCH events and add a grant. */
static int writer(const char *path, int k)
{
	struct store *s;
	struct store_audit_in ev[W_BATCH];
	static char buf[W_BATCH * 96];
	if (store_open(path, &s, NULL) < 0)
		return 2;
	for (int r = 0; r < W_ROUNDS; r++) {
		events(ev, buf, W_BATCH, 1);
		for (int i = 0; i < W_BATCH; i++)
			ev[i].host = "h1";
		if (store_audit_append(s, ev, W_BATCH, NULL, NULL) < 0)
			return 3;
		struct grant g = { .dir = GRANT_BOTH, .ring_bytes = 4096 };
		snprintf(g.channel, sizeof(g.channel), "w%d-%d", k, r);
		snprintf(g.a, sizeof(g.a), "pa");
		snprintf(g.b, sizeof(g.b), "pb");
		if (store_grant_add(s, &g, NULL, NULL) < 0)
			return 4;
	}
	store_close(s);
	return 0;
}

static void writers_fleet(const struct cfx *f)
{
	struct store *s = cfx_open(f);
	static const char spec[] = "{}";
	cr_assert_eq(store_host_put(s, "h1", "", NOCERT, NULL), 0);
	const char *parts[] = { "pa", "pb" };
	for (int i = 0; i < 2; i++) {
		struct store_part_in in = {
			.name = parts[i], .host = "h1", .spec_json = spec,
			.spec_len = 2, .state = "defined",
		};
		cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	}
	store_close(s);
}

STORE_TEST(store, concurrent_writers_share_one_file, .timeout = 60)
{
	struct cfx f;
	cfx_new(&f);
	writers_fleet(&f);
	pid_t pid[WRITERS];
	for (int k = 0; k < WRITERS; k++) {
		pid[k] = fork();
		cr_assert_geq(pid[k], 0);
		if (pid[k] == 0)
			_exit(writer(f.path, k));
	}
	for (int k = 0; k < WRITERS; k++) {
		int st;
		cr_assert_eq(waitpid(pid[k], &st, 0), pid[k]);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "writer %d: status %d", k, st);
	}
	struct store *s = cfx_open(&f);
	struct parley_err e = { 0 };
	uint64_t bad, rows, v;
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(rows, WRITERS * W_ROUNDS * W_BATCH);
	cr_expect_eq(store_policy_version(s, &v, &e), 0);
	cr_expect_eq(v, WRITERS * W_ROUNDS);
	struct grant_set gs;
	cr_assert_eq(store_grant_list(s, &gs, &e), 0);
	cr_expect_eq(gs.n, WRITERS * W_ROUNDS);
	grant_set_free(&gs);
	store_close(s);
	cfx_free(&f);
}

/* ---- rate ---- */

static double ingest_rate(struct store *s, uint64_t *seq, unsigned batch,
			  unsigned total)
{
	struct store_audit_in *ev = calloc(batch, sizeof(*ev));
	char *buf = calloc(batch, 96);
	cr_assert(ev && buf);
	double t0 = now_s();
	for (unsigned done = 0; done < total; done += batch) {
		events(ev, buf, batch, *seq + 1);
		struct parley_err e = { 0 };
		int rc = store_ingest_audit(s, "h1", ev, batch, NULL, &e);
		cr_assert_eq(rc, 0, "%s", perr_msg(&e));
		*seq += batch;
	}
	double dt = now_s() - t0;
	free(ev);
	free(buf);
	return total / dt;
}

Test(store, audit_ingest_rate, .timeout = 120)
{
	static const unsigned batch[] = { 1, 100, 1000, 10000 };
	static const unsigned total[] = { 300, 20000, 100000, 200000 };
	struct cfx f;
	cfx_new(&f);
	struct store *s = cfx_open(&f);
	cr_assert_eq(store_host_put(s, "h1", "", NOCERT, NULL), 0);
	uint64_t seq = 0;
	for (size_t i = 0; i < sizeof(batch) / sizeof(batch[0]); i++) {
		double r = ingest_rate(s, &seq, batch[i], total[i]);
		fprintf(stderr, "store: audit ingest %.0f events/s (batch %u, "
			"%u events, commit per batch, synchronous=FULL)\n", r,
			batch[i], total[i]);
	}
	double t0 = now_s();
	uint64_t bad, rows;
	struct parley_err e = { 0 };
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	fprintf(stderr, "store: audit verify %.0f rows/s (%llu rows)\n",
		rows / (now_s() - t0), (unsigned long long)rows);
	store_close(s);
	cfx_free(&f);
}
