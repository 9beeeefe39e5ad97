/* Figures 2-4 side by side. The bare exit and the hypercall cost about the
 * same here (~25 us, almost all of it the nested exit itself), so a drift
 * of a few per cent on the host between two separate phases would move
 * their ratio more than the difference being measured. Rounds alternate:
 * one exit batch, then one hypercall partition, each n round trips. */
#include "bench/bench_vmx.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define HC_WARM 200

struct rtt_set {
	unsigned n;
	double *exit, *hc, *clock, *tsc, *ratio;
};

static int rtt_alloc(struct rtt_set *s, unsigned rounds)
{
	s->n = rounds;
	s->exit = calloc(rounds, sizeof(double));
	s->hc = calloc(rounds, sizeof(double));
	s->clock = calloc(rounds, sizeof(double));
	s->tsc = calloc(rounds, sizeof(double));
	s->ratio = calloc(rounds, sizeof(double));
	return s->exit && s->hc && s->clock && s->tsc && s->ratio ? 0
								  : -ENOMEM;
}

static void rtt_free(struct rtt_set *s)
{
	free(s->exit);
	free(s->hc);
	free(s->clock);
	free(s->tsc);
	free(s->ratio);
}

/* The baseline of one round: a bare KVM exit batch, or a bare ptrace stop
 * batch for the process backend. */
struct rtt_base {
	struct exit_vm *x;
	struct proc_stop *ps;
};

static int base_batch(struct rtt_base *b, unsigned n, double *ns,
		      struct parley_err *err)
{
	return b->x ? vmx_exit_batch(b->x, n, ns, err)
		    : proc_stop_batch(b->ps, n, ns, err);
}

static int rtt_rounds(const struct bench_env *e, struct rtt_base *b,
		      unsigned n, struct rtt_set *s, struct parley_err *err)
{
	int rc = 0;
	for (unsigned r = 0; rc == 0 && r < s->n; r++) {
		struct hc_sample h;
		rc = base_batch(b, n, &s->exit[r], err);
		if (rc == 0)
			rc = vmx_hcall_round(e, HC_WARM, n, &h, err);
		if (rc < 0)
			break;
		s->hc[r] = h.agent_ns;
		s->clock[r] = h.clock_ns;
		s->tsc[r] = h.tsc_ns;
		s->ratio[r] = h.agent_ns / s->exit[r];
	}
	return rc;
}

static void rtt_report(struct rtt_set *s, bool proc, struct rtt_result *r)
{
	r->exit_us = bench_summary(proc ? "bare ptrace stop (per stop)"
					: "kvm exit (per exit)",
				   s->exit, s->n, 1e-3, "us");
	r->hc_us = bench_summary("hypercall (agent markers)", s->hc, s->n,
				 1e-3, "us");
	bench_summary("  cross-check: guest CLOCK", s->clock, s->n, 1e-3,
		      "us");
	if (s->tsc[0] > 0)
		bench_summary("  cross-check: guest rdtsc", s->tsc, s->n, 1e-3,
			      "us");
	bench_summary(proc ? "  hypercall/stop per round"
			   : "  hypercall/exit per round", s->ratio, s->n, 1, "x");
}

int vmx_bench_rtt(const struct bench_env *e, unsigned rounds, unsigned n,
		  struct rtt_result *r, struct parley_err *err)
{
	struct rtt_set s = { 0 };
	struct rtt_base b = { 0 };
	bool proc = e->backend == CTL_BACKEND_PROCESS;
	int rc = rounds && rtt_alloc(&s, rounds) == 0
			 ? 0 : perr(err, -ENOMEM, "out of memory (or 0 rounds)");
	if (rc == 0)
		rc = proc ? proc_stop_open(&b.ps, err) : vmx_exit_open(&b.x, err);
	if (rc == 0)
		rc = rtt_rounds(e, &b, n, &s, err);
	vmx_exit_close(b.x);
	proc_stop_close(b.ps);
	if (rc == 0)
		rtt_report(&s, proc, r);
	rtt_free(&s);
	return rc;
}
