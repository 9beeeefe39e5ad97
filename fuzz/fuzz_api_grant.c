/* The API's grant bodies (POST /v1/grants): bytes from a client, read as
 * the handler reads them — api_body()'s steps (at most API_BODY_MAX bytes;
 * jansson with duplicates rejected and without JSON_ALLOW_NUL, so
 * "a\u0000b" is refused rather than read as "a"; an object) — then
 * grant_from_json(), the validation api_grants_add() calls before the
 * store. (api_body itself answers through libevent's HTTP request and
 * cannot run without a connection; the steps are the same three.)
 *
 * Oracle: anything accepted satisfies the grant model's rules and holds
 * the body's names whole (no truncation, no NUL); whatever is refused
 * carries a printable message; an accepted grant written back as the API
 * writes it (grant_json's fields) is accepted again as the same grant. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/grant.h"
#include "common/jsonv.h"
#include "daemon/rpc/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const struct parley_err *err)
{
	PARLEY_ASSERT(err->msg[0]);
	for (const char *c = err->msg; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
}

static bool name_whole(json_t *o, const char *key, const char *got)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) && json_string_length(v) == strlen(got) &&
	       !strcmp(json_string_value(v), got);
}

static void check_accepted(json_t *o, const struct grant *g)
{
	PARLEY_ASSERT(jv_name_valid(g->channel, strlen(g->channel),
				    GRANT_NAME_MAX) &&
		      jv_name_valid(g->a, strlen(g->a), GRANT_NAME_MAX) &&
		      jv_name_valid(g->b, strlen(g->b), GRANT_NAME_MAX));
	PARLEY_ASSERT(strcmp(g->a, g->b));
	PARLEY_ASSERT(!(g->ring_bytes & (g->ring_bytes - 1)) &&
		      g->ring_bytes >= 4096 && g->ring_bytes <= (16u << 20));
	PARLEY_ASSERT(g->dir <= GRANT_BOTH);
	PARLEY_ASSERT(name_whole(o, "channel", g->channel) &&
		      name_whole(o, "endpoint_a", g->a) &&
		      name_whole(o, "endpoint_b", g->b));
	/* Back out as GET /v1/grants shows it, and in again. */
	json_t *back = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "channel",
				 g->channel, "endpoint_a", g->a, "endpoint_b",
				 g->b, "direction", grant_dir_name(g->dir),
				 "ring_bytes", (json_int_t)g->ring_bytes,
				 "require_integrity", g->require_integrity);
	PARLEY_ASSERT(back);
	struct grant g2;
	struct parley_err err = { 0 };
	PARLEY_ASSERT(grant_from_json(back, &g2, &err) == 0);
	PARLEY_ASSERT(!strcmp(g->channel, g2.channel) && !strcmp(g->a, g2.a) &&
		      !strcmp(g->b, g2.b) && g->dir == g2.dir &&
		      g->ring_bytes == g2.ring_bytes &&
		      g->require_integrity == g2.require_integrity);
	json_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > API_BODY_MAX)
		return 0; /* 413 before any parsing */
	json_error_t je;
	json_t *j = json_loadb((const char *)data, size,
			       JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return 0;
	if (!json_is_object(j)) {
		json_decref(j);
		return 0;
	}
	struct grant g;
	struct parley_err err = { 0 };
	int rc = grant_from_json(j, &g, &err);
	if (rc == 0) {
		check_accepted(j, &g);
	} else {
		PARLEY_ASSERT(rc == -EINVAL || rc == -ENOENT);
		PARLEY_ASSERT(err.code == rc);
		check_msg(&err);
	}
	json_decref(j);
	return 0;
}
