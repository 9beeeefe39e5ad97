/* Figure 1: throughput from one partition to another over a one-way
 * channel with a 1 MiB ring, as a ratio to glibc memcpy of the same bytes,
 * and the 64-byte message rate as a ratio to a socketpair's.
 *
 * Partition tx pushes (batches of up to 32 messages, one index store per
 * batch); partition rx pops in batches into a private buffer (so it reads
 * every byte) and checks each message's sequence stamps. rx times each
 * round with rdtsc from the end of its warm-up to its last message. The
 * same rounds follow with `rep movsb` doing the ring's copies (a what-if,
 * stderr only), then 64 B rounds with one message per push and pop.
 *
 * The message-rate ratios compare like with like: the batched channel
 * against a socketpair writing and reading 32 messages per call, and the
 * channel moving one message per push against a socketpair moving one per
 * call. */
#include "bench/chan_bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS      7
#define MIB         32    /* payload per round and size */
#define SOCK_MSGS   100000
#define SOCK_ROUNDS 5
#define SOCK_BATCH  32    /* as the channel: BATCH_MAX in chanbench.c */
#define NSIZES      3
#define TIMEOUT_MS  60000

static const uint32_t sizes[NSIZES] = { 64, 4096, 65536 };

static const char grants[] =
	"{\"grants\":["
	"{\"channel\":\"tput\",\"endpoint_a\":\"tx\",\"endpoint_b\":\"rx\","
	"\"direction\":\"a_to_b\",\"ring_bytes\":\"1M\"},"
	"{\"channel\":\"tput_ctl\",\"endpoint_a\":\"tx\",\"endpoint_b\":\"rx\","
	"\"direction\":\"b_to_a\",\"ring_bytes\":\"4K\"}]}";

/* What rx reported for one size: bytes per second, one entry per round.
 * Rows of `tput size msgs cycles bad`. */
struct size_stats {
	unsigned n;
	double bps[ROUNDS];
	uint64_t bad;              /* messages whose stamps were wrong */
};

static int size_index(uint64_t size)
{
	for (int i = 0; i < NSIZES; i++)
		if (sizes[i] == size)
			return i;
	return -1;
}

static int collect(const struct cb_run *r, const char *key, uint64_t khz,
		   unsigned nsizes, struct size_stats *st,
		   struct parley_err *err)
{
	const struct cb_series *s = cb_get(r, 1, key);
	if (!s || s->n != 4u * nsizes * ROUNDS || !khz)
		return perr(err, -EPROTO, "rx reported no or garbled %s", key);
	for (size_t i = 0; i < s->n; i += 4) {
		const uint64_t *row = &s->v[i];
		int k = size_index(row[0]);
		if (k < 0 || st[k].n == ROUNDS || !row[2])
			return perr(err, -EPROTO, "rx results out of shape");
		struct size_stats *z = &st[k];
		double bytes = (double)row[0] * (double)row[1];
		z->bps[z->n++] = bytes / ((double)row[2] / ((double)khz * 1e3));
		z->bad += row[3];
	}
	return 0;
}

/* rx's copy timings inside the guest: rows `gcopy size method cycles
 * bytes`, method 0 the SDK memcpy, 1 `rep movsb`. */
static void note_guest_copies(const struct cb_run *r, uint64_t khz)
{
	const struct cb_series *s = cb_get(r, 1, "gcopy");
	for (size_t i = 0; s && khz && i + 4 <= s->n; i += 4)
		bench_note("  guest copy %5llu B, %-14s %7.2f GB/s",
			   (unsigned long long)s->v[i],
			   s->v[i + 1] ? "rep movsb:" : "SDK memcpy:",
			   (double)s->v[i + 3] /
				   ((double)s->v[i + 2] / ((double)khz * 1e3)) /
				   1e9);
}

static int run_channel(const struct bench_env *e, struct size_stats *st,
		       struct size_stats *whatif, struct size_stats *one,
		       struct parley_err *err)
{
	char cmd[2][64];
	snprintf(cmd[0], sizeof(cmd[0]),
		 "mode=tx rounds=%d mib=%d whatif=1 one=1", ROUNDS, MIB);
	snprintf(cmd[1], sizeof(cmd[1]),
		 "mode=rx rounds=%d mib=%d whatif=1 one=1", ROUNDS, MIB);
	const struct cb_part parts[] = {
		{ "tx", cmd[0], NULL, false },
		{ "rx", cmd[1], NULL, false },
	};
	struct cb_run *r = calloc(1, sizeof(*r));
	if (!r)
		return perr(err, -ENOMEM, "out of memory");
	int rc = cb_start(r, e, grants, parts, 2, err);
	if (rc == 0)
		rc = cb_wait(r, TIMEOUT_MS, err);
	uint64_t khz = cb_tsc_khz(r, 1);
	if (rc == 0)
		rc = collect(r, "tput", khz, NSIZES, st, err);
	if (rc == 0)
		rc = collect(r, "tput_whatif", khz, NSIZES, whatif, err);
	if (rc == 0)
		rc = collect(r, "tput_one", khz, 1, one, err);
	if (rc == 0) {
		note_guest_copies(r, khz);
		cb_note_tsc(r, 1);
	}
	cb_free(r);
	free(r);
	return rc;
}

/* The same rounds with `rep movsb` doing the ring's copies: what the
 * channel would do with a guest memcpy that moves more than a byte a
 * step. stderr only. */
static void whatif_report(uint32_t size, struct size_stats *z, double mc)
{
	double bps = bench_pct(z->bps, z->n, 50);
	bench_note("  what-if, ring copies by rep movsb, %5u B: %6.2f GB/s = "
		   "%.3f x memcpy, %.2f M msgs/s", size, bps / 1e9, bps / mc,
		   bps / size / 1e6);
}

static double size_report(uint32_t size, struct size_stats *z, double mc)
{
	char label[64];
	snprintf(label, sizeof(label), "chan %u B", size);
	double bps = bench_summary(label, z->bps, z->n, 1e-9, "GB/s") * 1e9;
	bench_note("  %u B: %.2f M msgs/s; memcpy %.2f GB/s; chan/memcpy "
		   "%.3f; %llu bad messages", size, bps / size / 1e6, mc / 1e9,
		   bps / mc, (unsigned long long)z->bad);
	return bps;
}

/* The socketpair at its best placement is the baseline: left alone, the
 * scheduler puts the pair on one CPU or two from run to run. */
static int sock_baseline(uint32_t batch, double *best, struct parley_err *err)
{
	double any = 0, same = 0, apart = 0;
	int rc = host_sock_rate(SOCK_ANY, 64, batch, SOCK_MSGS, SOCK_ROUNDS,
				&any, err);
	if (rc == 0)
		rc = host_sock_rate(SOCK_SAME, 64, batch, SOCK_MSGS, SOCK_ROUNDS,
				    &same, err);
	if (rc == 0)
		rc = host_sock_rate(SOCK_APART, 64, batch, SOCK_MSGS,
				    SOCK_ROUNDS, &apart, err);
	if (rc == 0)
		bench_note("socketpair 64 B messages, %u per write: %.3f M/s "
			   "unpinned, %.3f on one CPU, %.3f on two", batch,
			   any / 1e6, same / 1e6, apart / 1e6);
	*best = same > apart ? same : apart;
	return rc;
}

static int check_damage(const struct size_stats *st,
			const struct size_stats *whatif,
			const struct size_stats *one, struct parley_err *err)
{
	for (unsigned i = 0; i < NSIZES; i++)
		if (st[i].bad || whatif[i].bad)
			return perr(err, -EPROTO, "%llu messages of %u B arrived "
				    "damaged", (unsigned long long)(st[i].bad +
								    whatif[i].bad),
				    sizes[i]);
	if (one->bad)
		return perr(err, -EPROTO, "%llu messages of 64 B (one per "
			    "push) arrived damaged",
			    (unsigned long long)one->bad);
	return 0;
}

int chan_bench_tput(const struct bench_env *e, struct chan_tput_result *r,
		    struct parley_err *err)
{
	struct size_stats st[NSIZES] = { 0 }, whatif[NSIZES] = { 0 };
	struct size_stats one = { 0 };
	double mc[NSIZES], sock = 0, sock_one = 0, bps[NSIZES];
	for (unsigned i = 0; i < NSIZES; i++)
		mc[i] = host_memcpy_bps(sizes[i], ((uint64_t)MIB << 20) / sizes[i],
					ROUNDS);
	int rc = sock_baseline(SOCK_BATCH, &sock, err);
	if (rc == 0)
		rc = sock_baseline(1, &sock_one, err);
	host_note_floor("before the throughput");
	if (rc == 0)
		rc = run_channel(e, st, whatif, &one, err);
	host_note_floor("after the throughput");
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < NSIZES; i++)
		bps[i] = size_report(sizes[i], &st[i], mc[i]);
	for (unsigned i = 0; i < NSIZES; i++)
		whatif_report(sizes[i], &whatif[i], mc[i]);
	if ((rc = check_damage(st, whatif, &one, err)) < 0)
		return rc;
	double chan_msgs = bps[0] / 64;
	/* bytes/s in, printed as M msgs/s, back to msgs/s */
	double chan_one = bench_summary("chan 64 B, one per push", one.bps,
					one.n, 1e-6 / 64, "M msgs/s") * 1e6;
	bench_note("64 B messages, %d per push/write: channel %.2f M/s, "
		   "socketpair (best) %.3f M/s", SOCK_BATCH, chan_msgs / 1e6,
		   sock / 1e6);
	bench_note("64 B messages, one per push/write: channel %.2f M/s, "
		   "socketpair (best) %.3f M/s", chan_one / 1e6,
		   sock_one / 1e6);
	r->vs_memcpy_64k = bps[2] / mc[2];
	r->vs_memcpy_4k = bps[1] / mc[1];
	r->msgs_64b_vs_sock = chan_msgs / sock;
	r->msgs_64b_one_vs_sock = chan_one / sock_one;
	return 0;
}
