/* The API's grant bodies (POST /v1/grants): bytes from a client, through
 * jansson and grant_from_json. Anything accepted must satisfy the grant
 * model's rules. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/grant.h"
#include "common/jsonv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)data, size,
			       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!j)
		return 0;
	struct grant g;
	struct parley_err err = { 0 };
	if (grant_from_json(j, &g, &err) == 0) {
		if (!jv_name_valid(g.channel, strlen(g.channel), GRANT_NAME_MAX) ||
		    !jv_name_valid(g.a, strlen(g.a), GRANT_NAME_MAX) ||
		    !jv_name_valid(g.b, strlen(g.b), GRANT_NAME_MAX) ||
		    !strcmp(g.a, g.b) || (g.ring_bytes & (g.ring_bytes - 1)) ||
		    g.ring_bytes < 4096 || g.ring_bytes > (16u << 20) ||
		    g.dir > GRANT_BOTH)
			abort();
	}
	json_decref(j);
	return 0;
}
