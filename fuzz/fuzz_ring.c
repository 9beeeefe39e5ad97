/*
 * libFuzzer target for the SPSC ring (include/parley/ring.h): the input is
 * a program of operations on one queue: pushes and pops (single and batch)
 * with sizes from the input, and the writes a hostile peer can make: any
 * value into the producer's head or the consumer's tail, any length into a
 * record header, any bytes into the data.
 *
 * The data sits between PROT_NONE pages and every message and buffer is an
 * exact-size heap block, so a read or write outside them faults or is
 * caught by ASan. After every call: the result is one of the defined codes
 * and the one the header's contract gives for the indices and header as
 * they were; a failed call moved no index; the consumer wrote no data; the
 * producer wrote only its record; nobody touched the other side's index or
 * the `waiting` words. While no hostile write has happened since the last
 * reset, a model queue also predicts every result and every payload.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <parley/ring.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The ring is freestanding; so is this target (no common/err.c). */
#define CHECK(c)                                                         \
	do {                                                             \
		if (!(c)) {                                              \
			fprintf(stderr, "fuzz_ring: %s:%d: %s\n",        \
				__FILE__, __LINE__, #c);                 \
			abort();                                         \
		}                                                        \
	} while (0)
#define BATCH_MAX 8
#define MODEL_MAX 16384
#define OPS_MAX 4096

/* ---- input reader ---------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v |= (uint64_t)(in->n ? *in->p : 0) << (8 * i);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

/* A payload length: mostly small, sometimes near the ring's size or the
 * top of uint32_t. */
static uint32_t take_len(struct in *in, uint64_t ring)
{
	uint8_t kind = (uint8_t)take(in, 1);
	uint32_t v = (uint32_t)take(in, 2);
	switch (kind % 8) {
	case 0: return UINT32_MAX - (v % 64);
	case 1: return (uint32_t)(ring - 16 + v % 32);
	case 2: return v;
	default: return v % 512;
	}
}

/* ---- the ring, in guarded memory --------------------------------------- */

struct region {
	uint8_t *p;
	size_t len;
};

static struct region guarded(size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (len + pg - 1) / pg * pg;
	uint8_t *base = mmap(NULL, body + 2 * pg, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(base != MAP_FAILED);
	CHECK(mprotect(base + pg, body, PROT_READ | PROT_WRITE) == 0);
	return (struct region){ base + pg + (body - len), len };
}

static const uint64_t sizes[] = { 4096, 8192, 65536 };

struct world {
	struct parley_ring r;
	uint8_t *snap;            /* data before the call */
	/* The model, valid while `honest`. */
	bool honest;
	uint64_t q_id[MODEL_MAX];
	uint32_t q_len[MODEL_MAX];
	unsigned qh, qt;
	uint64_t fill, next_id;
};

static struct world w;

static void setup(uint64_t ring)
{
	static struct region data[3], prod, cons;
	static uint8_t *snap;
	int i = ring == 4096 ? 0 : ring == 8192 ? 1 : 2;
	if (!data[i].p)
		data[i] = guarded(ring);
	if (!prod.p) {
		prod = guarded(sizeof(struct parley_ring_prod));
		cons = guarded(sizeof(struct parley_ring_cons));
		snap = malloc(65536);
		CHECK(snap);
	}
	w.r.data = data[i].p;
	w.r.prod = (struct parley_ring_prod *)prod.p;
	w.r.cons = (struct parley_ring_cons *)cons.p;
	w.r.size = ring;
	w.snap = snap;
	memset(w.r.data, 0, ring);
}

static void reset(uint64_t at)
{
	at &= ~7ull;
	w.r.prod->head = at;
	w.r.cons->tail = at;
	w.r.prod->waiting = 0x11111111;
	w.r.prod->reserved = 0x22222222;
	w.r.cons->waiting = 0x33333333;
	w.r.cons->reserved = 0x44444444;
	w.honest = true;
	w.qh = w.qt = 0;
	w.fill = 0;
}

static void check_side_words(void)
{
	CHECK(w.r.prod->waiting == 0x11111111);
	CHECK(w.r.prod->reserved == 0x22222222);
	CHECK(w.r.cons->waiting == 0x33333333);
	CHECK(w.r.cons->reserved == 0x44444444);
}

/* ---- messages ---------------------------------------------------------- */

static uint8_t msg_byte(uint64_t id, uint32_t i)
{
	uint64_t x = (id + 1) * 0x9e3779b97f4a7c15ull + i;
	x ^= x >> 29;
	return (uint8_t)(x * 0xbf58476d1ce4e5b9ull >> 56);
}

/* An exact-size heap copy (a 1-byte block for a length that must never be
 * read: any read of it past byte 0 is an ASan report). */
static uint8_t *make_msg(uint32_t len, uint64_t id)
{
	if (len > 0x20000)
		return malloc(1);
	uint8_t *b = malloc(len ? len : 1);
	CHECK(b);
	for (uint32_t i = 0; i < len; i++)
		b[i] = msg_byte(id, i);
	return b;
}

static bool msg_ok(const uint8_t *b, uint32_t len, uint64_t id)
{
	for (uint32_t i = 0; i < len; i++)
		if (b[i] != msg_byte(id, i))
			return false;
	return true;
}

/* ---- what the header's contract says ----------------------------------- */

static int push_oracle(uint64_t head, uint64_t tail, uint32_t len)
{
	uint64_t used = head - tail, need = parley_ring_rec_bytes(len);
	if (used > w.r.size)
		return PARLEY_RING_CORRUPT;
	if (need > w.r.size)
		return PARLEY_RING_TOOBIG;
	return used + need > w.r.size ? PARLEY_RING_FULL : PARLEY_RING_OK;
}

static int pop_oracle(uint64_t head, uint64_t tail, uint32_t cap,
		      uint32_t *len)
{
	uint64_t avail = head - tail;
	if (avail == 0)
		return PARLEY_RING_EMPTY;
	if (avail > w.r.size || avail < 8 || (tail & 7))
		return PARLEY_RING_CORRUPT;
	uint32_t hdr[2];
	parley_ring_get(&w.r, tail, hdr, 8);
	*len = hdr[0];
	if (parley_ring_rec_bytes(hdr[0]) > avail)
		return PARLEY_RING_CORRUPT;
	return hdr[0] > cap ? PARLEY_RING_TOOBIG : PARLEY_RING_OK;
}

/* ---- the model --------------------------------------------------------- */

static int model_push(uint32_t len)
{
	uint64_t need = parley_ring_rec_bytes(len);
	if (need > w.r.size)
		return PARLEY_RING_TOOBIG;
	if (w.fill + need > w.r.size)
		return PARLEY_RING_FULL;
	return PARLEY_RING_OK;
}

static void model_pushed(uint32_t len, uint64_t id)
{
	CHECK(w.qh - w.qt < MODEL_MAX);
	w.q_id[w.qh % MODEL_MAX] = id;
	w.q_len[w.qh++ % MODEL_MAX] = len;
	w.fill += parley_ring_rec_bytes(len);
}

static int model_pop(uint32_t cap)
{
	if (w.qh == w.qt)
		return PARLEY_RING_EMPTY;
	return w.q_len[w.qt % MODEL_MAX] > cap ? PARLEY_RING_TOOBIG
					       : PARLEY_RING_OK;
}

static void model_popped(const uint8_t *buf, uint32_t len)
{
	CHECK(len == w.q_len[w.qt % MODEL_MAX]);
	CHECK(msg_ok(buf, len, w.q_id[w.qt % MODEL_MAX]));
	w.fill -= parley_ring_rec_bytes(len);
	w.qt++;
}

/* ---- checks around one call -------------------------------------------- */

/* The producer wrote records [from, to) and nothing else: the rest of the
 * ring, [to, from + size) as free-running offsets, is as it was. */
static void check_producer_wrote(uint64_t from, uint64_t to)
{
	uint64_t mask = w.r.size - 1, left = w.r.size - (to - from);
	uint64_t off = to & mask, first = w.r.size - off;
	if (first > left)
		first = left;
	CHECK(to - from <= w.r.size);
	CHECK(memcmp(w.r.data + off, w.snap + off, first) == 0);
	CHECK(memcmp(w.r.data, w.snap, left - first) == 0);
}

static void do_push(struct in *in)
{
	uint32_t len = take_len(in, w.r.size);
	uint64_t id = w.next_id++;
	uint8_t *m = make_msg(len, id);
	uint64_t head = w.r.prod->head, tail = w.r.cons->tail;
	int want = push_oracle(head, tail, len);
	if (w.honest)
		CHECK(model_push(len) == want);
	memcpy(w.snap, w.r.data, w.r.size);
	int rc = parley_ring_push(&w.r, m, len);
	CHECK(rc == want);
	CHECK(w.r.cons->tail == tail);
	if (rc == PARLEY_RING_OK) {
		uint64_t need = parley_ring_rec_bytes(len);
		CHECK(w.r.prod->head == head + need);
		check_producer_wrote(head, head + 8 + len);
		uint32_t hdr[2];
		parley_ring_get(&w.r, head, hdr, 8);
		CHECK(hdr[0] == len && hdr[1] == 0);
		if (w.honest)
			model_pushed(len, id);
	} else {
		CHECK(w.r.prod->head == head);
		CHECK(memcmp(w.snap, w.r.data, w.r.size) == 0);
	}
	free(m);
}

static void do_push_batch(struct in *in)
{
	unsigned n = (unsigned)take(in, 1) % (BATCH_MAX + 1);
	const void *msgs[BATCH_MAX];
	uint32_t lens[BATCH_MAX];
	uint8_t *bufs[BATCH_MAX];
	uint64_t ids[BATCH_MAX];
	for (unsigned i = 0; i < n; i++) {
		lens[i] = take_len(in, w.r.size);
		ids[i] = w.next_id++;
		msgs[i] = bufs[i] = make_msg(lens[i], ids[i]);
	}
	uint64_t head = w.r.prod->head, tail = w.r.cons->tail;
	/* The expected count and result, one record at a time. */
	unsigned want_n = 0;
	int want = PARLEY_RING_OK;
	uint64_t h = head;
	for (; want_n < n; want_n++) {
		want = push_oracle(h, tail, lens[want_n]);
		if (want != PARLEY_RING_OK)
			break;
		h += parley_ring_rec_bytes(lens[want_n]);
	}
	if (want_n == n)
		want = push_oracle(head, tail, 0) == PARLEY_RING_CORRUPT
			       ? PARLEY_RING_CORRUPT : PARLEY_RING_OK;
	memcpy(w.snap, w.r.data, w.r.size);
	unsigned done = 12345;
	int rc = parley_ring_push_batch(&w.r, msgs, lens, n, &done);
	CHECK(rc == want && done == want_n);
	CHECK(w.r.cons->tail == tail);
	CHECK(w.r.prod->head == h);
	if (done) {
		uint64_t last = h - parley_ring_rec_bytes(lens[done - 1]);
		check_producer_wrote(head, last + 8 + lens[done - 1]);
	} else {
		CHECK(memcmp(w.snap, w.r.data, w.r.size) == 0);
	}
	if (w.honest) {
		for (unsigned i = 0; i < done; i++) {
			CHECK(model_push(lens[i]) == PARLEY_RING_OK);
			model_pushed(lens[i], ids[i]);
		}
		if (done < n)
			CHECK(model_push(lens[done]) == rc);
	}
	for (unsigned i = 0; i < n; i++)
		free(bufs[i]);
}

/* One pop (or peek): the oracle's answer, the consumer's promises. */
static int pop_checked(uint8_t *buf, uint32_t cap, uint32_t *len,
		       bool commit)
{
	uint64_t head = w.r.prod->head, tail = w.r.cons->tail;
	uint32_t hdr_len = 0;
	int want = pop_oracle(head, tail, cap, &hdr_len);
	if (w.honest)
		CHECK(model_pop(cap) == want);
	memcpy(w.snap, w.r.data, w.r.size);
	int rc;
	if (commit) {
		rc = parley_ring_pop(&w.r, buf, cap, len);
	} else {
		uint64_t next = 0;
		rc = parley_ring_peek(&w.r, tail, buf, cap, len, &next);
		if (rc == PARLEY_RING_OK)
			CHECK(next == tail + parley_ring_rec_bytes(*len));
	}
	CHECK(rc == want);
	CHECK(memcmp(w.snap, w.r.data, w.r.size) == 0);
	CHECK(w.r.prod->head == head);
	if (rc == PARLEY_RING_OK || rc == PARLEY_RING_TOOBIG)
		CHECK(*len == hdr_len);
	if (rc == PARLEY_RING_OK && commit)
		CHECK(w.r.cons->tail == tail + parley_ring_rec_bytes(*len));
	else
		CHECK(w.r.cons->tail == tail);
	if (rc == PARLEY_RING_OK)
		CHECK(*len <= cap);
	return rc;
}

static void do_pop(struct in *in, bool commit)
{
	uint32_t cap = (uint32_t)take(in, 3) % 0x11000;
	uint8_t *buf = malloc(cap ? cap : 1);
	CHECK(buf);
	uint32_t len = 0;
	int rc = pop_checked(buf, cap, &len, commit);
	if (rc == PARLEY_RING_OK && w.honest && commit)
		model_popped(buf, len);
	free(buf);
}

static void do_pop_batch(struct in *in)
{
	unsigned n = (unsigned)take(in, 1) % (BATCH_MAX + 1);
	void *bufs[BATCH_MAX];
	uint32_t caps[BATCH_MAX], lens[BATCH_MAX];
	for (unsigned i = 0; i < n; i++) {
		caps[i] = (uint32_t)take(in, 3) % 0x11000;
		bufs[i] = malloc(caps[i] ? caps[i] : 1);
		CHECK(bufs[i]);
	}
	uint64_t head = w.r.prod->head, tail = w.r.cons->tail;
	/* Expected: records one at a time from tail. */
	unsigned want_n = 0;
	int want = PARLEY_RING_OK;
	uint64_t t = tail;
	for (; want_n < n; want_n++) {
		uint32_t l = 0;
		want = pop_oracle(head, t, caps[want_n], &l);
		if (want != PARLEY_RING_OK)
			break;
		t += parley_ring_rec_bytes(l);
	}
	if (want_n && want == PARLEY_RING_EMPTY)
		want = PARLEY_RING_OK;
	memcpy(w.snap, w.r.data, w.r.size);
	unsigned done = 12345;
	int rc = parley_ring_pop_batch(&w.r, bufs, caps, lens, n, &done);
	CHECK(rc == want && done == want_n);
	CHECK(memcmp(w.snap, w.r.data, w.r.size) == 0);
	CHECK(w.r.prod->head == head);
	CHECK(w.r.cons->tail == t);
	for (unsigned i = 0; i < done; i++) {
		CHECK(lens[i] <= caps[i]);
		if (w.honest)
			model_popped(bufs[i], lens[i]);
	}
	if (w.honest && done < n)
		CHECK(model_pop(caps[done]) == (rc == PARLEY_RING_OK
						? PARLEY_RING_EMPTY : rc));
	for (unsigned i = 0; i < n; i++)
		free(bufs[i]);
}

/* ---- the hostile peer -------------------------------------------------- */

static uint64_t hostile_index(struct in *in, uint64_t now, uint64_t other)
{
	uint8_t mode = (uint8_t)take(in, 1);
	switch (mode % 4) {
	case 0: return take(in, 8);
	case 1: return now + (uint64_t)(int64_t)(int16_t)take(in, 2);
	case 2: return other + (uint64_t)(int64_t)(int32_t)take(in, 4);
	default: return other + w.r.size + (take(in, 1) % 17) - 8;
	}
}

static void do_hostile(struct in *in, uint8_t what)
{
	w.honest = false;
	switch (what % 4) {
	case 0:
		w.r.prod->head = hostile_index(in, w.r.prod->head,
					       w.r.cons->tail);
		break;
	case 1:
		w.r.cons->tail = hostile_index(in, w.r.cons->tail,
					       w.r.prod->head);
		break;
	case 2: { /* a record header: at the tail, or anywhere */
		uint64_t at = take(in, 1) % 2 ? w.r.cons->tail : take(in, 2);
		uint32_t hdr[2] = { (uint32_t)take(in, 4), (uint32_t)take(in, 4) };
		parley_ring_put(&w.r, at, hdr, 8);
		break;
	}
	default: { /* bytes anywhere in the data */
		uint64_t at = take(in, 2);
		unsigned n = (unsigned)take(in, 1) % 16;
		for (unsigned i = 0; i < n; i++)
			w.r.data[(at + i) & (w.r.size - 1)] = (uint8_t)take(in, 1);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	setup(sizes[take(&in, 1) % 3]);
	reset(take(&in, 8));
	w.next_id = 0;
	for (unsigned ops = 0; in.n && ops < OPS_MAX; ops++) {
		uint8_t op = (uint8_t)take(&in, 1);
		switch (op % 12) {
		case 0: case 1: do_push(&in); break;
		case 2: case 3: do_pop(&in, true); break;
		case 4: do_push_batch(&in); break;
		case 5: do_pop_batch(&in); break;
		case 6: do_pop(&in, false); break;
		case 7:
			CHECK(parley_ring_readable(&w.r) ==
			      (w.r.prod->head != w.r.cons->tail));
			break;
		case 8: reset(take(&in, 8)); break;
		default: do_hostile(&in, (uint8_t)(op >> 4)); break;
		}
		check_side_words();
		if (w.honest)
			CHECK(w.r.prod->head - w.r.cons->tail == w.fill);
	}
	return 0;
}
