/*
 * The API's JSON text writer (daemon/rpc/api_json.c): stored JSON is
 * copied into replies only when it is one valid object, in the compact
 * form jansson would write, and partition answers are the text jansson
 * wrote before them -- also with a store edited behind parleyd's back.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/rpc/api_json.h"
#include "tests/helpers/apiclient.h"

/* api_jb_object over in; the text appended, or NULL if refused (and then
 * nothing may have been appended). */
static char *compact(const char *in, size_t n)
{
	struct api_jbuf b = { 0 };
	api_jb_lit(&b, "<");
	bool ok = api_jb_object(&b, in, n);
	cr_assert(!b.oom);
	if (!ok) {
		cr_expect_eq(b.len, 1, "refused %.*s but appended", (int)n, in);
		api_jb_free(&b);
		return NULL;
	}
	char *s = strndup(b.p + 1, b.len - 1);
	api_jb_free(&b);
	return s;
}

/* What jansson makes of it: loaded as part_json loaded specs (flags 0,
 * an object), then dumped compact. NULL if jansson refuses it. */
static char *jansson_compact(const char *in, size_t n)
{
	json_t *j = json_loadb(in, n, 0, NULL);
	char *s = j && json_is_object(j) ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s;
}

Test(api, json_object_compacts_what_jansson_writes)
{
	static const char *const docs[] = {
		"{}",
		" {\n\t\"name\" : \"p1\" ,\r\n \"image\":\"hello.elf\" } ",
		"{\"memory\":\"8M\",\"vcpus\":1,\"config\":[{\"path\":\"a\","
		"\"data\":\"b\"}],\"cmdline\":\"x y\"}",
		"{\"a\":[1, -7, 2.5, 0.125, true, false, null, [], {}]}",
		"{\"s\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
		"{\"n\":{\"m\":{\"o\":[[[\"deep\"]]]}}}",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		char *got = compact(docs[i], strlen(docs[i]));
		char *want = jansson_compact(docs[i], strlen(docs[i]));
		cr_assert(got && want, "%s: refused", docs[i]);
		cr_expect_str_eq(got, want, "%s", docs[i]);
		free(got);
		free(want);
	}
	/* Numbers that jansson would write otherwise are kept as written:
	 * the same values. */
	const char *num = "{\"n\":[-0, 1e3, -1.25E-2, 0.5e+1]}";
	char *nc = compact(num, strlen(num));
	cr_assert(nc);
	cr_expect_str_eq(nc, "{\"n\":[-0,1e3,-1.25E-2,0.5e+1]}");
	json_t *x = json_loads(nc, 0, NULL), *y = json_loads(num, 0, NULL);
	cr_expect(x && y && json_equal(x, y));
	json_decref(x);
	json_decref(y);
	free(nc);
	/* Escapes are kept as written: the same strings, other bytes. */
	const char *esc = "{\"e\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
			  "\\ud83d\\ude00\"}";
	char *got = compact(esc, strlen(esc));
	cr_assert(got);
	cr_expect_str_eq(got, "{\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
			 "\\ud83d\\ude00\"}");
	json_t *a = json_loads(got, 0, NULL), *b = json_loads(esc, 0, NULL);
	cr_expect(a && b && json_equal(a, b));
	json_decref(a);
	json_decref(b);
	free(got);
}

/* Hostile stored text: refused exactly when jansson refuses it. */
Test(api, json_object_refuses_what_jansson_refuses)
{
	static const struct { const char *s; size_t n; } bad[] = {
#define B(lit) { lit, sizeof(lit) - 1 }
		B(""), B("   "), B("[]"), B("[1]"), B("\"s\""), B("1"),
		B("null"), B("{"), B("}"), B("{\"a\"}"), B("{\"a\":}"),
		B("{\"a\":1,}"), B("{,}"), B("{\"a\" 1}"), B("{a:1}"),
		B("{'a':1}"), B("{\"a\":01}"), B("{\"a\":1.}"),
		B("{\"a\":.5}"), B("{\"a\":-}"), B("{\"a\":+1}"),
		B("{\"a\":1e}"), B("{\"a\":0x10}"), B("{\"a\":tru}"),
		B("{\"a\":nulll}"), B("{\"a\":True}"), B("{} x"), B("{}{}"),
		B("{\"a\":[1,]}"), B("{\"a\":[1 2]}"), B("{\"a\":\"x}"),
		B("{\"a\":\"\x01\"}"), B("{\"a\":\"\n\"}"),
		B("{\"a\":\"\\x\"}"), B("{\"a\":\"\\u12\"}"),
		B("{\"a\":\"\\u12g4\"}"), B("{\"a\":\"\\u0000\"}"),
		B("{\"a\":\"\\ud800\"}"), B("{\"a\":\"\\udc00\"}"),
		B("{\"a\":\"\\ud800\\u0041\"}"), B("{\"a\":\"\\ud800x\"}"),
		B("{\"a\":\"\xff\"}"), B("{\"a\":\"\xc0\x80\"}"),
		B("{\"a\":\"\xe0\x80\xaf\"}"), B("{\"a\":\"\xed\xa0\x80\"}"),
		B("{\"a\":\"\xf4\x90\x80\x80\"}"), B("{\"a\":\"\xe2\x82\"}"),
		B("{\"a\":\"\x80\"}"), B("{\"a\":1}\0"), B("{\"a\"\0:1}"),
		B("{\"a\":\"b\\"), B("\xef\xbb\xbf{}"),
#undef B
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *j = jansson_compact(bad[i].s, bad[i].n);
		cr_expect_null(j, "case %zu: jansson accepts it", i);
		free(j);
		char *got = compact(bad[i].s, bad[i].n);
		cr_expect_null(got, "case %zu accepted: %s", i, got);
		free(got);
	}
}

/* Nesting: as deep as jansson loads (2048), no deeper, no stack to
 * exhaust on the way. */
Test(api, json_object_depth)
{
	for (int depth = 2048; depth <= 2049; depth++) {
		size_t n = 2 * (size_t)depth + 16;
		char *s = malloc(n), *p = s;
		p += sprintf(p, "{\"a\":");
		for (int i = 1; i < depth; i++)
			*p++ = '[';
		for (int i = 1; i < depth; i++)
			*p++ = ']';
		*p++ = '}';
		char *got = compact(s, (size_t)(p - s));
		char *want = jansson_compact(s, (size_t)(p - s));
		cr_expect_eq(got != NULL, want != NULL, "depth %d", depth);
		cr_expect_eq(got != NULL, depth == 2048, "depth %d", depth);
		free(got);
		free(want);
		free(s);
	}
	char deep[100001];
	memset(deep, '[', sizeof(deep) - 1);
	deep[0] = '{';
	cr_expect_null(compact(deep, sizeof(deep) - 1));
}

Test(api, json_string_escapes)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "p1", "\"p1\"" },
		{ "", "\"\"" },
		{ "a\"b\\c/d", "\"a\\\"b\\\\c/d\"" },
		{ "\b\f\n\r\t\x01\x1f\x7f", "\"\\b\\f\\n\\r\\t\\u0001\\u001F\x7f\"" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
		/* Not UTF-8: replaced, so that the answer stays JSON. */
		{ "a\xff" "b", "\"a\\ufffdb\"" },
		{ "\xc3", "\"\\ufffd\"" },
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct api_jbuf b = { 0 };
		api_jb_str(&b, cases[i].in);
		api_jb_lit(&b, "");
		cr_assert(!b.oom);
		char *got = strndup(b.p, b.len);
		cr_expect_str_eq(got, cases[i].want, "case %zu", i);
		/* jansson reads it back as a string; valid UTF-8 input comes
		 * back unchanged, and jansson writes the same text. */
		json_error_t e;
		json_t *j = json_loadb(got, strlen(got), JSON_DECODE_ANY, &e);
		cr_expect(json_is_string(j), "case %zu: %s", i, e.text);
		json_t *orig = json_string(cases[i].in);
		if (orig) {
			cr_expect(json_equal(j, orig), "case %zu", i);
			char *d = json_dumps(orig, JSON_ENCODE_ANY);
			cr_expect_str_eq(d, got, "case %zu", i);
			free(d);
		}
		json_decref(orig);
		json_decref(j);
		free(got);
		api_jb_free(&b);
	}
	struct api_jbuf b = { 0 };
	api_jb_str_or_null(&b, "");
	api_jb_lit(&b, ",");
	api_jb_str_or_null(&b, NULL);
	cr_expect_eq(b.len, 9);
	cr_expect(!memcmp(b.p, "null,null", 9));
	api_jb_free(&b);
}

/* ---- end to end ---- */

static char *get_body(struct api_client *c, const char *path)
{
	struct ac_resp r;
	ac_call(c, "GET", path, c->admin, NULL, &r);
	cr_assert_eq(r.status, 200, "GET %s: %s", path, r.raw);
	cr_assert(r.json, "GET %s: not JSON: %s", path, r.body);
	char *body = strdup(r.body);
	ac_free(&r);
	return body;
}

/* The body is exactly what jansson writes for its own parse: compact,
 * keys in order, one newline. */
static json_t *as_jansson(const char *path, const char *body)
{
	json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	cr_assert(j, "%s: %s", path, body);
	char *d = json_dumps(j, JSON_COMPACT);
	size_t n = strlen(d);
	cr_expect(strlen(body) == n + 1 && !strncmp(body, d, n) &&
		  body[n] == '\n', "%s:\n got %s\nwant %s", path, body, d);
	free(d);
	return j;
}

static void raw_sql(const char *store, const char *sql)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(store, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	char *msg = NULL;
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK,
		     "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(db);
}

Test(api, partitions_json_text, .timeout = 60)
{
	struct api_client c;
	ac_start(&c);
	struct ac_resp r;
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	static const char *const adds[] = {
		"{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
		"\"p1\",\"image\":\"hello.elf\",\"cmdline\":\"caf\xc3\xa9 "
		"\\\"q\\\" \\\\ \\u0001\",\"memory\":\"8M\",\"vcpus\":1,"
		"\"config\":[{\"path\":\"a.txt\",\"data\":\"x\"}]}}",
		"{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
		"\"p2\"}}",
		"{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
		"\"p3\"}}",
	};
	for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++) {
		ac_call(&c, "POST", "/v1/partitions", c.admin, adds[i], &r);
		cr_assert_eq(r.status, 201, "%s", r.raw);
		json_decref(as_jansson("POST /v1/partitions", r.body));
		ac_free(&r);
	}
	char *body = get_body(&c, "/v1/partitions");
	json_t *j = as_jansson("/v1/partitions", body);
	json_t *items = json_object_get(j, "items");
	cr_assert_eq(json_array_size(items), 3);
	json_t *p1 = json_array_get(items, 0);
	cr_expect_str_eq(json_string_value(json_object_get(p1, "name")), "p1");
	cr_expect_str_eq(json_string_value(json_object_get(p1, "host")), "h1");
	cr_expect_str_eq(json_string_value(json_object_get(p1, "backend")),
			 "thin");
	cr_expect_str_eq(json_string_value(json_object_get(p1, "state")),
			 "defined");
	cr_expect(json_is_null(json_object_get(p1, "vmm_backend")));
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(
				 p1, "spec"), "cmdline")),
			 "caf\xc3\xa9 \"q\" \\ \x01");
	cr_expect(json_is_null(json_object_get(j, "next")));
	json_decref(j);
	free(body);
	body = get_body(&c, "/v1/partitions?limit=2");
	j = as_jansson("/v1/partitions?limit=2", body);
	cr_expect_str_eq(json_string_value(json_object_get(j, "next")), "p2");
	json_decref(j);
	free(body);
	body = get_body(&c, "/v1/partitions/p1");
	j = as_jansson("/v1/partitions/p1", body);
	cr_expect(json_is_array(json_object_get(j, "devices")) &&
		  json_array_size(json_object_get(j, "devices")) == 0, "%s",
		  body);
	json_decref(j);
	free(body);

	/* The devices' states the store keeps (PartitionStatus.devices, a
	 * "device plugin state" line each): one object each; a line that is
	 * not three fields (an edit behind parleyd's back) is left out, and
	 * what is shown stays JSON. */
	raw_sql(c.f.store, "UPDATE partitions SET devices = 'data xts "
			   "running' || char(10) || 'two fields' || char(10) "
			   "|| 'con\"sole console torn-down' || char(10) "
			   "WHERE name = 'p1'");
	body = get_body(&c, "/v1/partitions/p1");
	j = as_jansson("/v1/partitions/p1 with devices", body);
	json_t *dv = json_object_get(j, "devices");
	cr_assert_eq(json_array_size(dv), 2, "%s", body);
	json_t *d0 = json_array_get(dv, 0), *d1 = json_array_get(dv, 1);
	cr_expect_str_eq(json_string_value(json_object_get(d0, "device")),
			 "data");
	cr_expect_str_eq(json_string_value(json_object_get(d0, "plugin")),
			 "xts");
	cr_expect_str_eq(json_string_value(json_object_get(d0, "state")),
			 "running");
	cr_expect_str_eq(json_string_value(json_object_get(d1, "device")),
			 "con\"sole");
	cr_expect_str_eq(json_string_value(json_object_get(d1, "state")),
			 "torn-down");
	json_decref(j);
	free(body);

	/* The store edited behind parleyd's back: a spec that is not one
	 * JSON object is shown as {}, the answer stays JSON. */
	raw_sql(c.f.store, "UPDATE partitions SET spec_json = "
			   "'{\"a\":1} \"</script>' WHERE name = 'p2'; "
			   "UPDATE partitions SET spec_json = '[1,2]' "
			   "WHERE name = 'p3'");
	body = get_body(&c, "/v1/partitions");
	j = as_jansson("/v1/partitions after the edit", body);
	items = json_object_get(j, "items");
	for (size_t i = 1; i < 3; i++) {
		json_t *s = json_object_get(json_array_get(items, i), "spec");
		cr_expect(json_is_object(s) && json_object_size(s) == 0,
			  "item %zu: %s", i, body);
	}
	json_decref(j);
	free(body);
	ac_stop(&c);
}
