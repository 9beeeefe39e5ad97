/*
 * The agent link, agent side (`parley-agent serve`): one TLS connection to
 * parleyd, reconnected with jittered backoff. The agent says hello with the
 * policy version it enforces and its next sequence number; it takes signed
 * bundles (agent/bundle.h), persists the last good one, and keeps enforcing
 * it while the daemon is away; measurements, audit events and partition
 * status go out with sequence numbers and stay queued until acknowledged.
 */
#ifndef PARLEY_AGENT_LINK_H
#define PARLEY_AGENT_LINK_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include "agent/bundle.h"
#include "agent/outbox.h"
#include "agent/ipc/audit.h"
#include "agent/ipc/chanmgr.h"
#include "parley.pb-c.h"

struct agent_audit_pending;

/* Daemon replicas an agent knows: --server A,B,C and the state
 * directory's "servers" file (from the join) together. */
#define AGENT_LINK_SERVERS_MAX 8

struct agent_link {
	struct event_base *base;
	SSL_CTX *ctx;
	EVP_PKEY *policy_pub;
	char host[64];             /* our certificate's CN */
	char server[128];          /* the one connected or tried last */
	int port;
	/* Every daemon replica to try (server/port is servers[cur]): on a
	 * lost or failed connection the next one, round the list, with
	 * jittered exponential backoff (reset by a welcome). */
	char servers[AGENT_LINK_SERVERS_MAX][128];
	int ports[AGENT_LINK_SERVERS_MAX];
	unsigned nservers, cur;
	char state_dir[4096];
	struct bufferevent *bev;
	bool up;                   /* welcomed */
	unsigned backoff_ms;
	struct event *retry_ev, *hb_ev;
	uint32_t heartbeat_ms;
	/* Records not acknowledged yet, on disk (agent/outbox.h): handed to
	 * the outbox's sync thread at the end of a loop turn (sync_ev), sent
	 * once synced (sync_done_ev). */
	struct outbox ob;
	bool ob_open;
	struct event *sync_ev, *sync_done_ev;
	bool sync_due;             /* sync_ev is active */
	/* Audit events gathered in one loop turn go out as one batch: one
	 * commit at the daemon for many events. */
	struct agent_audit_pending *pend;
	unsigned npend;
	struct event *flush_ev;
	struct agent_policy policy;
	struct chanmgr *cm;
	/* Called once the policy to enforce is known: a persisted bundle at
	 * start, or the daemon's current one after the first welcome. */
	void (*on_ready)(void *ctx);
	void *ready_ctx;
	bool ready;
	/* PartitionCommand from the daemon. */
	void (*on_command)(void *ctx, const Parley__V1__PartitionCommand *c);
	/* While on_command runs: the command's request id, 0 for one the
	 * daemon derives from the store's state at each hello and change
	 * (CREATE and START of a partition still "defined": repeats) --
	 * never a fresh operator's request. */
	uint64_t cmd_id;
	/* The highest stored command id (Envelope.request_id of a command,
	 * issue 15) carried out: one at or below it is a resend after a
	 * lost confirmation, confirmed again and not run. Kept in the state
	 * directory (commands-done), so an agent restarted meanwhile does
	 * not run it twice either. */
	uint64_t cmd_done;
	uint64_t n_cmd_skipped;
	uint64_t want_version;     /* what the welcome said we should get */
	/* Updates from the daemon (agent/update/stage.h): an offer, a
	 * chunk; and each welcome (an outcome the daemon is owed goes out
	 * then). All with ready_ctx; may be NULL. */
	void (*on_update_offer)(void *ctx, const Parley__V1__UpdateOffer *o);
	void (*on_update_chunk)(void *ctx, const Parley__V1__UpdateChunk *c);
	/* An operator's rollback (agent/update/rollback.h). */
	void (*on_update_rollback)(void *ctx,
				   const Parley__V1__UpdateRollback *r);
	void (*on_welcome)(void *ctx);
	/* The thin partitions held now, by name, into names[cap]: listed in
	 * every hello (Hello.partitions), so the daemon learns which it
	 * believed running were lost with an agent before us. NULL: not
	 * listed (the daemon then assumes nothing). */
	unsigned (*held)(void *ctx, const char **names, unsigned cap);
	/* A new bundle is enforced (l->policy): its disk keys, for one. */
	void (*on_policy)(void *ctx);
	const char *version;       /* Hello.agent_version (NULL: this build) */
	/* counters */
	uint64_t n_bundles, n_refused_bundles, n_connects, n_refusals;
	char last_error[64];       /* the daemon's last refusal code */
};

/* Load the state directory (host.key, host.crt, ca.crt, policy.pub, and the
 * persisted bundle and sequence number if there are any) and apply the
 * persisted policy to cm. Does not connect yet. */
int agent_link_init(struct agent_link *l, struct event_base *base,
		    const char *state_dir, const char *server, int port,
		    struct chanmgr *cm, struct parley_err *err);
/* Another daemon replica to fail over to, "HOST:PORT" (a duplicate is
 * ignored). -EINVAL if malformed, -E2BIG past AGENT_LINK_SERVERS_MAX. */
int agent_link_add_server(struct agent_link *l, const char *hostport,
			  struct parley_err *err);
/* Start connecting (and keep reconnecting). */
void agent_link_start(struct agent_link *l);
void agent_link_free(struct agent_link *l);

/* One frame from the daemon, decoded and wire_check'ed (common/frame.h):
 * on_read hands each here; without a connection (fuzz_agent_dispatch)
 * every effect happens but the bytes sent. Returns 0 when taken, or
 * refuses with the state as it was (policy, outbox, welcome values,
 * readiness; counters and the audit of a refused bundle aside): -EPROTO
 * (anything but a welcome, heartbeat or error before the welcome; a second
 * welcome; a body only an agent sends), -EPERM (a welcome for another
 * host), -ERANGE (an ack for a seq not sent yet; a welcome's seq beyond
 * belief), or bundle_accept's code (answered by a negative PolicyAck).
 * The link drops the connection on any refusal but that of a bundle
 * after the welcome. */
/* Load cmd_done from the state directory (0 when there is none yet; a
 * file that is not one decimal number is -EBADMSG). agent_link_init
 * calls it. */
int agent_link_cmd_load(struct agent_link *l, struct parley_err *err);
int agent_link_dispatch(struct agent_link *l, const Parley__V1__Envelope *e,
			struct parley_err *err);

/* Queue records for the daemon (sent now if connected). */
void agent_link_audit(const struct audit_event *e, void *link);
void agent_link_measurement(struct agent_link *l, const char *partition,
			    const struct measure *m);
/* backend: what runs it ("kvm", "process"), NULL when none does. */
void agent_link_status(struct agent_link *l, const char *partition,
		       const char *backend, const char *state,
		       const char *reason, int64_t code);
/* The same for a partition we run: its backend, and each of its devices'
 * latest lifecycle states (PartitionStatus.devices). */
struct partition;
void agent_link_status_of(struct agent_link *l, const struct partition *p,
			  const char *state, const char *reason, int64_t code);

/* Where the daemon's update stands (UpdateProgress), sent now if the
 * link is up (not a record: the daemon asks again by offering). sha256
 * NULL: no offer known (the new agent's "committed"). false if not up. */
bool agent_link_update_progress(struct agent_link *l, const uint8_t *sha256,
				const char *state, uint64_t received,
				const char *reason, const char *version);

/* Before a partition starts: a baseline in the bundle must match. */
int agent_link_admit(struct agent_link *l, const char *partition,
		     const struct measure *m, struct parley_err *err);

#endif
