/* The HTTP API (daemon/rpc/API.md) against a real parleyd, and the token
 * store underneath it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/rpc/api.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

/* ---- the token store ---- */

static struct store *tmp_store(char **dir)
{
	char path[600];
	struct store *s = NULL;
	struct parley_err err = { 0 };
	*dir = t_tmpdir();
	snprintf(path, sizeof(path), "%s/t.db", *dir);
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	return s;
}

static struct store_blob blob(const uint8_t *d)
{
	return (struct store_blob){ d, STORE_DIGEST };
}

Test(api, store_tokens)
{
	char *dir;
	struct store *s = tmp_store(&dir);
	uint8_t a[STORE_DIGEST] = { 1 }, b[STORE_DIGEST] = { 2 };
	uint64_t n = 9;
	enum store_scope sc;
	cr_assert_eq(store_token_count(s, &n, NULL), 0);
	cr_expect_eq(n, 0);
	cr_assert_eq(store_token_add(s, "ci", STORE_SCOPE_READ, blob(a), NULL), 0);
	cr_assert_eq(store_token_add(s, "op", STORE_SCOPE_ADMIN, blob(b), NULL), 0);
	cr_expect_eq(store_token_add(s, "dup", STORE_SCOPE_READ, blob(a), NULL),
		     -EEXIST);
	cr_expect_eq(store_token_add(s, "-bad", STORE_SCOPE_READ, blob(a), NULL),
		     -EINVAL);
	cr_expect_eq(store_token_add(s, "short", STORE_SCOPE_READ,
				     (struct store_blob){ a, 31 }, NULL), -EINVAL);
	cr_assert_eq(store_token_scope(s, blob(a), &sc, NULL), 0);
	cr_expect_eq(sc, STORE_SCOPE_READ);
	cr_assert_eq(store_token_scope(s, blob(b), &sc, NULL), 0);
	cr_expect_eq(sc, STORE_SCOPE_ADMIN);
	uint8_t c[STORE_DIGEST] = { 3 };
	cr_expect_eq(store_token_scope(s, blob(c), &sc, NULL), -ENOENT);
	cr_assert_eq(store_token_count(s, &n, NULL), 0);
	cr_expect_eq(n, 2);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

Test(api, store_join_tokens_single_use)
{
	char *dir;
	struct store *s = tmp_store(&dir);
	uint8_t a[STORE_DIGEST] = { 1 }, b[STORE_DIGEST] = { 2 },
		c[STORE_DIGEST] = { 3 };
	char host[STORE_NAME_MAX];
	struct parley_err err = { 0 };
	cr_assert_eq(store_join_token_add(s, "h1", blob(a), 1000, NULL), 0);
	cr_assert_eq(store_join_token_add(s, "h2", blob(b), 1000, NULL), 0);
	cr_expect_eq(store_join_token_add(s, "h3", blob(a), 1000, NULL), -EEXIST);
	cr_expect_eq(store_join_token_add(s, "b/d", blob(c), 1000, NULL), -EINVAL);
	cr_expect_eq(store_join_token_use(s, blob(c), 10, host, NULL), -ENOENT);
	cr_expect_eq(store_join_token_use(s, blob(b), 1000, host, &err),
		     -ETIMEDOUT);
	cr_expect(strstr(err.msg, "expired"), "%s", err.msg);
	cr_assert_eq(store_join_token_use(s, blob(a), 999, host, NULL), 0);
	cr_expect_str_eq(host, "h1");
	cr_expect_eq(store_join_token_use(s, blob(a), 999, host, &err), -EEXIST);
	cr_expect(strstr(err.msg, "used already"), "%s", err.msg);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

Test(api, token_digest_format)
{
	uint8_t d[STORE_DIGEST], e[STORE_DIGEST];
	char t[API_TOKEN_TEXT];
	cr_assert_eq(api_token_new("prl_", t, d), 0);
	cr_expect_eq(strlen(t), 68);
	cr_expect_eq(api_token_digest(t, "prl_", e), 0);
	cr_expect_eq(memcmp(d, e, sizeof(d)), 0);
	cr_expect_eq(api_token_digest(t, "prj_", e), -EINVAL);
	t[10] = 'G';
	cr_expect_eq(api_token_digest(t, "prl_", e), -EINVAL);
	cr_expect_eq(api_token_digest("prl_00", "prl_", e), -EINVAL);
}

/* ---- the server ---- */

/* Status of one call, the response kept in *r for more checks. */
static int call(struct api_client *c, const char *m, const char *path,
		const char *tok, const char *body, struct ac_resp *r)
{
	ac_call(c, m, path, tok, body, r);
	return r->status;
}

static void expect(struct api_client *c, const char *m, const char *path,
		   const char *tok, const char *body, int status)
{
	struct ac_resp r;
	int got = call(c, m, path, tok, body, &r);
	cr_expect_eq(got, status, "%s %s: %d, want %d: %s", m, path, got,
		     status, r.raw);
	ac_free(&r);
}

Test(api, bootstrap_and_auth, .timeout = 60)
{
	struct api_client c;
	ac_start(&c);
	char path[700];
	struct stat st;
	snprintf(path, sizeof(path), "%s/admin.token", c.f.dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	/* The token is in its file only; the log says where. */
	char *log = fd_daemon_log(&c.f);
	cr_expect(!strstr(log, c.admin), "the token is in the log: %s", log);
	cr_expect(!strstr(log, "prl_"), "%s", log);
	cr_expect(strstr(log, "bootstrap admin token written to") &&
		  strstr(log, path), "%s", log);
	free(log);

	struct ac_resp r;
	cr_expect_eq(call(&c, "GET", "/healthz", NULL, NULL, &r), 200);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "status")),
			 "ok");
	ac_free(&r);
	expect(&c, "GET", "/v1/hosts", c.admin, NULL, 200);
	cr_expect_eq(call(&c, "GET", "/v1/hosts", NULL, NULL, &r), 401);
	cr_expect_str_eq(ac_code(&r), "UNAUTHENTICATED");
	ac_free(&r);
	char bad[80];
	snprintf(bad, sizeof(bad), "%s", c.admin);
	bad[20] = bad[20] == 'a' ? 'b' : 'a';
	expect(&c, "GET", "/v1/hosts", bad, NULL, 401);
	expect(&c, "GET", "/v1/hosts", "prl_short", NULL, 401);

	/* A read token reads, and is refused every write. */
	cr_assert_eq(call(&c, "POST", "/v1/tokens", c.admin,
			  "{\"scope\":\"read\",\"name\":\"ci\"}", &r), 201);
	char rd[80];
	snprintf(rd, sizeof(rd), "%s",
		 json_string_value(json_object_get(r.json, "token")));
	ac_free(&r);
	cr_expect_eq(strncmp(rd, "prl_", 4), 0);
	expect(&c, "GET", "/v1/hosts", rd, NULL, 200);
	expect(&c, "GET", "/metrics", rd, NULL, 200);
	expect(&c, "POST", "/v1/audit/verify", rd, NULL, 200);
	cr_expect_eq(call(&c, "POST", "/v1/hosts", rd, "{\"name\":\"h1\"}", &r),
		     403);
	cr_expect_str_eq(ac_code(&r), "FORBIDDEN");
	ac_free(&r);
	expect(&c, "POST", "/v1/tokens", rd, "{\"scope\":\"admin\"}", 403);
	expect(&c, "DELETE", "/v1/hosts/h1", rd, NULL, 403);
	ac_stop(&c);
}

static json_t *get_json(struct api_client *c, const char *path, int status)
{
	struct ac_resp r;
	int got = call(c, "GET", path, c->admin, NULL, &r);
	cr_assert_eq(got, status, "GET %s: %d: %s", path, got, r.raw);
	json_t *j = json_incref(r.json);
	ac_free(&r);
	return j;
}

static void hosts_happy(struct api_client *c)
{
	struct ac_resp r;
	cr_assert_eq(call(c, "POST", "/v1/hosts", c->admin,
			  "{\"name\":\"h1\",\"libvirt_uri\":\"test:///default\"}",
			  &r), 201, "%s", r.raw);
	const char *jt = json_string_value(json_object_get(r.json, "join_token"));
	cr_expect(jt && !strncmp(jt, "prj_", 4) && strlen(jt) == 68);
	cr_expect_gt(json_integer_value(json_object_get(r.json,
							"expires_unix_ms")), 0);
	ac_free(&r);
	expect(c, "POST", "/v1/hosts", c->admin, "{\"name\":\"h2\"}", 201);
	expect(c, "POST", "/v1/hosts", c->admin, "{\"name\":\"h3\"}", 201);
	cr_expect_eq(call(c, "POST", "/v1/hosts", c->admin, "{\"name\":\"h1\"}",
			  &r), 409);
	cr_expect_str_eq(ac_code(&r), "CONFLICT");
	ac_free(&r);
	json_t *h = get_json(c, "/v1/hosts/h1", 200);
	cr_expect_str_eq(json_string_value(json_object_get(h, "libvirt_uri")),
			 "test:///default");
	cr_expect(json_is_false(json_object_get(h, "connected")));
	json_decref(h);
	/* Pagination: 2 + 1, the cursor is the last name. */
	json_t *p = get_json(c, "/v1/hosts?limit=2", 200);
	cr_expect_eq(json_array_size(json_object_get(p, "items")), 2);
	cr_expect_str_eq(json_string_value(json_object_get(p, "next")), "h2");
	json_decref(p);
	p = get_json(c, "/v1/hosts?limit=2&after=h2", 200);
	cr_expect_eq(json_array_size(json_object_get(p, "items")), 1);
	cr_expect(json_is_null(json_object_get(p, "next")));
	json_decref(p);
	expect(c, "DELETE", "/v1/hosts/h3", c->admin, NULL, 204);
	expect(c, "GET", "/v1/hosts/h3", c->admin, NULL, 404);
}

static void parts_happy(struct api_client *c)
{
	struct ac_resp r;
	cr_assert_eq(call(c, "POST", "/v1/partitions", c->admin,
			  "{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":"
			  "{\"name\":\"p1\",\"image\":\"hello.elf\"}}", &r),
		     201, "%s", r.raw);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "defined");
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "backend")),
			 "thin");
	ac_free(&r);
	expect(c, "POST", "/v1/partitions", c->admin, "{\"host\":\"h2\","
	       "\"backend\":\"thin\",\"spec\":{\"name\":\"p2\"}}", 201);
	expect(c, "POST", "/v1/partitions", c->admin, "{\"host\":\"h2\","
	       "\"backend\":\"thin\",\"spec\":{\"name\":\"p2\"}}", 409);
	/* h1 is on libvirt's test driver: the whole lifecycle goes through
	 * libvirt for real. */
	expect(c, "POST", "/v1/partitions", c->admin, "{\"host\":\"h1\","
	       "\"backend\":\"libvirt\",\"spec\":{\"name\":\"v1\"}}", 201);
	expect(c, "POST", "/v1/partitions/v1/stop", c->admin, NULL, 409);
	expect(c, "POST", "/v1/partitions/v1/start", c->admin, NULL, 200);
	/* Starting a running partition is a conflict, not libvirt's 502. */
	cr_assert_eq(call(c, "POST", "/v1/partitions/v1/start", c->admin, NULL,
			  &r), 409, "%s", r.raw);
	cr_expect_str_eq(ac_code(&r), "CONFLICT");
	cr_expect(strstr(ac_msg(&r), "running already"), "%s", ac_msg(&r));
	ac_free(&r);
	expect(c, "POST", "/v1/partitions/v1/stop", c->admin, NULL, 200);
	expect(c, "POST", "/v1/partitions/v1/stop", c->admin, NULL, 409);
	expect(c, "DELETE", "/v1/partitions/v1", c->admin, NULL, 204);
	/* h2 has none: refused with a JSON error, nothing stored. */
	int st = call(c, "POST", "/v1/partitions", c->admin,
		      "{\"host\":\"h2\",\"backend\":\"libvirt\",\"spec\":"
		      "{\"name\":\"v2\"}}", &r);
	cr_expect(st >= 400 && st < 500, "libvirt define on h2: %d", st);
	ac_free(&r);
	json_t *p = get_json(c, "/v1/partitions?host=h2", 200);
	cr_expect_eq(json_array_size(json_object_get(p, "items")), 1);
	json_decref(p);
	p = get_json(c, "/v1/partitions/p1", 200);
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_object_get(p, "spec"), "image")),
			 "hello.elf");
	json_decref(p);
	cr_assert_eq(call(c, "POST", "/v1/partitions/p1/stop", c->admin, NULL,
			  &r), 200, "%s", r.raw);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "state")),
			 "stop-requested");
	ac_free(&r);
	expect(c, "POST", "/v1/partitions/p1/stop", c->admin, NULL, 409);
	expect(c, "POST", "/v1/partitions/p1/start", c->admin, NULL, 200);
	expect(c, "POST", "/v1/partitions/p1/start", c->admin, NULL, 409);
	expect(c, "POST", "/v1/partitions/nope/start", c->admin, NULL, 404);
	expect(c, "DELETE", "/v1/hosts/h1", c->admin, NULL, 409);
}

static void grants_happy(struct api_client *c)
{
	struct ac_resp r;
	cr_assert_eq(call(c, "POST", "/v1/grants", c->admin,
			  "{\"channel\":\"tel\",\"endpoint_a\":\"p1\","
			  "\"endpoint_b\":\"p2\",\"direction\":\"a_to_b\","
			  "\"ring_bytes\":\"64K\"}", &r), 201, "%s", r.raw);
	cr_expect_eq(json_integer_value(json_object_get(r.json,
							"policy_version")), 1);
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(r.json, "grant"), "ring_bytes")),
		     65536);
	ac_free(&r);
	json_t *g = get_json(c, "/v1/grants", 200);
	cr_expect_eq(json_array_size(json_object_get(g, "items")), 1);
	json_decref(g);
	g = get_json(c, "/v1/policy", 200);
	cr_expect_eq(json_integer_value(json_object_get(g, "version")), 1);
	cr_expect_eq(json_array_size(json_object_get(g, "hosts")), 2);
	json_decref(g);
	expect(c, "DELETE", "/v1/partitions/p1", c->admin, NULL, 409);
	cr_assert_eq(call(c, "DELETE", "/v1/grants/tel", c->admin, NULL, &r),
		     200);
	cr_expect_eq(json_integer_value(json_object_get(r.json,
							"policy_version")), 2);
	ac_free(&r);
	expect(c, "DELETE", "/v1/grants/tel", c->admin, NULL, 404);
}

/* One byte too long for a name (STORE_NAME_MAX - 1 is the most). */
#define LONG_NAME "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void baselines_happy(struct api_client *c)
{
	struct ac_resp r;
	cr_assert_eq(call(c, "PUT", "/v1/baselines/p1", c->admin,
			  "{\"digest\":\"" HEX64 "\",\"files\":{\"motd\":\""
			  HEX64 "\"},\"segments\":[\"" HEX64 "\"]}", &r), 200,
		     "%s", r.raw);
	cr_expect(json_is_true(json_object_get(r.json, "golden")));
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_object_get(r.json, "files"), "motd")),
			 HEX64);
	ac_free(&r);
	json_t *b = get_json(c, "/v1/baselines", 200);
	cr_expect_eq(json_array_size(json_object_get(b, "items")), 1);
	json_decref(b);
	b = get_json(c, "/v1/baselines/p1", 200);
	cr_expect_str_eq(json_string_value(json_object_get(b, "digest")), HEX64);
	json_decref(b);
	expect(c, "DELETE", "/v1/baselines/p1", c->admin, NULL, 204);
	expect(c, "GET", "/v1/baselines/p1", c->admin, NULL, 404);
	b = get_json(c, "/v1/measurements?host=h1", 200);
	cr_expect_eq(json_array_size(json_object_get(b, "items")), 0);
	json_decref(b);
}

/* The reason of every item of a /v1/audit page, comma-separated, and its
 * next cursor ("" when null). */
static void audit_reasons(struct api_client *c, const char *path, char *out,
			  size_t cap, char *next, size_t ncap)
{
	json_t *a = get_json(c, path, 200);
	json_t *items = json_object_get(a, "items"), *it;
	size_t i, n = 0;
	out[0] = 0;
	json_array_foreach(items, i, it)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "",
				      json_string_value(json_object_get(it,
								 "reason")));
	const char *nx = json_string_value(json_object_get(a, "next"));
	snprintf(next, ncap, "%s", nx ? nx : "");
	json_decref(a);
}

/* Filters by reason, partition and time, newest first and paged by
 * before; a page is full when that many rows match, however many rows
 * between them do not. */
static void audit_filters(struct api_client *c)
{
	struct store *s = fd_store(&c->f);
	struct store_audit_in ev[40];
	for (int i = 0; i < 40; i++)
		ev[i] = (struct store_audit_in){
			.host = "h3", .event = "open_denied",
			.partition = i % 10 ? "p9" : "p8",
			.reason = i % 10 ? "NO_GRANT" : "QUOTA",
			.time_ms = 1000 + i };
	cr_assert_eq(store_audit_append(s, ev, 40, NULL, NULL), 0);
	store_close(s);
	char got[512], next[32], path[256];
	audit_reasons(c, "/v1/audit?reason=QUOTA&limit=1000", got,
		      sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "QUOTA,QUOTA,QUOTA,QUOTA");
	cr_expect_str_eq(next, "");
	/* Two a page, newest first, the cursor in before. */
	audit_reasons(c, "/v1/audit?partition=p8&order=desc&limit=2", got,
		      sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "QUOTA,QUOTA");
	cr_assert_neq(next[0], 0);
	snprintf(path, sizeof(path),
		 "/v1/audit?partition=p8&order=desc&limit=2&before=%s", next);
	audit_reasons(c, path, got, sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "QUOTA,QUOTA");
	snprintf(path, sizeof(path),
		 "/v1/audit?partition=p8&order=desc&limit=2&before=%s", next);
	audit_reasons(c, path, got, sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "");
	/* Times 1010..1019 inclusive: ten rows, one of them QUOTA. */
	audit_reasons(c, "/v1/audit?host=h3&since_ms=1010&until_ms=1019", got,
		      sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "QUOTA,NO_GRANT,NO_GRANT,NO_GRANT,NO_GRANT,"
		       "NO_GRANT,NO_GRANT,NO_GRANT,NO_GRANT,NO_GRANT");
	audit_reasons(c, "/v1/audit?event=open_denied&reason=QUOTA&"
		      "partition=p9", got, sizeof(got), next, sizeof(next));
	cr_expect_str_eq(got, "");
}

static void audit_happy(struct api_client *c)
{
	struct store *s = fd_store(&c->f);
	struct store_audit_in ev[3] = {
		{ .host = "h1", .event = "open_denied", .partition = "p1",
		  .reason = "NO_GRANT" },
		{ .host = "h2", .event = "open_allowed", .partition = "p2" },
		{ .host = "h1", .event = "open_denied", .partition = "p1",
		  .reason = "INTEGRITY" },
	};
	cr_assert_eq(store_audit_append(s, ev, 3, NULL, NULL), 0);
	store_close(s);
	json_t *a = get_json(c, "/v1/audit?host=h1&event=open_denied&limit=1",
			     200);
	json_t *items = json_object_get(a, "items");
	cr_assert_eq(json_array_size(items), 1);
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_array_get(items, 0), "reason")), "NO_GRANT");
	char path[128];
	snprintf(path, sizeof(path),
		 "/v1/audit?host=h1&event=open_denied&after=%s",
		 json_string_value(json_object_get(a, "next")));
	json_decref(a);
	a = get_json(c, path, 200);
	items = json_object_get(a, "items");
	cr_assert_eq(json_array_size(items), 1);
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_array_get(items, 0), "reason")), "INTEGRITY");
	json_decref(a);
	struct ac_resp r;
	cr_assert_eq(call(c, "POST", "/v1/audit/verify", c->admin, NULL, &r),
		     200);
	cr_expect(json_is_true(json_object_get(r.json, "ok")));
	/* three appended here, and the libvirt partition's lifecycle */
	cr_expect_geq(json_integer_value(json_object_get(r.json, "rows")), 3);
	ac_free(&r);
	cr_assert_eq(call(c, "GET", "/metrics", c->admin, NULL, &r), 200);
	cr_expect(strstr(r.body, "parley_audit_events_total{reason=\"NO_GRANT\"} 1"),
		  "%s", r.body);
	cr_expect(strstr(r.body, "parley_agents_connected 0"), "%s", r.body);
	cr_expect(strstr(r.body, "parley_policy_version 2"), "%s", r.body);
	cr_expect(strstr(r.body, "parley_api_request_duration_seconds_bucket{le=\"0.25\"}"),
		  "%s", r.body);
	cr_expect(strstr(r.body, "parley_api_requests_total{class=\"4xx\"}"),
		  "%s", r.body);
	ac_free(&r);
	audit_filters(c);
}

Test(api, every_route_happy_path, .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	hosts_happy(&c);
	parts_happy(&c);
	grants_happy(&c);
	baselines_happy(&c);
	audit_happy(&c);
	expect(&c, "DELETE", "/v1/partitions/p1", c.admin, NULL, 204);
	expect(&c, "GET", "/v1/partitions/p1", c.admin, NULL, 404);
	ac_stop(&c);
}

/* ---- hostile requests ---- */

struct hostile {
	const char *method, *path, *body;
	int status;
	const char *code, *msg;     /* msg: a substring of error.message */
};

static const struct hostile hostile[] = {
	{ "POST", "/v1/hosts", "{\"name\":", 400, "BAD_REQUEST",
	  "invalid JSON" },
	{ "POST", "/v1/hosts", "{\"name\":\"h9\"", 400, "BAD_REQUEST",
	  "invalid JSON" },
	{ "POST", "/v1/hosts", "", 400, "BAD_REQUEST", "invalid JSON" },
	{ "POST", "/v1/hosts", "[1,2]", 400, "BAD_REQUEST", "expected an object" },
	{ "POST", "/v1/hosts", "{\"name\":\"h9\",\"name\":\"h8\"}", 400,
	  "BAD_REQUEST", "duplicate" },
	{ "POST", "/v1/hosts", "{\"name\":\"h9\",\"colour\":1}", 400,
	  "BAD_REQUEST", "unknown field \"colour\"" },
	{ "POST", "/v1/hosts", "{\"name\":7}", 400, "BAD_REQUEST",
	  "name: expected a string" },
	{ "POST", "/v1/hosts", "{\"name\":\"h9\",\"libvirt_uri\":[]}", 400,
	  "BAD_REQUEST", "libvirt_uri: expected a string" },
	{ "POST", "/v1/hosts", "{\"name\":\"../etc\"}", 400, "BAD_REQUEST",
	  "name: \"../etc\" is not a valid name" },
	{ "POST", "/v1/hosts", "{\"name\":\"-x\"}", 400, "BAD_REQUEST",
	  "not a valid name" },
	{ "POST", "/v1/hosts", "{\"name\":\"a\\u0000b\"}", 400, "BAD_REQUEST",
	  "invalid JSON" },
	{ "POST", "/v1/hosts", "{}", 400, "BAD_REQUEST", "name: (missing)" },
	{ "POST", "/v1/hosts", "{\"name\":\"h9\",\"libvirt_uri\":\"a b\"}",
	  400, "BAD_REQUEST", "" },
	{ "GET", "/v1/hosts/%2e%2e", NULL, 400, "BAD_REQUEST",
	  "not a valid name" },
	{ "GET", "/v1/hosts?limit=0", NULL, 400, "BAD_REQUEST",
	  "limit: \"0\" is not 1..1000" },
	{ "GET", "/v1/hosts?limit=1001", NULL, 400, "BAD_REQUEST", "limit" },
	{ "GET", "/v1/hosts?limit=-1", NULL, 400, "BAD_REQUEST", "limit" },
	{ "GET", "/v1/hosts?after=%00", NULL, 400, "BAD_REQUEST", "after" },
	{ "GET", "/v1/audit?after=x", NULL, 400, "BAD_REQUEST", "after" },
	{ "GET", "/v1/audit?since_ms=-5", NULL, 400, "BAD_REQUEST", "since_ms" },
	/* The audit filters (applied by the store's query). */
	{ "GET", "/v1/audit?since_ms=yesterday", NULL, 400, "BAD_REQUEST",
	  "since_ms: \"yesterday\" is not a non-negative integer" },
	{ "GET", "/v1/audit?until_ms=99999999999999999999", NULL, 400,
	  "BAD_REQUEST", "until_ms" },
	{ "GET", "/v1/audit?since_ms=20&until_ms=10", NULL, 400, "BAD_REQUEST",
	  "since_ms 20 is after until_ms 10" },
	{ "GET", "/v1/audit?before=-1", NULL, 400, "BAD_REQUEST", "before" },
	{ "GET", "/v1/audit?partition=" LONG_NAME, NULL, 400, "BAD_REQUEST",
	  "partition: " },
	{ "GET", "/v1/audit?reason=a%20b", NULL, 400, "BAD_REQUEST",
	  "reason: \"a b\" is not a valid name" },
	{ "GET", "/v1/audit?event=", NULL, 400, "BAD_REQUEST", "event: " },
	{ "GET", "/v1/audit?colour=red", NULL, 400, "BAD_REQUEST",
	  "unknown parameter \"colour\"" },
	{ "GET", "/v1/audit?Partition=p1", NULL, 400, "BAD_REQUEST",
	  "unknown parameter \"Partition\"" },
	{ "GET", "/v1/audit?event=a&event=b", NULL, 400, "BAD_REQUEST",
	  "parameter \"event\" given twice" },
	{ "GET", "/v1/audit?order=sideways", NULL, 400, "BAD_REQUEST",
	  "order: asc or desc" },
	{ "POST", "/v1/tokens", "{\"scope\":\"root\"}", 400, "BAD_REQUEST",
	  "scope" },
	{ "POST", "/v1/tokens", "{\"scope\":\"read\",\"name\":\"a/b\"}", 400,
	  "BAD_REQUEST", "name" },
	{ "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":\"qemu\","
	  "\"spec\":{\"name\":\"p\"}}", 400, "BAD_REQUEST", "backend" },
	{ "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":\"thin\","
	  "\"spec\":\"p\"}", 400, "BAD_REQUEST", "spec: expected an object" },
	{ "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":\"thin\","
	  "\"spec\":{\"name\":\"p\",\"evil\":1}}", 400, "BAD_REQUEST",
	  "spec: unknown field \"evil\"" },
	{ "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":\"thin\","
	  "\"spec\":{\"name\":\"\"}}", 400, "BAD_REQUEST", "spec.name" },
	{ "POST", "/v1/partitions", "{\"host\":\"nohost\",\"backend\":\"thin\","
	  "\"spec\":{\"name\":\"p\"}}", 404, "NOT_FOUND", "nohost" },
	/* A libvirt spec's config entry without its path: json_typeof(NULL)
	 * in the message took parleyd down (found by fuzz/fuzz_api.c). */
	{ "POST", "/v1/partitions", "{\"host\":\"h1\",\"backend\":"
	  "\"libvirt\",\"spec\":{\"name\":\"v9\",\"config\":[{\"name\":"
	  "\"motd\"}]}}", 400, "BAD_REQUEST",
	  "config[].path: expected a string, got nothing" },
	{ "POST", "/v1/grants", "{\"channel\":\"c\",\"endpoint_a\":\"p1\","
	  "\"endpoint_b\":\"p2\",\"direction\":\"both\",\"ring_bytes\":3000}",
	  400, "BAD_REQUEST", "ring_bytes: 3000 is not a power of two" },
	{ "POST", "/v1/grants", "{\"channel\":\"c\",\"endpoint_a\":\"p1\","
	  "\"endpoint_b\":\"p2\",\"direction\":\"sideways\",\"ring_bytes\":4096}",
	  400, "BAD_REQUEST", "direction" },
	{ "POST", "/v1/grants", "{\"channel\":\"c\",\"endpoint_a\":\"p1\","
	  "\"endpoint_b\":\"p2\",\"direction\":\"both\",\"ring_bytes\":4096,"
	  "\"require_integrity\":\"yes\"}", 400, "BAD_REQUEST",
	  "require_integrity: expected a boolean" },
	{ "POST", "/v1/grants", "{\"channel\":\"c\"}", 400, "BAD_REQUEST",
	  "grant (\"c\").endpoint_a: missing" },
	{ "PUT", "/v1/baselines/p1", "{\"digest\":\"abc\"}", 400,
	  "BAD_REQUEST", "digest: expected 64 hex digits" },
	{ "PUT", "/v1/baselines/p1", "{\"digest\":\"" HEX64 "\",\"files\":[]}",
	  400, "BAD_REQUEST", "files: expected an object" },
	{ "PUT", "/v1/baselines/p1", "{\"digest\":\"zz" HEX64 "\"}", 400,
	  "BAD_REQUEST", "digest" },
	{ "GET", "/v1/nothing", NULL, 404, "NOT_FOUND", "no such route" },
	{ "GET", "/v1/hosts/a/b", NULL, 404, "NOT_FOUND", "no such route" },
	{ "GET", "/", NULL, 404, "NOT_FOUND", "" },
	{ "PATCH", "/v1/hosts", NULL, 405, "METHOD_NOT_ALLOWED", "" },
	{ "DELETE", "/v1/hosts", NULL, 405, "METHOD_NOT_ALLOWED", "" },
	{ "PUT", "/v1/grants", "{}", 405, "METHOD_NOT_ALLOWED", "" },
	{ "GET", "/v1/partitions/p1/start", NULL, 405, "METHOD_NOT_ALLOWED", "" },
	{ "DELETE", "/v1/hosts/nohost", NULL, 404, "NOT_FOUND", "nohost" },
	{ "DELETE", "/v1/grants/nochan", NULL, 404, "NOT_FOUND", "nochan" },
};

static void raw_expect(struct api_client *c, const char *req, size_t len,
		       int status, const char *what)
{
	struct ac_resp r;
	ac_raw(c->port, req, len, &r);
	cr_expect_eq(r.status, status, "%s: %d, want %d: %.200s", what,
		     r.status, status, r.raw);
	ac_free(&r);
}

/* Bodies and headers too large, and broken HTTP. */
static void oversized(struct api_client *c)
{
	size_t n = API_BODY_MAX + 100;
	char *body = malloc(n + 1);
	memset(body, ' ', n);
	body[0] = '{';
	memcpy(body + n - 1, "}", 2);
	struct ac_resp r;
	cr_expect_eq(call(c, "POST", "/v1/hosts", c->admin, body, &r), 413);
	cr_expect_str_eq(ac_code(&r), "TOO_LARGE");
	ac_free(&r);
	free(body);
	/* Far beyond: the gate refuses it from Content-Length, before
	 * buffering it (test_api_http.c has the rest of these). */
	n = 4u << 20;
	body = malloc(n + 1);
	memset(body, ' ', n);
	body[n] = '\0';
	cr_expect_eq(call(c, "POST", "/v1/hosts", c->admin, body, &r), 413,
		     "%.200s", r.raw);
	cr_expect_str_eq(ac_code(&r), "TOO_LARGE");
	ac_free(&r);
	free(body);
	size_t hl = 64 * 1024;
	char *req = malloc(hl + 128);
	int k = snprintf(req, hl + 128, "GET /v1/hosts HTTP/1.1\r\nX-Big: ");
	memset(req + k, 'a', hl);
	memcpy(req + k + hl, "\r\n\r\n", 5);
	ac_raw(c->port, req, strlen(req), &r);
	cr_expect_eq(r.status, 431, "huge header: %.200s", r.raw);
	cr_expect_str_eq(ac_code(&r), "HEADERS_TOO_LARGE");
	ac_free(&r);
	free(req);
	raw_expect(c, "BLAH\r\n\r\n", 8, 400, "garbage request line");
	raw_expect(c, "", 0, 0, "nothing at all");
	const char cl[] = "POST /v1/hosts HTTP/1.1\r\nContent-Length: -5\r\n"
			  "\r\n";
	raw_expect(c, cl, sizeof(cl) - 1, 400, "negative length");
}

Test(api, hostile_requests, .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	expect(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", 201);
	expect(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h2\"}", 201);
	expect(&c, "POST", "/v1/partitions", c.admin, "{\"host\":\"h1\","
	       "\"backend\":\"thin\",\"spec\":{\"name\":\"p1\"}}", 201);
	expect(&c, "POST", "/v1/partitions", c.admin, "{\"host\":\"h2\","
	       "\"backend\":\"thin\",\"spec\":{\"name\":\"p2\"}}", 201);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(*hostile); i++) {
		const struct hostile *h = &hostile[i];
		struct ac_resp r;
		int got = call(&c, h->method, h->path, c.admin, h->body, &r);
		cr_expect_eq(got, h->status, "[%zu] %s %s: %d, want %d: %s", i,
			     h->method, h->path, got, h->status, r.raw);
		cr_expect_str_eq(ac_code(&r), h->code, "[%zu] %s %s: %s", i,
				 h->method, h->path, r.raw);
		cr_expect(strstr(ac_msg(&r), h->msg), "[%zu] %s %s: \"%s\" not "
			  "in \"%s\"", i, h->method, h->path, h->msg, ac_msg(&r));
		ac_free(&r);
	}
	oversized(&c);
	struct ac_resp r;
	cr_expect_eq(call(&c, "GET", "/healthz", NULL, NULL, &r), 200,
		     "still alive");
	ac_free(&r);
	expect(&c, "GET", "/v1/hosts/h1", c.admin, NULL, 200);
	ac_stop(&c);
}

/* ---- the hooks, with the server in this process ---- */

#include <pthread.h>
#include <stdatomic.h>

/* Keeps the real orchestrator's contract (daemon/orch.h): define stores
 * the row, destroy deletes it, libvirt's refusals are ORCH_ELIBVIRT. */
struct fake_orch {
	int defined, started, stopped, destroyed, thin;
	bool fail;                  /* every orch_* call fails, as libvirt */
	struct store *s;
};

static int fo_define(void *ctx, const char *host, const char *name,
		     const char *spec, struct parley_err *err)
{
	struct fake_orch *o = ctx;
	if (o->fail)
		return perr(err, -EREMOTEIO, "virDomainDefineXML: %s: no luck",
			    name);
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_LIBVIRT,
				    .spec_json = spec, .spec_len = strlen(spec),
				    .state = "defined" };
	o->defined++;
	return store_partition_put(o->s, &in, NULL, err);
}

#define FO_STEP(fn, field)                                                \
	static int fn(void *ctx, const char *name, struct parley_err *err) \
	{                                                                 \
		struct fake_orch *o = ctx;                                \
		if (o->fail)                                              \
			return perr(err, -EREMOTEIO, #fn ": %s: no luck",  \
				    name);                                \
		o->field++;                                               \
		return 0;                                                 \
	}
FO_STEP(fo_start, started)
FO_STEP(fo_stop, stopped)

static int fo_destroy(void *ctx, const char *name, struct parley_err *err)
{
	struct fake_orch *o = ctx;
	if (o->fail)
		return perr(err, -EREMOTEIO, "fo_destroy: %s: no luck", name);
	o->destroyed++;
	return store_partition_delete(o->s, name, err);
}

static void fo_thin(void *ctx, const char *host)
{
	(void)host;
	((struct fake_orch *)ctx)->thin++;
}

/* Without evthread, loopbreak from another thread would not wake the
 * loop: it polls this flag instead. */
static _Atomic bool loop_stop;

static void loop_tick(evutil_socket_t fd, short what, void *base)
{
	(void)fd;
	(void)what;
	if (loop_stop)
		event_base_loopbreak(base);
}

static void *loop(void *base)
{
	event_base_dispatch(base);
	return NULL;
}

Test(api, libvirt_hooks, .timeout = 60)
{
	char *dir;
	struct store *s = tmp_store(&dir);
	struct fake_orch o = { .s = s };
	struct event_base *base = event_base_new();
	static struct api_server a;
	a = (struct api_server){ .base = base, .store = s, .state_dir = dir,
		.hooks = { .ctx = &o, .orch_define = fo_define,
			   .orch_start = fo_start, .orch_stop = fo_stop,
			   .orch_destroy = fo_destroy,
			   .thin_changed = fo_thin } };
	struct parley_err err = { 0 };
	cr_assert_eq(api_start(&a, "127.0.0.1", 0, &err), 0, "%s",
		     perr_msg(&err));
	struct api_client c = { .port = a.port };
	char path[700];
	snprintf(path, sizeof(path), "%s/admin.token", dir);
	FILE *f = fopen(path, "r");
	cr_assert(f && fgets(c.admin, sizeof(c.admin), f));
	fclose(f);
	c.admin[strcspn(c.admin, "\n")] = '\0';
	/* The loop owns the store from here until it stops. */
	pthread_t t;
	struct event *keep = event_new(base, -1, EV_PERSIST, loop_tick, base);
	struct timeval tv = { 0, 10000 };
	event_add(keep, &tv);
	pthread_create(&t, NULL, loop, base);

	expect(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", 201);
	const char *vm = "{\"host\":\"h1\",\"backend\":\"libvirt\",\"spec\":"
			 "{\"name\":\"vm1\"}}";
	expect(&c, "POST", "/v1/partitions", c.admin, vm, 201);
	expect(&c, "POST", "/v1/partitions/vm1/start", c.admin, NULL, 200);
	expect(&c, "POST", "/v1/partitions/vm1/stop", c.admin, NULL, 200);
	expect(&c, "POST", "/v1/partitions", c.admin, "{\"host\":\"h1\","
	       "\"backend\":\"thin\",\"spec\":{\"name\":\"t1\"}}", 201);
	o.fail = true;
	struct ac_resp r;
	cr_expect_eq(call(&c, "POST", "/v1/partitions/vm1/start", c.admin,
			  NULL, &r), 502);
	cr_expect_str_eq(ac_code(&r), "LIBVIRT");
	cr_expect(strstr(ac_msg(&r), "no luck"), "%s", ac_msg(&r));
	ac_free(&r);
	cr_expect_eq(call(&c, "POST", "/v1/partitions", c.admin,
			  "{\"host\":\"h1\",\"backend\":\"libvirt\",\"spec\":"
			  "{\"name\":\"vm2\"}}", &r), 502);
	ac_free(&r);
	/* A refused define leaves no row behind. */
	expect(&c, "GET", "/v1/partitions/vm2", c.admin, NULL, 404);
	o.fail = false;
	expect(&c, "DELETE", "/v1/partitions/vm1", c.admin, NULL, 204);

	loop_stop = true;
	pthread_join(t, NULL);
	cr_expect_eq(o.defined, 1);
	cr_expect_eq(o.started, 1);
	cr_expect_eq(o.stopped, 1);
	cr_expect_eq(o.destroyed, 1);
	/* thin_changed after each committed define, libvirt ones too (their
	 * agent measures their files); not after the refused one. */
	cr_expect_eq(o.thin, 2);
	cr_expect_eq(a.metrics.by_class[2], 6);
	cr_expect_eq(a.metrics.by_class[4], 1);
	cr_expect_eq(a.metrics.by_class[5], 2);
	event_free(keep);
	api_stop(&a);
	event_base_free(base);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}
