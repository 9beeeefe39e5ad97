/*
 * Linux VMs on channels (issue 11) with REAL VMs: the Debian cloud kernel
 * and the initramfs the build makes (busybox + parley-chan), under the
 * embedded libvirt QEMU driver, beside thin partitions under the same
 * grant manager (tests/helpers/fleet.h). QEMU that cannot start is a
 * failure, never a skip: ./dev deps installs it and unpacks the kernel.
 * The VMs run on TCG unless PARLEY_VM_ACCEL says otherwise (a KVM that
 * runs thin partitions may not boot Linux: agent/vm/README.md).
 *
 * Few VMs (one per test; Criterion runs two tests at a time), each driven
 * by the script its spec names (fw_cfg opt/parley/run), which prints what
 * parley-chan answered on the serial console the test reads.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "agent/ipc/chanmgr.h"
#include "agent/vm/vmmgr.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/vmloop.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"

#define POLICY(integrity)                                                  \
	"{\"grants\":[{\"channel\":\"pingpong\",\"endpoint_a\":\"ping\","  \
	"\"endpoint_b\":\"guest\",\"direction\":\"both\",\"ring_bytes\":"  \
	"\"64K\",\"require_integrity\":" integrity "}]}"

struct t_vm {
	struct t_fleet f;
	struct vmmgr m;
	struct vm_spec spec;
	/* the test's move at an audit event (called from the audit sink,
	 * before the decision's reply is sent) */
	void (*on_event)(struct t_vm *t, const struct audit_event *e);
	bool revoked;
};

static void sink(const struct audit_event *e, void *ctx)
{
	struct t_vm *t = ctx;
	if (t->on_event)
		t->on_event(t, e);
}

/* The test's state dir, for the clean-up that runs even when an assertion
 * ended the test early: no VM outlives its test. */
static char *cur_dir;

static void t_vm_fini(void)
{
	struct vmhost vh;
	struct parley_err err = { 0 };
	if (!cur_dir)
		return;
	if (vmhost_open(&vh, cur_dir, NULL, &err) == 0) {
		vmhost_destroy(&vh, "guest", &err);
		vmhost_destroy(&vh, "orphan", &err);
		vmhost_destroy(&vh, "other", &err);
		vmhost_close(&vh);
	}
	/* a test an assertion ended: its state directory too (what it
	 * showed is in the assertion's message) */
	t_rmtree(cur_dir);
	cur_dir = NULL;
}

static unsigned vm_accel(void)
{
	const char *acc = getenv("PARLEY_VM_ACCEL");
	int a = vm_accel_parse(acc ? acc : "tcg");
	cr_assert_geq(a, 0, "PARLEY_VM_ACCEL=%s: auto, kvm or tcg", acc);
	return (unsigned)a;
}

static void t_vm_setup(struct t_vm *t, const char *policy, const char *script,
		       const char *app)
{
	memset(t, 0, sizeof(*t));
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
		  access(VM_DIR "/vmlinuz", R_OK) == 0,
		  "no VM kernel/initramfs in " VM_DIR " (./dev deps, then build)");
	cr_assert(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
		  "no qemu-system-x86_64 (./dev deps)");
	t_fleet_init(&t->f, policy);
	t->f.backend = t_kvm_missing() ? CTL_BACKEND_PROCESS : CTL_BACKEND_KVM;
	t->f.timeout_ms = 600000;
	t->f.audit.sink = sink;
	t->f.audit.sink_ctx = t;
	cur_dir = t->f.dir;
	struct vm_spec *s = &t->spec;
	snprintf(s->name, sizeof(s->name), "guest");
	s->accel = vm_accel();
	snprintf(s->kernel, sizeof(s->kernel), "%s", VM_DIR "/vmlinuz");
	snprintf(s->initrd, sizeof(s->initrd), "%s", VM_DIR "/initramfs.gz");
	char *run = t_write(t->f.dir, "run.sh", script, strlen(script));
	char *cfg = t_write(t->f.dir, "app.conf", app, strlen(app));
	s->ncfg = 2;
	snprintf(s->cfg[0].name, sizeof(s->cfg[0].name), "run");
	snprintf(s->cfg[0].path, sizeof(s->cfg[0].path), "%s", run);
	snprintf(s->cfg[1].name, sizeof(s->cfg[1].name), "app.conf");
	snprintf(s->cfg[1].path, sizeof(s->cfg[1].path), "%s", cfg);
	free(run);
	free(cfg);
}

static void t_vm_start(struct t_vm *t)
{
	struct parley_err err = { 0 };
	cr_assert_eq(vmmgr_init(&t->m, t->f.dir, NULL, &t->f.cm, &t->f.audit,
				&err), 0, "%s", err.msg);
	/* vmmgr_add as parley-agent serve does it: the domain started off
	 * the caller's thread; a second start of the same VM meanwhile is
	 * refused (-EBUSY), and so is taking it on again. (A VM an earlier
	 * agent left running is adopted at once: 0.) */
	int rc = vmmgr_start(&t->m, &t->spec, &err);
	cr_assert(rc == 0 || rc == 1, "%d %s", rc, err.msg);
	if (rc == 0) {
		cr_assert(vmmgr_find(&t->m, t->spec.name)->adopted);
		cr_assert_eq(vmmgr_start_fd(&t->m, t->spec.name), -1);
		return;
	}
	cr_assert_geq(vmmgr_start_fd(&t->m, t->spec.name), 0);
	cr_assert_eq(vmmgr_start(&t->m, &t->spec, &err), -EBUSY);
	cr_assert_eq(vmmgr_add(&t->m, &t->spec, &err), -EBUSY);
	cr_assert_eq(vmmgr_find(&t->m, t->spec.name), NULL);
	cr_assert_eq(vmmgr_start_finish(&t->m, t->spec.name, false, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(vmmgr_start_fd(&t->m, t->spec.name), -1);
	cr_assert(vmmgr_find(&t->m, t->spec.name));
}

static char *console(struct t_vm *t)
{
	return t_vm_console(&t->m, t->spec.name);
}

static bool thin_live(struct t_vm *t)
{
	return t_vm_thin_live(&t->f);
}

/* One round of the agent's event loop as parley-agent runs it
 * (tests/helpers/vmloop.h). */
static int pump(struct t_vm *t, int wait_ms)
{
	return t_vm_pump(&t->f, &t->m, wait_ms);
}

/* Serve the VM and the thin partitions until the VM's console shows
 * `until` (or limit_s passes: a failure naming what was seen). */
static void serve_until(struct t_vm *t, const char *until, int limit_s)
{
	t_vm_serve_until(&t->f, &t->m, t->spec.name, until, limit_s, NULL,
			 NULL);
}

#define CONSOLE_HAS(t, s)                                                  \
	do {                                                               \
		char *c_ = console(t);                                     \
		cr_assert(strstr(c_, s), "no '%s' on the console:\n%s", s, c_); \
		free(c_);                                                  \
	} while (0)
#define AUDIT_HAS(t, s)                                                    \
	cr_assert(strstr(t_fleet_audit(&(t)->f), s), "no %s in audit:\n%s", s, \
		  t_fleet_audit(&(t)->f))

static void t_vm_teardown(struct t_vm *t)
{
	struct parley_err err = { 0 };
	vmhost_destroy(&t->m.host, t->spec.name, &err);
	vmmgr_free(&t->m);
	cur_dir = NULL;
	t_fleet_free(&t->f);
}

/* Nothing of parley's in /dev/shm: channel memory is memfds the agent
 * hands QEMU as descriptors. */
static void no_shm_left(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		cr_assert(!strstr(e->d_name, "parley"), "/dev/shm/%s left",
			  e->d_name);
	closedir(d);
}

/* ---- grant and integrity --------------------------------------------------- */

/* The VM's config file is changed on the host while it runs: at its first
 * refused open (an ungranted channel), so the next open finds it. */
static void tamper_after_first(struct t_vm *t, const struct audit_event *e)
{
	if (strcmp(e->event, "open_denied") || !e->reason ||
	    strcmp(e->reason, "NO_GRANT"))
		return;
	FILE *f = fopen(t->spec.cfg[1].path, "a");
	cr_assert(f);
	fputs("mode=evil\n", f);
	fclose(f);
}

Test(vm_chan, ungranted_then_tampered_config, .timeout = 240, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open secret\n"
		   "parley-chan open pingpong\n"
		   "parley-chan open pingpong\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	/* First, a config file changed between the agent's measurement and
	 * the copy QEMU boots from (the start's thread copies the 14 MB
	 * kernel and the initramfs first; the change lands meanwhile): the
	 * start is refused when it ends, the domain destroyed. */
	struct parley_err err = { 0 };
	cr_assert_eq(vmmgr_init(&t.m, t.f.dir, NULL, &t.f.cm, &t.f.audit,
				&err), 0, "%s", err.msg);
	cr_assert_eq(vmmgr_start(&t.m, &t.spec, &err), 1, "%s", err.msg);
	FILE *cf = fopen(t.spec.cfg[1].path, "a");
	cr_assert(cf);
	fputs("mode=evil\n", cf);
	fclose(cf);
	while (!vmmgr_start_done(&t.m, "guest"))
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	cr_assert_eq(vmmgr_start_finish(&t.m, "guest", false, &err), -EBADMSG,
		     "%s", err.msg);
	cr_assert(strstr(err.msg, "app.conf changed while it started"), "%s",
		  err.msg);
	AUDIT_HAS(&t, "\"event\":\"vm_start_refused\",\"partition\":"
		      "\"guest\",\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	cr_assert_null(vmmgr_find(&t.m, "guest"));
	vmmgr_free(&t.m);
	cf = fopen(t.spec.cfg[1].path, "w");
	cr_assert(cf);
	fputs("mode=calm\n", cf);
	fclose(cf);
	/* Then the VM as measured. */
	t.on_event = tamper_after_first;
	t_vm_start(&t);
	serve_until(&t, "SCRIPT-END", 180);
	char *c = console(&t);
	/* In order: refused without a grant; refused naming the changed
	 * file, and quarantined; then refused as quarantined. */
	char *a = strstr(c, "ERROR NO_GRANT");
	cr_assert(a, "%s", c);
	char *b = strstr(a, "ERROR INTEGRITY guest/app.conf");
	cr_assert(b, "no INTEGRITY naming the file after NO_GRANT:\n%s", c);
	cr_assert(strstr(b, "ERROR QUARANTINED"), "%s", c);
	free(c);
	AUDIT_HAS(&t, "\"event\":\"open_denied\",\"partition\":\"guest\","
		      "\"channel\":\"secret\",\"reason\":\"NO_GRANT\"");
	AUDIT_HAS(&t, "\"event\":\"quarantine\",\"partition\":\"guest\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	/* A hand-over now would hand the VM to an agent that measures it
	 * afresh: refused while it is quarantined, audited. */
	err = (struct parley_err){ 0 };
	cr_assert_eq(vmmgr_handover_check(&t.m, &err), -EPERM, "%s", err.msg);
	cr_assert(strstr(err.msg, "VM guest is quarantined"), "%s", err.msg);
	AUDIT_HAS(&t, "\"event\":\"update_refused\",\"partition\":\"guest\","
		      "\"reason\":\"QUARANTINED\"");
	/* The same agent before any open found the change (its file changed
	 * since the VM's last open): the check finds it, quarantines the VM
	 * as the open would have, and refuses naming the file. */
	struct cm_part *cp = vmmgr_find(&t.m, "guest")->shell.owner;
	cp->quarantined = false;
	cr_assert_eq(vmmgr_handover_check(&t.m, &err), -EBADMSG, "%s", err.msg);
	cr_assert(strstr(err.msg, "(app.conf)"), "%s", err.msg);
	cr_assert(cp->quarantined);
	AUDIT_HAS(&t, "\"event\":\"update_refused\",\"partition\":\"guest\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	t_vm_teardown(&t);
}

/* A guest asking for a channel in a loop: past the OPEN bucket
 * (VMMGR_OPEN_BURST, refilled VMMGR_OPENS_PER_S) it is answered LIMIT,
 * undecided and unaudited but for vm_open_limited records (a start, then
 * counts at most a second apart); after a pause its OPENs are decided
 * again, and every LIMIT answer is in some count. */
Test(vm_chan, guest_opening_in_a_loop_is_answered_limit, .timeout = 240,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan spam-open secret 200\n"
		   "sleep 3\n"
		   "parley-chan spam-open secret 5\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	t_vm_start(&t);
	serve_until(&t, "SCRIPT-END", 180);
	char *c = console(&t);
	long ok = -1, limit = -1, denied = -1;
	char *sp = strstr(c, "SPAMMED 200 ");
	cr_assert(sp && sscanf(sp, "SPAMMED 200 ok=%ld limit=%ld denied=%ld",
			       &ok, &limit, &denied) == 3, "%s", c);
	cr_assert_eq(ok, 0);
	cr_assert_eq(ok + limit + denied, 200);
	cr_assert_geq(denied, VMMGR_OPEN_BURST, "%s", c);
	cr_assert_geq(limit, 100, "the bucket did not hold: %s", c);
	cr_assert(strstr(c, "SPAMMED 5 ok=0 limit=0 denied=5"), "%s", c);
	free(c);
	/* Each decided OPEN audited, the undecided ones summed up once. */
	const char *a = t_fleet_audit(&t.f);
	cr_assert_eq(t_count(a, "\"event\":\"open_denied\",\"partition\":"
			     "\"guest\",\"channel\":\"secret\""), denied + 5,
		     "%s", a);
	/* the episode's start, then its count once the guest paused (a
	 * flood longer than a second would have more of both) */
	cr_assert_geq(t_count(a, "\"event\":\"vm_open_limited\",\"partition\":"
			      "\"guest\",\"reason\":\"LIMIT\""), 1, "%s", a);
	long summed = 0;
	for (const char *p = a; (p = strstr(p, " OPEN(s) answered LIMIT")); p++) {
		const char *q = p;
		while (q > a && q[-1] >= '0' && q[-1] <= '9')
			q--;
		summed += strtol(q, NULL, 10);
	}
	cr_assert_eq(summed, limit, "%s", a);
	t_vm_teardown(&t);
}

/* Guest-reported digests against baselines: the first report of a path
 * is enrolled (audited guest-reported), the same digest again matches and
 * an open passes integrity (PEER_DOWN: ping is not there), a different
 * one is answered INTEGRITY and the next open is refused INTEGRITY naming
 * the path as guest-reported; the VM is quarantined. */
Test(vm_chan, guest_reported_digest_enrolled_then_changed_is_integrity,
     .timeout = 240, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "echo calm > /run/app.conf\n"
		   "parley-chan digest /run/app.conf\n"
		   "parley-chan open pingpong\n"
		   "parley-chan digest /run/app.conf\n"
		   "echo evil > /run/app.conf\n"
		   "parley-chan digest /run/app.conf\n"
		   "parley-chan open pingpong\n"
		   "echo SCRIPT-END\n", "x\n");
	t_vm_start(&t);
	serve_until(&t, "SCRIPT-END", 180);
	char *c = console(&t);
	/* the guest tool's SHA-256 of "calm\n" (sha256sum's) */
	char *a = strstr(c, "DIGEST /run/app.conf "
			 "43cc99483cd1d06fd875527f27b57f7c"
			 "b6b2e4efd7d30ee1845ca60421024170");
	cr_assert(a, "%s", c);
	char *b = strstr(a, "ERROR PEER_DOWN");
	cr_assert(b, "integrity did not pass after the enrolment:\n%s", c);
	b = strstr(b, "DIGEST /run/app.conf ");
	cr_assert(b, "the same digest again did not match:\n%s", c);
	b = strstr(b, "ERROR INTEGRITY /run/app.conf");
	cr_assert(b, "a changed digest was not refused:\n%s", c);
	cr_assert(strstr(b, "ERROR INTEGRITY guest/guest-reported:/run/app.conf"),
		  "the next open was not refused naming the path:\n%s", c);
	free(c);
	AUDIT_HAS(&t, "\"event\":\"guest_reported_digest\",\"partition\":"
		      "\"guest\",\"reason\":\"guest-reported\",\"file\":"
		      "\"/run/app.conf\"");
	AUDIT_HAS(&t, "enrolled as its baseline");
	AUDIT_HAS(&t, "matches its baseline");
	AUDIT_HAS(&t, "\"event\":\"guest_digest_mismatch\",\"partition\":"
		      "\"guest\",\"reason\":\"guest-reported\",\"file\":"
		      "\"/run/app.conf\"");
	AUDIT_HAS(&t, "\"event\":\"quarantine\",\"partition\":\"guest\","
		      "\"reason\":\"INTEGRITY\",\"file\":"
		      "\"guest-reported:/run/app.conf\"");
	t_vm_teardown(&t);
}

/* ---- a VM and a thin partition on one channel ------------------------------ */

/* ping (a thin partition) sends 10,000 checksummed messages; the VM's
 * parley-chan pong checks and answers each. Then the VM writes junk into
 * the section it may only read — ping's producer section — and nothing
 * of it reaches the memory ping maps; the header it cannot even reach
 * (protocol 3: a copy in the OPEN reply, never a device). */
Test(vm_chan, vm_and_thin_partition_ping_pong_10000, .timeout = 400,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan pong pingpong 10000\n"
		   "parley-chan poke pingpong 0 || echo NO-HEADER-DEVICE\n"
		   "parley-chan poke pingpong 1\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	struct partition *ping = t_fleet_add(&t.f, "ping", "ping.elf",
					     "count=10000", NULL, false, NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "SCRIPT-END", 360);
	CONSOLE_HAS(&t, "OPEN pingpong handle=");
	CONSOLE_HAS(&t, "PONG 10000 messages checked and answered");
	CONSOLE_HAS(&t, "NO-HEADER-DEVICE");
	CONSOLE_HAS(&t, "POKED 1 131072");
	cr_assert_eq(t_fleet_run(&t.f, 10000), 0, "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.reason, VMX_STOP_EXIT, "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.code, 0, "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "ping: 10000 messages each way"),
		  "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "checksums ok"), "%s",
		  t_fleet_out(&t.f));
	AUDIT_HAS(&t, "\"event\":\"open_allowed\",\"partition\":\"guest\"");
	/* The memory the thin partition maps (the same memfds) never saw the
	 * VM's junk in the sections it may only read. */
	cr_assert_eq(t.f.cm.nchans, 1);
	struct cm_chan *ch = t.f.cm.chans[0];
	struct parley_chan_hdr h;
	cr_assert_eq(pread(ch->mem[0], &h, sizeof(h), 0), (ssize_t)sizeof(h));
	cr_assert_eq(h.magic, PARLEY_RING_MAGIC, "the header changed");
	static uint8_t buf[1 << 17];
	ssize_t n = pread(ch->mem[1], buf, sizeof(buf), 0);
	cr_assert_eq(n, (ssize_t)ch->sec_size[1]);
	unsigned junk = 0;
	for (ssize_t i = 0; i < n; i++)
		junk += buf[i] == 0xa5;
	/* ping's own data may hold the odd 0xa5; the VM's poke wrote all
	 * 131072 bytes of it */
	cr_assert_lt(junk, 4096, "%u bytes of the VM's junk in ping's section",
		     junk);
	t_vm_teardown(&t);
	no_shm_left();
}

/* Both ends sleep when idle: the VM's `pong -w` waits through its ring's
 * message-pending flag (protocol 2: no WAIT request, the agent WAKEs it
 * when ping rings while the flag is set), ping sleeps in CHAN_WAIT and the
 * VM rings it with NOTIFY. 3,000 round trips cross the flag/doorbell race
 * in both orders (the VM is slow under TCG, so ping often publishes while
 * the VM is between setting its flag and looking at its ring); a lost
 * wake-up would leave a message unanswered until the guest's quiet-second
 * check, which counts it. Then ping exits: the VM's next sleeping recv
 * ends PEER_DOWN (WAKE, or STATE if that went to the port's earlier
 * opener). */
Test(vm_chan, sleeping_both_ways_no_lost_wake_up_then_peer_down,
     .timeout = 400, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan pong pingpong 3000 -w\n"
		   "parley-chan recv pingpong -w\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	struct partition *ping = t_fleet_add(&t.f, "ping", "ping.elf",
					     "count=3000", NULL, false, NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "SCRIPT-END", 360);
	CONSOLE_HAS(&t, "PONG 3000 messages checked and answered (lost "
			"wake-ups: 0) doorbells direct");
	CONSOLE_HAS(&t, "ERROR PEER_DOWN");
	cr_assert_eq(t_fleet_run(&t.f, 10000), 0, "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.code, 0, "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "ping: 3000 messages each way"),
		  "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "checksums ok"), "%s",
		  t_fleet_out(&t.f));
	t_vm_teardown(&t);
	no_shm_left();
}

/* ---- QEMU confined ------------------------------------------------------- */

/* What a helper running as QEMU's uid and gid (a compromised QEMU: any
 * syscall it likes, its own /proc) could do. */
struct as_qemu {
	int agent_ro, agent_rw;     /* open /proc/AGENT/fd/N: 0 or errno */
	int own_ro, own_rw;         /* re-open its own read-only section */
	int map_rw;                 /* mmap it PROT_WRITE|MAP_SHARED */
};

/* probe(ctx, out) run in a child that is uid:gid and nothing else (no
 * supplementary groups), its size bytes of findings brought back. */
static void as_uid(uid_t uid, gid_t gid, void (*probe)(const void *, void *),
		   const void *ctx, void *out, size_t size)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char r[256] = { 0 };
		if (size > sizeof(r) || setgroups(0, NULL) || setgid(gid) ||
		    setuid(uid) || getuid() != uid)
			_exit(2);
		probe(ctx, r);
		_exit(write(pfd[1], r, size) == (ssize_t)size ? 0 : 3);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], out, size), (ssize_t)size,
		     "the helper could not become uid %u", (unsigned)uid);
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
}

struct qemu_probe {
	pid_t agent, qemu;
	int agent_fd, qemu_fd;
};

static void probe_qemu(const void *ctx, void *out)
{
	const struct qemu_probe *q = ctx;
	struct as_qemu r = { 0 };
	char p[96];
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)q->agent, q->agent_fd);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	r.agent_ro = fd < 0 ? errno : 0;
	fd = open(p, O_RDWR | O_CLOEXEC);
	r.agent_rw = fd < 0 ? errno : 0;
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)q->qemu, q->qemu_fd);
	fd = open(p, O_RDWR | O_CLOEXEC);
	r.own_rw = fd < 0 ? errno : 0;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	r.own_ro = fd < 0 ? errno : 0;
	void *m = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					    MAP_SHARED, fd, 0);
	r.map_rw = m == MAP_FAILED ? errno : 0;
	memcpy(out, &r, sizeof(r));
}

static void run_as_qemu(uid_t uid, gid_t gid, pid_t agent, int agent_fd,
			pid_t qemu, int qemu_fd, struct as_qemu *out)
{
	struct qemu_probe q = { agent, qemu, agent_fd, qemu_fd };
	as_uid(uid, gid, probe_qemu, &q, out, sizeof(*out));
}

/* "Uid:\t1\t2\t3\t4" of /proc/PID/status: all four, and CapEff. */
static void qemu_status(pid_t pid, unsigned uid[4], unsigned long long *capeff)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	cr_assert(f, "%s: %s", p, strerror(errno));
	int got = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid:\t%u\t%u\t%u\t%u", &uid[0], &uid[1], &uid[2],
			   &uid[3]) == 4)
			got |= 1;
		if (sscanf(line, "CapEff:\t%llx", capeff) == 1)
			got |= 2;
	}
	fclose(f);
	cr_assert_eq(got, 3, "%s: no Uid/CapEff", p);
}

/* What a helper running as VM A's QEMU's uid and gid (A's QEMU
 * compromised) can do to VM B: nothing through the kernel's uid checks
 * (ptrace, /proc/PID/mem), nothing through a path B's QEMU or libvirt
 * uses. Each field 0 (it worked) or the errno. */
struct a_vs_b {
	int own_mem;                /* open /proc/A/mem: the control */
	int mem, attach;            /* /proc/B/mem, PTRACE_ATTACH B */
	int ctl, mon, lv_mon;       /* connect: B's control port, the
				     * agent's monitor, libvirt's monitor */
	int console, boot, key;     /* open: console, boot copy, master key */
};

static int connect_path(const char *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
	close(fd);
	return rc;
}

static int open_path(const char *p)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

struct a_probe {
	pid_t qa, qb;
	const char **paths;
};

static void probe_a(const void *ctx, void *out)
{
	const struct a_probe *q = ctx;
	struct a_vs_b r = { 0 };
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/mem", (int)q->qa);
	r.own_mem = open_path(p);
	snprintf(p, sizeof(p), "/proc/%d/mem", (int)q->qb);
	r.mem = open_path(p);
	if (ptrace(PTRACE_ATTACH, q->qb, NULL, NULL) < 0)
		r.attach = errno;
	else
		ptrace(PTRACE_DETACH, q->qb, NULL, NULL);
	r.ctl = connect_path(q->paths[0]);
	r.mon = connect_path(q->paths[1]);
	r.lv_mon = connect_path(q->paths[2]);
	r.console = open_path(q->paths[3]);
	r.boot = open_path(q->paths[4]);
	r.key = open_path(q->paths[5]);
	memcpy(out, &r, sizeof(r));
}

static void run_as_a(uid_t uid, gid_t gid, pid_t qa, pid_t qb,
		     const char *paths[6], struct a_vs_b *out)
{
	struct a_probe q = { qa, qb, paths };
	as_uid(uid, gid, probe_a, &q, out, sizeof(*out));
}

/* QEMU's pid: libvirt's pid file in the embedded root. */
static int qemu_pid(const char *dir, const char *name)
{
	char pp[PATH_MAX + 64];
	snprintf(pp, sizeof(pp), "%s/libvirt/run/qemu/" VMHOST_PREFIX "%s.pid",
		 dir, name);
	FILE *f = fopen(pp, "r");
	cr_assert(f, "%s: %s", pp, strerror(errno));
	int qpid = 0;
	cr_assert_eq(fscanf(f, "%d", &qpid), 1);
	fclose(f);
	return qpid;
}

/* "Gid:\t..." of /proc/PID/status: the real gid. */
static unsigned qemu_gid_of(pid_t pid)
{
	char p[64], line[256];
	unsigned g = ~0u;
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Gid:\t%u", &g) == 1)
			break;
	fclose(f);
	return g;
}

/* QEMU (the VMM of a hostile guest, maybe hostile itself) runs as its own
 * unprivileged user, cannot open the agent's descriptors through /proc,
 * and holds the sections the VM may only read through O_RDONLY
 * descriptors it cannot re-open writable: a QEMU that ignores readonly=on
 * still cannot write them. */
Test(vm_chan, qemu_unprivileged_and_sections_read_only_by_descriptor,
     .timeout = 300, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "parley-chan open pingpong || exit 1\n"
		   "echo OPENED\n"
		   "sleep 120\n", "x\n");
	t_fleet_add(&t.f, "ping", "ping.elf", "count=1000000", NULL, false,
		    NULL);
	t_vm_start(&t);
	/* a second VM beside it, booting meanwhile: B for A's QEMU */
	struct parley_err err = { 0 };
	struct vm_spec other = t.spec;
	snprintf(other.name, sizeof(other.name), "other");
	char *orun = t_write(t.f.dir, "other.sh", "sleep 200\n", 10);
	snprintf(other.cfg[0].path, sizeof(other.cfg[0].path), "%s", orun);
	free(orun);
	cr_assert_eq(vmmgr_add(&t.m, &other, &err), 0, "%s", err.msg);
	t_fleet_go(&t.f);
	serve_until(&t, "OPENED", 240);
	struct passwd *pw = getpwnam(VMHOST_QEMU_USER);
	cr_assert(pw, "no user " VMHOST_QEMU_USER " (./dev deps)");
	int qpid = qemu_pid(t.f.dir, "guest"), qb = qemu_pid(t.f.dir, "other");
	/* (a) each QEMU its own uid of the range (the one recorded for it),
	 * not root, QEMU's group, no capabilities */
	uid_t ua, ub;
	cr_assert_eq(vmhost_vm_uid(&t.m.host, "guest", false, &ua, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(vmhost_vm_uid(&t.m.host, "other", false, &ub, &err), 0,
		     "%s", err.msg);
	cr_assert_neq(ua, ub, "two VMs' QEMUs share uid %u", (unsigned)ua);
	unsigned uid[4];
	unsigned long long cap = ~0ull;
	for (int k = 0; k < 2; k++) {
		uid_t want = k ? ub : ua;
		cap = ~0ull;
		qemu_status(k ? qb : qpid, uid, &cap);
		for (int i = 0; i < 4; i++)
			cr_assert_eq(uid[i], (unsigned)want, "QEMU's uid %u, "
				     "recorded %u", uid[i], (unsigned)want);
		cr_assert(want >= VMHOST_UID_FIRST && want <= VMHOST_UID_LAST,
			  "uid %u outside the range", (unsigned)want);
		cr_assert_neq(uid[0], (unsigned)pw->pw_uid);
		cr_assert_neq(uid[0], 0u);
		cr_assert_eq(qemu_gid_of(k ? qb : qpid), (unsigned)pw->pw_gid);
		cr_assert_eq(cap, 0ull, "QEMU's effective capabilities %llx",
			     cap);
	}
	/* (d) A's uid against B: the kernel's uid checks and every path */
	char bp[6][PATH_MAX + 128];
	snprintf(bp[0], sizeof(bp[0]), "%s/vm/other.ctl", t.f.dir);
	vmhost_mon_path(&t.m.host, "other", bp[1], sizeof(bp[1]));
	vmhost_console_path(&t.m.host, "other", bp[3], sizeof(bp[3]));
	snprintf(bp[4], sizeof(bp[4]), "%s/vm/other.boot/kernel", t.f.dir);
	char pat[PATH_MAX + 128];
	snprintf(pat, sizeof(pat), "%s/libvirt/lib/qemu/domain-*-"
		 VMHOST_PREFIX "other", t.f.dir);
	glob_t g;
	cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no %s", pat);
	snprintf(bp[2], sizeof(bp[2]), "%s/monitor.sock", g.gl_pathv[0]);
	snprintf(bp[5], sizeof(bp[5]), "%s/master-key.aes", g.gl_pathv[0]);
	globfree(&g);
	const char *paths[6];
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(access(bp[i], F_OK), 0, "%s: %s", bp[i],
			     strerror(errno));
		paths[i] = bp[i];
	}
	struct a_vs_b ab;
	run_as_a(ua, pw->pw_gid, qpid, qb, paths, &ab);
	cr_assert_eq(ab.own_mem, 0, "A's uid cannot open its own QEMU's "
		     "/proc/PID/mem: %s (the check below would prove nothing)",
		     strerror(ab.own_mem));
	cr_assert(ab.mem == EACCES || ab.mem == EPERM,
		  "A's uid opened B's QEMU's /proc/PID/mem: %s",
		  strerror(ab.mem));
	cr_assert_eq(ab.attach, EPERM, "A's uid ptrace-attached B's QEMU: %s",
		     strerror(ab.attach));
	const char *what[] = { "control port", "monitor", "libvirt's monitor",
			       "console", "boot copy", "master key" };
	int got[] = { ab.ctl, ab.mon, ab.lv_mon, ab.console, ab.boot, ab.key };
	for (int i = 0; i < 6; i++)
		cr_assert_eq(got[i], EACCES, "A's uid and B's %s %s: %s",
			     what[i], paths[i], got[i] ? strerror(got[i]) :
			     "opened");
	struct parley_err e2 = { 0 };
	vmhost_destroy(&t.m.host, "other", &e2);
	/* (c) every descriptor QEMU holds on a section: read-only unless
	 * the VM writes that section; each section held */
	cr_assert_eq(t.f.cm.nchans, 1);
	struct cm_chan *ch = t.f.cm.chans[0];
	struct vm_chan *vc = NULL;
	for (unsigned k = 0; k < VMMGR_CHANS; k++)
		if (t.m.vm[0].ch[k].used && !t.m.vm[0].ch[k].closed)
			vc = &t.m.vm[0].ch[k];
	cr_assert(vc);
	unsigned held = 0, ro_seen = 0;
	int ro_fd = -1;
	char d[64];
	snprintf(d, sizeof(d), "/proc/%d/fd", qpid);
	DIR *dir = opendir(d);
	cr_assert(dir, "%s: %s", d, strerror(errno));
	struct dirent *e;
	while ((e = readdir(dir))) {
		char lp[128], link[256], info[4096];
		unsigned sec;
		snprintf(lp, sizeof(lp), "%s/%s", d, e->d_name);
		ssize_t n = readlink(lp, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (sscanf(link, "/memfd:parley-chan:pingpong:%u", &sec) != 1)
			continue;
		cr_assert_lt(sec, ch->nsec);
		snprintf(lp, sizeof(lp), "/proc/%d/fdinfo/%s", qpid, e->d_name);
		int fi = open(lp, O_RDONLY);
		cr_assert_geq(fi, 0);
		n = read(fi, info, sizeof(info) - 1);
		close(fi);
		cr_assert_gt(n, 0);
		info[n] = 0;
		char *fl = strstr(info, "flags:");
		cr_assert(fl, "%s", info);
		unsigned long flags = strtoul(fl + 6, NULL, 8);
		bool writer = ch->sec_writer[sec] == vc->side;
		if (writer)
			continue; /* the VM's own: QEMU may write it */
		cr_assert_eq(flags & O_ACCMODE, (unsigned long)O_RDONLY,
			     "QEMU holds read-only section %u with flags %lo",
			     sec, flags);
		held |= 1u << sec;
		ro_seen++;
		ro_fd = atoi(e->d_name);
	}
	closedir(dir);
	/* the header (section 0) is not QEMU's at all: the guest gets a
	 * copy in the OPEN reply (protocol 3) */
	cr_assert_not(held & 1u, "QEMU holds the header's descriptor");
	for (unsigned i = 1; i < ch->nsec; i++)
		if (ch->sec_writer[i] != vc->side)
			cr_assert(held & (1u << i), "QEMU holds no descriptor "
				  "of read-only section %u", i);
	cr_assert_gt(ro_seen, 0);
	/* (b) as QEMU's user: the agent's descriptors are out of reach
	 * (/proc/AGENT/fd), its own read-only section cannot be re-opened
	 * writable nor mapped writable — only read */
	struct as_qemu r;
	run_as_qemu(ua, pw->pw_gid, getpid(), ch->mem[1], qpid, ro_fd, &r);
	cr_assert(r.agent_ro == EACCES || r.agent_ro == EPERM,
		  "QEMU's user opened /proc/AGENT/fd/N: %s", strerror(r.agent_ro));
	cr_assert(r.agent_rw == EACCES || r.agent_rw == EPERM,
		  "QEMU's user opened /proc/AGENT/fd/N writable: %s",
		  strerror(r.agent_rw));
	cr_assert_eq(r.own_ro, 0, "QEMU's user cannot even read its own "
		     "section: %s", strerror(r.own_ro));
	cr_assert_eq(r.own_rw, EACCES, "QEMU re-opened a read-only section "
		     "writable: %s", strerror(r.own_rw));
	cr_assert_eq(r.map_rw, EACCES, "QEMU mapped a read-only section "
		     "writable: %s", strerror(r.map_rw));
	t_vm_teardown(&t);
	no_shm_left();
}
/* ---- revocation ------------------------------------------------------------- */

/* An eventfd's id (fdinfo's eventfd-id: one per eventfd, whoever holds
 * it), or 0 if fd is no eventfd. */
static unsigned long eventfd_id(int pid, int fd)
{
	char p[96], info[1024];
	snprintf(p, sizeof(p), "/proc/%d/fdinfo/%d", pid, fd);
	int fi = open(p, O_RDONLY | O_CLOEXEC);
	if (fi < 0)
		return 0;
	ssize_t n = read(fi, info, sizeof(info) - 1);
	close(fi);
	info[n > 0 ? n : 0] = 0;
	char *id = strstr(info, "eventfd-id:");
	return id ? strtoul(id + 11, NULL, 10) : 0;
}

/* Does process pid hold the eventfd of that id? */
static bool holds_eventfd(int pid, unsigned long id)
{
	char d[64];
	snprintf(d, sizeof(d), "/proc/%d/fd", pid);
	DIR *dir = opendir(d);
	cr_assert(dir, "%s: %s", d, strerror(errno));
	struct dirent *e;
	bool found = false;
	while (!found && (e = readdir(dir)))
		found = e->d_name[0] != '.' &&
			eventfd_id(pid, atoi(e->d_name)) == id;
	closedir(dir);
	return found;
}

/* The grant is removed while ping and the VM exchange messages: the
 * sections are punched (the VM reads zeros), the devices unplugged, the
 * VM's tool sees CLOSED; the audit says what happened. */
Test(vm_chan, revocation_mid_stream_is_closed, .timeout = 400,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "parley-chan open pingpong || exit 1\n"
		   "echo STREAMING\n"
		   "parley-chan pong pingpong 1000000\n"
		   /* closed after its devices went (ejected: ~0.1 s): the
		    * close needs no mapping, only the handle */
		   "sleep 2\n"
		   "echo \"RECV-AFTER-REVOKE $(parley-chan recv pingpong)\"\n"
		   "parley-chan close pingpong && echo CLOSE-AFTER-REVOKE-OK\n"
		   "echo SCRIPT-END\n"
		   /* alive while its kernel ejects the devices: a VM that
		    * powers off first never finishes the unplug */
		   "sleep 60\n", "x\n");
	t_fleet_add(&t.f, "ping", "ping.elf", "count=1000000", NULL, false,
		    NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "STREAMING", 240);
	/* let some messages flow, then take the grant away */
	for (int i = 0; i < 2000; i++)
		pump(&t, 1);
	/* protocol 4: QEMU holds both doorbells of the channel (the peer's,
	 * which the guest rings; its own, which its wake port reads) */
	struct vm_chan *vc = NULL;
	for (unsigned k = 0; k < VMMGR_CHANS; k++)
		if (t.m.vm[0].ch[k].used && !t.m.vm[0].ch[k].closed)
			vc = &t.m.vm[0].ch[k];
	cr_assert(vc);
	cr_assert_neq(vc->bell_dev, PARLEY_VMCTL_NO_BELL);
	int qpid = qemu_pid(t.f.dir, "guest");
	unsigned long peer_id = eventfd_id(getpid(), vc->bell_peer);
	unsigned long own_id = eventfd_id(getpid(), vc->bell_mine);
	cr_assert(peer_id && own_id);
	cr_assert(holds_eventfd(qpid, peer_id), "QEMU lacks the peer's doorbell");
	cr_assert(holds_eventfd(qpid, own_id), "QEMU lacks the VM's doorbell");
	t_fleet_set_grants(&t.f, "{\"grants\":[]}");
	serve_until(&t, "SCRIPT-END", 120);
	CONSOLE_HAS(&t, "ERROR CLOSED");
	/* a command that needs the sections: what the agent says (after
	 * waiting for devices already ejected, or — ejected later than
	 * the script's 2 s — from a punched ring's STATE) */
	CONSOLE_HAS(&t, "RECV-AFTER-REVOKE ERROR CLOSED");
	CONSOLE_HAS(&t, "CLOSE-AFTER-REVOKE-OK");
	AUDIT_HAS(&t, "\"event\":\"revoke\",\"channel\":\"pingpong\","
		      "\"reason\":\"GRANT_REMOVED\"");
	AUDIT_HAS(&t, "\"event\":\"vm_revoke_punched\",\"partition\":\"guest\"");
	/* the guest ejects the devices: the unplug completes */
	for (int i = 0; i < 5000 && !strstr(t_fleet_audit(&t.f), "vm_unplugged"); i++)
		pump(&t, 1);
	AUDIT_HAS(&t, "\"event\":\"vm_unplugged\",\"partition\":\"guest\"");
	/* unplugged: neither doorbell is QEMU's any more (the wake port's
	 * chardev and the section device that held the peer's are gone) */
	cr_assert_not(holds_eventfd(qpid, peer_id),
		      "QEMU kept the peer's doorbell past the unplug");
	cr_assert_not(holds_eventfd(qpid, own_id),
		      "QEMU kept the VM's doorbell past the unplug");
	t_vm_teardown(&t);
	no_shm_left();
}

/* A guest that writes requests and never reads the answers: 3 MB of
 * STATE frames into its port (131,072 answers due, 3 MB, far more than
 * the guest's port buffers take while the writer holds the port open —
 * once it closes, the guest's kernel discards what comes). The agent must
 * keep reading (the guest's write completes) rather than block on a full
 * socket: past 64 KiB unread, frames to the guest are dropped, audited
 * once. */
Test(vm_chan, guest_not_reading_its_port_does_not_block_the_agent,
     .timeout = 300, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "for d in /sys/class/virtio-ports/*; do\n"
		   "  [ \"$(cat $d/name)\" = org.parley.ctl.0 ] && p=/dev/${d##*/}\n"
		   "done\n"
		   /* STATE, version 4, handle 1: magic PVC1, 4, 7, len 8, seq 1 */
		   "echo -ne '\\0120\\0126\\0103\\0061\\0004\\0000\\0007\\0000"
		   "\\0010\\0000\\0000\\0000\\0001\\0000\\0000\\0000"
		   "\\0001\\0000\\0000\\0000\\0000\\0000\\0000\\0000' > /run/f\n"
		   "[ $(wc -c < /run/f) = 24 ] || echo BADFRAME\n"
		   "for i in $(seq 17); do cat /run/f /run/f > /run/g; "
		   "mv /run/g /run/f; done\n"
		   "cat /run/f > $p\n"
		   /* up while the test looks (its end powers the VM off,
		    * which closes the port) */
		   "echo FLOODED\n"
		   "sleep 120\n", "x\n");
	t_vm_start(&t);
	serve_until(&t, "FLOODED", 240);
	CONSOLE_HAS(&t, "FLOODED");
	char *c = console(&t);
	cr_assert_null(strstr(c, "BADFRAME"), "%s", c);
	free(c);
	AUDIT_HAS(&t, "\"event\":\"vm_ctl_overflow\",\"partition\":\"guest\","
		      "\"reason\":\"NOT_READING\"");
	cr_assert_geq(t.m.vm[0].ctl, 0, "the port was closed, not served");
	t_vm_teardown(&t);
}

/* ---- the agent killed -9 ---------------------------------------------------- */

/* The agent's side in a child process that is killed -9 once the VM
 * runs; a new one adopts the VM, serves it, and destroys a VM of its own
 * it has no spec for any more. */
Test(vm_chan, kill9_agent_then_adopt, .timeout = 300, .fini = t_vm_fini)
{
	struct t_vm t;
	struct parley_err err = { 0 };
	t_vm_setup(&t, POLICY("true"),
		   "for i in $(seq 200); do\n"
		   "  out=$(parley-chan open secret)\n"
		   "  case \"$out\" in *NO_GRANT*) echo \"ADOPTED-ANSWER $out\"; break;; esac\n"
		   "  sleep 0.3\n"
		   "done\n"
		   "echo SCRIPT-END\n", "x\n");
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* The first agent: starts the VM and an orphan-to-be. */
		struct vm_spec other = t.spec;
		snprintf(other.name, sizeof(other.name), "orphan");
		other.ncfg = 1;  /* a script that keeps it running */
		char *sl = t_write(t.f.dir, "sleep.sh", "sleep 600\n", 10);
		snprintf(other.cfg[0].path, sizeof(other.cfg[0].path), "%s", sl);
		free(sl);
		if (vmmgr_init(&t.m, t.f.dir, NULL, &t.f.cm, NULL, &err) ||
		    vmmgr_add(&t.m, &t.spec, &err) || vmmgr_add(&t.m, &other, &err)) {
			fprintf(stderr, "first agent: %s\n", err.msg);
			_exit(1);
		}
		if (write(pfd[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	char r;
	cr_assert_eq(read(pfd[0], &r, 1), 1, "the first agent failed");
	close(pfd[0]);
	kill(pid, SIGKILL);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	/* The second agent: only "guest" has a spec now. */
	cr_assert_eq(vmmgr_init(&t.m, t.f.dir, NULL, &t.f.cm, &t.f.audit, &err),
		     0, "%s", err.msg);
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 1,
		     "the VM did not outlive its agent");
	cr_assert_eq(vmhost_running(&t.m.host, "orphan"), 1);
	cr_assert_eq(vmmgr_add(&t.m, &t.spec, &err), 0, "%s", err.msg);
	cr_assert(vmmgr_find(&t.m, "guest")->adopted);
	unsigned adopted, destroyed;
	cr_assert_eq(vmmgr_reconcile(&t.m, &adopted, &destroyed, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(adopted, 1);
	cr_assert_eq(destroyed, 1);
	cr_assert_eq(vmhost_running(&t.m.host, "orphan"), 0);
	serve_until(&t, "SCRIPT-END", 200);
	CONSOLE_HAS(&t, "ADOPTED-ANSWER ERROR NO_GRANT");
	AUDIT_HAS(&t, "\"event\":\"vm_adopted\",\"partition\":\"guest\"");
	cr_assert_eq(vmhost_destroy(&t.m.host, "guest", &err), 0, "%s", err.msg);
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	t_vm_teardown(&t);
	no_shm_left();
}

/* Descriptors of this process that are memfds (channel memory): none may
 * be left once the agent's side is torn down. */
static unsigned memfds_held(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[64], target[256];
		snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(p, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = 0;
			n += strncmp(target, "/memfd:", 7) == 0;
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* The VM's console file, read without a vmhost (the first agent is gone
 * and the second not yet up). */
/* The console by its path: where the agent is a child, this process's
 * vmmgr was never started. Whole: past 64 KiB (boot, hot-plugs, agents
 * killed and followed) the latest lines are at the end. */
static char *console_file(struct t_vm *t)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/vm/%s.console", t->f.dir, t->spec.name);
	return t_slurp(p);
}

static bool console_file_has(struct t_vm *t, const char *what)
{
	char *c = console_file(t);
	bool has = strstr(c, what) != NULL;
	free(c);
	return has;
}

static pid_t streaming_agent(struct t_vm *t)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct parley_err err = { 0 };
		/* 1,000 then held open: the guest's pong, past its
		 * PONG-AT 300, waits in the stream for the kill however late
		 * this test's process comes to it (3,000 flowing would end
		 * the stream under a loaded host first) */
		t_fleet_add(&t->f, "ping", "ping.elf", "count=1000 hold=1",
			    NULL, false, NULL);
		if (vmmgr_init(&t->m, t->f.dir, NULL, &t->f.cm, NULL, &err) ||
		    vmmgr_add(&t->m, &t->spec, &err)) {
			fprintf(stderr, "agent: %s\n", err.msg);
			_exit(1);
		}
		t_fleet_go(&t->f);
		for (;;)
			pump(t, 5);
	}
	return pid;
}

static void kill_when(struct t_vm *t, pid_t pid, const char *mark)
{
	time_t end = time(NULL) + 240;
	int st;
	/* (SCRIPT-END: the guest's tool ended, whatever it said) */
	while (!console_file_has(t, mark) && !console_file_has(t, "SCRIPT-END")
	       && time(NULL) < end && waitpid(pid, &st, WNOHANG) == 0)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the agent ended before "
		     "'%s'", mark);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	char *c = console_file(t);
	size_t len = strlen(c);
	cr_assert(strstr(c, mark), "no '%s' (240 s at most); the console's "
		  "last bytes (of %zu):\n%s", mark, len,
		  c + (len > 3000 ? len - 3000 : 0));
	free(c);
}

/* The agent after the killed ones: adopts the VM, serves its re-opened
 * stream to the end (ping's 3,000 checked), the earlier agents' devices
 * unplugged once the guest said HELLO; nothing held or left after. */
static void adopt_and_finish(struct t_vm *t, const char *reopened)
{
	struct partition *ping = t_fleet_add(&t->f, "ping", "ping.elf",
					     "count=3000", NULL, false, NULL);
	t_vm_start(t);
	cr_assert(vmmgr_find(&t->m, "guest")->adopted);
	t_fleet_go(&t->f);
	serve_until(t, "SCRIPT-END", 300);
	CONSOLE_HAS(t, "REOPENED pingpong handle=");
	CONSOLE_HAS(t, "PONG 3000 messages checked and answered (lost "
		       "wake-ups: 0)");
	CONSOLE_HAS(t, reopened);
	/* ping ends once it has read the last answer; the VM's NOTIFY of it
	 * may still be in the port when SCRIPT-END is on the console: the
	 * VM is served until then too (t_fleet_run serves thin partitions
	 * only). */
	for (time_t until = time(NULL) + 60; thin_live(t) && time(NULL) < until;)
		pump(t, 5);
	cr_assert_eq(t_fleet_run(&t->f, 10000), 0, "%s", t_fleet_out(&t->f));
	cr_assert_eq(ping->fin.code, 0, "%s", t_fleet_out(&t->f));
	cr_assert(strstr(t_fleet_out(&t->f), "ping: 3000 messages each way"),
		  "%s", t_fleet_out(&t->f));
	cr_assert(strstr(t_fleet_out(&t->f), "checksums ok"), "%s",
		  t_fleet_out(&t->f));
	AUDIT_HAS(t, "\"event\":\"vm_adopted\",\"partition\":\"guest\"");
	for (int i = 0; i < 5000 && !strstr(t_fleet_audit(&t->f),
					     "\"reason\":\"ADOPTED\""); i++)
		pump(t, 1);
	AUDIT_HAS(t, "\"event\":\"vm_unplugged\",\"partition\":\"guest\","
		     "\"reason\":\"ADOPTED\"");
	cr_assert_null(strstr(t_fleet_audit(&t->f), "\"event\":\"vm_fault\""),
		       "%s", t_fleet_audit(&t->f));
	cr_assert_eq(vmmgr_find(&t->m, "guest")->nstale, 0);
	t_vm_teardown(t);
	cr_assert_eq(memfds_held(), 0, "channel memory still held");
	no_shm_left();
}

/* The agent's side (grant manager, the thin partition ping, the VM's
 * manager) killed -9 while the VM's `pong -w -r` answers ping: its wait
 * sees the port's host end go (POLLHUP) and lets go of the channel; a new
 * agent adopts the VM, a new ping starts, the guest says HELLO again (the
 * new agent unplugs the devices of the old channel), opens the channel
 * anew and answers 3,000 checksummed messages. Nothing left in /dev/shm,
 * no memfd held once the new agent is torn down. */
Test(vm_chan, kill9_agent_mid_stream_guest_reopens, .timeout = 400,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan pong pingpong 3000 -w -r\n"
		   "echo SCRIPT-END\n"
		   "sleep 60\n", "mode=calm\n");
	kill_when(&t, streaming_agent(&t), "PONG-AT 300 session 0");
	cr_assert_not(console_file_has(&t, "SCRIPT-END"),
		      "pong ended before the first agent was killed");
	adopt_and_finish(&t, "PONG reopened 1");
}

/* An agent, streaming to the VM, killed; the next one adopts the VM and
 * the guest re-opens (that agent unplugs the first one's devices at the
 * guest's HELLO); that one killed too, mid-stream; a third adopts the VM
 * again — the second agent's devices, and whatever of the first's the
 * second had not finished deleting (vmstale.c's sweep: unit tests in
 * vm_stale) — the guest re-opens a second time and the stream ends
 * checked, nothing of an earlier agent left in the VM or held here. */
Test(vm_chan, kill9_agent_twice_guest_reopens_each_time, .timeout = 600,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan pong pingpong 3000 -w -r\n"
		   "echo SCRIPT-END\n"
		   "sleep 60\n", "mode=calm\n");
	kill_when(&t, streaming_agent(&t), "PONG-AT 300 session 0");
	kill_when(&t, streaming_agent(&t), "PONG-AT 300 session 1");
	cr_assert_not(console_file_has(&t, "SCRIPT-END"),
		      "pong ended before the second agent was killed");
	adopt_and_finish(&t, "PONG reopened 2");
}

/* A VM that keeps touching the channel after its revocation deadline: the
 * memory is truncated (chanmgr's rule for late vmms), its QEMU dies at the
 * next access (SIGBUS), and the audit says so. */
Test(vm_chan, late_vm_touching_revoked_memory_is_stopped, .timeout = 300,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan touch pingpong\n", "x\n");
	/* A guest that ignores hot-unplug: no ACPI hot-plug in its kernel
	 * (it finds plugged devices by a PCI rescan). */
	snprintf(t.spec.cmdline_extra, sizeof(t.spec.cmdline_extra),
		 "acpiphp.disable=1");
	/* Shorter than a VM's default 5 s: this guest's kernel may still
	 * eject the device by ACPI's own path a few seconds on, which would
	 * take the memory out of its reach before the truncation does. */
	t.f.cm.ext_unmap_ms = 2000;
	t_fleet_add(&t.f, "ping", "ping.elf", "count=1000000", NULL, false,
		    NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "TOUCHING", 240);
	t_fleet_set_grants(&t.f, "{\"grants\":[]}");
	time_t end = time(NULL) + 120;
	while (!strstr(t_fleet_audit(&t.f), "\"vm_stopped\"") &&
	       time(NULL) < end)
		pump(&t, 5);
	AUDIT_HAS(&t, "\"event\":\"vm_unplug_late\",\"partition\":\"guest\"");
	AUDIT_HAS(&t, "\"event\":\"vm_stopped\",\"partition\":\"guest\","
		      "\"reason\":\"revoked-access\"");
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	t_vm_teardown(&t);
	no_shm_left();
}

/* QEMU killed (kill -9) while the VM streams to a thin partition: the
 * agent sees the control port close, reports the VM stopped and tells the
 * grant manager; the thin peer, asleep in its receive, is woken PEER_DOWN
 * and ends; nothing of the channel is left held or in /dev/shm. */
Test(vm_chan, qemu_killed_mid_stream_peer_sees_peer_down, .timeout = 300,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("true"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan pong pingpong 1000000 -w\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	struct partition *ping = t_fleet_add(&t.f, "ping", "ping.elf",
					     "count=1000000", NULL, false,
					     NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "OPEN pingpong handle=", 240);
	for (time_t until = time(NULL) + 2; time(NULL) < until;)
		pump(&t, 5);   /* the stream under way */
	cr_assert(thin_live(&t), "ping ended before QEMU was killed:\n%s",
		  t_fleet_out(&t.f));
	int qpid = qemu_pid(t.f.dir, "guest");
	cr_assert_eq(kill(qpid, SIGKILL), 0);
	for (time_t until = time(NULL) + 60; thin_live(&t) && time(NULL) < until;)
		pump(&t, 5);
	cr_assert_not(thin_live(&t), "ping still waits on a dead VM:\n%s",
		      t_fleet_out(&t.f));
	cr_assert_eq(t_fleet_run(&t.f, 10000), 0, "%s", t_fleet_out(&t.f));
	char want[64];
	snprintf(want, sizeof(want), "ping: recv: %d", PARLEY_E_PEER_DOWN);
	cr_assert(strstr(t_fleet_out(&t.f), want), "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.code, 1, "%s", t_fleet_out(&t.f));
	AUDIT_HAS(&t, "\"event\":\"vm_stopped\",\"partition\":\"guest\"");
	AUDIT_HAS(&t, "\"event\":\"peer_gone\",\"partition\":\"guest\","
		      "\"channel\":\"pingpong\",\"reason\":\"PEER_DOWN\"");
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	t_vm_teardown(&t);
	cr_assert_eq(memfds_held(), 0, "channel memory still held");
	no_shm_left();
}

/* A QEMU that stops answering the agent's monitor (here: stopped with
 * SIGSTOP, as a compromised QEMU could stall its own loop) while the agent
 * revokes its channel: the unplug's monitor batch is given up after
 * QMP_ANSWER_MS, the VM is stopped as vmm-protocol — its QEMU killed
 * through its pidfd, which SIGSTOP does not hold off — and the agent's
 * loop goes on (it would hang for good in libvirt's monitor, which waits
 * without a limit). */
Test(vm_chan, qemu_stalling_its_monitor_is_killed_not_waited_for,
     .timeout = 300, .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "parley-chan open pingpong || exit 1\n"
		   "parley-chan touch pingpong\n", "x\n");
	t_fleet_add(&t.f, "ping", "ping.elf", "count=1000000", NULL, false,
		    NULL);
	t_vm_start(&t);
	t_fleet_go(&t.f);
	serve_until(&t, "TOUCHING", 240);
	pid_t q = qemu_pid(t.f.dir, t.spec.name);
	cr_assert_eq(kill(q, SIGSTOP), 0);
	t_fleet_set_grants(&t.f, "{\"grants\":[]}");
	time_t end = time(NULL) + 60;
	while (!strstr(t_fleet_audit(&t.f), "\"vm_stopped\"") &&
	       time(NULL) < end)
		pump(&t, 5);
	AUDIT_HAS(&t, "\"event\":\"vm_fault\",\"partition\":\"guest\","
		      "\"reason\":\"vmm-protocol\"");
	AUDIT_HAS(&t, "\"event\":\"vm_stopped\",\"partition\":\"guest\","
		      "\"reason\":\"vmm-protocol\"");
	cr_assert(strstr(t_fleet_audit(&t.f), "QMP monitor"), "%s",
		  t_fleet_audit(&t.f));
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	/* gone, or a zombie nobody has reaped yet: not running */
	char st[64], line[256];
	snprintf(st, sizeof(st), "/proc/%d/status", (int)q);
	FILE *f = fopen(st, "r");
	bool running = false;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "State:", 6))
			running = !strchr(line, 'Z');
	if (f)
		fclose(f);
	cr_assert(!running, "QEMU %d still there", (int)q);
	t_vm_teardown(&t);
	no_shm_left();
}

/* ---- a hostile guest on the control port ------------------------------------ */

/* The guest writes bytes that are no frame into its control port: the
 * agent's decoder refuses them, the port is closed for good (audited with
 * the reason), and the guest's next request gets no answer. */
Test(vm_chan, garbage_on_the_control_port_closes_it, .timeout = 240,
     .fini = t_vm_fini)
{
	struct t_vm t;
	t_vm_setup(&t, POLICY("false"),
		   "for d in /sys/class/virtio-ports/*; do\n"
		   "  [ \"$(cat $d/name)\" = org.parley.ctl.0 ] && p=/dev/${d##*/}\n"
		   "done\n"
		   "printf 'GARBAGE-GARBAGE-GARBAGE-' > $p\n"
		   "echo WROTE\n"
		   "sleep 1\n"
		   "parley-chan open pingpong\n"
		   "echo SCRIPT-END\n", "x\n");
	t_vm_start(&t);
	time_t end = time(NULL) + 180;
	while (!strstr(t_fleet_audit(&t.f), "vm_ctl_violation") &&
	       time(NULL) < end)
		pump(&t, 5);
	AUDIT_HAS(&t, "\"event\":\"vm_ctl_violation\",\"partition\":\"guest\","
		      "\"reason\":\"EPROTO\",\"detail\":\"bad magic 0x42524147\"");
	cr_assert_lt(t.m.vm[0].ctl, 0, "the port is still served");
	/* the guest's open after that: no answer, its tool gives up */
	end = time(NULL) + 60;
	char *c = NULL;
	do {
		free(c);
		pump(&t, 5);
		c = console(&t);
	} while (!strstr(c, "SCRIPT-END") && time(NULL) < end);
	cr_assert(strstr(c, "ERROR control port"), "%s", c);
	cr_assert(!strstr(c, "OPEN pingpong"), "%s", c);
	free(c);
	t_vm_teardown(&t);
}
