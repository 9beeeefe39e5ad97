/*
 * The small PKI (common/pki.c) and policy signatures (common/sign.c): a CA
 * and the certificates it issues verify, with the extensions each role
 * needs; fingerprints and key ids are stable; files are written with the
 * right modes; CSRs round-trip, and a hostile CSR (bad signature, bad
 * name, odd key, extensions asking for more) is refused or stripped;
 * signatures verify and a flipped bit anywhere is refused. Last, the
 * parley-pki tool end to end.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "common/pki.h"
#include "common/sign.h"
#include "tests/helpers/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define PKI_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PKI_TEST_LSAN 1
#endif
#endif
#ifdef PKI_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define DAY (86400L)

/* Criterion takes a test's verdict before its worker exits: look for leaks
 * while the test can still fail (without ASan this checks nothing). */
static void expect_no_leaks(void)
{
#ifdef PKI_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

struct ca {
	EVP_PKEY *key;
	X509 *cert;
};

static void ca_make(struct ca *ca, const char *cn)
{
	struct parley_err e = { 0 };
	cr_assert_eq(pki_ca_new(cn, 30, &ca->key, &ca->cert, &e), 0, "%s",
		     perr_msg(&e));
}

static void ca_free(struct ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
}

/* A fresh key and a certificate for it from ca; *key may be NULL. */
static X509 *leaf(struct ca *ca, const char *cn, long nb, long na,
		  bool server, EVP_PKEY **key)
{
	struct parley_err e = { 0 };
	EVP_PKEY *k;
	X509 *x;
	cr_assert_eq(pki_key_new(&k, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(pki_issue(ca->key, ca->cert, k, cn, nb, na, server, &x,
			       &e), 0, "%s", perr_msg(&e));
	if (key)
		*key = k;
	else
		EVP_PKEY_free(k);
	return x;
}

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	cr_assert_geq(i, 0, "extension %s missing", OBJ_nid2sn(nid));
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

Test(pki, ca_has_ca_extensions)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	cr_expect_eq(X509_check_ca(ca.cert), 1);
	cr_expect(ext_critical(ca.cert, NID_basic_constraints));
	cr_expect(ext_critical(ca.cert, NID_key_usage));
	cr_expect(X509_get_key_usage(ca.cert) & KU_KEY_CERT_SIGN);
	cr_expect(EVP_PKEY_is_a(ca.key, "ED25519"));
	char cn[PKI_CN_MAX + 1];
	cr_expect_eq(pki_cert_cn(ca.cert, cn, sizeof(cn), NULL), 0);
	cr_expect_str_eq(cn, "fleet-ca");
	/* Self-signed: it verifies as its own anchor. */
	cr_expect_eq(X509_check_issued(ca.cert, ca.cert), X509_V_OK);
	struct parley_err e = { 0 };
	EVP_PKEY *k;
	X509 *x;
	cr_expect_eq(pki_ca_new("x", 0, &k, &x, &e), -EINVAL);
	cr_expect_eq(pki_ca_new("", 30, &k, &x, &e), -EINVAL);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, issued_certificates_verify_for_their_role)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	X509 *cli = leaf(&ca, "agent-1", -60, DAY, false, NULL);
	X509 *srv = leaf(&ca, "parleyd", -60, DAY, true, NULL);
	struct parley_err e = { 0 };
	cr_expect_eq(pki_verify(ca.cert, cli, false, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(pki_verify(ca.cert, srv, true, &e), 0, "%s",
		     perr_msg(&e));
	/* Each is good for its own role only. */
	cr_expect_eq(pki_verify(ca.cert, cli, true, &e), -EKEYREJECTED);
	cr_expect(strstr(e.msg, "purpose"), "%s", e.msg);
	cr_expect_eq(pki_verify(ca.cert, srv, false, &e), -EKEYREJECTED);
	cr_expect_eq(X509_check_ca(cli), 0);
	cr_expect(ext_critical(cli, NID_basic_constraints));
	cr_expect(X509_get_extended_key_usage(cli) & XKU_SSL_CLIENT);
	cr_expect(!(X509_get_extended_key_usage(cli) & XKU_SSL_SERVER));
	cr_expect(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
	/* The daemon answers on loopback by address and by name. */
	cr_expect_eq(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
	cr_expect_eq(X509_check_ip_asc(srv, "::1", 0), 1);
	cr_expect_eq(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
	cr_expect_eq(X509_check_host(srv, "parleyd", 0, 0, NULL), 1);
	cr_expect_eq(X509_check_ip_asc(srv, "10.0.0.1", 0), 0);
	cr_expect_lt(X509_get_ext_by_NID(cli, NID_subject_alt_name, -1), 0);
	X509_free(cli);
	X509_free(srv);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, serials_random_positive_128_bits)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	X509 *a = leaf(&ca, "a", -60, DAY, false, NULL);
	X509 *b = leaf(&ca, "a", -60, DAY, false, NULL);
	BIGNUM *sa = ASN1_INTEGER_to_BN(X509_get0_serialNumber(a), NULL);
	BIGNUM *sb = ASN1_INTEGER_to_BN(X509_get0_serialNumber(b), NULL);
	cr_assert(sa && sb);
	cr_expect(!BN_is_negative(sa) && !BN_is_zero(sa));
	cr_expect_leq(BN_num_bits(sa), 128);
	/* 2^-64 odds of a false failure here. */
	cr_expect_gt(BN_num_bits(sa) + BN_num_bits(sb), 128);
	cr_expect_neq(BN_cmp(sa, sb), 0);
	BN_free(sa);
	BN_free(sb);
	X509_free(a);
	X509_free(b);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, other_ca_expired_and_future_refused)
{
	struct ca ca, other;
	ca_make(&ca, "fleet-ca");
	ca_make(&other, "fleet-ca"); /* same name, different key */
	X509 *foreign = leaf(&other, "agent-1", -60, DAY, false, NULL);
	X509 *old = leaf(&ca, "agent-1", -2 * DAY, -DAY, false, NULL);
	X509 *future = leaf(&ca, "agent-1", DAY, 2 * DAY, false, NULL);
	struct parley_err e = { 0 };
	cr_expect_eq(pki_verify(ca.cert, foreign, false, &e), -EKEYREJECTED);
	cr_expect(strstr(e.msg, "signature") || strstr(e.msg, "issuer"), "%s",
		  e.msg);
	cr_expect_eq(pki_verify(ca.cert, old, false, &e), -EKEYEXPIRED);
	cr_expect(strstr(e.msg, "expired"), "%s", e.msg);
	cr_expect_eq(pki_verify(ca.cert, future, false, &e), -EKEYEXPIRED);
	cr_expect(strstr(e.msg, "not yet valid"), "%s", e.msg);
	/* Validity that ends before it starts, a CA key that is not the
	 * CA's, a CN too long for X.509. */
	EVP_PKEY *k;
	X509 *x;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	cr_expect_eq(pki_issue(ca.key, ca.cert, k, "a", 10, 10, false, &x, &e),
		     -EINVAL);
	cr_expect_eq(pki_issue(other.key, ca.cert, k, "a", 0, 10, false, &x,
			       &e), -EINVAL);
	cr_expect(strstr(e.msg, "does not match"), "%s", e.msg);
	char cn65[66];
	memset(cn65, 'a', 65);
	cn65[65] = 0;
	cr_expect_eq(pki_issue(ca.key, ca.cert, k, cn65, 0, 10, false, &x, &e),
		     -EINVAL);
	EVP_PKEY_free(k);
	X509_free(foreign);
	X509_free(old);
	X509_free(future);
	ca_free(&ca);
	ca_free(&other);
	expect_no_leaks();
}

Test(pki, fingerprint_is_sha256_of_der_and_stable)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	X509 *x = leaf(&ca, "agent-1", -60, DAY, false, NULL);
	X509 *y = leaf(&ca, "agent-1", -60, DAY, false, NULL);
	char f1[65], f2[65], fy[65], want[65];
	cr_assert_eq(pki_fingerprint(x, f1), 0);
	cr_assert_eq(pki_fingerprint(x, f2), 0);
	cr_assert_eq(pki_fingerprint(y, fy), 0);
	cr_expect_str_eq(f1, f2);
	cr_expect_str_neq(f1, fy);
	cr_expect_eq(strlen(f1), 64);
	cr_expect_eq(strspn(f1, "0123456789abcdef"), 64);
	unsigned char *der = NULL, md[32];
	int n = i2d_X509(x, &der);
	cr_assert_gt(n, 0);
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	pki_hex(md, sizeof(md), want);
	cr_expect_str_eq(f1, want);
	/* Through PEM and back: the same certificate, the same print. */
	char *pem;
	size_t len;
	X509 *back;
	cr_assert_eq(pki_cert_to_pem(x, &pem, &len, NULL), 0);
	cr_expect_eq(strlen(pem), len);
	cr_assert_eq(pki_cert_from_pem(pem, len, &back, NULL), 0);
	cr_assert_eq(pki_fingerprint(back, f2), 0);
	cr_expect_str_eq(f1, f2);
	free(pem);
	X509_free(back);
	X509_free(x);
	X509_free(y);
	ca_free(&ca);
	expect_no_leaks();
}

static mode_t file_mode(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return st.st_mode & 07777;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(pki, files_round_trip_with_modes)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	char *dir = t_tmpdir(), kp[256], cp[256];
	snprintf(kp, sizeof(kp), "%s/ca.key", dir);
	snprintf(cp, sizeof(cp), "%s/ca.crt", dir);
	struct parley_err e = { 0 };
	/* Even under a permissive umask the key is 0600. */
	mode_t old = umask(0);
	cr_assert_eq(pki_write_key(kp, ca.key, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(pki_write_cert(cp, ca.cert, &e), 0, "%s", perr_msg(&e));
	umask(old);
	cr_expect_eq(file_mode(kp), 0600);
	cr_expect_eq(file_mode(cp), 0644);
	/* Rewriting replaces the file and leaves no temporary behind. */
	cr_assert_eq(pki_write_cert(cp, ca.cert, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(count_entries(dir), 2);
	EVP_PKEY *k;
	X509 *x;
	cr_assert_eq(pki_read_key(kp, &k, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(pki_read_cert(cp, &x, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(EVP_PKEY_eq(k, ca.key), 1);
	cr_expect_eq(X509_cmp(x, ca.cert), 0);
	EVP_PKEY_free(k);
	X509_free(x);
	/* Missing, the wrong kind of PEM, not PEM, too big. */
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/none.key", dir);
	cr_expect_eq(pki_read_key(missing, &k, &e), -ENOENT);
	cr_expect_eq(pki_read_key(cp, &k, &e), -EINVAL);
	cr_expect(strstr(e.msg, "not a PEM private key"), "%s", e.msg);
	cr_expect_eq(pki_read_cert(kp, &x, &e), -EINVAL);
	char *junk = t_write(dir, "junk", "hello\n", 6);
	cr_expect_eq(pki_read_cert(junk, &x, &e), -EINVAL);
	static char big[PKI_PEM_MAX + 1];
	memset(big, 'A', sizeof(big));
	char *bigp = t_write(dir, "big", big, sizeof(big));
	cr_expect_eq(pki_read_cert(bigp, &x, &e), -EFBIG);
	cr_expect_eq(pki_read_key(bigp, &k, &e), -EFBIG);
	/* A directory that is not there: no partial file either. */
	snprintf(missing, sizeof(missing), "%s/no/such/ca.key", dir);
	cr_expect_eq(pki_write_key(missing, ca.key, &e), -ENOENT);
	free(junk);
	free(bigp);
	t_rmtree(dir);
	free(dir);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, csr_round_trip)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	struct parley_err e = { 0 };
	EVP_PKEY *k;
	X509_REQ *req, *back;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	cr_assert_eq(pki_csr_new(k, "agent-7", &req, &e), 0, "%s",
		     perr_msg(&e));
	char *pem;
	size_t len;
	cr_assert_eq(pki_csr_to_pem(req, &pem, &len, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect(strstr(pem, "BEGIN CERTIFICATE REQUEST"));
	cr_assert_eq(pki_csr_from_pem(pem, len, &back, &e), 0, "%s",
		     perr_msg(&e));
	X509 *x;
	cr_assert_eq(pki_csr_sign(ca.key, ca.cert, back, 30, &x, &e), 0, "%s",
		     perr_msg(&e));
	char cn[PKI_CN_MAX + 1];
	cr_expect_eq(pki_cert_cn(x, cn, sizeof(cn), NULL), 0);
	cr_expect_str_eq(cn, "agent-7");
	cr_expect_eq(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
	cr_expect_eq(pki_verify(ca.cert, x, false, &e), 0, "%s", perr_msg(&e));
	cr_expect(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
	/* And over the wire as PEM. */
	char *cpem;
	size_t clen;
	X509 *xb;
	cr_assert_eq(pki_cert_to_pem(x, &cpem, &clen, NULL), 0);
	cr_assert_eq(pki_cert_from_pem(cpem, clen, &xb, NULL), 0);
	cr_expect_eq(X509_cmp(x, xb), 0);
	free(cpem);
	X509_free(xb);
	/* days out of range */
	X509 *y;
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, back, 0, &y, &e), -EINVAL);
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, back, 36501, &y, &e),
		     -EINVAL);
	free(pem);
	X509_free(x);
	X509_REQ_free(back);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, csr_with_wrong_signature_refused)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	struct parley_err e = { 0 };
	EVP_PKEY *a, *b;
	X509_REQ *req;
	X509 *x = NULL;
	cr_assert_eq(pki_key_new(&a, NULL), 0);
	cr_assert_eq(pki_key_new(&b, NULL), 0);
	/* Signed by a, then claims b's key: possession of b not proven. */
	cr_assert_eq(pki_csr_new(a, "agent-1", &req, NULL), 0);
	cr_assert_eq(X509_REQ_set_pubkey(req, b), 1);
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, req, 30, &x, &e), -EBADMSG);
	cr_expect(strstr(e.msg, "signature"), "%s", e.msg);
	cr_expect_null(x);
	X509_REQ_free(req);
	/* One bit flipped in the signature of an honest request. */
	cr_assert_eq(pki_csr_new(a, "agent-1", &req, NULL), 0);
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	cr_assert_gt(n, 64);
	der[n - 1] ^= 0x01;
	const unsigned char *p = der;
	X509_REQ *bad = d2i_X509_REQ(NULL, &p, n);
	cr_assert(bad);
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, bad, 30, &x, &e), -EBADMSG);
	/* And one in the subject (the signed part): "agent-1" -> "agent-0". */
	der[n - 1] ^= 0x01;
	unsigned char *cn = memmem(der, (size_t)n, "agent-1", 7);
	cr_assert(cn);
	cn[6] = '0';
	p = der;
	X509_REQ *bad2 = d2i_X509_REQ(NULL, &p, n);
	cr_assert(bad2);
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, bad2, 30, &x, &e),
		     -EBADMSG);
	cr_expect_null(x);
	OPENSSL_free(der);
	X509_REQ_free(bad);
	X509_REQ_free(bad2);
	X509_REQ_free(req);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	ca_free(&ca);
	expect_no_leaks();
}

/* A request with the given subject, extensions requested, signed by k. */
static X509_REQ *raw_csr(EVP_PKEY *k, X509_NAME *subject,
			 STACK_OF(X509_EXTENSION) *exts)
{
	X509_REQ *r = X509_REQ_new();
	cr_assert(r);
	cr_assert(X509_REQ_set_subject_name(r, subject));
	cr_assert(X509_REQ_set_pubkey(r, k));
	if (exts)
		cr_assert(X509_REQ_add_extensions(r, exts));
	const EVP_MD *md = EVP_PKEY_is_a(k, "ED25519") ? NULL : EVP_sha256();
	cr_assert_gt(X509_REQ_sign(r, k, md), 0);
	return r;
}

static void add_cn(X509_NAME *n, const char *field, const char *v)
{
	cr_assert(X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8,
					     (const unsigned char *)v, -1, -1,
					     0));
}

Test(pki, csr_copies_only_the_cn)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	struct parley_err e = { 0 };
	EVP_PKEY *k;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	X509_NAME *n = X509_NAME_new();
	add_cn(n, "O", "evil corp");
	add_cn(n, "CN", "agent-2");
	add_cn(n, "OU", "admins");
	/* Asks to be a CA, a server, and someone else. */
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509V3_CTX c;
	X509V3_set_ctx_nodb(&c);
	X509V3_set_ctx(&c, NULL, NULL, NULL, NULL, 0);
	const char *want[][2] = { { "basicConstraints", "critical,CA:TRUE" },
				  { "extendedKeyUsage", "serverAuth" },
				  { "subjectAltName", "DNS:d,IP:10.0.0.1" },
				  { "keyUsage", "keyCertSign" } };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		X509_EXTENSION *x = X509V3_EXT_conf(NULL, &c, want[i][0],
						    want[i][1]);
		cr_assert(x, "%s", want[i][0]);
		sk_X509_EXTENSION_push(exts, x);
	}
	X509_REQ *req = raw_csr(k, n, exts);
	X509 *x;
	cr_assert_eq(pki_csr_sign(ca.key, ca.cert, req, 30, &x, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(X509_NAME_entry_count(X509_get_subject_name(x)), 1);
	char cn[PKI_CN_MAX + 1];
	cr_expect_eq(pki_cert_cn(x, cn, sizeof(cn), NULL), 0);
	cr_expect_str_eq(cn, "agent-2");
	cr_expect_eq(X509_check_ca(x), 0);
	cr_expect_lt(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), 0);
	cr_expect(!(X509_get_extended_key_usage(x) & XKU_SSL_SERVER));
	cr_expect(!(X509_get_key_usage(x) & KU_KEY_CERT_SIGN));
	cr_expect_eq(pki_verify(ca.cert, x, true, NULL), -EKEYREJECTED);
	X509_free(x);
	X509_REQ_free(req);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(n);
	EVP_PKEY_free(k);
	ca_free(&ca);
	expect_no_leaks();
}

struct bad_subject {
	const char *fields[3][2];
	int code;
	const char *words;
};

static const struct bad_subject bad_subjects[] = {
	{ { { "O", "no-cn" } }, -EKEYREJECTED, "no CN" },
	{ { { "CN", "a" }, { "CN", "b" } }, -EKEYREJECTED, "more than one CN" },
	{ { { "CN", "../etc" } }, -EINVAL, "not a valid host name" },
	{ { { "CN", "-rf" } }, -EINVAL, "not a valid host name" },
	{ { { "CN", "a b" } }, -EINVAL, "not a valid host name" },
	{ { { "CN", "a/b" } }, -EINVAL, "not a valid host name" },
	{ { { "CN", "h\xc3\xa9te" } }, -EINVAL, "not a valid host name" },
	{ { { "CN", "x\n" } }, -EINVAL, "not a valid host name" },
};

Test(pki, csr_bad_subjects_refused)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	EVP_PKEY *k;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	for (size_t i = 0; i < sizeof(bad_subjects) / sizeof(bad_subjects[0]);
	     i++) {
		const struct bad_subject *b = &bad_subjects[i];
		X509_NAME *n = X509_NAME_new();
		for (int f = 0; f < 3 && b->fields[f][0]; f++)
			add_cn(n, b->fields[f][0], b->fields[f][1]);
		X509_REQ *req = raw_csr(k, n, NULL);
		struct parley_err e = { 0 };
		X509 *x = NULL;
		cr_expect_eq(pki_csr_sign(ca.key, ca.cert, req, 30, &x, &e),
			     b->code, "case %zu: %d (%s)", i, e.code, e.msg);
		cr_expect(strstr(e.msg, b->words), "case %zu: %s", i, e.msg);
		cr_expect_null(x);
		X509_REQ_free(req);
		X509_NAME_free(n);
	}
	EVP_PKEY_free(k);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, csr_key_types)
{
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	struct parley_err e = { 0 };
	X509_NAME *n = X509_NAME_new();
	add_cn(n, "CN", "agent-3");
	/* P-256 (a TPM's key) is accepted, P-384 and RSA are not. */
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	cr_assert(p256 && p384 && rsa);
	X509_REQ *r1 = raw_csr(p256, n, NULL), *r2 = raw_csr(p384, n, NULL);
	X509_REQ *r3 = raw_csr(rsa, n, NULL);
	X509 *x = NULL;
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, r1, 30, &x, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(pki_verify(ca.cert, x, false, NULL), 0);
	X509_free(x);
	x = NULL;
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, r2, 30, &x, &e),
		     -EKEYREJECTED);
	cr_expect(strstr(e.msg, "key type"), "%s", e.msg);
	cr_expect_eq(pki_csr_sign(ca.key, ca.cert, r3, 30, &x, &e),
		     -EKEYREJECTED);
	cr_expect_null(x);
	X509_REQ_free(r1);
	X509_REQ_free(r2);
	X509_REQ_free(r3);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
	X509_NAME_free(n);
	ca_free(&ca);
	expect_no_leaks();
}

Test(pki, pem_from_the_wire_limits)
{
	struct parley_err e = { 0 };
	X509 *x = NULL;
	X509_REQ *r = NULL;
	static char big[PKI_PEM_MAX + 1];
	memset(big, 'A', sizeof(big));
	cr_expect_eq(pki_cert_from_pem(big, sizeof(big), &x, &e), -EFBIG);
	cr_expect_eq(pki_csr_from_pem(big, sizeof(big), &r, &e), -EFBIG);
	cr_expect_eq(pki_cert_from_pem("", 0, &x, &e), -EINVAL);
	const char *trunc = "-----BEGIN CERTIFICATE-----\nMIIB\n";
	cr_expect_eq(pki_cert_from_pem(trunc, strlen(trunc), &x, &e), -EINVAL);
	cr_expect(strstr(e.msg, "not a PEM certificate"), "%s", e.msg);
	/* A certificate is not a request, nor the other way round. */
	struct ca ca;
	ca_make(&ca, "fleet-ca");
	char *pem;
	size_t len;
	cr_assert_eq(pki_cert_to_pem(ca.cert, &pem, &len, NULL), 0);
	cr_expect_eq(pki_csr_from_pem(pem, len, &r, &e), -EINVAL);
	free(pem);
	cr_expect_null(x);
	cr_expect_null(r);
	cr_expect_eq(ERR_peek_error(), 0, "OpenSSL error queue left behind");
	ca_free(&ca);
	expect_no_leaks();
}

/* ---- signatures ---- */

Test(pki, sign_and_verify_flipped_bits_refused)
{
	EVP_PKEY *k, *other;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	cr_assert_eq(pki_key_new(&other, NULL), 0);
	uint8_t msg[300], sig[SIGN_LEN];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7);
	cr_assert_eq(sign_data(k, msg, sizeof(msg), sig), 0);
	cr_expect_eq(sign_verify(k, msg, sizeof(msg), sig, sizeof(sig)), 0);
	/* Every bit of the signature matters. */
	for (size_t bit = 0; bit < 8 * SIGN_LEN; bit++) {
		sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_expect_eq(sign_verify(k, msg, sizeof(msg), sig,
					 sizeof(sig)), -EBADMSG,
			     "signature bit %zu", bit);
		sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	/* A bit of the message, its length, another key, a short or long
	 * signature. */
	msg[123] ^= 0x10;
	cr_expect_eq(sign_verify(k, msg, sizeof(msg), sig, sizeof(sig)),
		     -EBADMSG);
	msg[123] ^= 0x10;
	cr_expect_eq(sign_verify(k, msg, sizeof(msg) - 1, sig, sizeof(sig)),
		     -EBADMSG);
	cr_expect_eq(sign_verify(other, msg, sizeof(msg), sig, sizeof(sig)),
		     -EBADMSG);
	cr_expect_eq(sign_verify(k, msg, sizeof(msg), sig, 63), -EBADMSG);
	uint8_t longer[65] = { 0 };
	memcpy(longer, sig, sizeof(sig));
	cr_expect_eq(sign_verify(k, msg, sizeof(msg), longer, 65), -EBADMSG);
	cr_expect_eq(sign_verify(k, msg, sizeof(msg), sig, sizeof(sig)), 0);
	/* An empty message is a message. */
	cr_assert_eq(sign_data(k, (const uint8_t *)"", 0, sig), 0);
	cr_expect_eq(sign_verify(k, (const uint8_t *)"", 0, sig, sizeof(sig)),
		     0);
	cr_expect_eq(ERR_peek_error(), 0, "OpenSSL error queue left behind");
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	expect_no_leaks();
}

Test(pki, sign_refuses_wrong_keys)
{
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert(ec);
	uint8_t sig[SIGN_LEN] = { 0 };
	cr_expect_eq(sign_data(ec, (const uint8_t *)"x", 1, sig), -EINVAL);
	cr_expect_eq(sign_verify(ec, (const uint8_t *)"x", 1, sig, SIGN_LEN),
		     -EINVAL);
	char id[65];
	cr_expect_eq(sign_key_id(ec, id), -EINVAL);
	/* The public half alone cannot sign. */
	EVP_PKEY *k;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	uint8_t raw[32];
	size_t n = sizeof(raw);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
	EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
						    raw, n);
	cr_assert(pub);
	cr_expect_eq(sign_data(pub, (const uint8_t *)"x", 1, sig), -EINVAL);
	cr_assert_eq(sign_data(k, (const uint8_t *)"x", 1, sig), 0);
	cr_expect_eq(sign_verify(pub, (const uint8_t *)"x", 1, sig, SIGN_LEN),
		     0);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(k);
	EVP_PKEY_free(ec);
	expect_no_leaks();
}

Test(pki, key_id_stable_and_public_file_round_trip)
{
	EVP_PKEY *k, *other, *pub;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	cr_assert_eq(pki_key_new(&other, NULL), 0);
	char id1[65], id2[65], ido[65], idp[65], want[65];
	cr_assert_eq(sign_key_id(k, id1), 0);
	cr_assert_eq(sign_key_id(k, id2), 0);
	cr_assert_eq(sign_key_id(other, ido), 0);
	cr_expect_str_eq(id1, id2);
	cr_expect_str_neq(id1, ido);
	uint8_t raw[32], md[32];
	size_t n = sizeof(raw);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
	SHA256(raw, n, md);
	pki_hex(md, sizeof(md), want);
	cr_expect_str_eq(id1, want);
	char *dir = t_tmpdir(), pp[256], kp[256];
	snprintf(pp, sizeof(pp), "%s/policy.pub", dir);
	snprintf(kp, sizeof(kp), "%s/policy.key", dir);
	struct parley_err e = { 0 };
	cr_assert_eq(sign_write_pub(pp, k, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(file_mode(pp), 0644);
	cr_assert_eq(sign_read_pub(pp, &pub, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(sign_key_id(pub, idp), 0);
	cr_expect_str_eq(id1, idp);
	/* The public file holds no private key. */
	uint8_t sig[SIGN_LEN];
	cr_expect_eq(sign_data(pub, (const uint8_t *)"m", 1, sig), -EINVAL);
	cr_assert_eq(sign_data(k, (const uint8_t *)"m", 1, sig), 0);
	cr_expect_eq(sign_verify(pub, (const uint8_t *)"m", 1, sig, SIGN_LEN),
		     0);
	/* A private key file, an EC public key: refused. */
	cr_assert_eq(pki_write_key(kp, k, NULL), 0);
	EVP_PKEY *bad = NULL;
	cr_expect_eq(sign_read_pub(kp, &bad, &e), -EINVAL);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert(ec);
	cr_assert_eq(sign_write_pub(pp, ec, NULL), 0);
	cr_expect_eq(sign_read_pub(pp, &bad, &e), -EKEYREJECTED);
	cr_expect(strstr(e.msg, "not Ed25519"), "%s", e.msg);
	cr_expect_null(bad);
	EVP_PKEY_free(ec);
	t_rmtree(dir);
	free(dir);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	expect_no_leaks();
}

/* ---- the parley-pki tool ---- */

static char *tool_out(char *const argv[], int want_status)
{
	char *out = NULL;
	int st = t_run(argv, &out, 30);
	cr_expect_eq(st, want_status, "%s %s: status %d: %s", argv[1], argv[2],
		     st, out ? out : "");
	return out;
}

static char *dir_path(const char *dir, const char *name)
{
	char *p;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static X509 *read_cert_in(const char *dir, const char *name)
{
	char *p = dir_path(dir, name);
	X509 *x;
	struct parley_err e = { 0 };
	cr_assert_eq(pki_read_cert(p, &x, &e), 0, "%s", perr_msg(&e));
	free(p);
	return x;
}

Test(pki, tool_makes_a_working_pki)
{
	if (access(T_BIN("parley-pki"), X_OK) != 0)
		cr_assert_fail("%s not built: the build makes it",
			       T_BIN("parley-pki"));
	char *dir = t_tmpdir();
	char *pk = dir_path(dir, "pki");
	char *ca[] = { T_BIN("parley-pki"), "ca", pk, NULL };
	char *cli[] = { T_BIN("parley-pki"), "issue", pk, "agent-1", NULL };
	char *srv[] = { T_BIN("parley-pki"), "issue", pk, "parleyd",
			"--server", "--days", "7", NULL };
	char *old[] = { T_BIN("parley-pki"), "issue", pk, "old", "--expired",
			NULL };
	char *bad[] = { T_BIN("parley-pki"), "issue", pk, "../x", NULL };
	char *baddays[] = { T_BIN("parley-pki"), "issue", pk, "a", "--days",
			    "0", NULL };
	free(tool_out(ca, 0));
	char *again = tool_out(ca, 1); /* never replaces a CA */
	cr_expect(again && strstr(again, "exists"), "%s", again);
	free(again);
	free(tool_out(cli, 0));
	free(tool_out(srv, 0));
	free(tool_out(old, 0));
	free(tool_out(bad, 2));
	free(tool_out(baddays, 2));
	X509 *cax = read_cert_in(pk, "ca.crt");
	X509 *c = read_cert_in(pk, "agent-1.crt");
	X509 *s = read_cert_in(pk, "parleyd.crt");
	X509 *o = read_cert_in(pk, "old.crt");
	cr_expect_eq(pki_verify(cax, c, false, NULL), 0);
	cr_expect_eq(pki_verify(cax, s, true, NULL), 0);
	cr_expect_eq(pki_verify(cax, o, false, NULL), -EKEYEXPIRED);
	char *kp = dir_path(pk, "agent-1.key");
	char *pp = dir_path(pk, "policy.pub");
	char *polk = dir_path(pk, "policy.key");
	cr_expect_eq(file_mode(kp), 0600);
	cr_expect_eq(file_mode(polk), 0600);
	EVP_PKEY *k, *pub, *pk2;
	cr_assert_eq(pki_read_key(kp, &k, NULL), 0);
	cr_expect_eq(EVP_PKEY_eq(k, X509_get0_pubkey(c)), 1);
	cr_assert_eq(sign_read_pub(pp, &pub, NULL), 0);
	cr_assert_eq(pki_read_key(polk, &pk2, NULL), 0);
	uint8_t sig[SIGN_LEN];
	cr_assert_eq(sign_data(pk2, (const uint8_t *)"b", 1, sig), 0);
	cr_expect_eq(sign_verify(pub, (const uint8_t *)"b", 1, sig, SIGN_LEN),
		     0);
	EVP_PKEY_free(k);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(pk2);
	X509_free(cax);
	X509_free(c);
	X509_free(s);
	X509_free(o);
	free(kp);
	free(pp);
	free(polk);
	t_rmtree(dir);
	free(pk);
	free(dir);
}
