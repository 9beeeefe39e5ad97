/*
 * The ownership rule, in one place: an agent speaks only about partitions
 * of its own host. Every message an agent may send has a rule here that
 * names the partitions it mentions; link.c's dispatch passes every message
 * through link_door before its handler. A message type without a rule --
 * one the daemon sends, or one added to the protocol later without a rule
 * -- is refused, so a new message cannot slip past the check.
 *
 * A partition the store does not know is not another host's: whether it
 * may be named is the handler's question (measurements and status need a
 * known partition, the store refuses the rest; audit events may concern a
 * partition the agent runs from a local spec).
 */
#include "daemon/rpc/link_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Messages that name no partition. */
static size_t none(const Parley__V1__Envelope *e)
{
	(void)e;
	return 0;
}

static size_t n_measurements(const Parley__V1__Envelope *e)
{
	return e->measurements->n_measurements;
}

static const char *measurement_part(const Parley__V1__Envelope *e, size_t i)
{
	return e->measurements->measurements[i]->partition;
}

static size_t n_audit(const Parley__V1__Envelope *e)
{
	return e->audit->n_events;
}

static const char *audit_part(const Parley__V1__Envelope *e, size_t i)
{
	return e->audit->events[i]->partition;
}

static size_t one(const Parley__V1__Envelope *e)
{
	(void)e;
	return 1;
}

static const char *status_part(const Parley__V1__Envelope *e, size_t i)
{
	(void)i;
	return e->status->partition;
}

struct door_rule {
	Parley__V1__Envelope__BodyCase body;
	const char *what;                 /* for the refusal's message */
	size_t (*count)(const Parley__V1__Envelope *e);
	const char *(*partition)(const Parley__V1__Envelope *e, size_t i);
};

/* Every agent -> daemon message, and only those. */
static const struct door_rule rules[] = {
	{ PARLEY__V1__ENVELOPE__BODY_HELLO, "hello", none, NULL },
	{ PARLEY__V1__ENVELOPE__BODY_HEARTBEAT, "heartbeat", none, NULL },
	{ PARLEY__V1__ENVELOPE__BODY_POLICY_ACK, "policy ack", none, NULL },
	{ PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS, "measurement",
	  n_measurements, measurement_part },
	{ PARLEY__V1__ENVELOPE__BODY_AUDIT, "audit event", n_audit,
	  audit_part },
	{ PARLEY__V1__ENVELOPE__BODY_STATUS, "partition status", one,
	  status_part },
	/* Names no partition: it concerns the sender's own host's update,
	 * which is all the daemon applies it to (link_update.c). */
	{ PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS, "update progress", none,
	  NULL },
	/* Names no partition: a command id, deleted only if it is the
	 * sender's own host's (store_replica_cmd_done). */
	{ PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE, "command done", none,
	  NULL },
};

static const struct door_rule *rule_for(Parley__V1__Envelope__BodyCase b)
{
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rules[i].body == b)
			return &rules[i];
	return NULL;
}

int link_door(struct link_conn *c, const Parley__V1__Envelope *e)
{
	struct link_server *ls = c->ls;
	const struct door_rule *r = rule_for(e->body_case);
	if (!r) {
		link_refuse(c, "UNEXPECTED", wire_body_name(e->body_case),
			    NULL);
		return -EPROTO;
	}
	size_t n = r->count(e);
	const char *last_ok = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *p = r->partition(e, i);
		/* Runs of records about one partition: ask once per run. */
		if (!p || !p[0] || (last_ok && !strcmp(p, last_ok)))
			continue;
		char on[STORE_NAME_MAX], why[256];
		struct parley_err err = { 0 };
		int rc = store_partition_host(ls->store, p, on, &err);
		if (rc == -ENOENT || (rc == 0 && !strcmp(on, c->host))) {
			last_ok = p;
			continue;
		}
		if (rc == -EINVAL) {
			/* Not even a name: the handler's store call says so
			 * with its index; nothing of another host here. */
			continue;
		}
		if (rc < 0) {
			link_refuse(c, "INTERNAL", perr_msg(&err), NULL);
			return rc;
		}
		ls->n_foreign++;
		snprintf(why, sizeof(why), "%s %zu names partition \"%s\" of "
			 "host \"%s\"", r->what, i, p, on);
		link_refuse(c, "FOREIGN_PARTITION", why, p);
		return -EPERM;
	}
	return 0;
}
