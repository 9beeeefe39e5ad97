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
#include <stdint.h>
#include "common/err.h"
#include "db/store.h"
#include "parley.pb-c.h"

struct keyd;

/* Compile, sign and frame-ready: *out is a PolicyBundle whose body and
 * signature buffers the caller frees with policy_bundle_free(). version
 * gets the bundle's version (the latest that affected the host). */
int policy_bundle_build(struct store *s, struct keyd *keys,
			const char *key_id,
			const char *host, Parley__V1__PolicyBundle *out,
			uint64_t *version, struct parley_err *err);
void policy_bundle_free(Parley__V1__PolicyBundle *b);

#endif
