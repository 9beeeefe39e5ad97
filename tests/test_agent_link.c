/* The agent side of a refusal: a stand-in daemon (mutual TLS with the
 * fleet's certificates, in the test process) answers a real parley-agent's
 * Hello with an Error frame, as parleyd does for an unknown host; the
 * agent logs the code and the message. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/tls.h"
#include "common/wire.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Accept one agent, read its Hello, answer with `out`, close. */
static void answer_one(SSL_CTX *ctx, int lfd, const Parley__V1__Envelope *out)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 20000), 1, "the agent never connected");
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd >= 0);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	cr_assert_eq(SSL_accept(ssl), 1, "TLS with the agent failed");
	uint8_t buf[4096];
	size_t have = 0, used = 0;
	Parley__V1__Envelope *e = NULL;
	int rc = 0;
	while (rc == 0) {
		int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
		cr_assert_gt(n, 0, "no hello");
		have += (size_t)n;
		rc = frame_decode(buf, have, FRAME_MAX, &used, &e, NULL);
	}
	cr_assert_eq(rc, 1);
	cr_assert_eq(e->body_case, PARLEY__V1__ENVELOPE__BODY_HELLO);
	parley__v1__envelope__free_unpacked(e, NULL);
	uint8_t *f;
	size_t len;
	cr_assert_eq(frame_encode(out, &f, &len), 0);
	cr_assert_eq(SSL_write(ssl, f, (int)len), (int)len);
	free(f);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
}

/* Answer with Error(code, message), as parleyd refuses a host. */
static void refuse_one(SSL_CTX *ctx, int lfd, const char *code,
		       const char *message)
{
	Parley__V1__Envelope out;
	Parley__V1__Error er;
	wire_init_envelope(&out, 0);
	parley__v1__error__init(&er);
	er.code = (char *)code;
	er.message = (char *)message;
	out.body_case = PARLEY__V1__ENVELOPE__BODY_ERROR;
	out.error = &er;
	answer_one(ctx, lfd, &out);
}

static bool agent_log_has(struct fleetd *f, void *ctx)
{
	char *log = fd_agent_log(&f->agent[0]);
	bool has = strstr(log, ctx) != NULL;
	free(log);
	return has;
}

Test(agent_link, daemon_refusal_is_logged_with_its_code, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	char ca[700], crt[700], key[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", f.dir);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", f.dir);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", f.dir);
	struct parley_err err = { 0 };
	SSL_CTX *ctx = tls_server_ctx(ca, crt, key, &err);
	cr_assert(ctx, "%s", perr_msg(&err));
	int lfd = listen_any(&f.port);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	fd_start_agent(&f, h, NULL);
	refuse_one(ctx, lfd, "UNKNOWN_HOST", "host-a is not enrolled");
	const char *want = "the daemon refused this agent: code UNKNOWN_HOST: "
			   "host-a is not enrolled";
	cr_assert(fd_wait(agent_log_has, &f, (void *)want, 15000),
		  "not logged:\n%s", fd_agent_log(h));
	/* It comes back (an operator may have enrolled it meanwhile), and is
	 * told again. */
	refuse_one(ctx, lfd, "REVOKED", "host-a was deleted");
	cr_assert(fd_wait(agent_log_has, &f,
			  (void *)"code REVOKED: host-a was deleted", 15000),
		  "not logged:\n%s", fd_agent_log(h));
	close(lfd);
	SSL_CTX_free(ctx);
	fd_stop(&f);
}

/* The agent's door (agent/link_dispatch.c) on a real agent: a daemon that
 * acks before its welcome, welcomes another host, or sends a bundle before
 * its welcome is refused and the link dropped; the agent says why and
 * comes back. (Every refusal of the
 * door, with its state left as it was, is fuzz_agent_dispatch's oracle.) */
Test(agent_link, frames_the_door_refuses_drop_the_link, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	char ca[700], crt[700], key[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", f.dir);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", f.dir);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", f.dir);
	struct parley_err err = { 0 };
	SSL_CTX *ctx = tls_server_ctx(ca, crt, key, &err);
	cr_assert(ctx, "%s", perr_msg(&err));
	int lfd = listen_any(&f.port);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	fd_start_agent(&f, h, NULL);

	Parley__V1__Envelope out;
	Parley__V1__Ack ack;
	wire_init_envelope(&out, 0);
	parley__v1__ack__init(&ack);
	ack.seq = 1000;
	out.body_case = PARLEY__V1__ENVELOPE__BODY_ACK;
	out.ack = &ack;
	answer_one(ctx, lfd, &out);
	const char *want = "daemon frame refused: daemon sent a ack before its "
			   "welcome";
	cr_assert(fd_wait(agent_log_has, &f, (void *)want, 15000),
		  "not logged:\n%s", fd_agent_log(h));

	Parley__V1__Welcome w;
	wire_init_envelope(&out, 1);
	parley__v1__welcome__init(&w);
	w.host = (char *)"host-b";
	w.heartbeat_ms = 1000;
	out.body_case = PARLEY__V1__ENVELOPE__BODY_WELCOME;
	out.welcome = &w;
	answer_one(ctx, lfd, &out); /* it came back */
	want = "daemon frame refused: welcome for host \"host-b\", not us";
	cr_assert(fd_wait(agent_log_has, &f, (void *)want, 15000),
		  "not logged:\n%s", fd_agent_log(h));
	/* A bundle before the welcome: refused unread, the link dropped
	 * (after the welcome a refused bundle is answered and kept). */
	Parley__V1__PolicyBundle b;
	uint8_t body[8] = { 0x0a, 0x06, 'h', 'o', 's', 't', '-', 'a' };
	uint8_t sig[64] = { 0 };
	wire_init_envelope(&out, 2);
	parley__v1__policy_bundle__init(&b);
	b.body.data = body;
	b.body.len = sizeof(body);
	b.signature.data = sig;
	b.signature.len = sizeof(sig);
	b.key_id = (char *)"00000000000000000000000000000000"
			   "00000000000000000000000000000000";
	out.body_case = PARLEY__V1__ENVELOPE__BODY_POLICY;
	out.policy = &b;
	answer_one(ctx, lfd, &out);
	want = "daemon frame refused: daemon sent a policy before its welcome";
	cr_assert(fd_wait(agent_log_has, &f, (void *)want, 15000),
		  "not logged:\n%s", fd_agent_log(h));
	char *log = fd_agent_log(h);
	cr_assert(!strstr(log, "daemon link up"), "taken:\n%s", log);
	cr_assert(!strstr(log, "policy bundle refused"), "read:\n%s", log);
	free(log);
	close(lfd);
	SSL_CTX_free(ctx);
	fd_stop(&f);
}
