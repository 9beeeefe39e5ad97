/*
 * libFuzzer target for the SDK's service call framing (include/parley/svc.h):
 * what a partition reads from its peer on a service call's channel. The
 * input is a program: build a request (the caller's side: its id goes in
 * flight), or take the next bytes as a frame the peer wrote and read it as
 * a response (checked, then its id taken from those in flight) or as a
 * request (the provider's side).
 *
 * Oracles: a frame is accepted iff it is 16..PARLEY_SVC_FRAME_MAX bytes,
 * has the magic and a length that is exactly the rest (and, as a request,
 * status 0); the payload then lies inside the input and is len bytes; an
 * answer is taken only for an id in flight, and only once; never more than
 * PARLEY_SVC_INFLIGHT in flight; what build writes parses back to the same
 * fields. Every frame is copied into an exact-size heap block, so ASan
 * sees a read past its end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <parley/svc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                         \
	do {                                                             \
		if (!(c)) {                                              \
			fprintf(stderr, "fuzz_svc: %s:%d: %s\n",         \
				__FILE__, __LINE__, #c);                 \
			abort();                                         \
		}                                                        \
	} while (0)

struct in {
	const uint8_t *p;
	size_t n;
};

static uint32_t take(struct in *in, unsigned bytes)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint32_t)*in->p << (8 * i);
	return v;
}

static int expect_ok(const uint8_t *b, uint32_t n, enum parley_svc_kind k)
{
	if (n < PARLEY_SVC_HDR || n > PARLEY_SVC_FRAME_MAX)
		return 0;
	struct parley_svc_frame h;
	memcpy(&h, b, sizeof(h));
	return h.magic == PARLEY_SVC_MAGIC && h.len == n - PARLEY_SVC_HDR &&
	       (k == PARLEY_SVC_RESPONSE || h.status == 0);
}

/* The peer's frame: n bytes of the input, alone in a heap block. */
static void read_frame(struct in *in, struct parley_svc_ids *ids,
		       enum parley_svc_kind kind, int fix)
{
	uint32_t n = take(in, 2);
	if (n > in->n)
		n = (uint32_t)in->n;
	uint8_t *b = malloc(n ? n : 1);
	CHECK(b);
	memcpy(b, in->p, n);
	in->p += n;
	in->n -= n;
	/* Half the time make the header plausible, so the fuzzer gets
	 * past the magic and length checks quickly. */
	if (fix && n >= PARLEY_SVC_HDR) {
		struct parley_svc_frame h;
		memcpy(&h, b, sizeof(h));
		h.magic = PARLEY_SVC_MAGIC;
		h.len = n - PARLEY_SVC_HDR;
		if (kind == PARLEY_SVC_REQUEST)
			h.status = 0;
		memcpy(b, &h, sizeof(h));
	}
	struct parley_svc_frame h;
	const uint8_t *payload = NULL;
	int rc = parley_svc_parse(b, n, kind, &h, &payload);
	CHECK((rc == 0) == expect_ok(b, n, kind));
	if (rc == 0) {
		CHECK(payload == b + PARLEY_SVC_HDR);
		CHECK(h.len == n - PARLEY_SVC_HDR);
		CHECK(h.len <= PARLEY_SVC_PAYLOAD_MAX);
		volatile uint8_t sum = 0;
		for (uint32_t i = 0; i < h.len; i++)
			sum ^= payload[i]; /* ASan: inside the block */
		(void)sum;
		if (kind == PARLEY_SVC_RESPONSE) {
			uint32_t before = ids->n;
			int was = 0;
			for (uint32_t i = 0; i < ids->n; i++)
				was |= ids->id[i] == h.id;
			CHECK(parley_svc_ids_take(ids, h.id) == was);
			CHECK(ids->n == before - (uint32_t)was);
			CHECK(!parley_svc_ids_take(ids, h.id)); /* only once */
		}
	}
	free(b);
}

static void build(struct in *in, struct parley_svc_ids *ids)
{
	static uint8_t out[PARLEY_SVC_FRAME_MAX];
	uint32_t id = take(in, 4), len = take(in, 2) % (PARLEY_SVC_PAYLOAD_MAX + 8);
	int32_t status = (int32_t)take(in, 4);
	uint8_t *payload = malloc(len ? len : 1);
	CHECK(payload);
	for (uint32_t i = 0; i < len; i++)
		payload[i] = (uint8_t)(i * 31 + id);
	uint32_t n = parley_svc_build(out, id, status, payload, len);
	if (len > PARLEY_SVC_PAYLOAD_MAX) {
		CHECK(n == 0);
	} else {
		CHECK(n == PARLEY_SVC_HDR + len);
		struct parley_svc_frame h;
		const uint8_t *p;
		CHECK(parley_svc_parse(out, n, PARLEY_SVC_RESPONSE, &h, &p) == 0);
		CHECK(h.id == id && h.status == status && h.len == len);
		CHECK(memcmp(p, payload, len) == 0);
		uint32_t before = ids->n;
		int rc = parley_svc_ids_add(ids, id);
		CHECK(ids->n <= PARLEY_SVC_INFLIGHT);
		CHECK(rc == 0 ? ids->n == before + 1 : ids->n == before);
	}
	free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct parley_svc_ids ids = { 0 };
	for (unsigned ops = 0; in.n && ops < 4096; ops++) {
		uint32_t op = take(&in, 1);
		switch (op % 5) {
		case 0:
			build(&in, &ids);
			break;
		case 1:
		case 2:
			read_frame(&in, &ids, PARLEY_SVC_RESPONSE, op % 5 == 2);
			break;
		default:
			read_frame(&in, &ids, PARLEY_SVC_REQUEST, op % 5 == 4);
			break;
		}
		CHECK(ids.n <= PARLEY_SVC_INFLIGHT);
	}
	return 0;
}
