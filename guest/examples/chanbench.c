/* chanbench: the partition the chan bench suite (bench/bench_chan) drives.
 *
 *   mode=tx  rounds=R mib=M [whatif=1] [one=1]
 *                             producer on "tput": 64 B, 4 KiB, 64 KiB
 *                             messages, R rounds of (warm-up + M MiB) each;
 *                             whatif=1: all of it again with fast copies;
 *                             one=1: then 64 B messages one per push (an
 *                             index publish per message, no batching)
 *   mode=rx  rounds=R mib=M [whatif=1] [one=1]
 *                             its consumer: times each round's M MiB, then
 *                             times copies inside the guest for comparison
 *   mode=ping poll=N wait=N warm=W
 *                             round trips on "rtt", 64 B each way: first
 *                             the pieces alone (doorbell, CHAN_WAIT that
 *                             does not sleep, the SDK's spin), then phases
 *                             polled (bare ring, with the wake-up protocol),
 *                             sleeping (doorbell, CHAN_NOTIFY), half (only
 *                             pong sleeps)
 *   mode=pong poll=N wait=N warm=W
 *                             echoes every ping in the same phases
 *   mode=open n=N touch=T     the first CHAN_OPEN of "open" (it creates the
 *                             channel), then OPEN + CLOSE N times, then T
 *                             times after rewriting one config page with
 *                             the bytes it already holds
 *   mode=idle                 sleeps until stopped (a peer that is up)
 *
 * Results go to the console after the timed work, one line each:
 * `<key> <number>...`; times are TSC cycles (boot info's tsc_khz, printed
 * as `K <khz>`). The bench parses these lines; it asserts nothing.
 *
 * The loops here use the ring primitives of <parley/ring.h> and the SDK's
 * doorbell and CHAN_WAIT, with guest/lib/chan.c's spin-then-sleep
 * protocol, plus a full fence between publishing an index and reading the
 * peer's waiting flag: without it the x86 store buffer lets the flag be
 * read before the index is visible, and both sides may sleep.
 */
#include <stddef.h>

/* The what-if of the throughput run (tx/rx `whatif=1`): the same rounds
 * again with the ring's copies done by `rep movsb` instead of the SDK's
 * byte-at-a-time memcpy. <parley/ring.h> copies with __builtin_memcpy,
 * which -fno-builtin turns into a call to memcpy; routing it through
 * ring_copy() here, which calls that same memcpy unless fast_copy is set,
 * leaves the measured path as the SDK's apart from one predictable branch.
 * Everything else in this file copies with plain memcpy or assignments. */
void *memcpy(void *dst, const void *src, size_t n);
static int fast_copy;

static inline void *ring_copy(void *dst, const void *src, size_t n)
{
	if (!fast_copy)
		return memcpy(dst, src, n);
	void *d = dst;
	__asm__ volatile("rep movsb"
			 : "+D"(d), "+S"(src), "+c"(n)
			 :
			 : "memory");
	return dst;
}
#define __builtin_memcpy(d, s, n) ring_copy((d), (s), (n))

#include <parley/guest.h>

#define SPIN        4000          /* as guest/lib/chan.c */
#define SPIN_FOREVER 0xffffffffu
/* A sleep is bounded so that a lost wake-up costs time, not the run. */
#define WAIT_NS     10000000ull
#define BATCH_MAX   32
#define AREA        (64u << 10)   /* biggest message; a batch fits in it */
#define RING_BYTES  (1u << 20)    /* the "tput" grant's ring_bytes */
#define NSIZES      3
#define ROUNDS_MAX  16
#define RTT_MAX     20000
#define OPEN_MAX    64
#define RTT_MSG     64

static const uint32_t sizes[NSIZES] = { 64, 4096, 65536 };

static uint8_t area[AREA] __attribute__((aligned(64)));
static uint8_t copy_buf[RING_BYTES] __attribute__((aligned(64)));
static uint32_t samples[RTT_MAX];
static unsigned timeouts; /* sleeps that ended by the bound, timed phases */

static int is_mode(const char *m, size_t len, const char *want)
{
	return len == strlen(want) && strncmp(m, want, len) == 0;
}

static uint32_t load32(const uint32_t *f)
{
	return __atomic_load_n(f, __ATOMIC_SEQ_CST);
}

static void store32(uint32_t *f, uint32_t v)
{
	__atomic_store_n(f, v, __ATOMIC_SEQ_CST);
}

static void fence(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- wake-up protocol -------------------------------------------------- */

static int bell_notify; /* wake with CHAN_NOTIFY instead of the doorbell */
static int bare;        /* polled phase without the protocol at all */

static void wake(struct parley_chan *c, const uint32_t *flag)
{
	if (bare)
		return;
	fence(); /* our index store before the peer's flag load */
	if (!load32(flag))
		return;
	if (bell_notify)
		parley_chan_notify(c->handle);
	else
		parley_chan_doorbell(c);
}

static int rx_ready(const struct parley_chan *c, uint32_t len)
{
	(void)len;
	return parley_ring_readable(&c->rx);
}

static int tx_ready(const struct parley_chan *c, uint32_t len)
{
	int64_t used = parley_ring_used(&c->tx, c->tx.prod->head);
	return used < 0 ||
	       (uint64_t)used + parley_ring_rec_bytes(len) <= c->tx.size;
}

/* Say we sleep, look once more, sleep (bounded). */
static int64_t sleep_on(struct parley_chan *c, uint32_t *flag, uint32_t len,
			int (*ready)(const struct parley_chan *, uint32_t))
{
	int64_t w = PARLEY_OK;
	store32(flag, 1);
	if (!ready(c, len)) {
		w = parley_chan_wait(&c->handle, 1, WAIT_NS, NULL);
		if (w == PARLEY_E_TIMEOUT)
			timeouts++;
	}
	store32(flag, 0);
	return w == PARLEY_E_TIMEOUT ? PARLEY_OK : w;
}

/* Push all n messages, spinning `spin` times on a full ring before each
 * sleep. */
static int64_t tx_all(struct parley_chan *c, const void *const *msgs,
		      const uint32_t *lens, unsigned n, unsigned spin)
{
	unsigned done = 0;
	for (unsigned i = 0;; i++) {
		unsigned pushed;
		int rc = parley_ring_push_batch(&c->tx, msgs + done, lens + done,
						n - done, &pushed);
		if (pushed) {
			done += pushed;
			wake(c, &c->tx.cons->waiting);
			i = 0;
		}
		if (done == n)
			return PARLEY_OK;
		if (rc != PARLEY_RING_FULL)
			return PARLEY_E_INVAL;
		if (i < spin) {
			__builtin_ia32_pause();
			continue;
		}
		int64_t w = sleep_on(c, &c->tx.prod->waiting, lens[done],
				     tx_ready);
		if (w != PARLEY_OK)
			return w;
		i = 0;
	}
}

/* Pop between 1 and n messages into bufs, spinning `spin` times on an
 * empty ring before each sleep. */
static int64_t rx_some(struct parley_chan *c, void *const *bufs,
		       const uint32_t *caps, uint32_t *lens, unsigned n,
		       unsigned *got, unsigned spin)
{
	for (unsigned i = 0;; i++) {
		int rc = parley_ring_pop_batch(&c->rx, bufs, caps, lens, n, got);
		if (rc == PARLEY_RING_OK) {
			wake(c, &c->rx.prod->waiting);
			return PARLEY_OK;
		}
		if (rc != PARLEY_RING_EMPTY)
			return PARLEY_E_INVAL;
		if (i < spin) {
			__builtin_ia32_pause();
			continue;
		}
		int64_t w = sleep_on(c, &c->rx.cons->waiting, 0, rx_ready);
		if (w != PARLEY_OK)
			return w;
		i = 0;
	}
}

static int64_t open_chan(const char *name, struct parley_chan *c)
{
	char detail[64];
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 100 && rc == PARLEY_E_PEER_DOWN; i++) {
		rc = parley_chan_open(name, c, detail);
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(10000000);
	}
	if (rc != PARLEY_OK)
		parley_printf("chanbench: open %s: %ld %s\n", name, (long)rc,
			      detail);
	return rc;
}

/* A few bytes on the "ctl" channel: start and end of the throughput run. */
static int64_t ctl_send(struct parley_chan *c)
{
	uint64_t v = 1;
	const void *m = &v;
	uint32_t len = sizeof(v);
	return tx_all(c, &m, &len, 1, SPIN);
}

static int64_t ctl_recv(struct parley_chan *c)
{
	uint64_t v;
	void *b = &v;
	uint32_t cap = sizeof(v), len;
	unsigned got;
	return rx_some(c, &b, &cap, &len, 1, &got, SPIN);
}

/* ---- throughput ---------------------------------------------------------- */

/* Set for the one=1 pass: every push and pop moves one message. */
static int one_at_a_time;

static unsigned batch_of(uint32_t size)
{
	if (one_at_a_time)
		return 1;
	unsigned b = AREA / size;
	return b > BATCH_MAX ? BATCH_MAX : b;
}

/* Messages per round: mib MiB of payload; warm-up: twice the ring, so the
 * ring's pages are touched and the pipeline is full before the clock. */
static uint64_t round_msgs(uint32_t size, long mib)
{
	return ((uint64_t)mib << 20) / size;
}

static uint64_t warm_msgs(uint32_t size)
{
	uint64_t w = 2ull * RING_BYTES / size;
	return w < 16 ? 16 : w;
}

/* Each message carries its sequence number in its first and (inverted)
 * last 8 bytes: cheap to write and check, and a lost, repeated or torn
 * message shows. */
static void stamp(uint8_t *m, uint32_t size, uint64_t seq)
{
	/* Messages start 8-byte aligned and sizes are multiples of 8. */
	*(uint64_t *)(void *)m = seq;
	*(uint64_t *)(void *)(m + size - 8) = ~seq;
}

static int stamp_ok(const uint8_t *m, uint32_t len, uint32_t size,
		    uint64_t seq)
{
	if (len != size)
		return 0;
	return *(const uint64_t *)(const void *)m == seq &&
	       *(const uint64_t *)(const void *)(m + size - 8) == ~seq;
}

static int64_t tx_size(struct parley_chan *c, uint32_t size, long rounds,
		       long mib)
{
	const void *msgs[BATCH_MAX];
	uint32_t lens[BATCH_MAX];
	unsigned b = batch_of(size);
	uint64_t total = (uint64_t)rounds * (warm_msgs(size) +
					     round_msgs(size, mib));
	for (unsigned i = 0; i < b; i++) {
		msgs[i] = area + i * size;
		lens[i] = size;
	}
	for (uint64_t seq = 0; seq < total;) {
		unsigned n = total - seq < b ? (unsigned)(total - seq) : b;
		for (unsigned i = 0; i < n; i++)
			stamp(area + i * size, size, seq + i);
		int64_t rc = tx_all(c, msgs, lens, n, SPIN);
		if (rc != PARLEY_OK)
			return rc;
		seq += n;
	}
	return PARLEY_OK;
}

static int run_tx(const struct parley_boot_info *bi)
{
	long rounds = parley_cmdline_int(bi, "rounds", 5);
	long mib = parley_cmdline_int(bi, "mib", 16);
	long passes = parley_cmdline_int(bi, "whatif", 0) ? 2 : 1;
	long one = parley_cmdline_int(bi, "one", 0);
	struct parley_chan c, ctl;
	if (open_chan("tput", &c) != PARLEY_OK ||
	    open_chan("tput_ctl", &ctl) != PARLEY_OK)
		return 2;
	if (ctl_recv(&ctl) != PARLEY_OK) /* the consumer is there */
		return 1;
	for (unsigned k = 0; k < passes * NSIZES; k++) {
		fast_copy = k >= NSIZES;
		if (tx_size(&c, sizes[k % NSIZES], rounds, mib) != PARLEY_OK) {
			parley_printf("chanbench: tx failed\n");
			return 1;
		}
	}
	fast_copy = 0;
	one_at_a_time = one != 0;
	if (one && tx_size(&c, 64, rounds, mib) != PARLEY_OK) {
		parley_printf("chanbench: tx failed\n");
		return 1;
	}
	/* Stay until the consumer has read everything: our exit would
	 * revoke the channel under it. */
	return ctl_recv(&ctl) == PARLEY_OK ? 0 : 1;
}

struct tput_row {
	uint32_t size;
	uint64_t msgs, cycles, bad;
};

/* TSC cycles against the CLOCK hypercall over ~50 ms, once and outside
 * every timed interval, so that the bench can check tsc_khz (a hypercall
 * inside a timed round would stall the pipeline it measures). */
static void tsc_check(const struct parley_boot_info *bi)
{
	uint64_t c0 = parley_clock_ns(), t0 = parley_rdtsc(), t1;
	do
		t1 = parley_rdtsc();
	while (t1 - t0 < bi->tsc_khz * 50);
	uint64_t c1 = parley_clock_ns();
	parley_printf("tsccheck %lu %lu\n", t1 - t0, c1 - c0);
}

/* Receive n messages starting at *seq, checking each. */
static int64_t rx_count(struct parley_chan *c, uint32_t size, uint64_t n,
			uint64_t *seq, uint64_t *bad)
{
	void *bufs[BATCH_MAX];
	uint32_t caps[BATCH_MAX], lens[BATCH_MAX];
	unsigned b = batch_of(size);
	for (unsigned i = 0; i < b; i++) {
		bufs[i] = area + i * size;
		caps[i] = size;
	}
	while (n) {
		unsigned got, want = n < b ? (unsigned)n : b;
		int64_t rc = rx_some(c, bufs, caps, lens, want, &got, SPIN);
		if (rc != PARLEY_OK)
			return rc;
		for (unsigned i = 0; i < got; i++)
			*bad += !stamp_ok(bufs[i], lens[i], size, *seq + i);
		*seq += got;
		n -= got;
	}
	return PARLEY_OK;
}

static int64_t rx_size(struct parley_chan *c, uint32_t size, long rounds,
		       long mib, struct tput_row *rows)
{
	uint64_t seq = 0;
	for (long r = 0; r < rounds; r++) {
		struct tput_row *row = &rows[r];
		row->size = size;
		row->msgs = round_msgs(size, mib);
		int64_t rc = rx_count(c, size, warm_msgs(size), &seq, &row->bad);
		uint64_t t0 = parley_rdtsc();
		if (rc == PARLEY_OK)
			rc = rx_count(c, size, row->msgs, &seq, &row->bad);
		uint64_t t1 = parley_rdtsc();
		if (rc != PARLEY_OK)
			return rc;
		row->cycles = t1 - t0;
	}
	return PARLEY_OK;
}

/* What a copy costs in here, for the README's breakdown: the same
 * messages copied into a ring-sized buffer with the SDK's memcpy (method
 * 0) and with `rep movsb` (method 1). */
static void guest_copies(long mib)
{
	for (unsigned s = 0; s < NSIZES; s++) {
		for (int method = 0; method < 2; method++) {
			uint64_t n = round_msgs(sizes[s], mib), off = 0;
			uint64_t t0 = parley_rdtsc();
			for (uint64_t i = 0; i < n; i++) {
				fast_copy = method;
				ring_copy(copy_buf + off, area, sizes[s]);
				off = (off + sizes[s]) & (RING_BYTES - 1);
			}
			uint64_t t1 = parley_rdtsc();
			fast_copy = 0;
			parley_printf("gcopy %u %d %lu %lu\n", sizes[s], method,
				      t1 - t0, n * sizes[s]);
		}
	}
}

static int run_rx(const struct parley_boot_info *bi)
{
	static struct tput_row rows[2 * NSIZES * ROUNDS_MAX], ones[ROUNDS_MAX];
	long rounds = parley_cmdline_int(bi, "rounds", 5);
	long mib = parley_cmdline_int(bi, "mib", 16);
	long passes = parley_cmdline_int(bi, "whatif", 0) ? 2 : 1;
	long one = parley_cmdline_int(bi, "one", 0);
	struct parley_chan c, ctl;
	if (rounds < 1 || rounds > ROUNDS_MAX || mib < 1)
		return 2;
	if (open_chan("tput", &c) != PARLEY_OK ||
	    open_chan("tput_ctl", &ctl) != PARLEY_OK || ctl_send(&ctl) != PARLEY_OK)
		return 2;
	for (unsigned k = 0; k < passes * NSIZES; k++) {
		fast_copy = k >= NSIZES;
		if (rx_size(&c, sizes[k % NSIZES], rounds, mib,
			    &rows[k * rounds]) != PARLEY_OK) {
			parley_printf("chanbench: rx failed\n");
			return 1;
		}
	}
	fast_copy = 0;
	one_at_a_time = one != 0;
	if (one && rx_size(&c, 64, rounds, mib, ones) != PARLEY_OK) {
		parley_printf("chanbench: rx failed\n");
		return 1;
	}
	one_at_a_time = 0;
	ctl_send(&ctl);
	for (long i = 0; i < passes * NSIZES * rounds; i++)
		parley_printf("%s %u %lu %lu %lu\n",
			      i < NSIZES * rounds ? "tput" : "tput_whatif",
			      rows[i].size, rows[i].msgs, rows[i].cycles,
			      rows[i].bad);
	for (long i = 0; one && i < rounds; i++)
		parley_printf("tput_one %u %lu %lu %lu\n", ones[i].size,
			      ones[i].msgs, ones[i].cycles, ones[i].bad);
	guest_copies(mib);
	tsc_check(bi);
	return 0;
}

/* ---- round trips --------------------------------------------------------- */

/* How each side waits for the other's message in one phase. */
struct rtt_phase {
	const char *key;
	int bare, notify;
	unsigned spin_ping, spin_pong; /* SPIN_FOREVER: polls; 0: sleeps */
	long n;
};

static uint8_t rtt_buf[RTT_MSG] __attribute__((aligned(8)));

static int64_t rtt_send(struct parley_chan *c, unsigned spin)
{
	const void *m = rtt_buf;
	uint32_t len = RTT_MSG;
	return tx_all(c, &m, &len, 1, spin);
}

static int64_t rtt_recv(struct parley_chan *c, unsigned spin)
{
	void *b = rtt_buf;
	uint32_t cap = RTT_MSG, len;
	unsigned got;
	return rx_some(c, &b, &cap, &len, 1, &got, spin);
}

static void print_samples(const char *key, const uint32_t *v, long n)
{
	char line[400];
	for (long i = 0; i < n;) {
		int len = parley_snprintf(line, sizeof(line), "%s", key);
		for (int k = 0; k < 24 && i < n; k++, i++)
			len += parley_snprintf(line + len, sizeof(line) - (size_t)len,
					       " %u", v[i]);
		parley_printf("%s\n", line);
	}
}

/* One phase as the pinger: warm-up, then n round trips each timed on its
 * own (one rdtsc per sample: the end of one is the start of the next). */
static int64_t ping_phase(struct parley_chan *c, const struct rtt_phase *ph,
			  long warm)
{
	bare = ph->bare;
	bell_notify = ph->notify;
	unsigned before = timeouts;
	uint64_t t = 0;
	for (long i = -warm; i < ph->n; i++) {
		*(int64_t *)(void *)rtt_buf = i;
		int64_t rc = rtt_send(c, ph->spin_ping);
		if (rc == PARLEY_OK)
			rc = rtt_recv(c, ph->spin_ping);
		if (rc != PARLEY_OK)
			return rc;
		uint64_t now = parley_rdtsc();
		if (i >= 0)
			samples[i] = (uint32_t)(now - t);
		t = now;
	}
	print_samples(ph->key, samples, ph->n);
	parley_printf("%s_timeouts %u\n", ph->key, timeouts - before);
	return PARLEY_OK;
}

/* The echo: what arrived goes straight back. */
static int64_t pong_phase(struct parley_chan *c, const struct rtt_phase *ph,
			  long warm)
{
	bare = ph->bare;
	bell_notify = ph->notify;
	for (long i = -warm; i < ph->n; i++) {
		int64_t rc = rtt_recv(c, ph->spin_pong);
		if (rc == PARLEY_OK)
			rc = rtt_send(c, ph->spin_pong);
		if (rc != PARLEY_OK)
			return rc;
	}
	return PARLEY_OK;
}

/* The pieces of a sleeping round trip, alone: what ringing the doorbell
 * costs the ringer, CHAN_WAIT with nothing to wait for (a hypercall round
 * trip through the vmm, poll() with a zero timeout), and how long the
 * SDK's spin before a sleep lasts. */
static void ping_pieces(struct parley_chan *c, long n)
{
	for (long i = 0; i < n; i++) {
		uint64_t t0 = parley_rdtsc();
		parley_chan_doorbell(c);
		samples[i] = (uint32_t)(parley_rdtsc() - t0);
	}
	print_samples("piece_bell", samples, n);
	for (long i = 0; i < n; i++) {
		uint64_t t0 = parley_rdtsc();
		parley_chan_wait(&c->handle, 1, 0, NULL);
		samples[i] = (uint32_t)(parley_rdtsc() - t0);
	}
	print_samples("piece_wait0", samples, n);
	for (long i = 0; i < n; i++) {
		uint64_t t0 = parley_rdtsc();
		for (unsigned k = 0; k < SPIN; k++)
			__builtin_ia32_pause();
		samples[i] = (uint32_t)(parley_rdtsc() - t0);
	}
	print_samples("piece_spin", samples, n);
}

static int run_rtt(const struct parley_boot_info *bi, int pinger)
{
	long poll = parley_cmdline_int(bi, "poll", 10000);
	long wait = parley_cmdline_int(bi, "wait", 1000);
	long warm = parley_cmdline_int(bi, "warm", 100);
	const struct rtt_phase ph[] = {
		{ "rtt_sync", 0, 0, SPIN, SPIN, 0 },
		{ "rtt_poll_bare", 1, 0, SPIN_FOREVER, SPIN_FOREVER, poll },
		{ "rtt_poll", 0, 0, SPIN_FOREVER, SPIN_FOREVER, poll },
		{ "rtt_wait", 0, 0, 0, 0, wait },
		{ "rtt_wait_notify", 0, 1, 0, 0, wait },
		{ "rtt_half", 0, 0, SPIN_FOREVER, 0, wait },
	};
	struct parley_chan c;
	if (poll < 1 || poll > RTT_MAX || wait < 1 || wait > RTT_MAX ||
	    warm < 1 || open_chan("rtt", &c) != PARLEY_OK)
		return 2;
	/* Spurious wake-ups these leave pong are harmless: it looks again. */
	if (pinger) {
		ping_pieces(&c, warm);
		tsc_check(bi);
	}
	for (unsigned i = 0; i < sizeof(ph) / sizeof(ph[0]); i++) {
		/* The sync phase only makes sure both are there. */
		long w = i == 0 ? 1 : warm;
		int64_t rc = pinger ? ping_phase(&c, &ph[i], w)
				    : pong_phase(&c, &ph[i], w);
		if (rc != PARLEY_OK) {
			parley_printf("chanbench: %s: %ld\n", ph[i].key, (long)rc);
			return 1;
		}
	}
	return 0;
}

/* ---- channel open -------------------------------------------------------- */

/* Write one config page with the bytes it holds: dirty (the vmm reports
 * it) but equal (the re-hash matches the baseline). */
static void touch_page(const struct parley_boot_info *bi)
{
	uint64_t pages = bi->config_size / PARLEY_PAGE_SIZE;
	volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)
		(bi->config_base + pages / 2 * PARLEY_PAGE_SIZE);
	for (unsigned i = 0; i < PARLEY_PAGE_SIZE / 8; i++)
		w[i] = w[i];
}

/* n opens, each timed around parley_chan_open, and the closes after
 * them (series `close`). */
static int open_series(const struct parley_boot_info *bi, const char *key,
		       long n, int touch)
{
	static uint32_t closes[OPEN_MAX];
	for (long i = 0; i < n; i++) {
		struct parley_chan c;
		if (touch)
			touch_page(bi);
		uint64_t t0 = parley_rdtsc();
		int64_t rc = parley_chan_open("open", &c, NULL);
		uint64_t t1 = parley_rdtsc();
		if (rc != PARLEY_OK) {
			parley_printf("chanbench: open: %ld\n", (long)rc);
			return 1;
		}
		samples[i] = (uint32_t)(t1 - t0);
		parley_chan_close(&c);
		closes[i] = (uint32_t)(parley_rdtsc() - t1);
	}
	print_samples(key, samples, n);
	print_samples("close", closes, n);
	return 0;
}

static int run_open(const struct parley_boot_info *bi)
{
	long n = parley_cmdline_int(bi, "n", 20);
	long touch = parley_cmdline_int(bi, "touch", 0);
	struct parley_chan c;
	if (n < 1 || n > OPEN_MAX || touch < 0 || touch > OPEN_MAX ||
	    (touch && !bi->config_size))
		return 2;
	/* The first open creates the channel and maps the peer's end too:
	 * timed alone (`open_first`, the successful call; a peer not yet up
	 * is waited for outside the clock). The second is the first of the
	 * steady state and is not timed. */
	uint64_t first = 0;
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 100 && rc == PARLEY_E_PEER_DOWN; i++) {
		uint64_t t0 = parley_rdtsc();
		rc = parley_chan_open("open", &c, NULL);
		first = parley_rdtsc() - t0;
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(10000000);
	}
	if (rc != PARLEY_OK)
		return 2;
	parley_chan_close(&c);
	if (open_chan("open", &c) != PARLEY_OK)
		return 2;
	parley_chan_close(&c);
	if (open_series(bi, "open_clean", n, 0))
		return 1;
	parley_printf("open_first %lu\n", first);
	return touch ? open_series(bi, "open_touched", touch, 1) : 0;
}

/* ---- entry --------------------------------------------------------------- */

int main(const struct parley_boot_info *bi)
{
	size_t len;
	const char *m = parley_cmdline_get(bi, "mode", &len);
	parley_printf("K %lu\n", bi->tsc_khz);
	if (!m)
		return 2;
	if (is_mode(m, len, "tx"))
		return run_tx(bi);
	if (is_mode(m, len, "rx"))
		return run_rx(bi);
	if (is_mode(m, len, "ping") || is_mode(m, len, "pong"))
		return run_rtt(bi, is_mode(m, len, "ping"));
	if (is_mode(m, len, "open"))
		return run_open(bi);
	if (is_mode(m, len, "idle"))
		for (;;)
			parley_sleep_ns(1000000000ull);
	parley_printf("chanbench: unknown mode\n");
	return 2;
}
