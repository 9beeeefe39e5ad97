/*
 * Anchored audit, daemon side: checkpoints of the audit chain's head
 * (common/checkpoint.h), signed by the key process with the checkpoint
 * key, stored (store_checkpoint_add) and exported by the API
 * (/v1/audit/checkpoints). Made every interval_s seconds when the head
 * moved since the last one, and on demand (POST).
 */
#ifndef PARLEY_DAEMON_CHECKPOINT_H
#define PARLEY_DAEMON_CHECKPOINT_H

#include <event2/event.h>
#include <stdint.h>
#include "common/err.h"
#include "db/store.h"

struct keyd;

struct ckpt {
	struct store *store;        /* borrowed */
	struct keyd *keys;          /* borrowed */
	struct event *tick;         /* NULL: on demand only */
	uint64_t last_seq;          /* head covered by the newest one */
	uint64_t n_made, n_failed;
};

/* interval_s 0: no timer. */
int ckpt_start(struct ckpt *c, struct event_base *base, struct store *s,
	       struct keyd *keys, uint32_t interval_s, struct parley_err *err);
/* Sign and store the head as it is now. -ENODATA when the trail is
 * empty (nothing to anchor). */
int ckpt_make(struct ckpt *c, struct store_checkpoint *out,
	      struct parley_err *err);
void ckpt_stop(struct ckpt *c);

#endif
