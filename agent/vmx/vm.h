/*
 * One KVM virtual machine as held by its vmm process: the VM and vCPU
 * descriptors, guest memory (a memfd laid out by the grant manager), and the
 * run state the vCPU threads obey. KVM accepts VM and vCPU ioctls only from
 * the process that created the VM, so everything here runs in that process.
 */
#ifndef PARLEY_VMX_VM_H
#define PARLEY_VMX_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <parley/abi.h>
#include "agent/vmx/gmem.h"
#include "agent/vmx/ctl.h"
#include "agent/vmx/window.h"
#include "common/err.h"

enum vmx_run_state { VMX_RUN, VMX_PAUSE, VMX_STOP };

struct vmx_vm;

struct vmx_vcpu {
	struct vmx_vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool halted;        /* parked by HALT until the partition stops */
	bool parked;        /* guarded by vm->lock */
	int kick_fd;        /* eventfd: wakes this vCPU out of CHAN_WAIT */
	/* CHAN_OPEN waits here for the grant manager (guarded by vm->lock). */
	bool awaiting;
	bool replied;
	struct ctl_open_reply reply;
};

/* Where console bytes and the final report go. */
struct vmx_sink {
	void (*console)(void *ctx, unsigned vcpu, const char *buf, size_t len);
	void *ctx;
};

struct vmx_vm {
	int kvm_fd, vm_fd;
	uint8_t *mem;             /* memfd mapping: RAM, then config region */
	uint64_t ram_size, cfg_size;
	struct gmem gm;
	size_t run_size;
	uint64_t tsc_khz;
	uint64_t t0_ns;           /* CLOCK's epoch: VM creation */
	unsigned nvcpu;
	struct vmx_vcpu vcpu[PARLEY_VCPUS_MAX];
	struct vmx_sink sink;
	int ctl_fd;               /* to the grant manager; -1 standalone */
	struct vmx_windows win;
	pthread_mutex_t win_lock; /* changes to windows (lookups take none) */
	bool dirty_logging;       /* config slot has KVM_MEM_LOG_DIRTY_PAGES */

	pthread_mutex_t lock;
	pthread_cond_t cond;      /* state changes, parking */
	_Atomic int state;        /* enum vmx_run_state */
	unsigned nparked;         /* parked, or waiting for the agent */
	int stop_efd;             /* written once when the partition stops */
	bool finished;            /* guarded by lock: fin is final */
	struct ctl_finished fin;
};

/* Create the VM over mem_fd ([0, ram) is RAM at GPA 0, [ram, ram + cfg) the
 * config region at PARLEY_CONFIG_BASE) with nvcpu vCPUs in their initial
 * CPL 3 long-mode state (entry, boot_info). */
int vmx_vm_create(struct vmx_vm *vm, int mem_fd, const struct ctl_launch *l,
		  struct parley_err *err);
void vmx_vm_destroy(struct vmx_vm *vm);

/* Load a saved vCPU state; the privileged part (segments, control registers,
 * tables) is re-derived, never taken from the saved copy. */
int vmx_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		     struct parley_err *err);
int vmx_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s);

/* Start one thread per vCPU; they run unless the state says otherwise. */
int vmx_vm_start(struct vmx_vm *vm);
/* Change the run state and wait until every vCPU thread has noticed. */
void vmx_vm_pause(struct vmx_vm *vm);
void vmx_vm_resume(struct vmx_vm *vm);
/* Record why the partition stopped (first report wins) and stop it. */
void vmx_vm_finish(struct vmx_vm *vm, const struct ctl_finished *fin);
/* Wait for all vCPU threads after the partition stopped. */
void vmx_vm_join(struct vmx_vm *vm);

/* The vCPU thread body (vcpu.c) and the exit handlers it dispatches to. */
void *vmx_vcpu_thread(void *arg);
void vmx_vcpu_fault(struct vmx_vcpu *c, unsigned reason, uint64_t addr,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Handle an OUT to a hypercall port; false when the partition was stopped. */
bool vmx_hypercall(struct vmx_vcpu *c, unsigned nr, uint32_t arg_gpa);
bool vmx_doorbell_slow(struct vmx_vcpu *c, uint32_t value);

/* Hand a CHAN_OPEN answer to the vCPU waiting for it. */
void vmx_vcpu_reply(struct vmx_vm *vm, const struct ctl_open_reply *r);

/* Send the config region's dirty bitmap (since the last call) to the agent
 * in CTL_DIRTY chunks. */
int vmx_send_dirty(struct vmx_vm *vm);
void vmx_dirty_filter(uint64_t *bitmap, uint64_t pages);

uint64_t vmx_now_ns(void);

#endif
