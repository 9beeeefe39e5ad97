/* ping: sends `count` messages of mixed sizes over the both-way channel
 * `chan` (default "pingpong"), keeps up to `window` in flight, and checks
 * every reply pong sends back. Exit 0 when all came back intact.
 * window=0 sends nothing and waits (an idle partition, for benchmarks). With
 * report=N it says "ping: K ok" after every N replies (K checked so far):
 * a counter that keeps rising while the agent is replaced beneath it.
 * peer_wait=S: wait up to S seconds for the peer to come up (default 1; a
 * Linux VM its agent is still starting takes seconds: pingpong.h).
 * hold=1: then keep the channel open, sending nothing, until stopped (its
 * peer waits for a message that does not come: a stream paused). */
#include "pingpong.h"

#define SALT_PING PP_SALT_PING

static struct pp_msg out, in;

int main(const struct parley_boot_info *bi)
{
	long count = parley_cmdline_int(bi, "count", 100000);
	long window = parley_cmdline_int(bi, "window", 16);
	long report = parley_cmdline_int(bi, "report", 0);
	long hold = parley_cmdline_int(bi, "hold", 0);
	struct parley_chan c;
	char detail[64];
	int64_t rc = pp_open(bi, &c, detail);
	if (rc != PARLEY_OK) {
		parley_printf("ping: open failed: %ld %s\n", (long)rc, detail);
		return 2;
	}
	long sent = 0, got = 0;
	uint64_t bytes = 0, t0 = parley_clock_ns();
	while (got < count) {
		while (sent < count && sent - got < window) {
			uint32_t n = pp_fill(&out, (uint32_t)sent, SALT_PING);
			if ((rc = parley_chan_send(&c, &out, n)) != PARLEY_OK) {
				parley_printf("ping: send: %ld\n", (long)rc);
				return 1;
			}
			bytes += n;
			sent++;
		}
		uint32_t len;
		if ((rc = parley_chan_recv(&c, &in, sizeof(in), &len)) != PARLEY_OK) {
			parley_printf("ping: recv: %ld\n", (long)rc);
			return 1;
		}
		if (pp_check(&in, len, (uint32_t)got)) {
			parley_printf("ping: reply %ld damaged\n", got);
			return 1;
		}
		bytes += len;
		got++;
		if (report > 0 && got % report == 0)
			parley_printf("ping: %ld ok\n", got);
	}
	uint64_t ms = (parley_clock_ns() - t0) / 1000000;
	parley_printf("ping: %ld messages each way, %lu bytes, checksums ok, "
		      "%lu ms\n", count, bytes, ms);
	if (hold)
		parley_puts("ping: holding the channel");
	while (hold)
		parley_sleep_ns(1000000000ull);
	return 0;
}
