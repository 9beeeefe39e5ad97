/*
 * Private to agent/ipc: the parts of chanmgr.c that the service manager
 * (svcmgr.c) builds on — channel memory and mapping, re-measurement,
 * revocation and audit — and svcmgr.c's entry points chanmgr.c calls.
 */
#ifndef PARLEY_IPC_CHANMGR_INT_H
#define PARLEY_IPC_CHANMGR_INT_H

#include "agent/ipc/chanmgr.h"

const char *cm_status_name(int st);
struct cm_part *cm_part_of(struct partition *p);
struct cm_part *cm_part_named(struct chanmgr *cm, const char *name);
void cm_emit(struct chanmgr *cm, const char *event, const char *part,
	     const char *chan, const char *reason, const char *file,
	     const char *detail);
int cm_chan_create(struct chanmgr *cm, const struct grant *g,
		   struct cm_chan **out);
/* Map the channel into end `side`'s partition (slot, window, CTL_MAP). */
int cm_map_end(struct cm_chan *ch, int side);
void cm_chan_revoke(struct chanmgr *cm, struct cm_chan *ch, const char *why);
bool cm_peer_up(const struct cm_part *peer);

/* A mapping thin partition cp asks for (a channel open, a service call,
 * a segment-set attach), before its re-measure: true if its bucket
 * (CM_OPEN_BURST, CM_OPENS_PER_S) has a token, taken; a Linux VM's has
 * its own (always true here). cm_open_give_back: refused before any
 * re-measure, the token back. */
bool cm_open_take(struct cm_part *cp);
void cm_open_give_back(struct cm_part *cp);
#define CM_OPEN_LIMIT_DETAIL "more than 64 a second"

/* What a failed re-measurement found: the file, and "partition/file". */
struct cm_verdict {
	char file[PARLEY_CONFIG_NAME_MAX + 80];
	char detail[PARLEY_CONFIG_NAME_MAX + 144];
};
/* Re-measure `who`: 0; PARLEY_E_INTEGRITY (it is quarantined) or
 * PARLEY_E_PEER_DOWN (no dirty report), with *v filled. */
int cm_integrity(struct chanmgr *cm, struct cm_part *who,
		 struct cm_verdict *v);

/* svcmgr.c: a service request (op != CTL_OP_CHAN_OPEN) answered in *r. */
void svcmgr_on_req(struct chanmgr *cm, struct cm_part *cp,
		   const struct ctl_open_req *req, struct ctl_open_reply *r);
/* The partition stopped: its offers and its calls not yet accepted go. */
void svcmgr_gone(struct chanmgr *cm, struct cm_part *cp);
/* The channel is about to be freed: no pending call may name it. */
void svcmgr_forget_chan(struct chanmgr *cm, struct cm_chan *ch);

/* A free handle slot (not a channel's, not a segment's) and a free
 * guest-physical range in the channel area (next-fit). */
int cm_slot_alloc(struct cm_part *cp, unsigned *slot);
int cm_window_alloc(struct cm_part *cp, uint64_t size, uint64_t *gpa);

/* segmgr.c: segment sets in partitions. */
/* CTL_OP_SEG_ATTACH / _DETACH, answered in *r. */
void segmgr_on_req(struct chanmgr *cm, struct cm_part *cp,
		   const struct ctl_open_req *req, struct ctl_open_reply *r);
/* A vmm's CTL_MAPPED (failed), CTL_UNMAPPED or CTL_CLOSED for a window id
 * that is not a channel's: true if it was a segment's. */
bool segmgr_on_ref(struct chanmgr *cm, struct partition *p, uint32_t type,
		   const struct ctl_chan_ref *ref);
/* The partition stopped / was quarantined: removed from every set. */
void segmgr_gone(struct chanmgr *cm, struct cm_part *cp);
void segmgr_quarantine(struct chanmgr *cm, struct cm_part *cp);
/* The policy changed: sets removed or changed lose all their members. */
void segmgr_policy(struct chanmgr *cm);
/* Deadlines of removals whose unmaps are not all confirmed. */
bool segmgr_tick(struct chanmgr *cm);
void segmgr_free(struct chanmgr *cm);

#endif
