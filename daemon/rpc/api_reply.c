/*
 * How API handlers answer and read requests: replies held until the change
 * they report is committed (api.c sends them), JSON errors with the request
 * id, what a change concerns for its audit event, agent sends queued until
 * after the commit, the body, query and name checks.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/api_json.h"
#include "daemon/rpc/link.h"
#include "common/jsonv.h"
#include "common/log.h"

#include <errno.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* ---- replies ---------------------------------------------------------- */

static void hold(struct api_req *q, int status, const char *ctype, char *body,
		 size_t len)
{
	free(q->body);
	q->status = status;
	q->ctype = ctype;
	q->body = body;
	q->body_len = len;
}

void api_reply(struct api_req *q, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	size_t len = text ? strlen(text) : 0;
	if (text) {
		char *t = realloc(text, len + 2);
		if (t) {
			text = t;
			text[len++] = '\n';
			text[len] = '\0';
		}
	}
	json_decref(body);
	if (body && !text) {
		hold(q, 500, "application/json", strdup("{\"error\":{\"code\":"
			"\"INTERNAL\",\"message\":\"out of memory\"}}\n"), 0);
		q->body_len = q->body ? strlen(q->body) : 0;
		return;
	}
	hold(q, status, "application/json", text, len);
}

void api_reply_text(struct api_req *q, int status, const char *ctype,
		    struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *text = malloc(len + 1);
	if (!text) {
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	evbuffer_remove(b, text, len);
	text[len] = '\0';
	hold(q, status, ctype, text, len);
}

void api_reply_jbuf(struct api_req *q, int status, struct api_jbuf *b)
{
	api_jb_lit(b, "\n");
	if (b->oom) {
		api_jb_free(b);
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	hold(q, status, "application/json", b->p, b->len);
	*b = (struct api_jbuf){ 0 };
}

void api_error(struct api_req *q, int status, const char *code,
	       const char *fmt, ...)
{
	char msg[PARLEY_ERR_MSG_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_reply(q, status, json_pack("{s:{s:s,s:s,s:s}}", "error", "code",
				       code, "message", msg, "request_id",
				       q->id));
}

void api_subject(struct api_req *q, const char *host, const char *partition,
		 const char *channel)
{
	if (host)
		snprintf(q->au_host, sizeof(q->au_host), "%s", host);
	if (partition)
		snprintf(q->au_part, sizeof(q->au_part), "%s", partition);
	if (channel)
		snprintf(q->au_chan, sizeof(q->au_chan), "%s", channel);
}

static void after(struct api_req *q, enum api_after_kind kind, const char *host,
		  const char *name, int action)
{
	if (q->nafter == API_AFTER_MAX) {
		log_error("api: more than %d agent sends in one request",
			  API_AFTER_MAX);
		return;
	}
	struct api_after *x = &q->after[q->nafter++];
	x->kind = kind;
	x->action = action;
	snprintf(x->host, sizeof(x->host), "%s", host);
	snprintf(x->name, sizeof(x->name), "%s", name ? name : "");
}

void api_after_changed(struct api_req *q, const char *host)
{
	after(q, API_AFTER_CHANGED, host, NULL, 0);
}

void api_after_command(struct api_req *q, const char *host, const char *name,
		       int action)
{
	after(q, API_AFTER_COMMAND, host, name, action);
}

void api_after_host_deleted(struct api_req *q, const char *host)
{
	after(q, API_AFTER_HOST_DELETED, host, NULL, 0);
}

void api_after_update(struct api_req *q, const char *host)
{
	after(q, API_AFTER_UPDATE, host, NULL, 0);
}

void api_after_rollback(struct api_req *q, const char *host)
{
	after(q, API_AFTER_ROLLBACK, host, NULL, 0);
}

void api_run_after(struct api_req *q)
{
	struct api_hooks *h = &q->a->hooks;
	for (unsigned i = 0; i < q->nafter; i++) {
		struct api_after *x = &q->after[i];
		if (x->kind == API_AFTER_COMMAND && h->thin_command)
			h->thin_command(h->ctx, x->host, x->name, x->action);
		else if (x->kind == API_AFTER_CHANGED && h->thin_changed)
			h->thin_changed(h->ctx, x->host);
		else if (x->kind == API_AFTER_HOST_DELETED && q->a->link)
			link_host_deleted(q->a->link, x->host);
		else if (x->kind == API_AFTER_UPDATE && q->a->link)
			/* here, or through the replica holding it */
			link_route_command(q->a->link, x->host, NULL,
					   STORE_REPLICA_CMD_UPDATE);
		else if (x->kind == API_AFTER_ROLLBACK && q->a->link)
			link_route_command(q->a->link, x->host, NULL,
					   STORE_REPLICA_CMD_ROLLBACK);
	}
	q->nafter = 0;
}

void api_fail(struct api_req *q, int rc, const struct parley_err *err)
{
	const char *m = perr_msg(err);
	switch (rc) {
	case -EINVAL:
	case -E2BIG:
	case -EFBIG:
		api_error(q, 400, "BAD_REQUEST", "%s", m);
		return;
	case -ENOENT:
		api_error(q, 404, "NOT_FOUND", "%s", m);
		return;
	case -EEXIST:
	case -EBUSY:
	case -ESTALE:
	case -EAGAIN:
		api_error(q, 409, "CONFLICT", "%s", m);
		return;
	case -ECONNRESET:
	case -ECONNREFUSED:
		api_error(q, 503, "UNAVAILABLE", "%s", m);
		return;
	}
	log_error("api: %s", m);
	api_error(q, 500, "INTERNAL", "%s", m);
}

/* ---- request pieces --------------------------------------------------- */

json_t *api_body(struct api_req *q, const char *const *known)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
	size_t len = evbuffer_get_length(in);
	if (len > API_BODY_MAX) {
		api_error(q, 413, "TOO_LARGE", "body of %zu bytes, at most %d",
			  len, API_BODY_MAX);
		return NULL;
	}
	const char *p = (const char *)evbuffer_pullup(in, -1);
	json_error_t jerr;
	struct parley_err err = { 0 };
	/* No JSON_ALLOW_NUL: "a\u0000b" would read as the name "a". */
	json_t *o = json_loadb(p ? p : "", len, JSON_REJECT_DUPLICATES, &jerr);
	int rc = 0;
	if (!o)
		rc = jv_syntax_error(&jerr, &err);
	else if (!json_is_object(o))
		rc = jv_type_error(o, "body", "an object", &err);
	else if (known)
		rc = jv_check_known(o, known, "", &err);
	if (rc < 0) {
		json_decref(o);
		api_error(q, 400, "BAD_REQUEST", "%s", perr_msg(&err));
		return NULL;
	}
	return o;
}

const char *api_query(struct api_req *q, const char *key)
{
	return evhttp_find_header(&q->query, key);
}

bool api_query_only(struct api_req *q, const char *const *known)
{
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &q->query, next) {
		size_t i = 0;
		while (known[i] && strcmp(known[i], kv->key))
			i++;
		struct jv_quoted qt;
		if (!known[i]) {
			api_error(q, 400, "BAD_REQUEST", "unknown parameter %s",
				  jv_quote(&qt, kv->key, strlen(kv->key)));
			return false;
		}
		/* evhttp_find_header takes the first: a second one would
		 * be silently ignored. */
		if (evhttp_find_header(&q->query, kv->key) != kv->value) {
			api_error(q, 400, "BAD_REQUEST", "parameter %s given "
				  "twice", jv_quote(&qt, kv->key,
						    strlen(kv->key)));
			return false;
		}
	}
	return true;
}

bool api_limit(struct api_req *q, unsigned *limit)
{
	const char *v = api_query(q, "limit");
	*limit = 100;
	if (!v)
		return true;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end || n < 1 || n > STORE_LIST_MAX) {
		struct jv_quoted qt;
		api_error(q, 400, "BAD_REQUEST", "limit: %s is not 1..%d",
			  jv_quote(&qt, v, strlen(v)), STORE_LIST_MAX);
		return false;
	}
	*limit = (unsigned)n;
	return true;
}

bool api_name_ok(struct api_req *q, const char *what, const char *v)
{
	if (v && jv_name_valid(v, strlen(v), STORE_NAME_MAX))
		return true;
	struct jv_quoted qt;
	api_error(q, 400, "BAD_REQUEST", "%s: %s is not a valid name (1-%d of "
		  "A-Z a-z 0-9 _ . -)", what, v ? jv_quote(&qt, v, strlen(v))
						: "(missing)",
		  STORE_NAME_MAX - 1);
	return false;
}

json_t *api_page(json_t *items, const char *next)
{
	return json_pack("{s:o,s:o}", "items", items, "next",
			 next ? json_string(next) : json_null());
}
