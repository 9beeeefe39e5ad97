/* The KVM engine's vCPU thread: run the guest, dispatch each exit, obey
 * pause and stop. Every vCPU thread treats the code it runs as hostile: an
 * exit it does not expect stops the partition with a reason, never the
 * process. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

static bool exit_io(struct vmx_vcpu *c)
{
	struct kvm_run *run = c->run;
	uint16_t port = run->io.port;
	unsigned nr = port - PARLEY_HC_PORT_BASE;
	if (port < PARLEY_HC_PORT_BASE || nr >= PARLEY_HC_PORT_SPAN) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_PORT, port,
			       "%s of %u byte(s) to port 0x%x, which is not a "
			       "hypercall", run->io.direction == KVM_EXIT_IO_OUT
						     ? "OUT" : "IN",
			       run->io.size, port);
		return false;
	}
	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 ||
	    run->io.count != 1) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, port,
			       "hypercall %u: must be a single 32-bit OUT", nr);
		return false;
	}
	uint32_t gpa;
	/* data_offset points into the kvm_run page KVM gave us: trusted. */
	memcpy(&gpa, (uint8_t *)run + run->io.data_offset, sizeof(gpa));
	if (port == PARLEY_DOORBELL_PORT)
		return vmx_doorbell_slow(c, gpa);
	return vmx_hypercall(c, nr, gpa);
}

/* What a page fault most likely was, from what survives a triple fault:
 * every #PF is fatal here (no IDT), so a non-zero CR2 is this fault's. */
static const char *fault_hint(struct vmx_vcpu *c, uint64_t cr2)
{
	struct kvm_regs r;
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0)
		return "";
	if (cr2 == r.rip)
		return ": instruction fetch from a page that is not executable "
		       "(W^X) or not mapped";
	if (cr2 && gmem_guest_is_ro(&c->vm->gm, cr2))
		return ": write to a read-only image page (W^X)";
	return "";
}

static bool exit_shutdown(struct vmx_vcpu *c)
{
	struct kvm_sregs s;
	uint64_t cr2 = 0;
	if (ioctl(c->fd, KVM_GET_SREGS, &s) == 0)
		cr2 = s.cr2;
	vmx_vcpu_fault(c, VMX_STOP_TRIPLE_FAULT, cr2,
		       "exception with no handler (triple fault), cr2 0x%llx%s",
		       (unsigned long long)cr2, fault_hint(c, cr2));
	return false;
}

static bool exit_mmio(struct vmx_vcpu *c)
{
	struct kvm_run *run = c->run;
	uint64_t gpa = run->mmio.phys_addr;
	const char *rw = run->mmio.is_write ? "write" : "read";
	int kind = win_classify(c->vm, gpa, run->mmio.is_write);
	if (!win_fault(c, gpa, kind, rw))
		vmx_vcpu_fault(c, VMX_STOP_BAD_ACCESS, gpa,
			       "%s of %u byte(s) at guest-physical 0x%llx, "
			       "outside the partition's memory", rw,
			       run->mmio.len, (unsigned long long)gpa);
	return false;
}

static bool exit_dispatch(struct vmx_vcpu *c)
{
	struct kvm_run *run = c->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return exit_io(c);
	case KVM_EXIT_SHUTDOWN:
		return exit_shutdown(c);
	case KVM_EXIT_MMIO:
		return exit_mmio(c);
	case KVM_EXIT_HLT:

		vmx_vcpu_fault(c, VMX_STOP_TRIPLE_FAULT, 0, "hlt");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0,
			       "VM entry failed, reason 0x%llx",
			       (unsigned long long)run->fail_entry
				       .hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0,
			       "KVM internal error, suberror %u",
			       run->internal.suberror);
		return false;
	default:
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "unexpected exit %u",
			       run->exit_reason);
		return false;
	}
}

/* KVM finishes an I/O exit (advances RIP past the OUT) only on the next
 * KVM_RUN. Enter once with immediate_exit set so that a state saved while
 * parked is complete and a restored partition does not repeat the call. */
void kvm_vcpu_settle(struct vmx_vcpu *c)
{
	__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ioctl(c->fd, KVM_RUN, 0);
	__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

void *kvm_vcpu_thread(void *arg)
{
	struct vmx_vcpu *c = arg;
	for (;;) {
		__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (!vmx_vcpu_gate(c))
			break;
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "KVM_RUN: %s",
				       strerror(errno));
			break;
		}
		if (!exit_dispatch(c))
			break;
	}
	kvm_vcpu_settle(c);
	return NULL;
}
