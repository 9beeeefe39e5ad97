/* A hand-driven agent link peer for tests: a real TLS 1.3 client with a
 * host's certificate (a state directory as fd_host or `parley-agent join`
 * leaves it), sending chosen frames or bytes and reading what parleyd
 * answers, frame by frame, until it closes. */
#ifndef PARLEY_TEST_LINKPEER_H
#define PARLEY_TEST_LINKPEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/wire.h"

struct lp_result {
	bool handshake;            /* the TLS handshake completed */
	bool closed;               /* the daemon closed (EOF, close_notify) */
	bool junk;                 /* bytes that did not decode as frames */
	unsigned frames;           /* frames received */
	unsigned welcomes, acks, errors;
	uint64_t last_ack;         /* seq of the last Ack */
	char error_code[64];       /* of the first Error frame */
	char error_msg[512];
	bool error_before_eof;     /* the Error frame came, then the close */
};

/* Append e's frame to buf (cap bytes) at *len. */
void lp_add(uint8_t *buf, size_t cap, size_t *len,
	    const Parley__V1__Envelope *e);
/* Hello for `host` (request id 1). */
void lp_add_hello(uint8_t *buf, size_t cap, size_t *len, const char *host);

/* Connect to 127.0.0.1:port as the host whose state directory is `dir`,
 * send `len` bytes, then read until the daemon closes, `stop_after`
 * frames came (0: no such limit) or 5 s of silence. */
void lp_session(int port, const char *dir, const void *bytes, size_t len,
		unsigned stop_after, struct lp_result *r);

/* An agent that never reads: connected with a small receive buffer, it
 * sends `head` (a hello, say), then `frame` over and over until `max`
 * bytes of frames went or one write waited stall_ms. The connection stays
 * open (lp_close) so the test can look at the daemon meanwhile. */
struct lp_conn {
	void *ctx, *ssl;
	int fd;
	uint64_t sent;             /* bytes of frames sent */
	bool stalled;              /* a write waited stall_ms */
};
void lp_flood(int port, const char *dir, const void *head, size_t hlen,
	      const void *frame, size_t flen, uint64_t max, int stall_ms,
	      struct lp_conn *c);
void lp_close(struct lp_conn *c);

#endif
