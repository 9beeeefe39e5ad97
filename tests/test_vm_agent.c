/*
 * `parley-agent run` with Linux VMs (issue 11) through the real agent
 * binary: a VM spec ("kind": "vm", agent/vm/vmspec.h) beside a thin
 * partition's, one --policy granting their channel. Real VMs under TCG
 * unless PARLEY_VM_ACCEL says otherwise (this machine's nested KVM cannot
 * boot Linux); a missing kernel or QEMU is a failure, never a skip.
 * Hostile VM specs need no VM: each refused naming the field, nothing
 * started.
 */
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm/vmhost.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"
#define EX PARLEY_SOURCE_DIR "/examples/"

static void need_vms(void)
{
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
		  access(VM_DIR "/vmlinuz", R_OK) == 0,
		  "no VM kernel/initramfs in " VM_DIR " (./dev deps, then build)");
	cr_assert(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
		  "no qemu-system-x86_64 (./dev deps)");
	setenv("PARLEY_VM_ACCEL", getenv("PARLEY_VM_ACCEL") ?
	       getenv("PARLEY_VM_ACCEL") : "tcg", 1);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	static char buf[1 << 18];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return strdup(buf);
}

/* The state dir of the test running, for the clean-up that runs even when
 * an assertion ended it early: no VM outlives its test. */
static char *cur_dir;

static void vm_fini(void)
{
	struct vmhost vh;
	struct parley_err err = { 0 };
	if (!cur_dir)
		return;
	if (vmhost_open(&vh, cur_dir, NULL, &err) == 0) {
		vmhost_destroy(&vh, "vmpong", &err);
		vmhost_destroy(&vh, "guest", &err);
		vmhost_close(&vh);
	}
	/* a test an assertion ended: its state directory too (what it
	 * showed is in the assertion's message) */
	t_rmtree(cur_dir);
	cur_dir = NULL;
}

/* The examples as the README runs them: thin ping's 1,000 checksummed
 * messages answered by the VM vmpong's parley-chan. */
Test(vm_agent, example_thin_ping_and_vm_pong_exchange, .timeout = 300,
     .fini = vm_fini)
{
	need_vms();
	char *dir = t_tmpdir();
	cur_dir = dir;
	char audit[512];
	snprintf(audit, sizeof(audit), "%s/audit.jsonl", dir);
	char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
			 PARLEY_BUILD_DIR "/guest", "--image-dir", VM_DIR,
			 "--state-dir", dir, "--policy", EX "vm-grants.json",
			 "--audit", audit, EX "vm-ping.json", EX "vm-pong.json",
			 NULL };
	char *out;
	int rc = t_run(argv, &out, 280);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "vmpong| OPEN pingpong handle="), "%s", out);
	cr_assert(strstr(out, "vmpong| PONG 1000 messages checked and "
			      "answered"), "%s", out);
	cr_assert(strstr(out, "ping| ping: 1000 messages each way"), "%s", out);
	cr_assert(strstr(out, "checksums ok"), "%s", out);
	cr_assert(strstr(out, "vmpong| PARLEY-GUEST done rc=0"), "%s", out);
	char line[96];
	snprintf(line, sizeof(line), "  %-20s %-8s exit 0\n", "vmpong", "vm");
	cr_assert(strstr(out, line), "%s", out);
	char *a = slurp(audit);
	cr_assert(strstr(a, "\"event\":\"open_allowed\",\"partition\":\"vmpong\""),
		  "%s", a);
	cr_assert(strstr(a, "\"event\":\"open_allowed\",\"partition\":\"ping\""),
		  "%s", a);
	cr_assert(strstr(a, "\"event\":\"vm_stopped\""), "%s", a);
	free(a);
	free(out);
	cur_dir = NULL;
	t_rmtree(dir);
	free(dir);
}

/* The VM's config file changes on the host while it runs: its next open
 * is refused INTEGRITY naming the file, it is quarantined, and the agent
 * says so in its audit. The guest keeps asking until it is refused, so
 * nothing here depends on how fast the VM boots. */
Test(vm_agent, tampered_vm_config_refused_integrity, .timeout = 300,
     .fini = vm_fini)
{
	need_vms();
	char *dir = t_tmpdir();
	cur_dir = dir;
	const char *script =
		"echo READY\n"
		"for i in $(seq 3000); do\n"
		"  out=$(parley-chan open pingpong)\n"
		"  case \"$out\" in *INTEGRITY*|*QUARANTINED*) echo \"$out\"; "
		"exit 0;; esac\n"
		"  case \"$out\" in OPEN*) parley-chan close pingpong;; esac\n"
		"  sleep 0.1\n"
		"done\n"
		"exit 1\n";
	char *run = t_write(dir, "run.sh", script, strlen(script));
	char *app = t_write(dir, "app.conf", "mode=calm\n", 10);
	const char *spec =
		"{\"kind\":\"vm\",\"name\":\"guest\",\"kernel\":\"vmlinuz\","
		"\"initramfs\":\"initramfs.gz\",\"memory\":\"128M\","
		"\"config\":[{\"name\":\"app.conf\",\"path\":\"app.conf\"},"
		"{\"name\":\"run\",\"path\":\"run.sh\"}]}";
	char *vm = t_write(dir, "guest.json", spec, strlen(spec));
	const char *pol =
		"{\"grants\":[{\"channel\":\"pingpong\",\"endpoint_a\":\"ping\","
		"\"endpoint_b\":\"guest\",\"direction\":\"both\",\"ring_bytes\":"
		"\"64K\",\"require_integrity\":true}]}";
	char *policy = t_write(dir, "policy.json", pol, strlen(pol));
	/* ping idles (window=0): the VM's peer, up all along */
	const char *ps = "{\"name\":\"ping\",\"image\":\"ping.elf\",\"memory\":"
			 "\"8M\",\"cmdline\":\"count=1 window=0\"}";
	char *ping = t_write(dir, "ping.json", ps, strlen(ps));
	char outp[512], audit[512], state[512];
	snprintf(outp, sizeof(outp), "%s/out.txt", dir);
	snprintf(audit, sizeof(audit), "%s/audit.jsonl", dir);
	snprintf(state, sizeof(state), "%s", dir);
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent);
		int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(T_AGENT, T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
		      PARLEY_BUILD_DIR "/guest", "--image-dir", VM_DIR,
		      "--state-dir", state, "--policy", policy, "--audit",
		      audit, ping, vm, (char *)NULL);
		_exit(127);
	}
	/* The agent measured app.conf before the VM started; READY is the
	 * guest's first line. */
	char *out = NULL;
	for (int i = 0; i < 2400; i++) {
		free(out);
		out = slurp(outp);
		if (strstr(out, "guest| READY"))
			break;
		usleep(100 * 1000);
	}
	cr_assert(strstr(out, "guest| READY"), "the VM never started:\n%s", out);
	FILE *f = fopen(app, "a");
	cr_assert(f);
	fputs("mode=wild\n", f);
	fclose(f);
	bool refused = false;
	for (int i = 0; i < 2400 && !refused; i++) {
		free(out);
		out = slurp(outp);
		refused = strstr(out, "guest| ERROR INTEGRITY guest/app.conf") ||
			  strstr(out, "guest| PARLEY-GUEST done");
		if (!refused)
			usleep(100 * 1000);
	}
	kill(pid, SIGTERM);
	int st = 0;
	waitpid(pid, &st, 0);
	free(out);
	out = slurp(outp);
	cr_assert(strstr(out, "guest| ERROR INTEGRITY guest/app.conf"),
		  "%s", out);
	char *a = slurp(audit);
	cr_assert(strstr(a, "\"event\":\"open_denied\",\"partition\":\"guest\""),
		  "%s", a);
	cr_assert(strstr(a, "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\""),
		  "%s", a);
	cr_assert(strstr(a, "\"event\":\"quarantine\",\"partition\":\"guest\""),
		  "%s", a);
	free(a);
	free(out);
	free(run);
	free(app);
	free(vm);
	free(policy);
	free(ping);
	cur_dir = NULL;
	t_rmtree(dir);
	free(dir);
}

/* Hostile VM specs: refused naming the field, nothing started (a thin
 * partition given first does not start either). */
static const struct {
	const char *json;
	const char *msg;
} bad_vm[] = {
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"}],\"kernal\":1}", "unknown field \"kernal\"" },
	{ "{\"kind\":\"vmm\",\"name\":\"g\"}", "field \"kind\"" },
	{ "{\"kind\":\"vm\",\"name\":\"../g\",\"kernel\":\"vmlinuz\"}",
	  "field \"name\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"../../etc/passwd\","
	  "\"initramfs\":\"initramfs.gz\"}", "field \"kernel\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"/boot/vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\"}", "field \"kernel\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"nope.gz\"}", "field \"initramfs\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"memory\":\"1M\"}", "field \"memory\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"memory\":\"99T\"}", "field \"memory\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"vcpus\":0}", "field \"vcpus\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\"}", "missing field \"config\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"app\","
	  "\"path\":\"run.sh\"}]}", "no entry named \"run\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"},{\"name\":\"run\",\"path\":\"run.sh\"}]}",
	  "config[1].name" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"a/b\","
	  "\"path\":\"run.sh\"}]}", "config[0].name" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"link.sh\"}]}", "config[0].path" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"}],\"cmdline\":\"a</cmdline><x>\"}",
	  "field \"cmdline\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"}],\"accel\":\"xen\"}", "field \"accel\"" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"},{\"name\":\"b\",\"path\":\"run.sh\"},"
	  "{\"name\":\"c\",\"path\":\"run.sh\"},{\"name\":\"d\",\"path\":"
	  "\"run.sh\"},{\"name\":\"e\",\"path\":\"run.sh\"}]}",
	  "field \"config\": 5 entries" },
	{ "{\"kind\":\"vm\",\"name\":\"g\",\"kernel\":\"vmlinuz\","
	  "\"initramfs\":\"initramfs.gz\",\"config\":[{\"name\":\"run\","
	  "\"path\":\"run.sh\"}]}", "needs --state-dir" },
};

Test(vm_agent, hostile_vm_specs_name_the_field_and_start_nothing,
     .timeout = 60)
{
	char *dir = t_tmpdir();
	char *k = t_write(dir, "vmlinuz", "k", 1);
	char *i = t_write(dir, "initramfs.gz", "i", 1);
	char *r = t_write(dir, "run.sh", "true\n", 5);
	char link[512];
	snprintf(link, sizeof(link), "%s/link.sh", dir);
	cr_assert_eq(symlink("run.sh", link), 0);
	for (size_t n = 0; n < sizeof(bad_vm) / sizeof(*bad_vm); n++) {
		char *spec = t_write(dir, "bad.json", bad_vm[n].json,
				     strlen(bad_vm[n].json));
		char *out;
		char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
				 PARLEY_BUILD_DIR "/guest",
				 PARLEY_SOURCE_DIR "/examples/hello.json", spec,
				 NULL };
		int rc = t_run(argv, &out, 30);
		cr_assert_eq(rc, 2, "case %zu exit %d:\n%s", n, rc, out);
		cr_assert(strstr(out, bad_vm[n].msg), "case %zu: %s", n, out);
		cr_assert(strstr(out, spec), "case %zu names the file: %s", n,
			  out);
		cr_assert_null(strstr(out, "hello|"), "started anyway: %s", out);
		free(out);
		free(spec);
	}
	free(k);
	free(i);
	free(r);
	t_rmtree(dir);
	free(dir);
}

/* A state directory QEMU's user cannot reach (a parent with no search
 * permission for it) is refused when VMs are opened, naming that parent,
 * before libvirt starts anything; after chmod o+x the same directory is
 * taken. */
Test(vm_agent, state_dir_qemu_cannot_reach_is_refused_naming_the_parent,
     .timeout = 60)
{
	if (geteuid() != 0)
		cr_skip_test("QEMU runs as its own user only when the agent "
			     "is root");
	char *top = t_tmpdir();
	char mid[600], state[700];
	snprintf(mid, sizeof(mid), "%s/closed", top);
	snprintf(state, sizeof(state), "%s/state", mid);
	cr_assert_eq(chmod(top, 0755), 0);
	cr_assert_eq(mkdir(mid, 0700), 0);
	cr_assert_eq(mkdir(state, 0700), 0);
	struct vmhost vh;
	struct parley_err err = { 0 };
	cr_assert_eq(vmhost_open(&vh, state, NULL, &err), -EACCES, "%s",
		     perr_msg(&err));
	cr_expect(strstr(perr_msg(&err), mid) &&
		  strstr(perr_msg(&err), "mode 0700"), "%s", perr_msg(&err));
	char lib[800];
	snprintf(lib, sizeof(lib), "%s/libvirt/lib", state);
	cr_expect_neq(access(lib, F_OK), 0,
		      "libvirt started under a refused state directory");
	cr_assert_eq(chmod(mid, 0711), 0);
	memset(&err, 0, sizeof(err));
	cr_expect_eq(vmhost_open(&vh, state, NULL, &err), 0, "%s",
		     perr_msg(&err));
	vmhost_close(&vh);
	t_rmtree(top);
	free(top);
}

/* The uids each VM's QEMU may take: a range holding root, a host user or
 * the vmm processes' uids is refused, saying which; the syntax is strict. */
Test(vm_agent, qemu_uid_range_with_root_users_or_vmm_uids_refused,
     .timeout = 30)
{
	static const char *const bad[] = {
		"", "5", "5-", "-5", "+5-6", " 5-6", "5-6 ", "5--6", "5-6x",
		"0x10-0x20", "99999999999-1", "4294967295-4294967295",
		"12345678901-12345678902",
	};
	uint32_t a, b;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(vmhost_parse_uid_range(bad[i], &a, &b), -EINVAL,
			     "'%s' parsed as %u-%u", bad[i], a, b);
	cr_assert_eq(vmhost_parse_uid_range("7000000-7000009", &a, &b), 0);
	cr_assert(a == 7000000 && b == 7000009);
	struct parley_err err = { 0 };
	/* root */
	cr_assert_eq(vmhost_set_uid_range(0, 100, &err), -EINVAL);
	cr_expect(strstr(perr_msg(&err), "root"), "%s", perr_msg(&err));
	/* backwards */
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_set_uid_range(7000009, 7000000, &err), -EINVAL);
	/* a user of the host: parley-qemu itself, and nobody (65534) */
	struct passwd *pw = getpwnam(VMHOST_QEMU_USER);
	cr_assert(pw, "no user " VMHOST_QEMU_USER " (./dev deps)");
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_set_uid_range(pw->pw_uid, pw->pw_uid, &err),
		     -EEXIST);
	cr_expect(strstr(perr_msg(&err), VMHOST_QEMU_USER), "%s",
		  perr_msg(&err));
	struct passwd *nb = getpwuid(65534);
	if (nb) {
		memset(&err, 0, sizeof(err));
		cr_assert_eq(vmhost_set_uid_range(60000, 70000, &err), -EEXIST);
		cr_expect(strstr(perr_msg(&err), nb->pw_name), "%s",
			  perr_msg(&err));
	}
	/* the vmm processes' default range */
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_set_uid_range(6065535, 6100000, &err), -EINVAL);
	cr_expect(strstr(perr_msg(&err), "vmm"), "%s", perr_msg(&err));
	/* and a good one is taken */
	cr_assert_eq(vmhost_set_uid_range(7000000, 7000009, &err), 0, "%s",
		     perr_msg(&err));
}

/* Each VM name its own uid, lowest free first, kept across opens (an
 * adopting agent finds it); the range used up is an error, a record that
 * is not a uid is one too unless a new uid is being given, and a monitor
 * whose peer is not the VM's uid is refused. */
Test(vm_agent, qemu_uids_one_per_vm_recorded_and_checked, .timeout = 60)
{
	if (geteuid() != 0)
		cr_skip_test("per-VM uids only when the agent is root");
	struct parley_err err = { 0 };
	cr_assert_eq(vmhost_set_uid_range(7000000, 7000001, &err), 0, "%s",
		     perr_msg(&err));
	char *dir = t_tmpdir();
	cr_assert_eq(chmod(dir, 0711), 0);
	struct vmhost vh;
	cr_assert_eq(vmhost_open(&vh, dir, NULL, &err), 0, "%s", perr_msg(&err));
	uid_t u1, u2, u3;
	cr_assert_eq(vmhost_vm_uid(&vh, "one", false, &u1, &err), -ENOENT);
	cr_assert_eq(vmhost_vm_uid(&vh, "one", true, &u1, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(vmhost_vm_uid(&vh, "two", true, &u2, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(u1, 7000000u);
	cr_assert_eq(u2, 7000001u);
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_vm_uid(&vh, "three", true, &u3, &err), -EAGAIN);
	cr_expect(strstr(perr_msg(&err), "7000000-7000001"), "%s",
		  perr_msg(&err));
	cr_assert_eq(vmhost_vm_uid(&vh, "../x", true, &u3, &err), -EINVAL);
	vmhost_close(&vh);
	/* a new open (an agent that restarted) finds the same */
	cr_assert_eq(vmhost_open(&vh, dir, NULL, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(vmhost_vm_uid(&vh, "two", false, &u3, &err), 0);
	cr_assert_eq(u3, u2);
	/* a record that is not a uid: refused when looked up, replaced when
	 * the VM starts (its QEMU is not running then) */
	char rec[700];
	snprintf(rec, sizeof(rec), "%s/vm/uids/two", dir);
	free(t_write(dir, "vm/uids/two", "12ab\n", 5));
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_vm_uid(&vh, "two", false, &u3, &err), -EBADMSG);
	cr_expect(strstr(perr_msg(&err), rec), "%s", perr_msg(&err));
	cr_assert_eq(vmhost_vm_uid(&vh, "two", true, &u3, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(u3, 7000001u);
	/* the domain carries the uid as a static DAC label, QEMU's group
	 * with it; none for a QEMU that runs as the agent */
	struct vm_spec sp = { .name = "one", .kernel = "/k", .initrd = "/i",
			      .accel = VM_ACCEL_TCG };
	static char xml[16384];
	char want[160];
	cr_assert_eq(vmhost_xml(&vh, &sp, 7000000, xml, sizeof(xml), &err), 0,
		     "%s", perr_msg(&err));
	snprintf(want, sizeof(want), "<seclabel type='static' model='dac' "
		 "relabel='no'><label>+7000000:+%u</label></seclabel>",
		 (unsigned)vh.qemu_gid);
	cr_assert(strstr(xml, want), "%s", xml);
	cr_assert_eq(vmhost_xml(&vh, &sp, (uid_t)-1, xml, sizeof(xml), &err),
		     0, "%s", perr_msg(&err));
	cr_assert_null(strstr(xml, "seclabel"), "%s", xml);
	/* auto: KVM exactly when the VM's uid with QEMU's group (and no
	 * other) may open /dev/kvm read-write — asked here of a child that
	 * becomes them and opens it */
	bool usable = false;
	if (access("/dev/kvm", R_OK | W_OK) == 0) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			int fd = -1;
			if (setgroups(0, NULL) == 0 && setgid(vh.qemu_gid) == 0 &&
			    setuid(7000000) == 0)
				fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
			_exit(fd >= 0 ? 0 : 1);
		}
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		usable = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	sp.accel = VM_ACCEL_AUTO;
	cr_assert_eq(vmhost_xml(&vh, &sp, 7000000, xml, sizeof(xml), &err), 0,
		     "%s", perr_msg(&err));
	cr_assert(strstr(xml, usable ? "<domain type='kvm'" :
			 "<domain type='qemu'"), "/dev/kvm %s for uid 7000000: "
		  "%.60s", usable ? "usable" : "not usable", xml);
	/* a monitor socket whose peer is not the VM's uid (here: the test,
	 * root) is not the VM's QEMU */
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&err, 0, sizeof(err));
	cr_assert_eq(vmhost_mon_check(&vh, "one", sv[0], &err), -EPERM);
	cr_expect(strstr(perr_msg(&err), "uid 0"), "%s", perr_msg(&err));
	close(sv[0]);
	close(sv[1]);
	vmhost_close(&vh);
	t_rmtree(dir);
	free(dir);
}
