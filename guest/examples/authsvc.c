/* authsvc: the authentication service. Offers "auth"; each request is
 * "user:password", answered with AUTH_OK and "ok USER" if the SHA-256 of
 * the password (lower-case hex) is USER's entry in its key configuration
 * file "keys" (lines "USER HEX"), else AUTH_WRONG / AUTH_UNKNOWN /
 * AUTH_MALFORMED. Several callers at once (up to 8).
 *
 * Command line:
 *   callers=N     exit 0 once N callers have come and gone (default 1)
 *   stop_after=K  exit 3 after answering K requests (a provider that stops)
 *   tamper=1      flip a byte of "keys" before offering (a tampered
 *                 provider: the agent must refuse its callers)
 *   idle_ms=N     exit 0 if no caller came within N ms (default: wait)
 *   evil=1        answer the first request with a call id the caller
 *                 never used (a provider the SDK must not believe)
 *   wait_ms=N     longest sleep between looks for new callers (default
 *                 1000; -1: sleep until woken, relying on the agent's
 *                 signal of a new caller)
 */
#include <parley/guest.h>
#include "authproto.h"

#define MAX_CALLERS 8

static const struct parley_boot_info *boot;
static uint8_t req[AUTH_MSG_MAX];

static void hex(const uint8_t *d, char *out)
{
	static const char x[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = x[d[i] >> 4];
		out[2 * i + 1] = x[d[i] & 15];
	}
	out[64] = 0;
}

/* USER's hash from the key file, or NULL. */
static const char *lookup(const char *user, size_t ulen)
{
	const struct parley_config_file *f = parley_config_find(boot, "keys");
	if (!f)
		return NULL;
	const char *p = (const char *)(uintptr_t)f->gpa, *end = p + f->size;
	while (p < end) {
		const char *line = p;
		while (p < end && *p != '\n')
			p++;
		size_t n = (size_t)(p - line);
		if (n == ulen + 1 + 64 && !memcmp(line, user, ulen) &&
		    line[ulen] == ' ')
			return line + ulen + 1;
		p++;
	}
	return NULL;
}

static int32_t check(const uint8_t *m, uint32_t len, char *out, uint32_t *olen)
{
	uint32_t colon = 0;
	while (colon < len && m[colon] != ':')
		colon++;
	if (colon == 0 || colon == len || colon > 63) {
		*olen = (uint32_t)parley_snprintf(out, 64, "malformed");
		return AUTH_MALFORMED;
	}
	const char *want = lookup((const char *)m, colon);
	if (!want) {
		*olen = (uint32_t)parley_snprintf(out, 64, "unknown");
		return AUTH_UNKNOWN;
	}
	uint8_t d[32];
	char h[65];
	parley_sha256(m + colon + 1, len - colon - 1, d);
	hex(d, h);
	if (memcmp(h, want, 64)) {
		*olen = (uint32_t)parley_snprintf(out, 64, "denied");
		return AUTH_WRONG;
	}
	char user[64];
	memcpy(user, m, colon);
	user[colon] = 0;
	*olen = (uint32_t)parley_snprintf(out, 80, "ok %s", user);
	return AUTH_OK;
}

static void tamper(void)
{
	const struct parley_config_file *f = parley_config_find(boot, "keys");
	volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)f->gpa;
	p[0] ^= 0xff;
	parley_printf("tampered keys\n");
}

/* Hang up call i of ch[0..*n): close its handle, then move the last call
 * into its slot. Moving pointers instead (an array of pointers into ch
 * with accept filling ch[n]) let a new call overwrite a slot a live
 * pointer still named: the old call leaked, the new one was named twice,
 * and closing one name left the other touching a closed window. */
static void drop(struct parley_chan *ch, uint32_t *n, uint32_t i)
{
	parley_chan_close(&ch[i]);
	ch[i] = ch[--*n];
}

int main(const struct parley_boot_info *bi)
{
	boot = bi;
	long callers = parley_cmdline_int(bi, "callers", 1);
	long stop_after = parley_cmdline_int(bi, "stop_after", 0);
	long evil = parley_cmdline_int(bi, "evil", 0);
	if (!parley_config_find(bi, "keys")) {
		parley_printf("authsvc: no key file\n");
		return 2;
	}
	long idle_ms = parley_cmdline_int(bi, "idle_ms", 0);
	long wait_ms = parley_cmdline_int(bi, "wait_ms", 1000);
	uint64_t wait_ns = wait_ms < 0 ? UINT64_MAX : (uint64_t)wait_ms * 1000000;
	if (idle_ms && (uint64_t)idle_ms * 1000000 < wait_ns)
		wait_ns = (uint64_t)idle_ms * 1000000 / 4 + 1;
	uint64_t idle_end = parley_clock_ns() + (uint64_t)idle_ms * 1000000;
	if (parley_cmdline_int(bi, "tamper", 0))
		tamper();
	int64_t rc = parley_svc_offer(AUTH_SERVICE);
	parley_printf("offer %s %ld\n", AUTH_SERVICE, (long)rc);
	if (rc != PARLEY_OK)
		return 2;
	/* The calls held are ch[0..n), dense: a call that goes is closed and
	 * the last one moved into its slot, so each accept fills ch[n], a
	 * slot no live call uses. live[i] is always &ch[i] (what
	 * parley_svc_wait takes). */
	struct parley_chan ch[MAX_CALLERS], *live[MAX_CALLERS];
	for (uint32_t i = 0; i < MAX_CALLERS; i++)
		live[i] = &ch[i];
	uint32_t n = 0;
	long came = 0, gone = 0, served = 0;
	while (came < callers || n) {
		if (idle_ms && !came && parley_clock_ns() > idle_end) {
			parley_printf("authsvc: nobody called\n");
			return 0;
		}
		char who[64];
		while (n < MAX_CALLERS &&
		       parley_svc_accept(AUTH_SERVICE, &ch[n], who) == PARLEY_OK) {
			n++;
			came++;
			parley_printf("caller %s\n", who);
		}
		int progress = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t id, len, olen = 0;
			char out[96];
			while ((rc = parley_svc_try_request(live[i], &id, req,
					sizeof(req), &len)) == PARLEY_OK) {
				int32_t st = check(req, len, out, &olen);
				if (evil && !served)
					id += 1000; /* never in flight */
				parley_svc_reply(live[i], id, st, out, olen);
				progress = 1;
				if (++served == stop_after) {
					parley_printf("stopping after %ld\n",
						      served);
					return 3;
				}
			}
			if (rc == PARLEY_E_INVAL) {
				parley_printf("malformed request: dropped "
					      "caller\n");
				drop(ch, &n, i);
				gone++;
				i--;
			}
		}
		if (progress)
			continue;
		uint64_t ready = 0;
		rc = parley_svc_wait(live, n, wait_ns, &ready);
		if (rc != PARLEY_E_PEER_DOWN && rc != PARLEY_E_CLOSED)
			continue;
		for (uint32_t i = 0; i < n; i++)
			if ((ready >> i) & 1 &&
			    !parley_ring_readable(&live[i]->rx)) {
				drop(ch, &n, i);
				gone++;
				break;
			}
	}
	parley_printf("authsvc: %ld requests from %ld callers\n", served,
		      gone);
	return 0;
}
