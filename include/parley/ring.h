/*
 * parley channel memory and its rings: the one layout compiled into the
 * agent, the guest SDK and the host-side tests.
 *
 * A channel's shared memory (mapped at the guest-physical address CHAN_OPEN
 * returns) is a run of page-aligned sections, each with exactly one writer
 * and each its own memfd in the agent; a side that may only read a section
 * is given only a read-only descriptor of it, so a write where it may not
 * is refused by the kernel and stopped by the hardware:
 *
 *   offset 0                      channel header       writer: agent
 *   per queue q (1, or 2 for a both-way channel):
 *     q.prod_off  (1 page)        producer index       writer: producer
 *     q.cons_off  (1 page)        consumer index       writer: consumer
 *     q.data_off  (ring_bytes)    records              writer: producer
 *
 * Records are length-prefixed and 8-byte aligned, written as a byte stream
 * that wraps at ring_bytes (a record may straddle the end). Indices are
 * free-running byte counts; `head - tail` is the fill level.
 *
 * Everything read from the shared pages is untrusted by its reader: an
 * index is read once into private memory and checked (fill level within
 * ring_bytes, record length within the fill level) before it is used. A
 * check that fails returns PARLEY_RING_CORRUPT and leaves the ring alone.
 *
 * Freestanding: only <stdint.h>, <stddef.h> and compiler builtins.
 */
#ifndef PARLEY_RING_H
#define PARLEY_RING_H

#include <stddef.h>
#include <stdint.h>

#define PARLEY_RING_MAGIC    0x676e6972796c7270ull /* "prlyring" */
#define PARLEY_RING_VERSION  1
#define PARLEY_RING_MIN      0x1000ull
#define PARLEY_RING_MAX      0x1000000ull
#define PARLEY_RING_PAGE     0x1000ull
#define PARLEY_RING_REC_HDR  8u
#define PARLEY_RING_QUEUES_MAX 2

/* Queue directions: which endpoint of the grant produces into it. */
#define PARLEY_RING_FROM_A 0
#define PARLEY_RING_FROM_B 1

struct parley_chan_queue_desc {
	uint64_t prod_off, cons_off, data_off;
	uint32_t from;      /* PARLEY_RING_FROM_A or _B */
	uint32_t reserved;
};

/* Page 0 of a channel: written once by the agent, read-only to both. */
struct parley_chan_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nqueues;
	uint64_t ring_bytes;  /* per queue; power of two */
	uint64_t total_bytes; /* the whole window */
	struct parley_chan_queue_desc q[PARLEY_RING_QUEUES_MAX];
	char name[64];        /* the channel's name, NUL-terminated */
};

/* The producer's page. `waiting` says the producer sleeps until space frees
 * up: a consumer that frees space while it is set should notify. */
struct parley_ring_prod {
	uint64_t head;
	uint32_t waiting;
	uint32_t reserved;
};

/* The consumer's page. `waiting` is the message-pending flag: a producer
 * notifies only while it is set, so a busy consumer costs no exits. */
struct parley_ring_cons {
	uint64_t tail;
	uint32_t waiting;
	uint32_t reserved;
};

enum parley_ring_result {
	PARLEY_RING_OK = 0,
	PARLEY_RING_EMPTY = 1,    /* pop: nothing to read */
	PARLEY_RING_FULL = 2,     /* push: not enough room now */
	PARLEY_RING_TOOBIG = 3,   /* push: can never fit; pop: buffer too small */
	PARLEY_RING_CORRUPT = 4,  /* the other side broke the ring's rules */
};

/* One side's private view of a queue. Set up once; the pointers are into
 * shared memory, everything else is private. */
struct parley_ring {
	struct parley_ring_prod *prod;
	struct parley_ring_cons *cons;
	uint8_t *data;
	uint64_t size;            /* ring_bytes */
};

static inline uint64_t parley_ring_align(uint64_t n)
{
	return (n + 7) & ~7ull;
}

/* Bytes of ring a record of `len` payload bytes takes. */
static inline uint64_t parley_ring_rec_bytes(uint32_t len)
{
	return parley_ring_align(PARLEY_RING_REC_HDR + (uint64_t)len);
}

static inline uint64_t parley_ring_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void parley_ring_store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Copy into / out of the ring at a free-running offset, wrapping. */
static inline void parley_ring_put(const struct parley_ring *r, uint64_t at,
				   const void *src, uint64_t n)
{
	uint64_t off = at & (r->size - 1), first = r->size - off;
	if (n == 0)
		return; /* an empty message may come without a buffer */
	if (first > n)
		first = n;
	__builtin_memcpy(r->data + off, src, first);
	__builtin_memcpy(r->data, (const uint8_t *)src + first, n - first);
}

static inline void parley_ring_get(const struct parley_ring *r, uint64_t at,
				   void *dst, uint64_t n)
{
	uint64_t off = at & (r->size - 1), first = r->size - off;
	if (n == 0)
		return;
	if (first > n)
		first = n;
	__builtin_memcpy(dst, r->data + off, first);
	__builtin_memcpy((uint8_t *)dst + first, r->data, n - first);
}

/* Producer: the fill level as seen now, or -1 if the consumer's index is
 * impossible (ahead of head, or behind by more than the ring). */
static inline int64_t parley_ring_used(const struct parley_ring *r,
				       uint64_t head)
{
	uint64_t tail = parley_ring_load(&r->cons->tail);
	uint64_t used = head - tail;
	return used > r->size ? -1 : (int64_t)used;
}

/*
 * Push up to n messages (msgs[i], lens[i]) and publish them with one index
 * store. Returns how many were pushed in *pushed and a parley_ring_result
 * for the first one that was not (OK if all were).
 */
static inline int parley_ring_push_batch(struct parley_ring *r,
					 const void *const *msgs,
					 const uint32_t *lens, unsigned n,
					 unsigned *pushed)
{
	uint64_t head = r->prod->head; /* our own index: we are its writer */
	int64_t used = parley_ring_used(r, head);
	int rc = PARLEY_RING_OK;
	unsigned i = 0;
	if (used < 0)
		rc = PARLEY_RING_CORRUPT;
	for (; rc == PARLEY_RING_OK && i < n; i++) {
		uint64_t need = parley_ring_rec_bytes(lens[i]);
		if (need > r->size) {
			rc = PARLEY_RING_TOOBIG;
			break;
		}
		if ((uint64_t)used + need > r->size) {
			rc = PARLEY_RING_FULL;
			break;
		}
		uint32_t hdr[2] = { lens[i], 0 };
		parley_ring_put(r, head, hdr, sizeof(hdr));
		parley_ring_put(r, head + PARLEY_RING_REC_HDR, msgs[i], lens[i]);
		head += need;
		used += (int64_t)need;
	}
	if (i)
		parley_ring_store(&r->prod->head, head);
	*pushed = i;
	return rc;
}

static inline int parley_ring_push(struct parley_ring *r, const void *msg,
				   uint32_t len)
{
	unsigned pushed;
	return parley_ring_push_batch(r, &msg, &len, 1, &pushed);
}

/*
 * Pop one message into buf (cap bytes); *len gets its length. The consumer
 * index is advanced with `commit` (separately, so a batch can publish once):
 * parley_ring_pop() does both.
 */
static inline int parley_ring_peek(const struct parley_ring *r, uint64_t tail,
				   void *buf, uint32_t cap, uint32_t *len,
				   uint64_t *next)
{
	uint64_t head = parley_ring_load(&r->prod->head);
	uint64_t avail = head - tail;
	if (avail == 0)
		return PARLEY_RING_EMPTY;
	if (avail > r->size || avail < PARLEY_RING_REC_HDR || (tail & 7))
		return PARLEY_RING_CORRUPT;
	uint32_t hdr[2];
	parley_ring_get(r, tail, hdr, sizeof(hdr));
	uint64_t need = parley_ring_rec_bytes(hdr[0]);
	if (need > avail)
		return PARLEY_RING_CORRUPT;
	*len = hdr[0];
	if (hdr[0] > cap)
		return PARLEY_RING_TOOBIG;
	parley_ring_get(r, tail + PARLEY_RING_REC_HDR, buf, hdr[0]);
	*next = tail + need;
	return PARLEY_RING_OK;
}

static inline int parley_ring_pop(struct parley_ring *r, void *buf,
				  uint32_t cap, uint32_t *len)
{
	uint64_t next, tail = r->cons->tail; /* our own index */
	int rc = parley_ring_peek(r, tail, buf, cap, len, &next);
	if (rc == PARLEY_RING_OK)
		parley_ring_store(&r->cons->tail, next);
	return rc;
}

/* Pop up to n messages into bufs[i] (caps[i] bytes each), publishing the
 * consumer index once. */
static inline int parley_ring_pop_batch(struct parley_ring *r, void *const *bufs,
					const uint32_t *caps, uint32_t *lens,
					unsigned n, unsigned *popped)
{
	uint64_t tail = r->cons->tail, next;
	int rc = PARLEY_RING_OK;
	unsigned i = 0;
	for (; i < n; i++) {
		rc = parley_ring_peek(r, tail, bufs[i], caps[i], &lens[i], &next);
		if (rc != PARLEY_RING_OK)
			break;
		tail = next;
	}
	if (i)
		parley_ring_store(&r->cons->tail, tail);
	*popped = i;
	return i && rc == PARLEY_RING_EMPTY ? PARLEY_RING_OK : rc;
}

/* Is there anything to read? (Checked by the agent before it sleeps a
 * waiter; a corrupt ring counts as "yes" so the waiter sees the error.) */
static inline int parley_ring_readable(const struct parley_ring *r)
{
	uint64_t head = parley_ring_load(&r->prod->head);
	uint64_t tail = parley_ring_load(&r->cons->tail);
	return head != tail;
}

#endif
