/*
 * Private to daemon/rpc/api*.c: one request as handlers see it, the reply
 * helpers every handler answers through, and the route handlers.
 */
#ifndef PARLEY_DAEMON_API_INT_H
#define PARLEY_DAEMON_API_INT_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include "daemon/rpc/api.h"

/* Work for after the commit: what reaches agents must not tell of a
 * change that was then rolled back. */
enum api_after_kind {
	API_AFTER_CHANGED,          /* hooks.thin_changed */
	API_AFTER_COMMAND,          /* hooks.thin_command */
	API_AFTER_HOST_DELETED,     /* link_host_deleted: cut its agent off */
	API_AFTER_UPDATE,           /* link_update_offer: a package to send */
	API_AFTER_ROLLBACK,         /* link_rollback_send: a rollback to ask */
};
struct api_after {
	enum api_after_kind kind;
	int action;
	char host[STORE_NAME_MAX];
	char name[STORE_NAME_MAX];
};
#define API_AFTER_MAX 4
#define API_REQ_ID 33

struct api_req {
	struct api_server *a;
	struct evhttp_request *r;
	char arg[256];              /* the {name} segment of the path, raw */
	struct evkeyvalq query;
	/* The reply, held by api_reply until a change is committed. */
	int status;
	char *body;                 /* NULL: no body */
	size_t body_len;
	const char *ctype;
	char id[API_REQ_ID];        /* X-Request-Id, in the log and audit */
	char token[STORE_NAME_MAX]; /* the caller's token's name, or "" */
	/* What a change concerns, for its api_change audit event. */
	char au_host[STORE_NAME_MAX], au_part[STORE_NAME_MAX],
		au_chan[STORE_NAME_MAX];
	struct api_after after[API_AFTER_MAX];
	unsigned nafter;
	/* GET /v1/events accepted: the held body is the stream's first
	 * bytes, and on_request keeps the request open (api_stream.h). */
	bool stream;
	uint64_t stream_after, stream_head;
	/* Headers of the answer beyond the usual: the console's policy
	 * (api_ui.c) instead of the API's, a redirect's target. */
	const char *csp;
	const char *location;
};

/* Every handler answers exactly once through one of these. The answer is
 * sent when the handler returned and, for a change (POST/PUT/DELETE),
 * once the change and its audit event are committed together: a reply
 * other than 2xx rolls the change back. A later call replaces an earlier
 * one. */
void api_reply(struct api_req *q, int status, json_t *body); /* steals */
/* A body that is not JSON (/metrics): the bytes of b, drained. */
void api_reply_text(struct api_req *q, int status, const char *ctype,
		    struct evbuffer *b);
/* JSON text written with api_json.h (a newline is added); takes b's
 * text and leaves b empty; 500 if b ran out of memory. */
struct api_jbuf;
void api_reply_jbuf(struct api_req *q, int status, struct api_jbuf *b);
void api_error(struct api_req *q, int status, const char *code,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A store (or parser) error as its status: -EINVAL/-E2BIG 400,
 * -ENOENT 404, -EEXIST/-EBUSY/-ESTALE/-EAGAIN 409, else 500. */
void api_fail(struct api_req *q, int rc, const struct parley_err *err);

/* What the change concerns (valid names or NULL), named in its audit
 * event; call after checking them. */
void api_subject(struct api_req *q, const char *host, const char *partition,
		 const char *channel);
/* hooks.thin_changed / thin_command, run after the commit. */
void api_after_changed(struct api_req *q, const char *host);
void api_after_command(struct api_req *q, const char *host,
		       const char *name, int action);
/* The host is gone: its connected agent is cut off after the commit. */
void api_after_host_deleted(struct api_req *q, const char *host);
/* The host's agent is offered its update after the commit. */
void api_after_update(struct api_req *q, const char *host);
/* The host's agent is sent its rollback after the commit. */
void api_after_rollback(struct api_req *q, const char *host);
/* api.c, after the commit and the reply: run what was queued. */
void api_run_after(struct api_req *q);

/* The body as a JSON object whose keys are all in `known` (NULL-terminated,
 * or NULL when the handler's parser checks them);
 * NULL after answering 400/413 itself. The caller decrefs. */
json_t *api_body(struct api_req *q, const char *const *known);
/* A query parameter, or NULL. */
const char *api_query(struct api_req *q, const char *key);
/* ?limit= (1..STORE_LIST_MAX, default 100); false after answering 400. */
bool api_limit(struct api_req *q, unsigned *limit);
/* false after answering 400 when the query has a parameter not in known
 * (NULL-terminated) or one twice. */
bool api_query_only(struct api_req *q, const char *const *known);
/* A name from the path, body or query: false after answering 400. */
bool api_name_ok(struct api_req *q, const char *what, const char *v);
/* {"items": items, "next": next or null} (steals items). */
json_t *api_page(json_t *items, const char *next);

/* api.c: the answer to one request, held in q (q->a, q->r, q->id set,
 * q->query initialised): the query parsed, the caller authenticated, the
 * route, method and scope checked, the handler run (a change in its
 * transaction, committed with its audit event). The caller sends q's
 * answer, then api_run_after. on_request calls it; fuzz/fuzz_api.c drives
 * the handlers through it without a connection. */
void api_route(struct api_req *q, const char *path, const char *qs);

/* Handlers, by area. */
void api_healthz(struct api_req *q);
void api_metrics(struct api_req *q);
void api_hosts_list(struct api_req *q);
void api_hosts_add(struct api_req *q);
void api_hosts_get(struct api_req *q);
void api_hosts_delete(struct api_req *q);
void api_hosts_update(struct api_req *q);
void api_hosts_rollback(struct api_req *q);
void api_tokens_add(struct api_req *q);
void api_policy_get(struct api_req *q);
void api_parts_list(struct api_req *q);
void api_parts_add(struct api_req *q);
void api_parts_get(struct api_req *q);
void api_parts_start(struct api_req *q);
void api_parts_stop(struct api_req *q);
void api_parts_delete(struct api_req *q);
void api_diskkeys_list(struct api_req *q);
void api_diskkeys_rekey(struct api_req *q);
void api_grants_list(struct api_req *q);
void api_grants_add(struct api_req *q);
void api_grants_delete(struct api_req *q);
void api_segsets_list(struct api_req *q);
void api_segsets_add(struct api_req *q);
void api_segsets_get(struct api_req *q);
void api_segsets_delete(struct api_req *q);
void api_services_list(struct api_req *q);
void api_services_put(struct api_req *q);
void api_services_delete(struct api_req *q);
void api_baselines_list(struct api_req *q);
void api_baselines_get(struct api_req *q);
void api_baselines_put(struct api_req *q);
void api_baselines_delete(struct api_req *q);
void api_measurements_list(struct api_req *q);
void api_audit_list(struct api_req *q);
void api_audit_verify(struct api_req *q);
void api_checkpoints_list(struct api_req *q);
void api_checkpoints_add(struct api_req *q);
void api_events(struct api_req *q);
void api_openapi(struct api_req *q);

/* Route i of the table (false past the end): its method ("GET"), pattern
 * ('*' for the {name} segment) and scope ("none", "read", "admin"). The
 * OpenAPI document is checked against it (tests/test_api_openapi.c). */
bool api_route_info(size_t i, const char **method, const char **pattern,
		    const char **scope);
/* daemon/rpc/openapi.json, built in (api_openapi_doc.c, generated). */
extern const unsigned char api_openapi_doc[];
extern const size_t api_openapi_len;
/* /ui (rest NULL) and /ui/REST: the console's files, without a token. */
void api_ui(struct api_req *q, const char *rest);
extern const char api_ui_csp[];

#endif
