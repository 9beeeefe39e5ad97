/*
 * libFuzzer target for the agent-link reader (common/frame.c, wire.c): any
 * bytes in, read as a stream of frames under a 64 KiB cap, first from one
 * flat buffer (frame_decode), then from an evbuffer filled in two uneven
 * pieces (frame_pull), which must see exactly the same frames. Each frame
 * accepted is re-encoded and decoded again, and must come back the same;
 * a policy bundle's body also goes through wire_body_decode. Refusals carry
 * one of the documented codes and a message; ASan sees the rest.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include "common/err.h"
#include "common/frame.h"
#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP (64 * 1024)
/* Frames per input followed through both readers. */
#define FUZZ_FRAMES_MAX 64

static bool known_code(int rc)
{
	return rc == -EMSGSIZE || rc == -EPROTO || rc == -EBADMSG ||
	       rc == -EINVAL || rc == -E2BIG || rc == -EEXIST;
}

static void check_refusal(int rc, const struct parley_err *err)
{
	PARLEY_ASSERT(known_code(rc));
	PARLEY_ASSERT(err->code == rc && err->msg[0]);
}

static uint8_t *pack(const Parley__V1__Envelope *e, size_t *n)
{
	*n = parley__v1__envelope__get_packed_size(e);
	uint8_t *p = malloc(*n ? *n : 1);
	PARLEY_ASSERT(p);
	PARLEY_ASSERT(parley__v1__envelope__pack(e, p) == *n);
	return p;
}

/* Encode, decode, and the same envelope again (as bytes: protobuf-c packs
 * deterministically, unknown fields included). */
static void check_round_trip(const Parley__V1__Envelope *e)
{
	uint8_t *buf;
	size_t len, used;
	PARLEY_ASSERT(frame_encode(e, &buf, &len) == 0);
	Parley__V1__Envelope *again;
	struct parley_err err = { 0 };
	int rc = frame_decode(buf, len, FRAME_MAX, &used, &again, &err);
	PARLEY_ASSERT(rc == 1 && used == len);
	size_t na, nb;
	uint8_t *a = pack(e, &na), *b = pack(again, &nb);
	PARLEY_ASSERT(na == nb && memcmp(a, b, na) == 0);
	PARLEY_ASSERT(again->request_id == e->request_id);
	free(a);
	free(b);
	parley__v1__envelope__free_unpacked(again, NULL);
	free(buf);
}

static void check_body(const Parley__V1__Envelope *e)
{
	if (e->body_case != PARLEY__V1__ENVELOPE__BODY_POLICY)
		return;
	Parley__V1__PolicyBody *b;
	struct parley_err err = { 0 };
	int rc = wire_body_decode(&e->policy->body, &b, &err);
	if (rc < 0) {
		check_refusal(rc, &err);
		PARLEY_ASSERT(!b);
		return;
	}
	PARLEY_ASSERT(b->version > 0 && b->n_grants <= WIRE_GRANTS_MAX &&
		      b->n_baselines <= WIRE_BASELINES_MAX);
	PARLEY_ASSERT(wire_check_policy_body(b, NULL, &err) == 0);
	parley__v1__policy_body__free_unpacked(b, NULL);
}

/* Frames of the flat buffer: each frame's length in ends[], the verdict on
 * what follows the last one in *last. */
static size_t flat(const uint8_t *data, size_t size, size_t *ends, int *last)
{
	size_t off = 0, n = 0;
	for (;;) {
		Parley__V1__Envelope *e;
		size_t used;
		struct parley_err err = { 0 };
		int rc = frame_decode(data + off, size - off, FUZZ_CAP, &used, &e,
				      &err);
		*last = rc;
		if (rc < 0)
			check_refusal(rc, &err);
		if (rc <= 0 || n == FUZZ_FRAMES_MAX) {
			if (rc == 1)
				parley__v1__envelope__free_unpacked(e, NULL);
			return n;
		}
		PARLEY_ASSERT(used > FRAME_HDR && used <= size - off &&
			      used <= FRAME_HDR + FUZZ_CAP);
		PARLEY_ASSERT(wire_check(e, &err) == 0);
		check_round_trip(e);
		check_body(e);
		parley__v1__envelope__free_unpacked(e, NULL);
		off += used;
		ends[n++] = off;
	}
}

/* The same stream through an evbuffer: the same frames, the same end. */
static void pulled(const uint8_t *data, size_t size, const size_t *ends,
		   size_t n, int last)
{
	struct evbuffer *eb = evbuffer_new();
	PARLEY_ASSERT(eb);
	size_t half = size / 3;
	evbuffer_add(eb, data, half);
	evbuffer_add(eb, data + half, size - half);
	size_t i = 0;
	for (;;) {
		Parley__V1__Envelope *e;
		struct parley_err err = { 0 };
		int rc = frame_pull(eb, FUZZ_CAP, &e, &err);
		if (rc == 1 && i < n) {
			PARLEY_ASSERT(size - evbuffer_get_length(eb) == ends[i]);
			parley__v1__envelope__free_unpacked(e, NULL);
			i++;
			continue;
		}
		if (rc == 1)
			parley__v1__envelope__free_unpacked(e, NULL);
		PARLEY_ASSERT(i == n && rc == last);
		break;
	}
	evbuffer_free(eb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t ends[FUZZ_FRAMES_MAX];
	int last;
	size_t n = flat(data, size, ends, &last);
	pulled(data, size, ends, n, last);
	return 0;
}
