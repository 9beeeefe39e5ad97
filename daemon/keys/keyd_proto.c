#include "daemon/keys/keyd_proto.h"
#include "common/jsonv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- reading: a cursor that never runs past its end ---- */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t rd_be(struct rd *r, unsigned n)
{
	uint64_t v = 0;
	if (r->bad || r->left < n) {
		r->bad = true;
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	r->left -= n;
	return v;
}

static const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

/* A u32-prefixed blob of at most cap bytes. */
static int rd_blob(struct rd *r, size_t cap, const uint8_t **p, size_t *n,
		   const char *what, struct parley_err *err)
{
	uint64_t len = rd_be(r, 4);
	if (!r->bad && len > cap)
		return perr(err, -EMSGSIZE, "keyd: %s of %llu bytes (cap %zu)",
			    what, (unsigned long long)len, cap);
	*p = rd_bytes(r, (size_t)len);
	*n = (size_t)len;
	return 0;
}

static int rd_name(struct rd *r, char *out, struct parley_err *err)
{
	uint64_t len = rd_be(r, 2);
	if (!r->bad && len >= KEYD_NAME_MAX)
		return perr(err, -EMSGSIZE, "keyd: host name of %llu bytes",
			    (unsigned long long)len);
	const uint8_t *p = rd_bytes(r, (size_t)len);
	if (r->bad)
		return 0;
	if (!jv_name_valid((const char *)p, (size_t)len, KEYD_NAME_MAX))
		return perr(err, -EBADMSG, "keyd: host name not valid");
	memcpy(out, p, (size_t)len);
	out[len] = 0;
	return 0;
}

int keyd_hdr(const uint8_t hdr[KEYD_HDR], size_t max, size_t *rest,
	     unsigned *type, struct parley_err *err)
{
	struct rd r = { hdr, KEYD_HDR, false };
	*rest = 0;
	uint64_t len = rd_be(&r, 4);
	*type = (unsigned)rd_be(&r, 2);
	if (len > max)
		return perr(err, -EMSGSIZE, "keyd: message of %llu bytes (cap "
			    "%zu)", (unsigned long long)len, max);
	*rest = (size_t)len;
	return 0;
}

/* Header checks common to both sides: whole, exact length, the type. */
static int open_msg(const uint8_t *msg, size_t len, struct rd *r,
		    unsigned *type, struct parley_err *err)
{
	size_t rest = 0;
	*type = 0;
	if (len < KEYD_HDR)
		return perr(err, -EBADMSG, "keyd: message shorter than its "
			    "header");
	int rc = keyd_hdr(msg, KEYD_MSG_MAX, &rest, type, err);
	if (rc < 0)
		return rc;
	if (msg[6] || msg[7])
		return perr(err, -EBADMSG, "keyd: reserved header field set");
	if (rest != len - KEYD_HDR)
		return perr(err, -EBADMSG, "keyd: header says %zu bytes, %zu "
			    "came", rest, len - KEYD_HDR);
	*r = (struct rd){ msg + KEYD_HDR, rest, false };
	return 0;
}

static int close_msg(struct rd *r, int rc, struct parley_err *err)
{
	if (rc < 0)
		return rc;
	if (r->bad)
		return perr(err, -EBADMSG, "keyd: message truncated");
	if (r->left)
		return perr(err, -EBADMSG, "keyd: %zu bytes after the message",
			    r->left);
	return 0;
}

int keyd_req_parse(const uint8_t *msg, size_t len, struct keyd_req *q,
		   struct parley_err *err)
{
	struct rd r = { 0 };
	unsigned type = 0;
	memset(q, 0, sizeof(*q));
	int rc = open_msg(msg, len, &r, &type, err);
	if (rc < 0)
		return rc;
	q->type = (enum keyd_type)type;
	switch (type) {
	case KEYD_INFO:
		break;
	case KEYD_SIGN_BUNDLE:
		q->version = rd_be(&r, 8);
		rc = rd_name(&r, q->host, err);
		if (rc == 0)
			rc = rd_blob(&r, KEYD_BODY_MAX, &q->data, &q->len,
				     "bundle body", err);
		if (rc == 0 && !r.bad && q->version == 0)
			rc = perr(err, -EBADMSG, "keyd: bundle version 0");
		break;
	case KEYD_ISSUE_CERT:
		q->days = (uint32_t)rd_be(&r, 4);
		rc = rd_name(&r, q->host, err);
		if (rc == 0)
			rc = rd_blob(&r, KEYD_CSR_MAX, &q->data, &q->len,
				     "CSR", err);
		if (rc == 0 && !r.bad && (q->days == 0 ||
					  q->days > KEYD_DAYS_MAX))
			rc = perr(err, -EBADMSG, "keyd: %u days out of range",
				  q->days);
		break;
	case KEYD_SIGN_CHECKPOINT: {
		q->seq = rd_be(&r, 8);
		const uint8_t *h = rd_bytes(&r, 32);
		if (h)
			memcpy(q->hash, h, 32);
		q->time_ms = (int64_t)rd_be(&r, 8);
		if (!r.bad && (q->seq == 0 || q->seq > INT64_MAX ||
			       q->time_ms < 0))
			rc = perr(err, -EBADMSG, "keyd: checkpoint seq or time "
				  "out of range");
		break;
	}
	case KEYD_DISK_KEY_NEW:
	case KEYD_DISK_KEY_SEAL:
		q->version = rd_be(&r, 8);
		if (type == KEYD_DISK_KEY_SEAL)
			rc = rd_name(&r, q->host, err);
		if (rc == 0)
			rc = rd_name(&r, q->part, err);
		if (rc == 0)
			rc = rd_name(&r, q->disk, err);
		if (rc == 0 && type == KEYD_DISK_KEY_SEAL)
			rc = rd_blob(&r, KEYD_WRAPPED_LEN, &q->data, &q->len,
				     "wrapped key", err);
		if (rc == 0 && type == KEYD_DISK_KEY_SEAL)
			rc = rd_blob(&r, KEYD_CERT_MAX, &q->data2, &q->len2,
				     "host certificate", err);
		if (rc == 0 && !r.bad && q->version == 0)
			rc = perr(err, -EBADMSG, "keyd: key version 0");
		break;
	default:
		return perr(err, -EBADMSG, "keyd: request type %u unknown",
			    type);
	}
	return close_msg(&r, rc, err);
}

int keyd_rep_parse(const uint8_t *msg, size_t len, struct keyd_rep *p,
		   struct parley_err *err)
{
	struct rd r = { 0 };
	unsigned type = 0;
	memset(p, 0, sizeof(*p));
	int rc = open_msg(msg, len, &r, &type, err);
	if (rc < 0)
		return rc;
	if (type != KEYD_REPLY)
		return perr(err, -EBADMSG, "keyd: a reply of type %u", type);
	p->status = (int32_t)(uint32_t)rd_be(&r, 4);
	uint64_t ml = rd_be(&r, 2);
	if (!r.bad && ml >= sizeof(p->msg))
		return perr(err, -EMSGSIZE, "keyd: reply message too long");
	const uint8_t *m = rd_bytes(&r, (size_t)ml);
	if (m && ml < sizeof(p->msg))
		memcpy(p->msg, m, (size_t)ml);
	rc = rd_blob(&r, KEYD_CSR_MAX, &p->data, &p->len, "reply data", err);
	if (rc == 0 && !r.bad && (p->status > 0 || p->status < -4095))
		rc = perr(err, -EBADMSG, "keyd: reply status %d",
			  (int)p->status);
	return close_msg(&r, rc, err);
}

int keyd_info_parse(const uint8_t *data, size_t len, struct keyd_info *i,
		    struct parley_err *err)
{
	struct rd r = { data, len, false };
	memset(i, 0, sizeof(*i));
	i->has_ca = (uint8_t)rd_be(&r, 1);
	int rc = rd_blob(&r, 1024, &i->policy_pub, &i->policy_pub_len,
			 "policy public key", err);
	if (rc == 0)
		rc = rd_blob(&r, 1024, &i->ckpt_pub, &i->ckpt_pub_len,
			     "checkpoint public key", err);
	if (rc == 0 && !r.bad && i->has_ca > 1)
		rc = perr(err, -EBADMSG, "keyd: has_ca %u", i->has_ca);
	return close_msg(&r, rc, err);
}

/* ---- writing ---- */

struct wr {
	uint8_t *p;
	size_t n, cap;
};

static void wr_be(struct wr *w, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n && w->n < w->cap; i++)
		w->p[w->n++] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void wr_bytes(struct wr *w, const void *p, size_t n)
{
	if (n == 0 || w->n > w->cap || n > w->cap - w->n ||
	    n > KEYD_MSG_MAX)
		return;
	memcpy(w->p + w->n, p, n);
	w->n += n;
}

static int wr_open(struct wr *w, size_t payload, unsigned type)
{
	w->cap = KEYD_HDR + payload;
	w->n = 0;
	if (!(w->p = malloc(w->cap)))
		return -ENOMEM;
	wr_be(w, payload, 4);
	wr_be(w, type, 2);
	wr_be(w, 0, 2);
	return 0;
}

static int wr_close(struct wr *w, uint8_t **out, size_t *len)
{
	if (w->n != w->cap) {     /* a size computed wrong: a bug here */
		free(w->p);
		return -EINVAL;
	}
	*out = w->p;
	*len = w->n;
	return 0;
}

int keyd_req_encode(const struct keyd_req *q, uint8_t **out, size_t *len)
{
	struct wr w;
	size_t hl = strnlen(q->host, KEYD_NAME_MAX);
	size_t pl = strnlen(q->part, KEYD_NAME_MAX);
	size_t dl = strnlen(q->disk, KEYD_NAME_MAX);
	size_t pay;
	switch (q->type) {
	case KEYD_INFO: pay = 0; break;
	case KEYD_SIGN_BUNDLE:
	case KEYD_ISSUE_CERT: pay = (q->type == KEYD_SIGN_BUNDLE ? 8 : 4) +
				    2 + hl + 4 + q->len; break;
	case KEYD_SIGN_CHECKPOINT: pay = 8 + 32 + 8; break;
	case KEYD_DISK_KEY_NEW: pay = 8 + 2 + pl + 2 + dl; break;
	case KEYD_DISK_KEY_SEAL: pay = 8 + 2 + hl + 2 + pl + 2 + dl + 4 +
				       q->len + 4 + q->len2; break;
	default: return -EINVAL;
	}
	if (pay > KEYD_MSG_MAX || hl >= KEYD_NAME_MAX ||
	    pl >= KEYD_NAME_MAX || dl >= KEYD_NAME_MAX)
		return -EMSGSIZE;
	if (wr_open(&w, pay, q->type) < 0)
		return -ENOMEM;
	if (q->type == KEYD_SIGN_BUNDLE || q->type == KEYD_ISSUE_CERT) {
		if (q->type == KEYD_SIGN_BUNDLE)
			wr_be(&w, q->version, 8);
		else
			wr_be(&w, q->days, 4);
		wr_be(&w, hl, 2);
		wr_bytes(&w, q->host, hl);
		wr_be(&w, q->len, 4);
		wr_bytes(&w, q->data, q->len);
	} else if (q->type == KEYD_SIGN_CHECKPOINT) {
		wr_be(&w, q->seq, 8);
		wr_bytes(&w, q->hash, 32);
		wr_be(&w, (uint64_t)q->time_ms, 8);
	} else if (q->type == KEYD_DISK_KEY_NEW ||
		   q->type == KEYD_DISK_KEY_SEAL) {
		wr_be(&w, q->version, 8);
		if (q->type == KEYD_DISK_KEY_SEAL) {
			wr_be(&w, hl, 2);
			wr_bytes(&w, q->host, hl);
		}
		wr_be(&w, pl, 2);
		wr_bytes(&w, q->part, pl);
		wr_be(&w, dl, 2);
		wr_bytes(&w, q->disk, dl);
		if (q->type == KEYD_DISK_KEY_SEAL) {
			wr_be(&w, q->len, 4);
			wr_bytes(&w, q->data, q->len);
			wr_be(&w, q->len2, 4);
			wr_bytes(&w, q->data2, q->len2);
		}
	}
	return wr_close(&w, out, len);
}

int keyd_rep_encode(const struct keyd_rep *p, uint8_t **out, size_t *len)
{
	struct wr w;
	size_t ml = strnlen(p->msg, sizeof(p->msg) - 1);
	if (p->len > KEYD_CSR_MAX)
		return -EMSGSIZE;
	if (wr_open(&w, 4 + 2 + ml + 4 + p->len, KEYD_REPLY) < 0)
		return -ENOMEM;
	wr_be(&w, (uint32_t)p->status, 4);
	wr_be(&w, ml, 2);
	wr_bytes(&w, p->msg, ml);
	wr_be(&w, p->len, 4);
	wr_bytes(&w, p->data, p->len);
	return wr_close(&w, out, len);
}

int keyd_info_encode(const struct keyd_info *i, uint8_t **out, size_t *len)
{
	struct wr w = { .cap = 1 + 4 + i->policy_pub_len + 4 +
			       i->ckpt_pub_len };
	if (!(w.p = malloc(w.cap)))
		return -ENOMEM;
	wr_be(&w, i->has_ca, 1);
	wr_be(&w, i->policy_pub_len, 4);
	wr_bytes(&w, i->policy_pub, i->policy_pub_len);
	wr_be(&w, i->ckpt_pub_len, 4);
	wr_bytes(&w, i->ckpt_pub, i->ckpt_pub_len);
	return wr_close(&w, out, len);
}

/* ---- I/O ---- */

int keyd_send(int fd, const uint8_t *msg, size_t len)
{
	while (len) {
		ssize_t n = send(fd, msg, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		msg += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, uint8_t *p, size_t len, bool *eof_at_start)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			if (eof_at_start)
				*eof_at_start = got == 0;
			return -EPIPE;
		}
		got += (size_t)n;
	}
	return 0;
}

int keyd_recv(int fd, size_t max, uint8_t **msg, size_t *len,
	      struct parley_err *err)
{
	uint8_t hdr[KEYD_HDR];
	bool eof = false;
	size_t rest = 0;
	unsigned type = 0;
	*msg = NULL;
	int rc = read_full(fd, hdr, sizeof(hdr), &eof);
	if (rc < 0)
		return perr(err, rc, eof ? "keyd: end of file" :
			    "keyd: reading a header: %s", strerror(-rc));
	rc = keyd_hdr(hdr, max, &rest, &type, err);
	if (rc < 0)
		return rc;
	uint8_t *m = malloc(KEYD_HDR + rest);
	if (!m)
		return perr(err, -ENOMEM, "keyd: out of memory");
	memcpy(m, hdr, KEYD_HDR);
	rc = read_full(fd, m + KEYD_HDR, rest, NULL);
	if (rc < 0) {
		free(m);
		return perr(err, rc, "keyd: reading a message: %s",
			    strerror(-rc));
	}
	*msg = m;
	*len = KEYD_HDR + rest;
	return 0;
}
