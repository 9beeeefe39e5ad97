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

#endif
