/* chantest: runs the channel steps its command line lists, printing what
 * each returned, so tests can script one side of a scenario:
 *
 *   steps=open:c1,send:0:100,tamper:motd,open:c2,recvall:0,touch:0
 *
 *   open:NAME        open a channel (retries while the peer is down);
 *                    prints "open NAME <ret> <detail>", keeps it as the
 *                    next index (0, 1, ...)
 *   send:I:N         send N 64-byte messages with sequence numbers
 *   recv:I:N         receive N and check their sequence numbers
 *   recvall:I        receive until CLOSED, then print "closed I"
 *   sendall:I        send until CLOSED, then print "closed I"
 *   tamper:FILE      flip the first byte of a config file in memory
 *   same:FILE        write the first byte of a config file back unchanged
 *   close:I          close channel I
 *   stale:I          use the closed handle of I: notify, wait, close
 *   touch:I          read channel I's window (after a revoke: stopped)
 *   rowrite:I        write into I's receive data (read-only: stopped)
 *   scribble:I:N     write N rounds of garbage over this side's ring
 *                    indices and records, ringing the peer each time
 *   sleep:MS
 *   spam:N:NAME      ask N times for channel NAME (a stream of audit
 *                    events when there is no grant), quietly
 *   spamn:N:PREFIX   the same for channels PREFIX0 .. PREFIX<N-1>: every
 *                    audit event names its own channel (the outbox tests
 *                    count each one in the store)
 *   openclose:N:NAME open and close channel NAME N times as fast as it
 *                    goes; prints "openclosed N ok=K limit=L other=M"
 *   segloop:N:NAME   the same with segment set NAME (attach, detach):
 *                    "seglooped N ok=K limit=L other=M"
 * Unknown steps exit 9. Exit 0 when the steps ran to the end. */
#include <parley/guest.h>

#define MAXCH 4

static struct parley_chan ch[MAXCH];
static unsigned nch;
static const struct parley_boot_info *boot;

static const char *word(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	while (*p && *p != ':' && *p != ',' && *p != ' ') {
		if (n + 1 < cap)
			out[n++] = *p;
		p++;
	}
	out[n] = 0;
	return *p == ':' ? p + 1 : p;
}

static long num(const char *s)
{
	long n = 0;
	while (*s >= '0' && *s <= '9')
		n = n * 10 + (*s++ - '0');
	return n;
}

static int do_open(const char *name)
{
	struct parley_chan c;
	char detail[64] = "";
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 200 && rc == PARLEY_E_PEER_DOWN; i++) {
		rc = parley_chan_open(name, &c, detail);
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(5000000);
	}
	parley_printf("open %s %ld %s\n", name, (long)rc, detail);
	if (rc == PARLEY_OK && nch < MAXCH)
		ch[nch++] = c;
	return 0;
}

static int do_send(struct parley_chan *c, long n, int until_closed)
{
	uint64_t msg[8] = { 0 };
	for (long i = 0; until_closed || i < n; i++) {
		msg[0] = (uint64_t)i;
		int64_t rc = parley_chan_send(c, msg, sizeof(msg));
		if (rc == PARLEY_E_CLOSED && until_closed) {
			parley_printf("closed after %ld\n", i);
			return 0;
		}
		if (rc != PARLEY_OK) {
			parley_printf("send %ld failed: %ld\n", i, (long)rc);
			return 1;
		}
	}
	parley_printf("sent %ld\n", n);
	return 0;
}

static int do_recv(struct parley_chan *c, long n, int until_closed)
{
	uint64_t msg[8];
	for (long i = 0; until_closed || i < n; i++) {
		uint32_t len;
		int64_t rc = parley_chan_recv(c, msg, sizeof(msg), &len);
		if (rc == PARLEY_E_CLOSED && until_closed) {
			parley_printf("closed after %ld\n", i);
			return 0;
		}
		if (rc != PARLEY_OK) {
			parley_printf("recv %ld failed: %ld\n", i, (long)rc);
			return 1;
		}
		if (len != sizeof(msg) || msg[0] != (uint64_t)i) {
			parley_printf("recv %ld: bad message\n", i);
			return 1;
		}
	}
	parley_printf("received %ld\n", n);
	return 0;
}

static int do_file(const char *name, int flip)
{
	const struct parley_config_file *f = parley_config_find(boot, name);
	if (!f || !f->size) {
		parley_printf("no config file %s\n", name);
		return 1;
	}
	volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)f->gpa;
	p[0] = flip ? (uint8_t)(p[0] ^ 0xff) : p[0];
	parley_printf("%s %s\n", flip ? "tampered" : "rewrote", name);
	return 0;
}

static void do_stale(struct parley_chan *c)
{
	uint64_t h = c->handle, ready = 0;
	parley_printf("stale notify %ld\n", (long)parley_chan_notify(h));
	parley_printf("stale wait %ld\n",
		      (long)parley_chan_wait(&h, 1, 1000000, &ready));
	parley_printf("stale close %ld\n", (long)parley_chan_close(c));
	parley_printf("forged notify %ld\n",
		      (long)parley_chan_notify(0x7fff0003));
	parley_chan_doorbell(c); /* matches nothing: ignored */
	parley_printf("doorbell survived\n");
}

static uint64_t rnd_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Garbage wherever this side may write: its own index, its records. */
static void do_scribble(struct parley_chan *c, long rounds)
{
	for (long i = 0; i < rounds; i++) {
		if (c->has_tx) {
			c->tx.prod->head = rnd();
			for (int k = 0; k < 16; k++)
				((uint32_t *)c->tx.data)[rnd() %
					(c->tx.size / 4)] = (uint32_t)rnd();
			c->tx.prod->waiting = (uint32_t)rnd();
		}
		if (c->has_rx) {
			c->rx.cons->tail = rnd();
			c->rx.cons->waiting = (uint32_t)rnd();
		}
		parley_chan_doorbell(c);
		parley_chan_notify(c->handle);
		uint64_t h = c->handle;
		parley_chan_wait(&h, 1, 0, NULL);
	}
	parley_printf("scribbled %ld\n", rounds);
}

/* openclose / segloop: take and give back channel or set `name` n times
 * as fast as it goes, counting what the agent answered. */
static void loop_take(int chan, long n, const char *name)
{
	static struct parley_segset set;
	struct parley_chan c;
	long ok = 0, limit = 0, other = 0;
	for (long k = 0; k < n; k++) {
		int64_t rc = chan ? parley_chan_open(name, &c, NULL)
				  : parley_seg_attach(name, &set, NULL);
		if (rc == PARLEY_OK && chan)
			parley_chan_close(&c);
		else if (rc == PARLEY_OK)
			parley_seg_detach(name);
		ok += rc == PARLEY_OK;
		limit += rc == PARLEY_E_LIMIT;
		other += rc != PARLEY_OK && rc != PARLEY_E_LIMIT;
	}
	parley_printf("%s %ld ok=%ld limit=%ld other=%ld\n",
		      chan ? "openclosed" : "seglooped", n, ok, limit, other);
}

static int step(const char *op, const char *a1, const char *a2)
{
	long i = num(a1);
	struct parley_chan *c = i < (long)nch ? &ch[i] : NULL;
	if (!strcmp(op, "open"))
		return do_open(a1);
	if (!strcmp(op, "tamper") || !strcmp(op, "same"))
		return do_file(a1, op[0] == 't');
	if (!strcmp(op, "spam")) {
		struct parley_chan c;
		long n = num(a1), ok = 0;
		for (long k = 0; k < n; k++)
			ok += parley_chan_open(a2, &c, NULL) == PARLEY_OK;
		parley_printf("spammed %ld (%ld allowed)\n", n, ok);
		return 0;
	}
	if (!strcmp(op, "spamn")) {
		struct parley_chan c;
		long n = num(a1), ok = 0;
		for (long k = 0; k < n; k++) {
			char name[48], digits[24];
			size_t len = 0, nd = 0;
			for (; a2[len] && len < 24; len++)
				name[len] = a2[len];
			for (long v = k; nd == 0 || v; v /= 10)
				digits[nd++] = (char)('0' + v % 10);
			while (nd)
				name[len++] = digits[--nd];
			name[len] = 0;
			ok += parley_chan_open(name, &c, NULL) == PARLEY_OK;
		}
		parley_printf("spammed %ld (%ld allowed)\n", n, ok);
		return 0;
	}
	if (!strcmp(op, "openclose") || !strcmp(op, "segloop")) {
		loop_take(op[0] == 'o', num(a1), a2);
		return 0;
	}
	if (!strcmp(op, "sleep")) {
		parley_sleep_ns((uint64_t)i * 1000000);
		return 0;
	}
	if (!c) {
		parley_printf("%s: no channel %ld\n", op, i);
		return 1;
	}
	if (!strcmp(op, "send") || !strcmp(op, "sendall"))
		return do_send(c, num(a2), op[4] == 'a');
	if (!strcmp(op, "recv") || !strcmp(op, "recvall"))
		return do_recv(c, num(a2), op[4] == 'a');
	if (!strcmp(op, "close")) {
		parley_printf("close %ld\n", (long)parley_chan_close(c));
		return 0;
	}
	if (!strcmp(op, "stale")) {
		do_stale(c);
		return 0;
	}
	if (!strcmp(op, "touch")) {
		parley_printf("touching %ld\n", i);
		(void)((volatile uint8_t *)(uintptr_t)c->hdr)[0];
		return 0;
	}
	if (!strcmp(op, "rowrite")) {
		parley_printf("writing read-only data of %ld\n", i);
		c->rx.data[0] = 1;
		return 0;
	}
	if (!strcmp(op, "scribble")) {
		do_scribble(c, num(a2));
		return 0;
	}
	parley_printf("unknown step %s\n", op);
	return 9;
}

int main(const struct parley_boot_info *bi)
{
	boot = bi;
	size_t len;
	const char *p = parley_cmdline_get(bi, "steps", &len);
	const char *end = p ? p + len : NULL;
	while (p && p < end) {
		char op[16], a1[64], a2[64];
		p = word(p, op, sizeof(op));
		p = word(p, a1, sizeof(a1));
		a2[0] = 0;
		if (p[-1] == ':')
			p = word(p, a2, sizeof(a2));
		if (*p == ',')
			p++;
		int rc = step(op, a1, a2);
		if (rc)
			return rc;
	}
	parley_printf("done\n");
	return 0;
}
