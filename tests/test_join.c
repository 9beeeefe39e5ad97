/* Joining: a host enrols with a one-time token (daemon/join.h,
 * agent/join.h) -- real parleyd and parley-agent processes on loopback,
 * tokens put into the store directly. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/tls_join.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "common/pki_join.h"
#include "common/wire.h"
#include "daemon/join.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/join.h"
#include "tests/helpers/testutil.h"

static mode_t mode_of(struct jn *j, const char *dir, const char *name)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "%s/%s", dir, name);
	char *p = jn_path(j, rel);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "%s missing", p);
	free(p);
	return st.st_mode & 07777;
}

static bool exists(struct jn *j, const char *dir, const char *name)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "%s/%s", dir, name);
	char *p = jn_path(j, rel);
	bool ok = access(p, F_OK) == 0;
	free(p);
	return ok;
}

static bool log_has(struct fleetd *f, void *ctx)
{
	char *log = fd_daemon_log(f);
	bool ok = strstr(log, ctx) != NULL;
	free(log);
	return ok;
}

/* The certificate in dir names `host` and chains to the fleet CA. */
static void check_cert(struct jn *j, const char *dir, const char *host)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "%s/host.crt", dir);
	char *pc = jn_path(j, rel), *pa = jn_path(j, "ca/ca.crt");
	X509 *cert = NULL, *ca = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_read_cert(pc, &cert, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(pki_read_cert(pa, &ca, &err), 0, "%s", perr_msg(&err));
	char cn[PKI_CN_MAX + 1];
	cr_assert_eq(pki_cert_cn(cert, cn, sizeof(cn), &err), 0);
	cr_expect_str_eq(cn, host);
	cr_expect_eq(pki_verify(ca, cert, false, &err), 0, "%s",
		     perr_msg(&err));
	X509_free(cert);
	X509_free(ca);
	free(pc);
	free(pa);
}

/* A daemon with a release key (its state dir's release.pub) hands it to
 * every joiner, which keeps it as the key agent updates must be signed
 * with (agent/update/README.md). */
Test(join, joiner_gets_the_daemons_release_key, .timeout = 60)
{
	struct jn j;
	jn_start_release(&j);
	char tok[69], *out;
	jn_token(&j, "h1", 60000, tok);
	int rc = jn_join(&j, "agent-h1", tok, NULL, &out);
	cr_assert_eq(rc, 0, "join failed: %s", out);
	free(out);
	cr_expect_eq(mode_of(&j, "agent-h1", "release.pub"), 0644);
	char *mine = jn_path(&j, "release.pub"),
	     *theirs = jn_path(&j, "agent-h1/release.pub");
	EVP_PKEY *a = NULL, *b = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(sign_read_pub(mine, &a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(sign_read_pub(theirs, &b, &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(EVP_PKEY_eq(a, b), 1, "not the daemon's release key");
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	free(mine);
	free(theirs);
	fd_stop(&j.f);
}

Test(join, token_joins_then_serve_connects, .timeout = 60)
{
	struct jn j;
	jn_start(&j);
	char tok[69], *out;
	jn_token(&j, "h1", 60000, tok);
	int rc = jn_join(&j, "agent-h1", tok, NULL, &out);
	cr_assert_eq(rc, 0, "join failed: %s", out);
	cr_expect(strstr(out, "joined as host h1"), "%s", out);
	free(out);
	cr_expect_eq(mode_of(&j, "agent-h1", "host.key"), 0600);
	cr_expect_eq(mode_of(&j, "agent-h1", "host.crt"), 0644);
	cr_expect_eq(mode_of(&j, "agent-h1", "ca.crt"), 0644);
	cr_expect_eq(mode_of(&j, "agent-h1", "policy.pub"), 0644);
	cr_expect(!exists(&j, "agent-h1", "release.pub"),
		  "a release key from a daemon that has none");
	check_cert(&j, "agent-h1", "h1");
	cr_expect(fd_wait(log_has, &j.f, "host h1 joined", 5000));

	/* Audited, and the host is in the store with its certificate. */
	struct store *s = fd_store(&j.f);
	struct store_host h;
	cr_expect_eq(store_host_get(s, "h1", &h, NULL), 0);
	cr_expect(h.has_cert);
	store_close(s);

	/* The state directory is all `serve` needs. */
	struct fd_agent *a = &j.f.agent[j.f.n++];
	snprintf(a->name, sizeof(a->name), "h1");
	snprintf(a->dir, sizeof(a->dir), "%s/agent-h1", j.f.dir);
	snprintf(a->log, sizeof(a->log), "%s/agent-h1.log", j.f.dir);
	fd_start_agent(&j.f, a, NULL);
	cr_expect(fd_wait(log_has, &j.f, "agent h1 connected", 15000),
		  "agent did not connect: %s", fd_agent_log(a));

	/* The same token again: spent. */
	rc = jn_join(&j, "agent-again", tok, NULL, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "TOKEN_USED"), "%s", out);
	cr_expect(strstr(out, "already used"), "%s", out);
	free(out);
	cr_expect_not(exists(&j, "agent-again", "host.key"));
	cr_expect_not(exists(&j, "agent-again", "host.crt"));
	/* The secret never reaches the log. */
	char *log = fd_daemon_log(&j.f);
	cr_expect_null(strstr(log, tok + 4));
	free(log);
	fd_stop(&j.f);
}

Test(join, expired_and_unknown_tokens_refused, .timeout = 60)
{
	struct jn j;
	jn_start(&j);
	char tok[69], *out;
	jn_token(&j, "h2", -1000, tok);
	int rc = jn_join(&j, "agent-h2", tok, NULL, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "TOKEN_EXPIRED"), "%s", out);
	free(out);
	cr_expect_not(exists(&j, "agent-h2", "host.crt"));

	uint8_t d[32];
	cr_assert_eq(join_token_new(tok, d), 0); /* never stored */
	rc = jn_join(&j, "agent-h3", tok, NULL, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "TOKEN_UNKNOWN"), "%s", out);
	free(out);
	cr_expect(fd_wait(log_has, &j.f, "TOKEN_UNKNOWN", 5000));
	fd_stop(&j.f);
}

Test(join, wrong_ca_pin_refused_before_the_token_is_sent, .timeout = 60)
{
	struct jn j;
	jn_start(&j);
	char tok[69], *out, pin[65];
	jn_token(&j, "h4", 60000, tok);
	snprintf(pin, sizeof(pin), "%s", j.ca_sha256);
	pin[0] = pin[0] == '0' ? '1' : '0';
	int rc = jn_join(&j, "agent-h4", tok, pin, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "refusing the server"), "%s", out);
	cr_expect(strstr(out, "token not sent"), "%s", out);
	free(out);
	cr_expect_not(exists(&j, "agent-h4", "host.key"));
	/* The token was not sent, so it is still good. */
	rc = jn_join(&j, "agent-h4", tok, NULL, &out);
	cr_expect_eq(rc, 0, "%s", out);
	free(out);
	check_cert(&j, "agent-h4", "h4");
	/* A directory that has joined refuses to join again. */
	jn_token(&j, "h5", 60000, tok);
	rc = jn_join(&j, "agent-h4", tok, NULL, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "joined already"), "%s", out);
	free(out);
	fd_stop(&j.f);
}

/* A pinned TLS client that sends `e` and returns the answer's error code
 * ("" if none). */
static void raw_exchange(struct jn *j, const Parley__V1__Envelope *e,
			 char *code, size_t cap)
{
	struct tls_pin pin = { 0 };
	snprintf(pin.ca_sha256, sizeof(pin.ca_sha256), "%s", j->ca_sha256);
	struct parley_err err = { 0 };
	SSL_CTX *ctx = tls_join_client_ctx(&pin, &err);
	cr_assert(ctx, "%s", perr_msg(&err));
	SSL *ssl = tls_client_new(ctx, "127.0.0.1", &err);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)j->join_port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	SSL_set_fd(ssl, fd);
	cr_assert_eq(SSL_connect(ssl), 1, "%s", pin.why);
	uint8_t *f;
	size_t len, have = 0, used, got;
	cr_assert_eq(frame_encode(e, &f, &len), 0);
	cr_assert_eq(SSL_write(ssl, f, (int)len), (int)len);
	free(f);
	uint8_t buf[4096];
	Parley__V1__Envelope *r = NULL;
	code[0] = 0;
	while (frame_decode(buf, have, sizeof(buf), &used, &r, NULL) == 0 &&
	       SSL_read_ex(ssl, buf + have, sizeof(buf) - have, &got) == 1)
		have += got;
	if (r && r->body_case == PARLEY__V1__ENVELOPE__BODY_ERROR)
		snprintf(code, cap, "%s", r->error->code);
	if (r)
		parley__v1__envelope__free_unpacked(r, NULL);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
}

Test(join, listener_refuses_anything_but_a_join_request, .timeout = 60)
{
	struct jn j;
	jn_start(&j);
	Parley__V1__Envelope e;
	Parley__V1__Heartbeat hb;
	wire_init_envelope(&e, 1);
	parley__v1__heartbeat__init(&hb);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &hb;
	char code[64];
	raw_exchange(&j, &e, code, sizeof(code));
	cr_expect_str_eq(code, "UNEXPECTED");
	/* A well-formed token with a CSR that is not one: the token is not
	 * spent. */
	char tok[69], *out;
	jn_token(&j, "h6", 60000, tok);
	Parley__V1__JoinRequest jr;
	parley__v1__join_request__init(&jr);
	jr.token = tok;
	jr.csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
		     "-----END CERTIFICATE REQUEST-----\n";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST;
	e.join_request = &jr;
	raw_exchange(&j, &e, code, sizeof(code));
	cr_expect_str_eq(code, "BAD_CSR");
	/* A real CSR whose public key was swapped after signing: its
	 * signature fails, and the token is still not spent. */
	EVP_PKEY *k1 = NULL, *k2 = NULL;
	X509_REQ *req = NULL;
	char *pem = NULL;
	size_t plen = 0;
	cr_assert_eq(pki_key_new(&k1, NULL), 0);
	cr_assert_eq(pki_key_new(&k2, NULL), 0);
	cr_assert_eq(pki_csr_new(k1, "join", &req, NULL), 0);
	X509_REQ_set_pubkey(req, k2);
	cr_assert_eq(pki_csr_to_pem(req, &pem, &plen, NULL), 0);
	jr.csr_pem = pem;
	raw_exchange(&j, &e, code, sizeof(code));
	cr_expect_str_eq(code, "BAD_CSR");
	free(pem);
	X509_REQ_free(req);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	cr_expect_eq(jn_join(&j, "agent-h6", tok, NULL, &out), 0, "%s", out);
	free(out);
	fd_stop(&j.f);
}

Test(join, usage_errors_exit_2_without_connecting)
{
	char *out;
	char *a1[] = { T_AGENT, "join", "--server", "127.0.0.1:1", NULL };
	cr_expect_eq(t_run(a1, &out, 10), 2, "%s", out);
	free(out);
	char *a2[] = { T_AGENT, "join", "--server", "127.0.0.1:1", "--token",
		       "prj_00", "--ca-sha256", "xyz", "--state-dir", "/nonexistent/x",
		       NULL };
	cr_expect_eq(t_run(a2, &out, 10), 2, "%s", out);
	cr_expect(strstr(out, "--ca-sha256"), "%s", out);
	free(out);
}

/* ---- the wire: hostile join bodies ----------------------------------- */

struct jcase {
	const char *what, *token, *csr;
	int want;
	const char *msg;
};

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PEM "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n" \
	    "-----END CERTIFICATE REQUEST-----\n"

static const struct jcase jcases[] = {
	{ "good", "prj_" HEX64, PEM, 0, NULL },
	{ "no token", "", PEM, -EINVAL, "join_request.token: missing" },
	{ "api token prefix", "prl_" HEX64, PEM, -EINVAL, "not prj_" },
	{ "short", "prj_0123", PEM, -EINVAL, "not prj_" },
	{ "upper-case hex", "prj_" "0123456789ABCDEF0123456789abcdef"
			    "0123456789abcdef0123456789abcdef", PEM, -EINVAL,
	  "lower-case hex" },
	{ "no csr", "prj_" HEX64, "", -EINVAL, "join_request.csr_pem: missing" },
	{ "csr with a NUL-free control byte", "prj_" HEX64, "-----\x1b[2J",
	  -EINVAL, "is not PEM text" },
};

Test(join, wire_join_request_table)
{
	for (size_t i = 0; i < sizeof(jcases) / sizeof(*jcases); i++) {
		const struct jcase *c = &jcases[i];
		Parley__V1__Envelope e;
		Parley__V1__JoinRequest r;
		wire_init_envelope(&e, 1);
		parley__v1__join_request__init(&r);
		r.token = (char *)c->token;
		r.csr_pem = (char *)c->csr;
		e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST;
		e.join_request = &r;
		struct parley_err err = { 0 };
		cr_expect_eq(wire_check(&e, &err), c->want, "%s: %s", c->what,
			     perr_msg(&err));
		if (c->msg)
			cr_expect(strstr(perr_msg(&err), c->msg), "%s: %s",
				  c->what, perr_msg(&err));
		/* A secret is never echoed. */
		cr_expect_null(strstr(perr_msg(&err), HEX64), "%s", c->what);
	}
}

Test(join, wire_join_response_limits)
{
	char *big = malloc(16 * 1024 + 2);
	memset(big, 'A', 16 * 1024 + 1);
	big[16 * 1024 + 1] = 0;
	Parley__V1__Envelope e;
	Parley__V1__JoinResponse r;
	wire_init_envelope(&e, 1);
	parley__v1__join_response__init(&r);
	r.host = "h1";
	r.cert_pem = r.ca_pem = r.policy_pub_pem = PEM;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE;
	e.join_response = &r;
	struct parley_err err = { 0 };
	cr_expect_eq(wire_check(&e, &err), 0, "%s", perr_msg(&err));
	r.ca_pem = big;
	cr_expect_eq(wire_check(&e, &err), -EINVAL);
	cr_expect(strstr(perr_msg(&err), "join_response.ca_pem: 16385 bytes"),
		  "%s", perr_msg(&err));
	big[16 * 1024] = 0; /* exactly 16 KiB: fine */
	cr_expect_eq(wire_check(&e, &err), 0, "%s", perr_msg(&err));
	r.host = "a/b";
	cr_expect_eq(wire_check(&e, &err), -EINVAL);
	cr_expect(strstr(perr_msg(&err), "join_response.host"));
	free(big);
}

/* ---- the CA side: the CN comes from the token, not the request ------- */

Test(join, csr_sign_as_names_the_host)
{
	EVP_PKEY *cak = NULL, *k = NULL;
	X509 *ca = NULL, *cert = NULL;
	X509_REQ *req = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_ca_new("t-ca", 10, &cak, &ca, &err), 0);
	cr_assert_eq(pki_key_new(&k, &err), 0);
	cr_assert_eq(pki_csr_new(k, "someone-else", &req, &err), 0);
	cr_assert_eq(pki_csr_sign_as(cak, ca, req, "h9", 365, &cert, &err), 0,
		     "%s", perr_msg(&err));
	char cn[PKI_CN_MAX + 1];
	cr_assert_eq(pki_cert_cn(cert, cn, sizeof(cn), &err), 0);
	cr_expect_str_eq(cn, "h9");
	cr_expect_eq(pki_verify(ca, cert, false, &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(EVP_PKEY_eq(X509_get0_pubkey(cert), k), 1);
	X509_free(cert);
	cert = NULL;
	cr_expect_eq(pki_csr_sign_as(cak, ca, req, "a/b", 365, &cert, &err),
		     -EINVAL);
	cr_expect_eq(pki_csr_sign_as(cak, ca, req, "h9", 0, &cert, &err),
		     -EINVAL);
	cr_expect_null(cert);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	EVP_PKEY_free(cak);
	X509_free(ca);
}

Test(join, token_digest)
{
	char tok[69];
	uint8_t d1[32], d2[32];
	cr_assert_eq(join_token_new(tok, d1), 0);
	cr_expect_eq(strlen(tok), 68);
	cr_expect_eq(strncmp(tok, "prj_", 4), 0);
	cr_assert_eq(join_token_digest(tok, d2), 0);
	cr_expect_eq(memcmp(d1, d2, 32), 0);
	cr_expect_eq(join_token_digest("prj_" "0123", d2), -EINVAL);
	cr_expect_eq(join_token_digest("prl_" HEX64, d2), -EINVAL);
	cr_expect_eq(join_token_digest(NULL, d2), -EINVAL);
}

/* One client holding every slot of the join listener (64 connections,
 * each sending a byte of a ClientHello every 2 s, which kept a timeout
 * that starts again with each byte from ever firing) blocked every join
 * for as long as it liked. Now one address holds 8 at most (its next
 * closes its oldest), a new connection past 64 in all closes the oldest,
 * and each has 10 s in all from its accept: the join succeeds while they
 * are held, and a trickling connection is closed at 10 s. */
Test(join, a_peer_holding_every_slot_blocks_no_join, .timeout = 90)
{
	struct jn j;
	jn_start(&j);
	enum { N = 64 };
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = ac_connect(j.join_port);
		cr_assert_geq(fds[i], 0);
		/* the first byte of a TLS record: a handshake begins */
		cr_assert_eq(send(fds[i], "\x16", 1, MSG_NOSIGNAL), 1);
	}
	/* all but this address's last 8 closed */
	usleep(500000);
	int gone = 0;
	for (int i = 0; i < N; i++) {
		char b[64];
		ssize_t r;
		while ((r = recv(fds[i], b, sizeof(b), MSG_DONTWAIT)) > 0)
			;
		gone += r == 0 || (r < 0 && errno != EAGAIN);
	}
	cr_expect_eq(gone, N - 8, "%d of %d closed", gone, N);
	char tok[69], *out;
	jn_token(&j, "h1", 60000, tok);
	int rc = jn_join(&j, "agent-h1", tok, NULL, &out);
	cr_expect_eq(rc, 0, "join failed while the slots were held: %s", out);
	free(out);
	/* the newest one trickles on: closed 10 s after its accept all
	 * the same */
	int t = ac_connect(j.join_port);
	cr_assert_geq(t, 0);
	for (int s = 0; s < 12; s++) {
		if (send(t, "\x03", 1, MSG_NOSIGNAL) != 1)
			break;
		sleep(1);
	}
	/* by now (12 s) it is closed: whatever it was sent, then EOF or a
	 * reset (ac_connect's receive timeout is 10 s: not waited for) */
	char b[256];
	ssize_t r;
	while ((r = recv(t, b, sizeof(b), MSG_DONTWAIT)) > 0)
		;
	cr_expect(r == 0 || (r < 0 && errno != EAGAIN),
		  "a trickling connection was still open after 12 s");
	close(t);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	fd_stop(&j.f);
}
