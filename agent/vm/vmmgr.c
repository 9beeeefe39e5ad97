/* The agent's Linux VM partitions (vmmgr.h). */
#include "agent/vm/vmmgr.h"
#include "agent/vm/vmmgr_int.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <parley/hypercall.h>

#include "agent/ctl/stop.h"
#include "agent/vm/qmp.h"
#include "common/log.h"

uint64_t vm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vm_emit(struct vmmgr *m, const char *event, const char *part,
	     const char *chan, const char *reason, const char *file,
	     const char *detail)
{
	struct audit_event e = { event, part, chan, reason, file, detail };
	if (m->audit)
		audit_emit(m->audit, &e);
}

/* ---- the control port ---------------------------------------------------- */

int vm_send_frame(struct vm_part *v, uint16_t type, uint32_t seq,
		  const void *pl, size_t len)
{
	if (v->ctl < 0)
		return -EPIPE;
	int n = vmctl_encode(type, seq, pl, len, v->out, sizeof(v->out));
	if (n < 0)
		return n;
	/* A guest that does not read its port (WAKEs now come unasked, one
	 * per doorbell while its flag is set; answers to requests it never
	 * reads) must not block the agent: past VMMGR_OUTQ_MAX of unread
	 * frames, as the socket accounts them (SIOCOUTQ: with their buffers'
	 * overhead, so well below the send buffer's ~200 KiB, which then
	 * always takes one more), its frames are dropped whole. It loses
	 * only what it did not read. */
	int queued = 0;
	if (ioctl(v->ctl, SIOCOUTQ, &queued) == 0 && queued > VMMGR_OUTQ_MAX) {
		if (!v->outq_full)
			vm_emit(v->m, "vm_ctl_overflow", v->spec.name, NULL,
			     "NOT_READING", NULL, "the guest reads nothing "
			     "from its control port: frames to it dropped");
		v->outq_full = true;
		return -EAGAIN;
	}
	v->outq_full = false;
	/* Replies are small and the send buffer four times what is ever
	 * queued (ctl_take): a frame goes whole at once, never waited for. */
	ssize_t w;
	do
		w = send(v->ctl, v->out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	return w == n ? 0 : -EPIPE;
}

void vm_send_status(struct vm_part *v, uint16_t type, uint32_t seq,
		    int status, uint32_t handle)
{
	struct parley_vmctl_status st = { status, handle };
	vm_send_frame(v, type, seq, &st, sizeof(st));
}

/* ---- the monitor ----------------------------------------------------------- */


/* Commands through the agent's own monitor, pipelined (qmp.h). A monitor
 * that broke or answered late (QMP_ANSWER_MS) is a QEMU the agent cannot
 * drive: the VM is stopped (vmm-protocol), never driven through
 * libvirt's monitor, whose wait has no limit, from the agent's loop. */
int vm_mon_run(struct vm_part *v, struct qmp_cmd *c, unsigned n,
		   struct parley_err *err)
{
	if (v->mon < 0)
		return perr(err, -ENOTCONN, "VM %s: no monitor (stopped)",
			    v->spec.name);
	int rc = qmp_batch(v->mon, c, n, QMP_ANSWER_MS, err);
	if (rc) {
		char d[160];
		snprintf(d, sizeof(d), "QMP monitor: %s", err->msg);
		vm_fault(v, VMX_STOP_VMM_PROTOCOL, d);
	}
	return rc;
}

/* A long answer (query-pci, query-fdsets) through the same monitor. */
int vm_mon_long(struct vm_part *v, const char *json, char **out,
		    struct parley_err *err)
{
	*out = NULL;
	if (v->mon < 0)
		return perr(err, -ENOTCONN, "VM %s: no monitor (stopped)",
			    v->spec.name);
	int rc = qmp_call_long(v->mon, json, out, QMP_ANSWER_MS, err);
	if (rc) {
		char d[160];
		snprintf(d, sizeof(d), "QMP monitor: %s", err->msg);
		vm_fault(v, VMX_STOP_VMM_PROTOCOL, d);
	}
	return rc;
}

void vm_json_id(char *json, size_t cap, const char *execute, const char *id)
{
	snprintf(json, cap, "{\"execute\":\"%s\",\"arguments\":{\"id\":"
		 "\"%s\"}}", execute, id);
}

void vm_json_remove_fd(char *json, size_t cap, int fdset)
{
	snprintf(json, cap, "{\"execute\":\"remove-fd\",\"arguments\":"
		 "{\"fdset-id\":%d}}", fdset);
}

/* One command, no descriptor: 0 or -errno (err says QEMU's answer). */
int vm_mon_one(struct vm_part *v, const char *json, struct parley_err *err)
{
	struct qmp_cmd c = { json, -1, 0, "" };
	int rc = vm_mon_run(v, &c, 1, err);
	if (!rc && c.rc)
		rc = perr(err, c.rc, "VM %s: %.100s: %s", v->spec.name, json,
			  c.reply);
	return rc;
}

/* The VM's live end of channel `chan` (closed ones may linger while
 * their devices are unplugged, or as tombstones). */
struct vm_chan *vm_chan_by_id(struct vm_part *v, uint32_t chan)
{
	for (unsigned i = 0; i < VMMGR_CHANS; i++)
		if (v->ch[i].used && !v->ch[i].closed && v->ch[i].chan == chan)
			return &v->ch[i];
	return NULL;
}

struct vm_chan *vm_chan_by_handle(struct vm_part *v, uint32_t handle)
{
	for (unsigned i = 0; i < VMMGR_CHANS; i++)
		if (v->ch[i].used && v->ch[i].handle == handle)
			return &v->ch[i];
	return NULL;
}

/* QEMU killed outright (SIGKILL through its pidfd: a QEMU that ignores
 * SIGTERM cannot hold libvirt's destroy, and the agent's loop with it,
 * for its 10 s), then the domain destroyed. */
static void vm_kill(struct vm_part *v)
{
	struct parley_err err = { 0 };
	if (v->qemu_pidfd >= 0 &&
	    syscall(SYS_pidfd_send_signal, v->qemu_pidfd, SIGKILL, NULL, 0) < 0 &&
	    errno != ESRCH)
		log_warn("VM %s: SIGKILL: %s", v->spec.name, strerror(errno));
	if (vmhost_destroy(&v->m->host, v->spec.name, &err) && err.code != -ENOENT)
		log_warn("%s", err.msg);
}

/* The agent stops the VM for a reason of its own: recorded (the stop
 * that follows, when its port closes, carries it), audited once, its
 * monitor closed, QEMU killed. */
void vm_fault(struct vm_part *v, uint32_t reason, const char *detail)
{
	if (v->fault)
		return;
	v->fault = reason;
	snprintf(v->fault_detail, sizeof(v->fault_detail), "%s",
		 detail ? detail : vmx_stop_name(reason));
	vm_emit(v->m, "vm_fault", v->spec.name, NULL, vmx_stop_name(reason), NULL,
	     v->fault_detail);
	if (v->mon >= 0)
		close(v->mon);
	v->mon = -1;
	vm_kill(v);
}

/* The control port as the agent keeps it: its send buffer well above
 * what the agent ever queues (VMMGR_OUTQ_MAX), so a frame always goes
 * whole without waiting (send_frame never blocks), and QEMU's pidfd. */
static int ctl_take(struct vm_part *v, int ctl)
{
	int sz = 4 * VMMGR_OUTQ_MAX;
	if (setsockopt(ctl, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0 &&
	    setsockopt(ctl, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0)
		log_warn("VM %s: control port buffer: %s", v->spec.name,
			 strerror(errno));
	v->ctl = ctl;
	if (v->qemu_pidfd >= 0)
		close(v->qemu_pidfd);
	/* QEMU's (it listens on the port): -1 if the kernel cannot say */
	struct ucred uc;
	int pfd = vmhost_peer_pidfd(ctl, &uc);
	v->qemu_pidfd = pfd < 0 ? -1 : pfd;
	return 0;
}

/* ---- set-up ------------------------------------------------------------- */


int vmmgr_init(struct vmmgr *m, const char *state_dir, const char *uri,
	       struct chanmgr *cm, struct audit *audit, struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	m->cm = cm;
	m->audit = audit;
	/* This agent's mark in its devices' ids: random, not its pid (an
	 * agent restarted as PID 1 of a container would have the same pid
	 * as the one before, and take its devices for its own). */
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint32_t)vm_now_ns() ^ (uint32_t)getpid();
	m->nonce = (int)(r & 0x7fffffff) | 1;
	if (baseline_memory(&m->own_db))
		return perr(err, -ENOMEM, "guest-reported baselines");
	m->db = &m->own_db;
	int rc = vmhost_open(&m->host, state_dir, uri, err);
	if (rc)
		baseline_free(&m->own_db);
	return rc;
}

void vmmgr_set_baselines(struct vmmgr *m, struct baseline_db *db)
{
	m->db = db ? db : &m->own_db;
}

static void start_drop(struct vmmgr *m, struct vm_starting *st);

void vmmgr_free(struct vmmgr *m)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++)
		if (m->starting[i].job) {
			vmstart_cancel(m->starting[i].job);
			start_drop(m, &m->starting[i]);
		}
	for (unsigned i = 0; i < m->nvm; i++) {
		struct vm_part *v = &m->vm[i];
		if (v->ctl >= 0)
			close(v->ctl);
		if (v->mon >= 0)
			close(v->mon);
		if (v->qemu_pidfd >= 0)
			close(v->qemu_pidfd);
		for (unsigned k = 0; k < VMMGR_CHANS; k++)
			if (v->ch[k].used)
				vmplug_release(v, &v->ch[k]);
	}
	vmhost_close(&m->host);
	baseline_free(&m->own_db);
}

void vmmgr_limits_end(struct vmmgr *m)
{
	for (unsigned i = 0; i < m->nvm; i++)
		vmreq_limit_flush(m, &m->vm[i], true);
}

struct vm_part *vmmgr_find(struct vmmgr *m, const char *name)
{
	for (unsigned i = 0; i < m->nvm; i++)
		if (!strcmp(m->vm[i].spec.name, name))
			return &m->vm[i];
	return NULL;
}

static struct vm_starting *starting_named(const struct vmmgr *m,
					  const char *name)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++)
		if (m->starting[i].job &&
		    !strcmp(m->starting[i].job->spec.name, name))
			return (struct vm_starting *)&m->starting[i];
	return NULL;
}

/* A start that will not be finished: its thread joined, its domain (if
 * the thread left one: it succeeded) destroyed, the entry freed. */
static void start_drop(struct vmmgr *m, struct vm_starting *st)
{
	struct vmstart *j = st->job;
	vmstart_join(j);
	if (j->rc == 0) {
		struct parley_err e2 = { 0 };
		vmhost_destroy(&m->host, j->spec.name, &e2);
	}
	vmstart_free(j);
	st->job = NULL;
}

/* A new slot for s, its domain running and its port connected (ctl, and
 * mon or -1: both taken, closed on failure): a chanmgr endpoint. */
static int take_on(struct vmmgr *m, const struct vm_spec *s,
		   const uint8_t digest[][32], int ctl, int mon, bool adopted,
		   struct parley_err *err)
{
	/* Hot-plug goes through the agent's own monitor and nothing else
	 * (libvirt's waits without a limit): a VM without one — or whose
	 * monitor socket another uid's process is behind (QEMU owns the
	 * directory it is in and could put another VM's there) — is not
	 * taken on (the caller destroys it). */
	struct parley_err me = { 0 };
	if (mon >= 0 && vmhost_mon_check(&m->host, s->name, mon, &me)) {
		log_warn("VM %s: %s", s->name, me.msg);
		close(mon);
		mon = -1;
	}
	if (m->nvm == VMMGR_MAX || mon < 0) {
		close(ctl);
		if (mon >= 0)
			close(mon);
		return mon < 0
			? perr(err, -ENOTCONN, "VM %s: the agent's monitor "
			       "could not be opened", s->name)
			: perr(err, -ENOSPC, "more than %d VMs", VMMGR_MAX);
	}
	struct vm_part *v = &m->vm[m->nvm];
	memset(v, 0, sizeof(*v));
	v->m = m;
	v->spec = *s;
	v->ctl = ctl;
	v->mon = -1;
	vmctl_dec_init(&v->dec);
	memcpy(v->cfg_digest, digest, sizeof(v->cfg_digest));
	if (getrandom(&v->next_handle, sizeof(v->next_handle), 0) !=
	    (ssize_t)sizeof(v->next_handle))
		v->next_handle = (uint32_t)vm_now_ns();
	v->next_handle &= 0xffffff; /* far from wrapping; unlike an earlier
				     * agent's (a guest's stale handle) */
	v->qemu_pidfd = -1;
	ctl_take(v, ctl);
	v->mon = mon;
	if (adopted) {
		v->adopted = true;
		v->adopted_ns = vm_now_ns();
		vmstale_find(v); /* through the agent's own monitor */
	}
	snprintf(v->shell.name, sizeof(v->shell.name), "%s", s->name);
	v->shell.state = PART_RUNNING;
	v->shell.pidfd = v->shell.ctl = v->shell.mem_fd = -1;
	int rc = chanmgr_add_ext(m->cm, &v->shell, &vmext_ops, v);
	if (rc) {
		close(v->ctl);
		if (v->mon >= 0)
			close(v->mon);
		if (v->qemu_pidfd >= 0)
			close(v->qemu_pidfd);
		v->ctl = v->mon = v->qemu_pidfd = -1;
		return perr(err, rc, "VM %s: grant manager full", s->name);
	}
	m->nvm++;
	return 0;
}

/* A new VM whose domain runs (an agent before us started it): taken on
 * at once — its ports are there, nothing to wait for. */
static int adopt(struct vmmgr *m, const struct vm_spec *s,
		 const uint8_t digest[][32], struct parley_err *err)
{
	vm_emit(m, "vm_adopted", s->name, NULL, NULL, NULL, NULL);
	int ctl = vmhost_ctl_connect(&m->host, s->name, 5000, err);
	int rc = ctl < 0 ? ctl : 0;
	if (rc == 0) {
		/* The agent's own monitor, which QEMU still listens on. */
		char mp[PATH_MAX + 64];
		struct parley_err me = { 0 };
		vmhost_mon_path(&m->host, s->name, mp, sizeof(mp));
		int mon = qmp_open(mp, 1000, &me);
		if (mon < 0)
			log_warn("VM %s: %s", s->name, me.msg);
		rc = take_on(m, s, digest, ctl, mon < 0 ? -1 : mon, true, err);
	}
	if (rc) { /* ours, and nobody would answer it: it goes */
		struct parley_err e2 = { 0 };
		vmhost_destroy(&m->host, s->name, &e2);
	}
	return rc;
}

static int measure_cfg(const struct vm_spec *s, uint8_t digest[][32],
		       struct parley_err *err)
{
	for (unsigned i = 0; i < s->ncfg; i++) {
		int rc = vm_file_sha256(s->cfg[i].path, digest[i]);
		if (rc)
			return perr(err, rc, "VM %s: config file %s: %s",
				    s->name, s->cfg[i].path, strerror(-rc));
	}
	return 0;
}

int vmmgr_start(struct vmmgr *m, const struct vm_spec *s,
		struct parley_err *err)
{
	if (starting_named(m, s->name))
		return perr(err, -EBUSY, "VM %s is starting already", s->name);
	struct vm_part *v = vmmgr_find(m, s->name);
	if (v && !v->shell.finished)
		return perr(err, -EEXIST, "VM %s runs already", s->name);
	/* Room for it once every start in flight has its slot. */
	unsigned want = m->nvm, k = VMMGR_MAX;
	for (unsigned i = 0; i < VMMGR_MAX; i++) {
		if (!m->starting[i].job)
			k = k == VMMGR_MAX ? i : k;
		else
			want += m->starting[i].slot < 0;
	}
	if ((!v && want >= VMMGR_MAX) || k == VMMGR_MAX)
		return perr(err, -ENOSPC, "more than %d VMs", VMMGR_MAX);
	uint8_t digest[VMHOST_CFG_MAX][32] = { { 0 } };
	int rc = measure_cfg(s, digest, err);
	if (rc)
		return rc;
	if (!v) {
		int r = vmhost_running(&m->host, s->name);
		if (r < 0)
			return perr(err, r, "VM %s: cannot ask libvirt", s->name);
		if (r)
			return adopt(m, s, digest, err);
	}
	struct vm_starting *st = &m->starting[k];
	rc = vmstart_begin(&st->job, &m->host, s, err);
	if (rc)
		return rc;
	st->slot = v ? (int)(v - m->vm) : -1;
	memcpy(st->cfg_digest, digest, sizeof(digest));
	vm_emit(m, "vm_starting", s->name, NULL, NULL, NULL, NULL);
	return 1;
}

int vmmgr_start_fd(const struct vmmgr *m, const char *name)
{
	const struct vm_starting *st = starting_named(m, name);
	return st ? vmstart_fd(st->job) : -1;
}

bool vmmgr_start_done(const struct vmmgr *m, const char *name)
{
	const struct vm_starting *st = starting_named(m, name);
	return st && vmstart_done(st->job);
}

/* Stopped VM i's slot taken by its new start: the same chanmgr endpoint,
 * a new measurement (the old quarantine goes with it). */
static void restarted(struct vm_part *v, const struct vm_spec *s,
		      const uint8_t digest[][32], int ctl, int mon)
{
	v->spec = *s;
	memcpy(v->cfg_digest, digest, sizeof(v->cfg_digest));
	ctl_take(v, ctl);
	v->mon = mon;
	/* the old QEMU's verdicts, devices and slots went with it */
	v->fault = 0;
	v->fault_detail[0] = 0;
	v->digest_audits = 0;
	v->open_limit = (struct ratelimit){ 0 };
	v->nstale = 0;
	v->slots_used = 0;
	v->adopted_ns = v->stale_hello_ns = 0;
	v->adopted = v->late = false;
	vmctl_dec_init(&v->dec);
	v->shell.finished = false;
	v->shell.state = PART_RUNNING;
	memset(&v->shell.fin, 0, sizeof(v->shell.fin));
	struct cm_part *cp = v->shell.owner; /* chanmgr's record of it */
	if (cp)
		cp->quarantined = false;
}

int vmmgr_start_finish(struct vmmgr *m, const char *name_in, bool cancel,
		       struct parley_err *err)
{
	/* A copy: the caller's name may be the job's own, freed below. */
	char name[sizeof(((struct vm_spec *)0)->name)];
	snprintf(name, sizeof(name), "%s", name_in);
	struct vm_starting *st = starting_named(m, name);
	if (!st)
		return perr(err, -ENOENT, "VM %s is not starting", name);
	struct vmstart *j = st->job;
	if (cancel) {
		vmstart_cancel(j);
		start_drop(m, st); /* (a job done before it saw the cancel:
				    * its domain destroyed here) */
		vm_emit(m, "vm_start_cancelled", name, NULL, NULL, NULL,
		     "stopped while it started: its domain destroyed");
		return perr(err, -ECANCELED, "VM %s: stopped while it "
			    "started", name);
	}
	vmstart_join(j);
	int rc = j->rc;
	if (rc) {
		*err = j->err;
		vmstart_free(j);
		st->job = NULL;
		return rc;
	}
	if (j->mon < 0)
		log_warn("VM %s: %s", name, j->mon_err.msg);
	/* What it booted with is what was measured: the copies QEMU serves
	 * hashed again (a config file changed between the measurement and
	 * the copy would otherwise run unseen, and a later re-measurement
	 * of the spec's file could even match again). */
	for (unsigned i = 0; i < j->spec.ncfg; i++) {
		char cp[PATH_MAX + 128];
		uint8_t d[32];
		vmhost_boot_cfg_path(&m->host, &j->spec, i, cp, sizeof(cp));
		if (vm_file_sha256(cp, d) == 0 && !memcmp(d, st->cfg_digest[i], 32))
			continue;
		char file[sizeof(j->spec.cfg[i].name)];
		snprintf(file, sizeof(file), "%s", j->spec.cfg[i].name);
		if (j->ctl >= 0)
			close(j->ctl);
		if (j->mon >= 0)
			close(j->mon);
		j->ctl = j->mon = -1;
		start_drop(m, st); /* its domain destroyed, j freed */
		vm_emit(m, "vm_start_refused", name, NULL, "INTEGRITY", file,
		     "config file changed while the VM started: what it "
		     "would boot with is not what was measured");
		return perr(err, -EBADMSG, "VM %s: config file %s changed "
			    "while it started", name, file);
	}
	int ctl = j->ctl, mon = j->mon;
	j->ctl = j->mon = -1; /* ours now */
	struct parley_err me = { 0 };
	if (mon >= 0 && vmhost_mon_check(&m->host, name, mon, &me)) {
		log_warn("VM %s: %s", name, me.msg);
		close(mon);
		mon = -1;
	}
	if (st->slot >= 0 && mon < 0) {
		close(ctl);
		j->rc = 0; /* its domain runs: start_drop destroys it */
		start_drop(m, st);
		return perr(err, -ENOTCONN, "VM %s: the agent's monitor could "
			    "not be opened", name);
	} else if (st->slot >= 0) {
		restarted(&m->vm[st->slot], &j->spec, st->cfg_digest, ctl, mon);
	} else if ((rc = take_on(m, &j->spec, st->cfg_digest, ctl, mon, false,
				 err))) {
		j->rc = 0; /* its domain runs: start_drop destroys it */
		start_drop(m, st);
		return rc;
	}
	log_info("VM %s started in %.1f s (off the loop)", name,
		 (double)(j->ended_ns - j->begun_ns) / 1e9);
	vm_emit(m, "vm_started", name, NULL, NULL, NULL, NULL);
	vmstart_free(j);
	st->job = NULL;
	return 0;
}

int vmmgr_add(struct vmmgr *m, const struct vm_spec *s, struct parley_err *err)
{
	if (vmmgr_find(m, s->name))
		return perr(err, -EEXIST, "VM %s twice", s->name);
	int rc = vmmgr_start(m, s, err);
	if (rc == 1)
		rc = vmmgr_start_finish(m, s->name, false, err);
	return rc < 0 ? rc : 0;
}

unsigned vmmgr_fds(const struct vmmgr *m, unsigned i, int *fds, unsigned cap)
{
	const struct vm_part *v = &m->vm[i];
	unsigned n = 0;
	if (v->ctl >= 0 && n < cap)
		fds[n++] = v->ctl;
	/* Every open channel's doorbell: the guest says it waits in shared
	 * memory, not through the port. */
	for (unsigned k = 0; k < VMMGR_CHANS && n < cap; k++)
		if (v->ch[k].used && !v->ch[k].closed &&
		    v->ch[k].bell_mine >= 0 &&
		    v->ch[k].bell_dev == PARLEY_VMCTL_NO_BELL)
			fds[n++] = v->ch[k].bell_mine;
	return n;
}

/* Ours: taken on, or being started (never destroyed under its start). */
static bool keep(const char *name, void *ctx)
{
	return vmmgr_find(ctx, name) || starting_named(ctx, name);
}

int vmmgr_reconcile(struct vmmgr *m, unsigned *adopted, unsigned *destroyed,
		    struct parley_err *err)
{
	int rc = vmhost_reconcile(&m->host, keep, m, adopted, destroyed, err);
	if (*destroyed) {
		char d[64];
		snprintf(d, sizeof(d), "%u VM(s) without a spec", *destroyed);
		vm_emit(m, "vm_destroyed", NULL, NULL, "NO_SPEC", NULL, d);
	}
	return rc;
}

/* ---- requests ------------------------------------------------------------ */

/* Unplugging channel c's backends deleted if QEMU let go of them: its
 * record and slots freed, chanmgr told. */
bool vm_reclaim(struct vmmgr *m, struct vm_part *v, struct vm_chan *c)
{
	if (!c->unplugging || !vmplug_backends_gone(v, c))
		return false;
	vm_emit(m, "vm_unplugged", v->spec.name, NULL, NULL, NULL, NULL);
	vmplug_unplugged(v, c);
	chanmgr_ext_unmapped(m->cm, &v->shell, c->chan);
	return true;
}

/* A VM's work between its frames: stale devices of an earlier agent,
 * the OPEN limit's episode, doorbells rung for a guest without a bell,
 * unplugs that completed. True if it did any. */
static bool housekeep(struct vmmgr *m, struct vm_part *v)
{
	bool did = v->nstale && vmstale_gone(m, v);
	uint64_t now = vm_now_ns();
	/* (with stale devices left, vmstale_gone sweeps them when they go) */
	if (!v->nstale && v->stale_wake_left &&
	    now - v->stale_try_ns >= 50000000ull) {
		v->stale_try_ns = now;
		vmstale_wake_sweep(v);
	}
	vmreq_limit_flush(m, v, false);
	/* A backend delete per section is a monitor round trip, refused
	 * while the guest keeps its device: a round for every unplugging
	 * channel at most every 50 ms, not on every serve (a guest that
	 * never ejects would have the agent ask QEMU at its own frames'
	 * pace). An OPEN of the same channel tries at once (on_open). */
	bool try_objects = now - v->obj_try_ns >= 50000000ull;
	for (unsigned i = 0; try_objects && i < VMMGR_CHANS; i++)
		if (v->ch[i].used && v->ch[i].unplugging)
			v->obj_try_ns = now;
	for (unsigned i = 0; i < VMMGR_CHANS; i++) {
		struct vm_chan *c = &v->ch[i];
		if (!c->used)
			continue;
		uint64_t n;
		/* Rung: the peer published and saw the guest's flag. Read
		 * the flag after the doorbell, so a guest that set it before
		 * the peer looked is woken; one that cleared it (it found the
		 * message itself) is not. */
		if (!c->closed && c->bell_mine >= 0 &&
		    c->bell_dev == PARLEY_VMCTL_NO_BELL &&
		    read(c->bell_mine, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
			if (c->notified_ns) {
				m->turn_ns_last = vm_now_ns() - c->notified_ns;
				m->turns++;
				c->notified_ns = 0;
			}
			if (vm_guest_waiting(c))
				vm_wake(v, c, PARLEY_OK);
			did = true;
		}
		if (try_objects && vm_reclaim(m, v, c))
			did = true;
	}
	return did;
}

/* The control port closed: QEMU is gone (the guest powered off, or a
 * late VM touched truncated channel memory and QEMU died of SIGBUS). The
 * grant manager learns the endpoint stopped; its peers see PEER_DOWN. */
static void vm_stopped_as(struct vmmgr *m, struct vm_part *v, uint32_t reason,
			  const char *detail);

static void vm_stopped(struct vmmgr *m, struct vm_part *v)
{
	vm_stopped_as(m, v, VMX_STOP_EXIT, NULL);
}

static void vm_gone(struct vmmgr *m, struct vm_part *v)
{
	close(v->ctl);
	v->ctl = -1;
	/* The port closed, the VM runs: nothing to stop (yet: QEMU closes
	 * the port on its way out before libvirt sees the domain gone;
	 * vmmgr_reap looks again). */
	if (vmhost_running(&m->host, v->spec.name) > 0)
		return;
	vm_stopped(m, v);
}

int vmmgr_reap(struct vmmgr *m, unsigned i)
{
	struct vm_part *v = &m->vm[i];
	if (v->shell.finished)
		return 1;
	if (v->ctl >= 0 || vmhost_running(&m->host, v->spec.name) > 0)
		return 0;
	vm_stopped(m, v);
	return 1;
}

/* reason VMX_STOP_EXIT: the VM went on its own (revoked-access if it
 * was late); anything else is why the agent stopped it. */
static void vm_stopped_as(struct vmmgr *m, struct vm_part *v, uint32_t reason,
			  const char *detail)
{
	vmreq_limit_flush(m, v, true);
	bool late = v->late && reason == VMX_STOP_EXIT;
	if (reason == VMX_STOP_EXIT && v->fault && !late) {
		reason = v->fault;
		detail = v->fault_detail;
	}
	v->shell.finished = true;
	v->shell.state = PART_STOPPED;
	v->shell.fin.reason = late ? VMX_STOP_REVOKED_ACCESS : reason;
	snprintf(v->shell.fin.detail, sizeof(v->shell.fin.detail), "%s",
		 late ? "touched channel memory after its revocation deadline"
		 : detail ? detail : "the VM stopped");
	vm_emit(m, "vm_stopped", v->spec.name, NULL,
	     late ? "revoked-access"
	     : reason != VMX_STOP_EXIT ? vmx_stop_name(reason) : NULL, NULL,
	     v->shell.fin.detail);
	for (unsigned k = 0; k < VMMGR_CHANS; k++)
		if (v->ch[k].used)
			vmplug_release(v, &v->ch[k]);
	if (v->mon >= 0)
		close(v->mon);
	v->mon = -1;
	if (v->qemu_pidfd >= 0)
		close(v->qemu_pidfd);
	v->qemu_pidfd = -1;
	chanmgr_gone(m->cm, &v->shell);
}

int vmmgr_stop(struct vmmgr *m, unsigned i, uint32_t reason,
	       const char *detail)
{
	struct vm_part *v = &m->vm[i];
	if (v->shell.finished)
		return 0;
	struct parley_err err = { 0 };
	int rc = vmhost_destroy(&m->host, v->spec.name, &err);
	if (rc && rc != -ENOENT)
		return rc;
	if (v->ctl >= 0)
		close(v->ctl);
	v->ctl = -1;
	vm_stopped_as(m, v, reason, detail);
	return 0;
}

int vmmgr_restart(struct vmmgr *m, unsigned i, const struct vm_spec *s,
		  struct parley_err *err)
{
	struct vm_part *v = &m->vm[i];
	if (!v->shell.finished || strcmp(v->spec.name, s->name))
		return perr(err, -EBUSY, "VM %s is not a stopped VM here",
			    s->name);
	int rc = vmmgr_start(m, s, err);
	if (rc == 1)
		rc = vmmgr_start_finish(m, s->name, false, err);
	return rc < 0 ? rc : 0;
}

int vmmgr_serve(struct vmmgr *m, unsigned i)
{
	struct vm_part *v = &m->vm[i];
	uint8_t buf[4096];
	bool did = housekeep(m, v);
	if (v->ctl < 0)
		return -EPIPE;
	ssize_t n = recv(v->ctl, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return did ? 0 : -EAGAIN;
	if (n <= 0) {
		vm_gone(m, v);
		return -EPIPE;
	}
	for (size_t off = 0; off < (size_t)n;) {
		struct vmctl_msg msg;
		struct parley_err err = { 0 };
		size_t used;
		int rc = vmctl_dec_feed(&v->dec, buf + off, (size_t)n - off,
					&used, &msg, &err);
		off += used;
		if (rc < 0) {
			vm_emit(m, "vm_ctl_violation", v->spec.name, NULL, "EPROTO",
			     NULL, err.msg);
			close(v->ctl);
			v->ctl = -1;
			return -EPROTO;
		}
		if (rc == 1)
			vmreq_handle(m, v, &msg);
	}
	return 0;
}

/* ---- before a hand-over ---------------------------------------------------- */

int vmmgr_handover_check(struct vmmgr *m, struct parley_err *err)
{
	for (unsigned i = 0; i < m->nvm; i++) {
		struct vm_part *v = &m->vm[i];
		const struct cm_part *cp = v->shell.owner;
		if (v->shell.finished)
			continue;
		int rc = 0;
		char file[BASELINE_GUEST_PATH_MAX + 32] = "";
		if (cp && cp->quarantined) {
			rc = perr(err, -EPERM, "VM %s is quarantined, and the "
				  "new agent would take it on measured afresh",
				  v->spec.name);
		} else if (vmext_ops.verify(v, file, sizeof(file)) != 0) {
			/* As its next open would: quarantined. */
			chanmgr_quarantine(m->cm, &v->shell, file);
			rc = perr(err, -EBADMSG, "VM %s no longer matches its "
				  "measurement (%s): quarantined, and the new "
				  "agent would take it on measured afresh",
				  v->spec.name, file);
		}
		if (rc == 0)
			continue;
		vm_emit(m, "update_refused", v->spec.name, NULL,
		     rc == -EPERM ? "QUARANTINED" : "INTEGRITY",
		     file[0] ? file : NULL, err->msg);
		return rc;
	}
	return 0;
}
