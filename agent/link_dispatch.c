/*
 * What a frame from the daemon does to the agent link's state: the
 * welcome, policy bundles, acknowledgements, commands, refusals. Split
 * from link.c (the connection) so that it can be driven without a network
 * (fuzz/fuzz_agent_dispatch.c): the frame is already decoded and
 * wire_check'ed (common/frame.h); this is the door behind the shape check.
 * Each refusal leaves the state as it was: the policy, the outbox, the
 * welcome's values, readiness.
 */
#include "agent/link.h"
#include "agent/link_int.h"
#include "agent/servers.h"
#include "common/jsonv.h"
#include "common/log.h"
#include "common/wire.h"

#include "common/fileio.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- policy ------------------------------------------------------------ */

void link_apply_policy(struct agent_link *l)
{
	if (!l->cm)
		return;
	/* The channel manager gets its own copy of everything a policy file
	 * would give it: grants, service rules, segment sets. */
	struct grant_set g;
	if (grant_set_copy(&g, &l->policy.grants) < 0) {
		log_error("policy version %llu: out of memory; the previous "
			  "one stays enforced",
			  (unsigned long long)l->policy.version);
		return;
	}
	chanmgr_set_grants(l->cm, &g);
}

void link_become_ready(struct agent_link *l)
{
	if (l->ready)
		return;
	l->ready = true;
	if (l->on_ready)
		l->on_ready(l->ready_ctx);
}

static void send_policy_ack(struct agent_link *l, uint64_t rid, uint64_t v,
			    const char *error)
{
	Parley__V1__Envelope e;
	Parley__V1__PolicyAck a;
	wire_init_envelope(&e, rid);
	parley__v1__policy_ack__init(&a);
	a.version = v;
	a.ok = error == NULL;
	a.error = (char *)(error ? error : "");
	e.body_case = PARLEY__V1__ENVELOPE__BODY_POLICY_ACK;
	e.policy_ack = &a;
	link_send_env(l, &e);
}

static int on_bundle(struct agent_link *l, const Parley__V1__Envelope *e,
		     struct parley_err *err)
{
	struct agent_policy np;
	int rc = bundle_accept(l->policy_pub, l->host, l->policy.version,
			       e->policy, &np, err);
	if (rc < 0) {
		l->n_refused_bundles++;
		log_warn("policy bundle refused: %s", perr_msg(err));
		struct audit_event ev = { .event = "policy_refused",
					  .reason = rc == -ESTALE ? "STALE"
								  : "INVALID",
					  .detail = perr_msg(err) };
		agent_link_audit(&ev, l);
		send_policy_ack(l, e->request_id, 0, perr_msg(err));
		return rc;
	}
	char p[4200];
	link_state_path(l, "bundle.pb", p, sizeof(p));
	/* Persist before enforcing: what we enforce survives a restart. */
	struct parley_err serr = { 0 };
	if (bundle_save(p, e->policy, &serr) < 0)
		log_error("%s", perr_msg(&serr));
	agent_policy_free(&l->policy);
	l->policy = np;
	l->n_bundles++;
	link_apply_policy(l);
	log_info("enforcing policy version %llu (%u grants, %u service "
		 "rules, %u segment sets)", (unsigned long long)np.version,
		 np.grants.n, np.grants.nsvc, np.grants.seg.n);
	if (np.body && np.body->n_disk_keys)
		log_info("policy version %llu carries %zu disk keys",
			 (unsigned long long)np.version,
			 np.body->n_disk_keys);
	if (l->on_policy)
		l->on_policy(l->ready_ctx);
	send_policy_ack(l, e->request_id, np.version, NULL);
	if (np.version >= l->want_version)
		link_become_ready(l);
	return 0;
}

/* ---- the link's own messages --------------------------------------------- */

static int on_welcome(struct agent_link *l, const Parley__V1__Envelope *e,
		      struct parley_err *err)
{
	const Parley__V1__Welcome *w = e->welcome;
	if (l->up)
		return perr(err, -EPROTO, "a second welcome on this connection");
	/* The daemon names the host our certificate says; another name is a
	 * daemon that took us for someone else. */
	if (strcmp(w->host, l->host)) {
		struct jv_quoted q;
		return perr(err, -EPERM, "welcome for host %s, not us",
			    jv_quote(&q, w->host, strlen(w->host)));
	}
	/* Before anything changes: a seq the daemon cannot hold refuses the
	 * whole welcome (acking up to it would drop every record). */
	int rc = outbox_raise_seq(&l->ob, w->acked_seq, err);
	if (rc < 0)
		return rc;
	l->up = true;
	l->backoff_ms = BACKOFF_MIN_MS;
	l->last_error[0] = 0;
	l->heartbeat_ms = w->heartbeat_ms;
	outbox_ack(&l->ob, w->acked_seq);
	/* Everything the daemon does not hold yet, again, in order. */
	outbox_rewind(&l->ob);
	link_send_synced(l);
	if (l->hb_ev) {
		struct timeval tv = { w->heartbeat_ms / 1000,
				      (w->heartbeat_ms % 1000) * 1000 };
		event_add(l->hb_ev, &tv);
	}
	log_info("daemon link up to %s:%d (daemon holds seq %llu, policy "
		 "%llu)", l->server, l->port, (unsigned long long)w->acked_seq,
		 (unsigned long long)w->policy_version);
	l->want_version = w->policy_version;
	if (w->policy_version <= l->policy.version)
		link_become_ready(l); /* nothing newer is coming */
	if (l->on_welcome)
		l->on_welcome(l->ready_ctx);
	return 0;
}

static int on_ack(struct agent_link *l, const Parley__V1__Ack *a,
		  struct parley_err *err)
{
	if (!outbox_handed_out(&l->ob, a->seq))
		return perr(err, -ERANGE, "ack for seq %llu, which this agent "
			    "has not sent yet", (unsigned long long)a->seq);
	outbox_ack(&l->ob, a->seq);
	return 0;
}

/* The daemon's words, printable and bounded: they go into our log. */
static void printable(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	for (; s && *s && n + 1 < cap; s++)
		out[n++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f
				   ? *s : '?';
	out[n] = 0;
}

/* A refusal (the daemon closes the connection after it): say which and
 * why, and come back slowly — an operator has something to fix first
 * (HOST_MISMATCH, an unknown or deleted host, a bad record). */
static void on_error(struct agent_link *l, const Parley__V1__Error *er)
{
	char code[64], msg[512];
	printable(code, sizeof(code), er->code);
	printable(msg, sizeof(msg), er->message);
	l->n_refusals++;
	snprintf(l->last_error, sizeof(l->last_error), "%s", code);
	log_error("the daemon refused this agent: code %s: %s", code, msg);
	l->backoff_ms = BACKOFF_MAX_MS;
}

/* ---- commands ------------------------------------------------------------ */

#define CMD_FILE "commands-done"

int agent_link_cmd_load(struct agent_link *l, struct parley_err *err)
{
	char path[4200];
	uint8_t *buf = NULL;
	size_t len = 0;
	l->cmd_done = 0;
	link_state_path(l, CMD_FILE, path, sizeof(path));
	int rc = file_read_all(path, 32, &buf, &len, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	/* "N\n", N a decimal command id; anything else is not ours. */
	uint64_t v = 0;
	size_t i = 0;
	for (; i < len && buf[i] >= '0' && buf[i] <= '9' && v <= INT64_MAX / 10;
	     i++)
		v = v * 10 + (uint64_t)(buf[i] - '0');
	bool ok = i > 0 && i < len && buf[i] == '\n' && i + 1 == len &&
		  v <= INT64_MAX;
	free(buf);
	if (!ok)
		return perr(err, -EBADMSG, "%s: not a command id", path);
	l->cmd_done = v;
	return 0;
}

/* Written before the confirmation goes out: a command confirmed is one a
 * restarted agent skips too. Without a state directory (the fuzz
 * target), memory only. */
static int cmd_save(struct agent_link *l, struct parley_err *err)
{
	char path[4200], text[32];
	if (!l->state_dir[0])
		return 0;
	link_state_path(l, CMD_FILE, path, sizeof(path));
	int n = snprintf(text, sizeof(text), "%llu\n",
			 (unsigned long long)l->cmd_done);
	return file_replace(path, text, (size_t)n, err);
}

static void send_command_done(struct agent_link *l, uint64_t id)
{
	Parley__V1__Envelope e;
	Parley__V1__Ack a;
	wire_init_envelope(&e, 0);
	parley__v1__ack__init(&a);
	a.seq = id;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE;
	e.command_done = &a;
	link_send_env(l, &e);
}

/* A stored command (request_id > 0) is carried out once: the daemon
 * sends it again after every reconnect until it is confirmed, and the
 * daemon sends a host's commands in id order, so one at or below
 * cmd_done was carried out already. request_id 0: a command derived
 * from the store's state on each hello (create what is defined, measure
 * what has no baseline), which the agent's handler takes as often as it
 * comes. */
static void on_command(struct agent_link *l, const Parley__V1__Envelope *e)
{
	uint64_t id = e->request_id;
	if (id && id <= l->cmd_done) {
		l->n_cmd_skipped++;
		log_info("command %llu for %s: carried out already; confirmed "
			 "again", (unsigned long long)id, e->command->partition);
		send_command_done(l, id);
		return;
	}
	l->cmd_id = id;
	if (l->on_command)
		l->on_command(l->ready_ctx, e->command);
	l->cmd_id = 0;
	if (!id)
		return;
	log_info("command %llu (action %d) for %s: carried out",
		 (unsigned long long)id, (int)e->command->action,
		 e->command->partition);
	l->cmd_done = id;
	struct parley_err err = { 0 };
	/* Not kept: confirmed all the same (the daemon must not resend it to
	 * this process); only a restart before the next one could repeat. */
	if (cmd_save(l, &err) < 0)
		log_warn("keeping the last command id: %s", perr_msg(&err));
	send_command_done(l, id);
}

int agent_link_dispatch(struct agent_link *l, const Parley__V1__Envelope *e,
			struct parley_err *err)
{
	Parley__V1__Envelope__BodyCase c = e->body_case;
	/* The daemon answers a hello with a welcome or a refusal; nothing it
	 * says before the welcome is for this agent yet. */
	if (!l->up && c != PARLEY__V1__ENVELOPE__BODY_WELCOME &&
	    c != PARLEY__V1__ENVELOPE__BODY_ERROR &&
	    c != PARLEY__V1__ENVELOPE__BODY_HEARTBEAT)
		return perr(err, -EPROTO, "daemon sent a %s before its welcome",
			    wire_body_name(c));
	switch (c) {
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		return on_welcome(l, e, err);
	case PARLEY__V1__ENVELOPE__BODY_POLICY:
		return on_bundle(l, e, err);
	case PARLEY__V1__ENVELOPE__BODY_ACK:
		return on_ack(l, e->ack, err);
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT:
		return 0;
	case PARLEY__V1__ENVELOPE__BODY_COMMAND:
		on_command(l, e);
		return 0;
	case PARLEY__V1__ENVELOPE__BODY_ERROR:
		on_error(l, e->error);
		return 0;
	/* Updates only from a daemon that welcomed us (checked above; the
	 * answers go back on this connection). */
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER:
		if (l->on_update_offer)
			l->on_update_offer(l->ready_ctx, e->update_offer);
		return 0;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK:
		if (l->on_update_chunk)
			l->on_update_chunk(l->ready_ctx, e->update_chunk);
		return 0;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK:
		if (l->on_update_rollback)
			l->on_update_rollback(l->ready_ctx,
					      e->update_rollback);
		return 0;
	/* The replicas to fail over between (issue 15): kept for the next
	 * loss and the next start; a file that cannot be written is only
	 * logged (the list in memory holds). */
	case PARLEY__V1__ENVELOPE__BODY_SERVERS: {
		struct parley_err e2 = { 0 };
		if (agent_servers_take(l, e->servers->servers,
				       e->servers->n_servers, &e2) < 0)
			log_warn("keeping the daemon's servers: %s",
				 perr_msg(&e2));
		return 0;
	}
	default:
		return perr(err, -EPROTO, "daemon sent a %s, which only an "
			    "agent sends", wire_body_name(c));
	}
}
