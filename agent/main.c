/*
 * parley-agent: the per-host grant manager.
 *
 *   parley-agent run [options] SPEC...       run partitions from spec files
 *   parley-agent restore [options] SNAP...   resume saved partitions
 *
 * Snapshots are tagged with HMAC-SHA256 under a key this agent holds:
 * --snapshot-key FILE, else snapshot.key in the --snapshot-dir (run creates
 * it, 0600, from getrandom() when missing) or beside the first snapshot
 * (restore never creates one). restore needs --baselines: a restored
 * partition is checked against its stored baseline and never enrolled.
 *
 * Standalone mode (no daemon): grants come from --policy FILE (re-read on
 * SIGHUP: channels whose grant went away are revoked), baselines from
 * --baselines FILE (--baseline-mode enroll|golden), decisions go to
 * --audit FILE as JSON lines.
 *
 * Updating by hand-over (agent/update_commit.h): with --update-stage DIR,
 * SIGUSR1 starts DIR/parley-agent beside this one, hands it every running
 * partition and leaves once it serves, or rolls back and goes on.
 */
#include "agent/backend.h"
#include "agent/cli.h"
#include "agent/ipc/audit.h"
#include "agent/ipc/baseline.h"
#include "agent/ipc/chanmgr.h"
#include "agent/backend.h"
#include "agent/snapshot.h"
#include "agent/join.h"
#include "agent/partition.h"
#include "agent/serve.h"
#include "agent/plugin/agentset.h"
#include "agent/spec.h"
#include "agent/supervisor.h"
#include "agent/update/stage.h"
#include "agent/update/keep.h"
#include "agent/update_commit.h"
#include "common/fileio.h"
#include "common/version.h"
#include "agent/vmm_jail.h"
#include "agent/vm/vmhost.h"
#include "agent/vm/vmrun.h"
#include "agent/vm/vmspec.h"
#include "agent/update_adopt.h"
#include "agent/update_commit.h"
#include "agent/ctl/clock.h"
#include "common/grant.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/resource.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agent {
	struct agent_cli cli;
	struct supervisor sup;
	struct plugin_set plugins;   /* handed to every vmm (agentset.h) */
	struct chanmgr cm;
	struct audit audit;
	struct baseline_db db;
	bool have_db;
	struct snap_key key;
	bool have_key;
	bool restore;               /* partition names come from snapshots */
	struct upd_stage upd;       /* updates from partitions (--state-dir) */
	char pending_stage[PATH_MAX + 16]; /* theirs, to hand over next */
	const char *names[SUP_MAX + 1];
	uint8_t *policy;            /* the policy document in force: */
	size_t policy_len;          /* handed over as it is */
	char **argv;                /* ours: the new binary gets the same */
	int handover_fd;            /* we are the new binary: -1 otherwise */
	enum update_fault fault;    /* test builds only */
	struct vm_spec vm_specs[VMMGR_MAX]; /* run's VM specs (vmspec.h) */
	unsigned nvm;
	struct vmrun vms;
};

/* The version this agent reports and hands over. A test build of the
 * "next" agent (parley-agent-next, tests only) says it is newer. */
static const char *agent_version(void)
{
#ifdef PARLEY_AGENT_TEST_NEXT
	static char v[64];
	snprintf(v, sizeof(v), "%s+next", parley_version());
	return v;
#else
	return parley_version();
#endif
}

/* Before a partition's first instruction: its measurement against the
 * baseline file, if there is one. */
static int admit(struct partition *p, void *ctx, struct parley_err *err)
{
	struct agent *a = ((struct supervisor *)ctx)->owner;
	if (!a->have_db)
		return 0;
	int rc = baseline_admit(&a->db, p->name, &p->measure, err);
	/* A mismatch (-EBADMSG: a file, segment or plugin differs) is an
	 * integrity failure. */
	struct audit_event e = { .event = rc < 0 ? "baseline_refused"
						   : "baseline_ok",
				 .partition = p->name,
				 .reason = rc == -EBADMSG ? "INTEGRITY" : NULL,
				 .detail = rc < 0 ? perr_msg(err) : NULL };
	audit_emit(&a->audit, &e);
	return rc;
}

/* Every disk key released to a partition's vmm or refused, audited. */
static void on_disk_key(struct partition *p, const char *disk,
			const char *event, const char *detail, void *ctx)
{
	struct agent *a = ((struct supervisor *)ctx)->owner;
	char d[400];
	snprintf(d, sizeof(d), "disk %s%s%s", disk, detail ? ": " : "",
		 detail ? detail : "");
	struct audit_event e = { .event = event, .partition = p->name,
				 .detail = d };
	audit_emit(&a->audit, &e);
}

/* Every lifecycle state of a partition's devices, audited. */
static void on_device_state(struct partition *p, const char *device,
			    const char *plugin, const char *state,
			    const char *detail, void *ctx)
{
	struct agent *a = ((struct supervisor *)ctx)->owner;
	plugin_audit_state(&a->audit, p->name, device, plugin, state, detail);
}

static void on_request(struct partition *p, const struct ctl_msg *m,
		       void *ctx)
{
	struct agent *a = ((struct supervisor *)ctx)->owner;
	if (m->type == CTL_UPDATE_REQ)
		upd_on_request(&a->upd, p, &m->u.update_req);
	else
		chanmgr_on_request(p, m, &a->cm);
}

/* A partition's verified stage: handed over from the loop (on_upgrade),
 * once the partition has its answer. */
static int commit_stage(void *ctx, const char *stage_dir,
			struct parley_err *err)
{
	struct agent *a = ctx;
	if (strlen(stage_dir) >= sizeof(a->pending_stage))
		return perr(err, -ENAMETOOLONG, "stage path too long");
	snprintf(a->pending_stage, sizeof(a->pending_stage), "%s", stage_dir);
	a->sup.upgrade_requested = true;
	return 0;
}

/* --state-dir: where updates from partitions are staged; without it a
 * partition's update requests get NOSYS. */
static int open_updates(struct agent *a, struct parley_err *err)
{
	if (!a->cli.state_dir) {
		upd_stage_none(&a->upd, &a->audit);
		a->upd.policy = &a->cm.grants;
		return 0;
	}
	int rc = upd_stage_open(&a->upd, a->cli.state_dir, &a->audit, err);
	a->upd.policy = &a->cm.grants;
	if (rc == 0) {
		a->upd.commit = commit_stage;
		a->upd.commit_ctx = a;
	}
	return rc;
}

static int load_policy(struct agent *a, struct parley_err *err)
{
	if (!a->cli.policy)
		return 0;
	struct grant_set g;
	uint8_t *buf;
	size_t len;
	/* Grants may name only partitions given on the command line; when
	 * restoring, those names are only known once the snapshots are read.
	 * The bytes are kept: a hand-over passes exactly what is in force. */
	int rc = file_read_all(a->cli.policy, GRANT_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = grant_set_parse((const char *)buf, len,
			     a->restore ? NULL : a->names, &g, err);
	if (rc < 0) {
		free(buf);
		return perr_prefix(err, "%s", a->cli.policy), rc;
	}
	chanmgr_set_grants(&a->cm, &g);
	free(a->policy);
	a->policy = buf;
	a->policy_len = len;
	return 0;
}

static void on_reload(void *ctx)
{
	struct agent *a = ctx;
	struct parley_err err = { 0 };
	if (load_policy(a, &err) < 0)
		fprintf(stderr, "parley-agent: policy not reloaded, the old "
				"one stays: %s\n", perr_msg(&err));
	else
		fprintf(stderr, "parley-agent: policy reloaded\n");
}

/* Where the snapshot key lives: --snapshot-key, else beside the snapshots
 * (the --snapshot-dir of run, the first snapshot's directory for restore).
 * NULL when run saves no snapshots. */
static const char *key_path(const struct agent *a, int restore, char **args,
			    char *buf, size_t cap)
{
	if (a->cli.snapshot_key)
		return a->cli.snapshot_key;
	const char *dir = restore ? NULL : a->cli.snapshot_dir;
	char copy[4096];
	if (restore) {
		snprintf(copy, sizeof(copy), "%s", args[0]);
		dir = dirname(copy);
	}
	if (!dir || path_join(buf, cap, dir, SNAP_KEY_FILE) < 0)
		return NULL;
	return buf;
}

static int load_key(struct agent *a, int restore, char **args,
		    struct parley_err *err)
{
	char buf[4096];
	const char *path = key_path(a, restore, args, buf, sizeof(buf));
	if (!path)
		return 0;
	/* restore never makes a key: a new one checks no old snapshot. */
	int rc = snap_key_load(path, !restore, &a->key, err);
	a->have_key = rc == 0;
	return rc;
}

/* A restored partition is measured against the baseline stored for it,
 * which restore never writes: golden whatever --baseline-mode says. */
static int restore_checks(struct agent *a, int n)
{
	if (!a->cli.baselines) {
		fprintf(stderr, "parley-agent restore: --baselines FILE is "
				"required: a restored partition is checked "
				"against its stored baseline, never enrolled "
				"from the snapshot\n");
		return -1;
	}
	if (a->cli.name && n != 1) {
		fprintf(stderr, "parley-agent restore: --name takes one "
				"snapshot\n");
		return -1;
	}
	if (a->cli.spec && n != 1) {
		fprintf(stderr, "parley-agent restore: --spec takes one "
				"snapshot\n");
		return -1;
	}
	a->cli.mode = BASELINE_GOLDEN;
	return 0;
}

static int setup(struct agent *a, int restore, char **args, int n,
		 struct part_spec *specs, int *nthin)
{
	struct parley_err err = { 0 };
	if (a->cli.audit && !(a->audit.out = fopen(a->cli.audit, "ae"))) {
		perror(a->cli.audit);
		return -1;
	}
	audit_limits(&a->audit, a->cli.audit_refusals);
	chanmgr_init(&a->cm, &a->audit);
	a->cm.rehash_interval_ns = (uint64_t)(a->cli.rehash_s * 1e9);
	if (a->cli.backend == BACKEND_AUTO) {
		char why[160];
		backend_describe(a->cli.backend, why, sizeof(why));
		fprintf(stderr, "parley-agent: %s\n", why);
	}
	int bad = restore && restore_checks(a, n) < 0;
	if (!bad && open_updates(a, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		bad = 1;
	}
	if (!bad && load_key(a, restore, args, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		bad = 1;
	}
	/* Thin specs compacted into specs[0..*nthin), VM specs (kind "vm")
	 * into a->vm_specs. */
	*nthin = restore ? n : 0;
	/* restore --spec: the partition's disks come from its spec (checked
	 * against the snapshot's name when it is read). */
	if (!bad && restore && a->cli.spec &&
	    spec_load(a->cli.spec, &specs[0], &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		bad = 1;
	}
	for (int i = 0; !bad && !restore && i < n; i++) {
		int vm = vmspec_file_is_vm(args[i], &err);
		if (vm == 1 && a->nvm == VMMGR_MAX) {
			perr(&err, -E2BIG, "%s: more than %d VMs", args[i],
			     VMMGR_MAX);
			vm = -E2BIG;
		}
		if (vm == 1)
			vm = vmspec_load(args[i], a->cli.image_dirs,
					 a->cli.config_dirs, vm_accel_default(),
					 &a->vm_specs[a->nvm], &err) ?: 1;
		if (vm == 1 && !a->cli.state_dir)
			vm = perr(&err, -EINVAL, "%s: a VM needs --state-dir "
				  "(its libvirt root, control sockets and "
				  "console)", args[i]);
		if (vm < 0) {
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
			bad = 1;
			continue;
		}
		if (vm == 1) {
			a->nvm++;
			continue;
		}
		if (spec_load(args[i], &specs[*nthin], &err) < 0) {
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
			bad = 1;
			continue;
		}
		a->names[*nthin] = specs[*nthin].name;
		(*nthin)++;
	}
	/* The VMs are endpoints of the policy's grants too; one name, one
	 * endpoint. */
	for (unsigned k = 0; !bad && k < a->nvm; k++) {
		for (int j = 0; j < *nthin + (int)k; j++)
			if (!strcmp(a->names[j], a->vm_specs[k].name)) {
				fprintf(stderr, "parley-agent: two partitions "
					"named %s\n", a->vm_specs[k].name);
				bad = 1;
			}
		a->names[*nthin + (int)k] = a->vm_specs[k].name;
	}
	if (!bad && a->handover_fd < 0 && load_policy(a, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		bad = 1;
	}
	if (!bad && a->cli.baselines) {
		if (baseline_load(&a->db, a->cli.baselines, a->cli.mode,
				  &err) < 0) {
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
			bad = 1;
		}
		a->have_db = !bad;
	}
	return bad ? -1 : 0;
}

/* Every spec is checked before any partition starts, and all start paused
 * so that peers exist when the first one opens a channel. */
static int start_all(struct agent *a, int restore, char **args, int n,
		     const struct part_spec *specs)
{
	struct part_opts o = {
		.vmm_path = a->cli.vmm, .image_dirs = a->cli.image_dirs,
		.config_dirs = a->cli.config_dirs, .on_console = sup_console, .ctx = &a->sup,
		.on_measured = admit, .on_request = on_request,
		.disk_dirs = a->cli.ndisk_dirs ? a->cli.disk_dirs : NULL,
		.on_disk_key = on_disk_key,
		.start_paused = true, .backend = a->cli.backend,
		.snap_key = a->have_key ? &a->key : NULL,
		.on_device_state = on_device_state,
	};
	struct parley_err perr_ = { 0 };
	bool have = false;
	if (plugin_set_for_agent(a->cli.plugin_dir, &a->plugins, &have,
				 &perr_) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&perr_));
		return -1;
	}
	o.plugins = have ? &a->plugins : NULL;
	o.restore_spec = restore && a->cli.spec ? &specs[0] : NULL;
	int bad = 0;
	for (int i = 0; !bad && i < n; i++) {
		struct parley_err err = { 0 };
		struct partition *p = NULL;
		int rc = restore ? partition_restore(args[i], a->cli.name, &o,
						     &p, &err)
				 : partition_create(&specs[i], &o, &p, &err);
		if (rc < 0) {
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
			bad = 1;
			break;
		}
		sup_add(&a->sup, p);
		chanmgr_add(&a->cm, p);
	}
	struct parley_err err = { 0 };
	if (a->have_db && baseline_save(&a->db, &err) < 0)
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
	/* The VMs before any thin partition runs: a thin partition's first
	 * open finds its VM peer registered. */
	if (!bad && a->nvm &&
	    vmrun_start(&a->vms, a->cli.state_dir, a->cli.libvirt_uri, &a->cm,
			&a->audit, a->have_db ? &a->db : NULL, a->vm_specs, a->nvm,
			stdout, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		bad = 1;
	}
	for (unsigned i = 0; !bad && i < a->sup.n; i++)
		if (partition_resume(a->sup.e[i].p, &err) < 0)
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
	return bad ? -1 : 0;
}

static unsigned vms_fds(void *ctx, int *fds, unsigned cap)
{
	return vmrun_fds(&((struct agent *)ctx)->vms, fds, cap);
}

static void vms_serve(void *ctx)
{
	vmrun_serve(&((struct agent *)ctx)->vms);
}

static unsigned vms_live(void *ctx)
{
	return vmrun_live(&((struct agent *)ctx)->vms);
}

static void vms_stop(void *ctx)
{
	vmrun_stop(&((struct agent *)ctx)->vms);
}

static void on_gone(struct partition *p, void *ctx)
{
	chanmgr_gone(&((struct agent *)ctx)->cm, p);
	upd_stage_gone(&((struct agent *)ctx)->upd, p->name);
}

static bool on_tick(void *ctx)
{
	struct chanmgr *cm = &((struct agent *)ctx)->cm;
	bool did = chanmgr_tick(cm);
	return chanmgr_full_check(cm, false) || did;
}

/* ---- updating by hand-over -------------------------------------------- */

static void serve_round(void *ctx, int max_ms)
{
	sup_step(&((struct agent *)ctx)->sup, -1, max_ms);
}

/* Our VMs' consoles printed up to now: the new agent streams each from
 * where the file ends when it adopts the VM (vmrun.h). */
static void before_commit(void *ctx)
{
	struct agent *a = ctx;
	vmrun_console_all(&a->vms);
	/* the new agent knows nothing of these episodes: their counts now */
	vmmgr_limits_end(&a->vms.m);
	audit_end_all(&a->audit);
}

static void on_upgrade(void *ctx)
{
	struct agent *a = ctx;
	struct parley_err err = { 0 };
	bool theirs = a->pending_stage[0] != 0;
	const char *dir = theirs ? a->pending_stage : a->cli.update_stage;
	if (!dir) {
		fprintf(stderr, "parley-agent: SIGUSR1: no --update-stage, "
				"nothing to update from\n");
		return;
	}
	/* The VMs are adopted afresh by the new agent: none may carry a
	 * verdict it would lose. */
	if ((a->vms.on && vmmgr_handover_check(&a->vms.m, &err) < 0) ||
	    upd_keep_before(&a->audit, a->cli.state_dir, dir, a->cli.vmm,
			    agent_version(), &err) < 0) {
		if (theirs)
			upd_stage_failed(&a->upd, perr_msg(&err));
		a->pending_stage[0] = 0;
		fprintf(stderr, "parley-agent: update refused, this agent (%s) "
				"serves on: %s\n", agent_version(), perr_msg(&err));
		return;
	}
	struct update_host h = {
		.cm = &a->cm, .policy = a->policy, .policy_len = a->policy_len,
		.argv = a->argv, .version = agent_version(), .out = stdout,
		.timeout_ms = (int)(a->cli.update_timeout_s * 1000),
		.serve = serve_round, .before_commit = before_commit,
		.ctx = a,
	};
	if (update_commit(&h, dir, &err) == 0)
		update_leave();
	if (theirs)
		upd_stage_failed(&a->upd, perr_msg(&err));
	a->pending_stage[0] = 0;
	fprintf(stderr, "parley-agent: update rolled back (grant manager "
			"paused %.1f ms), this agent (%s) serves on: %s\n",
		(double)h.pause_ns / 1e6, agent_version(), perr_msg(&err));
}

static int add_adopted(void *ctx, struct partition *p)
{
	return sup_add(&((struct agent *)ctx)->sup, p);
}

/* The VMs of our command line, after the hand-over's commit: the old
 * agent passed none (their QEMUs outlive it); each is adopted from
 * libvirt as after a restart (vmmgr_add finds its domain running:
 * `vm_adopted`, the old agent's section devices unplugged at the guest's
 * next HELLO) once the old agent has exited, and its guest re-opens its
 * channels. `said` gets what the hand-over's audit adds. */
static void adopt_vms(struct agent *a, struct update_adopt *u, char *said,
		      size_t cap)
{
	said[0] = 0;
	if (!a->nvm) {
		update_old_gone(u, 0);
		return;
	}
	if (update_old_gone(u, 10000) < 0)
		fprintf(stderr, "parley-agent: the old agent has not exited "
				"10 s after the commit: adopting its VMs "
				"anyway\n");
	struct parley_err err = { 0 };
	int rc = vmrun_start(&a->vms, a->cli.state_dir, a->cli.libvirt_uri,
			     &a->cm, &a->audit, a->have_db ? &a->db : NULL,
			     a->vm_specs, a->nvm,
			     stdout, &err);
	size_t n = (size_t)snprintf(said, cap, "; %u VM(s) here, ", a->nvm);
	if (rc < 0) {
		fprintf(stderr, "parley-agent: VMs after the hand-over: %s\n",
			perr_msg(&err));
		snprintf(said + n, cap - n, "not adopted: %s", perr_msg(&err));
		return;
	}
	unsigned adopted = 0;
	for (unsigned i = 0; i < a->vms.n; i++)
		adopted += a->vms.m.vm[i].adopted;
	snprintf(said + n, cap - n, "%u adopted from libvirt (their guests "
		 "re-open their channels)", adopted);
}

/* We are the new binary: take over what the old one runs. Never returns
 * on a failure (update_adopt leaves, touching nothing). */
static void adopt_all(struct agent *a)
{
	struct parley_err err = { 0 };
	struct update_adopt u = {
		.cm = &a->cm, .add = add_adopted, .ctx = a,
		.version = agent_version(), .fault = a->fault,
		.popts = {
			.vmm_path = a->cli.vmm, .image_dirs = a->cli.image_dirs,
			.config_dirs = a->cli.config_dirs,
			.on_console = sup_console, .ctx = &a->sup,
			.on_measured = admit, .on_request = on_request,
			.backend = a->cli.backend,
			.snap_key = a->have_key ? &a->key : NULL,
		},
	};
	update_adopt(a->handover_fd, &u, &err);
	a->policy = u.policy;
	a->policy_len = u.policy_len;
	/* (The VMs before the pause is taken: nothing is served while they
	 * are adopted, a second or so for libvirt.) */
	char detail[512], vms[256];
	adopt_vms(a, &u, vms, sizeof(vms));
	double pause_ms = (double)(mono_now_ns() - u.pause_ns) / 1e6;
	snprintf(detail, sizeof(detail), "%s took over from %s: %u "
		 "partitions, grant manager paused %.1f ms%s", agent_version(),
		 u.old_version, u.nadopted, pause_ms, vms);
	struct audit_event e = { .event = "update_committed",
				 .detail = detail };
	audit_emit(&a->audit, &e);
	/* A partition that streamed the package asks STATUS of us now. */
	a->upd.state = PARLEY_UPDATE_COMMITTED;
	snprintf(a->upd.detail, sizeof(a->upd.detail), "running %s",
		 agent_version());
	fprintf(stderr, "parley-agent: %s (previous: %s)\n", detail,
		u.old_version);
	fprintf(stderr, "parley-agent: hand-over steps: state %.1f ms, adopted "
		"%.1f ms, pinged %.1f ms, committed %.1f ms\n",
		(double)(u.t_state_ns - u.pause_ns) / 1e6,
		(double)(u.t_adopted_ns - u.pause_ns) / 1e6,
		(double)(u.t_pinged_ns - u.pause_ns) / 1e6,
		(double)(u.t_commit_ns - u.pause_ns) / 1e6);
	/* New partitions start the staged vmm; those running keep theirs. */
	static char vmm_path[sizeof(u.vmm_path)];
	snprintf(vmm_path, sizeof(vmm_path), "%s", u.vmm_path);
	if (vmm_path[0])
		a->cli.vmm = vmm_path;
	upd_keep_audited(&a->audit, a->cli.state_dir, a->argv[0], vmm_path,
		      sizeof(vmm_path));
	if (vmm_path[0])
		a->cli.vmm = vmm_path;
	for (unsigned i = 0; i < a->sup.n; i++)
		if (strcmp(a->sup.e[i].p->vmm_version, u.vmm_version))
			fprintf(stderr, "parley-agent: %s still runs vmm %s "
					"until its next start\n",
				a->sup.e[i].p->name,
				a->sup.e[i].p->vmm_version);
}

/* Faults of the test build only (parley-agent-next), when it is the new
 * binary of a hand-over: PARLEY_TEST_HANDOVER_FAULT=crash (dies at start),
 * noconfirm, adopt, pingdie. A production build has no such code. */
static enum update_fault test_faults(int handover)
{
#ifdef PARLEY_AGENT_TEST_NEXT
	const char *f = getenv("PARLEY_TEST_HANDOVER_FAULT");
	if (!f || handover < 0)
		return UPDATE_FAULT_NONE;
	if (!strcmp(f, "crash")) {
		signal(SIGABRT, SIG_DFL);
		raise(SIGABRT);
	}
	if (!strcmp(f, "noconfirm"))
		return UPDATE_FAULT_NO_CONFIRM;
	if (!strcmp(f, "adopt"))
		return UPDATE_FAULT_ADOPT;
	if (!strcmp(f, "pingdie"))
		return UPDATE_FAULT_PING_DIE;
#endif
	(void)handover;
	return UPDATE_FAULT_NONE;
}

/* PARLEY_HANDOVER_FD: the socket an agent we replace started us with.
 * Taken out of the environment, so that none of our children sees it. */
static int handover_fd(void)
{
	const char *v = getenv(UPD_ENV_FD);
	if (!v)
		return -1;
	char *end;
	long fd = strtol(v, &end, 10);
	unsetenv(UPD_ENV_FD);
	if (*end || fd < 3 || fd > INT_MAX || fcntl((int)fd, F_GETFD) < 0)
		return -1;
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

_Static_assert(SUP_MAX == CM_PARTS_MAX,
	       "run supervises exactly the partitions the grant manager knows");

/* Each partition holds 3 descriptors here (pidfd, control socket, memory)
 * and each channel up to 2 + 2 * CM_SECTIONS_MAX: with CM_PARTS_MAX
 * partitions and channels between them the usual soft limit of 1024 is
 * too few, so take the hard limit. Failure is not fatal: a partition that
 * cannot get a descriptor is refused with the reason when it starts. */
static void raise_nofile(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

static int serve(int argc, char **argv, char **all)
{
	static struct agent a;
	int first = agent_cli_parse(argc, argv, &a.cli);
	if (first < 0)
		return 2;
	if (!a.cli.state_dir) {
		fprintf(stderr, "parley-agent serve: --state-dir is required "
				"(and --server, unless the state directory "
				"has a servers file from its join)\n");
		return 2;
	}
	struct serve_opts o = {
		.state_dir = a.cli.state_dir, .server = a.cli.server,
		.vmm = a.cli.vmm, .image_dirs = a.cli.image_dirs,
		.config_dirs = a.cli.config_dirs,
		.disk_dirs = a.cli.ndisk_dirs ? a.cli.disk_dirs : NULL,
		.audit = a.cli.audit, .rehash_s = a.cli.rehash_s,
		.audit_refusals = a.cli.audit_refusals,
		.backend = a.cli.backend,
		.specs = argv + first, .nspecs = argc - first,
		.update_stage = a.cli.update_stage,
		.update_timeout_ms = (int)(a.cli.update_timeout_s * 1000),
		.argv = all, .version = agent_version(),
		.plugin_dir = a.cli.plugin_dir,
		.libvirt_uri = a.cli.libvirt_uri,
		.handover_fd = handover_fd(),
	};
	o.fault = test_faults(o.handover_fd);
	raise_nofile();
	return serve_main(&o);
}

int main(int argc, char **argv)
{
	if (parley_help_or_version(argc, argv, "parley-agent", agent_cli_usage_text))
		return 0;
	if (argc > 1 && !strcmp(argv[1], "join"))
		return join_main(argc - 1, argv + 1);
	if (argc < 2 || (strcmp(argv[1], "run") && strcmp(argv[1], "restore") &&
			 strcmp(argv[1], "serve"))) {
		agent_cli_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "serve"))
		return serve(argc - 1, argv + 1, argv);
	int restore = strcmp(argv[1], "restore") == 0;
	static struct agent a;
	upd_stage_none(&a.upd, &a.audit); /* no descriptors until opened */
	a.restore = restore;
	a.argv = argv;
	a.handover_fd = restore ? -1 : handover_fd();
	a.fault = test_faults(a.handover_fd);
	int first = agent_cli_parse(argc - 1, argv + 1, &a.cli);
	if (first < 0)
		return 2;
	sup_block_signals();
	a.sup.out = stdout;
	a.sup.owner = &a;
	a.sup.snapshot_dir = a.cli.snapshot_dir;
	a.sup.on_gone = on_gone;
	a.sup.on_reload = on_reload;
	a.sup.on_tick = on_tick;
	a.sup.tick_ms = 100;
	a.sup.on_upgrade = on_upgrade;
	a.sup.extra_fds = vms_fds;
	a.sup.extra_serve = vms_serve;
	a.sup.extra_live = vms_live;
	a.sup.extra_stop = vms_stop;
	char **args = argv + first + 1;
	int n = argc - first - 1;
	if (n > SUP_MAX) {
		fprintf(stderr, "parley-agent: %d partitions given, at most %d\n",
			n, SUP_MAX);
		return 2;
	}
	raise_nofile();
	struct part_spec *specs = calloc((size_t)n, sizeof(*specs));
	int nthin = 0;
	int bad = setup(&a, restore, args, n, specs, &nthin) < 0;
	if (!bad && a.handover_fd >= 0)
		adopt_all(&a);
	else if (!bad)
		bad = start_all(&a, restore, args, nthin, specs) < 0;
	/* A partition that could not start ends the run: the others were
	 * never resumed and would wait for ever. */
	int rc = (a.sup.n || a.vms.n) && !bad ? sup_run(&a.sup) : 0;
	if (a.vms.n && !bad)
		rc |= vmrun_summary(&a.vms);
	vmmgr_limits_end(&a.vms.m); /* (none when no VM ran: nvm 0) */
	vmrun_free(&a.vms);
	for (int i = 0; i < n; i++)
		spec_free(&specs[i]);
	free(specs);
	sup_free(&a.sup);
	chanmgr_free(&a.cm);
	upd_stage_close(&a.upd);
	/* The private copies go (a vmm that loaded one keeps its bind). */
	plugin_set_free(&a.plugins);
	if (a.have_db)
		baseline_free(&a.db);
	audit_end_all(&a.audit);
	if (a.audit.out)
		fclose(a.audit.out);
	audit_free(&a.audit);
	snap_key_wipe(&a.key);
	free(a.policy);
	return bad ? 2 : rc;
}
