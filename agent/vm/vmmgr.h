/*
 * The agent's Linux VM partitions (issue 11): each VM started (or adopted)
 * through vmhost.h, its control port served here — every byte through the
 * hostile-input decoder (vmctl.h) — and its channel opens decided as for
 * thin partitions: the grant (common/grant.h, the same policy), then
 * integrity — the VM's key configuration files re-measured on the host
 * (SHA-256 against the baseline taken when the agent first started it):
 * a file that changed is refused INTEGRITY naming it, and the VM is
 * quarantined (every later open QUARANTINED). Every decision is audited.
 *
 * Not yet: channel memory for a VM (hot-plugged ivshmem sections shared
 * with a thin partition's chanmgr channel): a granted, intact open is
 * answered NOSYS saying so. A protocol violation closes the port (audited
 * `vm_ctl_violation`).
 */
#ifndef PARLEY_AGENT_VM_VMMGR_H
#define PARLEY_AGENT_VM_VMMGR_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ipc/audit.h"
#include "agent/vm/vmctl.h"
#include "agent/vm/vmhost.h"
#include "common/grant.h"

#define VMMGR_MAX 16

struct vm_part {
	struct vm_spec spec;
	uint8_t cfg_digest[VMHOST_CFG_MAX][32];
	bool quarantined;
	bool adopted;               /* was running before this agent */
	int ctl;                    /* control port connection, or -1 */
	struct vmctl_dec dec;
	uint8_t out[sizeof(struct parley_vmctl_hdr) + PARLEY_VMCTL_PAYLOAD_MAX];
};

struct vmmgr {
	struct vmhost host;
	const struct grant_set *grants;   /* the agent's policy, borrowed */
	struct audit *audit;
	unsigned nvm;
	struct vm_part vm[VMMGR_MAX];
};

int vmmgr_init(struct vmmgr *m, const char *state_dir, const char *uri,
	       const struct grant_set *grants, struct audit *audit,
	       struct parley_err *err);
void vmmgr_free(struct vmmgr *m);

/* Take on a VM: measure its config files (the baseline), then adopt its
 * domain if it runs (an agent before us started it) or start it, and
 * connect to its control port. */
int vmmgr_add(struct vmmgr *m, const struct vm_spec *s, struct parley_err *err);

/* Start-up reconciliation: owned domains without a spec here are
 * destroyed (call after every vmmgr_add). */
int vmmgr_reconcile(struct vmmgr *m, unsigned *adopted, unsigned *destroyed,
		    struct parley_err *err);

/* Serve what VM i sent (non-blocking: what is there now). 0, -EAGAIN when
 * nothing was waiting, -EPIPE when the port closed, -EPROTO on a violation
 * (the port is closed, audited). */
int vmmgr_serve(struct vmmgr *m, unsigned i);

struct vm_part *vmmgr_find(struct vmmgr *m, const char *name);

#endif
