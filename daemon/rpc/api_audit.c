/*
 * API routes: the audit trail, filtered and paginated by id, its chain
 * verified, and its signed checkpoints.
 */
#include "daemon/rpc/api_int.h"
#include "daemon/checkpoint.h"
#include "common/checkpoint.h"
#include "db/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct audit_filter {
	const char *host, *partition, *event;
	int64_t since_ms, until_ms;     /* 0: unbounded */
	unsigned limit;
	json_t *items;
	uint64_t last;                  /* last id looked at */
};

static int audit_row(const struct store_audit *r, void *ctx)
{
	struct audit_filter *f = ctx;
	f->last = r->id;
	if ((f->host && strcmp(f->host, r->host)) ||
	    (f->partition && strcmp(f->partition, r->partition)) ||
	    (f->event && strcmp(f->event, r->event)) ||
	    (f->since_ms && r->time_ms < f->since_ms) ||
	    (f->until_ms && r->time_ms > f->until_ms))
		return 0;
	json_array_append_new(f->items, json_pack(
		"{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id",
		(json_int_t)r->id, "time_ms", (json_int_t)r->time_ms, "host",
		r->host, "event", r->event, "partition", r->partition,
		"channel", r->channel, "reason", r->reason, "file", r->file,
		"detail", r->detail));
	return json_array_size(f->items) >= f->limit;
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
		api_error(q, 400, "BAD_REQUEST", "%s: expected a non-negative "
			  "integer", key);
		return false;
	}
	*v = n;
	return true;
}

static bool audit_args(struct api_req *q, struct audit_filter *f,
		       uint64_t *after)
{
	uint64_t since, until;
	f->host = api_query(q, "host");
	f->partition = api_query(q, "partition");
	f->event = api_query(q, "event");
	if (!api_limit(q, &f->limit) || !query_u64(q, "after", after) ||
	    !query_u64(q, "since_ms", &since) ||
	    !query_u64(q, "until_ms", &until) ||
	    (f->host && !api_name_ok(q, "host", f->host)) ||
	    (f->partition && !api_name_ok(q, "partition", f->partition)) ||
	    (f->event && !api_name_ok(q, "event", f->event)))
		return false;
	f->since_ms = (int64_t)since;
	f->until_ms = (int64_t)until;
	return true;
}

void api_audit_list(struct api_req *q)
{
	struct audit_filter f = { 0 };
	uint64_t after;
	struct parley_err err = { 0 };
	if (!audit_args(q, &f, &after))
		return;
	f.items = json_array();
	f.last = after;
	/* Filters are applied here, so walk pages until the page is full
	 * or the trail ends. */
	int n;
	do
		n = store_audit_list(q->a->store, f.last, STORE_LIST_MAX,
				     audit_row, &f, &err);
	while (n == STORE_LIST_MAX && json_array_size(f.items) < f.limit);
	if (n < 0) {
		json_decref(f.items);
		api_fail(q, n, &err);
		return;
	}
	char next[24];
	snprintf(next, sizeof(next), "%llu", (unsigned long long)f.last);
	api_reply(q, 200, api_page(f.items, json_array_size(f.items) >= f.limit
						    ? next : NULL));
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
