/*
 * /metrics in Prometheus text format: API request counts by status class,
 * an API latency histogram, connected agents, the policy version, and
 * audit events by reason (counted incrementally from the store's trail,
 * so each scrape reads only the rows new since the last).
 */
#ifndef PARLEY_DAEMON_METRICS_H
#define PARLEY_DAEMON_METRICS_H

#include <stdint.h>
#include "db/store.h"

/* Latency bucket bounds in ms (+Inf is implicit). */
#define METRICS_BUCKETS 8
/* Distinct audit reasons tracked; the rest count as "other". */
#define METRICS_REASONS 64

struct metrics_reason {
	char name[STORE_NAME_MAX];
	uint64_t n;
};

struct api_metrics {
	uint64_t by_class[6];                 /* [k] = kxx responses */
	uint64_t bucket[METRICS_BUCKETS + 1]; /* non-cumulative; last = +Inf */
	double sum_ms;
	uint64_t count;
	uint64_t audit_seen;                  /* last audit id counted */
	unsigned nreason;
	struct metrics_reason reason[METRICS_REASONS + 1];
};

/* One API request answered with `status` after `ms` milliseconds. */
void metrics_request(struct api_metrics *m, int status, double ms);

struct evbuffer;
/* Append the exposition to `out`; agents = connected agents. */
int metrics_render(struct api_metrics *m, struct store *s, unsigned agents,
		   struct evbuffer *out);

struct link_server;
/* The agent link's refusals (link.h counters), appended to `out`. */
void metrics_render_link(const struct link_server *ls, struct evbuffer *out);

#endif
