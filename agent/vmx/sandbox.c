/* The vmm process's seccomp allowlist: every syscall with the reason a
 * running vmm needs it, and the arguments checked where the kernel can
 * check them -- signals only to itself and its own stub children, no
 * executable memory, ioctls only on its own KVM (or listener and
 * userfaultfd) descriptors with the requests the running loop needs, the
 * control socket the only one it talks on. Loaded after set-up (and after a
 * restore has loaded its registers), before any guest instruction runs. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <unistd.h>

/* No open, no socket, no exec, no fork: a partition that takes over its
 * vmm process can reach only what that process already holds. */
static const struct {
	int nr;
	const char *why;
} allowed[] = {
	{ SCMP_SYS(poll), "main loop" },
	{ SCMP_SYS(ppoll), "main loop (libc may use ppoll)" },
	{ SCMP_SYS(futex), "pthread mutexes and condition variables" },
	{ SCMP_SYS(getpid), "pthread_kill" },
	{ SCMP_SYS(gettid), "pthread_kill" },
	{ SCMP_SYS(rt_sigreturn), "return from the kick signal handler" },
	{ SCMP_SYS(rt_sigprocmask), "pthread internals" },
	{ SCMP_SYS(clock_gettime), "CLOCK hypercall when the vDSO is absent" },
	{ SCMP_SYS(clock_nanosleep), "brief back-off" },
	{ SCMP_SYS(nanosleep), "brief back-off" },
	{ SCMP_SYS(sched_yield), "brief back-off" },
	{ SCMP_SYS(munmap), "allocator; tearing down guest memory at exit" },
	{ SCMP_SYS(madvise), "allocator" },
	{ SCMP_SYS(brk), "allocator" },
	{ SCMP_SYS(close), "descriptors received with a channel; exit" },
	{ SCMP_SYS(dup3), "a reused channel slot takes its new doorbells in "
			  "place (see window.c)" },
	{ SCMP_SYS(sigaltstack), "sanitizer runtimes drop a thread's signal "
				 "stack when it ends" },
	{ SCMP_SYS(exit), "vCPU threads end" },
	{ SCMP_SYS(exit_group), "the process ends" },
	{ SCMP_SYS(restart_syscall), "after a signal" },
};

/* Rules with arguments: syscall, its conditions, the reason. */
struct rule {
	int nr;
	unsigned n;
	struct scmp_arg_cmp a[3];
	const char *why;
};

#define R1(sys, c0, why) { SCMP_SYS(sys), 1, { c0 }, why }
#define R2(sys, c0, c1, why) { SCMP_SYS(sys), 2, { c0, c1 }, why }

/* Doorbell eventfds arrive with a channel, at numbers not known when the
 * filter is made: plain reads and writes can only be kept off stdin,
 * stdout and the control socket (which has its own calls below). */
static const struct rule fixed_rules[] = {
	R1(read, SCMP_A0(SCMP_CMP_GT, CTL_FD_SOCK),
	   "eventfds (kick, doorbells, stop), userfaultfd messages"),
	R1(write, SCMP_A0(SCMP_CMP_EQ, 2), "stderr for fatal diagnostics"),
	R1(write, SCMP_A0(SCMP_CMP_GT, CTL_FD_SOCK),
	   "eventfds: kicks, doorbells, the stop signal"),
	R1(sendmsg, SCMP_A0(SCMP_CMP_EQ, CTL_FD_SOCK),
	   "reports to the grant manager"),
	R1(sendto, SCMP_A0(SCMP_CMP_EQ, CTL_FD_SOCK),
	   "libc send() on the control socket"),
	R1(recvmsg, SCMP_A0(SCMP_CMP_EQ, CTL_FD_SOCK),
	   "requests from the grant manager"),
	R1(recvfrom, SCMP_A0(SCMP_CMP_EQ, CTL_FD_SOCK),
	   "libc recv() on the control socket"),
	R1(mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
	   "allocator, channel views; never executable"),
	R1(mprotect, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
	   "allocator; never executable"),
};

static int add_rule(scmp_filter_ctx ctx, const struct rule *r)
{
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r->nr, r->n, r->a);
}

/* KVM: the requests the running loop, pause and save need, each on the
 * descriptor it belongs to. Registers are set before the filter (fresh or
 * restored) and never after: no SET_REGS, SET_SREGS, SET_XSAVE. */
static const unsigned long kvm_vcpu_ioctls[] = {
	KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_XSAVE,
};
static const unsigned long kvm_vm_ioctls[] = {
	KVM_SET_USER_MEMORY_REGION, /* channel windows */
	KVM_GET_DIRTY_LOG,          /* dirty config pages */
	KVM_IOEVENTFD,              /* doorbells */
};

static int add_ioctls(scmp_filter_ctx ctx, int fd, const unsigned long *req,
		      size_t n)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && fd >= 0 && i < n; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 2,
				      SCMP_A0(SCMP_CMP_EQ, (uint64_t)fd),
				      SCMP_A1(SCMP_CMP_EQ, req[i]));
	return rc;
}

static int add_kvm(scmp_filter_ctx ctx, const struct vmx_vm *vm)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && vm && i < vm->nvcpu; i++)
		rc = add_ioctls(ctx, vm->vcpu[i].fd, kvm_vcpu_ioctls,
				sizeof(kvm_vcpu_ioctls) / sizeof(*kvm_vcpu_ioctls));
	if (rc == 0 && vm)
		rc = add_ioctls(ctx, vm->vm_fd, kvm_vm_ioctls,
				sizeof(kvm_vm_ioctls) / sizeof(*kvm_vm_ioctls));
	return rc;
}

/* The process backend: each request a tracer makes once its child runs
 * (restored registers and XSAVE are loaded before the filter). */
static const long ptrace_reqs[] = {
	PTRACE_SYSEMU, PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS,
	PTRACE_GETSIGINFO, PTRACE_GETREGSET,
};
static const unsigned long notif_ioctls[] = {
	SECCOMP_IOCTL_NOTIF_RECV, SECCOMP_IOCTL_NOTIF_SEND,
	SECCOMP_IOCTL_NOTIF_ADDFD,
};
static const unsigned long uffd_ioctls[] = { UFFDIO_WRITEPROTECT };

/* Everything that names a stub child (pid) or its descriptors. */
static int add_child(scmp_filter_ctx ctx, const struct vmx_vcpu *c)
{
	uint64_t pid = (uint64_t)c->proc.pid;
	int rc = 0;
	for (size_t i = 0;
	     rc == 0 && i < sizeof(ptrace_reqs) / sizeof(*ptrace_reqs); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ptrace), 2,
				      SCMP_A0(SCMP_CMP_EQ,
					      (uint64_t)ptrace_reqs[i]),
				      SCMP_A1(SCMP_CMP_EQ, pid));
	const struct rule r[] = {
		R1(wait4, SCMP_A0(SCMP_CMP_EQ, pid), "its stops and its end"),
		R2(kill, SCMP_A0(SCMP_CMP_EQ, pid),
		   SCMP_A1(SCMP_CMP_EQ, SIGKILL),
		   "ending it when the partition stops"),
		R2(tgkill, SCMP_A0(SCMP_CMP_EQ, pid),
		   SCMP_A2(SCMP_CMP_EQ, SIGUSR1),
		   "kicking it out of guest code (pause, stop, windows)"),
	};
	for (size_t i = 0; rc == 0 && i < sizeof(r) / sizeof(*r); i++)
		rc = add_rule(ctx, &r[i]);
	if (rc == 0)
		rc = add_ioctls(ctx, c->proc.listener, notif_ioctls,
				sizeof(notif_ioctls) / sizeof(*notif_ioctls));
	if (rc == 0)
		rc = add_ioctls(ctx, c->proc.uffd, uffd_ioctls, 1);
	return rc;
}

static int add_proc(scmp_filter_ctx ctx, const struct vmx_vm *vm)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
				  SCMP_A1(SCMP_CMP_EQ, F_DUPFD_CLOEXEC));
	/* "keeping a window's memory fds for the children" */
	for (unsigned i = 0; rc == 0 && i < vm->nvcpu; i++)
		if (vm->vcpu[i].proc.pid > 0)
			rc = add_child(ctx, &vm->vcpu[i]);
	return rc;
}

/* Disks: positioned reads and writes and flushes on each disk's own
 * descriptor, nothing else on it; no pwrite at all on a read-only disk
 * (whose descriptor is O_RDONLY as well: the kernel refuses twice). */
static int add_disks(scmp_filter_ctx ctx, const struct vmx_vm *vm)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && vm && i < vm->disks.n; i++) {
		uint64_t fd = (uint64_t)vm->disks.d[i].fd;
		const struct rule r[] = {
			R1(pread64, SCMP_A0(SCMP_CMP_EQ, fd), "BLK_READ"),
			R1(fdatasync, SCMP_A0(SCMP_CMP_EQ, fd), "BLK_FLUSH"),
			R1(pwrite64, SCMP_A0(SCMP_CMP_EQ, fd), "BLK_WRITE"),
		};
		size_t n = vm->disks.geom[i].read_only ? 2 : 3;
		for (size_t k = 0; rc == 0 && k < n; k++)
			rc = add_rule(ctx, &r[k]);
	}
	return rc;
}

int vmx_sandbox_enter(const struct vmx_vm *vm, struct parley_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return perr(err, -ENOMEM, "seccomp_init failed");
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	for (size_t i = 0; rc == 0 && i < sizeof(allowed) / sizeof(*allowed); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i].nr, 0);
	for (size_t i = 0;
	     rc == 0 && i < sizeof(fixed_rules) / sizeof(*fixed_rules); i++)
		rc = add_rule(ctx, &fixed_rules[i]);
	/* Signals only to its own threads: the KVM kick, a sanitizer's
	 * abort. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				      SCMP_A0(SCMP_CMP_EQ, (uint64_t)getpid()));
	bool proc = vm && vm->eng == &vmx_proc_engine;
	if (rc == 0)
		rc = proc ? add_proc(ctx, vm) : add_kvm(ctx, vm);
	if (rc == 0)
		rc = add_disks(ctx, vm);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return perr(err, rc, "installing the seccomp filter failed: %s",
			    strerror(-rc));
	return 0;
}
