/*
 * The VMs of `parley-agent serve` (issue 11): VM partitions the daemon
 * commands over the agent link. A CREATE whose spec says "kind": "vm"
 * (vmspec.h; its files only from --image-dir / --config-dir, as for a
 * thin spec the daemon sends) is run through the VM manager (vmmgr.h)
 * under serve's own grant manager, so the daemon's bundle grants a
 * channel between a thin partition and a VM of this host, and the
 * bundle's baseline for the VM is checked against its key configuration
 * files before it starts (the measurement goes to the daemon either way,
 * which enrols the first). START, STOP and DESTROY name a VM the same way
 * they name a thin partition; each change is reported as PartitionStatus
 * with backend "vm": created, starting, running, stopped (reason: killed — the
 * daemon's stop —, exit, revoked-access, vmm-protocol, create-failed,
 * baseline-refused, start-failed, not-running), destroyed.
 *
 * The daemon's spec of each VM is kept in STATE/vm-specs/NAME.json (0600)
 * until the VM is destroyed: at start-up an owned domain that has one is
 * adopted (QEMU outlives the agent: kill -9 leaves it running), a spec
 * whose domain is gone is a stopped VM, and an owned domain without one
 * is destroyed — never leaked, never started twice.
 *
 * Everything runs on serve's libevent loop: each VM's control port and
 * the doorbells of its waits are events; the tick serves every VM (unplugs
 * that complete, a port that closed) and streams consoles as `NAME| line`.
 * Except a VM's start: libvirt's create and the wait for QEMU's ports run
 * on a thread of the VM manager's (vmstart.h) — the VM reported
 * "starting" meanwhile — and the loop finishes it when the thread is done
 * (an event on its eventfd), so thin partitions, the daemon link and
 * other VMs are answered while a VM starts.
 */
#ifndef PARLEY_AGENT_VM_VMSERVE_H
#define PARLEY_AGENT_VM_VMSERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "agent/ipc/measure.h"
#include "agent/vm/vmmgr.h"
#include "agent/vm/vmrun.h"
#include "parley.pb-c.h"

struct event_base;
struct event;

#define VMSERVE_FDS (1 + VMMGR_CHANS)
#define VMSERVE_SPEC_MAX 65536

struct vmserve_ops {
	/* A VM's state for the daemon (PartitionStatus, backend "vm"). */
	void (*status)(void *ctx, const char *name, const char *state,
		       const char *reason, int64_t code);
	/* Its key configuration files, measured: to the daemon, and checked
	 * against the bundle's baseline (0, or -errno with err). */
	int (*admit)(void *ctx, const char *name, const struct measure *m,
		     struct parley_err *err);
	void *ctx;
};

struct vmserve;

struct vmserve_vm {
	struct vmserve *vs;
	bool used;
	char name[48];
	char *spec_json;            /* the daemon's, as kept on disk */
	bool running;
	/* Its domain being started off the loop (vmmgr_start): reported
	 * "starting"; start_ev on the start's eventfd. A STOP or DESTROY
	 * meanwhile is kept in `then` and done when the start returns (the
	 * start cancelled: its domain destroyed); a START or CREATE again is
	 * answered "starting". */
	bool starting;
	struct event *start_ev;
	enum { VMS_THEN_RUN, VMS_THEN_STOP, VMS_THEN_DESTROY } then;
	/* The config files' digests admitted against the bundle's baseline:
	 * the ones the VM manager measured must be these. */
	unsigned nadmitted;
	uint8_t admitted[VMHOST_CFG_MAX][32];
	struct vmrun_con con;
	struct event *ev[VMSERVE_FDS];
	int evfd[VMSERVE_FDS];      /* our own dups of what the events watch */
	unsigned nev;
};

struct vmserve {
	struct event_base *base;
	struct chanmgr *cm;
	struct audit *audit;
	const char *state_dir;
	const char *uri;            /* libvirt's; NULL: the embedded driver */
	const char *const *image_dirs, *const *config_dirs;
	struct vmserve_ops ops;
	FILE *out;                  /* consoles */
	char spec_dir[PATH_MAX];
	bool on;                    /* the VM manager (libvirt) is open */
	struct vmmgr m;
	struct vmserve_vm vm[VMMGR_MAX];
};

/* Set up, then the start-up reconciliation: the kept specs read, owned
 * domains adopted or destroyed (libvirt is opened only when there are
 * specs or an earlier STATE/vm or libvirt root: a host without VMs never
 * needs it). uri: a system libvirtd's (vmhost_open), NULL: embedded.
 * A kept spec that no longer parses is a stopped VM (audited). */
int vmserve_init(struct vmserve *vs, struct event_base *base,
		 struct chanmgr *cm, struct audit *audit,
		 const char *state_dir, const char *uri,
		 const char *const *image_dirs,
		 const char *const *config_dirs,
		 const struct vmserve_ops *ops, FILE *out,
		 struct parley_err *err);

/* The daemon's command: 1 if it was a VM's (done, reported), 0 if not
 * (a thin partition's: serve's own). */
int vmserve_command(struct vmserve *vs, const Parley__V1__PartitionCommand *c);

/* Every tick: serve each running VM, stream consoles, report VMs that
 * stopped on their own. */
void vmserve_tick(struct vmserve *vs);

/* SIGTERM: every running VM stopped (reported), as serve stops its thin
 * partitions; their specs stay (a restart reports them stopped). A VM
 * still starting is cancelled: this waits for libvirt's create to return
 * (its thread joined), then its domain is destroyed, reported stopped
 * (killed). */
void vmserve_stop_all(struct vmserve *vs);

void vmserve_free(struct vmserve *vs);

#endif
