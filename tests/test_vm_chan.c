/*
 * Linux VMs on channels (issue 11) with REAL VMs: the Debian cloud kernel
 * and the initramfs the build makes (busybox + parley-chan), under the
 * embedded libvirt QEMU driver, on KVM where /dev/kvm is usable and TCG
 * otherwise. QEMU that cannot start is a failure, never a skip: ./dev deps
 * installs it and unpacks the kernel.
 *
 * Few VMs (each test boots one; Criterion runs two tests at a time), each
 * driven by the script its spec names (fw_cfg opt/parley/run), which
 * prints what parley-chan answered on the serial console the test reads.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm/vmmgr.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"

static const char policy[] =
	"{\"grants\":[{\"channel\":\"pingpong\",\"endpoint_a\":\"ping\","
	"\"endpoint_b\":\"guest\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}]}";

struct t_vm {
	char *dir;
	struct grant_set grants;
	struct audit audit;
	char auditbuf[16384];
	size_t auditlen;
	struct vmmgr m;
	struct vm_spec spec;
	/* called from the audit sink: the test's move at a given event */
	void (*on_event)(struct t_vm *t, const struct audit_event *e);
	unsigned events;
};

static void sink(const struct audit_event *e, void *ctx)
{
	struct t_vm *t = ctx;
	int n = snprintf(t->auditbuf + t->auditlen,
			 sizeof(t->auditbuf) - t->auditlen,
			 "%s partition=%s channel=%s reason=%s file=%s detail=%s\n",
			 e->event, e->partition ? e->partition : "-",
			 e->channel ? e->channel : "-", e->reason ? e->reason : "-",
			 e->file ? e->file : "-", e->detail ? e->detail : "-");
	if (n > 0 && (size_t)n < sizeof(t->auditbuf) - t->auditlen)
		t->auditlen += (size_t)n;
	t->events++;
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
	if (!cur_dir || vmhost_open(&vh, cur_dir, NULL, &err))
		return;
	vmhost_destroy(&vh, "guest", &err);
	vmhost_destroy(&vh, "orphan", &err);
	vmhost_close(&vh);
}

static void t_vm_setup(struct t_vm *t, const char *script, const char *app)
{
	struct parley_err err = { 0 };
	memset(t, 0, sizeof(*t));
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
		  access(VM_DIR "/vmlinuz", R_OK) == 0,
		  "no VM kernel/initramfs in " VM_DIR " (./dev deps, then build)");
	cr_assert(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
		  "no qemu-system-x86_64 (./dev deps)");
	t->dir = t_tmpdir();
	cur_dir = t->dir;
	cr_assert_eq(grant_set_parse(policy, strlen(policy), NULL, &t->grants,
				     &err), 0, "%s", err.msg);
	t->audit.sink = sink;
	t->audit.sink_ctx = t;
	struct vm_spec *s = &t->spec;
	snprintf(s->name, sizeof(s->name), "guest");
	/* TCG unless PARLEY_VM_ACCEL says otherwise: a KVM that runs thin
	 * partitions may still not boot Linux (this project's CI machine:
	 * a nested KVM refusing the MSRs Linux writes). */
	const char *acc = getenv("PARLEY_VM_ACCEL");
	int a = vm_accel_parse(acc ? acc : "tcg");
	cr_assert_geq(a, 0, "PARLEY_VM_ACCEL=%s: auto, kvm or tcg", acc);
	s->accel = (unsigned)a;
	snprintf(s->kernel, sizeof(s->kernel), "%s", VM_DIR "/vmlinuz");
	snprintf(s->initrd, sizeof(s->initrd), "%s", VM_DIR "/initramfs.gz");
	char *run = t_write(t->dir, "run.sh", script, strlen(script));
	char *cfg = t_write(t->dir, "app.conf", app, strlen(app));
	s->ncfg = 2;
	snprintf(s->cfg[0].name, sizeof(s->cfg[0].name), "run");
	snprintf(s->cfg[0].path, sizeof(s->cfg[0].path), "%s", run);
	snprintf(s->cfg[1].name, sizeof(s->cfg[1].name), "app.conf");
	snprintf(s->cfg[1].path, sizeof(s->cfg[1].path), "%s", cfg);
	free(run);
	free(cfg);
}

static char *console(struct t_vm *t)
{
	char p[PATH_MAX + 64];
	vmhost_console_path(&t->m.host, t->spec.name, p, sizeof(p));
	FILE *f = fopen(p, "r");
	if (!f)
		return strdup("");
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return strdup(buf);
}

/* Serve the VM until its console shows `until` (or the VM is gone, or
 * limit_s passes: a failure naming what was seen). */
static void serve_until(struct t_vm *t, const char *until, int limit_s)
{
	time_t end = time(NULL) + limit_s;
	for (;;) {
		int rc = vmmgr_serve(&t->m, 0);
		char *c = console(t);
		bool done = strstr(c, until) != NULL;
		if (done) {
			free(c);
			return;
		}
		if (time(NULL) > end || rc == -EPROTO)
			cr_assert_fail("no '%s' within %d s (serve %d); console:\n"
				       "%s\naudit:\n%s", until, limit_s, rc, c,
				       t->auditbuf);
		free(c);
		if (rc == -EAGAIN || rc == -EPIPE) {
			struct timespec ts = { 0, 5000000 };
			nanosleep(&ts, NULL);
		}
	}
}

static void t_vm_teardown(struct t_vm *t)
{
	struct parley_err err = { 0 };
	vmhost_destroy(&t->m.host, t->spec.name, &err);
	vmmgr_free(&t->m);
	grant_set_free(&t->grants);
	t_rmtree(t->dir);
	free(t->dir);
	cur_dir = NULL;
}

/* The VM's config file is changed on the host while it runs: from its
 * first refused open on (an ungranted channel), so the next one finds it. */
static void tamper_after_first(struct t_vm *t, const struct audit_event *e)
{
	if (strcmp(e->event, "open_denied") || strcmp(e->reason, "NO_GRANT"))
		return;
	FILE *f = fopen(t->spec.cfg[1].path, "a");
	cr_assert(f);
	fputs("mode=evil\n", f);
	fclose(f);
}

Test(vm_chan, ungranted_then_tampered_config, .timeout = 240, .fini = t_vm_fini)
{
	struct t_vm t;
	struct parley_err err = { 0 };
	t_vm_setup(&t,
		   "parley-chan open secret\n"
		   "parley-chan open pingpong\n"
		   "parley-chan open pingpong\n"
		   "echo SCRIPT-END\n", "mode=calm\n");
	t.on_event = tamper_after_first;
	cr_assert_eq(vmmgr_init(&t.m, t.dir, NULL, &t.grants, &t.audit, &err),
		     0, "%s", err.msg);
	cr_assert_eq(vmmgr_add(&t.m, &t.spec, &err), 0, "%s", err.msg);
	serve_until(&t, "SCRIPT-END", 180);
	char *c = console(&t);
	/* In order: refused without a grant; refused naming the changed file
	 * and quarantined; then refused as quarantined. */
	char *a = strstr(c, "ERROR NO_GRANT");
	cr_assert(a, "%s", c);
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "ERROR INTEGRITY %s", t.spec.cfg[1].path);
	char *b = strstr(a, want);
	cr_assert(b, "no '%s' after NO_GRANT:\n%s", want, c);
	cr_assert(strstr(b, "ERROR QUARANTINED"), "%s", c);
	cr_assert(strstr(t.auditbuf, "open_denied partition=guest channel=secret "
			 "reason=NO_GRANT"), "%s", t.auditbuf);
	char q[PATH_MAX + 64];
	snprintf(q, sizeof(q), "quarantine partition=guest channel=- "
		 "reason=INTEGRITY file=%s", t.spec.cfg[1].path);
	cr_assert(strstr(t.auditbuf, q), "%s", t.auditbuf);
	cr_assert(vmmgr_find(&t.m, "guest")->quarantined);
	free(c);
	t_vm_teardown(&t);
}

/* The agent's side in a child process that is killed -9 once the VM
 * runs; a new one adopts the VM, serves it, and destroys a VM of its own
 * it has no spec for any more. */
Test(vm_chan, kill9_agent_then_adopt, .timeout = 300, .fini = t_vm_fini)
{
	struct t_vm t;
	struct parley_err err = { 0 };
	t_vm_setup(&t,
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
		char *sl = t_write(t.dir, "sleep.sh", "sleep 600\n", 10);
		snprintf(other.cfg[0].path, sizeof(other.cfg[0].path), "%s", sl);
		free(sl);
		if (vmmgr_init(&t.m, t.dir, NULL, &t.grants, NULL, &err) ||
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
	cr_assert_eq(vmmgr_init(&t.m, t.dir, NULL, &t.grants, &t.audit, &err),
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
	char *c = console(&t);
	cr_assert(strstr(c, "ADOPTED-ANSWER ERROR NO_GRANT"), "%s", c);
	cr_assert(strstr(t.auditbuf, "vm_adopted partition=guest"), "%s",
		  t.auditbuf);
	free(c);
	cr_assert_eq(vmhost_destroy(&t.m.host, "guest", &err), 0, "%s", err.msg);
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 0);
	t_vm_teardown(&t);
}
