/*
 * parleyctl's HTTP client, on libcurl: one request per call, http:// or
 * https:// (TLS 1.3, the server verified against --ca or the system CAs),
 * the proxy variables (http_proxy, https_proxy, no_proxy, ...) honoured
 * as libcurl does, a connect timeout (5 s unless --connect-timeout) and
 * 30 s without a byte received ending the transfer. Bodies come back
 * whole, capped at HTTP_BODY_MAX (head at HTTP_HEAD_MAX) so a broken or
 * hostile server cannot make us allocate without bound.
 */
#ifndef PARLEY_CLI_HTTP_H
#define PARLEY_CLI_HTTP_H

#include <stddef.h>
#include "common/err.h"

#define HTTP_BODY_MAX (16u << 20)  /* far above any list page we ask for */
#define HTTP_HEAD_MAX (16u << 10)  /* status line + headers */
#define HTTP_CONNECT_MS 5000       /* default; --connect-timeout changes it */
#define HTTP_CONNECT_MAX_MS 3600000L
#define HTTP_READ_MS 30000

struct http_url {
	char host[256];
	char port[8];
	char prefix[256];           /* path before /v1, "" for none */
	int tls;                    /* https: */
	const char *ca;             /* PEM file the server must chain to */
	long connect_ms;            /* 0: HTTP_CONNECT_MS */
};

struct http_resp {
	int status;                 /* 100..599 */
	char *body;                 /* NUL-terminated; caller frees */
	size_t len;
};

/* Parse "http[s]://HOST[:PORT][/PREFIX]" (IPv6 as [::1]); port 80 (443)
 * when missing. 0, or -EINVAL with a message. */
int http_url_parse(const char *s, struct http_url *u, struct parley_err *err);

/* "SECONDS" (decimal, fractions allowed, > 0, at most an hour) as
 * milliseconds for --connect-timeout: 0, or -EINVAL with a message. */
int http_timeout_parse(const char *s, long *ms, struct parley_err *err);

/*
 * Send METHOD PATH (PATH starts with '/', already URL-encoded) with an
 * optional bearer token and optional JSON body, and read the response.
 * Returns 0 with *r filled (caller frees r->body), or a negative errno:
 * -ECONNREFUSED/-ETIMEDOUT/-EHOSTUNREACH/-ENOENT/... when the server
 * cannot be reached (http_unreachable() says which), -ECONNABORTED for a
 * connection closed before any response or a failed TLS handshake,
 * -EPROTO for a response that is not HTTP, -EFBIG beyond the caps. err
 * names the problem.
 */
int http_request(const struct http_url *u, const char *token,
		 const char *method, const char *path, const char *body,
		 struct http_resp *r, struct parley_err *err);

/* The same with a body of len bytes of any type (ctype, e.g.
 * "application/octet-stream"; NULL: no Content-Type). */
int http_request_bytes(const struct http_url *u, const char *token,
		       const char *method, const char *path, const void *body,
		       size_t len, const char *ctype, struct http_resp *r,
		       struct parley_err *err);

/* Whether an http_request error means "no server answered". */
int http_unreachable(int rc);

#endif
