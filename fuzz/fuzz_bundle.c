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
 * newer than the one enforced, every grant in it obeys the grant model's
 * rules, every service rule (field 7) has valid names, source != target
 * and no twin, and every segment set (field 6, parsed by common/segset.c)
 * has 2..64 members with valid, distinct names and segments whose writer
 * is a member or the agent and whose readers are members other than the
 * writer.
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

static bool name_ok(const char *n, size_t cap)
{
	return memchr(n, 0, cap) && jv_name_valid(n, strlen(n), cap);
}

static void check_svc(const struct grant_set *g)
{
	for (unsigned i = 0; i < g->nsvc; i++) {
		const struct svc_rule *r = &g->svc[i];
		PARLEY_ASSERT(name_ok(r->source, sizeof(r->source)) &&
			      name_ok(r->target, sizeof(r->target)) &&
			      name_ok(r->service, sizeof(r->service)));
		PARLEY_ASSERT(strcmp(r->source, r->target));
		/* The first rule naming a call decides: no twin after it. */
		PARLEY_ASSERT(svc_rule_find(g, r->source, r->target,
					    r->service) == r);
	}
}

static void check_seg(const struct segset_doc *d)
{
	PARLEY_ASSERT(d->n <= SEGSETS_MAX);
	for (unsigned i = 0; i < d->n; i++) {
		const struct segset_def *s = &d->s[i];
		PARLEY_ASSERT(name_ok(s->name, sizeof(s->name)));
		PARLEY_ASSERT(segset_find(d, s->name) == s);
		PARLEY_ASSERT(s->nmembers >= 2 &&
			      s->nmembers <= PARLEY_SEGSET_MEMBERS_MAX);
		PARLEY_ASSERT(s->ndecl <= PARLEY_SEGSET_DECL_MAX);
		for (unsigned m = 0; m < s->nmembers; m++) {
			PARLEY_ASSERT(name_ok(s->member[m], sizeof(s->member[m])));
			PARLEY_ASSERT(segset_member(s, s->member[m]) == (int)m);
		}
		for (unsigned k = 0; k < s->ndecl; k++) {
			const struct segset_seg_def *g = &s->seg[k];
			PARLEY_ASSERT(g->writer == PARLEY_SEG_WRITER_AGENT ||
				      g->writer < s->nmembers);
			PARLEY_ASSERT(s->nmembers == 64 ||
				      !(g->readers >> s->nmembers));
			if (g->writer < s->nmembers)
				PARLEY_ASSERT(!(g->readers >> g->writer & 1));
		}
	}
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
		PARLEY_ASSERT(!p->grants.svc && !p->grants.nsvc &&
			      !p->grants.seg.s && !p->grants.seg.n);
		return;
	}
	PARLEY_ASSERT(rc == 0 && p->body);
	PARLEY_ASSERT(!strcmp(p->body->host, HOST));
	PARLEY_ASSERT(p->version > CURRENT && p->version == p->body->version);
	PARLEY_ASSERT(p->grants.n == p->body->n_grants);
	for (unsigned i = 0; i < p->grants.n; i++)
		check_grant(&p->grants.g[i]);
	PARLEY_ASSERT(p->grants.nsvc == p->body->n_services);
	check_svc(&p->grants);
	check_seg(&p->grants.seg);
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
