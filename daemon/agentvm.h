/*
 * Libvirt partitions their host's agent runs (issue 11; agent/vm/): a
 * libvirt partition whose spec says "kind": "vm" (agent/vm/vmspec.h) is
 * a VM the agent starts through its own libvirt, beside its thin
 * partitions and under the same grant manager. The daemon never opens a
 * libvirt connection for it: its commands (CREATE with the spec, START,
 * STOP, DESTROY) go over the agent link as a thin partition's do, and its
 * state is what the agent reports. Other libvirt specs stay with the
 * daemon's own orchestration (daemon/orch.h) on the host's libvirt_uri.
 */
#ifndef PARLEY_DAEMON_AGENTVM_H
#define PARLEY_DAEMON_AGENTVM_H

#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"
#include "db/store.h"

/* The state of an agent VM between the API's DELETE and its agent's
 * "destroyed" report (which deletes the row). */
#define AGENTVM_DESTROY_REQUESTED "destroy-requested"

/* A VM's name is shorter than a partition's (agent/vm/vmhost.h's struct
 * vm_spec: 48 bytes with its NUL; the agent checks it too). */
#define AGENTVM_NAME_MAX 48

/* Is this spec (JSON text) an agent VM's: an object with "kind": "vm"? */
bool agentvm_spec(const char *json, size_t len);
/* Is p a libvirt partition with such a spec? */
bool agentvm_part(const struct store_partition *p);

/* -EBUSY naming the grant while a grant names partition `name` (a
 * partition is destroyed only once no grant names it). */
int agentvm_no_grant(struct store *s, const char *name,
		     struct parley_err *err);

#endif
