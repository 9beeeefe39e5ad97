/*
 * Private to the agent link (daemon/rpc/link*.c): one connection's state
 * and the few calls the link's files make of each other.
 *   link.c        listener, connections, hello, dispatch, refusals, pushes
 *   link_door.c   the ownership rule every agent message passes
 *   link_ingest.c records (measurements, audit, status), each committed
 *                 with the audit events it causes before its Ack
 *   link_batch.c  small writes (policy acks) committed once per loop turn
 *   link_push.c   policy bundles out: on hello, and fleet-wide in slices
 *                 with pipelined signing
 */
#ifndef PARLEY_DAEMON_LINK_INT_H
#define PARLEY_DAEMON_LINK_INT_H

#include "daemon/rpc/link.h"
#include "common/wire.h"

struct link_conn {
	struct link_server *ls;
	struct bufferevent *bev;
	struct link_conn *prev, *next;
	char host[STORE_NAME_MAX];  /* from the certificate, once verified */
	uint8_t cert_sha256[STORE_DIGEST]; /* of that certificate */
	bool verified;              /* certificate checked, not revoked */
	bool hello;                 /* welcomed: may send records */
	bool closing;               /* refused: the Error frame drains, then
				     * the connection closes; nothing read is
				     * processed any more */
	uint64_t pushed;            /* bundle version sent last */
	uint64_t last_rx_ms;        /* for dead-peer detection */
	bool paused;                /* not read: too much it has not read
				     * (link.c: LINK_OUT_PAUSE) */
	size_t out_seen;            /* paused: its output at the last sweep */
	/* An update being sent (link_update.c): the package, how far the
	 * agent says it is, how far we sent, what the store last heard. */
	bool upd_on;
	uint8_t upd_sha[32];
	uint64_t upd_size, upd_acked, upd_sent, upd_stored;
	char agent_version[65];     /* from its hello */
	bool held;                  /* recorded in the store as ours */
	/* Stored commands (link_replica.c): the highest id sent on this
	 * connection; those above it are sent at the next look, in id
	 * order. An agent's confirmation deletes one; a new connection
	 * starts from 0, so what was not confirmed is sent again. */
	int64_t cmd_sent;
};

/* Refuse: count, log and audit (reason = code, partition may be NULL),
 * send an Error frame {code, why}, stop processing what the peer sends,
 * close once the frame has left (or after a short grace, for a peer that
 * does not read). c stays allocated until then; check c->closing. */
void link_refuse(struct link_conn *c, const char *code, const char *why,
		 const char *partition);
void link_send_env(struct link_conn *c, Parley__V1__Envelope *e);
void link_send_ack(struct link_conn *c, uint64_t rid, uint64_t seq);

/* The ownership rule (link_door.c): 0 if every partition the message
 * names is on c's host or unknown to the store; otherwise c is refused
 * (FOREIGN_PARTITION, or UNEXPECTED for a type with no rule) and the
 * result is negative. */
int link_door(struct link_conn *c, const Parley__V1__Envelope *e);

/* Records (link_ingest.c): stored with their audit events in one
 * transaction, then acknowledged; a failure refuses c. */
void link_on_measurements(struct link_conn *c, const Parley__V1__Envelope *e);
void link_on_audit(struct link_conn *c, const Parley__V1__Envelope *e);
void link_on_status(struct link_conn *c, const Parley__V1__Envelope *e);

/* Updates (link_update.c): on hello, the agent's version is stored and a
 * pending update offered; progress moves the host's update row and
 * draws the next chunks. */
void link_update_hello(struct link_conn *c, const Parley__V1__Hello *h);
/* The thin partitions of c's host the store believes running that the
 * hello does not list (link_lost.c): audited partition_lost, "defined"
 * again (send_commands then creates and starts them), a paused one
 * "stopped". Call before send_commands. Nothing for an agent that does
 * not list. */
void link_lost_hello(struct link_conn *c, const Parley__V1__Hello *h);
/* One audit event about c's host, appended now (a failure is logged). */
void link_audit_host(struct link_conn *c, const char *event,
		     const char *reason, const char *detail);
void link_on_update_progress(struct link_conn *c,
			     const Parley__V1__Envelope *e);
struct link_conn *link_find_host(struct link_server *ls, const char *host);

/* An operator's rollback (link_rollback.c): on hello (after
 * link_update_hello, which sets c->agent_version), the requested rollback
 * is sent, or marked committed when the agent runs another version than
 * it was asked of; an UpdateProgress without sha256 about a rollback
 * moves the host's rollback row (true: handled, the update code must not
 * look at it). */
void link_rollback_hello(struct link_conn *c);
bool link_rollback_progress(struct link_conn *c,
			    const Parley__V1__UpdateProgress *p);

/* Bundles (link_push.c): c's bundle now if its version moved past
 * c->pushed (signed synchronously; on hello); the push event. */
void link_push_one(struct link_conn *c);
int link_push_start(struct link_server *ls);

/* Replicas (link_replica.c): this replica's row refreshed (at most once
 * a second); c's host recorded as held by this replica (on its hello),
 * and released (on its close, if still ours). */
void link_replica_beat(struct link_server *ls);
/* Listen for other replicas' changes (store_listen), or go on polling
 * alone where the store has no notifications; link_listen_stop undoes it
 * (link_stop). */
void link_listen_start(struct link_server *ls);
void link_listen_stop(struct link_server *ls);
void link_replica_hold(struct link_conn *c);
void link_replica_release(struct link_conn *c);
/* After c's welcome: the replicas alive on the store (ServerList), for
 * its agent to fail over between. */
void link_replica_tell(struct link_conn *c);
/* Whether c's agent is of this daemon's version or newer (it knows
 * ServerList and confirms stored commands). */
bool link_agent_current(const struct link_conn *c);
/* c's stored commands not sent on this connection yet, in id order
 * (on its welcome, after a command was stored, at a look at the store);
 * agents too old to confirm get them from the poll, deleted as sent. */
void link_cmd_flush(struct link_conn *c);
/* One PartitionCommand to c, request_id = id (0: wants no answer). */
void link_send_command_to(struct link_conn *c, const char *partition,
			  int action, const char *spec, uint64_t id);

/* Small writes (link_batch.c): queued now, committed together at the end
 * of this loop turn. */
void link_batch_policy_ack(struct link_server *ls, const char *host,
			   const Parley__V1__PolicyAck *a);
/* host's agent carried out its stored command `id`: deleted in the
 * turn's batch. */
void link_batch_cmd_done(struct link_server *ls, const char *host,
			 uint64_t id);
/* This replica holds host's agent now (hold) or no longer (!hold). */
void link_batch_hold(struct link_server *ls, const char *host, bool hold);
/* Nothing queued (every hold and release is in the store). */
bool link_batch_idle(const struct link_server *ls);
int link_batch_start(struct link_server *ls);
void link_batch_stop(struct link_server *ls);

#endif
