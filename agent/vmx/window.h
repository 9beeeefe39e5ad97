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
#ifndef PARLEY_VMX_WINDOW_H
#define PARLEY_VMX_WINDOW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "agent/vmx/ctl.h"
#include "common/err.h"

#define WIN_SLOTS 32
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

/* Map a window as the agent asked (fds: memory, own doorbell, peer's; all
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

#endif
