/* ping and pong over "pingpong": the messages (ppmsg.h) and the open. */
#ifndef PINGPONG_H
#define PINGPONG_H

#include <parley/guest.h>

#include "ppmsg.h"

/* Open the channel `chan=NAME` names ("pingpong" by default), waiting up
 * to a second for the peer to come up. */
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
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 100 && rc == PARLEY_E_PEER_DOWN; i++) {
		rc = parley_chan_open(name, c, detail);
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(10000000);
	}
	return rc;
}

#endif
