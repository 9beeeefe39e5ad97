/*
 * Where a disk's key comes from. The agent asks only after the
 * partition's admission (its measurement matched its baseline) and hands
 * the key straight to the vmm (CTL_DISK), wiping its own copy. Today's
 * source is a key file (disk_key_file); a later one may be the daemon's
 * signed bundle — the agent's side does not change.
 */
#ifndef PARLEY_AGENT_DISK_KEYS_H
#define PARLEY_AGENT_DISK_KEYS_H

#include <stdint.h>
#include "agent/beneath.h"
#include "agent/ctl/ctl.h"
#include "agent/spec.h"
#include "common/err.h"

struct disk_key_source {
	/* Fill key[] for disk d of partition `part`. 0, or a negative errno
	 * with err saying why (the disk's open fails with it). */
	int (*get)(void *ctx, const char *part, const struct part_disk_spec *d,
		   uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err);
	void *ctx;
};

/* The key file source: d->key beneath the directories ctx (a struct
 * beneath_dirs) names. Refused unless a regular file of exactly 64 bytes,
 * owned by this process's user, with no permission for group or others,
 * whose two halves differ (XTS). */
int disk_key_file(void *ctx, const char *part, const struct part_disk_spec *d,
		  uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err);

#endif
