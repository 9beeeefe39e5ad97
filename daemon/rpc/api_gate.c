/*
 * The gate in front of evhttp (api_gate.h): an HTTP/1.x request framer
 * that is stricter than evhttp's, so that everything it lets through
 * evhttp accepts, and everything else is refused as JSON by the API.
 *
 * Stricter means: exactly "METHOD SP /target SP HTTP/1.x", a known
 * method, header names that are tokens and values without control bytes,
 * no line folding, at most one Content-Length (digits only) or one
 * "Transfer-Encoding: chunked" but never both, no body on HEAD/TRACE,
 * chunk sizes of 1-8 hex digits without extensions, no trailers.
 */
#include "daemon/rpc/api_gate.h"
#include "common/clock.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	R_LINE = 1, R_HEADER, R_HEAD_BIG, R_BODY_BIG, R_VERSION, R_METHOD,
	R_LENGTH, R_CODING, R_FRAMING, R_CHUNK, R_EXPECT, R_TRAILER,
	R_NOBODY, R_TARGET, R_BUSY, R_AUTH_TWICE, R_UNAUTH, R_SCOPE,
	R_STORE,
};

static const struct api_gate_refusal refusals[] = {
	[R_LINE] = { 400, "BAD_REQUEST", "malformed request line" },
	[R_HEADER] = { 400, "BAD_REQUEST", "malformed header line" },
	[R_HEAD_BIG] = { 431, "HEADERS_TOO_LARGE", "request line and headers "
			 "too large" },
	[R_BODY_BIG] = { 413, "TOO_LARGE", "request body too large" },
	[R_VERSION] = { 505, "HTTP_VERSION_NOT_SUPPORTED", "only HTTP/1.0 "
			"and HTTP/1.1 are spoken here" },
	[R_METHOD] = { 501, "NOT_IMPLEMENTED", "unknown method" },
	[R_LENGTH] = { 400, "BAD_REQUEST", "malformed or repeated "
		       "Content-Length" },
	[R_CODING] = { 501, "NOT_IMPLEMENTED", "only Transfer-Encoding: "
		       "chunked is understood" },
	[R_FRAMING] = { 400, "BAD_REQUEST", "ambiguous body framing "
			"(Content-Length with Transfer-Encoding, a repeated "
			"Transfer-Encoding, or chunked in HTTP/1.0)" },
	[R_CHUNK] = { 400, "BAD_REQUEST", "malformed chunk (size: 1-8 hex "
		      "digits, no extensions; data then CRLF)" },
	[R_EXPECT] = { 417, "EXPECTATION_FAILED", "only Expect: "
		       "100-continue is understood" },
	[R_TRAILER] = { 400, "BAD_REQUEST", "trailers are not accepted" },
	[R_NOBODY] = { 400, "BAD_REQUEST", "a HEAD or TRACE request has no "
		       "body" },
	[R_BUSY] = { 503, "UNAVAILABLE", "the daemon holds too many "
		     "unfinished requests at once: send it again later" },
	[R_TARGET] = { 400, "BAD_REQUEST", "malformed request target (an "
		       "absolute path of visible ASCII)" },
	/* evhttp would read the first, the gate its own copy: one only */
	[R_AUTH_TWICE] = { 400, "BAD_REQUEST", "more than one Authorization "
			   "header" },
	/* a package upload beyond the JSON cap: the token is asked before
	 * the body is buffered, and answered as the route would */
	[R_UNAUTH] = { 401, "UNAUTHENTICATED", "missing or unknown bearer "
		       "token" },
	[R_SCOPE] = { 403, "FORBIDDEN", "this token's scope is read; a "
		      "package upload needs admin" },
	[R_STORE] = { 503, "UNAVAILABLE", "the store could not be asked "
		      "about the token: send it again later" },
};
#define NREFUSALS (sizeof(refusals) / sizeof(refusals[0]))

const struct api_gate_refusal *api_gate_refusal(unsigned n)
{
	return n >= 1 && n < NREFUSALS ? &refusals[n] : NULL;
}

#define HEADERS_MAX_COUNT 100
#define CHUNK_LINE_MAX 32

enum pstate { P_HEAD, P_BODY, P_CSIZE, P_CDATA, P_CCRLF, P_TRAILER };
enum presult { P_MORE, P_DONE, P_REFUSE };

struct parse {
	enum pstate st;
	size_t head_max, body_max;
	/* The one exception to body_max (api_gate_new_upload): a package
	 * upload, up to upload_max bytes; 0: none. `upload` says the request
	 * being read is one (set by head()). */
	size_t upload_max;
	bool upload;
	/* Whether the Authorization value (n bytes) may send an upload: a
	 * good token, asked before 64 MiB are buffered for it (0, or
	 * API_GATE_ADMIT_*). NULL: any value (api_gate_scan_upload's). */
	int (*admit)(void *ctx, const char *auth, size_t n);
	void *admit_ctx;
	size_t pos;            /* bytes of the current request parsed */
	size_t line;           /* P_HEAD: start of the line being scanned */
	uint64_t left;         /* P_BODY, P_CDATA: bytes to go */
	uint64_t body;         /* chunked: body bytes so far */
	bool cont;             /* answer 100 Continue before the body */
	unsigned refusal;
};

static void parse_reset(struct parse *ps)
{
	*ps = (struct parse){ .head_max = ps->head_max,
			      .body_max = ps->body_max,
			      .upload_max = ps->upload_max,
			      .admit = ps->admit, .admit_ctx = ps->admit_ctx };
}

/* Chunked bodies carry overhead: at most this many raw bytes (twice the
 * body: chunks of 5 bytes and more; a body of 1-byte chunks, 13 raw bytes
 * each, is refused as too large long before it holds half a megabyte
 * of a connection's memory). */
static size_t raw_max(const struct parse *ps)
{
	if (ps->upload) /* Content-Length only: no chunk overhead */
		return ps->head_max + ps->upload_max + 64;
	return ps->head_max + 2 * ps->body_max + 64;
}

static bool tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool token(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!tchar((unsigned char)p[i]))
			return false;
	return n > 0;
}

static bool is(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && !strncasecmp(p, lit, n);
}

/* Known to evhttp and allowed through; CONNECT (authority form) is not. */
static bool method_known(const char *p, size_t n)
{
	static const char *const m[] = { "GET", "POST", "HEAD", "PUT",
					 "DELETE", "OPTIONS", "TRACE",
					 "PATCH" };
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (n == strlen(m[i]) && !memcmp(p, m[i], n))
			return true;
	return false;
}

/* POST /v1/hosts/NAME/update exactly (no query): the package upload. */
static bool upload_target(const char *m, size_t mn, const char *t, size_t tn)
{
	static const char pre[] = "/v1/hosts/", suf[] = "/update";
	size_t pl = sizeof(pre) - 1, sl = sizeof(suf) - 1;
	if (!is(m, mn, "POST") || tn <= pl + sl || memcmp(t, pre, pl) ||
	    memcmp(t + tn - sl, suf, sl))
		return false;
	for (size_t i = pl; i < tn - sl; i++)
		if (t[i] == '/' || t[i] == '?' || t[i] == '#')
			return false;
	return true;
}

static unsigned request_line(const char *p, size_t n, bool *nobody,
			     bool *http11, bool *upload)
{
	const char *sp1 = memchr(p, ' ', n);
	if (!sp1)
		return R_LINE;
	const char *t = sp1 + 1, *end = p + n;
	const char *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (!sp2 || memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1)))
		return R_LINE;
	const char *v = sp2 + 1;
	size_t vn = (size_t)(end - v), mn = (size_t)(sp1 - p),
	       tn = (size_t)(sp2 - t);
	if (vn != 8 || memcmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9')
		return R_LINE;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return R_VERSION;
	if (!token(p, mn))
		return R_LINE;
	if (!method_known(p, mn))
		return R_METHOD;
	if (tn == 0 || t[0] != '/')
		return R_TARGET;
	for (size_t i = 0; i < tn; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			return R_TARGET;
	/* evhttp parses it again with these flags; refuse what it would. */
	char *copy = strndup(t, tn);
	struct evhttp_uri *u = copy ? evhttp_uri_parse_with_flags(
		copy, EVHTTP_URI_NONCONFORMANT) : NULL;
	free(copy);
	if (!u)
		return R_TARGET;
	evhttp_uri_free(u);
	*nobody = is(p, mn, "HEAD") || is(p, mn, "TRACE");
	*upload = upload_target(p, mn, t, tn);
	*http11 = v[7] == '1';
	return 0;
}

struct framing {
	bool has_cl, chunked, expect;
	bool octets;           /* Content-Type: application/octet-stream */
	bool auth_seen;
	const char *auth;      /* the Authorization value, auth_n bytes */
	size_t auth_n;
	uint64_t cl;
};

static unsigned header_line(const char *p, size_t n, struct framing *f)
{
	if (p[0] == ' ' || p[0] == '\t')
		return R_HEADER; /* obsolete line folding */
	const char *colon = memchr(p, ':', n);
	if (!colon || !token(p, (size_t)(colon - p)))
		return R_HEADER;
	size_t nn = (size_t)(colon - p);
	const char *v = colon + 1, *end = p + n;
	for (const char *c = v; c < end; c++)
		if ((*c != '\t' && (unsigned char)*c < 0x20) ||
		    (unsigned char)*c == 0x7f)
			return R_HEADER;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vn = (size_t)(end - v);
	if (is(p, nn, "Content-Length")) {
		if (f->has_cl || vn == 0 || vn > 18)
			return R_LENGTH;
		f->cl = 0;
		for (size_t i = 0; i < vn; i++) {
			if (v[i] < '0' || v[i] > '9')
				return R_LENGTH;
			f->cl = f->cl * 10 + (uint64_t)(v[i] - '0');
		}
		f->has_cl = true;
	} else if (is(p, nn, "Transfer-Encoding")) {
		if (f->chunked)
			return R_FRAMING;
		if (!is(v, vn, "chunked"))
			return R_CODING;
		f->chunked = true;
	} else if (is(p, nn, "Content-Type")) {
		f->octets = is(v, vn, "application/octet-stream");
	} else if (is(p, nn, "Authorization")) {
		if (f->auth_seen)
			return R_AUTH_TWICE;
		f->auth_seen = true;
		f->auth = vn ? v : NULL;
		f->auth_n = vn;
	} else if (is(p, nn, "Expect")) {
		if (!is(v, vn, "100-continue"))
			return R_EXPECT;
		f->expect = true;
	}
	return 0;
}

/* The head is p[0..n), its lines ending in LF (CR LF accepted). */
static unsigned head(struct parse *ps, const char *p, size_t n)
{
	struct framing f = { 0 };
	bool nobody = false, http11 = false, upload = false;
	unsigned count = 0, r = 0;
	size_t a = 0;
	while (a < n && r == 0) {
		const char *nl = memchr(p + a, '\n', n - a);
		size_t b = (size_t)(nl - p), e = b;
		if (e > a && p[e - 1] == '\r')
			e--;
		if (memchr(p + a, '\r', e - a))
			r = count == 0 ? R_LINE : R_HEADER;
		else if (count == 0)
			r = request_line(p + a, e - a, &nobody, &http11,
					 &upload);
		else if (e == a)
			break; /* the blank line */
		else if (count > HEADERS_MAX_COUNT)
			r = R_HEAD_BIG;
		else
			r = header_line(p + a, e - a, &f);
		count++;
		a = b + 1;
	}
	if (r)
		return r;
	if (f.chunked && (f.has_cl || !http11))
		return R_FRAMING;
	if (nobody && (f.chunked || f.cl > 0))
		return R_NOBODY;
	/* The upload exception: a package for one host, as octets with a
	 * Content-Length beyond the JSON cap, from a caller whose token is
	 * good (ps->admit: api.c asks the store, before a byte of the 64 MiB
	 * is buffered; a refusal is the route's own answer). Anything else
	 * has the JSON cap; within it the route asks for the token itself. */
	ps->upload = false;
	if (ps->upload_max && upload && f.octets && f.has_cl && !f.chunked &&
	    f.cl > ps->body_max && f.cl <= ps->upload_max) {
		int adm = !f.auth ? API_GATE_ADMIT_UNAUTH
				: ps->admit ? ps->admit(ps->admit_ctx, f.auth,
							f.auth_n)
					    : 0;
		if (adm == API_GATE_ADMIT_UNAUTH)
			return R_UNAUTH;
		if (adm == API_GATE_ADMIT_SCOPE)
			return R_SCOPE;
		if (adm)
			return R_STORE;
		ps->upload = true;
	}
	if (f.has_cl && f.cl > (ps->upload ? ps->upload_max : ps->body_max))
		return R_BODY_BIG;
	ps->st = f.chunked ? P_CSIZE : f.cl > 0 ? P_BODY : P_HEAD;
	ps->left = f.cl;
	ps->cont = f.expect && http11 && (f.chunked || f.cl > 0);
	return 0;
}

static enum presult refuse(struct parse *ps, unsigned r)
{
	ps->refusal = r;
	return P_REFUSE;
}

/* One line from pos (without its LF and a CR before it), or false. */
static bool next_line(struct parse *ps, const char *p, size_t n,
		      size_t *start, size_t *len)
{
	const char *nl = memchr(p + ps->pos, '\n', n - ps->pos);
	if (!nl)
		return false;
	*start = ps->pos;
	*len = (size_t)(nl - p) - ps->pos;
	if (*len > 0 && p[*start + *len - 1] == '\r')
		(*len)--;
	ps->pos = (size_t)(nl - p) + 1;
	return true;
}

/* Advance over buf[0..n) (the current request starts at 0). */
static enum presult step(struct parse *ps, const char *p, size_t n)
{
	for (;;) {
		size_t s, len;
		switch (ps->st) {
		case P_HEAD: {
			/* Find the blank line that ends the head. */
			size_t i = ps->line, end = 0;
			while (!end && i < n) {
				const char *nl = memchr(p + i, '\n', n - i);
				if (!nl)
					break;
				size_t b = (size_t)(nl - p);
				/* A blank first line ends the head too: it
				 * is refused as the request line. */
				if (b == i || (b == i + 1 && p[i] == '\r'))
					end = b + 1;
				i = b + 1;
			}
			ps->line = i;
			if (!end)
				return n > ps->head_max
					? refuse(ps, R_HEAD_BIG) : P_MORE;
			if (end > ps->head_max)
				return refuse(ps, R_HEAD_BIG);
			unsigned r = head(ps, p, end);
			if (r)
				return refuse(ps, r);
			ps->pos = end;
			if (ps->st == P_HEAD)
				return P_DONE;
			continue;
		}
		case P_BODY:
		case P_CDATA:
			if (n - ps->pos < ps->left) {
				return P_MORE;
			}
			ps->pos += ps->left;
			ps->left = 0;
			if (ps->st == P_BODY)
				return P_DONE;
			ps->st = P_CCRLF;
			continue;
		case P_CCRLF:
			if (n - ps->pos < 1 ||
			    (p[ps->pos] == '\r' && n - ps->pos < 2))
				return P_MORE;
			if (p[ps->pos] == '\n')
				ps->pos += 1;
			else if (p[ps->pos] == '\r' && p[ps->pos + 1] == '\n')
				ps->pos += 2;
			else
				return refuse(ps, R_CHUNK);
			ps->st = P_CSIZE;
			continue;
		case P_CSIZE:
		case P_TRAILER:
			if (!next_line(ps, p, n, &s, &len))
				return n - ps->pos > CHUNK_LINE_MAX
					? refuse(ps, ps->st == P_CSIZE
						 ? R_CHUNK : R_TRAILER)
					: P_MORE;
			if (ps->st == P_TRAILER)
				return len == 0 ? P_DONE
						: refuse(ps, R_TRAILER);
			if (len == 0 || len > 8)
				return refuse(ps, R_CHUNK);
			uint64_t size = 0;
			for (size_t i = 0; i < len; i++) {
				char c = p[s + i];
				int d = c >= '0' && c <= '9' ? c - '0'
					: c >= 'a' && c <= 'f' ? c - 'a' + 10
					: c >= 'A' && c <= 'F' ? c - 'A' + 10
					: -1;
				if (d < 0)
					return refuse(ps, R_CHUNK);
				size = size * 16 + (uint64_t)d;
			}
			ps->body += size;
			if (ps->body > ps->body_max)
				return refuse(ps, R_BODY_BIG);
			ps->st = size ? P_CDATA : P_TRAILER;
			ps->left = size;
			continue;
		}
	}
}

/* step, and a request that still wants more than raw_max bytes is
 * refused: the buffer holds no more (gate_append). */
static enum presult step_capped(struct parse *ps, const char *p, size_t n)
{
	enum presult r = step(ps, p, n);
	if (r == P_MORE && n > raw_max(ps))
		return refuse(ps, ps->st == P_HEAD ? R_HEAD_BIG : R_BODY_BIG);
	return r;
}

size_t api_gate_scan(const char *p, size_t n, size_t head_max,
		     size_t body_max, size_t piece, unsigned *refusal)
{
	return api_gate_scan_upload(p, n, head_max, body_max, 0, piece,
				    refusal);
}

size_t api_gate_scan_upload(const char *p, size_t n, size_t head_max,
			    size_t body_max, size_t upload_max, size_t piece,
			    unsigned *refusal)
{
	struct parse ps = { .head_max = head_max, .body_max = body_max,
			    .upload_max = upload_max };
	size_t done = 0, avail = 0;
	*refusal = 0;
	/* As gate_in sees it: `piece` bytes more at a time, the buffer never
	 * beyond raw_max + 1 bytes past the request being read. */
	while (avail < n) {
		avail = piece && n - avail > piece ? avail + piece : n;
		for (;;) {
			size_t len = avail - done;
			if (len > raw_max(&ps) + 1)
				len = raw_max(&ps) + 1;
			enum presult r = step_capped(&ps, p + done, len);
			if (r == P_REFUSE) {
				*refusal = ps.refusal;
				return done;
			}
			if (r == P_MORE)
				break;
			done += ps.pos;
			parse_reset(&ps);
		}
	}
	return done;
}

/* ---- the filter ---- */

/* What is read on past a request held back (gate_ready): then reading
 * from the socket stops, the kernel's buffers fill and the client's
 * sends wait. (Not a read watermark on the connection below: libevent
 * would call the gate again every turn while it held, and a TLS
 * connection suspended by one mid-record keeps the record's rest inside
 * OpenSSL, where nothing reads it again.) */
#define GATE_HOLD_AHEAD (64u * 1024)
/* g->buf is given back down to this after a larger request. */
#define GATE_BUF_KEEP (64u * 1024)
/* Every connection's unfinished request may take GATE_BUF_FREE; beyond
 * it, all connections together GATE_BUDGET (an admitted package upload
 * aside: its token is good). Past it, 503: without a cap on connections,
 * 900 clients each holding an unfinished request of half a megabyte held
 * 730 MiB of the daemon before anyone was authenticated. */
#define GATE_BUF_FREE (16u * 1024)
#define GATE_BUDGET (64u << 20)
static size_t gate_budget_used;

struct gate {
	struct parse ps;
	char *buf;
	size_t len, cap;
	bool dead;             /* refused: the rest of the input is dropped */
	bool held;             /* a whole request, parsed (ps.pos its end),
				* waits for gate_ready */
	bool under_off;        /* reading below stopped while held */
	size_t counted;        /* of cap, in gate_budget_used */
	bool sent_continue;
	bool writing;          /* evhttp's bytes are on their way out */
	const char *reject;
	struct bufferevent *under, *bev;
	struct evbuffer_cb_entry *drain, *taken;
	/* The filter's own event callback on `under`: an EOF goes to it
	 * (and so to evhttp, which frees the connection at once) only once
	 * every request read before it was answered (eof_tell). */
	bufferevent_data_cb fwd_read, fwd_write;
	bufferevent_event_cb fwd;
	void *fwd_arg;
	void (*gone)(void *);  /* the caller's, at the end (or NULL) */
	void *gone_ctx;
	bool eof;              /* an EOF waits for the answers owed */
	uint64_t eof_since_ms;
	short eof_what;
	struct event *eof_ev;
};

static void gate_free(void *arg)
{
	struct gate *g = arg;
	if (g->drain)
		evbuffer_remove_cb_entry(bufferevent_get_output(g->under),
					 g->drain);
	if (g->taken)
		evbuffer_remove_cb_entry(bufferevent_get_input(g->bev),
					 g->taken);
	gate_budget_used -= g->counted;
	if (g->gone)
		g->gone(g->gone_ctx);
	if (g->eof_ev)
		event_free(g->eof_ev);
	free(g->buf);
	free(g);
}

/* From src into g->buf, up to lim bytes in g->buf. */
static bool gate_append_upto(struct gate *g, struct evbuffer *src, size_t lim)
{
	size_t n = evbuffer_get_length(src);
	size_t room = g->len < lim ? lim - g->len : 0;
	if (n > room)
		n = room;
	if (g->len + n > g->cap) {
		size_t cap = g->cap ? g->cap : 4096;
		while (cap < g->len + n)
			cap *= 2;
		size_t over = cap > GATE_BUF_FREE && !g->ps.upload
			? cap - GATE_BUF_FREE : 0;
		if (over > g->counted &&
		    gate_budget_used + (over - g->counted) > GATE_BUDGET) {
			g->ps.refusal = R_BUSY;
			return false;
		}
		char *b = realloc(g->buf, cap);
		if (!b)
			return false;
		g->buf = b;
		g->cap = cap;
		if (over > g->counted) {
			gate_budget_used += over - g->counted;
			g->counted = over;
		}
	}
	evbuffer_remove(src, g->buf + g->len, n);
	g->len += n;
	return true;
}

static bool gate_append(struct gate *g, struct evbuffer *src)
{
	return gate_append_upto(g, src, raw_max(&g->ps) + 1);
}

/* Held: what follows the held request is read on, GATE_HOLD_AHEAD past
 * it at most; then reading from the socket stops (gate_pass starts it
 * again). Stopped from inside the read path, when TLS has handed over
 * everything it decrypted. */
static bool gate_read_ahead(struct gate *g, struct evbuffer *src)
{
	if (!gate_append_upto(g, src, g->ps.pos + GATE_HOLD_AHEAD))
		return false;
	if (evbuffer_get_length(src) > 0 && !g->under_off) {
		g->under_off = true;
		bufferevent_disable(g->under, EV_READ);
	}
	return true;
}

/* May the next whole request go to evhttp? Only once evhttp took the one
 * before (its input is empty) and every answer so far left for the
 * socket: a client that pipelines requests and never reads its answers
 * is then not read either (what it sends waits in the socket, at most
 * GATE_HOLD_AHEAD above it), instead of every request it sends
 * piling up in evhttp's input while evhttp waits to write. */
static bool gate_ready(const struct gate *g, struct evbuffer *dst)
{
	return evbuffer_get_length(dst) == 0 && !g->writing &&
	       evbuffer_get_length(bufferevent_get_output(g->under)) == 0;
}

/* The whole request at the start of g->buf to evhttp. */
static void gate_pass(struct gate *g, struct evbuffer *dst)
{
	evbuffer_add(dst, g->buf, g->ps.pos);
	memmove(g->buf, g->buf + g->ps.pos, g->len - g->ps.pos);
	g->len -= g->ps.pos;
	parse_reset(&g->ps);
	g->sent_continue = false;
	if (g->under_off) {
		g->under_off = false;
		bufferevent_enable(g->under, EV_READ);
	}
	if (g->cap > GATE_BUF_KEEP && g->len <= GATE_BUF_KEEP) {
		/* after an upload: not 64 MiB kept for a kept-alive client */
		char *b = realloc(g->buf, GATE_BUF_KEEP);
		if (b) {
			g->buf = b;
			g->cap = GATE_BUF_KEEP;
			size_t keep = GATE_BUF_KEEP - GATE_BUF_FREE;
			if (g->counted > keep) {
				gate_budget_used -= g->counted - keep;
				g->counted = keep;
			}
		}
	}
}

static void eof_look(struct gate *g);

static enum bufferevent_filter_result gate_in(struct evbuffer *src,
					      struct evbuffer *dst,
					      ev_ssize_t limit,
					      enum bufferevent_flush_mode mode,
					      void *arg)
{
	(void)limit;
	(void)mode;
	struct gate *g = arg;
	bool passed = false;
	while (!g->dead) {
		/* (a request held is parsed already: step is not asked
		 * twice, it would go on into the next one) */
		enum presult r = g->held ? P_DONE
					 : step_capped(&g->ps, g->buf, g->len);
		if (r == P_REFUSE)
			goto refused;
		if (r == P_DONE) {
			/* A whole request: evhttp may have it, when ready
			 * (on_drained and on_taken look again). */
			g->held = !gate_ready(g, dst);
			if (g->held) {
				if (!gate_read_ahead(g, src)) {
					if (!g->ps.refusal)
						g->ps.refusal = R_HEAD_BIG;
					goto refused;
				}
				break;
			}
			gate_pass(g, dst);
			passed = true;
			continue;
		}
		if (g->ps.cont && !g->sent_continue && g->ps.st != P_HEAD) {
			/* The client waits for this before its body. */
			g->sent_continue = true;
			bufferevent_write(g->under, "HTTP/1.1 100 Continue\r\n\r\n",
					  25);
		}
		if (evbuffer_get_length(src) == 0)
			break;
		if (!gate_append(g, src)) {
			if (!g->ps.refusal)
				g->ps.refusal = R_HEAD_BIG; /* out of memory */
			goto refused;
		}
	}
	if (g->dead)
		evbuffer_drain(src, evbuffer_get_length(src));
	eof_look(g);
	return passed ? BEV_OK : BEV_NEED_MORE;
refused:
	/* Nothing of the refused request reaches evhttp: in its place a
	 * request for the refusal, after which the connection closes. */
	g->dead = true;
	g->len = 0;
	evbuffer_drain(src, evbuffer_get_length(src));
	evbuffer_add_printf(dst, "GET %s/%u HTTP/1.1\r\nConnection: close\r\n"
			    "\r\n", g->reject, g->ps.refusal);
	return BEV_OK;
}

/* Everything evhttp writes goes below at once, but evhttp hears that it
 * was written (and may free the connection, and shut the socket) only
 * when the connection below has written it: see on_drained. */
static enum bufferevent_filter_result gate_out(struct evbuffer *src,
					       struct evbuffer *dst,
					       ev_ssize_t limit,
					       enum bufferevent_flush_mode mode,
					       void *arg)
{
	(void)limit;
	(void)mode;
	struct gate *g = arg;
	if (evbuffer_get_length(src) > 0)
		g->writing = true;
	evbuffer_add_buffer(dst, src);
	return BEV_NEED_MORE;
}

/* The filter moves evhttp's bytes only while its EV_WRITE is enabled, and
 * evhttp enables it after writing a response: move them as they come. */
static void on_out(struct evbuffer *b, const struct evbuffer_cb_info *i,
		   void *arg)
{
	struct gate *g = arg;
	if (!i->n_added || evbuffer_get_length(b) == 0)
		return;
	g->writing = true;
	evbuffer_add_buffer(bufferevent_get_output(g->under), b);
}

/* A request held back (gate_ready) is looked at again through the
 * filter's own read path (the one new bytes take): it runs gate_in only
 * while evhttp reads, and tells evhttp of what gate_in passed. */
static void look_again(struct gate *g)
{
	if (g->held && !g->dead)
		bufferevent_trigger(g->under, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS |
				    BEV_TRIG_DEFER_CALLBACKS);
}

static void on_drained(struct evbuffer *b, const struct evbuffer_cb_info *i,
		       void *arg)
{
	struct gate *g = arg;
	if (!i->n_deleted || evbuffer_get_length(b) > 0)
		return;
	if (!g->writing ||
	    evbuffer_get_length(bufferevent_get_output(g->bev)) > 0) {
		look_again(g); /* (a 100 Continue left) */
		eof_look(g);
		return;
	}
	/* Only after evhttp's own bytes: its write callback at any other
	 * time would finish a request still being read. It goes first (a
	 * kept-alive connection reads again in it), then the held one. */
	g->writing = false;
	bufferevent_trigger(g->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
	look_again(g);
	eof_look(g);
}

/* Every request read was answered and the answers left: nothing held,
 * nothing waiting for evhttp or for the socket. */
static bool gate_idle(const struct gate *g)
{
	return !g->held && !g->writing &&
	       evbuffer_get_length(bufferevent_get_input(g->bev)) == 0 &&
	       evbuffer_get_length(bufferevent_get_input(g->under)) == 0 &&
	       evbuffer_get_length(bufferevent_get_output(g->under)) == 0;
}

/* An EOF waits at most this long for the answers it is owed (a client
 * that half-closed and does not read them). */
#define EOF_WAIT_MS 30000

/* From the loop, never from inside a callback of the connection: the
 * EOF may make evhttp free it (and g with it). Also every second while
 * it waits. */
static void eof_tell(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct gate *g = arg;
	if (!g->eof)
		return;
	if (!gate_idle(g) && mono_now_ms() - g->eof_since_ms < EOF_WAIT_MS) {
		struct timeval sec = { 1, 0 };
		if (!evtimer_pending(g->eof_ev, NULL))
			evtimer_add(g->eof_ev, &sec);
		return; /* a later step looks again */
	}
	g->eof = false;
	evtimer_del(g->eof_ev);
	g->fwd(g->under, g->eof_what, g->fwd_arg);
}

static void eof_look(struct gate *g)
{
	if (g->eof)
		event_active(g->eof_ev, EV_TIMEOUT, 0);
}

/* A client that half-closes after its requests is owed their answers:
 * its EOF waits (eof_tell), judged from the loop -- over TLS the bytes
 * that came with the close_notify are not in the input yet when it is
 * told. Its answers still go out: TLS stops writing at a close_notify,
 * and is told to go on. An error goes on at once. */
static void on_event(struct bufferevent *under, short what, void *arg)
{
	struct gate *g = arg;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		if (!g->eof) {
			g->eof = true;
			g->eof_what = what;
			g->eof_since_ms = mono_now_ms();
		}
		bufferevent_enable(under, EV_WRITE);
		eof_look(g);
		return;
	}
	g->eof = false;
	g->fwd(under, what, g->fwd_arg);
}

static void on_under_read(struct bufferevent *under, void *arg)
{
	struct gate *g = arg;
	g->fwd_read(under, g->fwd_arg);
}

static void on_under_write(struct bufferevent *under, void *arg)
{
	struct gate *g = arg;
	g->fwd_write(under, g->fwd_arg);
}

/* evhttp took what it was given. */
static void on_taken(struct evbuffer *b, const struct evbuffer_cb_info *i,
		     void *arg)
{
	if (i->n_deleted && evbuffer_get_length(b) == 0) {
		look_again(arg);
		eof_look(arg);
	}
}

struct bufferevent *api_gate_new(struct bufferevent *under, size_t head_max,
				 size_t body_max, const char *reject_path)
{
	return api_gate_new_upload(under, head_max, body_max, 0, NULL, NULL,
				   reject_path, NULL, NULL);
}

struct bufferevent *api_gate_new_upload(struct bufferevent *under,
					size_t head_max, size_t body_max,
					size_t upload_max,
					int (*admit)(void *ctx,
						      const char *auth,
						      size_t n),
					void *admit_ctx,
					const char *reject_path,
					void (*gone)(void *), void *gone_ctx)
{
	struct gate *g = calloc(1, sizeof(*g));
	if (!g) {
		bufferevent_free(under);
		return NULL;
	}
	g->ps.head_max = head_max;
	g->ps.body_max = body_max;
	g->ps.upload_max = upload_max;
	g->ps.admit = admit;
	g->ps.admit_ctx = admit_ctx;
	g->reject = reject_path;
	g->under = under;
	g->bev = bufferevent_filter_new(under, gate_in, gate_out,
					BEV_OPT_CLOSE_ON_FREE, gate_free, g);
	if (!g->bev) {
		free(g);
		bufferevent_free(under);
		return NULL;
	}
	/* (one argument for all three: the data callbacks are passed on) */
	bufferevent_getcb(under, &g->fwd_read, &g->fwd_write, &g->fwd,
			  &g->fwd_arg);
	bufferevent_setcb(under, on_under_read, on_under_write, on_event, g);
	g->eof_ev = event_new(bufferevent_get_base(under), -1, 0, eof_tell, g);
	g->drain = evbuffer_add_cb(bufferevent_get_output(under), on_drained,
				   g);
	if (!g->drain || !g->eof_ev ||
	    !evbuffer_add_cb(bufferevent_get_output(g->bev), on_out, g) ||
	    !(g->taken = evbuffer_add_cb(bufferevent_get_input(g->bev),
					 on_taken, g))) {
		bufferevent_free(g->bev); /* frees g and under */
		return NULL;
	}
	/* from here gate_free tells the caller */
	g->gone = gone;
	g->gone_ctx = gone_ctx;
	return g->bev;
}
