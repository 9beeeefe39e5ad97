/*
 * The agent's Linux VM partitions (issue 11): each VM started (or adopted)
 * through vmhost.h, its control port served here — every byte through the
 * hostile-input decoder (vmctl.h) — and its channels decided and made by
 * the same grant manager as thin partitions' (agent/ipc/chanmgr.h, as an
 * external endpoint: struct cm_ext_ops), so a thin partition and a VM
 * share one channel's memfds:
 *
 * - open: chanmgr's decision (quarantine, grant, integrity of both ends —
 *   a VM's is its key configuration files re-measured on the host against
 *   the SHA-256 taken when the agent took the VM on; a changed one is
 *   INTEGRITY naming it, and the VM quarantined — peer up), then every
 *   section hot-plugged into the VM through the QEMU monitor, its memfd
 *   passed to QEMU as a descriptor (SCM_RIGHTS), never by a path QEMU
 *   opens in the agent's /proc: a section the VM writes as an
 *   ivshmem-doorbell device whose "server" is a socketpair the agent
 *   holds (it hands QEMU the writable memfd the way ivshmem-server does);
 *   a section the VM may only read as the read-only re-open (O_RDONLY)
 *   through QMP add-fd, a memory-backend-file (readonly=on) on QEMU's own
 *   /proc/self/fd/N and an ivshmem-plain device: QEMU's user may read
 *   that memfd (group read), not write it, so a QEMU that ignores
 *   readonly=on still cannot write. Backends first, then the devices back
 *   to back, so the guest's ACPI hot-plug finds them in one scan. The
 *   reply names each device's PCI address; the guest maps its BAR 2.
 * - notify: the peer's doorbell (its eventfd) rung; wait: answered WAKE
 *   when the VM's doorbell rings (the peer's vmm writes it), or CLOSED /
 *   PEER_DOWN.
 * - revocation (chanmgr's): the sections are punched at once (the guest
 *   reads zeros), the devices hot-unplugged; the unplug confirmed when
 *   QEMU lets go of the backends (object-del, chardev-remove succeed). A VM that has not let go by
 *   chanmgr's deadline (its ext_unmap_ms, 5 s by default) keeps
 *   running but the memory is truncated: its
 *   next access kills its QEMU (SIGBUS). Audited: `vm_revoke_punched`,
 *   `vm_unplugged`, `vm_unplug_late`.
 */
#ifndef PARLEY_AGENT_VM_VMMGR_H
#define PARLEY_AGENT_VM_VMMGR_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ipc/audit.h"
#include "agent/ipc/baseline.h"
#include "agent/ipc/chanmgr.h"
#include "agent/partition.h"
#include "agent/vm/vmctl.h"
#include "agent/vm/vmhost.h"

#define VMMGR_MAX 8
#define VMMGR_CHANS 8
#define VMMGR_SLOT0 0x10      /* PCI slots 0x10.. on pci.0 for sections */
#define VMMGR_OUTQ_MAX 65536  /* unread bytes on a VM's port: more, and
			       * frames to it are dropped */

struct vm_chan {
	bool used;
	uint32_t chan;              /* chanmgr's channel id */
	uint32_t handle;            /* the VM's */
	int side;
	unsigned nsec;
	struct parley_vmctl_dev dev[PARLEY_VMCTL_DEVS_MAX];
	uint8_t slot[PARLEY_VMCTL_DEVS_MAX];
	/* Section i: its backend made (nsec counts those), its device
	 * added (bit i of devs); a writable one's ivshmem socket (the
	 * agent's end, srv[i]) or a read-only one's QEMU fdset (fdset[i]),
	 * else -1. */
	uint32_t devs;
	int srv[PARLEY_VMCTL_DEVS_MAX];
	int fdset[PARLEY_VMCTL_DEVS_MAX];
	bool unplugging;            /* device_del sent; backends to delete */
	bool obj_gone[PARLEY_VMCTL_DEVS_MAX];
	bool closed;                /* revoked or closed: CLOSED from now */
	bool gone;                  /* unplugged: kept only so the guest's
				     * handle answers CLOSED, not BAD_HANDLE,
				     * until it closes it (or the record is
				     * needed) */
	bool peer_gone;
	int bell_mine, bell_peer;   /* dups of the channel's doorbells */
	uint64_t notified_ns;       /* when the guest last NOTIFYd the peer */
	int flag_fd;                /* a dup of the memfd holding the VM's
				     * consumer page (the queue it reads;
				     * -1: it reads none): its `waiting`
				     * flag, read with pread on a doorbell
				     * (never mapped: a truncated section
				     * must not SIGBUS the agent) */
};

/* A section device an earlier agent plugged into a VM this agent
 * adopted: its channel died with that agent. */
struct vm_stale {
	int pid;                    /* the agent that plugged it */
	uint32_t handle, sec;       /* its ids: pld<pid>h<handle>s<sec>,
				     * plm..., plc..., fdset opaque plf... */
	uint8_t slot;
	bool unplugging;            /* device_del sent */
};

struct vmmgr;

struct vm_part {
	struct vmmgr *m;
	struct vm_spec spec;
	struct partition shell;     /* chanmgr's view: name, state */
	uint8_t cfg_digest[VMHOST_CFG_MAX][32];
	bool adopted;               /* was running before this agent */
	bool late;                  /* kept a channel past its revocation
				     * deadline: its memory was truncated */
	char guest_bad[BASELINE_GUEST_PATH_MAX]; /* the first guest-reported
				     * path whose digest differed from its
				     * baseline: every later open is refused
				     * INTEGRITY naming it */
	int ctl;                    /* control port connection, or -1 */
	bool outq_full;             /* frames being dropped (VMMGR_OUTQ_MAX) */
	int mon;                    /* the agent's own QMP monitor (qmp.h),
				     * or -1: libvirt's */
	struct vmctl_dec dec;
	uint32_t next_handle;
	uint32_t slots_used;        /* bit n: PCI slot VMMGR_SLOT0 + n */
	struct vm_chan ch[VMMGR_CHANS];
	unsigned nstale;            /* adopted: devices of an earlier agent's
				     * channels, unplugged at the guest's
				     * first HELLO (it re-opens after it
				     * let go of their mappings), their
				     * slots taken until QEMU has let go */
	struct vm_stale stale[16];
	uint64_t stale_try_ns;      /* the last object_del round */
	uint8_t out[sizeof(struct parley_vmctl_hdr) + PARLEY_VMCTL_PAYLOAD_MAX];
};

struct vmmgr {
	struct vmhost host;
	struct chanmgr *cm;         /* the agent's grant manager */
	struct audit *audit;
	struct baseline_db *db;     /* guest-reported digests' baselines:
				     * own_db unless vmmgr_set_baselines */
	struct baseline_db own_db;  /* in memory, enroll mode */
	unsigned nvm;
	struct vm_part vm[VMMGR_MAX];
	uint64_t plug_ns_last;      /* the last open's hot-plug, for benches */
	uint64_t plug_backends_ns_last; /* of which the backends */
	uint64_t turn_ns_last;      /* a NOTIFY to the peer's doorbell for the
				     * VM: the peer's side of a sleeping round
				     * trip, as the agent sees it (benches) */
	uint64_t turns;             /* how many turn_ns_last were taken */
};

int vmmgr_init(struct vmmgr *m, const char *state_dir, const char *uri,
	       struct chanmgr *cm, struct audit *audit, struct parley_err *err);
void vmmgr_free(struct vmmgr *m);

/* Keep guest-reported digests in db (parley-agent's --baselines file, its
 * mode: enroll or golden) rather than in memory. db outlives m. */
void vmmgr_set_baselines(struct vmmgr *m, struct baseline_db *db);

/* Take on a VM: measure its config files (the baseline), adopt its domain
 * if it runs (an agent before us started it) or start it, connect to its
 * control port, and make it a chanmgr endpoint. */
int vmmgr_add(struct vmmgr *m, const struct vm_spec *s, struct parley_err *err);

/* Start-up reconciliation: owned domains without a spec here are
 * destroyed (call after every vmmgr_add). */
int vmmgr_reconcile(struct vmmgr *m, unsigned *adopted, unsigned *destroyed,
		    struct parley_err *err);

/* Serve VM i: what it sent (non-blocking), its doorbells, its unplugs.
 * 0, -EAGAIN when nothing happened, -EPIPE when the port closed, -EPROTO
 * on a violation (the port is closed, audited). */
int vmmgr_serve(struct vmmgr *m, unsigned i);

/* VM i's port has closed (vmmgr_serve said -EPIPE or -EPROTO): once its
 * domain is gone too, report it stopped (`vm_stopped`, chanmgr told) and
 * return 1; 0 while it still runs. QEMU closes the port on its way out a
 * moment before libvirt sees the domain gone, so look again later. */
int vmmgr_reap(struct vmmgr *m, unsigned i);

/* Stop VM i now (serve's STOP and DESTROY, a port that broke, SIGTERM):
 * its domain destroyed, the VM reported stopped to chanmgr with `reason`
 * (agent/ctl/stop.h; audited `vm_stopped`). Nothing for a stopped one.
 * 0, or -errno when libvirt would not destroy it. */
int vmmgr_stop(struct vmmgr *m, unsigned i, uint32_t reason,
	       const char *detail);

/* Start stopped VM i again from s (the same name; serve's START, or a
 * CREATE of a name destroyed before): re-measured, started, its port
 * connected, in the same slot — the same chanmgr endpoint, whose
 * quarantine ends with the new start. */
int vmmgr_restart(struct vmmgr *m, unsigned i, const struct vm_spec *s,
		  struct parley_err *err);

struct vm_part *vmmgr_find(struct vmmgr *m, const char *name);

/* Before a hand-over (agent/update_commit.h): VMs are not passed, the new
 * agent takes each on measured afresh (vmmgr_add), so what only this
 * agent knows against one would be lost: -EPERM if a running VM is
 * quarantined; -EBADMSG if one's config files (or a guest-reported
 * digest) no longer match — it is quarantined now, as its next open would
 * have it. err names the VM and why; 0: nothing to lose. */
int vmmgr_handover_check(struct vmmgr *m, struct parley_err *err);

/* The descriptors an event loop watches for VM i (readable: call
 * vmmgr_serve): its control port, and the doorbells of the channels it
 * waits on. Returns how many (at most cap). */
unsigned vmmgr_fds(const struct vmmgr *m, unsigned i, int *fds, unsigned cap);

#endif
