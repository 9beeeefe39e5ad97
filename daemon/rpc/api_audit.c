/*
 * API routes: the audit trail, filtered and paginated by id, its chain
 * verified, and its signed checkpoints.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/checkpoint.h"
#include "common/checkpoint.h"
#include "common/jsonv.h"
#include "db/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct audit_page {
	unsigned limit;
	json_t *items;
	uint64_t last;                  /* the last id passed */
};

static int audit_row(const struct store_audit *r, void *ctx)
{
	struct audit_page *p = ctx;
	p->last = r->id;
	json_array_append_new(p->items, json_pack(
		"{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id",
		(json_int_t)r->id, "time_ms", (json_int_t)r->time_ms, "host",
		r->host, "event", r->event, "partition", r->partition,
		"channel", r->channel, "reason", r->reason, "file", r->file,
		"detail", r->detail));
	return 0;
}

/* A non-negative integer query parameter; false after answering 400. */
static bool query_u64(struct api_req *q, const char *key, uint64_t *v)
{
	const char *s = api_query(q, key);
	*v = 0;
	if (!s)
		return true;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || n > INT64_MAX) {
		struct jv_quoted qt;
		api_error(q, 400, "BAD_REQUEST", "%s: %s is not a non-negative "
			  "integer", key, jv_quote(&qt, s, strlen(s)));
		return false;
	}
	*v = n;
	return true;
}

/* The filters /v1/audit takes; anything else is a mistake worth a 400
 * (a misspelt filter would otherwise list everything). */
static const char *const audit_params[] = {
	"limit", "after", "before", "order", "host", "partition", "event",
	"reason", "since_ms", "until_ms", NULL,
};

static bool audit_args(struct api_req *q, struct store_audit_filter *f,
		       unsigned *limit)
{
	uint64_t since, until;
	const char *order = api_query(q, "order");
	const char *const names[] = { "host", "partition", "event", "reason" };
	const char **slot[] = { &f->host, &f->partition, &f->event,
				&f->reason };
	if (!api_query_only(q, audit_params) || !api_limit(q, limit) ||
	    !query_u64(q, "after", &f->after_id) ||
	    !query_u64(q, "before", &f->before_id) ||
	    !query_u64(q, "since_ms", &since) ||
	    !query_u64(q, "until_ms", &until))
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		*slot[i] = api_query(q, names[i]);
		if (*slot[i] && !api_name_ok(q, names[i], *slot[i]))
			return false;
	}
	if (order && strcmp(order, "asc") && strcmp(order, "desc")) {
		api_error(q, 400, "BAD_REQUEST", "order: asc or desc");
		return false;
	}
	if (until && since > until) {
		api_error(q, 400, "BAD_REQUEST", "since_ms %llu is after "
			  "until_ms %llu", (unsigned long long)since,
			  (unsigned long long)until);
		return false;
	}
	f->newest_first = order && !strcmp(order, "desc");
	f->since_ms = (int64_t)since;
	f->until_ms = (int64_t)until;
	return true;
}

/* Filtered by the store's query, one page of it: oldest first from
 * ?after= (next: the id to pass as after), or with ?order=desc newest
 * first from ?before= (next: the id to pass as before). */
void api_audit_list(struct api_req *q)
{
	struct store_audit_filter f = { 0 };
	struct audit_page p = { 0 };
	struct parley_err err = { 0 };
	if (!audit_args(q, &f, &p.limit))
		return;
	p.items = json_array();
	int n = store_audit_find(q->a->store, &f, p.limit, audit_row, &p,
				 &err);
	if (n < 0) {
		json_decref(p.items);
		api_fail(q, n, &err);
		return;
	}
	char next[24];
	snprintf(next, sizeof(next), "%llu", (unsigned long long)p.last);
	/* Newest first, row 1 is the end. */
	bool more = (unsigned)n == p.limit && !(f.newest_first && p.last <= 1);
	api_reply(q, 200, api_page(p.items, more ? next : NULL));
}

/* ?seq=N&hash=HEX (both or neither): verify rows 1..N and that row N has
 * that hash -- what a signed checkpoint says (`parleyctl audit verify
 * --checkpoint` checks the signature itself, then asks this). */
static bool verify_to_args(struct api_req *q, uint64_t *seq, uint8_t hash[32])
{
	const char *h = api_query(q, "hash");
	if (!query_u64(q, "seq", seq))
		return false;
	if (!*seq != !h || (*seq && strlen(h) != 64)) {
		api_error(q, 400, "BAD_REQUEST", "seq and hash (64 hex digits) "
			  "go together");
		return false;
	}
	for (size_t i = 0; h && i < 64; i++) {
		int v = h[i] >= '0' && h[i] <= '9' ? h[i] - '0' :
			h[i] >= 'a' && h[i] <= 'f' ? h[i] - 'a' + 10 : -1;
		if (v < 0) {
			api_error(q, 400, "BAD_REQUEST", "hash: not hex");
			return false;
		}
		hash[i / 2] = (uint8_t)(i % 2 ? hash[i / 2] << 4 | v : v);
	}
	return true;
}

void api_audit_verify(struct api_req *q)
{
	uint64_t bad = 0, rows = 0, seq = 0;
	uint8_t hash[32];
	struct parley_err err = { 0 };
	if (!verify_to_args(q, &seq, hash))
		return;
	int rc = seq ? store_audit_verify_to(q->a->store, seq, hash, &bad,
					     &err)
		     : store_audit_verify(q->a->store, &bad, &rows, &err);
	if (seq)
		rows = rc == 0 ? seq : bad ? bad - 1 : 0;
	if (rc == 0)
		api_reply(q, 200, json_pack("{s:b,s:I}", "ok", 1, "rows",
					    (json_int_t)rows));
	else if (rc == -EBADMSG)
		api_reply(q, 200, json_pack("{s:b,s:I,s:I,s:s}", "ok", 0,
					    "rows", (json_int_t)rows, "first_bad",
					    (json_int_t)bad, "message",
					    perr_msg(&err)));
	else
		api_fail(q, rc, &err);
}

/* ---- checkpoints (daemon/checkpoint.h, common/checkpoint.h) ---- */

static json_t *ckpt_doc(const struct store_checkpoint *s)
{
	struct checkpoint c = { .seq = s->seq, .time_ms = s->time_ms };
	memcpy(c.hash, s->hash, sizeof(c.hash));
	memcpy(c.key_id, s->key_id, sizeof(c.key_id));
	memcpy(c.sig, s->sig, sizeof(c.sig));
	json_t *d = checkpoint_to_json(&c);
	json_object_set_new(d, "id", json_integer((json_int_t)s->id));
	return d;
}

/* The newest checkpoint as a document of its own (what `parleyctl audit
 * verify --checkpoint` reads), or with ?list=1 a page of them, newest
 * first (?before=ID, ?limit=N). */
void api_checkpoints_list(struct api_req *q)
{
	struct parley_err err = { 0 };
	const char *list = api_query(q, "list");
	uint64_t before;
	unsigned limit = 1;
	if (list && strcmp(list, "0") && strcmp(list, "1")) {
		api_error(q, 400, "BAD_REQUEST", "list: 0 or 1");
		return;
	}
	bool many = list && !strcmp(list, "1");
	if (!query_u64(q, "before", &before) || (many && !api_limit(q, &limit)))
		return;
	struct store_checkpoint *cs = calloc(limit, sizeof(*cs));
	if (!cs) {
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	int n = store_checkpoint_list(q->a->store, before, limit, cs, &err);
	if (n < 0)
		api_fail(q, n, &err);
	else if (!many && n == 0)
		api_error(q, 404, "NOT_FOUND", "no checkpoint yet");
	else if (!many)
		api_reply(q, 200, ckpt_doc(&cs[0]));
	else {
		json_t *items = json_array();
		for (int i = 0; i < n; i++)
			json_array_append_new(items, ckpt_doc(&cs[i]));
		char next[24];
		snprintf(next, sizeof(next), "%llu",
			 n ? (unsigned long long)cs[n - 1].id : 0ull);
		api_reply(q, 200, api_page(items, (unsigned)n == limit &&
						  cs[n - 1].id > 1 ? next
								   : NULL));
	}
	free(cs);
}

void api_checkpoints_add(struct api_req *q)
{
	struct store_checkpoint c;
	struct parley_err err = { 0 };
	if (!q->a->ckpt) {
		api_error(q, 503, "UNAVAILABLE", "no checkpoint key");
		return;
	}
	int rc = ckpt_make(q->a->ckpt, &c, &err);
	if (rc == -ENODATA)
		api_error(q, 409, "CONFLICT", "%s", perr_msg(&err));
	else if (rc < 0)
		api_fail(q, rc, &err);
	else
		api_reply(q, 201, ckpt_doc(&c));
}
