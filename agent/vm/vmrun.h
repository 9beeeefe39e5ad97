/*
 * The VMs of `parley-agent run` (issue 11): VM specs (vmspec.h) started
 * through the VM manager (vmmgr.h) under the run's own grant manager, so
 * that a thin partition and a VM of one run share a channel granted by
 * --policy. The supervisor's loop serves them (struct supervisor's extra_*
 * hooks); each VM's serial console is streamed like a thin partition's,
 * `NAME| line`, and its result read from the init's last line
 * (`PARLEY-GUEST done rc=N`).
 */
#ifndef PARLEY_AGENT_VM_VMRUN_H
#define PARLEY_AGENT_VM_VMRUN_H

#include <stdbool.h>
#include <stdio.h>
#include "agent/vm/vmmgr.h"

/* A console read at most this much a call, a backlog past this skipped */
#define VMRUN_CON_READ (64 * 1024)
#define VMRUN_CON_BACKLOG (16L * 1024 * 1024)

struct vmrun_con {
	long off;                   /* read so far in the console file */
	long punched;               /* its disk space given back up to here */
	/* The file read (0: none yet). Under a system libvirtd virtlogd
	 * writes the console and rotates it (at 2 MiB by default: NAME.console
	 * renamed NAME.console.0, a new one begun): the rest of the old one
	 * is read there, then the new one from its start. */
	unsigned long ino;
	char line[1024];
	size_t len;
	bool stopped;               /* its port closed: the VM is gone */
	int rc;                     /* the guest's script, -1 unknown */
};

struct vmrun {
	bool on;                    /* vmmgr initialised */
	FILE *out;
	unsigned n;
	struct vmmgr m;
	struct vmrun_con con[VMMGR_MAX];
};

/* New whole lines of VM `name`'s console to out as `NAME| line`; the
 * init's `PARLEY-GUEST done rc=N` kept in c->rc (serve streams its VMs'
 * consoles the same way). */
void vmrun_console(struct vmhost *h, const char *name, struct vmrun_con *c,
		   FILE *out);

/* Start the n VMs (n <= VMMGR_MAX) under cm, their libvirt root and
 * sockets beneath state_dir (uri: a system libvirtd's, vmhost_open; NULL:
 * the embedded driver; one that runs already is adopted, its
 * console streamed from the file's end); then destroy owned domains
 * without a spec (an earlier run's). On failure the ones started are destroyed. db: the
 * --baselines file their guest-reported digests are enrolled in and
 * compared with (NULL: kept in memory for the run). */
int vmrun_start(struct vmrun *r, const char *state_dir, const char *uri,
		struct chanmgr *cm,
		struct audit *audit, struct baseline_db *db,
		const struct vm_spec *specs, unsigned n, FILE *out,
		struct parley_err *err);

/* Every running VM's console printed up to where its file ends now (a
 * hand-over's commit: the new agent streams an adopted VM's console from
 * the file's end when it adopts it). */
void vmrun_console_all(struct vmrun *r);

/* The supervisor's hooks (owner: the struct vmrun). */
unsigned vmrun_fds(struct vmrun *r, int *fds, unsigned cap);
void vmrun_serve(struct vmrun *r);
unsigned vmrun_live(const struct vmrun *r);
void vmrun_stop(struct vmrun *r);

/* Print each VM's result under the supervisor's summary; 0 when every
 * guest's script ended with 0. */
int vmrun_summary(struct vmrun *r);

/* Destroy what still runs, free everything. */
void vmrun_free(struct vmrun *r);

#endif
