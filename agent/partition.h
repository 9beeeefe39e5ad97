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

struct part_opts {
	const char *vmm_path;      /* parley-vmm; NULL: beside this program */
	const char *const *image_dirs; /* NULL-terminated; tried after the
					* spec's own directory */
	bool start_paused;
	uint32_t backend;          /* enum ctl_backend; 0 (BACKEND_AUTO):
				    * kvm if usable, else process */
	/* Console bytes as the partition wrote them (not line-buffered). */
	void (*on_console)(struct partition *p, const char *buf, size_t len,
			   void *ctx);
	void *ctx;
	int timeout_ms;            /* for requests to the vmm; 0: 5000 */
	/* Called once the partition is laid out and measured, before its
	 * vmm process exists: a negative return refuses the start (with err
	 * set), e.g. a golden baseline mismatch. */
	int (*on_measured)(struct partition *p, void *ctx,
			   struct parley_err *err);
	/* A request or event from the vmm that needs the grant manager
	 * (CTL_OPEN_REQ, CTL_CLOSED, CTL_MAPPED, CTL_UNMAPPED). Never called
	 * while the agent waits for another reply from this partition. */
	void (*on_request)(struct partition *p, uint32_t type,
			   const void *payload, void *ctx);
};

#define PART_DEFER_MAX 16

struct part_deferred {
	uint32_t type;
	_Alignas(8) char payload[sizeof(struct ctl_open_req)];
};

struct partition {
	char name[64];
	enum part_state state;
	pid_t pid;
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
	bool finished;
	struct ctl_finished fin;   /* valid once finished */
	int wait_status;           /* of the vmm process, once reaped */
	uint64_t t_created_ns, t_ready_ns, t_first_console_ns;
	struct measure measure;    /* baseline and dirty tracking */
	unsigned ndefer;
	struct part_deferred defer[PART_DEFER_MAX];
	void *owner;               /* for the grant manager's bookkeeping */
};

/* Load the spec's image and config files, lay out guest memory, start the
 * vmm process. On success *out is running (or paused) and owned by the
 * caller, who must partition_destroy() it. */
int partition_create(const struct part_spec *spec, const struct part_opts *o,
		     struct partition **out, struct parley_err *err);

/* Restore a partition saved by partition_save(), under a new process. */
int partition_restore(const char *path, const struct part_opts *o,
		      struct partition **out, struct parley_err *err);

/* Read and act on one message from the vmm process. Returns 1 once the
 * partition has finished (p->fin says why), 0 otherwise, -EAGAIN if nothing
 * was waiting. */
int partition_handle(struct partition *p);

/* Handle messages until the partition finishes or timeout_ms passes
 * (-1: no limit). 0 when finished, -ETIMEDOUT otherwise. */
int partition_wait(struct partition *p, int timeout_ms);

/* Requests deferred while waiting for a reply are waiting to be handled. */
bool partition_has_deferred(const struct partition *p);

/* Ask the vmm which config pages were written since the last call and
 * merge the answer into p->measure. */
int partition_fetch_dirty(struct partition *p, struct parley_err *err);
/* Channel mapping requests (the answers arrive through on_request). */
int partition_send(struct partition *p, uint32_t type, const void *payload,
		   uint32_t len, const int *fds, unsigned nfds);
/* Unmap a channel and wait for the vmm to confirm (killed if it does not). */
int partition_unmap(struct partition *p, uint32_t chan,
		    struct parley_err *err);

int partition_pause(struct partition *p, struct parley_err *err);
int partition_resume(struct partition *p, struct parley_err *err);
/* Save machine state and memory to path; the partition must be paused. */
int partition_save(struct partition *p, const char *path,
		   struct parley_err *err);
/* Ask the vmm process to stop the partition (killed if it does not). */
int partition_stop(struct partition *p);
/* Kill what is left, reap the vmm process, release everything. */
void partition_destroy(struct partition *p);

const char *part_state_name(enum part_state s);

#endif
