#include "agent/vmx/vmm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>

/* Each syscall with the reason a running vmm process needs it. No open,
 * no socket, no exec, no fork: a partition that takes over its vmm process
 * can reach only what that process already holds. */
static const struct {
	int nr;
	const char *why;
} allowed[] = {
	{ SCMP_SYS(read), "eventfd and control socket" },
	{ SCMP_SYS(write), "eventfd; stderr for fatal diagnostics" },
	{ SCMP_SYS(sendmsg), "reports to the grant manager" },
	{ SCMP_SYS(sendto), "libc send() on the control socket" },
	{ SCMP_SYS(recvmsg), "requests from the grant manager" },
	{ SCMP_SYS(recvfrom), "libc recv() on the control socket" },
	{ SCMP_SYS(poll), "main loop" },
	{ SCMP_SYS(ppoll), "main loop (libc may use ppoll)" },
	{ SCMP_SYS(futex), "pthread mutexes and condition variables" },
	{ SCMP_SYS(tgkill), "kicking a vCPU thread out of KVM_RUN" },
	{ SCMP_SYS(getpid), "pthread_kill" },
	{ SCMP_SYS(gettid), "pthread_kill" },
	{ SCMP_SYS(rt_sigreturn), "return from the kick signal handler" },
	{ SCMP_SYS(rt_sigprocmask), "pthread internals" },
	{ SCMP_SYS(clock_gettime), "CLOCK hypercall when the vDSO is absent" },
	{ SCMP_SYS(clock_nanosleep), "brief back-off" },
	{ SCMP_SYS(nanosleep), "brief back-off" },
	{ SCMP_SYS(sched_yield), "brief back-off" },
	{ SCMP_SYS(mmap), "allocator (and sanitizer runtimes in test builds)" },
	{ SCMP_SYS(munmap), "allocator; tearing down guest memory at exit" },
	{ SCMP_SYS(mprotect), "allocator" },
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

/* The process backend's own: driving the stub children. */
static const struct {
	int nr;
	const char *why;
} allowed_proc[] = {
	{ SCMP_SYS(ptrace), "tracing the stub children (vCPUs)" },
	{ SCMP_SYS(wait4), "their stops and their end" },
	{ SCMP_SYS(kill), "ending a child when the partition stops" },
	{ SCMP_SYS(fcntl), "keeping a window's memory fds for the children" },
};

/* ioctl only on the KVM requests the vCPU loop and save/pause need. */
static const unsigned long kvm_ioctls[] = {
	KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
	KVM_GET_XSAVE, KVM_SET_XSAVE, KVM_SET_USER_MEMORY_REGION,
	KVM_GET_DIRTY_LOG, KVM_IOEVENTFD,
};

/* ioctl requests on a child's seccomp listener: handing it window fds. */
static const unsigned long notif_ioctls[] = {
	SECCOMP_IOCTL_NOTIF_RECV, SECCOMP_IOCTL_NOTIF_SEND,
	SECCOMP_IOCTL_NOTIF_ADDFD,
	UFFDIO_WRITEPROTECT, /* config-region dirty tracking */
};

static int add_proc(scmp_filter_ctx ctx)
{
	int rc = 0;
	for (size_t i = 0;
	     rc == 0 && i < sizeof(allowed_proc) / sizeof(*allowed_proc); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed_proc[i].nr, 0);
	for (size_t i = 0;
	     rc == 0 && i < sizeof(notif_ioctls) / sizeof(*notif_ioctls); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_EQ, notif_ioctls[i]));
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
	bool proc = vm && vm->eng == &vmx_proc_engine;
	for (size_t i = 0;
	     rc == 0 && !proc && i < sizeof(kvm_ioctls) / sizeof(*kvm_ioctls);
	     i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_EQ, kvm_ioctls[i]));
	if (rc == 0 && proc)
		rc = add_proc(ctx);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return perr(err, rc, "installing the seccomp filter failed: %s",
			    strerror(-rc));
	return 0;
}
