/*
 * libFuzzer target for the policy bundles the agent's link takes from the
 * daemon (agent_link_dispatch hands a POLICY envelope to on_bundle, which
 * calls bundle_accept; the dispatch around it, state and all, is
 * fuzz_agent_dispatch's, the frame reader before it fuzz_frame's). This
 * target goes deeper into the body. It holds a policy key, as the agent
 * holds its public half. The bytes are tried:
 *  1. as a whole PolicyBundle (body, signature, key id) for
 *     bundle_accept: a bad signature nearly always, what a forger without
 *     the key gets; nothing of the body may be decoded then;
 *  2. as the body of a bundle the target signs itself (what a daemon with
 *     the key could send): the body decoder, the host and version rules
 *     and the grant checks behind the signature.
 *
 * Oracle: refusals are -EBADMSG / -EINVAL / -EPERM / -ESTALE with a
 * printable message and nothing kept; an accepted policy is for this host,
 * newer than the one enforced, and every grant in it obeys the grant
 * model's rules.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bundle.h"
#include "common/err.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "common/sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST "host-a"
#define CURRENT 5       /* the version "enforced" */

static EVP_PKEY *key;

static void cleanup(void)
{
	EVP_PKEY_free(key);
}

static void setup(void)
{
	struct parley_err err = { 0 };
	PARLEY_ASSERT(pki_key_new(&key, &err) == 0);
	atexit(cleanup);
}

static void check_grant(const struct grant *g)
{
	PARLEY_ASSERT(jv_name_valid(g->channel, strlen(g->channel),
				    GRANT_NAME_MAX) &&
		      jv_name_valid(g->a, strlen(g->a), GRANT_NAME_MAX) &&
		      jv_name_valid(g->b, strlen(g->b), GRANT_NAME_MAX));
	PARLEY_ASSERT(strcmp(g->a, g->b));
	PARLEY_ASSERT(!(g->ring_bytes & (g->ring_bytes - 1)) &&
		      g->ring_bytes >= 4096 && g->ring_bytes <= (16u << 20));
	PARLEY_ASSERT(g->dir <= GRANT_BOTH);
}

static void check(int rc, struct agent_policy *p, const struct parley_err *err)
{
	if (rc < 0) {
		PARLEY_ASSERT(rc == -EBADMSG || rc == -EINVAL || rc == -EPERM ||
			      rc == -ESTALE);
		PARLEY_ASSERT(err->msg[0]);
		for (const char *c = err->msg; *c; c++)
			PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
		PARLEY_ASSERT(!p->body && !p->grants.g && !p->grants.n);
		return;
	}
	PARLEY_ASSERT(rc == 0 && p->body);
	PARLEY_ASSERT(!strcmp(p->body->host, HOST));
	PARLEY_ASSERT(p->version > CURRENT && p->version == p->body->version);
	PARLEY_ASSERT(p->grants.n == p->body->n_grants);
	for (unsigned i = 0; i < p->grants.n; i++)
		check_grant(&p->grants.g[i]);
	agent_policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!key)
		setup();
	struct agent_policy p;
	struct parley_err err = { 0 };

	Parley__V1__PolicyBundle *b =
		parley__v1__policy_bundle__unpack(NULL, size, data);
	if (b) {
		int rc = bundle_accept(key, HOST, CURRENT, b, &p, &err);
		check(rc, &p, &err);
		parley__v1__policy_bundle__free_unpacked(b, NULL);
	}

	uint8_t sig[SIGN_LEN];
	PARLEY_ASSERT(sign_data(key, data, size, sig) == 0);
	Parley__V1__PolicyBundle own = PARLEY__V1__POLICY_BUNDLE__INIT;
	own.body.data = (uint8_t *)data;
	own.body.len = size;
	own.signature.data = sig;
	own.signature.len = SIGN_LEN;
	err = (struct parley_err){ 0 };
	int rc = bundle_accept(key, HOST, CURRENT, &own, &p, &err);
	PARLEY_ASSERT(rc != -EBADMSG); /* our own signature is good */
	check(rc, &p, &err);
	return 0;
}
