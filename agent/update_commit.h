/*
 * Committing an update by hand-over (nginx-style: the new binary starts
 * beside the running agent, which exits only once the new one serves).
 *
 * The running agent (update_commit) starts STAGE/parley-agent with its own
 * arguments and a socket (PARLEY_HANDOVER_FD), keeps serving until the new
 * one says hello, then stops serving, passes its state (agent/handover.h:
 * policy, partitions with their control sockets, pidfds and memory, the
 * channel table with its memory and doorbells, services) and waits for the
 * new one to adopt every partition and have each vmm answer a ping, within
 * one deadline. Then it tells the new one to go on and leaves without
 * touching any partition (update_leave). Linux VMs are not passed: the
 * new agent adopts them from libvirt after we have gone, and their
 * guests re-open their channels (see struct update_host's vms). If the new one exits, fails to
 * adopt or does not confirm in time, it is killed and the old one goes on
 * serving (rollback); the reason is returned and audited
 * ("update_rollback").
 *
 * The new side is agent/update_adopt.h.
 */
#ifndef PARLEY_AGENT_UPDATE_COMMIT_H
#define PARLEY_AGENT_UPDATE_COMMIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "agent/ipc/chanmgr.h"
#include "common/err.h"

/* The messages on the hand-over socket (SOCK_SEQPACKET), one byte of type
 * first: */
enum {
	UPD_HELLO = 'H',   /* new -> old: started; its version follows */
	UPD_STATE = 'S',   /* old -> new: + the message's memfd; u32 nfds */
	UPD_FDS = 'F',     /* old -> new: + up to UPD_FDS_PER_MSG descriptors */
	UPD_READY = 'R',   /* new -> old: every partition adopted and alive */
	UPD_NACK = 'N',    /* new -> old: it cannot; the reason follows */
	UPD_COMMIT = 'C',  /* old -> new: serve; the old one is leaving */
	UPD_ABORT = 'A',   /* old -> new: leave without touching anything */
};
#define UPD_FDS_PER_MSG 200
#define UPD_MSG_MAX 512
#define UPD_ENV_FD "PARLEY_HANDOVER_FD"

/* What the running agent lends update_commit. In this tree the standalone
 * agent (`parley-agent run`, agent/main.c) fills it; `serve` would fill it
 * the same way (its link and outbox are not handed over yet). */
struct update_host {
	struct chanmgr *cm;        /* its partitions and channels */
	const uint8_t *policy;     /* the policy document now in force */
	size_t policy_len;
	char *const *argv;         /* its own; argv[0] becomes the new binary */
	const char *version;       /* its own */
	FILE *out;                 /* "handed over to ..." */
	int timeout_ms;            /* start + adopt + confirm; 0: 10000 */
	/* One round of the running agent's event loop, at most max_ms: it
	 * keeps serving while the new binary starts. */
	void (*serve)(void *ctx, int max_ms);
	/* Optional: once the new agent is ready, just before it is told to
	 * commit (the daemon link lets go of its outbox and connection). */
	void (*before_commit)(void *ctx);
	void *ctx;
	/* Filled in on return: the new agent's pid (0 if none started), and
	 * how long the grant manager did not answer (stop serving to commit
	 * or rollback). */
	pid_t new_pid;
	uint64_t pause_ns;
	/* Linux VMs running here (chanmgr's external endpoints): not in the
	 * message. Their QEMUs outlive us (update_leave destroys nothing);
	 * the new agent adopts them from libvirt once we have exited
	 * (update_old_gone) and their guests re-open their channels. */
	unsigned vms;
};

/* stage_dir holds verified parley-agent, parley-vmm and manifest.json.
 * 0: the new agent serves; the caller leaves with update_leave() at once,
 * stopping nothing. Negative: rolled back, err says why (also audited). */
int update_commit(struct update_host *a, const char *stage_dir,
		  struct parley_err *err);

/* Leave after a commit: flush stdio, exit 0 without stopping any
 * partition, closing any channel or truncating any memory (the new agent
 * holds them all). */
__attribute__((noreturn)) void update_leave(void);

/* One message on the hand-over socket (both sides): a type byte, then
 * len bytes, then descriptors. upd_recv checks the size against cap and
 * the number of descriptors against maxfds (-EPROTO, descriptors closed);
 * 0 at end of stream with *type 0. Returns the payload length. */
int upd_send(int sock, uint8_t type, const void *payload, size_t len,
	     const int *fds, unsigned nfds);
int upd_recv(int sock, uint8_t *type, void *buf, size_t cap, int *fds,
	     unsigned maxfds, unsigned *nfds);

#endif
