/*
 * The key process: loads the private keys, then answers the main
 * process's requests (keyd_proto.h) until its end of the socketpair
 * closes. It checks what it signs -- a bundle body must be a canonical
 * PolicyBody for the host and version asked, a CSR must pass
 * pki_csr_sign_as's rules, a checkpoint's time must be near its own clock
 * -- so that the main process, if taken over, can get signatures only for
 * things of the shapes parleyd signs anyway, never the keys.
 */
#include "daemon/keys/keyd.h"
#include "daemon/keys/keyd_proto.h"
#include "common/checkpoint.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/pki_join.h"
#include "common/seal.h"
#include "common/sign.h"
#include "parley.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* A checkpoint stamped further than this from the key process's clock is
 * refused: the main process cannot have heads signed for another time. */
#define CKPT_SKEW_MS (5 * 60 * 1000)
#define KEY_FILE_MAX (64 * 1024)

struct keys {
	EVP_PKEY *policy, *ca, *ckpt;
	X509 *ca_cert;
	uint64_t last_seq;          /* checkpoints never go backwards */
	uint8_t wrap[32];           /* disk keys are wrapped under it */
	bool has_wrap;
	X509 *fleet_ca;             /* host certificates sealed to chain to it */
	struct parley_err load_err; /* code != 0: keys not loaded */
};

/* ---- loading ---- */

/* A private key file as OpenSSH's StrictModes reads one: a regular file,
 * not a symlink, owned by us and readable by nobody else. The main
 * process may own the state directory (daemon/keys/README.md): a key it
 * swapped in would be its own, so it is refused rather than used. */
/* Encrypted keys are not for a daemon: no prompt, refused. */
static int no_pass(char *buf, int size, int rw, void *u)
{
	(void)buf, (void)size, (void)rw, (void)u;
	return 0;
}

static int read_key_strict(const char *path, EVP_PKEY **out,
			   struct parley_err *err)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t n = 0;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = perr(err, -errno, "%s: %m", path);
	else if (!S_ISREG(st.st_mode))
		rc = perr(err, -EINVAL, "%s: not a regular file", path);
	else if (st.st_uid != geteuid())
		rc = perr(err, -EPERM, "%s: owned by uid %u, not by the key "
			  "process's uid %u", path, (unsigned)st.st_uid,
			  (unsigned)geteuid());
	else if (st.st_mode & 077)
		rc = perr(err, -EPERM, "%s: mode %03o; a private key must be "
			  "readable by its owner only (chmod 600)", path,
			  (unsigned)(st.st_mode & 0777));
	else if (st.st_size > KEY_FILE_MAX || !(buf = malloc(KEY_FILE_MAX)))
		rc = perr(err, -EFBIG, "%s: too large", path);
	while (rc == 0 && (n = read(fd, buf, KEY_FILE_MAX)) < 0 &&
	       errno == EINTR)
		;
	if (rc == 0 && n < 0)
		rc = perr(err, -errno, "%s: %m", path);
	close(fd);
	if (rc == 0) {
		BIO *b = BIO_new_mem_buf(buf, (int)n);
		*out = b ? PEM_read_bio_PrivateKey(b, NULL, no_pass, NULL) : NULL;
		BIO_free(b);
		if (!*out)
			rc = pki_ossl_err(err, -EINVAL, "%s: not a PEM private "
					  "key", path);
	}
	if (buf)
		OPENSSL_cleanse(buf, KEY_FILE_MAX);
	free(buf);
	return rc;
}

static int need_ed25519(EVP_PKEY *k, const char *path, struct parley_err *err)
{
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519)
		return perr(err, -EKEYREJECTED, "%s: not an Ed25519 key", path);
	return 0;
}

/* The checkpoint key, made at the first start (as parley-pki makes the
 * policy key): private 0600, public half beside it for verifiers. */
static int load_ckpt(struct keys *K, const char *path, struct parley_err *err)
{
	if (access(path, F_OK) != 0 && errno == ENOENT) {
		char pub[PATH_MAX + 8];
		size_t n = strlen(path);
		/* checkpoint.key -> checkpoint.pub, as policy.key/.pub */
		if (n > 4 && !strcmp(path + n - 4, ".key"))
			snprintf(pub, sizeof(pub), "%.*s.pub", (int)(n - 4),
				 path);
		else
			snprintf(pub, sizeof(pub), "%s.pub", path);
		int rc = pki_key_new(&K->ckpt, err);
		if (rc == 0)
			rc = pki_write_key(path, K->ckpt, err);
		if (rc == 0)
			rc = sign_write_pub(pub, K->ckpt, err);
		if (rc == 0)
			log_info("made the audit checkpoint key %s (public "
				 "half %s)", path, pub);
		return rc;
	}
	int rc = read_key_strict(path, &K->ckpt, err);
	return rc < 0 ? rc : need_ed25519(K->ckpt, path, err);
}

/* The disk wrapping key: 32 random bytes, made at the first start (0600,
 * O_EXCL), else read as strictly as a private key file (a regular file,
 * ours, 0600, exactly 32 bytes). */
static int load_wrap(struct keys *K, const char *path, struct parley_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
			    O_CLOEXEC, 0600);
	if (fd >= 0) {
		int rc = RAND_priv_bytes(K->wrap, 32) == 1 ? 0 : -EIO;
		if (rc == 0 && write(fd, K->wrap, 32) != 32)
			rc = -EIO;
		if (rc == 0 && fsync(fd) < 0)
			rc = -errno;
		close(fd);
		if (rc < 0) {
			unlink(path);
			return perr(err, rc, "%s: %s", path, strerror(-rc));
		}
		K->has_wrap = true;
		log_info("made the disk key wrapping key %s", path);
		return 0;
	}
	if (errno != EEXIST)
		return perr(err, -errno, "%s: %m", path);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = perr(err, -errno, "%s: %m", path);
	else if (!S_ISREG(st.st_mode) || st.st_size != 32)
		rc = perr(err, -EINVAL, "%s: not a regular file of 32 bytes",
			  path);
	else if (st.st_uid != geteuid())
		rc = perr(err, -EPERM, "%s: owned by uid %u, not by the key "
			  "process's uid %u", path, (unsigned)st.st_uid,
			  (unsigned)geteuid());
	else if (st.st_mode & 077)
		rc = perr(err, -EPERM, "%s: mode %03o; a key must be "
			  "readable by its owner only (chmod 600)", path,
			  (unsigned)(st.st_mode & 0777));
	else if (read(fd, K->wrap, 32) != 32)
		rc = perr(err, -EIO, "%s: short read", path);
	close(fd);
	if (rc < 0)
		OPENSSL_cleanse(K->wrap, sizeof(K->wrap));
	K->has_wrap = rc == 0;
	return rc;
}

static int load(struct keys *K, const struct keyd_paths *p,
		struct parley_err *err)
{
	int rc = read_key_strict(p->policy_key, &K->policy, err);
	if (rc == 0)
		rc = need_ed25519(K->policy, p->policy_key, err);
	if (rc == 0)
		rc = load_ckpt(K, p->ckpt_key, err);
	if (rc == 0 && p->disk_key[0])
		rc = load_wrap(K, p->disk_key, err);
	/* The fleet CA's certificate, to check what disk keys are sealed
	 * to (without it, none are). */
	if (rc == 0 && K->has_wrap && p->ca_cert[0] &&
	    pki_read_cert(p->ca_cert, &K->fleet_ca, NULL) < 0)
		log_warn("no fleet CA certificate at %s: disk keys are not "
			 "released", p->ca_cert);
	if (rc < 0 || !p->ca_key[0])
		return rc;
	if (p->ca_optional && access(p->ca_key, F_OK) != 0) {
		log_warn("joining off: no CA key at %s (--ca-key)", p->ca_key);
		return 0;
	}
	rc = read_key_strict(p->ca_key, &K->ca, err);
	if (rc == 0)
		rc = pki_read_cert(p->ca_cert, &K->ca_cert, err);
	if (rc == 0 && X509_check_private_key(K->ca_cert, K->ca) != 1)
		rc = pki_ossl_err(err, -EINVAL, "%s does not match %s",
				  p->ca_key, p->ca_cert);
	return rc;
}

/* ---- answers ---- */

static int reply(int fd, int status, const char *msg, const uint8_t *data,
		 size_t len)
{
	struct keyd_rep r = { .status = status, .data = data, .len = len };
	snprintf(r.msg, sizeof(r.msg), "%s", msg ? msg : "");
	uint8_t *m;
	size_t ml;
	int rc = keyd_rep_encode(&r, &m, &ml);
	if (rc == 0) {
		rc = keyd_send(fd, m, ml);
		free(m);
	}
	return rc;
}

static int reply_err(int fd, const struct parley_err *err, int rc)
{
	log_warn("refused: %s", perr_msg(err));
	return reply(fd, rc, perr_msg(err), NULL, 0);
}

static int der_pub(EVP_PKEY *k, uint8_t **out)
{
	*out = NULL;
	return k ? i2d_PUBKEY(k, out) : 0;
}

static int on_info(int fd, struct keys *K)
{
	struct keyd_info i = { .has_ca = K->ca != NULL };
	uint8_t *pp = NULL, *cp = NULL, *data = NULL;
	size_t len;
	int pl = der_pub(K->policy, &pp), cl = der_pub(K->ckpt, &cp);
	int rc = -ENOMEM;
	if (pl > 0 && cl > 0) {
		i.policy_pub = pp;
		i.policy_pub_len = (size_t)pl;
		i.ckpt_pub = cp;
		i.ckpt_pub_len = (size_t)cl;
		rc = keyd_info_encode(&i, &data, &len);
	}
	rc = rc == 0 ? reply(fd, 0, NULL, data, len)
		     : reply(fd, rc, "encoding the public keys", NULL, 0);
	OPENSSL_free(pp);
	OPENSSL_free(cp);
	free(data);
	return rc;
}

/* The body must be what policy_bundle_build makes for this host and
 * version: a PolicyBody that says so and packs back to the same bytes
 * (nothing unknown or non-canonical rides along under the signature). */
static int check_bundle(const struct keyd_req *q, struct parley_err *err)
{
	Parley__V1__PolicyBody *b =
		parley__v1__policy_body__unpack(NULL, q->len, q->data);
	if (!b)
		return perr(err, -EBADMSG, "bundle for %s: not a PolicyBody",
			    q->host);
	int rc = 0;
	if (!b->host || strcmp(b->host, q->host))
		rc = perr(err, -EPERM, "bundle asked for %s names host %.64s",
			  q->host, b->host ? b->host : "(none)");
	else if (b->version != q->version)
		rc = perr(err, -EPERM, "bundle for %s: version %llu asked, "
			  "body says %llu", q->host,
			  (unsigned long long)q->version,
			  (unsigned long long)b->version);
	else if (b->base.n_unknown_fields)
		rc = perr(err, -EBADMSG, "bundle for %s: fields PolicyBody "
			  "does not have", q->host);
	else if (parley__v1__policy_body__get_packed_size(b) != q->len)
		rc = perr(err, -EBADMSG, "bundle for %s: not in canonical "
			  "form", q->host);
	if (rc == 0) {
		uint8_t *again = malloc(q->len ? q->len : 1);
		if (!again)
			rc = perr(err, -ENOMEM, "out of memory");
		else if (parley__v1__policy_body__pack(b, again) != q->len ||
			 memcmp(again, q->data, q->len))
			rc = perr(err, -EBADMSG, "bundle for %s: not in "
				  "canonical form", q->host);
		free(again);
	}
	parley__v1__policy_body__free_unpacked(b, NULL);
	return rc;
}

static int on_bundle(int fd, struct keys *K, const struct keyd_req *q)
{
	struct parley_err err = { 0 };
	uint8_t sig[SIGN_LEN];
	int rc = check_bundle(q, &err);
	if (rc == 0 && (rc = sign_data(K->policy, q->data, q->len, sig)) < 0)
		perr(&err, rc, "signing the bundle for %s", q->host);
	return rc < 0 ? reply_err(fd, &err, rc) : reply(fd, 0, NULL, sig,
							  sizeof(sig));
}

static int on_cert(int fd, struct keys *K, const struct keyd_req *q)
{
	struct parley_err err = { 0 };
	const uint8_t *p = q->data;
	X509_REQ *req = NULL;
	X509 *cert = NULL;
	uint8_t *der = NULL;
	int rc = 0, n = 0;
	if (!K->ca)
		rc = perr(&err, -ENOKEY, "no CA key: joining is off");
	else if (!(req = d2i_X509_REQ(NULL, &p, (long)q->len)) ||
		 p != q->data + q->len)
		rc = perr(&err, -EBADMSG, "certificate for %s: not one DER "
			  "CSR", q->host);
	if (rc == 0)
		rc = pki_csr_sign_as(K->ca, K->ca_cert, req, q->host,
				     (int)q->days, &cert, &err);
	if (rc == 0 && (n = i2d_X509(cert, &der)) <= 0)
		rc = perr(&err, -ENOMEM, "encoding the certificate");
	if (rc == 0) {
		char fp[65];
		pki_fingerprint(cert, fp);
		log_info("issued a certificate for host %s (sha256:%.16s...)",
			 q->host, fp);
		rc = reply(fd, 0, NULL, der, (size_t)n);
	} else {
		rc = reply_err(fd, &err, rc);
	}
	OPENSSL_free(der);
	X509_free(cert);
	X509_REQ_free(req);
	return rc;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_ckpt(int fd, struct keys *K, const struct keyd_req *q)
{
	struct parley_err err = { 0 };
	uint8_t msg[CKPT_MSG_LEN], sig[SIGN_LEN];
	int64_t d = q->time_ms - now_ms();
	int rc = 0;
	if (d > CKPT_SKEW_MS || d < -CKPT_SKEW_MS)
		rc = perr(&err, -ERANGE, "checkpoint time %lld is %lld s from "
			  "the key process's clock", (long long)q->time_ms,
			  (long long)(d / 1000));
	else if (q->seq < K->last_seq)
		rc = perr(&err, -ERANGE, "checkpoint of audit id %llu after "
			  "one of %llu", (unsigned long long)q->seq,
			  (unsigned long long)K->last_seq);
	if (rc == 0) {
		checkpoint_message(q->seq, q->hash, q->time_ms, msg);
		if ((rc = sign_data(K->ckpt, msg, sizeof(msg), sig)) < 0)
			perr(&err, rc, "signing the checkpoint");
	}
	if (rc < 0)
		return reply_err(fd, &err, rc);
	K->last_seq = q->seq;
	return reply(fd, 0, NULL, sig, sizeof(sig));
}

static size_t wrap_aad(const struct keyd_req *q, uint8_t *a)
{
	return seal_wrap_aad(q->part, q->disk, q->version, a);
}

/* A new XTS key: random, two halves that differ (XTS refuses equal
 * ones), wrapped at once; the plain key is wiped before the reply. */
static int on_disk_new(int fd, struct keys *K, const struct keyd_req *q)
{
	struct parley_err err = { 0 };
	uint8_t key[SEAL_KEY_LEN], out[KEYD_WRAPPED_LEN];
	uint8_t aad[SEAL_WRAP_AAD_MAX];
	int rc = 0;
	if (!K->has_wrap)
		rc = perr(&err, -ENOKEY, "no disk key wrapping key");
	while (rc == 0) {
		if (RAND_priv_bytes(key, sizeof(key)) != 1)
			rc = perr(&err, -EIO, "no randomness");
		else if (memcmp(key, key + 32, 32))
			break;
	}
	if (rc == 0 && seal_gcm(K->wrap, aad, wrap_aad(q, aad), key,
				sizeof(key), out) < 0)
		rc = perr(&err, -EIO, "wrapping the key");
	OPENSSL_cleanse(key, sizeof(key));
	if (rc < 0)
		return reply_err(fd, &err, rc);
	log_info("made disk key %s/%s version %llu", q->part, q->disk,
		 (unsigned long long)q->version);
	return reply(fd, 0, NULL, out, sizeof(out));
}

static int on_disk_seal(int fd, struct keys *K, const struct keyd_req *q)
{
	struct parley_err err = { 0 };
	uint8_t key[SEAL_KEY_LEN], out[SEAL_LEN];
	uint8_t aad[SEAL_WRAP_AAD_MAX];
	const uint8_t *p = q->data2;
	X509 *cert = NULL;
	EVP_PKEY *pub = NULL;
	char cn[KEYD_NAME_MAX];
	int rc = 0;
	if (!K->has_wrap)
		rc = perr(&err, -ENOKEY, "no disk key wrapping key");
	else if (!K->fleet_ca)
		rc = perr(&err, -ENOKEY, "no fleet CA certificate to check "
			  "host certificates against");
	else if (q->len != KEYD_WRAPPED_LEN)
		rc = perr(&err, -EBADMSG, "wrapped key of %zu bytes", q->len);
	else if (!(cert = d2i_X509(NULL, &p, (long)q->len2)) ||
		 p != q->data2 + q->len2)
		rc = perr(&err, -EBADMSG, "host %s: not one DER certificate",
			  q->host);
	else if ((rc = pki_verify(K->fleet_ca, cert, false, &err)) < 0)
		perr_prefix(&err, "host %s", q->host);
	else if ((rc = pki_cert_cn(cert, cn, sizeof(cn), &err)) < 0 ||
		 strcmp(cn, q->host))
		rc = perr(&err, -EPERM, "a certificate for %.64s, not host %s",
			  rc < 0 ? "(no CN)" : cn, q->host);
	else if (!(pub = X509_get0_pubkey(cert)))
		rc = perr(&err, -EBADMSG, "host %s: no public key", q->host);
	else if (seal_gcm_open(K->wrap, aad, wrap_aad(q, aad), q->data,
			       q->len, key) < 0)
		rc = perr(&err, -EBADMSG, "disk key %s/%s version %llu does "
			  "not unwrap (not ours, or moved)", q->part, q->disk,
			  (unsigned long long)q->version);
	else {
		struct seal_ctx c = { q->host, q->part, q->disk, q->version };
		rc = seal_key(pub, &c, key, out, &err);
	}
	OPENSSL_cleanse(key, sizeof(key));
	X509_free(cert);
	if (rc < 0)
		return reply_err(fd, &err, rc);
	return reply(fd, 0, NULL, out, sizeof(out));
}

/* One request. A message that cannot be framed (over its cap) leaves the
 * stream out of step: answered, then the end (-EPIPE). */
static int serve_one(int fd, struct keys *K)
{
	uint8_t *m;
	size_t len;
	struct parley_err err = { 0 };
	struct keyd_req q;
	int rc = keyd_recv(fd, KEYD_MSG_MAX - KEYD_HDR, &m, &len, &err);
	if (rc == -EPIPE)
		return rc;
	if (rc < 0) {
		reply_err(fd, &err, rc);
		return -EPIPE;
	}
	rc = keyd_req_parse(m, len, &q, &err);
	if (rc < 0)
		rc = reply_err(fd, &err, rc);
	else if (K->load_err.code && q.type != KEYD_INFO)
		rc = reply_err(fd, &K->load_err, K->load_err.code);
	else if (q.type == KEYD_INFO)
		rc = K->load_err.code ? reply(fd, K->load_err.code,
					      perr_msg(&K->load_err), NULL, 0)
				      : on_info(fd, K);
	else if (q.type == KEYD_SIGN_BUNDLE)
		rc = on_bundle(fd, K, &q);
	else if (q.type == KEYD_ISSUE_CERT)
		rc = on_cert(fd, K, &q);
	else if (q.type == KEYD_DISK_KEY_NEW)
		rc = on_disk_new(fd, K, &q);
	else if (q.type == KEYD_DISK_KEY_SEAL)
		rc = on_disk_seal(fd, K, &q);
	else
		rc = on_ckpt(fd, K, &q);
	free(m);
	return rc < 0 ? rc : K->load_err.code ? -EPIPE : 0;
}

/* ---- confinement ---- */

/* Only what serving needs: read and write on the socketpair, memory,
 * time, randomness, exit. Everything else (open, socket, execve, ptrace
 * ...) fails with EPERM. x86-64 only; elsewhere the process runs without
 * the filter (logged). */
static void confine(void)
{
#if defined(__x86_64__)
	static const int ok[] = {
		SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close,
		SYS_sendto, SYS_recvfrom,
		SYS_exit, SYS_exit_group, SYS_brk, SYS_mmap, SYS_munmap,
		SYS_mremap, SYS_mprotect, SYS_madvise, SYS_futex,
		SYS_getrandom, SYS_clock_gettime, SYS_gettimeofday,
		SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_rt_sigaction,
		SYS_getpid, SYS_gettid, SYS_sched_yield, SYS_fstat,
		SYS_newfstatat, SYS_lseek, SYS_nanosleep,
		SYS_clock_nanosleep, SYS_sigaltstack, SYS_prctl,
	};
	enum { N = sizeof(ok) / sizeof(ok[0]) };
	struct sock_filter f[4 + 2 * N + 2];
	unsigned n = 0;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		AUDIT_ARCH_X86_64, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
		SECCOMP_RET_KILL_PROCESS);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, nr));
	for (unsigned i = 0; i < N; i++) {
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			(unsigned)ok[i], 0, 1);
		f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
			SECCOMP_RET_ALLOW);
	}
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
		SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		log_warn("no seccomp filter: %m");
#else
	log_warn("no seccomp filter on this architecture");
#endif
}

/* Nothing of the main process's but stderr (log lines) and our end of
 * the socketpair, as fd 3. */
static int close_others(int fd)
{
	if (fd != 3 && (dup2(fd, 3) < 0 || close(fd) < 0))
		return -errno;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
		return -errno;
	if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
		return -errno;
	return 3;
}

void keyd_main(int fd, const struct keyd_paths *p)
{
	struct keys K = { 0 };
	log_init("parleyd-keys", LOG_INFO);
	/* ^C on a terminal reaches the whole group: the main process shuts
	 * down, and this one ends at the end of file that follows. */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	fd = close_others(fd);
	if (fd < 0)
		_exit(1);
	if (load(&K, p, &K.load_err) < 0 && !K.load_err.code)
		K.load_err.code = -EINVAL;
	uint8_t warm[16];
	RAND_bytes(warm, sizeof(warm)); /* seeded before open is gone */
	confine();
	while (serve_one(fd, &K) == 0)
		;
	EVP_PKEY_free(K.policy);
	EVP_PKEY_free(K.ca);
	EVP_PKEY_free(K.ckpt);
	OPENSSL_cleanse(K.wrap, sizeof(K.wrap));
	X509_free(K.fleet_ca);
	X509_free(K.ca_cert);
	/* _exit: no atexit work (sanitizer leak scans need ptrace, which the
	 * filter forbids). */
	_exit(0);
}
