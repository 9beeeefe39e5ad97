/* Why a partition stopped: the vocabulary shared by vmm process, agent and
 * reports. Names say what the partition did. */
#ifndef PARLEY_CTL_STOP_H
#define PARLEY_CTL_STOP_H

enum vmx_stop {
	VMX_STOP_EXIT = 0,        /* the partition called EXIT */
	VMX_STOP_HALTED,          /* every vCPU parked itself with HALT */
	VMX_STOP_TRIPLE_FAULT,    /* an exception (no IDT: always fatal) */
	VMX_STOP_BAD_PORT,        /* port I/O that is not a hypercall */
	VMX_STOP_BAD_HYPERCALL,   /* argument struct or field invalid */
	VMX_STOP_BAD_ACCESS,      /* touched guest-physical memory not backed */
	VMX_STOP_KILLED,          /* stopped by the agent or operator */
	VMX_STOP_INTERNAL,        /* KVM or vmm failure, not the partition's */
	VMX_STOP_VMM_DIED,        /* vmm process ended without a report */
	VMX_STOP_REVOKED_ACCESS,  /* touched a channel window after revocation */
	VMX_STOP_READONLY_WRITE,  /* wrote a channel page mapped read-only */
	VMX_STOP_COMPROMISED,     /* its vmm process lied to the grant manager */
	VMX_STOP_SYSCALL,         /* tried a system call into the host kernel
				   * (process backend: syscall, sysenter,
				   * int 0x80, the vsyscall page) */
	VMX_STOP_VMM_TIMEOUT,     /* its vmm did not answer the grant manager
				   * in time (killed) */
	VMX_STOP_VMM_PROTOCOL,    /* its vmm sent a malformed, unexpected or
				   * out-of-range message (killed) */
	/* Block requests (include/parley/blk.h) that fail a check: */
	VMX_STOP_BLK_DEVICE,      /* names no disk of this partition */
	VMX_STOP_BLK_REQUEST,     /* unknown op, zero or oversized count,
				   * a non-zero reserved field, a bad batch */
	VMX_STOP_BLK_RANGE,       /* sectors past the end of the disk */
	VMX_STOP_BLK_ALIGN,       /* buffer not PARLEY_BLK_BUF_ALIGN-aligned */
	VMX_STOP_BLK_READONLY,    /* a write to a read-only disk */
	VMX_STOP_BLK_BUFFER,      /* buffer not memory it may use so */
	VMX_STOP_PLUGIN,          /* a device plugin failed or crashed (the
				   * detail names it); not the partition's */
	VMX_STOP_MAX_,
};

static inline const char *vmx_stop_name(unsigned r)
{
	static const char *const n[] = {
		"exit", "halted", "triple-fault", "bad-port", "bad-hypercall",
		"bad-access", "killed", "internal", "vmm-died",
		"revoked-access", "readonly-write", "compromised", "syscall",
		"vmm-timeout", "vmm-protocol", "blk-device", "blk-request",
		"blk-range", "blk-misaligned", "blk-readonly", "blk-buffer",
		"plugin",
	};
	_Static_assert(sizeof(n) / sizeof(n[0]) == VMX_STOP_MAX_,
		       "a name for every stop reason");
	return r < VMX_STOP_MAX_ ? n[r] : "unknown";
}

#endif
