/*
 * The gate in front of evhttp: a bufferevent filter that reads each
 * HTTP/1.x request itself (request line, headers, Content-Length or
 * chunked body) and hands evhttp only whole requests it has checked, so
 * that evhttp never meets one it would refuse with its own HTML page
 * (libevent 2.1's evhttp_send_error has no hook). A request the gate
 * refuses becomes a request for `reject_path`/N, which the API answers
 * with refusal N as JSON and closes; nothing of the refused bytes reaches
 * evhttp. The path carries a per-process random secret, so a client
 * cannot ask for it.
 *
 * Also on the way out: evhttp frees a connection as soon as the filter
 * took its last bytes, so the gate tells evhttp that a response is written
 * only once the connection below has written it to the socket.
 */
#ifndef PARLEY_DAEMON_API_GATE_H
#define PARLEY_DAEMON_API_GATE_H

#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stddef.h>

struct api_gate_refusal {
	int status;
	const char *code;
	const char *message;
};

/* Refusal number n (1..), or NULL. */
const struct api_gate_refusal *api_gate_refusal(unsigned n);

/* Wrap `under` (a socket or TLS bufferevent without fd yet, freed with the
 * result): head_max bounds the request line and headers (431 beyond),
 * body_max the body (413), reject_path is borrowed for the connection's
 * life. NULL on failure (under is then freed). */
struct bufferevent *api_gate_new(struct bufferevent *under, size_t head_max,
				 size_t body_max, const char *reject_path);

/* admit's answers beside 0 (the token may upload): no or an unknown
 * token (401), a read token (403), the store not asked (503). */
enum {
	API_GATE_ADMIT_UNAUTH = 1,
	API_GATE_ADMIT_SCOPE,
	API_GATE_ADMIT_AWAY,
};

/* The same with one exception (daemon/rpc/API.md): `POST
 * /v1/hosts/NAME/update` with `Content-Type: application/octet-stream`, a
 * Content-Length (not chunked) and an Authorization header that admit
 * takes (a good token: asked before the body is buffered) may carry up to
 * upload_max bytes; every other request keeps body_max. Such an upload
 * beyond body_max whose token admit does not take is refused as admit
 * says, before its body. gone (or NULL) is called with gone_ctx when the
 * connection is freed. */
struct bufferevent *api_gate_new_upload(struct bufferevent *under,
					size_t head_max, size_t body_max,
					size_t upload_max,
					int (*admit)(void *ctx,
						      const char *auth,
						      size_t n),
					void *admit_ctx,
					const char *reject_path,
					void (*gone)(void *ctx),
					void *gone_ctx);

/* Tests and the fuzz target: run the checks over one buffer as the filter
 * would see it arrive, `piece` bytes at a time (0: all at once). Returns
 * the number of bytes of whole valid requests at its start (*refusal 0),
 * or stops at the first refused request (*refusal its number). */
size_t api_gate_scan(const char *p, size_t n, size_t head_max,
		     size_t body_max, size_t piece, unsigned *refusal);
size_t api_gate_scan_upload(const char *p, size_t n, size_t head_max,
			    size_t body_max, size_t upload_max, size_t piece,
			    unsigned *refusal);

#endif
