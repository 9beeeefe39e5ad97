/*
 * A VM's start off the agent's event loop: the part of taking a VM on
 * that blocks for seconds — libvirt's virDomainCreateXML (QEMU spawned,
 * its monitor up; ~5 s under TCG, the first start of an embedded root
 * probes QEMU's capabilities too), then the wait for QEMU's control port
 * and the agent's own QMP monitor (each up to 5 s) — on a thread of its
 * own, so the loop keeps answering thin partitions, the daemon link and
 * other VMs meanwhile.
 *
 * The thread touches only its job: its copy of the spec, the vmhost it
 * was given (read-only: the libvirt connection, paths, QEMU's uid), and
 * its results. Nothing of vmmgr's or chanmgr's: the loop takes the
 * results once the thread is done (vmstart_fd readable) and finishes the
 * start there (vmmgr.h: vmmgr_start_finish).
 *
 * libvirt and threads: its public API is thread-safe (since 0.6.0: one
 * virConnectPtr may be used by several threads at once; the embedded
 * QEMU driver is the same driver libvirtd runs with its worker threads),
 * and its last error is kept per thread — so the thread reads its own
 * libvirt error into its own struct parley_err, and the connection is
 * never closed (vmhost_close) while a job runs: vmstart_join first.
 *
 * Cancel (vmstart_cancel: the VM was stopped or destroyed while it
 * started, or the agent stops): libvirt's create cannot be interrupted,
 * so the thread finishes it, then destroys the domain itself rather than
 * wait for its ports; the result is -ECANCELED and no domain is left.
 */
#ifndef PARLEY_AGENT_VM_VMSTART_H
#define PARLEY_AGENT_VM_VMSTART_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "agent/vm/vmhost.h"
#include "common/err.h"

struct vmstart {
	struct vmhost *vh;
	struct vm_spec spec;        /* the thread's own copy */
	pthread_t thread;
	bool joined;
	int done;                   /* eventfd: readable once the thread is
				     * done (the loop watches it) */
	atomic_bool cancel;
	/* The thread's results: read only after vmstart_join. */
	int rc;                     /* 0, -ECANCELED, or why it failed */
	struct parley_err err;
	int ctl;                    /* control port (blocking), or -1 */
	int mon;                    /* the agent's QMP monitor, or -1 */
	struct parley_err mon_err;  /* why there is none */
	uint64_t begun_ns, ended_ns;/* CLOCK_MONOTONIC */
};

/* Start s on a new thread (libvirt create, then the control port and the
 * QMP monitor; the domain destroyed again if a port never comes). *out
 * malloc'd. 0, or -errno (no thread). */
int vmstart_begin(struct vmstart **out, struct vmhost *vh,
		  const struct vm_spec *s, struct parley_err *err);

/* The eventfd that becomes readable when the thread is done. */
int vmstart_fd(const struct vmstart *j);

/* Has the thread finished? (Never blocks.) */
bool vmstart_done(const struct vmstart *j);

/* Ask the thread to destroy the domain once libvirt's create returns. */
void vmstart_cancel(struct vmstart *j);

/* Wait for the thread (at once when vmstart_done) and collect it; then
 * j's results may be read. Idempotent. */
void vmstart_join(struct vmstart *j);

/* Joined first; descriptors the caller has not taken (set to -1) closed.
 * A job whose domain started and that nobody took over: the caller
 * destroys it (vmmgr does) — this only frees. */
void vmstart_free(struct vmstart *j);

#endif
