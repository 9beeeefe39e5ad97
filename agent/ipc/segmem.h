/*
 * Segment-set memory in the agent (issue 14): one memfd per segment of a
 * compiled table (include/parley/segset.h), each with exactly one writer.
 * A member is handed the writable memfd only of the segments it writes,
 * read-only re-opens of those it may read, nothing of the rest, so the
 * kernel — not the vmm — refuses it a writable mapping of anything else.
 * Segment 0 (the table) is the agent's: only it writes the table, through
 * its own mapping, bumping the epoch around every change.
 *
 * Revocation is in the kernel too: removing a member marks it REMOVED,
 * its segments REVOKED, and cuts their memfds to 0 bytes (sealed against
 * growth, never against shrinking), so a mapping kept by anyone faults on
 * its next access.
 *
 * Reached from partitions through segmgr.c (SEG_ATTACH / SEG_DETACH).
 */
#ifndef PARLEY_IPC_SEGMEM_H
#define PARLEY_IPC_SEGMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/segset.h>
#include "common/err.h"

struct segmem {
	char name[PARLEY_SEGSET_NAME_MAX];
	uint32_t nsegs, nmembers;
	struct parley_segset_hdr *hdr;   /* our mapping of segment 0 */
	struct parley_segset_member *member;
	struct parley_segset_seg *seg;
	int mem[PARLEY_SEGSET_SEGS_MAX];
	int mem_ro[PARLEY_SEGSET_SEGS_MAX];
};

/* One member's view of the set: the segments it maps, where, from which
 * descriptor (owned by the segmem) and whether read-only. */
struct segmem_view {
	unsigned n;
	uint64_t window_size;
	struct {
		uint32_t seg;
		uint64_t off, len;
		int fd;
		int readonly;
	} s[PARLEY_SEGSET_SEGS_MAX];
};

/* Make the memory of a table segset_compile() made (trusted: ours). */
int segmem_create(struct segmem *sm, const uint8_t *table, size_t len,
		  struct parley_err *err);
void segmem_close(struct segmem *sm);

/* The segments `member` maps now: LIVE ones it writes (read-write) or may
 * read (read-only), segment 0 read-only for all. -EINVAL for no member. */
int segmem_view(const struct segmem *sm, uint32_t member,
		struct segmem_view *v);

/* The member attaches: PRESENT, joins + 1. A member removed before gets
 * fresh memory for the segments it writes (LIVE again). 0 or -errno. */
int segmem_join(struct segmem *sm, uint32_t member);

/* The member leaves or is quarantined, in two steps as channels are
 * revoked: segmem_remove marks it REMOVED and every segment it writes
 * REVOKED in the table (the SDK's ends see _CHANGED before their next
 * access) and returns the members to notify (PRESENT ones, as a mask);
 * segmem_cut, once they confirmed their unmap or a deadline passed, cuts
 * those segments to 0 bytes, so a mapping anyone kept faults. */
uint64_t segmem_remove(struct segmem *sm, uint32_t member);
void segmem_cut(struct segmem *sm, uint32_t member);

#endif
