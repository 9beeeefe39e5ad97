#include "common/frame.h"
#include "common/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

static size_t cap_of(size_t cap)
{
	return cap && cap < FRAME_MAX ? cap : FRAME_MAX;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* The envelope's packed size, or a negative errno when it cannot go out. */
static int64_t packed_size(const Parley__V1__Envelope *e)
{
	if (e->body_case == PARLEY__V1__ENVELOPE__BODY__NOT_SET)
		return -EPROTO;
	size_t n = parley__v1__envelope__get_packed_size(e);
	if (n > FRAME_MAX)
		return -EMSGSIZE;
	return (int64_t)n;
}

/* Header, then envelope, into dst of FRAME_HDR + n bytes. */
static void pack_frame(const Parley__V1__Envelope *e, uint8_t *dst, size_t n)
{
	put_be32(dst, (uint32_t)n);
	size_t done = parley__v1__envelope__pack(e, dst + FRAME_HDR);
	PARLEY_ASSERT(done == n);
}

int frame_encode(const Parley__V1__Envelope *e, uint8_t **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	int64_t n = packed_size(e);
	if (n < 0)
		return (int)n;
	uint8_t *p = malloc(FRAME_HDR + (size_t)n);
	if (!p)
		return -ENOMEM;
	pack_frame(e, p, (size_t)n);
	*buf = p;
	*len = FRAME_HDR + (size_t)n;
	return 0;
}

int frame_push(struct evbuffer *out, const Parley__V1__Envelope *e)
{
	int64_t n = packed_size(e);
	if (n < 0)
		return (int)n;
	struct evbuffer_iovec vec;
	size_t total = FRAME_HDR + (size_t)n;
	/* One extent of at least `total` contiguous bytes. */
	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &vec, 1) != 1 ||
	    vec.iov_len < total)
		return -ENOMEM;
	pack_frame(e, vec.iov_base, (size_t)n);
	vec.iov_len = total;
	if (evbuffer_commit_space(out, &vec, 1) < 0)
		return -ENOMEM;
	return 0;
}

/* The header's verdict: 1 go on with *n body bytes, <0 refuse. */
static int check_len(uint32_t n, size_t cap, struct parley_err *err)
{
	if (n > cap_of(cap))
		return perr(err, -EMSGSIZE, "frame: %u bytes, at most %zu", n,
			    cap_of(cap));
	if (!n)
		return perr(err, -EPROTO, "frame: empty (length 0)");
	return 1;
}

/* Unpack and check a complete body of n bytes. */
static int decode_body(const uint8_t *p, size_t n, Parley__V1__Envelope **out,
		       struct parley_err *err)
{
	Parley__V1__Envelope *e = parley__v1__envelope__unpack(NULL, n, p);
	if (!e)
		return perr(err, -EBADMSG, "frame: %zu bytes that are not an "
			    "Envelope", n);
	int rc = wire_check(e, err);
	if (rc < 0) {
		parley__v1__envelope__free_unpacked(e, NULL);
		return rc;
	}
	*out = e;
	return 1;
}

int frame_decode(const uint8_t *buf, size_t len, size_t cap, size_t *consumed,
		 Parley__V1__Envelope **out, struct parley_err *err)
{
	*out = NULL;
	*consumed = 0;
	if (len < FRAME_HDR)
		return 0;
	uint32_t n = get_be32(buf);
	int rc = check_len(n, cap, err);
	if (rc < 0)
		return rc;
	if (len - FRAME_HDR < n)
		return 0;
	rc = decode_body(buf + FRAME_HDR, n, out, err);
	if (rc == 1)
		*consumed = FRAME_HDR + (size_t)n;
	return rc;
}

int frame_pull(struct evbuffer *in, size_t cap, Parley__V1__Envelope **out,
	       struct parley_err *err)
{
	*out = NULL;
	uint8_t hdr[FRAME_HDR];
	if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
		return 0;
	uint32_t n = get_be32(hdr);
	int rc = check_len(n, cap, err);
	if (rc < 0)
		return rc;
	size_t total = FRAME_HDR + (size_t)n;
	if (evbuffer_get_length(in) < total)
		return 0;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
	if (!p)
		return perr(err, -ENOMEM, "frame: out of memory");
	rc = decode_body(p + FRAME_HDR, n, out, err);
	if (rc == 1)
		evbuffer_drain(in, total);
	return rc;
}
