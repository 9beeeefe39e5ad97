/*
 * Framing of the agent link (DESIGN.md section 7): a frame is a u32
 * big-endian length and that many bytes of a serialized
 * parley.v1.Envelope. The length is checked against a cap as soon as its
 * four bytes are there, before any allocation and before waiting for the
 * body, so a peer cannot make the other side buffer or allocate more than
 * the cap. Every decoded envelope has passed wire_check (common/wire.h):
 * callers handle only bodies of a known shape.
 *
 * Memory: protobuf-c's unpacker allocates per submessage, so decoding a
 * frame of n bytes may transiently allocate a few tens of times n (empty
 * submessages cost two bytes on the wire); the cap bounds that too.
 */
#ifndef PARLEY_COMMON_FRAME_H
#define PARLEY_COMMON_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "parley.pb-c.h"
#include "common/err.h"

struct evbuffer;

/* Bytes of the length prefix. */
#define FRAME_HDR 4
/* Default and largest cap on a frame's envelope (the length prefix not
 * counted): a PolicyBody of 4096 grants and 1024 baselines with all their
 * files fits with room to spare. */
#define FRAME_MAX (1u << 20)

/*
 * Serialize `e` as one frame into a new buffer: *buf (free() it) holds
 * *len bytes. The envelope is not checked (wire_check it first when its
 * content came from outside this process). Returns 0, -EPROTO (no body),
 * -EMSGSIZE (more than FRAME_MAX), or -ENOMEM; *buf is NULL on error.
 */
int frame_encode(const Parley__V1__Envelope *e, uint8_t **buf, size_t *len);

/* The same frame appended to `out`. Returns 0 or frame_encode's codes;
 * nothing is appended on error. */
int frame_push(struct evbuffer *out, const Parley__V1__Envelope *e);

/*
 * Decode the frame at the start of buf[0..len). `cap` bounds the envelope
 * (0 or more than FRAME_MAX: FRAME_MAX). Returns
 *   1   *out holds a checked envelope (free with
 *       parley__v1__envelope__free_unpacked(*out, NULL)) and *consumed the
 *       bytes of the frame (header included);
 *   0   the frame is not complete yet: call again with more bytes;
 *   <0  the peer is broken or hostile, close the link: -EMSGSIZE (length
 *       over the cap, known from the header alone), -EPROTO (length 0, or
 *       no body), -EBADMSG (not an Envelope), or wire_check's code.
 * *out is NULL and *consumed 0 unless 1 is returned; *err is set on <0.
 */
int frame_decode(const uint8_t *buf, size_t len, size_t cap, size_t *consumed,
		 Parley__V1__Envelope **out, struct parley_err *err);

/*
 * frame_decode over an evbuffer: on 1, exactly the frame is drained from
 * `in`; on 0 or <0 nothing is drained (after <0 the link is to be closed).
 * Only the header is copied out before the length is checked; the body is
 * made contiguous only once it has fully arrived.
 */
int frame_pull(struct evbuffer *in, size_t cap, Parley__V1__Envelope **out,
	       struct parley_err *err);

#endif
