/*
 * Linux VMs on the daemon's command (issue 11): a real parleyd and a real
 * `parley-agent serve` on loopback; a VM partition ("backend": "libvirt",
 * a spec with "kind": "vm") created through the API on the agent's host
 * is run by that agent (agent/vm/vmserve.c), beside a thin partition,
 * under the bundle's grant; its state in the API is what the agent
 * reports. Real VMs under TCG unless PARLEY_VM_ACCEL says otherwise; a
 * missing kernel or QEMU is a failure, never a skip. One VM in all.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/vm/vmhost.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"

struct vs {
	struct api_client c;
	struct fd_agent *a;
	char conf[600];
	const char *extra[8];
};

/* The test running, for the clean-up that runs even when an assertion
 * ended it early: no VM outlives its test. */
static struct vs *cur;

static void vs_fini(void)
{
	if (!cur)
		return;
	if (cur->a)
		fd_stop_agent(cur->a); /* SIGTERM: it stops its VMs */
	struct vmhost vh;
	struct parley_err err = { 0 };
	if (cur->a && vmhost_open(&vh, cur->a->dir, NULL, &err) == 0) {
		vmhost_destroy(&vh, "vmpong", &err);
		vmhost_close(&vh);
	}
	ac_stop(&cur->c);
	cur = NULL;
}

#define call_ok(t, m, p, b, w, k) ac_call_ok(&(t)->c, m, p, b, w, k)

/* parleyd, host h1 (its agent's certificate), the config directory the
 * daemon's specs may take files from. */
static void setup(struct vs *t, bool vms)
{
	memset(t, 0, sizeof(*t));
	cur = t;
	if (vms) {
		cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
			  access(VM_DIR "/vmlinuz", R_OK) == 0,
			  "no VM kernel/initramfs in " VM_DIR
			  " (./dev deps, then build)");
		cr_assert(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
			  "no qemu-system-x86_64 (./dev deps)");
	}
	setenv("PARLEY_VM_ACCEL", getenv("PARLEY_VM_ACCEL") ?
	       getenv("PARLEY_VM_ACCEL") : "tcg", 1);
	ac_start(&t->c);
	/* QEMU's user passes through to the agent's state directory (the
	 * agent refuses VMs, naming the directory, where it cannot). */
	chmod(t->c.f.dir, 0711);
	call_ok(t, "POST", "/v1/hosts", "{\"name\":\"h1\"}", 201, NULL);
	t->a = fd_host(&t->c.f, "h1", NULL);
	snprintf(t->conf, sizeof(t->conf), "%s/conf", t->c.f.dir);
	cr_assert_eq(mkdir(t->conf, 0700), 0);
	const char *x[] = { "--image-dir", VM_DIR, "--config-dir", t->conf,
			    NULL };
	memcpy(t->extra, x, sizeof(x));
}

static void agent_up(struct vs *t)
{
	fd_start_agent_with(&t->c.f, t->a, NULL, t->extra);
}

/* GET /v1/partitions/NAME: its state ("" when there is none) and, if
 * vmm is given, its vmm_backend. */
static void part_state(struct vs *t, const char *name, char *state,
		       size_t cap, char *vmm, size_t vcap)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/partitions/%s", name);
	struct ac_resp r;
	ac_call(&t->c, "GET", path, t->c.admin, NULL, &r);
	const char *s = r.status == 200 ? json_string_value(
		json_object_get(r.json, "state")) : NULL;
	snprintf(state, cap, "%s", s ? s : "");
	if (vmm) {
		const char *v = r.status == 200 ? json_string_value(
			json_object_get(r.json, "vmm_backend")) : NULL;
		snprintf(vmm, vcap, "%s", v ? v : "");
	}
	ac_free(&r);
}

struct want_state {
	struct vs *t;
	const char *name, *state;
};

static bool state_is(struct fleetd *f, void *ctx)
{
	(void)f;
	struct want_state *w = ctx;
	char st[64];
	part_state(w->t, w->name, st, sizeof(st), NULL, 0);
	return !strcmp(st, w->state);
}

static void wait_state(struct vs *t, const char *name, const char *state,
		       int ms)
{
	struct want_state w = { t, name, state };
	if (fd_wait(state_is, &t->c.f, &w, ms))
		return;
	char st[64];
	part_state(t, name, st, sizeof(st), NULL, 0);
	char *l = fd_agent_log(t->a);
	cr_assert_fail("%s is \"%s\", not \"%s\"; agent:\n%s", name, st, state,
		       l ? l : "");
	free(l);
}

struct logwait {
	const struct fd_agent *a;
	const char *text;
};

static bool log_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct logwait *w = ctx;
	char *l = fd_agent_log(w->a);
	bool y = l && strstr(l, w->text);
	free(l);
	return y;
}

static void wait_log(struct vs *t, const char *text, int ms)
{
	struct logwait w = { t->a, text };
	if (fd_wait(log_has, &t->c.f, &w, ms))
		return;
	char *l = fd_agent_log(t->a);
	cr_assert_fail("no \"%s\" in the agent's log:\n%s", text, l ? l : "");
	free(l);
}

/* The daemon's audit events named `event` for partition `part`, as the
 * API answers them (oldest first); each one's detail (and reason)
 * appended to out; the daemon's id of the first into *first (ids follow
 * the order its agent emitted them in: one link, in sequence). */
static int audit_query(struct vs *t, const char *event, const char *part,
		       char *out, size_t cap, long *first)
{
	char path[200];
	snprintf(path, sizeof(path), "/v1/audit?limit=1000&event=%s"
		 "&partition=%s", event, part);
	struct ac_resp r;
	call_ok(t, "GET", path, NULL, 200, &r);
	json_t *items = json_object_get(r.json, "items"), *it;
	size_t i;
	if (out && cap)
		out[0] = 0;
	json_array_foreach(items, i, it) {
		const char *d = json_string_value(json_object_get(it, "detail"));
		const char *re = json_string_value(json_object_get(it, "reason"));
		long id = (long)json_integer_value(json_object_get(it, "id"));
		if (first && id > 0 && (!*first || id < *first))
			*first = id;
		size_t n = out ? strlen(out) : 0;
		if (out && n + 1 < cap)
			snprintf(out + n, cap - n, "[%s|%s]", re ? re : "",
				 d ? d : "");
	}
	int n = (int)json_array_size(items);
	ac_free(&r);
	return n;
}

static int audit_count(struct vs *t, const char *event, const char *part,
		       char *out, size_t cap)
{
	return audit_query(t, event, part, out, cap, NULL);
}

/* The id of the first such event, or 0. */
static long audit_first_id(struct vs *t, const char *event, const char *part)
{
	long first = 0;
	audit_query(t, event, part, NULL, 0, &first);
	return first;
}

struct audit_want {
	struct vs *t;
	const char *event, *part;
	int n;
};

static bool audit_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct audit_want *w = ctx;
	return audit_count(w->t, w->event, w->part, NULL, 0) >= w->n;
}

static void wait_audit(struct vs *t, const char *event, const char *part,
		       int n, int ms)
{
	struct audit_want w = { t, event, part, n };
	cr_assert(fd_wait(audit_has, &t->c.f, &w, ms), "no %d %s for %s", n,
		  event, part);
}

struct detail_want {
	struct vs *t;
	const char *event, *part, *text;
};

static bool detail_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct detail_want *w = ctx;
	static char d[8192];
	audit_count(w->t, w->event, w->part, d, sizeof(d));
	return strstr(d, w->text) != NULL;
}

/* Until an audit event `event` of `part` has `text` in its detail. */
static void wait_detail(struct vs *t, const char *event, const char *part,
			const char *text, int ms)
{
	struct detail_want w = { t, event, part, text };
	if (fd_wait(detail_has, &t->c.f, &w, ms))
		return;
	char d[4096];
	audit_count(t, event, part, d, sizeof(d));
	char *l = fd_agent_log(t->a);
	cr_assert_fail("no %s of %s saying \"%s\": %s\nagent:\n%s", event,
		       part, text, d, l ? l : "");
	free(l);
}

/* The QEMU processes of VM `name` under the agent's state dir: all
 * counted, the first cap PIDs into pids[]. */
static int qemu_of(const char *state_dir, const char *name, pid_t *pids,
		   int cap)
{
	char dom[96];
	snprintf(dom, sizeof(dom), "guest=" VMHOST_PREFIX "%s,", name);
	int n = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		/* (/proc files say size 0: read them to the end) */
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		static char buf[1 << 16];
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		bool dir = false, vm = false;
		for (size_t off = 0; off < len; off += strlen(buf + off) + 1) {
			const char *arg = buf + off;
			dir |= strstr(arg, state_dir) != NULL;
			vm |= strstr(arg, dom) != NULL;
		}
		if (dir && vm && n < cap)
			pids[n] = (pid_t)pid;
		n += dir && vm;
	}
	if (d)
		closedir(d);
	return n;
}

/* STATE/stage: the test build parley-agent-next (a version "+next") and
 * this vmm, for a hand-over. */
static void stage_next(const char *state, char *out, size_t cap)
{
	snprintf(out, cap, "%s/stage", state);
	cr_assert_eq(mkdir(out, 0700), 0);
	char p[800];
	snprintf(p, sizeof(p), "%s/parley-agent", out);
	cr_assert_eq(symlink(T_BIN("parley-agent-next"), p), 0);
	snprintf(p, sizeof(p), "%s/parley-vmm", out);
	cr_assert_eq(symlink(T_VMM, p), 0);
	free(t_write(out, "manifest.json", "{\"version\":\"9.9.9-test\"}",
		     strlen("{\"version\":\"9.9.9-test\"}")));
}

/* The agent handed over: the old one (ours) reaped, the new one (whose
 * parent it was: now not ours) followed by its pid. */
static void handed_over(struct fd_agent *a)
{
	char *log = fd_agent_log(a);
	const char *at = strstr(log, "handed over to pid ");
	cr_assert(at, "%s", log);
	pid_t np = (pid_t)atoi(at + strlen("handed over to pid "));
	free(log);
	int st = 0;
	cr_assert_eq(waitpid(a->pid, &st, 0), a->pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x", st);
	a->pid = np;
}

/* SIGTERM to an agent that is not our child, its end seen by its pidfd. */
static void stop_handed_over(struct fd_agent *a)
{
	int fd = (int)syscall(SYS_pidfd_open, a->pid, 0);
	cr_assert_geq(fd, 0, "pidfd_open %d: %s", a->pid, strerror(errno));
	kill(a->pid, SIGTERM);
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	cr_assert_eq(poll(&pf, 1, 30000), 1, "the agent did not stop");
	close(fd);
	a->pid = 0;
}

/* The guest answers ping's 1,000 checksummed messages, then stays up. */
static const char *pong_sh =
	"parley-chan open pingpong || exit 1\n"
	"parley-chan pong pingpong 1000 || exit 1\n"
	"parley-chan close pingpong\n"
	"echo PONG-DONE\n"
	"while true; do sleep 1; done\n";

Test(vm_serve, daemon_vm_channel_stop_adopt_destroy, .timeout = 600,
     .fini = vs_fini)
{
	static struct vs t;
	setup(&t, true);
	free(t_write(t.conf, "pong.sh", pong_sh, strlen(pong_sh)));
	free(t_write(t.conf, "app.conf", "role=pong\n", 10));
	/* A thin partition the agent is sent right after the VM (the
	 * daemon sends its VMs' commands first): it asks for a channel
	 * nobody granted, so the agent's loop answers it NO_GRANT at once. */
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"thin\",\"spec\":{\"name\":\"early\",\"image\":\"ping.elf\","
		"\"memory\":\"8M\",\"cmdline\":\"count=1 chan=nochan\"}}", 201,
		NULL);
	/* ping starts as soon, beside the VM that is starting: it waits
	 * for its peer (peer_wait) rather than a second. */
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"thin\",\"spec\":{\"name\":\"ping\",\"image\":\"ping.elf\","
		"\"memory\":\"8M\",\"cmdline\":\"count=1000 peer_wait=120\"}}",
		201, NULL);
	struct ac_resp r;
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"libvirt\",\"spec\":{\"kind\":\"vm\",\"name\":\"vmpong\","
		"\"kernel\":\"vmlinuz\",\"initramfs\":\"initramfs.gz\","
		"\"memory\":\"160M\",\"config\":[{\"name\":\"run\",\"path\":"
		"\"pong.sh\"},{\"name\":\"app.conf\",\"path\":\"app.conf\"}]}}",
		201, &r);
	cr_assert_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "defined");
	cr_assert_str_eq(json_string_value(json_object_get(r.json, "backend")),
			 "libvirt");
	ac_free(&r);
	call_ok(&t, "POST", "/v1/grants", "{\"channel\":\"pingpong\","
		"\"endpoint_a\":\"ping\",\"endpoint_b\":\"vmpong\",\"direction\":"
		"\"both\",\"ring_bytes\":\"64K\",\"require_integrity\":true}",
		201, NULL);
	agent_up(&t);

	/* The VM starts off the agent's loop: reported "starting", and
	 * while libvirt starts it the loop answered the thin partition's
	 * open (NO_GRANT) — after the start began, before it finished (the
	 * order the agent emitted them in; a loop that blocked in libvirt
	 * would answer it after vm_started). */
	wait_state(&t, "vmpong", "running", 120000);
	wait_audit(&t, "open_denied", "early", 1, 30000);
	long begun = audit_first_id(&t, "vm_starting", "vmpong"),
	     denied = audit_first_id(&t, "open_denied", "early"),
	     started = audit_first_id(&t, "vm_started", "vmpong");
	cr_assert(begun > 0 && begun < denied && denied < started,
		  "vm_starting %ld, early's open_denied %ld, vm_started %ld",
		  begun, denied, started);
	char d[2048];
	audit_count(&t, "partition_state", "vmpong", d, sizeof(d));
	cr_assert(strstr(d, "-> starting") && strstr(d, "starting -> running"),
		  "%s", d);
	audit_count(&t, "open_denied", "early", d, sizeof(d));
	cr_assert(strstr(d, "NO_GRANT"), "%s", d);

	/* The thin partition and the VM exchange ping's messages, every
	 * one checksummed both ways. */
	char st[64], vmm[64];
	part_state(&t, "vmpong", st, sizeof(st), vmm, sizeof(vmm));
	cr_assert_str_eq(vmm, "vm");
	wait_log(&t, "vmpong| PONG 1000 messages checked and answered", 300000);
	wait_log(&t, "ping: 1000 messages each way", 60000);
	char *l = fd_agent_log(t.a);
	cr_assert(strstr(l, "checksums ok"), "%s", l);
	free(l);
	wait_audit(&t, "open_allowed", "vmpong", 1, 30000);
	/* Its key configuration files measured by the agent: the first
	 * measurement is the baseline, both files named. */
	struct ac_resp b;
	call_ok(&t, "GET", "/v1/baselines/vmpong", NULL, 200, &b);
	json_t *files = json_object_get(b.json, "files");
	cr_assert(json_object_get(files, "run") &&
		  json_object_get(files, "app.conf"), "%s", b.body);
	ac_free(&b);
	pid_t q1[4], q2[4];
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q1, 4), 1);

	/* kill -9 of the agent, then a new one: the same QEMU adopted --
	 * not started again, not destroyed, not a second one. */
	fd_kill_agent(t.a);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 1);
	/* (this agent may be updated: a stage of the test build +next) */
	char stage[700];
	stage_next(t.a->dir, stage, sizeof(stage));
	t.extra[4] = "--update-stage";
	t.extra[5] = stage;
	t.extra[6] = NULL;
	agent_up(&t);
	wait_audit(&t, "vm_adopted", "vmpong", 1, 60000);
	wait_log(&t, "VMs at start-up: 1 adopted, 0 owned without a spec", 30000);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 1);
	cr_assert_eq(q2[0], q1[0], "a new QEMU: %d, was %d", q2[0], q1[0]);
	cr_assert_eq(audit_count(&t, "vm_started", "vmpong", NULL, 0), 1);
	part_state(&t, "vmpong", st, sizeof(st), NULL, 0);
	cr_assert_str_eq(st, "running");

	/* A live update (SIGUSR1, the stage) with the VM running: the old
	 * agent hands over its thin partition and leaves the VM running;
	 * the new one adopts it from libvirt once the old one has exited --
	 * the same QEMU -- and serves it: the stop below goes through it. */
	kill(t.a->pid, SIGUSR1);
	wait_log(&t, "+next took over from", 60000);
	wait_log(&t, "kept VMs adopted from libvirt", 1000);
	wait_audit(&t, "vm_adopted", "vmpong", 2, 60000);
	handed_over(t.a);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 1);
	cr_assert_eq(q2[0], q1[0], "a new QEMU: %d, was %d", q2[0], q1[0]);
	cr_assert_eq(audit_count(&t, "vm_started", "vmpong", NULL, 0), 1);
	l = fd_agent_log(t.a);
	cr_assert_null(strstr(l, "rolled back"), "%s", l);
	free(l);
	wait_state(&t, "vmpong", "running", 30000);

	/* Stop through the API reaches the VM (QEMU gone) and is reported
	 * with its reason. */
	call_ok(&t, "POST", "/v1/partitions/vmpong/stop", NULL, 200, &r);
	cr_assert_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "stop-requested");
	ac_free(&r);
	wait_state(&t, "vmpong", "stopped", 60000);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 0);
	audit_count(&t, "partition_state", "vmpong", d, sizeof(d));
	cr_assert(strstr(d, "running -> stopped (exit 0, killed)") ||
		  strstr(d, "stop-requested -> stopped (exit 0, killed)"),
		  "%s", d);
	call_ok(&t, "POST", "/v1/partitions/vmpong/stop", NULL, 409, NULL);

	/* Started again: a new QEMU in the same slot. Its script finds ping
	 * gone and exits 1, the guest powers off: reported stopped on its
	 * own, with the script's exit code. */
	call_ok(&t, "POST", "/v1/partitions/vmpong/start", NULL, 200, NULL);
	wait_audit(&t, "vm_started", "vmpong", 2, 60000);
	wait_detail(&t, "partition_state", "vmpong", "-> stopped (exit 1, exit)",
		    180000);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 0);

	/* A stop asked while the VM starts is not lost: its start (begun
	 * a moment before; libvirt takes a second or more) is cancelled
	 * when libvirt returns — the domain destroyed, no QEMU left — and
	 * the VM is reported stopped (killed), never running. */
	int was_started = audit_count(&t, "vm_started", "vmpong", NULL, 0);
	/* The agent stopped (SIGTERM) while the VM starts: it waits for
	 * libvirt's create, destroys the domain, joins the thread and
	 * exits — nothing of the VM left running. */
	call_ok(&t, "POST", "/v1/partitions/vmpong/start", NULL, 200, NULL);
	wait_state(&t, "vmpong", "starting", 60000);
	fd_stop_agent(t.a);
	l = fd_agent_log(t.a);
	cr_assert(strstr(l, "VM vmpong: stopped while it started"), "%s", l);
	free(l);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 0);
	agent_up(&t);
	wait_state(&t, "vmpong", "stopped", 60000);
	int was_cancelled = audit_count(&t, "vm_start_cancelled", "vmpong",
					NULL, 0);
	call_ok(&t, "POST", "/v1/partitions/vmpong/start", NULL, 200, NULL);
	call_ok(&t, "POST", "/v1/partitions/vmpong/stop", NULL, 200, NULL);
	wait_audit(&t, "vm_start_cancelled", "vmpong", was_cancelled + 1,
		   120000);
	wait_state(&t, "vmpong", "stopped", 60000);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 0);
	cr_assert_eq(audit_count(&t, "vm_started", "vmpong", NULL, 0),
		     was_started);
	audit_count(&t, "partition_state", "vmpong", d, sizeof(d));
	cr_assert(!strstr(strstr(d, "-> stopped (exit 1, exit)"), "-> running"),
		  "%s", d);

	/* Destroy: refused while a grant names it; then 202, the agent
	 * destroys it and the row goes with its report; nothing left of it
	 * on the host. */
	call_ok(&t, "DELETE", "/v1/partitions/vmpong", NULL, 409, NULL);
	call_ok(&t, "DELETE", "/v1/grants/pingpong", NULL, 200, NULL);
	call_ok(&t, "DELETE", "/v1/partitions/vmpong", NULL, 202, &r);
	cr_assert_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "destroy-requested");
	ac_free(&r);
	wait_state(&t, "vmpong", "", 60000);
	wait_audit(&t, "vm_destroyed", "vmpong", 1, 30000);
	char spec[700];
	snprintf(spec, sizeof(spec), "%s/vm-specs/vmpong.json", t.a->dir);
	cr_assert_neq(access(spec, F_OK), 0, "%s kept", spec);
	cr_assert_eq(qemu_of(t.a->dir, "vmpong", q2, 4), 0);

	/* A restart now finds nothing to adopt, and leaves nothing. */
	stop_handed_over(t.a);
	agent_up(&t);
	wait_log(&t, "VMs at start-up: 0 adopted, 0 owned without a spec",
		 30000);
}

/* Hostile VM specs from the daemon: the API takes their shape, the agent
 * refuses their paths (only --image-dir and --config-dir; never its state
 * dir, which holds its key), audited `spec_refused` naming the field,
 * reported stopped (create-failed); nothing started, and each is
 * destroyed through the API. No VM boots. */
Test(vm_serve, hostile_daemon_vm_specs_refused_and_audited, .timeout = 120,
     .fini = vs_fini)
{
	static struct vs t;
	setup(&t, false);
	free(t_write(t.conf, "run.sh", "true\n", 5));
	static const struct {
		const char *name, *kernel, *cfg, *field;
	} bad[] = {
		{ "up", "../../../../../../boot/vmlinuz", "run.sh",
		  "field \"kernel\"" },
		{ "abs", "/boot/vmlinuz", "run.sh", "field \"kernel\"" },
		{ "key", "vmlinuz", "../agent-h1/host.key", "config[0].path" },
		{ "nofile", "vmlinuz", "nothere.sh", "config[0].path" },
	};
	size_t nbad = sizeof(bad) / sizeof(bad[0]);
	for (size_t i = 0; i < nbad; i++) {
		char body[1024];
		snprintf(body, sizeof(body), "{\"host\":\"h1\",\"backend\":"
			 "\"libvirt\",\"spec\":{\"kind\":\"vm\",\"name\":\"%s\","
			 "\"kernel\":\"%s\",\"initramfs\":\"initramfs.gz\","
			 "\"config\":[{\"name\":\"run\",\"path\":\"%s\"}]}}",
			 bad[i].name, bad[i].kernel, bad[i].cfg);
		call_ok(&t, "POST", "/v1/partitions", body, 201, NULL);
	}
	/* The API's own refusals: an unknown field of a VM spec, another
	 * kind, a VM spec as a thin partition. */
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"libvirt\",\"spec\":{\"kind\":\"vm\",\"name\":\"x\","
		"\"image\":\"a\"}}", 400, NULL);
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"libvirt\",\"spec\":{\"kind\":\"xen\",\"name\":\"x\"}}", 400,
		NULL);
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"thin\",\"spec\":{\"kind\":\"vm\",\"name\":\"x\"}}", 400,
		NULL);
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"libvirt\",\"spec\":{\"kind\":7,\"name\":\"x\"}}", 400, NULL);
	call_ok(&t, "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		"\"libvirt\",\"spec\":{\"kind\":\"vm\",\"name\":"
		"\"a123456789b123456789c123456789d123456789e1234567\"}}", 400,
		NULL);
	/* One is started before its agent ever had it: the start brings
	 * its CREATE along (and it is refused like the others). */
	call_ok(&t, "POST", "/v1/partitions/nofile/start", NULL, 200, NULL);
	agent_up(&t);
	for (size_t i = 0; i < nbad; i++) {
		wait_state(&t, bad[i].name, "stopped", 30000);
		wait_audit(&t, "spec_refused", bad[i].name, 1, 30000);
		char d[1024];
		audit_count(&t, "spec_refused", bad[i].name, d, sizeof(d));
		cr_assert(strstr(d, bad[i].field), "%s: %s", bad[i].name, d);
		audit_count(&t, "partition_state", bad[i].name, d, sizeof(d));
		cr_assert(strstr(d, "create-failed"), "%s: %s", bad[i].name, d);
	}
	/* Nothing was started: no libvirt root was ever made. */
	char root[700];
	snprintf(root, sizeof(root), "%s/libvirt", t.a->dir);
	cr_assert_neq(access(root, F_OK), 0, "%s exists", root);
	/* The agent loses one kept spec (as with a state dir lost): its
	 * DESTROY still ends (PartitionCommand.vm: nothing of it here). */
	fd_stop_agent(t.a);
	char lost[700];
	snprintf(lost, sizeof(lost), "%s/vm-specs/abs.json", t.a->dir);
	cr_assert_eq(unlink(lost), 0, "%s", lost);
	agent_up(&t);
	for (size_t i = 0; i < nbad; i++) {
		char path[128];
		snprintf(path, sizeof(path), "/v1/partitions/%s", bad[i].name);
		call_ok(&t, "DELETE", path, NULL, 202, NULL);
	}
	for (size_t i = 0; i < nbad; i++)
		wait_state(&t, bad[i].name, "", 30000);
	wait_log(&t, "VM abs: not here (no spec kept); reported destroyed",
		 10000);
	char specs[700];
	snprintf(specs, sizeof(specs), "%s/vm-specs", t.a->dir);
	DIR *d = opendir(specs);
	cr_assert(d, "%s", specs);
	struct dirent *e;
	while ((e = readdir(d)))
		cr_assert(e->d_name[0] == '.', "%s left in %s", e->d_name,
			  specs);
	closedir(d);
}

/* The bundle's baseline applies to a VM's key configuration files as to
 * any partition's: a golden baseline its run script does not match
 * refuses the VM before it starts (audited baseline_refused, reported
 * stopped, baseline-refused); its measurement still reaches the daemon.
 * The grant is what puts the baseline into the host's bundle. No QEMU. */
Test(vm_serve, golden_baseline_mismatch_refuses_the_vm, .timeout = 120,
     .fini = vs_fini)
{
	static struct vs t;
	setup(&t, true);
	free(t_write(t.conf, "run.sh", "true\n", 5));
	for (int i = 0; i < 2; i++) {
		char body[512];
		snprintf(body, sizeof(body), "{\"host\":\"h1\",\"backend\":"
			 "\"libvirt\",\"spec\":{\"kind\":\"vm\",\"name\":"
			 "\"%s\",\"kernel\":\"vmlinuz\",\"initramfs\":"
			 "\"initramfs.gz\",\"config\":[{\"name\":\"run\","
			 "\"path\":\"%s\"}]}}", i ? "other" : "gold",
			 i ? "../run.sh" : "run.sh");
		call_ok(&t, "POST", "/v1/partitions", body, 201, NULL);
	}
	const char *z = "0000000000000000000000000000000000000000000000000000"
			"000000000000";
	char golden[400];
	snprintf(golden, sizeof(golden), "{\"files\":{\"run\":\"%s\"},"
		 "\"segments\":[],\"digest\":\"%s\"}", z, z);
	call_ok(&t, "PUT", "/v1/baselines/gold", golden, 200, NULL);
	call_ok(&t, "POST", "/v1/grants", "{\"channel\":\"gc\","
		"\"endpoint_a\":\"gold\",\"endpoint_b\":\"other\","
		"\"direction\":\"both\",\"ring_bytes\":\"64K\"}", 201, NULL);
	agent_up(&t);
	wait_detail(&t, "partition_state", "gold", "baseline-refused", 60000);
	char d[2048];
	cr_assert_eq(audit_count(&t, "baseline_refused", "gold", d, sizeof(d)),
		     1, "%s", d);
	cr_assert(strstr(d, "\"run\" differs from its baseline"), "%s", d);
	cr_assert_eq(audit_count(&t, "vm_started", "gold", NULL, 0), 0);
	cr_assert_eq(qemu_of(t.a->dir, "gold", NULL, 0), 0);
	/* (the other one: its ../ refused, as in the test above) */
	wait_audit(&t, "spec_refused", "other", 1, 30000);
	/* Its measurement reached the daemon all the same. */
	struct ac_resp r;
	call_ok(&t, "GET", "/v1/measurements?host=h1", NULL, 200, &r);
	cr_assert(strstr(r.body, "\"gold\""), "%s", r.body);
	ac_free(&r);
}
