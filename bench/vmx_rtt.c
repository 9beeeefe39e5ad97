/* Figures 2-4 side by side. The bare exit and the hypercall cost about the
 * same here (~25 us, almost all of it the nested exit itself), so a drift
 * of a few per cent on the host between two separate phases would move
 * their ratio more than the difference being measured. Rounds alternate:
 * one exit batch, then one hypercall partition, each n round trips. */
#include "bench/bench_vmx.h"

#include <errno.h>
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

static int rtt_rounds(const struct bench_env *e, struct exit_vm *x,
		      unsigned n, struct rtt_set *s, struct parley_err *err)
{
	int rc = 0;
	for (unsigned r = 0; rc == 0 && r < s->n; r++) {
		struct hc_sample h;
		rc = vmx_exit_batch(x, n, &s->exit[r], err);
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

static void rtt_report(struct rtt_set *s, struct rtt_result *r)
{
	r->exit_us = bench_summary("kvm exit (per exit)", s->exit, s->n, 1e-3,
				   "us");
	r->hc_us = bench_summary("hypercall (agent markers)", s->hc, s->n,
				 1e-3, "us");
	bench_summary("  cross-check: guest CLOCK", s->clock, s->n, 1e-3,
		      "us");
	if (s->tsc[0] > 0)
		bench_summary("  cross-check: guest rdtsc", s->tsc, s->n, 1e-3,
			      "us");
	bench_summary("  hypercall/exit per round", s->ratio, s->n, 1, "x");
}

int vmx_bench_rtt(const struct bench_env *e, unsigned rounds, unsigned n,
		  struct rtt_result *r, struct parley_err *err)
{
	struct rtt_set s = { 0 };
	struct exit_vm *x = NULL;
	int rc = rounds && rtt_alloc(&s, rounds) == 0
			 ? vmx_exit_open(&x, err)
			 : perr(err, -ENOMEM, "out of memory (or 0 rounds)");
	if (rc == 0)
		rc = rtt_rounds(e, x, n, &s, err);
	vmx_exit_close(x);
	if (rc == 0)
		rtt_report(&s, r);
	rtt_free(&s);
	return rc;
}
