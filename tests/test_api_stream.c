/* GET /v1/events (daemon/rpc/api_stream.c) against a real parleyd, read
 * with a plain socket: rows as they are committed, resuming after an id,
 * the hostile and unauthenticated requests refused as JSON, many clients,
 * and a client that does not read dropped with its reason while the
 * others and the API go on. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "daemon/rpc/api_stream.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

/* One stream connection and what it read so far. */
struct sc {
	int fd;
	char *buf;
	size_t len, cap;
	bool eof;
};

static void sc_open_q(struct sc *s, int port, const char *token,
		      const char *target, const char *extra, int rcvbuf)
{
	memset(s, 0, sizeof(*s));
	if (rcvbuf) {
		/* Before connect, so the window is small from the start. */
		s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(s->fd, 0);
		setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			   sizeof(rcvbuf));
		struct timeval tv = { 10, 0 };
		setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		struct sockaddr_in a = { .sin_family = AF_INET,
			.sin_port = htons((uint16_t)port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cr_assert_eq(connect(s->fd, (struct sockaddr *)&a, sizeof(a)),
			     0);
	} else {
		s->fd = ac_connect(port);
		cr_assert_geq(s->fd, 0);
	}
	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n"
			 "%s%s%s%s\r\n", target, token ? "Authorization: "
			 "Bearer " : "", token ? token : "", token ? "\r\n"
			 : "", extra ? extra : "");
	cr_assert_eq(send(s->fd, req, (size_t)n, MSG_NOSIGNAL), n);
	s->cap = 65536;
	s->buf = calloc(1, s->cap);
}

static void sc_open(struct sc *s, int port, const char *token)
{
	sc_open_q(s, port, token, "/v1/events", NULL, 0);
}

/* Read until `needle` is in what was read, or EOF/timeout (10 s without a
 * byte, from ac_connect's receive timeout): whether it came. */
static bool sc_until(struct sc *s, const char *needle)
{
	for (;;) {
		if (strstr(s->buf, needle))
			return true;
		if (s->eof)
			return false;
		if (s->len + 4097 > s->cap) {
			s->buf = realloc(s->buf, s->cap *= 2);
			cr_assert(s->buf);
		}
		ssize_t n = recv(s->fd, s->buf + s->len, s->cap - s->len - 1,
				 0);
		if (n <= 0) {
			s->eof = true;
			continue;
		}
		s->len += (size_t)n;
		s->buf[s->len] = '\0';
	}
}

static void sc_close(struct sc *s)
{
	close(s->fd);
	free(s->buf);
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *p = strstr(hay, needle); p;
	     p = strstr(p + 1, needle))
		n++;
	return n;
}

static void add_host(struct api_client *c, const char *name)
{
	char body[128];
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	struct ac_resp r;
	ac_call(c, "POST", "/v1/hosts", c->admin, body, &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
}

Test(api_stream, rows_arrive_as_they_are_committed)
{
	struct api_client c;
	ac_start(&c);
	struct sc s;
	sc_open(&s, c.port, c.admin);
	cr_assert(sc_until(&s, "event: ready\n"), "%s", s.buf);
	cr_expect(!strncmp(s.buf, "HTTP/1.1 200", 12), "%s", s.buf);
	cr_expect(strcasestr(s.buf, "\r\nContent-Type: text/event-stream\r\n"),
		  "%s", s.buf);
	cr_expect(strcasestr(s.buf, "\r\nX-Request-Id: "), "%s", s.buf);
	cr_expect(strstr(s.buf, "retry: 3000\n"), "%s", s.buf);
	/* Live only: nothing of the trail before the connection. */
	cr_expect(!strstr(s.buf, "event: audit"), "%s", s.buf);

	add_host(&c, "h-live");
	cr_assert(sc_until(&s, "\"detail\":\"POST /v1/hosts -> 201"), "%s",
		  s.buf);
	const char *ev = strstr(s.buf, "event: audit\ndata: {\"id\":");
	cr_assert(ev, "%s", s.buf);
	cr_expect(strstr(ev, "\"event\":\"api_change\""), "%s", ev);
	cr_expect(strstr(ev, "\"host\":\"h-live\""), "%s", ev);
	/* The id line precedes it and names the same row. */
	const char *idl = strstr(s.buf, "id: ");
	cr_assert(idl && idl < ev);
	char want[48];
	snprintf(want, sizeof(want), "{\"id\":%llu,",
		 strtoull(idl + 4, NULL, 10));
	cr_expect(strstr(ev, want), "%s vs %s", want, ev);
	sc_close(&s);
	ac_stop(&c);
}

Test(api_stream, resumes_after_an_id_then_goes_on_live)
{
	struct api_client c;
	ac_start(&c);
	add_host(&c, "h1");
	add_host(&c, "h2");
	add_host(&c, "h3");
	struct ac_resp r;
	ac_call(&c, "GET", "/v1/audit?limit=1000", c.admin, NULL, &r);
	json_t *items = json_object_get(r.json, "items");
	size_t n = json_array_size(items);
	cr_assert_geq(n, 3);
	/* After the row before the last three: those three come back. */
	json_int_t from = json_integer_value(json_object_get(
		json_array_get(items, n - 4 < n ? n - 4 : 0), "id"));
	if (n == 3)
		from = 0;
	ac_free(&r);
	char target[64];
	snprintf(target, sizeof(target), "/v1/events?after=%lld",
		 (long long)from);
	struct sc s;
	sc_open_q(&s, c.port, c.admin, target, NULL, 0);
	cr_assert(sc_until(&s, "event: ready\n"), "%s", s.buf);
	cr_expect_eq(count(s.buf, "event: audit\n"), 3, "%s", s.buf);
	const char *a1 = strstr(s.buf, "\"host\":\"h1\""),
		   *a3 = strstr(s.buf, "\"host\":\"h3\"");
	cr_expect(a1 && a3 && a1 < a3, "in order: %s", s.buf);
	add_host(&c, "h4");
	cr_expect(sc_until(&s, "\"host\":\"h4\""), "%s", s.buf);
	cr_expect_eq(count(s.buf, "event: audit\n"), 4, "%s", s.buf);
	sc_close(&s);

	/* EventSource's way: the Last-Event-ID header. */
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "Last-Event-ID: %lld\r\n",
		 (long long)from);
	sc_open_q(&s, c.port, c.admin, "/v1/events", hdr, 0);
	cr_assert(sc_until(&s, "event: ready\n"), "%s", s.buf);
	cr_expect_eq(count(s.buf, "event: audit\n"), 4, "%s", s.buf);
	sc_close(&s);
	ac_stop(&c);
}

/* A refused stream request is an ordinary JSON error that ends. */
static void refused(struct api_client *c, const char *token,
		    const char *method, const char *target, const char *extra,
		    int status, const char *code)
{
	char req[1024];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n"
			 "Connection: close\r\n%s%s%s%s\r\n", method, target,
			 token ? "Authorization: Bearer " : "",
			 token ? token : "", token ? "\r\n" : "",
			 extra ? extra : "");
	struct ac_resp r;
	ac_raw(c->port, req, (size_t)n, &r);
	cr_expect_eq(r.status, status, "%s %s %s: %s", method, target,
		     extra ? extra : "", r.raw);
	cr_expect_str_eq(ac_code(&r), code, "%s %s: %s", method, target,
			 r.raw);
	cr_expect(strcasestr(r.raw, "Content-Type: application/json"), "%s",
		  r.raw);
	ac_free(&r);
}

Test(api_stream, hostile_and_unauthenticated_requests_refused)
{
	struct api_client c;
	ac_start(&c);
	add_host(&c, "h1");
	refused(&c, NULL, "GET", "/v1/events", NULL, 401, "UNAUTHENTICATED");
	refused(&c, "prl_0000000000000000000000000000000000000000000000000000"
		"000000000000", "GET", "/v1/events", NULL, 401,
		"UNAUTHENTICATED");
	/* The token goes in the header; never in the URL. */
	char t[256];
	snprintf(t, sizeof(t), "/v1/events?access_token=%s", c.admin);
	refused(&c, NULL, "GET", t, NULL, 401, "UNAUTHENTICATED");
	refused(&c, c.admin, "POST", "/v1/events", NULL, 405,
		"METHOD_NOT_ALLOWED");
	refused(&c, c.admin, "HEAD", "/v1/events", NULL, 405,
		"METHOD_NOT_ALLOWED");
	refused(&c, c.admin, "GET", "/v1/events/x", NULL, 404, "NOT_FOUND");
	static const char *const bad_after[] = {
		"-1", "x", "1x", "0x10", "", "+5", "99999999999999999999",
		"18446744073709551615", "%20%31", "1%20", "1%00", "1%00x",
		"0%00",
	};
	for (size_t i = 0; i < sizeof(bad_after) / sizeof(*bad_after); i++) {
		snprintf(t, sizeof(t), "/v1/events?after=%s", bad_after[i]);
		refused(&c, c.admin, "GET", t, NULL, 400, "BAD_REQUEST");
	}
	refused(&c, c.admin, "GET", "/v1/events", "Last-Event-ID: zz\r\n",
		400, "BAD_REQUEST");
	refused(&c, c.admin, "GET", "/v1/events", "Last-Event-ID: -3\r\n",
		400, "BAD_REQUEST");
	/* Beyond the trail's head; the answer names what was sent. */
	refused(&c, c.admin, "GET", "/v1/events?after=9000000", NULL, 400,
		"BAD_REQUEST");
	char req[512];
	int n = snprintf(req, sizeof(req), "GET /v1/events HTTP/1.1\r\n"
			 "Authorization: Bearer %s\r\nConnection: close\r\n"
			 "Last-Event-ID: 9000000\r\n\r\n", c.admin);
	struct ac_resp r;
	ac_raw(c.port, req, (size_t)n, &r);
	cr_expect_eq(r.status, 400, "%s", r.raw);
	cr_expect(strstr(r.raw, "Last-Event-ID: 9000000 is beyond"), "%s",
		  r.raw);
	ac_free(&r);
	/* Any parameter: a NUL would end its value where evhttp put it. */
	refused(&c, c.admin, "GET", "/v1/audit?limit=1%00x", NULL, 400,
		"BAD_REQUEST");
	ac_stop(&c);
}

/* Rows with a large detail, written by the test process into the
 * daemon's store (as another writer may): the stream finds them at the
 * daemon's next commit. */
static void append_rows(struct api_client *c, unsigned n, size_t detail)
{
	struct store *st = fd_store(&c->f);
	char *d = malloc(detail + 1);
	memset(d, 'x', detail);
	d[detail] = '\0';
	struct store_audit_in *ev = calloc(n, sizeof(*ev));
	for (unsigned i = 0; i < n; i++)
		ev[i] = (struct store_audit_in){ .event = "bulk_test",
						 .detail = d };
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_append(st, ev, n, NULL, &err), 0, "%s",
		     err.msg);
	store_close(st);
	free(ev);
	free(d);
}

Test(api_stream, too_far_behind_is_refused_with_where_to_read)
{
	struct api_client c;
	ac_start(&c);
	append_rows(&c, STREAM_REPLAY_MAX + 5, 10);
	refused(&c, c.admin, "GET", "/v1/events?after=0", NULL, 409,
		"CONFLICT");
	refused(&c, c.admin, "GET", "/v1/events?after=2", NULL, 409,
		"CONFLICT");
	/* Exactly the bound is replayed. */
	struct sc s;
	struct ac_resp r;
	ac_call(&c, "GET", "/v1/audit?after=9990&limit=1000", c.admin, NULL,
		&r);
	json_t *items = json_object_get(r.json, "items");
	json_int_t last = json_integer_value(json_object_get(
		json_array_get(items, json_array_size(items) - 1), "id"));
	ac_free(&r);
	cr_assert_geq(last, STREAM_REPLAY_MAX + 5);
	char target[64];
	snprintf(target, sizeof(target), "/v1/events?after=%lld",
		 (long long)(last - STREAM_REPLAY_MAX));
	sc_open_q(&s, c.port, c.admin, target, NULL, 0);
	cr_assert(sc_until(&s, "event: ready\n"), "%.300s", s.buf);
	cr_expect_eq(count(s.buf, "event: audit\n"), STREAM_REPLAY_MAX);
	sc_close(&s);
	ac_stop(&c);
}

Test(api_stream, a_hundred_clients_each_get_every_row, .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	enum { N = 100 };
	static struct sc s[N];
	for (int i = 0; i < N; i++)
		sc_open(&s[i], c.port, c.admin);
	for (int i = 0; i < N; i++)
		cr_assert(sc_until(&s[i], "event: ready\n"), "client %d: %s",
			  i, s[i].buf);
	add_host(&c, "h-a");
	add_host(&c, "h-b");
	for (int i = 0; i < N; i++) {
		cr_expect(sc_until(&s[i], "\"host\":\"h-b\""), "client %d",
			  i);
		cr_expect_eq(count(s[i].buf, "event: audit\n"), 2,
			     "client %d: %s", i, s[i].buf);
		sc_close(&s[i]);
	}
	ac_stop(&c);
}

Test(api_stream, a_reader_gets_a_burst_far_beyond_its_queue,
     .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct sc s;
	sc_open(&s, c.port, c.admin);
	cr_assert(sc_until(&s, "event: ready\n"));
	/* 5,000 rows of 300 bytes in one commit of another writer, ten
	 * times the queue; the daemon's next commit wakes the stream. The
	 * client reads only afterwards: it is behind, not dropped (fewer
	 * than STREAM_LAG_MAX rows), and is given the rest as it reads. */
	append_rows(&c, 5000, 300);
	add_host(&c, "h-after");
	cr_assert(sc_until(&s, "\"host\":\"h-after\""), "%zu bytes", s.len);
	cr_expect_eq(count(s.buf, "\"event\":\"bulk_test\""), 5000);
	cr_expect(!strstr(s.buf, "event: dropped"));
	sc_close(&s);
	ac_stop(&c);
}

Test(api_stream, a_client_that_does_not_read_is_dropped_and_blocks_nobody,
     .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct sc slow, fresh;
	/* It takes its head, then reads nothing more. */
	sc_open_q(&slow, c.port, c.admin, "/v1/events", NULL, 4096);
	cr_assert(sc_until(&slow, "event: ready\n"));
	/* More rows than it may be behind, in one commit of another
	 * writer; the daemon's next commit wakes the stream. */
	append_rows(&c, STREAM_LAG_MAX + 2000, 100);
	add_host(&c, "h-flood");
	/* The API answers meanwhile, and a new stream works. */
	struct ac_resp r;
	ac_call(&c, "GET", "/v1/hosts", c.admin, NULL, &r);
	cr_expect_eq(r.status, 200);
	ac_free(&r);
	sc_open(&fresh, c.port, c.admin);
	cr_assert(sc_until(&fresh, "event: ready\n"));
	add_host(&c, "h-later");
	cr_expect(sc_until(&fresh, "\"host\":\"h-later\""), "%s", fresh.buf);
	cr_expect(!strstr(fresh.buf, "bulk_test"), "live only: %.300s",
		  fresh.buf);
	sc_close(&fresh);
	/* The slow one, reading now: some rows, then why it was dropped,
	 * then the end. */
	cr_assert(sc_until(&slow, "event: dropped\n"), "%zu bytes read",
		  slow.len);
	cr_expect(strstr(slow.buf, "\"reason\":\"slow_client\""), "%s",
		  strstr(slow.buf, "event: dropped"));
	unsigned got = count(slow.buf, "\"event\":\"bulk_test\"");
	cr_expect_lt(got, STREAM_LAG_MAX, "dropped long before the end");
	cr_expect(!strstr(slow.buf, "h-later"));
	sc_until(&slow, "\n\n\n\n\n"); /* to EOF */
	cr_expect(slow.eof);
	sc_close(&slow);
	ac_stop(&c);
}

/* Over HTTPS (--api-cert/--api-key), the stream is the same. */
Test(api_stream, over_tls)
{
	struct api_client c;
	ac_start_tls(&c);
	char ca[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", c.f.dir);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = ac_connect(c.port);
	cr_assert_geq(fd, 0);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	cr_assert_eq(SSL_connect(ssl), 1, "TLS handshake");
	char req[256];
	int n = snprintf(req, sizeof(req), "GET /v1/events HTTP/1.1\r\nHost: x"
			 "\r\nAuthorization: Bearer %s\r\n\r\n", c.admin);
	cr_assert_eq(SSL_write(ssl, req, n), n);
	static char buf[65536];
	size_t len = 0;
	bool added = false;
	while (len + 1 < sizeof(buf) && !strstr(buf, "\"host\":\"h-tls\"")) {
		int k = SSL_read(ssl, buf + len, (int)(sizeof(buf) - len - 1));
		if (k <= 0)
			break;
		len += (size_t)k;
		buf[len] = '\0';
		if (!added && strstr(buf, "event: ready\n")) {
			char post[512];
			int m = snprintf(post, sizeof(post), "POST /v1/hosts "
					 "HTTP/1.1\r\nHost: x\r\nConnection: "
					 "close\r\nAuthorization: Bearer %s\r\n"
					 "Content-Length: 16\r\n\r\n"
					 "{\"name\":\"h-tls\"}", c.admin);
			struct ac_resp r;
			ac_raw_tls(&c, post, (size_t)m, &r);
			cr_assert_eq(r.status, 201, "%s", r.raw);
			ac_free(&r);
			added = true;
		}
	}
	cr_expect(added, "%s", buf);
	cr_expect(strstr(buf, "\"host\":\"h-tls\""), "%s", buf);
	cr_expect(strcasestr(buf, "Content-Type: text/event-stream"), "%s",
		  buf);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	ac_stop(&c);
}

/* A hundred clients that take their head and read no more, while rows
 * come one commit at a time (each a chunk of its own): what waits for
 * each is bounded by STREAM_QUEUE_LOW as memory, not as bytes of rows
 * (each chunk a 1 KiB buffer chain: 1.6 MiB a client before). */
Test(api_stream, clients_that_do_not_read_cost_a_bounded_memory,
     .timeout = 180)
{
	struct api_client c;
	t_asan_small_quarantine();
	ac_start(&c);
	enum { N = 100, ROWS = 1500 };
	static struct sc s[N];
	for (int i = 0; i < N; i++) {
		sc_open_q(&s[i], c.port, c.admin, "/v1/events", NULL, 4096);
		cr_assert(sc_until(&s[i], "event: ready\n"), "client %d", i);
	}
	long before = t_rss_kib(c.f.daemon);
	/* pipelined: a commit, and a pump to every client, per host */
	size_t cap = (size_t)ROWS * 160, n = 0;
	char *req = malloc(cap);
	cr_assert(req);
	for (int i = 0; i < ROWS; i++) {
		char body[48];
		int bn = snprintf(body, sizeof(body), "{\"name\":\"m%d\"}", i);
		n += (size_t)snprintf(req + n, cap - n, "POST /v1/hosts HTTP/1.1"
				      "\r\nAuthorization: Bearer %s\r\n%s"
				      "Content-Length: %d\r\n\r\n%s", c.admin,
				      i == ROWS - 1 ? "Connection: close\r\n"
						    : "", bn, body);
	}
	struct ac_resp r;
	ac_raw(c.port, req, n, &r);
	free(req);
	cr_expect_eq(count(r.raw, "HTTP/1.1 201"), ROWS, "%.300s", r.raw);
	ac_free(&r);
	long after = t_rss_kib(c.f.daemon);
	cr_expect_lt(after - before, 64 * 1024, "%d clients not reading: "
		     "parleyd grew from %ld to %ld KiB", N, before, after);
	for (int i = 0; i < N; i++)
		sc_close(&s[i]);
	ac_stop(&c);
}
