/*
 * Framing of the agent link (common/frame.c): every body type through
 * frame_encode -> frame_decode and through evbuffers (frames split across
 * many small writes, several frames in one buffer), then a table of
 * hostile byte strings, each with the exact code of frame_decode and
 * frame_pull. Field-level refusals are the wire suite's (test_wire.c),
 * which also provides the good samples used here.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include "common/frame.h"
#include "common/wire.h"

#if defined(__SANITIZE_ADDRESS__)
#define FRAME_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FRAME_TEST_LSAN 1
#endif
#endif
#ifdef FRAME_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* From test_wire.c: one good envelope per body type. */
Parley__V1__Envelope *wiretest_sample(Parley__V1__Envelope__BodyCase c);
void wiretest_sample_free(Parley__V1__Envelope *e);
extern const Parley__V1__Envelope__BodyCase wiretest_bodies[];
extern const size_t wiretest_nbodies;

/* Criterion takes a test's verdict before its worker exits: look for leaks
 * while the test can still fail (without ASan this checks nothing). */
static void expect_no_leaks(void)
{
#ifdef FRAME_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

/* Two envelopes are the same when they pack to the same bytes. */
static void expect_same(const Parley__V1__Envelope *a,
			const Parley__V1__Envelope *b, const char *what)
{
	cr_assert_eq(a->body_case, b->body_case, "%s: body case", what);
	cr_expect_eq(a->request_id, b->request_id, "%s: request_id", what);
	size_t na = parley__v1__envelope__get_packed_size(a);
	size_t nb = parley__v1__envelope__get_packed_size(b);
	cr_assert_eq(na, nb, "%s: %zu vs %zu bytes", what, na, nb);
	uint8_t *pa = malloc(na), *pb = malloc(nb);
	cr_assert(pa && pb);
	parley__v1__envelope__pack(a, pa);
	parley__v1__envelope__pack(b, pb);
	cr_expect_eq(memcmp(pa, pb, na), 0, "%s: content differs", what);
	free(pa);
	free(pb);
}

/* Every sample, framed, back to back. */
static uint8_t *all_frames(size_t *total, size_t *ends)
{
	uint8_t *all = NULL;
	*total = 0;
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		Parley__V1__Envelope *e = wiretest_sample(wiretest_bodies[i]);
		uint8_t *buf;
		size_t len;
		cr_assert_eq(frame_encode(e, &buf, &len), 0);
		all = realloc(all, *total + len);
		cr_assert_not_null(all);
		memcpy(all + *total, buf, len);
		*total += len;
		ends[i] = *total;
		free(buf);
		wiretest_sample_free(e);
	}
	return all;
}

Test(frame, round_trip_every_body)
{
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		const char *name = wire_body_name(wiretest_bodies[i]);
		Parley__V1__Envelope *e = wiretest_sample(wiretest_bodies[i]);
		uint8_t *buf;
		size_t len;
		cr_assert_eq(frame_encode(e, &buf, &len), 0, "%s", name);
		size_t n = parley__v1__envelope__get_packed_size(e);
		cr_expect_eq(len, FRAME_HDR + n, "%s", name);
		cr_expect_eq(buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3],
			     (int)n, "%s: big-endian length", name);
		Parley__V1__Envelope *out;
		size_t used;
		struct parley_err err = { 0 };
		int rc = frame_decode(buf, len, FRAME_MAX, &used, &out, &err);
		cr_assert_eq(rc, 1, "%s: %d %s", name, rc, err.msg);
		cr_expect_eq(used, len, "%s: consumed", name);
		expect_same(e, out, name);
		parley__v1__envelope__free_unpacked(out, NULL);
		free(buf);
		wiretest_sample_free(e);
	}
	expect_no_leaks();
}

/* Several frames in one buffer, taken one after the other. */
Test(frame, decode_back_to_back)
{
	size_t ends[32], total;
	uint8_t *all = all_frames(&total, ends);
	size_t off = 0;
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		Parley__V1__Envelope *out;
		size_t used;
		struct parley_err err = { 0 };
		int rc = frame_decode(all + off, total - off, 0, &used, &out,
				      &err);
		cr_assert_eq(rc, 1, "frame %zu: %d %s", i, rc, err.msg);
		cr_expect_eq(out->body_case, wiretest_bodies[i]);
		off += used;
		cr_expect_eq(off, ends[i], "frame %zu ends at %zu", i, off);
		parley__v1__envelope__free_unpacked(out, NULL);
	}
	free(all);
	expect_no_leaks();
}

/* Every proper prefix of a frame is "not yet", never an error. */
Test(frame, every_prefix_is_incomplete)
{
	Parley__V1__Envelope *e =
		wiretest_sample(PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(frame_encode(e, &buf, &len), 0);
	for (size_t n = 0; n < len; n++) {
		/* An exact-size copy, so ASan sees any read past the prefix. */
		uint8_t *p = malloc(n ? n : 1);
		memcpy(p, buf, n);
		Parley__V1__Envelope *out = (void *)1;
		size_t used = 9;
		struct parley_err err = { 0 };
		int rc = frame_decode(p, n, 0, &used, &out, &err);
		cr_expect_eq(rc, 0, "prefix %zu of %zu: %d %s", n, len, rc,
			     err.msg);
		cr_expect_null(out);
		cr_expect_eq(used, 0);
		free(p);
	}
	free(buf);
	wiretest_sample_free(e);
	expect_no_leaks();
}

Test(frame, push_pull_many)
{
	struct evbuffer *eb = evbuffer_new();
	cr_assert_not_null(eb);
	size_t want = 0;
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		Parley__V1__Envelope *e = wiretest_sample(wiretest_bodies[i]);
		cr_assert_eq(frame_push(eb, e), 0);
		want += FRAME_HDR + parley__v1__envelope__get_packed_size(e);
		wiretest_sample_free(e);
	}
	cr_expect_eq(evbuffer_get_length(eb), want);
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		Parley__V1__Envelope *e = wiretest_sample(wiretest_bodies[i]);
		Parley__V1__Envelope *out;
		struct parley_err err = { 0 };
		size_t before = evbuffer_get_length(eb);
		int rc = frame_pull(eb, FRAME_MAX, &out, &err);
		cr_assert_eq(rc, 1, "frame %zu: %d %s", i, rc, err.msg);
		cr_expect_eq(before - evbuffer_get_length(eb),
			     FRAME_HDR + parley__v1__envelope__get_packed_size(e),
			     "frame %zu: drained exactly the frame", i);
		expect_same(e, out, wire_body_name(wiretest_bodies[i]));
		parley__v1__envelope__free_unpacked(out, NULL);
		wiretest_sample_free(e);
	}
	Parley__V1__Envelope *out = (void *)1;
	cr_expect_eq(frame_pull(eb, 0, &out, NULL), 0, "empty buffer: not yet");
	cr_expect_null(out);
	evbuffer_free(eb);
	expect_no_leaks();
}

/* All frames arriving in pieces of `chunk` bytes, pulled as they become
 * complete: each comes out exactly once, in order, at the right moment. */
static void split_delivery(const uint8_t *all, size_t total,
			   const size_t *ends, size_t chunk)
{
	struct evbuffer *eb = evbuffer_new();
	cr_assert_not_null(eb);
	size_t got = 0;
	for (size_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;
		cr_assert_eq(evbuffer_add(eb, all + off, n), 0);
		Parley__V1__Envelope *out;
		struct parley_err err = { 0 };
		int rc;
		while ((rc = frame_pull(eb, 0, &out, &err)) == 1) {
			cr_assert_lt(got, wiretest_nbodies);
			cr_expect_eq(out->body_case, wiretest_bodies[got],
				     "chunk %zu: frame %zu", chunk, got);
			cr_expect_leq(ends[got], off + n, "chunk %zu: frame %zu "
				      "before its last byte", chunk, got);
			parley__v1__envelope__free_unpacked(out, NULL);
			got++;
		}
		cr_assert_eq(rc, 0, "chunk %zu at %zu: %d %s", chunk, off, rc,
			     err.msg);
		if (got < wiretest_nbodies)
			cr_expect_gt(ends[got], off + n, "chunk %zu: frame %zu "
				     "complete but not pulled", chunk, got);
	}
	cr_expect_eq(got, wiretest_nbodies, "chunk %zu", chunk);
	cr_expect_eq(evbuffer_get_length(eb), 0, "chunk %zu: leftovers", chunk);
	evbuffer_free(eb);
}

Test(frame, split_across_many_writes)
{
	size_t ends[32], total;
	uint8_t *all = all_frames(&total, ends);
	static const size_t chunks[] = { 1, 2, 3, 4, 5, 7, 13, 64, 1000, 100000 };
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		split_delivery(all, total, ends, chunks[i]);
	free(all);
	expect_no_leaks();
}

/* ---- hostile bytes ---------------------------------------------------- */

struct hostile {
	const char *what;
	const char *bytes;
	size_t len;
	size_t cap;
	int rc;           /* 1 accepted, 0 incomplete, <0 refused */
	const char *msg;  /* for rc < 0 */
};

/* A literal with its length (literals may hold NUL bytes). */
#define L(s) s, sizeof(s) - 1

/* Envelope fields: 19 = heartbeat (tag 0x9a 0x01 as bytes), 10 = hello
 * (0x52), 99 = unknown varint (0x98 0x06), 21 = unknown bytes (0xaa 0x01).
 * Hello "a/b": host (0x0a) "a/b", next_seq (0x20) 1. */
#define HB_EMPTY "\x9a\x01\x00"
#define HELLO_BAD "\x52\x07\x0a\x03" "a/b" "\x20\x01"

static const struct hostile hostile[] = {
	{ "nothing yet", L(""), 0, 0, NULL },
	{ "three header bytes", L("\x00\x00\x00"), 0, 0, NULL },
	{ "length over the default cap, header only", L("\x00\x10\x00\x01"),
	  0, -EMSGSIZE, "frame: 1048577 bytes, at most 1048576" },
	{ "length 2^32-1, header only", L("\xff\xff\xff\xff"), 0, -EMSGSIZE,
	  "frame: 4294967295 bytes" },
	{ "over a small cap, header only", L("\x00\x00\x00\x11"), 16,
	  -EMSGSIZE, "frame: 17 bytes, at most 16" },
	{ "a cap above FRAME_MAX is FRAME_MAX", L("\x00\x10\x00\x01"),
	  SIZE_MAX, -EMSGSIZE, "at most 1048576" },
	{ "over the cap by one, body present", L("\x00\x00\x00\x03" HB_EMPTY),
	  2, -EMSGSIZE, "frame: 3 bytes, at most 2" },
	{ "exactly the cap", L("\x00\x00\x00\x03" HB_EMPTY), 3, 1, NULL },
	{ "length 0", L("\x00\x00\x00\x00"), 0, -EPROTO, "frame: empty" },
	{ "length 0, more bytes behind", L("\x00\x00\x00\x00" HB_EMPTY), 0,
	  -EPROTO, "frame: empty" },
	{ "truncated body", L("\x00\x00\x00\x05\x9a\x01"), 0, 0, NULL },
	{ "one byte short", L("\x00\x00\x00\x04" HB_EMPTY), 0, 0, NULL },
	{ "random bytes", L("\x00\x00\x00\x05\xff\xff\xff\xff\xff"), 0,
	  -EBADMSG, "frame: 5 bytes that are not an Envelope" },
	{ "truncated varint", L("\x00\x00\x00\x02\x08\xff"), 0, -EBADMSG,
	  "not an Envelope" },
	{ "body length past its end", L("\x00\x00\x00\x03\x9a\x01\x05"), 0,
	  -EBADMSG, "not an Envelope" },
	{ "field number 0", L("\x00\x00\x00\x02\x00\x01"), 0, -EBADMSG,
	  "not an Envelope" },
	{ "start group", L("\x00\x00\x00\x02\x0b\x0c"), 0, -EBADMSG,
	  "not an Envelope" },
	{ "heartbeat as a varint", L("\x00\x00\x00\x03\x98\x01\x00"), 0,
	  -EBADMSG, "not an Envelope" },
	{ "overlong tag of field 0 (0x80 0x00)",
	  L("\x00\x00\x00\x06\x80\x00\x07" HB_EMPTY), 0, -EBADMSG,
	  "Envelope: field number 0 is not a field number" },
	{ "field number 2^29 (over the largest)",
	  L("\x00\x00\x00\x09\x80\x80\x80\x80\x10\x01" HB_EMPTY), 0,
	  -EBADMSG, "Envelope: field number 536870912" },
	{ "field 0 inside the body",
	  L("\x00\x00\x00\x06\x9a\x01\x03\x80\x00\x07"), 0, -EBADMSG,
	  "Heartbeat: field number 0" },
	{ "wire type 7", L("\x00\x00\x00\x02\x0f\x01"), 0, -EBADMSG,
	  "not an Envelope" },
	{ "request_id only, no body", L("\x00\x00\x00\x02\x08\x01"), 0,
	  -EPROTO, "envelope: no body" },
	{ "unknown field only", L("\x00\x00\x00\x03\x98\x06\x01"), 0, -EPROTO,
	  "envelope: no body" },
	{ "unknown body number 99", L("\x00\x00\x00\x03\x9a\x06\x00"), 0,
	  -EPROTO, "envelope: no body" },
	{ "empty heartbeat", L("\x00\x00\x00\x03" HB_EMPTY), 0, 1, NULL },
	{ "unknown fields around a heartbeat",
	  L("\x00\x00\x00\x09\x98\x06\x01" HB_EMPTY "\x9a\x06\x00"), 0, 1,
	  NULL },
	{ "unknown field inside a heartbeat",
	  L("\x00\x00\x00\x05\x9a\x01\x02\x28\x07"), 0, 1, NULL },
	{ "hello with a bad host", L("\x00\x00\x00\x09" HELLO_BAD), 0, -EINVAL,
	  "hello.host: \"a/b\" is not a valid name" },
	{ "bad hello, then a heartbeat: the last body wins",
	  L("\x00\x00\x00\x0c" HELLO_BAD HB_EMPTY), 0, 1, NULL },
	{ "heartbeat, then a bad hello: the last body wins",
	  L("\x00\x00\x00\x0c" HB_EMPTY HELLO_BAD), 0, -EINVAL, "hello.host" },
};

static void check_decode(const struct hostile *h)
{
	/* An exact-size copy: any read past the input is an ASan error. */
	uint8_t *p = malloc(h->len ? h->len : 1);
	memcpy(p, h->bytes, h->len);
	Parley__V1__Envelope *out = (void *)1;
	size_t used = 9;
	struct parley_err err = { 0 };
	int rc = frame_decode(p, h->len, h->cap, &used, &out, &err);
	cr_expect_eq(rc, h->rc, "%s: frame_decode %d, want %d (%s)", h->what,
		     rc, h->rc, err.msg);
	if (rc == 1) {
		cr_expect_eq(used, h->len, "%s: consumed", h->what);
		parley__v1__envelope__free_unpacked(out, NULL);
	} else {
		cr_expect_null(out, "%s", h->what);
		cr_expect_eq(used, 0, "%s", h->what);
	}
	if (h->rc < 0) {
		cr_expect_eq(err.code, rc, "%s", h->what);
		cr_expect(strstr(err.msg, h->msg), "%s: message \"%s\", want "
			  "\"%s\"", h->what, err.msg, h->msg);
	}
	free(p);
}

static void check_pull(const struct hostile *h)
{
	struct evbuffer *eb = evbuffer_new();
	cr_assert_not_null(eb);
	/* One byte at a time, so the body never sits in one extent. */
	for (size_t i = 0; i < h->len; i++)
		evbuffer_add(eb, h->bytes + i, 1);
	Parley__V1__Envelope *out = (void *)1;
	struct parley_err err = { 0 };
	int rc = frame_pull(eb, h->cap, &out, &err);
	cr_expect_eq(rc, h->rc, "%s: frame_pull %d, want %d (%s)", h->what, rc,
		     h->rc, err.msg);
	if (rc == 1) {
		cr_expect_eq(evbuffer_get_length(eb), 0, "%s: drained",
			     h->what);
		parley__v1__envelope__free_unpacked(out, NULL);
	} else {
		cr_expect_null(out, "%s", h->what);
		cr_expect_eq(evbuffer_get_length(eb), h->len, "%s: nothing "
			     "drained", h->what);
	}
	if (h->rc < 0)
		cr_expect(strstr(err.msg, h->msg), "%s: message \"%s\"",
			  h->what, err.msg);
	evbuffer_free(eb);
}

Test(frame, hostile_table)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		check_decode(&hostile[i]);
		check_pull(&hostile[i]);
	}
	expect_no_leaks();
}

/* A peer announcing a huge frame is refused on its four header bytes: the
 * receiver neither waits for nor buffers the body. */
Test(frame, over_cap_refused_before_the_body)
{
	struct evbuffer *eb = evbuffer_new();
	cr_assert_not_null(eb);
	static const uint8_t hdr[] = { 0x00, 0x20, 0x00, 0x00 }; /* 2 MiB */
	evbuffer_add(eb, hdr, 2);
	Parley__V1__Envelope *out;
	cr_expect_eq(frame_pull(eb, 0, &out, NULL), 0, "two bytes: not yet");
	evbuffer_add(eb, hdr + 2, 2);
	struct parley_err err = { 0 };
	cr_expect_eq(frame_pull(eb, 0, &out, &err), -EMSGSIZE);
	cr_expect(strstr(err.msg, "2097152 bytes"), "%s", err.msg);
	cr_expect_eq(evbuffer_get_length(eb), 4);
	/* A caller's smaller cap wins over FRAME_MAX. */
	evbuffer_drain(eb, 4);
	static const uint8_t small[] = { 0x00, 0x00, 0x10, 0x01 }; /* 4097 */
	evbuffer_add(eb, small, 4);
	cr_expect_eq(frame_pull(eb, 4096, &out, &err), -EMSGSIZE);
	cr_expect_eq(frame_pull(eb, 8192, &out, &err), 0, "8K cap: waits");
	evbuffer_free(eb);
	expect_no_leaks();
}

Test(frame, encode_refusals)
{
	Parley__V1__Envelope e;
	uint8_t *buf = (void *)1;
	size_t len = 9;
	wire_init_envelope(&e, 5);
	cr_expect_eq(frame_encode(&e, &buf, &len), -EPROTO, "no body");
	cr_expect_null(buf);
	cr_expect_eq(len, 0);
	struct evbuffer *eb = evbuffer_new();
	cr_assert_not_null(eb);
	cr_expect_eq(frame_push(eb, &e), -EPROTO);
	/* Larger than any peer takes. */
	Parley__V1__Error er = PARLEY__V1__ERROR__INIT;
	char *msg = malloc(FRAME_MAX + 1);
	cr_assert_not_null(msg);
	memset(msg, 'x', FRAME_MAX);
	msg[FRAME_MAX] = '\0';
	er.code = "BIG";
	er.message = msg;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_ERROR;
	e.error = &er;
	cr_expect_eq(frame_encode(&e, &buf, &len), -EMSGSIZE);
	cr_expect_null(buf);
	cr_expect_eq(frame_push(eb, &e), -EMSGSIZE);
	cr_expect_eq(evbuffer_get_length(eb), 0, "nothing appended");
	free(msg);
	evbuffer_free(eb);
	expect_no_leaks();
}

/* The largest frame the cap allows goes through; one byte more does not. */
Test(frame, largest_frame)
{
	Parley__V1__Envelope *e =
		wiretest_sample(PARLEY__V1__ENVELOPE__BODY_POLICY);
	/* A bundle whose body is whatever bytes fill the frame to the cap
	 * (wire_check does not decode the body). */
	size_t fixed = parley__v1__envelope__get_packed_size(e) -
		       e->policy->body.len;
	uint8_t *body = calloc(1, FRAME_MAX);
	cr_assert_not_null(body);
	size_t n = FRAME_MAX - fixed, packed;
	/* Length prefixes grow with the body: shrink it until it fits. */
	do {
		wire_bytes(&e->policy->body, body, --n);
		packed = parley__v1__envelope__get_packed_size(e);
	} while (packed > FRAME_MAX);
	cr_assert_eq(packed, FRAME_MAX, "sized the frame to %zu", packed);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(frame_encode(e, &buf, &len), 0);
	Parley__V1__Envelope *out;
	size_t used;
	struct parley_err err = { 0 };
	cr_expect_eq(frame_decode(buf, len, 0, &used, &out, &err), 1, "%s",
		     err.msg);
	cr_expect_eq(used, FRAME_HDR + FRAME_MAX);
	parley__v1__envelope__free_unpacked(out, NULL);
	cr_expect_eq(frame_decode(buf, len, FRAME_MAX - 1, &used, &out, &err),
		     -EMSGSIZE);
	free(buf);
	wire_bytes(&e->policy->body, body, n + 1);
	cr_expect_eq(frame_encode(e, &buf, &len), -EMSGSIZE);
	free(body);
	wiretest_sample_free(e);
	expect_no_leaks();
}
