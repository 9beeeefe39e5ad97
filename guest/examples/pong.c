/* pong: answers every message ping sends on "pingpong" with one of its
 * own, after checking the checksum and the sequence. */
#include "pingpong.h"

#define SALT_PONG PP_SALT_PONG

static struct pp_msg out, in;

int main(const struct parley_boot_info *bi)
{
	long count = parley_cmdline_int(bi, "count", 100000);
	struct parley_chan c;
	char detail[64];
	int64_t rc = pp_open(bi, &c, detail);
	if (rc != PARLEY_OK) {
		parley_printf("pong: open failed: %ld %s\n", (long)rc, detail);
		return 2;
	}
	for (long i = 0; i < count; i++) {
		uint32_t len;
		if ((rc = parley_chan_recv(&c, &in, sizeof(in), &len)) != PARLEY_OK) {
			parley_printf("pong: recv: %ld\n", (long)rc);
			return 1;
		}
		if (pp_check(&in, len, (uint32_t)i)) {
			parley_printf("pong: message %ld damaged\n", i);
			return 1;
		}
		uint32_t n = pp_fill(&out, (uint32_t)i, SALT_PONG);
		if ((rc = parley_chan_send(&c, &out, n)) != PARLEY_OK) {
			parley_printf("pong: send: %ld\n", (long)rc);
			return 1;
		}
	}
	parley_printf("pong: %ld messages checked and answered\n", count);
	return 0;
}
