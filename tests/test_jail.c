/* The vmm jail (agent/vmm_jail.c), seen from outside: a running vmm
 * process inspected through /proc/<pid> on every backend present: its ids,
 * capabilities, no_new_privs and seccomp, its namespaces, its root, and
 * each of its fds by name. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/backend.h"
#include "agent/vmm_jail.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

static struct partition *start_paused(uint32_t backend, const char *name,
				      unsigned vcpus)
{
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"name\":\"%s\",\"image\":\"counter.elf\",\"memory\":\"8M\","
		 "\"vcpus\":%u,\"cmdline\":\"count=1000000\"}", name, vcpus);
	struct part_spec s;
	cr_assert_eq(spec_parse(json, strlen(json), PARLEY_BUILD_DIR "/guest",
				&s, NULL), 0);
	struct part_opts o = t_opts(NULL);
	o.on_console = NULL;
	o.backend = backend;
	o.start_paused = true; /* the vmm waits, sandboxed, vCPUs parked */
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	int rc = partition_create(&s, &o, &p, &err);
	spec_free(&s);
	cr_assert_eq(rc, 0, "%s on %s: %s", name, backend_name(backend),
		     perr_msg(&err));
	return p;
}

/* The value after "key:" in /proc/<pid>/status. */
static void status_field(pid_t pid, const char *key, char *out, size_t cap)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	cr_assert(f, "%s: %s", path, strerror(errno));
	out[0] = 0;
	bool found = false;
	size_t kl = strlen(key);
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			found = true;
			snprintf(out, cap, "%s", line + kl + 1 +
				 strspn(line + kl + 1, " \t"));
			out[strcspn(out, "\n")] = 0;
		}
	fclose(f);
	cr_assert(found, "%s has no %s", path, key);
}

static void check_ids(const struct partition *p)
{
	char v[128], want[128];
	cr_assert(p->vmm_uid >= VMM_JAIL_UID_FIRST &&
		  p->vmm_uid <= VMM_JAIL_UID_LAST, "uid %u", p->vmm_uid);
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", p->vmm_uid, p->vmm_uid,
		 p->vmm_uid, p->vmm_uid);
	status_field(p->pid, "Uid", v, sizeof(v));
	cr_assert_str_eq(v, want, "Uid");
	status_field(p->pid, "Gid", v, sizeof(v));
	cr_assert_str_eq(v, want, "Gid");
	status_field(p->pid, "Groups", v, sizeof(v));
	cr_assert_str_eq(v, "", "Groups");
}

static void check_privileges(pid_t pid)
{
	static const char *const zero[] = { "CapInh", "CapPrm", "CapEff",
					    "CapBnd", "CapAmb" };
	char v[128];
	for (size_t i = 0; i < sizeof(zero) / sizeof(*zero); i++) {
		status_field(pid, zero[i], v, sizeof(v));
		cr_assert_str_eq(v, "0000000000000000", "%s", zero[i]);
	}
	status_field(pid, "NoNewPrivs", v, sizeof(v));
	cr_assert_str_eq(v, "1", "NoNewPrivs");
	char path[64], line[256];
	bool no_core = false;
	snprintf(path, sizeof(path), "/proc/%d/limits", pid);
	FILE *f = fopen(path, "re");
	cr_assert(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Max core file size", 18)) {
			char soft[32], hard[32];
			no_core = sscanf(line + 18, "%31s %31s", soft, hard) == 2 &&
				  !strcmp(soft, "0") && !strcmp(hard, "0");
		}
	fclose(f);
	cr_assert(no_core, "core dumps allowed");
	status_field(pid, "Seccomp", v, sizeof(v));
	cr_assert_str_eq(v, "2", "Seccomp (2: filter)");
	/* PID 1 of its own namespace: NSpid lists our pid, then 1. */
	status_field(pid, "NSpid", v, sizeof(v));
	char want[64];
	snprintf(want, sizeof(want), "%d\t1", pid);
	cr_assert_str_eq(v, want, "NSpid");
}

static void link_of(const char *path, char *out, size_t cap)
{
	ssize_t n = readlink(path, out, cap - 1);
	cr_assert_geq(n, 0, "%s: %s", path, strerror(errno));
	out[n] = 0;
}

static void check_namespaces(pid_t pid)
{
	static const char *const fresh[] = { "pid", "mnt", "ipc", "net",
					     "uts" };
	for (size_t i = 0; i < sizeof(fresh) / sizeof(*fresh); i++) {
		char path[64], ours[64], theirs[64];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", fresh[i]);
		link_of(path, ours, sizeof(ours));
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, fresh[i]);
		link_of(path, theirs, sizeof(theirs));
		cr_assert_str_neq(ours, theirs, "%s namespace shared", fresh[i]);
	}
}

/* Every entry below the vmm's root: directories, and the shared objects
 * the vmm's loader maps (none for a static vmm), and /plugins/NN (empty
 * mount points, or the device plugins bound there) - no /proc, /dev,
 * /etc, /tmp, no device, socket, symlink or set-id file. Returns the
 * files. */
static unsigned walk_root(const char *dir, int level)
{
	DIR *d = opendir(dir);
	cr_assert(d, "%s: %s", dir, strerror(errno));
	unsigned files = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[PATH_MAX];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		cr_assert_eq(lstat(path, &st), 0, "%s", path);
		if (level == 0)
			cr_assert(strcmp(e->d_name, "proc") &&
				  strcmp(e->d_name, "dev") &&
				  strcmp(e->d_name, "sys") &&
				  strcmp(e->d_name, "etc") &&
				  strcmp(e->d_name, "tmp"),
				  "%s in the vmm's root", path);
		if (S_ISDIR(st.st_mode)) {
			files += walk_root(path, level + 1);
			continue;
		}
		cr_assert(S_ISREG(st.st_mode) && !(st.st_mode & 06000),
			  "%s: not a plain file", path);
		/* The device plugins' mount points (agent/vmm_jail.h): empty,
		 * read-only, or a plugin bound there (ELF, checked below). */
		bool mount_point = level == 1 && strstr(dir, "/plugins") &&
				   strlen(e->d_name) == 2;
		if (mount_point && st.st_size == 0) {
			cr_assert(!(st.st_mode & 0222), "%s: writable", path);
			continue;
		}
		cr_assert(mount_point || strstr(e->d_name, ".so"),
			  "%s: not a shared object", path);
		char magic[4] = { 0 };
		FILE *f = fopen(path, "re");
		cr_assert(f && fread(magic, 1, 4, f) == 4, "%s", path);
		fclose(f);
		cr_assert(!memcmp(magic, "\177ELF", 4), "%s is not ELF", path);
		files++;
	}
	closedir(d);
	return files;
}

static void check_root(pid_t pid)
{
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", pid);
	struct stat ours, theirs;
	cr_assert_eq(stat("/", &ours), 0);
	cr_assert_eq(stat(root, &theirs), 0, "%s: %s", root, strerror(errno));
	cr_assert(ours.st_dev != theirs.st_dev || ours.st_ino != theirs.st_ino,
		  "the vmm's root is ours");
	struct statvfs sv;
	cr_assert_eq(statvfs(root, &sv), 0);
	cr_assert(sv.f_flag & ST_RDONLY, "the vmm's root is writable");
	unsigned files = walk_root(root, 0);
	cr_assert_leq(files, 32, "%u files in the vmm's root", files);
}

/* What each fd of the vmm must be, by the name /proc gives its target. */
struct fd_want {
	const char *target; /* exact, or a prefix ending in '*' */
	unsigned count;
	unsigned seen;
};

static bool fd_matches(const char *want, const char *got)
{
	size_t n = strlen(want);
	if (n && want[n - 1] == '*')
		return !strncmp(want, got, n - 1);
	return !strcmp(want, got);
}

static void check_fd_table(pid_t pid, struct fd_want *w, unsigned nw)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	DIR *d = opendir(dir);
	cr_assert(d, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[128], target[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		link_of(path, target, sizeof(target));
		unsigned i = 0;
		while (i < nw && !(fd_matches(w[i].target, target) &&
				   w[i].seen < w[i].count))
			i++;
		cr_assert_lt(i, nw, "unexpected fd %s -> %s", e->d_name, target);
		w[i].seen++;
	}
	closedir(d);
	for (unsigned i = 0; i < nw; i++)
		cr_assert_eq(w[i].seen, w[i].count, "%u of %u fds %s", w[i].seen,
			     w[i].count, w[i].target);
}

static void check_fds(const struct partition *p, unsigned vcpus)
{
	char fd[64], target[PATH_MAX];
	/* Fixed numbers first: 0, 1 and 2 on /dev/null (not the agent's
	 * stderr: a vmm could forge its lines), 3 the control socket. */
	static const char *const fixed[] = { "/dev/null", "/dev/null",
					     "/dev/null", "socket:*" };
	for (int i = 0; i < 4; i++) {
		snprintf(fd, sizeof(fd), "/proc/%d/fd/%d", p->pid, i);
		link_of(fd, target, sizeof(target));
		cr_assert(fd_matches(fixed[i], target), "fd %d -> %s", i,
			  target);
	}
	struct fd_want kvm[] = {
		{ "/dev/null", 3 }, { "socket:*", 1 }, { "/dev/kvm", 1 },
		{ "anon_inode:kvm-vm", 1 }, { "anon_inode:kvm-vcpu:*", vcpus },
		/* the stop eventfd, and one kick eventfd per vCPU */
		{ "anon_inode:[eventfd]", 1 + vcpus },
	};
	/* The process backend: per vCPU the pidfd of its stub child and the
	 * stub's seccomp listener, and (only with a config region to track)
	 * the userfaultfd taken from it; the same eventfds; the stub
	 * executable (fd 5) is closed once the stubs run, no /dev/kvm. */
	struct fd_want proc[] = {
		{ "/dev/null", 3 }, { "socket:*", 1 },
		{ "anon_inode:[pidfd]", vcpus },
		{ "anon_inode:seccomp notify", vcpus },
		{ "anon_inode:[userfaultfd]", p->cfg_size ? vcpus : 0 },
		{ "anon_inode:[eventfd]", 1 + vcpus },
	};
	if (p->backend == CTL_BACKEND_KVM)
		check_fd_table(p->pid, kvm, sizeof(kvm) / sizeof(*kvm));
	else
		check_fd_table(p->pid, proc, sizeof(proc) / sizeof(*proc));
}

ParameterizedTestParameters(jail, a_running_vmm_holds_nothing_else)
{
	static uint32_t b[T_BACKENDS_MAX];
	size_t n = t_backends(b);
	return cr_make_param_array(uint32_t, b, n);
}

ParameterizedTest(uint32_t *backend, jail, a_running_vmm_holds_nothing_else,
		  .timeout = 30)
{
	unsetenv("PARLEY_VMM_STDERR"); /* as in production */
	struct partition *p = start_paused(*backend, "jailed", 2);
	cr_assert_eq(p->backend, *backend);
	/* its own session: no signal the kernel sends the agent's group
	 * (orphaned when an agent that led it exits) or terminal reaches it */
	cr_expect_eq(getsid(p->pid), p->pid, "session %d", (int)getsid(p->pid));
	cr_expect_eq(getpgid(p->pid), p->pid);
	check_ids(p);
	check_privileges(p->pid);
	check_namespaces(p->pid);
	check_root(p->pid);
	check_fds(p, 2);
	partition_destroy(p);
}

ParameterizedTestParameters(jail, each_vmm_has_its_own_uid_reused_when_gone)
{
	static uint32_t b[T_BACKENDS_MAX];
	size_t n = t_backends(b);
	return cr_make_param_array(uint32_t, b, n);
}

ParameterizedTest(uint32_t *backend, jail,
		  each_vmm_has_its_own_uid_reused_when_gone, .timeout = 30)
{
	struct partition *a = start_paused(*backend, "one", 1);
	struct partition *b = start_paused(*backend, "two", 1);
	cr_assert_neq(a->vmm_uid, b->vmm_uid);
	check_ids(a);
	check_ids(b);
	char na[64], nb[64];
	snprintf(na, sizeof(na), "/proc/%d/ns/pid", a->pid);
	snprintf(nb, sizeof(nb), "/proc/%d/ns/pid", b->pid);
	char la[64], lb[64];
	link_of(na, la, sizeof(la));
	link_of(nb, lb, sizeof(lb));
	cr_assert_str_neq(la, lb, "two vmms share a PID namespace");
	uint32_t gone = a->vmm_uid;
	partition_destroy(a); /* killed and reaped: its uid is free again */
	struct partition *c = start_paused(*backend, "three", 1);
	cr_assert_eq(c->vmm_uid, gone, "uid %u not reused (got %u)", gone,
		     c->vmm_uid);
	check_ids(c);
	partition_destroy(b);
	partition_destroy(c);
}

/* An agent with hardly any fd open: the vmm binary, the status pipe and
 * /dev/null then get numbers 3..6 and must not be replaced by the fds
 * placed there. The vmm must get as far as its own main (exit 2 from its
 * first read of a control link whose peer is gone), not fail in exec. */
static int spawn_with_few_fds(void)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return 10;
	struct vmm_jail_req r = { .vmm_path = T_VMM, .name = "fewfds",
				  .fds = { sv[1], sv[1], sv[1], sv[1] } };
	pid_t pid;
	uint32_t uid;
	struct parley_err err = { 0 };
	if (vmm_jail_spawn(&r, &pid, &uid, &err) < 0) {
		fprintf(stderr, "few fds: %s\n", perr_msg(&err));
		return 11;
	}
	close(sv[0]);
	close(sv[1]);
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return 12;
	return WIFEXITED(st) && WEXITSTATUS(st) == 2 ? 0 : 13;
}

Test(jail, vmm_starts_from_an_agent_with_few_fds, .timeout = 30)
{
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		_exit(spawn_with_few_fds());
	int st;
	cr_assert_eq(waitpid(c, &st, 0), c);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
}

/* An agent chrooted below its mount namespace's root (a bind mount of the
 * host's tree as its root): setns into the prepared root's namespace puts
 * a vmm at that namespace's root mount — the host's whole tree, since the
 * template's pivot_root swapped only the chroot's mount. The vmm must not
 * start there. 0: refused as such; 1: a vmm ran; 2..: set-up failed. */
static int spawn_chrooted(const char *dir)
{
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("/", dir, NULL, MS_BIND | MS_REC, NULL) < 0 ||
	    chroot(dir) < 0 || chdir("/") < 0)
		return 2;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return 3;
	struct vmm_jail_req r = { .vmm_path = T_VMM, .name = "chrooted",
				  .fds = { sv[1], sv[1], sv[1], sv[1] } };
	pid_t pid;
	uint32_t uid;
	struct parley_err err = { 0 };
	int rc = vmm_jail_spawn(&r, &pid, &uid, &err);
	if (rc == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return 1;
	}
	fprintf(stderr, "chrooted: %s\n", perr_msg(&err));
	return strstr(perr_msg(&err), "entering the jail's root") &&
	       strstr(perr_msg(&err), "runs chrooted below") ? 0 : 4;
}

Test(jail, agent_chrooted_below_its_namespace_root_starts_no_vmm,
     .timeout = 30)
{
	/* A capability of the runner (PARLEY_REQUIRE=root: a failure). */
	if (geteuid() != 0 && t_required("root"))
		cr_assert_fail("PARLEY_REQUIRE=root, but not run as root");
	if (geteuid() != 0)
		cr_skip_test("needs root (the root agent's jail and chroot)");
	/* made (and removed) out here: the child's mounts on it die with
	 * its namespace, the directory would not */
	char dir[] = "/tmp/parley-chroot-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		_exit(spawn_chrooted(dir));
	int st;
	cr_assert_eq(waitpid(c, &st, 0), c);
	cr_assert_eq(rmdir(dir), 0, "%s: %s", dir, strerror(errno));
	cr_assert(WIFEXITED(st), "status 0x%x", st);
	cr_assert_eq(WEXITSTATUS(st), 0, "%s", WEXITSTATUS(st) == 1
		     ? "a vmm started with the host's tree as its root"
		     : "set-up or another error (see stderr)");
}

/* An agent that is not root (CI, a developer's shell): the vmm gets a user
 * namespace of its own instead of a host uid, and is still jailed. Runs in
 * a child that drops to nobody; returns which check failed (0: none). */
static int field_is(pid_t pid, const char *key, const char *want)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	int ok = 0;
	size_t kl = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1 + strspn(line + kl + 1, " \t");
			v[strcspn(v, "\n")] = 0;
			ok = !strcmp(v, want);
		}
	if (f)
		fclose(f);
	return ok;
}

static int ns_differs(pid_t pid, const char *ns)
{
	char a[64], b[64], la[64] = "", lb[64] = "";
	snprintf(a, sizeof(a), "/proc/self/ns/%s", ns);
	snprintf(b, sizeof(b), "/proc/%d/ns/%s", pid, ns);
	if (readlink(a, la, sizeof(la) - 1) < 0 ||
	    readlink(b, lb, sizeof(lb) - 1) < 0)
		return 0;
	return strcmp(la, lb) != 0;
}

static int check_unprivileged_vmm(pid_t pid)
{
	static const char *const zero[] = { "CapInh", "CapPrm", "CapEff",
					    "CapBnd", "CapAmb" };
	static const char *const fresh[] = { "user", "pid", "mnt", "ipc",
					     "net", "uts" };
	if (!field_is(pid, "Uid", "65534\t65534\t65534\t65534"))
		return 30;
	for (int i = 0; i < 5; i++)
		if (!field_is(pid, zero[i], "0000000000000000"))
			return 31 + i;
	if (!field_is(pid, "NoNewPrivs", "1"))
		return 36;
	for (int i = 0; i < 6; i++)
		if (!ns_differs(pid, fresh[i]))
			return 40 + i;
	char root[64], entry[PATH_MAX];
	snprintf(root, sizeof(root), "/proc/%d/root/proc", pid);
	if (access(root, F_OK) == 0)
		return 47;
	snprintf(entry, sizeof(entry), "/proc/%d/root/etc", pid);
	return access(entry, F_OK) == 0 ? 48 : 0;
}

static int spawn_unprivileged(const char *vmm)
{
	/* Dumpable again after the switch, as an agent started by nobody
	 * is: else /proc/<pid>/uid_map of its children stays root's. */
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresgid, 65534, 65534, 65534) < 0 ||
	    syscall(SYS_setresuid, 65534, 65534, 65534) < 0 ||
	    prctl(PR_SET_DUMPABLE, 1) < 0)
		return 20;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return 21;
	struct vmm_jail_req r = { .vmm_path = vmm, .name = "nobody",
				  .fds = { sv[1], sv[1], sv[1], sv[1] } };
	pid_t pid;
	uint32_t uid;
	struct parley_err err = { 0 };
	if (vmm_jail_spawn(&r, &pid, &uid, &err) < 0) {
		fprintf(stderr, "unprivileged: %s\n", perr_msg(&err));
		return 22;
	}
	/* The vmm now waits for its launch message: inspect it there. */
	int rc = check_unprivileged_vmm(pid);
	close(sv[0]);
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return 23;
	if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 2))
		rc = 24;
	return rc;
}

/* nobody may not be able to reach the build tree (a clone in a 0700
 * temporary directory, say): it runs a copy of the vmm from a directory it
 * can search. */
static char *vmm_copy_for_nobody(char **dir)
{
	*dir = t_tmpdir();
	cr_assert_eq(chmod(*dir, 0755), 0);
	uint8_t *bin;
	size_t len;
	cr_assert_eq(file_read_all(T_VMM, 64u << 20, &bin, &len, NULL), 0);
	char *path;
	cr_assert(asprintf(&path, "%s/parley-vmm", *dir) > 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, bin, len), (ssize_t)len);
	close(fd);
	free(bin);
	return path;
}

Test(jail, unprivileged_agent_jails_in_a_user_namespace, .timeout = 30)
{
	char *dir, *vmm = vmm_copy_for_nobody(&dir);
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		_exit(spawn_unprivileged(vmm));
	int st;
	cr_assert_eq(waitpid(c, &st, 0), c);
	t_rmtree(dir);
	free(dir);
	free(vmm);
	cr_assert(WIFEXITED(st), "status 0x%x", st);
	cr_assert_eq(WEXITSTATUS(st), 0, "check %d failed (see the test)",
		     WEXITSTATUS(st));
}

Test(jail, uid_ranges_parse_strictly)
{
	static const struct {
		const char *s;
		int rc;
		uint32_t first, last;
	} cases[] = {
		{ "6000000-6065535", 0, 6000000, 6065535 },
		{ "100000-100000", 0, 100000, 100000 },
		{ "65536-4294967294", 0, 65536, 4294967294u },
		{ "1000-2000", -EINVAL, 0, 0 },        /* host users' ids */
		{ "0-65535", -EINVAL, 0, 0 },
		{ "200000-100000", -EINVAL, 0, 0 },    /* reversed */
		{ "100000-4294967295", -EINVAL, 0, 0 }, /* (uid_t)-1 */
		{ "100000", -EINVAL, 0, 0 },
		{ "100000-", -EINVAL, 0, 0 },
		{ "-100000-200000", -EINVAL, 0, 0 },
		{ "100000--200000", -EINVAL, 0, 0 },
		{ "100000-200000x", -EINVAL, 0, 0 },
		{ "99999999999999999999-1", -EINVAL, 0, 0 },
		{ "", -EINVAL, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint32_t f = 0, l = 0;
		int rc = vmm_jail_parse_range(cases[i].s, &f, &l);
		cr_assert_eq(rc, cases[i].rc, "\"%s\": %d", cases[i].s, rc);
		if (rc == 0)
			cr_assert(f == cases[i].first && l == cases[i].last,
				  "\"%s\": %u-%u", cases[i].s, f, l);
	}
}
