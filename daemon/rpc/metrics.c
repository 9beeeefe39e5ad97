#include "daemon/rpc/metrics.h"
#include "daemon/rpc/link.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kept in ms (what the API measures); printed in seconds. */
static const unsigned bounds_ms[METRICS_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250
};

void metrics_request(struct api_metrics *m, int status, double ms)
{
	unsigned cls = (unsigned)status / 100;
	m->by_class[cls < 6 ? cls : 5]++;
	unsigned i = 0;
	while (i < METRICS_BUCKETS && ms > bounds_ms[i])
		i++;
	m->bucket[i]++;
	m->sum_ms += ms;
	m->count++;
}

/* The slot for a reason; the last slot collects the overflow so a flood
 * of distinct reasons cannot grow memory or the exposition. */
static struct metrics_reason *reason_slot(struct api_metrics *m,
					  const char *r)
{
	for (unsigned i = 0; i < m->nreason; i++)
		if (!strcmp(m->reason[i].name, r))
			return &m->reason[i];
	if (m->nreason < METRICS_REASONS) {
		struct metrics_reason *s = &m->reason[m->nreason++];
		snprintf(s->name, sizeof(s->name), "%s", r);
		return s;
	}
	struct metrics_reason *o = &m->reason[METRICS_REASONS];
	snprintf(o->name, sizeof(o->name), "other");
	return o;
}

static int count_row(const struct store_audit *row, void *ctx)
{
	struct api_metrics *m = ctx;
	reason_slot(m, row->reason[0] ? row->reason : "none")->n++;
	m->audit_seen = row->id;
	return 0;
}

/* The # HELP and # TYPE lines every family starts with. */
static void family(struct evbuffer *o, const char *name, const char *type,
		   const char *help)
{
	evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help,
			    name, type);
}

static void one(struct evbuffer *o, const char *name, const char *type,
		const char *help, unsigned long long v)
{
	family(o, name, type, help);
	evbuffer_add_printf(o, "%s %llu\n", name, v);
}

static void render_requests(struct api_metrics *m, struct evbuffer *o)
{
	family(o, "parley_api_requests_total", "counter",
	       "HTTP API requests answered, by status class.");
	for (unsigned c = 1; c < 6; c++)
		evbuffer_add_printf(o, "parley_api_requests_total{class=\"%uxx\"}"
				    " %llu\n", c,
				    (unsigned long long)m->by_class[c]);
	family(o, "parley_api_request_duration_seconds", "histogram",
	       "Time from an HTTP API request's arrival to its answer.");
	uint64_t cum = 0;
	for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
		cum += m->bucket[i];
		evbuffer_add_printf(o, "parley_api_request_duration_seconds_bucket"
				    "{le=\"%g\"} %llu\n", bounds_ms[i] / 1000.0,
				    (unsigned long long)cum);
	}
	cum += m->bucket[METRICS_BUCKETS];
	evbuffer_add_printf(o, "parley_api_request_duration_seconds_bucket"
			    "{le=\"+Inf\"} %llu\n"
			    "parley_api_request_duration_seconds_sum %.6f\n"
			    "parley_api_request_duration_seconds_count %llu\n",
			    (unsigned long long)cum, m->sum_ms / 1000.0,
			    (unsigned long long)m->count);
}

static void render_refusals(const struct metrics_link *l,
			    struct evbuffer *o)
{
	uint64_t named = l->unknown_host + l->revoked + l->foreign;
	family(o, "parley_link_refusals_total", "counter",
	       "Agent connections refused, by cause (other: malformed or "
	       "unexpected frames and the rest).");
	evbuffer_add_printf(o, "parley_link_refusals_total{cause=\"unknown_host\"}"
			    " %llu\n"
			    "parley_link_refusals_total{cause=\"revoked_cert\"}"
			    " %llu\n"
			    "parley_link_refusals_total{cause=\"foreign_partition\"}"
			    " %llu\n"
			    "parley_link_refusals_total{cause=\"other\"} %llu\n",
			    (unsigned long long)l->unknown_host,
			    (unsigned long long)l->revoked,
			    (unsigned long long)l->foreign,
			    (unsigned long long)(l->refused > named
						 ? l->refused - named : 0));
}

void metrics_render_link(const struct metrics_link *l, struct evbuffer *o)
{
	one(o, "parley_agents_connected", "gauge",
	    "Agents connected on the agent link.", l->agents);
	one(o, "parley_link_frames_total", "counter",
	    "Frames received from agents.", l->frames);
	render_refusals(l, o);
	one(o, "parley_link_read_pauses_total", "counter",
	    "Times reading from an agent paused because it had not read "
	    "what the daemon sent it (8 MiB).", l->paused);
	one(o, "parley_policy_bundles_pushed_total", "counter",
	    "Signed policy bundles sent to agents.", l->bundles_pushed);
}

/* Replicas on the store (db/store_replicas.c): which one this is, and how
 * many agents each holds, as the store records it -- one series per
 * replica, so the scrape of any replica shows the whole split. */
static int render_replicas(struct store *s, const struct metrics_link *l,
			   struct evbuffer *o)
{
	struct store_replica *r = NULL;
	int n = store_replica_list(s, &r, NULL);
	if (n < 0)
		return n;
	family(o, "parley_replica_info", "gauge",
	       "This daemon's replica name (always 1).");
	if (l->replica)
		evbuffer_add_printf(o, "parley_replica_info{replica=\"%s\"} 1\n",
				    l->replica);
	family(o, "parley_replica_agents", "gauge",
	       "Agents each daemon replica on the store holds.");
	for (int i = 0; i < n; i++)
		evbuffer_add_printf(o, "parley_replica_agents{replica=\"%s\"} "
				    "%llu\n", r[i].name,
				    (unsigned long long)r[i].hosts);
	family(o, "parley_replica_last_seen_timestamp_seconds", "gauge",
	       "When each replica last said it is alive (Unix seconds).");
	for (int i = 0; i < n; i++)
		evbuffer_add_printf(o, "parley_replica_last_seen_timestamp_seconds"
				    "{replica=\"%s\"} %.3f\n", r[i].name,
				    (double)r[i].seen_ms / 1000.0);
	free(r);
	one(o, "parley_replica_commands_relayed_total", "counter",
	    "Partition commands another replica stored for an agent this "
	    "one holds, delivered.", l->relayed);
	one(o, "parley_replica_notifications_total", "counter",
	    "Changes committed through any replica that the store announced "
	    "(PostgreSQL NOTIFY) and woke this one; 0 on SQLite, which is "
	    "polled.", l->notified);
	return 0;
}

int metrics_render(struct api_metrics *m, struct store *s,
		   const struct metrics_link *link, struct evbuffer *o)
{
	uint64_t version = 0;
	int rc = store_policy_version(s, &version, NULL);
	/* Page through what is new; rows are counted once ever. */
	int n;
	do
		n = store_audit_list(s, m->audit_seen, STORE_LIST_MAX,
				     count_row, m, NULL);
	while (n == STORE_LIST_MAX);
	if (rc < 0 || n < 0)
		return rc < 0 ? rc : n;
	metrics_render_link(link, o);
	one(o, "parley_policy_version", "gauge",
	    "The store's current policy version.", version);
	family(o, "parley_audit_events_total", "counter",
	       "Audit events stored, by reason (\"none\" without one).");
	unsigned nr = m->nreason + (m->reason[METRICS_REASONS].n ? 1 : 0);
	for (unsigned i = 0; i < nr; i++) {
		struct metrics_reason *r = i < m->nreason
			? &m->reason[i] : &m->reason[METRICS_REASONS];
		evbuffer_add_printf(o, "parley_audit_events_total{reason=\"%s\"}"
				    " %llu\n", r->name,
				    (unsigned long long)r->n);
	}
	render_requests(m, o);
	return render_replicas(s, link, o);
}
