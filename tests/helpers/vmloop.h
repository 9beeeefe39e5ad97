/* The agent's loop around one VM (slot 0 of a vmmgr) and the thin
 * partitions of a fleet, as parley-agent runs it, for the suites that
 * drive vmmgr directly (vm_chan, vm_system). */
#ifndef PARLEY_TEST_VMLOOP_H
#define PARLEY_TEST_VMLOOP_H

#include "agent/vm/vmmgr.h"
#include "tests/helpers/fleet.h"

/* VM name's console file as it is now (malloc'd; "" when there is none). */
char *t_vm_console(struct vmmgr *m, const char *name);

/* Does a thin partition of f still run? */
bool t_vm_thin_live(struct t_fleet *f);

/* One round: the VM's port and doorbells (a closed port: the VM reaped
 * once libvirt sees it gone), the thin partitions (up to wait_ms when the
 * port had nothing), chanmgr's tick every 20 ms — also when no thin
 * partition is left. Returns what vmmgr_serve did. */
int t_vm_pump(struct t_fleet *f, struct vmmgr *m, int wait_ms);

/* Serve until VM name's console shows `until`, or limit_s passes (or the
 * port broke the protocol): a failure naming the console, the thin
 * partitions' output, the audit and more(ctx) when given. */
void t_vm_serve_until(struct t_fleet *f, struct vmmgr *m, const char *name,
		      const char *until, int limit_s,
		      char *(*more)(void *ctx), void *ctx);

#endif
