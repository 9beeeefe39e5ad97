/*
 * A thin partition as the grant manager sees it: the guest memory it laid
 * out (and keeps a read-only view of), the vmm process that runs it, and the
 * control link to that process. The grant manager never runs guest code;
 * everything here is set-up, bookkeeping and requests to the vmm process.
 *
 * Lifecycle: created -> running <-> paused -> stopped -> destroyed.
 */
#ifndef PARLEY_AGENT_PARTITION_H
#define PARLEY_AGENT_PARTITION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "agent/ipc/measure.h"
#include "agent/spec.h"
#include "agent/ctl/ctl.h"
#include "agent/layout.h"
#include "common/err.h"

enum part_state {
	PART_CREATED,
	PART_RUNNING,
	PART_PAUSED,
	PART_STOPPED,
};

struct partition;
struct snap_key;
struct disk_key_source;
struct plugin_set;

struct part_opts {
	const char *vmm_path;      /* parley-vmm; NULL: beside this program */
	const char *const *image_dirs; /* NULL-terminated; tried after the
					* spec's own directory */
	const char *const *config_dirs; /* the same for config files */
	bool start_paused;
	uint32_t backend;          /* enum ctl_backend; 0 (BACKEND_AUTO):
				    * kvm if usable, else process */
	/* Console bytes as the partition wrote them (not line-buffered). */
	void (*on_console)(struct partition *p, const char *buf, size_t len,
			   void *ctx);
	void *ctx;
	int timeout_ms;            /* for requests to the vmm; 0: 5000 */
	/* The key snapshots are tagged and checked with (agent/snapshot.h);
	 * NULL: partition_save and partition_restore refuse. */
	const struct snap_key *snap_key;
	/* Called once the partition is laid out and measured, before its
	 * vmm process exists: a negative return refuses the start (with err
	 * set), e.g. a golden baseline mismatch. */
	int (*on_measured)(struct partition *p, void *ctx,
			   struct parley_err *err);
	/* A request or event from the vmm that needs the grant manager
	 * (CTL_OPEN_REQ, CTL_UPDATE_REQ, CTL_CLOSED, CTL_MAPPED,
	 * CTL_UNMAPPED), read and
	 * checked by ctl_read. Called only from partition_handle(), i.e. from
	 * the event loop: never while the agent waits for a reply, stops a
	 * partition or revokes a channel. */
	void (*on_request)(struct partition *p, const struct ctl_msg *m,
			   void *ctx);
	/* Disks (agent/disk/): where backing files and key files lie
	 * (NULL-terminated; NULL: the spec's own directory only, and none
	 * for a daemon's spec), where keys come from (NULL: key files
	 * beneath those directories), and a report of each key released
	 * ("disk_key_released") or refused ("disk_key_refused"). */
	const char *const *disk_dirs;
	const struct disk_key_source *keys;
	void (*on_disk_key)(struct partition *p, const char *disk,
			    const char *event, const char *detail, void *ctx);
	/* Device plugins (agent/plugin/): the verified set handed to the vmm
	 * (NULL: the vmm's built-in devices), and each lifecycle state a
	 * device enters (agent/vmx/plugdev.h; detail: a refusal's reason). */
	const struct plugin_set *plugins;
	/* A restore: the spec the partition was created from, whose disks
	 * the restored partition re-opens (same checks beneath disk_dirs,
	 * keys from `keys`), only after its baseline check (on_measured);
	 * its name must be the snapshot's. NULL: a restore with no disks (a
	 * snapshot holding a disk's device states is then refused). Keys
	 * are never in a snapshot: they come from the key source again. */
	const struct part_spec *restore_spec;
	void (*on_device_state)(struct partition *p, const char *device,
				const char *plugin, const char *state,
				const char *detail, void *ctx);
};

/* A device's latest lifecycle state, as its vmm reported it. */
struct part_device {
	char device[CTL_PLUGIN_NAME_MAX];
	char plugin[CTL_PLUGIN_NAME_MAX];
	uint32_t state;            /* enum plugdev_state */
	char why[160];             /* failed: the refusal, named */
};

#define PART_DEVICES_MAX (1 + 2 * PARLEY_DISKS_MAX)

/* A device state's name ("running", "torn-down", ...; "?" unknown). */
const char *part_device_state_name(uint32_t state);

/* A disk between its open and the launch that hands it to the vmm. */
struct part_disk {
	int fd;
	struct ctl_disk msg;       /* key[] only for an encrypted disk */
};

#define PART_DEFER_MAX 16

/* A request that arrived while we waited for a reply: only the two
 * payloads requests have are kept. */
struct part_deferred {
	uint32_t type;
	union {
		struct ctl_open_req open_req;
		struct ctl_update_req update_req;
		struct ctl_chan_ref ref;
	} u;
};

struct partition {
	char name[64];
	enum part_state state;
	pid_t pid;                 /* of the vmm process; 0 once reaped */
	int pidfd;                 /* pidfd_open(pid): kill and reap by it,
				    * never by a pid that may be reused */
	uint32_t vmm_uid;          /* the vmm's uid (and gid), its own while
				    * it lives (agent/vmm_jail.h) */
	int ctl;                   /* our end of the control link */
	int mem_fd;
	const uint8_t *mem;        /* read-only view: RAM, then config */
	uint64_t ram_size, cfg_size;
	uint32_t vcpus;
	uint32_t backend;          /* enum ctl_backend, resolved */
	uint64_t entry;
	unsigned nrange;
	struct layout_range range[16];
	uint64_t image_hi;
	struct part_opts opts;
	unsigned ndevice;
	struct part_device device[PART_DEVICES_MAX];
	/* Device states: collected while a snapshot asks for them
	 * (CTL_DEVICE_SAVED; saving NULL otherwise: then a protocol error),
	 * and those a restore hands the new vmm (CTL_DEVICE_LOAD). */
	struct ctl_device_blob *saving;
	unsigned nsaving;
	const struct ctl_device_blob *devload;
	unsigned ndevload;
	bool finished;
	struct ctl_finished fin;   /* valid once finished */
	int wait_status;           /* of the vmm process, once reaped */
	bool unreported;           /* ended without CTL_FINISHED: the
				    * detail says how, once reaped */
	uint64_t t_created_ns, t_ready_ns, t_first_console_ns;
	struct measure measure;    /* baseline and dirty tracking */
	uint32_t open_pending;     /* vCPUs with a CHAN_OPEN or an update
				    * request unanswered */
	uint32_t caps;             /* SPEC_CAP_* its spec grants */
	unsigned ndefer;
	struct part_deferred defer[PART_DEFER_MAX];
	void *owner;               /* for the grant manager's bookkeeping */
	bool adopted;              /* taken over from the agent before us:
				    * not our child (partition_reap) */
	unsigned ndisk;            /* disks held until the launch */
	struct part_disk disk[PARLEY_DISKS_MAX];
	unsigned nkeyed;           /* encrypted disks whose key its vmm holds
				    * (stopping the vmm wipes them) */
	char vmm_version[64];      /* of the vmm process running it: a vmm
				    * is replaced only at the next start */
};

/* Load the spec's image and config files, lay out guest memory, start the
 * vmm process. On success *out is running (or paused) and owned by the
 * caller, who must partition_destroy() it. */
int partition_create(const struct part_spec *spec, const struct part_opts *o,
		     struct partition **out, struct parley_err *err);

/* Restore a partition saved by partition_save(), under a new process on
 * o->backend (either backend, whichever it was saved on). The file must
 * carry a good tag with o->snap_key and have been taken on this host; it
 * is restored under the name it was saved as, which must equal `name`
 * unless that is NULL. Its memory is measured again (through struct gmem)
 * and o->on_measured decides, as for a new partition: the caller checks it
 * against a stored baseline and never enrols it (the file's own memory is
 * no baseline). */
int partition_restore(const char *path, const char *name,
		      const struct part_opts *o, struct partition **out,
		      struct parley_err *err);
/* Everything partition_restore does before a vmm process exists (read and
 * check the file, measure the restored memory, o->on_measured): on success
 * *out holds the memory, no process (partition_destroy frees it), and
 * st[0..vcpus) the saved vCPU states. For partition_restore, and for the
 * fuzz target that drives restore end to end without a VM. */
int partition_restore_prepare(const char *path, const char *name,
			      const struct part_opts *o, struct partition **out,
			      struct ctl_vcpu_state *st, struct parley_err *err);

/* Read and act on one message from the vmm process (or one request that
 * was deferred). Returns 1 once the partition has finished (p->fin says
 * why), 0 otherwise, -EAGAIN if nothing was waiting. Every fault of the
 * vmm (end of stream, a malformed, unexpected or out-of-range message)
 * kills it and stops the partition with a reason (agent/ctl/stop.h). */
int partition_handle(struct partition *p);

/* Handle messages until the partition finishes and its vmm process is
 * reaped, or timeout_ms passes (-1: no limit). 0 when finished (reaped or
 * not), -ETIMEDOUT otherwise. For tools and tests; the event loops use
 * partition_handle() and partition_reap(). */
int partition_wait(struct partition *p, int timeout_ms);

/* Requests deferred while waiting for a reply are waiting to be handled. */
bool partition_has_deferred(const struct partition *p);

/* The pidfd to poll for readability while the vmm process is still to be
 * reaped, else -1; partition_reap() when it is readable (never blocks).
 * Returns true once reaped. */
int partition_reap_fd(const struct partition *p);
bool partition_reap(struct partition *p);

/* Ask the vmm which config pages were written since the last call and
 * merge the answer into p->measure. The answer is bounded: at most
 * ceil(pages / (8 * CTL_DIRTY_BYTES)) chunks (one if there are no pages),
 * contiguous and in order from page 0, the last flagged, all within one
 * deadline (opts.timeout_ms). Anything else kills the vmm: the partition
 * stops (vmm-protocol or vmm-timeout) and -EPROTO / -ETIMEDOUT / -ESRCH
 * is returned. */
int partition_fetch_dirty(struct partition *p, struct parley_err *err);
/* Send a message with descriptors to the vmm; -ESRCH once finished. */
int partition_send(struct partition *p, uint32_t type, const void *payload,
		   uint32_t len, const int *fds, unsigned nfds);

/* The vmm broke the rules: kill it, stop the partition with `reason`
 * (enum vmx_stop) and a detail; no wait. Nothing happens if the partition
 * has finished already. */
void partition_fault(struct partition *p, unsigned reason, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

int partition_pause(struct partition *p, struct parley_err *err);
int partition_resume(struct partition *p, struct parley_err *err);
/* Save machine state and memory to path, tagged with p->opts.snap_key and
 * bound to this host, the partition's name, the ABI and its backend; the
 * partition must be paused. */
int partition_save(struct partition *p, const char *path,
		   struct parley_err *err);
/* Stop the partition now: its vmm process is killed (SIGKILL: a vmm is
 * never asked and waited for), console output it had already sent is
 * still delivered, and the partition stops as `killed` unless a report of
 * its own end was already queued. Never blocks. */
int partition_stop(struct partition *p);
/* Kill what is left, reap the vmm process (it has been sent SIGKILL, so
 * the wait is the kernel's teardown, bounded), release everything. */
void partition_destroy(struct partition *p);

const char *part_state_name(enum part_state s);

/* The hand-over's health check. partition_ping sends CTL_PING; then each
 * partition_read_held reads one message without dispatching requests
 * (deferred, for after the commit) and without killing the vmm on a fault
 * (an error, with the reason): 1 once the CTL_PONG with this nonce came
 * (or the partition finished on its own), 0 for anything else or nothing
 * waiting, negative on a fault. */
int partition_ping(struct partition *p, uint64_t nonce);

/* A running partition handed over by the agent before us (agent/
 * update_adopt.c): its state as the hand-over message had it, and its
 * descriptors (ctl, pidfd, guest memory: taken over, closed on failure),
 * each checked against the message (a SEQPACKET socket; the pidfd of
 * that pid; memory of exactly RAM + config region), the memory mapped
 * read-only again, the vmm's uid held. */
struct ho_part;
int partition_adopt(const struct ho_part *hp, const int fds[3],
		    const struct part_opts *o, struct partition **out,
		    struct parley_err *err);
int partition_read_held(struct partition *p, uint64_t nonce,
			struct parley_err *err);

/* The vmm a partition starts without --vmm: parley-vmm beside the agent
 * binary that runs. 0 or -errno. */
int part_default_vmm(char *out, size_t cap);

#endif
