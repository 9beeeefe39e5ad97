#include "daemon/join.h"
#include "common/frame.h"
#include "common/hostport.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/pki_join.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/tls_join.h"
#include "common/wire.h"
#include "daemon/keys/keyd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* A JoinRequest is a token and a CSR of under 16 KiB: nothing larger is
 * read. */
#define JOIN_FRAME_MAX (64 * 1024)
/* Joins are rare; this bounds what idle or slow peers can hold. When it
 * is reached, the oldest connection makes room: a join takes
 * milliseconds, so a peer that holds 64 slots open (a byte of a
 * ClientHello every few seconds) loses its own first, not the newcomer. */
#define JOIN_CONNS_MAX 64
/* Of them, from one address: a peer opening connections as fast as it
 * can then cycles its own, not everyone's (the oldest of its own makes
 * room for its next). */
#define JOIN_PEER_CONNS_MAX 8
/* Seconds a joiner has for the handshake and its one request, in all:
 * counted from the accept, not from its last byte (bufferevent's
 * timeouts start again with every byte that comes). */
#define JOIN_TIMEOUT_S 10

struct join_conn {
	struct join_server *js;
	struct bufferevent *bev;
	struct event *deadline;
	char addr[INET6_ADDRSTRLEN];
	struct join_conn *prev, *next;
	char peer[INET6_ADDRSTRLEN + 8];
};

/* ---- tokens -------------------------------------------------------- */

int join_token_digest(const char *token, uint8_t sha256[32])
{
	size_t plen = strlen(JOIN_TOKEN_PREFIX);
	if (!token || strlen(token) != JOIN_TOKEN_LEN ||
	    strncmp(token, JOIN_TOKEN_PREFIX, plen))
		return -EINVAL;
	for (const char *c = token + plen; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return -EINVAL;
	/* The whole text, prefix included: as daemon/rpc/api.c digests the
	 * tokens it mints (api_token_digest). */
	return EVP_Digest(token, JOIN_TOKEN_LEN, sha256, NULL, EVP_sha256(),
			  NULL) == 1 ? 0 : -EIO;
}

int join_token_new(char token[JOIN_TOKEN_LEN + 1], uint8_t sha256[32])
{
	uint8_t secret[JOIN_SECRET_LEN];
	if (RAND_bytes(secret, sizeof(secret)) != 1)
		return -EIO;
	memcpy(token, JOIN_TOKEN_PREFIX, strlen(JOIN_TOKEN_PREFIX));
	pki_hex(secret, sizeof(secret), token + strlen(JOIN_TOKEN_PREFIX));
	OPENSSL_cleanse(secret, sizeof(secret));
	return join_token_digest(token, sha256);
}

/* ---- options ------------------------------------------------------- */

static int take(const char *name, const char *v, char *dst, size_t cap,
		struct parley_err *err)
{
	if (!v)
		return perr(err, -EINVAL, "%s: needs a value", name);
	if ((size_t)snprintf(dst, cap, "%s", v) >= cap)
		return perr(err, -ENAMETOOLONG, "%s: too long", name);
	return 0;
}

int join_take_args(int *argc, char **argv, struct join_config *jc,
		   struct parley_err *err)
{
	memset(jc, 0, sizeof(*jc));
	snprintf(jc->listen, sizeof(jc->listen), "%s", JOIN_DEFAULT_LISTEN);
	int out = 1, rc = 0;
	for (int i = 1; i < *argc && rc == 0; i++) {
		const char *v = i + 1 < *argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--join-listen"))
			rc = take(argv[i], v, jc->listen, sizeof(jc->listen),
				  err), jc->listen_set = true, i++;
		else if (!strcmp(argv[i], "--ca-key"))
			rc = take(argv[i], v, jc->ca_key, sizeof(jc->ca_key),
				  err), i++;
		else
			argv[out++] = argv[i];
	}
	if (rc < 0)
		return rc;
	argv[out] = NULL;
	*argc = out;
	return 0;
}

/* ---- connections --------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_free(struct join_conn *c)
{
	struct join_server *js = c->js;
	if (c->prev)
		c->prev->next = c->next;
	else
		js->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	js->nconns--;
	if (c->deadline)
		event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct join_conn *c = arg;
	log_warn("join: %s: no request within %d s: closed", c->peer,
		 JOIN_TIMEOUT_S);
	conn_free(c);
}

/* The oldest connection (the list's last: new ones go first), of addr
 * if not NULL. */
static void evict_oldest(struct join_server *js, const char *addr)
{
	struct join_conn *old = NULL;
	for (struct join_conn *c = js->conns; c; c = c->next)
		if (!addr || !strcmp(c->addr, addr))
			old = c;
	if (old) {
		log_warn("join: %d connections%s%s: the oldest (%s) closed for "
			 "a new one", addr ? JOIN_PEER_CONNS_MAX
			 : JOIN_CONNS_MAX, addr ? " from " : "",
			 addr ? addr : "", old->peer);
		conn_free(old);
	}
}

static unsigned conns_from(const struct join_server *js, const char *addr)
{
	unsigned n = 0;
	for (const struct join_conn *c = js->conns; c; c = c->next)
		n += !strcmp(c->addr, addr);
	return n;
}

static void on_event(struct bufferevent *bev, short what, void *arg);

static void on_drained(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_free(arg);
}

/* Send the last envelope, then close once it has left. */
static void send_last(struct join_conn *c, Parley__V1__Envelope *e)
{
	bufferevent_disable(c->bev, EV_READ);
	if (frame_push(bufferevent_get_output(c->bev), e) < 0) {
		log_error("join from %s: could not encode a frame", c->peer);
		conn_free(c);
		return;
	}
	bufferevent_setcb(c->bev, NULL, on_drained, on_event, c);
}

/* A refusal: audited, logged, told to the peer, then the end. */
static void refuse(struct join_conn *c, const char *host, const char *code,
		   const char *why)
{
	struct join_server *js = c->js;
	js->n_refused++;
	log_warn("join from %s refused: %s: %s", c->peer, code, why);
	char detail[STORE_DETAIL_MAX];
	snprintf(detail, sizeof(detail), "from %s: %s", c->peer, why);
	struct store_audit_in ev = { .host = host, .event = "join_refused",
				     .reason = code, .detail = detail };
	store_audit_append(js->store, &ev, 1, NULL, NULL);
	Parley__V1__Envelope e;
	Parley__V1__Error er;
	wire_init_envelope(&e, 0);
	parley__v1__error__init(&er);
	er.code = (char *)code;
	er.message = (char *)why;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_ERROR;
	e.error = &er;
	send_last(c, &e);
}

static const char *token_code(int rc)
{
	switch (rc) {
	case -ENOENT: return "TOKEN_UNKNOWN";
	case -EEXIST: return "TOKEN_USED";
	case -ETIMEDOUT: return "TOKEN_EXPIRED";
	default: return "INTERNAL";
	}
}

static const char *token_why(int rc)
{
	switch (rc) {
	case -ENOENT: return "join token unknown";
	case -EEXIST: return "join token already used";
	case -ETIMEDOUT: return "join token expired";
	default: return "could not check the join token";
	}
}

/* A replica that has not beaten for this long is not offered to joiners
 * (they beat every second; the margin is for clocks of other machines). */
#define JOIN_REPLICA_FRESH_MS 30000

/* The link addresses of the replicas alive on the store (this one among
 * them), for the agent to fail over between; *n = 0 if none is known. */
static void live_replicas(struct store *s, char *out[WIRE_JOIN_SERVERS_MAX],
			  size_t *n, struct store_replica **rows)
{
	*n = 0;
	int k = store_replica_list(s, rows, NULL);
	int64_t now = (int64_t)time(NULL) * 1000;
	for (int i = 0; i < k && *n < WIRE_JOIN_SERVERS_MAX; i++)
		if ((*rows)[i].link[0] &&
		    now - (*rows)[i].seen_ms <= JOIN_REPLICA_FRESH_MS)
			out[(*n)++] = (*rows)[i].link;
}

static void respond(struct join_conn *c, const char *host, const char *pem)
{
	struct join_server *js = c->js;
	Parley__V1__Envelope e;
	Parley__V1__JoinResponse r;
	char *servers[WIRE_JOIN_SERVERS_MAX];
	struct store_replica *rows = NULL;
	wire_init_envelope(&e, 0);
	parley__v1__join_response__init(&r);
	live_replicas(js->store, servers, &r.n_servers, &rows);
	r.servers = servers;
	r.host = (char *)host;
	r.cert_pem = (char *)pem;
	r.ca_pem = js->ca_pem;
	r.policy_pub_pem = js->policy_pub_pem;
	r.release_pub_pem = js->release_pub_pem ? js->release_pub_pem : "";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE;
	e.join_response = &r;
	send_last(c, &e);
	free(rows);
}

/* In the open batch: the host's record (created if need be) pins the new
 * certificate -- a certificate it had before is revoked -- and the join
 * is audited, so the token spent, the pin and host_joined commit
 * together or not at all. */
static int enrol(struct join_conn *c, const char *host, X509 *cert,
		 char fp[65], struct parley_err *err)
{
	struct join_server *js = c->js;
	uint8_t d[32];
	unsigned n = 0;
	bool created = false;
	if (X509_digest(cert, EVP_sha256(), d, &n) != 1 || n != sizeof(d) ||
	    pki_fingerprint(cert, fp) < 0)
		return perr(err, -EIO, "certificate fingerprint");
	int rc = store_host_enrol(js->store, host,
				  (struct store_blob){ d, n }, &created, err);
	if (rc < 0)
		return rc;
	char detail[STORE_DETAIL_MAX];
	snprintf(detail, sizeof(detail), "from %s: certificate sha256:%s%s",
		 c->peer, fp, created ? "; host created" : "");
	struct store_audit_in ev = { .host = host, .event = "host_joined",
				     .detail = detail };
	return store_audit_append(js->store, &ev, 1, NULL, err);
}

/* A CSR that could never be signed must not burn the token: its key type
 * and its signature are checked before the token is spent (and again by
 * pki_csr_sign_as, which owns the rule). */
int csr_precheck(X509_REQ *req, struct parley_err *err)
{
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if (!pub || !pki_csr_key_ok(pub))
		return perr(err, -EKEYREJECTED, "CSR: key type refused "
			    "(Ed25519 or P-256 only)");
	if (X509_REQ_verify(req, pub) != 1)
		return perr(err, -EBADMSG, "CSR: signature does not verify");
	return 0;
}

/* The CSR is parsed and checked before the token is spent (a garbled or
 * forged request does not burn it). */
static void on_join(struct join_conn *c, const Parley__V1__JoinRequest *r,
		    uint64_t rid)
{
	(void)rid;
	struct join_server *js = c->js;
	struct parley_err err = { 0 };
	X509_REQ *req = NULL;
	if (pki_csr_from_pem(r->csr_pem, strlen(r->csr_pem), &req, &err) < 0 ||
	    csr_precheck(req, &err) < 0) {
		X509_REQ_free(req);
		refuse(c, NULL, "BAD_CSR", perr_msg(&err));
		return;
	}
	uint8_t sha[32];
	char host[STORE_NAME_MAX] = "", fp[65];
	/* A token that is not even well-formed is one nobody issued. */
	int rc = join_token_digest(r->token, sha) < 0 ? -ENOENT : 0;
	if (rc == 0 && (rc = store_begin(js->store, &err)) < 0)
		log_error("join: %s", perr_msg(&err));
	if (rc < 0) {
		X509_REQ_free(req);
		refuse(c, NULL, token_code(rc), token_why(rc));
		return;
	}
	/* One transaction: the token spent, the certificate signed and
	 * pinned, the join audited. A CSR the CA will not sign rolls the
	 * token back (still usable); only after the commit does the
	 * joiner get its certificate. */
	rc = store_join_token_use(js->store,
				  (struct store_blob){ sha, sizeof(sha) },
				  now_ms(), host, &err);
	if (rc < 0) {
		store_rollback(js->store, NULL);
		if (!strcmp(token_code(rc), "INTERNAL"))
			log_error("join token: %s", perr_msg(&err));
		X509_REQ_free(req);
		refuse(c, host[0] ? host : NULL, token_code(rc), token_why(rc));
		return;
	}
	X509 *cert = NULL;
	char *pem = NULL;
	size_t len;
	rc = keyd_issue_cert(js->keys, host, req, JOIN_CERT_DAYS, &cert,
			     &err);
	X509_REQ_free(req);
	if (rc < 0) {   /* the key process gone, or without a CA key */
		store_rollback(js->store, NULL);
		refuse(c, host, rc == -EPIPE || rc == -ENOKEY ? "INTERNAL"
							      : "BAD_CSR",
		       perr_msg(&err));
		return;
	}
	rc = pki_cert_to_pem(cert, &pem, &len, &err);
	if (rc == 0)
		rc = enrol(c, host, cert, fp, &err);
	if (rc == 0)
		rc = store_commit(js->store, &err);
	else
		store_rollback(js->store, NULL);
	X509_free(cert);
	if (rc < 0) {
		log_error("join of %s: %s", host, perr_msg(&err));
		free(pem);
		refuse(c, host, "INTERNAL", "could not record the join");
		return;
	}
	js->n_joined++;
	log_info("host %s joined from %s (certificate sha256:%.16s...)", host,
		 c->peer, fp);
	respond(c, host, pem);
	free(pem);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct join_conn *c = arg;
	Parley__V1__Envelope *e = NULL;
	struct parley_err err = { 0 };
	int rc = frame_pull(bufferevent_get_input(bev), JOIN_FRAME_MAX, &e,
			    &err);
	if (rc == 0)
		return;
	if (rc < 0) {
		refuse(c, NULL, "BAD_REQUEST", perr_msg(&err));
		return;
	}
	if (e->body_case == PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST)
		on_join(c, e->join_request, e->request_id);
	else
		refuse(c, NULL, "UNEXPECTED", wire_body_name(e->body_case));
	parley__v1__envelope__free_unpacked(e, NULL);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct join_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	struct parley_err err = { 0 };
	if (what & BEV_EVENT_TIMEOUT)
		log_info("join from %s: timed out", c->peer);
	else if (tls_bev_error(bev, &err) != -ECONNRESET)
		log_info("join from %s: %s", c->peer, perr_msg(&err));
	conn_free(c);
}

static void peer_name(const struct sockaddr *sa, char *out, size_t cap,
		      char a[INET6_ADDRSTRLEN])
{
	snprintf(a, INET6_ADDRSTRLEN, "?");
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, a, INET6_ADDRSTRLEN);
		port = ntohs(s->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, a, INET6_ADDRSTRLEN);
		port = ntohs(s->sin6_port);
	}
	snprintf(out, cap, "%s:%d", a, port);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int len, void *arg)
{
	(void)l;
	(void)len;
	struct join_server *js = arg;
	char peer[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];
	peer_name(sa, peer, sizeof(peer), addr);
	if (conns_from(js, addr) >= JOIN_PEER_CONNS_MAX)
		evict_oldest(js, addr);
	else if (js->nconns >= JOIN_CONNS_MAX)
		evict_oldest(js, NULL);
	struct join_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->js = js;
	memcpy(c->peer, peer, sizeof(c->peer));
	memcpy(c->addr, addr, sizeof(c->addr));
	c->deadline = evtimer_new(js->base, on_deadline, c);
	c->bev = c->deadline ? tls_bev_accept(js->base, fd, js->ctx) : NULL;
	if (!c->bev) {
		if (c->deadline)
			event_free(c->deadline);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	c->next = js->conns;
	if (js->conns)
		js->conns->prev = c;
	js->conns = c;
	js->nconns++;
	struct timeval tv = { JOIN_TIMEOUT_S, 0 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	event_add(c->deadline, &tv);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- start, stop --------------------------------------------------- */

static int pub_pem(EVP_PKEY *key, char **out, struct parley_err *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int rc = 0;
	if (!b || PEM_write_bio_PUBKEY(b, key) != 1 ||
	    (n = BIO_get_mem_data(b, &p)) <= 0)
		rc = pki_ossl_err(err, -ENOMEM, "policy public key as PEM");
	else if (!(*out = strndup(p, (size_t)n)))
		rc = perr(err, -ENOMEM, "out of memory");
	BIO_free(b);
	return rc;
}

/* The release key agent updates are signed with, if the operator put its
 * public half in the state directory (parley-pki release-key): handed to
 * every joiner, which trusts it for updates. */
static int load_release(struct join_server *js, const char *state_dir,
			struct parley_err *err)
{
	char path[PATH_MAX];
	if (!state_dir || snprintf(path, sizeof(path), "%s/release.pub",
				   state_dir) >= (int)sizeof(path) ||
	    access(path, F_OK) < 0)
		return 0;
	EVP_PKEY *k = NULL;
	int rc = sign_read_pub(path, &k, err);
	if (rc == 0)
		rc = pub_pem(k, &js->release_pub_pem, err);
	EVP_PKEY_free(k);
	return rc;
}

static int load(struct join_server *js, const struct join_opts *o,
		struct parley_err *err)
{
	size_t len;
	/* The CA key stays in the key process, which checked it matches. */
	js->keys = o->keys;
	int rc = pki_read_cert(o->ca, &js->ca_cert, err);
	if (rc == 0)
		rc = pki_cert_to_pem(js->ca_cert, &js->ca_pem, &len, err);
	if (rc == 0)
		rc = pub_pem(o->policy_key, &js->policy_pub_pem, err);
	if (rc == 0)
		rc = load_release(js, o->state_dir, err);
	if (rc == 0 && !(js->ctx = tls_server_ctx_noclient(o->ca, o->cert,
							   o->key, err)))
		rc = err && err->code ? err->code : -EINVAL;
	return rc;
}

static int listen_on(struct join_server *js, const char *listen,
		     struct parley_err *err)
{
	char host[128];
	int port;
	struct sockaddr_storage ss;
	socklen_t len;
	if (hostport_split(listen, host, sizeof(host), &port) < 0 ||
	    hostport_sockaddr(host, port, &ss, &len) < 0)
		return perr(err, -EINVAL, "--join-listen: \"%s\" is not "
			    "IP:PORT", listen);
	js->lis = evconnlistener_new_bind(js->base, on_accept, js,
					  LEV_OPT_CLOSE_ON_FREE |
						  LEV_OPT_REUSEABLE |
						  LEV_OPT_CLOSE_ON_EXEC,
					  64, (struct sockaddr *)&ss, (int)len);
	if (!js->lis)
		return perr(err, -errno, "join listener on %s: %m", listen);
	if (listen_guard_init(&js->guard, js->base, js->lis, "join") < 0)
		return perr(err, -ENOMEM, "join listener: no memory");
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	getsockname(evconnlistener_get_fd(js->lis), (struct sockaddr *)&got,
		    &gl);
	js->port = ntohs(got.ss_family == AF_INET
				 ? ((struct sockaddr_in *)&got)->sin_port
				 : ((struct sockaddr_in6 *)&got)->sin6_port);
	return 0;
}

static void write_port(const struct join_server *js, const char *state_dir)
{
	char path[PATH_MAX + 32], buf[16];
	snprintf(path, sizeof(path), "%s/parleyd.join-port", state_dir);
	int n = snprintf(buf, sizeof(buf), "%d\n", js->port);
	struct parley_err err = { 0 };
	if (pki_write_file(path, buf, (size_t)n, 0644, &err) < 0)
		log_warn("%s", perr_msg(&err));
}

int join_start(struct join_server *js, struct event_base *base,
	       struct store *store, const struct join_opts *o,
	       struct parley_err *err)
{
	memset(js, 0, sizeof(*js));
	js->base = base;
	js->store = store;
	int rc = load(js, o, err);
	if (rc == 0)
		rc = listen_on(js, o->listen, err);
	if (rc < 0) {
		join_stop(js);
		return rc;
	}
	write_port(js, o->state_dir);
	return 0;
}

void join_stop(struct join_server *js)
{
	while (js->conns)
		conn_free(js->conns);
	listen_guard_free(&js->guard);
	if (js->lis)
		evconnlistener_free(js->lis);
	SSL_CTX_free(js->ctx);
	X509_free(js->ca_cert);
	free(js->ca_pem);
	free(js->policy_pub_pem);
	free(js->release_pub_pem);
	memset(js, 0, sizeof(*js));
}
