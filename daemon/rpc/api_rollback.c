/*
 * POST /v1/hosts/{host}/rollback: hand the host's agent back to the
 * version it keeps as STATE/update/previous (issue 12). The body is
 * optional: {"expect_version": "X.Y.Z"} -- the version previous must hold
 * (the agent refuses otherwise); without it the agent rolls back to
 * whatever it keeps. The daemon does not guess that version: what the
 * agent keeps may have moved without it (a rollback by SIGUSR1 on the
 * host).
 *
 * Refused before anything is stored: an unknown host (404); a host whose
 * agent never said hello with a version, or said it with one older than
 * this daemon (such an agent does not know UpdateRollback and would drop
 * the link on it), or one with an update under way (409). Otherwise the
 * host's rollback row becomes requested, `update_rollback_requested` is
 * audited with the change, and after the commit the request goes to the
 * agent (here, or through the replica holding the host; at its next hello
 * if nobody does). 202: the answer comes from the agent
 * (daemon/rpc/link_rollback.c), shown by GET /v1/hosts.
 */
#include "daemon/rpc/api_int.h"
#include "common/version.h"
#include "db/store_updates.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

/* The optional body's expect_version: "" none; NULL after answering
 * 400. */
static bool expect_of(struct api_req *q, char out[STORE_AGENT_VERSION_MAX])
{
	static const char *const known[] = { "expect_version", NULL };
	out[0] = 0;
	struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
	if (!evbuffer_get_length(in))
		return true;
	json_t *b = api_body(q, known);
	if (!b)
		return false;
	json_t *v = json_object_get(b, "expect_version");
	const char *s = json_string_value(v);
	unsigned n[3];
	bool ok = true;
	if (v && !s) {
		api_error(q, 400, "BAD_REQUEST", "expect_version: expected a "
			  "string");
		ok = false;
	} else if (s && (strlen(s) >= STORE_AGENT_VERSION_MAX ||
			 parley_version_parse(s, true, n) < 0)) {
		api_error(q, 400, "BAD_REQUEST", "expect_version: not X.Y.Z "
			  "(at most %d bytes, a space and anything after the "
			  "number allowed)", STORE_AGENT_VERSION_MAX - 1);
		ok = false;
	} else if (s) {
		/* A suffix after the space is text an agent prints: keep it
		 * printable, as the wire will want it. */
		for (const char *p = s; ok && *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				api_error(q, 400, "BAD_REQUEST", "expect_version:"
					  " a control byte");
				ok = false;
			}
		if (ok)
			snprintf(out, STORE_AGENT_VERSION_MAX, "%s", s);
	}
	json_decref(b);
	return ok;
}

/* The agent knows UpdateRollback: its version is this daemon's or newer
 * (as link_replica.c decides who hears of ServerList). */
static bool knows_rollback(const char *agent_version)
{
	unsigned mine[3], theirs[3];
	return parley_version_parse(parley_version(), true, mine) == 0 &&
	       parley_version_parse(agent_version, true, theirs) == 0 &&
	       parley_version_cmp(theirs, mine) >= 0;
}

void api_hosts_rollback(struct api_req *q)
{
	const char *host = q->arg;
	if (!api_name_ok(q, "host name", host))
		return;
	char expect[STORE_AGENT_VERSION_MAX];
	if (!expect_of(q, expect))
		return;
	struct parley_err err = { 0 };
	struct store_host sh;
	int rc = store_host_get(q->a->store, host, &sh, &err);
	if (rc == -ENOENT) {
		api_error(q, 404, "UNKNOWN_HOST", "no such host \"%s\"", host);
		return;
	}
	char running[STORE_AGENT_VERSION_MAX];
	if (rc == 0)
		rc = store_host_agent_get(q->a->store, host, running, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	unsigned v[3];
	if (parley_version_parse(running, true, v) < 0) {
		api_error(q, 409, "AGENT_VERSION_UNKNOWN", "host \"%s\": its "
			  "agent has not said which version it runs (\"%s\"); "
			  "it must connect first", host, running);
		return;
	}
	if (!knows_rollback(running)) {
		api_error(q, 409, "AGENT_TOO_OLD", "host \"%s\": its agent "
			  "runs %s, older than this daemon (%s): it does not "
			  "know a rollback through the daemon (roll it back on "
			  "the host: SIGUSR1 with --update-stage "
			  "STATE/update/previous)", host, running,
			  parley_version());
		return;
	}
	struct store_update u;
	rc = store_update_get(q->a->store, host, &u, &err);
	if (rc < 0 && rc != -ENOENT) {
		api_fail(q, rc, &err);
		return;
	}
	if (rc == 0 && (!strcmp(u.state, "pending") ||
			!strcmp(u.state, "receiving") ||
			!strcmp(u.state, "staged"))) {
		api_error(q, 409, "UPDATE_IN_PROGRESS", "host \"%s\": the "
			  "update to %s is %s; roll back once it is over",
			  host, u.version, u.state);
		return;
	}
	uint64_t request = 0;
	rc = store_rollback_request(q->a->store, host, expect, running,
				    &request, &err);
	char detail[256];
	snprintf(detail, sizeof(detail), "request %llu: from %s to its "
		 "previous version%s%s", (unsigned long long)request, running,
		 expect[0] ? ", expected to be " : "", expect);
	struct store_audit_in ev = { .host = host,
				     .event = "update_rollback_requested",
				     .detail = detail };
	if (rc == 0)
		rc = store_audit_append(q->a->store, &ev, 1, NULL, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_subject(q, host, NULL, NULL);
	api_after_rollback(q, host);
	api_reply(q, 202, json_pack("{s:s,s:I,s:s,s:s,s:s}", "host", host,
				    "request", (json_int_t)request, "state",
				    "requested", "agent_version", running,
				    "expect_version", expect));
}
