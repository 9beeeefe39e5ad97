/*
 * Updates over the agent link (issue 12), daemon side. The package was
 * checked and stored by the API (api_update.c); the host's update row
 * says where it stands. Here:
 *
 *   hello     the agent's version is stored; a row that is pending or
 *             receiving is offered (UpdateOffer: version, size, sha256);
 *             a row that is staged or receiving is committed when the
 *             version the agent says hello with is the package's or newer
 *   progress  (UpdateProgress, about the sender's own host only: the
 *             row is looked up by the connection's host)
 *             receiving R: the agent holds bytes [0, R); chunks go out
 *             from R, LINK_UPD_WINDOW bytes ahead of it at most, each a
 *             frame of at most WIRE_UPDATE_CHUNK_MAX bytes
 *             staged / committed / failed / refused / busy: the row
 *             moves, audited (update_staged, update_committed,
 *             update_failed, update_refused)
 *
 * Resuming: an agent that reconnects mid-transfer is offered the same
 * package again and answers with what it holds (the agent keeps the
 * partial stream while it runs: the same sha256 and size continue from
 * its received count); an agent that restarted discarded it and answers
 * 0, so the transfer restarts cleanly. Every answer names how far the
 * agent is, so the daemon never needs to guess.
 */
#include "daemon/rpc/link_int.h"
#include "common/log.h"
#include "common/updpkg.h"
#include "db/store_updates.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINK_UPD_WINDOW (4u * WIRE_UPDATE_CHUNK_MAX)
/* The row's received count is written at most this often (and at every
 * change of state): a write is a synced commit. */
#define LINK_UPD_STORE_EVERY (4u << 20)

void link_audit_host(struct link_conn *c, const char *event,
		     const char *reason, const char *detail)
{
	struct store_audit_in ev = { .host = c->host, .event = event,
				     .reason = reason, .detail = detail };
	struct parley_err err = { 0 };
	if (store_audit_append(c->ls->store, &ev, 1, NULL, &err) < 0)
		log_error("agent %s: auditing %s: %s", c->host, event,
			  perr_msg(&err));
}

static struct store_blob blob(const uint8_t *sha)
{
	return (struct store_blob){ sha, 32 };
}

static void set_row(struct link_conn *c, const uint8_t *sha,
		    const char *state, uint64_t received, const char *reason)
{
	struct parley_err err = { 0 };
	if (store_update_set(c->ls->store, c->host, blob(sha), state, received,
			     reason, &err) < 0)
		log_error("agent %s: update row to %s: %s", c->host, state,
			  perr_msg(&err));
	c->upd_stored = received;
}

static void send_offer(struct link_conn *c, const struct store_update *u)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateOffer o;
	wire_init_envelope(&e, 0);
	parley__v1__update_offer__init(&o);
	o.version = (char *)u->version;
	o.size = u->size;
	wire_bytes(&o.sha256, u->sha256, 32);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER;
	e.update_offer = &o;
	c->upd_on = true;
	memcpy(c->upd_sha, u->sha256, 32);
	c->upd_size = u->size;
	c->upd_acked = c->upd_sent = 0;
	c->upd_stored = u->received;
	link_send_env(c, &e);
	log_info("agent %s: offered update %s (%llu bytes)", c->host,
		 u->version, (unsigned long long)u->size);
}

/* Chunks from upd_sent while the window allows. */
static void send_chunks(struct link_conn *c)
{
	static uint8_t buf[WIRE_UPDATE_CHUNK_MAX];
	while (c->upd_on && !c->closing && c->upd_sent < c->upd_size &&
	       c->upd_sent - c->upd_acked < LINK_UPD_WINDOW) {
		size_t want = c->upd_size - c->upd_sent, got = 0;
		if (want > sizeof(buf))
			want = sizeof(buf);
		struct parley_err err = { 0 };
		if (store_update_read(c->ls->store, blob(c->upd_sha),
				      c->upd_sent, buf, want, &got, &err) < 0 ||
		    got != want) {
			log_error("agent %s: reading the package at %llu: %s",
				  c->host, (unsigned long long)c->upd_sent,
				  err.msg[0] ? perr_msg(&err) : "short read");
			set_row(c, c->upd_sha, "failed", c->upd_acked,
				"the daemon could not read the package");
			c->upd_on = false;
			return;
		}
		Parley__V1__Envelope e;
		Parley__V1__UpdateChunk ch;
		wire_init_envelope(&e, 0);
		parley__v1__update_chunk__init(&ch);
		wire_bytes(&ch.sha256, c->upd_sha, 32);
		ch.offset = c->upd_sent;
		wire_bytes(&ch.data, buf, got);
		e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK;
		e.update_chunk = &ch;
		link_send_env(c, &e);
		c->upd_sent += got;
	}
}

/* The version the agent runs is the package's or newer. */
static bool runs(const char *agent_version, const char *pkg_version)
{
	struct updpkg_version a, p;
	return updpkg_version_parse(agent_version, true, &a) == 0 &&
	       updpkg_version_parse(pkg_version, false, &p) == 0 &&
	       updpkg_version_cmp(&a, &p) >= 0;
}

void link_update_hello(struct link_conn *c, const Parley__V1__Hello *h)
{
	struct parley_err err = { 0 };
	snprintf(c->agent_version, sizeof(c->agent_version), "%s",
		 h->agent_version ? h->agent_version : "");
	if (store_host_agent_set(c->ls->store, c->host, c->agent_version,
				 &err) < 0)
		log_error("agent %s: storing its version: %s", c->host,
			  perr_msg(&err));
	struct store_update u;
	if (store_update_get(c->ls->store, c->host, &u, NULL) < 0)
		return;
	bool open = !strcmp(u.state, "pending") ||
		    !strcmp(u.state, "receiving") ||
		    !strcmp(u.state, "staged");
	if (open && runs(c->agent_version, u.version)) {
		char d[160];
		snprintf(d, sizeof(d), "host came back running %s",
			 c->agent_version);
		set_row(c, u.sha256, "committed", u.size, "");
		link_audit_host(c, "update_committed", NULL, d);
		return;
	}
	if (!strcmp(u.state, "pending") || !strcmp(u.state, "receiving"))
		send_offer(c, &u);
}

void link_update_offer(struct link_server *ls, const char *host)
{
	struct link_conn *c = link_find_host(ls, host);
	struct store_update u;
	if (!c || c->closing || store_update_get(ls->store, host, &u, NULL) < 0)
		return;
	if (!strcmp(u.state, "pending"))
		send_offer(c, &u);
}

static const char *terminal_event(const char *state)
{
	if (!strcmp(state, "committed"))
		return "update_committed";
	if (!strcmp(state, "refused"))
		return "update_refused";
	if (!strcmp(state, "staged"))
		return "update_staged";
	return "update_failed"; /* failed, busy */
}

void link_on_update_progress(struct link_conn *c, const Parley__V1__Envelope *e)
{
	const Parley__V1__UpdateProgress *p = e->update_progress;
	/* Without a digest it may be about a rollback (link_rollback.c). */
	if (link_rollback_progress(c, p))
		return;
	struct store_update u;
	if (store_update_get(c->ls->store, c->host, &u, NULL) < 0) {
		log_info("agent %s: update progress %s with no update asked "
			 "for (a partition's, or an old one): ignored",
			 c->host, p->state);
		return;
	}
	bool ours = p->sha256.len == 32 &&
		    !memcmp(p->sha256.data, u.sha256, 32);
	bool open = !strcmp(u.state, "pending") ||
		    !strcmp(u.state, "receiving") ||
		    !strcmp(u.state, "staged");
	/* The new agent after a hand-over knows no offer: its "committed"
	 * without a digest counts for a row that got all its bytes. */
	bool handed = !p->sha256.len && !strcmp(p->state, "committed") &&
		      (!strcmp(u.state, "staged") ||
		       (!strcmp(u.state, "receiving") &&
			u.received == u.size));
	if (!open || (!ours && !handed)) {
		log_info("agent %s: update progress %s not about its open "
			 "update: ignored", c->host, p->state);
		return;
	}
	if (!strcmp(p->state, "receiving")) {
		if (p->received > u.size) {
			link_refuse(c, "BAD_UPDATE_PROGRESS", "received beyond "
				    "the package's size", NULL);
			return;
		}
		if (!c->upd_on || memcmp(c->upd_sha, u.sha256, 32)) {
			/* Offered on an earlier connection: go on here. */
			c->upd_on = true;
			memcpy(c->upd_sha, u.sha256, 32);
			c->upd_size = u.size;
			c->upd_sent = p->received;
			c->upd_stored = u.received;
		}
		/* Behind what we sent (it started over) or ahead of it (it
		 * held more from before): go on from where it is. */
		if (p->received < c->upd_acked || p->received > c->upd_sent)
			c->upd_sent = p->received;
		c->upd_acked = p->received;
		if (!strcmp(u.state, "pending") ||
		    p->received >= c->upd_stored + LINK_UPD_STORE_EVERY ||
		    p->received < c->upd_stored || p->received == u.size)
			set_row(c, u.sha256, "receiving", p->received, "");
		send_chunks(c);
		return;
	}
	const char *state = !strcmp(p->state, "busy") ? "failed" : p->state;
	char reason[STORE_UPD_REASON_MAX], d[400];
	snprintf(reason, sizeof(reason), "%s%s", !strcmp(p->state, "busy")
		 ? "busy: " : "", p->reason);
	uint64_t rx = p->received <= u.size ? p->received : u.size;
	if (!strcmp(state, "staged") || !strcmp(state, "committed"))
		rx = u.size;
	set_row(c, u.sha256, state, rx, reason);
	c->upd_on = false;
	snprintf(d, sizeof(d), "%s%s%s%s%s", u.version,
		 !strcmp(state, "committed") ? ": running " : "",
		 !strcmp(state, "committed") ? p->version : "",
		 reason[0] ? ": " : "", reason);
	link_audit_host(c, terminal_event(p->state),
			!strcmp(p->state, "busy") ? "BUSY" : NULL, d);
	log_info("agent %s: update %s %s %s", c->host, u.version, state,
		 reason);
}
