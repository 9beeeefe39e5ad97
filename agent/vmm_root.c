/* The jail's root: see vmm_root.h. */
#include "agent/vmm_root.h"
#include "agent/vmm_jail.h"
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


#define JAIL_TEMPLATES_MAX 8

/* ---- the jail's root ------------------------------------------------- */


static void libs_free(struct jail_libs *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		free(l->path[i]);
		free(l->dst[i]);
	}
	l->n = 0;
}

/* Where the helper puts each library; a library under STAGE_DIR itself
 * would be hidden by the tmpfs before it is bound. */
static int libs_stage_paths(struct jail_libs *l, struct parley_err *err)
{
	for (unsigned i = 0; i < l->n; i++) {
		if (!strncmp(l->path[i], STAGE_DIR "/", strlen(STAGE_DIR) + 1))
			return perr(err, -ENOTSUP, "vmm library %s: libraries "
				    "under " STAGE_DIR " cannot be given to "
				    "the jail", l->path[i]);
		if (asprintf(&l->dst[i], STAGE_DIR "%s", l->path[i]) < 0) {
			l->dst[i] = NULL;
			return perr(err, -ENOMEM, "out of memory");
		}
	}
	return 0;
}

/* PT_INTERP of the ELF at fd into out; "" for a static binary. */
static int read_interp(int fd, char *out, size_t cap, struct parley_err *err)
{
	Elf64_Ehdr eh;
	out[0] = 0;
	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
		return perr(err, -ENOEXEC, "the vmm is not an ELF64 program");
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		off_t at = (off_t)(eh.e_phoff + i * sizeof(ph));
		if (pread(fd, &ph, sizeof(ph), at) != sizeof(ph))
			return perr(err, -ENOEXEC, "vmm program headers");
		if (ph.p_type != PT_INTERP)
			continue;
		if (ph.p_filesz < 2 || ph.p_filesz > cap ||
		    pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) !=
			    (ssize_t)ph.p_filesz ||
		    out[ph.p_filesz - 1] || out[0] != '/')
			return perr(err, -ENOEXEC, "vmm interpreter path");
		return 0;
	}
	return 0;
}

static int libs_add(struct jail_libs *l, const char *p, size_t len)
{
	if (len == 0 || p[0] != '/' || memmem(p, len, "/../", 4))
		return -EINVAL;
	for (unsigned i = 0; i < l->n; i++)
		if (strlen(l->path[i]) == len && !memcmp(l->path[i], p, len))
			return 0;
	if (l->n == JAIL_LIBS_MAX)
		return -E2BIG;
	l->path[l->n] = strndup(p, len);
	if (!l->path[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/* One line of `ld.so --list`: "\tname => /path (0x...)", "\t/path
 * (0x...)" or the vDSO "\tlinux-vdso.so.1 (0x...)". */
static int libs_parse_line(struct jail_libs *l, const char *s)
{
	if (strstr(s, "=> not found"))
		return -ENOENT;
	const char *arrow = strstr(s, "=> ");
	const char *p = arrow ? arrow + 3 : s + strspn(s, " \t");
	if (*p != '/')
		return 0;
	const char *end = strstr(p, " (");
	return libs_add(l, p, end ? (size_t)(end - p) : strcspn(p, "\n"));
}

static int run_list(const char *interp, const char *vmm, char *buf,
		    size_t cap, size_t *len)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	char *argv[] = { (char *)interp, "--list", (char *)vmm, NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, interp, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	*len = 0;
	ssize_t n = 1;
	char drain[512];
	while (rc == 0 && n > 0) { /* all of it, so the loader never blocks */
		bool room = *len < cap - 1;
		n = read(pfd[0], room ? buf + *len : drain,
			 room ? cap - 1 - *len : sizeof(drain));
		if (n > 0 && room)
			*len += (size_t)n;
	}
	buf[*len] = 0;
	close(pfd[0]);
	int st = 0;
	if (rc == 0 && waitpid(pid, &st, 0) < 0)
		return -errno;
	return rc ? -rc : (WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -ENOEXEC);
}

/* dir is one of the ':'-separated entries of list. */
static bool path_list_has(const char *list, const char *dir)
{
	size_t dl = strlen(dir);
	for (const char *e = list; *e; e += strcspn(e, ":"), e += *e == ':')
		if (strcspn(e, ":") == dl && !strncmp(e, dir, dl))
			return true;
	return false;
}

static void libs_ld_path(struct jail_libs *l, const char *interp)
{
	size_t at = 0;
	l->ld_path[0] = 0;
	for (unsigned i = 0; i < l->n; i++) {
		if (!strcmp(l->path[i], interp))
			continue;
		size_t dl = (size_t)(strrchr(l->path[i], '/') - l->path[i]);
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%.*s", (int)(dl ? dl : 1),
			 l->path[i]);
		if (path_list_has(l->ld_path, dir))
			continue;
		at += (size_t)snprintf(l->ld_path + at,
				       at < sizeof(l->ld_path)
					       ? sizeof(l->ld_path) - at : 0,
				       "%s%s", at ? ":" : "", dir);
	}
	if (at >= sizeof(l->ld_path))
		l->ld_path[0] = 0; /* too long: the loader's default search */
}

/* The vmm's interpreter and libraries, as the host's loader resolves them. */
static int libs_find(int vmm_fd, const char *vmm, struct jail_libs *l,
		     struct parley_err *err)
{
	char interp[PATH_MAX];
	int rc = read_interp(vmm_fd, interp, sizeof(interp), err);
	if (rc < 0 || !interp[0])
		return rc;
	char *out = malloc(16384);
	size_t len;
	if (!out)
		return perr(err, -ENOMEM, "out of memory");
	rc = run_list(interp, vmm, out, 16384, &len);
	if (rc < 0)
		rc = perr(err, rc, "%s --list %s failed", interp, vmm);
	for (char *s = out, *nl; rc == 0 && s && *s; s = nl) {
		nl = strchr(s, '\n');
		if (nl)
			*nl++ = 0;
		rc = libs_parse_line(l, s);
		if (rc < 0)
			perr(err, rc, "vmm library: %s", s);
	}
	free(out);
	if (rc == 0)
		rc = libs_add(l, interp, strlen(interp));
	if (rc == 0)
		libs_ld_path(l, interp);
	return rc;
}

/* mkdir -p for every directory above path (which is absolute). */
static int mkdir_above(char *path)
{
	for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		int rc = mkdir(path, 0755);
		*s = '/';
		if (rc < 0 && errno != EEXIST)
			return -1;
	}
	return 0;
}

/* A read-only bind of the host's file src onto dst (in the tmpfs). */
static int stage_lib(const char *src, char *dst)
{
	if (mkdir_above(dst) < 0)
		return -1;
	int f = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (f < 0)
		return -1;
	close(f);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		return -1;
	return mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY |
		     MS_NOSUID | MS_NODEV, NULL);
}

/* In a mount namespace of its own: a small tmpfs holding the libraries
 * (read-only binds) becomes the root and the host's tree is detached.
 * Only system calls and string scans: the agent may have threads. */
int vmm_root_enter(const struct jail_libs *l)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("parley-vmm-root", STAGE_DIR, "tmpfs",
		  MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=256") < 0)
		return -1;
	for (unsigned i = 0; i < l->n; i++)
		if (stage_lib(l->path[i], l->dst[i]) < 0)
			return -1;
	/* Where a vmm's device plugins are bound (vmm_jail.c), made now:
	 * the root is read-only from here on. */
	char pp[] = STAGE_DIR VMM_JAIL_PLUGIN_DIR "/00";
	if (mkdir(STAGE_DIR VMM_JAIL_PLUGIN_DIR, 0755) < 0)
		return -1;
	for (int i = 0; i < VMM_JAIL_PLUGINS_MAX; i++) {
		pp[sizeof(pp) - 3] = (char)('0' + i / 10);
		pp[sizeof(pp) - 2] = (char)('0' + i % 10);
		int f = open(pp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
		if (f < 0)
			return -1;
		close(f);
	}
	if (mount(NULL, STAGE_DIR, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY |
		  MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
	    chdir(STAGE_DIR) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		return -1;
	return 0;
}

/* The helper: builds the root, then waits until the agent holds its
 * namespaces. */
static __attribute__((noreturn)) void template_child(
	const struct jail_libs *l, int ready, const int hold[2])
{
	char c = 0;
	close(hold[1]); /* so that the agent's close is our EOF */
	if (vmm_root_enter(l) < 0) {
		int e = errno; /* for the agent's message */
		(void)!write(ready, &e, sizeof(e));
		_exit(2);
	}
	/* The root a vmm joining this namespace must find itself in: setns
	 * puts it at the namespace's root mount, which is this one only
	 * where our pivot_root swapped that mount — not when the agent runs
	 * chrooted below it (then it would be the host's whole tree). */
	struct stat st;
	if (stat("/", &st) < 0)
		_exit(3);
	uint64_t id[2] = { (uint64_t)st.st_dev, (uint64_t)st.st_ino };
	if (write(ready, id, sizeof(id)) != (ssize_t)sizeof(id))
		_exit(4);
	while (read(hold[0], &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* The network namespace every vmm of this agent joins: made once, with
 * the first root, because a fresh one per vmm costs about 1 ms at start
 * (and more again in the kernel's deferred clean-up). It has no interface
 * but a loopback that is down; vmms share it only among themselves, and
 * none can make a socket (seccomp) to reach another through it. */
static int net_ns = -1;

static int ns_open(long pid, const char *ns, struct parley_err *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/ns/%s", pid, ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : perr(err, -errno, "%s: %m", path);
}

static int template_spawn(const struct jail_libs *l, struct jail_root *r,
			  struct parley_err *err)
{
	int *ns_fd = &r->ns_fd;
	int rp[2], hp[2];
	if (pipe2(rp, O_CLOEXEC) < 0)
		return perr(err, -errno, "pipe: %m");
	if (pipe2(hp, O_CLOEXEC) < 0) {
		close(rp[0]), close(rp[1]);
		return perr(err, -errno, "pipe: %m");
	}
	struct clone_args ca = {
		.flags = CLONE_NEWNS | (net_ns < 0 ? CLONE_NEWNET : 0),
		.exit_signal = SIGCHLD,
	};
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		template_child(l, rp[1], hp);
	int rc = pid < 0 ? perr(err, -errno, "clone3: %m") : 0;
	close(rp[1]);
	close(hp[0]);
	uint64_t id[2];
	int st = 0;
	ssize_t got = rc == 0 ? read(rp[0], id, sizeof(id)) : 0;
	if (rc == 0 && got != (ssize_t)sizeof(id)) {
		int e = 0;
		if (got == (ssize_t)sizeof(e))
			memcpy(&e, id, sizeof(e));
		waitpid((pid_t)pid, &st, 0);
		pid = -1;
		rc = perr(err, -EPERM, "building the vmm root failed at step "
			  "%d: %s (it needs root -- mount namespaces, tmpfs, "
			  "bind mounts, pivot_root -- and a root directory "
			  "that is a mount point: not a chroot)",
			  WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
			  e ? strerror(e) : "no reason given");
	}
	if (rc == 0) {
		r->root_dev = (dev_t)id[0];
		r->root_ino = (ino_t)id[1];
		rc = *ns_fd = ns_open(pid, "mnt", err);
	}
	if (rc >= 0 && net_ns < 0)
		rc = net_ns = ns_open(pid, "net", err);
	if (rc > 0)
		rc = 0;
	close(rp[0]);
	close(hp[1]); /* the helper ends; its namespaces live on in our fds */
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	return rc;
}



static struct jail_root roots[JAIL_TEMPLATES_MAX];
static unsigned nroots, next_root;

static int root_build(int vmm_fd, const char *vmm, struct jail_root *r,
		      struct parley_err *err)
{
	struct jail_libs l = { 0 };
	int rc = libs_find(vmm_fd, vmm, &l, err);
	for (unsigned i = 0; rc == 0 && i < l.n; i++)
		if (access(l.path[i], R_OK) < 0)
			rc = perr(err, -errno, "%s: %m", l.path[i]);
	if (rc == 0)
		rc = libs_stage_paths(&l, err);
	if (rc == 0 && !vmm_jail_unprivileged())
		rc = template_spawn(&l, r, err);
	memcpy(r->ld_path, l.ld_path, sizeof(r->ld_path));
	if (rc == 0 && vmm_jail_unprivileged())
		r->libs = l; /* kept: each vmm binds them */
	else
		libs_free(&l);
	return rc;
}

/* The root for this vmm binary, built on first use. jail_mu held. */
int vmm_root_get(int vmm_fd, const char *vmm, const struct jail_root **out,
		 struct parley_err *err)
{
	struct stat st;
	if (fstat(vmm_fd, &st) < 0)
		return perr(err, -errno, "%s: %m", vmm);
	for (unsigned i = 0; i < nroots; i++)
		if (roots[i].dev == st.st_dev && roots[i].ino == st.st_ino &&
		    roots[i].mtime.tv_sec == st.st_mtim.tv_sec &&
		    roots[i].mtime.tv_nsec == st.st_mtim.tv_nsec) {
			*out = &roots[i];
			return 0;
		}
	struct jail_root r = { .dev = st.st_dev, .ino = st.st_ino,
			       .mtime = st.st_mtim, .ns_fd = -1 };
	int rc = root_build(vmm_fd, vmm, &r, err);
	if (rc < 0)
		return rc;
	unsigned i = nroots < JAIL_TEMPLATES_MAX ? nroots++ : next_root++;
	i %= JAIL_TEMPLATES_MAX;
	if (roots[i].ns_fd > 0)
		close(roots[i].ns_fd); /* jails made from it keep their copy */
	libs_free(&roots[i].libs);
	roots[i] = r;
	*out = &roots[i];
	return 0;
}

int vmm_root_net_ns(void)
{
	return net_ns;
}
