/*
 * API routes: /healthz, /metrics, hosts (with their one-time join
 * tokens), API tokens, the policy overview.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/link.h"
#include "common/jsonv.h"
#include "db/store.h"
#include "db/store_updates.h"

#include <errno.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned agents(struct api_server *a)
{
	return a->link ? a->link->nconns : 0;
}

/* A replica that has not beaten for this long holds nothing (they beat
 * every second). */
#define API_REPLICA_FRESH_MS 5000

static bool connected(struct api_server *a, const char *host)
{
	return a->link && link_host_connected(a->link, host);
}

void api_healthz(struct api_req *q)
{
	uint64_t v = 0;
	struct parley_err err = { 0 };
	int rc = store_policy_version(q->a->store, &v, &err);
	/* The store away (PostgreSQL restarting, unreachable): this daemon
	 * still serves its agents' links and says so at once; what needs
	 * the store answers 503 meanwhile. */
	if (rc == -ECONNRESET || rc == -ECONNREFUSED) {
		api_reply(q, 200, json_pack("{s:s,s:s,s:i}", "status",
					    "degraded", "store",
					    perr_msg(&err), "agents",
					    (int)agents(q->a)));
		return;
	}
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_reply(q, 200, json_pack("{s:s,s:I,s:i}", "status", "ok",
				    "policy_version", (json_int_t)v, "agents",
				    (int)agents(q->a)));
}

void api_metrics(struct api_req *q)
{
	struct evbuffer *b = evbuffer_new();
	struct link_server *ls = q->a->link;
	struct metrics_link l = { .agents = agents(q->a) };
	if (ls) {
		l.frames = ls->n_frames;
		l.refused = ls->n_refused;
		l.unknown_host = ls->n_unknown_host;
		l.revoked = ls->n_revoked;
		l.foreign = ls->n_foreign;
		l.paused = ls->n_paused;
		l.bundles_pushed = ls->n_pushed;
		l.replica = ls->replica;
		l.relayed = ls->n_relayed;
		l.notified = ls->n_notified;
	}
	int rc = metrics_render(&q->a->metrics, q->a->store, &l, b);
	if (rc < 0) {
		evbuffer_free(b);
		api_fail(q, rc, NULL);
		return;
	}
	api_reply_text(q, 200, "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

/* The agent version the host last said hello with ("" never), its
 * update (null: none asked for) and its rollback (null: none asked for).
 * update_state says the later of the two: "VERSION STATE" for an update,
 * "rollback-STATE" for a rollback ("rollback-committed VERSION" with the
 * version it runs now). A read error leaves them out rather than fail
 * the list. */
static void host_agent_json(struct api_server *a, const char *host,
			    json_t *o)
{
	char v[STORE_AGENT_VERSION_MAX];
	struct store_update u;
	struct store_rollback rb;
	if (store_host_agent_get(a->store, host, v, NULL) == 0)
		json_object_set_new(o, "agent_version", json_string(v));
	int rc = store_update_get(a->store, host, &u, NULL);
	int rrc = store_rollback_get(a->store, host, &rb, NULL);
	if (rc == -ENOENT) {
		json_object_set_new(o, "update", json_null());
		json_object_set_new(o, "update_state", json_null());
	} else if (rc == 0) {
		char st[STORE_UPD_VERSION_MAX + STORE_UPD_STATE_MAX + 2];
		snprintf(st, sizeof(st), "%s %s", u.version, u.state);
		json_object_set_new(o, "update_state", json_string(st));
		char hx[2 * STORE_DIGEST + 1];
		for (unsigned i = 0; i < STORE_DIGEST; i++)
			snprintf(hx + 2 * i, 3, "%02x", u.sha256[i]);
		json_object_set_new(o, "update", json_pack(
			"{s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:I}", "version",
			u.version, "sha256", hx, "state", u.state, "received",
			(json_int_t)u.received, "size", (json_int_t)u.size,
			"reason", u.reason, "requested_ms",
			(json_int_t)u.requested_ms, "updated_ms",
			(json_int_t)u.updated_ms));
	}
	if (rrc == -ENOENT) {
		json_object_set_new(o, "rollback", json_null());
	} else if (rrc == 0) {
		json_object_set_new(o, "rollback", json_pack(
			"{s:I,s:s,s:s,s:s,s:s,s:I,s:I}", "request",
			(json_int_t)rb.request, "state", rb.state,
			"expect_version", rb.expect_version, "version",
			rb.version, "reason", rb.reason, "requested_ms",
			(json_int_t)rb.requested_ms, "updated_ms",
			(json_int_t)rb.updated_ms));
		if (rc == -ENOENT || (rc == 0 &&
				      rb.requested_ms >= u.requested_ms)) {
			char st[STORE_AGENT_VERSION_MAX + 32];
			snprintf(st, sizeof(st), "rollback-%s%s%s", rb.state,
				 rb.version[0] ? " " : "", rb.version);
			json_object_set_new(o, "update_state",
					    json_string(st));
		}
	}
}

/* The replica serving host's agent: this one if it is connected here,
 * else the one the store names if that replica beat lately (one killed
 * holds its hosts in the store until they say hello elsewhere); NULL for
 * none. */
static const char *holder(struct api_server *a, const char *host,
			  char buf[STORE_NAME_MAX])
{
	if (connected(a, host))
		return a->link->replica;
	int64_t seen = 0;
	if (store_replica_holder(a->store, host, buf, &seen, NULL) < 0 ||
	    (a->link && !strcmp(buf, a->link->replica)))
		return NULL;
	int64_t now = (int64_t)time(NULL) * 1000;
	return now - seen <= API_REPLICA_FRESH_MS ? buf : NULL;
}

static json_t *host_json(struct api_server *a, const struct store_host *h)
{
	char buf[STORE_NAME_MAX];
	const char *rep = holder(a, h->name, buf);
	json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:I,s:s?}", "name", h->name,
			      "libvirt_uri", h->libvirt_uri, "connected",
			      rep != NULL, "policy_acked",
			      (json_int_t)h->policy_acked, "agent_seq",
			      (json_int_t)h->agent_seq, "replica", rep);
	if (o)
		host_agent_json(a, h->name, o);
	return o;
}

void api_hosts_list(struct api_req *q)
{
	unsigned limit;
	const char *after = api_query(q, "after");
	if (!api_limit(q, &limit) ||
	    (after && !api_name_ok(q, "after", after)))
		return;
	struct store_host *h = NULL;
	struct parley_err err = { 0 };
	int n = store_host_list(q->a->store, after, limit, &h, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	json_t *items = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(items, host_json(q->a, &h[i]));
	api_reply(q, 200, api_page(items, (unsigned)n == limit
						  ? h[n - 1].name : NULL));
	free(h);
}

void api_hosts_get(struct api_req *q)
{
	struct store_host h;
	struct parley_err err = { 0 };
	if (!api_name_ok(q, "host name", q->arg))
		return;
	int rc = store_host_get(q->a->store, q->arg, &h, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, host_json(q->a, &h));
}

static int64_t unix_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The host and its join token in one batch: a host never exists without
 * a way to join, nor a token for a host that was not created. */
static int host_create(struct api_server *a, const char *name,
		       const char *uri, char *token, int64_t *expires,
		       struct parley_err *err)
{
	struct store_host h;
	uint8_t d[STORE_DIGEST];
	if (store_host_get(a->store, name, &h, NULL) == 0)
		return perr(err, -EEXIST, "host \"%s\" exists", name);
	int rc = api_token_new("prj_", token, d);
	if (rc < 0)
		return perr(err, rc, "join token: no randomness");
	*expires = unix_ms() + API_JOIN_TTL_MS;
	/* Inside the API's batch for this change (api.c run_change), which
	 * commits both with the audit event or neither. */
	bool own;
	rc = store_join_begin(a->store, &own, err);
	if (rc < 0)
		return rc;
	rc = store_host_put(a->store, name, uri, (struct store_blob){ 0 }, err);
	if (rc == 0)
		rc = store_join_token_add(a->store, name,
					  (struct store_blob){ d, sizeof(d) },
					  *expires, err);
	return store_join_end(a->store, own, rc, err);
}

void api_hosts_add(struct api_req *q)
{
	static const char *const known[] = { "name", "libvirt_uri", NULL };
	json_t *b = api_body(q, known);
	if (!b)
		return;
	json_t *jn = json_object_get(b, "name");
	json_t *ju = json_object_get(b, "libvirt_uri");
	const char *name = json_string_value(jn);
	if (ju && !json_is_string(ju)) {
		api_error(q, 400, "BAD_REQUEST", "libvirt_uri: expected a "
			  "string, got %s", jv_type_name(ju));
	} else if (jn && !name) {
		api_error(q, 400, "BAD_REQUEST", "name: expected a string, got "
			  "%s", jv_type_name(jn));
	} else if (api_name_ok(q, "name", name)) {
		char token[API_TOKEN_TEXT];
		int64_t exp = 0;
		struct parley_err err = { 0 };
		const char *uri = ju ? json_string_value(ju) : "";
		api_subject(q, name, NULL, NULL);
		int rc = host_create(q->a, name, uri, token, &exp, &err);
		struct store_host h;
		if (rc == 0)
			rc = store_host_get(q->a->store, name, &h, &err);
		if (rc < 0)
			api_fail(q, rc, &err);
		else
			api_reply(q, 201, json_pack("{s:o,s:s,s:I}", "host",
						    host_json(q->a, &h),
						    "join_token", token,
						    "expires_unix_ms",
						    (json_int_t)exp));
		OPENSSL_cleanse(token, sizeof(token));
	}
	json_decref(b);
}

void api_hosts_delete(struct api_req *q)
{
	struct parley_err err = { 0 };
	if (!api_name_ok(q, "host name", q->arg))
		return;
	/* The store revokes its pinned certificate in the same transaction;
	 * an agent still connected with it is cut off once that committed. */
	api_subject(q, q->arg, NULL, NULL);
	int rc = store_host_delete(q->a->store, q->arg, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_after_host_deleted(q, q->arg);
	api_reply(q, 204, NULL);
}

static int token_create(struct api_server *a, const char *name,
			enum store_scope sc, char *text,
			struct parley_err *err)
{
	uint8_t d[STORE_DIGEST];
	int rc = api_token_new("prl_", text, d);
	if (rc < 0)
		return perr(err, rc, "token: no randomness");
	return store_token_add(a->store, name, sc,
			       (struct store_blob){ d, sizeof(d) }, err);
}

void api_tokens_add(struct api_req *q)
{
	static const char *const known[] = { "scope", "name", NULL };
	json_t *b = api_body(q, known);
	if (!b)
		return;
	json_t *jn = json_object_get(b, "name");
	const char *scope = json_string_value(json_object_get(b, "scope"));
	const char *name = jn ? json_string_value(jn) : "token";
	if (!scope || (strcmp(scope, "read") && strcmp(scope, "admin"))) {
		api_error(q, 400, "BAD_REQUEST", "scope: expected \"read\" or "
			  "\"admin\"");
	} else if (api_name_ok(q, "name", name)) {
		char text[API_TOKEN_TEXT];
		struct parley_err err = { 0 };
		enum store_scope sc = !strcmp(scope, "admin")
			? STORE_SCOPE_ADMIN : STORE_SCOPE_READ;
		int rc = token_create(q->a, name, sc, text, &err);
		if (rc < 0)
			api_fail(q, rc, &err);
		else
			api_reply(q, 201, json_pack("{s:s,s:s}", "token", text,
						    "scope", scope));
		OPENSSL_cleanse(text, sizeof(text));
	}
	json_decref(b);
}

static json_t *policy_hosts(struct api_server *a, struct parley_err *err,
			    int *rc)
{
	json_t *arr = json_array();
	char after[STORE_NAME_MAX] = "";
	int n;
	do {
		struct store_host *h = NULL;
		n = store_host_list(a->store, after, STORE_LIST_MAX, &h, err);
		for (int i = 0; i < n; i++) {
			uint64_t v = 0;
			store_policy_host_version(a->store, h[i].name, &v, NULL);
			json_array_append_new(arr, json_pack(
				"{s:s,s:I,s:I}", "host", h[i].name, "version",
				(json_int_t)v, "acked",
				(json_int_t)h[i].policy_acked));
			memcpy(after, h[i].name, sizeof(after));
		}
		free(h);
	} while (n == STORE_LIST_MAX);
	*rc = n < 0 ? n : 0;
	return arr;
}

void api_policy_get(struct api_req *q)
{
	uint64_t v = 0;
	struct parley_err err = { 0 };
	int rc = store_policy_version(q->a->store, &v, &err);
	json_t *hosts = rc < 0 ? NULL : policy_hosts(q->a, &err, &rc);
	if (rc < 0) {
		json_decref(hosts);
		api_fail(q, rc, &err);
		return;
	}
	api_reply(q, 200, json_pack("{s:I,s:o}", "version", (json_int_t)v,
				    "hosts", hosts));
}
