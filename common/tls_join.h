/*
 * TLS for joining (daemon/join.c, agent/join.c): an agent that has no
 * certificate yet reaches the daemon's join listener with server
 * authentication only. Its trust in the server comes from the join
 * command line, not from files: the SHA-256 of the fleet CA certificate
 * (pki_fingerprint), which the operator copied together with the token.
 */
#ifndef PARLEY_COMMON_TLS_JOIN_H
#define PARLEY_COMMON_TLS_JOIN_H

#include <stdbool.h>
#include <openssl/ssl.h>
#include "common/err.h"

/*
 * Server context for the join listener: like tls_server_ctx (TLS 1.3
 * only, no tickets, no session cache, cert/key checked to match) but no
 * client certificate is asked for. The CA certificate `ca` is sent in the
 * chain after the server's own, so that a client holding only its
 * fingerprint can verify the server. NULL with err set on error.
 */
SSL_CTX *tls_server_ctx_noclient(const char *ca, const char *cert,
				 const char *key, struct parley_err *err);

/* What a join client pins, and why the pin failed (for the message). */
struct tls_pin {
	char ca_sha256[65];        /* IN: lower-case hex */
	bool failed;               /* OUT: the server's chain was refused */
	char why[256];             /* OUT: in words */
};

/*
 * Client context for joining: TLS 1.3 only, no trust store. The server's
 * chain is accepted only if it holds a certificate whose SHA-256 is
 * pin->ca_sha256 and the server certificate verifies against that
 * certificate alone (serverAuth; the name or address is checked per
 * connection by tls_client_new). `pin` must outlive the context.
 */
SSL_CTX *tls_join_client_ctx(struct tls_pin *pin, struct parley_err *err);

#endif
