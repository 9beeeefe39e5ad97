/* Every API route through the real handlers: one request per input, built
 * as evhttp builds it (an evhttp_request, its target parsed by
 * evhttp_uri_parse_with_flags(EVHTTP_URI_NONCONFORMANT) as
 * evhttp_parse_request_line does, the body in its input buffer) but
 * without a connection, and answered by api_route() -- on_request's own
 * path: query string, bearer token, route, method, scope, the handler,
 * and for a change its transaction with the api_change event. The store
 * is a real SQLite file in a temporary directory, made once per process
 * through the API itself (hosts, thin and libvirt partitions, a grant, a
 * service rule and a segment set, a golden baseline, a checkpoint signed by a real key process) plus
 * measurements and agent audit events; after a committed change the
 * working copy is put back to that template, so every input meets the
 * same store and a crash reproduces from its input alone. libvirt
 * partitions go through hooks that do what daemon/orch.c does to the
 * store (its checks, the real spec parser, its rows and audit events)
 * with libvirt's answer taken from the input.
 *
 * Input (text, so that seeds are readable):
 *   METHOD TARGET\n      e.g. "GET /v1/audit?limit=2&host=h1"
 *   FLAGS\n              a: admin token, r: read token, u: a well-formed
 *                        token the store does not know, g: a malformed
 *                        Authorization header (none of these: no header);
 *                        f: libvirt refuses (ORCH_ELIBVIRT, 502),
 *                        n: no libvirt hooks (501)
 *   BODY                 the rest
 * Requests the gate refuses before evhttp (api_gate.c: unknown method,
 * target not an absolute path of visible ASCII, a body on HEAD/TRACE, a
 * body over API_BODY_MAX) never reach a handler and are skipped.
 *
 * Oracles: the status is one API.md documents for that route -- its
 * success status, or an error; never 500 (a handler's bug), nor 503 (no
 * other user of the store here); without a valid token 401 on everything
 * but /healthz, a read token on a write route 403; the body is JSON
 * (Prometheus text for /metrics), none exactly for 204; an error is
 * {"error":{"code","message","request_id"}} with the code of its status,
 * a message without control bytes and this request's id; a page has
 * "items" (an array) and "next" (a string or null). A change answered 2xx
 * appended events ending with its api_change (naming its request id);
 * anything else -- a refused change, any read -- appended none and left
 * the policy version alone, and queued nothing for agents. After every
 * change the audit chain verifies (store_audit_verify). */
#include <errno.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/grant.h"
#include "common/jsonv.h"
#include "common/log.h"
#include "daemon/checkpoint.h"
#include "daemon/orch.h"
#include "daemon/keys/keyd.h"
#include "daemon/rpc/api_int.h"
#include "db/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEX64 "00112233445566778899aabbccddeeff" \
	      "00112233445566778899aabbccddeeff"
static const char admin_tok[] = "prl_" HEX64;
static const char read_tok[] = "prl_" "ffeeddccbbaa99887766554433221100"
			       "ffeeddccbbaa99887766554433221100";
static const char unknown_tok[] = "prl_" "0123456789abcdef0123456789abcdef"
				  "0123456789abcdef0123456789abcdef";

static struct {
	char dir[PATH_MAX], tmpl[PATH_MAX], work[PATH_MAX];
	struct store *st;
	struct keyd keys;
	struct ckpt ck;
	struct api_server a;
	bool dirty, libvirt_fail;
	unsigned seq;
} F;

/* ---- the libvirt and agent hooks ---------------------------------- */

/* The orchestrator's part (daemon/orch.c) with libvirt replaced by the
 * input's word: the same checks in the same order, the real spec parser
 * (orch_spec_parse), the same rows and audit events into the store, and
 * where libvirt would be asked, a refusal (ORCH_ELIBVIRT) when the input
 * says f. Called inside the API's transaction, as the real one is. */
static int orch_audit(const char *host, const char *event, const char *name,
		      const char *detail, struct parley_err *err)
{
	struct store_audit_in ev = { .host = host, .event = event,
				     .partition = name, .detail = detail };
	return store_audit_append(F.st, &ev, 1, NULL, err);
}

static int libvirt_says(const char *what, const char *name,
			struct parley_err *err)
{
	return F.libvirt_fail ? perr(err, ORCH_ELIBVIRT, "%s %s: refused "
				     "(the fuzz input said so)", what, name)
			      : 0;
}

static int fake_define(void *ctx, const char *host, const char *name,
		       const char *spec_json, struct parley_err *err)
{
	(void)ctx;
	struct orch_spec sp;
	struct store_partition p;
	struct store_host h;
	if (!jv_name_valid(name, strlen(name), STORE_NAME_MAX))
		return perr(err, -EINVAL, "not a valid partition name");
	int rc = orch_spec_parse(spec_json, &sp, err);
	if (rc < 0)
		return rc;
	if (sp.name[0] && strcmp(sp.name, name))
		rc = perr(err, -EINVAL, "spec names partition %s, not %s",
			  sp.name, name);
	if (rc == 0 && store_partition_get(F.st, name, &p, NULL) == 0) {
		store_partition_free(&p);
		rc = perr(err, -EEXIST, "partition %s exists already", name);
	}
	if (rc == 0)
		rc = store_host_get(F.st, host, &h, err);
	if (rc == 0 && !h.libvirt_uri[0])
		rc = perr(err, -EINVAL, "host %s has no libvirt URI", host);
	if (rc == 0)
		rc = libvirt_says("define", name, err);
	const char *names[STORE_FILES_MAX];
	for (unsigned i = 0; i < sp.nfile; i++)
		names[i] = sp.file[i].name;
	struct store_part_in in = {
		.name = name, .host = host, .kind = STORE_PART_LIBVIRT,
		.spec_json = spec_json, .spec_len = strlen(spec_json),
		.state = ORCH_STATE_DEFINED,
	};
	if (rc == 0)
		rc = store_partition_put(F.st, &in, NULL, err);
	if (rc == 0)
		rc = store_partition_set_files(F.st, name, names, sp.nfile,
					       err);
	if (rc == 0)
		rc = orch_audit(host, ORCH_AUDIT_DEFINED, name,
				ORCH_STATE_DEFINED, err);
	orch_spec_free(&sp);
	return rc;
}

static int lifecycle(const char *name, bool start, struct parley_err *err)
{
	struct store_partition p;
	int rc = store_partition_get(F.st, name, &p, err);
	if (rc < 0)
		return rc;
	bool running = !strcmp(p.state, ORCH_STATE_RUNNING);
	const char *state = start ? ORCH_STATE_RUNNING : ORCH_STATE_STOPPED;
	if (p.kind != STORE_PART_LIBVIRT)
		rc = perr(err, -EINVAL, "partition %s is not a libvirt one",
			  name);
	else if (running == start)
		rc = perr(err, ORCH_ECONFLICT, "partition %s %s", name,
			  running ? "is running already" : "is not running");
	if (rc == 0)
		rc = libvirt_says(start ? "start" : "stop", name, err);
	if (rc == 0)
		rc = store_partition_set_state(F.st, name, state, 0, NULL, err);
	if (rc == 0)
		rc = orch_audit(p.host, start ? ORCH_AUDIT_STARTED
					      : ORCH_AUDIT_STOPPED,
				name, state, err);
	store_partition_free(&p);
	return rc;
}

static int fake_start(void *ctx, const char *name, struct parley_err *err)
{
	(void)ctx;
	return lifecycle(name, true, err);
}

static int fake_stop(void *ctx, const char *name, struct parley_err *err)
{
	(void)ctx;
	return lifecycle(name, false, err);
}

static int fake_destroy(void *ctx, const char *name, struct parley_err *err)
{
	(void)ctx;
	struct store_partition p;
	struct grant_set gs = { 0 };
	int rc = store_partition_get(F.st, name, &p, err);
	if (rc < 0)
		return rc;
	rc = store_grant_list(F.st, &gs, err);
	for (unsigned i = 0; rc == 0 && i < gs.n; i++)
		if (!strcmp(gs.g[i].a, name) || !strcmp(gs.g[i].b, name))
			rc = perr(err, -EBUSY, "partition %s: grant %s names "
				  "it", name, gs.g[i].channel);
	grant_set_free(&gs);
	if (rc == 0)
		rc = libvirt_says("undefine", name, err);
	if (rc == 0)
		rc = store_partition_delete(F.st, name, err);
	if (rc == 0)
		rc = orch_audit(p.host, ORCH_AUDIT_DESTROYED, name, p.state,
				err);
	store_partition_free(&p);
	return rc;
}

static void thin_changed(void *ctx, const char *host)
{
	(void)ctx;
	PARLEY_ASSERT(host[0]);
}

static void thin_command(void *ctx, const char *host, const char *name,
			 int action)
{
	(void)ctx;
	(void)action;
	PARLEY_ASSERT(host[0] && name[0]);
}

static const struct api_hooks hooks = {
	.orch_define = fake_define, .orch_start = fake_start,
	.orch_stop = fake_stop, .orch_destroy = fake_destroy,
	.thin_changed = thin_changed, .thin_command = thin_command,
};

/* ---- one request ---------------------------------------------------- */

struct answer {
	int status;
	char *body;                 /* NUL-terminated copy, or NULL */
	const char *ctype;
	char id[API_REQ_ID];
	unsigned nafter;
};

/* Build the request as evhttp would have, answer it as on_request does
 * (short of sending). Returns false if the target does not parse. */
static bool request(enum evhttp_cmd_type m, const char *target,
		    const char *auth, const void *body, size_t len,
		    struct answer *out)
{
	struct evhttp_request *r = evhttp_request_new(NULL, NULL);
	PARLEY_ASSERT(r);
	r->kind = EVHTTP_REQUEST;
	r->type = m;
	r->uri = strdup(target);
	PARLEY_ASSERT(r->uri);
	r->uri_elems = evhttp_uri_parse_with_flags(r->uri,
						   EVHTTP_URI_NONCONFORMANT);
	if (!r->uri_elems) {
		evhttp_request_free(r);
		return false;
	}
	if (auth)
		evhttp_add_header(r->input_headers, "Authorization", auth);
	evbuffer_add(r->input_buffer, body, len);

	struct api_req q = { .a = &F.a, .r = r };
	TAILQ_INIT(&q.query);
	snprintf(q.id, sizeof(q.id), "f0220000%016x", ++F.seq);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r);
	api_route(&q, evhttp_uri_get_path(u), evhttp_uri_get_query(u));

	memset(out, 0, sizeof(*out));
	out->status = q.status;
	out->ctype = q.ctype;
	out->nafter = q.nafter;
	snprintf(out->id, sizeof(out->id), "%s", q.id);
	if (q.body) {
		/* The body the client would get, as a C string (a NUL in it
		 * would show as a short string and fail the JSON check). */
		out->body = strndup(q.body, q.body_len);
		PARLEY_ASSERT(out->body);
		PARLEY_ASSERT(strlen(out->body) == q.body_len);
	}
	api_run_after(&q);
	evhttp_clear_headers(&q.query);
	free(q.body);
	evhttp_request_free(r);
	return true;
}

/* ---- the store: a template made once, a working copy ------------------ */

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int o = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	PARLEY_ASSERT(in >= 0 && o >= 0);
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		PARLEY_ASSERT(write(o, buf, (size_t)n) == n);
	PARLEY_ASSERT(n == 0);
	close(in);
	close(o);
}

static void unlink_db(const char *path)
{
	char p[PATH_MAX + 8];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
}

static void open_store(const char *path)
{
	struct parley_err err = { 0 };
	if (F.st)
		store_close(F.st);
	F.st = NULL;
	PARLEY_ASSERT(store_open(path, &F.st, &err) == 0);
	F.a.store = F.st;
	ckpt_stop(&F.ck);
	PARLEY_ASSERT(ckpt_start(&F.ck, NULL, F.st, &F.keys, 0, &err) == 0);
}

static void reset_store(void)
{
	store_close(F.st);
	F.st = NULL;
	unlink_db(F.work);
	copy_file(F.tmpl, F.work);
	open_store(F.work);
	F.dirty = false;
}

static void token(const char *name, enum store_scope sc, const char *text)
{
	uint8_t d[STORE_DIGEST];
	struct parley_err err = { 0 };
	PARLEY_ASSERT(api_token_digest(text, "prl_", d) == 0);
	PARLEY_ASSERT(store_token_add(F.st, name, sc,
				      (struct store_blob){ d, sizeof(d) },
				      &err) == 0);
}

static void setup_call(const char *method, const char *target,
		       const char *body, int want)
{
	enum evhttp_cmd_type m = !strcmp(method, "POST") ? EVHTTP_REQ_POST
				 : !strcmp(method, "PUT") ? EVHTTP_REQ_PUT
							   : EVHTTP_REQ_GET;
	char auth[128];
	struct answer ans;
	snprintf(auth, sizeof(auth), "Bearer %s", admin_tok);
	PARLEY_ASSERT(request(m, target, auth, body, strlen(body), &ans));
	if (ans.status != want) {
		fprintf(stderr, "fuzz_api setup: %s %s -> %d %s\n", method,
			target, ans.status, ans.body ? ans.body : "");
		abort();
	}
	free(ans.body);
}

static void measure(const char *host, const char *part, uint64_t seq)
{
	uint8_t dg[STORE_DIGEST], f1[STORE_DIGEST], sg[STORE_DIGEST];
	memset(dg, (int)seq, sizeof(dg));
	memset(f1, 0x11, sizeof(f1));
	memset(sg, 0x22, sizeof(sg));
	struct store_file_in file = { "motd", { f1, sizeof(f1) } };
	struct store_blob seg = { sg, sizeof(sg) };
	struct store_measure_in m = {
		.seq = seq, .partition = part,
		.d = { { dg, sizeof(dg) }, &file, 1, &seg, 1 },
	};
	struct parley_err err = { 0 };
	PARLEY_ASSERT(store_ingest_measurements(F.st, host, &m, 1, NULL,
						&err) == 0);
}

static void cleanup(void)
{
	if (F.st)
		store_close(F.st);
	F.st = NULL;
	keyd_stop(&F.keys);
	unlink_db(F.work);
	unlink_db(F.tmpl);
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/policy.key", F.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/checkpoint.key", F.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/checkpoint.pub", F.dir);
	unlink(p);
	rmdir(F.dir);
}

static void write_policy_key(const char *path)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	PARLEY_ASSERT(k && f);
	PARLEY_ASSERT(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	EVP_PKEY_free(k);
}

static void init(void)
{
	/* Errors only: a checkpoint's info line per input would drown the
	 * fuzzer's output (a 500's own log line still shows). */
	log_init("fuzz_api", LOG_ERROR);
	const char *tmp = getenv("TMPDIR");
	snprintf(F.dir, sizeof(F.dir), "%s/fuzz_api.XXXXXX",
		 tmp && tmp[0] ? tmp : "/tmp");
	PARLEY_ASSERT(mkdtemp(F.dir));
	snprintf(F.tmpl, sizeof(F.tmpl), "%s/template.db", F.dir);
	snprintf(F.work, sizeof(F.work), "%s/work.db", F.dir);

	struct keyd_paths kp = { 0 };
	snprintf(kp.policy_key, sizeof(kp.policy_key), "%s/policy.key",
		 F.dir);
	snprintf(kp.ckpt_key, sizeof(kp.ckpt_key), "%s/checkpoint.key",
		 F.dir);
	write_policy_key(kp.policy_key);
	struct parley_err err = { 0 };
	F.keys.fd = -1;
	PARLEY_ASSERT(keyd_spawn(&F.keys, &kp, &err) == 0);
	atexit(cleanup);

	F.a.hooks = hooks;
	F.a.ckpt = &F.ck;
	F.a.state_dir = F.dir;
	open_store(F.tmpl);
	token("fuzz-admin", STORE_SCOPE_ADMIN, admin_tok);
	token("fuzz-read", STORE_SCOPE_READ, read_tok);

	/* The fleet every input meets, made by the handlers themselves. */
	setup_call("POST", "/v1/hosts", "{\"name\":\"h1\",\"libvirt_uri\":"
		   "\"test:///default\"}", 201);
	setup_call("POST", "/v1/hosts", "{\"name\":\"h2\",\"libvirt_uri\":"
		   "\"test:///default\"}", 201);
	setup_call("POST", "/v1/hosts", "{\"name\":\"h3\"}", 201);
	setup_call("POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		   "\"thin\",\"spec\":{\"name\":\"p1\",\"image\":"
		   "\"hello.elf\"}}", 201);
	setup_call("POST", "/v1/partitions", "{\"host\":\"h2\",\"backend\":"
		   "\"thin\",\"spec\":{\"name\":\"p2\"}}", 201);
	setup_call("POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		   "\"thin\",\"spec\":{\"name\":\"p3\"}}", 201);
	setup_call("POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
		   "\"libvirt\",\"spec\":{\"name\":\"v1\"}}", 201);
	setup_call("POST", "/v1/partitions", "{\"host\":\"h2\",\"backend\":"
		   "\"libvirt\",\"spec\":{\"name\":\"v2\"}}", 201);
	setup_call("POST", "/v1/partitions/p2/start", "", 200);
	setup_call("POST", "/v1/partitions/v2/start", "", 200);
	setup_call("POST", "/v1/grants", "{\"channel\":\"tel\",\"endpoint_a\":"
		   "\"p1\",\"endpoint_b\":\"p2\",\"direction\":\"a_to_b\","
		   "\"ring_bytes\":\"64K\"}", 201);
	setup_call("POST", "/v1/services", "{\"source\":\"p1\",\"target\":"
		   "\"p3\",\"service\":\"auth\",\"action\":\"allow\"}",
		   201);
	setup_call("POST", "/v1/segsets", "{\"name\":\"bus\",\"members\":"
		   "[\"p1\",\"p3\"],\"segments\":[{\"name\":\"cmd\",\"kind\":"
		   "\"pipe\",\"writer\":\"p1\",\"size\":\"4K\"}]}", 201);
	setup_call("PUT", "/v1/baselines/p1", "{\"digest\":\"" HEX64 "\","
		   "\"files\":{\"motd\":\"" HEX64 "\"},\"segments\":[\"" HEX64
		   "\"]}", 200);
	measure("h1", "p1", 1);
	measure("h1", "p1", 2);
	measure("h2", "p2", 1);
	struct store_audit_in ev = { .seq = 3, .event = "open_denied",
				     .partition = "p1", .channel = "tel",
				     .reason = "NO_GRANT" };
	PARLEY_ASSERT(store_ingest_audit(F.st, "h1", &ev, 1, NULL, &err) == 0);
	setup_call("POST", "/v1/audit/checkpoints", "", 201);
	setup_call("POST", "/v1/hosts", "{\"name\":\"h4\"}", 201);
	setup_call("POST", "/v1/audit/checkpoints", "", 201);
	uint64_t bad = 0;
	PARLEY_ASSERT(store_audit_verify(F.st, &bad, NULL, &err) == 0);
	store_close(F.st);
	F.st = NULL;
	reset_store();
}

/* ---- the oracle ------------------------------------------------------- */

struct route {
	enum evhttp_cmd_type m;
	const char *pattern;        /* '*': one non-empty segment */
	int ok;                     /* API.md's success status */
	bool admin;
	int ok_too;                 /* a second one (POST /v1/services:
				     * 201 created, 200 changed), or 0 */
};

/* API.md's route table, written from the document, not from api.c. */
static const struct route routes[] = {
	{ EVHTTP_REQ_GET, "/healthz", 200, false },
	{ EVHTTP_REQ_GET, "/metrics", 200, false },
	{ EVHTTP_REQ_GET, "/v1/hosts", 200, false },
	{ EVHTTP_REQ_POST, "/v1/hosts", 201, true },
	{ EVHTTP_REQ_GET, "/v1/hosts/*", 200, false },
	{ EVHTTP_REQ_DELETE, "/v1/hosts/*", 204, true },
	{ EVHTTP_REQ_GET, "/v1/partitions", 200, false },
	{ EVHTTP_REQ_POST, "/v1/partitions", 201, true },
	{ EVHTTP_REQ_GET, "/v1/partitions/*", 200, false },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/start", 200, true },
	{ EVHTTP_REQ_POST, "/v1/partitions/*/stop", 200, true },
	{ EVHTTP_REQ_DELETE, "/v1/partitions/*", 204, true },
	{ EVHTTP_REQ_GET, "/v1/grants", 200, false },
	{ EVHTTP_REQ_POST, "/v1/grants", 201, true },
	{ EVHTTP_REQ_DELETE, "/v1/grants/*", 200, true },
	{ EVHTTP_REQ_GET, "/v1/segsets", 200, false },
	{ EVHTTP_REQ_POST, "/v1/segsets", 201, true },
	{ EVHTTP_REQ_GET, "/v1/segsets/*", 200, false },
	{ EVHTTP_REQ_DELETE, "/v1/segsets/*", 200, true },
	{ EVHTTP_REQ_GET, "/v1/services", 200, false },
	{ EVHTTP_REQ_POST, "/v1/services", 201, true, 200 },
	{ EVHTTP_REQ_DELETE, "/v1/services/*", 200, true },
	{ EVHTTP_REQ_GET, "/v1/baselines", 200, false },
	{ EVHTTP_REQ_GET, "/v1/baselines/*", 200, false },
	{ EVHTTP_REQ_PUT, "/v1/baselines/*", 200, true },
	{ EVHTTP_REQ_DELETE, "/v1/baselines/*", 204, true },
	{ EVHTTP_REQ_GET, "/v1/measurements", 200, false },
	{ EVHTTP_REQ_GET, "/v1/policy", 200, false },
	{ EVHTTP_REQ_GET, "/v1/audit", 200, false },
	{ EVHTTP_REQ_POST, "/v1/audit/verify", 200, false },
	{ EVHTTP_REQ_GET, "/v1/audit/checkpoints", 200, false },
	{ EVHTTP_REQ_POST, "/v1/audit/checkpoints", 201, true },
	{ EVHTTP_REQ_POST, "/v1/tokens", 201, true },
	{ EVHTTP_REQ_GET, "/v1/events", 200, false },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* A segment of 256 bytes or more (far beyond any name) matches no route
 * in api.c: such a path is 404 "no such route", whatever the method. */
static bool match(const char *pat, const char *path)
{
	while (*pat && *path) {
		if (*pat == '*') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= sizeof(((struct api_req *)0)->arg))
				return false;
			path += n;
			pat++;
		} else if (*pat++ != *path++) {
			return false;
		}
	}
	return !*pat && !*path;
}

static const char *code_of(int status)
{
	switch (status) {
	case 400: return "BAD_REQUEST";
	case 401: return "UNAUTHENTICATED";
	case 403: return "FORBIDDEN";
	case 404: return "NOT_FOUND";
	case 405: return "METHOD_NOT_ALLOWED";
	case 409: return "CONFLICT";
	case 413: return "TOO_LARGE";
	case 501: return "NOT_IMPLEMENTED";
	case 502: return "LIBVIRT";
	default: return NULL;       /* 500, 503 and anything undocumented */
	}
}

static void fail(const char *why, const char *method, const char *target,
		 const struct answer *ans)
{
	fprintf(stderr, "fuzz_api: %s: %s %s -> %d %s\n", why, method, target,
		ans->status, ans->body ? ans->body : "(no body)");
	cleanup(); /* the input alone reproduces it: no need for the files */
	abort();
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void check_error(json_t *j, const struct answer *ans,
			const char *method, const char *target)
{
	json_t *e = json_object_get(j, "error");
	const char *want = code_of(ans->status);
	if (!want)
		fail("status not documented", method, target, ans);
	if (json_object_size(j) != 1 || !json_is_object(e) ||
	    json_object_size(e) != 3)
		fail("not {\"error\":{code,message,request_id}}", method,
		     target, ans);
	json_t *c = json_object_get(e, "code"),
	       *m = json_object_get(e, "message"),
	       *id = json_object_get(e, "request_id");
	if (!json_is_string(c) || strcmp(json_string_value(c), want))
		fail("error code is not its status's", method, target, ans);
	if (!json_is_string(m) || !json_string_length(m) ||
	    strlen(json_string_value(m)) != json_string_length(m) ||
	    !printable(json_string_value(m)))
		fail("error message empty or not printable", method, target,
		     ans);
	if (!json_is_string(id) || strcmp(json_string_value(id), ans->id))
		fail("error request_id is not this request's", method, target,
		     ans);
}

static void check_success(json_t *j, const struct answer *ans,
			  const char *method, const char *target)
{
	if (json_object_get(j, "error"))
		fail("success carrying an error", method, target, ans);
	json_t *items = json_object_get(j, "items");
	if (items) {
		json_t *next = json_object_get(j, "next");
		if (!json_is_array(items) || json_object_size(j) != 2 ||
		    !(json_is_null(next) || json_is_string(next)))
			fail("page not {items:[...],next}", method, target,
			     ans);
	}
}

struct snap {
	uint64_t head, policy;
};

static void snap(struct snap *s)
{
	struct parley_err err = { 0 };
	uint8_t h[STORE_DIGEST];
	PARLEY_ASSERT(store_audit_head(F.st, &s->head, h, &err) == 0);
	PARLEY_ASSERT(store_policy_version(F.st, &s->policy, &err) == 0);
}

/* The last audit row: api_change naming this request. */
static int last_row(const struct store_audit *r, void *ctx)
{
	const char *id = ctx;
	PARLEY_ASSERT(!strcmp(r->event, "api_change"));
	char want[64];
	snprintf(want, sizeof(want), "request_id=%s ", id);
	PARLEY_ASSERT(strstr(r->detail, want));
	return 1;
}

static const struct {
	const char *name;
	enum evhttp_cmd_type m;
} methods[] = {
	{ "GET", EVHTTP_REQ_GET }, { "POST", EVHTTP_REQ_POST },
	{ "HEAD", EVHTTP_REQ_HEAD }, { "PUT", EVHTTP_REQ_PUT },
	{ "DELETE", EVHTTP_REQ_DELETE }, { "OPTIONS", EVHTTP_REQ_OPTIONS },
	{ "TRACE", EVHTTP_REQ_TRACE }, { "PATCH", EVHTTP_REQ_PATCH },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!F.st)
		init();
	if (F.dirty)
		reset_store();

	/* METHOD SP TARGET LF FLAGS LF BODY */
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	size_t ll = (size_t)(nl - data);
	const uint8_t *sp = memchr(data, ' ', ll);
	if (!sp)
		return 0;
	char method[16], target[4096];
	size_t mn = (size_t)(sp - data), tn = ll - mn - 1;
	if (mn >= sizeof(method) || tn == 0 || tn >= sizeof(target))
		return 0;
	memcpy(method, data, mn);
	method[mn] = '\0';
	memcpy(target, sp + 1, tn);
	target[tn] = '\0';
	const uint8_t *rest = nl + 1;
	size_t rn = size - ll - 1;
	const uint8_t *nl2 = memchr(rest, '\n', rn);
	size_t fn = nl2 ? (size_t)(nl2 - rest) : rn;
	const uint8_t *body = nl2 ? nl2 + 1 : rest + rn;
	size_t bn = nl2 ? rn - fn - 1 : 0;
	bool f_admin = memchr(rest, 'a', fn), f_read = memchr(rest, 'r', fn),
	     f_unknown = memchr(rest, 'u', fn),
	     f_garbage = memchr(rest, 'g', fn);
	F.libvirt_fail = memchr(rest, 'f', fn);
	bool no_libvirt = memchr(rest, 'n', fn);

	/* What the gate lets through to evhttp (api_gate.c). */
	size_t mi = 0;
	while (mi < sizeof(methods) / sizeof(methods[0]) &&
	       strcmp(methods[mi].name, method))
		mi++;
	if (mi == sizeof(methods) / sizeof(methods[0]))
		return 0;
	enum evhttp_cmd_type m = methods[mi].m;
	if (target[0] != '/')
		return 0;
	for (size_t i = 0; i < tn; i++)
		if ((unsigned char)target[i] < 0x21 ||
		    (unsigned char)target[i] > 0x7e)
			return 0;
	if (bn > API_BODY_MAX ||
	    (bn && (m == EVHTTP_REQ_HEAD || m == EVHTTP_REQ_TRACE)))
		return 0;

	char auth[160];
	const char *ah = NULL;
	if (f_admin || f_read || f_unknown) {
		snprintf(auth, sizeof(auth), "Bearer %s",
			 f_admin ? admin_tok : f_read ? read_tok : unknown_tok);
		ah = auth;
	} else if (f_garbage) {
		/* The token's own bytes from the body's first line. */
		size_t k = bn < 100 ? bn : 100;
		const uint8_t *e = memchr(body, '\n', k);
		k = e ? (size_t)(e - body) : k;
		snprintf(auth, sizeof(auth), "Bearer %.*s", (int)k,
			 (const char *)body);
		/* The gate refuses control bytes in a header value. */
		ah = strlen(auth) == 7 + k && printable(auth) ? auth : NULL;
	}
	F.a.hooks = hooks;
	if (no_libvirt) {
		F.a.hooks.orch_define = NULL;
		F.a.hooks.orch_start = NULL;
		F.a.hooks.orch_stop = NULL;
		F.a.hooks.orch_destroy = NULL;
	}

	struct snap before, after;
	snap(&before);
	struct answer ans;
	if (!request(m, target, ah, body, bn, &ans))
		return 0; /* evhttp would have refused the target */
	snap(&after);
	/* FUZZ_API_TRACE=1: each answer on stderr (to check what seeds
	 * reach). */
	if (getenv("FUZZ_API_TRACE"))
		fprintf(stderr, "fuzz_api: %s %s -> %d %.200s", method, target,
			ans.status, ans.body ? ans.body : "\n");

	/* The route as API.md lists it. */
	struct evhttp_uri *u = evhttp_uri_parse_with_flags(
		target, EVHTTP_URI_NONCONFORMANT);
	PARLEY_ASSERT(u);
	const char *path = evhttp_uri_get_path(u);
	const struct route *rt = NULL;
	bool path_known = false;
	for (size_t i = 0; path && i < NROUTES; i++)
		if (match(routes[i].pattern, path)) {
			path_known = true;
			if (routes[i].m == m && !rt)
				rt = &routes[i];
		}
	bool is_change = m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD &&
			 !(path && !strcmp(path, "/v1/audit/verify"));
	char want[160];
	snprintf(want, sizeof(want), "Bearer %s", read_tok);
	bool is_read = ah && !strcmp(ah, want);
	snprintf(want, sizeof(want), "Bearer %s", admin_tok);
	bool authed = is_read || (ah && !strcmp(ah, want));
	bool ok = ans.status >= 200 && ans.status < 300;
	/* The query string is parsed before anything else (api_route). */
	bool bad_uri = ans.status == 400 && ans.body &&
		       strstr(ans.body, "\"malformed request URI\"");

	if (ans.status == 500 || ans.status == 503)
		fail("a 500/503", method, target, &ans);
	if (ok && (!rt || (ans.status != rt->ok && ans.status != rt->ok_too)))
		fail("success status not the route's", method, target, &ans);
	/* The console's files (api_ui.c): no token, their own answers
	 * (404 here: the harness has no console directory; 308 for /ui,
	 * 405 for other methods); checked in tests/test_api_ui.c. */
	bool ui = path && (!strcmp(path, "/ui") || !strncmp(path, "/ui/", 4));
	if (ui) {
		if (ans.status != 404 && ans.status != 308 &&
		    ans.status != 405 && !bad_uri)
			fail("a console path's answer", method, target, &ans);
		path_known = true;
		rt = NULL;
	}
	if (path && !ui && strcmp(path, "/healthz") && !authed &&
	    ans.status != 401 && !bad_uri)
		fail("not 401 without a valid token", method, target, &ans);
	if (authed && !path_known && ans.status != 404 && !bad_uri)
		fail("an unknown path not 404", method, target, &ans);
	if (authed && path_known && !rt && !ui && ans.status != 405 &&
	    !bad_uri)
		fail("a known path's other method not 405", method, target,
		     &ans);
	if (is_read && rt && rt->admin && ans.status != 403 && !bad_uri)
		fail("a read token's write not 403", method, target, &ans);

	if (ans.status == 204) {
		if (ans.body)
			fail("a 204 with a body", method, target, &ans);
	} else if (!ans.body) {
		fail("no body", method, target, &ans);
	} else if (ok && rt && !strcmp(rt->pattern, "/metrics")) {
		if (strncmp(ans.ctype, "text/plain", 10))
			fail("metrics not text", method, target, &ans);
	} else if (ok && rt && !strcmp(rt->pattern, "/v1/events")) {
		/* The stream's first bytes; on a connection it stays open
		 * (api_stream.c, tests/test_api_stream.c). */
		if (strcmp(ans.ctype, "text/event-stream") ||
		    strncmp(ans.body, "retry: ", 7))
			fail("events not an event stream", method, target,
			     &ans);
	} else {
		json_error_t je;
		json_t *j = json_loads(ans.body, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(j) ||
		    strcmp(ans.ctype, "application/json"))
			fail("body not a JSON object", method, target, &ans);
		if (ok)
			check_success(j, &ans, method, target);
		else
			check_error(j, &ans, method, target);
		json_decref(j);
	}

	/* The trail: a committed change and only that appends, ending with
	 * its api_change; the chain verifies after every change. */
	if (is_change && ok) {
		if (after.head <= before.head)
			fail("a change without its audit event", method,
			     target, &ans);
		struct parley_err err = { 0 };
		PARLEY_ASSERT(store_audit_list(F.st, after.head - 1, 1,
					       last_row, ans.id, &err) == 1);
		F.dirty = true;
	} else {
		if (after.head != before.head || after.policy != before.policy)
			fail("a refused change or a read changed the store",
			     method, target, &ans);
		if (ans.nafter)
			fail("agent sends queued for nothing committed",
			     method, target, &ans);
	}
	if (is_change) {
		uint64_t bad = 0;
		struct parley_err err = { 0 };
		if (store_audit_verify(F.st, &bad, NULL, &err) < 0) {
			fprintf(stderr, "audit chain: %s\n", perr_msg(&err));
			fail("the audit chain no longer verifies", method,
			     target, &ans);
		}
	}
	evhttp_uri_free(u);
	free(ans.body);
	return 0;
}
