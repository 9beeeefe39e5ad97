/*
 * The SPSC ring of include/parley/ring.h, over host memory: round trips,
 * wrap-around (at the end of the data and of the 64-bit indices), batches
 * that publish their index once, FULL / TOOBIG / EMPTY, then a hostile peer
 * that writes any value into its index or into record headers: every call
 * must answer with a defined code and never touch memory outside the data
 * (which sits between PROT_NONE pages, so an overrun faults), and finally
 * two threads using it for real.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <parley/ring.h>

/* ------------------------------------------------------------------ */
/* Memory with PROT_NONE pages on both sides.                          */

struct guarded {
	uint8_t *base;   /* the mapping, guards included */
	size_t total;
	uint8_t *p;      /* len usable bytes, ending at the trailing guard */
	size_t len;
};

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static uint8_t *guard_alloc(struct guarded *g, size_t len)
{
	size_t pg = page_size();
	size_t body = (len + pg - 1) / pg * pg;
	if (!body)
		body = pg;
	g->total = body + 2 * pg;
	g->base = mmap(NULL, g->total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	cr_assert_neq(g->base, MAP_FAILED, "mmap: %s", strerror(errno));
	cr_assert_eq(mprotect(g->base + pg, body, PROT_READ | PROT_WRITE), 0);
	g->p = g->base + pg + (body - len);
	g->len = len;
	return g->p;
}

static void guard_free(struct guarded *g)
{
	if (g->base)
		munmap(g->base, g->total);
	memset(g, 0, sizeof(*g));
}

/* A queue over guarded host memory: data, producer page, consumer page. */
struct tring {
	struct parley_ring r;
	struct guarded data, prod, cons;
};

static void tring_init(struct tring *t, uint64_t size)
{
	memset(t, 0, sizeof(*t));
	t->r.data = guard_alloc(&t->data, size);
	t->r.prod = (struct parley_ring_prod *)guard_alloc(&t->prod,
							   page_size());
	t->r.cons = (struct parley_ring_cons *)guard_alloc(&t->cons,
							   page_size());
	t->r.size = size;
	memset(t->r.data, 0xdd, size);
}

static void tring_free(struct tring *t)
{
	guard_free(&t->data);
	guard_free(&t->prod);
	guard_free(&t->cons);
}

/* Put both indices at `at` (an empty ring whose next record goes there). */
static void tring_at(struct tring *t, uint64_t at)
{
	t->r.prod->head = at;
	t->r.cons->tail = at;
}

/* ------------------------------------------------------------------ */
/* Message contents that say which message they are.                   */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static void fill_msg(uint8_t *b, uint32_t len, uint64_t id)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(mix(id * 0x10001 + i / 8) >> (8 * (i % 8)));
}

static bool msg_ok(const uint8_t *b, uint32_t len, uint64_t id)
{
	for (uint32_t i = 0; i < len; i++)
		if (b[i] != (uint8_t)(mix(id * 0x10001 + i / 8) >> (8 * (i % 8))))
			return false;
	return true;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return mix(rng_state);
}

static const uint64_t ring_sizes[] = { 4096, 65536 };

/* ------------------------------------------------------------------ */
/* Honest use.                                                         */

static void round_trip_sizes(uint64_t size)
{
	struct tring t;
	tring_init(&t, size);
	struct guarded gin, gout;
	uint8_t *in = guard_alloc(&gin, size);
	uint8_t *out_end = guard_alloc(&gout, size) + size;
	uint64_t expect_head = 0;
	for (uint64_t l = 0; l <= size - PARLEY_RING_REC_HDR; l++) {
		/* Every length up to 1100 and near the end, a stride between. */
		if (l > 1100 && l < size - 300 && l % 97)
			continue;
		uint32_t len = (uint32_t)l;
		uint8_t *msg = in + size - len; /* ends at the guard */
		fill_msg(msg, len, l);
		int rc = parley_ring_push(&t.r, msg, len);
		cr_assert_eq(rc, PARLEY_RING_OK, "push %u: %d", len, rc);
		expect_head += parley_ring_rec_bytes(len);
		cr_assert_eq(t.r.prod->head, expect_head);
		cr_assert(parley_ring_readable(&t.r));
		uint8_t *out = out_end - len;   /* exactly len bytes */
		uint32_t got = 12345;
		rc = parley_ring_pop(&t.r, out, len, &got);
		cr_assert_eq(rc, PARLEY_RING_OK, "pop %u: %d", len, rc);
		cr_assert_eq(got, len);
		cr_assert(msg_ok(out, len, l), "payload of %u bytes differs",
			  len);
		cr_assert_eq(t.r.cons->tail, expect_head);
		cr_assert_not(parley_ring_readable(&t.r));
		cr_assert_eq(parley_ring_pop(&t.r, out, len, &got),
			     PARLEY_RING_EMPTY);
	}
	/* One byte more can never fit: TOOBIG, nothing written. */
	uint64_t head = t.r.prod->head;
	cr_expect_eq(parley_ring_push(&t.r, in, (uint32_t)(size - 7)),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(t.r.prod->head, head);
	guard_free(&gin);
	guard_free(&gout);
	tring_free(&t);
}

Test(ring, round_trip_4k)
{
	round_trip_sizes(4096);
}

Test(ring, round_trip_64k)
{
	round_trip_sizes(65536);
}

/* A record whose payload straddles the end of the data. */
Test(ring, wrap_at_end_of_data)
{
	for (size_t s = 0; s < 2; s++) {
		uint64_t size = ring_sizes[s];
		struct tring t;
		tring_init(&t, size);
		uint8_t msg[300], out[300];
		uint32_t got;
		for (uint64_t at = size - 64; at < size + 8; at += 8) {
			tring_at(&t, at + 17 * size); /* any lap */
			fill_msg(msg, sizeof(msg), at);
			cr_assert_eq(parley_ring_push(&t.r, msg, sizeof(msg)),
				     PARLEY_RING_OK);
			uint64_t off = at & (size - 1);
			uint32_t hdr[2];
			memcpy(hdr, t.r.data + off, 8);
			cr_expect_eq(hdr[0], sizeof(msg));
			cr_expect_eq(hdr[1], 0);
			uint64_t p = (off + 8) & (size - 1);
			uint64_t first = size - p < sizeof(msg) ? size - p
								 : sizeof(msg);
			cr_expect_eq(memcmp(t.r.data + p, msg, first), 0,
				     "at %llu: tail part", (unsigned long long)at);
			cr_expect_eq(memcmp(t.r.data, msg + first,
					    sizeof(msg) - first), 0,
				     "at %llu: wrapped part",
				     (unsigned long long)at);
			cr_assert_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
				     PARLEY_RING_OK);
			cr_expect_eq(got, sizeof(msg));
			cr_expect(msg_ok(out, got, at));
		}
		/* A record that ends exactly at the end of the data. */
		tring_at(&t, size - 64);
		fill_msg(msg, 56, 1);
		cr_assert_eq(parley_ring_push(&t.r, msg, 56), PARLEY_RING_OK);
		cr_expect_eq(t.r.prod->head, size);
		cr_assert_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
			     PARLEY_RING_OK);
		cr_expect(got == 56 && msg_ok(out, 56, 1));
		tring_free(&t);
	}
}

/* The free-running indices wrap at 2^64 like everything else. */
Test(ring, wrap_of_64bit_indices)
{
	struct tring t;
	tring_init(&t, 4096);
	tring_at(&t, UINT64_MAX - 95); /* 0x...ffa0: aligned */
	uint8_t msg[40], out[40];
	for (uint64_t i = 0; i < 6; i++) {
		fill_msg(msg, sizeof(msg), i);
		cr_assert_eq(parley_ring_push(&t.r, msg, sizeof(msg)),
			     PARLEY_RING_OK, "push %llu",
			     (unsigned long long)i);
	}
	cr_expect_eq(t.r.prod->head, UINT64_MAX - 95 + 6 * 48);
	cr_expect_lt(t.r.prod->head, 4096, "head wrapped through 0");
	for (uint64_t i = 0; i < 6; i++) {
		uint32_t got;
		cr_assert_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
			     PARLEY_RING_OK, "pop %llu", (unsigned long long)i);
		cr_expect(got == sizeof(msg) && msg_ok(out, got, i));
	}
	cr_expect_eq(t.r.cons->tail, t.r.prod->head);
	tring_free(&t);
}

Test(ring, full_toobig_empty)
{
	struct tring t;
	tring_init(&t, 4096);
	uint8_t msg[4096] = { 0 }, out[4096];
	uint32_t got = 77;
	cr_expect_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
		     PARLEY_RING_EMPTY);
	cr_expect_not(parley_ring_readable(&t.r));

	/* 100-byte records take 112 bytes: 36 fit in 4096. */
	int n = 0;
	while (parley_ring_push(&t.r, msg, 100) == PARLEY_RING_OK)
		n++;
	cr_expect_eq(n, 36);
	cr_expect_eq(t.r.prod->head, 36 * 112);
	uint64_t head = t.r.prod->head;
	cr_expect_eq(parley_ring_push(&t.r, msg, 100), PARLEY_RING_FULL);
	cr_expect_eq(parley_ring_push(&t.r, msg, 57), PARLEY_RING_FULL);
	cr_expect_eq(parley_ring_push(&t.r, msg, 56), PARLEY_RING_OK,
		     "the last 64 bytes");
	cr_expect_eq(t.r.prod->head, 4096);
	head = t.r.prod->head;
	cr_expect_eq(parley_ring_push(&t.r, msg, 0), PARLEY_RING_FULL);
	/* Too big for any ring of this size: TOOBIG even when full. */
	cr_expect_eq(parley_ring_push(&t.r, msg, 4089), PARLEY_RING_TOOBIG);
	cr_expect_eq(parley_ring_push(&t.r, msg, UINT32_MAX),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(parley_ring_push(&t.r, msg, UINT32_MAX - 7),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(parley_ring_push(&t.r, msg, 0x80000000u),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(t.r.prod->head, head, "nothing published");

	/* One pop frees 112 bytes: one 100-byte record fits again. */
	cr_expect_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
		     PARLEY_RING_OK);
	cr_expect_eq(got, 100);
	cr_expect_eq(parley_ring_push(&t.r, msg, 104), PARLEY_RING_OK);
	cr_expect_eq(parley_ring_push(&t.r, msg, 0), PARLEY_RING_FULL);

	/* Empty again after draining. */
	int popped = 0;
	while (parley_ring_pop(&t.r, out, sizeof(out), &got) == PARLEY_RING_OK)
		popped++;
	cr_expect_eq(popped, 37);
	cr_expect_eq(parley_ring_pop(&t.r, out, sizeof(out), &got),
		     PARLEY_RING_EMPTY);
	/* An empty ring takes the largest record. */
	cr_expect_eq(parley_ring_push(&t.r, msg, 4088), PARLEY_RING_OK);
	cr_expect_eq(parley_ring_push(&t.r, msg, 0), PARLEY_RING_FULL);
	tring_free(&t);
}

Test(ring, pop_into_small_buffer)
{
	struct tring t;
	tring_init(&t, 4096);
	uint8_t msg[100], out[128];
	fill_msg(msg, sizeof(msg), 5);
	cr_assert_eq(parley_ring_push(&t.r, msg, 100), PARLEY_RING_OK);
	memset(out, 0xcc, sizeof(out));
	uint32_t got = 0;
	cr_expect_eq(parley_ring_pop(&t.r, out, 99, &got), PARLEY_RING_TOOBIG);
	cr_expect_eq(got, 100, "*len says how much room it needs");
	cr_expect_eq(t.r.cons->tail, 0, "nothing consumed");
	for (size_t i = 0; i < sizeof(out); i++)
		cr_assert_eq(out[i], 0xcc, "buffer written at %zu", i);
	cr_expect_eq(parley_ring_pop(&t.r, out, 0, &got), PARLEY_RING_TOOBIG);
	cr_expect(parley_ring_readable(&t.r));
	cr_expect_eq(parley_ring_pop(&t.r, out, 100, &got), PARLEY_RING_OK);
	cr_expect(got == 100 && msg_ok(out, 100, 5));
	cr_expect_eq(out[100], 0xcc);

	/* An empty record fits a zero-byte buffer. */
	cr_assert_eq(parley_ring_push(&t.r, msg, 0), PARLEY_RING_OK);
	cr_expect_eq(parley_ring_pop(&t.r, out, 0, &got), PARLEY_RING_OK);
	cr_expect_eq(got, 0);
	tring_free(&t);
}

/*
 * An empty message with no buffer (parley_chan_send(c, NULL, 0), a natural
 * call) must not reach __builtin_memcpy(dst, NULL, 0) or `NULL + 0`, both
 * undefined in C11: parley_ring_put/_get return before copying nothing.
 * The sanitized build would stop here ("null pointer passed as argument
 * 2") if they did not.
 */
Test(ring, empty_message_without_buffer)
{
	struct tring t;
	tring_init(&t, 4096);
	/* volatile: at -O2 gcc would refuse a literal NULL (-Wnonnull). */
	void *volatile none = NULL;
	cr_expect_eq(parley_ring_push(&t.r, none, 0), PARLEY_RING_OK);
	uint32_t got = 99;
	cr_expect_eq(parley_ring_pop(&t.r, none, 0, &got), PARLEY_RING_OK);
	cr_expect_eq(got, 0);
	tring_free(&t);
}

/* ------------------------------------------------------------------ */
/* Batches publish their index once, after every record is in place:   */
/* the index page is made read-only, and the first store to it faults; */
/* the handler checks the records are all there, then lets it through. */

static uint8_t *watch_page;
static volatile sig_atomic_t watch_faults;
static bool (*watch_check)(void);
static volatile sig_atomic_t watch_check_ok;

static void watch_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uint8_t *a = si->si_addr;
	if (!watch_page || a < watch_page || a >= watch_page + page_size()) {
		signal(sig, SIG_DFL); /* a real fault: die of it */
		return;
	}
	watch_faults++;
	watch_check_ok = watch_check();
	mprotect(watch_page, page_size(), PROT_READ | PROT_WRITE);
}

static void watch(void *page, bool (*check)(void))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = watch_handler;
	sa.sa_flags = SA_SIGINFO;
	cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
	watch_page = page;
	watch_faults = 0;
	watch_check_ok = 0;
	watch_check = check;
	cr_assert_eq(mprotect(page, page_size(), PROT_READ), 0);
}

static void unwatch(void)
{
	mprotect(watch_page, page_size(), PROT_READ | PROT_WRITE);
	watch_page = NULL;
	signal(SIGSEGV, SIG_DFL);
}

#define BATCH 6
static struct tring batch_ring;
static uint8_t batch_msg[BATCH][200];
static uint32_t batch_len[BATCH] = { 0, 1, 200, 7, 64, 150 };
static uint8_t batch_out[BATCH][200];
static uint64_t batch_start;

/* At the moment of the store: every record written, head not yet moved. */
static bool all_pushed(void)
{
	struct parley_ring *r = &batch_ring.r;
	if (r->prod->head != batch_start)
		return false;
	uint64_t at = batch_start;
	for (int i = 0; i < BATCH; i++) {
		uint32_t hdr[2];
		uint8_t buf[200];
		parley_ring_get(r, at, hdr, 8);
		parley_ring_get(r, at + 8, buf, batch_len[i]);
		if (hdr[0] != batch_len[i] ||
		    memcmp(buf, batch_msg[i], batch_len[i]))
			return false;
		at += parley_ring_rec_bytes(batch_len[i]);
	}
	return true;
}

/* At the moment of the store: every buffer filled, tail not yet moved. */
static bool all_popped(void)
{
	if (batch_ring.r.cons->tail != batch_start)
		return false;
	for (int i = 0; i < BATCH; i++)
		if (memcmp(batch_out[i], batch_msg[i], batch_len[i]))
			return false;
	return true;
}

Test(ring, batch_publishes_once)
{
	struct tring *t = &batch_ring;
	tring_init(t, 4096);
	const void *msgs[BATCH];
	void *bufs[BATCH];
	uint32_t caps[BATCH], lens[BATCH];
	for (int i = 0; i < BATCH; i++) {
		fill_msg(batch_msg[i], batch_len[i], (uint64_t)i);
		msgs[i] = batch_msg[i];
		bufs[i] = batch_out[i];
		caps[i] = sizeof(batch_out[i]);
	}
	/* Twice: once in the middle of the data, once straddling its end. */
	uint64_t starts[] = { 0x100, 4096 * 3 - 0x100 };
	for (int s = 0; s < 2; s++) {
		batch_start = starts[s];
		tring_at(t, batch_start);
		unsigned done = 99;
		watch(t->r.prod, all_pushed);
		int rc = parley_ring_push_batch(&t->r, msgs, batch_len, BATCH,
						&done);
		unwatch();
		cr_expect_eq(rc, PARLEY_RING_OK);
		cr_expect_eq(done, BATCH);
		cr_expect_eq(watch_faults, 1, "head stored");
		cr_expect(watch_check_ok, "head published before every record "
			  "of the batch was written");
		uint64_t end = batch_start;
		for (int i = 0; i < BATCH; i++)
			end += parley_ring_rec_bytes(batch_len[i]);
		cr_expect_eq(t->r.prod->head, end);

		memset(batch_out, 0, sizeof(batch_out));
		watch(t->r.cons, all_popped);
		rc = parley_ring_pop_batch(&t->r, bufs, caps, lens, BATCH,
					   &done);
		unwatch();
		cr_expect_eq(rc, PARLEY_RING_OK);
		cr_expect_eq(done, BATCH);
		cr_expect_eq(watch_faults, 1, "tail stored");
		cr_expect(watch_check_ok, "tail published before every record "
			  "of the batch was read");
		cr_expect_eq(t->r.cons->tail, end);
		for (int i = 0; i < BATCH; i++)
			cr_expect_eq(lens[i], batch_len[i]);
	}
	tring_free(t);
}

Test(ring, batch_partial)
{
	struct tring t;
	tring_init(&t, 4096);
	static uint8_t big[4096];
	const void *msgs[5] = { big, big, big, big, big };
	uint32_t lens[5] = { 1000, 1000, 5000, 10, 10 };
	unsigned done = 99;

	/* Stops at the record that can never fit; the two before it are
	 * published. */
	cr_expect_eq(parley_ring_push_batch(&t.r, msgs, lens, 5, &done),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(done, 2);
	cr_expect_eq(t.r.prod->head, 2 * 1008);
	/* Stops where the ring is full. */
	uint32_t lens2[4] = { 1000, 1000, 1000, 8 };
	cr_expect_eq(parley_ring_push_batch(&t.r, msgs, lens2, 4, &done),
		     PARLEY_RING_FULL);
	cr_expect_eq(done, 2);
	cr_expect_eq(t.r.prod->head, 4 * 1008);
	/* The first one failing: nothing published. */
	cr_expect_eq(parley_ring_push_batch(&t.r, msgs, lens2, 4, &done),
		     PARLEY_RING_FULL);
	cr_expect_eq(done, 0);
	cr_expect_eq(t.r.prod->head, 4 * 1008);
	cr_expect_eq(parley_ring_push_batch(&t.r, msgs, lens2, 0, &done),
		     PARLEY_RING_OK);
	cr_expect_eq(done, 0);

	/* Pop: a too-small second buffer stops the batch after one. */
	static uint8_t b0[1000], b1[999], b2[1000];
	void *bufs[3] = { b0, b1, b2 };
	uint32_t caps[3] = { 1000, 999, 1000 }, got[3] = { 0 };
	cr_expect_eq(parley_ring_pop_batch(&t.r, bufs, caps, got, 3, &done),
		     PARLEY_RING_TOOBIG);
	cr_expect_eq(done, 1);
	cr_expect_eq(got[1], 1000, "the size it needs");
	cr_expect_eq(t.r.cons->tail, 1008);
	/* Draining: OK with fewer than asked, then EMPTY. */
	void *bufs4[5] = { b0, b2, b0, b2, b0 };
	uint32_t caps4[5] = { 1000, 1000, 1000, 1000, 1000 }, got4[5];
	cr_expect_eq(parley_ring_pop_batch(&t.r, bufs4, caps4, got4, 5, &done),
		     PARLEY_RING_OK);
	cr_expect_eq(done, 3);
	cr_expect_eq(t.r.cons->tail, t.r.prod->head);
	cr_expect_eq(parley_ring_pop_batch(&t.r, bufs4, caps4, got4, 5, &done),
		     PARLEY_RING_EMPTY);
	cr_expect_eq(done, 0);
	cr_expect_eq(parley_ring_pop_batch(&t.r, bufs4, caps4, got4, 0, &done),
		     PARLEY_RING_OK);
	cr_expect_eq(done, 0);
	tring_free(&t);
}

/* Many laps with a model queue: sizes mixed, batches mixed. */
Test(ring, model_many_laps)
{
	for (size_t s = 0; s < 2; s++) {
		uint64_t size = ring_sizes[s];
		struct tring t;
		tring_init(&t, size);
		enum { QMAX = 8192 };
		static uint64_t q_id[QMAX];
		static uint32_t q_len[QMAX];
		unsigned qh = 0, qt = 0;
		uint64_t used = 0, next_id = 0;
		static uint8_t msg[65536 + 64], out[65536 + 64];
		rng_state = 42 + s;
		for (int it = 0; it < 40000; it++) {
			if (rnd() % 2) {
				uint64_t x = rnd();
				uint32_t len = (uint32_t)(x % 16 ? x % 300
						: (x >> 20) % (size + 16));
				fill_msg(msg, len, next_id);
				int rc = parley_ring_push(&t.r, msg, len);
				uint64_t need = parley_ring_rec_bytes(len);
				int want = need > size ? PARLEY_RING_TOOBIG
					   : used + need > size ? PARLEY_RING_FULL
					   : PARLEY_RING_OK;
				cr_assert_eq(rc, want, "it %d push %u: %d", it,
					     len, rc);
				if (rc == PARLEY_RING_OK) {
					q_id[qh % QMAX] = next_id++;
					q_len[qh++ % QMAX] = len;
					used += need;
				}
			} else {
				uint32_t got;
				int rc = parley_ring_pop(&t.r, out, sizeof(out),
							 &got);
				if (qh == qt) {
					cr_assert_eq(rc, PARLEY_RING_EMPTY);
					continue;
				}
				cr_assert_eq(rc, PARLEY_RING_OK, "it %d pop", it);
				cr_assert_eq(got, q_len[qt % QMAX]);
				cr_assert(msg_ok(out, got, q_id[qt % QMAX]),
					  "it %d: message %llu garbled", it,
					  (unsigned long long)q_id[qt % QMAX]);
				used -= parley_ring_rec_bytes(got);
				qt++;
			}
			cr_assert_eq(t.r.prod->head - t.r.cons->tail, used);
		}
		cr_expect_gt(t.r.prod->head / size, 20, "laps: %llu",
			     (unsigned long long)(t.r.prod->head / size));
		tring_free(&t);
	}
}

/* ------------------------------------------------------------------ */
/* A hostile producer: the consumer's view of any head and any header.  */

/* What the header's contract says a pop must answer. */
static int pop_oracle(uint64_t size, uint64_t tail, uint64_t head,
		      uint32_t len, uint32_t cap)
{
	uint64_t avail = head - tail;
	if (avail == 0)
		return PARLEY_RING_EMPTY;
	if (avail > size || avail < PARLEY_RING_REC_HDR || (tail & 7))
		return PARLEY_RING_CORRUPT;
	if (parley_ring_rec_bytes(len) > avail)
		return PARLEY_RING_CORRUPT;
	return len > cap ? PARLEY_RING_TOOBIG : PARLEY_RING_OK;
}

static void put_hdr(struct tring *t, uint64_t at, uint32_t len)
{
	uint32_t hdr[2] = { len, 0 };
	parley_ring_put(&t->r, at, hdr, 8);
}

Test(ring, hostile_head_table)
{
	struct tring t;
	tring_init(&t, 4096);
	struct guarded gout;
	uint8_t *out_end = guard_alloc(&gout, 4096) + 4096;
	static const struct {
		uint64_t tail, head;
		uint32_t len;
		int want;
		const char *what;
	} cases[] = {
		{ 0, 0, 0, PARLEY_RING_EMPTY, "empty" },
		{ 4096, 4096, 99999, PARLEY_RING_EMPTY, "empty, junk header" },
		{ 64, 56, 0, PARLEY_RING_CORRUPT, "head behind tail" },
		{ 64, 0, 0, PARLEY_RING_CORRUPT, "head zero, tail ahead" },
		{ 0, 4096 + 8, 0, PARLEY_RING_CORRUPT, "fill over the size" },
		{ 0, 8192, 8, PARLEY_RING_CORRUPT, "two laps ahead" },
		{ 0, UINT64_MAX, 0, PARLEY_RING_CORRUPT, "head UINT64_MAX" },
		{ 8, 0, 0, PARLEY_RING_CORRUPT, "head = tail - 8" },
		{ 0, 4, 0, PARLEY_RING_CORRUPT, "fill below a header" },
		{ 0, 7, 0, PARLEY_RING_CORRUPT, "fill 7" },
		{ 3, 19, 0, PARLEY_RING_CORRUPT, "unaligned tail" },
		{ 0, 16, 9, PARLEY_RING_CORRUPT, "length over the fill" },
		{ 0, 16, 8, PARLEY_RING_OK, "length = fill" },
		{ 0, 13, 0, PARLEY_RING_OK, "unaligned head, short record" },
		{ 0, 13, 5, PARLEY_RING_CORRUPT, "unaligned head, record over" },
		{ 0, 4096, 4088, PARLEY_RING_OK, "largest record" },
		{ 0, 4096, 4089, PARLEY_RING_CORRUPT, "one past the largest" },
		{ 0, 4096, 4096, PARLEY_RING_CORRUPT, "length = size" },
		{ 0, 4096, UINT32_MAX, PARLEY_RING_CORRUPT, "UINT32_MAX" },
		{ 0, 4096, UINT32_MAX - 7, PARLEY_RING_CORRUPT, "UINT32_MAX-7" },
		{ 0, 4096, UINT32_MAX - 8, PARLEY_RING_CORRUPT, "UINT32_MAX-8" },
		{ 0, 4096, 0x80000000u, PARLEY_RING_CORRUPT, "2^31" },
		{ 0, 4096, 0xfffffff8u, PARLEY_RING_CORRUPT, "aligned max" },
		{ 4088, 4088 + 16, 8, PARLEY_RING_OK, "payload wraps" },
		{ 4088, 4088 + 16, 4095, PARLEY_RING_CORRUPT, "wrap, over" },
		{ UINT64_MAX - 7, 8, 8, PARLEY_RING_OK, "index wraps" },
		{ UINT64_MAX - 7, 4088, 4080, PARLEY_RING_OK, "index wraps, big" },
		{ UINT64_MAX - 7, 4096, 0, PARLEY_RING_CORRUPT, "wraps, over" },
		{ 1ull << 63, 0, 0, PARLEY_RING_CORRUPT, "half the space" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t tail = cases[i].tail, head = cases[i].head;
		uint32_t len = cases[i].len;
		cr_assert_eq(pop_oracle(4096, tail, head, len, 4096),
			     cases[i].want, "%s: oracle", cases[i].what);
		for (uint32_t cap = 0; cap <= 4096; cap += 4096) {
			memset(t.r.data, 0x5a, 4096);
			t.r.cons->tail = tail;
			t.r.prod->head = head;
			put_hdr(&t, tail, len);
			int want = pop_oracle(4096, tail, head, len, cap);
			uint8_t *out = out_end - cap;
			memset(out, 0xcc, cap);
			uint32_t got = 0xdeadbeef;
			int rc = parley_ring_pop(&t.r, out, cap, &got);
			cr_expect_eq(rc, want, "%s, cap %u: %d, want %d",
				     cases[i].what, cap, rc, want);
			if (rc != PARLEY_RING_OK) {
				cr_expect_eq(t.r.cons->tail, tail,
					     "%s: tail moved", cases[i].what);
				for (uint32_t k = 0; k < cap; k++)
					if (out[k] != 0xcc) {
						cr_expect_fail("%s: buffer "
							       "written",
							       cases[i].what);
						break;
					}
			} else {
				cr_expect_eq(got, len);
				cr_expect_eq(t.r.cons->tail,
					     tail + parley_ring_rec_bytes(len));
			}
			/* The same through peek and a batch. */
			t.r.cons->tail = tail;
			uint64_t next = 0x1234;
			cr_expect_eq(parley_ring_peek(&t.r, tail, out, cap,
						      &got, &next), want,
				     "%s: peek", cases[i].what);
			void *bufs[3] = { out, out, out };
			uint32_t caps[3] = { cap, cap, cap }, lens[3];
			unsigned done = 99;
			rc = parley_ring_pop_batch(&t.r, bufs, caps, lens, 3,
						   &done);
			if (want != PARLEY_RING_OK) {
				cr_expect_eq(rc, want, "%s: batch",
					     cases[i].what);
				cr_expect_eq(done, 0);
				cr_expect_eq(t.r.cons->tail, tail);
			} else {
				cr_expect_geq(done, 1, "%s", cases[i].what);
				cr_expect(rc == PARLEY_RING_OK ||
					  rc == PARLEY_RING_CORRUPT ||
					  rc == PARLEY_RING_TOOBIG,
					  "%s: batch %d", cases[i].what, rc);
			}
			cr_expect_eq(parley_ring_readable(&t.r),
				     t.r.prod->head != t.r.cons->tail);
		}
	}
	/* An unaligned head: one good record, then CORRUPT, and it stays
	 * CORRUPT without consuming anything. */
	tring_at(&t, 0);
	put_hdr(&t, 0, 0);
	t.r.prod->head = 13;
	uint32_t got;
	cr_expect_eq(parley_ring_pop(&t.r, out_end, 0, &got), PARLEY_RING_OK);
	cr_expect_eq(t.r.cons->tail, 8);
	for (int k = 0; k < 3; k++) {
		cr_expect_eq(parley_ring_pop(&t.r, out_end, 0, &got),
			     PARLEY_RING_CORRUPT);
		cr_expect_eq(t.r.cons->tail, 8);
	}
	guard_free(&gout);
	tring_free(&t);
}

/* Any head, any header, any data, any cap: the oracle's answer, and on OK
 * exactly the record's bytes, nothing else touched. */
static void hostile_head_random(uint64_t size, int iters)
{
	struct tring t;
	tring_init(&t, size);
	struct guarded gout;
	uint8_t *out_end = guard_alloc(&gout, size) + size;
	uint8_t *expect = malloc(size);
	cr_assert_not_null(expect);
	int seen[5] = { 0 };
	for (int it = 0; it < iters; it++) {
		if (it % 64 == 0)
			for (uint64_t k = 0; k < size; k += 8) {
				uint64_t x = rnd();
				memcpy(t.r.data + k, &x, 8);
			}
		uint64_t x = rnd();
		uint64_t tail = x % 4 ? rnd() & ~7ull : rnd();
		if (x % 16 == 5)
			tail = UINT64_MAX - (rnd() % 64);
		uint64_t head;
		switch ((x >> 8) % 6) {
		case 0: head = rnd(); break;
		case 1: head = tail - rnd() % 64; break;
		case 2: head = tail + size + rnd() % 64; break;
		case 3: head = tail + (rnd() % (size + 1) & ~7ull); break;
		default: head = tail + rnd() % (size + 1); break;
		}
		uint32_t len;
		uint64_t avail = head - tail;
		switch ((x >> 16) % 6) {
		case 0: len = (uint32_t)rnd(); break;
		case 1: len = UINT32_MAX - (uint32_t)(rnd() % 16); break;
		case 2: len = (uint32_t)(avail - 8 + rnd() % 16); break;
		case 3: len = (uint32_t)(avail - 8 - rnd() % 16); break;
		default: len = (uint32_t)(rnd() % (size + 1)); break;
		}
		uint32_t cap = (x >> 24) % 4 ? (uint32_t)(rnd() % (size + 1))
					    : len;
		if (cap > size)
			cap = (uint32_t)size;
		t.r.cons->tail = tail;
		t.r.prod->head = head;
		put_hdr(&t, tail, len);
		memcpy(expect, t.r.data, size);
		uint8_t *out = out_end - cap;
		uint32_t got = 0xdeadbeef;
		int want = pop_oracle(size, tail, head, len, cap);
		int rc = parley_ring_pop(&t.r, out, cap, &got);
		seen[rc >= 0 && rc <= 4 ? rc : 0]++;
		cr_assert_eq(rc, want, "it %d: tail %#llx head %#llx len %u "
			     "cap %u: %d, want %d", it,
			     (unsigned long long)tail, (unsigned long long)head,
			     len, cap, rc, want);
		cr_assert_eq(memcmp(expect, t.r.data, size), 0,
			     "the consumer wrote into the data");
		cr_assert_eq(t.r.prod->head, head, "the consumer wrote head");
		if (rc == PARLEY_RING_OK) {
			cr_assert_eq(got, len);
			cr_assert_eq(t.r.cons->tail,
				     tail + parley_ring_rec_bytes(len));
			uint8_t *ref = malloc(len ? len : 1);
			cr_assert_not_null(ref);
			parley_ring_get(&t.r, tail + 8, ref, len);
			cr_assert_eq(memcmp(ref, out, len), 0);
			free(ref);
		} else {
			cr_assert_eq(t.r.cons->tail, tail, "it %d: tail moved",
				     it);
		}
		if (rc == PARLEY_RING_TOOBIG)
			cr_assert_eq(got, len);
	}
	/* The generator reaches every answer. */
	for (int r = PARLEY_RING_OK; r <= PARLEY_RING_CORRUPT; r++)
		if (r != PARLEY_RING_FULL)
			cr_expect_gt(seen[r], iters / 1000, "result %d seen %d "
				     "times", r, seen[r]);
	free(expect);
	guard_free(&gout);
	tring_free(&t);
}

Test(ring, hostile_head_random)
{
	rng_state = 7;
	hostile_head_random(4096, 200000);
	hostile_head_random(65536, 20000);
}

/* ------------------------------------------------------------------ */
/* A hostile consumer: the producer's view of any tail.                 */

static int push_oracle(uint64_t size, uint64_t head, uint64_t tail,
		       uint32_t len)
{
	uint64_t used = head - tail, need = parley_ring_rec_bytes(len);
	if (used > size)
		return PARLEY_RING_CORRUPT;
	if (need > size)
		return PARLEY_RING_TOOBIG;
	return used + need > size ? PARLEY_RING_FULL : PARLEY_RING_OK;
}

Test(ring, hostile_tail_table)
{
	struct tring t;
	tring_init(&t, 4096);
	static uint8_t msg[4096];
	static const struct {
		uint64_t head, tail;
		uint32_t len;
		int want;
		const char *what;
	} cases[] = {
		{ 0, 8, 0, PARLEY_RING_CORRUPT, "tail ahead of head" },
		{ 64, 65, 0, PARLEY_RING_CORRUPT, "tail one ahead" },
		{ 0, UINT64_MAX - 4096 - 7, 0, PARLEY_RING_CORRUPT, "over a lap behind" },
		{ 8192, 0, 0, PARLEY_RING_CORRUPT, "two laps behind" },
		{ 4096, 0, 0, PARLEY_RING_FULL, "exactly a lap behind" },
		{ 4096, 0, UINT32_MAX, PARLEY_RING_TOOBIG, "full and too big" },
		{ 8192, 0, UINT32_MAX, PARLEY_RING_CORRUPT, "corrupt and too big" },
		{ 64, 61, 100, PARLEY_RING_OK, "unaligned tail, room" },
		{ 64, 64 - 4089, 0, PARLEY_RING_FULL, "unaligned, 7 free" },
		{ 64, 64 - 4097, 0, PARLEY_RING_CORRUPT, "unaligned, over" },
		{ 64, 64 - 4088, 0, PARLEY_RING_OK, "8 bytes free" },
		{ 64, 64 - 4088, 1, PARLEY_RING_FULL, "8 bytes free, 1 byte" },
		{ 64, 1ull << 63, 0, PARLEY_RING_CORRUPT, "half the space" },
		{ 40, UINT64_MAX, 0, PARLEY_RING_OK, "tail -1 (used 41)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t head = cases[i].head, tail = cases[i].tail;
		uint32_t len = cases[i].len;
		cr_assert_eq(push_oracle(4096, head, tail, len), cases[i].want,
			     "%s: oracle", cases[i].what);
		memset(t.r.data, 0x5a, 4096);
		t.r.prod->head = head;
		t.r.cons->tail = tail;
		int rc = parley_ring_push(&t.r, msg, len);
		cr_expect_eq(rc, cases[i].want, "%s: %d", cases[i].what, rc);
		cr_expect_eq(t.r.cons->tail, tail, "%s: the producer wrote tail",
			     cases[i].what);
		if (rc == PARLEY_RING_OK) {
			cr_expect_eq(t.r.prod->head,
				     head + parley_ring_rec_bytes(len));
			continue;
		}
		cr_expect_eq(t.r.prod->head, head, "%s: head moved",
			     cases[i].what);
		for (int k = 0; k < 4096; k++)
			if (t.r.data[k] != 0x5a) {
				cr_expect_fail("%s: data written at %d",
					       cases[i].what, k);
				break;
			}
		/* A batch fails the same way, pushing nothing. */
		const void *msgs[2] = { msg, msg };
		uint32_t lens[2] = { len, len };
		unsigned done = 99;
		cr_expect_eq(parley_ring_push_batch(&t.r, msgs, lens, 2, &done),
			     cases[i].want, "%s: batch", cases[i].what);
		cr_expect_eq(done, 0);
	}
	tring_free(&t);
}

static void hostile_tail_random(uint64_t size, int iters)
{
	struct tring t;
	tring_init(&t, size);
	struct guarded gin;
	uint8_t *in_end = guard_alloc(&gin, size) + size;
	for (uint64_t k = 0; k < size; k++)
		in_end[(int64_t)k - (int64_t)size] = (uint8_t)rnd();
	uint8_t *before = malloc(size);
	cr_assert_not_null(before);
	for (int it = 0; it < iters; it++) {
		uint64_t x = rnd();
		uint64_t head = rnd() & ~7ull; /* our own index: aligned */
		uint64_t tail;
		switch (x % 6) {
		case 0: tail = rnd(); break;
		case 1: tail = head + 1 + rnd() % 64; break;
		case 2: tail = head - size - 1 - rnd() % 64; break;
		default: tail = head - rnd() % (size + 1); break;
		}
		uint32_t len;
		switch ((x >> 8) % 5) {
		case 0: len = (uint32_t)rnd(); break;
		case 1: len = UINT32_MAX - (uint32_t)(rnd() % 16); break;
		case 2: len = (uint32_t)(size - 8 - rnd() % 16 + 8); break;
		default: len = (uint32_t)(rnd() % (size / 4)); break;
		}
		t.r.prod->head = head;
		t.r.cons->tail = tail;
		memcpy(before, t.r.data, size);
		/* Source ends at the guard: reading past len faults. */
		uint32_t n = len <= size ? len : 0;
		const uint8_t *src = in_end - n;
		int want = push_oracle(size, head, tail, len);
		int rc = parley_ring_push(&t.r, src, len);
		cr_assert_eq(rc, want, "it %d: head %#llx tail %#llx len %u: "
			     "%d, want %d", it, (unsigned long long)head,
			     (unsigned long long)tail, len, rc, want);
		cr_assert_eq(t.r.cons->tail, tail);
		if (rc != PARLEY_RING_OK) {
			cr_assert_eq(t.r.prod->head, head);
			cr_assert_eq(memcmp(before, t.r.data, size), 0,
				     "it %d: data written on failure", it);
			continue;
		}
		uint64_t need = parley_ring_rec_bytes(len);
		cr_assert_eq(t.r.prod->head, head + need);
		/* The record is there, and nothing outside it changed. */
		uint32_t hdr[2];
		parley_ring_get(&t.r, head, hdr, 8);
		cr_assert(hdr[0] == len && hdr[1] == 0);
		uint8_t *rec = malloc(len ? len : 1);
		cr_assert_not_null(rec);
		parley_ring_get(&t.r, head + 8, rec, len);
		cr_assert_eq(memcmp(rec, src, len), 0);
		free(rec);
		for (uint64_t k = 0; k < size; k++) {
			uint64_t rel = (k - head) & (size - 1);
			if (rel >= 8 + (uint64_t)len)
				cr_assert_eq(t.r.data[k], before[k],
					     "it %d: byte %llu outside the "
					     "record changed", it,
					     (unsigned long long)k);
		}
	}
	free(before);
	guard_free(&gin);
	tring_free(&t);
}

Test(ring, hostile_tail_random)
{
	rng_state = 11;
	hostile_tail_random(4096, 50000);
	hostile_tail_random(65536, 3000);
}

/* ------------------------------------------------------------------ */
/* Two threads, the way guests use it.                                  */

#define SPSC_MSGS 200000
#define SPSC_MAXLEN 2000

static uint32_t spsc_len(uint64_t id)
{
	uint64_t x = mix(id + 1);
	return (uint32_t)(x % 8 ? x % 64 : (x >> 16) % SPSC_MAXLEN);
}

/* Each message starts with its id, then bytes derived from it. */
static void spsc_fill(uint8_t *b, uint64_t id)
{
	uint32_t len = spsc_len(id);
	uint8_t tmp[8];
	memcpy(tmp, &id, 8);
	fill_msg(b, len, id);
	memcpy(b, tmp, len < 8 ? len : 8);
}

static bool spsc_ok(const uint8_t *b, uint32_t len, uint64_t id)
{
	if (len != spsc_len(id))
		return false;
	uint8_t want[SPSC_MAXLEN];
	spsc_fill(want, id);
	return memcmp(b, want, len) == 0;
}

struct spsc {
	struct parley_ring r;
	int corrupt;
	uint64_t bad_at;  /* first message that arrived wrong, or max */
};

static void *spsc_producer(void *arg)
{
	struct spsc *s = arg;
	static uint8_t bufs[8][SPSC_MAXLEN];
	const void *msgs[8];
	uint32_t lens[8];
	uint64_t id = 0, seed = 1;
	while (id < SPSC_MSGS) {
		seed = mix(seed);
		unsigned n = seed % 3 ? 1 : 1 + (unsigned)(seed >> 8) % 8;
		if (n > SPSC_MSGS - id)
			n = (unsigned)(SPSC_MSGS - id);
		for (unsigned i = 0; i < n; i++) {
			spsc_fill(bufs[i], id + i);
			msgs[i] = bufs[i];
			lens[i] = spsc_len(id + i);
		}
		unsigned done = 0;
		while (done < n) {
			unsigned k = 0;
			int rc = n == 1 ? parley_ring_push(&s->r, msgs[0], lens[0])
				: parley_ring_push_batch(&s->r, msgs + done,
							 lens + done, n - done,
							 &k);
			if (n == 1 && rc == PARLEY_RING_OK)
				k = 1;
			done += k;
			if (__atomic_load_n(&s->corrupt, __ATOMIC_RELAXED))
				return NULL; /* the consumer gave up */
			if (rc == PARLEY_RING_FULL)
				sched_yield();
			else if (rc != PARLEY_RING_OK) {
				__atomic_store_n(&s->corrupt, rc,
						 __ATOMIC_RELAXED);
				return NULL;
			}
		}
		id += n;
	}
	return NULL;
}

static void *spsc_consumer(void *arg)
{
	struct spsc *s = arg;
	static uint8_t bufs[8][SPSC_MAXLEN];
	void *b[8];
	uint32_t caps[8], lens[8];
	for (int i = 0; i < 8; i++) {
		b[i] = bufs[i];
		caps[i] = SPSC_MAXLEN;
	}
	uint64_t id = 0, seed = 2;
	while (id < SPSC_MSGS) {
		if (__atomic_load_n(&s->corrupt, __ATOMIC_RELAXED))
			return NULL;
		seed = mix(seed);
		unsigned n = seed % 2 ? 1 : 1 + (unsigned)(seed >> 8) % 8;
		unsigned got = 0;
		int rc;
		if (n == 1) {
			rc = parley_ring_pop(&s->r, b[0], caps[0], &lens[0]);
			got = rc == PARLEY_RING_OK;
		} else {
			rc = parley_ring_pop_batch(&s->r, b, caps, lens, n,
						   &got);
		}
		for (unsigned i = 0; i < got; i++, id++)
			if (s->bad_at == UINT64_MAX &&
			    !spsc_ok(bufs[i], lens[i], id))
				s->bad_at = id;
		if (rc == PARLEY_RING_EMPTY)
			sched_yield();
		else if (rc != PARLEY_RING_OK) {
			__atomic_store_n(&s->corrupt, rc, __ATOMIC_RELAXED);
			return NULL;
		}
	}
	return NULL;
}

static void spsc_run(uint64_t size)
{
	struct tring t;
	tring_init(&t, size);
	struct spsc s = { .r = t.r, .bad_at = UINT64_MAX };
	pthread_t p, c;
	cr_assert_eq(pthread_create(&c, NULL, spsc_consumer, &s), 0);
	cr_assert_eq(pthread_create(&p, NULL, spsc_producer, &s), 0);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	cr_expect_eq(s.corrupt, 0, "ring %llu: result %d",
		     (unsigned long long)size, s.corrupt);
	cr_expect_eq(s.bad_at, UINT64_MAX, "ring %llu: message %llu arrived "
		     "wrong or out of order", (unsigned long long)size,
		     (unsigned long long)s.bad_at);
	cr_expect_eq(t.r.prod->head, t.r.cons->tail);
	tring_free(&t);
}

Test(ring, two_threads_4k, .timeout = 120)
{
	spsc_run(4096);
}

Test(ring, two_threads_64k, .timeout = 120)
{
	spsc_run(65536);
}
