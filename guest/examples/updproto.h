/* How pkgsrc hands a package to updater over the both-way channel
 * "update": one 8-byte message with the size, then the bytes in order, in
 * messages of at most UPD_MSG_MAX bytes; updater answers with one byte
 * once it has them all, so pkgsrc stays up (its end of the channel open)
 * until then. */
#ifndef UPDPROTO_H
#define UPDPROTO_H

#include <parley/guest.h>

#define UPD_MSG_MAX 2048

/* Open "update", waiting up to five seconds for the peer to come up. */
static inline int64_t upd_open(struct parley_chan *c, char *detail)
{
	int64_t rc = PARLEY_E_PEER_DOWN;
	for (int i = 0; i < 500 && rc == PARLEY_E_PEER_DOWN; i++) {
		rc = parley_chan_open("update", c, detail);
		if (rc == PARLEY_E_PEER_DOWN)
			parley_sleep_ns(10000000ull);
	}
	return rc;
}

#endif
