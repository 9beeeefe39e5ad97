/*
 * The agent link, daemon side: one libevent listener, one bufferevent per
 * agent (TLS 1.3, mutual authentication), frames of Envelopes. The host is
 * the client certificate's CN; an agent may speak only for its own host,
 * which an operator must have enrolled (the host exists in the store; its
 * certificate is the pinned one, never a revoked one). Every record an
 * agent sends that must not be lost is committed to the store, with the
 * audit events it causes, before it is acknowledged. Every refusal is an
 * Error frame that reaches the agent before the connection closes.
 */
#ifndef PARLEY_DAEMON_LINK_H
#define PARLEY_DAEMON_LINK_H

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include "common/err.h"
#include "db/store.h"
#include "daemon/listen_guard.h"

struct link_conn;
struct keyd;

struct link_server {
	struct listen_guard guard;  /* the listener out of descriptors */
	struct event_base *base;
	SSL_CTX *ctx;
	struct evconnlistener *lis;
	struct store *store;
	/* Signs bundles: the key process (daemon/keys/keyd.h), which holds
	 * the policy key; key_id names that key. */
	struct keyd *policy_key;
	char key_id[65];
	size_t frame_max;
	uint32_t heartbeat_ms;
	int port;                  /* the port bound (for --listen :0) */
	struct link_conn *conns;   /* doubly linked */
	unsigned nconns;
	uint64_t seen_version;     /* latest policy version pushed out */
	struct event *poll_ev;     /* picks up changes other writers made */
	struct event *push_ev;     /* pushes bundles a slice at a time */
	struct link_conn *push_cursor; /* next link to push to, or NULL */
	uint64_t last_sweep_ms;
	struct link_batch *batch;  /* this turn's small writes (link_batch.c) */
	/* Replicas (link_replica.c): this parleyd's name among those that
	 * share the store, the HOST:PORT agents reach this link on ("" if
	 * not known), how often the store is polled (0: 200 ms). */
	char replica[64];
	char advertise[128];
	uint32_t poll_ms;
	int64_t started_ms;
	uint64_t last_beat_ms;
	/* Since when this replica's beats have gone through without a
	 * failure (monotonic ms; 0: the last one failed): only a replica
	 * that has reached the store for a whole REPLICA_DEAD_MS judges
	 * others dead -- after an outage of the store every replica's beat
	 * is old, and none of them is dead. */
	uint64_t beating_since_ms;
	bool beat_failed;          /* the last beat failed (not busy) */
	uint64_t n_reaped;         /* replicas this one found dead */
	/* store_mark after the last poll that looked (marked: one was
	 * taken): a poll that finds the store where it was only beats. */
	uint64_t mark;
	bool marked;
	uint64_t n_polls_looked;   /* polls that looked at the store */
	uint64_t n_relayed;        /* commands taken from the store, sent */
	uint64_t n_cmd_sent;       /* stored commands sent (resends too) */
	/* Change notifications from the store (PostgreSQL): the listener's
	 * socket in the loop, a timer to listen again after a loss, and
	 * whether the store has none at all (SQLite: the poll alone). */
	struct event *listen_ev, *relisten_ev;
	bool listen_off;
	uint64_t n_notified;       /* notifications that woke the loop */
	/* Stored commands delivered whose deletion found the store busy:
	 * deleted at a later poll, not delivered again. */
	struct store_replica_cmd *undeleted;
	unsigned n_undeleted;
	/* counters for logs and /metrics: every refusal; of them, hellos
	 * from a certificate whose host is not enrolled (or was deleted),
	 * revoked certificates, messages about another host's partition */
	uint64_t n_frames, n_refused, n_pushed;
	uint64_t n_unknown_host, n_revoked, n_foreign;
	/* reading from an agent paused: it had not read LINK_OUT_PAUSE */
	uint64_t n_paused;
};

/* Listen on host:port with the given TLS context; takes no ownership of
 * store, ctx or key. */
int link_start(struct link_server *ls, const char *host, int port,
	       struct parley_err *err);
void link_stop(struct link_server *ls);

/* Push fresh bundles to every connected host whose version moved. Called
 * on a timer and on SIGHUP. */
void link_push_policy(struct link_server *ls);

/* Host `host` was deleted (its certificate revoked): close its agent's
 * connection, if any, with an Error frame (HOST_DELETED). */
void link_host_deleted(struct link_server *ls, const char *host);

/* Whether `host`'s agent is connected and has said hello. */
bool link_host_connected(struct link_server *ls, const char *host);
/* Send `host`'s agent the commands for its thin partitions in state
 * "defined" (create + start), as on its hello. -ENOTCONN if it is not
 * connected (it gets them when it connects). */
int link_send_commands(struct link_server *ls, const char *host);
/* One PartitionCommand (action: a PARLEY__V1__PARTITION_COMMAND__ACTION__
 * value) without a spec. -ENOTCONN if the host is not connected. */
int link_send_command(struct link_server *ls, const char *host,
		      const char *partition, int action);

/* Something in the store may have changed (another replica's write):
 * push bundles whose version moved, deliver partition commands stored
 * for the hosts this replica holds. The poll calls it every poll_ms; a
 * change notification from the store (PostgreSQL LISTEN/NOTIFY) may
 * call it sooner. */
void link_store_changed(struct link_server *ls);

/* A command for `host`: a partition command (action as
 * link_send_command), which the caller stored first (store_replica_cmd_put
 * in its change's transaction): sent now if its agent is connected here
 * (-ENOTCONN otherwise: the replica it connects to sends it), and sent
 * again on every connection until the agent confirms it;
 * STORE_REPLICA_CMD_CHANGED (link_send_commands),
 * STORE_REPLICA_CMD_UPDATE (link_update_offer) or
 * STORE_REPLICA_CMD_ROLLBACK (link_rollback_send): sent if its agent is
 * connected here; stored for the replica holding it if another does (it
 * delivers it within its poll); -ENOTCONN if no replica holds the host
 * (it gets what it needs at its hello). */
int link_route_command(struct link_server *ls, const char *host,
		       const char *partition, int action);

/* Offer `host`'s agent its pending update (daemon/rpc/link_update.c), if
 * it is connected; otherwise it is offered at its next hello. */
void link_update_offer(struct link_server *ls, const char *host);

/* Send `host`'s agent its requested rollback (daemon/rpc/link_rollback.c),
 * if it is connected here; otherwise it is sent at its next hello. */
void link_rollback_send(struct link_server *ls, const char *host);

#endif
