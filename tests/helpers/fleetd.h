/* A real parleyd and real agents on loopback, with throw-away certificates,
 * for the tests of the daemon link. Every process started is killed and
 * reaped by PID in fd_stop(). */
#ifndef PARLEY_TEST_FLEETD_H
#define PARLEY_TEST_FLEETD_H

#include <stdbool.h>
#include <sys/types.h>
#include "db/store.h"

#define FD_AGENTS_MAX 8

struct fd_agent {
	char name[64];
	char dir[512];
	pid_t pid;
	char log[600];
};

struct fleetd {
	char *dir;                 /* CA, daemon state, logs */
	char store[600];
	pid_t daemon;
	int port;
	unsigned n;
	struct fd_agent agent[FD_AGENTS_MAX];
};

/* CA, daemon certificate, policy key; the store created empty. */
void fd_init(struct fleetd *f);
/* Open the daemon's store (WAL: fine beside a running daemon). */
struct store *fd_store(struct fleetd *f);
/* Every host (partition) name in the store, page by page, to cb. */
void fd_each_host(struct store *s, void (*cb)(const char *name, void *ctx),
		  void *ctx);
void fd_each_partition(struct store *s,
		       void (*cb)(const char *name, void *ctx), void *ctx);
void fd_start_daemon(struct fleetd *f);
void fd_kill_daemon(struct fleetd *f);
/* A host's state directory: its certificate (or one from another CA, or
 * expired), the CA and the policy public key. */
struct fd_agent *fd_host(struct fleetd *f, const char *name,
			 const char *variant /* NULL, "foreign", "expired" */);
/* Start `parley-agent serve` for a host with spec JSON documents. */
void fd_start_agent(struct fleetd *f, struct fd_agent *a,
		    const char *const *specs);
/* The same with more options (NULL-terminated) before the specs. */
void fd_start_agent_with(struct fleetd *f, struct fd_agent *a,
			 const char *const *specs, const char *const *extra);
void fd_stop_agent(struct fd_agent *a);
/* kill -9 the agent and reap it (its outbox file stays as it was). */
void fd_kill_agent(struct fd_agent *a);
/* Each audit event in the agent's outbox file, parsed as the agent
 * reloads it (outbox_parse): what a stopped agent will send after its
 * restart. cb gets the event's name and channel. No file: no call. */
void fd_outbox_events(const struct fd_agent *a,
		      void (*cb)(const char *event, const char *channel,
				 void *ctx), void *ctx);
/* Wait until cond(ctx) or ms pass; returns cond's last value. */
bool fd_wait(bool (*cond)(struct fleetd *, void *), struct fleetd *f,
	     void *ctx, int ms);
/* For fd_wait: whether host ctx->host acknowledged ctx->want (or later)
 * in the store. */
struct fd_ack {
	const char *host;
	uint64_t want;
};
bool fd_acked(struct fleetd *f, void *ctx);
/* The agent's log so far (caller frees). */
char *fd_agent_log(const struct fd_agent *a);
char *fd_daemon_log(const struct fleetd *f);
void fd_stop(struct fleetd *f);

#endif
