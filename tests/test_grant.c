/*
 * The grant model (common/grant.c): good policies, grant_find, the loader,
 * then a table of hostile policies, each with the error code and the words
 * of the message an operator needs ("grants[2] (\"x\").ring_bytes: ...").
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grant.h"
#include "common/jsonv.h"
#include "tests/helpers/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define GRANT_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GRANT_TEST_LSAN 1
#endif
#endif
#ifdef GRANT_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Criterion takes a test's verdict before its worker exits: look for leaks
 * while the test can still fail (without ASan this checks nothing). */
static void expect_no_leaks(void)
{
#ifdef GRANT_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

static const char *const known[] = { "ping", "pong", "mon", NULL };

/* A grant with every required field, for cases that vary one of them. */
#define EP "\"endpoint_a\":\"ping\",\"endpoint_b\":\"pong\""
#define GOOD(ch) "{\"channel\":\"" ch "\"," EP ",\"direction\":\"both\"," \
		 "\"ring_bytes\":4096}"
/* A policy whose grants[0] is { "channel": "x", <fields> }. */
#define P1(fields) "{\"grants\":[{\"channel\":\"x\"," fields "}]}"
/* ... and with every required field but ring_bytes (and extra fields). */
#define PX(fields) P1(EP ",\"direction\":\"a_to_b\"," fields)
/* A policy whose grants[2] is the third argument (0 and 1 are good). */
#define P3(g2) "{\"grants\":[" GOOD("g0") "," GOOD("g1") "," g2 "]}"

static int parse(const char *json, const char *const *k, struct grant_set *s,
		 struct parley_err *e)
{
	return grant_set_parse(json, strlen(json), k, s, e);
}

Test(grant, valid_three_directions)
{
	static const char json[] =
		"{\n"
		"  \"grants\": [\n"
		"    { \"channel\": \"pingpong\", \"endpoint_a\": \"ping\",\n"
		"      \"endpoint_b\": \"pong\", \"direction\": \"both\",\n"
		"      \"ring_bytes\": \"64K\", \"require_integrity\": true },\n"
		"    { \"channel\": \"telemetry\", \"endpoint_a\": \"mon\",\n"
		"      \"endpoint_b\": \"pong\", \"direction\": \"a_to_b\",\n"
		"      \"ring_bytes\": 4096 },\n"
		"    { \"channel\": \"logs.v2\", \"endpoint_a\": \"pong\",\n"
		"      \"endpoint_b\": \"mon\", \"direction\": \"b_to_a\",\n"
		"      \"ring_bytes\": \"16M\", \"require_integrity\": false },\n"
		"    { \"require_integrity\": false, \"ring_bytes\": \"1MiB\",\n"
		"      \"direction\": \"a_to_b\", \"endpoint_b\": \"ping\",\n"
		"      \"endpoint_a\": \"mon\", \"channel\": \"A-z_0.9\" }\n"
		"  ]\n"
		"}\n";
	struct grant_set s;
	struct parley_err e = { 0 };
	int rc = parse(json, known, &s, &e);
	cr_assert_eq(rc, 0, "grant_set_parse: %d %s", rc, e.msg);
	cr_assert_eq(s.n, 4);
	cr_expect_str_eq(s.g[0].channel, "pingpong");
	cr_expect_str_eq(s.g[0].a, "ping");
	cr_expect_str_eq(s.g[0].b, "pong");
	cr_expect_eq(s.g[0].dir, GRANT_BOTH);
	cr_expect_eq(s.g[0].ring_bytes, 64 * 1024);
	cr_expect(s.g[0].require_integrity);
	cr_expect_str_eq(s.g[1].channel, "telemetry");
	cr_expect_eq(s.g[1].dir, GRANT_A_TO_B);
	cr_expect_eq(s.g[1].ring_bytes, 4096);
	cr_expect(s.g[1].require_integrity, "require_integrity defaults to true");
	cr_expect_eq(s.g[2].dir, GRANT_B_TO_A);
	cr_expect_eq(s.g[2].ring_bytes, 16ull << 20);
	cr_expect_not(s.g[2].require_integrity);
	cr_expect_str_eq(s.g[3].channel, "A-z_0.9");
	cr_expect_eq(s.g[3].ring_bytes, 1ull << 20);
	cr_expect_not(s.g[3].require_integrity);
	cr_expect_str_eq(grant_dir_name(GRANT_A_TO_B), "a_to_b");
	cr_expect_str_eq(grant_dir_name(GRANT_B_TO_A), "b_to_a");
	cr_expect_str_eq(grant_dir_name(GRANT_BOTH), "both");
	cr_expect_str_eq(grant_dir_name((enum grant_dir)7), "?");
	grant_set_free(&s);
	cr_expect_null(s.g);
	cr_expect_eq(s.n, 0);
	grant_set_free(&s); /* twice is harmless */
	grant_set_free(NULL);
	expect_no_leaks();
}

Test(grant, ring_bytes_forms)
{
	static const struct {
		const char *json;
		uint64_t v;
	} ok[] = {
		{ PX("\"ring_bytes\":4096"), 4096 },
		{ PX("\"ring_bytes\":16777216"), 16ull << 20 },
		{ PX("\"ring_bytes\":\"4K\""), 4096 },
		{ PX("\"ring_bytes\":\"4KiB\""), 4096 },
		{ PX("\"ring_bytes\":\"64K\""), 65536 },
		{ PX("\"ring_bytes\":\"16M\""), 16ull << 20 },
		{ PX("\"ring_bytes\":\"16MiB\""), 16ull << 20 },
		{ PX("\"ring_bytes\":\"8192\""), 8192 },
		{ PX("\"ring_bytes\":\"0004K\""), 4096 },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct grant_set s;
		struct parley_err e = { 0 };
		int rc = parse(ok[i].json, NULL, &s, &e);
		cr_expect_eq(rc, 0, "case %zu: %d %s", i, rc, e.msg);
		if (rc == 0) {
			cr_expect_eq(s.n, 1);
			cr_expect_eq(s.g[0].ring_bytes, ok[i].v, "case %zu: %llu",
				     i, (unsigned long long)s.g[0].ring_bytes);
		}
		grant_set_free(&s);
	}
	expect_no_leaks();
}

Test(grant, require_integrity_values)
{
	struct grant_set s;
	cr_assert_eq(parse(PX("\"ring_bytes\":4096,\"require_integrity\":true"),
			   NULL, &s, NULL), 0);
	cr_expect(s.g[0].require_integrity);
	grant_set_free(&s);
	cr_assert_eq(parse(PX("\"ring_bytes\":4096,\"require_integrity\":false"),
			   NULL, &s, NULL), 0);
	cr_expect_not(s.g[0].require_integrity);
	grant_set_free(&s);
	cr_assert_eq(parse(PX("\"ring_bytes\":4096"), NULL, &s, NULL), 0);
	cr_expect(s.g[0].require_integrity);
	grant_set_free(&s);
	expect_no_leaks();
}

Test(grant, empty_grants_list)
{
	static const char *const empty[] = { "{\"grants\":[]}",
					     " \n{ \"grants\" : [ ] }\n\t", NULL };
	for (int i = 0; empty[i]; i++) {
		struct grant_set s;
		memset(&s, 0xa5, sizeof(s));
		struct parley_err e = { 0 };
		cr_assert_eq(parse(empty[i], known, &s, &e), 0, "%s", e.msg);
		cr_expect_eq(s.n, 0);
		cr_expect_null(grant_find(&s, "x", "ping"));
		grant_set_free(&s);
	}
	const char *const none[] = { NULL };
	struct grant_set s;
	cr_expect_eq(parse("{\"grants\":[]}", none, &s, NULL), 0,
		     "an empty known list with no grants is fine");
	grant_set_free(&s);
	expect_no_leaks();
}

Test(grant, find)
{
	static const char json[] = "{\"grants\":[" GOOD("a") ","
		"{\"channel\":\"b\",\"endpoint_a\":\"mon\",\"endpoint_b\":"
		"\"ping\",\"direction\":\"b_to_a\",\"ring_bytes\":\"8K\"}]}";
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(parse(json, known, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.n, 2);
	cr_expect_eq(grant_find(&s, "a", "ping"), &s.g[0]);
	cr_expect_eq(grant_find(&s, "a", "pong"), &s.g[0]);
	cr_expect_null(grant_find(&s, "a", "mon"), "a stranger to the grant");
	cr_expect_null(grant_find(&s, "a", "ghost"));
	cr_expect_null(grant_find(&s, "a", ""));
	cr_expect_eq(grant_find(&s, "b", "mon"), &s.g[1]);
	cr_expect_eq(grant_find(&s, "b", "ping"), &s.g[1]);
	cr_expect_null(grant_find(&s, "b", "pong"));
	cr_expect_null(grant_find(&s, "c", "ping"), "no such channel");
	cr_expect_null(grant_find(&s, "A", "ping"), "names are case-sensitive");
	cr_expect_null(grant_find(&s, "", "ping"));
	cr_expect_null(grant_find(NULL, "a", "ping"));
	grant_set_free(&s);
	cr_expect_null(grant_find(&s, "a", "ping"), "after free");
	expect_no_leaks();
}

/* The parser must stop at len: an exact-size heap copy lets ASan catch any
 * read past it. */
Test(grant, not_nul_terminated)
{
	static const char json[] = P3(GOOD("g2"));
	size_t len = strlen(json);
	char *buf = malloc(len);
	cr_assert_not_null(buf);
	memcpy(buf, json, len);
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_expect_eq(grant_set_parse(buf, len, known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(s.n, 3);
	grant_set_free(&s);
	cr_expect_eq(grant_set_parse(buf, len - 1, known, &s, &e), -EINVAL);
	cr_expect(strstr(e.msg, "invalid JSON"), "%s", e.msg);
	free(buf);
	expect_no_leaks();
}

/* n grants c0..c{n-1}, padded with spaces to at least `pad` bytes. */
static char *make_grants(unsigned n, size_t pad, size_t *len)
{
	size_t cap = 64 + (size_t)n * 128 + pad;
	char *b = malloc(cap);
	cr_assert_not_null(b);
	size_t off = (size_t)snprintf(b, cap, "{\"grants\":[");
	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(b + off, cap - off,
					"%s{\"channel\":\"c%u\"," EP ",\"direction\""
					":\"a_to_b\",\"ring_bytes\":\"4K\"}",
					i ? "," : "", i);
	off += (size_t)snprintf(b + off, cap - off, "]}");
	if (off < pad) {
		memset(b + off, ' ', pad - off);
		off = pad;
	}
	b[off] = '\0';
	*len = off;
	return b;
}

Test(grant, limits_accepted)
{
	size_t len;
	char *b = make_grants(GRANTS_MAX, 0, &len);
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(grant_set_parse(b, len, known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(s.n, GRANTS_MAX);
	cr_expect_str_eq(s.g[GRANTS_MAX - 1].channel, "c1023");
	cr_expect_eq(grant_find(&s, "c777", "pong"), &s.g[777]);
	grant_set_free(&s);
	free(b);
	/* Exactly GRANT_FILE_MAX bytes. */
	b = make_grants(2, GRANT_FILE_MAX, &len);
	cr_assert_eq(len, GRANT_FILE_MAX);
	cr_expect_eq(grant_set_parse(b, len, known, &s, &e), 0, "%s", e.msg);
	grant_set_free(&s);
	free(b);
	/* A 63-byte name is the longest. */
	static const char long63[] = "{\"grants\":[{\"channel\":\""
		"012345678901234567890123456789012345678901234567890123456789012"
		"\"," EP ",\"direction\":\"both\",\"ring_bytes\":4096}]}";
	cr_expect_eq(parse(long63, known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(strlen(s.g[0].channel), 63);
	grant_set_free(&s);
	expect_no_leaks();
}

static char *gen_too_many(size_t *len)
{
	return make_grants(GRANTS_MAX + 1, 0, len);
}

static char *gen_too_big(size_t *len)
{
	return make_grants(1, GRANT_FILE_MAX + 1, len);
}

/* 3000 nested arrays in place of a grant: jansson's depth limit holds. */
static char *gen_deep(size_t *len)
{
	size_t n = 3000;
	char *b = malloc(2 * n + 32);
	cr_assert_not_null(b);
	size_t off = (size_t)sprintf(b, "{\"grants\":");
	memset(b + off, '[', n);
	memset(b + off + n, ']', n);
	strcpy(b + off + 2 * n, "}");
	*len = strlen(b);
	return b;
}

/* A bad ring_bytes at grants[2] of a grant with a 63-byte channel name:
 * the whole name must survive into the message. */
#define CH63 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

/* A service rule ping -> pong "s" with the given action. */
#define SR(act) "{\"source\":\"ping\",\"target\":\"pong\",\"service\":\"s\",\"action\":\"" act "\"}"

struct bad_case {
	const char *what;
	const char *json;            /* NULL: built by make() */
	size_t len;                  /* 0: strlen(json) */
	char *(*make)(size_t *len);
	int rc;
	const char *msg;             /* must occur in the error message */
	bool needs_known;            /* only wrong given the known list */
};

/* Literal with embedded NUL bytes: length from sizeof, not strlen. */
#define RAW(s) .json = (s), .len = sizeof(s) - 1

static const struct bad_case bad_cases[] = {
	/* Not JSON, or not a JSON object. */
	{ "empty input", "", 0, NULL, -EINVAL, "invalid JSON at line 1" },
	{ "truncated", "{\"grants\":[" GOOD("x"), 0, NULL, -EINVAL, "invalid JSON" },
	{ "trailing comma", "{\"grants\":[" GOOD("x") ",]}", 0, NULL, -EINVAL, "invalid JSON at line 1, column" },
	{ "trailing garbage", "{\"grants\":[]} x", 0, NULL, -EINVAL, "invalid JSON" },
	{ "error position", "{\n\"grants\":\n[\n{\"channel\" \"x\"}]}", 0, NULL, -EINVAL, "line 4" },
	{ "bad UTF-8", "{\"grants\":[{\"channel\":\"\xff\xfe\"}]}", 0, NULL, -EINVAL, "invalid JSON" },
	{ "raw NUL in document", RAW("{\"grants\":[]}\0"), NULL, -EINVAL, "invalid JSON" },
	{ "NUL in key", "{\"grants\":[],\"a\\u0000b\":1}", 0, NULL, -EINVAL, "invalid JSON" },
	{ "deep nesting", NULL, 0, gen_deep, -EINVAL, "invalid JSON" },
	{ "top-level array", "[{\"grants\":[]}]", 0, NULL, -EINVAL, "policy: expected an object, got an array" },
	{ "top-level string", "\"grants\"", 0, NULL, -EINVAL, "invalid JSON" },
	{ "top-level null", "null", 0, NULL, -EINVAL, "invalid JSON" },
	{ "empty object", "{}", 0, NULL, -EINVAL, "missing field \"grants\"" },
	{ "unknown top field", "{\"grants\":[],\"grant\":[]}", 0, NULL, -EINVAL, "unknown field \"grant\"" },
	{ "unknown top field, escapes", "{\"\\u001b[2J\":1,\"grants\":[]}", 0, NULL, -EINVAL, "unknown field \"\\x1b[2J\"" },
	{ "duplicate top key", "{\"grants\":[],\"grants\":[]}", 0, NULL, -EINVAL, "duplicate object key" },
	{ "duplicate key in a grant", P1(EP ",\"direction\":\"both\",\"ring_bytes\":4096,\"ring_bytes\":8192"), 0, NULL, -EINVAL, "duplicate object key" },
	{ "duplicate channel key", "{\"grants\":[{\"channel\":\"x\",\"channel\":\"y\"," EP ",\"direction\":\"both\",\"ring_bytes\":4096}]}", 0, NULL, -EINVAL, "duplicate object key" },

	/* The shape. */
	{ "grants object", "{\"grants\":{}}", 0, NULL, -EINVAL, "field \"grants\": expected an array, got an object" },
	{ "grants null", "{\"grants\":null}", 0, NULL, -EINVAL, "field \"grants\": expected an array, got null" },
	{ "grants string", "{\"grants\":\"x\"}", 0, NULL, -EINVAL, "expected an array, got a string" },
	{ "grant string", "{\"grants\":[\"x\"]}", 0, NULL, -EINVAL, "grants[0]: expected an object, got a string" },
	{ "grant array", "{\"grants\":[" GOOD("a") ",[]]}", 0, NULL, -EINVAL, "grants[1]: expected an object, got an array" },
	{ "grant null", P3("null"), 0, NULL, -EINVAL, "grants[2]: expected an object, got null" },
	{ "unknown field in grant", PX("\"ring_bytes\":4096,\"ringbytes\":1"), 0, NULL, -EINVAL, "grants[0]: unknown field \"ringbytes\"" },
	{ "unknown field in grants[2]", P3("{\"channel\":\"z\",\"priority\":1}"), 0, NULL, -EINVAL, "grants[2]: unknown field \"priority\"" },
	{ "empty grant", "{\"grants\":[{}]}", 0, NULL, -EINVAL, "grants[0].channel: missing" },
	{ "missing channel", "{\"grants\":[{" EP ",\"direction\":\"both\",\"ring_bytes\":4096}]}", 0, NULL, -EINVAL, "grants[0].channel: missing" },
	{ "missing endpoint_a", P1("\"endpoint_b\":\"pong\",\"direction\":\"both\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_a: missing" },
	{ "missing endpoint_b", P1("\"endpoint_a\":\"ping\",\"direction\":\"both\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_b: missing" },
	{ "missing direction", P1(EP ",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").direction: missing" },
	{ "missing ring_bytes", P1(EP ",\"direction\":\"both\""), 0, NULL, -EINVAL, "grants[0] (\"x\").ring_bytes: missing" },
	{ "missing field in grants[2]", P3("{\"channel\":\"x\"," EP ",\"direction\":\"both\"}"), 0, NULL, -EINVAL, "grants[2] (\"x\").ring_bytes: missing" },

	/* Wrong types, one per field. */
	{ "channel integer", "{\"grants\":[{\"channel\":7}]}", 0, NULL, -EINVAL, "grants[0].channel: expected a string, got an integer" },
	{ "channel null", "{\"grants\":[{\"channel\":null}]}", 0, NULL, -EINVAL, "grants[0].channel: expected a string, got null" },
	{ "endpoint_a object", P1("\"endpoint_a\":{},\"endpoint_b\":\"pong\""), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_a: expected a string, got an object" },
	{ "endpoint_b array", P1("\"endpoint_a\":\"ping\",\"endpoint_b\":[\"pong\"]"), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_b: expected a string, got an array" },
	{ "direction integer", P1(EP ",\"direction\":0,\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").direction: expected a string, got an integer" },
	{ "direction boolean", P1(EP ",\"direction\":true,\"ring_bytes\":4096"), 0, NULL, -EINVAL, "direction: expected a string, got a boolean" },
	{ "ring_bytes boolean", PX("\"ring_bytes\":true"), 0, NULL, -EINVAL, "grants[0] (\"x\").ring_bytes: expected a positive integer or a size string, got a boolean" },
	{ "ring_bytes real", PX("\"ring_bytes\":4096.0"), 0, NULL, -EINVAL, "ring_bytes: expected a positive integer or a size string, got a real number" },
	{ "ring_bytes array", PX("\"ring_bytes\":[4096]"), 0, NULL, -EINVAL, "got an array" },
	{ "ring_bytes null", PX("\"ring_bytes\":null"), 0, NULL, -EINVAL, "got null" },
	{ "require_integrity string", PX("\"ring_bytes\":4096,\"require_integrity\":\"true\""), 0, NULL, -EINVAL, "grants[0] (\"x\").require_integrity: expected a boolean, got a string" },
	{ "require_integrity integer", PX("\"ring_bytes\":4096,\"require_integrity\":1"), 0, NULL, -EINVAL, "require_integrity: expected a boolean, got an integer" },
	{ "require_integrity null", PX("\"ring_bytes\":4096,\"require_integrity\":null"), 0, NULL, -EINVAL, "require_integrity: expected a boolean, got null" },

	/* Names. */
	{ "channel empty", "{\"grants\":[{\"channel\":\"\"}]}", 0, NULL, -EINVAL, "grants[0].channel: \"\" is not a valid name (1-63 of" },
	{ "channel 64 bytes", "{\"grants\":[{\"channel\":\"" CH63 "z\"}]}", 0, NULL, -EINVAL, "grants[0].channel: \"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN...\" is not a valid name" },
	{ "channel 300 bytes", "{\"grants\":[{\"channel\":\"" CH63 CH63 CH63 CH63 CH63 "\"}]}", 0, NULL, -EINVAL, "...\" is not a valid name" },
	{ "channel with slash", "{\"grants\":[{\"channel\":\"a/b\"}]}", 0, NULL, -EINVAL, "grants[0].channel: \"a/b\" is not a valid name" },
	{ "channel with leading dot", "{\"grants\":[{\"channel\":\".hidden\"}]}", 0, NULL, -EINVAL, "\".hidden\" is not a valid name" },
	{ "channel \"..\"", "{\"grants\":[{\"channel\":\"..\"}]}", 0, NULL, -EINVAL, "\"..\" is not a valid name" },
	{ "channel with leading dash", "{\"grants\":[{\"channel\":\"-rf\"}]}", 0, NULL, -EINVAL, "\"-rf\" is not a valid name" },
	{ "channel with space", "{\"grants\":[{\"channel\":\"a b\"}]}", 0, NULL, -EINVAL, "\"a b\" is not a valid name" },
	{ "channel with NUL", "{\"grants\":[{\"channel\":\"x\\u0000y\"}]}", 0, NULL, -EINVAL, "grants[0].channel: contains a NUL byte" },
	{ "channel with escape", "{\"grants\":[{\"channel\":\"\\u001b]0;pwn\\u0007\"}]}", 0, NULL, -EINVAL, "\"\\x1b]0;pwn\\x07\" is not a valid name" },
	{ "channel non-ASCII", "{\"grants\":[{\"channel\":\"caf\xc3\xa9\"}]}", 0, NULL, -EINVAL, "\"caf\\xc3\\xa9\" is not a valid name" },
	{ "endpoint_a with slash", P1("\"endpoint_a\":\"../ping\",\"endpoint_b\":\"pong\""), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_a: \"../ping\" is not a valid name" },
	{ "endpoint_a empty", P1("\"endpoint_a\":\"\",\"endpoint_b\":\"pong\""), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_a: \"\" is not a valid name" },
	{ "endpoint_b with NUL", P1("\"endpoint_a\":\"ping\",\"endpoint_b\":\"pong\\u0000evil\""), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_b: contains a NUL byte" },
	{ "endpoint_b 64 bytes", P1("\"endpoint_a\":\"ping\",\"endpoint_b\":\"" CH63 "z\""), 0, NULL, -EINVAL, "grants[0] (\"x\").endpoint_b: \"abcdefghij" },
	{ "endpoint_b leading dot", P1("\"endpoint_a\":\"ping\",\"endpoint_b\":\".pong\""), 0, NULL, -EINVAL, "endpoint_b: \".pong\" is not a valid name" },

	/* Endpoints. */
	{ "unknown endpoint_a", "{\"grants\":[" GOOD("a") ",{\"channel\":\"x\",\"endpoint_a\":\"ghost\",\"endpoint_b\":\"pong\",\"direction\":\"both\",\"ring_bytes\":4096}]}", 0, NULL, -ENOENT, "grants[1] (\"x\").endpoint_a: unknown partition \"ghost\"", true },
	{ "unknown endpoint_b", P3("{\"channel\":\"x\",\"endpoint_a\":\"ping\",\"endpoint_b\":\"Pong\",\"direction\":\"both\",\"ring_bytes\":4096}"), 0, NULL, -ENOENT, "grants[2] (\"x\").endpoint_b: unknown partition \"Pong\"", true },
	{ "self-channel", P1("\"endpoint_a\":\"ping\",\"endpoint_b\":\"ping\",\"direction\":\"both\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\"): endpoint_a and endpoint_b are both \"ping\"" },
	{ "self-channel of a stranger", P1("\"endpoint_a\":\"ghost\",\"endpoint_b\":\"ghost\",\"direction\":\"both\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "cannot have a channel to itself" },

	/* Direction. */
	{ "direction upper-case", P1(EP ",\"direction\":\"A_TO_B\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").direction: \"A_TO_B\" is not a_to_b, b_to_a or both" },
	{ "direction empty", P1(EP ",\"direction\":\"\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "direction: \"\" is not a_to_b" },
	{ "direction with trailing space", P1(EP ",\"direction\":\"both \",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "direction: \"both \" is not" },
	{ "direction with NUL", P1(EP ",\"direction\":\"a_to_b\\u0000x\",\"ring_bytes\":4096"), 0, NULL, -EINVAL, "grants[0] (\"x\").direction: contains a NUL byte" },
	{ "direction in grants[2]", P3("{\"channel\":\"z\"," EP ",\"direction\":\"ab\",\"ring_bytes\":4096}"), 0, NULL, -EINVAL, "grants[2] (\"z\").direction: \"ab\" is not" },

	/* Ring size. */
	{ "ring_bytes not a power of two", P3("{\"channel\":\"x\"," EP ",\"direction\":\"both\",\"ring_bytes\":3000}"), 0, NULL, -EINVAL, "grants[2] (\"x\").ring_bytes: 3000 is not a power of two" },
	{ "ring_bytes \"12K\"", P3("{\"channel\":\"x\"," EP ",\"direction\":\"both\",\"ring_bytes\":\"12K\"}"), 0, NULL, -EINVAL, "grants[2] (\"x\").ring_bytes: 12288 is not a power of two" },
	{ "ring_bytes 4097", PX("\"ring_bytes\":4097"), 0, NULL, -EINVAL, "4097 is not a power of two" },
	{ "ring_bytes INT64_MAX", PX("\"ring_bytes\":9223372036854775807"), 0, NULL, -EINVAL, "9223372036854775807 is not a power of two" },
	{ "ring_bytes below 4K", PX("\"ring_bytes\":2048"), 0, NULL, -EINVAL, "grants[0] (\"x\").ring_bytes: 2048 is outside 4K..16M" },
	{ "ring_bytes 1", PX("\"ring_bytes\":1"), 0, NULL, -EINVAL, "1 is outside 4K..16M" },
	{ "ring_bytes above 16M", PX("\"ring_bytes\":\"32M\""), 0, NULL, -EINVAL, "33554432 is outside 4K..16M" },
	{ "ring_bytes 2^62", PX("\"ring_bytes\":4611686018427387904"), 0, NULL, -EINVAL, "4611686018427387904 is outside" },
	{ "ring_bytes \"16G\"", PX("\"ring_bytes\":\"16G\""), 0, NULL, -EINVAL, "17179869184 is outside 4K..16M" },
	{ "ring_bytes negative", PX("\"ring_bytes\":-4096"), 0, NULL, -EINVAL, "ring_bytes: expected a positive integer or a size string, got an integer" },
	{ "ring_bytes INT64_MIN", PX("\"ring_bytes\":-9223372036854775808"), 0, NULL, -EINVAL, "expected a positive integer" },
	{ "ring_bytes zero", PX("\"ring_bytes\":0"), 0, NULL, -EINVAL, "ring_bytes: expected a positive integer or a size string, got an integer" },
	{ "ring_bytes \"0\"", PX("\"ring_bytes\":\"0\""), 0, NULL, -EINVAL, "ring_bytes: 0 is outside 4K..16M" },
	{ "ring_bytes \"-4K\"", PX("\"ring_bytes\":\"-4K\""), 0, NULL, -EINVAL, "ring_bytes: \"-4K\" is not a size" },
	{ "ring_bytes \"64KB\"", PX("\"ring_bytes\":\"64KB\""), 0, NULL, -EINVAL, "\"64KB\" is not a size" },
	{ "ring_bytes \"64k\"", PX("\"ring_bytes\":\"64k\""), 0, NULL, -EINVAL, "\"64k\" is not a size" },
	{ "ring_bytes \"0x1000\"", PX("\"ring_bytes\":\"0x1000\""), 0, NULL, -EINVAL, "\"0x1000\" is not a size" },
	{ "ring_bytes empty string", PX("\"ring_bytes\":\"\""), 0, NULL, -EINVAL, "ring_bytes: \"\" is not a size" },
	{ "ring_bytes \" 4K\"", PX("\"ring_bytes\":\" 4K\""), 0, NULL, -EINVAL, "\" 4K\" is not a size" },
	{ "ring_bytes with NUL", PX("\"ring_bytes\":\"64K\\u0000junk\""), 0, NULL, -EINVAL, "ring_bytes: contains a NUL byte" },
	{ "ring_bytes overflowing digits", PX("\"ring_bytes\":\"18446744073709551616\""), 0, NULL, -EINVAL, "\"18446744073709551616\" is not a size" },
	{ "ring_bytes overflowing shift", PX("\"ring_bytes\":\"17179869184G\""), 0, NULL, -EINVAL, "\"17179869184G\" is not a size" },
	{ "ring_bytes 2^54 via G", PX("\"ring_bytes\":\"16777216G\""), 0, NULL, -EINVAL, "ring_bytes: 18014398509481984 is outside" },
	{ "ring_bytes over int64", PX("\"ring_bytes\":18446744073709551616"), 0, NULL, -EINVAL, "invalid JSON" },
	{ "long channel in message", P3("{\"channel\":\"" CH63 "\"," EP ",\"direction\":\"both\",\"ring_bytes\":3000}"), 0, NULL, -EINVAL, "grants[2] (\"" CH63 "\").ring_bytes: 3000 is not a power of two" },

	/* The set. */
	{ "duplicate channel", "{\"grants\":[" GOOD("x") "," GOOD("x") "]}", 0, NULL, -EEXIST, "grants[1]: duplicate channel \"x\" (also grants[0])" },
	{ "duplicate channel, other ends", P3("{\"channel\":\"g0\",\"endpoint_a\":\"mon\",\"endpoint_b\":\"ping\",\"direction\":\"a_to_b\",\"ring_bytes\":8192}"), 0, NULL, -EEXIST, "grants[2]: duplicate channel \"g0\" (also grants[0])" },
	{ "too many grants", NULL, 0, gen_too_many, -E2BIG, "1025 grants, at most 1024" },

	/* Service rules. */
	{ "services not an array", "{\"grants\":[],\"services\":{}}", 0, NULL, -EINVAL, "field \"services\"" },
	{ "service rule not an object", "{\"grants\":[],\"services\":[1]}", 0, NULL, -EINVAL, "services[0]" },
	{ "service rule unknown field", "{\"grants\":[],\"services\":[" SR("allow") "," "{\"source\":\"ping\",\"target\":\"pong\",\"service\":\"s\",\"action\":\"allow\",\"why\":1}]}", 0, NULL, -EINVAL, "services[1]: " },
	{ "service rule no source", "{\"grants\":[],\"services\":[{\"target\":\"pong\",\"service\":\"s\",\"action\":\"allow\"}]}", 0, NULL, -EINVAL, "services[0].source: missing" },
	{ "service rule bad service name", "{\"grants\":[],\"services\":[{\"source\":\"ping\",\"target\":\"pong\",\"service\":\"a/b\",\"action\":\"allow\"}]}", 0, NULL, -EINVAL, "services[0].service: \"a/b\" is not a valid name" },
	{ "service rule bad action", "{\"grants\":[],\"services\":[" SR("maybe") "]}", 0, NULL, -EINVAL, "services[0].action: must be \"allow\" or \"deny\"" },
	{ "service rule action not a string", "{\"grants\":[],\"services\":[{\"source\":\"ping\",\"target\":\"pong\",\"service\":\"s\",\"action\":true}]}", 0, NULL, -EINVAL, "services[0].action: must be" },
	{ "service rule no action", "{\"grants\":[],\"services\":[{\"source\":\"ping\",\"target\":\"pong\",\"service\":\"s\"}]}", 0, NULL, -EINVAL, "services[0].action: missing" },
	{ "service rule to itself", "{\"grants\":[],\"services\":[{\"source\":\"ping\",\"target\":\"ping\",\"service\":\"s\",\"action\":\"allow\"}]}", 0, NULL, -EINVAL, "services[0]: source and target are both \"ping\"" },
	{ "service rule unknown target", "{\"grants\":[],\"services\":[{\"source\":\"ping\",\"target\":\"nobody\",\"service\":\"s\",\"action\":\"allow\"}]}", 0, NULL, -ENOENT, "services[0].target: unknown partition \"nobody\"", true },
	{ "service rule after a bad grant", "{\"grants\":[{}],\"services\":[" SR("allow") "]}", 0, NULL, -EINVAL, "grants[0]" },
	{ "file too big", NULL, 0, gen_too_big, -EFBIG, "policy of 1048577 bytes, at most 1048576" },
};

Test(grant, hostile_inputs)
{
	size_t ncase = sizeof(bad_cases) / sizeof(bad_cases[0]);
	cr_assert_geq(ncase, 30);
	for (size_t i = 0; i < ncase; i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->len;
		char *made = NULL;
		const char *json = c->json;
		if (c->make)
			json = made = c->make(&len);
		else if (!len)
			len = strlen(json);

		struct grant_set s;
		struct parley_err e = { 0 };
		memset(&s, 0xa5, sizeof(s)); /* garbage in, zeroes out */
		int rc = grant_set_parse(json, len, known, &s, &e);
		cr_expect_eq(rc, c->rc, "%s: rc %d, want %d (%s)", c->what, rc,
			     c->rc, e.msg);
		cr_expect_eq(e.code, rc, "%s: err.code %d", c->what, e.code);
		cr_expect_not_null(strstr(e.msg, c->msg),
				   "%s: message \"%s\" lacks \"%s\"", c->what,
				   e.msg, c->msg);
		for (const char *p = e.msg; *p; p++)
			cr_expect((unsigned char)*p >= 0x20 &&
				  (unsigned char)*p < 0x7f,
				  "%s: byte 0x%02x in the message", c->what,
				  (unsigned char)*p);
		cr_expect_eq(s.n, 0, "%s: n %u after failure", c->what, s.n);
		cr_expect_null(s.g, "%s: grants left allocated", c->what);
		cr_expect_null(s.svc, "%s: service rules left allocated",
			       c->what);
		cr_expect_eq(s.nsvc, 0, "%s: nsvc %u", c->what, s.nsvc);
		grant_set_free(&s);
		/* err is optional; without a known list only the unknown
		 * partitions become acceptable. */
		rc = grant_set_parse(json, len, NULL, &s, NULL);
		cr_expect_eq(rc, c->needs_known ? 0 : c->rc,
			     "%s: without err or known list: %d", c->what, rc);
		grant_set_free(&s);
		free(made);
	}
	expect_no_leaks();
}

Test(grant, service_rules)
{
	const char *json = "{\"grants\":[],\"services\":["
		SR("deny") "," SR("allow") ","
		"{\"source\":\"mon\",\"target\":\"pong\",\"service\":\"s\","
		"\"action\":\"allow\"}]}";
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(parse(json, known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(s.nsvc, 3);
	/* The first rule naming the call decides. */
	const struct svc_rule *r = svc_rule_find(&s, "ping", "pong", "s");
	cr_assert_not_null(r);
	cr_expect_not(r->allow);
	r = svc_rule_find(&s, "mon", "pong", "s");
	cr_assert_not_null(r);
	cr_expect(r->allow);
	/* Default deny: no rule for the other direction or service. */
	cr_expect_null(svc_rule_find(&s, "pong", "ping", "s"));
	cr_expect_null(svc_rule_find(&s, "ping", "pong", "t"));
	grant_set_free(&s);
	cr_expect_null(s.svc);
	cr_expect_eq(s.nsvc, 0);
	/* A policy without "services" has none. */
	cr_assert_eq(parse("{\"grants\":[]}", known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(s.nsvc, 0);
	cr_expect_null(svc_rule_find(&s, "ping", "pong", "s"));
	grant_set_free(&s);
	expect_no_leaks();
}

/* "capabilities": a list narrows what specs ask for; no list, no say. */
Test(grant, capability_rules)
{
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(parse("{\"grants\":[]}", known, &s, &e), 0, "%s", e.msg);
	cr_expect(grant_cap_allows(&s, "ping", "update"));
	grant_set_free(&s);
	cr_assert_eq(parse("{\"grants\":[],\"capabilities\":[{\"partition\":"
			   "\"mon\",\"capability\":\"update\"}]}", known,
			   &s, &e), 0, "%s", e.msg);
	cr_expect(grant_cap_allows(&s, "mon", "update"));
	cr_expect_not(grant_cap_allows(&s, "ping", "update"));
	grant_set_free(&s);
	cr_expect_eq(s.ncap, 0);
	cr_expect_not(s.has_caps);
	static const struct { const char *json, *says; } bad[] = {
		{ "{\"grants\":[],\"capabilities\":{}}", "an array" },
		{ "{\"grants\":[],\"capabilities\":[1]}", "capabilities[0]" },
		{ "{\"grants\":[],\"capabilities\":[{\"partition\":\"mon\","
		  "\"capability\":\"root\"}]}", "is not one" },
		{ "{\"grants\":[],\"capabilities\":[{\"partition\":\"nobody\","
		  "\"capability\":\"update\"}]}", "unknown partition" },
		{ "{\"grants\":[],\"capabilities\":[{\"partition\":\"mon\"}]}",
		  "capability" },
		{ "{\"grants\":[],\"capabilities\":[{\"partition\":\"mon\","
		  "\"capability\":\"update\",\"x\":1}]}", "x" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (struct parley_err){ 0 };
		cr_expect_lt(parse(bad[i].json, known, &s, &e), 0, "%s",
			     bad[i].json);
		cr_expect(strstr(e.msg, bad[i].says), "%s: %s", bad[i].json,
			  e.msg);
		grant_set_free(&s);
	}
	expect_no_leaks();
}

Test(grant, load)
{
	char *dir = t_tmpdir();
	static const char good[] = "{\"grants\":[" GOOD("x") "]}";
	char *path = t_write(dir, "grants.json", good, strlen(good));
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(grant_set_load(path, known, &s, &e), 0, "%s", e.msg);
	cr_expect_eq(s.n, 1);
	cr_expect_not_null(grant_find(&s, "x", "pong"));
	grant_set_free(&s);
	free(path);

	/* A bad document: the message names the file and the field. */
	static const char bad[] = "{\"grants\":[" GOOD("x") ",{\"channel\":"
		"\"y\",\"endpoint_a\":\"ping\",\"endpoint_b\":\"ghost\","
		"\"direction\":\"both\",\"ring_bytes\":4096}]}";
	path = t_write(dir, "bad.json", bad, strlen(bad));
	memset(&s, 0xa5, sizeof(s));
	cr_expect_eq(grant_set_load(path, known, &s, &e), -ENOENT);
	cr_expect_eq(e.code, -ENOENT);
	cr_expect(strstr(e.msg, path) && strstr(e.msg, "grants[1] (\"y\")"
						   ".endpoint_b: unknown "
						   "partition \"ghost\""),
		  "%s", e.msg);
	cr_expect_eq(s.n, 0);
	cr_expect_null(s.g);
	free(path);

	/* Missing file, a directory, a file over the cap. */
	path = NULL;
	cr_assert(asprintf(&path, "%s/missing.json", dir) > 0);
	memset(&s, 0xa5, sizeof(s));
	cr_expect_eq(grant_set_load(path, known, &s, &e), -ENOENT);
	cr_expect(strstr(e.msg, path), "%s", e.msg);
	cr_expect_null(s.g);
	free(path);
	cr_expect_eq(grant_set_load(dir, known, &s, &e), -EINVAL);
	cr_expect(strstr(e.msg, "not a regular file"), "%s", e.msg);
	size_t len;
	char *big = gen_too_big(&len);
	path = t_write(dir, "big.json", big, len);
	cr_expect_eq(grant_set_load(path, known, &s, &e), -EFBIG);
	cr_expect(strstr(e.msg, "1048577 bytes"), "%s", e.msg);
	cr_expect_null(s.g);
	free(big);
	free(path);
	t_rmtree(dir);
	free(dir);
	expect_no_leaks();
}

/* The example policy in examples/ parses, with the partitions it names. */
Test(grant, example_policy)
{
	static const char *const ex[] = { "ping", "pong", "rogue", NULL };
	struct grant_set s;
	struct parley_err e = { 0 };
	int rc = grant_set_load(PARLEY_SOURCE_DIR "/examples/grants.json", ex,
				&s, &e);
	cr_assert_eq(rc, 0, "%s", e.msg);
	cr_expect_eq(s.n, 2);
	const struct grant *g = grant_find(&s, "pingpong", "ping");
	cr_assert_not_null(g);
	cr_expect_eq(g->dir, GRANT_BOTH);
	cr_expect_eq(g->ring_bytes, 65536);
	cr_expect_null(grant_find(&s, "pingpong", "rogue"));
	grant_set_free(&s);
	/* Without rogue the same file is refused. */
	rc = grant_set_load(PARLEY_SOURCE_DIR "/examples/grants.json", known,
			    &s, &e);
	cr_expect_eq(rc, -ENOENT);
	cr_expect(strstr(e.msg, "grants[1] (\"telemetry\").endpoint_a: "
			 "unknown partition \"rogue\""), "%s", e.msg);
	expect_no_leaks();
}

/* A policy may carry segment sets inline: parsed by the data set's own
 * checks (members against the same known list), freed with the policy. */
Test(grant, inline_segsets_parsed_and_checked)
{
	const char *ok = "{\"grants\":[],\"segsets\":[{\"name\":\"bus\","
		"\"members\":[\"ping\",\"pong\",\"mon\"],\"segments\":["
		"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"ping\","
		"\"size\":\"4K\"}]}]}";
	struct grant_set s;
	struct parley_err e = { 0 };
	cr_assert_eq(parse(ok, known, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.seg.n, 1);
	cr_expect_str_eq(s.seg.s[0].name, "bus");
	cr_expect_eq(segset_member(&s.seg.s[0], "mon"), 2);
	grant_set_free(&s);
	cr_expect_eq(s.seg.n, 0);

	const char *stranger = "{\"grants\":[],\"segsets\":[{\"name\":\"bus\","
		"\"members\":[\"ping\",\"zed\"],\"segments\":[]}]}";
	memset(&e, 0, sizeof(e));
	cr_expect_lt(parse(stranger, known, &s, &e), 0);
	cr_expect(strstr(e.msg, "segsets[0]") && strstr(e.msg, "zed"), "%s",
		  e.msg);
	cr_expect_eq(parse("{\"grants\":[],\"segsets\":{}}", known, &s, &e),
		     -EINVAL);
	expect_no_leaks();
}
