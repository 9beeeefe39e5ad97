/*
 * Joining, daemon side: a host is enrolled with a one-time join token
 * (POST /v1/hosts makes one, API.md), which the operator hands to the new
 * host together with the fleet CA's fingerprint. `parley-agent join`
 * connects to this listener over TLS 1.3 with server authentication only
 * (it has no certificate yet), sends one JoinRequest {token, CSR} and gets
 * back a client certificate for the host the token names (CN set here,
 * whatever the CSR says), the CA and the policy public key: everything
 * `parley-agent serve` needs. One store transaction spends the token,
 * pins the signed certificate on the host (creating the host if the token
 * was made for one that does not exist yet; revoking a certificate it
 * replaces) and audits host_joined; the joiner gets its certificate only
 * after that commit, and a CSR the CA will not sign rolls the token back.
 * Every refusal is audited (join_refused).
 *
 * Refusals are an Error envelope, then the connection is closed:
 *   TOKEN_UNKNOWN, TOKEN_USED, TOKEN_EXPIRED  (store_join_token_use)
 *   BAD_CSR     the CSR does not parse, its signature or key type is bad
 *   UNEXPECTED  anything but a JoinRequest
 *   INTERNAL    the store or the CA failed
 *
 * Tokens: "prj_" and 64 lower-case hex digits, the hex encoding of 32
 * random bytes. The store keeps the SHA-256 of the whole token text,
 * prefix included (join_token_digest) -- the digest daemon/rpc/api.c's
 * api_token_digest computes for the tokens POST /v1/hosts mints.
 */
#ifndef PARLEY_DAEMON_JOIN_H
#define PARLEY_DAEMON_JOIN_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include "common/err.h"
#include "db/store.h"
#include "daemon/listen_guard.h"

#define JOIN_TOKEN_PREFIX "prj_"
#define JOIN_TOKEN_LEN 68           /* prefix and 64 hex digits */
#define JOIN_SECRET_LEN 32
#define JOIN_DEFAULT_LISTEN "127.0.0.1:7422"
/* Days a certificate issued at join is valid. */
#define JOIN_CERT_DAYS 365

/* A new token (NUL-terminated) and the digest to store for it. 0, or
 * -EIO when the random source fails. */
int join_token_new(char token[JOIN_TOKEN_LEN + 1], uint8_t sha256[32]);
/* The digest of a well-formed token; -EINVAL for anything else. */
int join_token_digest(const char *token, uint8_t sha256[32]);

/* parleyd's options for joining, which daemon_config_parse does not know:
 *   --join-listen HOST:PORT  default JOIN_DEFAULT_LISTEN (busy: parleyd
 *                            warns and runs without joins; an address
 *                            given and busy is fatal); port 0 = a free
 *                            one, written to STATE_DIR/parleyd.join-port
 *   --ca-key FILE            the CA's private key; default
 *                            STATE_DIR/ca.key, and when that default file
 *                            does not exist joining is off (a warning) */
struct join_config {
	char listen[128];
	bool listen_set;            /* --join-listen was given */
	char ca_key[PATH_MAX];      /* "" = the default */
};

/* Take the options above out of argv (argv is compacted, *argc lowered)
 * so that the rest goes to daemon_config_parse. -EINVAL for an option
 * without its value. */
int join_take_args(int *argc, char **argv, struct join_config *jc,
		   struct parley_err *err);

struct join_conn;
struct keyd;

struct join_server {
	struct event_base *base;
	struct store *store;        /* borrowed */
	SSL_CTX *ctx;               /* owned: tls_server_ctx_noclient */
	struct keyd *keys;          /* borrowed: signs with the CA key */
	X509 *ca_cert;              /* owned */
	char *ca_pem, *policy_pub_pem; /* owned, sent to every joiner */
	char *release_pub_pem;     /* STATE/release.pub, or NULL: none */
	struct evconnlistener *lis;
	struct listen_guard guard;
	int port;                   /* the port bound */
	struct join_conn *conns;    /* doubly linked */
	unsigned nconns;
	uint64_t n_joined, n_refused;
};

/* What join_start needs: the daemon's TLS identity and CA certificate
 * (paths), the key process that holds the CA key (daemon/keys/keyd.h;
 * it must have one), the policy public key (borrowed), where to listen. */
struct join_opts {
	const char *listen, *ca, *cert, *key, *state_dir;
	struct keyd *keys;
	EVP_PKEY *policy_key;
};

/* The checks a JoinRequest's CSR passes before its token is spent (key
 * type, signature): 0, -EKEYREJECTED or -EBADMSG. Exposed for
 * fuzz/fuzz_join_csr.c. */
int csr_precheck(X509_REQ *req, struct parley_err *err);

/* Load the CA and listen. On error everything taken is released. */
int join_start(struct join_server *js, struct event_base *base,
	       struct store *store, const struct join_opts *o,
	       struct parley_err *err);
/* Close every join connection and the listener; free what it owns. */
void join_stop(struct join_server *js);

#endif
