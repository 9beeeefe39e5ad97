/* Cold start of a partition as an operator sees it: from the moment the
 * agent starts reading the spec file to the moment the partition's first
 * hypercall (a console write, its very first action) reaches the agent.
 * In between: spec_load, partition_create (image load, memory layout, the
 * vmm process spawned and exec'd, VM and vCPU created, seccomp entered,
 * READY), the vCPU released, the guest's first instruction, the exit, and
 * the console message over the control link. Tear-down is not timed. */
#include "bench/bench_vmx.h"
#include "agent/spec.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char cold_spec[] =
	"{\"name\":\"hcbench\",\"image\":\"hcbench.elf\",\"memory\":\"8M\","
	"\"cmdline\":\"mode=hello\"}\n";

/* Where each run's time went, in ns from the start of spec_load. */
struct cold_run {
	double spec, ready, console;
};

struct cold_set {
	unsigned n;
	double *total, *spec, *launch, *first;
};

static int write_spec(char *dir, size_t dcap, char *path, size_t pcap,
		      struct parley_err *err)
{
	snprintf(dir, dcap, "/tmp/parley-bench-XXXXXX");
	if (!mkdtemp(dir))
		return perr(err, -errno, "mkdtemp: %m");
	snprintf(path, pcap, "%s/hcbench.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return perr(err, -errno, "%s: %m", path);
	size_t len = sizeof(cold_spec) - 1;
	int ok = fwrite(cold_spec, 1, len, f) == len;
	if (fclose(f) != 0 || !ok)
		return perr(err, -EIO, "writing %s failed", path);
	return 0;
}

static int check_run(const struct partition *p, struct parley_err *err)
{
	if (!p->t_first_console_ns)
		return perr(err, -EPROTO, "hcbench printed nothing");
	if (p->fin.reason != VMX_STOP_EXIT || p->fin.code != 0)
		return perr(err, -EPROTO, "hcbench stopped: %s (%s)",
			    vmx_stop_name(p->fin.reason), p->fin.detail);
	return 0;
}

static int cold_once(const char *spec_path, const struct part_opts *o,
		     struct cold_run *r, struct parley_err *err)
{
	struct part_spec s;
	struct partition *p = NULL;
	uint64_t t0 = mono_now_ns();
	int rc = spec_load(spec_path, &s, err);
	if (rc < 0)
		return rc;
	rc = partition_create(&s, o, &p, err);
	if (rc == 0 && partition_wait(p, 10000) < 0)
		rc = perr(err, -ETIMEDOUT, "hcbench did not finish");
	if (rc == 0)
		rc = check_run(p, err);
	if (rc == 0)
		*r = (struct cold_run){
			.spec = (double)(p->t_created_ns - t0),
			.ready = (double)(p->t_ready_ns - t0),
			.console = (double)(p->t_first_console_ns - t0),
		};
	partition_destroy(p);
	spec_free(&s);
	return rc;
}

static void cold_record(struct cold_set *cs, unsigned i,
			const struct cold_run *r)
{
	cs->total[i] = r->console;
	cs->spec[i] = r->spec;
	cs->launch[i] = r->ready - r->spec;
	cs->first[i] = r->console - r->ready;
}

static double cold_report(struct cold_set *cs)
{
	double med = bench_summary("cold start (spec->1st hc)", cs->total,
				   cs->n, 1e-6, "ms");
	bench_summary("  spec_load", cs->spec, cs->n, 1e-6, "ms");
	bench_summary("  create->READY", cs->launch, cs->n, 1e-6, "ms");
	bench_summary("  READY->1st console", cs->first, cs->n, 1e-6, "ms");
	return med;
}

static int cold_runs(const char *spec_path, const struct part_opts *o,
		     struct cold_set *cs, struct parley_err *err)
{
	struct cold_run r;
	/* Untimed warm-up: page cache, the dynamic loader's first mappings. */
	int rc = cold_once(spec_path, o, &r, err);
	for (unsigned i = 0; rc == 0 && i < cs->n; i++) {
		rc = cold_once(spec_path, o, &r, err);
		if (rc == 0)
			cold_record(cs, i, &r);
	}
	return rc;
}

int vmx_bench_cold(const struct bench_env *e, unsigned runs,
		   double *median_ms, struct parley_err *err)
{
	char dir[64] = "", path[128] = "";
	struct part_opts o = bench_opts(e, NULL, NULL);
	struct cold_set cs = {
		.n = runs, .total = calloc(runs, sizeof(double)),
		.spec = calloc(runs, sizeof(double)),
		.launch = calloc(runs, sizeof(double)),
		.first = calloc(runs, sizeof(double)),
	};
	int rc = cs.total && cs.spec && cs.launch && cs.first
			 ? write_spec(dir, sizeof(dir), path, sizeof(path), err)
			 : perr(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = cold_runs(path, &o, &cs, err);
	if (rc == 0)
		*median_ms = cold_report(&cs);
	if (path[0])
		unlink(path);
	if (dir[0])
		rmdir(dir);
	free(cs.total);
	free(cs.spec);
	free(cs.launch);
	free(cs.first);
	return rc;
}

/* parley-vmm started with no control link: it runs up to its first read of
 * fd 3 (/dev/null here, not a socket), complains to stderr (/dev/null too)
 * and exits. What is left is the price of a process: spawn, exec, dynamic
 * linking, exit and reaping. */
static int spawn_once(const struct bench_env *e, double *ns,
		      struct parley_err *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, CTL_FD_SOCK, "/dev/null",
					 O_RDONLY, 0);
	char *argv[] = { (char *)e->vmm, "bench-floor", NULL };
	pid_t pid;
	int st;
	uint64_t t0 = mono_now_ns();
	int rc = posix_spawn(&pid, e->vmm, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return perr(err, -rc, "posix_spawn %s: %s", e->vmm,
			    strerror(rc));
	if (waitpid(pid, &st, 0) < 0)
		return perr(err, -errno, "waitpid: %m");
	*ns = (double)(mono_now_ns() - t0);
	return 0;
}

int vmx_bench_spawn_floor(const struct bench_env *e, unsigned runs,
			  double *median_ms, struct parley_err *err)
{
	double *t = calloc(runs, sizeof(*t));
	int rc = t ? 0 : perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; rc == 0 && i < runs; i++)
		rc = spawn_once(e, &t[i], err);
	if (rc == 0)
		*median_ms = bench_summary("vmm spawn->exit alone", t, runs,
					   1e-6, "ms");
	free(t);
	return rc;
}
