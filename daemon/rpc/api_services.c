/*
 * API routes: service rules (issue 14). A rule {source, target, service,
 * action} is checked as in a policy document and against the store's
 * partitions (both on one host: that host's agent connects the call);
 * each change is a policy version, pushed to that host's agent.
 */
#include "daemon/rpc/api_int.h"
#include "common/grant.h"
#include "db/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *rule_json(const struct store_svc_rule *r)
{
	return json_pack("{s:I,s:s,s:s,s:s,s:s,s:I}", "id", (json_int_t)r->id,
			 "source", r->r.source, "target", r->r.target,
			 "service", r->r.service, "action",
			 r->r.allow ? "allow" : "deny", "version",
			 (json_int_t)r->version);
}

void api_services_list(struct api_req *q)
{
	const char *host = api_query(q, "host");
	if (host && !api_name_ok(q, "host", host))
		return;
	struct store_svc_rule *l = NULL;
	struct parley_err err = { 0 };
	int n = store_list_svc_rules(q->a->store, host, &l, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	json_t *items = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(items, rule_json(&l[i]));
	free(l);
	api_reply(q, 200, api_page(items, NULL));
}

void api_services_put(struct api_req *q)
{
	json_t *b = api_body(q, NULL);
	if (!b)
		return;
	struct svc_rule r;
	struct parley_err err = { 0 };
	uint64_t id = 0, v = 0;
	bool created = false;
	int rc = svc_rule_from_json(b, &r, &err);
	json_decref(b);
	if (rc == 0) {
		api_subject(q, NULL, r.source, r.service);
		rc = store_put_svc_rule(q->a->store, &r, &id, &created, &v,
					&err);
	}
	struct store_svc_rule got;
	if (rc == 0)
		rc = store_get_svc_rule(q->a->store, id, &got, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_reply(q, created ? 201 : 200,
		  json_pack("{s:o,s:b,s:I}", "rule", rule_json(&got),
			    "created", created, "policy_version",
			    (json_int_t)v));
}

/* "7" (an id) or "client:auth:auth" (source:target:service; ':' is not
 * a name character, so the split is unambiguous). false after 400. */
static bool parse_key(struct api_req *q, uint64_t *id, struct svc_rule *r)
{
	const char *a = q->arg;
	*id = 0;
	memset(r, 0, sizeof(*r));
	if (a[0] >= '1' && a[0] <= '9' && strspn(a, "0123456789") ==
							strlen(a)) {
		if (strlen(a) > 18) {
			api_error(q, 400, "BAD_REQUEST", "service rule id: too "
				  "large");
			return false;
		}
		*id = strtoull(a, NULL, 10);
		return true;
	}
	const char *c1 = strchr(a, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2 || strchr(c2 + 1, ':') ||
	    (size_t)(c1 - a) >= sizeof(r->source) ||
	    (size_t)(c2 - c1 - 1) >= sizeof(r->target) ||
	    strlen(c2 + 1) >= sizeof(r->service)) {
		api_error(q, 400, "BAD_REQUEST", "service rule: expected an id "
			  "or SOURCE:TARGET:SERVICE");
		return false;
	}
	memcpy(r->source, a, (size_t)(c1 - a));
	memcpy(r->target, c1 + 1, (size_t)(c2 - c1 - 1));
	memcpy(r->service, c2 + 1, strlen(c2 + 1));
	return api_name_ok(q, "source", r->source) &&
	       api_name_ok(q, "target", r->target) &&
	       api_name_ok(q, "service", r->service);
}

void api_services_delete(struct api_req *q)
{
	struct parley_err err = { 0 };
	struct svc_rule r;
	uint64_t id, v = 0;
	if (!parse_key(q, &id, &r))
		return;
	int rc;
	if (id) {
		struct store_svc_rule old;
		rc = store_get_svc_rule(q->a->store, id, &old, &err);
		if (rc == 0)
			api_subject(q, NULL, old.r.source, old.r.service);
		if (rc == 0)
			rc = store_del_svc_rule(q->a->store, id, &v, &err);
	} else {
		api_subject(q, NULL, r.source, r.service);
		rc = store_del_svc_rule_named(q->a->store, &r, &v, &err);
	}
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, json_pack("{s:I}", "policy_version",
					    (json_int_t)v));
}
