/* The key process (daemon/keys/): what it signs, what it refuses, that it
 * dies with its parent, and that a running parleyd's main process is not
 * root and cannot open the key files. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/checkpoint.h"
#include "common/pki.h"
#include "common/pki_join.h"
#include "common/seal.h"
#include "common/sign.h"
#include "daemon/keys/keyd.h"
#include "daemon/keys/keyd_proto.h"
#include "parley.pb-c.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

struct kt {
	char *dir;
	struct keyd_paths p;
	struct keyd k;
};

static void kt_paths(struct kt *t)
{
	t->dir = t_tmpdir();
	char ca[600];
	snprintf(ca, sizeof(ca), "%s/ca", t->dir);
	char *argv[] = { T_BIN("parley-pki"), "ca", ca, NULL };
	char *out;
	cr_assert_eq(t_run(argv, &out, 30), 0, "%s", out);
	free(out);
	memset(&t->p, 0, sizeof(t->p));
	snprintf(t->p.policy_key, PATH_MAX, "%s/ca/policy.key", t->dir);
	snprintf(t->p.ca_key, PATH_MAX, "%s/ca/ca.key", t->dir);
	snprintf(t->p.ca_cert, PATH_MAX, "%s/ca/ca.crt", t->dir);
	snprintf(t->p.ckpt_key, PATH_MAX, "%s/checkpoint.key", t->dir);
}

static void kt_start(struct kt *t)
{
	kt_paths(t);
	struct parley_err err = { 0 };
	cr_assert_eq(keyd_spawn(&t->k, &t->p, &err), 0, "%s", perr_msg(&err));
}

static void kt_stop(struct kt *t)
{
	keyd_stop(&t->k);
	t_rmtree(t->dir);
	free(t->dir);
}

/* A PolicyBody as policy_bundle_build makes one (one grant). */
static uint8_t *body_for(const char *host, uint64_t version, size_t *len)
{
	Parley__V1__PolicyBody b;
	Parley__V1__Grant g, *gp = &g;
	parley__v1__policy_body__init(&b);
	parley__v1__grant__init(&g);
	g.channel = "c1";
	g.endpoint_a = "p1";
	g.endpoint_b = "p2";
	b.host = (char *)host;
	b.version = version;
	b.issued_unix_ms = 1700000000000ull;
	b.grants = &gp;
	b.n_grants = 1;
	*len = parley__v1__policy_body__get_packed_size(&b);
	uint8_t *p = malloc(*len + 16);
	cr_assert(p);
	parley__v1__policy_body__pack(&b, p);
	return p;
}

/* A SIGN_BUNDLE header whose length is one over what the key process
 * reads. */
static void over_cap_hdr(uint8_t hdr[8])
{
	uint32_t big = KEYD_MSG_MAX + 1;
	const uint8_t h[8] = { (uint8_t)(big >> 24), (uint8_t)(big >> 16),
			       (uint8_t)(big >> 8), (uint8_t)big, 0, 2, 0, 0 };
	memcpy(hdr, h, 8);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(keyd, bundle_signatures_verify_with_the_policy_public_key)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	size_t len;
	uint8_t *body = body_for("h1", 7, &len), sig[64];
	cr_assert_eq(keyd_sign_bundle(&t.k, "h1", 7, body, len, sig, &err), 0,
		     "%s", perr_msg(&err));
	/* with the public key parley-pki wrote, as an agent has it */
	char pubf[700];
	EVP_PKEY *pub;
	snprintf(pubf, sizeof(pubf), "%s/ca/policy.pub", t.dir);
	cr_assert_eq(sign_read_pub(pubf, &pub, &err), 0);
	cr_expect_eq(sign_verify(pub, body, len, sig, 64), 0);
	char id[65];
	sign_key_id(pub, id);
	cr_expect_str_eq(id, t.k.policy_id);
	body[len - 1] ^= 1;
	cr_expect_eq(sign_verify(pub, body, len, sig, 64), -EBADMSG);
	EVP_PKEY_free(pub);
	free(body);
	kt_stop(&t);
}

Test(keyd, refuses_a_bundle_for_another_host_or_version)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	size_t len;
	uint8_t sig[64];
	uint8_t *b2 = body_for("h2", 7, &len);
	cr_expect_eq(keyd_sign_bundle(&t.k, "h1", 7, b2, len, sig, &err),
		     -EPERM);
	cr_expect(strstr(perr_msg(&err), "names host h2"), "%s",
		  perr_msg(&err));
	cr_expect_eq(keyd_sign_bundle(&t.k, "h2", 8, b2, len, sig, &err),
		     -EPERM);
	/* not a PolicyBody at all */
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	cr_expect_eq(keyd_sign_bundle(&t.k, "h2", 7, junk, sizeof(junk), sig,
				      &err), -EBADMSG);
	/* a field it does not have (tag 15, varint) rides along */
	b2[len] = 15 << 3;
	b2[len + 1] = 1;
	cr_expect_eq(keyd_sign_bundle(&t.k, "h2", 7, b2, len + 2, sig, &err),
		     -EBADMSG, "%s", perr_msg(&err));
	/* the version twice (last wins): not canonical */
	b2[len] = 2 << 3;
	b2[len + 1] = 7;
	cr_expect_eq(keyd_sign_bundle(&t.k, "h2", 7, b2, len + 2, sig, &err),
		     -EBADMSG, "%s", perr_msg(&err));
	/* and after all that it still signs what is right */
	cr_expect_eq(keyd_sign_bundle(&t.k, "h2", 7, b2, len, sig, &err), 0,
		     "%s", perr_msg(&err));
	free(b2);
	kt_stop(&t);
}

/* A window of bundle requests in flight, good ones and hostile ones
 * mixed: the answers come in the order asked, each refusal is that one
 * bundle's (the next still gets its own signature), and every signature
 * verifies for its own body. */
Test(keyd, pipelined_bundles_are_answered_in_order_and_refusals_stay_their_own)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	enum { N = KEYD_WINDOW };
	uint8_t *body[N];
	size_t len[N];
	int want[N];
	for (unsigned i = 0; i < N; i++) {
		char host[16];
		snprintf(host, sizeof(host), "h%u", i);
		body[i] = body_for(host, i + 1, &len[i]);
		want[i] = 0;
		if (i % 4 == 1) {          /* asked for another host */
			snprintf(host, sizeof(host), "h%u", i + 100);
			want[i] = -EPERM;
		} else if (i % 4 == 2) {   /* a field PolicyBody lacks */
			body[i][len[i]] = 15 << 3;
			body[i][len[i] + 1] = 1;
			len[i] += 2;
			want[i] = -EBADMSG;
		}
		cr_assert_eq(keyd_sign_bundle_send(&t.k, host, i + 1, body[i],
						   len[i], &err), 0, "%u: %s",
			     i, perr_msg(&err));
	}
	cr_expect_eq(t.k.inflight, N);
	/* a full window: one more waits for an answer */
	cr_expect_eq(keyd_sign_bundle_send(&t.k, "h0", 1, body[0], len[0],
					   &err), -EBUSY);
	/* the next reply is not a checkpoint's: other calls wait too */
	uint8_t sig[64], hash[32] = { 0 };
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 1, hash, now_ms(), sig, &err),
		     -EBUSY);
	char pubf[700];
	EVP_PKEY *pub;
	snprintf(pubf, sizeof(pubf), "%s/ca/policy.pub", t.dir);
	cr_assert_eq(sign_read_pub(pubf, &pub, &err), 0);
	for (unsigned i = 0; i < N; i++) {
		int rc = keyd_sign_bundle_recv(&t.k, sig, &err);
		cr_expect_eq(rc, want[i], "%u: %d (%s)", i, rc, perr_msg(&err));
		if (rc == 0) {
			cr_expect_eq(sign_verify(pub, body[i], len[i], sig, 64),
				     0, "%u: signature of another body", i);
			if (i + 1 < N)
				cr_expect_neq(sign_verify(pub, body[i + 1],
							  len[i + 1], sig, 64),
					      0);
		}
		free(body[i]);
	}
	cr_expect_eq(t.k.inflight, 0);
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), -EINVAL);
	/* in step: a synchronous call gets its own answer */
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 1, hash, now_ms(), sig, &err),
		     0, "%s", perr_msg(&err));
	EVP_PKEY_free(pub);
	kt_stop(&t);
}

/* Hostile bytes in the middle of a window: a malformed request is
 * refused on its own and the stream stays in step; one that cannot be
 * framed (over the cap) ends the conversation, and every answer still
 * awaited is then -EPIPE, never another request's. */
Test(keyd, a_hostile_request_inside_a_window_cannot_shift_the_answers)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	size_t l1, l2;
	uint8_t *b1 = body_for("h1", 1, &l1), *b2 = body_for("h2", 2, &l2);
	uint8_t sig[64];
	/* good, a truncated bundle request, good */
	static const uint8_t trunc[] = { 0, 0, 0, 4, 0, 2, 0, 0, 0, 0, 0, 1 };
	cr_assert_eq(keyd_sign_bundle_send(&t.k, "h1", 1, b1, l1, &err), 0);
	cr_assert_eq(keyd_send(t.k.fd, trunc, sizeof(trunc)), 0);
	t.k.inflight++;             /* its answer is awaited like any */
	cr_assert_eq(keyd_sign_bundle_send(&t.k, "h2", 2, b2, l2, &err), 0);
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), -EBADMSG);
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), 0, "%s",
		     perr_msg(&err));
	/* good, a header over the cap, good -- in one write, so that all
	 * three are there before the key process reads the first */
	uint8_t hdr[8];
	over_cap_hdr(hdr);
	struct keyd_req q1 = { .type = KEYD_SIGN_BUNDLE, .host = "h1",
			       .version = 1, .data = b1, .len = l1 };
	struct keyd_req q2 = { .type = KEYD_SIGN_BUNDLE, .host = "h2",
			       .version = 2, .data = b2, .len = l2 };
	uint8_t *m1, *m2;
	size_t n1, n2;
	cr_assert_eq(keyd_req_encode(&q1, &m1, &n1), 0);
	cr_assert_eq(keyd_req_encode(&q2, &m2, &n2), 0);
	uint8_t *all = malloc(n1 + 8 + n2);
	cr_assert(all);
	memcpy(all, m1, n1);
	memcpy(all + n1, hdr, 8);
	memcpy(all + n1 + 8, m2, n2);
	cr_assert_eq(keyd_send(t.k.fd, all, n1 + 8 + n2), 0);
	t.k.inflight += 3;
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), -EMSGSIZE);
	/* the key process stopped reading there: the last request is never
	 * answered, and the main process's end closes */
	cr_expect_eq(keyd_sign_bundle_recv(&t.k, sig, &err), -EPIPE);
	cr_expect_eq(t.k.inflight, 0);
	cr_expect_eq(keyd_sign_bundle_send(&t.k, "h1", 1, b1, l1, &err),
		     -EPIPE);
	free(m1);
	free(m2);
	free(all);
	free(b1);
	free(b2);
	kt_stop(&t);
}

/* Raw requests the parser must refuse; the process answers each and
 * keeps serving. */
Test(keyd, refuses_malformed_requests_and_keeps_serving)
{
	struct kt t;
	kt_start(&t);
	static const struct {
		const char *why;
		uint8_t msg[40];
		size_t len;
	} bad[] = {
		{ "unknown type", { 0, 0, 0, 0, 0, 99, 0, 0 }, 8 },
		{ "reply type", { 0, 0, 0, 0, 0, 0x80, 0, 0 }, 8 },
		{ "reserved set", { 0, 0, 0, 0, 0, 1, 0, 1 }, 8 },
		{ "info with bytes", { 0, 0, 0, 1, 0, 1, 0, 0, 7 }, 9 },
		{ "bundle truncated", { 0, 0, 0, 4, 0, 2, 0, 0, 0, 0, 0, 1 },
		  12 },
		{ "bundle version 0", { 0, 0, 0, 18, 0, 2, 0, 0,
		  0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'h', '1', 0, 0, 0, 2, 8, 1 },
		  26 },
		{ "host with a slash", { 0, 0, 0, 19, 0, 2, 0, 0,
		  0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 'a', '/', 'b', 0, 0, 0, 2, 8,
		  1 }, 27 },
		{ "host longer than the message", { 0, 0, 0, 12, 0, 2, 0, 0,
		  0, 0, 0, 0, 0, 0, 0, 1, 0, 40, 'h', '1' }, 20 },
		{ "body longer than the message", { 0, 0, 0, 16, 0, 2, 0, 0,
		  0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 'h', '1', 0, 0, 1, 0 }, 24 },
		{ "cert days 0", { 0, 0, 0, 14, 0, 3, 0, 0,
		  0, 0, 0, 0, 0, 2, 'h', '1', 0, 0, 0, 2, 0x30, 0 }, 22 },
		{ "cert CSR over its cap", { 0, 0, 0, 12, 0, 3, 0, 0,
		  0, 0, 0, 1, 0, 2, 'h', '1', 0, 1, 0, 0 }, 20 },
		{ "checkpoint short", { 0, 0, 0, 8, 0, 4, 0, 0,
		  0, 0, 0, 0, 0, 0, 0, 1 }, 16 },
		{ "trailing byte", { 0, 0, 0, 1, 0, 1, 0, 0, 0 }, 9 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parley_err err = { 0 };
		uint8_t *m;
		size_t ml;
		struct keyd_rep rep;
		cr_assert_eq(keyd_call_raw(&t.k, bad[i].msg, bad[i].len, &m,
					   &ml, &err), 0, "%s: %s", bad[i].why,
			     perr_msg(&err));
		cr_assert_eq(keyd_rep_parse(m, ml, &rep, &err), 0);
		cr_expect(rep.status == -EBADMSG || rep.status == -EMSGSIZE,
			  "%s: status %d (%s)", bad[i].why, rep.status,
			  rep.msg);
		cr_expect_eq(rep.len, 0, "%s", bad[i].why);
		free(m);
	}
	uint8_t sig[64], hash[32] = { 1 };
	struct parley_err err = { 0 };
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 3, hash, now_ms(), sig, &err),
		     0, "%s", perr_msg(&err));
	kt_stop(&t);
}

/* A length it will not read: answered, then the end (the stream cannot
 * be resynchronized). */
Test(keyd, an_oversized_request_ends_the_conversation)
{
	struct kt t;
	kt_start(&t);
	uint8_t hdr[8];
	over_cap_hdr(hdr);
	struct parley_err err = { 0 };
	uint8_t *m;
	size_t ml;
	struct keyd_rep rep;
	cr_assert_eq(keyd_call_raw(&t.k, hdr, 8, &m, &ml, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(keyd_rep_parse(m, ml, &rep, &err), 0);
	cr_expect_eq(rep.status, -EMSGSIZE);
	free(m);
	uint8_t sig[64], hash[32] = { 0 };
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 1, hash, now_ms(), sig, &err),
		     -EPIPE);
	kt_stop(&t);
}

Test(keyd, issues_certificates_for_the_host_asked)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	EVP_PKEY *k = NULL;
	X509_REQ *req = NULL;
	X509 *cert = NULL, *ca = NULL;
	cr_assert(t.k.has_ca);
	cr_assert_eq(pki_key_new(&k, &err), 0);
	cr_assert_eq(pki_csr_new(k, "someone-else", &req, &err), 0);
	cr_assert_eq(keyd_issue_cert(&t.k, "h9", req, 30, &cert, &err), 0,
		     "%s", perr_msg(&err));
	char cn[PKI_CN_MAX + 1];
	cr_assert_eq(pki_cert_cn(cert, cn, sizeof(cn), &err), 0);
	cr_expect_str_eq(cn, "h9");
	cr_assert_eq(pki_read_cert(t.p.ca_cert, &ca, &err), 0);
	cr_expect_eq(pki_verify(ca, cert, false, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(EVP_PKEY_eq(X509_get0_pubkey(cert), k), 1);
	X509_free(cert);
	cert = NULL;
	/* a CSR whose signature does not match its key */
	EVP_PKEY *other = NULL;
	cr_assert_eq(pki_key_new(&other, &err), 0);
	X509_REQ_set_pubkey(req, other);
	cr_expect_eq(keyd_issue_cert(&t.k, "h9", req, 30, &cert, &err),
		     -EBADMSG, "%s", perr_msg(&err));
	cr_expect_null(cert);
	EVP_PKEY_free(other);
	X509_free(ca);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	kt_stop(&t);
}

Test(keyd, checkpoint_signatures_verify_and_stay_near_its_clock)
{
	struct kt t;
	kt_start(&t);
	struct parley_err err = { 0 };
	struct checkpoint c = { .seq = 5, .time_ms = now_ms() };
	memset(c.hash, 0xab, sizeof(c.hash));
	memcpy(c.key_id, t.k.ckpt_id, sizeof(c.key_id));
	cr_assert_eq(keyd_sign_checkpoint(&t.k, c.seq, c.hash, c.time_ms,
					  c.sig, &err), 0, "%s",
		     perr_msg(&err));
	/* with the public half it wrote beside the key at first start */
	char pubf[700];
	EVP_PKEY *pub;
	snprintf(pubf, sizeof(pubf), "%s/checkpoint.pub", t.dir);
	cr_assert_eq(sign_read_pub(pubf, &pub, &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(checkpoint_verify(&c, pub, &err), 0, "%s",
		     perr_msg(&err));
	c.seq = 6;
	cr_expect_eq(checkpoint_verify(&c, pub, &err), -EBADMSG);
	uint8_t sig[64];
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 9, c.hash,
					  now_ms() - 3600 * 1000, sig, &err),
		     -ERANGE);
	cr_expect_eq(keyd_sign_checkpoint(&t.k, 4, c.hash, now_ms(), sig,
					  &err), -ERANGE, "seq went back");
	EVP_PKEY_free(pub);
	/* a restart keeps the key it made */
	char id[65];
	memcpy(id, t.k.ckpt_id, sizeof(id));
	keyd_stop(&t.k);
	cr_assert_eq(keyd_spawn(&t.k, &t.p, &err), 0, "%s", perr_msg(&err));
	cr_expect_str_eq(t.k.ckpt_id, id);
	kt_stop(&t);
}

/* StrictModes: a key file others can read, or one the (unprivileged)
 * main process could have swapped in, is refused. */
Test(keyd, refuses_key_files_not_private_to_it)
{
	struct kt t;
	kt_paths(&t);
	struct parley_err err = { 0 };
	cr_assert_eq(chmod(t.p.policy_key, 0640), 0);
	cr_expect_eq(keyd_spawn(&t.k, &t.p, &err), -EPERM);
	cr_expect(strstr(perr_msg(&err), "mode 640"), "%s", perr_msg(&err));
	cr_assert_eq(chmod(t.p.policy_key, 0600), 0);
	if (geteuid() == 0) {
		cr_assert_eq(chown(t.p.ca_key, 65534, 65534), 0);
		cr_expect_eq(keyd_spawn(&t.k, &t.p, &err), -EPERM);
		cr_expect(strstr(perr_msg(&err), "owned by uid 65534"), "%s",
			  perr_msg(&err));
		cr_assert_eq(chown(t.p.ca_key, 0, 0), 0);
	}
	cr_expect_eq(keyd_spawn(&t.k, &t.p, &err), 0, "%s", perr_msg(&err));
	kt_stop(&t);
}

/* Killed with its parent (PR_SET_PDEATHSIG), even while something else
 * still holds the parent's end of the socketpair open (no end of file
 * to notice): a parent that dies leaves no key process behind. */
Test(keyd, dies_with_its_parent)
{
	struct kt t;
	kt_paths(&t);
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0) {
		struct keyd k;
		struct parley_err err = { 0 };
		close(pfd[0]);
		if (keyd_spawn(&k, &t.p, &err) < 0) {
			fprintf(stderr, "keyd_spawn: %s\n", perr_msg(&err));
			_exit(1);
		}
		pid_t holder = fork();   /* keeps k.fd open, waits */
		if (holder == 0) {
			close(pfd[1]);
			for (;;)
				pause();
		}
		pid_t both[2] = { k.pid, holder };
		if (holder < 0 || write(pfd[1], both, sizeof(both)) !=
					  sizeof(both))
			_exit(1);
		raise(SIGKILL);
	}
	pid_t both[2] = { 0, 0 };
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], both, sizeof(both)), (ssize_t)sizeof(both));
	int st;
	cr_assert_eq(waitpid(mid, &st, 0), mid);
	/* reparented to us (the subreaper), and killed by the signal */
	cr_assert_eq(waitpid(both[0], &st, 0), both[0]);
	cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %x", st);
	kill(both[1], SIGKILL);
	waitpid(both[1], NULL, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	close(pfd[0]);
	t_rmtree(t.dir);
	free(t.dir);
}

/* ---- a running parleyd ---- */

static unsigned proc_uid(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	unsigned uid = 0;
	bool got = false;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u", &uid) == 1) {
			got = true;
			break;
		}
	if (f)
		fclose(f);
	return got ? uid : 0;
}

/* A hex field of /proc/PID/status ("CapEff: %llx"), ~0 if absent. */
static unsigned long long proc_field(pid_t pid, const char *fmt)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	unsigned long long v = ~0ull;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static bool dropped(struct fleetd *f, void *ctx)
{
	(void)ctx;
	return proc_uid(f->daemon) != 0;
}

/* The daemon's children: its key process. */
static pid_t child_of(pid_t parent)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent,
		 (int)parent);
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

/* As uid, try to open each file: the errno of each (0 = opened). */
static void open_as(unsigned uid, const char *const *files, int *errs, int n)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (setgid(uid) != 0 || setuid(uid) != 0)
			_exit(1);
		for (int i = 0; i < n; i++) {
			int fd = open(files[i], O_RDONLY);
			int e = fd >= 0 ? 0 : errno;
			if (write(pfd[1], &e, sizeof(e)) != sizeof(e))
				_exit(1);
		}
		_exit(0);
	}
	close(pfd[1]);
	for (int i = 0; i < n; i++)
		cr_assert_eq(read(pfd[0], &errs[i], sizeof(int)),
			     (ssize_t)sizeof(int));
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

Test(keyd, main_process_is_not_root_and_cannot_open_the_keys, .timeout = 60)
{
	/* A capability of the runner: a runner that promises root
	 * (PARLEY_REQUIRE=root) fails here instead. */
	if (geteuid() != 0 && t_required("root"))
		cr_assert_fail("PARLEY_REQUIRE=root, but not run as root");
	if (geteuid() != 0)
		cr_skip_test("needs root (parleyd drops privileges only then)");
	struct api_client c;
	ac_start(&c);
	cr_assert(fd_wait(dropped, &c.f, NULL, 10000), "still uid 0");
	unsigned uid = proc_uid(c.f.daemon);
	cr_expect_neq(uid, 0);
	cr_expect_eq(proc_field(c.f.daemon, "CapEff: %llx"), 0,
		     "capabilities left");
	pid_t kp = child_of(c.f.daemon);
	cr_assert_gt(kp, 0, "no key process");
	cr_expect_eq(proc_uid(kp), 0, "the key process keeps its own uid");
#if defined(__x86_64__)
	cr_expect_eq(proc_field(kp, "Seccomp: %llx"), 2, "no seccomp filter");
#endif
	char pol[700], ca[700], ck[700];
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", c.f.dir);
	snprintf(ca, sizeof(ca), "%s/ca/ca.key", c.f.dir);
	snprintf(ck, sizeof(ck), "%s/checkpoint.key", c.f.dir);
	const char *files[] = { pol, ca, ck, c.f.store };
	int errs[4];
	open_as(uid, files, errs, 4);
	cr_expect_eq(errs[0], EACCES, "policy.key: %s", strerror(errs[0]));
	cr_expect_eq(errs[1], EACCES, "ca.key: %s", strerror(errs[1]));
	cr_expect_eq(errs[2], EACCES, "checkpoint.key: %s", strerror(errs[2]));
	cr_expect_eq(errs[3], 0, "the store stays the daemon's: %s",
		     strerror(errs[3]));
	/* and it still works: the API answers, a checkpoint is signed */
	struct ac_resp r;
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_expect_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	ac_call(&c, "POST", "/v1/audit/checkpoints", c.admin, NULL, &r);
	cr_expect_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	ac_stop(&c);
}

/* The store's directory goes to the daemon's user (SQLite writes its
 * journal beside the store) -- but a directory that is someone's is not
 * taken over: a git checkout (a walkthrough run from one made it
 * nobody's) or another user's is refused, naming it, and left as it was. */
Test(keyd, a_checkout_or_a_users_directory_is_not_taken_over, .timeout = 60)
{
	if (geteuid() != 0 && t_required("root"))
		cr_assert_fail("PARLEY_REQUIRE=root, but not run as root");
	if (geteuid() != 0)
		cr_skip_test("needs root (parleyd drops privileges only then)");
	struct fleetd f;
	fd_init(&f);
	char ca[600], crt[600], key[600], pol[600], git[600];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", f.dir);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", f.dir);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", f.dir);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", f.dir);
	snprintf(git, sizeof(git), "%s/.git", f.dir);
	char *argv[] = { T_PARLEYD, "--listen", "127.0.0.1:0", "--state-dir",
			 f.dir, "--ca", ca, "--cert", crt, "--key", key,
			 "--policy-key", pol, "--store", f.store, NULL };
	for (int k = 0; k < 2; k++) {
		if (k == 0)
			cr_assert_eq(mkdir(git, 0755), 0, "%m");
		else
			cr_assert_eq(rmdir(git) == 0 &&
				     chown(f.dir, 4321, 4321) == 0, 1, "%m");
		char *out;
		int rc = t_run(argv, &out, 30);
		cr_expect_neq(rc, 0, "parleyd started:\n%s", out);
		cr_expect(strstr(out, k ? "another user's" : "a git checkout"),
			  "%s", out);
		free(out);
		struct stat st;
		cr_assert_eq(stat(f.dir, &st), 0);
		cr_expect_eq(st.st_uid, k ? 4321u : 0u, "owner %u",
			     (unsigned)st.st_uid);
	}
	chown(f.dir, 0, 0);
	fd_stop(&f);
}

/* Disk keys (issue 13): made and wrapped in the key process, sealed to a
 * host there; a wrapped key moved to another (partition, disk, version)
 * or cut short does not unwrap, and no disk wrapping key means no disk
 * keys at all. */
Test(keyd, disk_keys_are_wrapped_and_sealed_only_for_their_entry)
{
	struct kt t;
	kt_paths(&t);
	snprintf(t.p.disk_key, PATH_MAX, "%s/disk-wrap.key", t.dir);
	struct parley_err err = { 0 };
	cr_assert_eq(keyd_spawn(&t.k, &t.p, &err), 0, "%s", perr_msg(&err));
	struct stat st;
	cr_assert_eq(stat(t.p.disk_key, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(st.st_size, 32);
	uint8_t w[92], w2[92], sealed[256];
	size_t len = 0;
	cr_assert_eq(keyd_disk_key_new(&t.k, "p1", "data", 1, w, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_eq(keyd_disk_key_new(&t.k, "p1", "data", 1, w2, &err), 0);
	cr_assert_neq(memcmp(w, w2, sizeof(w)), 0, "two keys the same");
	/* h1's certificate and key from the fleet CA; h2's; and an h1
	 * from another CA. */
	char ca[600], other[600], path[700];
	snprintf(ca, sizeof(ca), "%s/ca", t.dir);
	snprintf(other, sizeof(other), "%s/other", t.dir);
	char *out;
	char *a1[] = { T_BIN("parley-pki"), "issue", ca, "h1", NULL };
	char *a2[] = { T_BIN("parley-pki"), "issue", ca, "h2", NULL };
	char *a3[] = { T_BIN("parley-pki"), "ca", other, NULL };
	char *a4[] = { T_BIN("parley-pki"), "issue", other, "h1", NULL };
	char **runs[] = { a1, a2, a3, a4 };
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(t_run(runs[i], &out, 30), 0, "%s", out);
		free(out);
	}
	EVP_PKEY *host = NULL;
	X509 *c1 = NULL, *c2 = NULL, *cx = NULL;
	snprintf(path, sizeof(path), "%s/h1.key", ca);
	cr_assert_eq(pki_read_key(path, &host, &err), 0, "%s", perr_msg(&err));
	snprintf(path, sizeof(path), "%s/h1.crt", ca);
	cr_assert_eq(pki_read_cert(path, &c1, &err), 0, "%s", perr_msg(&err));
	snprintf(path, sizeof(path), "%s/h2.crt", ca);
	cr_assert_eq(pki_read_cert(path, &c2, &err), 0);
	snprintf(path, sizeof(path), "%s/h1.crt", other);
	cr_assert_eq(pki_read_cert(path, &cx, &err), 0);
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p1", "data", 1, w, c1,
					sealed, sizeof(sealed), &len, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_eq(len, SEAL_LEN);
	uint8_t key[64];
	struct seal_ctx c = { "h1", "p1", "data", 1 };
	cr_assert_eq(seal_open(host, &c, sealed, len, key, &err), 0, "%s",
		     perr_msg(&err));
	/* The wrapped key of p1 asked for as p2's, or as version 2: the
	 * key process refuses, the stream goes on. */
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p2", "data", 1, w, c1,
					sealed, sizeof(sealed), &len, &err),
		     -EBADMSG);
	cr_assert(strstr(perr_msg(&err), "does not unwrap"), "%s",
		  perr_msg(&err));
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p1", "data", 2, w, c1,
					sealed, sizeof(sealed), &len, &err),
		     -EBADMSG);
	w[50] ^= 1;
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p1", "data", 1, w, c1,
					sealed, sizeof(sealed), &len, &err),
		     -EBADMSG);
	w[50] ^= 1;
	/* Sealed only to a key the fleet CA certified for that host: h2's
	 * certificate asked as h1's, or an h1 from another CA, refused. */
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p1", "data", 1, w, c2,
					sealed, sizeof(sealed), &len, &err),
		     -EPERM);
	cr_assert(strstr(perr_msg(&err), "a certificate for h2"), "%s",
		  perr_msg(&err));
	cr_assert_eq(keyd_disk_key_seal(&t.k, "h1", "p1", "data", 1, w, cx,
					sealed, sizeof(sealed), &len, &err),
		     -EKEYREJECTED);
	cr_assert(strstr(perr_msg(&err), "certificate refused"), "%s",
		  perr_msg(&err));
	/* Hostile requests: version 0, a wrapped key of 91 bytes. */
	struct keyd_req q = { .type = KEYD_DISK_KEY_NEW, .version = 0 };
	snprintf(q.part, sizeof(q.part), "p1");
	snprintf(q.disk, sizeof(q.disk), "data");
	uint8_t *req, *rep;
	size_t rl, pl;
	cr_assert_eq(keyd_req_encode(&q, &req, &rl), 0);
	cr_assert_eq(keyd_call_raw(&t.k, req, rl, &rep, &pl, &err), 0);
	struct keyd_rep r;
	cr_assert_eq(keyd_rep_parse(rep, pl, &r, &err), 0);
	cr_assert_eq(r.status, -EBADMSG, "%d %s", r.status, r.msg);
	free(req);
	free(rep);
	q = (struct keyd_req){ .type = KEYD_DISK_KEY_SEAL, .version = 1,
			       .data = w, .len = 91, .data2 = w, .len2 = 4 };
	snprintf(q.host, sizeof(q.host), "h1");
	snprintf(q.part, sizeof(q.part), "p1");
	snprintf(q.disk, sizeof(q.disk), "data");
	cr_assert_eq(keyd_req_encode(&q, &req, &rl), 0);
	cr_assert_eq(keyd_call_raw(&t.k, req, rl, &rep, &pl, &err), 0);
	cr_assert_eq(keyd_rep_parse(rep, pl, &r, &err), 0);
	cr_assert_eq(r.status, -EBADMSG, "%d %s", r.status, r.msg);
	free(req);
	free(rep);
	/* Still serving. */
	cr_assert_eq(keyd_disk_key_new(&t.k, "p1", "data", 2, w2, &err), 0);
	EVP_PKEY_free(host);
	X509_free(c1);
	X509_free(c2);
	X509_free(cx);
	keyd_stop(&t.k);
	/* Without a wrapping key configured: no disk keys. */
	t.p.disk_key[0] = 0;
	cr_assert_eq(keyd_spawn(&t.k, &t.p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(keyd_disk_key_new(&t.k, "p1", "data", 1, w, &err),
		     -ENOKEY);
	keyd_stop(&t.k);
	/* A wrapping key others may read: the key process refuses to start. */
	snprintf(t.p.disk_key, PATH_MAX, "%s/disk-wrap.key", t.dir);
	chmod(t.p.disk_key, 0640);
	cr_assert_lt(keyd_spawn(&t.k, &t.p, &err), 0);
	cr_assert(strstr(perr_msg(&err), "chmod 600"), "%s", perr_msg(&err));
	t_rmtree(t.dir);
	free(t.dir);
}
