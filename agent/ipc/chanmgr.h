/*
 * The grant manager's channel logic (DESIGN.md sections 1, 5, 6): grants,
 * channel instances and their memory, the open decision (grant, then
 * re-measure both endpoints, then map), revocation and quarantine. Policy
 * lives here; the mechanism (memory slots, handles, doorbells) is the vmm
 * process's, reached through agent/partition.h.
 */
#ifndef PARLEY_IPC_CHANMGR_H
#define PARLEY_IPC_CHANMGR_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ipc/audit.h"
#include "agent/partition.h"
#include "agent/ctl/ctl.h"
#include <parley/ring.h>
#include "common/grant.h"

#define CM_PARTS_MAX 64
#define CM_CHANS_MAX 256
#define CM_WINDOWS_MAX CTL_WIN_SLOTS

struct cm_chan;

/* What the grant manager keeps per partition. */
struct cm_part {
	struct partition *p;
	bool quarantined;
	uint16_t gen[CTL_WIN_SLOTS];       /* generation per handle slot */
	struct cm_chan *slot[CTL_WIN_SLOTS]; /* channel mapped in that slot */
	uint64_t win_cursor;           /* next-fit for window addresses */
	uint64_t last_full_ns;         /* background re-hash, rate limit */
};

struct cm_end {
	struct cm_part *ep;            /* NULL until the partition is known */
	bool mapped;
	unsigned slot;
	uint64_t handle, gpa;
};

struct cm_chan {
	uint32_t id;
	struct grant g;
	int memfd;
	uint64_t size;
	int bell[2];                   /* doorbell of endpoint a, b */
	struct parley_chan_hdr hdr;
	struct cm_end end[2];          /* [0] endpoint_a, [1] endpoint_b */
};

struct chanmgr {
	struct grant_set grants;
	struct audit *audit;
	unsigned nparts;
	struct cm_part parts[CM_PARTS_MAX];
	unsigned nchans;
	struct cm_chan *chans[CM_CHANS_MAX];
	uint32_t next_id;
	uint64_t rehash_interval_ns;   /* background full re-hash; 0: off */
};

void chanmgr_init(struct chanmgr *cm, struct audit *audit);
void chanmgr_free(struct chanmgr *cm);

/* Replace the grants. Channels whose grant went away or changed are
 * revoked (unmapped from both ends; waiters see CLOSED). */
void chanmgr_set_grants(struct chanmgr *cm, struct grant_set *g);

/* A partition the grant manager now answers for. */
int chanmgr_add(struct chanmgr *cm, struct partition *p);

/* part_opts.on_request with ctx = the chanmgr. */
void chanmgr_on_request(struct partition *p, uint32_t type,
			const void *payload, void *ctx);

/* A partition stopped: its channels go, its peers see CLOSED. */
void chanmgr_gone(struct chanmgr *cm, struct partition *p);

/* Quarantine: every channel of the partition revoked, no more opens. */
void chanmgr_quarantine(struct chanmgr *cm, struct partition *p,
			const char *file);

/* Background cross-check of the vmm processes' dirty reports: a full
 * re-hash of one partition's config region (the one checked longest ago,
 * at most once per interval each). A page that changed but was never
 * reported stops that partition as compromised. Returns true if a check
 * ran. force: ignore the interval, check every partition now. */
bool chanmgr_full_check(struct chanmgr *cm, bool force);

#endif
