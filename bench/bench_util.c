#include "bench/bench.h"
#include "common/fileio.h"
#include "agent/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int bench_env_init(struct bench_env *e, struct parley_err *err)
{
	char self[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return perr(err, -errno, "/proc/self/exe: %m");
	self[n] = 0;
	/* <build>/bench/bench_x: two levels up is the build directory. */
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(self, '/');
		if (!slash)
			return perr(err, -ENOENT, "cannot place %s in a build "
				    "directory", self);
		*slash = 0;
	}
	snprintf(build, sizeof(build), "%s", self[0] ? self : "/");
	if (path_join(e->vmm, sizeof(e->vmm), build, "bin/parley-vmm") < 0 ||
	    path_join(e->image_dir, sizeof(e->image_dir), build, "guest") < 0)
		return perr(err, -ENAMETOOLONG, "build path too long");
	if (access(e->vmm, X_OK) < 0)
		return perr(err, -errno, "%s: %m (build parley-vmm first)",
			    e->vmm);
	e->image_dirs[0] = e->image_dir;
	e->image_dirs[1] = NULL;
	e->backend = CTL_BACKEND_KVM;
	e->prefix = "";
	return 0;
}

struct part_opts bench_opts(const struct bench_env *e,
			    void (*on_console)(struct partition *p,
					       const char *buf, size_t len,
					       void *ctx),
			    void *ctx)
{
	return (struct part_opts){
		.vmm_path = e->vmm, .image_dirs = e->image_dirs,
		.on_console = on_console, .ctx = ctx, .timeout_ms = 10000,
		.backend = e->backend,
	};
}

void bench_figure_e(const struct bench_env *e, const char *name, double value,
		    const char *unit)
{
	char full[128];
	snprintf(full, sizeof(full), "%s%s", e->prefix, name);
	bench_figure(full, value, unit);
}

unsigned bench_backends(uint32_t out[2])
{
	unsigned n = 0;
	const char *why = backend_kvm_missing();
	if (why)
		bench_note("kvm backend not measured: %s", why);
	else
		out[n++] = CTL_BACKEND_KVM;
	out[n++] = CTL_BACKEND_PROCESS;
	return n;
}

void bench_use_backend(struct bench_env *e, uint32_t backend)
{
	e->backend = backend;
	e->prefix = backend == CTL_BACKEND_PROCESS ? "proc_" : "";
	bench_note("backend %s", backend_name(backend));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_pct(double *v, size_t n, double p)
{
	PARLEY_ASSERT(n > 0);
	qsort(v, n, sizeof(*v), cmp_double);
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)rank;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (rank - (double)lo) * (v[lo + 1] - v[lo]);
}

void bench_figure(const char *name, double value, const char *unit)
{
	printf("BENCH %s %.3f %s\n", name, value, unit);
	fflush(stdout);
}

void bench_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

double bench_summary(const char *label, double *v, size_t n, double scale,
		     const char *unit)
{
	double p50 = bench_pct(v, n, 50) * scale;
	bench_note("%-28s n=%-5zu p50 %9.3f  p90 %9.3f  p99 %9.3f  "
		   "min %9.3f  max %9.3f %s", label, n, p50,
		   bench_pct(v, n, 90) * scale, bench_pct(v, n, 99) * scale,
		   v[0] * scale, v[n - 1] * scale, unit);
	return p50;
}

static uint64_t busy_us(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
		       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return 0;
	/* user nice system [idle iowait] irq softirq [steal]: guest time is
	 * inside user already; steal is the hypervisor's, not a process's. */
	uint64_t ticks = v[0] + v[1] + v[2] + v[5] + v[6];
	return ticks * 1000000ull / (uint64_t)sysconf(_SC_CLK_TCK);
}

static uint64_t rusage_us(int who)
{
	struct rusage r;
	if (getrusage(who, &r) < 0)
		return 0;
	return (uint64_t)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000ull +
	       (uint64_t)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_cpu_mark(struct bench_cpu *c)
{
	c->busy_us = busy_us();
	c->own_us = rusage_us(RUSAGE_SELF) + rusage_us(RUSAGE_CHILDREN);
	c->wall_ns = mono_ns();
}

double bench_cpu_others(const struct bench_cpu *start)
{
	struct bench_cpu now;
	bench_cpu_mark(&now);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (!start->busy_us || !now.busy_us || ncpu < 1 ||
	    now.wall_ns <= start->wall_ns)
		return -1;
	double others = (double)(now.busy_us - start->busy_us) -
			(double)(now.own_us - start->own_us);
	double avail = (double)(now.wall_ns - start->wall_ns) / 1e3 *
		       (double)ncpu;
	return others > 0 ? others / avail : 0;
}
