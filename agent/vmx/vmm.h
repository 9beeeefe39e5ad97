/*
 * parley-vmm's one private header: everything inside the vmm process (the
 * VM and its vCPU threads, channel windows, the sandbox). Nothing outside
 * agent/vmx/ includes it; the grant manager reaches the vmm only through
 * the control protocol (agent/ctl/ctl.h).
 */
#ifndef PARLEY_VMX_VMM_H
#define PARLEY_VMX_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <parley/abi.h>
#include "agent/ctl/clock.h"
#include "agent/ctl/ctl.h"
#include "agent/ctl/gmem.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/sysmap.h"
#include "common/err.h"

/* ---- channel windows (window.c) ---- */
/*
 * Channel windows as a vmm process holds them: memory the grant manager
 * hands over (a memfd per channel) mapped into the partition's
 * guest-physical channel area with per-section permissions, the handle the
 * partition uses for it, and its doorbells. Mechanism only: which channel
 * may be mapped, and when it must go, is decided by the grant manager.
 *
 * Handles are (generation << 16 | slot). Lookup compares one atomic word,
 * no lock; the doorbell descriptors of a slot are replaced in place (dup2)
 * on reuse, never closed under a vCPU that may be about to write them.
 */

#define WIN_SLOTS CTL_WIN_SLOTS
#define WIN_GONE_MAX 256   /* closed or revoked ranges remembered */

struct vmx_vm;

struct vmx_window {
	_Atomic uint64_t handle;   /* 0: free */
	_Atomic uint64_t revoked_handle; /* last handle the agent revoked */
	uint32_t chan;
	uint64_t gpa, size;
	uint8_t *host;             /* our mapping, for KVM only */
	int bell_own, bell_peer;   /* eventfds; -1 until first use */
	unsigned nseg;
	bool ro[CTL_MAP_SEGS_MAX];
};

struct vmx_gone {
	uint64_t gpa, size;
	bool revoked;              /* by the agent (else closed by the guest) */
};

struct vmx_windows {
	struct vmx_window w[WIN_SLOTS];
	pthread_mutex_t gone_lock;
	unsigned ngone;
	struct vmx_gone gone[WIN_GONE_MAX];
};

void win_init(struct vmx_windows *ws);

/* Map a window as the agent asked (fds: own doorbell, peer's, then memory; all
 * consumed). Returns 0 or a negative errno; everything is checked first. */
int win_map(struct vmx_vm *vm, const struct ctl_map *m, const int *fds,
	    struct parley_err *err);

/* Unmap the window of channel `chan` (revoked) or of `handle` (closed by
 * the partition). Waiters on it are woken. */
int win_revoke(struct vmx_vm *vm, uint32_t chan, uint64_t *handle);
int win_close(struct vmx_vm *vm, uint64_t handle, uint32_t *chan);

/* The open window a handle names, or NULL (lock-free). */
struct vmx_window *win_lookup(struct vmx_vm *vm, uint64_t handle);

/* Was this handle revoked (as opposed to never valid or closed)? */
bool win_was_revoked(struct vmx_vm *vm, uint64_t handle);

/* Classify a guest-physical address that exited as MMIO: 1 inside a
 * window the agent revoked, 2 inside one the partition closed, 3 a write
 * to a read-only section of a live window, 0 none of these. */
int win_classify(struct vmx_vm *vm, uint64_t gpa, bool write);

/* ---- the VM (vm.c, vcpu.c, hcall*.c) ---- */
/*
 * One KVM virtual machine as held by its vmm process: the VM and vCPU
 * descriptors, guest memory (a memfd laid out by the grant manager), and the
 * run state the vCPU threads obey. KVM accepts VM and vCPU ioctls only from
 * the process that created the VM, so everything here runs in that process.
 */

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

/* Create the VM (kvm_fd: /dev/kvm, owned by vm from here) over mem_fd ([0, ram) is RAM at GPA 0, [ram, ram + cfg) the
 * config region at PARLEY_CONFIG_BASE) with nvcpu vCPUs in their initial
 * CPL 3 long-mode state (entry, boot_info). */
int vmx_vm_create(struct vmx_vm *vm, int kvm_fd, int mem_fd,
		  const struct ctl_launch *l,
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
/* Park this vCPU for good (HALT); the last one to halt ends the partition. */
void vmx_vcpu_halt(struct vmx_vcpu *c);

/* ---- hypercalls (hcall.c, hcall_chan.c) ---- */
/* Declare what the partition may name in a hypercall (vm->gm.guest): its
 * RAM above the boot area, minus the launch's read-only image ranges. */
int vmx_hcall_init(struct vmx_vm *vm, const struct ctl_launch *l,
		   struct parley_err *err);
/* Handle an OUT to a hypercall port; false when the partition was stopped.
 * Checks the argument struct (place, size, alignment, reserved fields)
 * through the dispatch table before any handler runs. */
bool vmx_hypercall(struct vmx_vcpu *c, unsigned nr, uint32_t arg_gpa);
/* The channel handlers the table names: each gets the checked private
 * copy of its struct, fills in its OUT fields, and returns false only when
 * the partition stopped (then nothing is written back). */
bool vmx_hc_chan_open(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_notify(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_wait(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_close(struct vmx_vcpu *c, void *arg);
/* A doorbell OUT that KVM did not catch (no ioeventfd for the value). */
bool vmx_doorbell_slow(struct vmx_vcpu *c, uint32_t value);

/* Hand a CHAN_OPEN answer to the vCPU waiting for it. */
void vmx_vcpu_reply(struct vmx_vm *vm, const struct ctl_open_reply *r);

/* Send the config region's dirty bitmap (since the last call) to the agent
 * in CTL_DIRTY chunks. */
int vmx_send_dirty(struct vmx_vm *vm);
void vmx_dirty_filter(uint64_t *bitmap, uint64_t pages);


/* ---- the sandbox (sandbox.c) ---- */
/* The vmm process's seccomp allowlist, loaded after set-up and before any
 * guest instruction runs. */

/* Confine the calling process (all its threads) to what a running vmm
 * needs. Anything else kills the process with SIGSYS. */
int vmx_sandbox_enter(struct parley_err *err);

#endif
