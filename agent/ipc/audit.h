/*
 * Audit events: every decision the grant manager makes (open allowed, each
 * denial with its reason, quarantine, revoke, partition fault) as one
 * record with time, partition, channel, reason and file. Standalone mode
 * writes them as JSON lines; the daemon link will forward the same records.
 */
#ifndef PARLEY_IPC_AUDIT_H
#define PARLEY_IPC_AUDIT_H

#include <stdio.h>

struct audit_event {
	const char *event;      /* open_allowed, open_denied, quarantine,
				 * revoke, fault, baseline */
	const char *partition;
	const char *channel;    /* or NULL */
	const char *reason;     /* NO_GRANT, INTEGRITY, ... or NULL */
	const char *file;       /* the config file that differed, or NULL */
	const char *detail;     /* free text, or NULL */
};

struct audit {
	FILE *out;              /* JSON lines, or NULL */
	unsigned long count;
	/* Also handed to the daemon link, when there is one. */
	void (*sink)(const struct audit_event *e, void *ctx);
	void *sink_ctx;
};

/* Write one event as a JSON line and flush it (an audit record that sits in
 * a buffer when the agent dies is lost). */
void audit_emit(struct audit *a, const struct audit_event *e);

#endif
