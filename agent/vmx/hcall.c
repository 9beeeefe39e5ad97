/* Hypercalls a vmm process serves without asking the grant manager. Each
 * handler copies the argument struct out of guest memory once, checks the
 * copy, acts on it, and writes back only its OUT fields. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void vmx_vcpu_halt(struct vmx_vcpu *c);
bool vmx_hypercall_chan(struct vmx_vcpu *c, unsigned nr, uint32_t gpa);
void *vmx_arg_in(struct vmx_vcpu *c, unsigned nr, uint32_t gpa, void *dst,
		 size_t size);

#define arg_in vmx_arg_in

/* Copy in an argument struct; stops the partition if it is not wholly
 * inside guest memory or not 8-byte aligned. */
void *vmx_arg_in(struct vmx_vcpu *c, unsigned nr, uint32_t gpa, void *dst,
		 size_t size)
{
	void *src = gmem_ptr(&c->vm->gm, gpa, size, 8);
	if (!src) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, gpa,
			       "hypercall %u: argument struct at 0x%x (%zu "
			       "bytes) is %s", nr, gpa, size,
			       gpa % 8 ? "not 8-byte aligned"
				       : "outside guest memory");
		return NULL;
	}
	memcpy(dst, src, size);
	return src;
}

static bool hc_console(struct vmx_vcpu *c, uint32_t gpa)
{
	struct parley_hc_console_write a;
	void *g = arg_in(c, PARLEY_HC_CONSOLE_WRITE, gpa, &a, sizeof(a));
	if (!g)
		return false;
	uint64_t len = a.len < PARLEY_CONSOLE_MAX ? a.len : PARLEY_CONSOLE_MAX;
	/* The whole claimed length must be guest memory even though we take
	 * at most PARLEY_CONSOLE_MAX of it: a lie about a buffer is malice. */
	const char *buf = gmem_ptr(&c->vm->gm, a.buf, a.len, 1);
	if (!buf) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, a.buf,
			       "console write: buffer 0x%llx + %llu bytes is "
			       "outside guest memory", (unsigned long long)a.buf,
			       (unsigned long long)a.len);
		return false;
	}
	if (c->vm->sink.console && len)
		c->vm->sink.console(c->vm->sink.ctx, c->index, buf, len);
	int64_t ret = (int64_t)len;
	memcpy((uint8_t *)g + offsetof(struct parley_hc_console_write, ret),
	       &ret, sizeof(ret));
	return true;
}

static bool hc_clock(struct vmx_vcpu *c, uint32_t gpa)
{
	struct parley_hc_clock a;
	void *g = arg_in(c, PARLEY_HC_CLOCK, gpa, &a, sizeof(a));
	if (!g)
		return false;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct parley_hc_clock out = {
		.monotonic_ns = mono_now_ns() - c->vm->t0_ns,
		.realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull +
			       (uint64_t)ts.tv_nsec,
		.ret = PARLEY_OK,
	};
	memcpy(g, &out, sizeof(out));
	return true;
}

static bool hc_exit(struct vmx_vcpu *c, uint32_t gpa)
{
	struct parley_hc_exit a;
	if (!arg_in(c, PARLEY_HC_EXIT, gpa, &a, sizeof(a)))
		return false;
	struct ctl_finished f = { .reason = VMX_STOP_EXIT, .vcpu = c->index,
				  .code = a.code };
	snprintf(f.detail, sizeof(f.detail), "exit code %lld",
		 (long long)a.code);
	vmx_vm_finish(c->vm, &f);
	return false;
}

static bool hc_halt(struct vmx_vcpu *c, uint32_t gpa)
{
	struct parley_hc_halt a;
	if (!arg_in(c, PARLEY_HC_HALT, gpa, &a, sizeof(a)))
		return false;
	if (a.reserved) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, gpa,
			       "halt: reserved field is 0x%llx, must be 0",
			       (unsigned long long)a.reserved);
		return false;
	}
	vmx_vcpu_halt(c);
	return true; /* the gate parks this vCPU */
}

bool vmx_hypercall(struct vmx_vcpu *c, unsigned nr, uint32_t gpa)
{
	switch (nr) {
	case PARLEY_HC_CONSOLE_WRITE:
		return hc_console(c, gpa);
	case PARLEY_HC_CLOCK:
		return hc_clock(c, gpa);
	case PARLEY_HC_EXIT:
		return hc_exit(c, gpa);
	case PARLEY_HC_HALT:
		return hc_halt(c, gpa);
	case PARLEY_HC_CHAN_OPEN:
	case PARLEY_HC_CHAN_NOTIFY:
	case PARLEY_HC_CHAN_WAIT:
	case PARLEY_HC_CHAN_CLOSE:
		return vmx_hypercall_chan(c, nr, gpa);
	default:
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, nr,
			       "unknown hypercall number %u", nr);
		return false;
	}
}
