/*
 * Audit events: every decision the grant manager makes (open allowed, each
 * denial with its reason, quarantine, revoke, partition fault) as one
 * record with time, partition, channel, reason and file. Standalone mode
 * writes them as JSON lines; the daemon link forwards the same records.
 *
 * A partition may ask for what it is refused as fast as it likes, and
 * each refusal would be a record in the daemon's hash-chained log: the
 * refusals a partition asks for (open_denied, svc_offer_denied,
 * svc_call_denied, seg_refused, update_denied, update_refused) are
 * recorded one by one up to deny_burst, then deny_per_s a second, per
 * partition. Past that they are counted: `audit_limited` LIMIT when that
 * begins, ENDED with the count a second later (audit_tick, or the next
 * record let through), when the partition goes (audit_forget), or before
 * the agent hands over or ends (audit_end_all). A refusal whose reason is
 * INTEGRITY or QUARANTINED is always recorded (it names the file, and
 * where it was found). What a partition is allowed (open_allowed,
 * seg_attach, svc_call_allowed, ...) is recorded one by one: its grants
 * bound it, and opens have a bucket of their own (CM_OPEN_BURST).
 * deny_all: every refusal recorded.
 */
#ifndef PARLEY_IPC_AUDIT_H
#define PARLEY_IPC_AUDIT_H

#include <stdio.h>

#include "agent/ipc/ratelimit.h"

struct audit_event {
	const char *event;      /* open_allowed, open_denied, quarantine,
				 * revoke, fault, baseline */
	const char *partition;
	const char *channel;    /* or NULL */
	const char *reason;     /* NO_GRANT, INTEGRITY, ... or NULL */
	const char *file;       /* the config file that differed, or NULL */
	const char *detail;     /* free text, or NULL */
};

/* The defaults: a partition waiting for its peer asks up to 200 times a
 * second (guest/examples), recorded whole for its first seconds. */
#define AUDIT_DENY_BURST 256
#define AUDIT_DENY_PER_S 32
/* Partitions with a bucket at once; past it, refusals are recorded. */
#define AUDIT_LIM_MAX 4096

struct audit_lim {
	char *partition;
	struct ratelimit rl;
};

struct audit {
	FILE *out;              /* JSON lines, or NULL */
	unsigned long count;    /* records written */
	unsigned long left_out; /* refusals counted, not recorded */
	/* Also handed to the daemon link, when there is one. */
	void (*sink)(const struct audit_event *e, void *ctx);
	void *sink_ctx;
	unsigned deny_burst, deny_per_s; /* 0, 0: the defaults (above) */
	bool deny_all;          /* every refusal recorded (no limit) */
	struct audit_lim *lim;  /* a bucket per partition that was refused */
	unsigned nlim, lim_cap;
};

/* Write one event as a JSON line and flush it (an audit record that sits in
 * a buffer when the agent dies is lost); a refusal past its partition's
 * bucket is counted instead. */
void audit_emit(struct audit *a, const struct audit_event *e);

/* Housekeeping (~100 ms): episodes due reported ended, full buckets
 * dropped. */
void audit_tick(struct audit *a);

/* Every open episode reported ended now (before a hand-over: the new
 * agent starts with full buckets and knows nothing of them). */
void audit_end_all(struct audit *a);

/* The partition is gone: its episode reported ended, its bucket dropped. */
void audit_forget(struct audit *a, const char *partition);

/* --audit-refusals: n a second (burst 8 n), -1 every one, 0 the
 * defaults. */
void audit_limits(struct audit *a, int per_s);

void audit_free(struct audit *a);

#endif
