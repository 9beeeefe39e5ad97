/* The partition side of services: offer, accept, connect, and the call
 * framing of parley/svc.h on the call's channel. Everything the peer
 * writes (frames, ids) is checked before it is used. */
#include <parley/guest.h>

/* One frame in transit; the SDK is used from one vCPU at a time. */
static uint8_t frame[PARLEY_SVC_FRAME_MAX];

static int64_t put_name(char *dst, const char *src)
{
	size_t n = strlen(src);
	if (n == 0 || n >= PARLEY_SVC_NAME_MAX)
		return PARLEY_E_INVAL;
	memcpy(dst, src, n + 1);
	return PARLEY_OK;
}

int64_t parley_svc_offer(const char *name)
{
	struct parley_hc_svc_offer a;
	memset(&a, 0, sizeof(a));
	if (put_name(a.name, name) != PARLEY_OK)
		return PARLEY_E_INVAL;
	parley_hypercall(PARLEY_HC_SVC_OFFER, &a);
	return a.ret;
}

int64_t parley_svc_accept(const char *name, struct parley_chan *c,
			  char *caller)
{
	struct parley_hc_svc_accept a;
	memset(&a, 0, sizeof(a));
	if (put_name(a.name, name) != PARLEY_OK)
		return PARLEY_E_INVAL;
	parley_hypercall(PARLEY_HC_SVC_ACCEPT, &a);
	if (a.ret != PARLEY_OK)
		return a.ret;
	if (caller) {
		memcpy(caller, a.caller, sizeof(a.caller));
		caller[sizeof(a.caller) - 1] = 0;
	}
	return parley_chan_attach(c, a.handle, a.gpa, a.tx, a.rx);
}

int64_t parley_svc_connect(const char *name, const char *target,
			   struct parley_svc_conn *s, char *detail)
{
	struct parley_hc_svc_call a;
	memset(&a, 0, sizeof(a));
	if (put_name(a.name, name) != PARLEY_OK ||
	    put_name(a.target, target) != PARLEY_OK)
		return PARLEY_E_INVAL;
	parley_hypercall(PARLEY_HC_SVC_CALL, &a);
	if (detail)
		memcpy(detail, a.detail, sizeof(a.detail));
	if (a.ret != PARLEY_OK)
		return a.ret;
	memset(s, 0, sizeof(*s));
	s->next_id = 1;
	int64_t rc = parley_chan_attach(&s->chan, a.handle, a.gpa, a.tx, a.rx);
	if (rc == PARLEY_OK && (!s->chan.has_tx || !s->chan.has_rx))
		rc = PARLEY_E_INVAL;
	return rc;
}

int64_t parley_svc_send(struct parley_svc_conn *s, const void *req,
			uint32_t len, uint32_t *id)
{
	if (s->ids.n >= PARLEY_SVC_INFLIGHT)
		return PARLEY_E_LIMIT;
	uint32_t n = parley_svc_build(frame, s->next_id, 0, req, len);
	if (!n)
		return PARLEY_E_INVAL;
	int64_t rc = parley_chan_send(&s->chan, frame, n);
	if (rc != PARLEY_OK)
		return rc;
	*id = s->next_id++;
	if (s->next_id == 0)
		s->next_id = 1;
	/* Cannot fail: not full, and ids run 2^32 calls before they repeat,
	 * far more than PARLEY_SVC_INFLIGHT. */
	parley_svc_ids_add(&s->ids, *id);
	return PARLEY_OK;
}

int64_t parley_svc_recv(struct parley_svc_conn *s, uint32_t *id,
			int32_t *status, void *buf, uint32_t cap,
			uint32_t *len)
{
	uint32_t n;
	int64_t rc = parley_chan_recv(&s->chan, frame, sizeof(frame), &n);
	if (rc != PARLEY_OK)
		return rc;
	struct parley_svc_frame h;
	const uint8_t *p;
	if (parley_svc_parse(frame, n, PARLEY_SVC_RESPONSE, &h, &p) < 0 ||
	    h.len > cap || !parley_svc_ids_take(&s->ids, h.id))
		return PARLEY_E_INVAL;
	memcpy(buf, p, h.len);
	*id = h.id;
	*status = h.status;
	*len = h.len;
	return PARLEY_OK;
}

int64_t parley_svc_call(struct parley_svc_conn *s, const void *req,
			uint32_t len, int32_t *status, void *buf,
			uint32_t cap, uint32_t *out_len)
{
	uint32_t id, got;
	if (s->ids.n)
		return PARLEY_E_INVAL;
	int64_t rc = parley_svc_send(s, req, len, &id);
	if (rc == PARLEY_OK)
		rc = parley_svc_recv(s, &got, status, buf, cap, out_len);
	return rc;
}

int64_t parley_svc_try_request(struct parley_chan *c, uint32_t *id,
			       void *buf, uint32_t cap, uint32_t *len)
{
	if (!c->has_rx)
		return PARLEY_E_INVAL;
	uint32_t n;
	int rc = parley_ring_pop(&c->rx, frame, sizeof(frame), &n);
	if (rc == PARLEY_RING_EMPTY)
		return PARLEY_E_TIMEOUT;
	if (rc != PARLEY_RING_OK)
		return PARLEY_E_INVAL;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&c->rx.prod->waiting, __ATOMIC_SEQ_CST))
		parley_chan_doorbell(c);
	struct parley_svc_frame h;
	const uint8_t *p;
	if (parley_svc_parse(frame, n, PARLEY_SVC_REQUEST, &h, &p) < 0 ||
	    h.len > cap)
		return PARLEY_E_INVAL;
	memcpy(buf, p, h.len);
	*id = h.id;
	*len = h.len;
	return PARLEY_OK;
}

int64_t parley_svc_reply(struct parley_chan *c, uint32_t id, int32_t status,
			 const void *buf, uint32_t len)
{
	uint32_t n = parley_svc_build(frame, id, status, buf, len);
	return n ? parley_chan_send(c, frame, n) : PARLEY_E_INVAL;
}

int64_t parley_svc_wait(struct parley_chan *const *chans, uint32_t n,
			uint64_t timeout_ns, uint64_t *ready)
{
	uint64_t h[PARLEY_WAIT_MAX] = { 0 };
	if (n > PARLEY_WAIT_MAX)
		return PARLEY_E_INVAL;
	/* Say we wait, then look: a caller either sees the flag and rings,
	 * or wrote before we looked. */
	int any = 0;
	for (uint32_t i = 0; i < n; i++) {
		h[i] = chans[i]->handle;
		__atomic_store_n(&chans[i]->rx.cons->waiting, 1,
				 __ATOMIC_SEQ_CST);
		any |= parley_ring_readable(&chans[i]->rx);
	}
	int64_t rc = PARLEY_OK;
	*ready = 0;
	if (!any)
		rc = parley_chan_wait(h, n, timeout_ns, ready);
	for (uint32_t i = 0; i < n; i++)
		__atomic_store_n(&chans[i]->rx.cons->waiting, 0,
				 __ATOMIC_SEQ_CST);
	return rc;
}
