/*
 * The audit event stream (api_stream.h): one hub on the daemon's loop,
 * woken by the store's commit hook. It reads the rows new since it last
 * looked once, formatted once, and writes them to every client that is
 * caught up and has room; a client that is behind reads its own pages
 * from the store as its connection drains (the store is its queue).
 *
 * Clients are evhttp requests answered with a chunked response that we
 * end only when dropping the client; the connection's close callback is
 * where a client ends, whoever closed it.
 */
#include "daemon/rpc/api_stream.h"
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/api_json.h"
#include "db/store_watch.h"
#include "common/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

/* Rows per page at most (and STREAM_PAGE_BYTES of text). */
#define PAGE_ROWS 512
/* How long a dropped client's last bytes may take before the connection
 * is cut. */
#define DROP_GRACE_MS 30000

struct sclient {
	TAILQ_ENTRY(sclient) entry;
	struct stream_hub *h;
	struct evhttp_request *r;       /* NULL once the reply was ended */
	struct evhttp_connection *evcon;
	struct evbuffer *out;           /* where its bytes wait (below the
					 * gate), watched for draining */
	struct evbuffer_cb_entry *drain;
	struct event *more;             /* drained: fill it again */
	uint64_t sent;                  /* the last row id written */
	uint64_t ready_at;              /* `event: ready` once sent reaches it */
	bool ready;
	unsigned chunks;                /* sent since its output was empty */
	struct event *grace;            /* dropped: cut after DROP_GRACE_MS */
	char id[API_REQ_ID];
};

struct page {
	struct api_jbuf text;
	uint64_t first, last;           /* row ids in it */
	unsigned rows;
};

struct stream_hub {
	struct api_server *a;
	struct event *wake, *again, *beat;
	uint64_t head;                  /* the last row id read */
	TAILQ_HEAD(, sclient) clients;
	unsigned n;
	struct page batch;              /* this turn's new rows */
};

unsigned api_stream_clients(const struct api_server *a)
{
	return a->stream ? a->stream->n : 0;
}

/* ---- rows as events ---------------------------------------------------- */

static void jb_num(struct api_jbuf *b, const char *fmt, uint64_t v)
{
	char t[48];
	int n = snprintf(t, sizeof(t), fmt, v);
	api_jb_raw(b, t, (size_t)n);
}

/* `id: N`, `event: audit`, `data: ` and the row as /v1/audit lists it.
 * The JSON has no newline in it (api_jb_str escapes control bytes), so it
 * is one data line. */
static void format_row(struct api_jbuf *b, const struct store_audit *r)
{
	jb_num(b, "id: %" PRIu64 "\nevent: audit\ndata: ", r->id);
	jb_num(b, "{\"id\":%" PRIu64, r->id);
	jb_num(b, ",\"time_ms\":%" PRId64, (uint64_t)r->time_ms);
	static const char *const keys[] = { "host", "event", "partition",
		"channel", "reason", "file", "detail" };
	const char *vals[] = { r->host, r->event, r->partition, r->channel,
		r->reason, r->file, r->detail };
	for (unsigned i = 0; i < 7; i++) {
		api_jb_lit(b, ",\"");
		api_jb_lit(b, keys[i]);
		api_jb_lit(b, "\":");
		api_jb_str(b, vals[i]);
	}
	api_jb_lit(b, "}\n\n");
}

static int page_row(const struct store_audit *r, void *ctx)
{
	struct page *p = ctx;
	if (!p->rows)
		p->first = r->id;
	p->last = r->id;
	p->rows++;
	format_row(&p->text, r);
	return p->text.len >= STREAM_PAGE_BYTES || p->rows >= PAGE_ROWS;
}

/* Rows after `after`, up to a page; the page's rows (0: none), or -1
 * (logged). */
static int read_page(struct stream_hub *h, uint64_t after, struct page *p)
{
	struct parley_err err = { 0 };
	p->text.len = 0;
	p->text.oom = false;
	p->rows = 0;
	int n = store_audit_list(h->a->store, after, PAGE_ROWS, page_row, p,
				 &err);
	if (n < 0 || p->text.oom) {
		/* Busy (another writer) or broken: looked for again at the
		 * next commit, drain or beat. */
		log_warn("api stream: reading the trail: %s", n < 0
			 ? perr_msg(&err) : "out of memory");
		return -1;
	}
	return (int)p->rows;
}

/* ---- clients ----------------------------------------------------------- */

/* What c's unwritten bytes cost: their length, and for each chunk a
 * buffer chain of its own (libevent's smallest is 1 KiB, whatever it
 * holds) -- a row per commit is a chunk of ~250 bytes each, and counted
 * by length alone a client that does not read held 1.6 MiB, not the
 * 128 KiB STREAM_QUEUE_LOW means. */
static size_t queued(const struct sclient *c)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
	size_t n = evbuffer_get_length(bufferevent_get_output(bev));
	if (c->out != bufferevent_get_output(bev))
		n += evbuffer_get_length(c->out);
	return n + (size_t)c->chunks * STREAM_CHUNK_COST;
}

static void unwatch(struct sclient *c)
{
	if (c->drain)
		evbuffer_remove_cb_entry(c->out, c->drain);
	c->drain = NULL;
}

static void client_free(struct sclient *c)
{
	struct stream_hub *h = c->h;
	TAILQ_REMOVE(&h->clients, c, entry);
	h->n--;
	unwatch(c);
	if (c->grace)
		event_free(c->grace);
	if (c->more)
		event_free(c->more);
	free(c);
}

/* The connection is going away (the client left, or we cut it): evhttp
 * frees the request unless a client's EOF orphaned it, in which case it
 * is ours to free. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	struct sclient *c = arg;
	if (c->r && !evhttp_request_get_connection(c->r))
		evhttp_send_reply_end(c->r);
	log_info("api stream %s: closed after id %" PRIu64, c->id, c->sent);
	client_free(c);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sclient *c = arg;
	/* Frees the connection; on_close frees c. */
	evhttp_connection_free(c->evcon);
}

/* Bytes to c as one chunk. */
static void send_bytes(struct sclient *c, const char *p, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	if (!b || evbuffer_add(b, p, n) < 0) {
		if (b)
			evbuffer_free(b);
		return;
	}
	evhttp_send_reply_chunk(c->r, b);
	evbuffer_free(b);
	c->chunks++;
}

/* Tell it why, end the reply, and cut the connection if even that is not
 * written within the grace time. c stays listed until its connection
 * closes (callers may be walking the list). */
static void drop(struct sclient *c, const char *reason)
{
	char t[256];
	size_t q = queued(c);
	uint64_t behind = c->h->head > c->sent ? c->h->head - c->sent : 0;
	int n = snprintf(t, sizeof(t), "event: dropped\ndata: {\"reason\":"
			 "\"%s\",\"last_id\":%" PRIu64 ",\"behind\":%" PRIu64
			 ",\"queued_bytes\":%zu}\n\n", reason, c->sent, behind,
			 q);
	log_warn("api stream %s: dropped (%s: %" PRIu64 " rows behind, %zu "
		 "bytes queued)", c->id, reason, behind, q);
	unwatch(c);
	send_bytes(c, t, (size_t)n);
	evhttp_send_reply_end(c->r);
	c->r = NULL;
	c->grace = evtimer_new(c->h->a->base, on_grace, c);
	struct timeval tv = { DROP_GRACE_MS / 1000, 0 };
	/* Without the timer (out of memory) the connection ends when its
	 * bytes are written. */
	if (c->grace)
		evtimer_add(c->grace, &tv);
}

static void maybe_ready(struct sclient *c)
{
	if (c->ready || !c->r || c->sent < c->ready_at)
		return;
	char t[96];
	int k = snprintf(t, sizeof(t), "event: ready\ndata: {\"last_id\":%"
			 PRIu64 "}\n\n", c->sent);
	send_bytes(c, t, (size_t)k);
	c->ready = true;
}

/* Pages from the store while c has room and is behind h->head. */
static void fill(struct sclient *c)
{
	struct stream_hub *h = c->h;
	struct page p = { 0 };
	uint64_t to = h->head > c->ready_at ? h->head : c->ready_at;
	while (c->r && c->sent < to && queued(c) < STREAM_QUEUE_LOW) {
		int n = read_page(h, c->sent, &p);
		if (n <= 0)
			break;
		send_bytes(c, p.text.p, p.text.len);
		c->sent = p.last;
	}
	api_jb_free(&p.text);
	maybe_ready(c);
}

static void on_more(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fill(arg);
}

/* c's bytes are leaving: when it has room and is behind, fill it (from
 * the loop, not from inside the buffer's own callback). */
static void on_drain(struct evbuffer *b, const struct evbuffer_cb_info *i,
		     void *arg)
{
	struct sclient *c = arg;
	if (i->n_deleted && evbuffer_get_length(b) == 0)
		c->chunks = 0;
	if (i->n_deleted && c->r && (c->sent < c->h->head || !c->ready) &&
	    queued(c) < STREAM_QUEUE_LOW / 2)
		event_active(c->more, EV_READ, 0);
}

/* ---- the hub ----------------------------------------------------------- */

/* The rows new since h->head, once: to each client caught up with room;
 * a client behind fills itself; one behind by more than STREAM_LAG_MAX
 * without room is dropped. */
static void pump(struct stream_hub *h)
{
	uint64_t prev = h->head;
	int n = read_page(h, prev, &h->batch);
	if (n <= 0)
		return;
	h->head = h->batch.last;
	struct sclient *c;
	TAILQ_FOREACH(c, &h->clients, entry) {
		if (!c->r)
			continue;
		bool room = queued(c) < STREAM_QUEUE_LOW;
		if (c->sent == prev && room) {
			send_bytes(c, h->batch.text.p, h->batch.text.len);
			c->sent = h->head;
			maybe_ready(c);
		} else if (!room && h->head > c->sent &&
			   h->head - c->sent > STREAM_LAG_MAX) {
			drop(c, "slow_client");
		} else if (room) {
			fill(c);
		}
	}
	/* A full page: there may be more; serve sockets first. */
	if (n >= PAGE_ROWS || h->batch.text.len >= STREAM_PAGE_BYTES) {
		struct timeval now = { 0, 0 };
		evtimer_add(h->again, &now);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct stream_hub *h = arg;
	/* Rows another process wrote, if the daemon itself was quiet. */
	pump(h);
	struct sclient *c;
	TAILQ_FOREACH(c, &h->clients, entry)
		if (c->r && queued(c) < STREAM_QUEUE_LOW)
			send_bytes(c, ": beat\n\n", 8);
}

/* Inside a commit (db/store_watch.h): only note it. */
static void on_commit(void *arg)
{
	struct stream_hub *h = arg;
	event_active(h->wake, EV_READ, 0);
}

int api_stream_start(struct api_server *a)
{
	struct stream_hub *h = calloc(1, sizeof(*h));
	struct parley_err err = { 0 };
	uint8_t hash[STORE_DIGEST];
	if (!h)
		return -ENOMEM;
	h->a = a;
	TAILQ_INIT(&h->clients);
	h->wake = event_new(a->base, -1, 0, on_wake, h);
	h->again = evtimer_new(a->base, on_wake, h);
	h->beat = event_new(a->base, -1, EV_PERSIST, on_beat, h);
	struct timeval tv = { STREAM_BEAT_MS / 1000, 0 };
	int rc = h->wake && h->again && h->beat ? 0 : -ENOMEM;
	if (rc == 0)
		rc = store_audit_head(a->store, &h->head, hash, &err);
	if (rc == 0 && evtimer_add(h->beat, &tv) < 0)
		rc = -ENOMEM;
	if (rc == 0)
		rc = store_watch_commits(a->store, on_commit, h);
	if (rc < 0) {
		log_error("api stream: cannot start: %s", rc == -ENOMEM
			  ? "out of memory" : perr_msg(&err));
		if (h->wake)
			event_free(h->wake);
		if (h->again)
			event_free(h->again);
		if (h->beat)
			event_free(h->beat);
		free(h);
		return rc;
	}
	a->stream = h;
	return 0;
}

void api_stream_stop(struct api_server *a)
{
	struct stream_hub *h = a->stream;
	if (!h)
		return;
	store_watch_commits(a->store, NULL, NULL);
	/* evhttp_free closed every connection before this (on_close); what
	 * is left had none. */
	struct sclient *c;
	while ((c = TAILQ_FIRST(&h->clients)))
		client_free(c);
	event_free(h->wake);
	event_free(h->again);
	event_free(h->beat);
	api_jb_free(&h->batch.text);
	free(h);
	a->stream = NULL;
}

/* ---- a new client ------------------------------------------------------ */

int api_stream_attach(struct api_server *a, struct evhttp_request *r,
		      uint64_t after, uint64_t head, const char *id,
		      const char *first, size_t first_len)
{
	struct stream_hub *h = a->stream;
	struct evhttp_connection *evcon = evhttp_request_get_connection(r);
	struct sclient *c = h && evcon ? calloc(1, sizeof(*c)) : NULL;
	if (c)
		c->more = event_new(a->base, -1, 0, on_more, c);
	if (!c || !c->more) {
		free(c);
		return -ENOMEM; /* nothing sent: the caller answers */
	}
	c->h = h;
	c->r = r;
	c->evcon = evcon;
	c->sent = after;
	c->ready_at = head;
	/* Rows the hub has not read yet (another process wrote them): it
	 * reads them for the others too. */
	if (head > h->head)
		event_active(h->wake, EV_READ, 0);
	snprintf(c->id, sizeof(c->id), "%s", id);
	TAILQ_INSERT_TAIL(&h->clients, c, entry);
	h->n++;

	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct bufferevent *under = bufferevent_get_underlying(bev);
	/* A stream is idle for long stretches: no read or write timeout (a
	 * dead peer is found by the beat, a slow one by its lag). */
	bufferevent_set_timeouts(bev, NULL, NULL);
	/* Anything the client sends after its request is not read: stop
	 * taking it in beyond a little. */
	bufferevent_setwatermark(bev, EV_READ, 0, 16 * 1024);
	/* Keep the kernel from holding megabytes for a reader that does not
	 * read: what it may cost is then this and STREAM_QUEUE_LOW. */
	int fd = bufferevent_getfd(bev), sz = STREAM_SNDBUF;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	evhttp_connection_set_closecb(evcon, on_close, c);
	/* The gate moves evhttp's bytes below at once: they wait there. */
	c->out = bufferevent_get_output(under ? under : bev);
	c->drain = evbuffer_add_cb(c->out, on_drain, c);

	struct evkeyvalq *oh = evhttp_request_get_output_headers(r);
	evhttp_add_header(oh, "Content-Type", "text/event-stream");
	evhttp_add_header(oh, "Cache-Control", "no-store");
	evhttp_add_header(oh, "X-Request-Id", id);
	evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(oh, "Connection", "close");
	evhttp_send_reply_start(r, 200, "OK");
	send_bytes(c, first, first_len);
	log_info("api stream %s: open after id %" PRIu64 " (%u clients)", id,
		 after, h->n);
	/* The rows it missed, as it reads them; then `event: ready`. */
	fill(c);
	return 0;
}

/* ---- the route ---------------------------------------------------------- */

/* A resume point: digits only, as the header or ?after=. */
static bool parse_id(const char *v, uint64_t *out)
{
	char *end;
	if (!v || v[0] < '0' || v[0] > '9' || strlen(v) > 19)
		return false;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (*end || errno || n > INT64_MAX)
		return false;
	*out = n;
	return true;
}

void api_events(struct api_req *q)
{
	struct parley_err err = { 0 };
	uint8_t hash[STORE_DIGEST];
	uint64_t head, after;
	const char *qa = api_query(q, "after");
	const char *ha = evhttp_find_header(
		evhttp_request_get_input_headers(q->r), "Last-Event-ID");
	const char *v = qa ? qa : ha;
	if (v && !parse_id(v, &after)) {
		api_error(q, 400, "BAD_REQUEST", "%s: expected an audit id (a "
			  "non-negative integer)", qa ? "after"
						      : "Last-Event-ID");
		return;
	}
	int rc = store_audit_head(q->a->store, &head, hash, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	if (!v)
		after = head;
	if (after > head) {
		api_error(q, 400, "BAD_REQUEST", "%s: %llu is beyond the "
			  "trail's last id %llu", qa ? "after" : "Last-Event-ID",
			  (unsigned long long)after, (unsigned long long)head);
		return;
	}
	if (head - after > STREAM_REPLAY_MAX) {
		api_error(q, 409, "CONFLICT", "%llu events behind, at most %d "
			  "are replayed: read /v1/audit?after=%llu first",
			  (unsigned long long)(head - after), STREAM_REPLAY_MAX,
			  (unsigned long long)after);
		return;
	}
	if (api_stream_clients(q->a) >= STREAM_CLIENTS_MAX) {
		api_error(q, 503, "UNAVAILABLE", "%d event streams are open "
			  "already", STREAM_CLIENTS_MAX);
		return;
	}
	/* The held answer is the stream's first bytes; on_request sends it
	 * with the head and keeps the request open (api_stream_attach). */
	static const char first[] = "retry: 3000\n: parley audit stream\n\n";
	char *body = strdup(first);
	if (!body) {
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	free(q->body);
	q->status = 200;
	q->ctype = "text/event-stream";
	q->body = body;
	q->body_len = sizeof(first) - 1;
	q->stream = true;
	q->stream_after = after;
	q->stream_head = head;
}
