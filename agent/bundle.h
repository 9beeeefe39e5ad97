/*
 * Signed policy bundles as the agent takes them (DESIGN.md section 2): the
 * signature is checked with the daemon's policy key before a byte of the
 * body is decoded, the body must be for this host, and its version must be
 * newer than the one enforced; the last good bundle is kept on disk and
 * enforced while the daemon is unreachable.
 */
#ifndef PARLEY_AGENT_BUNDLE_H
#define PARLEY_AGENT_BUNDLE_H

#include <openssl/evp.h>
#include <stdint.h>
#include "common/err.h"
#include "common/grant.h"
#include "parley.pb-c.h"

struct agent_policy {
	uint64_t version;
	struct grant_set grants;
	Parley__V1__PolicyBody *body;  /* for its baselines */
};

/* Verify and decode a bundle. -EBADMSG bad signature, -EPERM for another
 * host, -ESTALE for a version not newer than `current`, -EINVAL for a body
 * that does not decode or check. On success *out is owned by the caller
 * (agent_policy_free). */
int bundle_accept(EVP_PKEY *pub, const char *host, uint64_t current,
		  const Parley__V1__PolicyBundle *b, struct agent_policy *out,
		  struct parley_err *err);

/* Write the bundle (packed) to path atomically; read and verify it back
 * (current = 0: any version). */
int bundle_save(const char *path, const Parley__V1__PolicyBundle *b,
		struct parley_err *err);
int bundle_load(const char *path, EVP_PKEY *pub, const char *host,
		struct agent_policy *out, struct parley_err *err);

/* The bundle's baseline for a partition, or NULL. */
const Parley__V1__Baseline *agent_policy_baseline(
	const struct agent_policy *p, const char *partition);

void agent_policy_free(struct agent_policy *p);

#endif
