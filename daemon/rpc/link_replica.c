/*
 * Replicas: several parleyd processes on one store, each holding some of
 * the agents. The store is the only thing they share, so every replica
 *   - says it is alive (its row's seen_ms, every REPLICA_BEAT_MS),
 *   - records which hosts it holds (on a hello; released on the close,
 *     only if still its own -- the agent may have moved on), in the
 *     loop turn's batch of small writes (link_batch.c),
 *   - hears of other replicas' changes as they commit (PostgreSQL
 *     LISTEN/NOTIFY: the listener's socket is in the event loop) and
 *   - polls the store all the same, the safety net for a notification
 *     lost with its connection (link_store_changed, every poll_ms): a policy
 *     version that moved is pushed to its agents (link_push.c), and the
 *     partition commands another replica's API stored for the hosts it
 *     holds are delivered and deleted.
 * Whichever replica's API takes a change commits it; the replica holding
 * the host does the talking.
 */
#include "daemon/rpc/link_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPLICA_BEAT_MS 1000
/* A lost listener is made again this often: connecting blocks the loop,
 * and a database that is down refuses at once or times out. */
#define RELISTEN_MS 1000
/* Replicas told to agents: those that beat within this long (the margin
 * is for other machines' clocks), as the join listener does. */
#define REPLICA_FRESH_MS 30000
/* A replica that has not beaten for this long is dead: its hosts are
 * released (api_hosts.c shows a holder only while it beat within the
 * same time). Five beats: a beat that found the store busy is tried
 * again at the next poll, so five are missed only by a replica that is
 * gone, stopped, or cut off from the store. */
#define REPLICA_DEAD_MS 5000


static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replicas that stopped beating: their hosts released and each audited
 * once, in one transaction that does not wait for the write lock (the
 * store's lock makes exactly one replica find each dead one). */
static void reap_dead(struct link_server *ls)
{
	struct parley_err err = { 0 };
	struct store_replica *d = NULL;
	int64_t before = wall_ms() - REPLICA_DEAD_MS;
	int rc = store_try_begin(ls->store, &err);
	if (rc < 0)
		return; /* busy: at the next beat */
	int n = store_replica_reap(ls->store, ls->replica, before, &d, &err);
	rc = n < 0 ? n : 0;
	for (int i = 0; rc == 0 && i < n; i++) {
		char detail[192];
		if (!d[i].hosts)
			continue; /* stopped cleanly: released its own */
		snprintf(detail, sizeof(detail), "replica %s silent since "
			 "%lld (Unix ms); %llu hosts it held released by %s",
			 d[i].name, (long long)d[i].seen_ms,
			 (unsigned long long)d[i].hosts, ls->replica);
		struct store_audit_in ev = { .event = "replica_dead",
					     .reason = "SILENT",
					     .detail = detail };
		rc = store_audit_append(ls->store, &ev, 1, NULL, &err);
	}
	if (rc == 0)
		rc = store_commit(ls->store, &err);
	else
		store_rollback(ls->store, NULL);
	if (rc < 0)
		log_warn("replica %s: releasing dead replicas' hosts: %s",
			 ls->replica, perr_msg(&err));
	for (int i = 0; rc == 0 && i < n; i++) {
		ls->n_reaped++;
		if (d[i].hosts)
			log_warn("replica %s: replica %s silent for more than "
				 "%d ms: its %llu hosts released", ls->replica,
				 d[i].name, REPLICA_DEAD_MS,
				 (unsigned long long)d[i].hosts);
		else
			log_info("replica %s: replica %s gone (silent, held "
				 "nothing): its row removed", ls->replica,
				 d[i].name);
	}
	free(d);
}

void link_replica_beat(struct link_server *ls)
{
	struct parley_err err = { 0 };
	uint64_t now = mono_now_ms();
	if (ls->last_beat_ms && now - ls->last_beat_ms < REPLICA_BEAT_MS)
		return;
	ls->last_beat_ms = now;
	int rc = store_replica_beat(ls->store, ls->replica, ls->advertise,
				    ls->started_ms, &err);
	/* Another writer holds the store: the beat does not wait for it in
	 * the event loop (API clients and agents would), it comes again at
	 * the next poll. REPLICA_FRESH_MS is many beats long. */
	if (rc == -EBUSY) {
		ls->last_beat_ms = 0;
		return;
	}
	if (rc < 0) {
		/* Said once per outage, not every second of it. */
		if (ls->beating_since_ms || !ls->beat_failed)
			log_warn("replica %s: %s", ls->replica, perr_msg(&err));
		ls->beating_since_ms = 0;
		ls->beat_failed = true;
		return;
	}
	if (ls->beat_failed)
		log_info("replica %s: the store answers again", ls->replica);
	ls->beat_failed = false;
	if (!ls->beating_since_ms)
		ls->beating_since_ms = now;
	else if (now - ls->beating_since_ms >= REPLICA_DEAD_MS)
		reap_dead(ls);
}

static void relisten_later(struct link_server *ls)
{
	struct timeval tv = { RELISTEN_MS / 1000, (RELISTEN_MS % 1000) * 1000 };
	if (ls->relisten_ev)
		evtimer_add(ls->relisten_ev, &tv);
}

static void unlisten(struct link_server *ls)
{
	/* Out of the loop before its socket closes. */
	if (ls->listen_ev)
		event_free(ls->listen_ev);
	ls->listen_ev = NULL;
	store_unlisten(ls->store);
}

static void on_notified(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct link_server *ls = arg;
	struct parley_err err = { 0 };
	int rc = store_listen_take(ls->store, &err);
	if (rc > 0) {
		ls->n_notified++;
		link_store_changed(ls);
	} else if (rc < 0) {
		log_warn("replica %s: %s; listening again in %d ms (the "
			 "poll goes on)", ls->replica, perr_msg(&err),
			 RELISTEN_MS);
		unlisten(ls);
		relisten_later(ls);
	}
}

/* While the listener's connection is being made (in steps that never
 * block the loop), its next step comes this soon. */
#define LISTEN_STEP_MS 50

static void listen_now(struct link_server *ls)
{
	struct parley_err err = { 0 };
	int fd = -1;
	int rc = store_listen(ls->store, &fd, &err);
	if (rc == -ENOTSUP) {
		ls->listen_off = true;
		return;
	}
	if (rc == -EINPROGRESS) {
		struct timeval tv = { 0, LISTEN_STEP_MS * 1000 };
		if (ls->relisten_ev)
			evtimer_add(ls->relisten_ev, &tv);
		return;
	}
	if (rc == 0) {
		ls->listen_ev = event_new(ls->base, fd, EV_READ | EV_PERSIST,
					  on_notified, ls);
		if (ls->listen_ev && event_add(ls->listen_ev, NULL) == 0) {
			log_info("replica %s: listening for other replicas' "
				 "changes", ls->replica);
			return;
		}
		rc = perr(&err, -ENOMEM, "link: out of memory");
	}
	log_warn("replica %s: %s; listening again in %d ms (the poll goes "
		 "on)", ls->replica, perr_msg(&err), RELISTEN_MS);
	unlisten(ls);
	relisten_later(ls);
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct link_server *ls = arg;
	listen_now(ls);
	/* What committed while nobody listened. */
	if (ls->listen_ev)
		link_store_changed(ls);
}

void link_listen_start(struct link_server *ls)
{
	ls->relisten_ev = evtimer_new(ls->base, on_relisten, ls);
	listen_now(ls);
}

void link_listen_stop(struct link_server *ls)
{
	free(ls->undeleted);
	ls->undeleted = NULL;
	ls->n_undeleted = 0;
	unlisten(ls);
	if (ls->relisten_ev)
		event_free(ls->relisten_ev);
	ls->relisten_ev = NULL;
}

void link_replica_hold(struct link_conn *c)
{
	link_batch_hold(c->ls, c->host, true);
}

void link_replica_release(struct link_conn *c)
{
	/* Another connection of ours for the same host (a reconnect that
	 * arrived before this one's close was seen) keeps the claim. */
	for (struct link_conn *o = c->ls->conns; o; o = o->next)
		if (o != c && o->hello && !strcmp(o->host, c->host))
			return;
	link_batch_hold(c->ls, c->host, false);
}

/* Whether c's agent knows ServerList and confirms stored commands: an
 * agent decodes a body it does not know as none and drops the link, so
 * only agents of this daemon's version or newer are told. */
bool link_agent_current(const struct link_conn *c)
{
	unsigned mine[3], theirs[3];
	return parley_version_parse(parley_version(), true, mine) == 0 &&
	       parley_version_parse(c->agent_version, true, theirs) == 0 &&
	       parley_version_cmp(theirs, mine) >= 0;
}

void link_replica_tell(struct link_conn *c)
{
	if (!link_agent_current(c))
		return;
	struct store_replica *r = NULL;
	int n = store_replica_list(c->ls->store, &r, NULL);
	char *servers[WIRE_JOIN_SERVERS_MAX];
	size_t k = 0;
	int64_t now = (int64_t)time(NULL) * 1000;
	for (int i = 0; i < n && k < WIRE_JOIN_SERVERS_MAX; i++)
		if (r[i].link[0] && now - r[i].seen_ms <= REPLICA_FRESH_MS)
			servers[k++] = r[i].link;
	/* One daemon alone has nothing to add to what the agent has. */
	if (k > 1) {
		Parley__V1__Envelope e;
		Parley__V1__ServerList sl;
		wire_init_envelope(&e, 0);
		parley__v1__server_list__init(&sl);
		sl.servers = servers;
		sl.n_servers = k;
		e.body_case = PARLEY__V1__ENVELOPE__BODY_SERVERS;
		e.servers = &sl;
		link_send_env(c, &e);
	}
	free(r);
}

void link_cmd_flush(struct link_conn *c)
{
	struct store_replica_cmd *k = NULL;
	struct parley_err err = { 0 };
	if (!c->hello || c->closing || !link_agent_current(c))
		return;
	int n = store_replica_cmd_pending(c->ls->store, c->host, c->cmd_sent,
					  &k, &err);
	if (n < 0)
		log_warn("agent %s: stored commands: %s", c->host,
			 perr_msg(&err));
	for (int i = 0; i < n; i++) {
		link_send_command_to(c, k[i].partition, k[i].action, NULL,
				     (uint64_t)k[i].id);
		c->cmd_sent = k[i].id;
		c->ls->n_cmd_sent++;
		log_info("agent %s: stored command %lld (action %d) for %s "
			 "sent", c->host, (long long)k[i].id, k[i].action,
			 k[i].partition);
	}
	free(k);
}

/* The command here: -ENOTCONN if its host's agent is not connected. */
static int send_here(struct link_server *ls, const char *host,
		     const char *partition, int action)
{
	if (action == STORE_REPLICA_CMD_CHANGED)
		return link_send_commands(ls, host);
	if (action != STORE_REPLICA_CMD_UPDATE &&
	    action != STORE_REPLICA_CMD_ROLLBACK)
		return link_send_command(ls, host, partition, action);
	if (!link_host_connected(ls, host))
		return -ENOTCONN;
	if (action == STORE_REPLICA_CMD_ROLLBACK)
		link_rollback_send(ls, host);
	else
		link_update_offer(ls, host);
	return 0;
}

static int deliver(struct link_server *ls, const struct store_replica_cmd *k)
{
	int rc = send_here(ls, k->host, k->partition, k->action);
	if (rc == 0) {
		ls->n_relayed++;
		log_info("agent %s: command %d for %s from the store", k->host,
			 k->action, k->partition[0] ? k->partition : "its "
			 "partitions");
	}
	return rc == 0;
}

/* The deletion of a delivered command: 0 done (or gone), -EBUSY when
 * another writer holds the store (the poll must not wait for it), which
 * keeps the id to delete at a later poll rather than deliver again. */
static int forget_cmd(struct link_server *ls, int64_t id)
{
	struct parley_err err = { 0 };
	int rc = store_replica_cmd_delete(ls->store, id, &err);
	if (rc == -EBUSY)
		return rc;
	if (rc < 0)
		log_warn("command %lld: %s", (long long)id, perr_msg(&err));
	return 0;
}

/* The same command, not merely the same id (an id freed by a host's
 * deletion could be taken by a new command). */
static bool undeleted(const struct link_server *ls,
		      const struct store_replica_cmd *k)
{
	for (unsigned i = 0; i < ls->n_undeleted; i++) {
		const struct store_replica_cmd *u = &ls->undeleted[i];
		if (u->id == k->id && u->action == k->action &&
		    !strcmp(u->host, k->host) &&
		    !strcmp(u->partition, k->partition))
			return true;
	}
	return false;
}

static void take_commands(struct link_server *ls)
{
	struct store_replica_cmd *k = NULL;
	struct parley_err err = { 0 };
	int n = store_replica_cmd_list(ls->store, ls->replica, &k, &err);
	if (n < 0)
		log_warn("replica %s: stored commands: %s", ls->replica,
			 perr_msg(&err));
	/* At most one list's worth (1,000) is ever kept. */
	struct store_replica_cmd *left =
		n > 0 ? calloc((size_t)n, sizeof(*left)) : NULL;
	unsigned nleft = 0;
	for (int i = 0; i < n; i++) {
		/* Kept until its agent confirms it: sent once per
		 * connection, by link_cmd_flush. */
		struct link_conn *c = k[i].action >= 0
			? link_find_host(ls, k[i].host) : NULL;
		if (c && link_agent_current(c)) {
			if (k[i].id > c->cmd_sent)
				link_cmd_flush(c);
			continue;
		}
		if (undeleted(ls, &k[i])) {
			if (forget_cmd(ls, k[i].id) == -EBUSY && left)
				left[nleft++] = k[i];
			continue;
		}
		/* A host the store says we hold but that is not connected
		 * here (its close is being recorded): left for whoever
		 * holds it next. */
		if (!deliver(ls, &k[i]))
			continue;
		if (forget_cmd(ls, k[i].id) == -EBUSY && left)
			left[nleft++] = k[i];
	}
	free(k);
	free(ls->undeleted);
	ls->undeleted = left;
	ls->n_undeleted = nleft;
}

/* Claims of ours that went missing from the store: a host deleted
 * through another replica's API (its row, and with it our claim, is
 * gone, but its agent is connected here: cut off as the API of this
 * replica would, HOST_DELETED), or this replica taken for dead by
 * another (it did not beat for REPLICA_DEAD_MS -- a stopped process, a
 * store away): the claims of agents still connected here are made
 * again, unless another replica holds the host by now. One count per
 * poll notices; only then is each agent's host looked up. */
static void drop_deleted(struct link_server *ls)
{
	uint64_t mine = 0, held = 0;
	for (struct link_conn *c = ls->conns; c; c = c->next)
		held += c->held && c->hello;
	if (!held || !link_batch_idle(ls) ||
	    store_replica_count(ls->store, ls->replica, &mine, NULL) < 0 ||
	    mine >= held)
		return;
	for (struct link_conn *c = ls->conns; c; c = c->next) {
		struct store_host h;
		char by[STORE_NAME_MAX];
		if (!c->held || !c->hello || c->closing ||
		    store_replica_holder(ls->store, c->host, by, NULL,
					 NULL) != -ENOENT)
			continue;
		int rc = store_host_get(ls->store, c->host, &h, NULL);
		if (rc == -ENOENT) {
			link_host_deleted(ls, c->host);
		} else if (rc == 0) {
			log_warn("agent %s: this replica's claim on it was "
				 "released (taken for dead?); held again",
				 c->host);
			link_batch_hold(ls, c->host, true);
		}
	}
}

void link_store_changed(struct link_server *ls)
{
	link_push_policy(ls);
	take_commands(ls);
	drop_deleted(ls);
	link_replica_beat(ls);
}

int link_route_command(struct link_server *ls, const char *host,
		       const char *partition, int action)
{
	/* A partition command is in the store already (the API stored it
	 * in its change's transaction): sent now if the agent is here, else
	 * by whichever replica it is or will be connected to (at its
	 * hello, or at that replica's next look at the store). */
	if (action >= 0) {
		struct link_conn *c = link_find_host(ls, host);
		if (!c)
			return -ENOTCONN;
		link_cmd_flush(c);
		return 0;
	}
	int rc = send_here(ls, host, partition, action);
	if (rc != -ENOTCONN)
		return rc;
	char holder[STORE_NAME_MAX];
	struct parley_err err = { 0 };
	rc = store_replica_holder(ls->store, host, holder, NULL, &err);
	if (rc == -ENOENT || (rc == 0 && !strcmp(holder, ls->replica)))
		return -ENOTCONN; /* nobody holds it: its hello resyncs it */
	if (rc == 0)
		rc = store_replica_cmd_put(ls->store, host, partition, action,
					   &err);
	if (rc < 0)
		log_error("agent %s: storing a command for its replica: %s",
			  host, perr_msg(&err));
	else
		log_info("agent %s is held by replica %s: command %d stored "
			 "for it", host, holder, action);
	return rc;
}
