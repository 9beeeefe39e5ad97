/*
 * bench_vmx: the vmx suite (`./dev bench vmx`). Figures on stdout, each
 * `BENCH <name> <value> <unit>`; spread and breakdowns on stderr. See
 * bench/README.md for what each figure holds. Nothing here asserts on time:
 * the exit status says only whether every measurement could be made.
 */
#include "bench/bench_vmx.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Sized so the whole suite runs in well under a minute on a 2-core host
 * where an exit costs tens of microseconds. */
#define COLD_RUNS        1000
#define FLOOR_RUNS       200
#define RTT_ROUNDS       15
#define RTT_PER_BATCH    2000
/* Share of the CPUs other processes may use before a run is called noisy. */
#define OTHERS_MAX       0.10


static int failed(const char *what, const struct parley_err *err)
{
	bench_note("%s: %s", what, perr_msg(err));
	return 1;
}

/* Figure 1, with the two floors under it on stderr: what a process costs
 * and what a VM costs here, so a slow cold start shows where to look. */
static int cold_start(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	double cold_ms, spawn_ms, vm_ms;
	int bad = 0;
	bool kvm = e->backend == CTL_BACKEND_KVM;
	if (vmx_bench_spawn_floor(e, FLOOR_RUNS, &spawn_ms, &err) < 0 ||
	    (kvm && vmx_bench_bare_start(FLOOR_RUNS, &vm_ms, &err) < 0))
		bad = failed("floors", &err);
	if (vmx_bench_cold(e, COLD_RUNS, &cold_ms, &err) < 0)
		return failed("cold start", &err);
	bench_figure_e(e, "partition_cold_start_ms", cold_ms, "ms");
	if (!bad && kvm)
		bench_note("cold start %.3f ms = vmm process ~%.3f + bare VM "
			   "%.3f + the rest %.3f (medians; the process floor "
			   "includes its exit)", cold_ms, spawn_ms, vm_ms,
			   cold_ms - spawn_ms - vm_ms);
	return bad;
}

/* Figures 2-4: the bare exit, the hypercall, and their ratio. */
static int round_trips(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	struct rtt_result r;
	if (vmx_bench_rtt(e, RTT_ROUNDS, RTT_PER_BATCH, &r, &err) < 0)
		return failed("round trips", &err);
	if (e->backend == CTL_BACKEND_KVM) {
		bench_figure("kvm_exit_rtt_us", r.exit_us, "us");
		bench_figure("hypercall_rtt_us", r.hc_us, "us");
		bench_figure("hypercall_vs_exit", r.hc_us / r.exit_us, "x");
	} else {
		bench_figure_e(e, "ptrace_stop_rtt_us", r.exit_us, "us");
		bench_figure_e(e, "hypercall_rtt_us", r.hc_us, "us");
		bench_figure_e(e, "hypercall_vs_ptrace_stop",
			       r.hc_us / r.exit_us, "x");
	}
	return 0;
}

/* Say how much of the machine others used: the figures assume it idle. */
static void load_note(const struct bench_cpu *start)
{
	double others = bench_cpu_others(start);
	if (others < 0)
		return;
	bench_note("other processes used %.0f%% of the CPUs during the run%s",
		   others * 100, others > OTHERS_MAX
					 ? ": figures are inflated, rerun on "
					   "an idle machine"
					 : "");
}

int main(void)
{
	struct bench_env env;
	struct parley_err err = { 0 };
	struct bench_cpu cpu;
	uint32_t backends[2];
	unsigned nb = bench_backends(backends);
	if (bench_env_init(&env, &err) < 0)
		return failed("set-up", &err);
	bench_cpu_mark(&cpu);
	int bad = 0;
	for (unsigned i = 0; i < nb; i++) {
		bench_use_backend(&env, backends[i]);
		bad |= cold_start(&env);
		bad |= round_trips(&env);
	}
	load_note(&cpu);
	return bad;
}
