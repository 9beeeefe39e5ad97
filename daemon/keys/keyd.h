/*
 * The key process (daemon/keys/README.md): parleyd's private keys -- the
 * policy-signing key, the fleet CA's key, the audit checkpoint key -- live
 * only in a separate process forked at start, before anything touches the
 * network. The main process (TLS, HTTP, protobuf) asks it to sign through
 * the calls below and never holds a private key.
 *
 * Every call is synchronous (one request, one reply over a socketpair;
 * signing takes microseconds) except bundle signing, which may also be
 * pipelined (keyd_sign_bundle_send/_recv): a fleet-wide push keeps a
 * window of requests in flight so that the key process signs on one core
 * while this one builds the next bundles. A reply that does not parse, or
 * a key process that is gone, is -EPIPE/-EBADMSG: the caller logs it and
 * fails that one operation.
 */
#ifndef PARLEY_DAEMON_KEYD_H
#define PARLEY_DAEMON_KEYD_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "common/err.h"

/* What the key process loads. ca_key "" = no CA (joining off); with
 * ca_optional a missing ca_key file is the same. ckpt_key is created
 * (Ed25519, 0600, its public half beside it as .pub) when absent. */
struct keyd_paths {
	char policy_key[PATH_MAX];
	char ca_key[PATH_MAX], ca_cert[PATH_MAX];
	bool ca_optional;
	char ckpt_key[PATH_MAX];
	/* The key disk keys are wrapped under at rest (32 random bytes,
	 * 0600, made when absent); "" = no disk keys (DISK_KEY_* refused). */
	char disk_key[PATH_MAX];
};

struct keyd {
	int fd;                     /* our end of the socketpair */
	pid_t pid;
	bool has_ca;
	EVP_PKEY *policy_pub, *ckpt_pub;  /* public halves only */
	char policy_id[65], ckpt_id[65];  /* sign_key_id */
	unsigned inflight;          /* pipelined requests not yet answered */
};

/* Requests in flight at most. The key process answers in order and
 * blocks writing a reply only if this process leaves replies unread;
 * KEYD_WINDOW replies (< 400 bytes each, a few KiB of socket buffer with
 * their overhead) always fit in a socketpair's buffer (~208 KiB), so the
 * key process never blocks on a reply while this one blocks sending it a
 * request: no deadlock, whatever the bundles' sizes. */
#define KEYD_WINDOW 32

/* Fork the key process and wait for its INFO: keys loaded (or the reason
 * they could not be, as the error). Call before opening any socket. */
int keyd_spawn(struct keyd *k, const struct keyd_paths *p,
	       struct parley_err *err);
/* Close our end (the key process exits on end of file) and reap it. */
void keyd_stop(struct keyd *k);

/* The Ed25519 signature of a serialized PolicyBody for `host` at
 * `version` (the key process checks the body says exactly that). */
int keyd_sign_bundle(struct keyd *k, const char *host, uint64_t version,
		     const uint8_t *body, size_t len, uint8_t sig[64],
		     struct parley_err *err);
/* The same, pipelined: _send queues the request (-EBUSY with KEYD_WINDOW
 * in flight), _recv reads the oldest request's answer (-EINVAL with none
 * in flight). Answers come in the order asked; a refusal is that one
 * bundle's status (the stream stays in step), an I/O error ends the
 * conversation (-EPIPE, nothing in flight any more). While requests are
 * in flight, every other call is -EBUSY: read their answers first. */
int keyd_sign_bundle_send(struct keyd *k, const char *host, uint64_t version,
			  const uint8_t *body, size_t len,
			  struct parley_err *err);
int keyd_sign_bundle_recv(struct keyd *k, uint8_t sig[64],
			  struct parley_err *err);
/* A client certificate for `host` (CN) from a CSR, signed by the CA:
 * call only after the join token was accepted. *out is the caller's. */
int keyd_issue_cert(struct keyd *k, const char *host, X509_REQ *csr,
		    int days, X509 **out, struct parley_err *err);
/* The checkpoint key's signature over checkpoint_message(seq, hash, t). */
int keyd_sign_checkpoint(struct keyd *k, uint64_t seq, const uint8_t hash[32],
			 int64_t time_ms, uint8_t sig[64],
			 struct parley_err *err);

/* Disk keys (issue 13). A new 64-byte XTS key for (partition, disk,
 * version), made and wrapped (AES-256-GCM, bound to those three) in the
 * key process: *wrapped (KEYD_WRAPPED_LEN bytes) is all this process
 * ever holds of it, and what the store keeps. */
int keyd_disk_key_new(struct keyd *k, const char *partition, const char *disk,
		      uint64_t version, uint8_t wrapped[92],
		      struct parley_err *err);
/* The key unwrapped and sealed to the key of `host`'s certificate
 * (common/seal.h), in the key process, which first checks that the
 * certificate chains to the fleet CA (ca_cert) for client use and names
 * `host`: the plain key never reaches this process, and a sealed one only
 * a key the CA certified for that host. */
int keyd_disk_key_seal(struct keyd *k, const char *host,
		       const char *partition, const char *disk,
		       uint64_t version, const uint8_t wrapped[92],
		       X509 *host_cert, uint8_t *sealed, size_t cap,
		       size_t *len, struct parley_err *err);

/* One request, raw (tests: hostile requests). *rep_msg malloc'd. */
int keyd_call_raw(struct keyd *k, const uint8_t *req, size_t len,
		  uint8_t **rep_msg, size_t *rep_len, struct parley_err *err);

/* The key process itself (keyd_server.c): load, then serve fd until end
 * of file. Never returns. */
void keyd_main(int fd, const struct keyd_paths *p) __attribute__((noreturn));

#endif
