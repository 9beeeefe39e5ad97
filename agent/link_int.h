/*
 * Between the agent link's two files: link.c (the connection, the outbox,
 * the records the agent sends) and link_dispatch.c (what a frame from the
 * daemon does to the link's state). Not for other callers.
 */
#ifndef PARLEY_AGENT_LINK_INT_H
#define PARLEY_AGENT_LINK_INT_H

#include <stddef.h>
#include "agent/link.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* link.c. Without a connection (l->bev NULL) nothing is sent, but
 * link_send_synced still hands the records out (the outbox cursor moves),
 * as it does on a connection. */
void link_state_path(const struct agent_link *l, const char *name,
		     char *out, size_t cap);
void link_send_env(struct agent_link *l, const Parley__V1__Envelope *e);
void link_send_synced(struct agent_link *l);

/* link_dispatch.c. */
void link_apply_policy(struct agent_link *l);
void link_become_ready(struct agent_link *l);

#endif
