/* The API's segment sets and service rules (/v1/segsets, /v1/services;
 * issue 14) against a real parleyd: stored, versioned, audited in the
 * change's transaction, read tokens read and admin tokens write, refusals
 * naming the field. Suite `api_svc`. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

static int call(struct api_client *c, const char *m, const char *path,
		const char *tok, const char *body, struct ac_resp *r)
{
	ac_call(c, m, path, tok, body, r);
	return r->status;
}

/* The status, and the error message containing `msg` (NULL: any). */
static void expect(struct api_client *c, const char *m, const char *path,
		   const char *tok, const char *body, int status,
		   const char *msg)
{
	struct ac_resp r;
	int got = call(c, m, path, tok, body, &r);
	cr_expect_eq(got, status, "%s %s: %d, want %d: %s", m, path, got,
		     status, r.raw);
	if (msg)
		cr_expect(strstr(ac_msg(&r), msg), "%s %s: %s", m, path,
			  ac_msg(&r));
	ac_free(&r);
}

static json_t *ok_json(struct api_client *c, const char *m, const char *path,
		       const char *body, int status)
{
	struct ac_resp r;
	int got = call(c, m, path, c->admin, body, &r);
	cr_assert_eq(got, status, "%s %s: %d: %s", m, path, got, r.raw);
	json_t *j = json_incref(r.json);
	ac_free(&r);
	return j;
}

static json_int_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void fleet(struct api_client *c)
{
	expect(c, "POST", "/v1/hosts", c->admin, "{\"name\":\"h1\"}", 201, NULL);
	expect(c, "POST", "/v1/hosts", c->admin, "{\"name\":\"h2\"}", 201, NULL);
	static const char *const parts[][2] = {
		{ "client", "h1" }, { "auth", "h1" }, { "mon", "h1" },
		{ "far", "h2" },
	};
	for (size_t i = 0; i < 4; i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"host\":\"%s\",\"backend\":"
			 "\"thin\",\"spec\":{\"name\":\"%s\"}}", parts[i][1],
			 parts[i][0]);
		expect(c, "POST", "/v1/partitions", c->admin, body, 201, NULL);
	}
}

/* The last api_change event: what it concerns and its detail. */
static json_t *last_change(struct api_client *c)
{
	json_t *a = ok_json(c, "GET", "/v1/audit?event=api_change&limit=1000",
			    NULL, 200);
	json_t *items = json_object_get(a, "items");
	cr_assert_gt(json_array_size(items), 0);
	json_t *last = json_incref(json_array_get(items,
						  json_array_size(items) - 1));
	json_decref(a);
	return last;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

Test(api_svc, services_stored_versioned_audited, .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	fleet(&c);
	json_t *r = ok_json(&c, "POST", "/v1/services", "{\"source\":\"client\","
			    "\"target\":\"auth\",\"service\":\"auth\","
			    "\"action\":\"allow\"}", 201);
	json_t *rule = json_object_get(r, "rule");
	cr_expect_eq(jint(rule, "id"), 1);
	cr_expect_str_eq(jstr(rule, "action"), "allow");
	json_int_t v1 = jint(r, "policy_version");
	cr_expect_gt(v1, 0);
	json_decref(r);
	/* Audited in the change's transaction, naming what it concerns. */
	json_t *ev = last_change(&c);
	cr_expect_str_eq(jstr(ev, "partition"), "client");
	cr_expect_str_eq(jstr(ev, "channel"), "auth");
	cr_expect(strstr(jstr(ev, "detail"), "POST /v1/services -> 201"), "%s",
		  jstr(ev, "detail"));
	json_decref(ev);
	/* The same rule denied: changed, not created; a new version. */
	r = ok_json(&c, "POST", "/v1/services", "{\"source\":\"client\","
		    "\"target\":\"auth\",\"service\":\"auth\","
		    "\"action\":\"deny\"}", 200);
	cr_expect(json_is_false(json_object_get(r, "created")));
	cr_expect_eq(jint(json_object_get(r, "rule"), "id"), 1);
	cr_expect_eq(jint(r, "policy_version"), v1 + 1);
	json_decref(r);
	json_t *p = ok_json(&c, "GET", "/v1/policy", NULL, 200);
	cr_expect_eq(jint(p, "version"), v1 + 1);
	json_decref(p);
	r = ok_json(&c, "GET", "/v1/services?host=h1", NULL, 200);
	cr_expect_eq(json_array_size(json_object_get(r, "items")), 1);
	json_decref(r);
	r = ok_json(&c, "GET", "/v1/services?host=h2", NULL, 200);
	cr_expect_eq(json_array_size(json_object_get(r, "items")), 0);
	json_decref(r);
	/* Read tokens read; writes need admin. */
	r = ok_json(&c, "POST", "/v1/tokens", "{\"scope\":\"read\",\"name\":"
		    "\"ro\"}", 201);
	char rd[128];
	snprintf(rd, sizeof(rd), "%s", jstr(r, "token"));
	json_decref(r);
	expect(&c, "GET", "/v1/services", rd, NULL, 200, NULL);
	expect(&c, "POST", "/v1/services", rd, "{\"source\":\"client\","
	       "\"target\":\"auth\",\"service\":\"x\",\"action\":\"allow\"}",
	       403, NULL);
	expect(&c, "DELETE", "/v1/services/1", rd, NULL, 403, NULL);
	/* Refusals name the field; none of them versions anything. */
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"auth\",\"service\":\"auth\"}", 400,
	       "service.action: missing");
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"auth\",\"service\":\"auth\",\"action\":\"maybe\"}",
	       400, "service.action");
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"auth\",\"service\":\"a b\",\"action\":\"allow\"}",
	       400, "service.service");
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"auth\",\"service\":\"s\",\"action\":\"allow\","
	       "\"extra\":1}", 400, "extra");
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"far\",\"service\":\"s\",\"action\":\"allow\"}",
	       400, "one host");
	expect(&c, "POST", "/v1/services", c.admin, "{\"source\":\"client\","
	       "\"target\":\"nope\",\"service\":\"s\",\"action\":\"allow\"}",
	       404, "target");
	expect(&c, "POST", "/v1/services", c.admin, "[]", 400, NULL);
	expect(&c, "DELETE", "/v1/services/client:auth", c.admin, NULL, 400,
	       "SOURCE:TARGET:SERVICE");
	expect(&c, "DELETE", "/v1/services/a:b:c:d", c.admin, NULL, 400, NULL);
	expect(&c, "DELETE", "/v1/services/99999999999999999999", c.admin,
	       NULL, 400, NULL);
	expect(&c, "DELETE", "/v1/services/0", c.admin, NULL, 400, NULL);
	expect(&c, "DELETE", "/v1/services/client:auth:a%2Fb", c.admin, NULL,
	       400, NULL);
	p = ok_json(&c, "GET", "/v1/policy", NULL, 200);
	cr_expect_eq(jint(p, "version"), v1 + 1);
	json_decref(p);
	/* A partition a rule names stays. */
	expect(&c, "DELETE", "/v1/partitions/auth", c.admin, NULL, 409,
	       "service rule");
	/* Removal by triple, then by id. */
	r = ok_json(&c, "DELETE", "/v1/services/client:auth:auth", NULL, 200);
	cr_expect_eq(jint(r, "policy_version"), v1 + 2);
	json_decref(r);
	expect(&c, "DELETE", "/v1/services/client:auth:auth", c.admin, NULL,
	       404, NULL);
	r = ok_json(&c, "POST", "/v1/services", "{\"source\":\"mon\","
		    "\"target\":\"auth\",\"service\":\"log\","
		    "\"action\":\"allow\"}", 201);
	json_int_t id = jint(json_object_get(r, "rule"), "id");
	json_decref(r);
	char path[64];
	snprintf(path, sizeof(path), "/v1/services/%lld", (long long)id);
	expect(&c, "DELETE", path, c.admin, NULL, 200, NULL);
	ev = last_change(&c);
	cr_expect_str_eq(jstr(ev, "partition"), "mon");
	json_decref(ev);
	expect(&c, "DELETE", path, c.admin, NULL, 404, NULL);
	expect(&c, "DELETE", "/v1/partitions/auth", c.admin, NULL, 204, NULL);
	ac_stop(&c);
}

#define SET_BUS                                                              \
	"{\"name\":\"bus\",\"members\":[\"client\",\"auth\",\"mon\"],"        \
	"\"segments\":[{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":"       \
	"\"client\",\"size\":\"64K\"},{\"name\":\"st\",\"kind\":\"area\","    \
	"\"writer\":\"agent\",\"size\":\"4K\",\"readers\":[\"mon\"]}]}"

Test(api_svc, segsets_stored_versioned_audited, .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	fleet(&c);
	json_t *r = ok_json(&c, "POST", "/v1/segsets", SET_BUS, 201);
	json_t *s = json_object_get(r, "segset");
	cr_expect_str_eq(jstr(s, "name"), "bus");
	cr_expect_str_eq(jstr(s, "host"), "h1");
	cr_expect_eq(json_array_size(json_object_get(json_object_get(s, "set"),
						     "members")), 3);
	json_int_t v1 = jint(r, "policy_version");
	cr_expect_gt(v1, 0);
	json_decref(r);
	json_t *ev = last_change(&c);
	cr_expect_str_eq(jstr(ev, "channel"), "bus");
	cr_expect_str_eq(jstr(ev, "host"), "h1");
	json_decref(ev);
	r = ok_json(&c, "GET", "/v1/segsets/bus", NULL, 200);
	cr_expect_eq(jint(r, "version"), v1);
	json_decref(r);
	r = ok_json(&c, "GET", "/v1/segsets?host=h1", NULL, 200);
	cr_expect_eq(json_array_size(json_object_get(r, "items")), 1);
	json_decref(r);
	expect(&c, "POST", "/v1/segsets", c.admin, SET_BUS, 409, "exists");
	/* Refusals name the entry and field. */
	expect(&c, "POST", "/v1/segsets", c.admin, "{\"name\":\"w\","
	       "\"members\":[\"client\",\"far\"],\"segments\":[{\"name\":\"p\","
	       "\"kind\":\"pipe\",\"writer\":\"client\",\"size\":\"4K\"}]}",
	       400, "segset (\"w\").members[1]: \"far\" is on host");
	expect(&c, "POST", "/v1/segsets", c.admin, "{\"name\":\"w\","
	       "\"members\":[\"client\",\"zz\"],\"segments\":[{\"name\":\"p\","
	       "\"kind\":\"pipe\",\"writer\":\"client\",\"size\":\"4K\"}]}",
	       404, "members[1]");
	expect(&c, "POST", "/v1/segsets", c.admin, "{\"name\":\"w\","
	       "\"members\":[\"client\",\"auth\"],\"segments\":[{\"name\":\"p\","
	       "\"kind\":\"pipe\",\"writer\":\"mon\",\"size\":\"4K\"}]}", 400,
	       "segset (\"w\").segments[0]");
	expect(&c, "POST", "/v1/segsets", c.admin, "{\"name\":\"w\","
	       "\"members\":[\"client\",\"auth\"],\"segments\":[{\"name\":\"p\","
	       "\"kind\":\"pipe\",\"writer\":\"client\",\"size\":\"3000\"}]}",
	       400, "size");
	expect(&c, "POST", "/v1/segsets", c.admin, "{\"name\":\"w\"}", 400,
	       NULL);
	expect(&c, "POST", "/v1/segsets", "prl_nope", SET_BUS, 401, NULL);
	expect(&c, "GET", "/v1/segsets/a%2Fb", c.admin, NULL, 400, NULL);
	expect(&c, "GET", "/v1/segsets/none", c.admin, NULL, 404, NULL);
	json_t *p = ok_json(&c, "GET", "/v1/policy", NULL, 200);
	cr_expect_eq(jint(p, "version"), v1);
	json_decref(p);
	expect(&c, "DELETE", "/v1/partitions/mon", c.admin, NULL, 409,
	       "segment set");
	r = ok_json(&c, "DELETE", "/v1/segsets/bus", NULL, 200);
	cr_expect_eq(jint(r, "policy_version"), v1 + 1);
	json_decref(r);
	expect(&c, "DELETE", "/v1/segsets/bus", c.admin, NULL, 404, NULL);
	expect(&c, "DELETE", "/v1/partitions/mon", c.admin, NULL, 204, NULL);
	ac_stop(&c);
}
