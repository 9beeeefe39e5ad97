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
#include "agent/ipc/ratelimit.h"
#include "agent/partition.h"
#include "agent/ctl/ctl.h"
#include <parley/ring.h>
#include "common/grant.h"

/* 128: the hand-over bench runs 100. What grows with it: struct chanmgr
 * (~a few hundred KiB, static or heap), the hand-over message (3 fds a
 * partition, sent in UPD_FDS_PER_MSG chunks) and the agent's descriptors
 * (main.c raises RLIMIT_NOFILE to its hard limit). */
#define CM_PARTS_MAX 128
#define CM_CHANS_MAX 256
#define CM_WINDOWS_MAX CTL_WIN_SLOTS

struct cm_chan;
struct segmgr;

/* Segment-set windows a partition may hold at once (one per set it is
 * attached to; segmgr.c). */
#define CM_SEGRES_MAX 8
/* Opens a thin partition may be granted (service calls and segment-set
 * attaches counted with them: cm_open_take): each costs the agent a
 * re-measure of both ends and the mapping messages to both vmms, and an
 * open_allowed record, so a partition opening and closing in a loop would hold the
 * agent's loop and fill the audit. A bucket of CM_OPEN_BURST refilled at
 * CM_OPENS_PER_S, taken before the integrity checks and given back when
 * the open is refused before either end was re-measured (a grant without
 * require_integrity whose peer is down costs nothing); empty: LIMIT,
 * audited as a refusal (open_denied LIMIT). The examples' waits for a
 * peer (100 asks a second for a few seconds) stay inside the bucket.
 * Linux VMs' OPENs have their own bucket (agent/vm/vmmgr.h). */
#define CM_OPEN_BURST 256
#define CM_OPENS_PER_S 64

struct cm_chan;
struct cm_end;

/* An endpoint that is not a vmm process (a Linux VM, agent/vm/vmmgr.c):
 * what chanmgr would send its vmm it asks these instead. Its struct
 * partition is a shell holding the name and state chanmgr reads. */
struct cm_ext_ops {
	/* Give the VM end `side` of ch (sections, doorbells): 0 or -errno;
	 * e->handle set by the callee. */
	int (*map)(void *ctx, struct cm_chan *ch, int side, struct cm_end *e);
	/* Take it back (revocation): done at once or later, then
	 * chanmgr_ext_unmapped(); the deadline is chanmgr's ext_unmap_ms. */
	void (*unmap)(void *ctx, struct cm_chan *ch, int side);
	/* The peer stopped: the VM's waits learn PEER_DOWN. */
	void (*peer_gone)(void *ctx, struct cm_chan *ch, int side);
	/* chanmgr's verdict on the VM (reason: agent/ctl/stop.h). */
	void (*fault)(void *ctx, uint32_t reason, const char *detail);
	/* Re-measure: 0, or -EBADMSG with the file that changed. */
	int (*verify)(void *ctx, char *file, size_t cap);
};

/* What the grant manager keeps per partition. */
struct cm_part {
	struct partition *p;
	const struct cm_ext_ops *ext;  /* NULL: a thin partition */
	void *ext_ctx;
	bool quarantined;
	uint16_t gen[CTL_WIN_SLOTS];       /* generation per handle slot */
	struct cm_chan *slot[CTL_WIN_SLOTS]; /* channel mapped in that slot */
	uint64_t win_cursor;           /* next-fit for window addresses */
	uint64_t last_full_ns;         /* background re-hash, rate limit */
	struct ratelimit opens;        /* CM_OPEN_BURST (thin partitions) */
	char blame[160];               /* a peer broke a channel under it */
	/* Segment sets (segmgr.c): slots holding a segment's window, and
	 * the guest-physical ranges reserved for set windows (size 0: free);
	 * channel windows are placed around both. */
	bool seg_slot[CTL_WIN_SLOTS];
	struct { uint64_t gpa, size; } segres[CM_SEGRES_MAX];
};

struct cm_end {
	struct cm_part *ep;            /* NULL until the partition is known */
	bool mapped;                   /* its vmm may hold the window */
	bool unmapping;                /* CTL_UNMAP sent, no answer yet */
	unsigned slot;
	uint64_t handle, gpa;
};

/* Channel memory: one memfd per section with exactly one writer, so the
 * kernel enforces who writes what. [0] the header (the agent's), then per
 * queue q [1 + 2q] the producer's section (its index page, then the data)
 * and [2 + 2q] the consumer's (its index page). A side that may only read
 * a section is handed mem_ro[] (a read-only re-open), never mem[]. Each is
 * sealed against growth, never against shrinking: revocation truncates
 * them to 0, whatever the vmms do. */
#define CM_SECTIONS_MAX CTL_MAP_MEMS_MAX
#define CM_WRITER_AGENT (-1)

struct cm_chan {
	uint32_t id;
	struct grant g;                /* a service call's: channel = the
					* service, a = caller, b = provider */
	bool svc;                      /* a service call's ephemeral channel:
					* never joined by a channel open */
	unsigned nsec;
	int mem[CM_SECTIONS_MAX];
	int mem_ro[CM_SECTIONS_MAX];
	uint64_t sec_size[CM_SECTIONS_MAX];
	int sec_writer[CM_SECTIONS_MAX]; /* 0 (a), 1 (b) or CM_WRITER_AGENT */
	bool revoking;                 /* ends told to unmap; memory goes
					* when both answered or the deadline
					* passed */
	uint64_t revoke_deadline_ns;
	bool peer_gone;                /* one end stopped; the other keeps
					* its window until it closes it */
	uint64_t size;
	int bell[2];                   /* doorbell of endpoint a, b */
	struct parley_chan_hdr hdr;
	struct cm_end end[2];          /* [0] endpoint_a, [1] endpoint_b */
};

/* Services (svcmgr.c): who offers what, and the calls set up but not yet
 * accepted by their provider. */
#define CM_OFFERS_MAX 256

struct cm_offer {
	struct cm_part *cp;
	char name[PARLEY_SVC_NAME_MAX];
};

struct cm_pending {
	struct cm_chan *ch;            /* its end[1] is the provider's */
};

struct chanmgr {
	struct grant_set grants;       /* and the service rules */
	unsigned noffers;
	struct cm_offer offers[CM_OFFERS_MAX];
	unsigned npending;
	struct cm_pending pending[CM_CHANS_MAX];
	struct audit *audit;
	unsigned nparts;
	struct cm_part parts[CM_PARTS_MAX];
	unsigned nchans;
	struct cm_chan *chans[CM_CHANS_MAX];
	uint32_t next_id;
	uint64_t rehash_interval_ns;   /* background full re-hash; 0: off */
	/* An external endpoint's (a VM's) time to let go (0: 5000 ms, and
	 * never less than unmap_ms). A VM's unplug is an ACPI eject its
	 * guest kernel must act on, far slower than a vmm's munmap under
	 * TCG on a loaded host; its memory is punched out at the
	 * revocation itself, so waiting longer exposes no data. */
	int ext_unmap_ms;
	int unmap_ms;                  /* a vmm's time to confirm an unmap
					* before it is killed; 0: 1000 */
	struct segmgr *seg;            /* segment sets in use (segmgr.c),
					* made at the first attach */
};

void chanmgr_init(struct chanmgr *cm, struct audit *audit);
void chanmgr_free(struct chanmgr *cm);

/* Replace the grants. Channels whose grant went away or changed are
 * revoked: both vmms are told to unmap (waiters see CLOSED), and when both
 * confirmed or the deadline (unmap_ms) passed the memory itself is
 * truncated, so a vmm that kept its mapping faults on its next access. */
void chanmgr_set_grants(struct chanmgr *cm, struct grant_set *g);

/* A partition the grant manager now answers for (a record freed by
 * chanmgr_remove is reused first). -ENOSPC past CM_PARTS_MAX at once. */
int chanmgr_add(struct chanmgr *cm, struct partition *p);

/* The partition is leaving for good (its owner frees it next; it must
 * have finished: -EBUSY otherwise): its record is freed for reuse
 * and nothing points at it any more -- channel ends, offers, pending
 * calls, segment-set members. Channels naming it that chanmgr_gone has
 * not seen go as there. -ENOENT if it is not ours. */
int chanmgr_remove(struct chanmgr *cm, struct partition *p);

/* An endpoint without a vmm (cm_ext_ops), e.g. a Linux VM: shell is its
 * struct partition (name, state), kept by the caller. */
int chanmgr_add_ext(struct chanmgr *cm, struct partition *shell,
		    const struct cm_ext_ops *ops, void *ctx);
/* The external endpoint asks to open `name`: the same decision as a thin
 * partition's (grant, integrity of both, peer up, map both ends); *r as
 * CTL_OPEN_REPLY would carry it. On PARLEY_OK *out is the channel, *side
 * the endpoint's side. Returns r->status. */
int chanmgr_ext_open(struct chanmgr *cm, struct partition *shell,
		     const char *name, struct ctl_open_reply *r,
		     struct cm_chan **out, int *side);
/* It closed its handle; it confirms an unmap chanmgr asked for. */
void chanmgr_ext_close(struct chanmgr *cm, struct partition *shell,
		       uint32_t chan, uint64_t handle);
void chanmgr_ext_unmapped(struct chanmgr *cm, struct partition *shell,
			  uint32_t chan);
/* Is channel id `chan` still there with `shell` mapped under `handle`? */
struct cm_chan *chanmgr_ext_chan(struct chanmgr *cm, struct partition *shell,
				 uint32_t chan, uint64_t handle, int *side);

/* part_opts.on_request with ctx = the chanmgr. */
void chanmgr_on_request(struct partition *p, const struct ctl_msg *m,
			void *ctx);

/* Housekeeping the event loop calls every tick (~100 ms): revocations past
 * their deadline are enforced (the vmm that did not confirm is killed, the
 * memory truncated), and a channel section found shorter than it was made
 * (only its writer can truncate it) stops that writer as compromised and
 * revokes the channel. Returns true if it did anything. */
bool chanmgr_tick(struct chanmgr *cm);

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
