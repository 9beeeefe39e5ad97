/*
 * The agent link's transport (DESIGN.md §2): TLS 1.3 only, mutual
 * certificate authentication against the fleet CA alone, the agent's host
 * identity being the CN of its verified client certificate. Connections
 * are libevent bufferevents (bufferevent_openssl), one loop, no threads.
 *
 * The process must ignore SIGPIPE: OpenSSL writes to the socket with
 * write(2), and a peer that hung up would otherwise kill it.
 */
#ifndef PARLEY_COMMON_TLS_H
#define PARLEY_COMMON_TLS_H

#include <stddef.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include "common/err.h"

/* A host name from a certificate is a valid name shorter than this
 * (jv_name_valid's cap). */
#define TLS_HOST_MAX 64

/*
 * Contexts from PEM files: `ca` is the only trust anchor (no system store),
 * `cert`/`key` this end's certificate and its private key (checked to
 * match). TLS 1.3 only; no session tickets, no session cache.
 * Server: a client certificate is required (SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT) and must carry clientAuth.
 * Client: the server certificate must verify and carry serverAuth; its
 * name or address is checked per connection (tls_client_new).
 * NULL on error with err set; the caller frees with SSL_CTX_free.
 */
SSL_CTX *tls_server_ctx(const char *ca, const char *cert, const char *key,
			struct parley_err *err);
SSL_CTX *tls_client_ctx(const char *ca, const char *cert, const char *key,
			struct parley_err *err);

/* A client SSL that will accept only a server certificate for `host`: an
 * IPv4/IPv6 literal is matched against the certificate's IP addresses, a
 * name against its DNS names (and sent as SNI). NULL on error. */
SSL *tls_client_new(SSL_CTX *ctx, const char *host, struct parley_err *err);

/*
 * After a completed handshake: the peer's host identity, the CN of its
 * verified certificate, into out (cap bytes). -EKEYREJECTED when there is
 * no verified peer certificate or its CN is not a valid name
 * (jv_name_valid, cap TLS_HOST_MAX); -ENOSPC when out is too small;
 * -EAGAIN before the handshake has finished.
 */
int tls_peer_host(SSL *ssl, char *out, size_t cap, struct parley_err *err);

/* Server side of an accepted connection: the bufferevent owns fd and the
 * SSL (BEV_OPT_CLOSE_ON_FREE) and reports BEV_EVENT_CONNECTED once the
 * handshake, client certificate included, has succeeded, BEV_EVENT_ERROR
 * otherwise (tls_bev_error says why). On failure fd is closed and NULL
 * returned. */
struct bufferevent *tls_bev_accept(struct event_base *base,
				   evutil_socket_t fd, SSL_CTX *ctx);

/*
 * Client side: connect to host:port (an address literal, or a name
 * resolved here with the blocking getaddrinfo, first address taken) and
 * start the handshake, verifying the server for `host` (tls_client_new).
 * The result arrives as BEV_EVENT_CONNECTED or BEV_EVENT_ERROR (refused
 * connections included), so set callbacks before the loop runs again.
 * NULL with err set on an error found at once.
 */
struct bufferevent *tls_bev_connect(struct event_base *base, SSL_CTX *ctx,
				    const char *host, int port,
				    struct parley_err *err);

/*
 * Why a TLS bufferevent reported BEV_EVENT_ERROR (or EOF): call from the
 * event callback, before anything else touches OpenSSL or errno. Drains
 * the bufferevent's OpenSSL errors into a message and returns:
 * -EKEYEXPIRED  the peer's certificate is expired / not yet valid;
 * -EKEYREJECTED the peer's certificate failed verification or is missing;
 * -EPROTONOSUPPORT no common protocol version (a peer below TLS 1.3);
 * -ECONNABORTED the peer ended the handshake with an alert (named);
 * -EPROTO       any other TLS failure;
 * -errno / -ECONNRESET a socket error / the peer closed.
 */
int tls_bev_error(struct bufferevent *bev, struct parley_err *err);

#endif
