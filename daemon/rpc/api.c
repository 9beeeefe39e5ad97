/*
 * The API server: evhttp on the daemon's loop, the route table, bearer
 * authentication, the reply helpers, the bootstrap admin token.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/link.h"
#include "common/jsonv.h"
#include "common/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum api_scope { SCOPE_NONE, SCOPE_READ, SCOPE_ADMIN };

struct route {
	enum evhttp_cmd_type method;
	const char *pattern;        /* '*' = one path segment, the {name} */
	enum api_scope scope;
	void (*fn)(struct api_req *q);
};

static const struct route routes[] = {
	{ EVHTTP_REQ_GET, "/healthz", SCOPE_NONE, api_healthz },
	{ EVHTTP_REQ_GET, "/metrics", SCOPE_READ, api_metrics },
	{ EVHTTP_REQ_GET, "/v1/hosts", SCOPE_READ, api_hosts_list },
	{ EVHTTP_REQ_POST, "/v1/hosts", SCOPE_ADMIN, api_hosts_add },
	{ EVHTTP_REQ_GET, "/v1/hosts/*", SCOPE_READ, api_hosts_get },
	{ EVHTTP_REQ_DELETE, "/v1/hosts/*", SCOPE_ADMIN, api_hosts_delete },
	{ EVHTTP_REQ_GET, "/v1/partitions", SCOPE_READ, api_parts_list },
	{ EVHTTP_REQ_POST, "/v1/partitions", SCOPE_ADMIN, api_parts_add },
	{ EVHTTP_REQ_GET, "/v1/partitions/*", SCOPE_READ, api_parts_get },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/start", SCOPE_ADMIN,
	  api_parts_start },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/stop", SCOPE_ADMIN,
	  api_parts_stop },
	{ EVHTTP_REQ_DELETE, "/v1/partitions/*", SCOPE_ADMIN,
	  api_parts_delete },
	{ EVHTTP_REQ_GET, "/v1/grants", SCOPE_READ, api_grants_list },
	{ EVHTTP_REQ_POST, "/v1/grants", SCOPE_ADMIN, api_grants_add },
	{ EVHTTP_REQ_DELETE, "/v1/grants/*", SCOPE_ADMIN, api_grants_delete },
	{ EVHTTP_REQ_GET, "/v1/baselines", SCOPE_READ, api_baselines_list },
	{ EVHTTP_REQ_GET, "/v1/baselines/*", SCOPE_READ, api_baselines_get },
	{ EVHTTP_REQ_PUT, "/v1/baselines/*", SCOPE_ADMIN, api_baselines_put },
	{ EVHTTP_REQ_DELETE, "/v1/baselines/*", SCOPE_ADMIN,
	  api_baselines_delete },
	{ EVHTTP_REQ_GET, "/v1/measurements", SCOPE_READ,
	  api_measurements_list },
	{ EVHTTP_REQ_GET, "/v1/policy", SCOPE_READ, api_policy_get },
	{ EVHTTP_REQ_GET, "/v1/audit", SCOPE_READ, api_audit_list },
	{ EVHTTP_REQ_POST, "/v1/audit/verify", SCOPE_READ, api_audit_verify },
	{ EVHTTP_REQ_GET, "/v1/audit/checkpoints", SCOPE_READ,
	  api_checkpoints_list },
	{ EVHTTP_REQ_POST, "/v1/audit/checkpoints", SCOPE_ADMIN,
	  api_checkpoints_add },
	{ EVHTTP_REQ_POST, "/v1/tokens", SCOPE_ADMIN, api_tokens_add },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* ---- replies ---------------------------------------------------------- */

void api_reply(struct api_req *q, int status, json_t *body)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (text) {
		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add(b, text, strlen(text));
		evbuffer_add(b, "\n", 1);
	}
	free(text);
	json_decref(body);
	evhttp_send_reply(q->r, status, NULL, b);
	evbuffer_free(b);
	q->status = status;
}

void api_error(struct api_req *q, int status, const char *code,
	       const char *fmt, ...)
{
	char msg[PARLEY_ERR_MSG_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_reply(q, status, json_pack("{s:{s:s,s:s}}", "error", "code", code,
				       "message", msg));
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

/* ---- tokens ----------------------------------------------------------- */

int api_token_digest(const char *text, const char *prefix,
		     uint8_t out[STORE_DIGEST])
{
	size_t pl = strlen(prefix);
	if (strlen(text) != pl + 2 * API_TOKEN_BYTES ||
	    strncmp(text, prefix, pl))
		return -EINVAL;
	for (const char *c = text + pl; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return -EINVAL;
	unsigned len = 0;
	if (!EVP_Digest(text, strlen(text), out, &len, EVP_sha256(), NULL))
		return -EIO;
	return 0;
}

int api_token_new(const char *prefix, char *text, uint8_t out[STORE_DIGEST])
{
	uint8_t raw[API_TOKEN_BYTES];
	if (strlen(prefix) != 4 || RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	int n = snprintf(text, API_TOKEN_TEXT, "%s", prefix);
	for (unsigned i = 0; i < sizeof(raw); i++)
		n += snprintf(text + n, API_TOKEN_TEXT - (size_t)n, "%02x",
			      raw[i]);
	OPENSSL_cleanse(raw, sizeof(raw));
	return api_token_digest(text, prefix, out);
}

/* The caller's scope from "Authorization: Bearer prl_...", or -1. */
static int caller_scope(struct api_req *q)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(q->r);
	const char *v = evhttp_find_header(h, "Authorization");
	uint8_t d[STORE_DIGEST];
	enum store_scope sc;
	if (!v || strncmp(v, "Bearer ", 7) ||
	    api_token_digest(v + 7, "prl_", d) < 0 ||
	    store_token_scope(q->a->store, (struct store_blob){ d, sizeof(d) },
			      &sc, NULL) < 0)
		return -1;
	return sc == STORE_SCOPE_ADMIN ? SCOPE_ADMIN : SCOPE_READ;
}

/* First start: an admin token, shown once, kept in a 0600 file for the
 * operator; afterwards only its digest exists. */
static int bootstrap(struct api_server *a, struct parley_err *err)
{
	uint64_t n = 0;
	int rc = store_token_count(a->store, &n, err);
	if (rc < 0 || n > 0)
		return rc;
	char text[API_TOKEN_TEXT], path[PATH_MAX];
	uint8_t d[STORE_DIGEST];
	rc = api_token_new("prl_", text, d);
	if (rc < 0)
		return perr(err, rc, "bootstrap token: no randomness");
	rc = store_token_add(a->store, "bootstrap", STORE_SCOPE_ADMIN,
			     (struct store_blob){ d, sizeof(d) }, err);
	if (rc < 0)
		return rc;
	fprintf(stderr, "parleyd: bootstrap admin token: %s\n", text);
	snprintf(path, sizeof(path), "%s/admin.token", a->state_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			    O_CLOEXEC, 0600);
	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    dprintf(fd, "%s\n", text) < 0)
		log_warn("could not write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	OPENSSL_cleanse(text, sizeof(text));
	return 0;
}

/* ---- routing ---------------------------------------------------------- */

/* path matches pattern: '*' takes one non-empty segment, put in arg. */
static bool match(const char *pat, const char *path, char *arg, size_t cap)
{
	while (*pat && *path) {
		if (*pat == '*') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= cap)
				return false;
			memcpy(arg, path, n);
			arg[n] = '\0';
			path += n;
			pat++;
			continue;
		}
		if (*pat++ != *path++)
			return false;
	}
	return !*pat && !*path;
}

static void dispatch(struct api_req *q, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(q->r);
	bool path_known = false;
	for (size_t i = 0; i < NROUTES; i++) {
		if (!match(routes[i].pattern, path, q->arg, sizeof(q->arg)))
			continue;
		path_known = true;
		if (routes[i].method != m)
			continue;
		int sc = routes[i].scope == SCOPE_NONE ? SCOPE_NONE
						       : caller_scope(q);
		if (sc < 0)
			api_error(q, 401, "UNAUTHENTICATED",
				  "missing or unknown bearer token");
		else if (sc < (int)routes[i].scope)
			api_error(q, 403, "FORBIDDEN", "this token's scope is "
				  "read; %s needs admin", routes[i].pattern);
		else
			routes[i].fn(q);
		return;
	}
	if (path_known)
		api_error(q, 405, "METHOD_NOT_ALLOWED", "method not allowed on "
			  "this path");
	else
		api_error(q, 404, "NOT_FOUND", "no such route");
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Every change made through the API is an audit event too: the trail
 * says who changed policy when, not only what the agents decided. */
static void audit_change(struct api_req *q, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(q->r);
	if (m == EVHTTP_REQ_GET || q->status < 200 || q->status >= 300 ||
	    !path || !strcmp(path, "/v1/audit/verify"))
		return;
	char detail[320];
	snprintf(detail, sizeof(detail), "%s %.256s -> %d",
		 m == EVHTTP_REQ_POST ? "POST" : m == EVHTTP_REQ_PUT ? "PUT"
		 : m == EVHTTP_REQ_DELETE ? "DELETE" : "other", path, q->status);
	struct store_audit_in ev = { .event = "api_change", .detail = detail };
	store_audit_append(q->a->store, &ev, 1, NULL, NULL);
}

static void on_request(struct evhttp_request *r, void *arg)
{
	struct api_req q = { .a = arg, .r = r };
	double t0 = now_ms();
	TAILQ_INIT(&q.query);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	const char *qs = u ? evhttp_uri_get_query(u) : NULL;
	if (!path || (qs && evhttp_parse_query_str(qs, &q.query) < 0))
		api_error(&q, 400, "BAD_REQUEST", "malformed request URI");
	else
		dispatch(&q, path);
	audit_change(&q, path);
	evhttp_clear_headers(&q.query);
	metrics_request(&q.a->metrics, q.status, now_ms() - t0);
}

/* HTTPS: every accepted connection becomes a TLS bufferevent. */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
	struct api_server *a = arg;
	SSL *ssl = SSL_new(a->tls);
	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl,
					      BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

int api_start(struct api_server *a, const char *host, int port,
	      struct parley_err *err)
{
	a->http = evhttp_new(a->base);
	if (!a->http)
		return perr(err, -ENOMEM, "evhttp_new failed");
	/* Every method reaches the router, so that an unknown one gets a
	 * JSON 405 rather than evhttp's HTML. */
	evhttp_set_allowed_methods(a->http, 0xffff);
	/* evhttp's own cap is above ours so a body between the two gets
	 * our JSON 413; beyond it evhttp answers 413 itself without
	 * buffering it. */
	evhttp_set_max_body_size(a->http, 16 * API_BODY_MAX);
	evhttp_set_max_headers_size(a->http, API_HEADERS_MAX);
	evhttp_set_timeout(a->http, 30);
	evhttp_set_gencb(a->http, on_request, a);
	if (a->tls)
		evhttp_set_bevcb(a->http, tls_bev, a);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(
		a->http, host, (ev_uint16_t)port);
	if (!bs)
		return perr(err, -EADDRINUSE, "api: cannot listen on %s:%d",
			    host, port);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
		    &sl);
	a->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	return bootstrap(a, err);
}

void api_stop(struct api_server *a)
{
	if (a->http)
		evhttp_free(a->http);
	a->http = NULL;
}
