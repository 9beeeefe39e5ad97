/*
 * Small writes in batches: a policy acknowledgement is a one-row update,
 * and a fleet-wide change brings one from every agent within a few loop
 * turns. Committed one by one, each costs a transaction and its fsync
 * (10,000 agents: seconds). So they are queued as they are read and
 * committed together at the end of the loop turn, one transaction for
 * the lot -- with the audit events some of them cause (a refused bundle:
 * policy_refused). Nothing is answered to the agent for an ack, so
 * nothing waits on the commit; a commit that fails is retried on a timer.
 * A replica's note that it holds a host's agent (at its hello) or no longer
 * does (at its close) is such a write too: a fleet connecting at once is
 * one transaction per loop turn, not one per agent.
 */
#include "daemon/rpc/link_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A store that keeps failing must not grow the queue for ever. */
#define BATCH_MAX 65536
#define RETRY_MS 200

enum batch_kind { BATCH_ACK, BATCH_HOLD, BATCH_RELEASE, BATCH_CMD_DONE };

struct batch_ack {
	enum batch_kind kind;
	char host[STORE_NAME_MAX];
	uint64_t version;           /* BATCH_CMD_DONE: the command's id */
	char *refused;              /* ok = NULL; else why, malloc'd */
};

struct link_batch {
	struct batch_ack *a;
	size_t n, cap;
	struct event *ev;           /* runs once the turn's reads are done */
	bool armed;
};

static void drop(struct link_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->a[i].refused);
	b->n = 0;
}

static int write_one(struct link_server *ls, const struct batch_ack *a,
		     struct parley_err *err)
{
	struct store *s = ls->store;
	if (a->kind == BATCH_HOLD)
		return store_replica_hold(s, a->host, ls->replica, err);
	if (a->kind == BATCH_RELEASE)
		return store_replica_release(s, a->host, ls->replica, err);
	if (a->kind == BATCH_CMD_DONE)
		return store_replica_cmd_done(s, a->host, (int64_t)a->version,
					      err);
	if (!a->refused)
		return store_policy_ack(s, a->host, a->version, err);
	char detail[STORE_DETAIL_MAX];
	snprintf(detail, sizeof(detail), "version %llu: %s",
		 (unsigned long long)a->version, a->refused);
	struct store_audit_in ev = { .host = a->host,
				     .event = "policy_refused",
				     .detail = detail };
	int rc = store_audit_append(s, &ev, 1, NULL, err);
	if (rc == -EINVAL) { /* the agent's text is not UTF-8: say less */
		ev.detail = "(reason not valid text)";
		rc = store_audit_append(s, &ev, 1, NULL, err);
	}
	return rc;
}

static void arm(struct link_server *ls, int delay_ms)
{
	struct link_batch *b = ls->batch;
	if (b->armed)
		return;
	b->armed = true;
	if (delay_ms) {
		struct timeval tv = { 0, delay_ms * 1000 };
		event_add(b->ev, &tv);
	} else {
		event_active(b->ev, EV_TIMEOUT, 0);
	}
}

static bool plain_ack(const struct batch_ack *a)
{
	return a->kind == BATCH_ACK && !a->refused;
}

/* The plain acks of the batch in one store call (store_policy_ack_many:
 * their hosts' versions read at once, the updates pipelined on
 * PostgreSQL), not four statements each. done[i] says which were
 * written or refused on their own; if the call fails as a whole, none
 * is, and each goes through write_one. */
static void acks_at_once(struct link_server *ls, bool *done)
{
	struct link_batch *b = ls->batch;
	struct parley_err err = { 0 };
	const char **hosts = malloc(b->n * sizeof(*hosts));
	uint64_t *versions = malloc(b->n * sizeof(*versions));
	int *res = malloc(b->n * sizeof(*res));
	size_t *at = malloc(b->n * sizeof(*at));
	unsigned k = 0;
	if (hosts && versions && res && at)
		for (size_t i = 0; i < b->n; i++)
			if (plain_ack(&b->a[i])) {
				hosts[k] = b->a[i].host;
				versions[k] = b->a[i].version;
				at[k++] = i;
			}
	if (k > 1 && store_policy_ack_many(ls->store, hosts, versions, k,
					   res, &err) == 0) {
		for (unsigned j = 0; j < k; j++) {
			done[at[j]] = true;
			/* Refused alone: the single call says why (and
			 * refuses it again, writing nothing). */
			if (res[j] < 0 && store_policy_ack(ls->store,
							   hosts[j],
							   versions[j],
							   &err) < 0)
				log_warn("agent %s: ack of policy %llu: %s",
					 hosts[j],
					 (unsigned long long)versions[j],
					 perr_msg(&err));
		}
	} else if (k > 1) {
		log_warn("policy acknowledgements (%u) at once: %s; one by "
			 "one", k, perr_msg(&err));
	}
	free(hosts);
	free(versions);
	free(res);
	free(at);
}

/* One transaction for everything queued. A write that fails on its own
 * (an ack of a version the host was never given, a host deleted since)
 * leaves nothing behind and is logged; the rest commit. */
static int flush(struct link_server *ls)
{
	struct link_batch *b = ls->batch;
	struct parley_err err = { 0 };
	if (!b->n)
		return 0;
	bool *done = calloc(b->n, sizeof(*done));
	int rc = done ? store_begin(ls->store, &err)
		      : perr(&err, -ENOMEM, "out of memory");
	if (rc == 0)
		acks_at_once(ls, done);
	for (size_t i = 0; rc == 0 && i < b->n; i++) {
		struct parley_err e1 = { 0 };
		if (done[i])
			continue;
		if (write_one(ls, &b->a[i], &e1) < 0)
			log_warn("agent %s: %s of policy %llu: %s",
				 b->a[i].host,
				 b->a[i].kind == BATCH_HOLD ? "holding"
				 : b->a[i].kind == BATCH_RELEASE ? "release"
				 : b->a[i].kind == BATCH_CMD_DONE
					 ? "command done"
				 : b->a[i].refused ? "refusal" : "ack",
				 (unsigned long long)b->a[i].version,
				 perr_msg(&e1));
	}
	free(done);
	if (rc == 0)
		rc = store_commit(ls->store, &err);
	if (rc < 0) {
		log_error("policy acknowledgements (%zu): %s; retrying", b->n,
			  perr_msg(&err));
		return rc;
	}
	drop(b);
	return 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct link_server *ls = arg;
	ls->batch->armed = false;
	if (flush(ls) < 0)
		arm(ls, RETRY_MS);
}

/* The next free slot, or NULL (logged: `what` for `host` dropped). */
static struct batch_ack *slot(struct link_batch *b, const char *host,
			      const char *what)
{
	if (b->n == BATCH_MAX) {
		log_error("agent %s: %s dropped: %d writes queued", host, what,
			  BATCH_MAX);
		return NULL;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		void *p = realloc(b->a, cap * sizeof(*b->a));
		if (!p) {
			log_error("agent %s: %s dropped: out of memory", host,
				  what);
			return NULL;
		}
		b->a = p;
		b->cap = cap;
	}
	return &b->a[b->n];
}

void link_batch_hold(struct link_server *ls, const char *host, bool hold)
{
	struct parley_err err = { 0 };
	struct link_batch *b = ls->batch;
	if (!b) { /* stopping: the batch is gone, write it now */
		int rc = hold ? store_replica_hold(ls->store, host,
						   ls->replica, &err)
			      : store_replica_release(ls->store, host,
						      ls->replica, &err);
		if (rc < 0)
			log_warn("agent %s: %s", host, perr_msg(&err));
		return;
	}
	struct batch_ack *a = slot(b, host, hold ? "holding" : "release");
	if (!a)
		return;
	*a = (struct batch_ack){ .kind = hold ? BATCH_HOLD : BATCH_RELEASE };
	snprintf(a->host, sizeof(a->host), "%s", host);
	b->n++;
	arm(ls, 0);
}

void link_batch_cmd_done(struct link_server *ls, const char *host,
			 uint64_t id)
{
	struct link_batch *b = ls->batch;
	struct batch_ack *a = b ? slot(b, host, "command done") : NULL;
	if (!a)
		return; /* not deleted: sent again at its next hello, skipped */
	*a = (struct batch_ack){ .kind = BATCH_CMD_DONE, .version = id };
	snprintf(a->host, sizeof(a->host), "%s", host);
	b->n++;
	arm(ls, 0);
}

void link_batch_policy_ack(struct link_server *ls, const char *host,
			   const Parley__V1__PolicyAck *pa)
{
	struct link_batch *b = ls->batch;
	char what[48];
	snprintf(what, sizeof(what), "ack of policy %llu",
		 (unsigned long long)pa->version);
	struct batch_ack *a = slot(b, host, what);
	if (!a)
		return;
	a->kind = BATCH_ACK;
	snprintf(a->host, sizeof(a->host), "%s", host);
	a->version = pa->version;
	a->refused = NULL;
	if (!pa->ok && !(a->refused = strdup(pa->error ? pa->error : ""))) {
		log_error("agent %s: refusal of policy %llu not recorded: out "
			  "of memory", host, (unsigned long long)pa->version);
		return;
	}
	b->n++;
	arm(ls, 0);
}

bool link_batch_idle(const struct link_server *ls)
{
	return !ls->batch || ls->batch->n == 0;
}

int link_batch_start(struct link_server *ls)
{
	struct link_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ev = event_new(ls->base, -1, 0, on_flush, ls);
	if (!b->ev) {
		free(b);
		return -ENOMEM;
	}
	ls->batch = b;
	return 0;
}

void link_batch_stop(struct link_server *ls)
{
	struct link_batch *b = ls->batch;
	if (!b)
		return;
	flush(ls);
	drop(b);
	event_free(b->ev);
	free(b->a);
	free(b);
	ls->batch = NULL;
}
