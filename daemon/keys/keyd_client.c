/*
 * The main process's side of the key process: spawn it, then one
 * synchronous request per signature -- or, for bundles, a window of them
 * in flight (keyd.h: keyd_sign_bundle_send/_recv).
 */
#include "daemon/keys/keyd.h"
#include "daemon/keys/keyd_proto.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Out of step or gone: no later request could be trusted to get its own
 * reply, so this end closes; every later call is -EPIPE. */
static int gone(struct keyd *k, int rc, struct parley_err *err)
{
	log_error("the key process is gone: %s",
		  err ? perr_msg(err) : strerror(-rc));
	close(k->fd);
	k->fd = -1;
	k->inflight = 0;
	return -EPIPE;
}

#define REPLY_MAX (KEYD_HDR + 4 + 2 + KEYD_REPLY_MSG_MAX + 4 + KEYD_CSR_MAX)

int keyd_call_raw(struct keyd *k, const uint8_t *req, size_t len,
		  uint8_t **rep_msg, size_t *rep_len, struct parley_err *err)
{
	*rep_msg = NULL;
	if (k->fd < 0)
		return perr(err, -EPIPE, "the key process is gone");
	/* The next reply would be a pipelined request's, not this one's. */
	if (k->inflight)
		return perr(err, -EBUSY, "keyd: %u pipelined requests not "
			    "answered yet", k->inflight);
	int rc = keyd_send(k->fd, req, len);
	if (rc == 0)
		rc = keyd_recv(k->fd, REPLY_MAX, rep_msg, rep_len, err);
	else
		perr(err, rc, "the key process: %s", strerror(-rc));
	return rc < 0 ? gone(k, rc, err) : 0;
}

/* Send q, read and parse the reply; *m (the reply's buffer, which rep's
 * data points into) is the caller's to free. A refusal is its status,
 * with the key process's reason. */
static int call(struct keyd *k, const struct keyd_req *q, struct keyd_rep *rep,
		uint8_t **m, struct parley_err *err)
{
	uint8_t *req;
	size_t len, ml;
	*m = NULL;
	int rc = keyd_req_encode(q, &req, &len);
	if (rc < 0)
		return perr(err, rc, "keyd: request too large");
	rc = keyd_call_raw(k, req, len, m, &ml, err);
	free(req);
	if (rc == 0)
		rc = keyd_rep_parse(*m, ml, rep, err);
	if (rc == 0 && rep->status < 0)
		rc = perr(err, rep->status, "key process: %s", rep->msg);
	if (rc < 0) {
		free(*m);
		*m = NULL;
	}
	return rc;
}

/* A reply that parsed (rc 0) must carry exactly a signature. */
static int take_sig(int rc, const struct keyd_rep *rep, uint8_t sig[64],
		    struct parley_err *err)
{
	if (rc == 0 && rep->len != SIGN_LEN)
		rc = perr(err, -EBADMSG, "key process: a signature of %zu "
			  "bytes", rep->len);
	if (rc == 0)
		memcpy(sig, rep->data, SIGN_LEN);
	return rc;
}

static int sig64(struct keyd *k, const struct keyd_req *q, uint8_t sig[64],
		 struct parley_err *err)
{
	struct keyd_rep rep;
	uint8_t *m;
	int rc = take_sig(call(k, q, &rep, &m, err), &rep, sig, err);
	free(m);
	return rc;
}

int keyd_sign_bundle(struct keyd *k, const char *host, uint64_t version,
		     const uint8_t *body, size_t len, uint8_t sig[64],
		     struct parley_err *err)
{
	struct keyd_req q = { .type = KEYD_SIGN_BUNDLE, .version = version,
			      .data = body, .len = len };
	snprintf(q.host, sizeof(q.host), "%s", host);
	return sig64(k, &q, sig, err);
}

int keyd_sign_checkpoint(struct keyd *k, uint64_t seq, const uint8_t hash[32],
			 int64_t time_ms, uint8_t sig[64],
			 struct parley_err *err)
{
	struct keyd_req q = { .type = KEYD_SIGN_CHECKPOINT, .seq = seq,
			      .time_ms = time_ms };
	memcpy(q.hash, hash, 32);
	return sig64(k, &q, sig, err);
}

int keyd_sign_bundle_send(struct keyd *k, const char *host, uint64_t version,
			  const uint8_t *body, size_t len,
			  struct parley_err *err)
{
	struct keyd_req q = { .type = KEYD_SIGN_BUNDLE, .version = version,
			      .data = body, .len = len };
	uint8_t *req;
	size_t rl;
	if (k->fd < 0)
		return perr(err, -EPIPE, "the key process is gone");
	if (k->inflight >= KEYD_WINDOW)
		return perr(err, -EBUSY, "keyd: %u requests in flight",
			    k->inflight);
	snprintf(q.host, sizeof(q.host), "%s", host);
	int rc = keyd_req_encode(&q, &req, &rl);
	if (rc < 0)
		return perr(err, rc, "keyd: request too large");
	rc = keyd_send(k->fd, req, rl);
	free(req);
	if (rc < 0) {
		perr(err, rc, "the key process: %s", strerror(-rc));
		return gone(k, rc, err);
	}
	k->inflight++;
	return 0;
}

int keyd_sign_bundle_recv(struct keyd *k, uint8_t sig[64],
			  struct parley_err *err)
{
	uint8_t *m = NULL;
	size_t ml;
	struct keyd_rep rep;
	if (k->fd < 0)
		return perr(err, -EPIPE, "the key process is gone");
	if (!k->inflight)
		return perr(err, -EINVAL, "keyd: no request in flight");
	int rc = keyd_recv(k->fd, REPLY_MAX, &m, &ml, err);
	if (rc < 0)
		return gone(k, rc, err);
	k->inflight--;
	rc = keyd_rep_parse(m, ml, &rep, err);
	if (rc == 0 && rep.status < 0)
		rc = perr(err, rep.status, "key process: %s", rep.msg);
	rc = take_sig(rc, &rep, sig, err);
	free(m);
	return rc;
}

int keyd_issue_cert(struct keyd *k, const char *host, X509_REQ *csr,
		    int days, X509 **out, struct parley_err *err)
{
	uint8_t *der = NULL, *m = NULL;
	int n = i2d_X509_REQ(csr, &der);
	if (n <= 0)
		return pki_ossl_err(err, -EINVAL, "CSR: cannot encode it");
	struct keyd_req q = { .type = KEYD_ISSUE_CERT, .days = (uint32_t)days,
			      .data = der, .len = (size_t)n };
	snprintf(q.host, sizeof(q.host), "%s", host);
	struct keyd_rep rep;
	int rc = days > 0 ? call(k, &q, &rep, &m, err)
			  : perr(err, -EINVAL, "certificate days %d", days);
	OPENSSL_free(der);
	if (rc < 0)
		return rc;
	const uint8_t *p = rep.data;
	*out = d2i_X509(NULL, &p, (long)rep.len);
	if (!*out || p != rep.data + rep.len) {
		X509_free(*out);
		*out = NULL;
		rc = perr(err, -EBADMSG, "key process: not a DER certificate");
	}
	free(m);
	return rc;
}

/* A reply that parsed must carry exactly `want` bytes. */
static int take_exact(struct keyd *k, const struct keyd_req *q,
		      uint8_t *out, size_t want, struct parley_err *err)
{
	struct keyd_rep rep;
	uint8_t *m = NULL;
	int rc = call(k, q, &rep, &m, err);
	if (rc == 0 && rep.len != want)
		rc = perr(err, -EBADMSG, "key process: %zu bytes, not %zu",
			  rep.len, want);
	if (rc == 0)
		memcpy(out, rep.data, want);
	free(m);
	return rc;
}

int keyd_disk_key_new(struct keyd *k, const char *partition, const char *disk,
		      uint64_t version, uint8_t wrapped[92],
		      struct parley_err *err)
{
	_Static_assert(KEYD_WRAPPED_LEN == 92, "keyd.h spells it");
	struct keyd_req q = { .type = KEYD_DISK_KEY_NEW, .version = version };
	snprintf(q.part, sizeof(q.part), "%s", partition);
	snprintf(q.disk, sizeof(q.disk), "%s", disk);
	return take_exact(k, &q, wrapped, KEYD_WRAPPED_LEN, err);
}

int keyd_disk_key_seal(struct keyd *k, const char *host,
		       const char *partition, const char *disk,
		       uint64_t version, const uint8_t wrapped[92],
		       X509 *host_cert, uint8_t *sealed, size_t cap,
		       size_t *len, struct parley_err *err)
{
	uint8_t *der = NULL;
	int n = host_cert ? i2d_X509(host_cert, &der) : 0;
	if (n <= 0 || (size_t)n > KEYD_CERT_MAX) {
		OPENSSL_free(der);
		return perr(err, -EINVAL, "host %s: no certificate to seal "
			    "to", host);
	}
	struct keyd_req q = { .type = KEYD_DISK_KEY_SEAL, .version = version,
			      .data = wrapped, .len = KEYD_WRAPPED_LEN,
			      .data2 = der, .len2 = (size_t)n };
	snprintf(q.host, sizeof(q.host), "%s", host);
	snprintf(q.part, sizeof(q.part), "%s", partition);
	snprintf(q.disk, sizeof(q.disk), "%s", disk);
	struct keyd_rep rep;
	uint8_t *m = NULL;
	int rc = call(k, &q, &rep, &m, err);
	OPENSSL_free(der);
	if (rc == 0 && (rep.len == 0 || rep.len > cap))
		rc = perr(err, -EBADMSG, "key process: a sealed key of %zu "
			  "bytes", rep.len);
	if (rc == 0) {
		memcpy(sealed, rep.data, rep.len);
		*len = rep.len;
	}
	free(m);
	return rc;
}

static int pub_from_der(const uint8_t *p, size_t len, EVP_PKEY **out,
			char id[65], struct parley_err *err)
{
	const uint8_t *q = p;
	*out = d2i_PUBKEY(NULL, &q, (long)len);
	if (!*out || q != p + len || EVP_PKEY_get_base_id(*out) !=
						     EVP_PKEY_ED25519)
		return perr(err, -EBADMSG, "key process: a public key that is "
			    "not Ed25519");
	return sign_key_id(*out, id) < 0 ? perr(err, -EINVAL, "key id") : 0;
}

static int info(struct keyd *k, struct parley_err *err)
{
	struct keyd_req q = { .type = KEYD_INFO };
	struct keyd_rep rep;
	struct keyd_info i;
	uint8_t *m;
	int rc = call(k, &q, &rep, &m, err);
	if (rc < 0)
		return rc;
	rc = keyd_info_parse(rep.data, rep.len, &i, err);
	if (rc == 0)
		rc = pub_from_der(i.policy_pub, i.policy_pub_len,
				  &k->policy_pub, k->policy_id, err);
	if (rc == 0)
		rc = pub_from_der(i.ckpt_pub, i.ckpt_pub_len, &k->ckpt_pub,
				  k->ckpt_id, err);
	k->has_ca = i.has_ca;
	free(m);
	return rc;
}

int keyd_spawn(struct keyd *k, const struct keyd_paths *p,
	       struct parley_err *err)
{
	int sv[2];
	memset(k, 0, sizeof(*k));
	k->fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return perr(err, -errno, "socketpair: %m");
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return perr(err, -errno, "fork: %m");
	}
	if (pid == 0) {
		/* Dies with its parent: the signal, and the end of file on
		 * the socketpair when the parent's end closes. */
		close(sv[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 ||
		    getppid() != parent)
			_exit(1);
		keyd_main(sv[1], p);
	}
	close(sv[1]);
	k->fd = sv[0];
	k->pid = pid;
	int rc = info(k, err);
	if (rc < 0)
		keyd_stop(k);
	return rc;
}

void keyd_stop(struct keyd *k)
{
	if (k->pid > 0 && k->fd >= 0)   /* pid 0: never spawned */
		close(k->fd);
	k->fd = -1;
	if (k->pid > 0) {
		int st;
		while (waitpid(k->pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	k->pid = 0;
	EVP_PKEY_free(k->policy_pub);
	EVP_PKEY_free(k->ckpt_pub);
	k->policy_pub = k->ckpt_pub = NULL;
}
