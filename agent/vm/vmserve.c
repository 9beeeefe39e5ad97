/* The VMs of `parley-agent serve` (vmserve.h). */
#include "agent/vm/vmserve.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "agent/vm/vmspec.h"
#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/log.h"

#define ACTION(a) PARLEY__V1__PARTITION_COMMAND__ACTION__##a

static void emit(struct vmserve *vs, const char *event, const char *part,
		 const char *reason, const char *detail)
{
	struct audit_event e = { .event = event, .partition = part,
				 .reason = reason, .detail = detail };
	if (vs->audit)
		audit_emit(vs->audit, &e);
}

static void status(struct vmserve *vs, const char *name, const char *state,
		   const char *reason, int64_t code)
{
	if (vs->ops.status)
		vs->ops.status(vs->ops.ctx, name, state, reason, code);
}

static struct vmserve_vm *rec_named(struct vmserve *vs, const char *name)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++)
		if (vs->vm[i].used && !strcmp(vs->vm[i].name, name))
			return &vs->vm[i];
	return NULL;
}

/* A record for `name` holding a copy of its spec; NULL when full. */
static struct vmserve_vm *rec_new(struct vmserve *vs, const char *name,
				  const char *json)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++) {
		struct vmserve_vm *r = &vs->vm[i];
		if (r->used)
			continue;
		memset(r, 0, sizeof(*r));
		if (!(r->spec_json = strdup(json)))
			return NULL;
		r->vs = vs;
		r->used = true;
		r->con.rc = -1;
		snprintf(r->name, sizeof(r->name), "%s", name);
		return r;
	}
	return NULL;
}

/* The VM manager's slot of a record, or -1 (never started here). */
static int slot_of(struct vmserve *vs, const struct vmserve_vm *r)
{
	struct vm_part *v = vs->on ? vmmgr_find(&vs->m, r->name) : NULL;
	return v ? (int)(v - vs->m.vm) : -1;
}

/* ---- the kept specs ------------------------------------------------------ */

static void spec_path(const struct vmserve *vs, const char *name,
		      const char *prefix, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s%s.json", vs->spec_dir, prefix, name);
}

/* Written whole and synced before it is renamed into place, and the
 * directory synced: a crash leaves the old state or the new, and a VM
 * that runs always has its spec here (else the next start destroys it). */
static int keep_spec(struct vmserve *vs, const char *name, const char *json,
		     struct parley_err *err)
{
	char path[PATH_MAX + 80];
	spec_path(vs, name, "", path, sizeof(path));
	int rc = file_replace(path, json, strlen(json), err);
	if (rc < 0)
		return rc;
	int d = open(vs->spec_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d >= 0) {
		fsync(d);
		close(d);
	}
	return 0;
}

static void drop_spec(struct vmserve *vs, const char *name)
{
	char path[PATH_MAX + 80];
	spec_path(vs, name, "", path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("%s: %s", path, strerror(errno));
}

/* The daemon's spec, checked as vmspec_parse checks a file's but with no
 * directory of its own: kernel and initramfs only beneath --image-dir,
 * config files only beneath --config-dir (never the state dir, which
 * holds our keys). */
static int parse(struct vmserve *vs, const char *name, const char *json,
		 struct vm_spec *s, struct parley_err *err)
{
	int rc = vmspec_parse(json, strlen(json), NULL, vs->image_dirs,
			      vs->config_dirs, vm_accel_default(), s, err);
	if (rc == 0 && strcmp(s->name, name))
		rc = perr(err, -EINVAL, "spec names \"%s\", not \"%s\"",
			  s->name, name);
	return rc;
}

/* ---- events -------------------------------------------------------------- */

static void serve_one(struct vmserve_vm *r);

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serve_one(arg);
}

static void events_off(struct vmserve_vm *r)
{
	for (unsigned i = 0; i < r->nev; i++) {
		event_free(r->ev[i]);
		close(r->evfd[i]);
	}
	r->nev = 0;
}

/* The VM's descriptors change with what it waits on: made again after
 * every serve. The events watch dups of our own, removed from the loop
 * before they are closed: vmmgr closes its descriptors whenever it likes,
 * and epoll would keep watching a closed one's description (still open
 * in chanmgr) under a number that may since name another. */
static void events_on(struct vmserve *vs, struct vmserve_vm *r)
{
	events_off(r);
	int slot = slot_of(vs, r);
	if (!r->running || slot < 0)
		return;
	int fds[VMSERVE_FDS];
	unsigned n = vmmgr_fds(&vs->m, (unsigned)slot, fds, VMSERVE_FDS);
	for (unsigned i = 0; i < n; i++) {
		int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		struct event *e = fd < 0 ? NULL
			: event_new(vs->base, fd, EV_READ | EV_PERSIST, on_fd,
				    r);
		if (!e || event_add(e, NULL) < 0) {
			if (e)
				event_free(e);
			if (fd >= 0)
				close(fd);
			log_error("VM %s: no event for descriptor %d (the tick "
				  "serves it)", r->name, fds[i]);
			continue;
		}
		r->evfd[r->nev] = fd;
		r->ev[r->nev++] = e;
	}
}

/* It stopped (on its own, or stopped by us): the daemon is told why. */
static void report_stopped(struct vmserve *vs, struct vmserve_vm *r)
{
	int slot = slot_of(vs, r);
	r->running = false;
	events_off(r);
	if (slot < 0)
		return;
	vmrun_console(&vs->m.host, r->name, &r->con, vs->out);
	const struct partition *sh = &vs->m.vm[slot].shell;
	status(vs, r->name, "stopped", vmx_stop_name(sh->fin.reason),
	       r->con.rc >= 0 ? r->con.rc : 0);
}

static void serve_one(struct vmserve_vm *r)
{
	struct vmserve *vs = r->vs;
	int slot = slot_of(vs, r);
	if (!r->running || slot < 0)
		return;
	int rc;
	/* Drain: each call handles what one recv brought. */
	for (int k = 0; k < 64 && (rc = vmmgr_serve(&vs->m, (unsigned)slot))
				      == 0; k++)
		;
	if (rc == -EPROTO)
		/* vm_ctl_violation audited; a VM that cannot be spoken to
		 * any more cannot be served, nor trusted to stop. */
		vmmgr_stop(&vs->m, (unsigned)slot, VMX_STOP_VMM_PROTOCOL,
			   "its control port broke the protocol");
	if ((rc == -EPIPE || rc == -EPROTO) &&
	    vmmgr_reap(&vs->m, (unsigned)slot)) {
		report_stopped(vs, r);
		return;
	}
	events_on(vs, r);
}

/* ---- start and stop ------------------------------------------------------ */

static int open_mgr(struct vmserve *vs, struct parley_err *err)
{
	if (vs->on)
		return 0;
	int rc = vmmgr_init(&vs->m, vs->state_dir, vs->uri, vs->cm, vs->audit,
			    err);
	if (rc == 0)
		vs->on = true;
	return rc;
}

/* It runs (adopted, or its start finished): served from now on. */
static void running(struct vmserve *vs, struct vmserve_vm *r)
{
	r->running = true;
	memset(&r->con, 0, sizeof(r->con));
	r->con.rc = -1;
	events_on(vs, r);
	log_info("VM %s running", r->name);
	status(vs, r->name, "running", NULL, 0);
}

/* The files the VM manager hashed for itself must be the ones admitted
 * (a file changed in between is refused too): -EBADMSG, the VM stopped. */
static int same_files(struct vmserve *vs, struct vmserve_vm *r,
		      struct parley_err *err)
{
	struct vm_part *v = vmmgr_find(&vs->m, r->name);
	for (unsigned i = 0; v && i < r->nadmitted; i++)
		if (memcmp(v->cfg_digest[i], r->admitted[i], 32)) {
			int rc = perr(err, -EBADMSG, "VM %s: config file %s "
				      "changed while it started", r->name,
				      v->spec.cfg[i].name);
			vmmgr_stop(&vs->m, (unsigned)(v - vs->m.vm),
				   VMX_STOP_KILLED, err->msg);
			return rc;
		}
	return 0;
}

/* The key configuration files measured (to the daemon, against the
 * bundle's baseline), then the VM adopted (0: it runs) or its start begun
 * (1: in flight, off the loop). -EBADMSG: the baseline refused it. */
static int start_vm(struct vmserve *vs, struct vmserve_vm *r,
		    const struct vm_spec *s, struct parley_err *err)
{
	const char *names[VMHOST_CFG_MAX], *paths[VMHOST_CFG_MAX];
	for (unsigned i = 0; i < s->ncfg; i++) {
		names[i] = s->cfg[i].name;
		paths[i] = s->cfg[i].path;
	}
	struct measure ms;
	memset(&ms, 0, sizeof(ms));
	int rc = open_mgr(vs, err);
	if (rc == 0)
		rc = measure_host_files(&ms, names, paths, s->ncfg, err);
	if (rc == 0 && vs->ops.admit)
		rc = vs->ops.admit(vs->ops.ctx, r->name, &ms, err);
	r->nadmitted = 0;
	for (unsigned i = 0; rc == 0 && i < s->ncfg && i < VMHOST_CFG_MAX;
	     i++) {
		memcpy(r->admitted[i], ms.file[i].digest, 32);
		r->nadmitted = i + 1;
	}
	measure_free(&ms);
	if (rc == 0)
		rc = vmmgr_start(&vs->m, s, err);
	if (rc == 0) /* adopted: the same files? */
		rc = same_files(vs, r, err);
	return rc;
}

static void start_finish(struct vmserve *vs, struct vmserve_vm *r);

static void on_start_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct vmserve_vm *r = arg;
	start_finish(r->vs, r);
}

static void start_failed(struct vmserve *vs, struct vmserve_vm *r, int rc,
			 bool parsed, const struct parley_err *err)
{
	const char *why = !parsed ? "create-failed"
			  : rc == -EBADMSG ? "baseline-refused"
			  : "start-failed";
	log_error("VM %s: %s", r->name, perr_msg(err));
	emit(vs, parsed ? "vm_start_failed" : "spec_refused", r->name, why,
	     perr_msg(err));
	status(vs, r->name, "stopped", why, 0);
}

/* Start from the kept spec, reported either way ("starting" while its
 * domain starts off the loop; start_finish reports the rest). */
static void start_reported(struct vmserve *vs, struct vmserve_vm *r)
{
	struct parley_err err = { 0 };
	struct vm_spec *s = calloc(1, sizeof(*s));
	int rc = s ? parse(vs, r->name, r->spec_json, s, &err)
		   : perr(&err, -ENOMEM, "out of memory");
	bool parsed = rc == 0;
	if (rc == 0)
		rc = start_vm(vs, r, s, &err);
	free(s);
	if (rc == 0) {
		running(vs, r);
		return;
	}
	if (rc < 0) {
		start_failed(vs, r, rc, parsed, &err);
		return;
	}
	r->starting = true;
	r->then = VMS_THEN_RUN;
	int fd = vmmgr_start_fd(&vs->m, r->name);
	r->start_ev = event_new(vs->base, fd, EV_READ, on_start_done, r);
	if (!r->start_ev || event_add(r->start_ev, NULL) < 0) {
		if (r->start_ev)
			event_free(r->start_ev);
		r->start_ev = NULL;
		log_error("VM %s: no event for its start (the tick finishes "
			  "it)", r->name);
	}
	log_info("VM %s starting", r->name);
	status(vs, r->name, "starting", NULL, 0);
}

static void destroy(struct vmserve *vs, struct vmserve_vm *r);

/* Its start returned (or is cut short: the agent stops): running, or
 * failed as any start fails, or — stopped or destroyed meanwhile —
 * cancelled, its domain destroyed, and the stop or destroy done. */
static void start_finish(struct vmserve *vs, struct vmserve_vm *r)
{
	if (r->start_ev)
		event_free(r->start_ev);
	r->start_ev = NULL;
	r->starting = false;
	struct parley_err err = { 0 };
	bool cancel = r->then != VMS_THEN_RUN;
	int rc = vmmgr_start_finish(&vs->m, r->name, cancel, &err);
	if (rc == 0)
		rc = same_files(vs, r, &err);
	if (rc == 0) {
		running(vs, r);
	} else if (r->then == VMS_THEN_DESTROY) {
		destroy(vs, r);
	} else if (r->then == VMS_THEN_STOP) {
		log_info("%s", perr_msg(&err));
		status(vs, r->name, "stopped", vmx_stop_name(VMX_STOP_KILLED),
		       0);
	} else {
		start_failed(vs, r, rc, true, &err);
	}
}

static void stop_vm(struct vmserve *vs, struct vmserve_vm *r)
{
	if (r->starting) { /* done when its start returns */
		if (r->then == VMS_THEN_RUN)
			r->then = VMS_THEN_STOP;
		log_info("VM %s: stop asked while it starts: its start is "
			 "cancelled when libvirt returns", r->name);
		return;
	}
	int slot = slot_of(vs, r);
	if (!r->running || slot < 0) {
		status(vs, r->name, "stopped", NULL, 0);
		return;
	}
	int rc = vmmgr_stop(&vs->m, (unsigned)slot, VMX_STOP_KILLED,
			    "stopped by the daemon");
	if (rc) {
		log_error("VM %s: libvirt would not stop it: %s", r->name,
			  strerror(-rc));
		return;
	}
	report_stopped(vs, r);
}

/* ---- the daemon's commands ----------------------------------------------- */

/* A VM spec is kept (and the VM known here) even when it is refused: the
 * daemon's DESTROY then finds it (and each start-up reports it stopped),
 * and a START tries it again. */
static void create(struct vmserve *vs, const Parley__V1__PartitionCommand *c)
{
	struct parley_err err = { 0 };
	/* The name is a file name here (and a domain name): checked again
	 * whatever the link checked, and short enough for a VM's. */
	bool named = jv_name_valid(c->partition, strlen(c->partition),
				   sizeof(((struct vm_spec *)0)->name));
	struct vmserve_vm *r = vs->spec_dir[0] && named
		? rec_new(vs, c->partition, c->spec_json) : NULL;
	int rc = !named
		? perr(&err, -EINVAL, "not a valid VM name (at most %zu of "
		       "A-Z a-z 0-9 _ . -)",
		       sizeof(((struct vm_spec *)0)->name) - 1)
		: !vs->spec_dir[0]
		? perr(&err, -ENODEV, "this agent serves no VMs (no state "
		       "dir for their specs)")
		: r ? 0 : perr(&err, -ENOSPC, "more than %d VMs on this host",
			       VMMGR_MAX);
	if (rc == 0)
		rc = keep_spec(vs, c->partition, c->spec_json, &err);
	if (rc) {
		if (r) {
			free(r->spec_json);
			memset(r, 0, sizeof(*r));
		}
		emit(vs, "spec_refused", c->partition, "create-failed",
		     perr_msg(&err));
		status(vs, c->partition, "stopped", "create-failed", 0);
		return;
	}
	status(vs, c->partition, "created", NULL, 0);
	start_reported(vs, r);
}

static void destroy(struct vmserve *vs, struct vmserve_vm *r)
{
	if (r->starting) { /* done when its start returns */
		r->then = VMS_THEN_DESTROY;
		log_info("VM %s: destroy asked while it starts: done when "
			 "libvirt returns", r->name);
		return;
	}
	int slot = slot_of(vs, r);
	if (r->running && slot >= 0 &&
	    vmmgr_stop(&vs->m, (unsigned)slot, VMX_STOP_KILLED,
		       "destroyed by the daemon") < 0) {
		log_error("VM %s: libvirt would not destroy it", r->name);
		return;
	}
	events_off(r);
	if (r->running && slot >= 0)
		vmrun_console(&vs->m.host, r->name, &r->con, vs->out);
	drop_spec(vs, r->name);
	emit(vs, "vm_destroyed", r->name, "DESTROY", "destroyed by the daemon");
	status(vs, r->name, "destroyed", NULL, 0);
	free(r->spec_json);
	memset(r, 0, sizeof(*r)); /* the slot stays, for the name again */
}

/* A command for a VM the daemon says we run (PartitionCommand.vm) that
 * we do not have -- our state dir lost, a spec refused before this
 * version kept it: nothing of it is here, said so (a DESTROY is then
 * done, and its row can go). Not the daemon's word on a VM: a thin
 * partition's (serve's own). */
static int unknown(struct vmserve *vs, const Parley__V1__PartitionCommand *c,
		   const char *state)
{
	if (!c->vm)
		return 0;
	log_warn("VM %s: not here (no spec kept); reported %s", c->partition,
		 state);
	status(vs, c->partition, state, "no-such-vm", 0);
	return 1;
}

int vmserve_command(struct vmserve *vs, const Parley__V1__PartitionCommand *c)
{
	struct vmserve_vm *r = rec_named(vs, c->partition);
	switch (c->action) {
	case ACTION(CREATE):
		if (vmspec_is_vm(c->spec_json, strlen(c->spec_json), NULL) != 1)
			return 0; /* thin (or no spec at all: thin's parser
				   * says what is wrong with it) */
		if (r) /* a repeat after a reconnect: where it stands */
			status(vs, r->name, r->running ? "running"
			       : r->starting ? "starting" : "stopped", NULL, 0);
		else
			create(vs, c);
		return 1;
	case ACTION(START):
		if (!r)
			return unknown(vs, c, "stopped");
		if (r->running || r->starting) /* one start at a time */
			status(vs, r->name, r->running ? "running"
			       : "starting", NULL, 0);
		else
			start_reported(vs, r);
		return 1;
	case ACTION(STOP):
		if (!r)
			return unknown(vs, c, "stopped");
		stop_vm(vs, r);
		return 1;
	case ACTION(DESTROY):
		if (!r)
			return unknown(vs, c, "destroyed");
		destroy(vs, r);
		return 1;
	default:
		return 0;
	}
}

/* ---- start-up, tick, end ------------------------------------------------- */

/* "NAME.json" with a valid partition name: the name into out. Not
 * "NAME.json.tmp" (a write a crash cut short: file_replace). */
static bool spec_file_name(const char *f, char *out, size_t cap)
{
	size_t n = strlen(f);
	if (f[0] == '.' || n <= 5 || strcmp(f + n - 5, ".json") ||
	    n - 5 >= cap)
		return false;
	memcpy(out, f, n - 5);
	out[n - 5] = 0;
	return jv_name_valid(out, n - 5, cap);
}

/* The kept specs, each a record (not running yet). */
static void load_specs(struct vmserve *vs)
{
	DIR *d = opendir(vs->spec_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char name[48], path[PATH_MAX + 80];
		if (!spec_file_name(e->d_name, name, sizeof(name)))
			continue;
		spec_path(vs, name, "", path, sizeof(path));
		uint8_t *buf = NULL;
		size_t len = 0;
		struct parley_err err = { 0 };
		if (file_read_all(path, VMSERVE_SPEC_MAX, &buf, &len, &err) ||
		    memchr(buf, 0, len)) {
			log_error("VM spec %s: %s", path,
				  err.code ? perr_msg(&err) : "a NUL byte");
			free(buf);
			continue;
		}
		char *json = malloc(len + 1);
		if (json) {
			memcpy(json, buf, len);
			json[len] = 0;
			if (!rec_new(vs, name, json))
				log_error("VM %s: more than %d VMs kept", name,
					  VMMGR_MAX);
		}
		free(json);
		free(buf);
	}
	if (d)
		closedir(d);
}

/* Start-up: each kept VM whose domain runs is adopted (measured again,
 * its port connected: vmmgr_add), one whose domain is gone reported
 * stopped; then owned domains without a spec are destroyed. */
static int reconcile(struct vmserve *vs, struct parley_err *err)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++) {
		struct vmserve_vm *r = &vs->vm[i];
		if (!r->used)
			continue;
		int run = vmhost_running(&vs->m.host, r->name);
		if (run > 0)
			start_reported(vs, r);
		else
			status(vs, r->name, "stopped", run < 0 ? "start-failed"
			       : "not-running", 0);
	}
	unsigned adopted = 0, destroyed = 0;
	int rc = vmmgr_reconcile(&vs->m, &adopted, &destroyed, err);
	unsigned up = 0;
	for (unsigned i = 0; i < VMMGR_MAX; i++)
		up += vs->vm[i].used && vs->vm[i].running;
	log_info("VMs at start-up: %u adopted, %u owned without a spec "
		 "destroyed", up, destroyed);
	return rc;
}

int vmserve_init(struct vmserve *vs, struct event_base *base,
		 struct chanmgr *cm, struct audit *audit,
		 const char *state_dir, const char *uri,
		 const char *const *image_dirs,
		 const char *const *config_dirs,
		 const struct vmserve_ops *ops, FILE *out,
		 struct parley_err *err)
{
	memset(vs, 0, sizeof(*vs));
	vs->base = base;
	vs->cm = cm;
	vs->audit = audit;
	vs->state_dir = state_dir;
	vs->uri = uri;
	vs->image_dirs = image_dirs;
	vs->config_dirs = config_dirs;
	vs->ops = *ops;
	vs->out = out;
	if (snprintf(vs->spec_dir, sizeof(vs->spec_dir), "%s/vm-specs",
		     state_dir) >= (int)sizeof(vs->spec_dir))
		return perr(err, -ENAMETOOLONG, "state dir too long");
	if (mkdir(vs->spec_dir, 0700) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %s", vs->spec_dir,
			    strerror(errno));
	load_specs(vs);
	bool any = false;
	for (unsigned i = 0; i < VMMGR_MAX; i++)
		any |= vs->vm[i].used;
	char root[PATH_MAX + 16], vmdir[PATH_MAX + 16];
	snprintf(root, sizeof(root), "%s/libvirt", state_dir);
	snprintf(vmdir, sizeof(vmdir), "%s/vm", state_dir);
	/* An earlier libvirt root (or, under a system libvirtd, an earlier
	 * STATE/vm) may mean an owned domain to destroy. */
	if (!any && access(root, F_OK) != 0 && access(vmdir, F_OK) != 0)
		return 0;
	int rc = open_mgr(vs, err);
	return rc ? rc : reconcile(vs, err);
}

void vmserve_tick(struct vmserve *vs)
{
	for (unsigned i = 0; vs->on && i < VMMGR_MAX; i++) {
		struct vmserve_vm *r = &vs->vm[i];
		/* (a start without its event: finished here) */
		if (r->used && r->starting && !r->start_ev &&
		    vmmgr_start_done(&vs->m, r->name))
			start_finish(vs, r);
		if (!r->used || !r->running)
			continue;
		serve_one(r);
		if (r->running)
			vmrun_console(&vs->m.host, r->name, &r->con, vs->out);
	}
}

void vmserve_stop_all(struct vmserve *vs)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++) {
		struct vmserve_vm *r = &vs->vm[i];
		if (r->used && r->starting) {
			/* cancelled; waits for libvirt's create */
			if (r->then == VMS_THEN_RUN)
				r->then = VMS_THEN_STOP;
			start_finish(vs, r);
		}
		if (r->used && r->running)
			stop_vm(vs, r);
	}
}

void vmserve_free(struct vmserve *vs)
{
	for (unsigned i = 0; i < VMMGR_MAX; i++) {
		events_off(&vs->vm[i]);
		/* (a start still in flight: vmmgr_free cancels it) */
		if (vs->vm[i].start_ev)
			event_free(vs->vm[i].start_ev);
		vs->vm[i].start_ev = NULL;
		free(vs->vm[i].spec_json);
		vs->vm[i].spec_json = NULL;
	}
	if (vs->on)
		vmmgr_free(&vs->m);
	vs->on = false;
}
