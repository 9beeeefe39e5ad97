/*
 * API routes: segment sets (issue 14). A set is one entry of the data set
 * (common/segset.h), checked by its parser and against the store's
 * partitions (all members on one host: a segment is that host's memory);
 * each change is a policy version, pushed to that host's agent.
 */
#include "daemon/rpc/api_int.h"
#include "db/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* {"name","host","version","set":{...the entry...}}; NULL if the stored
 * text does not parse (only someone editing the file can do that). */
static json_t *segset_json(const struct store_segset *s)
{
	json_t *set = json_loads(s->json, 0, NULL);
	if (!set)
		return NULL;
	return json_pack("{s:s,s:s,s:I,s:o}", "name", s->name, "host", s->host,
			 "version", (json_int_t)s->version, "set", set);
}

static void bad_row(struct api_req *q, const char *name)
{
	api_error(q, 500, "INTERNAL", "stored segset \"%s\" is not JSON", name);
}

void api_segsets_list(struct api_req *q)
{
	const char *host = api_query(q, "host");
	if (host && !api_name_ok(q, "host", host))
		return;
	struct store_segset *l = NULL;
	struct parley_err err = { 0 };
	int n = store_list_segsets(q->a->store, host, &l, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	json_t *items = json_array();
	for (int i = 0; i < n; i++) {
		json_t *o = segset_json(&l[i]);
		if (!o) {
			bad_row(q, l[i].name);
			json_decref(items);
			store_segsets_free(l, (unsigned)n);
			return;
		}
		json_array_append_new(items, o);
	}
	store_segsets_free(l, (unsigned)n);
	api_reply(q, 200, api_page(items, NULL));
}

void api_segsets_get(struct api_req *q)
{
	struct store_segset s;
	struct parley_err err = { 0 };
	if (!api_name_ok(q, "segset name", q->arg))
		return;
	int rc = store_get_segset(q->a->store, q->arg, &s, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	json_t *o = segset_json(&s);
	if (o)
		api_reply(q, 200, o);
	else
		bad_row(q, s.name);
	store_segset_clear(&s);
}

void api_segsets_add(struct api_req *q)
{
	/* The set's parser checks the fields and names them. */
	json_t *b = api_body(q, NULL);
	if (!b)
		return;
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	if (!text) {
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	char name[STORE_NAME_MAX] = "";
	uint64_t v = 0;
	struct parley_err err = { 0 };
	int rc = store_put_segset(q->a->store, text, strlen(text), name, &v,
				  &err);
	free(text);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_subject(q, NULL, NULL, name);
	struct store_segset s;
	rc = store_get_segset(q->a->store, name, &s, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_subject(q, s.host, NULL, NULL);
	json_t *o = segset_json(&s);
	if (o)
		api_reply(q, 201, json_pack("{s:o,s:I}", "segset", o,
					    "policy_version", (json_int_t)v));
	else
		bad_row(q, s.name);
	store_segset_clear(&s);
}

void api_segsets_delete(struct api_req *q)
{
	struct parley_err err = { 0 };
	uint64_t v = 0;
	if (!api_name_ok(q, "segset name", q->arg))
		return;
	api_subject(q, NULL, NULL, q->arg);
	int rc = store_del_segset(q->a->store, q->arg, &v, &err);
	if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 200, json_pack("{s:I}", "policy_version",
					    (json_int_t)v));
}
