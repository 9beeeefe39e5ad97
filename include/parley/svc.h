/*
 * Service call framing on a service call's channel (see hypercall.h,
 * SVC_CALL): each ring record is one frame, a 16-byte header then the
 * payload. Requests go caller -> provider with status 0; responses go
 * back with the request's id and the provider's status. Ids are the
 * caller's: several calls may be in flight, answered in any order.
 *
 * Frames come from the other partition: parley_svc_parse checks every
 * field before the payload is looked at. Self-contained (stdint only), so
 * the host's fuzz target reads frames with the same code as the SDK.
 */
#ifndef PARLEY_SVC_H
#define PARLEY_SVC_H

#include <stdint.h>

#define PARLEY_SVC_MAGIC 0x31637673u    /* "svc1" */
#define PARLEY_SVC_HDR 16u
/* Largest frame: fits the 64 KiB ring of a call's channel with room for
 * the ring's record header. */
#define PARLEY_SVC_FRAME_MAX 0x8000u
#define PARLEY_SVC_PAYLOAD_MAX (PARLEY_SVC_FRAME_MAX - PARLEY_SVC_HDR)
/* Calls one connection keeps in flight at once. */
#define PARLEY_SVC_INFLIGHT 32

struct parley_svc_frame {
	uint32_t magic;
	uint32_t id;       /* the caller's call id */
	int32_t status;    /* request: 0; response: the provider's answer */
	uint32_t len;      /* payload bytes that follow */
};

enum parley_svc_kind { PARLEY_SVC_REQUEST = 0, PARLEY_SVC_RESPONSE = 1 };

/* Check a received frame of n bytes. 0 with *h filled and *payload
 * pointing into buf, or -1: too short or long, wrong magic, a length that
 * is not the rest of the record, a request with a status. */
static inline int parley_svc_parse(const void *buf, uint32_t n,
				   enum parley_svc_kind kind,
				   struct parley_svc_frame *h,
				   const uint8_t **payload)
{
	const uint8_t *b = (const uint8_t *)buf;
	if (n < PARLEY_SVC_HDR || n > PARLEY_SVC_FRAME_MAX)
		return -1;
	__builtin_memcpy(h, b, PARLEY_SVC_HDR);
	if (h->magic != PARLEY_SVC_MAGIC || h->len != n - PARLEY_SVC_HDR)
		return -1;
	if (kind == PARLEY_SVC_REQUEST && h->status != 0)
		return -1;
	*payload = b + PARLEY_SVC_HDR;
	return 0;
}

/* Write a frame into out (PARLEY_SVC_HDR + len bytes); its size, or 0 if
 * the payload is too long. */
static inline uint32_t parley_svc_build(void *out, uint32_t id,
					int32_t status, const void *payload,
					uint32_t len)
{
	if (len > PARLEY_SVC_PAYLOAD_MAX)
		return 0;
	struct parley_svc_frame h = { PARLEY_SVC_MAGIC, id, status, len };
	__builtin_memcpy(out, &h, PARLEY_SVC_HDR);
	if (len)
		__builtin_memcpy((uint8_t *)out + PARLEY_SVC_HDR, payload, len);
	return PARLEY_SVC_HDR + len;
}

/* The calls a connection has in flight: an answer is taken only for one
 * of them, and only once. */
struct parley_svc_ids {
	uint32_t n;
	uint32_t id[PARLEY_SVC_INFLIGHT];
};

/* 0, or -1 if full or already in flight. */
static inline int parley_svc_ids_add(struct parley_svc_ids *s, uint32_t id)
{
	if (s->n >= PARLEY_SVC_INFLIGHT)
		return -1;
	for (uint32_t i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return -1;
	s->id[s->n++] = id;
	return 0;
}

/* 1 if id was in flight (and is no longer), else 0. */
static inline int parley_svc_ids_take(struct parley_svc_ids *s, uint32_t id)
{
	for (uint32_t i = 0; i < s->n && i < PARLEY_SVC_INFLIGHT; i++)
		if (s->id[i] == id) {
			s->id[i] = s->id[--s->n];
			return 1;
		}
	return 0;
}

#endif
