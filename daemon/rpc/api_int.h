/*
 * Private to daemon/rpc/api*.c: one request as handlers see it, the reply
 * helpers every handler answers through, and the route handlers.
 */
#ifndef PARLEY_DAEMON_API_INT_H
#define PARLEY_DAEMON_API_INT_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include "daemon/rpc/api.h"

struct api_req {
	struct api_server *a;
	struct evhttp_request *r;
	char arg[256];              /* the {name} segment of the path, raw */
	struct evkeyvalq query;
	int status;                 /* set by the reply */
};

/* Every handler answers exactly once through one of these. */
void api_reply(struct api_req *q, int status, json_t *body); /* steals */
void api_error(struct api_req *q, int status, const char *code,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A store (or parser) error as its status: -EINVAL/-E2BIG 400,
 * -ENOENT 404, -EEXIST/-EBUSY/-ESTALE/-EAGAIN 409, else 500. */
void api_fail(struct api_req *q, int rc, const struct parley_err *err);

/* The body as a JSON object whose keys are all in `known` (NULL-terminated,
 * or NULL when the handler's parser checks them);
 * NULL after answering 400/413 itself. The caller decrefs. */
json_t *api_body(struct api_req *q, const char *const *known);
/* A query parameter, or NULL. */
const char *api_query(struct api_req *q, const char *key);
/* ?limit= (1..STORE_LIST_MAX, default 100); false after answering 400. */
bool api_limit(struct api_req *q, unsigned *limit);
/* A name from the path, body or query: false after answering 400. */
bool api_name_ok(struct api_req *q, const char *what, const char *v);
/* {"items": items, "next": next or null} (steals items). */
json_t *api_page(json_t *items, const char *next);

/* Handlers, by area. */
void api_healthz(struct api_req *q);
void api_metrics(struct api_req *q);
void api_hosts_list(struct api_req *q);
void api_hosts_add(struct api_req *q);
void api_hosts_get(struct api_req *q);
void api_hosts_delete(struct api_req *q);
void api_tokens_add(struct api_req *q);
void api_policy_get(struct api_req *q);
void api_parts_list(struct api_req *q);
void api_parts_add(struct api_req *q);
void api_parts_get(struct api_req *q);
void api_parts_start(struct api_req *q);
void api_parts_stop(struct api_req *q);
void api_parts_delete(struct api_req *q);
void api_grants_list(struct api_req *q);
void api_grants_add(struct api_req *q);
void api_grants_delete(struct api_req *q);
void api_baselines_list(struct api_req *q);
void api_baselines_get(struct api_req *q);
void api_baselines_put(struct api_req *q);
void api_baselines_delete(struct api_req *q);
void api_measurements_list(struct api_req *q);
void api_audit_list(struct api_req *q);
void api_audit_verify(struct api_req *q);
void api_checkpoints_list(struct api_req *q);
void api_checkpoints_add(struct api_req *q);

#endif
