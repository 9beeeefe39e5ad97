#include "agent/ipc/audit.h"
#include "agent/ctl/clock.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void put(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

static void record(struct audit *a, const struct audit_event *e)
{
	a->count++;
	if (a->sink)
		a->sink(e, a->sink_ctx);
	if (!a->out)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	json_t *o = json_object();
	put(o, "time", when);
	put(o, "event", e->event);
	put(o, "partition", e->partition);
	put(o, "channel", e->channel);
	put(o, "reason", e->reason);
	put(o, "file", e->file);
	put(o, "detail", e->detail);
	/* Names come from specs and partitions; jansson escapes them. */
	char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					   JSON_ENSURE_ASCII);
	if (line) {
		fprintf(a->out, "%s\n", line);
		fflush(a->out);
		free(line);
	}
	json_decref(o);
}

/* What a partition can make happen in a loop, charged to its bucket:
 * what it asks for and is refused, and its devices' states as its vmm
 * reports them (a vmm the partition took over may report them without
 * end: 200,000 in 3.5 s were 56 MB of audit). */
static bool charged(const char *event)
{
	static const char *const ev[] = { "open_denied", "svc_offer_denied",
					  "svc_call_denied", "seg_refused",
					  "update_denied", "update_refused",
					  "device_state" };
	for (size_t i = 0; i < sizeof(ev) / sizeof(*ev); i++)
		if (!strcmp(event, ev[i]))
			return true;
	return false;
}

static unsigned burst(const struct audit *a)
{
	return a->deny_burst ? a->deny_burst : AUDIT_DENY_BURST;
}

static unsigned per_s(const struct audit *a)
{
	return a->deny_per_s ? a->deny_per_s : AUDIT_DENY_PER_S;
}

static struct audit_lim *lim_find(struct audit *a, const char *partition)
{
	for (unsigned i = 0; i < a->nlim; i++)
		if (!strcmp(a->lim[i].partition, partition))
			return &a->lim[i];
	return NULL;
}

/* The partition's bucket, made on its first refusal; NULL (no limit)
 * only when memory or AUDIT_LIM_MAX runs out. */
static struct audit_lim *lim_of(struct audit *a, const char *partition)
{
	struct audit_lim *l = lim_find(a, partition);
	if (l || a->nlim == AUDIT_LIM_MAX)
		return l;
	if (a->nlim == a->lim_cap) {
		unsigned cap = a->lim_cap ? 2 * a->lim_cap : 16;
		struct audit_lim *n = realloc(a->lim, cap * sizeof(*n));
		if (!n)
			return NULL;
		a->lim = n;
		a->lim_cap = cap;
	}
	char *name = strdup(partition);
	if (!name)
		return NULL;
	l = &a->lim[a->nlim++];
	*l = (struct audit_lim){ .partition = name };
	return l;
}

static void lim_end(struct audit *a, struct audit_lim *l, uint64_t now,
		    bool force)
{
	uint64_t n = rl_end(&l->rl, now, force);
	if (!n)
		return;
	char d[128];
	snprintf(d, sizeof(d), "%llu event(s) counted, not recorded one by "
		 "one", (unsigned long long)n);
	record(a, &(struct audit_event){ .event = "audit_limited",
					 .partition = l->partition,
					 .reason = "ENDED", .detail = d });
}

static void lim_drop(struct audit *a, unsigned i)
{
	free(a->lim[i].partition);
	a->lim[i] = a->lim[--a->nlim];
}

void audit_emit(struct audit *a, const struct audit_event *e)
{
	struct audit_lim *l = NULL;
	/* A refusal for a changed file or a quarantine says what no flood
	 * may hide (which file, found at which request): always recorded,
	 * and not charged. */
	bool telling = e->reason && (!strcmp(e->reason, "INTEGRITY") ||
				     !strcmp(e->reason, "QUARANTINED"));
	if (!a->deny_all && e->partition && !telling && charged(e->event))
		l = lim_of(a, e->partition);
	if (l) {
		uint64_t now = mono_now_ns();
		bool began;
		if (!rl_take(&l->rl, now, burst(a), per_s(a), &began)) {
			a->left_out++;
			if (!began)
				return;
			char d[128];
			snprintf(d, sizeof(d), "refusals and device states past "
				 "%u a second are counted, not recorded one "
				 "by one", per_s(a));
			record(a, &(struct audit_event){
				.event = "audit_limited", .partition =
				l->partition, .reason = "LIMIT", .detail = d });
			return;
		}
		lim_end(a, l, now, false);
	}
	record(a, e);
}

void audit_tick(struct audit *a)
{
	if (!a->nlim)
		return;
	uint64_t now = mono_now_ns();
	const uint64_t full_ns = 1000000000ull / per_s(a) * burst(a);
	for (unsigned i = a->nlim; i-- > 0;) {
		struct audit_lim *l = &a->lim[i];
		lim_end(a, l, now, false);
		if (!l->rl.limiting && now - l->rl.credit_at_ns >= full_ns)
			lim_drop(a, i); /* full again: as if never refused */
	}
}

void audit_end_all(struct audit *a)
{
	uint64_t now = mono_now_ns();
	for (unsigned i = 0; i < a->nlim; i++)
		lim_end(a, &a->lim[i], now, true);
}

void audit_forget(struct audit *a, const char *partition)
{
	struct audit_lim *l = lim_find(a, partition);
	if (!l)
		return;
	lim_end(a, l, mono_now_ns(), true);
	lim_drop(a, (unsigned)(l - a->lim));
}

void audit_limits(struct audit *a, int per_s)
{
	a->deny_all = per_s < 0;
	a->deny_per_s = per_s > 0 ? (unsigned)per_s : 0;
	a->deny_burst = per_s > 0 ? 8 * (unsigned)per_s : 0;
}

void audit_free(struct audit *a)
{
	while (a->nlim)
		lim_drop(a, a->nlim - 1);
	free(a->lim);
	a->lim = NULL;
	a->lim_cap = 0;
}
