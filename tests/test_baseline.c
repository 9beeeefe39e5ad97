/*
 * Standalone baselines (agent/ipc/baseline.c): good documents, a table of
 * hostile ones with the error expected, then admission of hand-built
 * measurements in golden and enroll mode, and the enroll -> save -> reload
 * round trip.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/ipc/baseline.h"
#include "agent/ipc/measure.h"
#include "tests/helpers/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define BASELINE_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BASELINE_TEST_LSAN 1
#endif
#endif
#ifdef BASELINE_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Look for leaks while the test can still fail (see tests/test_spec.c). */
static void expect_no_leaks(void)
{
#ifdef BASELINE_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEXA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define N63 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
/* A document with one partition "ping" whose entry is `e`. */
#define DOC(e) "{\"partitions\":{\"ping\":" e "}}"
/* ... whose entry has one file motd (digest HEX) and `more`. */
#define FILES1 "\"files\":{\"motd\":\"" HEX "\"}"
#define DOC1(more) DOC("{" FILES1 more "}")
#define SEG4 "\"" HEX "\",\"" HEX "\",\"" HEX "\",\"" HEX "\""
#define SEG16 SEG4 "," SEG4 "," SEG4 "," SEG4

static int parse(struct baseline_db *db, const char *json,
		 struct parley_err *e)
{
	return baseline_parse(db, json, strlen(json), e);
}

Test(baseline, valid_documents)
{
	static const char *const ok[] = {
		"{\"partitions\":{}}",
		" {\n \"partitions\" : { } }\n",
		DOC("{\"files\":{}}"),
		DOC1(""),
		DOC1(",\"digest\":\"" HEX "\""),
		DOC1(",\"segments\":[]"),
		DOC1(",\"segments\":[\"" HEX "\"]"),
		DOC1(",\"segments\":[" SEG16 "]"),
		DOC("{\"digest\":\"" HEXA "\",\"files\":{\"motd\":\"" HEX "\","
		    "\"app.conf\":\"" HEXA "\",\"odd name ~!\":\"" HEX "\"},"
		    "\"segments\":[\"" HEX "\",\"" HEXA "\"]}"),
		"{\"partitions\":{\"ping\":{" FILES1 "},\"pong\":{\"files\":{}},"
		"\"A-z_0.9\":{" FILES1 "},\"" N63 "\":{" FILES1 "}}}",
		DOC("{\"files\":{\"" N63 "\":\"" HEX "\"}}"),
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct baseline_db db = { 0 };
		struct parley_err e = { 0 };
		int rc = parse(&db, ok[i], &e);
		cr_expect_eq(rc, 0, "case %zu: %d %s", i, rc, e.msg);
		cr_expect_not_null(db.root, "case %zu", i);
		baseline_free(&db);
		cr_expect_null(db.root);
	}
	struct baseline_db db = { 0 };
	baseline_free(&db); /* an empty db frees */
	expect_no_leaks();
}

/* The parser must stop at len (exact-size heap copy, ASan watching). */
Test(baseline, not_nul_terminated)
{
	static const char doc[] = DOC1(",\"digest\":\"" HEX "\"");
	size_t len = strlen(doc);
	char *buf = malloc(len);
	cr_assert_not_null(buf);
	memcpy(buf, doc, len);
	struct baseline_db db = { 0 };
	struct parley_err e = { 0 };
	cr_expect_eq(baseline_parse(&db, buf, len, &e), 0, "%s", e.msg);
	baseline_free(&db);
	cr_expect_eq(baseline_parse(&db, buf, len - 1, &e), -EINVAL);
	cr_expect_null(db.root);
	free(buf);
	expect_no_leaks();
}

/* `n` segments in partition ping. */
static char *make_segs(unsigned n)
{
	size_t cap = 64 + (size_t)n * 70 + sizeof(DOC1(""));
	char *b = malloc(cap);
	cr_assert_not_null(b);
	size_t off = (size_t)snprintf(b, cap, "{\"partitions\":{\"ping\":{"
				      FILES1 ",\"segments\":[");
	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(b + off, cap - off, "%s\"" HEX "\"",
					i ? "," : "");
	snprintf(b + off, cap - off, "]}}}");
	return b;
}

static char *gen_17_segs(void)
{
	return make_segs(MEASURE_SEGS_MAX + 1);
}

static char *gen_deep(void)
{
	size_t n = 3000;
	char *b = malloc(2 * n + 64);
	cr_assert_not_null(b);
	size_t off = (size_t)sprintf(b, "{\"partitions\":{\"ping\":");
	memset(b + off, '[', n);
	memset(b + off + n, ']', n);
	strcpy(b + off + 2 * n, "}}");
	return b;
}

struct bad_case {
	const char *what;
	const char *json;            /* NULL: built by make() */
	char *(*make)(void);
	int rc;
	const char *msg;             /* must occur in the error message */
};

#define NOT_HEX(where) where ": not a SHA-256 in lower-case hex"

static const struct bad_case bad_cases[] = {
	/* Not JSON, or not an object. */
	{ "empty input", "", NULL, -EINVAL, "invalid JSON at line 1" },
	{ "truncated", "{\"partitions\":{\"ping\":{", NULL, -EINVAL, "invalid JSON" },
	{ "trailing garbage", "{\"partitions\":{}}}", NULL, -EINVAL, "invalid JSON" },
	{ "trailing comma", "{\"partitions\":{},}", NULL, -EINVAL, "invalid JSON" },
	{ "single quotes", "{'partitions':{}}", NULL, -EINVAL, "invalid JSON" },
	{ "bad UTF-8", DOC("{\"files\":{\"\xc3\x28\":\"" HEX "\"}}"), NULL, -EINVAL, "invalid JSON" },
	{ "NUL in a digest", DOC("{\"files\":{\"motd\":\"\\u0000" HEX "\"}}"), NULL, -EINVAL, "invalid JSON" },
	{ "NUL in a key", DOC("{\"files\":{\"mo\\u0000td\":\"" HEX "\"}}"), NULL, -EINVAL, "invalid JSON" },
	{ "deep nesting", NULL, gen_deep, -EINVAL, "invalid JSON" },
	{ "top-level array", "[{\"partitions\":{}}]", NULL, -EINVAL, "expected an object" },
	{ "top-level null", "null", NULL, -EINVAL, "invalid JSON" },
	{ "empty object", "{}", NULL, -EINVAL, "\"partitions\": expected an object" },
	{ "partitions array", "{\"partitions\":[]}", NULL, -EINVAL, "\"partitions\": expected an object" },
	{ "partitions null", "{\"partitions\":null}", NULL, -EINVAL, "\"partitions\": expected an object" },

	/* Unknown fields at each level. */
	{ "unknown top field", "{\"partitions\":{},\"partition\":{}}", NULL, -EINVAL, "unknown field \"partition\"" },
	{ "unknown top field, escapes", "{\"partitions\":{},\"\\u001b[2J\":1}", NULL, -EINVAL, "unknown field \"\\x1b[2J\"" },
	{ "unknown field in an entry", DOC1(",\"digets\":\"" HEX "\""), NULL, -EINVAL, "partitions.ping: unknown field \"digets\"" },
	{ "unknown field, escapes", DOC1(",\"\\u001b]0;x\\u0007\":1"), NULL, -EINVAL, "partitions.ping: unknown field \"\\x1b]0;x\\x07\"" },

	/* Duplicate keys. */
	{ "duplicate top key", "{\"partitions\":{},\"partitions\":{}}", NULL, -EINVAL, "duplicate object key" },
	{ "duplicate partition", "{\"partitions\":{\"ping\":{" FILES1 "},\"ping\":{" FILES1 "}}}", NULL, -EINVAL, "duplicate object key" },
	{ "duplicate entry key", DOC("{" FILES1 "," FILES1 "}"), NULL, -EINVAL, "duplicate object key" },
	{ "duplicate file", DOC("{\"files\":{\"motd\":\"" HEX "\",\"motd\":\"" HEXA "\"}}"), NULL, -EINVAL, "duplicate object key" },

	/* An entry. */
	{ "entry array", DOC("[]"), NULL, -EINVAL, "partitions.ping: expected an object" },
	{ "entry string", DOC("\"" HEX "\""), NULL, -EINVAL, "partitions.ping: expected an object" },
	{ "entry missing files", DOC("{\"digest\":\"" HEX "\"}"), NULL, -EINVAL, "partitions.ping: missing \"files\"" },
	{ "empty entry", DOC("{}"), NULL, -EINVAL, "partitions.ping: missing \"files\"" },
	{ "files array", DOC("{\"files\":[\"" HEX "\"]}"), NULL, -EINVAL, "partitions.ping.files: expected an object, got an array" },
	{ "files null", DOC("{\"files\":null}"), NULL, -EINVAL, "partitions.ping.files: expected an object, got null" },
	{ "files string", DOC("{\"files\":\"" HEX "\"}"), NULL, -EINVAL, "partitions.ping.files: expected an object, got a string" },
	{ "second partition bad", "{\"partitions\":{\"ping\":{" FILES1 "},\"pong\":{\"files\":1}}}", NULL, -EINVAL, "partitions.pong.files: expected an object, got an integer" },

	/* Partition names. */
	{ "partition name empty", "{\"partitions\":{\"\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name dot", "{\"partitions\":{\".ping\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name dash", "{\"partitions\":{\"-ping\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name slash", "{\"partitions\":{\"../ping\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name space", "{\"partitions\":{\"pi ng\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name escape", "{\"partitions\":{\"\\u001b[31m\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name 64 bytes", "{\"partitions\":{\"" N63 "x\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "partition name non-ASCII", "{\"partitions\":{\"p\xc3\xa9\":{" FILES1 "}}}", NULL, -EINVAL, "partitions: bad partition name" },
	{ "bad name, bad entry", "{\"partitions\":{\"a/b\":[]}}", NULL, -EINVAL, "partitions: bad partition name" },

	/* Per-file digests. */
	{ "file digest 63 hex", DOC("{\"files\":{\"motd\":\"" N63 "\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest short", DOC("{\"files\":{\"motd\":\"0123\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest 65 hex", DOC("{\"files\":{\"motd\":\"" HEX "0\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest 128 hex", DOC("{\"files\":{\"motd\":\"" HEX HEX "\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest upper-case", DOC("{\"files\":{\"motd\":\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest non-hex", DOC("{\"files\":{\"motd\":\"g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest last non-hex", DOC("{\"files\":{\"motd\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde \"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest 32 bytes UTF-8", DOC("{\"files\":{\"motd\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest integer", DOC("{\"files\":{\"motd\":1}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest null", DOC("{\"files\":{\"motd\":null}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "file digest array", DOC("{\"files\":{\"motd\":[\"" HEX "\"]}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"motd\"") },
	{ "second file bad", DOC("{\"files\":{\"motd\":\"" HEX "\",\"app.conf\":\"x\"}}"), NULL, -EINVAL, NOT_HEX("partitions.ping.files.\"app.conf\"") },
	{ "file name empty", DOC("{\"files\":{\"\":\"" HEX "\"}}"), NULL, -EINVAL, "partitions.ping.files: bad file name" },
	{ "file name 64 bytes", DOC("{\"files\":{\"" N63 "x\":\"" HEX "\"}}"), NULL, -EINVAL, "partitions.ping.files: bad file name" },

	/* The partition digest. */
	{ "digest short", DOC1(",\"digest\":\"abc\""), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest 65 hex", DOC1(",\"digest\":\"" HEX "a\""), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest upper-case", DOC1(",\"digest\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest non-hex", DOC1(",\"digest\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX\""), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest integer", DOC1(",\"digest\":0"), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest null", DOC1(",\"digest\":null"), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },
	{ "digest empty", DOC1(",\"digest\":\"\""), NULL, -EINVAL, NOT_HEX("partitions.ping.digest") },

	/* Segments. */
	{ "segments object", DOC1(",\"segments\":{}"), NULL, -EINVAL, "partitions.ping.segments: expected an array of at most 16" },
	{ "segments string", DOC1(",\"segments\":\"" HEX "\""), NULL, -EINVAL, "partitions.ping.segments: expected an array" },
	{ "segments null", DOC1(",\"segments\":null"), NULL, -EINVAL, "partitions.ping.segments: expected an array" },
	{ "17 segments", NULL, gen_17_segs, -EINVAL, "partitions.ping.segments: expected an array of at most 16" },
	{ "segment non-hex", DOC1(",\"segments\":[\"" HEX "\",\"" N63 "!\"]"), NULL, -EINVAL, "partitions.ping.segments[1]: not a SHA-256" },
	{ "segment short", DOC1(",\"segments\":[\"00\"]"), NULL, -EINVAL, "partitions.ping.segments[0]: not a SHA-256" },
	{ "segment upper-case", DOC1(",\"segments\":[\"" HEX "\",\"" HEX "\",\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF\"]"), NULL, -EINVAL, "partitions.ping.segments[2]: not a SHA-256" },
	{ "segment integer", DOC1(",\"segments\":[0]"), NULL, -EINVAL, "partitions.ping.segments[0]: not a SHA-256" },
	{ "segment nested array", DOC1(",\"segments\":[[\"" HEX "\"]]"), NULL, -EINVAL, "partitions.ping.segments[0]: not a SHA-256" },
	{ "segments and bad files", DOC("{\"files\":[],\"segments\":[0]}"), NULL, -EINVAL, "partitions.ping.files: expected an object" },
	/* Guest-reported digests (Linux VMs). */
	{ "guest_reported not an object", "{\"partitions\":{},\"guest_reported\":[]}", NULL, -EINVAL, "\"guest_reported\": expected an object" },
	{ "guest_reported bad partition", "{\"partitions\":{},\"guest_reported\":{\"a/b\":{}}}", NULL, -EINVAL, "guest_reported: bad partition name" },
	{ "guest_reported entry array", "{\"partitions\":{},\"guest_reported\":{\"vm\":[]}}", NULL, -EINVAL, "guest_reported.vm: expected an object" },
	{ "guest_reported relative path", "{\"partitions\":{},\"guest_reported\":{\"vm\":{\"etc/x\":\"" HEX "\"}}}", NULL, -EINVAL, "guest_reported.vm: bad path" },
	{ "guest_reported dotdot path", "{\"partitions\":{},\"guest_reported\":{\"vm\":{\"/etc/../x\":\"" HEX "\"}}}", NULL, -EINVAL, "guest_reported.vm: bad path" },
	{ "guest_reported space in path", "{\"partitions\":{},\"guest_reported\":{\"vm\":{\"/a b\":\"" HEX "\"}}}", NULL, -EINVAL, "guest_reported.vm: bad path" },
	{ "guest_reported not hex", "{\"partitions\":{},\"guest_reported\":{\"vm\":{\"/x\":\"00\"}}}", NULL, -EINVAL, NOT_HEX("guest_reported.vm./x") },
};

Test(baseline, hostile_documents)
{
	size_t ncase = sizeof(bad_cases) / sizeof(bad_cases[0]);
	cr_assert_geq(ncase, 20);
	/* A db that already holds a document keeps it when a parse fails. */
	static const char good[] = DOC1("");
	for (size_t i = 0; i < ncase; i++) {
		const struct bad_case *c = &bad_cases[i];
		char *made = c->make ? c->make() : NULL;
		const char *json = made ? made : c->json;

		struct baseline_db db = { 0 };
		struct parley_err e = { 0 };
		int rc = parse(&db, json, &e);
		cr_expect_eq(rc, c->rc, "%s: rc %d, want %d (%s)", c->what, rc,
			     c->rc, e.msg);
		cr_expect_eq(e.code, rc, "%s: err.code %d", c->what, e.code);
		cr_expect_not_null(strstr(e.msg, c->msg),
				   "%s: message \"%s\" lacks \"%s\"", c->what,
				   e.msg, c->msg);
		cr_expect_null(db.root, "%s: root set after failure", c->what);
		cr_expect_eq(parse(&db, json, NULL), c->rc, "%s: without err",
			     c->what);

		cr_assert_eq(parse(&db, good, NULL), 0);
		json_t *before = db.root;
		cr_expect_eq(parse(&db, json, NULL), c->rc, "%s", c->what);
		cr_expect_eq(db.root, before, "%s: good document replaced",
			     c->what);
		baseline_free(&db);
		free(made);
	}
	expect_no_leaks();
}

/* Hostile text goes into a message quoted (common/jsonv.h: every parser
 * quotes the same safe way), never as raw terminal escapes. */
Test(baseline, messages_quote_hostile_names)
{
	static const char *const docs[] = {
		/* A file name is any non-empty string under 64 bytes. */
		DOC("{\"files\":{\"\\u001b]2;owned\\u0007\\r\\n\":\"x\"}}"),
		DOC("{\"files\":{\"\\u001b[2J\":1}}"),
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		struct baseline_db db = { 0 };
		struct parley_err e = { 0 };
		cr_expect_eq(parse(&db, docs[i], &e), -EINVAL);
		for (const char *p = e.msg; *p; p++)
			cr_expect((unsigned char)*p >= 0x20 &&
				  (unsigned char)*p < 0x7f,
				  "doc %zu: raw byte 0x%02x in the message "
				  "(file name not quoted)", i,
				  (unsigned char)*p);
		baseline_free(&db);
	}
}

/* A measurement by hand: files motd and app.conf, two segments. */
static void make_measure(struct measure *m)
{
	memset(m, 0, sizeof(*m));
	m->nfile = 2;
	snprintf(m->file[0].name, sizeof(m->file[0].name), "motd");
	memset(m->file[0].digest, 0x11, MEASURE_DIGEST);
	snprintf(m->file[1].name, sizeof(m->file[1].name), "app.conf");
	memset(m->file[1].digest, 0x22, MEASURE_DIGEST);
	m->nseg = 2;
	memset(m->seg[0].digest, 0x33, MEASURE_DIGEST);
	memset(m->seg[1].digest, 0x44, MEASURE_DIGEST);
	for (int i = 0; i < MEASURE_DIGEST; i++)
		m->digest[i] = (uint8_t)i;
}

static const char *hex(const uint8_t *d, char out[2 * MEASURE_DIGEST + 1])
{
	measure_hex(d, out);
	return out;
}

/* The baseline entry of m, as an operator would write it, into buf. */
static void entry_of(const struct measure *m, bool digest, bool segments,
		     char *buf, size_t cap)
{
	char h[2 * MEASURE_DIGEST + 1];
	size_t off = (size_t)snprintf(buf, cap, "{\"files\":{");
	for (unsigned i = 0; i < m->nfile; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s\"%s\":\"%s\"",
					i ? "," : "", m->file[i].name,
					hex(m->file[i].digest, h));
	off += (size_t)snprintf(buf + off, cap - off, "}");
	if (digest)
		off += (size_t)snprintf(buf + off, cap - off,
					",\"digest\":\"%s\"", hex(m->digest, h));
	if (segments) {
		off += (size_t)snprintf(buf + off, cap - off, ",\"segments\":[");
		for (unsigned i = 0; i < m->nseg; i++)
			off += (size_t)snprintf(buf + off, cap - off,
						"%s\"%s\"", i ? "," : "",
						hex(m->seg[i].digest, h));
		off += (size_t)snprintf(buf + off, cap - off, "]");
	}
	cr_assert_lt(off + 1, cap);
	snprintf(buf + off, cap - off, "}");
}

#define DOC_CAP 16384

/* A golden db holding partition `name` with m's entry. */
static void golden_db(struct baseline_db *db, const char *name,
		      const struct measure *m, bool digest, bool segments)
{
	char *entry = malloc(DOC_CAP), *doc = malloc(DOC_CAP + 128);
	cr_assert(entry && doc);
	entry_of(m, digest, segments, entry, DOC_CAP);
	snprintf(doc, DOC_CAP + 128, "{\"partitions\":{\"%s\":%s}}", name,
		 entry);
	memset(db, 0, sizeof(*db));
	db->mode = BASELINE_GOLDEN;
	struct parley_err e = { 0 };
	cr_assert_eq(parse(db, doc, &e), 0, "%s\n%s", e.msg, doc);
	free(entry);
	free(doc);
}

static void expect_refused(struct baseline_db *db, const char *name,
			   const struct measure *m, int code, const char *msg)
{
	struct parley_err e = { 0 };
	int rc = baseline_admit(db, name, m, &e);
	cr_expect_eq(rc, code, "%s: rc %d, want %d (%s)", msg, rc, code,
		     e.msg);
	cr_expect_eq(e.code, rc, "%s: err.code %d", msg, e.code);
	cr_expect(strstr(e.msg, msg), "message \"%s\" lacks \"%s\"", e.msg,
		  msg);
}

Test(baseline, golden_match)
{
	struct measure m;
	make_measure(&m);
	for (int v = 0; v < 4; v++) {
		struct baseline_db db;
		golden_db(&db, "ping", &m, v & 1, v & 2);
		struct parley_err e = { 0 };
		cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0,
			     "variant %d: %s", v, e.msg);
		cr_expect_not(db.changed);
		baseline_free(&db);
	}
	/* Files in any order. */
	struct measure r = m;
	r.file[0] = m.file[1];
	r.file[1] = m.file[0];
	struct baseline_db db;
	golden_db(&db, "ping", &m, true, true);
	cr_expect_eq(baseline_admit(&db, "ping", &r, NULL), 0);
	/* No files, no segments. */
	struct measure z = { 0 };
	baseline_free(&db);
	golden_db(&db, "ping", &z, true, true);
	cr_expect_eq(baseline_admit(&db, "ping", &z, NULL), 0);
	baseline_free(&db);
	expect_no_leaks();
}

Test(baseline, golden_mismatch_names_the_file)
{
	struct measure m, x;
	make_measure(&m);
	struct baseline_db db;
	golden_db(&db, "ping", &m, true, true);

	x = m;
	x.file[0].digest[31] ^= 1;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "partition ping: config file \"motd\" differs from its "
		       "baseline");
	x = m;
	x.file[1].digest[0] ^= 0x80;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "config file \"app.conf\" differs");

	/* A file the baseline does not have (renamed, or added). */
	x = m;
	snprintf(x.file[1].name, sizeof(x.file[1].name), "app.conf2");
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "config file \"app.conf2\" is not in its baseline");
	x = m;
	x.nfile = 3;
	snprintf(x.file[2].name, sizeof(x.file[2].name), "extra");
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "config file \"extra\" is not in its baseline");

	/* A file the baseline has and the partition no longer does. */
	x = m;
	x.nfile = 1;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "partition ping: its baseline lists config files it no "
		       "longer has");
	x.nfile = 0;
	expect_refused(&db, "ping", &x, -EBADMSG, "no longer has");

	/* Segments. */
	x = m;
	x.seg[1].digest[5] ^= 1;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "partition ping: image segment 1 differs from its "
		       "baseline");
	x = m;
	x.seg[0].digest[0] ^= 1;
	expect_refused(&db, "ping", &x, -EBADMSG, "image segment 0 differs");
	x = m;
	x.nseg = 3;
	memset(x.seg[2].digest, 0x55, MEASURE_DIGEST);
	expect_refused(&db, "ping", &x, -EBADMSG, "3 image segments, its baseline has 2");

	/* No entry. */
	expect_refused(&db, "pong", &m, -ENOENT,
		       "partition pong has no golden baseline");
	expect_refused(&db, "Ping", &m, -ENOENT, "no golden baseline");
	cr_expect_not(db.changed, "golden mode never records");
	cr_expect_null(json_object_get(json_object_get(db.root, "partitions"),
				       "pong"));
	baseline_free(&db);
	expect_no_leaks();
}

/*
 * An image that drops its last segments (the others unchanged) is refused
 * against a baseline that lists more: compare() checks the segment count,
 * not only the segments the measurement has.
 */
Test(baseline, fewer_segments_than_baseline_refused)
{
	struct measure m, x;
	make_measure(&m);
	struct baseline_db db;
	golden_db(&db, "ping", &m, false, true);
	x = m;
	x.nseg = 1;
	expect_refused(&db, "ping", &x, -EBADMSG, "segment");
	x.nseg = 0;
	expect_refused(&db, "ping", &x, -EBADMSG, "segment");
	baseline_free(&db);
}

/*
 * An entry's "digest" (the partition digest over every file and segment,
 * DESIGN.md section 6) is compared, so a golden entry that pins the image
 * by its digest alone admits no other image.
 */
Test(baseline, partition_digest_compared)
{
	struct measure m, x;
	make_measure(&m);
	struct baseline_db db;
	golden_db(&db, "ping", &m, true, false);
	x = m;
	memset(x.seg[0].digest, 0xee, MEASURE_DIGEST);
	x.digest[0] ^= 1; /* a different image: a different digest */
	expect_refused(&db, "ping", &x, -EBADMSG, "differs");
	baseline_free(&db);
}

Test(baseline, enroll_in_memory)
{
	struct measure m, x;
	make_measure(&m);
	struct baseline_db db = { .mode = BASELINE_ENROLL };
	cr_assert_eq(parse(&db, "{\"partitions\":{}}", NULL), 0);
	struct parley_err e = { 0 };
	cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0, "%s", e.msg);
	cr_expect(db.changed);
	json_t *ent = json_object_get(json_object_get(db.root, "partitions"),
				      "ping");
	cr_assert_not_null(ent, "entry recorded");
	char h[2 * MEASURE_DIGEST + 1];
	cr_expect_str_eq(json_string_value(json_object_get(ent, "digest")),
			 hex(m.digest, h));
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_object_get(ent, "files"), "motd")),
			 hex(m.file[0].digest, h));
	cr_expect_eq(json_array_size(json_object_get(ent, "segments")), 2);
	/* Recorded once; from then on it must match. */
	db.changed = false;
	cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0, "%s", e.msg);
	cr_expect_not(db.changed);
	x = m;
	x.file[0].digest[0] ^= 1;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "config file \"motd\" differs");
	cr_expect_not(db.changed, "a mismatch is not re-enrolled");
	cr_expect_eq(baseline_admit(&db, "ping", &m, NULL), 0,
		     "the first measurement still stands");
	/* An existing entry in enroll mode is checked like a golden one. */
	x = m;
	x.seg[1].digest[0] ^= 1;
	expect_refused(&db, "ping", &x, -EBADMSG, "image segment 1 differs");
	baseline_free(&db);
	expect_no_leaks();
}

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

Test(baseline, enroll_save_reload_admit)
{
	char *dir = t_tmpdir();
	char *path = path_in(dir, "baselines.json");
	struct measure m, x;
	make_measure(&m);
	struct baseline_db db;
	struct parley_err e = { 0 };

	/* Missing file in enroll mode: an empty db. */
	cr_assert_eq(baseline_load(&db, path, BASELINE_ENROLL, &e), 0, "%s",
		     e.msg);
	cr_expect_eq(json_object_size(json_object_get(db.root, "partitions")),
		     0);
	cr_expect_eq(baseline_save(&db, &e), 0, "nothing to save");
	cr_expect_neq(access(path, F_OK), 0, "an unchanged db is not written");
	cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0, "%s", e.msg);
	struct measure q;
	make_measure(&q);
	q.nfile = 1;
	q.nseg = 0;
	cr_expect_eq(baseline_admit(&db, "pong", &q, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_save(&db, &e), 0, "%s", e.msg);
	cr_expect_not(db.changed);
	baseline_free(&db);
	cr_expect_eq(access(path, F_OK), 0, "written");
	char *tmp = path_in(dir, "baselines.json.tmp");
	cr_expect_neq(access(tmp, F_OK), 0, "no temporary file left");
	free(tmp);

	/* Reload as golden: the same measurements pass, changed ones not. */
	cr_assert_eq(baseline_load(&db, path, BASELINE_GOLDEN, &e), 0, "%s",
		     e.msg);
	cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_admit(&db, "pong", &q, &e), 0, "%s", e.msg);
	x = m;
	x.file[0].digest[9] ^= 4;
	expect_refused(&db, "ping", &x, -EBADMSG,
		       "config file \"motd\" differs");
	expect_refused(&db, "pong", &m, -EBADMSG, "\"app.conf\" is not in");
	expect_refused(&db, "mon", &m, -ENOENT, "no golden baseline");
	cr_expect_eq(baseline_save(&db, &e), 0);
	baseline_free(&db);

	/* Reload in enroll mode, add one more, save over the old file. */
	cr_assert_eq(baseline_load(&db, path, BASELINE_ENROLL, &e), 0);
	cr_expect_eq(baseline_admit(&db, "mon", &q, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_save(&db, &e), 0, "%s", e.msg);
	baseline_free(&db);
	cr_assert_eq(baseline_load(&db, path, BASELINE_GOLDEN, &e), 0);
	cr_expect_eq(json_object_size(json_object_get(db.root, "partitions")),
		     3);
	cr_expect_eq(baseline_admit(&db, "mon", &q, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_admit(&db, "ping", &m, &e), 0, "%s", e.msg);
	baseline_free(&db);

	unlink(path);
	free(path);
	t_rmtree(dir);
	free(dir);
	expect_no_leaks();
}

/* Guest-reported digests: enrolled at a path's first report, then
 * compared (a different one names the path); golden mode enrols nothing;
 * kept through save and reload; hostile names and paths refused. */
Test(baseline, guest_reported_enrol_compare_save_reload)
{
	char *dir = t_tmpdir();
	char *path = path_in(dir, "baselines.json");
	struct baseline_db db;
	struct parley_err e = { 0 };
	uint8_t d[MEASURE_DIGEST], other[MEASURE_DIGEST];
	bool enrolled;
	memset(d, 0x5a, sizeof(d));
	memcpy(other, d, sizeof(d));
	other[31] ^= 1;

	cr_assert_eq(baseline_load(&db, path, BASELINE_ENROLL, &e), 0);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/app.conf", d,
					   &enrolled, &e), 0, "%s", e.msg);
	cr_expect(enrolled);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/app.conf", d,
					   &enrolled, &e), 0, "%s", e.msg);
	cr_expect_not(enrolled, "a match is not enrolled again");
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/app.conf", other,
					   &enrolled, &e), -EBADMSG);
	cr_expect(strstr(e.msg, "guest-reported file /etc/app.conf differs"),
		  "%s", e.msg);
	cr_expect_not(enrolled);
	/* Another VM's same path is its own. */
	cr_expect_eq(baseline_guest_report(&db, "vm2", "/etc/app.conf", other,
					   &enrolled, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_guest_report(&db, "vm", "relative", d, &enrolled,
					   &e), -EINVAL);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/a/../b", d, &enrolled,
					   &e), -EINVAL);
	cr_expect_eq(baseline_guest_report(&db, "../vm", "/a", d, &enrolled,
					   &e), -EINVAL);
	/* At most BASELINE_GUEST_FILES_MAX paths per VM. */
	for (int i = 1; i < BASELINE_GUEST_FILES_MAX; i++) {
		char p[32];
		snprintf(p, sizeof(p), "/f%d", i);
		cr_assert_eq(baseline_guest_report(&db, "vm", p, d, &enrolled,
						   &e), 0, "%s", e.msg);
	}
	cr_expect_eq(baseline_guest_report(&db, "vm", "/one-too-many", d,
					   &enrolled, &e), -ENOSPC);
	cr_expect_eq(baseline_save(&db, &e), 0, "%s", e.msg);
	baseline_free(&db);

	/* Reloaded golden: the enrolled digests compare, nothing new is
	 * taken. */
	cr_assert_eq(baseline_load(&db, path, BASELINE_GOLDEN, &e), 0, "%s",
		     e.msg);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/app.conf", d,
					   &enrolled, &e), 0, "%s", e.msg);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/app.conf", other,
					   &enrolled, &e), -EBADMSG);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/etc/new", d, &enrolled,
					   &e), -EBADMSG);
	cr_expect(strstr(e.msg, "/etc/new is not in its golden baseline"),
		  "%s", e.msg);
	cr_expect_not(db.changed);
	baseline_free(&db);

	/* In memory: never written. */
	cr_assert_eq(baseline_memory(&db), 0);
	cr_expect_eq(baseline_guest_report(&db, "vm", "/x", d, &enrolled, &e),
		     0);
	cr_expect_eq(baseline_save(&db, &e), 0);
	baseline_free(&db);

	unlink(path);
	free(path);
	t_rmtree(dir);
	free(dir);
	expect_no_leaks();
}

Test(baseline, load_errors)
{
	char *dir = t_tmpdir();
	char *path = path_in(dir, "missing.json");
	struct baseline_db db;
	struct parley_err e = { 0 };

	/* Missing file in golden mode: an error naming it. */
	cr_expect_eq(baseline_load(&db, path, BASELINE_GOLDEN, &e), -ENOENT);
	cr_expect_eq(e.code, -ENOENT);
	cr_expect(strstr(e.msg, path), "%s", e.msg);
	cr_expect_null(db.root);
	baseline_free(&db);
	free(path);

	/* A bad document: the message names the file and the field. */
	static const char bad[] = DOC1(",\"digest\":\"nope\"");
	path = t_write(dir, "bad.json", bad, strlen(bad));
	for (int mode = BASELINE_ENROLL; mode <= BASELINE_GOLDEN; mode++) {
		cr_expect_eq(baseline_load(&db, path, mode, &e), -EINVAL);
		cr_expect(strstr(e.msg, "baselines ") && strstr(e.msg, path) &&
			  strstr(e.msg, "partitions.ping.digest: not a "
				 "SHA-256"), "%s", e.msg);
		cr_expect_null(db.root);
		baseline_free(&db);
	}
	free(path);

	/* A directory, and a file over the cap. */
	cr_expect_eq(baseline_load(&db, dir, BASELINE_ENROLL, &e), -EINVAL);
	cr_expect(strstr(e.msg, "not a regular file"), "%s", e.msg);
	baseline_free(&db);
	path = path_in(dir, "big.json");
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(ftruncate(fileno(f), BASELINE_FILE_MAX + 1), 0);
	fclose(f);
	cr_expect_eq(baseline_load(&db, path, BASELINE_ENROLL, &e), -EFBIG);
	baseline_free(&db);
	free(path);

	/* Saving where no file can be written. */
	path = path_in(dir, "no/such/dir/baselines.json");
	cr_assert_eq(baseline_load(&db, path, BASELINE_ENROLL, &e), 0);
	struct measure m;
	make_measure(&m);
	cr_assert_eq(baseline_admit(&db, "ping", &m, NULL), 0);
	cr_expect_eq(baseline_save(&db, &e), -EIO);
	cr_expect(strstr(e.msg, "writing baselines") && strstr(e.msg, path),
		  "%s", e.msg);
	cr_expect(db.changed, "still unsaved");
	baseline_free(&db);
	free(path);

	t_rmtree(dir);
	free(dir);
	expect_no_leaks();
}
