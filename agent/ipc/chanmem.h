/*
 * Channel memory, private to agent/ipc: the sections of one channel as
 * struct cm_chan (chanmgr.h) describes them. Each section is its own memfd
 * with exactly one writer; the side that may only read it is handed only a
 * read-only re-open, so the kernel refuses that side a writable mapping,
 * a write, a truncation. Sections are sealed against growth and further
 * seals, never against shrinking, so that revocation can cut them.
 */
#ifndef PARLEY_IPC_CHANMEM_H
#define PARLEY_IPC_CHANMEM_H

#include "agent/ipc/chanmgr.h"

/* The ring header for ch->g and the sections' sizes and writers. */
void chanmem_layout(struct cm_chan *ch);

/* Create, size, seal and re-open every section, write the header, make
 * the doorbells. 0 or -errno (chanmem_close releases what was made). */
int chanmem_create(struct cm_chan *ch);

/* The window's segments for one side (0: endpoint a, 1: b): ring.h's
 * offsets, each from its section's memfd, read-only where that side is not
 * the writer. */
void chanmem_segments(const struct cm_chan *ch, int side, struct ctl_map *m);

/* The descriptors for that side's CTL_MAP: its doorbell, the peer's, then
 * per section the writable memfd if it is the writer, else the read-only
 * re-open (the descriptors stay ours). Returns how many. */
unsigned chanmem_fds(const struct cm_chan *ch, int side, int *fds);

/* Revocation in the kernel: every section cut to 0 bytes; a vmm that kept
 * a mapping faults on its next access. */
void chanmem_truncate(struct cm_chan *ch);

/* The first section shorter than it was made (only its writer can have cut
 * it), or -1. */
int chanmem_cut(const struct cm_chan *ch);

/* Close every descriptor of the channel's memory. */
void chanmem_close(struct cm_chan *ch);

#endif
