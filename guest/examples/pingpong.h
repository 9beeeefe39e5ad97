/* ping and pong over "pingpong": the messages (ppmsg.h) and the open. */
#ifndef PINGPONG_H
#define PINGPONG_H

#include <parley/guest.h>

#include "ppmsg.h"

/* Open the channel `chan=NAME` names ("pingpong" by default), waiting up
 * to a second for the peer to come up — or `peer_wait=S` seconds (1..600:
 * a Linux VM peer its agent is still starting takes seconds), asking
 * every 10 ms for the first second and every 200 ms after (each refusal
 * is audited). */
static inline int64_t pp_open(const struct parley_boot_info *bi,
			      struct parley_chan *c, char *detail)
{
	char name[64] = "pingpong";
	size_t len = 0;
	const char *v = parley_cmdline_get(bi, "chan", &len);
	if (v && len > 0 && len < sizeof(name)) {
		for (size_t i = 0; i < len; i++)
			name[i] = v[i];
		name[len] = 0;
	}
	long wait_s = parley_cmdline_int(bi, "peer_wait", 1);
	if (wait_s < 1 || wait_s > 600)
		wait_s = 1;
	long tries = 100 + (wait_s - 1) * 5;
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (long i = 0; i < tries && rc == PARLEY_E_PEER_DOWN; i++) {
		rc = parley_chan_open(name, c, detail);
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(i < 100 ? 10000000 : 200000000);
	}
	return rc;
}

#endif
