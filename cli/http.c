/*
 * parleyctl's HTTP client on libcurl (see http.h). URL parsing stays
 * ours: the server URL is checked strictly (host and path characters)
 * before libcurl sees the URL built from it, so "user@host", "?" or "#"
 * cannot change where a request goes. libcurl's errors are mapped back
 * onto the negative errno codes ctl.c turns into exit codes.
 */
#include "cli/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 3986 unreserved + sub-delims that are harmless in a path, '/', '%'. */
#define PATH_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
	"0123456789-._~/%!$&'()*+,;=:"

/* A DNS name, an IPv4 address, or (bracketed in the URL) an IPv6 one. */
static bool host_ok(const char *h)
{
	if (strchr(h, ':'))
		return h[strspn(h, "0123456789abcdefABCDEF:.")] == 0;
	return h[strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789-._")] == 0;
}

int http_url_parse(const char *s, struct http_url *u, struct parley_err *err)
{
	memset(u, 0, sizeof(*u));
	size_t skip = 7;
	if (!strncmp(s, "https://", 8)) {
		u->tls = 1;
		skip = 8;
	} else if (strncmp(s, "http://", 7)) {
		return perr(err, -EINVAL, "server \"%s\": only http:// and "
			    "https:// URLs: parleyctl talks to parleyd's API "
			    "(--api-listen, e.g. http://127.0.0.1:7421), not "
			    "to the agents' link (agent.env's PARLEY_SERVER "
			    "is HOST:PORT of that)", s);
	}
	const char *h = s + skip, *end = h + strcspn(h, "/");
	const char *colon = NULL;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (!rb)
			return perr(err, -EINVAL, "server \"%s\": bad IPv6 host", s);
		snprintf(u->host, sizeof(u->host), "%.*s", (int)(rb - h - 1), h + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		const char *he = colon ? colon : end;
		if ((size_t)(he - h) >= sizeof(u->host))
			return perr(err, -EINVAL, "server \"%s\": host too long", s);
		snprintf(u->host, sizeof(u->host), "%.*s", (int)(he - h), h);
	}
	size_t pl = colon ? (size_t)(end - colon - 1) : 0;
	if (colon && (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") < pl ||
		      atoi(colon + 1) < 1 || atoi(colon + 1) > 65535))
		return perr(err, -EINVAL, "server \"%s\": bad port", s);
	snprintf(u->port, sizeof(u->port), "%.*s", colon ? (int)pl : 3,
		 colon ? colon + 1 : u->tls ? "443" : "80");
	if (!u->host[0] || strlen(end) >= sizeof(u->prefix))
		return perr(err, -EINVAL, "server \"%s\": not http[s]://HOST[:PORT]",
			    s);
	if (!host_ok(u->host))
		return perr(err, -EINVAL, "server \"%s\": bad host", s);
	if (end[strspn(end, PATH_CHARS)])
		return perr(err, -EINVAL, "server \"%s\": bad path", s);
	snprintf(u->prefix, sizeof(u->prefix), "%s", end);
	size_t n = strlen(u->prefix);
	if (n && u->prefix[n - 1] == '/')
		u->prefix[n - 1] = 0;
	return 0;
}

int http_timeout_parse(const char *s, long *ms, struct parley_err *err)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0 ||
	    v * 1000 > (double)HTTP_CONNECT_MAX_MS || s[strspn(s, "0123456789.")])
		return perr(err, -EINVAL, "--connect-timeout: \"%s\" is not a "
			    "number of seconds (more than 0, at most 3600)", s);
	*ms = (long)ceil(v * 1000);
	return 0;
}

int http_unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -ECONNRESET || rc == -EPIPE ||
	       rc == -EADDRNOTAVAIL || rc == -ENOENT;
}

/* What the callbacks gather, and which cap stopped a transfer. */
struct xfer {
	char *p;
	size_t len, cap;
	size_t head;                /* header bytes seen */
	int over;                   /* -EFBIG when a cap stopped it */
	int nomem;
};

static size_t on_body(char *data, size_t one, size_t n, void *arg)
{
	struct xfer *x = arg;
	(void)one;                  /* always 1 (libcurl's documentation) */
	if (n > HTTP_BODY_MAX - x->len) {
		x->over = -EFBIG;
		return 0;           /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 8192;
		while (cap < x->len + n + 1)
			cap *= 2;
		char *p = realloc(x->p, cap);
		if (!p) {
			x->nomem = 1;
			return 0;
		}
		x->p = p;
		x->cap = cap;
	}
	memcpy(x->p + x->len, data, n);
	x->len += n;
	x->p[x->len] = 0;
	return n;
}

static size_t on_header(char *data, size_t one, size_t n, void *arg)
{
	struct xfer *x = arg;
	(void)data;
	(void)one;
	x->head += n;
	if (x->head > HTTP_HEAD_MAX) {
		x->over = -EFBIG;
		return 0;
	}
	return n;
}

/* Once per process; parleyctl is one command and exits. */
static int curl_ready(void)
{
	static int done;
	if (!done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -ENOMEM;
		atexit(curl_global_cleanup);
		done = 1;
	}
	return 0;
}

/* The URL of PATH on u: scheme, host (IPv6 bracketed), port, prefix. */
static char *url_of(const struct http_url *u, const char *path)
{
	char *s = NULL;
	bool v6 = strchr(u->host, ':') != NULL;
	if (asprintf(&s, "%s://%s%s%s:%s%s%s", u->tls ? "https" : "http",
		     v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->prefix,
		     path) < 0)
		return NULL;
	return s;
}

static struct curl_slist *headers_of(const char *token, const char *ctype,
				     bool *ok)
{
	char ct[80];
	snprintf(ct, sizeof(ct), "Content-Type:%s%s", ctype ? " " : "",
		 ctype ? ctype : "");
	struct curl_slist *h = NULL, *t;
	char *auth = NULL;
	const char *fixed[] = {
		"Accept: application/json",
		/* Bodies are small JSON; no 100-continue round trip. */
		"Expect:",
		ct,
	};
	*ok = true;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && *ok; i++) {
		t = curl_slist_append(h, fixed[i]);
		*ok = t != NULL;
		h = t ? t : h;
	}
	if (*ok && token) {
		*ok = asprintf(&auth, "Authorization: Bearer %s", token) >= 0;
		t = *ok ? curl_slist_append(h, auth) : NULL;
		*ok = t != NULL;
		h = t ? t : h;
		free(auth);
	}
	return h;
}

/* libcurl's outcome as our errno, with the message ctl.c prints. */
static int map_error(CURLcode c, CURL *k, const struct http_url *u,
		     const struct xfer *x, const char *detail,
		     struct parley_err *err)
{
	long os = 0, ms = u->connect_ms ? u->connect_ms : HTTP_CONNECT_MS;
	curl_easy_getinfo(k, CURLINFO_OS_ERRNO, &os);
	const char *hp = u->host, *pp = u->port;
	switch (c) {
	case CURLE_WRITE_ERROR:
		if (x->nomem)
			return perr(err, -ENOMEM, "%s:%s: out of memory", hp, pp);
		if (x->over)
			return perr(err, -EFBIG, "%s:%s: response larger than "
				    "%u bytes", hp, pp, x->head > HTTP_HEAD_MAX
				    ? HTTP_HEAD_MAX : HTTP_BODY_MAX);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return perr(err, -ENOENT, "%s:%s: %s", hp, pp, detail);
	case CURLE_COULDNT_CONNECT:
		return perr(err, os > 0 ? -(int)os : -ECONNREFUSED,
			    "cannot connect to %s:%s: %s", hp, pp,
			    os > 0 ? strerror((int)os) : detail);
	case CURLE_OPERATION_TIMEDOUT: {
		curl_off_t conn = 0;
		curl_easy_getinfo(k, CURLINFO_CONNECT_TIME_T, &conn);
		if (!conn)
			return perr(err, -ETIMEDOUT, "cannot connect to %s:%s: "
				    "no connection within %ld.%03ld s", hp, pp,
				    ms / 1000, ms % 1000);
		return perr(err, -ETIMEDOUT, "%s:%s: no answer within %d s",
			    hp, pp, HTTP_READ_MS / 1000);
	}
	case CURLE_GOT_NOTHING:
		return perr(err, -ECONNABORTED, "%s:%s: connection closed "
			    "before any response", hp, pp);
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return perr(err, -EINVAL, "TLS: cannot use CA %s (%s)",
			    u->ca ? u->ca : "(system)", detail);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CIPHER:
		return perr(err, -ECONNABORTED, "%s:%s: TLS handshake failed "
			    "(certificate not trusted?): %s", hp, pp, detail);
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_PARTIAL_FILE:
		return perr(err, -EPROTO, "%s:%s: response is not HTTP/1.x "
			    "(%s)", hp, pp, detail);
	case CURLE_FILESIZE_EXCEEDED:
		return perr(err, -EFBIG, "%s:%s: response larger than %u bytes",
			    hp, pp, HTTP_BODY_MAX);
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		/* With an OS error the connection broke (reset: unreachable,
		 * as before); without one libcurl refused what it read (a bad
		 * chunk, say): not HTTP. */
		if (os > 0)
			return perr(err, -(int)os, "%s:%s: %s", hp, pp, detail);
		return perr(err, -EPROTO, "%s:%s: response is not HTTP/1.x "
			    "(%s)", hp, pp, detail);
	case CURLE_OUT_OF_MEMORY:
		return perr(err, -ENOMEM, "%s:%s: out of memory", hp, pp);
	default:
		break;
	}
	return perr(err, -EIO, "%s:%s: %s", hp, pp, detail);
}

/* Options that cannot fail on a libcurl built with HTTP and TLS; any
 * CURLE_* from one is still reported. */
static CURLcode set_opts(CURL *k, const struct http_url *u, const char *url,
			 const char *method, const char *body, size_t blen,
			 struct curl_slist *hdr, struct xfer *x, char *ebuf)
{
	CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(k, opt, val); } while (0)
	SET(CURLOPT_ERRORBUFFER, ebuf);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USERAGENT, "parleyctl");
	SET(CURLOPT_HTTPHEADER, hdr);
	SET(CURLOPT_CONNECTTIMEOUT_MS, u->connect_ms ? u->connect_ms
						     : (long)HTTP_CONNECT_MS);
	/* 30 s without a byte is "no answer" (the old per-read timeout). */
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, (long)(HTTP_READ_MS / 1000));
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_BODY_MAX);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, x);
	if (u->tls) {
		SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
		if (u->ca)
			SET(CURLOPT_CAINFO, u->ca);
	}
	if (body || (strcmp(method, "GET") && strcmp(method, "DELETE"))) {
		/* Content-Length always, 0 for a bodiless POST. */
		SET(CURLOPT_POSTFIELDS, body ? body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? blen : 0));
	}
	if (strcmp(method, "GET") && strcmp(method, "POST"))
		SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET
	return c;
}

int http_request(const struct http_url *u, const char *token,
		 const char *method, const char *path, const char *body,
		 struct http_resp *r, struct parley_err *err)
{
	return http_request_bytes(u, token, method, path, body,
				  body ? strlen(body) : 0,
				  body ? "application/json" : NULL, r, err);
}

int http_request_bytes(const struct http_url *u, const char *token,
		       const char *method, const char *path, const void *body,
		       size_t len, const char *ctype, struct http_resp *r,
		       struct parley_err *err)
{
	memset(r, 0, sizeof(*r));
	if (curl_ready() < 0)
		return perr(err, -ENOMEM, "libcurl: cannot initialise");
	struct xfer x = { 0 };
	char ebuf[CURL_ERROR_SIZE] = "";
	bool hok;
	char *url = url_of(u, path);
	struct curl_slist *hdr = headers_of(token, ctype, &hok);
	CURL *k = url && hok ? curl_easy_init() : NULL;
	int rc = 0;
	if (!k) {
		rc = perr(err, -ENOMEM, "libcurl: out of memory");
		goto out;
	}
	CURLcode c = set_opts(k, u, url, method, body, len, hdr, &x, ebuf);
	if (c == CURLE_OK)
		c = curl_easy_perform(k);
	if (c != CURLE_OK) {
		rc = map_error(c, k, u, &x, ebuf[0] ? ebuf : curl_easy_strerror(c),
			       err);
		goto out;
	}
	long st = 0;
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &st);
	if (st < 100 || st > 599) {
		rc = perr(err, -EPROTO, "%s:%s: response is not HTTP/1.x",
			  u->host, u->port);
		goto out;
	}
	if (!x.p && !(x.p = calloc(1, 1))) {
		rc = perr(err, -ENOMEM, "out of memory");
		goto out;
	}
	r->status = (int)st;
	r->body = x.p;
	r->len = x.len;
	x.p = NULL;
out:
	curl_easy_cleanup(k);
	curl_slist_free_all(hdr);
	free(url);
	free(x.p);
	return rc;
}
