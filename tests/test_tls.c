/*
 * The agent link's mutual TLS 1.3 (common/tls.c) over real loopback
 * sockets: a daemon-side listener (127.0.0.1, port picked by the kernel)
 * and an agent-side client in one libevent loop, bounded in time. The good
 * case carries the client's host name and a few bytes; each refused case
 * names the failure the server (or, for a bad server, the client) sees.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "common/pki.h"
#include "common/tls.h"
#include "tests/helpers/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TLS_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TLS_TEST_LSAN 1
#endif
#endif
#ifdef TLS_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define DAY (86400L)
/* Every loop ends by then, whatever the peers do. */
#define LOOP_LIMIT_S 10

/* ---- certificates on disk ---- */

struct files {
	char *dir;
	EVP_PKEY *ca_key, *other_key;
	X509 *ca, *other;
};

static void tls_init(void)
{
	/* A peer that hung up must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
}

static char *fpath(struct files *f, const char *name, const char *ext)
{
	char *p;
	cr_assert(asprintf(&p, "%s/%s%s", f->dir, name, ext) > 0);
	return p;
}

static void put_cert(struct files *f, const char *name, X509 *x)
{
	char *p = fpath(f, name, ".crt");
	struct parley_err e = { 0 };
	cr_assert_eq(pki_write_cert(p, x, &e), 0, "%s", perr_msg(&e));
	free(p);
}

/* name.key + name.crt: CN cn, from the fleet CA or the other one. */
static void issue(struct files *f, const char *name, const char *cn,
		  bool other_ca, long nb, long na, bool server)
{
	struct parley_err e = { 0 };
	EVP_PKEY *k;
	X509 *x;
	cr_assert_eq(pki_key_new(&k, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(pki_issue(other_ca ? f->other_key : f->ca_key,
			       other_ca ? f->other : f->ca, k, cn, nb, na,
			       server, &x, &e), 0, "%s", perr_msg(&e));
	char *kp = fpath(f, name, ".key");
	cr_assert_eq(pki_write_key(kp, k, &e), 0, "%s", perr_msg(&e));
	put_cert(f, name, x);
	free(kp);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* The fleet CA, a second CA with the same name, and the usual pair. */
static void files_make(struct files *f)
{
	struct parley_err e = { 0 };
	f->dir = t_tmpdir();
	cr_assert_eq(pki_ca_new("parley-ca", 2, &f->ca_key, &f->ca, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert_eq(pki_ca_new("parley-ca", 2, &f->other_key, &f->other, &e),
		     0, "%s", perr_msg(&e));
	put_cert(f, "ca", f->ca);
	put_cert(f, "other-ca", f->other);
	issue(f, "parleyd", "parleyd", false, -60, DAY, true);
	issue(f, "agent-1", "agent-1", false, -60, DAY, false);
}

/* Criterion takes a test's verdict before its worker exits: look for leaks
 * while the test can still fail (without ASan this checks nothing). */
static void expect_no_leaks(void)
{
#ifdef TLS_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

/* Last in every test, after the connections are closed. */
static void files_free(struct files *f)
{
	t_rmtree(f->dir);
	free(f->dir);
	X509_free(f->ca);
	X509_free(f->other);
	EVP_PKEY_free(f->ca_key);
	EVP_PKEY_free(f->other_key);
	expect_no_leaks();
}

static SSL_CTX *server_ctx(struct files *f, const char *name)
{
	char *ca = fpath(f, "ca", ".crt"), *c = fpath(f, name, ".crt");
	char *k = fpath(f, name, ".key");
	struct parley_err e = { 0 };
	SSL_CTX *ctx = tls_server_ctx(ca, c, k, &e);
	cr_assert(ctx, "server ctx: %s", perr_msg(&e));
	free(ca);
	free(c);
	free(k);
	return ctx;
}

static SSL_CTX *client_ctx(struct files *f, const char *name)
{
	char *ca = fpath(f, "ca", ".crt"), *c = fpath(f, name, ".crt");
	char *k = fpath(f, name, ".key");
	struct parley_err e = { 0 };
	SSL_CTX *ctx = tls_client_ctx(ca, c, k, &e);
	cr_assert(ctx, "client ctx: %s", perr_msg(&e));
	free(ca);
	free(c);
	free(k);
	return ctx;
}

/* ---- one connection in a bounded loop ---- */

struct side {
	bool done;
	int code;               /* 0, or what failed */
	struct parley_err err;
	char host[TLS_HOST_MAX]; /* the peer's CN, when it was read */
	struct bufferevent *bev;
};

struct run {
	struct event_base *base;
	SSL_CTX *sctx;
	struct evconnlistener *lis;
	int port;
	struct side srv, cli;
	bool timed_out;
	char got[8]; /* what the server read from the client */
};

static void maybe_stop(struct run *r)
{
	if (r->srv.done && r->cli.done)
		event_base_loopbreak(r->base);
}

static void side_failed(struct run *r, struct side *s, struct bufferevent *bev)
{
	s->code = tls_bev_error(bev, &s->err);
	s->done = true;
	maybe_stop(r);
}

/* The daemon's view: a verified host name, then "ping\n". */
static void srv_read(struct bufferevent *bev, void *arg)
{
	struct run *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (evbuffer_get_length(in) < 5)
		return;
	evbuffer_remove(in, r->got, 5);
	r->srv.done = true;
	maybe_stop(r);
}

static void srv_event(struct bufferevent *bev, short what, void *arg)
{
	struct run *r = arg;
	if (r->srv.done)
		return;
	if (!(what & BEV_EVENT_CONNECTED)) {
		side_failed(r, &r->srv, bev);
		/* As the daemon would: drop the connection. */
		bufferevent_free(bev);
		r->srv.bev = NULL;
		return;
	}
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	r->srv.code = tls_peer_host(ssl, r->srv.host, sizeof(r->srv.host),
				    &r->srv.err);
	if (r->srv.code < 0) {
		r->srv.done = true;
		bufferevent_free(bev);
		r->srv.bev = NULL;
		maybe_stop(r);
	}
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd,
		      struct sockaddr *sa, int len, void *arg)
{
	(void)lis;
	(void)sa;
	(void)len;
	struct run *r = arg;
	cr_assert_null(r->srv.bev, "a second connection");
	r->srv.bev = tls_bev_accept(r->base, fd, r->sctx);
	cr_assert(r->srv.bev);
	bufferevent_setcb(r->srv.bev, srv_read, NULL, srv_event, r);
	bufferevent_enable(r->srv.bev, EV_READ | EV_WRITE);
}

/* The agent's view: the server's name, then it says ping. */
static void cli_event(struct bufferevent *bev, short what, void *arg)
{
	struct run *r = arg;
	if (r->cli.done)
		return;
	if (!(what & BEV_EVENT_CONNECTED)) {
		side_failed(r, &r->cli, bev);
		return;
	}
	r->cli.code = tls_peer_host(bufferevent_openssl_get_ssl(bev),
				    r->cli.host, sizeof(r->cli.host),
				    &r->cli.err);
	bufferevent_write(bev, "ping\n", 5);
	r->cli.done = true;
	maybe_stop(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct run *r = arg;
	r->timed_out = true;
	event_base_loopbreak(r->base);
}

static void run_open(struct run *r, SSL_CTX *sctx)
{
	*r = (struct run){ .sctx = sctx };
	r->base = event_base_new();
	cr_assert(r->base);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	r->lis = evconnlistener_new_bind(r->base, on_accept, r,
					 LEV_OPT_CLOSE_ON_FREE |
					 LEV_OPT_CLOSE_ON_EXEC, 8,
					 (struct sockaddr *)&sin, sizeof(sin));
	cr_assert(r->lis, "listen on 127.0.0.1:0: %s", strerror(errno));
	socklen_t sl = sizeof(sin);
	cr_assert_eq(getsockname(evconnlistener_get_fd(r->lis),
				 (struct sockaddr *)&sin, &sl), 0);
	r->port = ntohs(sin.sin_port);
}

/* Run until both ends have a verdict, or fail the test at the limit. */
static void run_loop(struct run *r)
{
	struct event *t = evtimer_new(r->base, on_timeout, r);
	struct timeval tv = { .tv_sec = LOOP_LIMIT_S };
	cr_assert(t);
	evtimer_add(t, &tv);
	event_base_dispatch(r->base);
	event_free(t);
	cr_assert(!r->timed_out,
		  "no verdict within %d s (server %s, client %s)", LOOP_LIMIT_S,
		  r->srv.done ? "done" : "waiting",
		  r->cli.done ? "done" : "waiting");
}

static void run_close(struct run *r)
{
	if (r->srv.bev)
		bufferevent_free(r->srv.bev);
	if (r->cli.bev)
		bufferevent_free(r->cli.bev);
	if (r->lis)
		evconnlistener_free(r->lis);
	event_base_free(r->base);
	SSL_CTX_free(r->sctx);
}

/* Connect to the run's listener with cctx (which the run then frees). */
static void run_connect(struct run *r, SSL_CTX *cctx, const char *host)
{
	struct parley_err e = { 0 };
	r->cli.bev = tls_bev_connect(r->base, cctx, host, r->port, &e);
	cr_assert(r->cli.bev, "connect: %s", perr_msg(&e));
	/* The SSL holds its own reference to the context. */
	SSL_CTX_free(cctx);
	bufferevent_setcb(r->cli.bev, NULL, NULL, cli_event, r);
	bufferevent_enable(r->cli.bev, EV_READ | EV_WRITE);
	run_loop(r);
}

/* One handshake: server with the fleet CA and "parleyd", client cctx. */
static void handshake(struct files *f, SSL_CTX *cctx, struct run *r)
{
	run_open(r, server_ctx(f, "parleyd"));
	run_connect(r, cctx, "127.0.0.1");
}

static void expect_server_refused(struct run *r, int code, const char *words)
{
	cr_expect(r->srv.done);
	cr_expect_eq(r->srv.code, code, "server: %d, %s", r->srv.code,
		     perr_msg(&r->srv.err));
	cr_expect(strstr(r->srv.err.msg, words), "server said: %s",
		  r->srv.err.msg);
	cr_expect_str_empty(r->srv.host);
	cr_expect_str_empty(r->got);
}

Test(tls, mutual_handshake_names_the_client, .init = tls_init)
{
	struct files f;
	files_make(&f);
	struct run r;
	handshake(&f, client_ctx(&f, "agent-1"), &r);
	cr_expect_eq(r.srv.code, 0, "server: %s", perr_msg(&r.srv.err));
	cr_expect_str_eq(r.srv.host, "agent-1");
	cr_expect_eq(r.cli.code, 0, "client: %s", perr_msg(&r.cli.err));
	cr_expect_str_eq(r.cli.host, "parleyd");
	cr_expect_str_eq(r.got, "ping\n");
	SSL *ssl = bufferevent_openssl_get_ssl(r.srv.bev);
	cr_expect_eq(SSL_version(ssl), TLS1_3_VERSION);
	cr_expect_eq(SSL_session_reused(ssl), 0);
	run_close(&r);
	files_free(&f);
}

Test(tls, client_cert_from_another_ca_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	issue(&f, "stranger", "agent-1", true, -60, DAY, false);
	struct run r;
	handshake(&f, client_ctx(&f, "stranger"), &r);
	expect_server_refused(&r, -EKEYREJECTED,
			      "unable to get local issuer certificate");
	run_close(&r);
	files_free(&f);
}

Test(tls, expired_client_cert_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	issue(&f, "old", "agent-1", false, -2 * DAY, -DAY, false);
	struct run r;
	handshake(&f, client_ctx(&f, "old"), &r);
	expect_server_refused(&r, -EKEYEXPIRED, "certificate has expired");
	run_close(&r);
	files_free(&f);
}

Test(tls, no_client_cert_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	/* A client that trusts the CA but has no certificate of its own. */
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	cr_assert(c);
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	cr_assert(X509_STORE_add_cert(SSL_CTX_get_cert_store(c), f.ca));
	struct run r;
	handshake(&f, c, &r);
	expect_server_refused(&r, -EKEYREJECTED,
			      "peer did not return a certificate");
	run_close(&r);
	files_free(&f);
}

Test(tls, tls12_only_client_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	SSL_CTX *c = client_ctx(&f, "agent-1");
	cr_assert(SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION));
	cr_assert(SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION));
	struct run r;
	handshake(&f, c, &r);
	expect_server_refused(&r, -EPROTONOSUPPORT, "unsupported protocol");
	cr_expect(r.cli.done);
	cr_expect_lt(r.cli.code, 0, "the client got through: %s",
		     r.cli.err.msg);
	run_close(&r);
	files_free(&f);
}

/* The client refuses; the server hears why in the client's alert. */
static void expect_client_refused(struct run *r, int code, const char *words,
				  const char *alert)
{
	cr_expect(r->cli.done);
	cr_expect_eq(r->cli.code, code, "client: %d, %s", r->cli.code,
		     perr_msg(&r->cli.err));
	cr_expect(strstr(r->cli.err.msg, words), "client said: %s",
		  r->cli.err.msg);
	cr_expect_str_empty(r->cli.host);
	expect_server_refused(r, -ECONNABORTED, alert);
}

Test(tls, server_cert_from_another_ca_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	issue(&f, "fake-d", "parleyd", true, -60, DAY, true);
	struct run r;
	run_open(&r, server_ctx(&f, "fake-d"));
	run_connect(&r, client_ctx(&f, "agent-1"), "127.0.0.1");
	expect_client_refused(&r, -EKEYREJECTED,
			      "unable to get local issuer certificate",
			      "unknown ca");
	run_close(&r);
	files_free(&f);
}

Test(tls, server_with_client_cert_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	/* Another agent's certificate does not make a daemon. */
	issue(&f, "agent-2", "agent-2", false, -60, DAY, false);
	struct run r;
	run_open(&r, server_ctx(&f, "agent-2"));
	run_connect(&r, client_ctx(&f, "agent-1"), "127.0.0.1");
	expect_client_refused(&r, -EKEYREJECTED,
			      "unsuitable certificate purpose", "alert");
	run_close(&r);
	files_free(&f);
}

Test(tls, client_with_server_cert_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	issue(&f, "agent-s", "agent-s", false, -60, DAY, true);
	struct run r;
	handshake(&f, client_ctx(&f, "agent-s"), &r);
	expect_server_refused(&r, -EKEYREJECTED,
			      "unsuitable certificate purpose");
	run_close(&r);
	files_free(&f);
}

/* Connect by hand to 127.0.0.1, but verify the server as `host`. */
static void connect_as(struct run *r, SSL_CTX *cctx, const char *host)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)r->port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(evutil_make_socket_nonblocking(fd), 0);
	struct parley_err e = { 0 };
	SSL *ssl = tls_client_new(cctx, host, &e);
	cr_assert(ssl, "%s", perr_msg(&e));
	SSL_CTX_free(cctx);
	r->cli.bev = bufferevent_openssl_socket_new(r->base, fd, ssl,
						    BUFFEREVENT_SSL_CONNECTING,
						    BEV_OPT_CLOSE_ON_FREE);
	cr_assert(r->cli.bev);
	bufferevent_setcb(r->cli.bev, NULL, NULL, cli_event, r);
	bufferevent_enable(r->cli.bev, EV_READ | EV_WRITE);
	run_loop(r);
}

Test(tls, server_cert_for_another_address_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	const char *hosts[] = { "192.0.2.7", "::2", "daemon.example.org" };
	const char *why[] = { "IP address mismatch", "IP address mismatch",
			      "hostname mismatch" };
	for (size_t i = 0; i < 3; i++) {
		struct run r;
		run_open(&r, server_ctx(&f, "parleyd"));
		connect_as(&r, client_ctx(&f, "agent-1"), hosts[i]);
		cr_expect_eq(r.cli.code, -EKEYREJECTED, "%s: %s", hosts[i],
			     perr_msg(&r.cli.err));
		cr_expect(strstr(r.cli.err.msg, why[i]), "%s: %s", hosts[i],
			  r.cli.err.msg);
		cr_expect(r.srv.code < 0, "%s: server got through", hosts[i]);
		run_close(&r);
	}
	/* The names it does have are accepted. */
	const char *good[] = { "::1", "localhost", "parleyd" };
	for (size_t i = 0; i < 3; i++) {
		struct run r;
		run_open(&r, server_ctx(&f, "parleyd"));
		connect_as(&r, client_ctx(&f, "agent-1"), good[i]);
		cr_expect_eq(r.cli.code, 0, "%s: %s", good[i],
			     perr_msg(&r.cli.err));
		cr_expect_str_eq(r.srv.host, "agent-1");
		run_close(&r);
	}
	files_free(&f);
}

/* CNs a certificate can carry that are not host names parley accepts. */
static const char *const bad_cns[] = {
	"../etc", "-x", ".hidden", "a b", "a/b", "x\n", "h\xc3\xa9te",
	"agent-1\xef\xbc\x8f", "semi;colon",
	/* 64 bytes: X.509 allows it, jv_name_valid's cap 64 does not */
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

Test(tls, client_cn_not_a_valid_name_refused, .init = tls_init)
{
	struct files f;
	files_make(&f);
	for (size_t i = 0; i < sizeof(bad_cns) / sizeof(bad_cns[0]); i++) {
		issue(&f, "odd", bad_cns[i], false, -60, DAY, false);
		struct run r;
		handshake(&f, client_ctx(&f, "odd"), &r);
		cr_expect_eq(r.srv.code, -EKEYREJECTED, "case %zu: %d %s", i,
			     r.srv.code, perr_msg(&r.srv.err));
		cr_expect(strstr(r.srv.err.msg, "not a valid host name"),
			  "case %zu: %s", i, r.srv.err.msg);
		/* Quoted: no control bytes reach a log line. */
		cr_expect_null(strchr(r.srv.err.msg, '\n'), "case %zu", i);
		cr_expect_str_empty(r.srv.host, "case %zu", i);
		cr_expect_str_empty(r.got, "case %zu", i);
		run_close(&r);
	}
	/* 63 bytes is the longest name that passes. */
	const char *n63 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	issue(&f, "long", n63, false, -60, DAY, false);
	struct run r;
	handshake(&f, client_ctx(&f, "long"), &r);
	cr_expect_eq(r.srv.code, 0, "%s", perr_msg(&r.srv.err));
	cr_expect_str_eq(r.srv.host, n63);
	run_close(&r);
	files_free(&f);
}

Test(tls, refused_connection_is_an_event, .init = tls_init)
{
	struct files f;
	files_make(&f);
	struct run r;
	run_open(&r, server_ctx(&f, "parleyd"));
	/* Nobody listens on that port any more. */
	evconnlistener_free(r.lis);
	r.lis = NULL;
	r.srv.done = true;
	run_connect(&r, client_ctx(&f, "agent-1"), "127.0.0.1");
	cr_expect_eq(r.cli.code, -ECONNREFUSED, "%s", perr_msg(&r.cli.err));
	run_close(&r);
	files_free(&f);
}

Test(tls, context_and_connect_errors, .init = tls_init)
{
	struct files f;
	files_make(&f);
	issue(&f, "agent-2", "agent-2", false, -60, DAY, false);
	char *ca = fpath(&f, "ca", ".crt"), *c1 = fpath(&f, "agent-1", ".crt");
	char *k2 = fpath(&f, "agent-2", ".key");
	char *none = fpath(&f, "no", ".crt");
	struct parley_err e = { 0 };
	cr_expect_null(tls_client_ctx(none, c1, k2, &e));
	cr_expect_eq(e.code, -ENOENT, "%s", e.msg);
	cr_expect_null(tls_server_ctx(ca, none, k2, &e));
	cr_expect_eq(e.code, -ENOENT, "%s", e.msg);
	cr_expect_null(tls_client_ctx(ca, c1, k2, &e));
	cr_expect_eq(e.code, -EINVAL);
	cr_expect(strstr(e.msg, "does not match"), "%s", e.msg);
	/* A key where the CA should be. */
	cr_expect_null(tls_server_ctx(k2, c1, k2, &e));
	cr_expect_eq(e.code, -EINVAL, "%s", e.msg);
	SSL_CTX *ctx = client_ctx(&f, "agent-1");
	struct event_base *base = event_base_new();
	cr_expect_null(tls_bev_connect(base, ctx, "127.0.0.1", 0, &e));
	cr_expect_eq(e.code, -EINVAL);
	cr_expect_null(tls_bev_connect(base, ctx, "127.0.0.1", 65536, &e));
	cr_expect_null(tls_bev_connect(base, ctx, "no such host!", 1, &e));
	cr_expect_eq(e.code, -EHOSTUNREACH, "%s", e.msg);
	cr_expect_null(tls_client_new(ctx, "", &e));
	cr_expect_eq(e.code, -EINVAL);
	/* Before any handshake there is no peer to name. */
	SSL *ssl = tls_client_new(ctx, "127.0.0.1", &e);
	cr_assert(ssl);
	char host[TLS_HOST_MAX];
	cr_expect_eq(tls_peer_host(ssl, host, sizeof(host), &e), -EAGAIN);
	SSL_free(ssl);
	cr_expect_eq(ERR_peek_error(), 0, "OpenSSL error queue left behind");
	event_base_free(base);
	SSL_CTX_free(ctx);
	free(ca);
	free(c1);
	free(k2);
	free(none);
	files_free(&f);
}
