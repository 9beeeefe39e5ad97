#include "daemon/rpc/metrics.h"
#include "daemon/rpc/link.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

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

static void render_requests(struct api_metrics *m, struct evbuffer *o)
{
	evbuffer_add_printf(o, "# TYPE parley_api_requests_total counter\n");
	for (unsigned c = 1; c < 6; c++)
		evbuffer_add_printf(o, "parley_api_requests_total{class=\"%uxx\"}"
				    " %llu\n", c,
				    (unsigned long long)m->by_class[c]);
	evbuffer_add_printf(o, "# TYPE parley_api_request_duration_ms "
			       "histogram\n");
	uint64_t cum = 0;
	for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
		cum += m->bucket[i];
		evbuffer_add_printf(o, "parley_api_request_duration_ms_bucket"
				    "{le=\"%u\"} %llu\n", bounds_ms[i],
				    (unsigned long long)cum);
	}
	cum += m->bucket[METRICS_BUCKETS];
	evbuffer_add_printf(o, "parley_api_request_duration_ms_bucket"
			    "{le=\"+Inf\"} %llu\n"
			    "parley_api_request_duration_ms_sum %.3f\n"
			    "parley_api_request_duration_ms_count %llu\n",
			    (unsigned long long)cum, m->sum_ms,
			    (unsigned long long)m->count);
}

int metrics_render(struct api_metrics *m, struct store *s, unsigned agents,
		   struct evbuffer *o)
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
	evbuffer_add_printf(o, "# TYPE parley_agents_connected gauge\n"
			       "parley_agents_connected %u\n"
			       "# TYPE parley_policy_version gauge\n"
			       "parley_policy_version %llu\n",
			    agents, (unsigned long long)version);
	evbuffer_add_printf(o, "# TYPE parley_audit_events_total counter\n");
	unsigned nr = m->nreason + (m->reason[METRICS_REASONS].n ? 1 : 0);
	for (unsigned i = 0; i < nr; i++) {
		struct metrics_reason *r = i < m->nreason
			? &m->reason[i] : &m->reason[METRICS_REASONS];
		evbuffer_add_printf(o, "parley_audit_events_total{reason=\"%s\"}"
				    " %llu\n", r->name,
				    (unsigned long long)r->n);
	}
	render_requests(m, o);
	return 0;
}

void metrics_render_link(const struct link_server *ls, struct evbuffer *o)
{
	uint64_t named = ls->n_unknown_host + ls->n_revoked + ls->n_foreign;
	evbuffer_add_printf(o, "# HELP parley_link_refusals_total Agent "
			    "connections refused, by cause (other: malformed "
			    "or unexpected frames and the rest).\n"
			    "# TYPE parley_link_refusals_total counter\n"
			    "parley_link_refusals_total{cause=\"unknown_host\"} "
			    "%llu\n"
			    "parley_link_refusals_total{cause=\"revoked_cert\"} "
			    "%llu\n"
			    "parley_link_refusals_total{cause=\"foreign_partition\"} "
			    "%llu\n"
			    "parley_link_refusals_total{cause=\"other\"} %llu\n",
			    (unsigned long long)ls->n_unknown_host,
			    (unsigned long long)ls->n_revoked,
			    (unsigned long long)ls->n_foreign,
			    (unsigned long long)(ls->n_refused > named
						 ? ls->n_refused - named : 0));
}
