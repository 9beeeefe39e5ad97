#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/jsonv.h"
#include "common/pki.h"

/* The CA as the one trust anchor; the server also names it to clients as
 * the issuer it accepts. */
static int ctx_trust(SSL_CTX *ctx, const char *ca, bool server,
		     struct parley_err *err)
{
	X509 *x;
	int rc = pki_read_cert(ca, &x, err);
	if (rc < 0)
		return rc;
	if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) ||
	    (server && !SSL_CTX_add_client_CA(ctx, x)))
		rc = pki_ossl_err(err, -EINVAL, "%s: as trust anchor", ca);
	X509_free(x);
	return rc;
}

static int ctx_identity(SSL_CTX *ctx, const char *cert, const char *key,
			struct parley_err *err)
{
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	int rc = pki_read_cert(cert, &x, err);
	if (!rc)
		rc = pki_read_key(key, &k, err);
	if (!rc && X509_check_private_key(x, k) != 1)
		rc = pki_ossl_err(err, -EINVAL,
				  "%s does not match the key in %s", key, cert);
	if (!rc && SSL_CTX_use_certificate(ctx, x) != 1)
		rc = pki_ossl_err(err, -EINVAL, "%s: unusable", cert);
	if (!rc && SSL_CTX_use_PrivateKey(ctx, k) != 1)
		rc = pki_ossl_err(err, -EINVAL, "%s: unusable", key);
	EVP_PKEY_free(k);
	X509_free(x);
	return rc;
}

static SSL_CTX *ctx_new(bool server, const char *ca, const char *cert,
			const char *key, struct parley_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() :
					    TLS_client_method());
	if (!ctx) {
		pki_ossl_err(err, -ENOMEM, "SSL_CTX_new");
		return NULL;
	}
	int rc = 0;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		rc = pki_ossl_err(err, -EINVAL, "TLS 1.3 only");
	/* Connections are long-lived and few: resumption buys nothing and
	 * would be one more way in. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* An idle agent link then holds no 17 KiB record buffers: about
	 * half of the daemon's memory per connected agent. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (server && !SSL_CTX_set_num_tickets(ctx, 0))
		rc = pki_ossl_err(err, -EINVAL, "no tickets");
	SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER |
					 SSL_VERIFY_FAIL_IF_NO_PEER_CERT :
					 SSL_VERIFY_PEER, NULL);
	/* The purpose OpenSSL checks by default (sslserver on the client's
	 * side, sslclient on the server's), made explicit. */
	if (!rc && !SSL_CTX_set_purpose(ctx, server ? X509_PURPOSE_SSL_CLIENT :
						      X509_PURPOSE_SSL_SERVER))
		rc = pki_ossl_err(err, -EINVAL, "certificate purpose");
	if (!rc)
		rc = ctx_trust(ctx, ca, server, err);
	if (!rc)
		rc = ctx_identity(ctx, cert, key, err);
	if (rc < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL_CTX *tls_server_ctx(const char *ca, const char *cert, const char *key,
			struct parley_err *err)
{
	return ctx_new(true, ca, cert, key, err);
}

SSL_CTX *tls_client_ctx(const char *ca, const char *cert, const char *key,
			struct parley_err *err)
{
	return ctx_new(false, ca, cert, key, err);
}

static bool is_ip_literal(const char *host)
{
	unsigned char a[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, a) == 1 ||
	       inet_pton(AF_INET6, host, a) == 1;
}

static int set_peer_name(SSL *ssl, const char *host, struct parley_err *err)
{
	X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
	if (is_ip_literal(host)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(p, host) != 1)
			return pki_ossl_err(err, -EINVAL, "address %s", host);
		return 0;
	}
	X509_VERIFY_PARAM_set_hostflags(p,
					X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(p, host, 0) != 1 ||
	    SSL_set_tlsext_host_name(ssl, host) != 1)
		return pki_ossl_err(err, -EINVAL, "host name %s", host);
	return 0;
}

SSL *tls_client_new(SSL_CTX *ctx, const char *host, struct parley_err *err)
{
	if (!host || !*host) {
		perr(err, -EINVAL, "no server name or address to verify");
		return NULL;
	}
	SSL *ssl = SSL_new(ctx);
	if (!ssl) {
		pki_ossl_err(err, -ENOMEM, "SSL_new");
		return NULL;
	}
	if (set_peer_name(ssl, host, err) < 0) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

int tls_peer_host(SSL *ssl, char *out, size_t cap, struct parley_err *err)
{
	if (!SSL_is_init_finished(ssl))
		return perr(err, -EAGAIN, "TLS handshake not finished");
	/* Without SSL_VERIFY_PEER the verify result says X509_V_OK for a
	 * certificate nobody checked. */
	if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return perr(err, -EKEYREJECTED, "peer certificate not checked");
	X509 *peer = SSL_get0_peer_certificate(ssl);
	if (!peer)
		return perr(err, -EKEYREJECTED, "peer sent no certificate");
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK)
		return perr(err, -EKEYREJECTED,
			    "peer certificate not verified: %s",
			    X509_verify_cert_error_string(v));
	char cn[PKI_CN_MAX + 1];
	int rc = pki_cert_cn(peer, cn, sizeof(cn), err);
	if (rc < 0)
		return perr_prefix(err, "peer certificate"), rc;
	size_t len = strlen(cn);
	if (!jv_name_valid(cn, len, TLS_HOST_MAX)) {
		/* The CN is the peer's text: show it quoted and bounded. */
		struct jv_quoted q;
		return perr(err, -EKEYREJECTED,
			    "peer certificate CN %s is not a valid host name",
			    jv_quote(&q, cn, len));
	}
	if (len >= cap)
		return perr(err, -ENOSPC, "host name longer than %zu bytes",
			    cap ? cap - 1 : 0);
	memcpy(out, cn, len + 1);
	return 0;
}

struct bufferevent *tls_bev_accept(struct event_base *base,
				   evutil_socket_t fd, SSL_CTX *ctx)
{
	SSL *ssl = NULL;
	struct bufferevent *bev = NULL;
	/* Close-on-exec: the agent execs vmm processes, which must not
	 * inherit the daemon link. */
	if (evutil_make_socket_nonblocking(fd) == 0 &&
	    evutil_make_socket_closeonexec(fd) == 0)
		ssl = SSL_new(ctx);
	if (ssl)
		bev = bufferevent_openssl_socket_new(base, fd, ssl,
						     BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
	/* A failed bufferevent_openssl_socket_new has freed the SSL itself
	 * (libevent >= 2.1.9, with BEV_OPT_CLOSE_ON_FREE) but not the fd. */
	if (!bev) {
		evutil_closesocket(fd);
		ERR_clear_error();
	}
	return bev;
}

/* A not yet connected socket for ai (close-on-exec, as above) inside a
 * client TLS bufferevent that owns it. */
static struct bufferevent *open_bev(struct event_base *base, SSL_CTX *ctx,
				    const char *host,
				    const struct evutil_addrinfo *ai,
				    struct parley_err *err)
{
	SSL *ssl = tls_client_new(ctx, host, err);
	if (!ssl)
		return NULL;
	int fd = socket(ai->ai_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perr(err, -errno, "socket: %m");
		SSL_free(ssl);
		return NULL;
	}
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		/* The SSL is gone with it (see tls_bev_accept), not fd. */
		pki_ossl_err(err, -ENOMEM, "bufferevent_openssl_socket_new");
		close(fd);
	}
	return bev;
}

struct bufferevent *tls_bev_connect(struct event_base *base, SSL_CTX *ctx,
				    const char *host, int port,
				    struct parley_err *err)
{
	if (port < 1 || port > 65535) {
		perr(err, -EINVAL, "port %d out of range", port);
		return NULL;
	}
	char ps[8];
	snprintf(ps, sizeof(ps), "%d", port);
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC,
					 .ai_socktype = SOCK_STREAM,
					 .ai_protocol = IPPROTO_TCP };
	struct evutil_addrinfo *ai = NULL;
	int g = evutil_getaddrinfo(host, ps, &hints, &ai);
	if (g) {
		perr(err, -EHOSTUNREACH, "%s: %s", host,
		     evutil_gai_strerror(g));
		return NULL;
	}
	struct bufferevent *bev = open_bev(base, ctx, host, ai, err);
	/* An immediate refusal is not an error here: libevent reports it
	 * as BEV_EVENT_ERROR from the loop. */
	if (bev && bufferevent_socket_connect(bev, ai->ai_addr,
					      (int)ai->ai_addrlen) < 0) {
		perr(err, errno ? -errno : -EIO, "connect to %s:%d: %m", host,
		     port);
		bufferevent_free(bev);
		bev = NULL;
	}
	evutil_freeaddrinfo(ai);
	return bev;
}

/* The name of a certificate check that failed, and its errno. */
static int verify_failure(SSL *ssl, char *buf, size_t cap)
{
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (v == X509_V_OK) {
		snprintf(buf, cap, "certificate verify failed");
		return -EKEYREJECTED;
	}
	snprintf(buf, cap, "certificate verify failed: %s",
		 X509_verify_cert_error_string(v));
	if (v == X509_V_ERR_CERT_HAS_EXPIRED ||
	    v == X509_V_ERR_CERT_NOT_YET_VALID)
		return -EKEYEXPIRED;
	return -EKEYREJECTED;
}

static int classify(SSL *ssl, unsigned long e, char *buf, size_t cap)
{
	int reason = ERR_GET_REASON(e);
	ERR_error_string_n(e, buf, cap);
	if (ERR_GET_LIB(e) != ERR_LIB_SSL)
		return -EPROTO;
	switch (reason) {
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		return verify_failure(ssl, buf, cap);
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return -EKEYREJECTED;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return -EPROTONOSUPPORT;
	default:
		/* Alerts the peer sent are SSL_AD_REASON_OFFSET + code. */
		if (reason < SSL_AD_REASON_OFFSET)
			return -EPROTO;
		snprintf(buf, cap, "the peer ended the handshake: %s",
			 ERR_reason_error_string(e));
		return -ECONNABORTED;
	}
}

/* errno values that can describe a connection's end; anything else in
 * errno at callback time is left over from some other call. */
static bool conn_errno(int e)
{
	switch (e) {
	case ECONNREFUSED: case ECONNRESET: case ECONNABORTED: case EPIPE:
	case ETIMEDOUT: case EHOSTUNREACH: case ENETUNREACH: case ENETDOWN:
	case EHOSTDOWN:
		return true;
	default:
		return false;
	}
}

static int socket_failure(struct bufferevent *bev, int saved,
			  struct parley_err *err)
{
	int so = 0;
	socklen_t sl = sizeof(so);
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (!conn_errno(saved) && fd >= 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so)
		saved = so;
	if (saved && conn_errno(saved))
		return perr(err, -saved, "TLS connection: %s",
			    evutil_socket_error_to_string(saved));
	return perr(err, -ECONNRESET, "TLS connection closed by the peer");
}

int tls_bev_error(struct bufferevent *bev, struct parley_err *err)
{
	int saved = EVUTIL_SOCKET_ERROR();
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	/* libevent keeps SSL_get_error()'s code (library 0) and then the
	 * error queue, and hands them back last first: the root cause is
	 * the last real entry out. */
	unsigned long e, cause = 0;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (ERR_GET_LIB(e) != 0)
			cause = e;
	ERR_clear_error();
	if (!cause)
		return socket_failure(bev, saved, err);
	char why[200];
	int rc = classify(ssl, cause, why, sizeof(why));
	return perr(err, rc, "TLS: %s", why);
}
