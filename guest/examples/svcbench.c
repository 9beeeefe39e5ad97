/* svcbench: round trips of 64 bytes, polled, between `ping` and `pong` in
 * one run: first over the bare channel "rtt" (send, spin until the echo
 * comes back), then as service calls of "echo" (parley_svc_send /
 * parley_svc_recv on the caller, parley_svc_try_request / parley_svc_reply
 * on the provider). Console: `chan_rtt <cycles>...` and `svc_rtt
 * <cycles>...` from ping (TSC cycles per round trip, after `warm` untimed
 * ones), `K <tsc_khz>`.
 *
 * Command line: mode=ping|pong n=N warm=W */
#include <parley/guest.h>

#define MSG 64
#define PER_LINE 40
#define N_MAX 20000

static uint8_t msg[MSG] __attribute__((aligned(8)));
static uint8_t buf[PARLEY_SVC_FRAME_MAX] __attribute__((aligned(8)));
static uint64_t cyc[N_MAX];
static const struct parley_boot_info *boot;

static void print_series(const char *key, const uint64_t *v, long n)
{
	for (long i = 0; i < n; i += PER_LINE) {
		char line[1000];
		int at = parley_snprintf(line, sizeof(line), "%s", key);
		for (long j = i; j < n && j < i + PER_LINE; j++)
			at += parley_snprintf(line + at, sizeof(line) - (size_t)at,
					      " %lu", (unsigned long)v[j]);
		parley_printf("%s\n", line);
	}
}

/* Spin on the ring: the polled figure, no sleeping. */
static int64_t recv_spin(struct parley_chan *c, uint32_t *len)
{
	for (;;) {
		int rc = parley_ring_pop(&c->rx, buf, sizeof(buf), len);
		if (rc == PARLEY_RING_OK)
			return PARLEY_OK;
		if (rc != PARLEY_RING_EMPTY)
			return PARLEY_E_INVAL;
		__builtin_ia32_pause();
	}
}

static int ping(long n, long warm)
{
	struct parley_chan c;
	int64_t rc = parley_chan_open("rtt", &c, NULL);
	if (rc != PARLEY_OK) {
		parley_printf("svcbench: open rtt %ld\n", (long)rc);
		return 1;
	}
	for (long i = -warm; i < n; i++) {
		uint64_t t0 = parley_rdtsc();
		uint32_t len;
		if (parley_ring_push(&c.tx, msg, MSG) != PARLEY_RING_OK ||
		    recv_spin(&c, &len) != PARLEY_OK || len != MSG)
			return 1;
		if (i >= 0)
			cyc[i] = parley_rdtsc() - t0;
	}
	print_series("chan_rtt", cyc, n);
	struct parley_svc_conn s;
	rc = PARLEY_E_PEER_DOWN;
	/* (LIMIT: the agent's bucket of calls, emptied by a long wait) */
	for (int i = 0; i < 1000 && (rc == PARLEY_E_PEER_DOWN ||
				     rc == PARLEY_E_LIMIT); i++) {
		if (i)
			parley_sleep_ns(rc == PARLEY_E_LIMIT ? 50000000
							     : 1000000);
		rc = parley_svc_connect("echo", "pong", &s, NULL);
	}
	if (rc != PARLEY_OK) {
		parley_printf("svcbench: connect echo %ld\n", (long)rc);
		return 1;
	}
	for (long i = -warm; i < n; i++) {
		uint64_t t0 = parley_rdtsc();
		uint32_t id, got, len;
		int32_t st;
		if (parley_svc_send(&s, msg, MSG, &id) != PARLEY_OK ||
		    parley_svc_recv(&s, &got, &st, buf, sizeof(buf), &len) !=
			    PARLEY_OK ||
		    got != id || len != MSG)
			return 1;
		if (i >= 0)
			cyc[i] = parley_rdtsc() - t0;
	}
	print_series("svc_rtt", cyc, n);
	parley_chan_close(&s.chan);
	parley_printf("K %lu\n", (unsigned long)boot->tsc_khz);
	return 0;
}

static int pong(long n, long warm)
{
	struct parley_chan c, sc;
	int64_t rc = parley_chan_open("rtt", &c, NULL);
	if (rc != PARLEY_OK || parley_svc_offer("echo") != PARLEY_OK)
		return 1;
	for (long i = -warm; i < n; i++) {
		uint32_t len;
		if (recv_spin(&c, &len) != PARLEY_OK ||
		    parley_ring_push(&c.tx, buf, len) != PARLEY_RING_OK)
			return 1;
	}
	while ((rc = parley_svc_accept("echo", &sc, NULL)) == PARLEY_E_TIMEOUT)
		parley_sleep_ns(200000);
	if (rc != PARLEY_OK)
		return 1;
	static uint8_t req[MSG];
	for (long i = -warm; i < n;) {
		uint32_t id, len;
		rc = parley_svc_try_request(&sc, &id, req, sizeof(req), &len);
		if (rc == PARLEY_E_TIMEOUT) {
			__builtin_ia32_pause();
			continue;
		}
		if (rc != PARLEY_OK ||
		    parley_svc_reply(&sc, id, 0, req, len) != PARLEY_OK)
			return 1;
		i++;
	}
	return 0;
}

int main(const struct parley_boot_info *bi)
{
	long n = parley_cmdline_int(bi, "n", 2000);
	long warm = parley_cmdline_int(bi, "warm", 200);
	if (n < 1 || n > N_MAX || warm < 0)
		return 2;
	boot = bi;
	size_t len;
	const char *m = parley_cmdline_get(bi, "mode", &len);
	if (m && len == 4 && !strncmp(m, "ping", 4))
		return ping(n, warm);
	if (m && len == 4 && !strncmp(m, "pong", 4))
		return pong(n, warm);
	return 2;
}
