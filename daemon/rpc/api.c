/*
 * The API server: evhttp (behind api_gate) on the daemon's loop, the route
 * table, bearer authentication before routing, one store transaction per
 * change with its audit event, replies held until that commit, request
 * ids and the access log, the bootstrap admin token.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/api_gate.h"
#include "daemon/rpc/api_stream.h"
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

static const char *method_name(enum evhttp_cmd_type m);

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
	{ EVHTTP_REQ_POST, "/v1/hosts/*/update", SCOPE_ADMIN,
	  api_hosts_update },
	{ EVHTTP_REQ_POST, "/v1/hosts/*/rollback", SCOPE_ADMIN,
	  api_hosts_rollback },
	{ EVHTTP_REQ_GET, "/v1/partitions", SCOPE_READ, api_parts_list },
	{ EVHTTP_REQ_POST, "/v1/partitions", SCOPE_ADMIN, api_parts_add },
	{ EVHTTP_REQ_GET, "/v1/partitions/*", SCOPE_READ, api_parts_get },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/start", SCOPE_ADMIN,
	  api_parts_start },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/stop", SCOPE_ADMIN,
	  api_parts_stop },
	{ EVHTTP_REQ_DELETE, "/v1/partitions/*", SCOPE_ADMIN,
	  api_parts_delete },
	{ EVHTTP_REQ_GET, "/v1/partitions/*/disk-keys", SCOPE_READ,
	  api_diskkeys_list },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/disk-keys/rekey", SCOPE_ADMIN,
	  api_diskkeys_rekey },
	{ EVHTTP_REQ_GET, "/v1/grants", SCOPE_READ, api_grants_list },
	{ EVHTTP_REQ_POST, "/v1/grants", SCOPE_ADMIN, api_grants_add },
	{ EVHTTP_REQ_DELETE, "/v1/grants/*", SCOPE_ADMIN, api_grants_delete },
	{ EVHTTP_REQ_GET, "/v1/segsets", SCOPE_READ, api_segsets_list },
	{ EVHTTP_REQ_POST, "/v1/segsets", SCOPE_ADMIN, api_segsets_add },
	{ EVHTTP_REQ_GET, "/v1/segsets/*", SCOPE_READ, api_segsets_get },
	{ EVHTTP_REQ_DELETE, "/v1/segsets/*", SCOPE_ADMIN,
	  api_segsets_delete },
	{ EVHTTP_REQ_GET, "/v1/services", SCOPE_READ, api_services_list },
	{ EVHTTP_REQ_POST, "/v1/services", SCOPE_ADMIN, api_services_put },
	{ EVHTTP_REQ_DELETE, "/v1/services/*", SCOPE_ADMIN,
	  api_services_delete },
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
	{ EVHTTP_REQ_GET, "/v1/events", SCOPE_READ, api_events },
	{ EVHTTP_REQ_GET, "/v1/openapi.json", SCOPE_READ, api_openapi },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

bool api_route_info(size_t i, const char **method, const char **pattern,
		    const char **scope)
{
	static const char *const scopes[] = { "none", "read", "admin" };
	if (i >= NROUTES)
		return false;
	*method = method_name(routes[i].method);
	*pattern = routes[i].pattern;
	*scope = scopes[routes[i].scope];
	return true;
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

/* The caller's scope from "Authorization: Bearer prl_...", or -1; the
 * token's name goes to q->token (never the token itself). */
/* The caller's scope; -EACCES for no token or an unknown one, another
 * error when the store could not be asked (away: the API answers 503,
 * not 401 -- the token may be good). */
static int caller_scope(struct api_req *q, struct parley_err *err)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(q->r);
	const char *v = evhttp_find_header(h, "Authorization");
	uint8_t d[STORE_DIGEST];
	enum store_scope sc;
	if (!v || strncmp(v, "Bearer ", 7) ||
	    api_token_digest(v + 7, "prl_", d) < 0)
		return -EACCES;
	int rc = store_token_find(q->a->store,
				  (struct store_blob){ d, sizeof(d) }, &sc,
				  q->token, err);
	if (rc == -ECONNRESET || rc == -ECONNREFUSED)
		return rc;
	if (rc < 0)
		return -EACCES;
	return sc == STORE_SCOPE_ADMIN ? SCOPE_ADMIN : SCOPE_READ;
}

/* The gate's question before it buffers a package upload (64 MiB, not
 * the 64 KiB of every other body): an admin token the store knows. The
 * route asks again (caller_scope) when the request is whole. */
static int upload_admit(void *ctx, const char *auth, size_t n)
{
	struct api_server *a = ctx;
	char text[160];
	uint8_t d[STORE_DIGEST];
	enum store_scope sc;
	char name[STORE_NAME_MAX];
	struct parley_err err = { 0 };
	if (n < 8 || n >= sizeof(text) || strncmp(auth, "Bearer ", 7))
		return API_GATE_ADMIT_UNAUTH;
	memcpy(text, auth + 7, n - 7);
	text[n - 7] = 0;
	if (api_token_digest(text, "prl_", d) < 0)
		return API_GATE_ADMIT_UNAUTH;
	int rc = store_token_find(a->store, (struct store_blob){ d, sizeof(d) },
				  &sc, name, &err);
	if (rc == -ECONNRESET || rc == -ECONNREFUSED)
		return API_GATE_ADMIT_AWAY;
	if (rc < 0)
		return API_GATE_ADMIT_UNAUTH;
	return sc == STORE_SCOPE_ADMIN ? 0 : API_GATE_ADMIT_SCOPE;
}

/* The token text into path, 0600, on disk before the store has its
 * digest: a token nobody can read would lock the operator out. */
static int write_token(const char *path, const char *text,
		       struct parley_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			    O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : 0;
	if (rc == 0 && (fchmod(fd, 0600) < 0 || dprintf(fd, "%s\n", text) < 0 ||
			fsync(fd) < 0))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		unlink(path);
		return perr(err, rc, "bootstrap token: cannot write %s: %s",
			    path, strerror(-rc));
	}
	return 0;
}

/* First start: an admin token, kept only in a 0600 file for the operator
 * (never in the log: logs travel); afterwards only its digest exists. */
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
	if (snprintf(path, sizeof(path), "%s/admin.token", a->state_dir) >=
	    (int)sizeof(path))
		rc = perr(err, -ENAMETOOLONG, "state_dir: too long");
	if (rc == 0)
		rc = write_token(path, text, err);
	OPENSSL_cleanse(text, sizeof(text));
	if (rc < 0)
		return rc;
	rc = store_token_add(a->store, "bootstrap", STORE_SCOPE_ADMIN,
			     (struct store_blob){ d, sizeof(d) }, err);
	if (rc < 0) {
		unlink(path);
		return rc;
	}
	log_info("bootstrap admin token written to %s (0600); it is shown "
		 "nowhere else", path);
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

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "OTHER";
	}
}

/* A change: every write method, except the one POST that only reads. */
static bool is_change(enum evhttp_cmd_type m, const char *path)
{
	return m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD &&
	       strcmp(path, "/v1/audit/verify");
}

/* The api_change event, in the change's own transaction: the trail says
 * who changed what when, and says it exactly when the change happened. */
static int audit_change(struct api_req *q, const char *path,
			struct parley_err *err)
{
	char detail[STORE_DETAIL_MAX];
	snprintf(detail, sizeof(detail), "%s %.256s -> %d request_id=%s "
		 "token=%s", method_name(evhttp_request_get_command(q->r)),
		 path, q->status, q->id, q->token[0] ? q->token : "-");
	struct store_audit_in ev = {
		.event = "api_change", .host = q->au_host,
		.partition = q->au_part, .channel = q->au_chan,
		.detail = detail,
	};
	return store_audit_append(q->a->store, &ev, 1, NULL, err);
}

/* The store could not take the change: nothing of it was kept. */
static void change_failed(struct api_req *q, int rc,
			  const struct parley_err *err)
{
	log_error("api %s: change not committed: %s", q->id, perr_msg(err));
	q->nafter = 0;
	if (rc == -EBUSY || rc == -EAGAIN)
		api_error(q, 503, "UNAVAILABLE", "the store is busy; nothing "
			  "was changed, retry");
	/* The database's connection lost under the change (it is made
	 * again at the next one): an uncommitted change is gone with it. */
	else if (rc == -ECONNRESET || rc == -ECONNREFUSED)
		api_error(q, 503, "UNAVAILABLE", "the store's database was "
			  "unreachable; retry");
	else
		api_error(q, 500, "INTERNAL", "the change could not be "
			  "stored; nothing was changed");
}

/*
 * One change, one transaction: the handler's writes and the api_change
 * event commit together, or neither does (a handler answering other than
 * 2xx rolls back). The libvirt hooks run inside it: the loop is blocked
 * during a libvirt call anyway, and the write lock held meanwhile only
 * keeps other processes off the file (daemon/rpc/README.md).
 */
static void run_change(struct api_req *q, const struct route *rt,
		       const char *path)
{
	struct store *s = q->a->store;
	struct parley_err err = { 0 };
	int rc = store_begin(s, &err);
	if (rc < 0) {
		change_failed(q, rc, &err);
		return;
	}
	rt->fn(q);
	if (q->status < 200 || q->status >= 300) {
		store_rollback(s, NULL);
		q->nafter = 0;
		return;
	}
	rc = audit_change(q, path, &err);
	if (rc < 0)
		store_rollback(s, NULL);
	else
		rc = store_commit(s, &err);
	if (rc < 0)
		change_failed(q, rc, &err);
}

/* Authentication first (only /healthz is open), then the route, the
 * method, the scope. */
static void dispatch(struct api_req *q, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(q->r);
	int sc = SCOPE_NONE;
	/* The console's static files: the one other thing answered without
	 * a token (they hold no data; api_ui.c keeps the names narrow). */
	if (!strcmp(path, "/ui")) {
		api_ui(q, NULL);
		return;
	}
	if (!strncmp(path, "/ui/", 4)) {
		api_ui(q, path + 4);
		return;
	}
	struct parley_err aerr = { 0 };
	if (strcmp(path, "/healthz") && (sc = caller_scope(q, &aerr)) < 0) {
		if (sc != -EACCES)
			api_fail(q, sc, &aerr);
		else
			api_error(q, 401, "UNAUTHENTICATED", "missing or "
				  "unknown bearer token");
		return;
	}
	bool path_known = false;
	for (size_t i = 0; i < NROUTES; i++) {
		if (!match(routes[i].pattern, path, q->arg, sizeof(q->arg)))
			continue;
		path_known = true;
		if (routes[i].method != m)
			continue;
		if (sc < (int)routes[i].scope)
			api_error(q, 403, "FORBIDDEN", "this token's scope is "
				  "read; %s needs admin", routes[i].pattern);
		else if (is_change(m, path))
			run_change(q, &routes[i], path);
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

/* evhttp decodes %00 into the value's end ("after=1%00x" would read as
 * 1): refused, naming the parameter. */
static bool query_nul(struct api_req *q, const char *qs)
{
	const char *z = strcasestr(qs, "%00");
	if (!z)
		return false;
	const char *k = z;
	while (k > qs && k[-1] != '&' && k[-1] != ';')
		k--;
	size_t kn = strcspn(k, "=&;");
	struct jv_quoted qt;
	api_error(q, 400, "BAD_REQUEST", "%s: holds a NUL byte (%%00)",
		  jv_quote(&qt, k, kn < (size_t)(z - k) ? kn : (size_t)(z - k)));
	return true;
}

void api_route(struct api_req *q, const char *path, const char *qs)
{
	/* The console's files take no parameters: a query a browser or a
	 * bookmark adds is not theirs to refuse. */
	bool ui = path && (!strcmp(path, "/ui") || !strncmp(path, "/ui/", 4));
	if (!path || (qs && !ui && evhttp_parse_query_str(qs, &q->query) < 0))
		api_error(q, 400, "BAD_REQUEST", "malformed request URI");
	else if (qs && !ui && query_nul(q, qs))
		return;
	else
		dispatch(q, path);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The gate's stand-in for a request it refused: gate_path/N. */
static const struct api_gate_refusal *gate_refusal(struct api_server *a,
						   const char *path)
{
	size_t n = strlen(a->gate_path);
	if (strncmp(path, a->gate_path, n) || path[n] != '/')
		return NULL;
	char *end;
	unsigned long k = strtoul(path + n + 1, &end, 10);
	return *end ? NULL : api_gate_refusal((unsigned)k);
}

static const char *reason(int status)
{
	switch (status) {
	case 308: return "Permanent Redirect";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return NULL;
	}
}

static void free_body(const void *data, size_t len, void *extra)
{
	(void)len;
	(void)extra;
	free((void *)data);
}

static void send_reply(struct api_req *q)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
	struct evbuffer *b = evbuffer_new();
	if (!q->status)
		api_error(q, 500, "INTERNAL", "the handler gave no answer");
	evhttp_add_header(h, "X-Request-Id", q->id);
	/* No answer is to be sniffed, framed or run as a page, except the
	 * console's, which may run its own scripts only. */
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Content-Security-Policy", q->csp ? q->csp :
			  "default-src 'none'; frame-ancestors 'none'");
	if (q->csp) {
		evhttp_add_header(h, "Referrer-Policy", "no-referrer");
		evhttp_add_header(h, "Cache-Control", "no-cache");
	}
	if (q->location)
		evhttp_add_header(h, "Location", q->location);
	if (q->body) {
		evhttp_add_header(h, "Content-Type", q->ctype);
		/* The held text goes out as it is, not copied: the evbuffer
		 * owns it from here and frees it once written. */
		if (b && evbuffer_add_reference(b, q->body, q->body_len,
						free_body, NULL) == 0)
			q->body = NULL;
		else if (b)
			evbuffer_add(b, q->body, q->body_len);
	}
	evhttp_send_reply(q->r, q->status, reason(q->status), b);
	if (b)
		evbuffer_free(b);
}

static void on_request(struct evhttp_request *r, void *arg)
{
	struct api_server *a = arg;
	struct api_req q = { .a = a, .r = r };
	double t0 = now_ms();
	TAILQ_INIT(&q.query);
	snprintf(q.id, sizeof(q.id), "%08x%016llx", (unsigned)a->id_boot,
		 (unsigned long long)++a->id_seq);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	const char *qs = u ? evhttp_uri_get_query(u) : NULL;
	const struct api_gate_refusal *gr = path ? gate_refusal(a, path) : NULL;
	const char *method = method_name(evhttp_request_get_command(r));
	if (gr) {
		api_error(&q, gr->status, gr->code, "%s", gr->message);
		method = "-";
		path = "(refused before routing)";
	} else {
		api_route(&q, path, qs);
	}
	/* The one answer that stays open: not JSON, not held
	 * (api_stream.h); logged as its start. */
	if (q.stream && q.status == 200 &&
	    api_stream_attach(a, r, q.stream_after, q.stream_head, q.id,
			      q.body, q.body_len) < 0)
		api_error(&q, 500, "INTERNAL", "out of memory");
	if (!q.stream || q.status != 200)
		send_reply(&q);
	api_run_after(&q);
	double ms = now_ms() - t0;
	/* The path only: tokens travel in a header, never logged. */
	log_info("api %s %.200s %d %.3f ms id=%s", method, path ? path : "-",
		 q.status, ms, q.id);
	evhttp_clear_headers(&q.query);
	free(q.body);
	metrics_request(&a->metrics, q.status, ms);
}

/* What evhttp is handed for a connection it cannot have: a bufferevent
 * without a socket (a pair's end, its partner gone), so that evhttp's
 * bufferevent_setfd fails and it closes the connection (shut down by it,
 * closed once by the pair's free). Never NULL where it can be helped:
 * for a NULL, evhttp makes a plain socket bufferevent of its own -- no
 * TLS, no gate. */
static struct bufferevent *refuser(struct event_base *base)
{
	struct bufferevent *p[2];
	if (bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE, p) < 0)
		return NULL;
	bufferevent_free(p[1]);
	return p[0];
}

static void conn_gone(void *arg)
{
	struct api_server *a = arg;
	a->conns--;
	listen_guard_closed(&a->guard);
}

/* Every accepted connection: TLS (when configured) under the gate,
 * counted against the listener's share of the descriptors (at it, the
 * listener waits: listen_guard.h); one that cannot be made is closed. */
static struct bufferevent *conn_bev(struct event_base *base, void *arg)
{
	struct api_server *a = arg;
	struct bufferevent *under = NULL, *gate;
	if (a->tls) {
		SSL *ssl = SSL_new(a->tls);
		if (!ssl) {
			log_warn("api: SSL_new failed: connection closed");
			return refuser(base);
		}
		/* a client's FIN without close_notify is its end too (not
		 * OpenSSL 3's error): the gate frames the requests itself,
		 * nothing is cut short unnoticed */
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		under = bufferevent_openssl_socket_new(
			base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
			BEV_OPT_CLOSE_ON_FREE);
		if (under)
			bufferevent_openssl_set_allow_dirty_shutdown(under, 1);
	} else {
		under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	gate = under ? api_gate_new_upload(under, API_HEADERS_MAX, API_BODY_MAX,
					   API_UPDATE_BODY_MAX, upload_admit, a,
					   a->gate_path, conn_gone, a)
		     : NULL;
	if (!gate)
		return refuser(base);
	a->conns++;
	listen_guard_opened(&a->guard);
	return gate;
}

int api_start(struct api_server *a, const char *host, int port,
	      struct parley_err *err)
{
	uint8_t rnd[20];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return perr(err, -EIO, "api: no randomness");
	int n = snprintf(a->gate_path, sizeof(a->gate_path), "/.gate-");
	for (unsigned i = 0; i < 16; i++)
		n += snprintf(a->gate_path + n, sizeof(a->gate_path) - (size_t)n,
			      "%02x", rnd[i]);
	memcpy(&a->id_boot, rnd + 16, sizeof(a->id_boot));
	a->http = evhttp_new(a->base);
	if (!a->http)
		return perr(err, -ENOMEM, "evhttp_new failed");
	/* Every method reaches the router, so that an unknown one gets a
	 * JSON 405 rather than evhttp's HTML. */
	evhttp_set_allowed_methods(a->http, 0xffff);
	/* The gate refuses (as JSON) what is beyond our limits; evhttp's
	 * own, which would answer in HTML, are kept above them. */
	evhttp_set_max_body_size(a->http, 2 * (size_t)API_UPDATE_BODY_MAX);
	evhttp_set_max_headers_size(a->http, 4 * API_HEADERS_MAX);
	evhttp_set_timeout(a->http, 30);
	evhttp_set_gencb(a->http, on_request, a);
	evhttp_set_bevcb(a->http, conn_bev, a);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(
		a->http, host, (ev_uint16_t)port);
	if (!bs)
		return perr(err, -EADDRINUSE, "api: cannot listen on %s:%d",
			    host, port);
	if (listen_guard_init(&a->guard, a->base,
			      evhttp_bound_socket_get_listener(bs), "api") < 0)
		return perr(err, -ENOMEM, "api: no memory");
	listen_guard_cap(&a->guard, API_CONN_SHARE, &a->conns);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
		    &sl);
	a->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	int rc = api_stream_start(a);
	if (rc < 0)
		return perr(err, rc, "api: the event stream cannot start");
	return bootstrap(a, err);
}

void api_stop(struct api_server *a)
{
	/* Closing the connections ends the stream clients first. */
	listen_guard_free(&a->guard);
	if (a->http)
		evhttp_free(a->http);
	a->http = NULL;
	api_stream_stop(a);
}
