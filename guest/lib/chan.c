/* The partition side of channels: open through the grant manager, then
 * rings in shared memory. Exits happen only to sleep and to wake a peer
 * that said it sleeps (the waiting flags), so a busy pair costs none. */
#include <parley/guest.h>

/* PARLEY_CHAN_SPIN: waking from the vmm's poll costs about 15 us here, a
 * busy check about 2 us. */

static void ring_view(struct parley_ring *r, const struct parley_chan_hdr *h,
		      unsigned q)
{
	uint8_t *base = (uint8_t *)(uintptr_t)h;
	r->prod = (struct parley_ring_prod *)(base + h->q[q].prod_off);
	r->cons = (struct parley_ring_cons *)(base + h->q[q].cons_off);
	r->data = base + h->q[q].data_off;
	r->size = h->ring_bytes;
}

int64_t parley_chan_open(const char *name, struct parley_chan *c, char *detail)
{
	struct parley_hc_chan_open a;
	memset(&a, 0, sizeof(a));
	size_t n = strlen(name);
	if (n >= sizeof(a.name))
		return PARLEY_E_INVAL;
	memcpy(a.name, name, n + 1);
	parley_hypercall(PARLEY_HC_CHAN_OPEN, &a);
	if (detail)
		memcpy(detail, a.detail, sizeof(a.detail));
	if (a.ret != PARLEY_OK)
		return a.ret;
	return parley_chan_attach(c, a.handle, a.gpa, a.tx, a.rx);
}

int64_t parley_chan_attach(struct parley_chan *c, uint64_t handle,
			   uint64_t gpa, uint32_t tx, uint32_t rx)
{
	memset(c, 0, sizeof(*c));
	c->handle = handle;
	c->spin = PARLEY_CHAN_SPIN;
	c->hdr = (const struct parley_chan_hdr *)(uintptr_t)gpa;
	if (c->hdr->magic != PARLEY_RING_MAGIC)
		return PARLEY_E_INVAL;
	if (tx != PARLEY_CHAN_NO_QUEUE && tx < c->hdr->nqueues) {
		ring_view(&c->tx, c->hdr, tx);
		c->has_tx = 1;
	}
	if (rx != PARLEY_CHAN_NO_QUEUE && rx < c->hdr->nqueues) {
		ring_view(&c->rx, c->hdr, rx);
		c->has_rx = 1;
	}
	return PARLEY_OK;
}

void parley_chan_set_spin(struct parley_chan *c, uint32_t spins)
{
	c->spin = spins;
}

void parley_chan_doorbell(const struct parley_chan *c)
{
	__asm__ volatile("outl %0, %w1"
			 :
			 : "a"((uint32_t)c->handle), "Nd"(PARLEY_DOORBELL_PORT)
			 : "memory");
}

int64_t parley_chan_notify(uint64_t handle)
{
	struct parley_hc_chan_notify a = { .handle = handle };
	parley_hypercall(PARLEY_HC_CHAN_NOTIFY, &a);
	return a.ret;
}

int64_t parley_chan_wait(const uint64_t *handles, uint32_t n,
			 uint64_t timeout_ns, uint64_t *ready)
{
	struct parley_hc_chan_wait a;
	memset(&a, 0, sizeof(a));
	for (uint32_t i = 0; handles && i < n && i < PARLEY_WAIT_MAX; i++)
		a.handles[i] = handles[i];
	a.n = n;
	a.timeout_ns = timeout_ns;
	parley_hypercall(PARLEY_HC_CHAN_WAIT, &a);
	if (ready)
		*ready = a.ready;
	return a.ret;
}

int64_t parley_chan_close(struct parley_chan *c)
{
	struct parley_hc_chan_close a = { .handle = c->handle };
	parley_hypercall(PARLEY_HC_CHAN_CLOSE, &a);
	return a.ret;
}

static int flag(const uint32_t *f)
{
	return __atomic_load_n(f, __ATOMIC_SEQ_CST);
}

static void set_flag(uint32_t *f, uint32_t v)
{
	__atomic_store_n(f, v, __ATOMIC_SEQ_CST);
}

/* Sleep until the peer rings (or a spurious wake-up). */
static int64_t sleep_on(struct parley_chan *c)
{
	c->sleeps++;
	return parley_chan_wait(&c->handle, 1, UINT64_MAX, NULL);
}

int64_t parley_chan_send(struct parley_chan *c, const void *buf, uint32_t len)
{
	if (!c->has_tx)
		return PARLEY_E_INVAL;
	for (unsigned spin = 0;; spin++) {
		int rc = parley_ring_push(&c->tx, buf, len);
		if (rc == PARLEY_RING_OK) {
			/* The index store must be visible before we read the
			 * consumer's flag, or both sides can miss each other
			 * (x86 lets a load pass an earlier store). */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (flag(&c->tx.cons->waiting))
				parley_chan_doorbell(c);
			return PARLEY_OK;
		}
		if (rc != PARLEY_RING_FULL)
			return PARLEY_E_INVAL;
		if (spin < c->spin) {
			__builtin_ia32_pause();
			continue;
		}
		/* Say we wait, then look again: the consumer either sees the
		 * flag or freed space we now see. */
		set_flag(&c->tx.prod->waiting, 1);
		rc = parley_ring_push(&c->tx, buf, len);
		if (rc == PARLEY_RING_OK) {
			set_flag(&c->tx.prod->waiting, 0);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (flag(&c->tx.cons->waiting))
				parley_chan_doorbell(c);
			return PARLEY_OK;
		}
		int64_t w = sleep_on(c);
		/* Closed: the window is gone, and touching it would stop us.
		 * Peer down: nobody will make room. */
		if (w == PARLEY_E_CLOSED || w == PARLEY_E_BAD_HANDLE ||
		    w == PARLEY_E_PEER_DOWN)
			return w;
		set_flag(&c->tx.prod->waiting, 0);
		spin = 0;
	}
}

int64_t parley_chan_recv(struct parley_chan *c, void *buf, uint32_t cap,
			 uint32_t *len)
{
	if (!c->has_rx)
		return PARLEY_E_INVAL;
	for (unsigned spin = 0;; spin++) {
		int rc = parley_ring_pop(&c->rx, buf, cap, len);
		if (rc == PARLEY_RING_OK) {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (flag(&c->rx.prod->waiting))
				parley_chan_doorbell(c);
			return PARLEY_OK;
		}
		if (rc != PARLEY_RING_EMPTY)
			return PARLEY_E_INVAL;
		if (spin < c->spin) {
			__builtin_ia32_pause();
			continue;
		}
		set_flag(&c->rx.cons->waiting, 1);
		if (parley_ring_readable(&c->rx)) {
			set_flag(&c->rx.cons->waiting, 0);
			continue;
		}
		int64_t w = sleep_on(c);
		if (w == PARLEY_E_CLOSED || w == PARLEY_E_BAD_HANDLE)
			return w;
		/* The peer stopped: its window stays, so what it sent before
		 * is still read; only an empty ring ends the conversation. */
		if (w == PARLEY_E_PEER_DOWN) {
			set_flag(&c->rx.cons->waiting, 0);
			if (parley_ring_readable(&c->rx))
				continue;
			return w;
		}
		set_flag(&c->rx.cons->waiting, 0);
		spin = 0;
	}
}

void parley_sleep_ns(uint64_t ns)
{
	/* A wait may end early (a pause, a stray wake-up): sleep again for
	 * what is left. */
	uint64_t end = parley_clock_ns() + ns;
	for (uint64_t now = parley_clock_ns(); now < end;
	     now = parley_clock_ns())
		parley_chan_wait(NULL, 0, end - now, NULL);
}
