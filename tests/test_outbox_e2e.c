/* The durable outbox end to end: a real parleyd and a real parley-agent on
 * loopback; the agent streams audit events (a partition asking for
 * channels it has no grant for, each event naming its own channel), is
 * killed with SIGKILL at several points, restarted, and every event that
 * was in its outbox file at a kill — or already in the store — is in the
 * store exactly once at the end. Events appended but not yet synced at a
 * kill are lost by design (agent/outbox.h): never sent, so never seen. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

#define ROUNDS 4
#define PER_ROUND 3000

/* How many times each event (round, index) is somewhere. */
struct tally {
	uint8_t n[ROUNDS][PER_ROUND];
	unsigned total[ROUNDS];
	unsigned stray;            /* host-a denials not named r<R>c<K> */
};

static bool event_id(const char *channel, unsigned *r, unsigned *k)
{
	char tail;
	return sscanf(channel, "r%uc%u%c", r, k, &tail) == 2 && *r < ROUNDS &&
	       *k < PER_ROUND;
}

static void mark(struct tally *t, const char *channel)
{
	unsigned r, k;
	if (!event_id(channel, &r, &k)) {
		t->stray++;
		return;
	}
	if (t->n[r][k] < 255)
		t->n[r][k]++;
	t->total[r]++;
}

static int stored_row(const struct store_audit *row, void *ctx)
{
	if (!strcmp(row->event, "open_denied") && !strcmp(row->host, "host-a"))
		mark(ctx, row->channel);
	return 0;
}

/* Opened once, before the daemon: opening takes the write lock (for its
 * migrations check), which a daemon ingesting back to back can keep from
 * an opener for longer than the busy timeout; reading does not need it. */
static struct store *reader;

static void stored(struct fleetd *f, struct tally *t)
{
	(void)f;
	memset(t, 0, sizeof(*t));
	struct parley_err err = { 0 };
	cr_assert_geq(store_audit_list(reader, 0, 0, stored_row, t, &err), 0,
		      "%s", perr_msg(&err));
}

static void file_event(const char *event, const char *channel, void *ctx)
{
	if (!strcmp(event, "open_denied"))
		mark(ctx, channel);
}

/* The events in the agent's outbox file now (a killed agent's: what it
 * will send after its restart). */
static void in_file(const struct fd_agent *a, struct tally *t)
{
	memset(t, 0, sizeof(*t));
	fd_outbox_events(a, file_event, t);
}

static void start_spamming(struct fleetd *f, struct fd_agent *a,
			   unsigned round, unsigned sleep_ms)
{
	char spec[256];
	snprintf(spec, sizeof(spec),
		 "{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		 "\"cmdline\":\"steps=sleep:%u,spamn:%u:r%uc,sleep:60000\"}",
		 sleep_ms, PER_ROUND, round);
	const char *specs[] = { spec, NULL };
	/* The refusals are this test's stream of records: every one. */
	const char *all[] = { "--audit-refusals", "all", NULL };
	fd_start_agent_with(f, a, specs, all);
}

struct round_wait {
	unsigned round, want;
	struct tally t;
};

static bool round_stored(struct fleetd *f, void *ctx)
{
	struct round_wait *w = ctx;
	stored(f, &w->t);
	return w->t.total[w->round] >= w->want;
}

/* "expect" gets every event seen at a kill (file or store). */
static void merge(struct tally *expect, const struct tally *t)
{
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned k = 0; k < PER_ROUND; k++)
			if (t->n[r][k])
				expect->n[r][k] = 1;
}

struct all_wait {
	const struct tally *expect;
	unsigned missing;
	struct tally t;
};

static bool all_stored(struct fleetd *f, void *ctx)
{
	struct all_wait *w = ctx;
	stored(f, &w->t);
	w->missing = 0;
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned k = 0; k < PER_ROUND; k++)
			w->missing += w->expect->n[r][k] && !w->t.n[r][k];
	return w->missing == 0;
}

Test(outbox, agent_kill9_while_streaming_delivers_every_synced_event_once,
     .timeout = 300)
{
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
	static struct tally expect, file, now;
	memset(&expect, 0, sizeof(expect));

	/* Rounds 0-2: killed with the daemon up, at its first stored event,
	 * a third of the way, two thirds of the way. */
	const unsigned kill_at[3] = { 1, PER_ROUND / 3, 2 * PER_ROUND / 3 };
	for (unsigned r = 0; r < 3; r++) {
		start_spamming(&f, h, r, 0);
		static struct round_wait w;
		w = (struct round_wait){ .round = r, .want = kill_at[r] };
		cr_assert(fd_wait(round_stored, &f, &w, 60000),
			  "round %u: %u events stored:\n%s", r, w.t.total[r],
			  fd_agent_log(h));
		fd_kill_agent(h);
		in_file(h, &file);
		merge(&expect, &file);
		merge(&expect, &w.t);
		cr_log_info("round %u: killed with %u stored, %u in the file",
			    r, w.t.total[r], file.total[r]);
	}

	/* Round 3: the daemon dies while the events stream in; the agent
	 * keeps them in its file and is killed too, with events no daemon
	 * ever saw. */
	start_spamming(&f, h, 3, 0);
	static struct round_wait w3;
	w3 = (struct round_wait){ .round = 3, .want = 1 };
	cr_assert(fd_wait(round_stored, &f, &w3, 60000), "round 3: nothing");
	fd_kill_daemon(&f);
	stored(&f, &now); /* final until the daemon is back */
	unsigned pending = 0;
	for (int i = 0; i < 3000 && pending < 200; i++) {
		usleep(20000);
		in_file(h, &file);
		pending = 0;
		for (unsigned k = 0; k < PER_ROUND; k++)
			pending += file.n[3][k] && !now.n[3][k];
	}
	fd_kill_agent(h);
	in_file(h, &file);
	pending = 0;
	for (unsigned k = 0; k < PER_ROUND; k++)
		pending += file.n[3][k] && !now.n[3][k];
	cr_assert_geq(pending, 200, "only %u events waiting in the file",
		      pending);
	merge(&expect, &file);
	merge(&expect, &now);
	cr_log_info("round 3: daemon down, killed with %u stored and %u "
		    "events only in the file", now.total[3], pending);

	/* Back up: the agent sends what its file holds, the daemon skips
	 * what it already has. */
	fd_start_daemon(&f);
	const char *quiet[] = {
		"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=sleep:60000\"}", NULL };
	fd_start_agent(&f, h, quiet);
	static struct all_wait aw;
	aw = (struct all_wait){ .expect = &expect };
	cr_assert(fd_wait(all_stored, &f, &aw, 60000),
		  "%u events in a file or the store at a kill never arrived:\n%s",
		  aw.missing, fd_agent_log(h));
	usleep(500000); /* duplicates, if any, would arrive now */
	stored(&f, &now);
	unsigned want = 0, got = 0;
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned k = 0; k < PER_ROUND; k++) {
			cr_assert_leq(now.n[r][k], 1, "r%uc%u stored %u times",
				      r, k, now.n[r][k]);
			want += expect.n[r][k];
			got += now.n[r][k];
		}
	cr_assert_eq(now.stray, 0);
	cr_log_info("%u events expected, %u stored (the rest appended but "
		    "not synced at a kill)", want, got);
	uint64_t bad = 0;
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_verify(reader, &bad, NULL, &err), 0, "%s",
		     perr_msg(&err));
	store_close(reader);
	reader = NULL;
	char *log = fd_agent_log(h);
	cr_assert(strstr(log, "records not acknowledged yet"),
		  "the restarted agent did not reload its outbox:\n%s", log);
	free(log);
	fd_stop(&f);
}
