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
 *   ring section (not the header: its copy is in the reply) hot-plugged
 *   into the VM through the QEMU monitor, its memfd
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
 * - notify/wait (protocol 4, vmbell.c): the guest rings the peer's
 *   doorbell through one of its own ivshmem-doorbell section devices and
 *   is woken through the channel's wake port, QEMU reading the VM's
 *   doorbell — the agent on neither path; without a bell, NOTIFY rings
 *   the peer's doorbell and WAKE answers the VM's. CLOSED / PEER_DOWN
 *   come as WAKE either way.
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
#include "agent/ipc/ratelimit.h"
#include "agent/partition.h"
#include "agent/vm/vmctl.h"
#include "agent/vm/vmhost.h"
#include "agent/vm/vmstart.h"

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
	/* The devices as the OPEN reply names them: sections 1.. (0, the
	 * header, goes in the reply itself and is never plugged). */
	struct parley_vmctl_dev dev[PARLEY_VMCTL_DEVS_MAX - 1];
	unsigned ndev;
	uint8_t slot[PARLEY_VMCTL_DEVS_MAX];
	/* Section i (from 1): its backend made (nsec counts the channel's
	 * sections), its device added (bit i of devs); a writable one's
	 * ivshmem socket (the agent's end, srv[i]) or a read-only one's
	 * QEMU fdset (fdset[i]), else -1. */
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
	/* Protocol 4 (vmbell.c): the index in dev[] of the section device
	 * the guest rings its peer through (its ivshmem server holds the
	 * peer's doorbell), or PARLEY_VMCTL_NO_BELL; and the wake port that
	 * carries bell_mine to the guest — QEMU reads bell_mine then, the
	 * agent no more. */
	uint32_t bell_dev;
	bool wake_port, wake_chr;   /* the port / its chardev in QEMU */
	int wake_fdset;             /* its descriptor's fdset until the
				     * chardev has its copy, else -1 */
	char wake[PARLEY_VMCTL_WAKE_MAX];
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
	int pid;                    /* the agent that plugged it (its nonce) */
	uint32_t handle, sec;       /* its ids: pld<nonce>h<handle>s<sec>,
				     * plm..., plc..., fdset opaque plf... */
	uint8_t slot;
	bool unplugging;            /* device_del sent */
};

struct vmmgr;

/* Guest-reported digests audited per VM run: a guest that reports in a
 * loop must not fill the hash-chained audit. */
#define VMMGR_DIGEST_AUDITS 256

/* OPENs a VM may make: each one is work on the agent's loop (a decision,
 * an integrity check, monitor commands for the hot-plug or the reclaim of
 * an earlier end: milliseconds under TCG), so a guest that asks in a loop
 * would hold every other partition's requests behind its own, and grow
 * the audit by one record an OPEN. A bucket of VMMGR_OPEN_BURST refilled
 * at VMMGR_OPENS_PER_S; an OPEN that finds it empty is answered LIMIT
 * before anything is decided or audited: `vm_open_limited` LIMIT when
 * that starts, and the count (ENDED) a second after it began (at the
 * next OPEN let through, or housekeeping), when the VM stops, and before
 * the agent hands over or ends (vmmgr_limits_end) — a flood costs the
 * audit at most the decided OPENs and two records a second
 * (agent/ipc/ratelimit.h). */
#define VMMGR_OPEN_BURST 16
#define VMMGR_OPENS_PER_S 8

/* An adopted VM's guest must say HELLO (and so let go of the earlier
 * agent's channel devices) within this of its adoption. */
#define VMMGR_STALE_MS 60000

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
	int mon;                    /* the agent's own QMP monitor (qmp.h);
				     * -1 once it failed: the VM is then
				     * stopped (never libvirt's monitor on
				     * the loop: it waits without a limit) */
	int qemu_pidfd;             /* QEMU (its control port's peer), for a
				     * SIGKILL that does not wait on it */
	uint32_t fault;             /* why the agent stopped it (VMX_STOP_*),
				     * 0: it did not */
	char fault_detail[160];
	uint64_t stale_hello_ns;    /* when those were unplugged (HELLO) */
	uint64_t adopted_ns;        /* adopted: when (its earlier agent's
				     * devices must be gone by a deadline) */
	uint64_t obj_try_ns;        /* the last round of backend deletes */
	unsigned digest_audits;     /* guest-reported digests audited (at
				     * most VMMGR_DIGEST_AUDITS) */
	struct ratelimit open_limit; /* the OPEN bucket and its LIMIT
				     * episode (ratelimit.h) */
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
	bool stale_wake_left;       /* an earlier agent's wake chardev was
				     * busy at the sweep: swept again when
				     * the stale devices are gone */
	uint8_t stale_wake_sweeps;  /* those sweeps so far (bounded) */
	uint8_t out[sizeof(struct parley_vmctl_hdr) + PARLEY_VMCTL_PAYLOAD_MAX];
};

/* A VM whose domain is being started off the loop (vmstart.h): not a
 * vm_part (nor a chanmgr endpoint) until vmmgr_start_finish. */
struct vm_starting {
	struct vmstart *job;        /* NULL: a free entry */
	int slot;                   /* the stopped VM's slot it starts again
				     * (vmmgr_restart), or -1: a new one */
	uint8_t cfg_digest[VMHOST_CFG_MAX][32]; /* measured as it began */
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
	int nonce;                  /* in this agent's device ids (qid) */
	struct vm_starting starting[VMMGR_MAX];
};

int vmmgr_init(struct vmmgr *m, const char *state_dir, const char *uri,
	       struct chanmgr *cm, struct audit *audit, struct parley_err *err);
/* Starts still in flight are cancelled (their threads joined, their
 * domains destroyed: nobody would finish them); running VMs are left
 * running (the next agent adopts them). */
void vmmgr_free(struct vmmgr *m);

/* Keep guest-reported digests in db (parley-agent's --baselines file, its
 * mode: enroll or golden) rather than in memory. db outlives m. */
void vmmgr_set_baselines(struct vmmgr *m, struct baseline_db *db);

/* Take on a VM: measure its config files (the baseline), adopt its domain
 * if it runs (an agent before us started it) or start it, connect to its
 * control port, and make it a chanmgr endpoint. Waits for the start
 * (vmmgr_start, then vmmgr_start_finish): `parley-agent run` and tests. */
int vmmgr_add(struct vmmgr *m, const struct vm_spec *s, struct parley_err *err);

/* The same without waiting (serve's loop): s's config files measured;
 * a new VM whose domain runs is adopted at once (0: done, a vm_part);
 * otherwise — a new VM, or a stopped one's slot (the same name) started
 * again — its domain is started on a thread of its own (vmstart.h;
 * audited `vm_starting`) and 1 returned: vmmgr_start_fd becomes readable
 * when it is done, then vmmgr_start_finish. -EBUSY if s->name is
 * starting already, -EEXIST if it runs here, -ENOSPC when full. */
int vmmgr_start(struct vmmgr *m, const struct vm_spec *s,
		struct parley_err *err);

/* name's start in flight: the descriptor readable once its thread is done
 * (an eventfd, vmmgr's: watch, never close), or -1 when none is. */
int vmmgr_start_fd(const struct vmmgr *m, const char *name);

/* Has name's start finished (vmmgr_start_finish will not wait)? False
 * when none is in flight. */
bool vmmgr_start_done(const struct vmmgr *m, const char *name);

/* Finish name's start on the loop, waiting for its thread if it is not
 * done: 0 — connected to its control port and its own QMP monitor, a
 * chanmgr endpoint (a new slot, or its old one again: the same endpoint,
 * its quarantine ended), audited `vm_started`; -errno — it failed, err
 * says why, no domain left. cancel (stopped or destroyed while it
 * started, the agent stopping): the domain is destroyed as soon as
 * libvirt's create returns, -ECANCELED, audited `vm_start_cancelled`.
 * -ENOENT: no start of name in flight. */
int vmmgr_start_finish(struct vmmgr *m, const char *name, bool cancel,
		       struct parley_err *err);

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
 * quarantine ends with the new start. Waits (vmmgr_start, then
 * vmmgr_start_finish). */
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

/* Every VM's open episode of LIMIT answers audited ended now, with its
 * count (before a hand-over or the agent's end: the next agent starts
 * with full buckets and knows nothing of it). */
void vmmgr_limits_end(struct vmmgr *m);

/* The descriptors an event loop watches for VM i (readable: call
 * vmmgr_serve): its control port, and the doorbells of the channels it
 * waits on. Returns how many (at most cap). */
unsigned vmmgr_fds(const struct vmmgr *m, unsigned i, int *fds, unsigned cap);

#endif
