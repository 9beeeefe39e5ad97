#include "cli/http.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int http_url_parse(const char *s, struct http_url *u, struct parley_err *err)
{
	memset(u, 0, sizeof(*u));
	size_t skip = 7;
	if (!strncmp(s, "https://", 8)) {
		u->tls = 1;
		skip = 8;
	} else if (strncmp(s, "http://", 7)) {
		return perr(err, -EINVAL, "server \"%s\": only http:// and "
			    "https:// URLs", s);
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
	if (colon && (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") < pl))
		return perr(err, -EINVAL, "server \"%s\": bad port", s);
	snprintf(u->port, sizeof(u->port), "%.*s", colon ? (int)pl : 3,
		 colon ? colon + 1 : u->tls ? "443" : "80");
	if (!u->host[0] || strlen(end) >= sizeof(u->prefix))
		return perr(err, -EINVAL, "server \"%s\": not http[s]://HOST[:PORT]",
			    s);
	snprintf(u->prefix, sizeof(u->prefix), "%s", end);
	size_t n = strlen(u->prefix);
	if (n && u->prefix[n - 1] == '/')
		u->prefix[n - 1] = 0;
	return 0;
}

int http_unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -ECONNRESET || rc == -EPIPE ||
	       rc == -EADDRNOTAVAIL || rc == -ENOENT;
}

/* Wait for fd to become ready for `events`: 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;
	do
		n = poll(&p, 1, ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

static int connect_one(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
			SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		rc = errno == EINPROGRESS ? 0 : -errno;
		if (!rc)
			rc = wait_fd(fd, POLLOUT, HTTP_CONNECT_MS);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			rc = -errno;
		if (!rc && soerr)
			rc = -soerr;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* A connected socket to u (non-blocking), or a negative errno. */
static int dial(const struct http_url *u, struct parley_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int g = getaddrinfo(u->host, u->port, &hints, &res);
	if (g)
		return perr(err, -ENOENT, "%s:%s: %s", u->host, u->port,
			    gai_strerror(g));
	int fd = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		perr(err, fd, "cannot connect to %s:%s: %s", u->host, u->port,
		     strerror(-fd));
	return fd;
}

/* The TLS session of the request under way (https), or NULL. One request
 * at a time per process: parleyctl is one command. */
static SSL *tls;

/* SSL_read/SSL_write on the non-blocking socket, shaped like recv/send:
 * bytes, or -1 with errno (EAGAIN when it must wait). */
static ssize_t tls_io(int fd, void *p, size_t len, bool wr, short *wait)
{
	int n = wr ? SSL_write(tls, p, (int)len) : SSL_read(tls, p, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(tls, n)) {
	case SSL_ERROR_WANT_READ:
		*wait = POLLIN;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*wait = POLLOUT;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		(void)fd;
		errno = ECONNRESET;
		return -1;
	}
}

static int send_all(int fd, const char *p, size_t len)
{
	short want = POLLOUT;
	while (len) {
		int rc = wait_fd(fd, want, HTTP_READ_MS);
		if (rc < 0)
			return rc;
		want = POLLOUT;
		ssize_t n = tls ? tls_io(fd, (void *)p, len, true, &want)
				: send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_request(int fd, const struct http_url *u, const char *token,
			const char *method, const char *path, const char *body)
{
	char *head = NULL;
	size_t blen = body ? strlen(body) : 0;
	int n = asprintf(&head,
			 "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\n"
			 "User-Agent: parleyctl\r\nAccept: application/json\r\n"
			 "Connection: close\r\n%s%s%s"
			 "%sContent-Length: %zu\r\n\r\n",
			 method, u->prefix, path, u->host, u->port,
			 token ? "Authorization: Bearer " : "",
			 token ? token : "", token ? "\r\n" : "",
			 body ? "Content-Type: application/json\r\n" : "", blen);
	if (n < 0)
		return -ENOMEM;
	int rc = send_all(fd, head, (size_t)n);
	free(head);
	if (!rc && blen)
		rc = send_all(fd, body, blen);
	return rc;
}

struct head {
	int status;
	long long clen;             /* -1 when absent */
	int chunked;
	size_t hlen;                /* bytes up to and including CRLFCRLF */
};

static int header_is(const char *line, size_t len, const char *name,
		     const char **val)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return 0;
	*val = line + nl + 1;
	while (**val == ' ' || **val == '\t')
		(*val)++;
	return 1;
}

static int parse_header(const char *line, size_t len, struct head *h)
{
	const char *v;
	if (header_is(line, len, "Content-Length", &v)) {
		char *end;
		errno = 0;
		h->clen = strtoll(v, &end, 10);
		if (errno || end == v || h->clen < 0 ||
		    h->clen > (long long)HTTP_BODY_MAX)
			return -EPROTO;
	} else if (header_is(line, len, "Transfer-Encoding", &v)) {
		h->chunked = !strncasecmp(v, "chunked", 7);
	}
	return 0;
}

/* buf holds at least h->hlen bytes ending in CRLFCRLF. */
static int parse_head(const char *buf, struct head *h)
{
	int st;
	if (sscanf(buf, "HTTP/1.%*1[01] %3d", &st) != 1 || st < 100 || st > 599)
		return -EPROTO;
	h->status = st;
	const char *p = strstr(buf, "\r\n") + 2, *end = buf + h->hlen - 2;
	while (p < end) {
		const char *nl = strstr(p, "\r\n");
		if (parse_header(p, (size_t)(nl - p), h) < 0)
			return -EPROTO;
		p = nl + 2;
	}
	return 0;
}

struct rbuf {
	char *p;
	size_t len, cap;
};

static int rbuf_fill(int fd, struct rbuf *b)
{
	if (b->len + 4096 + 1 > b->cap) {
		if (b->cap >= HTTP_HEAD_MAX + HTTP_BODY_MAX)
			return -EFBIG;
		size_t cap = b->cap ? b->cap * 2 : 8192;
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	short want = POLLIN;
	for (;;) {
		/* Bytes OpenSSL already decrypted do not wake poll(). */
		if (!tls || !SSL_pending(tls)) {
			int rc = wait_fd(fd, want, HTTP_READ_MS);
			if (rc < 0)
				return rc;
		}
		want = POLLIN;
		ssize_t n = tls ? tls_io(fd, b->p + b->len,
					 b->cap - b->len - 1, false, &want)
				: recv(fd, b->p + b->len, b->cap - b->len - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		b->len += (size_t)n;
		b->p[b->len] = 0;
		return (int)n;
	}
}

/* Whether the response in b is complete (known only with Content-Length
 * or a terminated head of a bodiless status); else read to end of stream. */
static int resp_done(const struct rbuf *b, const struct head *h)
{
	if (!h->hlen)
		return 0;
	if (h->status == 204 || h->status == 304)
		return 1;
	return !h->chunked && h->clen >= 0 &&
	       b->len - h->hlen >= (size_t)h->clen;
}

static int read_response(int fd, struct rbuf *b, struct head *h)
{
	int n = 0;
	while (!resp_done(b, h) && (n = rbuf_fill(fd, b)) > 0) {
		if (h->hlen)
			continue;
		char *e = strstr(b->p, "\r\n\r\n");
		if (!e && b->len > HTTP_HEAD_MAX)
			return -EFBIG;
		if (!e)
			continue;
		h->hlen = (size_t)(e - b->p) + 4;
		if (parse_head(b->p, h) < 0)
			return -EPROTO;
	}
	if (n < 0)
		return n;
	if (!b->len)
		return -ECONNABORTED;
	return h->hlen ? 0 : -EPROTO;
}

/* Decode a chunked body in place; returns its length or -EPROTO. */
static long dechunk(char *p, size_t len)
{
	size_t in = 0, out = 0;
	for (;;) {
		char *end;
		if (in >= len)
			return -EPROTO;
		unsigned long n = strtoul(p + in, &end, 16);
		char *crlf = strstr(p + in, "\r\n");
		if (end == p + in || !crlf || n > len)
			return -EPROTO;
		in = (size_t)(crlf - p) + 2;
		if (n == 0)
			return (long)out;
		if (len - in < n + 2 || memcmp(p + in + n, "\r\n", 2))
			return -EPROTO;
		memmove(p + out, p + in, n);
		out += n;
		in += n + 2;
	}
}

static int take_body(struct rbuf *b, const struct head *h,
		     struct http_resp *r)
{
	size_t blen = b->len - h->hlen;
	if (h->chunked) {
		long n = dechunk(b->p + h->hlen, blen);
		if (n < 0)
			return (int)n;
		blen = (size_t)n;
	} else if (h->clen >= 0) {
		if (blen < (size_t)h->clen)
			return -EPROTO;
		blen = (size_t)h->clen;
	}
	memmove(b->p, b->p + h->hlen, blen);
	b->p[blen] = 0;
	r->status = h->status;
	r->body = b->p;
	r->len = blen;
	b->p = NULL;
	return 0;
}

/* TLS 1.3 to the API, the server verified against u->ca and for u->host. */
static int tls_start(int fd, const struct http_url *u, struct parley_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return perr(err, -ENOMEM, "TLS: no context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int ok = u->ca ? SSL_CTX_load_verify_locations(ctx, u->ca, NULL)
		       : SSL_CTX_set_default_verify_paths(ctx);
	tls = ok == 1 ? SSL_new(ctx) : NULL;
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	if (!tls)
		return perr(err, -EINVAL, "TLS: cannot use CA %s",
			    u->ca ? u->ca : "(system)");
	X509_VERIFY_PARAM *vp = SSL_get0_param(tls);
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1)
		X509_VERIFY_PARAM_set1_host(vp, u->host, 0);
	SSL_set_fd(tls, fd);
	short want = POLLOUT;
	for (;;) {
		int n = SSL_connect(tls);
		if (n == 1)
			return 0;
		int e = SSL_get_error(tls, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return perr(err, -ECONNABORTED, "%s:%s: TLS handshake "
				    "failed (certificate not trusted?)",
				    u->host, u->port);
		want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		int rc = wait_fd(fd, want, HTTP_CONNECT_MS);
		if (rc < 0)
			return perr(err, rc, "%s:%s: TLS handshake: %s", u->host,
				    u->port, strerror(-rc));
	}
}

int http_request(const struct http_url *u, const char *token,
		 const char *method, const char *path, const char *body,
		 struct http_resp *r, struct parley_err *err)
{
	memset(r, 0, sizeof(*r));
	int fd = dial(u, err);
	if (fd < 0)
		return fd;
	if (u->tls) {
		int trc = tls_start(fd, u, err);
		if (trc < 0) {
			SSL_free(tls);
			tls = NULL;
			close(fd);
			return trc;
		}
	}
	struct rbuf b = { 0 };
	struct head h = { .clen = -1 };
	int rc = send_request(fd, u, token, method, path, body);
	if (!rc)
		rc = read_response(fd, &b, &h);
	if (!rc)
		rc = take_body(&b, &h, r);
	if (tls) {
		SSL_free(tls);
		tls = NULL;
	}
	close(fd);
	free(b.p);
	if (rc == -ECONNABORTED)
		return perr(err, rc, "%s:%s: connection closed before any "
			    "response", u->host, u->port);
	if (rc == -EPROTO)
		return perr(err, rc, "%s:%s: response is not HTTP/1.x",
			    u->host, u->port);
	if (rc < 0)
		return perr(err, rc, "%s:%s: %s", u->host, u->port,
			    rc == -ETIMEDOUT ? "no answer within 30 s" :
			    strerror(-rc));
	return 0;
}
