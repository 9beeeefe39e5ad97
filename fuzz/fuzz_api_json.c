/* The API's JSON text writer (daemon/rpc/api_json.c) over stored bytes it
 * cannot trust (a store edited behind parleyd's back). api_jb_object must
 * accept exactly what jansson loads as an object (but for numbers beyond
 * jansson's range, which it copies as written, and for a raw NUL byte,
 * which RFC 8259 allows nowhere: refused always, though jansson 2.14's
 * lexer swallows one right after a number or a literal and loads
 * {"a":1<NUL>} as {"a":1} — seed nul_after_number, found by the long run
 * of 2026-12-06), append nothing when it refuses, and what it writes must
 * load to the same document; any bytes as a string must come out as one
 * JSON string. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/rpc/api_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool range_error(const json_error_t *e)
{
	return strstr(e->text, "too big") || strstr(e->text, "overflow");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct api_jbuf b = { 0 };
	api_jb_lit(&b, "x");
	bool ok = api_jb_object(&b, in, size);
	json_error_t e;
	json_t *j = json_loadb(in, size, 0, &e);
	bool jok = j && json_is_object(j);
	if (b.oom)
		abort();
	if (!ok && b.len != 1)
		abort();
	if (memchr(in, 0, size)) {
		if (ok)
			abort();
	} else if (ok != jok && !(ok && !j && range_error(&e))) {
		abort();
	}
	if (ok && j) {
		json_t *k = json_loadb(b.p + 1, b.len - 1, 0, &e);
		if (!k || !json_equal(j, k) || b.len - 1 > size)
			abort();
		json_decref(k);
	}
	json_decref(j);
	api_jb_free(&b);

	/* Any bytes (up to a NUL) as a string. */
	char *s = strndup(in, size);
	if (!s)
		return 0;
	api_jb_str(&b, s);
	j = b.oom ? NULL : json_loadb(b.p, b.len, JSON_DECODE_ANY, &e);
	if (!json_is_string(j))
		abort();
	/* Valid UTF-8 comes back unchanged. */
	json_t *orig = json_string(s);
	if (orig && !json_equal(orig, j))
		abort();
	json_decref(orig);
	json_decref(j);
	api_jb_free(&b);
	free(s);
	return 0;
}
