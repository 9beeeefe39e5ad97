/*
 * The agent's VMs through a SYSTEM libvirtd (--libvirt-uri qemu:///system;
 * issue 11): a private libvirtd and virtlogd the test starts as root
 * (tests/helpers/sysvirt.h: their own mount namespace, so nothing of the
 * host's /etc/libvirt, /run/libvirt or /var changes), with libvirt's
 * stock settings (no qemu.conf: its built-in defaults — stdio through
 * virtlogd, dynamic ownership, a mount namespace with a private /dev for
 * QEMU, cgroups through cgroupfs). The agent's vmmgr connects with
 * qemu+unix:///system?socket=DIR/libvirt-sock. A daemon that cannot start
 * is a failure, never a skip: ./dev deps installs libvirt-daemon.
 *
 * The QEMU uids of this suite: 6200000-6200999 (vmhost_set_uid_range),
 * clear of vm_chan's default range, so its VMs never meet another test's.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "agent/ctl/stop.h"
#include "agent/ipc/chanmgr.h"
#include "agent/vm/vmmgr.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/sysvirt.h"
#include "tests/helpers/vmloop.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"
#define UID_FIRST 6200000u
#define UID_LAST 6200999u

#define POLICY                                                             \
	"{\"grants\":[{\"channel\":\"pingpong\",\"endpoint_a\":\"ping\","  \
	"\"endpoint_b\":\"guest\",\"direction\":\"both\",\"ring_bytes\":"  \
	"\"64K\",\"require_integrity\":true}]}"

/* The daemons and the test's state, for the clean-up that runs even when
 * an assertion ended the test: no VM and no daemon outlives its test. */
static struct t_sysvirt sv;
static char *cur_dir;

/* A domain of another client's, named "intruder", claiming in its
 * metadata to be this agent's "guest"; transient: destroyed, it is gone. */
static virDomainPtr intruder_start(const char *vm_dir)
{
	virConnectPtr c = virConnectOpen(sv.uri);
	cr_assert(c, "libvirt: %s", virGetLastErrorMessage());
	char xml[2048];
	snprintf(xml, sizeof(xml),
		 "<domain type='qemu'><name>intruder</name>"
		 "<memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm"
		 "</type></os><devices><emulator>/usr/bin/qemu-system-x86_64"
		 "</emulator></devices><metadata><parley:vm xmlns:parley='"
		 VMHOST_NS "' name='guest' agent='%s'/></metadata>"
		 "</domain>", vm_dir);
	virDomainPtr d = virDomainCreateXML(c, xml, 0);
	cr_assert(d, "libvirt: %s", virGetLastErrorMessage());
	virConnectClose(c); /* (the domain holds its own reference) */
	return d;
}

static void intruder_stop(void)
{
	virConnectPtr c = sv.libvirtd ? virConnectOpen(sv.uri) : NULL;
	virDomainPtr d = c ? virDomainLookupByName(c, "intruder") : NULL;
	if (d) {
		virDomainDestroy(d);
		virDomainFree(d);
	}
	if (c)
		virConnectClose(c);
}

static void sys_fini(void)
{
	struct vmhost vh;
	struct parley_err err = { 0 };
	intruder_stop();
	if (cur_dir && sv.libvirtd && vmhost_open(&vh, cur_dir, sv.uri, &err) == 0) {
		vmhost_destroy(&vh, "guest", &err);
		vmhost_destroy(&vh, "vmpong", &err);
		vmhost_close(&vh);
	}
	t_sysvirt_stop(&sv);
	if (cur_dir)
		t_rmtree(cur_dir);
	free(cur_dir);
	cur_dir = NULL;
}

static void sys_start_linked(const char *qemu_conf, bool linked)
{
	static char why[8192];
	struct parley_err err = { 0 };
	cr_assert_eq(vmhost_set_uid_range(UID_FIRST, UID_LAST, &err), 0, "%s",
		     err.msg);
	int rc = t_sysvirt_start_linked(&sv, qemu_conf, linked, why,
					sizeof(why));
	cr_assert_eq(rc, 0, "a system libvirtd could not start here: %s", why);
}

static void sys_start(const char *qemu_conf)
{
	sys_start_linked(qemu_conf, false);
}

/* QEMU's pid: libvirt's pid file in the daemon's /run/libvirt. */
static pid_t qemu_pid(const char *name)
{
	char rp[PATH_MAX], pp[PATH_MAX + 64];
	snprintf(rp, sizeof(rp), "/run/libvirt/qemu/" VMHOST_PREFIX "%s.pid",
		 name);
	t_sysvirt_path(&sv, rp, pp, sizeof(pp));
	FILE *f = fopen(pp, "r");
	cr_assert(f, "%s: %s", pp, strerror(errno));
	int qpid = 0;
	cr_assert_eq(fscanf(f, "%d", &qpid), 1);
	fclose(f);
	return qpid;
}

/* "Uid:" and "Gid:" of /proc/PID/status (real ids). */
static void ids_of(pid_t pid, unsigned *uid, unsigned *gid)
{
	char p[64], line[256];
	*uid = *gid = ~0u;
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "Uid:\t%u", uid);
		sscanf(line, "Gid:\t%u", gid);
	}
	fclose(f);
}

/* A number field of /proc/PID/status ("CapEff:" in hex). */
static unsigned long long status_field(pid_t pid, const char *key)
{
	char p[64], line[256];
	unsigned long long v = ~0ull;
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtoull(line + strlen(key), NULL,
				     strcmp(key, "CapEff:") ? 10 : 16);
	fclose(f);
	return v;
}

static unsigned long ino_of(const char *p)
{
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
	return (unsigned long)st.st_ino;
}

/* Does pid hold a descriptor of file path? */
static bool holds_file(pid_t pid, const char *path)
{
	char d[64], l[PATH_MAX + 64], t[PATH_MAX];
	snprintf(d, sizeof(d), "/proc/%d/fd", (int)pid);
	DIR *dir = opendir(d);
	cr_assert(dir);
	struct dirent *e;
	bool found = false;
	while ((e = readdir(dir))) {
		snprintf(l, sizeof(l), "%s/%s", d, e->d_name);
		ssize_t n = readlink(l, t, sizeof(t) - 1);
		if (n > 0) {
			t[n] = 0;
			found |= !strcmp(t, path);
		}
	}
	closedir(dir);
	return found;
}

static bool pid_is_qemu(pid_t pid)
{
	char p[64], link[PATH_MAX];
	snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(p, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	return strstr(link, "qemu-system") != NULL;
}

/* The domain's log in the daemon's /var/log (QEMU's stderr, through
 * virtlogd), for a failure's message. */
static char *domain_log(void)
{
	char p[PATH_MAX + 64];
	t_sysvirt_path(&sv, "/var/log/libvirt/qemu/" VMHOST_PREFIX "guest.log",
		       p, sizeof(p));
	return t_slurp(p);
}

struct t_sys {
	struct t_fleet f;
	struct vmmgr m;
	struct vm_spec spec;
};

static void t_sys_setup(struct t_sys *t, const char *script)
{
	memset(t, 0, sizeof(*t));
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
		  access(VM_DIR "/vmlinuz", R_OK) == 0,
		  "no VM kernel/initramfs in " VM_DIR " (./dev deps, then build)");
	t_fleet_init(&t->f, POLICY);
	t->f.backend = t_kvm_missing() ? CTL_BACKEND_PROCESS : CTL_BACKEND_KVM;
	t->f.timeout_ms = 600000;
	cur_dir = strdup(t->f.dir);
	struct vm_spec *s = &t->spec;
	snprintf(s->name, sizeof(s->name), "guest");
	const char *acc = getenv("PARLEY_VM_ACCEL");
	int a = vm_accel_parse(acc ? acc : "tcg");
	cr_assert_geq(a, 0, "PARLEY_VM_ACCEL=%s: auto, kvm or tcg", acc);
	s->accel = (unsigned)a;
	snprintf(s->kernel, sizeof(s->kernel), "%s", VM_DIR "/vmlinuz");
	snprintf(s->initrd, sizeof(s->initrd), "%s", VM_DIR "/initramfs.gz");
	char *run = t_write(t->f.dir, "run.sh", script, strlen(script));
	char *cfg = t_write(t->f.dir, "app.conf", "mode=calm\n", 10);
	s->ncfg = 2;
	snprintf(s->cfg[0].name, sizeof(s->cfg[0].name), "run");
	snprintf(s->cfg[0].path, sizeof(s->cfg[0].path), "%s", run);
	snprintf(s->cfg[1].name, sizeof(s->cfg[1].name), "app.conf");
	snprintf(s->cfg[1].path, sizeof(s->cfg[1].path), "%s", cfg);
	free(run);
	free(cfg);
}

static char *console(struct t_sys *t)
{
	return t_vm_console(&t->m, t->spec.name);
}

static char *domain_log_of(void *ctx)
{
	(void)ctx;
	return domain_log();
}

static void serve_until(struct t_sys *t, const char *until, int limit_s)
{
	t_vm_serve_until(&t->f, &t->m, t->spec.name, until, limit_s,
			 domain_log_of, NULL);
}

#define CONSOLE_HAS(t, s)                                                  \
	do {                                                               \
		char *c_ = console(t);                                     \
		cr_assert(strstr(c_, s), "no '%s' on the console:\n%s", s, c_); \
		free(c_);                                                  \
	} while (0)

/* The cgroups QEMU is in (cgroupfs, v1 and v2: libvirtd without systemd
 * makes machine/qemu-N-NAME.libvirt-qemu in each hierarchy): their
 * directories, to be gone after the destroy. */
static unsigned qemu_cgroups(pid_t pid, char dirs[][PATH_MAX], unsigned cap)
{
	char p[64], line[PATH_MAX];
	unsigned n = 0;
	snprintf(p, sizeof(p), "/proc/%d/cgroup", (int)pid);
	FILE *f = fopen(p, "r");
	cr_assert(f);
	while (n < cap && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2 || !strstr(c2, "qemu-"))
			continue;
		*c2 = 0;
		char *ctl = c1 + 1, *comma = strchr(ctl, ',');
		if (comma)
			*comma = 0;
		if (!strncmp(ctl, "name=", 5))
			ctl += 5;
		snprintf(dirs[n], PATH_MAX, "/sys/fs/cgroup/%.64s%.3900s",
			 *ctl ? ctl : "unified", c2 + 1);
		struct stat st;
		if (stat(dirs[n], &st) == 0)
			n++;
	}
	fclose(f);
	return n;
}

/* Nothing of the VM left: no domain on the daemon, no QEMU, nothing of
 * parley's in /dev/shm, none of its cgroups. */
static void nothing_left(pid_t qpid, char cg[][PATH_MAX], unsigned ncg)
{
	virConnectPtr c = virConnectOpen(sv.uri);
	cr_assert(c, "connect %s", sv.uri);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c, &doms, 0);
	cr_assert_eq(n, 0, "%d domains left on the system libvirtd", n);
	free(doms);
	virConnectClose(c);
	for (int i = 0; i < 500 && pid_is_qemu(qpid); i++)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	cr_assert(!pid_is_qemu(qpid), "QEMU %d still runs", (int)qpid);
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	while (d && (e = readdir(d)))
		cr_assert(!strstr(e->d_name, "parley"), "/dev/shm/%s left",
			  e->d_name);
	if (d)
		closedir(d);
	for (unsigned i = 0; i < ncg; i++) {
		struct stat st;
		cr_assert_neq(stat(cg[i], &st), 0, "cgroup %s left", cg[i]);
	}
}

static bool keep_guest(const char *name, void *ctx)
{
	(void)ctx;
	return !strcmp(name, "guest");
}

static bool keep_none(const char *name, void *ctx)
{
	(void)name;
	(void)ctx;
	return false;
}

/* ping (a thin partition) and the VM's `parley-chan pong` over a granted
 * channel, the VM started through the system libvirtd by the agent's
 * vmmgr; its QEMU as the VM's own uid of the range; then the VM destroyed
 * and nothing left. */
Test(vm_system, vm_and_thin_partition_ping_pong_through_system_libvirtd,
     .timeout = 400, .fini = sys_fini)
{
	struct t_sys t;
	sys_start(NULL);
	t_sys_setup(&t, "parley-chan open pingpong || exit 1\n"
			"parley-chan pong pingpong 10000\n"
			"echo SCRIPT-END\n"
			"sleep 600\n");
	struct parley_err err = { 0 };
	cr_assert_eq(vmmgr_init(&t.m, t.f.dir, sv.uri, &t.f.cm, &t.f.audit,
				&err), 0, "%s", err.msg);
	struct partition *ping = t_fleet_add(&t.f, "ping", "ping.elf",
					     "count=10000", NULL, false, NULL);
	int rc = vmmgr_add(&t.m, &t.spec, &err);
	if (rc) {
		char *l = domain_log();
		cr_assert_fail("vmmgr_add: %d %s\ndomain log:\n%s", rc, err.msg, l);
	}
	t_fleet_go(&t.f);
	serve_until(&t, "SCRIPT-END", 360);
	CONSOLE_HAS(&t, "OPEN pingpong handle=");
	CONSOLE_HAS(&t, "PONG 10000 messages checked and answered");
	cr_assert_eq(t_fleet_run(&t.f, 10000), 0, "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.reason, VMX_STOP_EXIT, "%s", t_fleet_out(&t.f));
	cr_assert_eq(ping->fin.code, 0, "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "ping: 10000 messages each way"),
		  "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), "checksums ok"), "%s",
		  t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_audit(&t.f), "\"event\":\"open_allowed\","
			 "\"partition\":\"guest\""), "%s", t_fleet_audit(&t.f));
	/* QEMU as the VM's uid of the suite's range, QEMU's group */
	pid_t qpid = qemu_pid("guest");
	uid_t want;
	cr_assert_eq(vmhost_vm_uid(&t.m.host, "guest", false, &want, &err), 0,
		     "%s", err.msg);
	unsigned uid, gid;
	ids_of(qpid, &uid, &gid);
	struct passwd *pw = getpwnam(VMHOST_QEMU_USER);
	cr_assert(pw);
	cr_assert_eq(uid, (unsigned)want);
	cr_assert(uid >= UID_FIRST && uid <= UID_LAST, "uid %u", uid);
	cr_assert_eq(gid, (unsigned)pw->pw_gid);
	/* as under the embedded driver: no capabilities, no_new_privs, its
	 * seccomp filter; in the mount namespace libvirt gives it (a /dev
	 * of its own), which the agent's paths (STATE/vm) did not need */
	cr_assert_eq(status_field(qpid, "CapEff:"), 0);
	cr_assert_eq(status_field(qpid, "NoNewPrivs:"), 1);
	cr_assert_eq(status_field(qpid, "Seccomp:"), 2);
	char a[64], b[64];
	snprintf(a, sizeof(a), "/proc/%d/ns/mnt", (int)qpid);
	snprintf(b, sizeof(b), "/proc/%d/ns/mnt", (int)sv.libvirtd);
	cr_assert_neq(ino_of(a), ino_of(b), "QEMU in libvirtd's mount "
		      "namespace: no private /dev");
	/* dynamic ownership (stock: on) left the agent's files alone
	 * (relabel='no'): the console is virtlogd's file (root's, 0600;
	 * QEMU writes a pipe, no descriptor of the file), the control
	 * socket root's, the config file the agent measured root's */
	char con[PATH_MAX + 64];
	vmhost_console_path(&t.m.host, "guest", con, sizeof(con));
	struct stat st;
	cr_assert_eq(stat(con, &st), 0);
	cr_assert(st.st_uid == 0 && st.st_gid == 0 &&
		  (st.st_mode & 0777) == 0600, "console %u:%u %o",
		  (unsigned)st.st_uid, (unsigned)st.st_gid, st.st_mode & 0777);
	cr_assert(!holds_file(qpid, con), "QEMU holds the console file");
	cr_assert_eq(stat(t.spec.cfg[1].path, &st), 0);
	cr_assert(st.st_uid == 0 && st.st_gid == 0);
	/* <qemu:commandline> (the agent's own monitor) is allowed under a
	 * system libvirtd; the domain says it is tainted */
	char *dl = domain_log();
	cr_assert(strstr(dl, "is tainted: custom-argv"), "%s", dl);
	free(dl);
	static char cg[16][PATH_MAX];
	unsigned ncg = qemu_cgroups(qpid, cg, 16);
	/* Another agent on the same daemon (a state directory of its own)
	 * neither adopts nor destroys this agent's VM, nor finds it by
	 * name. */
	char *odir = t_tmpdir();
	struct vmhost other;
	cr_assert_eq(vmhost_open(&other, odir, sv.uri, &err), 0, "%s", err.msg);
	unsigned adopted = 9, destroyed = 9;
	cr_assert_eq(vmhost_reconcile(&other, keep_none, NULL, &adopted,
				      &destroyed, &err), 0, "%s", err.msg);
	cr_assert(adopted == 0 && destroyed == 0, "%u %u", adopted, destroyed);
	cr_assert_eq(vmhost_running(&other, "guest"), 0);
	cr_assert_eq(vmhost_destroy(&other, "guest", &err), -ENOENT);
	vmhost_close(&other);
	t_rmtree(odir);
	free(odir);
	/* A domain of another name whose metadata says it is this agent's
	 * "guest" (any client that may define domains can write that):
	 * neither adopted nor destroyed */
	virDomainPtr in = intruder_start(t.m.host.dir);
	adopted = destroyed = 9;
	cr_assert_eq(vmhost_reconcile(&t.m.host, keep_guest, NULL, &adopted,
				      &destroyed, &err), 0, "%s", err.msg);
	cr_assert(adopted == 1 && destroyed == 0, "%u %u", adopted, destroyed);
	cr_assert_eq(virDomainIsActive(in), 1, "the intruder was destroyed");
	virDomainDestroy(in);
	virDomainFree(in);
	cr_assert_eq(vmhost_running(&t.m.host, "guest"), 1);
	/* the destroy, as the agent's stop does it */
	cr_assert_eq(vmhost_destroy(&t.m.host, "guest", &err), 0, "%s", err.msg);
	vmmgr_free(&t.m);
	t_fleet_free(&t.f);
	nothing_left(qpid, cg, ncg);
}

/* A system libvirtd whose qemu.conf takes from QEMU what the agent's VMs
 * rest on is refused when the agent connects — not at a VM's start, and
 * naming each setting and the file. A URI the agent does not take never
 * reaches libvirt. */
Test(vm_system, qemu_conf_that_weakens_qemu_refused_at_open_naming_it,
     .timeout = 120, .fini = sys_fini)
{
	/* (security_require_confined = 1 is refused too where SELinux or
	 * AppArmor stack — there are neither here, and libvirtd itself
	 * refuses to start with it then) */
	sys_start("# the operator's\n"
		  "seccomp_sandbox = 0\n"
		  "  clear_emulator_capabilities=0   # no\n");
	char *dir = t_tmpdir();
	cur_dir = dir;
	struct vmhost vh;
	struct parley_err err = { 0 };
	cr_assert_eq(vmhost_open(&vh, dir, sv.uri, &err), -EPERM, "%s",
		     err.msg);
	cr_assert(strstr(err.msg, "/etc/libvirt/qemu.conf"), "%s", err.msg);
	cr_assert(strstr(err.msg, "seccomp_sandbox = 0"), "%s", err.msg);
	cr_assert(strstr(err.msg, "clear_emulator_capabilities = 0"), "%s",
		  err.msg);
	/* the same settings behind an absolute symbolic link in the
	 * daemon's /etc: followed in the daemon's root, not the agent's
	 * (where the link's target does not exist: "no qemu.conf") */
	t_sysvirt_stop(&sv);
	sys_start_linked("seccomp_sandbox = 0\n", true);
	err = (struct parley_err){ 0 };
	cr_assert_eq(vmhost_open(&vh, dir, sv.uri, &err), -EPERM, "%s",
		     err.msg);
	cr_assert(strstr(err.msg, "seccomp_sandbox = 0"), "%s", err.msg);
	/* the daemon's own settings, back to stock: accepted */
	t_sysvirt_stop(&sv);
	sys_start("seccomp_sandbox = 1\n# clear_emulator_capabilities = 0\n");
	err = (struct parley_err){ 0 };
	cr_assert_eq(vmhost_open(&vh, dir, sv.uri, &err), 0, "%s", err.msg);
	vmhost_close(&vh);
	/* URIs the agent does not take */
	static const char *const bad[] = {
		"qemu:///session", "qemu+ssh://h/system", "qemu:///embed?root=/",
		"qemu:///system2", "test:///default",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err = (struct parley_err){ 0 };
		cr_assert_eq(vmhost_open(&vh, dir, bad[i], &err), -EINVAL,
			     "%s", bad[i]);
		cr_assert(strstr(err.msg, "qemu:///system"), "%s", err.msg);
	}
}

/* parley-agent run with --libvirt-uri (the option down to vmmgr): the
 * README's examples, thin ping's 1,000 checksummed messages answered by
 * the VM vmpong, through the system libvirtd; its QEMU of the suite's
 * range; nothing left on the daemon when the run ends. */
Test(vm_system, agent_run_with_libvirt_uri_examples_exchange, .timeout = 400,
     .fini = sys_fini)
{
	sys_start(NULL);
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0,
		  "no VM initramfs in " VM_DIR " (./dev deps, then build)");
	/* TCG unless said otherwise (tests/test_vm_agent.c: a nested KVM
	 * may run thin partitions and not boot Linux) */
	setenv("PARLEY_VM_ACCEL", getenv("PARLEY_VM_ACCEL") ?
	       getenv("PARLEY_VM_ACCEL") : "tcg", 1);
	char *dir = t_tmpdir();
	cur_dir = strdup(dir);
	char audit[512];
	snprintf(audit, sizeof(audit), "%s/audit.jsonl", dir);
	char range[32];
	snprintf(range, sizeof(range), "%u-%u", UID_FIRST, UID_LAST);
	char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
			 PARLEY_BUILD_DIR "/guest", "--image-dir", VM_DIR,
			 "--state-dir", dir, "--libvirt-uri", sv.uri,
			 "--qemu-uid-range", range,
			 "--policy", PARLEY_SOURCE_DIR "/examples/vm-grants.json",
			 "--audit", audit,
			 PARLEY_SOURCE_DIR "/examples/vm-ping.json",
			 PARLEY_SOURCE_DIR "/examples/vm-pong.json", NULL };
	char *out;
	int rc = t_run(argv, &out, 380);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "vmpong| PONG 1000 messages checked and "
			      "answered"), "%s", out);
	cr_assert(strstr(out, "ping| ping: 1000 messages each way"), "%s", out);
	cr_assert(strstr(out, "checksums ok"), "%s", out);
	cr_assert(strstr(out, "vmpong| PARLEY-GUEST done rc=0"), "%s", out);
	char *a = t_slurp(audit);
	cr_assert(strstr(a, "\"event\":\"open_allowed\",\"partition\":"
			 "\"vmpong\""), "%s", a);
	free(a);
	/* its uid record: of the range */
	char rec[PATH_MAX + 32];
	snprintf(rec, sizeof(rec), "%s/vm/uids/vmpong", dir);
	char *u = t_slurp(rec);
	unsigned long uid = strtoul(u, NULL, 10);
	cr_assert(uid >= UID_FIRST && uid <= UID_LAST, "uid record '%s'", u);
	free(u);
	virConnectPtr c = virConnectOpen(sv.uri);
	cr_assert(c);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c, &doms, 0);
	cr_assert_eq(n, 0, "%d domains left after the run", n);
	free(doms);
	virConnectClose(c);
	free(out);
	t_rmtree(dir);
	free(dir);
}

/* The domain XML under a system libvirtd whose security drivers confine
 * QEMU (SELinux, AppArmor: none here to run it under): our domains are
 * unconfined by them, DAC keeping each QEMU's own uid; the metadata
 * names the agent (its STATE/vm) beside the VM. */
Test(vm_system, xml_unconfined_by_selinux_apparmor_and_names_the_agent)
{
	struct vmhost vh;
	memset(&vh, 0, sizeof(vh));
	snprintf(vh.dir, sizeof(vh.dir), "/var/lib/parley/vm");
	vh.qemu_gid = 994;
	vh.system = true;
	struct vm_spec s = { .name = "guest", .kernel = "/k", .initrd = "/i",
			     .accel = VM_ACCEL_TCG };
	static char xml[16384];
	struct parley_err err = { 0 };
	for (unsigned u = 0; u < 4; u++) {
		vh.unconfine = u;
		cr_assert_eq(vmhost_xml(&vh, &s, 6200007, xml, sizeof(xml), &err),
			     0, "%s", err.msg);
		cr_assert(strstr(xml, "<seclabel type='static' model='dac' "
				 "relabel='no'><label>+6200007:+994</label>"
				 "</seclabel>"), "%s", xml);
		cr_assert_eq(strstr(xml, "<seclabel type='none' model='selinux'/>")
			     != NULL, (u & VMHOST_SEC_SELINUX) != 0, "%u: %s", u,
			     xml);
		cr_assert_eq(strstr(xml, "<seclabel type='none' model='apparmor'/>")
			     != NULL, (u & VMHOST_SEC_APPARMOR) != 0, "%u: %s", u,
			     xml);
		cr_assert(strstr(xml, "name='guest' agent='/var/lib/parley/vm'"),
			  "%s", xml);
	}
}
