/* updater: hands an agent update package down to the agent (issue 12).
 *
 * It gets the package through the partition's own facilities:
 *   source=chan (default)  from another partition over the channel
 *                          "update" (pkgsrc.c; protocol in updproto.h)
 *   source=config          from its own configuration file "package"
 * and streams it with UPDATE_BEGIN, UPDATE_WRITE (chunk=N bytes, default
 * 64K) and UPDATE_COMMIT, then prints UPDATE_STATUS. stop_after=N: after
 * N bytes, print "updater: holding at N" and wait for ever (a test kills
 * the agent there). Exit 0 when the agent took the package, 1 when it
 * refused it (the reason is printed), 2 when something else failed. */
#include <parley/guest.h>
#include "updproto.h"

#define CHUNK_MAX (64 * 1024)

static uint8_t buf[CHUNK_MAX];

static const char *const state_names[] = {
	"idle", "receiving", "staged", "refused", "committed", "failed",
};

static const char *state_name(uint64_t s)
{
	return s < sizeof(state_names) / sizeof(state_names[0])
		       ? state_names[s] : "?";
}

static int64_t begin(uint64_t size)
{
	struct parley_hc_update_begin a = { .size = size };
	parley_hypercall(PARLEY_HC_UPDATE_BEGIN, &a);
	parley_printf("updater: begin %lu bytes: %ld %s\n",
		      (unsigned long)size, (long)a.ret, a.detail);
	return a.ret;
}

static int64_t put(uint64_t off, const void *p, uint64_t len)
{
	struct parley_hc_update_write a = { .offset = off,
					    .buf = (parley_gpa_t)(uintptr_t)p,
					    .len = len };
	parley_hypercall(PARLEY_HC_UPDATE_WRITE, &a);
	return a.ret;
}

static uint64_t quiet_status(struct parley_hc_update_status *a)
{
	*a = (struct parley_hc_update_status){ 0 };
	parley_hypercall(PARLEY_HC_UPDATE_STATUS, a);
	return a->state;
}

static void status(void)
{
	struct parley_hc_update_status a;
	quiet_status(&a);
	parley_printf("updater: status %ld state %s received %lu of %lu%s%s\n",
		      (long)a.ret, state_name(a.state),
		      (unsigned long)a.received, (unsigned long)a.size,
		      a.detail[0] ? ": " : "", a.detail);
}

static void hold(const struct parley_boot_info *bi, uint64_t done)
{
	long stop = parley_cmdline_int(bi, "stop_after", -1);
	if (stop < 0 || done < (uint64_t)stop)
		return;
	parley_printf("updater: holding at %lu\n", (unsigned long)done);
	for (;;)
		parley_sleep_ns(1000000000ull);
}

/* Where the bytes come from: the next up to `cap` of them into buf. */
struct source {
	const uint8_t *cfg;      /* source=config */
	uint64_t size, taken;
	struct parley_chan c;    /* source=chan */
	uint8_t msg[UPD_MSG_MAX];
	uint32_t have, used;
};

static int64_t next(struct source *s, uint8_t *out, uint64_t cap)
{
	uint64_t left = s->size - s->taken, n = 0;
	if (cap > left)
		cap = left;
	if (s->cfg) {
		memcpy(out, s->cfg + s->taken, cap);
		n = cap;
	}
	while (!s->cfg && n < cap) {
		if (s->used == s->have) {
			int64_t rc = parley_chan_recv(&s->c, s->msg,
						      sizeof(s->msg), &s->have);
			if (rc != PARLEY_OK)
				return rc;
			s->used = 0;
		}
		uint64_t k = s->have - s->used;
		if (k > cap - n)
			k = cap - n;
		memcpy(out + n, s->msg + s->used, k);
		s->used += (uint32_t)k;
		n += k;
	}
	s->taken += n;
	return (int64_t)n;
}

static int open_source(const struct parley_boot_info *bi, struct source *s)
{
	size_t len;
	const char *src = parley_cmdline_get(bi, "source", &len);
	if (src && len == 6 && !memcmp(src, "config", 6)) {
		const struct parley_config_file *f =
			parley_config_find(bi, "package");
		if (!f) {
			parley_printf("updater: no config file \"package\"\n");
			return -1;
		}
		s->cfg = (const uint8_t *)(uintptr_t)f->gpa;
		s->size = f->size;
		return 0;
	}
	char detail[64];
	int64_t rc = upd_open(&s->c, detail);
	uint32_t got = 0;
	if (rc == PARLEY_OK)
		rc = parley_chan_recv(&s->c, &s->size, sizeof(s->size), &got);
	if (rc != PARLEY_OK || got != sizeof(s->size)) {
		parley_printf("updater: channel \"update\": %ld %s\n",
			      (long)rc, rc == PARLEY_OK ? "" : detail);
		return -1;
	}
	return 0;
}

int main(const struct parley_boot_info *bi)
{
	static struct source s;
	long chunk = parley_cmdline_int(bi, "chunk", CHUNK_MAX);
	if (chunk < 1 || chunk > CHUNK_MAX)
		chunk = CHUNK_MAX;
	if (open_source(bi, &s) < 0)
		return 2;
	if (begin(s.size) != PARLEY_OK) {
		status();
		return 2;
	}
	uint64_t done = 0;
	while (done < s.size) {
		int64_t n = next(&s, buf, (uint64_t)chunk);
		if (n <= 0) {
			parley_printf("updater: source ended at %lu: %ld\n",
				      (unsigned long)done, (long)n);
			return 2;
		}
		int64_t rc = put(done, buf, (uint64_t)n);
		if (rc != n) {
			parley_printf("updater: write at %lu: %ld\n",
				      (unsigned long)done, (long)rc);
			return 2;
		}
		done += (uint64_t)n;
		hold(bi, done);
	}
	if (!s.cfg) {
		uint8_t ack = 1;
		parley_chan_send(&s.c, &ack, sizeof(ack));
	}
	struct parley_hc_update_commit a = { 0 };
	parley_hypercall(PARLEY_HC_UPDATE_COMMIT, &a);
	parley_printf("updater: commit %ld state %s: %s\n", (long)a.ret,
		      state_name(a.state), a.detail);
	/* A verified stage is handed over from the agent's loop after this
	 * answer: wait (30 s at most) until the new agent serves or the old
	 * one rolled back. */
	uint64_t until = parley_clock_ns() + 30000000000ull;
	struct parley_hc_update_status st;
	while (a.ret == PARLEY_OK && a.state == PARLEY_UPDATE_STAGED &&
	       quiet_status(&st) == PARLEY_UPDATE_STAGED &&
	       parley_clock_ns() < until)
		parley_sleep_ns(20000000);
	status();
	if (a.ret == PARLEY_OK)
		return 0;
	return a.ret == PARLEY_E_INTEGRITY ? 1 : 2;
}
