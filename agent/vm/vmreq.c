/*
 * A VM's requests on its control port (vmmgr_int.h: vmreq_handle), each a
 * frame vmctl.c's decoder already checked: HELLO, OPEN (through the
 * VM's OPEN bucket), DIGEST (the guest's word, audited as such), NOTIFY,
 * STATE, CLOSE. What a request may touch is the VM's own channel ends
 * (by its handles) and chanmgr's decision; every answer goes back with
 * vm_send_frame, which never blocks.
 */
#include "agent/vm/vmmgr.h"
#include "agent/vm/vmmgr_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/ctl/clock.h"
#include "agent/ipc/measure.h"
#include "common/log.h"

/* An episode of LIMIT answers audited with its count (ENDED): a second
 * after it began — at the next OPEN let through or at housekeeping — and
 * when the VM stops or the agent hands over or ends (force). */
void vmreq_limit_flush(struct vmmgr *m, struct vm_part *v, bool force)
{
	if (!v->open_limit.limiting)
		return; /* (every serve comes here: no clock read first) */
	uint64_t n = rl_end(&v->open_limit, mono_now_ns(), force);
	if (!n)
		return;
	char d[96];
	snprintf(d, sizeof(d), "%llu OPEN(s) answered LIMIT, undecided",
		 (unsigned long long)n);
	vm_emit(m, "vm_open_limited", v->spec.name, NULL, "ENDED", NULL, d);
}

/* The OPEN bucket (VMMGR_OPEN_BURST, VMMGR_OPENS_PER_S): true if this
 * OPEN may go on. Refusals audited as vmmgr.h says. */
static bool open_allowed(struct vmmgr *m, struct vm_part *v)
{
	bool began;
	if (rl_take(&v->open_limit, mono_now_ns(), VMMGR_OPEN_BURST,
		    VMMGR_OPENS_PER_S, &began)) {
		vmreq_limit_flush(m, v, false);
		return true;
	}
	if (began)
		vm_emit(m, "vm_open_limited", v->spec.name, NULL, "LIMIT", NULL,
			"OPENs faster than the agent takes them: answered "
			"LIMIT");
	return false;
}

static void on_open(struct vmmgr *m, struct vm_part *v,
		    const struct vmctl_msg *msg)
{
	struct parley_vmctl_open_reply r;
	struct ctl_open_reply cr;
	struct cm_chan *ch;
	int side;
	memset(&r, 0, sizeof(r));
	if (!open_allowed(m, v)) {
		r.status = PARLEY_E_LIMIT;
		snprintf(r.detail, sizeof(r.detail), "at most %d OPENs a second",
			 VMMGR_OPENS_PER_S);
		vm_send_frame(v, PARLEY_VMCTL_OPEN_REPLY, msg->h.seq, &r, sizeof(r));
		return;
	}
	r.status = chanmgr_ext_open(m->cm, &v->shell, msg->u.open.name, &cr,
				    &ch, &side);
	struct vm_chan *c = ch ? vm_chan_by_id(v, ch->id) : NULL;
	/* The channel's last end of this VM, closed a moment ago, may still
	 * be unplugging (chanmgr then holds the end as mapped, and nothing
	 * new is plugged): freed now if QEMU has let go of it, and opened
	 * again. */
	for (unsigned i = 0; r.status == PARLEY_OK && ch && !c &&
			     i < VMMGR_CHANS; i++) {
		struct vm_chan *old = &v->ch[i];
		if (!old->used || !old->unplugging || old->chan != ch->id ||
		    !vm_reclaim(m, v, old))
			continue;
		r.status = chanmgr_ext_open(m->cm, &v->shell, msg->u.open.name,
					    &cr, &ch, &side);
		c = ch ? vm_chan_by_id(v, ch->id) : NULL;
		break;
	}
	snprintf(r.detail, sizeof(r.detail), "%s", cr.detail);
	if (r.status == PARLEY_OK && c && !c->closed) {
		r.handle = c->handle;
		r.side = (uint32_t)side;
		r.ndev = c->ndev;
		memcpy(r.dev, c->dev, sizeof(r.dev));
		r.hdr = ch->hdr;
		r.bell_dev = c->bell_dev;
		if (c->bell_dev != PARLEY_VMCTL_NO_BELL)
			memcpy(r.wake, c->wake, sizeof(r.wake));
	} else if (r.status == PARLEY_OK) {
		r.status = PARLEY_E_LIMIT;
	}
	vm_send_frame(v, PARLEY_VMCTL_OPEN_REPLY, msg->h.seq, &r, sizeof(r));
}

/* A guest-reported digest: the guest's word of a file inside it (weaker
 * than the host's measurement of its config files, and audited as such),
 * compared with its baseline like any other — enrolled at the path's
 * first report, and a later different one makes every open after it
 * INTEGRITY naming the path (ext_verify). Answered INTEGRITY at once too. */
static void on_digest(struct vmmgr *m, struct vm_part *v,
		      const struct vmctl_msg *msg)
{
	const char *path = msg->u.digest.path;
	char hex[65], detail[160];
	struct parley_err err = { 0 };
	bool enrolled = false;
	measure_hex(msg->u.digest.sha256, hex);
	int rc = baseline_guest_report(m->db, v->spec.name, path,
				       msg->u.digest.sha256, &enrolled, &err);
	int st = PARLEY_OK;
	/* The guest may report as often as it likes; the audit (hash-
	 * chained, sent on to the daemon) takes the first mismatch always
	 * and at most VMMGR_DIGEST_AUDITS reports of a VM's run in all,
	 * then says once that it stopped. */
	bool first_bad = rc == -EBADMSG && !v->guest_bad[0];
	bool audit = first_bad || v->digest_audits < VMMGR_DIGEST_AUDITS;
	if (audit)
		v->digest_audits++;
	else if (v->digest_audits++ == VMMGR_DIGEST_AUDITS)
		vm_emit(m, "guest_reported_digest", v->spec.name, NULL, "LIMIT",
		     NULL, "further reports of this VM are answered, not "
		     "audited");
	if (rc == -EBADMSG) {
		if (!v->guest_bad[0])
			snprintf(v->guest_bad, sizeof(v->guest_bad), "%s", path);
		snprintf(detail, sizeof(detail), "%s: %s (the guest's word)",
			 hex, err.msg);
		if (audit)
			vm_emit(m, "guest_digest_mismatch", v->spec.name, NULL,
			     "guest-reported", path, detail);
		st = PARLEY_E_INTEGRITY;
	} else if (rc < 0) {
		snprintf(detail, sizeof(detail), "%s: %s", hex, err.msg);
		if (audit)
			vm_emit(m, "guest_reported_digest", v->spec.name, NULL,
			     "guest-reported", path, detail);
		st = PARLEY_E_LIMIT;
	} else {
		snprintf(detail, sizeof(detail), "%s %s", hex,
			 enrolled ? "enrolled as its baseline"
				  : "matches its baseline");
		if (audit)
			vm_emit(m, "guest_reported_digest", v->spec.name, NULL,
			     "guest-reported", path, detail);
		if (enrolled && baseline_save(m->db, &err) < 0)
			log_warn("VM %s: %s", v->spec.name, err.msg);
	}
	vm_send_status(v, PARLEY_VMCTL_STATUS, msg->h.seq, st, 0);
}

/* The channel behind a handle, and the status a request on it gets. */
static int handle_state(struct vmmgr *m, struct vm_part *v, uint32_t handle,
			struct vm_chan **out, struct cm_chan **ch)
{
	int side;
	struct vm_chan *c = vm_chan_by_handle(v, handle);
	*out = c;
	*ch = NULL;
	if (!c)
		return PARLEY_E_BAD_HANDLE;
	if (c->closed)
		return PARLEY_E_CLOSED;
	*ch = chanmgr_ext_chan(m->cm, &v->shell, c->chan, c->handle, &side);
	if (!*ch || (*ch)->revoking)
		return PARLEY_E_CLOSED;
	return c->peer_gone ? PARLEY_E_PEER_DOWN : PARLEY_OK;
}

void vmreq_handle(struct vmmgr *m, struct vm_part *v,
		  const struct vmctl_msg *msg)
{
	struct vm_chan *c;
	struct cm_chan *ch;
	int st;
	switch (msg->h.type) {
	case PARLEY_VMCTL_HELLO: {
		struct parley_vmctl_hello he = { PARLEY_VMCTL_VERSION, 0 };
		vmstale_unplug(v);
		vm_send_frame(v, PARLEY_VMCTL_HELLO_REPLY, msg->h.seq, &he,
			   sizeof(he));
		return;
	}
	case PARLEY_VMCTL_OPEN:
		on_open(m, v, msg);
		return;
	case PARLEY_VMCTL_DIGEST:
		on_digest(m, v, msg);
		return;
	case PARLEY_VMCTL_NOTIFY:
		/* No answer: a guest learns of a channel that ended from its
		 * WAKE (CLOSED, PEER_DOWN) or by asking STATE. */
		st = handle_state(m, v, msg->u.handle.handle, &c, &ch);
		if (st == PARLEY_OK) {
			uint64_t one = 1;
			c->notified_ns = vm_now_ns();
			if (write(c->bell_peer, &one, sizeof(one)) < 0 &&
			    errno != EAGAIN)
				log_warn("VM %s: doorbell: %s", v->spec.name,
					 strerror(errno));
		}
		return;
	case PARLEY_VMCTL_STATE:
		st = handle_state(m, v, msg->u.handle.handle, &c, &ch);
		vm_send_status(v, PARLEY_VMCTL_STATUS, msg->h.seq, st,
			    msg->u.handle.handle);
		return;
	case PARLEY_VMCTL_CLOSE:
		st = handle_state(m, v, msg->u.handle.handle, &c, &ch);
		if (c && c->gone) {
			vmplug_release(v, c);
		} else if (c && !c->closed) {
			c->closed = true;
			vmplug_del(v, c);
			chanmgr_ext_close(m->cm, &v->shell, c->chan, c->handle);
			st = PARLEY_OK;
		}
		vm_send_status(v, PARLEY_VMCTL_STATUS, msg->h.seq,
			    st == PARLEY_E_BAD_HANDLE ? st : PARLEY_OK,
			    msg->u.handle.handle);
		return;
	}
}

