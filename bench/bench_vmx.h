/*
 * The parts of the vmx suite (bench_vmx.c runs them in order). Each returns
 * 0 or a negative errno with err set, and hands back its median; the spread
 * and any breakdown go to stderr.
 */
#ifndef PARLEY_BENCH_VMX_H
#define PARLEY_BENCH_VMX_H

#include "bench/bench.h"

/* Cold start of a partition through the real vmm process, `runs` times:
 * spec_load() start -> first console message handled by the agent. */
int vmx_bench_cold(const struct bench_env *e, unsigned runs,
		   double *median_ms, struct parley_err *err);

/* parley-vmm spawned with no control link, so that it exits at once:
 * the process part of a cold start (spawn, exec, dynamic linking; plus exit
 * and reaping, which a cold start does not wait for). stderr only. */
int vmx_bench_spawn_floor(const struct bench_env *e, unsigned runs,
			  double *median_ms, struct parley_err *err);

/* The baseline: a VM created in this process exactly as a partition's
 * (layout_system, vmx_vm_create: CPL 3, long mode) whose code is an endless
 * `out` to the CLOCK hypercall port. vmx_exit_batch() times n round trips
 * KVM_RUN -> KVM_EXIT_IO -> KVM_RUN, nothing in between, and gives ns per
 * exit. open runs an untimed warm-up. */
struct exit_vm;
int vmx_exit_open(struct exit_vm **out, struct parley_err *err);
int vmx_exit_batch(struct exit_vm *x, unsigned n, double *ns_per_exit,
		   struct parley_err *err);
void vmx_exit_close(struct exit_vm *x);

/* The same VM, created, run to its first exit and destroyed `runs` times:
 * the floor under a partition's cold start. stderr only. */
int vmx_bench_bare_start(unsigned runs, double *median_ms,
			 struct parley_err *err);

/* The process backend's baseline (proc_stop.c): a traced child's `out`
 * trapped as a SIGSEGV stop and stepped over, nothing else; ns per stop. */
struct proc_stop;
int proc_stop_open(struct proc_stop **out, struct parley_err *err);
int proc_stop_batch(struct proc_stop *x, unsigned n, double *ns_per_stop,
		    struct parley_err *err);
void proc_stop_close(struct proc_stop *x);

/* One partition (image hcbench, real vmm process): `warm` untimed CLOCK
 * hypercalls, then n timed ones between two console markers. ns per call
 * from the agent's stamps of the markers, and from the partition's own
 * view for a cross-check. */
struct hc_sample {
	double agent_ns;  /* (t_E - t_S) / n, stamped on arrival here */
	double clock_ns;  /* CLOCK values of the first and last call / (n-1) */
	double tsc_ns;    /* guest rdtsc around the n calls / n; 0: no TSC */
};
int vmx_hcall_round(const struct bench_env *e, unsigned warm, unsigned n,
		    struct hc_sample *out, struct parley_err *err);

/* Figures 2-4 measured together: `rounds` of one baseline batch (a bare KVM
 * exit; on the process backend a bare ptrace stop) followed by one
 * hypercall partition on e's backend, n calls each, so that drift on the
 * host hits both alike. Medians over the rounds. */
struct rtt_result {
	double exit_us, hc_us;
};
int vmx_bench_rtt(const struct bench_env *e, unsigned rounds, unsigned n,
		  struct rtt_result *r, struct parley_err *err);

#endif
