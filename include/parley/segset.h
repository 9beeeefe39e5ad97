/*
 * parley segment sets: the definition/allocation table and the layouts
 * built on the segments, compiled into parley-smcp, the agent, the guest
 * SDK and the host-side tests.
 *
 * A segment set is a window of page-aligned segments shared by 2..64
 * members (partitions). Every segment has exactly one writer — a member or
 * the agent — and is its own memfd in the agent; a member that may only
 * read a segment gets only a read-only descriptor of it, as for channel
 * sections (ring.h), so the kernel refuses it a writable mapping:
 *
 *   segment 0                 the table (this header, members, segments)
 *                             writer: agent; readable by every member
 *   segments 1..ndecl         declared in the data set: pipes, queues,
 *                             plain areas; writer: one member or the agent
 *   then one per member       its position page (kind POS): where it has
 *                             read each pipe/queue up to; writer: the member
 *
 * The table is written by parley-smcp's compiler (the agent copies it into
 * segment 0) and changed afterwards only by the agent: a member that joins
 * is marked PRESENT, one that leaves or is quarantined REMOVED and its
 * segments REVOKED. Each change bumps `epoch` twice, around the write
 * (odd while writing), so a reader copies the table and keeps the copy
 * only if it read the same even epoch before and after.
 *
 * Everything read from shared memory is untrusted by its reader: the SDK
 * (guest/include/parley/segsdk.h) copies the table into private memory and
 * checks every field before using any (parley_segtab_read).
 *
 * Self-contained: only <stdint.h>.
 */
#ifndef PARLEY_SEGSET_H
#define PARLEY_SEGSET_H

#include <stdint.h>

#define PARLEY_SEGSET_MAGIC   0x7465736765736c70ull /* "plsegset" */
#define PARLEY_SEGSET_VERSION 1
#define PARLEY_SEGSET_PAGE    0x1000ull

#define PARLEY_SEGSET_NAME_MAX    64  /* set and member names, with NUL */
#define PARLEY_SEG_NAME_MAX       32  /* segment and queue names, with NUL */
#define PARLEY_SEGSET_MEMBERS_MIN 2
#define PARLEY_SEGSET_MEMBERS_MAX 64
#define PARLEY_SEGSET_DECL_MAX    63  /* declared segments */
/* The table, the declared segments, one position page per member. */
#define PARLEY_SEGSET_SEGS_MAX \
	(1 + PARLEY_SEGSET_DECL_MAX + PARLEY_SEGSET_MEMBERS_MAX)
/* A pipe's or queue's ring: a power of two in this range; an area: a
 * whole number of pages up to AREA_MAX. */
#define PARLEY_SEG_RING_MIN 0x1000ull
#define PARLEY_SEG_RING_MAX 0x1000000ull
#define PARLEY_SEG_AREA_MAX 0x4000000ull
/* The whole window, all segments together. */
#define PARLEY_SEGSET_WINDOW_MAX 0x10000000ull

/* A segment's writer when it is not a member. */
#define PARLEY_SEG_WRITER_AGENT 0xffffffffu

enum parley_seg_kind {
	PARLEY_SEG_TABLE = 1,  /* segment 0 */
	PARLEY_SEG_PIPE = 2,   /* one writer, its readers each at their own
				* position (in their position pages) */
	PARLEY_SEG_QUEUE = 3,  /* a pipe that belongs to a named queue: one
				* per writer, merged by the readers */
	PARLEY_SEG_AREA = 4,   /* plain shared memory */
	PARLEY_SEG_POS = 5,    /* a member's position page */
};

enum parley_member_state {
	PARLEY_MEMBER_ABSENT = 0,  /* declared, not attached yet */
	PARLEY_MEMBER_PRESENT = 1, /* attached */
	PARLEY_MEMBER_REMOVED = 2, /* left or quarantined: its segments are
				    * revoked for everyone */
};

enum parley_seg_state {
	PARLEY_SEG_LIVE = 1,
	PARLEY_SEG_REVOKED = 2,    /* its writer was removed: unmapped from
				    * every member, memory truncated */
};

struct parley_segset_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;        /* sizeof(struct parley_segset_hdr) */
	uint64_t epoch;           /* even: stable; odd: the agent is writing */
	uint64_t table_size;      /* bytes of segment 0, whole pages */
	uint64_t window_size;     /* every segment, end to end */
	uint32_t nmembers;        /* 2..MEMBERS_MAX */
	uint32_t nsegs;           /* table + declared + one per member */
	uint32_t ndecl;           /* declared segments: numbers 1..ndecl */
	uint32_t member_off;      /* in segment 0: struct parley_segset_member[] */
	uint32_t seg_off;         /* in segment 0: struct parley_segset_seg[] */
	uint32_t reserved0;
	char name[PARLEY_SEGSET_NAME_MAX]; /* NUL-terminated */
	uint64_t reserved[8];     /* zero */
};

struct parley_segset_member {
	char name[PARLEY_SEGSET_NAME_MAX]; /* NUL-terminated partition name */
	uint32_t id;              /* == its index; bit `id` of a readers mask */
	uint32_t state;           /* enum parley_member_state */
	uint32_t pos_seg;         /* the number of its position page */
	uint32_t reserved;        /* zero */
	uint64_t joins;           /* times it attached (a rejoin is seen) */
};

struct parley_segset_seg {
	char name[PARLEY_SEG_NAME_MAX];  /* NUL-terminated, unique in the set */
	char queue[PARLEY_SEG_NAME_MAX]; /* QUEUE: the queue's name; else "" */
	uint32_t number;          /* == its index */
	uint32_t kind;            /* enum parley_seg_kind */
	uint64_t offset;          /* in the window; page-aligned, ascending */
	uint64_t size;            /* whole pages */
	uint32_t writer;          /* member id or PARLEY_SEG_WRITER_AGENT */
	uint32_t state;           /* enum parley_seg_state */
	uint64_t readers;         /* bit i: member i maps it (read-only);
				   * the writer maps it read-write */
	uint64_t reserved;        /* zero */
};

/* Table bytes for n members and s segments, rounded up to pages. */
#define PARLEY_SEGSET_TABLE_BYTES(n, s)                                    \
	((((uint64_t)sizeof(struct parley_segset_hdr) +                    \
	   (uint64_t)(n) * sizeof(struct parley_segset_member) +           \
	   (uint64_t)(s) * sizeof(struct parley_segset_seg)) +             \
	  PARLEY_SEGSET_PAGE - 1) & ~(PARLEY_SEGSET_PAGE - 1))

/*
 * A pipe or queue segment: one page written by its writer, then the ring.
 * Records are length-prefixed (uint32 length, uint32 zero) and 8-byte
 * aligned, a byte stream that wraps at `ring` (a record may straddle the
 * end); `head` is the free-running byte count written. Reader m keeps its
 * own free-running position for segment s in its position page at
 * at[s].v; the writer never overwrites what a reader that may read the
 * segment and is PRESENT has not read.
 */
#define PARLEY_SEG_PIPE_MAGIC 0x657069706c727000ull /* "\0prlpipe" */
#define PARLEY_SEG_REC_HDR 8u

struct parley_seg_pipe_hdr {
	uint64_t magic;
	uint64_t ring;            /* ring bytes: segment size - one page */
	uint64_t reserved[6];
	uint64_t head;            /* own cache line */
	uint64_t pad[7];
};

/* A position page: one cache line per segment number below 64 (pipes and
 * queues are declared segments, numbers 1..63). */
struct parley_seg_pos {
	struct {
		uint64_t v;
		uint64_t pad[7];
	} at[64];
};

_Static_assert(sizeof(struct parley_segset_hdr) == 192, "hdr layout");
_Static_assert(sizeof(struct parley_segset_member) == 88, "member layout");
_Static_assert(sizeof(struct parley_segset_seg) == 112, "seg layout");
_Static_assert(sizeof(struct parley_seg_pipe_hdr) == 128, "pipe layout");
_Static_assert(sizeof(struct parley_seg_pos) == PARLEY_SEGSET_PAGE,
	       "a position page is one page");

#endif
