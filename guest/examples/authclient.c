/* authclient: asks the "auth" service of partition `target` (default
 * "auth") to check user:password — once right, once wrong — then, with
 * n=N, N calls alternating right and wrong with up to `inflight` in
 * flight, each answer checked against what it must be.
 *
 * Command line: target=NAME user=NAME pass=RIGHT n=N inflight=K
 *   delay_ms=D (sleep first: the provider is then surely asleep)
 *   extra=K    after the two calls, K more connections, each printed
 *              ("extra connect I RC"), one call on each that connected,
 *              kept open until the end
 *   reconnect=R  at the end, R times: connect, one call, hang up
 *   overlap=1  after the two calls: open B and call it, hang up the
 *              first connection, open C, call C then B, hang up both
 * Prints "connect auth RC DETAIL" when the agent refuses the call. */
#include <parley/guest.h>
#include "authproto.h"

static struct parley_svc_conn conn;
static char user[64], pass[64], target[64];

static void arg(const struct parley_boot_info *bi, const char *key,
		const char *dflt, char *out)
{
	size_t len = 0;
	const char *v = parley_cmdline_get(bi, key, &len);
	if (!v || !len || len > 63) {
		v = dflt;
		len = strlen(dflt);
	}
	memcpy(out, v, len);
	out[len] = 0;
}

/* "user:password", right or with a wrong password. */
static uint32_t request(char *out, int right)
{
	return (uint32_t)parley_snprintf(out, AUTH_MSG_MAX, "%s:%s%s", user,
					 pass, right ? "" : "x");
}

static int once(struct parley_svc_conn *c, int right)
{
	char req[AUTH_MSG_MAX], ans[AUTH_MSG_MAX + 1];
	int32_t st = -1;
	uint32_t len = 0;
	int64_t rc = parley_svc_call(c, req, request(req, right), &st, ans,
				     AUTH_MSG_MAX, &len);
	if (rc != PARLEY_OK) {
		parley_printf("call failed: %ld\n", (long)rc);
		return 1;
	}
	ans[len] = 0;
	parley_printf("%s password: status %d %s\n", right ? "right" : "wrong",
		      (int)st, ans);
	return 0;
}

static int many(long n, long inflight)
{
	char req[AUTH_MSG_MAX], ans[AUTH_MSG_MAX];
	uint8_t want[64]; /* expected status by id % 64 (ids are sequential,
			   * fewer than 64 in flight) */
	long sent = 0, got = 0, bad = 0;
	if (inflight < 1 || inflight > PARLEY_SVC_INFLIGHT)
		inflight = 8;
	while (got < n) {
		while (sent < n && (long)conn.ids.n < inflight) {
			int right = sent % 2 == 0;
			uint32_t id;
			int64_t rc = parley_svc_send(&conn, req,
						     request(req, right), &id);
			if (rc != PARLEY_OK) {
				parley_printf("call failed: %ld after %ld\n",
					      (long)rc, got);
				return 1;
			}
			want[id % 64] = right ? AUTH_OK : AUTH_WRONG;
			sent++;
		}
		uint32_t id, len;
		int32_t st;
		int64_t rc = parley_svc_recv(&conn, &id, &st, ans, sizeof(ans),
					     &len);
		if (rc != PARLEY_OK) {
			parley_printf("call failed: %ld after %ld\n", (long)rc,
				      got);
			return 1;
		}
		if (st != want[id % 64])
			bad++;
		got++;
	}
	parley_printf("%ld calls, %ld in flight, %ld wrong answers\n", got,
		      inflight, bad);
	return bad != 0;
}

/* Hang up a call that is not the provider's newest while another stays
 * open, then call again: A (the first connection) and B open, A hung up,
 * C opened, then C and B called. A provider that lost track of B when
 * it replaced A with C never answers B. */
static int overlap(void)
{
	static struct parley_svc_conn b, c;
	if (parley_svc_connect(AUTH_SERVICE, target, &b, NULL) != PARLEY_OK ||
	    once(&b, 1))
		return 1;
	parley_chan_close(&conn.chan);
	if (parley_svc_connect(AUTH_SERVICE, target, &c, NULL) != PARLEY_OK ||
	    once(&c, 1) || once(&b, 1))
		return 1;
	parley_chan_close(&b.chan);
	parley_chan_close(&c.chan);
	parley_printf("overlap: B answered after A hung up\n");
	return 0;
}

int main(const struct parley_boot_info *bi)
{
	arg(bi, "target", "auth", target);
	arg(bi, "user", "alice", user);
	arg(bi, "pass", "secret", pass);
	long n = parley_cmdline_int(bi, "n", 0);
	long inflight = parley_cmdline_int(bi, "inflight", 8);
	char detail[64];
	long delay_ms = parley_cmdline_int(bi, "delay_ms", 0);
	if (delay_ms > 0)
		parley_sleep_ns((uint64_t)delay_ms * 1000000);
	/* The provider may not have offered yet: not offered is PEER_DOWN,
	 * asked again for up to a second. */
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 200 && rc == PARLEY_E_PEER_DOWN; i++) {
		if (i)
			parley_sleep_ns(5000000);
		rc = parley_svc_connect(AUTH_SERVICE, target, &conn, detail);
	}
	if (rc != PARLEY_OK) {
		detail[63] = 0;
		parley_printf("connect %s %ld %s\n", AUTH_SERVICE, (long)rc,
			      detail);
		return 0;
	}
	if (once(&conn, 1) || once(&conn, 0))
		return 1;
	static struct parley_svc_conn more[8];
	long extra = parley_cmdline_int(bi, "extra", 0);
	for (long i = 0; i < extra && i < 8; i++) {
		rc = parley_svc_connect(AUTH_SERVICE, target, &more[i], NULL);
		parley_printf("extra connect %ld %ld\n", i, (long)rc);
		/* One call on each: answered, it was accepted, so the
		 * provider counts this caller before we stop (a call not
		 * yet accepted goes with its caller, uncounted). */
		if (rc == PARLEY_OK && once(&more[i], 1))
			return 1;
	}
	if (parley_cmdline_int(bi, "overlap", 0))
		return overlap();
	int r = n ? many(n, inflight) : 0;
	parley_chan_close(&conn.chan);
	long again = parley_cmdline_int(bi, "reconnect", 0);
	for (long i = 0; r == 0 && i < again; i++) {
		rc = parley_svc_connect(AUTH_SERVICE, target, &conn, NULL);
		if (rc != PARLEY_OK) {
			parley_printf("reconnect %ld: %ld\n", i, (long)rc);
			return 1;
		}
		r = once(&conn, 1);
		parley_chan_close(&conn.chan);
	}
	if (again)
		parley_printf("reconnected %ld times\n", again);
	return r;
}
