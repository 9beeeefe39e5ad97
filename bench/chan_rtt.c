/* Figure 2: round trips of a 64-byte message between two partitions over a
 * both-way channel. Partition ping sends, pong echoes; ping times every
 * round trip with rdtsc (the end of one is the start of the next). Phases,
 * in one run, on the same channel:
 *
 *   rtt_poll_bare    both spin on the ring; no waiting flags looked at
 *   rtt_poll         both spin, and each send also does what the wake-up
 *                    protocol costs a sender: fence, read the peer's flag
 *   rtt_wait         both sleep in CHAN_WAIT at once (flag set, ring
 *                    checked, wait); the sender rings the doorbell
 *   rtt_wait_notify  the same, woken with CHAN_NOTIFY instead
 *   rtt_half         ping spins, pong sleeps: one sleeper's wake-up per
 *                    round trip
 *
 * and before them, alone: the doorbell as its ringer sees it, and a
 * CHAN_WAIT that does not sleep. Baselines: two host processes answering
 * each other over a socketpair with blocking read/write, and two host
 * threads bouncing a cache line (the floor a polled round trip stands on).
 */
#include "bench/chan_bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define POLL_N     20000
#define WAIT_N     2000
#define WARM       200
#define SOCK_N     4000
#define TIMEOUT_MS 60000

static const char grants[] =
	"{\"grants\":[{\"channel\":\"rtt\",\"endpoint_a\":\"ping\","
	"\"endpoint_b\":\"pong\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"
	"]}";

static void note_timeouts(const struct cb_run *r, const char *key)
{
	char tkey[48];
	snprintf(tkey, sizeof(tkey), "%s_timeouts", key);
	const struct cb_series *t = cb_get(r, 0, tkey);
	if (t && t->n && t->v[0])
		bench_note("  %s: %llu sleeps ended by their 10 ms bound "
			   "(lost wake-ups?)", key, (unsigned long long)t->v[0]);
}

/* The median of series `key` of ping, in microseconds; spread on stderr. */
static int ping_us(const struct cb_run *r, const char *key, size_t want,
		   double *med, struct parley_err *err)
{
	char label[64];
	snprintf(label, sizeof(label), "chan %s", key);
	int rc = cb_median_us(r, 0, key, want, label, med, err);
	if (rc == 0)
		note_timeouts(r, key);
	return rc;
}

struct rtt_medians {
	double bare, poll, wait, notify, half, bell, wait0, spin;
};

static int report(const struct cb_run *r, struct rtt_medians *m,
		  struct parley_err *err)
{
	const struct { const char *key; size_t n; double *out; } ph[] = {
		{ "piece_bell", WARM, &m->bell },
		{ "piece_wait0", WARM, &m->wait0 },
		{ "piece_spin", WARM, &m->spin },
		{ "rtt_poll_bare", POLL_N, &m->bare },
		{ "rtt_poll", POLL_N, &m->poll },
		{ "rtt_wait", WAIT_N, &m->wait },
		{ "rtt_wait_notify", WAIT_N, &m->notify },
		{ "rtt_half", WAIT_N, &m->half },
	};
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sizeof(ph) / sizeof(ph[0]); i++)
		rc = ping_us(r, ph[i].key, ph[i].n, ph[i].out, err);
	return rc;
}

static int run_channel(const struct bench_env *e, struct rtt_medians *m,
		       struct parley_err *err)
{
	char cmd[2][96];
	snprintf(cmd[0], sizeof(cmd[0]), "mode=ping poll=%d wait=%d warm=%d",
		 POLL_N, WAIT_N, WARM);
	snprintf(cmd[1], sizeof(cmd[1]), "mode=pong poll=%d wait=%d warm=%d",
		 POLL_N, WAIT_N, WARM);
	const struct cb_part parts[] = {
		{ "ping", cmd[0], NULL, false },
		{ "pong", cmd[1], NULL, false },
	};
	struct cb_run *r = calloc(1, sizeof(*r));
	if (!r)
		return perr(err, -ENOMEM, "out of memory");
	int rc = cb_start(r, e, grants, parts, 2, err);
	if (rc == 0)
		rc = cb_wait(r, TIMEOUT_MS, err);
	if (rc == 0)
		rc = report(r, m, err);
	if (rc == 0)
		cb_note_tsc(r, 0);
	cb_free(r);
	free(r);
	return rc;
}

/* Median socketpair round trip in one placement, in microseconds. */
static int sock_us(enum sock_place where, const char *label, double *med,
		   struct parley_err *err)
{
	double *ns = NULL;
	int rc = host_sock_rtt(where, WARM, SOCK_N, &ns, err);
	if (rc == 0)
		*med = bench_summary(label, ns, SOCK_N, 1e-3, "us");
	free(ns);
	return rc;
}

/* The socketpair's best placement is the baseline (see bench/README.md):
 * left alone, the scheduler picks one CPU or two from run to run. */
static int sock_baseline(double *best, struct parley_err *err)
{
	double any = 0, same = 0, apart = 0;
	int rc = sock_us(SOCK_ANY, "socketpair rtt, unpinned", &any, err);
	if (rc == 0)
		rc = sock_us(SOCK_SAME, "socketpair rtt, one CPU", &same, err);
	if (rc == 0)
		rc = sock_us(SOCK_APART, "socketpair rtt, two CPUs", &apart, err);
	*best = same < apart ? same : apart;
	return rc;
}

static void breakdown(const struct rtt_medians *m, double sock)
{
	bench_note("sleeping round trip %.1f us (socketpair %.1f us): "
		   "CHAN_NOTIFY instead of the doorbell %.1f us; only pong "
		   "sleeping %.1f us", m->wait, sock, m->notify, m->half);
	bench_note("  pieces: doorbell to its ringer %.2f us; CHAN_WAIT that "
		   "does not sleep %.1f us (a hypercall round trip); the SDK's "
		   "spin before sleeping (4000 pauses) lasts %.1f us", m->bell,
		   m->wait0, m->spin);
	bench_note("  one wake-up of a sleeping partition ~ rtt_half - "
		   "poll/2 = %.1f us; both sleeping ~ 2 of them = %.1f",
		   m->half - m->poll / 2, 2 * (m->half - m->poll / 2));
	bench_note("polled round trip %.3f us (bare ring %.3f)", m->poll,
		   m->bare);
}

int chan_bench_rtt(const struct bench_env *e, struct chan_rtt_result *r,
		   struct parley_err *err)
{
	double sock = 0;
	struct rtt_medians m;
	int rc = sock_baseline(&sock, err);
	if (rc < 0)
		return rc;
	host_note_floor("before the round trips");
	rc = run_channel(e, &m, err);
	host_note_floor("after the round trips");
	if (rc < 0)
		return rc;
	breakdown(&m, sock);
	r->poll_us = m.poll;
	r->wait_vs_sock = m.wait / sock;
	return 0;
}
