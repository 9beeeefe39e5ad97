/*
 * What the bench programs share: where the build put the vmm and the
 * partition images (found from the bench binary's own location, so a bench
 * runs from any build directory), order statistics, and the one output
 * format scripts read: `BENCH <name> <value> <unit>` on stdout, one figure a
 * line. Everything else a bench says goes to stderr.
 */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <limits.h>
#include <stddef.h>
#include "agent/partition.h"
#include "common/err.h"

struct bench_env {
	char vmm[PATH_MAX];        /* <build>/bin/parley-vmm */
	char image_dir[PATH_MAX];  /* <build>/guest */
	const char *image_dirs[2]; /* { image_dir, NULL } for part_opts */
	uint32_t backend;          /* enum ctl_backend partitions run on */
	const char *prefix;        /* of figure names: "" (kvm), "proc_" */
};

/* Fill e from /proc/self/exe (<build>/bench/NAME). Fails with a message if
 * the vmm binary is not where the build puts it. */
int bench_env_init(struct bench_env *e, struct parley_err *err);

/* Options that run partitions with this build's vmm and images. */
struct part_opts bench_opts(const struct bench_env *e,
			    void (*on_console)(struct partition *p,
					       const char *buf, size_t len,
					       void *ctx),
			    void *ctx);

/* The p-th percentile (0..100) of v[0..n), linearly interpolated between
 * neighbouring ranks; sorts v in place. n must be at least 1. */
double bench_pct(double *v, size_t n, double p);

/* One figure on stdout, flushed at once so a reader sees it even if a
 * later part of the run fails. */
void bench_figure(const char *name, double value, const char *unit);

/* The same, named with e's backend prefix ("proc_" on the process
 * backend), so one run reports every backend side by side. */
void bench_figure_e(const struct bench_env *e, const char *name, double value,
		    const char *unit);

/* The backends present, kvm first when usable (said on stderr when not);
 * returns the count. bench_use_backend points e at one of them. */
unsigned bench_backends(uint32_t out[2]);
void bench_use_backend(struct bench_env *e, uint32_t backend);

/* Chatter for people: stderr, prefixed with the program name. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print p50/p90/p99/min/max of v[0..n) in unit `unit`, scaled by `scale`,
 * to stderr under `label`; returns the median (scaled). Sorts v. */
double bench_summary(const char *label, double *v, size_t n, double scale,
		     const char *unit);

/* CPU use on the host, to tell whether a run had the machine to itself:
 * figures from a loaded host (a build, a fuzzer) are inflated, cold start
 * most of all, as it waits on several process and thread hand-offs. */
struct bench_cpu {
	uint64_t busy_us;   /* all CPUs, from /proc/stat (not idle, not steal) */
	uint64_t own_us;    /* this process and its reaped children */
	uint64_t wall_ns;
};
void bench_cpu_mark(struct bench_cpu *c);
/* Share of all CPUs (0..1) other processes used since `start`; negative
 * when /proc/stat cannot be read. */
double bench_cpu_others(const struct bench_cpu *start);

#endif
