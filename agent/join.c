#include "agent/join.h"
#include "agent/servers.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/hostport.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/tls_join.h"
#include "common/wire.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/* Seconds for connecting, the handshake, and each read or write. */
#define JOIN_IO_TIMEOUT_S 30
/* The answer: a host name and three PEM documents of at most 16 KiB. */
#define JOIN_REPLY_MAX (64 * 1024)
/* The CN of our request: the daemon replaces it with the token's host. */
#define JOIN_CSR_CN "join"

struct join_args {
	const char *server, *token, *ca_sha256, *state_dir;
};

struct join_run {
	struct join_args a;
	char host[128];             /* of --server */
	int port;
	struct tls_pin pin;
	EVP_PKEY *key;
	char *csr_pem;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	Parley__V1__Envelope *reply;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "parley-agent join: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: parley-agent join --server HOST:PORT "
			"--token prj_... --ca-sha256 HEX --state-dir DIR\n");
}

static int parse(int argc, char **argv, struct join_args *a)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "token", required_argument, NULL, 't' },
		{ "ca-sha256", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ 0 },
	};
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': a->server = optarg; break;
		case 't': a->token = optarg; break;
		case 'c': a->ca_sha256 = optarg; break;
		case 'd': a->state_dir = optarg; break;
		default: return -1;
		}
	}
	if (optind < argc || !a->server || !a->token || !a->ca_sha256 ||
	    !a->state_dir)
		return -1;
	return 0;
}

/* 64 hex digits, "sha256:" and upper case allowed, kept in lower case. */
static int parse_pin(const char *s, char out[65])
{
	if (!strncmp(s, "sha256:", 7))
		s += 7;
	if (strlen(s) != 64)
		return -1;
	for (int i = 0; i < 64; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		out[i] = c;
	}
	out[64] = 0;
	return 0;
}

static void state_file(const struct join_run *r, const char *name, char *out,
		       size_t cap)
{
	if (path_join(out, cap, r->a.state_dir, name) < 0)
		out[0] = 0;
}

/* DIR exists (made 0700 if not) and holds no identity yet. */
static int check_dir(const struct join_run *r)
{
	if (mkdir(r->a.state_dir, 0700) < 0 && errno != EEXIST)
		return fail("%s: %s", r->a.state_dir, strerror(errno));
	const char *mine[] = { "host.key", "host.crt" };
	for (int i = 0; i < 2; i++) {
		char p[PATH_MAX];
		state_file(r, mine[i], p, sizeof(p));
		if (!p[0])
			return fail("%s: path too long", r->a.state_dir);
		if (access(p, F_OK) == 0)
			return fail("%s exists: this state directory has "
				    "joined already", p);
	}
	return 0;
}

/* The key, the CSR, and the request checked as the daemon will check it
 * (a malformed token is refused here, before any connection). */
static int make_request(struct join_run *r, uint8_t **frame, size_t *len)
{
	struct parley_err err = { 0 };
	X509_REQ *req = NULL;
	size_t plen;
	if (pki_key_new(&r->key, &err) < 0 ||
	    pki_csr_new(r->key, JOIN_CSR_CN, &req, &err) < 0 ||
	    pki_csr_to_pem(req, &r->csr_pem, &plen, &err) < 0) {
		X509_REQ_free(req);
		return fail("%s", perr_msg(&err));
	}
	X509_REQ_free(req);
	Parley__V1__Envelope e;
	Parley__V1__JoinRequest jr;
	wire_init_envelope(&e, 1);
	parley__v1__join_request__init(&jr);
	jr.token = (char *)r->a.token;
	jr.csr_pem = r->csr_pem;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST;
	e.join_request = &jr;
	if (wire_check(&e, &err) < 0)
		return fail("--token: %s", perr_msg(&err));
	if (frame_encode(&e, frame, len) < 0)
		return fail("could not encode the request");
	return 0;
}

static int dial(struct join_run *r)
{
	char ps[8];
	snprintf(ps, sizeof(ps), "%d", r->port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int g = getaddrinfo(r->host, ps, &hints, &ai);
	if (g)
		return fail("%s: %s", r->host, gai_strerror(g));
	r->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { JOIN_IO_TIMEOUT_S, 0 };
	int rc = 0;
	if (r->fd < 0 ||
	    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(r->fd, ai->ai_addr, ai->ai_addrlen) < 0)
		rc = fail("connect to %s: %s", r->a.server, strerror(errno));
	freeaddrinfo(ai);
	return rc;
}

static int handshake(struct join_run *r)
{
	struct parley_err err = { 0 };
	r->ctx = tls_join_client_ctx(&r->pin, &err);
	if (r->ctx)
		r->ssl = tls_client_new(r->ctx, r->host, &err);
	if (!r->ssl)
		return fail("%s", perr_msg(&err));
	if (SSL_set_fd(r->ssl, r->fd) != 1)
		return fail("SSL_set_fd failed");
	if (SSL_connect(r->ssl) == 1)
		return 0;
	char why[256];
	ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
	ERR_clear_error();
	if (r->pin.failed)
		return fail("refusing the server %s (token not sent): %s",
			    r->a.server, r->pin.why);
	long v = SSL_get_verify_result(r->ssl);
	if (v != X509_V_OK)
		return fail("refusing the server %s (token not sent): %s",
			    r->a.server, X509_verify_cert_error_string(v));
	return fail("TLS handshake with %s failed: %s", r->a.server, why);
}

static int send_all(struct join_run *r, const uint8_t *p, size_t len)
{
	size_t n = 0;
	while (n < len) {
		size_t w = 0;
		if (SSL_write_ex(r->ssl, p + n, len - n, &w) != 1)
			return fail("sending the request to %s failed",
				    r->a.server);
		n += w;
	}
	return 0;
}

static int receive(struct join_run *r)
{
	uint8_t *buf = malloc(JOIN_REPLY_MAX + FRAME_HDR);
	size_t have = 0, used = 0;
	struct parley_err err = { 0 };
	int rc = 0;
	while (buf && rc == 0) {
		rc = frame_decode(buf, have, JOIN_REPLY_MAX, &used, &r->reply,
				  &err);
		if (rc != 0)
			break;
		size_t got = 0;
		if (have == JOIN_REPLY_MAX + FRAME_HDR ||
		    SSL_read_ex(r->ssl, buf + have,
				JOIN_REPLY_MAX + FRAME_HDR - have, &got) != 1) {
			rc = -ECONNRESET;
			perr(&err, rc, "the server closed the connection "
				       "without an answer");
			break;
		}
		have += got;
	}
	free(buf);
	ERR_clear_error();
	if (!buf)
		return fail("out of memory");
	return rc == 1 ? 0 : fail("%s: %s", r->a.server, perr_msg(&err));
}

/* A PEM public key from the answer, if it is an Ed25519 one; else NULL. */
static EVP_PKEY *ed25519_pub(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	ERR_clear_error();
	if (k && !EVP_PKEY_is_a(k, "ED25519")) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

/* The answer as the daemon sent it, checked against the pin and our key.
 * *cert, *ca, *pub are the caller's on success. */
static int check_reply(struct join_run *r, X509 **cert, X509 **ca,
		       EVP_PKEY **pub)
{
	const Parley__V1__JoinResponse *j = r->reply->join_response;
	struct parley_err err = { 0 };
	char fp[65], cn[PKI_CN_MAX + 1];
	if (pki_cert_from_pem(j->ca_pem, strlen(j->ca_pem), ca, &err) < 0 ||
	    pki_cert_from_pem(j->cert_pem, strlen(j->cert_pem), cert,
			      &err) < 0)
		return fail("the answer: %s", perr_msg(&err));
	if (pki_fingerprint(*ca, fp) < 0 || strcmp(fp, r->pin.ca_sha256))
		return fail("the answer's CA is not the one --ca-sha256 names");
	if (pki_verify(*ca, *cert, false, &err) < 0)
		return fail("the answer's certificate: %s", perr_msg(&err));
	if (pki_cert_cn(*cert, cn, sizeof(cn), &err) < 0 ||
	    strcmp(cn, j->host))
		return fail("the answer's certificate does not name host %s",
			    j->host);
	if (EVP_PKEY_eq(X509_get0_pubkey(*cert), r->key) != 1)
		return fail("the answer's certificate is not for our key");
	*pub = ed25519_pub(j->policy_pub_pem);
	if (!*pub)
		return fail("the answer's policy key is not an Ed25519 key");
	return 0;
}

/* The release key agent updates are signed with, when the daemon has one
 * ("" otherwise): NULL in *rel then, an error only for one that is not an
 * Ed25519 public key. */
static int check_release(const Parley__V1__JoinResponse *j, EVP_PKEY **rel)
{
	*rel = NULL;
	if (!j->release_pub_pem || !j->release_pub_pem[0])
		return 0;
	*rel = ed25519_pub(j->release_pub_pem);
	if (!*rel)
		return fail("the answer's release key is not an Ed25519 key");
	return 0;
}

/* The key first: a state directory with a certificate but no key would
 * look joined and could never connect. */
static int save(struct join_run *r, X509 *cert, X509 *ca, EVP_PKEY *pub,
		EVP_PKEY *rel)
{
	char pk[PATH_MAX], pc[PATH_MAX], pa[PATH_MAX], pp[PATH_MAX];
	char pr[PATH_MAX];
	struct parley_err err = { 0 };
	state_file(r, "host.key", pk, sizeof(pk));
	state_file(r, "host.crt", pc, sizeof(pc));
	state_file(r, "ca.crt", pa, sizeof(pa));
	state_file(r, "policy.pub", pp, sizeof(pp));
	state_file(r, "release.pub", pr, sizeof(pr));
	if (pki_write_key(pk, r->key, &err) < 0 ||
	    pki_write_cert(pa, ca, &err) < 0 ||
	    sign_write_pub(pp, pub, &err) < 0 ||
	    (rel && sign_write_pub(pr, rel, &err) < 0) ||
	    pki_write_cert(pc, cert, &err) < 0)
		return fail("%s", perr_msg(&err));
	return 0;
}

static int finish(struct join_run *r)
{
	const Parley__V1__Envelope *e = r->reply;
	if (e->body_case == PARLEY__V1__ENVELOPE__BODY_ERROR)
		return fail("refused by %s: %s: %s", r->a.server,
			    e->error->code, e->error->message);
	if (e->body_case != PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE)
		return fail("%s answered with %s", r->a.server,
			    wire_body_name(e->body_case));
	X509 *cert = NULL, *ca = NULL;
	EVP_PKEY *pub = NULL, *rel = NULL;
	int rc = check_reply(r, &cert, &ca, &pub);
	if (rc == 0)
		rc = check_release(e->join_response, &rel);
	if (rc == 0)
		rc = save(r, cert, ca, pub, rel);
	/* The daemon replicas to fail over between, for `serve`. */
	struct parley_err serr = { 0 };
	if (rc == 0 &&
	    agent_servers_save(r->a.state_dir, e->join_response->servers,
			       e->join_response->n_servers, &serr) < 0)
		rc = fail("%s", perr_msg(&serr));
	if (rc == 0)
		printf("joined as host %s; identity in %s\n",
		       e->join_response->host, r->a.state_dir);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(rel);
	return rc;
}

static int run(struct join_run *r)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	int rc = check_dir(r);
	if (rc == 0)
		rc = make_request(r, &frame, &len);
	if (rc == 0)
		rc = dial(r);
	if (rc == 0)
		rc = handshake(r);
	if (rc == 0)
		rc = send_all(r, frame, len);
	if (rc == 0)
		rc = receive(r);
	if (rc == 0)
		rc = finish(r);
	free(frame);
	return rc;
}

int join_main(int argc, char **argv)
{
	struct join_run r = { .fd = -1 };
	if (parse(argc, argv, &r.a) < 0) {
		usage();
		return 2;
	}
	if (hostport_split(r.a.server, r.host, sizeof(r.host), &r.port) < 0 ||
	    r.port < 1) {
		fail("--server \"%s\" is not HOST:PORT", r.a.server);
		return 2;
	}
	if (parse_pin(r.a.ca_sha256, r.pin.ca_sha256) < 0) {
		fail("--ca-sha256: not a SHA-256 in hex");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int rc = run(&r);
	if (r.ssl)
		SSL_shutdown(r.ssl);
	SSL_free(r.ssl);
	SSL_CTX_free(r.ctx);
	if (r.fd >= 0)
		close(r.fd);
	if (r.reply)
		parley__v1__envelope__free_unpacked(r.reply, NULL);
	free(r.csr_pem);
	EVP_PKEY_free(r.key);
	return rc < 0 ? 1 : 0;
}
