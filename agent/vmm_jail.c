/*
 * The vmm jail (see vmm_jail.h). Two parts here: the uid each vmm takes
 * (slots, each held by the pidfd of the vmm using it), and the spawn
 * itself (the jail's root is vmm_root.c's): clone3 into new PID/IPC/UTS
 * namespaces, then in the child, with raw system calls only (the agent may have threads, so
 * nothing that takes a lock or allocates): join the agent's network
 * namespace for vmms, copy the root's mount namespace, put the fds in
 * place, drop every privilege, exec the vmm by fd. An agent that is not
 * root uses a user namespace per vmm instead (see vmm_jail_unprivileged()).
 */
#include "agent/vmm_jail.h"
#include "agent/vmm_root.h"
#include "agent/ctl/ctl.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define JAIL_ENV_MAX 8

static pthread_mutex_t jail_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- uids ---------------------------------------------------------- */

/* Slot i is uid first+i: -1 free, -2 being spawned, else the pidfd of the
 * vmm that has it. A slot is free again once that pidfd reports the vmm
 * has exited: it was PID 1 of its namespace, so by then the kernel has
 * killed and reaped every other process there (stub children included),
 * and nothing runs under the uid. */
static struct {
	uint32_t first, last;
	int *slot;
	uint32_t nslot;
	unsigned live;
} uids = { VMM_JAIL_UID_FIRST, VMM_JAIL_UID_LAST, NULL, 0, 0 };

/* Digits only: strtoull alone would take signs and blanks. */
static int parse_uid(const char *s, const char **end, unsigned long long *v)
{
	const char *p = s;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == s || p - s > 10)
		return -EINVAL;
	*v = strtoull(s, NULL, 10);
	*end = p;
	return 0;
}

int vmm_jail_parse_range(const char *s, uint32_t *first, uint32_t *last)
{
	unsigned long long a, b;
	const char *end;
	if (parse_uid(s, &end, &a) < 0 || *end != '-' ||
	    parse_uid(end + 1, &end, &b) < 0 || *end)
		return -EINVAL;
	/* Not the 16-bit ids of the host's own users, not (uid_t)-1. */
	if (a <= 65535 || a > b || b >= UINT32_MAX)
		return -EINVAL;
	*first = (uint32_t)a;
	*last = (uint32_t)b;
	return 0;
}

int vmm_jail_set_uid_range(uint32_t first, uint32_t last,
			   struct parley_err *err)
{
	if (first <= 65535 || first > last || last >= UINT32_MAX)
		return perr(err, -EINVAL, "vmm uid range %u-%u", first, last);
	pthread_mutex_lock(&jail_mu);
	int rc = 0;
	if (uids.live)
		rc = perr(err, -EBUSY, "vmm uid range in use");
	else {
		uids.first = first;
		uids.last = last;
		free(uids.slot); /* sized for the old range */
		uids.slot = NULL;
		uids.nslot = 0;
	}
	pthread_mutex_unlock(&jail_mu);
	return rc;
}

void vmm_jail_uid_range(uint32_t *first, uint32_t *last)
{
	pthread_mutex_lock(&jail_mu);
	*first = uids.first;
	*last = uids.last;
	pthread_mutex_unlock(&jail_mu);
}

static bool slot_gone(int fd)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	return poll(&pf, 1, 0) == 1;
}

/* Lowest free slot, so that the pidfds held stay about as many as the
 * live vmms. Called with jail_mu held. */
static int uid_take(uint32_t *uid)
{
	uint32_t count = uids.last - uids.first + 1;
	for (uint32_t i = 0; i < uids.nslot; i++) {
		if (uids.slot[i] >= 0 && slot_gone(uids.slot[i])) {
			close(uids.slot[i]);
			uids.slot[i] = -1;
			uids.live--;
		}
		if (uids.slot[i] == -1) {
			uids.slot[i] = -2;
			uids.live++;
			*uid = uids.first + i;
			return 0;
		}
	}
	if (uids.nslot == count)
		return -EAGAIN;
	uint32_t n = uids.nslot ? uids.nslot * 2 : 64;
	if (n > count)
		n = count;
	int *s = realloc(uids.slot, n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint32_t i = uids.nslot; i < n; i++)
		s[i] = -1;
	uids.slot = s;
	uint32_t i = uids.nslot;
	uids.nslot = n;
	uids.slot[i] = -2;
	uids.live++;
	*uid = uids.first + i;
	return 0;
}

int vmm_jail_adopt_uid(uint32_t uid, int pidfd, struct parley_err *err)
{
	pthread_mutex_lock(&jail_mu);
	int rc = 0;
	uint32_t count = uids.last - uids.first + 1;
	if (uid < uids.first || uid > uids.last) {
		rc = perr(err, -ERANGE, "vmm uid %u is outside this agent's "
			  "range %u-%u", uid, uids.first, uids.last);
		goto out;
	}
	uint32_t i = uid - uids.first;
	if (i >= uids.nslot) {
		uint32_t n = uids.nslot ? uids.nslot : 64;
		while (n <= i)
			n *= 2;
		if (n > count)
			n = count;
		int *sl = realloc(uids.slot, n * sizeof(*sl));
		if (!sl) {
			rc = perr(err, -ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t k = uids.nslot; k < n; k++)
			sl[k] = -1;
		uids.slot = sl;
		uids.nslot = n;
	}
	if (uids.slot[i] != -1) {
		rc = perr(err, -EEXIST, "vmm uid %u is held twice", uid);
		goto out;
	}
	uids.slot[i] = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
	if (uids.slot[i] < 0) {
		uids.slot[i] = -1;
		rc = perr(err, -errno, "dup of a pidfd: %s", strerror(errno));
		goto out;
	}
	uids.live++;
out:
	pthread_mutex_unlock(&jail_mu);
	return rc;
}

/* The spawn succeeded (pidfd >= 0: the slot is the vmm's) or failed. */
static void uid_settle(uint32_t uid, int pidfd)
{
	pthread_mutex_lock(&jail_mu);
	uint32_t i = uid - uids.first;
	uids.slot[i] = pidfd;
	if (pidfd < 0)
		uids.live--;
	pthread_mutex_unlock(&jail_mu);
}

/* ---- the spawn ------------------------------------------------------- */

enum jail_step {
	STEP_MOUNT_NS = 1, STEP_FDS, STEP_SIGNALS, STEP_CAPS, STEP_IDS,
	STEP_NNP, STEP_PLUGINS, STEP_SESSION, STEP_EXEC,
};

static const char *const step_name[] = {
	[STEP_MOUNT_NS] = "entering the jail's root",
	[STEP_FDS] = "placing fds",
	[STEP_SIGNALS] = "resetting signals and limits",
	[STEP_CAPS] = "dropping capabilities",
	[STEP_IDS] = "switching uid/gid",
	[STEP_NNP] = "setting no_new_privs",
	[STEP_PLUGINS] = "binding the device plugins",
	[STEP_SESSION] = "a session of its own (setsid)",
	[STEP_EXEC] = "exec",
};

/* Everything the child needs, prepared before the clone. */
struct jail_plan {
	int root_ns, net_ns, devnull, vmm_fd, status_fd;
	bool keep_stderr;          /* PARLEY_VMM_STDERR=inherit */
	dev_t root_dev;            /* where setns must have put it */
	ino_t root_ino;
	int go_fd;                 /* unprivileged: read until the id maps
				    * are written */
	const struct jail_libs *libs; /* unprivileged: to build the root */
	int src[4];
	unsigned ntree;
	int tree[VMM_JAIL_PLUGINS_MAX]; /* detached read-only binds of the
					 * plugins (open_tree) */
	uint32_t uid;
	char *argv[3];
	char *envp[JAIL_ENV_MAX];
	char ld[1024 + 32];
};

/* The kernel's struct sigaction (x86-64), for a raw rt_sigaction. */
struct k_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static __attribute__((noreturn)) void child_fail(const struct jail_plan *p,
						 int step)
{
	int e[2] = { step, errno };
	if (write(p->status_fd, e, sizeof(e)) < 0)
		_exit(126);
	_exit(127);
}

/* Its own copy of the root's namespace: nothing of the host's tree; the
 * agent's network namespace for vmms: nothing of the host's network. */
static int child_root(const struct jail_plan *p)
{
	if (p->libs) {
		char c;
		if (syscall(SYS_read, p->go_fd, &c, 1) != 1 ||
		    vmm_root_enter(p->libs) < 0)
			return -1;
		return (int)syscall(SYS_sethostname, "parley-vmm", 10);
	}
	struct stat st;
	if (syscall(SYS_setns, p->net_ns, CLONE_NEWNET) < 0 ||
	    syscall(SYS_setns, p->root_ns, CLONE_NEWNS) < 0 ||
	    syscall(SYS_unshare, CLONE_NEWNS) < 0 || syscall(SYS_chdir, "/") < 0 ||
	    syscall(SYS_newfstatat, AT_FDCWD, "/", &st, 0) < 0)
		return -1;
	/* In the prepared root, not the namespace's root mount under it (an
	 * agent chrooted below that mount: the host's whole tree). */
	if (st.st_dev != p->root_dev || st.st_ino != p->root_ino) {
		errno = EXDEV;
		return -1;
	}
	return (int)syscall(SYS_sethostname, "parley-vmm", 10);
}

/* 0, 1: /dev/null; 2: the agent's stderr (the vmm's diagnostics); 3..6:
 * the vmm's. Every other fd is closed by the exec (the vmm's own fd too,
 * after the kernel has opened it). */
static int child_fds(const struct jail_plan *p)
{
	for (int i = 0; i < 4; i++)
		if (syscall(SYS_dup2, p->src[i], CTL_FD_SOCK + i) < 0)
			return -1;
	/* Not the agent's stderr: a vmm its partition took over could write
	 * forged lines and escape sequences into the agent's log there (and
	 * truncate it, a file opened for writing). Its diagnostics reach the
	 * agent through the control socket (as console lines, cleaned); a
	 * sanitizer's report in a test run needs the real one. */
	if (syscall(SYS_dup2, p->devnull, 0) < 0 ||
	    syscall(SYS_dup2, p->devnull, 1) < 0 ||
	    (!p->keep_stderr && syscall(SYS_dup2, p->devnull, 2) < 0))
		return -1;
	return (int)syscall(SYS_close_range, CTL_FD_MEM_RO + 1, ~0U,
			    CLOSE_RANGE_CLOEXEC);
}

/* The vmm starts with no signal caught, ignored or blocked, whatever the
 * agent does with its own (SIGPIPE ignored survives an exec otherwise). */
static int child_signals(void)
{
	struct k_sigaction dfl = { .handler = SIG_DFL };
	for (int s = 1; s < 65; s++)
		if (s != SIGKILL && s != SIGSTOP)
			syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
	uint64_t none = 0;
	return (int)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
}

/* Bounding and ambient sets emptied and locked while we still hold
 * CAP_SETPCAP; the uid switch then clears permitted and effective. */
static int child_caps(void)
{
	if (syscall(SYS_prctl, PR_SET_SECUREBITS,
		    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
			    SECBIT_NO_SETUID_FIXUP |
			    SECBIT_NO_SETUID_FIXUP_LOCKED |
			    SECBIT_KEEP_CAPS_LOCKED |
			    SECBIT_NO_CAP_AMBIENT_RAISE |
			    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
		return -1;
	for (long c = 0; c < 64; c++)
		if (syscall(SYS_prctl, PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno != EINVAL)
				return -1;
			break;
		}
	return (int)syscall(SYS_prctl, PR_CAP_AMBIENT,
			    PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

/* Raw calls: glibc's setres*id would signal the agent's other threads,
 * which do not exist in this child. With NO_SETUID_FIXUP set, the caps are
 * emptied explicitly afterwards. */
static int child_ids(uint32_t id, bool userns)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { 0 } };
	/* In its own user namespace setgroups is denied, and it has none. */
	if ((!userns && syscall(SYS_setgroups, 0, NULL) < 0) ||
	    syscall(SYS_setresgid, id, id, id) < 0 ||
	    syscall(SYS_setresuid, id, id, id) < 0 ||
	    syscall(SYS_capset, &h, d) < 0)
		return -1;
	/* No PDEATHSIG: a vmm outlives the agent that started it when that
	 * agent hands it over to its successor (agent/update_commit.c). It
	 * ends when the last agent holding its control socket is gone: the
	 * socket's peer is then closed and its control thread, which always
	 * waits on it, kills the partition ("agent went away"). */
	return 0;
}

/* Each plugin's bind into the copy of the root: the files were made
 * there (vmm_root.c), read-only, as the mount points. */
static int child_plugins(const struct jail_plan *p)
{
	char pp[] = VMM_JAIL_PLUGIN_DIR "/00";
	for (unsigned i = 0; i < p->ntree; i++) {
		pp[sizeof(pp) - 3] = (char)('0' + i / 10);
		pp[sizeof(pp) - 2] = (char)('0' + i % 10);
		if (syscall(SYS_move_mount, p->tree[i], "", AT_FDCWD, pp,
			    MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return -1;
	}
	return 0;
}

static __attribute__((noreturn)) void jail_child(const struct jail_plan *p)
{
	if (child_root(p) < 0)
		child_fail(p, STEP_MOUNT_NS);
	if (child_plugins(p) < 0)
		child_fail(p, STEP_PLUGINS);
	if (child_fds(p) < 0)
		child_fail(p, STEP_FDS);
	if (child_signals() < 0)
		child_fail(p, STEP_SIGNALS);
	/* A session of its own: none of the agent's terminal or process
	 * group. Left in the agent's, an agent that led its group and
	 * exited (at a hand-over, from a shell) orphaned the group, and the
	 * kernel's SIGHUP and SIGCONT to it reached the process backend's
	 * stopped stubs as faults of the partition. */
	if (syscall(SYS_setsid) < 0)
		child_fail(p, STEP_SESSION);
	/* No core dump: it would hold the partition's memory, and a host's
	 * core_pattern may hand it to a collector outside the jail. */
	struct rlimit no_core = { 0, 0 };
	if (syscall(SYS_prlimit64, 0, RLIMIT_CORE, &no_core, NULL) < 0)
		child_fail(p, STEP_SIGNALS);
	if (child_caps() < 0)
		child_fail(p, STEP_CAPS);
	if (child_ids(p->uid, p->libs != NULL) < 0)
		child_fail(p, STEP_IDS);
	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(p, STEP_NNP);
	syscall(SYS_execveat, p->vmm_fd, "", p->argv, p->envp, AT_EMPTY_PATH);
	child_fail(p, STEP_EXEC);
}

/* The vmm's environment: its libraries' directories and the sanitizer
 * options of a test build, nothing else of the agent's. */
static void build_env(const struct jail_root *r, char *ld, size_t cap,
		      char **envp)
{
	static const char *const pass[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS",
					    "LSAN_OPTIONS" };
	unsigned n = 0;
	if (r->ld_path[0]) {
		snprintf(ld, cap, "LD_LIBRARY_PATH=%s", r->ld_path);
		envp[n++] = ld;
	}
	for (unsigned i = 0; i < sizeof(pass) / sizeof(*pass); i++)
		for (char **e = environ; e && *e && n < JAIL_ENV_MAX - 1; e++)
			if (!strncmp(*e, pass[i], strlen(pass[i])) &&
			    (*e)[strlen(pass[i])] == '=')
				envp[n++] = *e;
	envp[n] = NULL;
}

/* Every fd the child still uses after placing 0..6 must lie above them,
 * or a dup2 would replace it: moves fd there (close-on-exec). */
static int fd_above_targets(int fd)
{
	if (fd < 0 || fd > CTL_FD_MEM_RO)
		return fd;
	int hi = fcntl(fd, F_DUPFD_CLOEXEC, CTL_FD_MEM_RO + 1);
	int saved = errno;
	close(fd);
	errno = saved;
	return hi;
}

static int devnull_fd(struct parley_err *err)
{
	static int fd = -1;
	if (fd < 0)
		fd = fd_above_targets(open("/dev/null", O_RDWR | O_CLOEXEC));
	return fd >= 0 ? fd : perr(err, -errno, "/dev/null: %m");
}

/* Clone into the new namespaces and wait until the child has exec'd (the
 * status pipe closes) or says which step failed. */
static int proc_write(long pid, const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/%s", pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int rc = n == (ssize_t)strlen(text) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return rc;
}

/* Unprivileged: the vmm's user namespace maps its range uid (and gid) to
 * the agent's, nothing else; then the child may go on. */
static int map_ids(long pid, uint32_t id, int go)
{
	char m[64];
	snprintf(m, sizeof(m), "%u %u 1\n", id, (unsigned)geteuid());
	int rc = proc_write(pid, "uid_map", m);
	if (rc == 0)
		rc = proc_write(pid, "setgroups", "deny\n");
	snprintf(m, sizeof(m), "%u %u 1\n", id, (unsigned)getegid());
	if (rc == 0)
		rc = proc_write(pid, "gid_map", m);
	if (rc == 0 && write(go, "g", 1) != 1)
		rc = -EPIPE;
	return rc;
}

static uint64_t clone_flags(const struct jail_plan *p)
{
	uint64_t f = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
	return p->libs ? f | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET : f;
}

/* Wait until the child has exec'd (the status pipe closes) or says which
 * step failed; on failure it is reaped here. */
static int clone_result(struct jail_plan *p, long r, int status_rd,
			int map_rc, pid_t *pid, int *pidfd,
			struct parley_err *err)
{
	int e[2] = { 0, 0 };
	ssize_t n = r > 0 && map_rc == 0 ? read(status_rd, e, sizeof(e)) : 0;
	*pid = (pid_t)r;
	if (n == 0 && map_rc == 0)
		return 0;
	if (map_rc < 0)
		kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	close(*pidfd);
	if (map_rc < 0)
		return perr(err, map_rc, "vmm jail: writing the uid/gid map: "
			    "%s", strerror(-map_rc));
	(void)p;
	int step = n == sizeof(e) && e[0] > 0 && e[0] <= STEP_EXEC ? e[0] : 0;
	/* EXDEV there is the root check's: say what it means */
	bool chrooted = step == STEP_MOUNT_NS && e[1] == EXDEV;
	return perr(err, e[1] ? -e[1] : -EIO, "vmm jail: %s: %s",
		    step ? step_name[step] : "set-up",
		    chrooted ? "the agent runs chrooted below its mount "
			       "namespace's root, where a vmm would see the "
			       "host's whole tree (run it at the root of its "
			       "namespace: unshare --mount and pivot_root, or "
			       "a container)"
			     : strerror(e[1]));
}

/* Clone into the new namespaces, then (unprivileged) map the ids. */
static int jail_clone(struct jail_plan *p, pid_t *pid, int *pidfd,
		      struct parley_err *err)
{
	int sp[2], gp[2] = { -1, -1 };
	if (pipe2(sp, O_CLOEXEC) < 0)
		return perr(err, -errno, "pipe: %m");
	p->status_fd = sp[1] = fd_above_targets(sp[1]);
	if (sp[1] < 0 || (p->libs && pipe2(gp, O_CLOEXEC) < 0)) {
		int e = errno;
		close(sp[0]);
		if (sp[1] >= 0)
			close(sp[1]);
		return perr(err, -e, "pipe: %s", strerror(e));
	}
	p->go_fd = gp[0];
	struct clone_args ca = {
		.flags = clone_flags(p),
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.exit_signal = SIGCHLD,
	};
	long r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0)
		jail_child(p);
	int saved = errno;
	close(sp[1]);
	if (gp[0] >= 0)
		close(gp[0]);
	int map_rc = r > 0 && p->libs ? map_ids(r, p->uid, gp[1]) : 0;
	if (gp[1] >= 0)
		close(gp[1]);
	int rc = r < 0 ? perr(err, -saved, "clone3: %s%s", strerror(saved),
			      p->libs ? " (unprivileged: user namespaces "
					"needed)" : "")
		       : clone_result(p, r, sp[0], map_rc, pid, pidfd, err);
	close(sp[0]);
	return rc;
}

/* Fds above the targets, so that one dup2 cannot overwrite the source of
 * the next. */
static int plan_fds(struct jail_plan *p, const struct vmm_jail_req *r,
		    struct parley_err *err)
{
	for (int i = 0; i < 4; i++)
		p->src[i] = -1;
	for (int i = 0; i < 4; i++) {
		p->src[i] = fcntl(r->fds[i], F_DUPFD_CLOEXEC, CTL_FD_MEM_RO + 1);
		if (p->src[i] < 0)
			return perr(err, -errno, "dup: %m");
	}
	return 0;
}

static void plan_close(struct jail_plan *p)
{
	for (unsigned i = 0; i < p->ntree; i++)
		close(p->tree[i]);
	p->ntree = 0;
	for (int i = 0; i < 4; i++)
		if (p->src[i] >= 0)
			close(p->src[i]);
	if (p->vmm_fd >= 0)
		close(p->vmm_fd);
}

static int jail_start(struct jail_plan *p, const struct vmm_jail_req *r,
		      pid_t *pid, int *pidfd, struct parley_err *err)
{
	const struct jail_root *root = NULL;
	p->vmm_fd = fd_above_targets(open(r->vmm_path, O_RDONLY | O_CLOEXEC));
	if (p->vmm_fd < 0)
		return perr(err, -errno, "%s: %m", r->vmm_path);
	pthread_mutex_lock(&jail_mu);
	int rc = vmm_root_get(p->vmm_fd, r->vmm_path, &root, err);
	if (rc == 0) {
		p->root_ns = root->ns_fd;
		p->root_dev = root->root_dev;
		p->root_ino = root->root_ino;
		p->net_ns = vmm_root_net_ns();
		p->libs = vmm_jail_unprivileged() ? &root->libs : NULL;
		build_env(root, p->ld, sizeof(p->ld), p->envp);
	}
	pthread_mutex_unlock(&jail_mu);
	if (rc == 0 && r->nplugin && p->libs)
		rc = perr(err, -ENOTSUP, "device plugins need a root agent (an "
			  "unprivileged agent's vmm cannot be given them)");
	if (rc == 0 && r->nplugin > VMM_JAIL_PLUGINS_MAX)
		rc = perr(err, -E2BIG, "%u plugins", r->nplugin);
	/* Detached binds of the verified copies, read-only, executable
	 * (whatever the mount they lie on says): moved into the vmm's root
	 * by the child. */
	for (unsigned i = 0; rc == 0 && i < r->nplugin; i++) {
		int t = open_tree(r->plugin_fds[i], "", OPEN_TREE_CLONE |
				  OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
		struct mount_attr a = {
			.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
				    MOUNT_ATTR_NODEV,
			.attr_clr = MOUNT_ATTR_NOEXEC };
		if (t < 0)
			rc = perr(err, -errno, "plugin %u: open_tree: %m", i);
		else
			p->tree[p->ntree++] = t;
		if (rc == 0 && mount_setattr(t, "", AT_EMPTY_PATH, &a,
					     sizeof(a)) < 0)
			rc = perr(err, -errno, "plugin %u: mount_setattr: %m",
				  i);
	}
	const char *se = getenv("PARLEY_VMM_STDERR");
	p->keep_stderr = se && !strcmp(se, "inherit");

	if (rc == 0) {
		p->devnull = devnull_fd(err);
		rc = p->devnull < 0 ? p->devnull : plan_fds(p, r, err);
	}
	p->argv[0] = (char *)r->vmm_path;
	p->argv[1] = (char *)r->name;
	p->argv[2] = NULL;
	if (rc == 0)
		rc = jail_clone(p, pid, pidfd, err);
	return rc;
}

int vmm_jail_spawn(const struct vmm_jail_req *r, pid_t *pid, uint32_t *uid,
		   struct parley_err *err)
{
	struct jail_plan p = { .vmm_fd = -1, .src = { -1, -1, -1, -1 } };
	pthread_mutex_lock(&jail_mu);
	int rc = uid_take(&p.uid);
	pthread_mutex_unlock(&jail_mu);
	if (rc < 0)
		return perr(err, rc, rc == -EAGAIN
					     ? "every vmm uid is in use"
					     : "out of memory");
	int pidfd = -1;
	rc = jail_start(&p, r, pid, &pidfd, err);
	plan_close(&p);
	uid_settle(p.uid, rc == 0 ? pidfd : -1);
	if (rc == 0)
		*uid = p.uid;
	return rc;
}
