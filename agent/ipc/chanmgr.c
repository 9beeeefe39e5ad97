#include "agent/ipc/chanmgr.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <parley/ring.h>

#define PAGE PARLEY_PAGE_SIZE

static const char *status_name(int st)
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

static struct cm_part *part_of(struct partition *p)
{
	return p->owner;
}

static struct cm_part *part_named(struct chanmgr *cm, const char *name)
{
	for (unsigned i = 0; i < cm->nparts; i++)
		if (cm->parts[i].p && strcmp(cm->parts[i].p->name, name) == 0)
			return &cm->parts[i];
	return NULL;
}

int chanmgr_add(struct chanmgr *cm, struct partition *p)
{
	if (cm->nparts == CM_PARTS_MAX)
		return -ENOSPC;
	struct cm_part *cp = &cm->parts[cm->nparts++];
	memset(cp, 0, sizeof(*cp));
	cp->p = p;
	p->owner = cp;
	return 0;
}

static void emit(struct chanmgr *cm, const char *event, const char *part,
		 const char *chan, const char *reason, const char *file,
		 const char *detail)
{
	struct audit_event e = { event, part, chan, reason, file, detail };
	audit_emit(cm->audit, &e);
}

/* ---- channel memory ---------------------------------------------------- */

static void chan_layout(struct cm_chan *ch)
{
	struct parley_chan_hdr *h = &ch->hdr;
	memset(h, 0, sizeof(*h));
	h->magic = PARLEY_RING_MAGIC;
	h->version = PARLEY_RING_VERSION;
	h->ring_bytes = ch->g.ring_bytes;
	h->nqueues = ch->g.dir == GRANT_BOTH ? 2 : 1;
	snprintf(h->name, sizeof(h->name), "%s", ch->g.channel);
	uint64_t off = PAGE;
	for (unsigned q = 0; q < h->nqueues; q++) {
		h->q[q].prod_off = off;
		h->q[q].cons_off = off + PAGE;
		h->q[q].data_off = off + 2 * PAGE;
		h->q[q].from = ch->g.dir == GRANT_B_TO_A || q == 1
				       ? PARLEY_RING_FROM_B
				       : PARLEY_RING_FROM_A;
		off += 2 * PAGE + ch->g.ring_bytes;
	}
	h->total_bytes = off;
	ch->size = off;
}

static int chan_memory(struct cm_chan *ch)
{
	char nm[96];
	snprintf(nm, sizeof(nm), "parley-chan:%s", ch->g.channel);
	ch->memfd = memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ch->memfd < 0)
		return -errno;
	if (ftruncate(ch->memfd, (off_t)ch->size) < 0 ||
	    pwrite(ch->memfd, &ch->hdr, sizeof(ch->hdr), 0) !=
		    (ssize_t)sizeof(ch->hdr) ||
	    fcntl(ch->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
						 F_SEAL_SEAL) < 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		ch->bell[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ch->bell[i] < 0)
			return -errno;
	}
	return 0;
}

static void chan_free(struct cm_chan *ch)
{
	if (ch->memfd >= 0)
		close(ch->memfd);
	for (int i = 0; i < 2; i++)
		if (ch->bell[i] >= 0)
			close(ch->bell[i]);
	free(ch);
}

static struct cm_chan *chan_named(struct chanmgr *cm, const char *name)
{
	for (unsigned i = 0; i < cm->nchans; i++)
		if (strcmp(cm->chans[i]->g.channel, name) == 0)
			return cm->chans[i];
	return NULL;
}

static int chan_create(struct chanmgr *cm, const struct grant *g,
		       struct cm_chan **out)
{
	if (cm->nchans == CM_CHANS_MAX)
		return -ENOSPC;
	struct cm_chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->memfd = ch->bell[0] = ch->bell[1] = -1;
	ch->id = cm->next_id++;
	ch->g = *g;
	chan_layout(ch);
	int rc = chan_memory(ch);
	if (rc < 0) {
		chan_free(ch);
		return rc;
	}
	cm->chans[cm->nchans++] = ch;
	*out = ch;
	return 0;
}

static void chan_remove(struct chanmgr *cm, struct cm_chan *ch)
{
	for (unsigned i = 0; i < cm->nchans; i++)
		if (cm->chans[i] == ch) {
			cm->chans[i] = cm->chans[--cm->nchans];
			break;
		}
	chan_free(ch);
}

/* ---- windows and handles in one partition ------------------------------ */

static bool window_free(const struct cm_part *cp, uint64_t gpa, uint64_t size)
{
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
static int window_alloc(struct cm_part *cp, uint64_t size, uint64_t *gpa)
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

static int slot_alloc(struct cm_part *cp, unsigned *slot)
{
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		if (!cp->slot[i]) {
			*slot = i;
			return 0;
		}
	return -ENOSPC;
}

static int side_of(const struct cm_chan *ch, const struct partition *p)
{
	return strcmp(ch->g.a, p->name) == 0 ? 0 : 1;
}

/* The sections of the window and who may write them, for one side. */
static void map_segments(const struct cm_chan *ch, int side, struct ctl_map *m)
{
	const struct parley_chan_hdr *h = &ch->hdr;
	unsigned n = 0;
	m->nmem = 1;
	m->seg[n++] = (typeof(m->seg[0])){ 0, PAGE, 0, 0, 1 };
	m->tx = m->rx = PARLEY_CHAN_NO_QUEUE;
	for (unsigned q = 0; q < h->nqueues; q++) {
		bool prod = h->q[q].from == (uint32_t)side;
		if (prod)
			m->tx = q;
		else
			m->rx = q;
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].prod_off, PAGE,
						   h->q[q].prod_off, 0, !prod };
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].cons_off, PAGE,
						   h->q[q].cons_off, 0, prod };
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].data_off,
						   ch->g.ring_bytes,
						   h->q[q].data_off, 0, !prod };
	}
	m->nseg = n;
}

static int map_end(struct cm_chan *ch, int side)
{
	struct cm_end *e = &ch->end[side];
	struct cm_part *cp = e->ep;
	if (e->mapped)
		return 0;
	unsigned slot;
	uint64_t gpa;
	if (slot_alloc(cp, &slot) < 0 || window_alloc(cp, ch->size, &gpa) < 0)
		return -ENOSPC;
	if (++cp->gen[slot] == 0)
		cp->gen[slot] = 1;
	struct ctl_map m = { .chan = ch->id, .gpa = gpa, .size = ch->size,
			     .slot = slot };
	m.handle = ((uint64_t)cp->gen[slot] << 16) | slot;
	map_segments(ch, side, &m);
	int fds[3] = { ch->bell[side], ch->bell[1 - side], ch->memfd };
	int rc = partition_send(cp->p, CTL_MAP, &m, sizeof(m), fds, 3);
	if (rc < 0)
		return rc;
	*e = (struct cm_end){ .ep = cp, .mapped = true, .slot = slot,
			      .handle = m.handle, .gpa = gpa };
	cp->slot[slot] = ch;
	return 0;
}

static void end_forget(struct cm_end *e)
{
	if (e->ep && e->mapped)
		e->ep->slot[e->slot] = NULL;
	e->mapped = false;
}

/* ---- revocation --------------------------------------------------------- */

static void chan_revoke(struct chanmgr *cm, struct cm_chan *ch, const char *why)
{
	for (int s = 0; s < 2; s++) {
		struct cm_end *e = &ch->end[s];
		if (!e->mapped)
			continue;
		struct parley_err err = { 0 };
		/* A vmm that does not confirm in time has been killed by
		 * partition_unmap; one that stopped meanwhile has no window. */
		if (!e->ep->p->finished &&
		    partition_unmap(e->ep->p, ch->id, &err) < 0 &&
		    err.code == -ETIMEDOUT)
			emit(cm, "fault", e->ep->p->name, ch->g.channel,
			     "UNMAP_TIMEOUT", NULL, perr_msg(&err));
		end_forget(e);
	}
	emit(cm, "revoke", NULL, ch->g.channel, why, NULL, NULL);
	chan_remove(cm, ch);
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
	for (unsigned i = cm->nchans; i-- > 0;) {
		struct cm_chan *ch = cm->chans[i];
		const struct grant *ng = grant_find(&cm->grants, ch->g.channel,
						    ch->g.a);
		if (!ng || !grant_same(ng, &ch->g))
			chan_revoke(cm, ch, ng ? "GRANT_CHANGED" : "GRANT_REMOVED");
	}
}

void chanmgr_quarantine(struct chanmgr *cm, struct partition *p,
			const char *file)
{
	struct cm_part *cp = part_of(p);
	if (!cp || cp->quarantined)
		return;
	cp->quarantined = true;
	emit(cm, "quarantine", p->name, NULL, "INTEGRITY", file, NULL);
	for (unsigned i = cm->nchans; i-- > 0;) {
		struct cm_chan *ch = cm->chans[i];
		if (!strcmp(ch->g.a, p->name) || !strcmp(ch->g.b, p->name))
			chan_revoke(cm, ch, "QUARANTINE");
	}
}

void chanmgr_gone(struct chanmgr *cm, struct partition *p)
{
	if (p->fin.reason != VMX_STOP_EXIT)
		emit(cm, "fault", p->name, NULL, vmx_stop_name(p->fin.reason),
		     NULL, p->fin.detail);
	for (unsigned i = cm->nchans; i-- > 0;) {
		struct cm_chan *ch = cm->chans[i];
		if (!strcmp(ch->g.a, p->name) || !strcmp(ch->g.b, p->name))
			chan_revoke(cm, ch, "PEER_DOWN");
	}
}

/* ---- the open decision -------------------------------------------------- */

/* Re-measure one endpoint: the pages its vmm reports written, re-hashed
 * from our own view and compared with the baseline. */
static int verify(struct cm_part *cp, char *file, size_t cap)
{
	struct partition *p = cp->p;
	struct parley_err err = { 0 };
	if (partition_fetch_dirty(p, &err) < 0) {
		snprintf(file, cap, "(no dirty report: %s)", perr_msg(&err));
		return -EIO;
	}
	int fi;
	if (measure_verify(&p->measure, p->mem + p->ram_size, &fi) == 0)
		return 0;
	snprintf(file, cap, "%s", fi >= 0 ? p->measure.file[fi].name
					  : "(padding)");
	return -EBADMSG;
}

struct open_ctx {
	struct chanmgr *cm;
	struct cm_part *cp;
	const struct ctl_open_req *req;
	struct ctl_open_reply *r;
};

/* The partition learns `detail` ("pong/app.conf": whose file differed);
 * the audit record keeps the file name and the detail apart. */
static int deny_file(struct open_ctx *o, int status, const char *detail,
		     const char *file)
{
	o->r->status = status;
	if (detail)
		snprintf(o->r->detail, sizeof(o->r->detail), "%s", detail);
	emit(o->cm, "open_denied", o->cp->p->name, o->req->name,
	     status_name(status), file, detail);
	return status;
}

static int deny(struct open_ctx *o, int status, const char *detail)
{
	return deny_file(o, status, detail, NULL);
}

static bool peer_up(const struct cm_part *peer)
{
	return peer && !peer->p->finished &&
	       (peer->p->state == PART_RUNNING || peer->p->state == PART_PAUSED);
}

/* Both endpoints must still match their baselines; a mismatch quarantines
 * the partition it was found in. */
static int check_integrity(struct open_ctx *o, struct cm_part *peer)
{
	struct cm_part *who[2] = { o->cp, peer };
	for (int i = 0; i < 2; i++) {
		char file[PARLEY_CONFIG_NAME_MAX + 80];
		int rc = verify(who[i], file, sizeof(file));
		if (rc == 0)
			continue;
		char detail[sizeof(file) + 64];
		if ((size_t)snprintf(detail, sizeof(detail), "%s/%s",
				     who[i]->p->name, file) >= sizeof(detail))
			detail[sizeof(detail) - 1] = 0;
		if (rc == -EBADMSG) {
			chanmgr_quarantine(o->cm, who[i]->p, file);
			return deny_file(o, PARLEY_E_INTEGRITY, detail, file);
		}
		/* A vmm that cannot report its dirty pages is as good as down. */
		return deny(o, PARLEY_E_PEER_DOWN, detail);
	}
	return 0;
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
	int side = strcmp(g->a, o->cp->p->name) == 0 ? 0 : 1;
	struct cm_part *peer = part_named(cm, side ? g->a : g->b);
	if (!peer_up(peer))
		return deny(o, PARLEY_E_PEER_DOWN, NULL);
	if (peer->quarantined)
		return deny(o, PARLEY_E_QUARANTINED, peer->p->name);
	if (g->require_integrity && check_integrity(o, peer) < 0)
		return o->r->status;
	struct cm_chan *ch = chan_named(cm, g->channel);
	if (!ch && chan_create(cm, g, &ch) < 0)
		return deny(o, PARLEY_E_LIMIT, NULL);
	ch->end[side].ep = o->cp;
	ch->end[1 - side].ep = peer;
	if (map_end(ch, side) < 0 || map_end(ch, 1 - side) < 0)
		return deny(o, PARLEY_E_LIMIT, NULL);
	const struct cm_end *e = &ch->end[side];
	struct ctl_map m;
	map_segments(ch, side, &m);
	o->r->status = PARLEY_OK;
	o->r->handle = e->handle;
	o->r->gpa = e->gpa;
	o->r->size = ch->size;
	o->r->tx = m.tx;
	o->r->rx = m.rx;
	emit(cm, "open_allowed", o->cp->p->name, g->channel, NULL, NULL, NULL);
	return 0;
}

static void on_open(struct chanmgr *cm, struct partition *p,
		    const struct ctl_open_req *req)
{
	struct cm_part *cp = part_of(p);
	struct ctl_open_reply r = { .vcpu = req->vcpu };
	char name[PARLEY_CHAN_NAME_MAX];
	/* The name is the vmm's word: NUL-terminated and a valid name. */
	snprintf(name, sizeof(name), "%.*s", PARLEY_CHAN_NAME_MAX - 1, req->name);
	struct ctl_open_req clean = *req;
	memcpy(clean.name, name, sizeof(name));
	struct open_ctx o = { cm, cp, &clean, &r };
	if (!cp)
		r.status = PARLEY_E_NO_GRANT;
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

/* The partition closed its handle, or its vmm could not map: that end is
 * gone; the channel goes when neither end holds it. */
static void on_end_gone(struct chanmgr *cm, struct partition *p,
			const struct ctl_chan_ref *ref, const char *why)
{
	struct cm_chan *ch = chan_by_id(cm, ref->chan);
	if (!ch)
		return;
	struct cm_end *e = &ch->end[side_of(ch, p)];
	if (e->ep != part_of(p) || !e->mapped || e->handle != ref->handle)
		return;
	end_forget(e);
	if (why)
		emit(cm, "fault", p->name, ch->g.channel, why, NULL, NULL);
	if (!ch->end[0].mapped && !ch->end[1].mapped)
		chan_remove(cm, ch);
}

void chanmgr_on_request(struct partition *p, uint32_t type,
			const void *payload, void *ctx)
{
	struct chanmgr *cm = ctx;
	const struct ctl_chan_ref *ref = payload;
	switch (type) {
	case CTL_OPEN_REQ:
		on_open(cm, p, payload);
		break;
	case CTL_CLOSED:
		on_end_gone(cm, p, ref, NULL);
		break;
	case CTL_MAPPED:
		if (ref->status < 0)
			on_end_gone(cm, p, ref, "MAP_FAILED");
		break;
	default:
		break;
	}
}

/* ---- background cross-check -------------------------------------------- */

static void full_check_one(struct chanmgr *cm, struct cm_part *cp)
{
	struct partition *p = cp->p;
	const uint8_t *cfg = p->mem + p->ram_size;
	/* Hash first, then ask: a page that differed while we hashed was
	 * written before the question, so an honest report includes it. */
	uint64_t *differ = measure_rehash_all(&p->measure, cfg);
	struct parley_err err = { 0 };
	if (!differ || partition_fetch_dirty(p, &err) < 0) {
		free(differ);
		return;
	}
	int64_t page = measure_unreported(&p->measure, differ);
	free(differ);
	cp->last_full_ns = mono_now_ns();
	if (page < 0)
		return;
	int fi = measure_file_of_page(&p->measure, (uint64_t)page);
	char detail[160];
	snprintf(detail, sizeof(detail), "config page %lld (%s) changed but "
		 "the vmm process never reported it", (long long)page,
		 fi >= 0 ? p->measure.file[fi].name : "padding");
	emit(cm, "fault", p->name, NULL, "COMPROMISED",
	     fi >= 0 ? p->measure.file[fi].name : NULL, detail);
	chanmgr_quarantine(cm, p, fi >= 0 ? p->measure.file[fi].name : NULL);
	partition_stop(p);
	p->fin.reason = VMX_STOP_COMPROMISED;
	snprintf(p->fin.detail, sizeof(p->fin.detail), "%s", detail);
}

bool chanmgr_full_check(struct chanmgr *cm, bool force)
{
	uint64_t now = mono_now_ns();
	bool ran = false;
	struct cm_part *oldest = NULL;
	for (unsigned i = 0; i < cm->nparts; i++) {
		struct cm_part *cp = &cm->parts[i];
		if (!cp->p || cp->p->finished)
			continue;
		if (force) {
			full_check_one(cm, cp);
			ran = true;
		} else if (cm->rehash_interval_ns &&
			   now - cp->last_full_ns >= cm->rehash_interval_ns &&
			   (!oldest || cp->last_full_ns < oldest->last_full_ns)) {
			oldest = cp;
		}
	}
	if (oldest) {
		full_check_one(cm, oldest);
		ran = true;
	}
	return ran;
}

void chanmgr_free(struct chanmgr *cm)
{
	while (cm->nchans)
		chan_remove(cm, cm->chans[cm->nchans - 1]);
	grant_set_free(&cm->grants);
}
