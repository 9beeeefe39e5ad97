/* daemon/rpc/openapi.json cannot drift: every route of api.c's table is in
 * it with its scope and no other; parleyd serves exactly that file; and a
 * real parleyd's answers to a call of every operation (its success and
 * its errors) each have a documented status and a body valid against the
 * documented schema (tests/helpers/jschema.c). */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <parley/abi.h>

#include "common/pki.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "common/version.h"
#include "daemon/rpc/api_int.h"
#include "db/store_updates.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/jschema.h"

#define HEX64 "00112233445566778899aabbccddeeff" \
	"00112233445566778899aabbccddeeff"

static json_t *load_doc(void)
{
	json_error_t e;
	json_t *d = json_load_file(PARLEY_SOURCE_DIR "/daemon/rpc/openapi.json",
				   JSON_REJECT_DUPLICATES, &e);
	cr_assert(d, "openapi.json: %s line %d", e.text, e.line);
	return d;
}

/* A path "/v1/hosts/{name}" as api.c writes it, the segment a star. */
static void to_pattern(const char *path, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = path; *p && n + 1 < cap; p++) {
		if (*p == '{') {
			out[n++] = '*';
			p = strchr(p, '}');
			cr_assert(p, "%s", path);
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

static void lower(const char *s, char *out, size_t cap)
{
	size_t i = 0;
	for (; s[i] && i + 1 < cap; i++)
		out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
	out[i] = '\0';
}

/* The operation documented for method and pattern, or NULL. */
static json_t *operation(json_t *doc, const char *method, const char *pat)
{
	const char *path;
	json_t *item;
	char m[16], p[256];
	lower(method, m, sizeof(m));
	json_object_foreach(json_object_get(doc, "paths"), path, item) {
		to_pattern(path, p, sizeof(p));
		if (!strcmp(p, pat))
			return json_object_get(item, m);
	}
	return NULL;
}

/* The routes whose handler reads a request body. */
static bool body_route(const char *method, const char *pat)
{
	static const char *const with_body[] = {
		"POST /v1/hosts", "POST /v1/hosts/*/update",
		"POST /v1/hosts/*/rollback",
		"POST /v1/partitions", "POST /v1/grants", "POST /v1/segsets",
		"POST /v1/services", "PUT /v1/baselines/*", "POST /v1/tokens",
	};
	char key[300];
	snprintf(key, sizeof(key), "%s %s", method, pat);
	for (size_t i = 0; i < sizeof(with_body) / sizeof(*with_body); i++)
		if (!strcmp(key, with_body[i]))
			return true;
	return false;
}

Test(api_openapi, document_and_route_table_agree)
{
	json_t *doc = load_doc();
	cr_expect_str_eq(json_string_value(json_object_get(doc, "openapi")),
			 "3.1.0");
	const char *method, *pat, *scope;
	unsigned routes = 0;
	for (size_t i = 0; api_route_info(i, &method, &pat, &scope); i++) {
		routes++;
		json_t *op = operation(doc, method, pat);
		cr_expect(op, "%s %s is not in openapi.json", method, pat);
		if (!op)
			continue;
		cr_expect_str_eq(json_string_value(json_object_get(
			op, "x-parley-scope")) ?: "", scope, "%s %s", method,
			pat);
		/* Every operation documents 401 but the open one. */
		json_t *res = json_object_get(op, "responses");
		cr_expect(!strcmp(scope, "none") || json_object_get(res, "401"),
			  "%s %s: 401 undocumented", method, pat);
		if (!strcmp(scope, "admin"))
			cr_expect(json_object_get(res, "403"),
				  "%s %s: 403 undocumented", method, pat);
		/* api_fail's last resort, and api.c's own. */
		cr_expect(json_object_get(res, "500"),
			  "%s %s: 500 undocumented", method, pat);
		/* A change (api.c's is_change): the store busy (503), its
		 * conflicts (api_fail: 409). */
		if (strcmp(method, "GET") && strcmp(pat, "/v1/audit/verify"))
			cr_expect(json_object_get(res, "503") &&
					  json_object_get(res, "409"),
				  "%s %s: 503/409 undocumented", method, pat);
		/* A body read by api_body (or the update's octets): 413. */
		if (body_route(method, pat))
			cr_expect(json_object_get(res, "413"),
				  "%s %s: 413 undocumented", method, pat);
	}
	/* And nothing more: each documented operation is a route. */
	const char *path;
	json_t *item;
	unsigned ops = 0;
	json_object_foreach(json_object_get(doc, "paths"), path, item) {
		const char *m;
		json_t *op;
		char pp[256];
		to_pattern(path, pp, sizeof(pp));
		json_object_foreach(item, m, op) {
			ops++;
			bool found = false;
			for (size_t i = 0; api_route_info(i, &method, &pat,
							  &scope); i++) {
				char lm[16];
				lower(method, lm, sizeof(lm));
				found |= !strcmp(lm, m) && !strcmp(pat, pp);
			}
			cr_expect(found, "openapi.json: %s %s is no route", m,
				  path);
		}
	}
	cr_expect_eq(ops, routes);
	json_decref(doc);
}

/* ---- real answers against the document -------------------------------- */

struct run {
	struct api_client c;
	json_t *doc;
	json_t *seen;      /* "METHOD pattern" -> [statuses] */
};

/* One answer r (freed here): its status documented for the operation,
 * its JSON body valid against that status's schema. Returns the body
 * parsed (a new reference, NULL if not JSON). */
static json_t *judge(struct run *t, const char *method, const char *pat,
		     const char *target, struct ac_resp r, int want)
{
	cr_expect_eq(r.status, want, "%s %s: %.400s", method, target, r.raw);
	json_t *op = operation(t->doc, method, pat);
	cr_assert(op, "%s %s undocumented", method, pat);
	char st[8];
	snprintf(st, sizeof(st), "%d", r.status);
	json_t *resp = json_object_get(json_object_get(op, "responses"), st);
	cr_expect(resp, "%s %s: status %d undocumented", method, pat,
		  r.status);
	if (resp && json_object_get(resp, "$ref"))
		resp = json_object_get(json_object_get(json_object_get(
			t->doc, "components"), "responses"), "Error");
	json_t *content = json_object_get(resp, "content");
	json_t *js = json_object_get(json_object_get(content,
						     "application/json"),
				     "schema");
	if (r.status == 204) {
		cr_expect(!content && !(r.body && r.body[0]), "%s %s", method,
			  target);
	} else if (js) {
		char why[512];
		cr_expect(r.json, "%s %s: not JSON", method, target);
		cr_expect(strcasestr(r.raw, "Content-Type: application/json"),
			  "%s %s", method, target);
		if (r.json)
			cr_expect(js_valid(t->doc, js, r.json, "", why,
					   sizeof(why)),
				  "%s %s -> %d: %s\n%.600s", method, target,
				  r.status, why, r.body);
	} else if (resp) {
		cr_expect(content, "%s %s: no content documented", method,
			  pat);
	}
	char key[300];
	snprintf(key, sizeof(key), "%s %s", method, pat);
	json_t *l = json_object_get(t->seen, key);
	if (!l)
		json_object_set_new(t->seen, key, l = json_array());
	json_array_append_new(l, json_integer(r.status));
	json_t *got = json_incref(r.json);
	ac_free(&r);
	return got;
}

/* One JSON call (body NULL: none), judged. */
static json_t *check_json(struct run *t, const char *method, const char *pat,
			  const char *target, const char *token,
			  const char *body, int want)
{
	struct ac_resp r;
	ac_call(&t->c, method, target, token, body, &r);
	return judge(t, method, pat, target, r, want);
}

static void check(struct run *t, const char *method, const char *pat,
		  const char *target, const char *token, const char *body,
		  int want)
{
	json_decref(check_json(t, method, pat, target, token, body, want));
}

/* POST /v1/hosts/HOST/update with these bytes as they are and this
 * Content-Type, judged. The request body is not validated: it is not
 * JSON (jschema checks JSON only). */
static void check_update(struct run *t, const char *host, const char *token,
			 const char *ctype, const void *body, size_t len,
			 int want)
{
	char target[128];
	snprintf(target, sizeof(target), "/v1/hosts/%s/update", host);
	size_t cap = len + 1024;
	char *req = malloc(cap);
	cr_assert(req);
	int n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Connection: close\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
			 target, token, ctype, len);
	memcpy(req + n, body, len);
	struct ac_resp r;
	ac_raw(t->c.port, req, (size_t)n + len, &r);
	free(req);
	json_decref(judge(t, "POST", "/v1/hosts/*/update", target, r, want));
}

/* An agent package one minor version newer than this build, signed with
 * key (NULL: unsigned). Its two files are a few bytes: the daemon checks
 * the manifest, hashes and signature, never runs them (the real
 * programs' way through an agent is tests/test_update_daemon.c's). */
static uint8_t *package(EVP_PKEY *key, size_t *len)
{
	static const uint8_t agent[] = "not run: the daemon only stores it";
	static const uint8_t vmm[] = "nor this";
	struct updpkg_running run;
	updpkg_running_self(&run);
	char ver[32], abi_max[16];
	snprintf(ver, sizeof(ver), "%u.%u.%u", run.version.v[0],
		 run.version.v[1] + 1, run.version.v[2]);
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct updpkg_input in[] = { { "parley-agent", agent, sizeof(agent) },
				     { "parley-vmm", vmm, sizeof(vmm) } };
	uint8_t *pkg;
	struct parley_err err = { 0 };
	cr_assert_eq(updpkg_build(ver, "0.0.0", "1.0", abi_max, in, 2, &pkg,
				  len, &err), 0, "%s", perr_msg(&err));
	if (key)
		cr_assert_eq(updpkg_sign(pkg, *len, key, &err), 0, "%s",
			     perr_msg(&err));
	return pkg;
}

/* A set of p1 and p3 (both on h1): a ring p1 writes, a page the agent
 * writes and p3 reads. */
#define SET_BUS                                                              \
	"{\"name\":\"bus\",\"members\":[\"p1\",\"p3\"],\"segments\":["     \
	"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"p1\",\"size\":"  \
	"\"64K\"},{\"name\":\"st\",\"kind\":\"area\",\"writer\":\"agent\"," \
	"\"size\":4096,\"readers\":[\"p3\"]}]}"

/* A JSON object a little over the API's body limit (413). */
static char *big_body(void)
{
	size_t n = API_BODY_MAX + 100;
	char *b = malloc(n + 1);
	cr_assert(b);
	memset(b, ' ', n);
	b[0] = '{';
	memcpy(b + n - 1, "}", 2);
	return b;
}

/* Agent updates against h1 (h2 never said hello): each refusal the
 * handler gives, then the success, and the Host fields it shows before
 * and after. The release key is written where parleyd reads it
 * (STATE/release.pub); the version h1's agent said hello with is set in
 * the store as the link records it (store_host_agent_set), as
 * tests/test_update_daemon.c's refusal test does. */
static void exercise_update(struct run *t, const char *R)
{
	const char *A = t->c.admin, *oct = "application/octet-stream";
	struct parley_err err = { 0 };
	EVP_PKEY *rel = NULL, *other = NULL;
	cr_assert_eq(pki_key_new(&rel, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(pki_key_new(&other, &err), 0, "%s", perr_msg(&err));
	size_t len, olen, ulen;
	uint8_t *good = package(rel, &len), *oth = package(other, &olen);
	uint8_t *unsig = package(NULL, &ulen);

	/* Never said hello: no agent_version yet, no update. */
	json_t *h = check_json(t, "GET", "/v1/hosts/*", "/v1/hosts/h1", R,
			       NULL, 200);
	cr_expect_str_eq(json_string_value(json_object_get(h,
				"agent_version")) ?: "?", "");
	cr_expect(json_is_null(json_object_get(h, "update")));
	cr_expect(json_is_null(json_object_get(h, "update_state")));
	json_decref(h);

	check_update(t, "h1", A, oct, good, len, 409);    /* no release.pub */
	char pub[700];
	snprintf(pub, sizeof(pub), "%s/release.pub", t->c.f.dir);
	cr_assert_eq(sign_write_pub(pub, rel, &err), 0, "%s", perr_msg(&err));
	struct store *s = fd_store(&t->c.f);
	cr_assert_eq(store_host_agent_set(s, "h1", parley_version(), &err), 0,
		     "%s", perr_msg(&err));
	store_close(s);

	check_update(t, "h2", A, oct, good, len, 409);    /* no hello */
	check_update(t, "nope", A, oct, good, len, 404);
	check_update(t, "%2e%2e", A, oct, good, len, 400);
	check_update(t, "h1", R, oct, good, len, 403);
	check_update(t, "h1", A, "application/json", "{}", 2, 415);
	char *big = big_body(); /* not octets: the JSON cap */
	check_update(t, "h1", A, "application/json", big, strlen(big), 413);
	free(big);
	check_update(t, "h1", A, oct, good, 40, 400);      /* no header */
	check_update(t, "h1", A, oct, oth, olen, 422);     /* bad signature */
	check_update(t, "h1", A, oct, unsig, ulen, 422);   /* unsigned */
	check_update(t, "h1", A, oct, good, len, 202);

	/* And the host shows it, valid against Host (update not null). */
	h = check_json(t, "GET", "/v1/hosts/*", "/v1/hosts/h1", R, NULL, 200);
	cr_expect_str_eq(json_string_value(json_object_get(h,
				"agent_version")) ?: "?", parley_version());
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(
				h, "update"), "state")) ?: "?", "pending");
	cr_expect(strstr(json_string_value(json_object_get(h,
				"update_state")) ?: "", " pending"));
	json_decref(h);
	check(t, "GET", "/v1/hosts", "/v1/hosts", R, NULL, 200);

	/* Rollbacks: h1's update is pending (409), h2 never said hello
	 * (409) until it does (202); the host shows it (rollback not null,
	 * update_state "rollback-requested"). */
	const char *RB = "/v1/hosts/*/rollback";
	check(t, "POST", RB, "/v1/hosts/h1/rollback", A, NULL, 409);
	check(t, "POST", RB, "/v1/hosts/h2/rollback", A, NULL, 409);
	check(t, "POST", RB, "/v1/hosts/nope/rollback", A, NULL, 404);
	check(t, "POST", RB, "/v1/hosts/%2e%2e/rollback", A, NULL, 400);
	check(t, "POST", RB, "/v1/hosts/h2/rollback", R, NULL, 403);
	check(t, "POST", RB, "/v1/hosts/h2/rollback", A,
	      "{\"expect_version\":\"x\"}", 400);
	big = big_body();
	check(t, "POST", RB, "/v1/hosts/h2/rollback", A, big, 413);
	free(big);
	s = fd_store(&t->c.f);
	cr_assert_eq(store_host_agent_set(s, "h2", parley_version(), &err), 0,
		     "%s", perr_msg(&err));
	store_close(s);
	check(t, "POST", RB, "/v1/hosts/h2/rollback", A,
	      "{\"expect_version\":\"0.1.0\"}", 202);
	h = check_json(t, "GET", "/v1/hosts/*", "/v1/hosts/h2", R, NULL, 200);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(
				h, "rollback"), "state")) ?: "?", "requested");
	cr_expect_str_eq(json_string_value(json_object_get(h,
				"update_state")) ?: "", "rollback-requested");
	json_decref(h);
	check(t, "GET", "/v1/hosts", "/v1/hosts", R, NULL, 200);
	free(good);
	free(oth);
	free(unsig);
	EVP_PKEY_free(rel);
	EVP_PKEY_free(other);
}

/* Changes while another process holds the store's write lock: 503, and
 * nothing changed (each waits out the store's busy timeout, 5 s). */
static void exercise_busy(struct run *t)
{
	const char *A = t->c.admin;
	struct parley_err err = { 0 };
	struct store *s = fd_store(&t->c.f);
	cr_assert_eq(store_begin(s, &err), 0, "%s", perr_msg(&err));
	check(t, "POST", "/v1/hosts", "/v1/hosts", A, "{\"name\":\"hb\"}",
	      503);
	check(t, "DELETE", "/v1/grants/*", "/v1/grants/nope", A, NULL, 503);
	store_rollback(s, NULL);
	store_close(s);
	check(t, "GET", "/v1/hosts/*", "/v1/hosts/hb", t->c.admin, NULL, 404);
}

Test(api_openapi, every_operation_answers_as_documented, .timeout = 120)
{
	struct run t = { .doc = load_doc(), .seen = json_object() };
	ac_start(&t.c);
	const char *A = t.c.admin;
	char read[128];
	struct ac_resp r;
	ac_call(&t.c, "POST", "/v1/tokens", A,
		"{\"scope\":\"read\",\"name\":\"ro\"}", &r);
	cr_assert_eq(r.status, 201);
	snprintf(read, sizeof(read), "%s", json_string_value(
		json_object_get(r.json, "token")));
	ac_free(&r);
	const char *R = read;

	check(&t, "GET", "/healthz", "/healthz", NULL, NULL, 200);
	check(&t, "GET", "/metrics", "/metrics", R, NULL, 200);
	check(&t, "GET", "/metrics", "/metrics", NULL, NULL, 401);
	/* hosts */
	check(&t, "POST", "/v1/hosts", "/v1/hosts", A,
	      "{\"name\":\"h1\",\"libvirt_uri\":\"test:///default\"}", 201);
	check(&t, "POST", "/v1/hosts", "/v1/hosts", A, "{\"name\":\"h2\"}",
	      201);
	check(&t, "POST", "/v1/hosts", "/v1/hosts", A, "{\"name\":\"h2\"}",
	      409);
	check(&t, "POST", "/v1/hosts", "/v1/hosts", A, "{\"name\":7}", 400);
	check(&t, "POST", "/v1/hosts", "/v1/hosts", R, "{\"name\":\"h3\"}",
	      403);
	check(&t, "GET", "/v1/hosts", "/v1/hosts?limit=1", R, NULL, 200);
	check(&t, "GET", "/v1/hosts", "/v1/hosts?limit=0", R, NULL, 400);
	check(&t, "GET", "/v1/hosts", "/v1/hosts", NULL, NULL, 401);
	check(&t, "GET", "/v1/hosts/*", "/v1/hosts/h1", R, NULL, 200);
	check(&t, "GET", "/v1/hosts/*", "/v1/hosts/nope", R, NULL, 404);
	check(&t, "GET", "/v1/hosts/*", "/v1/hosts/%2e%2e", R, NULL, 400);
	exercise_update(&t, R);
	/* partitions */
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
	      "\"p1\",\"image\":\"hello.elf\"}}", 201);
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h2\",\"backend\":\"thin\",\"spec\":{\"name\":"
	      "\"p2\"}}", 201);
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h2\",\"backend\":\"qemu\",\"spec\":{}}", 400);
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h2\",\"backend\":\"thin\",\"spec\":{\"name\":"
	      "\"p2\"}}", 409);
	check(&t, "GET", "/v1/partitions", "/v1/partitions?host=h2", R, NULL,
	      200);
	check(&t, "GET", "/v1/partitions/*", "/v1/partitions/p1", R, NULL,
	      200);
	check(&t, "GET", "/v1/partitions/*", "/v1/partitions/zz", R, NULL,
	      404);
	check(&t, "POST", "/v1/partitions/*/stop", "/v1/partitions/p1/stop",
	      A, NULL, 200);
	check(&t, "POST", "/v1/partitions/*/stop", "/v1/partitions/p1/stop",
	      A, NULL, 409);
	check(&t, "POST", "/v1/partitions/*/start", "/v1/partitions/p1/start",
	      A, NULL, 200);
	check(&t, "POST", "/v1/partitions/*/start", "/v1/partitions/zz/start",
	      A, NULL, 404);
	/* disk keys (issue 13): made with the partition, shown, rekeyed */
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
	      "\"p9\",\"image\":\"hello.elf\",\"disks\":[{\"name\":"
	      "\"data\",\"path\":\"p9.img\",\"size\":\"1M\","
	      "\"encryption\":{\"cipher\":\"aes-xts-plain64\"}}]}}", 201);
	check(&t, "GET", "/v1/partitions/*/disk-keys",
	      "/v1/partitions/p9/disk-keys", R, NULL, 200);
	check(&t, "GET", "/v1/partitions/*/disk-keys",
	      "/v1/partitions/zz/disk-keys", R, NULL, 404);
	check(&t, "POST", "/v1/partitions/*/disk-keys/rekey",
	      "/v1/partitions/p9/disk-keys/rekey", A, "{\"disk\":\"data\"}",
	      200);
	check(&t, "POST", "/v1/partitions/*/disk-keys/rekey",
	      "/v1/partitions/p9/disk-keys/rekey", A, "{\"disk\":\"nope\"}",
	      404);
	check(&t, "POST", "/v1/partitions/*/disk-keys/rekey",
	      "/v1/partitions/p9/disk-keys/rekey", A, "{\"disk\":7}", 400);
	check(&t, "POST", "/v1/partitions/*/disk-keys/rekey",
	      "/v1/partitions/p9/disk-keys/rekey", R, "{\"disk\":\"data\"}",
	      403);
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p9", A, NULL,
	      204);
	/* grants, policy */
	check(&t, "POST", "/v1/grants", "/v1/grants", A,
	      "{\"channel\":\"tel\",\"endpoint_a\":\"p1\",\"endpoint_b\":"
	      "\"p2\",\"direction\":\"a_to_b\",\"ring_bytes\":\"64K\"}", 201);
	check(&t, "POST", "/v1/grants", "/v1/grants", A,
	      "{\"channel\":\"x\"}", 400);
	check(&t, "GET", "/v1/grants", "/v1/grants", R, NULL, 200);
	check(&t, "GET", "/v1/policy", "/v1/policy", R, NULL, 200);
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p1", A, NULL,
	      409);
	check(&t, "DELETE", "/v1/grants/*", "/v1/grants/tel", A, NULL, 200);
	check(&t, "DELETE", "/v1/grants/*", "/v1/grants/tel", A, NULL, 404);
	/* segment sets (members on one host: p1 and p3 on h1, p2 on h2) */
	check(&t, "POST", "/v1/partitions", "/v1/partitions", A,
	      "{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
	      "\"p3\"}}", 201);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A, SET_BUS, 201);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A, SET_BUS, 409);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", R, SET_BUS, 403);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A,
	      "{\"name\":\"w\",\"members\":[\"p1\",\"p2\"],\"segments\":"
	      "[{\"name\":\"c\",\"kind\":\"pipe\",\"writer\":\"p1\","
	      "\"size\":4096}]}", 400);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A,
	      "{\"name\":\"w\",\"members\":[\"p1\",\"p1\"],\"segments\":"
	      "[{\"name\":\"c\",\"kind\":\"pipe\",\"writer\":\"p1\","
	      "\"size\":4096}]}", 400);
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A,
	      "{\"name\":\"w\",\"members\":[\"p1\",\"zz\"],\"segments\":"
	      "[{\"name\":\"c\",\"kind\":\"pipe\",\"writer\":\"p1\","
	      "\"size\":4096}]}", 404);
	char *big = big_body();
	check(&t, "POST", "/v1/segsets", "/v1/segsets", A, big, 413);
	check(&t, "GET", "/v1/segsets", "/v1/segsets", R, NULL, 200);
	check(&t, "GET", "/v1/segsets", "/v1/segsets?host=h2", R, NULL, 200);
	check(&t, "GET", "/v1/segsets", "/v1/segsets?host=%2e%2e", R, NULL,
	      400);
	check(&t, "GET", "/v1/segsets/*", "/v1/segsets/bus", R, NULL, 200);
	check(&t, "GET", "/v1/segsets/*", "/v1/segsets/nope", R, NULL, 404);
	check(&t, "GET", "/v1/segsets/*", "/v1/segsets/%2e%2e", R, NULL, 400);
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p3", A, NULL,
	      409);
	/* service rules: created, changed, already that; by id and triple */
	json_t *j = check_json(&t, "POST", "/v1/services", "/v1/services", A,
			       "{\"source\":\"p1\",\"target\":\"p3\","
			       "\"service\":\"auth\",\"action\":\"allow\"}",
			       201);
	char by_id[64];
	snprintf(by_id, sizeof(by_id), "/v1/services/%lld", (long long)
		 json_integer_value(json_object_get(json_object_get(j,
							"rule"), "id")));
	json_decref(j);
	check(&t, "POST", "/v1/services", "/v1/services", A,
	      "{\"source\":\"p1\",\"target\":\"p3\",\"service\":\"auth\","
	      "\"action\":\"deny\"}", 200);
	check(&t, "POST", "/v1/services", "/v1/services", A,
	      "{\"source\":\"p1\",\"target\":\"p3\",\"service\":\"auth\","
	      "\"action\":\"deny\"}", 200);
	check(&t, "POST", "/v1/services", "/v1/services", A,
	      "{\"source\":\"p3\",\"target\":\"p1\",\"service\":\"log\","
	      "\"action\":\"allow\"}", 201);
	check(&t, "POST", "/v1/services", "/v1/services", R,
	      "{\"source\":\"p1\",\"target\":\"p3\",\"service\":\"x\","
	      "\"action\":\"allow\"}", 403);
	check(&t, "POST", "/v1/services", "/v1/services", A,
	      "{\"source\":\"p1\",\"target\":\"p2\",\"service\":\"x\","
	      "\"action\":\"allow\"}", 400);
	check(&t, "POST", "/v1/services", "/v1/services", A,
	      "{\"source\":\"p1\",\"target\":\"zz\",\"service\":\"x\","
	      "\"action\":\"allow\"}", 404);
	check(&t, "POST", "/v1/services", "/v1/services", A, big, 413);
	free(big);
	check(&t, "GET", "/v1/services", "/v1/services", R, NULL, 200);
	check(&t, "GET", "/v1/services", "/v1/services?host=h1", R, NULL, 200);
	check(&t, "GET", "/v1/services", "/v1/services?host=a%20b", R, NULL,
	      400);
	check(&t, "DELETE", "/v1/services/*", by_id, R, NULL, 403);
	check(&t, "DELETE", "/v1/services/*", by_id, A, NULL, 200);
	check(&t, "DELETE", "/v1/services/*", by_id, A, NULL, 404);
	check(&t, "DELETE", "/v1/services/*", "/v1/services/p3:p1:log", A,
	      NULL, 200);
	check(&t, "DELETE", "/v1/services/*", "/v1/services/p3:p1:log", A,
	      NULL, 404);
	check(&t, "DELETE", "/v1/services/*", "/v1/services/p3:p1", A, NULL,
	      400);
	check(&t, "DELETE", "/v1/segsets/*", "/v1/segsets/bus", R, NULL, 403);
	check(&t, "DELETE", "/v1/segsets/*", "/v1/segsets/bus", A, NULL, 200);
	check(&t, "DELETE", "/v1/segsets/*", "/v1/segsets/bus", A, NULL, 404);
	check(&t, "DELETE", "/v1/segsets/*", "/v1/segsets/%2e%2e", A, NULL,
	      400);
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p3", A, NULL,
	      204);
	/* baselines, measurements */
	check(&t, "PUT", "/v1/baselines/*", "/v1/baselines/p1", A,
	      "{\"digest\":\"" HEX64 "\",\"files\":{\"motd\":\"" HEX64 "\"},"
	      "\"segments\":[\"" HEX64 "\"]}", 200);
	check(&t, "PUT", "/v1/baselines/*", "/v1/baselines/p1", A,
	      "{\"digest\":\"zz\"}", 400);
	check(&t, "GET", "/v1/baselines", "/v1/baselines", R, NULL, 200);
	check(&t, "GET", "/v1/baselines/*", "/v1/baselines/p1", R, NULL, 200);
	check(&t, "DELETE", "/v1/baselines/*", "/v1/baselines/p1", A, NULL,
	      204);
	check(&t, "GET", "/v1/baselines/*", "/v1/baselines/p1", R, NULL, 404);
	check(&t, "DELETE", "/v1/baselines/*", "/v1/baselines/p1", A, NULL,
	      404);
	check(&t, "GET", "/v1/measurements", "/v1/measurements", R, NULL,
	      200);
	/* audit */
	check(&t, "GET", "/v1/audit", "/v1/audit?limit=5", R, NULL, 200);
	check(&t, "GET", "/v1/audit", "/v1/audit?after=x", R, NULL, 400);
	check(&t, "GET", "/v1/audit", "/v1/audit?event=api_change&reason=x&"
	      "partition=p1&host=h1&since_ms=1&until_ms=99999999999999&"
	      "order=desc&before=1000&limit=3", R, NULL, 200);
	check(&t, "GET", "/v1/audit", "/v1/audit?colour=red", R, NULL, 400);
	check(&t, "GET", "/v1/audit", "/v1/audit?since_ms=9&until_ms=1", R,
	      NULL, 400);
	exercise_busy(&t);
	check(&t, "POST", "/v1/audit/verify", "/v1/audit/verify", R, NULL,
	      200);
	check(&t, "POST", "/v1/audit/verify", "/v1/audit/verify?seq=1", R,
	      NULL, 400);
	check(&t, "POST", "/v1/audit/checkpoints", "/v1/audit/checkpoints", A,
	      NULL, 201);
	check(&t, "GET", "/v1/audit/checkpoints", "/v1/audit/checkpoints", R,
	      NULL, 200);
	check(&t, "GET", "/v1/audit/checkpoints",
	      "/v1/audit/checkpoints?list=1", R, NULL, 200);
	check(&t, "POST", "/v1/tokens", "/v1/tokens", A,
	      "{\"scope\":\"root\",\"name\":\"x\"}", 400);
	check(&t, "POST", "/v1/tokens", "/v1/tokens", A,
	      "{\"scope\":\"admin\",\"name\":\"ci\"}", 201);
	check(&t, "POST", "/v1/tokens", "/v1/tokens", R,
	      "{\"scope\":\"admin\",\"name\":\"ci2\"}", 403);
	check(&t, "GET", "/v1/events", "/v1/events?after=x", R, NULL, 400);
	check(&t, "GET", "/v1/events", "/v1/events?after=99999999", R, NULL,
	      400);
	check(&t, "GET", "/v1/openapi.json", "/v1/openapi.json", NULL, NULL,
	      401);
	/* tear down */
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p1", A, NULL,
	      204);
	check(&t, "DELETE", "/v1/partitions/*", "/v1/partitions/p1", A, NULL,
	      404);
	check(&t, "DELETE", "/v1/hosts/*", "/v1/hosts/h1", A, NULL, 204);
	check(&t, "DELETE", "/v1/hosts/*", "/v1/hosts/h1", A, NULL, 404);

	/* The document served is the file, byte for byte. */
	ac_call(&t.c, "GET", "/v1/openapi.json", R, NULL, &r);
	cr_expect_eq(r.status, 200);
	FILE *f = fopen(PARLEY_SOURCE_DIR "/daemon/rpc/openapi.json", "r");
	static char file[1 << 20];
	size_t n = fread(file, 1, sizeof(file) - 1, f);
	fclose(f);
	file[n] = '\0';
	cr_expect(r.body && !strcmp(r.body, file), "served document differs");
	ac_free(&r);

	/* Every operation was called and answered its success status (the
	 * event stream's 200 is tests/test_api_stream.c's). */
	const char *method, *pat, *scope;
	for (size_t i = 0; api_route_info(i, &method, &pat, &scope); i++) {
		char key[300];
		snprintf(key, sizeof(key), "%s %s", method, pat);
		json_t *l = json_object_get(t.seen, key);
		bool ok = false;
		size_t k;
		json_t *v;
		json_array_foreach(l, k, v)
			ok |= json_integer_value(v) < 300;
		cr_expect(ok || !strcmp(pat, "/v1/events") ||
			  !strcmp(pat, "/v1/openapi.json"),
			  "%s never answered with success here", key);
	}
	ac_stop(&t.c);
	json_decref(t.seen);
	json_decref(t.doc);
}

/* The validator refuses what it should, so the checks above can fail. */
Test(api_openapi, validator_refuses_wrong_bodies)
{
	json_t *doc = load_doc();
	json_t *host = json_pack("{s:s}", "$ref", "#/components/schemas/Host");
	static const char *const bad[] = {
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1}",                         /* missing */
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1,\"agent_seq\":2,\"x\":1}", /* extra */
		"{\"name\":\"h 1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1,\"agent_seq\":2}",         /* pattern */
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":1,"
		"\"policy_acked\":1,\"agent_seq\":2}",         /* type */
		"[]",
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1,\"agent_seq\":2,\"update_state\":7}",
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1,\"agent_seq\":2,\"update\":{}}",
		"{\"name\":\"h1\",\"libvirt_uri\":\"\",\"connected\":true,"
		"\"policy_acked\":1,\"agent_seq\":2,\"update\":{\"version\":"
		"\"1.2.3\",\"sha256\":\"" HEX64 "\",\"state\":\"done\","
		"\"received\":0,\"size\":9,\"reason\":\"\",\"requested_ms\":1,"
		"\"updated_ms\":1}}",                        /* state */
	};
	char why[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		json_t *v = json_loads(bad[i], 0, NULL);
		cr_expect(!js_valid(doc, host, v, "", why, sizeof(why)),
			  "%s", bad[i]);
		json_decref(v);
	}
	json_t *ok = json_loads("{\"name\":\"h1\",\"libvirt_uri\":\"\","
				"\"connected\":true,\"policy_acked\":1,"
				"\"agent_seq\":2}", 0, NULL);
	cr_expect(js_valid(doc, host, ok, "", why, sizeof(why)), "%s", why);
	json_t *up = json_loads("{\"name\":\"h1\",\"libvirt_uri\":\"\","
				"\"connected\":true,\"policy_acked\":1,"
				"\"agent_seq\":2,\"agent_version\":\"\","
				"\"update_state\":null,\"update\":null}", 0,
				NULL);
	cr_expect(js_valid(doc, host, up, "", why, sizeof(why)), "%s", why);
	json_decref(up);
	json_t *odd = json_pack("{s:s}", "format", "date");
	cr_expect(!js_valid(doc, odd, ok, "", why, sizeof(why)),
		  "an unknown keyword must not pass");
	json_decref(odd);
	json_decref(ok);
	json_decref(host);
	json_decref(doc);
}
