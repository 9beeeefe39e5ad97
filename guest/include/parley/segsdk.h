/*
 * Segment sets in the SDK: the table reader and what is built on the
 * segments (pipes, queues, plain areas). Freestanding (no libc, no
 * hypercalls): the same code runs in partitions, in host-side tests and in
 * the fuzz target for the table reader.
 *
 * `base` is where the set's window is mapped (segment i at base +
 * seg[i].offset); `self` is the caller's member id. Everything read from
 * the window is untrusted: the table is copied and checked whole before
 * use, and every index read from a pipe is checked before it is used.
 * Calls never block: PARLEY_SEG_AGAIN means full / empty / being changed,
 * try again (a partition sleeps or spins in between).
 */
#ifndef PARLEY_SEGSDK_H
#define PARLEY_SEGSDK_H

#include <stddef.h>
#include <stdint.h>
#include <parley/segset.h>

enum parley_seg_rc {
	PARLEY_SEG_OK = 0,
	PARLEY_SEG_AGAIN = -1,    /* full, empty, or the table is changing */
	PARLEY_SEG_INVAL = -2,    /* the caller's argument */
	PARLEY_SEG_CORRUPT = -3,  /* shared memory failed a check */
	PARLEY_SEG_NOENT = -4,    /* no such segment, member or queue */
	PARLEY_SEG_ACCESS = -5,   /* not the writer / not a reader */
	PARLEY_SEG_GONE = -6,     /* revoked: the segment's writer was removed */
	PARLEY_SEG_CHANGED = -7,  /* the table changed since this end looked:
				   * read it again, then _update (a pipe) or
				   * open the queue again */
};

/* A checked private copy of the table. */
struct parley_segtab {
	struct parley_segset_hdr hdr;
	struct parley_segset_member member[PARLEY_SEGSET_MEMBERS_MAX];
	struct parley_segset_seg seg[PARLEY_SEGSET_SEGS_MAX];
};

/* Copy the table from segment 0 (`len` bytes mapped there) and check every
 * field. PARLEY_SEG_OK, _AGAIN (the agent is changing it: the epoch was odd
 * or moved during the copy), or _CORRUPT. */
int parley_segtab_read(const volatile void *seg0, uint64_t len,
		       struct parley_segtab *t);
/* The checks alone, on a copy already in private memory. */
int parley_segtab_check(const struct parley_segtab *t, uint64_t len);

/* Segment number by name, member id by name: >= 0 or PARLEY_SEG_NOENT. */
int parley_segtab_find(const struct parley_segtab *t, const char *name);
int parley_segtab_member(const struct parley_segtab *t, const char *name);

/* A plain area: its address and size; *writable 1 for its writer. */
int parley_seg_area(const struct parley_segtab *t, uint8_t *base,
		    uint32_t self, const char *name, volatile uint8_t **p,
		    uint64_t *size, int *writable);

/* One end of a pipe (or of one queue segment). */
struct parley_seg_pipe {
	uint32_t seg, self;
	uint32_t from;                    /* the segment's writer */
	int writer;                       /* 1: this end writes */
	volatile struct parley_seg_pipe_hdr *hdr;
	volatile uint8_t *ring;
	uint64_t ring_size;
	uint64_t at;                      /* writer: head; reader: position */
	volatile struct parley_seg_pos *own_pos;      /* reader */
	uint64_t readers;                 /* writer: whose positions count */
	const volatile uint64_t *epoch;   /* the table's, in segment 0 */
	uint64_t seen;                    /* the epoch this end last used */
	const volatile struct parley_seg_pos *pos[PARLEY_SEGSET_MEMBERS_MAX];
};

/* The writer's end: it must be the segment's writer; the ring starts
 * empty. The reader's end: it must be a reader; it starts at the position
 * its position page holds when the writer still has everything from there
 * (the writer never overwrites what a PRESENT reader has not read), else
 * at the head: a late joiner reads what is still in the ring from its
 * position, or what is written from now on. */
int parley_seg_pipe_writer(struct parley_seg_pipe *p,
			   const struct parley_segtab *t, uint8_t *base,
			   uint32_t self, const char *name);
int parley_seg_pipe_reader(struct parley_seg_pipe *p,
			   const struct parley_segtab *t, uint8_t *base,
			   uint32_t self, const char *name);
/* After the table changed (a member joined or left; send and recv say
 * _CHANGED): t is the table read again. For the writer, whose positions
 * hold it back — the PRESENT readers. _OK, or _GONE when the segment was
 * revoked (the end must not be used again). Send and recv look at the
 * table's epoch first, so an end that keeps to this never touches a
 * segment the agent revoked: the agent cuts a removed member's memory only
 * after telling the others (agent/ipc/segmem.h). */
int parley_seg_pipe_update(struct parley_seg_pipe *p,
			   const struct parley_segtab *t);

/* One message of len bytes; _CHANGED (above); _AGAIN when some present reader has not read
 * far enough, _INVAL for a message that can never fit. A reader whose
 * position is out of range (not yet started, or hostile) holds no one
 * back: it only loses its own messages. */
int parley_seg_send(struct parley_seg_pipe *p, const void *buf, uint32_t len);
/* The next message into buf (cap bytes), its length in *len; _AGAIN when
 * there is none, _INVAL when it is larger than cap (left in place). */
int parley_seg_recv(struct parley_seg_pipe *p, void *buf, uint32_t cap,
		    uint32_t *len);

/* A queue: one segment per writer, merged by the reader. */
struct parley_seg_queue {
	unsigned n, next;
	struct parley_seg_pipe in[PARLEY_SEGSET_DECL_MAX];
};

/* The reader's end: every segment of queue `name` this member may read;
 * PARLEY_SEG_NOENT if there is none. The writer's end is the pipe writer
 * of its own segment of the queue (parley_seg_queue_writer). */
int parley_seg_queue_reader(struct parley_seg_queue *q,
			    const struct parley_segtab *t, uint8_t *base,
			    uint32_t self, const char *name);
int parley_seg_queue_writer(struct parley_seg_pipe *p,
			    const struct parley_segtab *t, uint8_t *base,
			    uint32_t self, const char *queue);
/* The next message from any writer (round robin); *from gets the writer's
 * member id. */
int parley_seg_queue_recv(struct parley_seg_queue *q, void *buf,
			  uint32_t cap, uint32_t *len, uint32_t *from);

#endif
