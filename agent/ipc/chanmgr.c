#include "agent/ipc/chanmgr.h"
#include "agent/ipc/chanmem.h"
#include "agent/ipc/chanmgr_int.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <parley/ring.h>

#define PAGE PARLEY_PAGE_SIZE

const char *cm_status_name(int st)
{
	switch (st) {
	case PARLEY_E_NO_GRANT:
		return "NO_GRANT";
	case PARLEY_E_INTEGRITY:
		return "INTEGRITY";
	case PARLEY_E_PEER_DOWN:
		return "PEER_DOWN";
	case PARLEY_E_LIMIT:
		return "LIMIT";
	case PARLEY_E_QUARANTINED:
		return "QUARANTINED";
	case PARLEY_E_INVAL:
		return "INVAL";
	default:
		return "OK";
	}
}

void chanmgr_init(struct chanmgr *cm, struct audit *audit)
{
	memset(cm, 0, sizeof(*cm));
	cm->audit = audit;
	cm->next_id = 1;
}

struct cm_part *cm_part_of(struct partition *p)
{
	return p->owner;
}

struct cm_part *cm_part_named(struct chanmgr *cm, const char *name)
{
	for (unsigned i = 0; i < cm->nparts; i++)
		if (cm->parts[i].p && strcmp(cm->parts[i].p->name, name) == 0)
			return &cm->parts[i];
	return NULL;
}

/* A record freed by chanmgr_remove (p NULL) is taken first: create and
 * destroy cycles never run out of records, only partitions there at once
 * count. Records never move, so p->owner and the channel ends' ep stay
 * valid while their partition is here. */
int chanmgr_add(struct chanmgr *cm, struct partition *p)
{
	struct cm_part *cp = NULL;
	for (unsigned i = 0; i < cm->nparts && !cp; i++)
		if (!cm->parts[i].p)
			cp = &cm->parts[i];
	if (!cp && cm->nparts == CM_PARTS_MAX)
		return -ENOSPC;
	if (!cp)
		cp = &cm->parts[cm->nparts++];
	memset(cp, 0, sizeof(*cp));
	cp->p = p;
	p->owner = cp;
	return 0;
}

int chanmgr_add_ext(struct chanmgr *cm, struct partition *shell,
		    const struct cm_ext_ops *ops, void *ctx)
{
	int rc = chanmgr_add(cm, shell);
	if (rc == 0) {
		struct cm_part *cp = cm_part_of(shell);
		cp->ext = ops;
		cp->ext_ctx = ctx;
	}
	return rc;
}

void cm_emit(struct chanmgr *cm, const char *event, const char *part,
		 const char *chan, const char *reason, const char *file,
		 const char *detail)
{
	struct audit_event e = { event, part, chan, reason, file, detail };
	audit_emit(cm->audit, &e);
}

/* ---- channel memory ---------------------------------------------------- */

static void chan_free(struct cm_chan *ch)
{
	chanmem_close(ch);
	free(ch);
}

/* A channel by name that new opens may join: not one being revoked. */
static struct cm_chan *chan_named(struct chanmgr *cm, const char *name)
{
	for (unsigned i = 0; i < cm->nchans; i++)
		if (!cm->chans[i]->revoking && !cm->chans[i]->peer_gone &&
		    !cm->chans[i]->svc &&
		    strcmp(cm->chans[i]->g.channel, name) == 0)
			return cm->chans[i];
	return NULL;
}

int cm_chan_create(struct chanmgr *cm, const struct grant *g,
		       struct cm_chan **out)
{
	if (cm->nchans == CM_CHANS_MAX)
		return -ENOSPC;
	struct cm_chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	for (unsigned i = 0; i < CM_SECTIONS_MAX; i++)
		ch->mem[i] = ch->mem_ro[i] = -1;
	ch->bell[0] = ch->bell[1] = -1;
	ch->id = cm->next_id++;
	ch->g = *g;
	chanmem_layout(ch);
	int rc = chanmem_create(ch);
	if (rc < 0) {
		chan_free(ch);
		return rc;
	}
	cm->chans[cm->nchans++] = ch;
	*out = ch;
	return 0;
}

/* The channel goes: memory truncated first (a vmm that still maps it,
 * against its word, faults), then everything closed. */
static void chan_remove(struct chanmgr *cm, struct cm_chan *ch)
{
	for (unsigned i = 0; i < cm->nchans; i++)
		if (cm->chans[i] == ch) {
			cm->chans[i] = cm->chans[--cm->nchans];
			break;
		}
	svcmgr_forget_chan(cm, ch);
	chanmem_truncate(ch);
	chan_free(ch);
}

/* ---- windows and handles in one partition ------------------------------ */

static bool window_free(const struct cm_part *cp, uint64_t gpa, uint64_t size)
{
	for (unsigned i = 0; i < CM_SEGRES_MAX; i++)
		if (cp->segres[i].size && gpa < cp->segres[i].gpa +
		    cp->segres[i].size && cp->segres[i].gpa < gpa + size)
			return false;
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++) {
		const struct cm_chan *ch = cp->slot[i];
		if (!ch)
			continue;
		for (int s = 0; s < 2; s++) {
			const struct cm_end *e = &ch->end[s];
			if (e->ep == cp && e->mapped && e->slot == i &&
			    gpa < e->gpa + ch->size && e->gpa < gpa + size)
				return false;
		}
	}
	return true;
}

/* Next-fit, so a window just taken down is not handed out again at once:
 * a stale access to it then stops the partition instead of landing in a
 * new channel. */
int cm_window_alloc(struct cm_part *cp, uint64_t size, uint64_t *gpa)
{
	uint64_t base = PARLEY_CHAN_BASE, end = base + PARLEY_CHAN_SIZE;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t at = pass ? base : base + cp->win_cursor;
		for (; at + size <= end; at += PAGE) {
			if (!window_free(cp, at, size))
				continue;
			*gpa = at;
			cp->win_cursor = at + size - base;
			return 0;
		}
	}
	return -ENOSPC;
}

int cm_slot_alloc(struct cm_part *cp, unsigned *slot)
{
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		if (!cp->slot[i] && !cp->seg_slot[i]) {
			*slot = i;
			return 0;
		}
	return -ENOSPC;
}

static int side_of(const struct cm_chan *ch, const struct partition *p)
{
	return strcmp(ch->g.a, p->name) == 0 ? 0 : 1;
}

int cm_map_end(struct cm_chan *ch, int side)
{
	struct cm_end *e = &ch->end[side];
	struct cm_part *cp = e->ep;
	if (e->mapped)
		return 0;
	if (cp->ext) {
		struct cm_end ne = { .ep = cp };
		int rc = cp->ext->map(cp->ext_ctx, ch, side, &ne);
		if (rc < 0)
			return rc;
		ne.mapped = true;
		*e = ne;
		return 0;
	}
	unsigned slot;
	uint64_t gpa;
	if (cm_slot_alloc(cp, &slot) < 0 ||
	    cm_window_alloc(cp, ch->size, &gpa) < 0)
		return -ENOSPC;
	if (++cp->gen[slot] == 0)
		cp->gen[slot] = 1;
	struct ctl_map m = { .chan = ch->id, .gpa = gpa, .size = ch->size,
			     .slot = slot };
	m.handle = ((uint64_t)cp->gen[slot] << 16) | slot;
	chanmem_segments(ch, side, &m);
	int fds[CTL_FDS_MAX];
	unsigned nfds = chanmem_fds(ch, side, fds);
	int rc = partition_send(cp->p, CTL_MAP, &m, sizeof(m), fds, nfds);
	if (rc < 0)
		return rc;
	*e = (struct cm_end){ .ep = cp, .mapped = true, .slot = slot,
			      .handle = m.handle, .gpa = gpa };
	cp->slot[slot] = ch;
	return 0;
}

static void end_forget(struct cm_end *e)
{
	if (e->ep && e->mapped && !e->ep->ext)
		e->ep->slot[e->slot] = NULL;
	e->mapped = false;
	e->unmapping = false;
}

/* ---- revocation --------------------------------------------------------- */

/* Neither end may still hold the window: the memory goes. */
static void chan_settle(struct chanmgr *cm, struct cm_chan *ch)
{
	if (!ch->end[0].mapped && !ch->end[1].mapped)
		chan_remove(cm, ch);
}

/* Tell both vmms to unmap and return at once: the answers arrive through
 * chanmgr_on_request (CTL_UNMAPPED), the deadline is chanmgr_tick's. No
 * message of any vmm is handled in here. */
void cm_chan_revoke(struct chanmgr *cm, struct cm_chan *ch, const char *why)
{
	if (ch->revoking)
		return;
	ch->revoking = true;
	uint64_t ms = cm->unmap_ms > 0 ? (uint64_t)cm->unmap_ms : 1000;
	uint64_t ext = cm->ext_unmap_ms > 0 ? (uint64_t)cm->ext_unmap_ms
					    : 5000;
	for (int s = 0; s < 2; s++)
		if (ch->end[s].mapped && ch->end[s].ep &&
		    ch->end[s].ep->ext && ext > ms)
			ms = ext;
	ch->revoke_deadline_ns = mono_now_ns() + ms * 1000000;
	for (int s = 0; s < 2; s++) {
		struct cm_end *e = &ch->end[s];
		if (!e->mapped)
			continue;
		struct ctl_chan_ref ref = { .chan = ch->id, .handle = e->handle };
		if (e->ep->ext) {
			e->unmapping = true;
			e->ep->ext->unmap(e->ep->ext_ctx, ch, s);
		} else if (partition_send(e->ep->p, CTL_UNMAP, &ref, sizeof(ref),
					  NULL, 0) == 0)
			e->unmapping = true;
		else
			end_forget(e); /* stopped: its vmm holds nothing */
	}
	cm_emit(cm, "revoke", NULL, ch->g.channel, why, NULL, NULL);
	chan_settle(cm, ch);
}

/* The deadline passed: a vmm that has not confirmed is killed. */
static void revoke_overdue(struct chanmgr *cm, struct cm_chan *ch)
{
	for (int s = 0; s < 2; s++) {
		struct cm_end *e = &ch->end[s];
		if (!e->unmapping)
			continue;
		struct partition *p = e->ep->p;
		cm_emit(cm, "fault", p->name, ch->g.channel, "UNMAP_TIMEOUT", NULL,
		     "the vmm did not confirm the unmap in time");
		if (e->ep->ext)
			e->ep->ext->fault(e->ep->ext_ctx, VMX_STOP_VMM_TIMEOUT,
					  ch->g.channel);
		else
			partition_fault(p, VMX_STOP_VMM_TIMEOUT, "did not "
					"confirm the unmap of channel %s in time",
					ch->g.channel);
		end_forget(e);
	}
	chan_settle(cm, ch);
}

/* A section shorter than it was made: only its writer holds a descriptor
 * that can truncate it. That writer's vmm is stopped as compromised and
 * the channel revoked; the peer, which may fault reading it, is not to
 * blame (its fault is audited with the writer's name). False if so. */
static bool sections_intact(struct chanmgr *cm, struct cm_chan *ch)
{
	int i = chanmem_cut(ch);
	if (i < 0)
		return true;
	int w = ch->sec_writer[i];
	struct cm_part *bad = ch->end[w].ep, *peer = ch->end[1 - w].ep;
	const char *who = bad ? bad->p->name : (w ? ch->g.b : ch->g.a);
	char detail[160];
	snprintf(detail, sizeof(detail), "%s truncated its section %d of "
		 "channel %s", who, i, ch->g.channel);
	cm_emit(cm, "fault", who, ch->g.channel, "SECTION_TRUNCATED", NULL,
	     detail);
	if (peer)
		snprintf(peer->blame, sizeof(peer->blame), "%s", detail);
	if (bad && bad->ext)
		bad->ext->fault(bad->ext_ctx, VMX_STOP_COMPROMISED, detail);
	else if (bad)
		partition_fault(bad->p, VMX_STOP_COMPROMISED, "%s", detail);
	cm_chan_revoke(cm, ch, "SECTION_TRUNCATED");
	return false;
}

bool chanmgr_tick(struct chanmgr *cm)
{
	uint64_t now = mono_now_ns();
	bool did = false;
	audit_tick(cm->audit);
	for (unsigned i = cm->nchans; i-- > 0;) {
		if (i >= cm->nchans)
			continue;
		struct cm_chan *ch = cm->chans[i];
		if (ch->revoking && now >= ch->revoke_deadline_ns) {
			revoke_overdue(cm, ch);
			did = true;
		} else if (!ch->revoking && !sections_intact(cm, ch)) {
			did = true;
		}
	}
	return segmgr_tick(cm) || did;
}

static bool grant_same(const struct grant *a, const struct grant *b)
{
	return !strcmp(a->a, b->a) && !strcmp(a->b, b->b) && a->dir == b->dir &&
	       a->ring_bytes == b->ring_bytes &&
	       a->require_integrity == b->require_integrity;
}

void chanmgr_set_grants(struct chanmgr *cm, struct grant_set *g)
{
	grant_set_free(&cm->grants);
	cm->grants = *g;
	*g = (struct grant_set){ 0 };
	segmgr_policy(cm);
	for (unsigned i = cm->nchans; i-- > 0;) {
		if (i >= cm->nchans)
			continue;
		struct cm_chan *ch = cm->chans[i];
		if (ch->svc) {
			const struct svc_rule *r = svc_rule_find(&cm->grants,
				ch->g.a, ch->g.b, ch->g.channel);
			if (!r || !r->allow)
				cm_chan_revoke(cm, ch, "SERVICE_RULE_REMOVED");
			continue;
		}
		const struct grant *ng = grant_find(&cm->grants, ch->g.channel,
						    ch->g.a);
		if (!ng || !grant_same(ng, &ch->g))
			cm_chan_revoke(cm, ch, ng ? "GRANT_CHANGED" : "GRANT_REMOVED");
	}
}

static bool chan_of(const struct cm_chan *ch, const struct partition *p)
{
	return !strcmp(ch->g.a, p->name) || !strcmp(ch->g.b, p->name);
}

void chanmgr_quarantine(struct chanmgr *cm, struct partition *p,
			const char *file)
{
	struct cm_part *cp = cm_part_of(p);
	if (!cp || cp->quarantined)
		return;
	cp->quarantined = true;
	cm_emit(cm, "quarantine", p->name, NULL, "INTEGRITY", file, NULL);
	/* A partition that no longer matches its baseline keeps no disk
	 * key: its vmm (which alone holds them) is stopped. */
	if (p->nkeyed && !p->finished) {
		partition_stop(p);
		p->nkeyed = 0;
		cm_emit(cm, "disk_key_wiped", p->name, NULL, "INTEGRITY", file,
			"partition stopped, its vmm and disk keys gone");
	}
	segmgr_quarantine(cm, cp);
	for (unsigned i = cm->nchans; i-- > 0;) {
		if (i >= cm->nchans)
			continue;
		if (chan_of(cm->chans[i], p))
			cm_chan_revoke(cm, cm->chans[i], "QUARANTINE");
	}
}

/* One end stopped. Nothing policy-related happened, so the other end is
 * not revoked: it keeps its window, reads what was sent before the stop,
 * and learns PEER_DOWN from its next wait; the memory goes when it closes
 * the handle or stops. (Revocation would take in-flight data with it: a
 * reply written just before its writer exited.) A channel with nobody left
 * goes at once. */
static void chan_peer_gone(struct chanmgr *cm, struct cm_chan *ch,
			   struct partition *gone)
{
	cm_emit(cm, "peer_gone", gone->name, ch->g.channel, "PEER_DOWN", NULL,
	     NULL);
	ch->peer_gone = true;
	for (int s = 0; s < 2; s++) {
		struct cm_end *e = &ch->end[s];
		if (!e->mapped || e->unmapping)
			continue;
		struct ctl_chan_ref ref = { .chan = ch->id, .handle = e->handle };
		if (e->ep->ext)
			e->ep->ext->peer_gone(e->ep->ext_ctx, ch, s);
		else if (partition_send(e->ep->p, CTL_PEER_GONE, &ref,
					sizeof(ref), NULL, 0) < 0)
			end_forget(e); /* stopped as well: holds nothing */
	}
	chan_settle(cm, ch);
}

/* Every channel p was an end of, p's vmm gone: its mapped ends forgotten
 * (detach, its record going too: every end of it, and unlinked), then
 * each such channel settled or its peer told PEER_DOWN. Backwards: a
 * channel may go on the way. */
static void chans_without(struct chanmgr *cm, struct cm_part *cp,
			  struct partition *p, bool detach)
{
	for (unsigned i = cm->nchans; i-- > 0;) {
		if (i >= cm->nchans)
			continue;
		struct cm_chan *ch = cm->chans[i];
		for (int s = 0; s < 2; s++) {
			if (!cp || ch->end[s].ep != cp ||
			    (!detach && !ch->end[s].mapped))
				continue;
			end_forget(&ch->end[s]);
			if (detach)
				ch->end[s].ep = NULL;
		}
		if (!chan_of(ch, p))
			continue;
		if (ch->revoking || ch->peer_gone)
			chan_settle(cm, ch);
		else
			chan_peer_gone(cm, ch, p);
	}
}

void chanmgr_gone(struct chanmgr *cm, struct partition *p)
{
	struct cm_part *cp = cm_part_of(p);
	audit_forget(cm->audit, p->name);
	if (cp) {
		svcmgr_gone(cm, cp);
		segmgr_gone(cm, cp);
	}
	/* A peer that truncated a section under it is found first, so that
	 * the fault is put where it belongs. */
	for (unsigned i = cm->nchans; i-- > 0;)
		if (i < cm->nchans && !cm->chans[i]->revoking &&
		    chan_of(cm->chans[i], p))
			sections_intact(cm, cm->chans[i]);
	if (p->fin.reason != VMX_STOP_EXIT) {
		char detail[sizeof(p->fin.detail) + 200];
		snprintf(detail, sizeof(detail), "%s%s%s", p->fin.detail,
			 cp && cp->blame[0] ? "; after " : "",
			 cp && cp->blame[0] ? cp->blame : "");
		cm_emit(cm, "fault", p->name, NULL, vmx_stop_name(p->fin.reason),
		     NULL, detail);
	}
	chans_without(cm, cp, p, false);
}

/* Its record is freed: nothing of the grant manager's may point at it
 * afterwards, since the caller frees the partition and chanmgr_add hands
 * the record to the next one (which may have the same name: a stale end
 * must not pass for its). Offers, calls not yet accepted and segment
 * sets forget it (as at chanmgr_gone, idempotent); a channel it was an end
 * of loses that end (ep NULL, unmapped: its vmm is gone); one that names
 * it and was not told yet (chanmgr_gone was not called) goes the way
 * chanmgr_gone takes it (the peer sees PEER_DOWN, a channel nobody
 * holds goes at once). */
int chanmgr_remove(struct chanmgr *cm, struct partition *p)
{
	struct cm_part *cp = cm_part_of(p);
	if (!cp || cp < cm->parts || cp >= cm->parts + cm->nparts ||
	    cp->p != p)
		return -ENOENT;
	if (!p->finished)
		return -EBUSY; /* its vmm (its VM) may still map windows */
	svcmgr_gone(cm, cp);
	segmgr_gone(cm, cp);
	chans_without(cm, cp, p, true);
	memset(cp, 0, sizeof(*cp));
	p->owner = NULL;
	while (cm->nparts && !cm->parts[cm->nparts - 1].p)
		cm->nparts--;
	return 0;
}

/* ---- the open decision -------------------------------------------------- */

struct open_ctx {
	struct chanmgr *cm;
	struct cm_part *cp;
	const struct ctl_open_req *req;
	struct ctl_open_reply *r;
	bool measured;          /* an end was re-measured: the open cost */
};

/* The partition learns `detail` ("pong/app.conf": whose file differed);
 * the audit record keeps the file name and the detail apart. */
static int deny_file(struct open_ctx *o, int status, const char *detail,
		     const char *file)
{
	o->r->status = status;
	if (detail)
		snprintf(o->r->detail, sizeof(o->r->detail), "%s", detail);
	cm_emit(o->cm, "open_denied", o->cp->p->name, o->req->name,
	     cm_status_name(status), file, detail);
	return status;
}

static int deny(struct open_ctx *o, int status, const char *detail)
{
	return deny_file(o, status, detail, NULL);
}

bool cm_peer_up(const struct cm_part *peer)
{
	return peer && !peer->p->finished &&
	       (peer->p->state == PART_RUNNING || peer->p->state == PART_PAUSED);
}

/* Both endpoints must still match their baselines. */
static int check_integrity(struct open_ctx *o, struct cm_part *who)
{
	struct cm_verdict v;
	o->measured = true;
	int st = cm_integrity(o->cm, who, &v);
	if (st == PARLEY_E_INTEGRITY)
		return deny_file(o, st, v.detail, v.file);
	return st ? deny(o, st, v.detail) : 0;
}

static int decide_granted(struct open_ctx *o, const struct grant *g);

_Static_assert(CM_OPENS_PER_S == 64, "CM_OPEN_LIMIT_DETAIL says 64");

bool cm_open_take(struct cm_part *cp)
{
	bool began;
	return cp->ext || rl_take(&cp->opens, mono_now_ns(), CM_OPEN_BURST,
				  CM_OPENS_PER_S, &began);
}

void cm_open_give_back(struct cm_part *cp)
{
	if (!cp->ext)
		rl_give_back(&cp->opens, CM_OPEN_BURST, CM_OPENS_PER_S);
}

static int decide(struct open_ctx *o)
{
	struct chanmgr *cm = o->cm;
	if (o->cp->quarantined)
		return deny(o, PARLEY_E_QUARANTINED, NULL);
	const struct grant *g = grant_find(&cm->grants, o->req->name,
					   o->cp->p->name);
	if (!g)
		return deny(o, PARLEY_E_NO_GRANT, NULL);
	/* (the bucket's episodes are not used: the refusal's record is) */
	if (!cm_open_take(o->cp))
		return deny(o, PARLEY_E_LIMIT, "opens: " CM_OPEN_LIMIT_DETAIL);
	int rc = decide_granted(o, g);
	if (rc && !o->measured) /* refused before any work: free */
		cm_open_give_back(o->cp);
	return rc;
}

/* The open of a channel the partition has a grant for. */
static int decide_granted(struct open_ctx *o, const struct grant *g)
{
	struct chanmgr *cm = o->cm;
	int side = strcmp(g->a, o->cp->p->name) == 0 ? 0 : 1;
	/* The asker first: a partition that no longer matches its baseline
	 * is caught (and quarantined) whenever it asks, whether or not its
	 * peer happens to be up. */
	if (g->require_integrity && check_integrity(o, o->cp) < 0)
		return o->r->status;
	struct cm_part *peer = cm_part_named(cm, side ? g->a : g->b);
	if (!cm_peer_up(peer))
		return deny(o, PARLEY_E_PEER_DOWN, NULL);
	if (peer->quarantined)
		return deny(o, PARLEY_E_QUARANTINED, peer->p->name);
	if (g->require_integrity && check_integrity(o, peer) < 0)
		return o->r->status;
	struct cm_chan *ch = chan_named(cm, g->channel);
	if (!ch && cm_chan_create(cm, g, &ch) < 0)
		return deny(o, PARLEY_E_LIMIT, NULL);
	ch->end[side].ep = o->cp;
	ch->end[1 - side].ep = peer;
	if (cm_map_end(ch, side) < 0 || cm_map_end(ch, 1 - side) < 0)
		return deny(o, PARLEY_E_LIMIT, NULL);
	const struct cm_end *e = &ch->end[side];
	struct ctl_map m;
	chanmem_segments(ch, side, &m);
	o->r->status = PARLEY_OK;
	o->r->handle = e->handle;
	o->r->gpa = e->gpa;
	o->r->size = ch->size;
	o->r->tx = m.tx;
	o->r->rx = m.rx;
	cm_emit(cm, "open_allowed", o->cp->p->name, g->channel, NULL, NULL, NULL);
	return 0;
}

static void on_open(struct chanmgr *cm, struct partition *p,
		    const struct ctl_open_req *req)
{
	struct cm_part *cp = cm_part_of(p);
	struct ctl_open_reply r = { .vcpu = req->vcpu };
	/* ctl_read checked the name is NUL-terminated. */
	struct open_ctx o = { cm, cp, req, &r };
	if (!cp)
		r.status = PARLEY_E_NO_GRANT;
	else if (req->op == CTL_OP_SEG_ATTACH || req->op == CTL_OP_SEG_DETACH)
		segmgr_on_req(cm, cp, req, &r);
	else if (req->op != CTL_OP_CHAN_OPEN)
		svcmgr_on_req(cm, cp, req, &r);
	else
		decide(&o);
	if (!p->finished)
		partition_send(p, CTL_OPEN_REPLY, &r, sizeof(r), NULL, 0);
}

static struct cm_chan *chan_by_id(struct chanmgr *cm, uint32_t id)
{
	for (unsigned i = 0; i < cm->nchans; i++)
		if (cm->chans[i]->id == id)
			return cm->chans[i];
	return NULL;
}

/* The end of channel ref->chan that p holds under ref->handle, if any. */
static struct cm_end *end_of(struct cm_chan *ch, struct partition *p,
			     const struct ctl_chan_ref *ref)
{
	if (!ch)
		return NULL;
	struct cm_end *e = &ch->end[side_of(ch, p)];
	if (e->ep != cm_part_of(p) || !e->mapped || e->handle != ref->handle)
		return NULL;
	return e;
}

/* The partition closed its handle, or its vmm could not map: that end is
 * gone; the channel goes when neither end holds it. While a revocation
 * waits for this end, only CTL_UNMAPPED answers it. */
static void on_end_gone(struct chanmgr *cm, struct partition *p,
			const struct ctl_chan_ref *ref, const char *why)
{
	struct cm_chan *ch = chan_by_id(cm, ref->chan);
	struct cm_end *e = end_of(ch, p, ref);
	if (!e || e->unmapping)
		return;
	end_forget(e);
	if (why)
		cm_emit(cm, "fault", p->name, ch->g.channel, why, NULL, NULL);
	/* A service call is not reopened: one end hanging up ends it, and
	 * the other learns PEER_DOWN (a provider then closes its end). */
	if (ch->svc && !ch->revoking && !ch->peer_gone)
		chan_peer_gone(cm, ch, p);
	else
		chan_settle(cm, ch);
}

/* The vmm confirms an unmap we asked for (status -ENOENT if the partition
 * had closed the handle meanwhile: nothing was mapped). */
static void on_unmapped(struct chanmgr *cm, struct partition *p,
			const struct ctl_chan_ref *ref)
{
	struct cm_chan *ch = chan_by_id(cm, ref->chan);
	if (!ch)
		return;
	struct cm_end *e = &ch->end[side_of(ch, p)];
	if (e->ep != cm_part_of(p) || !e->unmapping)
		return;
	end_forget(e);
	chan_settle(cm, ch);
}

void chanmgr_on_request(struct partition *p, const struct ctl_msg *m,
			void *ctx)
{
	struct chanmgr *cm = ctx;
	switch (m->type) {
	case CTL_OPEN_REQ:
		on_open(cm, p, &m->u.open_req);
		break;
	case CTL_CLOSED:
	case CTL_MAPPED:
	case CTL_UNMAPPED:
		/* A segment's window, or a channel's (ids are never shared). */
		if (segmgr_on_ref(cm, p, m->type, &m->u.ref))
			break;
		if (m->type == CTL_CLOSED)
			on_end_gone(cm, p, &m->u.ref, NULL);
		else if (m->type == CTL_UNMAPPED)
			on_unmapped(cm, p, &m->u.ref);
		else if (m->u.ref.status < 0)
			on_end_gone(cm, p, &m->u.ref, "MAP_FAILED");
		break;
	case CTL_UPDATE_REQ: {
		/* A grant manager that wires no updates (agent/update/) still
		 * answers: the asking vCPU waits for a reply. */
		struct ctl_update_reply r = { .vcpu = m->u.update_req.vcpu,
					      .status = PARLEY_E_NOSYS };
		snprintf(r.detail, sizeof(r.detail), "no updates here");
		partition_send(p, CTL_UPDATE_REPLY, &r, sizeof(r), NULL, 0);
		break;
	}
	default:
		break;
	}
}

/* ---- external endpoints (a Linux VM: agent/vm/vmmgr.c) ------------------ */

int chanmgr_ext_open(struct chanmgr *cm, struct partition *shell,
		     const char *name, struct ctl_open_reply *r,
		     struct cm_chan **out, int *side)
{
	struct ctl_open_req req = { .op = CTL_OP_CHAN_OPEN };
	memset(r, 0, sizeof(*r));
	snprintf(req.name, sizeof(req.name), "%s", name);
	struct cm_part *cp = cm_part_of(shell);
	struct open_ctx o = { cm, cp, &req, r };
	*out = NULL;
	if (!cp || !cp->ext)
		return r->status = PARLEY_E_NO_GRANT;
	if (decide(&o) != 0)
		return r->status;
	const struct grant *g = grant_find(&cm->grants, name, shell->name);
	*side = strcmp(g->a, shell->name) == 0 ? 0 : 1;
	*out = chan_named(cm, name);
	return r->status;
}

struct cm_chan *chanmgr_ext_chan(struct chanmgr *cm, struct partition *shell,
				 uint32_t chan, uint64_t handle, int *side)
{
	struct cm_chan *ch = chan_by_id(cm, chan);
	if (!ch)
		return NULL;
	*side = side_of(ch, shell);
	const struct cm_end *e = &ch->end[*side];
	if (e->ep != cm_part_of(shell) || !e->mapped || e->handle != handle)
		return NULL;
	return ch;
}

void chanmgr_ext_close(struct chanmgr *cm, struct partition *shell,
		       uint32_t chan, uint64_t handle)
{
	struct ctl_chan_ref ref = { .chan = chan, .handle = handle };
	on_end_gone(cm, shell, &ref, NULL);
}

void chanmgr_ext_unmapped(struct chanmgr *cm, struct partition *shell,
			  uint32_t chan)
{
	struct cm_chan *ch = chan_by_id(cm, chan);
	if (!ch)
		return;
	struct cm_end *e = &ch->end[side_of(ch, shell)];
	if (e->ep != cm_part_of(shell) || !e->unmapping)
		return;
	end_forget(e);
	chan_settle(cm, ch);
}

void chanmgr_free(struct chanmgr *cm)
{
	segmgr_free(cm);
	while (cm->nchans)
		chan_remove(cm, cm->chans[cm->nchans - 1]);
	grant_set_free(&cm->grants);
}
