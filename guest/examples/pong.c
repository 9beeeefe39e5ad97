/* pong: answers every message ping sends on "pingpong" with one of its
 * own, and checks each one's checksum and sequence. */
#include "pingpong.h"

#define SALT_PONG PP_SALT_PONG

static struct pp_msg out, in;

int main(const struct parley_boot_info *bi)
{
	long count = parley_cmdline_int(bi, "count", 100000);
	/* From this message on, sleep at once when the ring is empty (no
	 * spin): a peer that is asleep whenever a message comes, for the
	 * benches' sleeping round trips. */
	long sleep_from = parley_cmdline_int(bi, "sleep_from", -1);
	struct parley_chan c;
	char detail[64];
	int64_t rc = pp_open(bi, &c, detail);
	if (rc != PARLEY_OK) {
		parley_printf("pong: open failed: %ld %s\n", (long)rc, detail);
		return 2;
	}
	/* The answer to message i depends on i alone: it is made before
	 * message i comes, and message i is checked after it is answered,
	 * so neither checksum is on the round trip's path (the channel's
	 * cost is what a round trip measures). A damaged message still ends
	 * the run, one answer later. */
	uint32_t n = pp_fill(&out, 0, SALT_PONG);
	for (long i = 0; i < count; i++) {
		uint32_t len;
		if (i == sleep_from)
			parley_chan_set_spin(&c, 0);
		if ((rc = parley_chan_recv(&c, &in, sizeof(in), &len)) != PARLEY_OK) {
			parley_printf("pong: recv: %ld\n", (long)rc);
			return 1;
		}
		if ((rc = parley_chan_send(&c, &out, n)) != PARLEY_OK) {
			parley_printf("pong: send: %ld\n", (long)rc);
			return 1;
		}
		if (pp_check(&in, len, (uint32_t)i)) {
			parley_printf("pong: message %ld damaged\n", i);
			return 1;
		}
		n = pp_fill(&out, (uint32_t)(i + 1), SALT_PONG);
	}
	if (sleep_from >= 0)
		parley_printf("pong: %ld messages checked and answered, "
			      "asleep for %u\n", count, (unsigned)c.sleeps);
	else
		parley_printf("pong: %ld messages checked and answered\n",
			      count);
	return 0;
}
