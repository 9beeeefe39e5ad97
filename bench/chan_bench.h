/*
 * The parts of the chan suite (bench_chan.c runs them in order), and the
 * runner they share: a few chanbench partitions (guest/examples/
 * chanbench.c) under an in-process grant manager (agent/ipc/chanmgr.h),
 * wired as `parley-agent run` wires them, with each partition's console
 * parsed into numbered series. Each part returns 0 or a negative errno
 * with err set; spread and breakdowns go to stderr.
 */
#ifndef PARLEY_BENCH_CHAN_H
#define PARLEY_BENCH_CHAN_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ipc/audit.h"
#include "agent/ipc/chanmgr.h"
#include "bench/bench.h"

/* ---- the runner (chan_run.c) ------------------------------------------- */

#define CB_PARTS_MAX  4
#define CB_SERIES_MAX 24
#define CB_LINE_MAX   1024

/* The numbers a partition printed after one key, in order: every console
 * line `<key> <n> <n>...` appends its numbers to the series `key`. */
struct cb_series {
	char key[32];
	size_t n, cap;
	uint64_t *v;
};

struct cb_out {
	char line[CB_LINE_MAX];
	size_t len;
	unsigned nseries;
	struct cb_series s[CB_SERIES_MAX];
	bool overflow;             /* a series could not be stored */
};

struct cb_part {
	const char *name;
	const char *cmdline;
	const char *config;        /* host path of its one config file, or NULL */
	bool peer_only;            /* stopped by the bench once the rest end */
	const char *image;         /* NULL: chanbench.elf */
};

struct cb_run {
	struct chanmgr cm;
	struct audit audit;        /* no file: decisions are dropped */
	unsigned n;
	struct cb_part def[CB_PARTS_MAX];
	struct partition *p[CB_PARTS_MAX];
	struct cb_out out[CB_PARTS_MAX];
	bool gone[CB_PARTS_MAX];   /* chanmgr_gone() called */
	struct cb_series open_ns;  /* the grant manager's time per CHAN_OPEN */
	/* Called by cb_start once the grant manager and the (paused)
	 * partitions exist, before they run: the vm suite adds its VM here,
	 * so the partitions find it up at their first open. */
	int (*before_resume)(struct cb_run *r, struct parley_err *err);
	void *ctx;
	const char *extra_name;    /* another endpoint grants may name */
};

/* Create the partitions paused (image chanbench.elf, 16 MiB), give them to
 * a fresh grant manager with the grants in `grants_json` (the policy-file
 * format of common/grant.h), then resume them all, so that every peer
 * exists before the first open. r must be zeroed; cb_free() it after. */
int cb_start(struct cb_run *r, const struct bench_env *e,
	     const char *grants_json, const struct cb_part *parts, unsigned n,
	     struct parley_err *err);

/* Serve the partitions (console, CHAN_OPEN, close) until every one not
 * marked peer_only has finished, then stop the peers. 0 if each of the
 * others exited with code 0; a partition that fails has its channels
 * revoked at once, so its peers do not wait for it. */
int cb_wait(struct cb_run *r, int timeout_ms, struct parley_err *err);

/* One round of cb_wait's loop: wait up to timeout_ms for the partitions,
 * serve them, run chanmgr's tick. For a bench that serves more (the vm
 * suite: a Linux VM too) between rounds. */
void cb_serve_once(struct cb_run *r, int timeout_ms);
/* The same, waking also when one of extra[] (at most CB_EXTRA_MAX) is
 * readable: the caller serves those after it returns. */
#define CB_EXTRA_MAX 16
void cb_serve_once_with(struct cb_run *r, int timeout_ms, const int *extra,
			unsigned nextra);

void cb_free(struct cb_run *r);

/* The series `key` partition i printed, or NULL. */
const struct cb_series *cb_get(const struct cb_run *r, unsigned i,
			       const char *key);

/* Partition i's TSC frequency (its `K` line), or 0. */
uint64_t cb_tsc_khz(const struct cb_run *r, unsigned i);

/* The median of partition i's series `key` (TSC cycles, exactly `want`
 * samples) in microseconds; the spread on stderr under `label`. */
int cb_median_us(const struct cb_run *r, unsigned i, const char *key,
		 size_t want, const char *label, double *med,
		 struct parley_err *err);

/* Series values in TSC cycles as doubles in unit `per_s` per second (1e6:
 * microseconds); returns how many (s->n, or 0 without a frequency). */
size_t cb_cycles_to(const struct cb_series *s, uint64_t khz, double per_s,
		    double *out);

/* Partition i's check of its TSC frequency against the CLOCK hypercall
 * (its `tsccheck <cycles> <ns>` line), on stderr. */
void cb_note_tsc(const struct cb_run *r, unsigned i);

/* ---- host baselines (chan_host.c) ---------------------------------------- */

/* glibc memcpy of `msgs` messages of `size` bytes from one buffer into a
 * 1 MiB buffer, cycling through it as a sender does through a ring. Median
 * bytes per second over `rounds`. */
double host_memcpy_bps(uint32_t size, uint64_t msgs, unsigned rounds);

/* Two processes (fork) on an AF_UNIX stream socketpair. The scheduler
 * places such a pair on one CPU or on two, and the two differ by up to ~5x
 * here (a cross-CPU wake-up is an IPI, dear under nesting), so the
 * placement is chosen: */
enum sock_place {
	SOCK_ANY = -1,   /* left to the scheduler */
	SOCK_SAME = 0,   /* both on the first CPU we may use */
	SOCK_APART = 1,  /* one each on the first two */
};

/* Message rate: `batch` messages of `size` bytes per blocking write()
 * (1: one write per message), the reader read()s as many bytes at a time.
 * Median messages per second over `rounds` (at most 64) of `msgs`, after
 * one untimed round. */
int host_sock_rate(enum sock_place where, uint32_t size, uint32_t batch,
		   uint64_t msgs, unsigned rounds, double *msgs_per_s,
		   struct parley_err *err);

/* Round trips: write 64 B, read the 64 B echo, blocking. Each of `n` is
 * timed after `warm` untimed; samples in ns (caller frees, also on
 * error). */
int host_sock_rtt(enum sock_place where, unsigned warm, unsigned n,
		  double **ns, struct parley_err *err);

/* The floor under a polled round trip: two threads of this process on two
 * CPUs bouncing a cache line. Median ns per round trip over `batches`
 * (at most 64) of `per_batch`. It moves with where the hypervisor under
 * this machine runs our two vCPUs. */
int host_shm_rtt(unsigned batches, unsigned per_batch, double *median_ns,
		 struct parley_err *err);

/* host_shm_rtt() on stderr, labelled `when`: every figure that moves
 * data between the two CPUs moves with it. */
void host_note_floor(const char *when);

/* ---- the parts -------------------------------------------------------- */

struct chan_tput_result {
	double vs_memcpy_64k, vs_memcpy_4k;
	double msgs_64b_vs_sock;      /* 32 per push / per write */
	double msgs_64b_one_vs_sock;  /* one per push / per write */
};
int chan_bench_tput(const struct bench_env *e, struct chan_tput_result *r,
		    struct parley_err *err);

struct chan_rtt_result {
	double poll_us, wait_vs_sock;
};
int chan_bench_rtt(const struct bench_env *e, struct chan_rtt_result *r,
		   struct parley_err *err);

/* Service calls against bare channel round trips, polled, in one run
 * (svc_rtt.c, partitions svcbench.elf). */
struct svc_rtt_result {
	double svc_us, chan_us, ratio;
};
int svc_bench_rtt(const struct bench_env *e, struct svc_rtt_result *r,
		  struct parley_err *err);

struct chan_open_result {
	double first_open_ms;  /* creation + both ends mapped, 1 MiB config */
	double open_1m_ms, open_64m_clean_ms, open_64m_page_ms;
	double rehash_64m_ms;
};
int chan_bench_open(const struct bench_env *e, struct chan_open_result *r,
		    struct parley_err *err);

#endif
