#include "tests/helpers/linkpeer.h"
#include "common/frame.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void lp_add(uint8_t *buf, size_t cap, size_t *len,
	    const Parley__V1__Envelope *e)
{
	uint8_t *f;
	size_t n;
	cr_assert_eq(frame_encode(e, &f, &n), 0);
	cr_assert_leq(*len + n, cap, "frames too large for the test buffer");
	memcpy(buf + *len, f, n);
	*len += n;
	free(f);
}

void lp_add_hello(uint8_t *buf, size_t cap, size_t *len, const char *host)
{
	Parley__V1__Envelope e;
	Parley__V1__Hello h;
	wire_init_envelope(&e, 1);
	parley__v1__hello__init(&h);
	h.host = (char *)host;
	h.next_seq = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	lp_add(buf, cap, len, &e);
}

static void take(struct lp_result *r, const Parley__V1__Envelope *e)
{
	r->frames++;
	switch (e->body_case) {
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		r->welcomes++;
		break;
	case PARLEY__V1__ENVELOPE__BODY_ACK:
		r->acks++;
		r->last_ack = e->ack->seq;
		break;
	case PARLEY__V1__ENVELOPE__BODY_ERROR:
		if (!r->errors++) {
			snprintf(r->error_code, sizeof(r->error_code), "%s",
				 e->error->code);
			snprintf(r->error_msg, sizeof(r->error_msg), "%s",
				 e->error->message);
		}
		break;
	default:
		break;
	}
}

/* Decode whole frames from the front of buf; keep the rest. */
static void decode(struct lp_result *r, uint8_t *buf, size_t *have)
{
	for (;;) {
		Parley__V1__Envelope *e = NULL;
		size_t used = 0;
		int rc = frame_decode(buf, *have, 1 << 20, &used, &e, NULL);
		if (rc == 0)
			return;
		if (rc < 0) {
			r->junk = true;
			*have = 0;
			return;
		}
		take(r, e);
		parley__v1__envelope__free_unpacked(e, NULL);
		memmove(buf, buf + used, *have - used);
		*have -= used;
	}
}

/* A TLS client of 127.0.0.1:port with the host's certificate from dir;
 * rcvbuf > 0 shrinks its receive buffer first. Handshake done or not. */
static SSL *connect_as(int port, const char *dir, int rcvbuf, SSL_CTX **ctxp,
		       int *fdp, bool *handshake)
{
	char ca[700], crt[700], key[700];
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/host.crt", dir);
	snprintf(key, sizeof(key), "%s/host.key", dir);
	SSL_CTX *ctx = tls_client_ctx(ca, crt, key, NULL);
	cr_assert(ctx, "client context from %s", dir);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	SSL *ssl = tls_client_new(ctx, "127.0.0.1", NULL);
	cr_assert(ssl);
	SSL_set_fd(ssl, fd);
	*handshake = SSL_connect(ssl) == 1;
	*ctxp = ctx;
	*fdp = fd;
	return ssl;
}

void lp_session(int port, const char *dir, const void *bytes, size_t len,
		unsigned stop_after, struct lp_result *r)
{
	memset(r, 0, sizeof(*r));
	SSL_CTX *ctx;
	int fd;
	SSL *ssl = connect_as(port, dir, 0, &ctx, &fd, &r->handshake);
	if (r->handshake && len)
		SSL_write(ssl, bytes, (int)len);
	static uint8_t buf[1 << 20];
	size_t have = 0;
	int n = 0;
	while (r->handshake &&
	       (!stop_after || r->frames < stop_after)) {
		errno = 0;
		n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
		if (n <= 0)
			break;
		have += (size_t)n;
		decode(r, buf, &have);
	}
	if (r->handshake && n <= 0) {
		int e = SSL_get_error(ssl, n);
		/* EOF (close_notify, or the socket closed): not the 5 s
		 * timeout, which is SSL_ERROR_SYSCALL with EAGAIN. */
		r->closed = e == SSL_ERROR_ZERO_RETURN ||
			    ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) &&
			     errno != EAGAIN && errno != EWOULDBLOCK);
		r->error_before_eof = r->closed && r->errors > 0;
	}
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
}

void lp_flood(int port, const char *dir, const void *head, size_t hlen,
	      const void *frame, size_t flen, uint64_t max, int stall_ms,
	      struct lp_conn *c)
{
	memset(c, 0, sizeof(*c));
	SSL_CTX *ctx;
	bool hs;
	SSL *ssl = connect_as(port, dir, 4096, &ctx, &c->fd, &hs);
	c->ctx = ctx;
	c->ssl = ssl;
	cr_assert(hs, "no handshake");
	cr_assert_eq(SSL_write(ssl, head, (int)hlen), (int)hlen);
	struct timeval tv = { stall_ms / 1000, (stall_ms % 1000) * 1000 };
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (c->sent < max) {
		int n = SSL_write(ssl, frame, (int)flen);
		if (n <= 0) {
			c->stalled = true;
			break;
		}
		c->sent += (uint64_t)n;
	}
}

void lp_close(struct lp_conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd > 0)
		close(c->fd);
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	memset(c, 0, sizeof(*c));
}
