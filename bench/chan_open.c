/* Figure 3: what a CHAN_OPEN costs with the integrity check, as the
 * partition sees it (rdtsc around parley_chan_open), for a partition whose
 * one config file is 1 MiB or 64 MiB: the first open, which creates the
 * channel and maps it into both peers (chan_first_open_ms, 1 MiB run),
 * and the re-opens of the existing channel (chan_open_*); and, host side, a forced full
 * re-hash of the 64 MiB region (measure_rehash_all: what the background
 * cross-check does, and what re-measuring on every open would cost
 * without dirty tracking).
 *
 * The 1 MiB region is at the size up to which the grant manager re-hashes
 * a config region whole on every open (MEASURE_FULL_REHASH_MAX); the
 * 64 MiB one is re-hashed only where the vmm reports writes.
 *
 * Partition "opener" (chanbench mode=open) opens and closes "open" N times
 * untouched, then (64 MiB only) N times after rewriting one config page
 * with the bytes it holds: that page is reported dirty and re-hashed, and
 * the open is allowed. Its peer is a chanbench mode=idle that is up
 * throughout; its (empty) config is verified on every open too. */
#include "bench/chan_bench.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPENS       30
#define REHASH_RUNS 5
#define TIMEOUT_MS  60000
#define MB(n)       ((uint64_t)(n) << 20)

static const char grants[] =
	"{\"grants\":[{\"channel\":\"open\",\"endpoint_a\":\"opener\","
	"\"endpoint_b\":\"peer\",\"direction\":\"a_to_b\",\"ring_bytes\":\"64K\","
	"\"require_integrity\":true}]}";

struct tmp_files {
	char dir[64];
	char small[96], big[96];
};

/* Bytes no page of which equals another, so a wrong page cannot pass. */
static int write_config(const char *path, uint64_t size,
			struct parley_err *err)
{
	static uint64_t buf[MB(1) / 8];
	uint64_t x = 0x9e3779b97f4a7c15ull ^ size;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	for (uint64_t done = 0; done < size; done += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf) / 8; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			close(fd);
			return perr(err, -EIO, "%s: short write", path);
		}
	}
	close(fd);
	return 0;
}

static int files_make(struct tmp_files *t, struct parley_err *err)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(t->dir, sizeof(t->dir), "%s/parley-bench-XXXXXX",
		 tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	if (!mkdtemp(t->dir))
		return perr(err, -errno, "mkdtemp %s: %m", t->dir);
	snprintf(t->small, sizeof(t->small), "%s/cfg-1m", t->dir);
	snprintf(t->big, sizeof(t->big), "%s/cfg-64m", t->dir);
	int rc = write_config(t->small, MB(1), err);
	return rc < 0 ? rc : write_config(t->big, MB(64), err);
}

static void files_remove(struct tmp_files *t)
{
	unlink(t->small);
	unlink(t->big);
	rmdir(t->dir);
}

/* The partition's view: series `key` in ms, median; spread to stderr. */
static int guest_ms(const struct cb_run *r, const char *key, size_t want,
		    const char *label, double *med, struct parley_err *err)
{
	const struct cb_series *s = cb_get(r, 0, key);
	uint64_t khz = cb_tsc_khz(r, 0);
	double v[OPENS];
	if (!s || s->n != want || want > OPENS || !khz)
		return perr(err, -EPROTO, "opener reported no %s samples", key);
	size_t n = cb_cycles_to(s, khz, 1e3, v);
	*med = bench_summary(label, v, n, 1, "ms");
	return 0;
}

/* The grant manager's share: its decision times for `n` opens that were
 * followed by `after` more (the timed series are the last opens made). */
static void agent_ms(const struct cb_run *r, size_t n, size_t after,
		     const char *label)
{
	double v[OPENS];
	size_t total = r->open_ns.n;
	if (total < n + after || !n || n > OPENS)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = (double)r->open_ns.v[total - after - n + i];
	bench_summary(label, v, n, 1e-6, "ms");
}

/* Not a figure: what the CHAN_CLOSE after each open cost the partition. */
static void close_ms(const struct cb_run *r, size_t want)
{
	const struct cb_series *s = cb_get(r, 0, "close");
	double v[2 * OPENS];
	if (!s || s->n != want || want > 2 * OPENS)
		return;
	size_t n = cb_cycles_to(s, cb_tsc_khz(r, 0), 1e3, v);
	if (n)
		bench_summary("  close after each open", v, n, 1, "ms");
}

static double ms_since(uint64_t t0)
{
	return (double)(mono_now_ns() - t0) / 1e6;
}

/* The forced full re-hash, on the opener's memory after it ran; beside
 * it, one SHA-256 over the whole region for scale. */
static double rehash_ms(const struct partition *p)
{
	double v[REHASH_RUNS];
	const uint8_t *cfg = p->mem + p->ram_size;
	for (int i = 0; i < REHASH_RUNS; i++) {
		uint64_t t0 = mono_now_ns();
		free(measure_rehash_all(&p->measure, cfg));
		v[i] = ms_since(t0);
	}
	double med = bench_summary("full re-hash 64 MiB, per page", v,
				   REHASH_RUNS, 1, "ms");
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned dn;
	uint64_t t0 = mono_now_ns();
	EVP_Digest(cfg, p->cfg_size, d, &dn, EVP_sha256(), NULL);
	bench_note("  one SHA-256 over the same 64 MiB: %.1f ms", ms_since(t0));
	return med;
}

/* The first open: one sample per run (the spread is across runs). */
static int first_ms(const struct cb_run *r, bool big, double *ms,
		    struct parley_err *err)
{
	const struct cb_series *s = cb_get(r, 0, "open_first");
	uint64_t khz = cb_tsc_khz(r, 0);
	if (!s || s->n != 1 || !khz)
		return perr(err, -EPROTO, "opener reported no first open");
	cb_cycles_to(s, khz, 1e3, ms);
	bench_note("first open (creates the channel, maps both ends), %s: "
		   "%.3f ms", big ? "64 MiB" : "1 MiB", *ms);
	return 0;
}

/* The opener's figures and the breakdown beside them; the full re-hash
 * on its memory for the 64 MiB run. */
static int report(const struct cb_run *r, bool big,
		  struct chan_open_result *res, struct parley_err *err)
{
	double first_64m;
	int rc = first_ms(r, big, big ? &first_64m : &res->first_open_ms, err);
	if (rc < 0)
		return rc;
	rc = guest_ms(r, "open_clean", OPENS,
			  big ? "open 64 MiB untouched"
			      : "open 1 MiB untouched (re-hashed whole)",
			  big ? &res->open_64m_clean_ms : &res->open_1m_ms, err);
	if (rc < 0)
		return rc;
	agent_ms(r, OPENS, big ? OPENS : 0, "  grant manager's part");
	if (big) {
		rc = guest_ms(r, "open_touched", OPENS,
			      "open 64 MiB, 1 page rewritten",
			      &res->open_64m_page_ms, err);
		if (rc < 0)
			return rc;
		agent_ms(r, OPENS, 0, "  grant manager's part");
	}
	close_ms(r, big ? 2 * OPENS : OPENS);
	if (big)
		res->rehash_64m_ms = rehash_ms(r->p[0]);
	return 0;
}

static int run_one(const struct bench_env *e, const char *config, bool big,
		   struct chan_open_result *res, struct parley_err *err)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "mode=open n=%d touch=%d", OPENS,
		 big ? OPENS : 0);
	const struct cb_part parts[] = {
		{ "opener", cmd, config, false },
		{ "peer", "mode=idle", NULL, true },
	};
	struct cb_run *r = calloc(1, sizeof(*r));
	if (!r)
		return perr(err, -ENOMEM, "out of memory");
	int rc = cb_start(r, e, grants, parts, 2, err);
	if (rc == 0)
		rc = cb_wait(r, TIMEOUT_MS, err);
	if (rc == 0)
		rc = report(r, big, res, err);
	cb_free(r);
	free(r);
	return rc;
}

int chan_bench_open(const struct bench_env *e, struct chan_open_result *r,
		    struct parley_err *err)
{
	struct tmp_files t = { 0 };
	int rc = files_make(&t, err);
	if (rc == 0)
		rc = run_one(e, t.small, false, r, err);
	if (rc == 0)
		rc = run_one(e, t.big, true, r, err);
	files_remove(&t);
	return rc;
}
