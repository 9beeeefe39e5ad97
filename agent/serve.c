#include "agent/serve.h"
#include "agent/plugin/agentset.h"
#include "agent/backend.h"
#include "agent/ipc/chanmgr.h"
#include "agent/link.h"
#include "agent/disk/keyring.h"
#include "agent/partition.h"
#include "agent/spec.h"
#include "agent/supervisor.h"
#include "agent/update/stage.h"
#include "agent/ctl/stop.h"
#include "agent/update_adopt.h"
#include "agent/update/keep.h"
#include "agent/update/rollback.h"
#include "agent/update_commit.h"
#include "agent/ctl/clock.h"
#include "common/log.h"
#include "common/hostport.h"
#include "agent/servers.h"
#include "agent/vm/vmserve.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define SERVE_PARTS_MAX 64

/* A slot of s->part: p NULL when free (a destroyed partition's, taken by
 * the next one). Slots never move: each is its ctl event's argument. */
struct serve_part {
	struct partition *p;
	struct event *ev;
	bool reported;
	char *spec_json;           /* the daemon's spec (its disks, for a
				    * rekey once it stopped) */
};

struct serve {
	struct event_base *base;
	struct chanmgr cm;
	struct audit audit;
	struct agent_link link;
	unsigned n;                /* slots in use or freed below it */
	struct serve_part part[SERVE_PARTS_MAX];
	struct event *tick, *sig[3];
	struct supervisor sup;     /* only for its console line buffering */
	struct upd_stage upd;      /* updates from partitions, to a
				    * verified stage (hand-over: run only) */
	bool upgrade_requested;    /* SIGUSR1: run between dispatches */
	struct upd_rollback rb;    /* the daemon's rollback request */
	bool link_down;            /* freed for a commit that then failed */
	char host[128];
	int port;
	char pending_stage[PATH_MAX + 16]; /* a partition's verified stage */
	/* Disk keys from the bundle (agent/disk/keyring.h), the only place
	 * this process holds them; the source partitions open disks from. */
	struct disk_keyring keys;
	struct disk_key_source key_src;
	struct plugin_set plugins; /* handed to every new vmm (agentset.h) */
	bool have_plugins;
	struct vmserve vms;        /* the daemon's Linux VMs (vmserve.h) */
};

static void report_finished(struct serve *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct serve_part *sp = &s->part[i];
		if (!sp->p || !sp->p->finished || sp->reported)
			continue;
		sp->reported = true;
		event_del(sp->ev);
		const struct ctl_finished *f = &sp->p->fin;
		log_info("partition %s stopped: %s (%s)", sp->p->name,
			 vmx_stop_name(f->reason), f->detail);
		agent_link_status_of(&s->link, sp->p, "stopped",
				     vmx_stop_name(f->reason), f->code);
		chanmgr_gone(&s->cm, sp->p);
		upd_stage_gone(&s->upd, sp->p->name);
	}
}

/* Requests deferred while the grant manager waited on some vmm are
 * handled here, after every callback and on every tick: nothing else would
 * wake for them. Only those queued when the pass starts: handling one may
 * queue more (an open waits for dirty reports), and a vmm must not keep
 * the event loop here for ever; the rest wait for the next callback. */
static void drain(struct serve *s)
{
	unsigned queued[SERVE_PARTS_MAX];
	for (unsigned i = 0; i < s->n; i++)
		queued[i] = s->part[i].p && partition_has_deferred(s->part[i].p)
				    ? s->part[i].p->ndefer : 0;
	for (unsigned i = 0; i < s->n; i++)
		for (unsigned k = 0; k < queued[i] &&
				     partition_has_deferred(s->part[i].p); k++)
			partition_handle(s->part[i].p);
	report_finished(s);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct serve_part *sp = arg;
	struct serve *s = sp->p->opts.ctx ? ((struct supervisor *)sp->p->opts.ctx)->owner : NULL;
	partition_handle(sp->p);
	if (s)
		drain(s);
}

/* Every tick: revocation deadlines and channel sections, the background
 * re-hash, and the exit status of every vmm process that has ended (a
 * vmm is killed, never waited for; it is reaped here, without blocking). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct serve *s = arg;
	chanmgr_tick(&s->cm);
	chanmgr_full_check(&s->cm, false);
	drain(s);
	for (unsigned i = 0; i < s->n; i++)
		if (s->part[i].p && s->part[i].p->finished)
			partition_reap(s->part[i].p);
	vmserve_tick(&s->vms);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct serve *s = arg;
	log_info("signal %d: stopping partitions", (int)sig);
	for (unsigned i = 0; i < s->n; i++)
		if (s->part[i].p)
			partition_stop(s->part[i].p);
	report_finished(s);
	vmserve_stop_all(&s->vms);
	event_base_loopexit(s->base, NULL);
}

static void on_request(struct partition *p, const struct ctl_msg *m,
		       void *ctx)
{
	struct serve *s = ((struct supervisor *)ctx)->owner;
	if (m->type == CTL_UPDATE_REQ)
		upd_on_request(&s->upd, p, &m->u.update_req);
	else
		chanmgr_on_request(p, m, &s->cm);
}

/* Before the first instruction (a VM: before it starts): the bundle's
 * baseline for this partition, if it has one; the measurement goes to the
 * daemon either way. */
static int admit_measure(struct serve *s, const char *name,
			 const struct measure *m, struct parley_err *err)
{
	agent_link_measurement(&s->link, name, m);
	int rc = agent_link_admit(&s->link, name, m, err);
	struct audit_event e = { .event = rc < 0 ? "baseline_refused"
						 : "baseline_ok",
				 .partition = name,
				 .detail = rc < 0 ? perr_msg(err) : NULL };
	audit_emit(&s->audit, &e);
	return rc;
}

static int admit(struct partition *p, void *ctx, struct parley_err *err)
{
	struct serve *s = ((struct supervisor *)ctx)->owner;
	return admit_measure(s, p->name, &p->measure, err);
}

static const struct serve_opts *serve_o;

/* ---- the daemon's VMs (agent/vm/vmserve.h) ------------------------------ */

static int vm_admit(void *ctx, const char *name, const struct measure *m,
		    struct parley_err *err)
{
	return admit_measure(ctx, name, m, err);
}

static void vm_status(void *ctx, const char *name, const char *state,
		      const char *reason, int64_t code)
{
	struct serve *s = ctx;
	agent_link_status(&s->link, name, "vm", state, reason, code);
}

/* After the link (its persisted bundle: the baselines VMs are admitted
 * against) and before it starts: the VMs an agent before us left running
 * are adopted or destroyed. A host whose libvirt cannot be opened still
 * serves its thin partitions (each VM command tries again). */
static void vms_up(struct serve *s)
{
	struct vmserve_ops ops = { .status = vm_status, .admit = vm_admit,
				   .ctx = s };
	struct parley_err err = { 0 };
	if (vmserve_init(&s->vms, s->base, &s->cm, &s->audit,
			 serve_o->state_dir, serve_o->libvirt_uri,
			 serve_o->image_dirs, serve_o->config_dirs, &ops,
			 stdout, &err) < 0)
		log_error("VMs: %s", perr_msg(&err));
}

/* Every disk key released to a partition's vmm or refused, audited. */
static void on_disk_key(struct partition *p, const char *disk,
			const char *event, const char *detail, void *ctx)
{
	struct serve *s = ((struct supervisor *)ctx)->owner;
	char d[400];
	snprintf(d, sizeof(d), "disk %s%s%s", disk, detail ? ": " : "",
		 detail ? detail : "");
	struct audit_event e = { .event = event, .partition = p->name,
				 .detail = d };
	audit_emit(&s->audit, &e);
}

/* A bundle's key that did not open, or one withdrawn: audited; a
 * partition whose key was withdrawn while its vmm holds it is stopped,
 * which is what wipes the key (only its vmm has it). */
static void on_key_report(void *ctx, const char *event, const char *part,
			  const char *disk, const char *detail)
{
	struct serve *s = ctx;
	char d[400];
	snprintf(d, sizeof(d), "disk %s: %s", disk, detail);
	bool rekeyed = !strcmp(event, "disk_key_rekeyed");
	struct audit_event e = { .event = event, .partition = part,
				 .reason = rekeyed ? "REKEY" : "POLICY",
				 .detail = d };
	audit_emit(&s->audit, &e);
	if (strcmp(event, "disk_key_withdrawn"))
		return;
	for (unsigned i = 0; i < s->n; i++) {
		struct partition *p = s->part[i].p;
		if (!p || strcmp(p->name, part) || !p->nkeyed || p->finished)
			continue;
		partition_stop(p);
		p->nkeyed = 0;
		struct audit_event w = { .event = "disk_key_wiped",
					 .partition = part,
					 .reason = "WITHDRAWN",
					 .detail = "key withdrawn by the daemon: "
						   "partition stopped, its vmm "
						   "and disk keys gone" };
		audit_emit(&s->audit, &w);
	}
}

/* A stopped partition whose disk has two key versions in the bundle (an
 * operator's rekey): re-encrypted now, offline (agent/disk/rekey.h);
 * the ring reports disk_key_rekeyed, after which the daemon drops the
 * old version. A running one waits: the daemon refuses a rekey then. */
static void rekey_stopped(struct serve *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct serve_part *sp = &s->part[i];
		if (!sp->p || !sp->p->finished || !sp->spec_json)
			continue;
		struct part_spec spec;
		struct parley_err err = { 0 };
		if (spec_parse_daemon(sp->spec_json, strlen(sp->spec_json),
				      &spec, &err) < 0)
			continue;
		for (unsigned k = 0; k < spec.ndisk; k++) {
			const struct part_disk_spec *d = &spec.disk[k];
			uint8_t key[CTL_DISK_KEY_BYTES];
			if (!d->encrypted || disk_keyring_versions(
				    &s->keys, spec.name, d->name) < 2)
				continue;
			if (disk_keyring_get(&s->keys, spec.name, d, key,
					     &err) < 0)
				on_key_report(s, "disk_key_rekey_failed",
					      spec.name, d->name,
					      perr_msg(&err));
			OPENSSL_cleanse(key, sizeof(key));
		}
		spec_free(&spec);
	}
}

/* The bundle in force changed (or was loaded): its disk keys replace the
 * ring's, opened with our certificate's key. */
static void load_keys(void *arg)
{
	struct serve *s = arg;
	EVP_PKEY *priv = s->link.ctx ? SSL_CTX_get0_privatekey(s->link.ctx)
				     : NULL;
	disk_keyring_load(&s->keys, s->link.policy.body, s->link.host, priv,
			  on_key_report, s);
	report_finished(s);
	rekey_stopped(s);
}

/* Every lifecycle state of a partition's devices, audited. */
static void on_device_state(struct partition *p, const char *device,
			    const char *plugin, const char *state,
			    const char *detail, void *ctx)
{
	struct serve *s = ((struct supervisor *)ctx)->owner;
	plugin_audit_state(&s->audit, p->name, device, plugin, state, detail);
}

static struct part_opts part_opts_of(struct serve *s)
{
	return (struct part_opts){
		.vmm_path = serve_o->vmm, .image_dirs = serve_o->image_dirs,
		.config_dirs = serve_o->config_dirs,
		.on_console = sup_console, .ctx = &s->sup,
		.on_measured = admit, .on_request = on_request,
		.start_paused = true, .backend = serve_o->backend,
		.disk_dirs = serve_o->disk_dirs, .keys = &s->key_src,
		.on_disk_key = on_disk_key,
		.plugins = s->have_plugins ? &s->plugins : NULL,
		.on_device_state = on_device_state,
	};
}

/* A free slot (a destroyed partition's first), or NULL: only partitions
 * here at once count against SERVE_PARTS_MAX. */
static struct serve_part *slot_free(struct serve *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!s->part[i].p)
			return &s->part[i];
	return s->n < SERVE_PARTS_MAX ? &s->part[s->n++] : NULL;
}

/* p into slot sp: its ctl on the loop, its console, its grant manager
 * record (a slot, a record and an entry were freed for each one taken,
 * so none of these can be full when the slot was not). */
static int slot_take(struct serve *s, struct serve_part *sp,
		     struct partition *p)
{
	*sp = (struct serve_part){ .p = p };
	sp->ev = event_new(s->base, p->ctl, EV_READ | EV_PERSIST, on_ctl, sp);
	int rc = sp->ev && event_add(sp->ev, NULL) == 0 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = sup_add(&s->sup, p);
	if (rc == 0 && !p->owner)
		rc = chanmgr_add(&s->cm, p);
	if (rc < 0) {
		sup_remove(&s->sup, p);
		if (sp->ev)
			event_free(sp->ev);
		*sp = (struct serve_part){ 0 };
		while (s->n && !s->part[s->n - 1].p)
			s->n--;
	}
	return rc;
}

/* The slot's partition goes: off the loop, out of the console, the grant
 * manager and memory; the slot is free. It must have finished (and been
 * reported: report_finished, which told chanmgr it is gone). */
static void slot_free_part(struct serve *s, struct serve_part *sp)
{
	struct partition *p = sp->p;
	if (sp->ev)
		event_free(sp->ev);
	chanmgr_remove(&s->cm, p);
	sup_remove(&s->sup, p);
	partition_destroy(p);
	free(sp->spec_json);
	*sp = (struct serve_part){ 0 };
	while (s->n && !s->part[s->n - 1].p)
		s->n--;
}

static int add_part(struct serve *s, const struct part_spec *spec,
		    struct parley_err *err)
{
	struct part_opts po = part_opts_of(s);
	struct partition *p = NULL;
	struct serve_part *sp = slot_free(s);
	if (!sp)
		return perr(err, -ENOSPC, "too many partitions (%d here at "
			    "once)", SERVE_PARTS_MAX);
	int rc = partition_create(spec, &po, &p, err);
	if (rc == 0 && (rc = slot_take(s, sp, p)) < 0) {
		partition_destroy(p);
		perr(err, rc, "%s: no room for it in the agent", spec->name);
	}
	if (rc < 0) {
		while (s->n && !s->part[s->n - 1].p)
			s->n--; /* the slot slot_free took, not used */
		return rc;
	}
	agent_link_status_of(&s->link, p, "created", NULL, 0);
	return 0;
}

static int start_parts(struct serve *s, const struct serve_opts *o)
{
	for (int i = 0; i < o->nspecs; i++) {
		struct part_spec spec;
		struct parley_err err = { 0 };
		int rc = spec_load(o->specs[i], &spec, &err);
		if (rc == 0) {
			rc = add_part(s, &spec, &err);
			spec_free(&spec);
		}
		if (rc < 0) {
			log_error("%s", perr_msg(&err));
			return -1;
		}
	}
	return 0;
}

/* A partition the agent before us ran (agent/update_adopt.c). */
static int adopt_part(void *ctx, struct partition *p)
{
	struct serve *s = ctx;
	struct serve_part *sp = slot_free(s);
	if (!sp)
		return -ENOSPC;
	/* (update_adopt gave it its grant manager record already) */
	return slot_take(s, sp, p);
}

static struct serve_part *part_named(struct serve *s, const char *name)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->part[i].p && !strcmp(s->part[i].p->name, name))
			return &s->part[i];
	return NULL;
}

/* Every hello lists the thin partitions held (agent/link.h: held). */
static unsigned held_names(void *ctx, const char **names, unsigned cap)
{
	struct serve *s = ctx;
	unsigned n = 0;
	for (unsigned i = 0; i < s->n && n < cap; i++)
		if (s->part[i].p)
			names[n++] = s->part[i].p->name;
	return n;
}

/* A libvirt partition on this host: its key configuration files are host
 * files its spec names; measured here, reported like any measurement (the
 * daemon enrols the first one as the baseline). */
static int measure_beside(struct serve *s, const Parley__V1__PartitionCommand *c,
			  struct parley_err *err)
{
	json_error_t je;
	json_t *spec = json_loads(c->spec_json, 0, &je), *cfg;
	if (!spec)
		return perr(err, -EINVAL, "spec of %s: %s", c->partition, je.text);
	const char *names[PARLEY_CONFIG_FILES_MAX], *paths[PARLEY_CONFIG_FILES_MAX];
	unsigned n = 0;
	size_t i;
	json_t *e;
	int rc = 0;
	cfg = json_object_get(spec, "config");
	json_array_foreach(cfg, i, e) {
		const char *nm = json_string_value(json_object_get(e, "name"));
		const char *pt = json_string_value(json_object_get(e, "path"));
		if (!nm || !pt || n == PARLEY_CONFIG_FILES_MAX || pt[0] != '/') {
			rc = perr(err, -EINVAL, "spec of %s: config[%zu] needs a "
				  "name and an absolute path", c->partition, i);
			break;
		}
		names[n] = nm;
		paths[n++] = pt;
	}
	struct measure m;
	if (rc == 0)
		rc = measure_host_files(&m, names, paths, n, err);
	if (rc == 0) {
		agent_link_measurement(&s->link, c->partition, &m);
		log_info("measured %u config files of %s", n, c->partition);
	}
	json_decref(spec);
	return rc;
}

/* A spec the daemon sent is checked like one from a file, but has no
 * directory of its own: its image and config files come only from
 * --image-dir and --config-dir (never the state dir, which holds our keys).
 * A refusal is audited: an API admin asked this host for something. */
static int create_from_daemon(struct serve *s,
			      const Parley__V1__PartitionCommand *c,
			      struct parley_err *err)
{
	struct part_spec spec;
	int rc = spec_parse_daemon(c->spec_json, strlen(c->spec_json), &spec,
				   err);
	if (rc == 0 && strcmp(spec.name, c->partition))
		rc = perr(err, -EINVAL, "spec names \"%s\", not \"%s\"",
			  spec.name, c->partition);
	if (rc == 0)
		rc = add_part(s, &spec, err);
	if (rc == 0)
		part_named(s, c->partition)->spec_json = strdup(c->spec_json);
	spec_free(&spec);
	if (rc < 0) {
		struct audit_event e = { .event = "spec_refused",
					 .partition = c->partition,
					 .detail = perr_msg(err) };
		audit_emit(&s->audit, &e);
	}
	return rc;
}

/* START of a partition that stopped (its vmm exited, a STOP): it runs
 * again from the daemon's spec kept at its CREATE, as a first start does --
 * a new vmm, measured again and admitted against its baseline (a config
 * changed since is refused here as at create, audited baseline_refused),
 * reported created, then running. Its grant manager record is replaced
 * (chanmgr_remove, chanmgr_add): channels of the old run are gone already
 * (chanmgr_gone at its stop), new opens find the new one. A quarantine of
 * the old run is lifted, audited quarantine_lifted: a new start is a new
 * measurement (as vmmgr_restart does for a VM), and the baseline check
 * just passed. Refused, the old run stays as it was (stopped, a later
 * START tries again). */
static int restart_part(struct serve *s, struct serve_part *sp,
			struct parley_err *err)
{
	report_finished(s); /* its stop told (channels gone) before it goes */
	struct partition *old = sp->p, *p = NULL;
	if (!sp->spec_json)
		return perr(err, -ENOENT, "partition %s: no spec kept to start "
			    "it again from (a local spec file's, or adopted "
			    "at a hand-over)", old->name);
	struct part_spec spec;
	int rc = spec_parse_daemon(sp->spec_json, strlen(sp->spec_json),
				   &spec, err);
	if (rc < 0)
		return rc;
	struct part_opts po = part_opts_of(s);
	rc = partition_create(&spec, &po, &p, err);
	spec_free(&spec);
	if (rc < 0)
		return rc;
	const struct cm_part *ocp = old->owner;
	bool quarantined = ocp && ocp->quarantined;
	char name[sizeof(old->name)];
	snprintf(name, sizeof(name), "%s", old->name);
	char *json = sp->spec_json;
	sp->spec_json = NULL; /* kept for the new run */
	slot_free_part(s, sp);
	/* The slot just freed is the first free one. */
	struct serve_part *nsp = slot_free(s);
	if (!nsp || (rc = slot_take(s, nsp, p)) < 0) {
		partition_destroy(p);
		free(json);
		return perr(err, rc < 0 ? rc : -ENOSPC, "partition %s: no room "
			    "for it in the agent", name);
	}
	nsp->spec_json = json;
	if (quarantined) {
		struct audit_event e = {
			.event = "quarantine_lifted", .partition = p->name,
			.reason = "RESTART",
			.detail = "started again: a new start is a new "
				  "measurement, admitted against its baseline" };
		audit_emit(&s->audit, &e);
	}
	log_info("partition %s started again", p->name);
	agent_link_status_of(&s->link, p, "created", NULL, 0);
	return 0;
}

/* DESTROY: stopped if it runs (reported stopped, its channels gone as
 * at any stop), then freed -- its slot, console entry and grant manager
 * record are the next partition's -- and reported destroyed. A CREATE of
 * its name afterwards is a new partition. */
static void destroy_part(struct serve *s, struct serve_part *sp)
{
	partition_stop(sp->p);
	report_finished(s);
	agent_link_status_of(&s->link, sp->p, "destroyed", NULL, 0);
	struct audit_event e = { .event = "partition_destroyed",
				 .partition = sp->p->name,
				 .reason = "DESTROY",
				 .detail = "destroyed by the daemon" };
	audit_emit(&s->audit, &e);
	log_info("partition %s destroyed", sp->p->name);
	slot_free_part(s, sp);
}

/* A START, STOP or DESTROY for a thin partition not here (never created,
 * destroyed, or lost with an agent before us): nothing to do, and the
 * daemon is told where it stands rather than left waiting. */
static void not_here(struct serve *s, const Parley__V1__PartitionCommand *c)
{
	bool destroy = c->action == PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY;
	log_warn("command for %s: no such partition here", c->partition);
	agent_link_status(&s->link, c->partition, NULL,
			  destroy ? "destroyed" : "stopped", "no-such-partition",
			  0);
}

/* The daemon's word on a partition: a VM's goes to vmserve, the rest is
 * a thin partition's. */
static void on_command(void *arg, const Parley__V1__PartitionCommand *c)
{
	struct serve *s = arg;
	struct parley_err err = { 0 };
	struct serve_part *sp = part_named(s, c->partition);
	const char *failed =
		c->action == PARLEY__V1__PARTITION_COMMAND__ACTION__START
			? "start-failed" : "create-failed";
	int rc = 0;
	if (!sp && vmserve_command(&s->vms, c)) {
		drain(s);
		return;
	}
	switch (c->action) {
	case PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE: {
		if (sp)
			return; /* already here: a repeat after a reconnect */
		rc = create_from_daemon(s, c, &err);
		break;
	}
	case PARLEY__V1__PARTITION_COMMAND__ACTION__START:
		if (!sp) {
			not_here(s, c);
			break;
		}
		if (sp->p->finished && !s->link.cmd_id) {
			/* A derived START (the row still "defined" when the
			 * daemon looked) repeats the one that came with its
			 * CREATE: one that ran and stopped meanwhile is not
			 * started again by it; where it stands is said. */
			agent_link_status_of(&s->link, sp->p, "stopped",
					     vmx_stop_name(sp->p->fin.reason),
					     sp->p->fin.code);
			break;
		}
		if (sp->p->finished) {
			rc = restart_part(s, sp, &err);
			sp = part_named(s, c->partition);
			if (rc == -EBADMSG)
				failed = "baseline-refused";
		}
		/* Paused until the policy is known (resume_all), as at
		 * create. */
		if (rc == 0 && sp->p->state == PART_PAUSED && s->link.ready)
			rc = partition_resume(sp->p, &err);
		if (rc == 0 && sp->p->state != PART_PAUSED)
			agent_link_status_of(&s->link, sp->p, "running",
					     NULL, 0);
		break;
	case PARLEY__V1__PARTITION_COMMAND__ACTION__MEASURE:
		rc = measure_beside(s, c, &err);
		break;
	case PARLEY__V1__PARTITION_COMMAND__ACTION__STOP:
		if (!sp)
			not_here(s, c);
		else if (sp->p->finished)
			/* where it stands: its stop was reported already */
			agent_link_status_of(&s->link, sp->p, "stopped",
					     vmx_stop_name(sp->p->fin.reason),
					     sp->p->fin.code);
		else
			partition_stop(sp->p);
		break;
	case PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY:
		if (sp)
			destroy_part(s, sp);
		else
			not_here(s, c);
		break;
	default:
		break;
	}
	if (rc < 0 && c->action == PARLEY__V1__PARTITION_COMMAND__ACTION__MEASURE) {
		struct audit_event e = { .event = "measure_failed",
					 .partition = c->partition,
					 .detail = perr_msg(&err) };
		audit_emit(&s->audit, &e);
	} else if (rc < 0) {
		log_error("command for %s: %s", c->partition, perr_msg(&err));
		if (c->action == PARLEY__V1__PARTITION_COMMAND__ACTION__START) {
			struct audit_event e = { .event = "start_failed",
						 .partition = c->partition,
						 .reason = failed,
						 .detail = perr_msg(&err) };
			audit_emit(&s->audit, &e);
		}
		agent_link_status(&s->link, c->partition, NULL, "stopped",
				  failed, 0);
	}
	drain(s);
}

/* Partitions wait, paused, until the policy is known: one that asked for a
 * channel before its grant arrived would be refused for nothing. */
static void resume_all(void *arg)
{
	struct serve *s = arg;
	for (unsigned i = 0; i < s->n; i++) {
		struct parley_err err = { 0 };
		if (!s->part[i].p || s->part[i].p->state != PART_PAUSED)
			continue;
		if (partition_resume(s->part[i].p, &err) < 0)
			log_error("%s", perr_msg(&err));
		else
			agent_link_status_of(&s->link, s->part[i].p,
					     "running", NULL, 0);
	}
}

/* ---- updating by hand-over ---------------------------------------------- */

static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct serve *s = arg;
	s->upgrade_requested = true;
	event_base_loopbreak(s->base); /* update_commit runs loop rounds */
}

/* A partition's verified stage: handed over between dispatches, once the
 * partition has its answer. */
static int commit_stage(void *ctx, const char *stage_dir,
			struct parley_err *err)
{
	struct serve *s = ctx;
	if (strlen(stage_dir) >= sizeof(s->pending_stage))
		return perr(err, -ENAMETOOLONG, "stage path too long");
	snprintf(s->pending_stage, sizeof(s->pending_stage), "%s", stage_dir);
	s->upgrade_requested = true;
	event_base_loopbreak(s->base);
	return 0;
}

/* ---- updates from the daemon ------------------------------------------- */

static void send_report(struct serve *s, const struct upd_report *r)
{
	agent_link_update_progress(&s->link, s->upd.sha256, r->state,
				   r->received, r->reason, NULL);
}

static void on_update_offer(void *arg, const Parley__V1__UpdateOffer *o)
{
	struct serve *s = arg;
	struct upd_report r;
	upd_daemon_offer(&s->upd, o->sha256.data, o->size, o->version, &r);
	/* A refusal of the offer names the offer, not what we hold. */
	agent_link_update_progress(&s->link, o->sha256.data, r.state,
				   r.received, r.reason, NULL);
}

static void on_update_chunk(void *arg, const Parley__V1__UpdateChunk *c)
{
	struct serve *s = arg;
	struct upd_report r;
	if (upd_daemon_chunk(&s->upd, c->sha256.data, c->offset, c->data.data,
			     c->data.len, &r))
		send_report(s, &r);
	drain(s);
}

/* A rollback's outcome to the daemon (no sha256: not an update's), now
 * or at the next welcome. */
static void rollback_report(struct serve *s)
{
	if (s->rb.state[0])
		s->rb.report_due = !agent_link_update_progress(
			&s->link, NULL, s->rb.state, 0, s->rb.reason, NULL);
}

/* The daemon asks for a rollback: handed over between dispatches as
 * SIGUSR1 with --update-stage STATE/update/previous would be, or
 * answered at once (agent/update/rollback.h). */
static void on_update_rollback(void *arg, const Parley__V1__UpdateRollback *m)
{
	struct serve *s = arg;
	const char *busy = upd_rollback_busy(&s->upd, s->upgrade_requested ||
					     s->pending_stage[0]);
	switch (upd_rollback_take(&s->rb, &s->audit, serve_o->state_dir,
				  m->expect_version, m->request, busy)) {
	case UPD_RB_HAND_OVER:
		s->upgrade_requested = true;
		event_base_loopbreak(s->base);
		break;
	case UPD_RB_ANSWER:
		rollback_report(s);
		break;
	case UPD_RB_NOTHING:
		break;
	}
}

/* Each welcome: the outcome the daemon is owed, if any -- the new
 * agent's "committed", or a rollback's "failed" once the link is back. */
static void on_link_welcome(void *arg)
{
	struct serve *s = arg;
	struct upd_stage *u = &s->upd;
	if (s->rb.report_due)
		rollback_report(s);
	if (!u->report_due)
		return;
	bool done = u->state == PARLEY_UPDATE_COMMITTED;
	if (agent_link_update_progress(&s->link, done ? NULL : u->sha256,
				       done ? "committed" : "failed", 0,
				       done ? "" : u->detail,
				       done ? serve_o->version : NULL))
		u->report_due = false;
}

static void serve_round(void *ctx, int max_ms)
{
	struct serve *s = ctx;
	struct timeval tv = { max_ms / 1000, (max_ms % 1000) * 1000 };
	event_base_loopexit(s->base, &tv);
	event_base_dispatch(s->base);
}

static int link_up(struct serve *s, struct parley_err *err)
{
	int rc = agent_link_init(&s->link, s->base, serve_o->state_dir,
				 s->host, s->port, &s->cm, err);
	/* The other replicas, to fail over to. */
	if (rc == 0)
		rc = agent_servers_add(&s->link, serve_o->server,
				       serve_o->state_dir, err);
	if (rc < 0)
		return rc;
	if (s->link.nservers > 1)
		log_info("%u daemon replicas to fail over between",
			 s->link.nservers);
	s->audit.sink = agent_link_audit;
	s->audit.sink_ctx = &s->link;
	s->link.on_ready = resume_all;
	s->link.on_command = on_command;
	s->link.on_update_offer = on_update_offer;
	s->link.on_update_chunk = on_update_chunk;
	s->link.on_update_rollback = on_update_rollback;
	s->link.on_welcome = on_link_welcome;
	s->link.on_policy = load_keys;
	s->link.held = held_names;
	s->link.version = serve_o->version;
	s->link.ready_ctx = s;
	load_keys(s); /* the persisted bundle's */
	return 0;
}

/* Ready came: the daemon link goes now (its audit batch into the outbox,
 * the outbox synced to disk, the connection closed), so that the new agent
 * opens the outbox after us and the daemon sees one connection at a
 * time. */
static void before_commit(void *ctx)
{
	struct serve *s = ctx;
	/* the episodes' counts, before the link goes */
	vmmgr_limits_end(&s->vms.m);
	audit_end_all(&s->audit);
	s->audit.sink = NULL;
	agent_link_free(&s->link);
	s->link_down = true;
}

static void upgrade(struct serve *s)
{
	struct parley_err err = { 0 };
	/* The daemon's rollback first: its previous/, as by SIGUSR1. */
	bool rb = s->rb.dir[0] != 0;
	bool theirs = !rb && s->pending_stage[0] != 0;
	const char *dir = rb ? s->rb.dir : theirs ? s->pending_stage
						  : serve_o->update_stage;
	if (!dir) {
		log_error("SIGUSR1: no --update-stage, nothing to update from");
		return;
	}
	/* The VMs are adopted afresh by the new agent: none may carry a
	 * verdict it would lose. */
	if ((s->vms.on && vmmgr_handover_check(&s->vms.m, &err) < 0) ||
	    upd_keep_before(&s->audit, serve_o->state_dir, dir, serve_o->vmm,
			    serve_o->version, &err) < 0) {
		if (theirs)
			upd_stage_failed(&s->upd, perr_msg(&err));
		if (rb) {
			upd_rollback_done(&s->rb, "refused", perr_msg(&err));
			rollback_report(s);
		}
		s->pending_stage[0] = 0;
		log_error("update refused, this agent (%s) serves on: %s",
			  serve_o->version, perr_msg(&err));
		return;
	}
	struct update_host h = {
		.cm = &s->cm, .argv = serve_o->argv, .version = serve_o->version,
		.out = stdout, .timeout_ms = serve_o->update_timeout_ms,
		.serve = serve_round, .before_commit = before_commit, .ctx = s,
	};
	if (update_commit(&h, dir, &err) == 0)
		update_leave();
	if (theirs)
		upd_stage_failed(&s->upd, perr_msg(&err));
	/* The daemon's update: it hears of the rollback now, or at the
	 * next welcome if the link went for the commit. */
	if (theirs && s->upd.from_daemon) {
		s->upd.report_due = true;
		on_link_welcome(s);
	}
	if (rb) {
		upd_rollback_done(&s->rb, "failed", perr_msg(&err));
		s->rb.report_due = true;
		on_link_welcome(s);
	}
	s->pending_stage[0] = 0;
	if (s->link_down) {
		/* The commit itself failed after the link went: back up. */
		struct parley_err e2 = { 0 };
		if (link_up(s, &e2) < 0)
			log_error("daemon link after the rollback: %s",
				  perr_msg(&e2));
		else
			agent_link_start(&s->link);
		s->link_down = false;
	}
	log_error("update rolled back (grant manager paused %.1f ms), this "
		  "agent (%s) serves on: %s", (double)h.pause_ns / 1e6,
		  serve_o->version, perr_msg(&err));
}

/* We are the new binary: adopt first, open the link (the outbox, the
 * persisted bundle: the policy the old agent enforced) only after the old
 * one has let go of it. */
static int adopt_all(struct serve *s, struct parley_err *err)
{
	struct update_adopt u = {
		.cm = &s->cm, .add = adopt_part, .ctx = s,
		.version = serve_o->version, .fault = serve_o->fault,
		.popts = {
			.vmm_path = serve_o->vmm, .image_dirs = serve_o->image_dirs,
			.config_dirs = serve_o->config_dirs,
			.on_console = sup_console, .ctx = &s->sup,
			.on_measured = admit, .on_request = on_request,
			.start_paused = true, .backend = serve_o->backend,
			.disk_dirs = serve_o->disk_dirs, .keys = &s->key_src,
			.on_disk_key = on_disk_key,
		},
	};
	update_adopt(serve_o->handover_fd, &u, err);
	free(u.policy);
	/* The daemon's VMs were not handed over: vms_up adopts them from
	 * libvirt, which needs the old agent gone (its control port and
	 * monitor connections, the embedded driver's root). */
	char specs[PATH_MAX];
	bool vms = snprintf(specs, sizeof(specs), "%s/vm-specs",
			    serve_o->state_dir) < (int)sizeof(specs) &&
		   access(specs, F_OK) == 0;
	if (update_old_gone(&u, vms ? 10000 : 0) < 0 && vms)
		log_error("the old agent has not exited 10 s after the commit: "
			  "adopting its VMs anyway");
	/* (serve starts new partitions from its own --vmm, which is not in
	 * the stage: the path it would get back is not needed.) */
	char vmm[1024];
	upd_keep_audited(&s->audit, serve_o->state_dir, serve_o->argv[0], vmm,
			 sizeof(vmm));
	int rc = link_up(s, err);
	double pause_ms = (double)(mono_now_ns() - u.pause_ns) / 1e6;
	char detail[512];
	snprintf(detail, sizeof(detail), "%s took over from %s: %u "
		 "partitions, grant manager paused %.1f ms%s", serve_o->version,
		 u.old_version, u.nadopted, pause_ms,
		 vms ? "; kept VMs adopted from libvirt (their guests re-open "
		       "their channels)" : "");
	struct audit_event e = { .event = "update_committed", .detail = detail };
	audit_emit(&s->audit, &e);
	s->upd.state = PARLEY_UPDATE_COMMITTED;
	s->upd.report_due = true; /* the daemon, if it sent it, learns so */
	snprintf(s->upd.detail, sizeof(s->upd.detail), "running %s",
		 serve_o->version);
	log_info("%s", detail);
	log_info("hand-over steps: state %.1f ms, adopted %.1f ms, pinged "
		 "%.1f ms, committed %.1f ms",
		 (double)(u.t_state_ns - u.pause_ns) / 1e6,
		 (double)(u.t_adopted_ns - u.pause_ns) / 1e6,
		 (double)(u.t_pinged_ns - u.pause_ns) / 1e6,
		 (double)(u.t_commit_ns - u.pause_ns) / 1e6);
	for (unsigned i = 0; i < s->n; i++)
		if (s->part[i].p &&
		    strcmp(s->part[i].p->vmm_version, u.vmm_version))
			log_info("%s still runs vmm %s until its next start",
				 s->part[i].p->name, s->part[i].p->vmm_version);
	return rc;
}

static void teardown(struct serve *s)
{
	/* while the link may still take them */
	vmmgr_limits_end(&s->vms.m);
	audit_end_all(&s->audit);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->part[i].ev)
			event_free(s->part[i].ev);
		free(s->part[i].spec_json);
	}
	sup_free(&s->sup);
	vmserve_free(&s->vms);
	chanmgr_free(&s->cm);
	plugin_set_free(&s->plugins);
	agent_link_free(&s->link);
	upd_stage_close(&s->upd);
	if (s->tick)
		event_free(s->tick);
	for (int i = 0; i < 3; i++)
		if (s->sig[i])
			event_free(s->sig[i]);
	if (s->audit.out)
		fclose(s->audit.out);
	audit_free(&s->audit);
	disk_keyring_free(&s->keys);
	event_base_free(s->base);
}

int serve_main(const struct serve_opts *o)
{
	static struct serve s;
	struct parley_err err = { 0 };
	signal(SIGPIPE, SIG_IGN);
	if (agent_servers_first(o->server, o->state_dir, s.host, sizeof(s.host),
				&s.port, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		return 2;
	}
	log_init("parley-agent", LOG_INFO);
	s.base = event_base_new();
	s.sup.out = stdout;
	s.sup.owner = &s;
	if (o->audit && !(s.audit.out = fopen(o->audit, "ae"))) {
		perror(o->audit);
		return 2;
	}
	audit_limits(&s.audit, o->audit_refusals);
	chanmgr_init(&s.cm, &s.audit);
	if (disk_keyring_init(&s.keys, &err) < 0) {
		log_error("%s", perr_msg(&err));
		return 2;
	}
	s.key_src = (struct disk_key_source){ disk_keyring_get, &s.keys };
	s.keys.dirs = o->disk_dirs;
	s.keys.report = on_key_report;
	s.keys.report_ctx = &s;
	s.cm.rehash_interval_ns = (uint64_t)(o->rehash_s * 1e9);
	if (o->backend == BACKEND_AUTO) {
		char why[160];
		backend_describe(o->backend, why, sizeof(why));
		log_info("%s", why);
	}
	if (upd_stage_open(&s.upd, o->state_dir, &s.audit, &err) < 0) {
		log_error("%s", perr_msg(&err));
		return 2;
	}
	if (plugin_set_for_agent(o->plugin_dir, &s.plugins, &s.have_plugins,
				 &err) < 0) {
		log_error("%s", perr_msg(&err));
		return 2;
	}
	s.upd.policy = &s.cm.grants;
	s.upd.commit = commit_stage;
	s.upd.commit_ctx = &s;
	serve_o = o;
	int rc = 0;
	bool linked = true;
	if (o->handover_fd >= 0 && adopt_all(&s, &err) < 0) {
		/* The partitions are ours now: served without the link. */
		log_error("daemon link: %s", perr_msg(&err));
		linked = false;
	} else if (o->handover_fd < 0) {
		if (link_up(&s, &err) < 0) {
			log_error("%s", perr_msg(&err));
			return 2;
		}
		rc = start_parts(&s, o);
	}
	if (rc == 0 && linked)
		vms_up(&s);
	if (rc == 0 && linked)
		agent_link_start(&s.link);
	s.tick = event_new(s.base, -1, EV_PERSIST, on_tick, &s);
	struct timeval tv = { 0, 100000 };
	event_add(s.tick, &tv);
	s.sig[0] = evsignal_new(s.base, SIGTERM, on_signal, &s);
	s.sig[1] = evsignal_new(s.base, SIGINT, on_signal, &s);
	s.sig[2] = evsignal_new(s.base, SIGUSR1, on_usr1, &s);
	event_add(s.sig[0], NULL);
	event_add(s.sig[1], NULL);
	event_add(s.sig[2], NULL);
	while (rc == 0) {
		event_base_dispatch(s.base);
		if (!s.upgrade_requested)
			break;
		s.upgrade_requested = false;
		upgrade(&s);
	}
	teardown(&s);
	return rc < 0 ? 2 : 0;
}
