/*
 * The new agent's half of the hand-over (the old one's is
 * agent/update_commit.h): say hello, take the state and its descriptors,
 * rebuild every partition and the channel table, have every vmm answer a
 * ping, say ready, and serve once told to commit. Before the commit the
 * new agent changes nothing: requests read meanwhile are deferred, no vmm
 * is killed, no memory truncated; on any failure it tells the old one why
 * (UPD_NACK) and leaves with _exit, dropping only its copies of the
 * descriptors.
 */
#ifndef PARLEY_AGENT_UPDATE_ADOPT_H
#define PARLEY_AGENT_UPDATE_ADOPT_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ipc/chanmgr.h"
#include "agent/partition.h"
#include "common/err.h"

/* Faults a test build of the agent can be told to have (never read from
 * anywhere in a production build: agent/main.c sets them only when built
 * as parley-agent-next for the tests). */
enum update_fault {
	UPDATE_FAULT_NONE = 0,
	UPDATE_FAULT_NO_CONFIRM,   /* adopt, ping, then never say ready */
	UPDATE_FAULT_ADOPT,        /* refuse to adopt the last partition */
	UPDATE_FAULT_PING_DIE,     /* ping every vmm, then exit at once: the
				    * old agent gets the answers */
};

struct update_adopt {
	struct chanmgr *cm;        /* empty, initialised; filled here */
	struct part_opts popts;    /* for every adopted partition */
	/* Each adopted partition, for the caller's event loop. */
	int (*add)(void *ctx, struct partition *p);
	void *ctx;
	const char *version;       /* this binary's */
	int timeout_ms;            /* adopt and ping; 0: 5000 */
	enum update_fault fault;
	/* Filled in: */
	char old_version[64];
	char vmm_path[1024];       /* what new partitions should start */
	char vmm_version[64];      /* and its version */
	uint8_t *policy;           /* the policy in force (malloc'd; its */
	uint32_t policy_len;       /* grants are set in cm already) */
	uint64_t pause_ns;         /* when the old one stopped serving */
	unsigned nadopted;
	/* When each step ended (CLOCK_MONOTONIC): the state received and
	 * parsed, everything adopted, every vmm answered, commit received. */
	uint64_t t_state_ns, t_adopted_ns, t_pinged_ns, t_commit_ns;
	int old_pidfd;             /* the old agent (our parent), or -1:
				    * for update_old_gone */
};

/* sock: the descriptor named by PARLEY_HANDOVER_FD. Returns 0 once the old
 * agent committed (or vanished after our ready: then nobody else serves);
 * the caller then serves, and its event loop handles the requests
 * deferred meanwhile. Never returns otherwise: on a failure it tells the
 * old one why and exits with status 75, on an abort with status 0 (err
 * is for the log line before). */
int update_adopt(int sock, struct update_adopt *u, struct parley_err *err);

/* After update_adopt: wait up to timeout_ms for the old agent to have
 * exited (its pidfd, taken while it waited for our hello). What it held
 * that admits one holder at a time goes with its exit, not with its
 * commit: a Linux VM's control port and QMP monitor (QEMU serves one
 * client each) and the embedded libvirt driver's root (one process).
 * 0, or -ETIMEDOUT (it still runs: the caller goes on, and what it
 * needs of those may fail). Closes u->old_pidfd either way. */
int update_old_gone(struct update_adopt *u, int timeout_ms);

#endif
