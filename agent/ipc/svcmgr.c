/* Services through the agent as proxy: offers, the call decision (service
 * policy, then both ends re-measured, then an ephemeral channel mapped into
 * both), and the provider's accept. Every offer and every call, allowed or
 * denied, is audited with its reason (svc_offer, svc_call_allowed,
 * svc_call_denied, svc_accept). Names were checked by ctl_read (terminated,
 * non-empty) and are checked here against the name alphabet. */
#include "agent/ipc/chanmgr_int.h"
#include "agent/ipc/chanmem.h"
#include "common/jsonv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Ring of a service call's channel: each way one 64 KiB ring. */
#define SVC_RING_BYTES 0x10000ull
/* Each call maps a window into the provider (32 slots): one caller may
 * hold only a few at once, so it cannot fill the provider's slots and
 * shut its other callers out. */
#define SVC_CALLS_PER_PAIR 4
/* Offers one partition may make (the table is shared by all). */
#define SVC_OFFERS_PER_PART 16

static bool name_ok(const char *s)
{
	return jv_name_valid(s, strnlen(s, PARLEY_SVC_NAME_MAX),
			     PARLEY_SVC_NAME_MAX);
}

static struct cm_offer *offer_find(struct chanmgr *cm, const struct cm_part *cp,
				   const char *name)
{
	for (unsigned i = 0; i < cm->noffers; i++)
		if (cm->offers[i].cp == cp && !strcmp(cm->offers[i].name, name))
			return &cm->offers[i];
	return NULL;
}

static int offer(struct chanmgr *cm, struct cm_part *cp, const char *name)
{
	const char *who = cp->p->name;
	if (cp->quarantined) {
		cm_emit(cm, "svc_offer_denied", who, name, "QUARANTINED", NULL,
			NULL);
		return PARLEY_E_QUARANTINED;
	}
	if (offer_find(cm, cp, name))
		return PARLEY_OK; /* said again: nothing changes */
	unsigned mine = 0;
	for (unsigned i = 0; i < cm->noffers; i++)
		mine += cm->offers[i].cp == cp;
	if (cm->noffers == CM_OFFERS_MAX || mine >= SVC_OFFERS_PER_PART) {
		cm_emit(cm, "svc_offer_denied", who, name, "LIMIT", NULL, NULL);
		return PARLEY_E_LIMIT;
	}
	struct cm_offer *o = &cm->offers[cm->noffers++];
	o->cp = cp;
	snprintf(o->name, sizeof(o->name), "%s", name);
	cm_emit(cm, "svc_offer", who, name, NULL, NULL, NULL);
	return PARLEY_OK;
}

struct call_ctx {
	struct chanmgr *cm;
	struct cm_part *caller;
	const struct ctl_open_req *req;
	struct ctl_open_reply *r;
};

static int deny(struct call_ctx *c, int status, const char *reason,
		const char *file, const char *detail)
{
	char d[200];
	snprintf(d, sizeof(d), "target %s%s%s", c->req->target,
		 detail ? ": " : "", detail ? detail : "");
	c->r->status = status;
	if (detail && status == PARLEY_E_INTEGRITY)
		snprintf(c->r->detail, sizeof(c->r->detail), "%s", detail);
	cm_emit(c->cm, "svc_call_denied", c->caller->p->name, c->req->name,
		reason, file, d);
	return status;
}

/* Both ends must match their baselines, as for a channel open; a mismatch
 * quarantines the partition it was found in. */
static int integrity(struct call_ctx *c, struct cm_part *who)
{
	struct cm_verdict v;
	int st = cm_integrity(c->cm, who, &v);
	if (st == PARLEY_E_INTEGRITY)
		return deny(c, st, "INTEGRITY", v.file, v.detail);
	return st ? deny(c, st, "PEER_DOWN", NULL, v.detail) : 0;
}

static void reply_end(struct cm_chan *ch, int side, struct ctl_open_reply *r)
{
	struct ctl_map m;
	chanmem_segments(ch, side, &m);
	r->status = PARLEY_OK;
	r->handle = ch->end[side].handle;
	r->gpa = ch->end[side].gpa;
	r->size = ch->size;
	r->tx = m.tx;
	r->rx = m.rx;
}

/* Calls from `src` to `dst` that still hold a channel. */
static unsigned calls_between(const struct chanmgr *cm, const char *src,
			      const char *dst)
{
	unsigned n = 0;
	for (unsigned i = 0; i < cm->nchans; i++) {
		const struct cm_chan *ch = cm->chans[i];
		n += ch->svc && !ch->revoking && !ch->peer_gone &&
		     ch->end[0].mapped && !strcmp(ch->g.a, src) &&
		     !strcmp(ch->g.b, dst);
	}
	return n;
}

static int call(struct call_ctx *c)
{
	struct chanmgr *cm = c->cm;
	const char *src = c->caller->p->name, *dst = c->req->target;
	const char *svc = c->req->name;
	if (!name_ok(svc) || !name_ok(dst))
		return deny(c, PARLEY_E_INVAL, "INVAL", NULL, "bad name");
	if (c->caller->quarantined)
		return deny(c, PARLEY_E_QUARANTINED, "QUARANTINED", NULL, NULL);
	const struct svc_rule *rule = svc_rule_find(&cm->grants, src, dst, svc);
	if (!rule)
		return deny(c, PARLEY_E_NO_GRANT, "NO_POLICY", NULL, NULL);
	if (!rule->allow)
		return deny(c, PARLEY_E_NO_GRANT, "DENIED", NULL,
			    "a deny rule");
	/* A call is a channel: at most as many as opens, re-measured. */
	if (!cm_open_take(c->caller))
		return deny(c, PARLEY_E_LIMIT, "LIMIT", NULL,
			    "calls: " CM_OPEN_LIMIT_DETAIL);
	/* The asker first, as for channels: caught whether or not the
	 * provider is up. */
	if (integrity(c, c->caller) < 0)
		return c->r->status;
	struct cm_part *prov = cm_part_named(cm, dst);
	if (!cm_peer_up(prov))
		return deny(c, PARLEY_E_PEER_DOWN, "PEER_DOWN", NULL, NULL);
	if (prov->quarantined)
		return deny(c, PARLEY_E_QUARANTINED, "QUARANTINED", NULL, dst);
	if (!offer_find(cm, prov, svc))
		return deny(c, PARLEY_E_PEER_DOWN, "NOT_OFFERED", NULL, NULL);
	if (integrity(c, prov) < 0)
		return c->r->status;
	if (cm->npending == CM_CHANS_MAX ||
	    calls_between(cm, src, dst) >= SVC_CALLS_PER_PAIR)
		return deny(c, PARLEY_E_LIMIT, "LIMIT", NULL, "calls open");
	struct grant g = { .dir = GRANT_BOTH, .ring_bytes = SVC_RING_BYTES,
			   .require_integrity = true };
	snprintf(g.channel, sizeof(g.channel), "%s", svc);
	snprintf(g.a, sizeof(g.a), "%s", src);
	snprintf(g.b, sizeof(g.b), "%s", dst);
	struct cm_chan *ch;
	if (cm_chan_create(cm, &g, &ch) < 0)
		return deny(c, PARLEY_E_LIMIT, "LIMIT", NULL, "channels");
	ch->svc = true;
	ch->end[0].ep = c->caller;
	ch->end[1].ep = prov;
	if (cm_map_end(ch, 0) < 0 || cm_map_end(ch, 1) < 0) {
		cm_chan_revoke(cm, ch, "LIMIT");
		return deny(c, PARLEY_E_LIMIT, "LIMIT", NULL, "windows");
	}
	cm->pending[cm->npending++] = (struct cm_pending){ ch };
	reply_end(ch, 0, c->r);
	char d[100];
	snprintf(d, sizeof(d), "target %s", dst);
	cm_emit(cm, "svc_call_allowed", src, svc, NULL, NULL, d);
	return 0;
}

/* The oldest call to `name` this provider has not accepted yet. */
static int accept_call(struct chanmgr *cm, struct cm_part *cp,
		       const char *name, struct ctl_open_reply *r)
{
	if (!offer_find(cm, cp, name))
		return PARLEY_E_INVAL;
	for (unsigned i = 0; i < cm->npending; i++) {
		struct cm_chan *ch = cm->pending[i].ch;
		if (ch->end[1].ep != cp || strcmp(ch->g.channel, name))
			continue;
		memmove(&cm->pending[i], &cm->pending[i + 1],
			(cm->npending - i - 1) * sizeof(cm->pending[0]));
		cm->npending--;
		if (ch->revoking || !ch->end[1].mapped) {
			i--; /* gone meanwhile: look further */
			continue;
		}
		reply_end(ch, 1, r);
		snprintf(r->detail, sizeof(r->detail), "%s", ch->g.a);
		cm_emit(cm, "svc_accept", cp->p->name, name, NULL, NULL,
			ch->g.a);
		return PARLEY_OK;
	}
	return PARLEY_E_TIMEOUT;
}

void svcmgr_on_req(struct chanmgr *cm, struct cm_part *cp,
		   const struct ctl_open_req *req, struct ctl_open_reply *r)
{
	struct call_ctx c = { cm, cp, req, r };
	switch (req->op) {
	case CTL_OP_SVC_OFFER:
		r->status = name_ok(req->name) ? offer(cm, cp, req->name)
					       : PARLEY_E_INVAL;
		break;
	case CTL_OP_SVC_CALL:
		call(&c);
		break;
	case CTL_OP_SVC_ACCEPT:
		r->status = accept_call(cm, cp, req->name, r);
		break;
	default: /* ctl_read admits no other op */
		r->status = PARLEY_E_INVAL;
		break;
	}
}

void svcmgr_gone(struct chanmgr *cm, struct cm_part *cp)
{
	for (unsigned i = cm->noffers; i-- > 0;)
		if (cm->offers[i].cp == cp)
			cm->offers[i] = cm->offers[--cm->noffers];
	/* A call its provider never accepted: nobody holds the provider's
	 * handle, so nobody would close it; the channel goes now. */
	for (unsigned i = cm->npending; i-- > 0;) {
		struct cm_chan *ch = cm->pending[i].ch;
		if (ch->end[1].ep != cp && ch->end[0].ep != cp)
			continue;
		memmove(&cm->pending[i], &cm->pending[i + 1],
			(cm->npending - i - 1) * sizeof(cm->pending[0]));
		cm->npending--;
		if (ch->end[0].ep == cp)
			cm_chan_revoke(cm, ch, "CALLER_GONE");
	}
}

void svcmgr_forget_chan(struct chanmgr *cm, struct cm_chan *ch)
{
	for (unsigned i = cm->npending; i-- > 0;)
		if (cm->pending[i].ch == ch) {
			memmove(&cm->pending[i], &cm->pending[i + 1],
				(cm->npending - i - 1) *
					sizeof(cm->pending[0]));
			cm->npending--;
		}
}
