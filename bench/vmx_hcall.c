/* A real hypercall round trip: partition hcbench in a real vmm process makes
 * n CLOCK hypercalls between two console markers, and the agent (this
 * process) stamps each marker with mono_now_ns() as it arrives. Per call:
 * (t_E - t_S) / n. The interval holds the n calls plus about one console
 * hypercall and the difference of two socket wake-ups, which n amortises.
 *
 * The partition also reports its own view in the E marker (rdtsc around the
 * n calls; the CLOCK values of the first and last call), kept as
 * cross-checks: they exclude marker delivery, but rdtsc depends on the TSC
 * frequency KVM reports being right under nesting. */
#include "bench/bench_vmx.h"
#include "agent/spec.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* What the markers of the one batch said. */
struct hc_log {
	uint64_t tsc_khz;
	uint64_t t_s, t_e;
	uint64_t cycles, first, last;
	unsigned started, ended;
	bool bad;
};

static void hc_parse(struct hc_log *h, const char *line, uint64_t now)
{
	long b;
	unsigned long long khz, cyc, first, last;
	if (sscanf(line, "K %llu", &khz) == 1) {
		h->tsc_khz = khz;
	} else if (sscanf(line, "S %ld", &b) == 1 && b == 0) {
		h->t_s = now;
		h->started++;
	} else if (sscanf(line, "E %ld %llu %llu %llu", &b, &cyc, &first,
			  &last) == 4 && b == 0) {
		h->t_e = now;
		h->cycles = cyc;
		h->first = first;
		h->last = last;
		h->ended++;
	} else {
		h->bad = true;
	}
}

/* Each marker is one console hypercall, so one message, so one call. */
static void hc_console(struct partition *p, const char *buf, size_t len,
		       void *ctx)
{
	uint64_t now = mono_now_ns(); /* first thing: the marker's arrival */
	struct hc_log *h = ctx;
	char line[128];
	(void)p;
	if (len >= sizeof(line)) {
		h->bad = true;
		return;
	}
	memcpy(line, buf, len);
	line[len] = 0;
	hc_parse(h, line, now);
}

static int hc_check(const struct partition *p, const struct hc_log *h,
		    struct parley_err *err)
{
	if (p->fin.reason != VMX_STOP_EXIT || p->fin.code != 0)
		return perr(err, -EPROTO, "hcbench stopped: %s (%s)",
			    vmx_stop_name(p->fin.reason), p->fin.detail);
	if (h->bad || h->started != 1 || h->ended != 1 || h->t_e < h->t_s)
		return perr(err, -EPROTO, "hcbench markers garbled or missing");
	return 0;
}

static int hc_run(const struct bench_env *e, unsigned warm, unsigned n,
		  struct hc_log *h, struct parley_err *err)
{
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"name\":\"hcbench\",\"image\":\"hcbench.elf\","
		 "\"memory\":\"8M\",\"cmdline\":\"mode=loop n=%u batches=1 "
		 "warm=%u\"}", n, warm);
	struct part_spec s;
	int rc = spec_parse(json, strlen(json), NULL, &s, err);
	if (rc < 0)
		return rc;
	struct part_opts o = bench_opts(e, hc_console, h);
	struct partition *p = NULL;
	rc = partition_create(&s, &o, &p, err);
	spec_free(&s);
	if (rc == 0 && partition_wait(p, 30000) < 0)
		rc = perr(err, -ETIMEDOUT, "hcbench did not finish in 30 s");
	if (rc == 0)
		rc = hc_check(p, h, err);
	partition_destroy(p);
	return rc;
}

int vmx_hcall_round(const struct bench_env *e, unsigned warm, unsigned n,
		    struct hc_sample *out, struct parley_err *err)
{
	struct hc_log h = { 0 };
	if (n < 2)
		return perr(err, -EINVAL, "need at least 2 calls a batch");
	int rc = hc_run(e, warm, n, &h, err);
	if (rc < 0)
		return rc;
	*out = (struct hc_sample){
		.agent_ns = (double)(h.t_e - h.t_s) / n,
		.clock_ns = h.last > h.first
				    ? (double)(h.last - h.first) / (n - 1) : 0,
		.tsc_ns = h.tsc_khz ? (double)h.cycles * 1e6 /
					      (double)h.tsc_khz / n : 0,
	};
	return 0;
}
