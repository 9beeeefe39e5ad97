/* A process-backend vCPU's state in the one format snapshots use (struct
 * ctl_vcpu_state: kvm_regs, the partition's fixed kvm_sregs, an XSAVE
 * image), so that a state saved on one engine loads on the other. The child
 * can only be read and written by its tracer, the vCPU thread: it records
 * the state when it parks, and loads a restored one when it attaches. */
#include "agent/vmx/vmm.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

static void regs_to_kvm(const struct user_regs_struct *u, struct kvm_regs *k)
{
	*k = (struct kvm_regs){
		.rax = u->rax, .rbx = u->rbx, .rcx = u->rcx, .rdx = u->rdx,
		.rsi = u->rsi, .rdi = u->rdi, .rsp = u->rsp, .rbp = u->rbp,
		.r8 = u->r8, .r9 = u->r9, .r10 = u->r10, .r11 = u->r11,
		.r12 = u->r12, .r13 = u->r13, .r14 = u->r14, .r15 = u->r15,
		.rip = u->rip,
		/* As a partition's under KVM: IF clear, IOPL 3. */
		.rflags = (u->eflags & VMX_RFLAGS_USER) | VMX_RFLAGS_FIXED |
			  VMX_RFLAGS_IOPL3,
	};
}

static void regs_from_kvm(const struct kvm_regs *k, struct user_regs_struct *u)
{
	u->rax = k->rax, u->rbx = k->rbx, u->rcx = k->rcx, u->rdx = k->rdx;
	u->rsi = k->rsi, u->rdi = k->rdi, u->rsp = k->rsp, u->rbp = k->rbp;
	u->r8 = k->r8, u->r9 = k->r9, u->r10 = k->r10, u->r11 = k->r11;
	u->r12 = k->r12, u->r13 = k->r13, u->r14 = k->r14, u->r15 = k->r15;
	u->rip = k->rip;
	u->eflags = (k->rflags & VMX_RFLAGS_USER) | 0x202;
	u->orig_rax = (unsigned long long)-1;
	/* Flat segments with base 0, as the partition has under KVM. */
	u->fs_base = u->gs_base = 0;
	u->ds = u->es = u->fs = u->gs = 0;
}

/* Record the state of a stopped child (its tracer only). */
int proc_state_store(struct vmx_vcpu *c)
{
	struct ctl_vcpu_state *s = &c->proc.state;
	regs_to_kvm(&c->proc.regs, &s->regs);
	vmx_sregs_partition(&s->sregs);
	memset(&s->xsave, 0, sizeof(s->xsave));
	struct iovec io = { &s->xsave, sizeof(s->xsave) };
	if (ptrace(PTRACE_GETREGSET, c->proc.pid, NT_X86_XSTATE, &io) < 0)
		return -errno;
	return 0;
}

/* Load a checked state into the stopped child (its tracer only). */
int proc_state_load(struct vmx_vcpu *c, const struct ctl_vcpu_state *s)
{
	regs_from_kvm(&s->regs, &c->proc.regs);
	c->proc.regs_dirty = true;
	/* The kernel takes exactly its own XSAVE size: learn it from a read. */
	struct kvm_xsave x;
	struct iovec io = { &x, sizeof(x) };
	if (ptrace(PTRACE_GETREGSET, c->proc.pid, NT_X86_XSTATE, &io) < 0)
		return -errno;
	/* The kernel checks the XSAVE header and MXCSR and refuses what this
	 * CPU could not load. */
	x = s->xsave;
	if (ptrace(PTRACE_SETREGSET, c->proc.pid, NT_X86_XSTATE, &io) < 0)
		return -errno;
	return 0;
}

int proc_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		      struct parley_err *err)
{
	(void)err; /* loaded, and refused if the kernel will not, at attach */
	c->proc.state = *s;
	c->proc.have_restore = true;
	return 0;
}

int proc_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s)
{
	/* Recorded by the vCPU thread when it parked (settle). */
	uint32_t halted = s->halted, index = s->index;
	*s = c->proc.state;
	s->halted = halted;
	s->index = index;
	return 0;
}

/* Before parking: record the state a save will send. */
void proc_vcpu_settle(struct vmx_vcpu *c)
{
	if (c->proc.pid > 0 && c->proc.attached)
		proc_state_store(c);
}
