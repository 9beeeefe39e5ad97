/*
 * Segment sets in partitions (issue 14): the attach decision (the set in
 * the policy, the partition a member of it, the member re-measured as for
 * a channel open), the member's window — every segment it may see mapped
 * as its own one-segment channel window, read-only unless it writes it —
 * and removal: a member that detaches, stops or is quarantined is marked
 * REMOVED in the table (segmem.c), the others are told (the table's epoch
 * moved; the eventfd their table window waits on is written), its
 * segments are unmapped from everyone, and once every vmm confirmed (or
 * the deadline passed: the late vmm is stopped) the memory is cut.
 *
 * Segment windows use the channel machinery unchanged: CTL_MAP with one
 * segment and one memory fd (writable fd only to the writer, a read-only
 * re-open to readers, so the kernel refuses a writable mapping), CTL_UNMAP
 * / CTL_UNMAPPED by window id. Ids come from the channel id counter, so a
 * vmm's reply names either a channel or a segment window, never both. The
 * two doorbells of every segment window are the member's notification
 * eventfd: CHAN_WAIT on any of its handles wakes on a table change.
 *
 * Audit: seg_attach, seg_detach, seg_refused (reason), seg_removed
 * (reason: DETACHED, STOPPED, QUARANTINED, SET_CHANGED).
 */
#include "agent/ipc/chanmgr_int.h"
#include "agent/ipc/segmem.h"
#include "agent/ctl/clock.h"
#include "agent/ctl/stop.h"
#include "common/jsonv.h"
#include "common/segset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SG_SETS_MAX 64
/* Between telling the others a member was removed (epoch, wake) and
 * unmapping its segments from them: the SDK looks at the epoch before
 * every access, so an end that keeps to it has stopped touching them. */
#define SG_GRACE_NS 100000000ull

struct sg_win {
	bool mapped;       /* CTL_MAP sent: the vmm may hold it */
	bool unmapping;    /* CTL_UNMAP sent, no answer yet */
	unsigned slot;
	uint64_t handle;
	uint32_t id;       /* window id (the ctl messages' chan) */
	uint32_t gen;      /* the segment's memory generation mapped */
};

struct sg_member {
	struct cm_part *cp;          /* while attached or windows remain */
	bool attached;
	int notify;                  /* eventfd: both doorbells; -1 */
	uint64_t base;               /* the window's guest-physical base */
	int res;                     /* its entry in cp->segres, or -1 */
	struct sg_win w[PARLEY_SEGSET_SEGS_MAX];
};

struct sg_set {
	struct segset_def def;       /* as attached: a changed policy is seen */
	bool dead;                   /* its policy entry went or changed */
	struct segmem sm;
	struct sg_member m[PARLEY_SEGSET_MEMBERS_MAX];
	uint64_t cut_pending;        /* removed members whose memory is to
				      * be cut once every unmap confirmed */
	uint64_t cut_deadline_ns[PARLEY_SEGSET_MEMBERS_MAX];
	uint64_t grace_pending;      /* removed members whose segments the
				      * others still map, until grace_ns */
	uint64_t grace_ns[PARLEY_SEGSET_MEMBERS_MAX];
	uint32_t gen[PARLEY_SEGSET_SEGS_MAX]; /* fresh memory: + 1 */
};

struct segmgr {
	unsigned n;
	struct sg_set *s[SG_SETS_MAX];
};

static void emit(struct chanmgr *cm, const char *ev, const char *part,
		 const char *set, const char *reason, const char *file,
		 const char *detail)
{
	cm_emit(cm, ev, part, set, reason, file, detail);
}

static uint64_t unmap_deadline(const struct chanmgr *cm)
{
	return mono_now_ns() +
	       (uint64_t)(cm->unmap_ms > 0 ? cm->unmap_ms : 1000) * 1000000;
}

/* ---- windows ------------------------------------------------------------ */

static void win_forget(struct sg_member *mb, struct sg_win *w)
{
	if (mb->cp && (w->mapped || w->unmapping) && w->slot < CTL_WIN_SLOTS)
		mb->cp->seg_slot[w->slot] = false;
	w->mapped = w->unmapping = false;
}

/* Map segment `s` of the view entry into the member's partition. */
static int win_map(struct chanmgr *cm, struct sg_member *mb, uint32_t s,
		   uint64_t off, uint64_t len, int fd, bool ro, uint32_t gen)
{
	struct cm_part *cp = mb->cp;
	unsigned slot;
	if (cm_slot_alloc(cp, &slot) < 0)
		return -ENOSPC;
	if (++cp->gen[slot] == 0)
		cp->gen[slot] = 1;
	struct ctl_map m = {
		.chan = cm->next_id++, .nseg = 1, .gpa = mb->base + off,
		.size = len, .tx = PARLEY_CHAN_NO_QUEUE,
		.rx = PARLEY_CHAN_NO_QUEUE, .slot = slot, .nmem = 1,
	};
	m.handle = ((uint64_t)cp->gen[slot] << 16) | slot;
	m.seg[0].len = len;
	m.seg[0].readonly = ro;
	int fds[3] = { mb->notify, mb->notify, fd };
	int rc = partition_send(cp->p, CTL_MAP, &m, sizeof(m), fds, 3);
	if (rc < 0)
		return rc;
	mb->w[s] = (struct sg_win){ .mapped = true, .slot = slot,
				    .handle = m.handle, .id = m.chan,
				    .gen = gen };
	cp->seg_slot[slot] = true;
	return 0;
}

static void win_unmap(struct sg_member *mb, struct sg_win *w)
{
	if (!w->mapped || w->unmapping)
		return;
	struct ctl_chan_ref ref = { .chan = w->id, .handle = w->handle };
	if (partition_send(mb->cp->p, CTL_UNMAP, &ref, sizeof(ref), NULL, 0)
	    == 0)
		w->unmapping = true;
	else
		win_forget(mb, w); /* stopped: its vmm holds nothing */
}

/* Bring the member's windows to its view: LIVE segments it may see mapped,
 * the rest unmapped. A segment still being unmapped is mapped again once
 * that is confirmed (on_ref). */
static int sync_member(struct chanmgr *cm, struct sg_set *set, uint32_t id)
{
	struct sg_member *mb = &set->m[id];
	struct segmem_view *v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	bool want[PARLEY_SEGSET_SEGS_MAX] = { false };
	int rc = mb->attached ? segmem_view(&set->sm, id, v) : 0;
	for (unsigned i = 0; mb->attached && rc == 0 && i < v->n; i++) {
		uint32_t s = v->s[i].seg;
		/* Old memory (its writer came back with fresh memory) goes
		 * first; the fresh one is mapped when that is confirmed. */
		want[s] = mb->w[s].gen == set->gen[s] || !mb->w[s].mapped;
		if (!mb->w[s].mapped && !mb->w[s].unmapping)
			rc = win_map(cm, mb, s, v->s[i].off, v->s[i].len,
				     v->s[i].fd, v->s[i].readonly,
				     set->gen[s]);
	}
	free(v);
	for (uint32_t s = 0; s < set->sm.nsegs; s++)
		if (!want[s] && mb->w[s].mapped)
			win_unmap(mb, &mb->w[s]);
	return rc;
}

static bool member_idle(const struct sg_member *mb, uint32_t nsegs)
{
	for (uint32_t s = 0; s < nsegs; s++)
		if (mb->w[s].mapped || mb->w[s].unmapping)
			return false;
	return true;
}

/* A member with no window left and not attached lets go of its range. */
static void member_release(struct sg_set *set, uint32_t id)
{
	struct sg_member *mb = &set->m[id];
	if (mb->attached || !mb->cp || !member_idle(mb, set->sm.nsegs))
		return;
	if (mb->res >= 0)
		mb->cp->segres[mb->res].size = 0;
	mb->res = -1;
	mb->cp = NULL;
}

/* A removed member's memory is cut once nobody maps its segments. */
static void try_cut(struct sg_set *set, uint32_t id, bool force)
{
	if (!((set->cut_pending >> id) & 1))
		return;
	if (set->sm.member[id].state != PARLEY_MEMBER_REMOVED) {
		set->cut_pending &= ~(1ull << id); /* back: fresh memory */
		return;
	}
	for (uint32_t m = 0; !force && m < set->sm.nmembers; m++)
		for (uint32_t s = 1; s < set->sm.nsegs; s++)
			if (set->sm.seg[s].writer == id &&
			    (set->m[m].w[s].mapped || set->m[m].w[s].unmapping))
				return;
	segmem_cut(&set->sm, id);
	set->cut_pending &= ~(1ull << id);
}

static void wake(const struct sg_member *mb)
{
	uint64_t one = 1;
	if (mb->notify >= 0 && write(mb->notify, &one, sizeof(one)) < 0) {
		/* only on counter overflow: it is awake anyway */
	}
}

/* ---- sets ----------------------------------------------------------------- */

static void set_free(struct sg_set *set)
{
	for (unsigned i = 0; i < PARLEY_SEGSET_MEMBERS_MAX; i++)
		if (set->m[i].notify >= 0)
			close(set->m[i].notify);
	segmem_close(&set->sm);
	free(set);
}

static struct sg_set *set_named(struct segmgr *sg, const char *name)
{
	for (unsigned i = 0; sg && i < sg->n; i++)
		if (!sg->s[i]->dead && !strcmp(sg->s[i]->def.name, name))
			return sg->s[i];
	return NULL;
}

/* Dead sets nobody maps any more go. */
static void sets_reap(struct segmgr *sg)
{
	for (unsigned i = sg->n; i-- > 0;) {
		struct sg_set *set = sg->s[i];
		bool idle = set->dead && !set->cut_pending &&
			    !set->grace_pending;
		for (unsigned m = 0; idle && m < set->sm.nmembers; m++)
			idle = !set->m[m].cp;
		if (idle) {
			set_free(set);
			sg->s[i] = sg->s[--sg->n];
		}
	}
}

static int set_get(struct chanmgr *cm, const struct segset_def *def,
		   struct sg_set **out)
{
	if (!cm->seg && !(cm->seg = calloc(1, sizeof(*cm->seg))))
		return -ENOMEM;
	struct segmgr *sg = cm->seg;
	if ((*out = set_named(sg, def->name)))
		return 0;
	sets_reap(sg);
	if (sg->n == SG_SETS_MAX)
		return -ENOSPC;
	struct sg_set *set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	for (unsigned i = 0; i < PARLEY_SEGSET_MEMBERS_MAX; i++) {
		set->m[i].notify = -1;
		set->m[i].res = -1;
	}
	set->def = *def;
	uint8_t *tab;
	size_t len;
	struct parley_err err = { 0 };
	int rc = segset_compile(def, &tab, &len, &err);
	if (rc == 0) {
		rc = segmem_create(&set->sm, tab, len, &err);
		free(tab);
	}
	if (rc < 0) {
		free(set);
		return rc;
	}
	sg->s[sg->n++] = set;
	*out = set;
	return 0;
}

/* ---- removal -------------------------------------------------------------- */

/* Take member `id` out: REMOVED in the table, its segments REVOKED and
 * unmapped from everyone, the others woken. Its own windows go at once
 * when it asked (detach) or is to blame (quarantine); a member removed by
 * a policy change did nothing wrong: it is woken like the others and
 * keeps its windows for the grace too. */
static void member_remove(struct chanmgr *cm, struct sg_set *set, uint32_t id,
			  const char *reason)
{
	struct sg_member *mb = &set->m[id];
	if (!mb->attached)
		return;
	const char *who = mb->cp->p->name;
	uint64_t notify = segmem_remove(&set->sm, id);
	mb->attached = false;
	if (strcmp(reason, "SET_CHANGED") == 0)
		wake(mb);
	else
		for (uint32_t s = 0; s < set->sm.nsegs; s++)
			win_unmap(mb, &mb->w[s]);
	if (mb->notify >= 0)
		close(mb->notify);
	mb->notify = -1;
	char told[200] = "notified:";
	for (uint32_t m = 0; m < set->sm.nmembers; m++) {
		if (!((notify >> m) & 1) || !set->m[m].attached)
			continue;
		wake(&set->m[m]);
		size_t at = strlen(told);
		snprintf(told + at, sizeof(told) - at, " %s",
			 set->m[m].cp->p->name);
	}
	set->grace_pending |= 1ull << id;
	set->grace_ns[id] = mono_now_ns() + SG_GRACE_NS;
	emit(cm, "seg_removed", who, set->def.name, reason, NULL, told);
	member_release(set, id);
}

/* The grace after a removal is over: its segments are unmapped from the
 * others, and cut once they all confirmed (or the deadline passed). */
static void grace_over(struct chanmgr *cm, struct sg_set *set, uint32_t id)
{
	if (!((set->grace_pending >> id) & 1))
		return;
	set->grace_pending &= ~(1ull << id);
	for (uint32_t m = 0; m < set->sm.nmembers; m++)
		if (set->m[m].attached || (m == id && set->m[m].cp))
			sync_member(cm, set, m); /* the removed one: all go */
	set->cut_pending |= 1ull << id;
	set->cut_deadline_ns[id] = unmap_deadline(cm);
	try_cut(set, id, false);
	member_release(set, id);
}

/* ---- requests ------------------------------------------------------------- */

static int refuse(struct chanmgr *cm, struct cm_part *cp, const char *set,
		  struct ctl_open_reply *r, int status, const char *file,
		  const char *detail)
{
	r->status = status;
	if (status == PARLEY_E_INTEGRITY && detail)
		snprintf(r->detail, sizeof(r->detail), "%s", detail);
	emit(cm, "seg_refused", cp->p->name, set, cm_status_name(status), file,
	     detail);
	return status;
}

static void reply_member(const struct sg_set *set, uint32_t id,
			 struct ctl_open_reply *r)
{
	const struct sg_member *mb = &set->m[id];
	r->status = PARLEY_OK;
	r->handle = mb->w[0].handle;
	r->gpa = mb->base;
	r->size = set->sm.hdr->window_size;
	r->tx = id;
	r->rx = PARLEY_CHAN_NO_QUEUE;
}

static unsigned slots_free(const struct cm_part *cp)
{
	unsigned n = 0;
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		n += !cp->slot[i] && !cp->seg_slot[i];
	return n;
}

static int res_alloc(struct cm_part *cp, uint64_t size, uint64_t *gpa)
{
	for (int i = 0; i < CM_SEGRES_MAX; i++)
		if (!cp->segres[i].size) {
			if (cm_window_alloc(cp, size, gpa) < 0)
				return -ENOSPC;
			cp->segres[i].gpa = *gpa;
			cp->segres[i].size = size;
			return i;
		}
	return -ENOSPC;
}

static int attach(struct chanmgr *cm, struct cm_part *cp, const char *name,
		  struct ctl_open_reply *r)
{
	const char *who = cp->p->name;
	if (!jv_name_valid(name, strnlen(name, PARLEY_SEGSET_NAME_MAX),
			   PARLEY_SEGSET_NAME_MAX))
		return refuse(cm, cp, name, r, PARLEY_E_INVAL, NULL, "bad name");
	if (cp->quarantined)
		return refuse(cm, cp, name, r, PARLEY_E_QUARANTINED, NULL, NULL);
	const struct segset_def *def = segset_find(&cm->grants.seg, name);
	if (!def)
		return refuse(cm, cp, name, r, PARLEY_E_NO_GRANT, NULL,
			      "no such set");
	int id = segset_member(def, who);
	if (id < 0)
		return refuse(cm, cp, name, r, PARLEY_E_NO_GRANT, NULL,
			      "not a member");
	/* Each attach re-measures every member: at most as many as opens. */
	if (!cm_open_take(cp))
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL,
			      "attaches: " CM_OPEN_LIMIT_DETAIL);
	/* Re-measured as for a channel open: a mismatch quarantines the
	 * member, which takes it out of every set it is in. */
	struct cm_verdict v;
	int st = cm_integrity(cm, cp, &v);
	if (st)
		return refuse(cm, cp, name, r, st,
			      st == PARLEY_E_INTEGRITY ? v.file : NULL,
			      v.detail);
	struct sg_set *set;
	if (set_get(cm, def, &set) < 0)
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL, "sets");
	/* The members already there are re-measured too, as a channel open
	 * re-measures the peer: one that tampered since its own attach is
	 * quarantined, which removes it (the others are told). */
	for (uint32_t m = 0; m < set->sm.nmembers; m++)
		if (m != (uint32_t)id && set->m[m].attached &&
		    set->m[m].cp != cp)
			cm_integrity(cm, set->m[m].cp, &v);
	struct sg_member *mb = &set->m[id];
	if (mb->attached) {
		if (mb->cp != cp) /* a partition of the same name before */
			return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL,
				      "member attached");
		reply_member(set, (uint32_t)id, r);
		return PARLEY_OK;
	}
	if (mb->cp) /* its windows of an earlier attach still going */
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL,
			      "still detaching");
	struct segmem_view *view = malloc(sizeof(*view));
	if (!view || segmem_view(&set->sm, (uint32_t)id, view) < 0) {
		free(view);
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL, "memory");
	}
	/* Its own segments come LIVE at the join even if revoked before. */
	unsigned need = view->n;
	for (uint32_t s = 1; s < set->sm.nsegs; s++)
		need += set->sm.seg[s].writer == (uint32_t)id &&
			set->sm.seg[s].state != PARLEY_SEG_LIVE;
	free(view);
	if (need > slots_free(cp))
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL,
			      "window slots");
	uint64_t base;
	int res = res_alloc(cp, set->sm.hdr->window_size, &base);
	if (res < 0)
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL,
			      "window space");
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	bool back = set->sm.member[id].state == PARLEY_MEMBER_REMOVED;
	if (efd < 0 || segmem_join(&set->sm, (uint32_t)id) < 0) {
		if (efd >= 0)
			close(efd);
		cp->segres[res].size = 0;
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL, "memory");
	}
	if (back) /* fresh memory for its segments (segmem_join) */
		for (uint32_t s = 1; s < set->sm.nsegs; s++)
			set->gen[s] += set->sm.seg[s].writer == (uint32_t)id;
	set->grace_pending &= ~(1ull << id);
	set->cut_pending &= ~(1ull << id);
	mb->cp = cp;
	mb->attached = true;
	mb->notify = efd;
	mb->base = base;
	mb->res = res;
	if (sync_member(cm, set, (uint32_t)id) < 0) {
		member_remove(cm, set, (uint32_t)id, "LIMIT");
		return refuse(cm, cp, name, r, PARLEY_E_LIMIT, NULL, "map");
	}
	/* The others: the table moved; a member back after removal writes
	 * into fresh memory they map now. */
	for (uint32_t m = 0; m < set->sm.nmembers; m++)
		if (m != (uint32_t)id && set->m[m].attached) {
			sync_member(cm, set, m);
			wake(&set->m[m]);
		}
	reply_member(set, (uint32_t)id, r);
	char d[64];
	snprintf(d, sizeof(d), "member %d", id);
	emit(cm, "seg_attach", who, name, NULL, NULL, d);
	return PARLEY_OK;
}

static int detach(struct chanmgr *cm, struct cm_part *cp, const char *name)
{
	struct sg_set *set = set_named(cm->seg, name);
	int id = set ? segset_member(&set->def, cp->p->name) : -1;
	if (id < 0 || !set->m[id].attached || set->m[id].cp != cp)
		return PARLEY_E_BAD_HANDLE;
	emit(cm, "seg_detach", cp->p->name, name, NULL, NULL, NULL);
	member_remove(cm, set, (uint32_t)id, "DETACHED");
	return PARLEY_OK;
}

void segmgr_on_req(struct chanmgr *cm, struct cm_part *cp,
		   const struct ctl_open_req *req, struct ctl_open_reply *r)
{
	if (req->op == CTL_OP_SEG_ATTACH)
		attach(cm, cp, req->name, r);
	else
		r->status = detach(cm, cp, req->name);
}

/* ---- the vmm's answers ---------------------------------------------------- */

bool segmgr_on_ref(struct chanmgr *cm, struct partition *p, uint32_t type,
		   const struct ctl_chan_ref *ref)
{
	struct segmgr *sg = cm->seg;
	struct cm_part *cp = cm_part_of(p);
	for (unsigned i = 0; sg && cp && i < sg->n; i++) {
		struct sg_set *set = sg->s[i];
		for (uint32_t id = 0; id < set->sm.nmembers; id++) {
			struct sg_member *mb = &set->m[id];
			if (mb->cp != cp)
				continue;
			for (uint32_t s = 0; s < set->sm.nsegs; s++) {
				struct sg_win *w = &mb->w[s];
				if ((!w->mapped && !w->unmapping) ||
				    w->id != ref->chan)
					continue;
				if (type == CTL_MAPPED && ref->status >= 0)
					return true;
				if (type == CTL_CLOSED && w->unmapping)
					return true; /* UNMAPPED answers */
				if (type == CTL_MAPPED)
					emit(cm, "fault", p->name,
					     set->def.name, "MAP_FAILED", NULL,
					     set->sm.seg[s].name);
				win_forget(mb, w);
				uint32_t writer = set->sm.seg[s].writer;
				if (writer < set->sm.nmembers)
					try_cut(set, writer, false);
				/* Wanted again meanwhile (a rejoin)? */
				if (type == CTL_UNMAPPED && mb->attached)
					sync_member(cm, set, id);
				member_release(set, id);
				return true;
			}
		}
	}
	return false;
}

/* ---- partitions going ----------------------------------------------------- */

static void remove_everywhere(struct chanmgr *cm, struct cm_part *cp,
			      const char *reason, bool vmm_gone)
{
	struct segmgr *sg = cm->seg;
	for (unsigned i = 0; sg && i < sg->n; i++) {
		struct sg_set *set = sg->s[i];
		for (uint32_t id = 0; id < set->sm.nmembers; id++) {
			struct sg_member *mb = &set->m[id];
			if (mb->cp != cp)
				continue;
			if (vmm_gone) /* its vmm holds nothing any more */
				for (uint32_t s = 0; s < set->sm.nsegs; s++)
					win_forget(mb, &mb->w[s]);
			member_remove(cm, set, id, reason);
			for (uint32_t m = 0; m < set->sm.nmembers; m++)
				try_cut(set, m, false);
			member_release(set, id);
		}
	}
}

void segmgr_gone(struct chanmgr *cm, struct cm_part *cp)
{
	remove_everywhere(cm, cp, "STOPPED", true);
}

void segmgr_quarantine(struct chanmgr *cm, struct cm_part *cp)
{
	remove_everywhere(cm, cp, "QUARANTINED", false);
}

void segmgr_policy(struct chanmgr *cm)
{
	struct segmgr *sg = cm->seg;
	for (unsigned i = 0; sg && i < sg->n; i++) {
		struct sg_set *set = sg->s[i];
		const struct segset_def *def =
			segset_find(&cm->grants.seg, set->def.name);
		if (set->dead || (def && !memcmp(def, &set->def, sizeof(*def))))
			continue;
		set->dead = true;
		for (uint32_t id = 0; id < set->sm.nmembers; id++)
			member_remove(cm, set, id, "SET_CHANGED");
	}
}

/* Removals whose unmaps were not all confirmed in time: the late vmms
 * are stopped (they may still map the memory), then it is cut. */
bool segmgr_tick(struct chanmgr *cm)
{
	struct segmgr *sg = cm->seg;
	uint64_t now = mono_now_ns();
	bool did = false;
	for (unsigned i = 0; sg && i < sg->n; i++) {
		struct sg_set *set = sg->s[i];
		for (uint32_t id = 0; id < set->sm.nmembers; id++)
			if (((set->grace_pending >> id) & 1) &&
			    now >= set->grace_ns[id]) {
				grace_over(cm, set, id);
				did = true;
			}
		for (uint32_t id = 0; id < set->sm.nmembers; id++) {
			if (!((set->cut_pending >> id) & 1) ||
			    now < set->cut_deadline_ns[id])
				continue;
			for (uint32_t m = 0; m < set->sm.nmembers; m++) {
				struct sg_member *mb = &set->m[m];
				bool late = false;
				for (uint32_t s = 0; s < set->sm.nsegs; s++)
					if (mb->w[s].unmapping &&
					    set->sm.seg[s].writer == id) {
						win_forget(mb, &mb->w[s]);
						late = true;
					}
				if (!late)
					continue;
				emit(cm, "fault", mb->cp->p->name,
				     set->def.name, "UNMAP_TIMEOUT", NULL,
				     "the vmm did not confirm the unmap in time");
				partition_fault(mb->cp->p, VMX_STOP_VMM_TIMEOUT,
						"did not confirm the unmap of "
						"segment set %s in time",
						set->def.name);
				member_release(set, m);
			}
			try_cut(set, id, true);
			did = true;
		}
	}
	if (sg)
		sets_reap(sg);
	return did;
}

void segmgr_free(struct chanmgr *cm)
{
	struct segmgr *sg = cm->seg;
	for (unsigned i = 0; sg && i < sg->n; i++)
		set_free(sg->s[i]);
	free(sg);
	cm->seg = NULL;
}
