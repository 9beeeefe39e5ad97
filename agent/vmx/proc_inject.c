/* The process engine's hands inside a stub child: one syscall at a time,
 * run at the injection site (`syscall; int3`) while the child is stopped,
 * and descriptors handed in through the child's seccomp listener. Only the
 * vCPU thread that attached may call these. */
#include "agent/vmx/vmm.h"
#include "agent/stub/stub.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#define USER_CS64 0x33 /* Linux's 64-bit user code and stack segments */
#define USER_SS64 0x2b

/* Wait for the child's next stop; a kick (SIGUSR1 from this process) that
 * arrives meanwhile is swallowed: the vCPU loop looks at the run state
 * after every stop anyway. Returns the wait status or -errno. */
static int wait_trap(struct vmx_vcpu *c)
{
	for (;;) {
		int st;
		pid_t r = waitpid(c->proc.pid, &st, __WALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (WIFSTOPPED(st) && WSTOPSIG(st) == SIGUSR1 &&
		    (st >> 16) == 0) {
			if (ptrace(PTRACE_CONT, c->proc.pid, 0, 0) < 0)
				return -errno;
			continue;
		}
		return st;
	}
}

static int start_call(struct vmx_vcpu *c, long nr, const long a[6])
{
	struct user_regs_struct r = c->proc.regs;
	/* 64-bit code whatever the partition was running: a `syscall` from a
	 * 32-bit segment would be an i386 call, which the filter kills. */
	r.cs = USER_CS64;
	r.ss = USER_SS64;
	r.rip = STUB_SITE;
	r.rax = (unsigned long long)nr;
	r.orig_rax = (unsigned long long)-1; /* no syscall restart */
	r.rdi = (unsigned long long)a[0];
	r.rsi = (unsigned long long)a[1];
	r.rdx = (unsigned long long)a[2];
	r.r10 = (unsigned long long)a[3];
	r.r8 = (unsigned long long)a[4];
	r.r9 = (unsigned long long)a[5];
	if (ptrace(PTRACE_SETREGS, c->proc.pid, 0, &r) < 0 ||
	    ptrace(PTRACE_CONT, c->proc.pid, 0, 0) < 0)
		return -errno;
	c->proc.regs_dirty = true; /* the guest's registers go back later */
	return 0;
}

/* After the call: the int3 behind the site must be what stopped it. */
static int end_call(struct vmx_vcpu *c, long *ret)
{
	int st = wait_trap(c);
	if (st < 0)
		return st;
	if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGTRAP)
		return -ECHILD;
	struct user_regs_struct r;
	if (ptrace(PTRACE_GETREGS, c->proc.pid, 0, &r) < 0)
		return -errno;
	if (r.rip != STUB_SITE + STUB_SITE_LEN)
		return -EFAULT;
	*ret = (long)r.rax;
	return 0;
}

int proc_inject(struct vmx_vcpu *c, long nr, long a0, long a1, long a2,
		long a3, long a4, long a5, long *ret)
{
	const long a[6] = { a0, a1, a2, a3, a4, a5 };
	int rc = start_call(c, nr, a);
	return rc < 0 ? rc : end_call(c, ret);
}

/* Serve the one notification the injected STUB_NR_FDS raises: add each fd
 * to the child (close-on-exec, numbers into child_fds), then let the call
 * return. The child may stop for a stray kick meanwhile: let it go on. */
static int serve_fds(struct vmx_vcpu *c, const int *fds, unsigned n,
		     int *child_fds)
{
	struct pollfd pf = { .fd = c->proc.listener, .events = POLLIN };
	for (int tries = 0; tries < 200; tries++) {
		if (poll(&pf, 1, 10) > 0)
			break;
		int st;
		pid_t r = waitpid(c->proc.pid, &st, __WALL | WNOHANG);
		if (r == c->proc.pid && WIFSTOPPED(st) &&
		    WSTOPSIG(st) == SIGUSR1)
			ptrace(PTRACE_CONT, c->proc.pid, 0, 0);
		else if (r == c->proc.pid)
			return -ECHILD;
	}
	struct seccomp_notif req;
	memset(&req, 0, sizeof(req));
	if (ioctl(c->proc.listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
		return -errno;
	if ((pid_t)req.pid != c->proc.pid || req.data.nr != STUB_NR_FDS)
		return -EPROTO;
	int rc = 0;
	for (unsigned i = 0; i < n && rc == 0; i++) {
		struct seccomp_notif_addfd add = {
			.id = req.id, .srcfd = (uint32_t)fds[i],
			.newfd_flags = O_CLOEXEC,
		};
		child_fds[i] = ioctl(c->proc.listener,
				     SECCOMP_IOCTL_NOTIF_ADDFD, &add);
		if (child_fds[i] < 0)
			rc = -errno;
	}
	struct seccomp_notif_resp resp = { .id = req.id };
	if (ioctl(c->proc.listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 &&
	    rc == 0)
		rc = -errno;
	return rc;
}

int proc_give_fds(struct vmx_vcpu *c, const int *fds, unsigned n,
		  int *child_fds)
{
	const long none[6] = { 0 };
	int rc = start_call(c, STUB_NR_FDS, none);
	if (rc == 0)
		rc = serve_fds(c, fds, n, child_fds);
	long ret;
	int rc2 = end_call(c, &ret);
	return rc < 0 ? rc : rc2;
}

/* mmap at exactly gpa, never over anything already there. */
int proc_map_at(struct vmx_vcpu *c, uint64_t gpa, uint64_t len, int prot,
		int child_fd, uint64_t off)
{
	long ret;
	int rc = proc_inject(c, __NR_mmap, (long)gpa, (long)len, prot,
			     MAP_SHARED | MAP_FIXED_NOREPLACE, child_fd,
			     (long)off, &ret);
	if (rc < 0)
		return rc;
	if (ret < 0 && ret > -4096)
		return (int)ret;
	return (uint64_t)ret == gpa ? 0 : -EEXIST;
}

int proc_unmap_at(struct vmx_vcpu *c, uint64_t gpa, uint64_t len)
{
	long ret;
	int rc = proc_inject(c, __NR_munmap, (long)gpa, (long)len, 0, 0, 0, 0,
			     &ret);
	return rc < 0 ? rc : (int)ret;
}

int proc_close_all(struct vmx_vcpu *c)
{
	long ret;
	int rc = proc_inject(c, __NR_close_range, 0, ~0l & 0xffffffffl, 0, 0,
			     0, 0, &ret);
	return rc < 0 ? rc : (int)ret;
}
