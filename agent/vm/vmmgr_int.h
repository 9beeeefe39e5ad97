/*
 * What vmmgr.c, vmext.c, vmplug.c and vmstale.c share: one VM's monitor,
 * its audit and its faults (vmmgr.c), its channel ends as chanmgr drives
 * them (vmext.c), the hot-plug of a channel's sections (vmplug.c), an
 * adopted VM's devices from an earlier agent (vmstale.c).
 * Internal to agent/vm/: nothing outside includes it.
 */
#ifndef PARLEY_AGENT_VM_VMMGR_INT_H
#define PARLEY_AGENT_VM_VMMGR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/abi.h>

#include "agent/vm/qmp.h"
#include "agent/vm/vmmgr.h"
#include "common/err.h"

/* ---- vmmgr.c ---- */
uint64_t vm_now_ns(void);
void vm_emit(struct vmmgr *m, const char *event, const char *part,
	     const char *chan, const char *reason, const char *file,
	     const char *detail);
/* Stops the VM (SIGKILL of its QEMU, then libvirt's destroy), audited. */
void vm_fault(struct vm_part *v, uint32_t reason, const char *detail);
/* A frame to the VM's control port (vmctl.h), whole or not at all,
 * never waited for: past VMMGR_OUTQ_MAX unread, dropped (-EAGAIN). */
int vm_send_frame(struct vm_part *v, uint16_t type, uint32_t seq,
		  const void *pl, size_t len);
/* A STATUS or WAKE frame: status for handle. */
void vm_send_status(struct vm_part *v, uint16_t type, uint32_t seq,
		    int status, uint32_t handle);
/* The VM's channel end of chanmgr's channel chan, or of its handle. */
struct vm_chan *vm_chan_by_id(struct vm_part *v, uint32_t chan);
struct vm_chan *vm_chan_by_handle(struct vm_part *v, uint32_t handle);
/* An unplugging end whose backends QEMU let go of: freed, chanmgr told
 * (true); false while QEMU still holds them. */
bool vm_reclaim(struct vmmgr *m, struct vm_part *v, struct vm_chan *c);

/* {"execute":EXECUTE,"arguments":{"id":ID}} into json (cap bytes): a
 * command on one of the agent's objects, devices or chardevs. ID goes in
 * unescaped: one of vmplug_qid's making, or one QEMU listed that
 * vmstale_id found in that same canonical form (letters and digits). */
void vm_json_id(char *json, size_t cap, const char *execute, const char *id);
/* {"execute":"remove-fd","arguments":{"fdset-id":FDSET}} */
void vm_json_remove_fd(char *json, size_t cap, int fdset);

/* ---- vmext.c: a VM's channel ends, chanmgr's hooks ---- */
/* The hooks chanmgr_add_ext gets for every VM (the vm_part is ctx). */
extern const struct cm_ext_ops vmext_ops;
/* A VM's config file on the host: larger ones are refused (as thin
 * partitions' config region is). */
#define VM_CFG_BYTES_MAX PARLEY_CONFIG_MAX
/* SHA-256 of the regular file at path (not a link, FIFO or device; at
 * most VM_CFG_BYTES_MAX): 0, -EINVAL, -EFBIG or the open/read errno. */
int vm_file_sha256(const char *path, uint8_t out[32]);
/* WAKE (status) for channel end c, unprompted: a guest not waiting only
 * looks at its ring again. */
void vm_wake(struct vm_part *v, struct vm_chan *c, int status);
/* The guest's message-pending flag as its section holds it now. */
bool vm_guest_waiting(const struct vm_chan *c);

/* ---- vmreq.c ---- */
/* One request the decoder took from the VM's port, answered. */
void vmreq_handle(struct vmmgr *m, struct vm_part *v,
		  const struct vmctl_msg *msg);
/* An episode of LIMIT answers to OPEN audited with its count: a second
 * after its last (or at once with force: the VM stops). */
void vmreq_limit_flush(struct vmmgr *m, struct vm_part *v, bool force);

/* Commands through the agent's own monitor of the VM, pipelined; a
 * monitor that broke or answered late faults the VM (vmm-protocol). */
int vm_mon_run(struct vm_part *v, struct qmp_cmd *c, unsigned n,
	       struct parley_err *err);
int vm_mon_long(struct vm_part *v, const char *json, char **out,
		struct parley_err *err);
int vm_mon_one(struct vm_part *v, const char *json, struct parley_err *err);

/* ---- vmplug.c: a channel end's devices in QEMU ---- */
/* The monitor's id of kind 'd' (device), 'm' (memory backend), 'c'
 * (chardev) or 'f' (descriptor) for section i of channel end c; 'p'
 * (wake port), 'w' (its chardev) and 'f' with section 0 (its descriptor)
 * for the end's wake port (vmbell.c). */
void vmplug_qid(char *out, size_t cap, char kind, const struct vm_part *v,
		const struct vm_chan *c, unsigned i);
/* Hot-plug every section of channel ch for `side` (read-only ones as
 * read-only memory backends, the written ones through ivshmem's server
 * protocol); on failure vmplug_undo, then vmplug_del. */
int vmplug_add(struct vm_part *v, struct vm_chan *c, struct cm_chan *ch,
	       int side, struct parley_err *err);
void vmplug_undo(struct vm_part *v, struct vm_chan *c);
/* device_del of the wake port and every plugged section (once; the
 * guest ejects the sections). */
void vmplug_del(struct vm_part *v, struct vm_chan *c);
/* The backends deleted where QEMU let go of them: true once all are. */
bool vmplug_backends_gone(struct vm_part *v, struct vm_chan *c);
/* The devices are gone: slots, sockets, doorbells freed; c stays as a
 * tombstone (gone) — or, vmplug_release, is cleared. */
void vmplug_unplugged(struct vm_part *v, struct vm_chan *c);
void vmplug_release(struct vm_part *v, struct vm_chan *c);

/* ---- vmbell.c: the doorbells without the agent (protocol 4) ---- */
/* After vmplug_add: the peer's doorbell to QEMU through the first
 * section device the VM writes, the VM's through a wake port. 0 (bell_dev
 * may still say PARLEY_VMCTL_NO_BELL: nothing written) or -errno; on
 * failure vmplug_del takes back what was given. */
int vmbell_add(struct vm_part *v, struct vm_chan *c, struct parley_err *err);

/* ---- vmstale.c: devices an earlier agent left in an adopted VM ---- */
/* Parses one of them from its id (hostile: QEMU's answer); false if the
 * id is not an earlier agent's section device. */
bool vmstale_id(const struct vm_part *v, const char *id, struct vm_stale *st);
void vmstale_find(struct vm_part *v);
void vmstale_unplug(struct vm_part *v);
bool vmstale_gone(struct vmmgr *m, struct vm_part *v);
/* The earlier agents' wake chardevs that were busy at the last sweep. */
void vmstale_wake_sweep(struct vm_part *v);
/* Sweeps of busy wake chardevs per VM (housekeep's: 50 ms apart) */
#define VMSTALE_WAKE_SWEEPS 100

#endif
