/* What every engine's vCPU thread shares: the fault report, the gate that
 * parks a paused or halted vCPU, and HALT's count. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void vmx_vcpu_fault(struct vmx_vcpu *c, unsigned reason, uint64_t addr,
		    const char *fmt, ...)
{
	struct ctl_finished f = { .reason = reason, .vcpu = c->index,
				  .addr = addr };
	f.rip = c->vm->eng->rip(c);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f.detail, sizeof(f.detail), fmt, ap);
	va_end(ap);
	vmx_vm_finish(c->vm, &f);
}

/* Park while paused (or halted); false once the partition stops. */
bool vmx_vcpu_gate(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	if (atomic_load(&vm->state) == VMX_RUN && !c->halted)
		return true;
	vm->eng->settle(c);
	pthread_mutex_lock(&vm->lock);
	vm->nparked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->state) == VMX_PAUSE ||
	       (c->halted && atomic_load(&vm->state) != VMX_STOP))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->nparked--;
	bool run = atomic_load(&vm->state) == VMX_RUN;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

/* Counts vCPUs that halted; the last one ends the partition. */
void vmx_vcpu_halt(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	pthread_mutex_lock(&vm->lock);
	c->halted = true;
	unsigned halted = 0;
	for (unsigned i = 0; i < vm->nvcpu; i++)
		halted += vm->vcpu[i].halted;
	pthread_mutex_unlock(&vm->lock);
	if (halted == vm->nvcpu) {
		struct ctl_finished f = { .reason = VMX_STOP_HALTED,
					  .vcpu = c->index };
		snprintf(f.detail, sizeof(f.detail), "every vCPU halted");
		vmx_vm_finish(vm, &f);
	}
}

