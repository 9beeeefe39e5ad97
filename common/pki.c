#include "common/pki.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/fileio.h"
#include "common/jsonv.h"

/* 128 random bits: unguessable serials (CA/B Forum asks for 64 or more). */
#define PKI_SERIAL_BYTES 16
#define PKI_DAYS_MAX 36500

int pki_ossl_err(struct parley_err *err, int code, const char *fmt, ...)
{
	char head[PARLEY_ERR_MSG_MAX], why[PARLEY_ERR_MSG_MAX] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	/* The earliest entry is the root cause; keep two, drop the rest. */
	unsigned long e;
	int kept = 0;
	while ((e = ERR_get_error()) != 0) {
		if (kept++ >= 2)
			continue;
		char one[160];
		ERR_error_string_n(e, one, sizeof(one));
		size_t at = strlen(why);
		snprintf(why + at, sizeof(why) - at, "%s%s", at ? "; " : "",
			 one);
	}
	if (!why[0])
		return perr(err, code, "%s", head);
	return perr(err, code, "%s: %s", head, why);
}

void pki_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

int pki_key_new(EVP_PKEY **out, struct parley_err *err)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!k)
		return pki_ossl_err(err, -ENOMEM, "Ed25519 key generation");
	*out = k;
	return 0;
}

/* EdDSA signs the message itself (no separate digest); others SHA-256. */
static const EVP_MD *sign_md(EVP_PKEY *key)
{
	if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
		return NULL;
	return EVP_sha256();
}

static int set_serial(X509 *x, struct parley_err *err)
{
	unsigned char r[PKI_SERIAL_BYTES];
	BIGNUM *bn = NULL;
	do {
		if (RAND_bytes(r, sizeof(r)) != 1)
			return pki_ossl_err(err, -EIO, "serial: RAND_bytes");
		BN_free(bn);
		/* Unsigned, so the DER INTEGER is positive (RFC 5280). */
		bn = BN_bin2bn(r, sizeof(r), NULL);
		if (!bn)
			return pki_ossl_err(err, -ENOMEM, "serial");
	} while (BN_is_zero(bn));
	int rc = 0;
	if (!BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		rc = pki_ossl_err(err, -ENOMEM, "serial");
	BN_free(bn);
	return rc;
}

/* Subject CN only: parley's names need nothing else. */
static int cn_name(const char *cn, X509_NAME **out, struct parley_err *err)
{
	size_t len = strlen(cn);
	if (!len || len > PKI_CN_MAX)
		return perr(err, -EINVAL, "CN must be 1..%d bytes, not %zu",
			    PKI_CN_MAX, len);
	X509_NAME *n = X509_NAME_new();
	if (!n || !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
					      (const unsigned char *)cn, -1,
					      -1, 0)) {
		X509_NAME_free(n);
		return pki_ossl_err(err, -EINVAL, "CN \"%s\"", cn);
	}
	*out = n;
	return 0;
}

/* Add one extension written in openssl.cnf syntax. `issuer` may be the
 * certificate itself (self-signed). */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value,
		   struct parley_err *err)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return pki_ossl_err(err, -EINVAL, "extension %s = %s",
				    OBJ_nid2sn(nid), value);
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok)
		return pki_ossl_err(err, -ENOMEM, "extension %s",
				    OBJ_nid2sn(nid));
	return 0;
}

/* The parts every certificate shares: v3, serial, names, validity, key. */
static int cert_base(X509 *x, X509_NAME *subject, X509_NAME *issuer,
		     EVP_PKEY *pub, long nb, long na, struct parley_err *err)
{
	if (!X509_set_version(x, X509_VERSION_3))
		return pki_ossl_err(err, -ENOMEM, "version");
	int rc = set_serial(x, err);
	if (rc < 0)
		return rc;
	if (!X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, issuer))
		return pki_ossl_err(err, -ENOMEM, "names");
	if (!X509_gmtime_adj(X509_getm_notBefore(x), nb) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), na))
		return pki_ossl_err(err, -EINVAL, "validity");
	if (!X509_set_pubkey(x, pub))
		return pki_ossl_err(err, -EINVAL, "public key");
	return 0;
}

static int cert_sign(X509 *x, EVP_PKEY *key, struct parley_err *err)
{
	if (X509_sign(x, key, sign_md(key)) <= 0)
		return pki_ossl_err(err, -EINVAL, "signing the certificate");
	return 0;
}

static int ca_build(X509 *x, EVP_PKEY *key, const char *cn, int days,
		    struct parley_err *err)
{
	X509_NAME *n = NULL;
	int rc = cn_name(cn, &n, err);
	if (rc < 0)
		return rc;
	rc = cert_base(x, n, n, key, -PKI_SKEW_S, days * 86400L, err);
	X509_NAME_free(n);
	if (!rc)
		rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE",
			     err);
	if (!rc)
		rc = add_ext(x, x, NID_key_usage,
			     "critical,keyCertSign,cRLSign", err);
	if (!rc)
		rc = add_ext(x, x, NID_subject_key_identifier, "hash", err);
	if (!rc)
		rc = cert_sign(x, key, err);
	return rc;
}

int pki_ca_new(const char *cn, int days, EVP_PKEY **key, X509 **cert,
	       struct parley_err *err)
{
	if (days < 1 || days > PKI_DAYS_MAX)
		return perr(err, -EINVAL, "days must be 1..%d, not %d",
			    PKI_DAYS_MAX, days);
	EVP_PKEY *k = NULL;
	int rc = pki_key_new(&k, err);
	if (rc < 0)
		return rc;
	X509 *x = X509_new();
	if (!x) {
		EVP_PKEY_free(k);
		return pki_ossl_err(err, -ENOMEM, "CA certificate");
	}
	rc = ca_build(x, k, cn, days, err);
	if (rc < 0) {
		X509_free(x);
		EVP_PKEY_free(k);
		return rc;
	}
	*key = k;
	*cert = x;
	return 0;
}

/* subjectAltName of the daemon's certificate: loopback by address and
 * name, and its own name where that is a valid one. */
static int server_san(X509 *x, X509 *ca, const char *cn,
		      struct parley_err *err)
{
	char v[64 + PKI_CN_MAX];
	size_t len = strlen(cn);
	if (jv_name_valid(cn, len, PKI_CN_MAX + 1) && strcmp(cn, "localhost"))
		snprintf(v, sizeof(v),
			 "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:%s", cn);
	else
		snprintf(v, sizeof(v), "IP:127.0.0.1,IP:::1,DNS:localhost");
	return add_ext(x, ca, NID_subject_alt_name, v, err);
}

static int leaf_exts(X509 *x, X509 *ca, const char *cn, bool server,
		     struct parley_err *err)
{
	int rc = add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE",
			 err);
	if (!rc)
		rc = add_ext(x, ca, NID_key_usage, "critical,digitalSignature",
			     err);
	if (!rc)
		rc = add_ext(x, ca, NID_ext_key_usage,
			     server ? "serverAuth" : "clientAuth", err);
	if (!rc)
		rc = add_ext(x, ca, NID_subject_key_identifier, "hash", err);
	if (!rc)
		rc = add_ext(x, ca, NID_authority_key_identifier, "keyid", err);
	if (!rc && server)
		rc = server_san(x, ca, cn, err);
	return rc;
}

int pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, EVP_PKEY *subject_key,
	      const char *cn, long not_before_offset_s,
	      long not_after_offset_s, bool server, X509 **out,
	      struct parley_err *err)
{
	if (X509_check_private_key(ca_cert, ca_key) != 1)
		return pki_ossl_err(err, -EINVAL,
				    "CA key does not match the CA certificate");
	if (not_after_offset_s <= not_before_offset_s)
		return perr(err, -EINVAL, "validity ends before it starts");
	X509_NAME *n = NULL;
	int rc = cn_name(cn, &n, err);
	if (rc < 0)
		return rc;
	X509 *x = X509_new();
	if (!x)
		rc = pki_ossl_err(err, -ENOMEM, "certificate");
	if (!rc)
		rc = cert_base(x, n, X509_get_subject_name(ca_cert),
			       subject_key, not_before_offset_s,
			       not_after_offset_s, err);
	X509_NAME_free(n);
	if (!rc)
		rc = leaf_exts(x, ca_cert, cn, server, err);
	if (!rc)
		rc = cert_sign(x, ca_key, err);
	if (rc < 0) {
		X509_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

int pki_verify(X509 *ca, X509 *cert, bool server, struct parley_err *err)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *c = X509_STORE_CTX_new();
	int rc = 0;
	if (!st || !c || !X509_STORE_add_cert(st, ca) ||
	    !X509_STORE_CTX_init(c, st, cert, NULL) ||
	    !X509_STORE_CTX_set_purpose(c, server ? X509_PURPOSE_SSL_SERVER :
						    X509_PURPOSE_SSL_CLIENT)) {
		rc = pki_ossl_err(err, -ENOMEM, "verification set-up");
		goto out;
	}
	if (X509_verify_cert(c) != 1) {
		int e = X509_STORE_CTX_get_error(c);
		rc = (e == X509_V_ERR_CERT_HAS_EXPIRED ||
		      e == X509_V_ERR_CERT_NOT_YET_VALID) ? -EKEYEXPIRED :
							    -EKEYREJECTED;
		ERR_clear_error();
		perr(err, rc, "certificate refused: %s (depth %d)",
		     X509_verify_cert_error_string(e),
		     X509_STORE_CTX_get_error_depth(c));
	}
out:
	X509_STORE_CTX_free(c);
	X509_STORE_free(st);
	return rc;
}

/* ---- files ---- */

static int fsync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
		return -ENAMETOOLONG;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int write_tmp(int fd, const void *buf, size_t len, mode_t mode)
{
	if (fchmod(fd, mode) < 0)
		return -errno;
	int rc = fd_write_all(fd, buf, len);
	if (rc < 0)
		return rc;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

int pki_write_file(const char *path, const void *buf, size_t len,
		   mode_t mode, struct parley_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >=
	    (int)sizeof(tmp))
		return perr(err, -ENAMETOOLONG, "%s: path too long", path);
	/* mkostemp creates the file 0600, so a key is never readable by
	 * others, not even between creation and fchmod. */
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", tmp);
	int rc = write_tmp(fd, buf, len, mode);
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return perr(err, rc, "%s: %s", path, strerror(-rc));
	}
	rc = fsync_dir_of(path);
	if (rc < 0)
		return perr(err, rc, "%s: syncing its directory: %s", path,
			    strerror(-rc));
	return 0;
}

int pki_write_key(const char *path, EVP_PKEY *key, struct parley_err *err)
{
	/* Secure-heap memory BIO: the PEM is wiped when freed. */
	BIO *b = BIO_new(BIO_s_secmem());
	if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
					    NULL)) {
		BIO_free(b);
		return pki_ossl_err(err, -ENOMEM, "%s: encoding the key",
				    path);
	}
	char *p;
	long n = BIO_get_mem_data(b, &p);
	int rc = pki_write_file(path, p, (size_t)n, 0600, err);
	BIO_free(b);
	return rc;
}

int pki_write_cert(const char *path, X509 *cert, struct parley_err *err)
{
	char *pem;
	size_t len;
	int rc = pki_cert_to_pem(cert, &pem, &len, err);
	if (rc < 0)
		return perr_prefix(err, "%s", path), rc;
	rc = pki_write_file(path, pem, len, 0644, err);
	free(pem);
	return rc;
}

/* A PEM passphrase callback that has none: an encrypted key fails to
 * load instead of prompting on a terminal. */
static int no_pass(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

int pki_read_key(const char *path, EVP_PKEY **out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(path, PKI_PEM_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_pass, NULL) :
			  NULL;
	BIO_free(b);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (!k)
		return pki_ossl_err(err, -EINVAL, "%s: not a PEM private key",
				    path);
	*out = k;
	return 0;
}

int pki_read_cert(const char *path, X509 **out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(path, PKI_PEM_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = pki_cert_from_pem((const char *)buf, len, out, err);
	free(buf);
	if (rc < 0)
		return perr_prefix(err, "%s", path), rc;
	return 0;
}

int pki_fingerprint(X509 *cert, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!X509_digest(cert, EVP_sha256(), md, &n) || n != 32) {
		ERR_clear_error();
		return -EINVAL;
	}
	pki_hex(md, n, hex);
	return 0;
}

/* Exactly one CN, as UTF-8 without NUL bytes, shorter than cap. */
static int name_cn(const X509_NAME *n, char *out, size_t cap,
		   struct parley_err *err)
{
	int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
	if (i < 0)
		return perr(err, -EKEYREJECTED, "subject has no CN");
	if (X509_NAME_get_index_by_NID(n, NID_commonName, i) >= 0)
		return perr(err, -EKEYREJECTED, "subject has more than one CN");
	const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n,
									    i));
	unsigned char *u = NULL;
	int len = ASN1_STRING_to_UTF8(&u, s);
	if (len < 0)
		return pki_ossl_err(err, -EKEYREJECTED, "CN is not text");
	int rc = 0;
	if (memchr(u, 0, (size_t)len))
		rc = perr(err, -EKEYREJECTED, "CN holds a NUL byte");
	else if ((size_t)len >= cap)
		rc = perr(err, -EKEYREJECTED, "CN longer than %zu bytes",
			  cap - 1);
	else
		memcpy(out, u, (size_t)len + 1);
	OPENSSL_free(u);
	return rc;
}

int pki_cert_cn(X509 *cert, char *out, size_t cap, struct parley_err *err)
{
	return name_cn(X509_get_subject_name(cert), out, cap, err);
}

/* ---- certificate signing requests ---- */

int pki_csr_new(EVP_PKEY *key, const char *cn, X509_REQ **out,
		struct parley_err *err)
{
	X509_NAME *n = NULL;
	int rc = cn_name(cn, &n, err);
	if (rc < 0)
		return rc;
	X509_REQ *r = X509_REQ_new();
	if (!r || !X509_REQ_set_version(r, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(r, n) || !X509_REQ_set_pubkey(r, key))
		rc = pki_ossl_err(err, -ENOMEM, "CSR");
	else if (X509_REQ_sign(r, key, sign_md(key)) <= 0)
		rc = pki_ossl_err(err, -EINVAL, "signing the CSR");
	X509_NAME_free(n);
	if (rc < 0) {
		X509_REQ_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Keys we issue for: Ed25519, and ECDSA P-256 (what TPMs and most HSMs
 * hold). Anything else is refused rather than judged for strength. */
bool pki_csr_key_ok(EVP_PKEY *pub)
{
	if (EVP_PKEY_is_a(pub, "ED25519"))
		return true;
	if (!EVP_PKEY_is_a(pub, "EC"))
		return false;
	char group[64];
	if (!EVP_PKEY_get_group_name(pub, group, sizeof(group), NULL))
		return false;
	return OBJ_sn2nid(group) == NID_X9_62_prime256v1 ||
	       EC_curve_nist2nid(group) == NID_X9_62_prime256v1;
}

int pki_csr_sign(EVP_PKEY *ca_key, X509 *ca_cert, X509_REQ *req, int days,
		 X509 **out, struct parley_err *err)
{
	if (days < 1 || days > PKI_DAYS_MAX)
		return perr(err, -EINVAL, "days must be 1..%d, not %d",
			    PKI_DAYS_MAX, days);
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if (!pub)
		return pki_ossl_err(err, -EINVAL, "CSR: no usable public key");
	if (!pki_csr_key_ok(pub)) {
		ERR_clear_error();
		return perr(err, -EKEYREJECTED,
			    "CSR: key type %s refused (Ed25519 or P-256 only)",
			    EVP_PKEY_get0_type_name(pub));
	}
	if (X509_REQ_verify(req, pub) != 1)
		return pki_ossl_err(err, -EBADMSG,
				    "CSR: signature does not match its key");
	char cn[PKI_CN_MAX + 1];
	int rc = name_cn(X509_REQ_get_subject_name(req), cn, sizeof(cn), err);
	if (rc < 0)
		return perr_prefix(err, "CSR"), rc;
	if (!jv_name_valid(cn, strlen(cn), sizeof(cn)))
		return perr(err, -EINVAL, "CSR: CN is not a valid host name");
	return pki_issue(ca_key, ca_cert, pub, cn, -PKI_SKEW_S,
			 days * 86400L, false, out, err);
}

/* ---- PEM in memory ---- */

static int bio_to_string(BIO *b, char **pem, size_t *len,
			 struct parley_err *err)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *s = malloc((size_t)n + 1);
	if (!s)
		return perr(err, -ENOMEM, "out of memory");
	memcpy(s, p, (size_t)n);
	s[n] = 0;
	*pem = s;
	*len = (size_t)n;
	return 0;
}

int pki_cert_to_pem(X509 *cert, char **pem, size_t *len,
		    struct parley_err *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	int rc;
	if (!b || !PEM_write_bio_X509(b, cert))
		rc = pki_ossl_err(err, -ENOMEM, "encoding the certificate");
	else
		rc = bio_to_string(b, pem, len, err);
	BIO_free(b);
	return rc;
}

int pki_csr_to_pem(X509_REQ *req, char **pem, size_t *len,
		   struct parley_err *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	int rc;
	if (!b || !PEM_write_bio_X509_REQ(b, req))
		rc = pki_ossl_err(err, -ENOMEM, "encoding the CSR");
	else
		rc = bio_to_string(b, pem, len, err);
	BIO_free(b);
	return rc;
}

static int pem_bio(const char *pem, size_t len, BIO **out,
		   struct parley_err *err)
{
	if (len > PKI_PEM_MAX)
		return perr(err, -EFBIG,
			    "PEM of %zu bytes, more than the %d allowed", len,
			    PKI_PEM_MAX);
	*out = BIO_new_mem_buf(pem, (int)len);
	if (!*out)
		return pki_ossl_err(err, -ENOMEM, "PEM");
	return 0;
}

int pki_cert_from_pem(const char *pem, size_t len, X509 **out,
		      struct parley_err *err)
{
	BIO *b;
	int rc = pem_bio(pem, len, &b, err);
	if (rc < 0)
		return rc;
	X509 *x = PEM_read_bio_X509(b, NULL, no_pass, NULL);
	BIO_free(b);
	if (!x)
		return pki_ossl_err(err, -EINVAL, "not a PEM certificate");
	*out = x;
	return 0;
}

int pki_csr_from_pem(const char *pem, size_t len, X509_REQ **out,
		     struct parley_err *err)
{
	BIO *b;
	int rc = pem_bio(pem, len, &b, err);
	if (rc < 0)
		return rc;
	X509_REQ *r = PEM_read_bio_X509_REQ(b, NULL, no_pass, NULL);
	BIO_free(b);
	if (!r)
		return pki_ossl_err(err, -EINVAL, "not a PEM CSR");
	*out = r;
	return 0;
}
