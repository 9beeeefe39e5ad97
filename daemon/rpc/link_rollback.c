/*
 * An operator's rollback of a host's agent over the agent link (issue 12),
 * daemon side. The API (api_rollback.c) recorded the request in the
 * host's rollback row (db/store_rollbacks.c) with the agent version it
 * was asked of; here:
 *
 *   send      UpdateRollback{expect_version, request} to the host's agent,
 *             when asked (here, or through the replica holding the host:
 *             STORE_REPLICA_CMD_ROLLBACK) and at each hello of an agent
 *             still running the version it was asked of -- a request
 *             lost with its connection is sent again; the agent answers a
 *             request it already handled with the same outcome, never by
 *             handing over twice
 *   hello     an agent that says hello with another version than it was
 *             asked of took over: committed, running that version
 *   progress  an UpdateProgress with no sha256 that is not the new agent
 *             of an update (link_update.c keeps those) is about a
 *             rollback: committed (the agent that took over, its
 *             version), refused, failed, busy (as failed) move the
 *             sender's own host's row -- only while it waits for an
 *             answer. One from a host that was never asked for a
 *             rollback is refused (BAD_UPDATE_PROGRESS); a late repeat
 *             for a row already answered is only logged.
 *
 * Every step is audited: update_rollback_sent, update_rollback_committed,
 * update_rollback_refused, update_rollback_failed (the API audits
 * update_rollback_requested).
 */
#include "daemon/rpc/link_int.h"
#include "common/log.h"
#include "db/store_updates.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void send_rollback(struct link_conn *c, const struct store_rollback *r)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateRollback m;
	wire_init_envelope(&e, 0);
	parley__v1__update_rollback__init(&m);
	m.expect_version = (char *)r->expect_version;
	m.request = r->request;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK;
	e.update_rollback = &m;
	/* What the store holds was checked on the way in; the wire's own
	 * check again, so that a row edited behind our back cannot make us
	 * send what an agent must refuse. */
	struct parley_err err = { 0 };
	if (wire_check(&e, &err) < 0) {
		log_error("agent %s: rollback %llu not sent: %s", c->host,
			  (unsigned long long)r->request, perr_msg(&err));
		return;
	}
	link_send_env(c, &e);
	char d[200];
	snprintf(d, sizeof(d), "request %llu to the agent running %s%s%s",
		 (unsigned long long)r->request, c->agent_version,
		 r->expect_version[0] ? ", previous expected to be " : "",
		 r->expect_version);
	link_audit_host(c, "update_rollback_sent", NULL, d);
	log_info("agent %s: rollback %llu sent", c->host,
		 (unsigned long long)r->request);
}

void link_rollback_send(struct link_server *ls, const char *host)
{
	struct link_conn *c = link_find_host(ls, host);
	struct store_rollback r;
	if (!c || c->closing || !c->hello ||
	    store_rollback_get(ls->store, host, &r, NULL) < 0 ||
	    strcmp(r.state, "requested"))
		return;
	send_rollback(c, &r);
}

static void answer(struct link_conn *c, const struct store_rollback *r,
		   const char *state, const char *version, const char *reason,
		   const char *event, const char *audit_reason)
{
	struct parley_err err = { 0 };
	if (store_rollback_set(c->ls->store, c->host, r->request, state,
			       version, reason, &err) < 0) {
		log_error("agent %s: rollback %llu to %s: %s", c->host,
			  (unsigned long long)r->request, state,
			  perr_msg(&err));
		return;
	}
	char d[STORE_UPD_REASON_MAX + 200];
	if (!strcmp(state, "committed"))
		snprintf(d, sizeof(d), "request %llu: running %s (was %s)",
			 (unsigned long long)r->request, version,
			 r->from_version);
	else
		snprintf(d, sizeof(d), "request %llu: %s",
			 (unsigned long long)r->request, reason);
	link_audit_host(c, event, audit_reason, d);
	log_info("agent %s: rollback %llu %s: %s", c->host,
		 (unsigned long long)r->request, state, d);
}

void link_rollback_hello(struct link_conn *c)
{
	struct store_rollback r;
	if (store_rollback_get(c->ls->store, c->host, &r, NULL) < 0 ||
	    strcmp(r.state, "requested"))
		return;
	if (strcmp(c->agent_version, r.from_version)) {
		/* The agent that took over, before it says so itself (its
		 * "committed" then finds the row answered). */
		answer(c, &r, "committed", c->agent_version, "",
		       "update_rollback_committed", NULL);
		return;
	}
	send_rollback(c, &r);
}

/* The new agent of an update says "committed" without a digest too:
 * that one is the update's (link_update.c), as it was before rollbacks. */
static bool update_handed(struct link_conn *c)
{
	struct store_update u;
	if (store_update_get(c->ls->store, c->host, &u, NULL) < 0)
		return false;
	return !strcmp(u.state, "staged") ||
	       (!strcmp(u.state, "receiving") && u.received == u.size);
}

bool link_rollback_progress(struct link_conn *c,
			    const Parley__V1__UpdateProgress *p)
{
	if (p->sha256.len)
		return false;
	bool committed = !strcmp(p->state, "committed");
	if (committed && update_handed(c))
		return false;
	struct store_rollback r;
	int rc = store_rollback_get(c->ls->store, c->host, &r, NULL);
	bool waiting = rc == 0 && !strcmp(r.state, "requested");
	if (committed && !waiting)
		return false; /* a new agent after an update: link_update.c */
	if (!waiting && rc == 0) {
		log_info("agent %s: rollback %s for request %llu, already "
			 "%s: ignored", c->host, p->state,
			 (unsigned long long)r.request, r.state);
		return true;
	}
	if (!waiting) {
		link_refuse(c, "BAD_UPDATE_PROGRESS", "a rollback's outcome, "
			    "but no rollback was asked of this host", NULL);
		return true;
	}
	if (committed) {
		answer(c, &r, "committed", p->version, "",
		       "update_rollback_committed", NULL);
	} else if (!strcmp(p->state, "refused")) {
		answer(c, &r, "refused", "", p->reason,
		       "update_rollback_refused", NULL);
	} else if (!strcmp(p->state, "failed") || !strcmp(p->state, "busy")) {
		bool busy = !strcmp(p->state, "busy");
		char why[STORE_UPD_REASON_MAX];
		snprintf(why, sizeof(why), "%s%s", busy ? "busy: " : "",
			 p->reason);
		answer(c, &r, "failed", "", why, "update_rollback_failed",
		       busy ? "BUSY" : NULL);
	} else {
		link_refuse(c, "BAD_UPDATE_PROGRESS", "a rollback is neither "
			    "received nor staged", NULL);
	}
	return true;
}
