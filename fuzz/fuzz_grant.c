/*
 * libFuzzer target for the grant model / policy parser: any bytes in, and
 * either a set in which every grant meets the rules of common/grant.h, or
 * an error with a message and nothing left allocated (ASan's leak checker
 * sees the rest). Each input is parsed twice: with a list of known
 * partitions and without; a set accepted with the list must be accepted,
 * identically, without it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/grant.h"
#include "common/jsonv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const known[] = { "ping", "pong", "mon", "rogue", NULL };

static bool is_known(const char *n)
{
	for (const char *const *k = known; *k; k++)
		if (!strcmp(*k, n))
			return true;
	return false;
}

static void check_name(const char *n)
{
	size_t len = strnlen(n, GRANT_NAME_MAX);
	PARLEY_ASSERT(len < GRANT_NAME_MAX);
	PARLEY_ASSERT(jv_name_valid(n, len, GRANT_NAME_MAX));
}

static void check_set(const struct grant_set *s, bool with_known)
{
	PARLEY_ASSERT(s->n <= GRANTS_MAX);
	PARLEY_ASSERT(s->g);
	for (unsigned i = 0; i < s->n; i++) {
		const struct grant *g = &s->g[i];
		check_name(g->channel);
		check_name(g->a);
		check_name(g->b);
		PARLEY_ASSERT(strcmp(g->a, g->b) != 0);
		PARLEY_ASSERT(g->dir == GRANT_A_TO_B || g->dir == GRANT_B_TO_A ||
			      g->dir == GRANT_BOTH);
		PARLEY_ASSERT(g->ring_bytes >= 4096 &&
			      g->ring_bytes <= 16u * 1024 * 1024);
		PARLEY_ASSERT((g->ring_bytes & (g->ring_bytes - 1)) == 0);
		if (with_known)
			PARLEY_ASSERT(is_known(g->a) && is_known(g->b));
		for (unsigned j = 0; j < i; j++)
			PARLEY_ASSERT(strcmp(g->channel, s->g[j].channel) != 0);
		/* Channels are unique, so each end finds exactly this one. */
		PARLEY_ASSERT(grant_find(s, g->channel, g->a) == g);
		PARLEY_ASSERT(grant_find(s, g->channel, g->b) == g);
	}
}

static bool same_set(const struct grant_set *x, const struct grant_set *y)
{
	if (x->n != y->n)
		return false;
	for (unsigned i = 0; i < x->n; i++) {
		const struct grant *a = &x->g[i], *b = &y->g[i];
		if (strcmp(a->channel, b->channel) || strcmp(a->a, b->a) ||
		    strcmp(a->b, b->b) || a->dir != b->dir ||
		    a->ring_bytes != b->ring_bytes ||
		    a->require_integrity != b->require_integrity)
			return false;
	}
	return true;
}

static int parse_one(const uint8_t *data, size_t size,
		     const char *const *k, struct grant_set *s)
{
	struct parley_err err = { 0 };
	int rc = grant_set_parse((const char *)data, size, k, s, &err);
	if (rc == 0) {
		check_set(s, k != NULL);
	} else {
		PARLEY_ASSERT(rc == -EINVAL || rc == -ENOENT || rc == -EEXIST ||
			      rc == -E2BIG || rc == -EFBIG || rc == -ENOMEM);
		PARLEY_ASSERT(err.code == rc && err.msg[0]);
		/* Messages quote document text: no raw control bytes. */
		for (const char *p = err.msg; *p; p++)
			PARLEY_ASSERT((unsigned char)*p >= 0x20 &&
				      (unsigned char)*p < 0x7f);
		PARLEY_ASSERT(s->n == 0 && s->g == NULL);
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grant_set with, without;
	int rc_with = parse_one(data, size, known, &with);
	int rc_without = parse_one(data, size, NULL, &without);
	/* The known list only ever refuses more, and only as ENOENT. */
	if (rc_with == 0)
		PARLEY_ASSERT(rc_without == 0 && same_set(&with, &without));
	if (rc_with != rc_without)
		PARLEY_ASSERT(rc_with == -ENOENT);
	grant_set_free(&with);
	grant_set_free(&without);
	return 0;
}
