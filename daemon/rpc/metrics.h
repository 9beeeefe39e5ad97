/*
 * /metrics in Prometheus text format (exposition format 0.0.4): API
 * request counts by status class, an API latency histogram in seconds,
 * the agent link's counters, connected agents, the policy version, and
 * audit events by reason (counted incrementally from the store's trail,
 * so each scrape reads only the rows new since the last).
 *
 * Conventions (checked by `promtool check metrics` in tests/test_metrics.c):
 * every family has # HELP and # TYPE, base units spelled out (_seconds),
 * counters end in _total. Names are a public interface: dashboards and
 * bench/ read them, so a rename is a change to note in daemon/rpc/API.md.
 */
#ifndef PARLEY_DAEMON_METRICS_H
#define PARLEY_DAEMON_METRICS_H

#include <stdint.h>
#include "db/store.h"

/* Latency buckets: 1 ms .. 250 ms, exposed in seconds (+Inf implicit). */
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

/* What the agent link counts (struct link_server), copied at scrape time
 * so that this file needs nothing of the link. */
struct metrics_link {
	unsigned agents;            /* connected agents */
	uint64_t frames;            /* frames received */
	uint64_t bundles_pushed;    /* policy bundles sent */
	uint64_t refused;           /* connections refused, every cause */
	uint64_t unknown_host;      /* of those: host not enrolled */
	uint64_t revoked;           /* certificate revoked */
	uint64_t foreign;           /* a message about another host's partition */
	uint64_t paused;            /* reads paused: an agent not reading */
	const char *replica;        /* this replica's name (NULL: no link) */
	uint64_t relayed;           /* commands taken from the store, sent */
	uint64_t notified;          /* store notifications that woke it */
};

struct evbuffer;
/* Append the exposition to `out`. */
int metrics_render(struct api_metrics *m, struct store *s,
		   const struct metrics_link *link, struct evbuffer *out);

/* The agent link's families alone (metrics_render includes them). */
void metrics_render_link(const struct metrics_link *link,
			 struct evbuffer *out);

#endif
