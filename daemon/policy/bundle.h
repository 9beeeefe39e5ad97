/*
 * Per-host policy bundles: only that host's grants and the baselines of the
 * partitions they involve, as a PolicyBody, serialized and signed with the
 * daemon's policy key (Ed25519). What an agent enforces is exactly what this
 * produced for it. The signature is made by the key process
 * (daemon/keys/): this process never holds the policy key.
 */
#ifndef PARLEY_DAEMON_BUNDLE_H
#define PARLEY_DAEMON_BUNDLE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include "common/err.h"
#include "db/store.h"
#include "parley.pb-c.h"

struct keyd;

/* Compile and sign: *out is a PolicyBundle whose body and signature
 * buffers the caller frees with policy_bundle_free(). *version gets the
 * bundle's version (the latest that affected the host); if that is not
 * above `after` (what the agent holds), nothing is built or signed and
 * out->body.data is NULL. */
int policy_bundle_build(struct store *s, struct keyd *keys,
			const char *key_id, const char *host, uint64_t after,
			Parley__V1__PolicyBundle *out, uint64_t *version,
			struct parley_err *err);

/* The two halves, for pipelined signing (daemon/rpc/link_push.c):
 * policy_body_build packs the host's PolicyBody (*body malloc'd; NULL
 * when *version <= after, as above); policy_bundle_wrap makes the bundle
 * from it and its signature, taking body (freed even on failure). */
int policy_body_build(struct store *s, const char *host, uint64_t after,
		      uint64_t *version, uint8_t **body, size_t *len,
		      struct parley_err *err);
int policy_bundle_wrap(uint8_t *body, size_t len, const uint8_t sig[64],
		       const char *key_id, Parley__V1__PolicyBundle *out,
		       struct parley_err *err);
/* The same with the host's disk keys (daemon/policy/diskkeys.h) sealed to
 * the key of host_cert (the agent's certificate, checked against the
 * fleet CA by the key process); the calls above pass NULL, and fail
 * (-ENOKEY) for a host that has released disk keys: a bundle without
 * them would withdraw them. */
int policy_body_build_keys(struct store *s, struct keyd *keys,
			   X509 *host_cert, const char *host,
			   uint64_t after, uint64_t *version, uint8_t **body,
			   size_t *len, struct parley_err *err);
int policy_bundle_build_keys(struct store *s, struct keyd *keys,
			     X509 *host_cert, const char *key_id,
			     const char *host, uint64_t after,
			     Parley__V1__PolicyBundle *out, uint64_t *version,
			     struct parley_err *err);
void policy_bundle_free(Parley__V1__PolicyBundle *b);

/* What the bundles of many hosts are built from, read at once: their
 * versions, grants, service rules, segment sets and disk keys
 * (store_policy_read) and the baselines of every partition they name
 * (store_baselines_read) -- a statement per kind per 256 hosts where host by
 * host took some 20 per host (daemon/rpc/link_push.c: a push slice).
 * after[i] is what host i's agent holds: only hosts above it are read in
 * full. The bodies built from it are the ones policy_body_build_keys
 * builds (which is a slice of one). */
struct policy_slice {
	struct store_policy_read rd;
	struct store_baseline *base;       /* by partition name */
	unsigned nbase;
};
int policy_slice_load(struct store *s, const char *const *hosts,
		      const uint64_t *after, unsigned n,
		      struct policy_slice *out, struct parley_err *err);
void policy_slice_free(struct policy_slice *sl);
/* policy_body_build_keys for `host` of the slice, `after` as at the load
 * (or above). s: for a disk key's older version (a rekey in progress). */
int policy_slice_body(const struct policy_slice *sl, struct store *s,
		      struct keyd *keys, X509 *host_cert, const char *host,
		      uint64_t after, uint64_t *version, uint8_t **body,
		      size_t *len, struct parley_err *err);
/* Whether `host` has disk keys (its bundle calls the key process to
 * seal them: link_push drains its signing window first). */
bool policy_slice_has_disk_keys(const struct policy_slice *sl,
				const char *host);

#endif
