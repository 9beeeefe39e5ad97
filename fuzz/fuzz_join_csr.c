/*
 * libFuzzer target for the join listener's request (daemon/join.c,
 * on_join): what a host that is not yet known sends — a token and a CSR —
 * through the same steps in the same order, short of the store and the
 * socket: pki_csr_from_pem, csr_precheck (the checks made before the token
 * is spent), join_token_digest, then pki_csr_sign_as with a CA the target
 * makes once.
 *
 * Input: the token up to the first '\n', then the CSR. A CSR part that
 * starts "-----BEGIN" is given as it is; anything else is taken as DER and
 * wrapped in PEM here, so that mutations reach the ASN.1 reader and the
 * checks rather than dying in base64.
 *
 * Oracle:
 *  - refusals carry their documented codes and printable messages;
 *  - a token is accepted if and only if it is "prj_" and 64 lower-case
 *    hex digits;
 *  - the precheck and the signer agree: a CSR passes csr_precheck if and
 *    only if pki_csr_sign_as signs it (otherwise a CSR that can never be
 *    signed spends the joiner's token, or a good one is refused);
 *  - what is signed verifies against the CA as a client certificate, is
 *    for the host the daemon names (never the CSR's subject) and carries
 *    the CSR's key.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"
#include "common/pki.h"
#include "common/pki_join.h"
#include "daemon/join.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST "host-7"

static EVP_PKEY *ca_key;
static X509 *ca_cert;

static void cleanup(void)
{
	EVP_PKEY_free(ca_key);
	X509_free(ca_cert);
}

static void setup(void)
{
	struct parley_err err = { 0 };
	PARLEY_ASSERT(pki_ca_new("fuzz-ca", 1, &ca_key, &ca_cert, &err) == 0);
	atexit(cleanup);
}

static void check_msg(int rc, const struct parley_err *err)
{
	PARLEY_ASSERT(err->code == rc && err->msg[0]);
	for (const char *c = err->msg; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
}

static bool token_well_formed(const char *t, size_t n)
{
	if (n != JOIN_TOKEN_LEN || memcmp(t, JOIN_TOKEN_PREFIX, 4))
		return false;
	for (size_t i = 4; i < n; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return false;
	return true;
}

/* As the JoinRequest's csr_pem reaches on_join: a NUL-terminated string
 * (a protobuf string), read up to its first NUL. */
static char *csr_text(const uint8_t *p, size_t n)
{
	static const char begin[] = "-----BEGIN";
	if (n >= sizeof(begin) - 1 && !memcmp(p, begin, sizeof(begin) - 1)) {
		char *s = malloc(n + 1);
		PARLEY_ASSERT(s);
		memcpy(s, p, n);
		s[n] = '\0';
		return s;
	}
	static const char head[] = "-----BEGIN CERTIFICATE REQUEST-----\n";
	static const char tail[] = "-----END CERTIFICATE REQUEST-----\n";
	size_t b64 = 4 * ((n + 2) / 3);
	/* 64 characters a line, as PEM writers do. */
	char *s = malloc(sizeof(head) + b64 + b64 / 64 + 2 + sizeof(tail));
	PARLEY_ASSERT(s);
	unsigned char *enc = malloc(b64 + 1);
	PARLEY_ASSERT(enc);
	EVP_EncodeBlock(enc, p, (int)n);
	size_t at = 0;
	memcpy(s, head, sizeof(head) - 1);
	at = sizeof(head) - 1;
	for (size_t i = 0; i < b64; i += 64) {
		size_t k = b64 - i < 64 ? b64 - i : 64;
		memcpy(s + at, enc + i, k);
		at += k;
		s[at++] = '\n';
	}
	memcpy(s + at, tail, sizeof(tail));
	free(enc);
	return s;
}

static void check_signed(X509_REQ *req, X509 *cert)
{
	struct parley_err err = { 0 };
	PARLEY_ASSERT(pki_verify(ca_cert, cert, false, &err) == 0);
	char cn[128];
	PARLEY_ASSERT(pki_cert_cn(cert, cn, sizeof(cn), &err) == 0);
	PARLEY_ASSERT(!strcmp(cn, HOST));
	PARLEY_ASSERT(EVP_PKEY_eq(X509_get0_pubkey(cert),
				  X509_REQ_get0_pubkey(req)) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ca_key)
		setup();
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl ? (size_t)(nl - data) : size;
	const uint8_t *csr = nl ? nl + 1 : data + size;
	size_t clen = size - (size_t)(csr - data);

	char *token = malloc(tlen + 1);
	PARLEY_ASSERT(token);
	memcpy(token, data, tlen);
	token[tlen] = '\0';
	uint8_t sha[32];
	int rc = join_token_digest(token, sha);
	PARLEY_ASSERT(rc == 0 || rc == -EINVAL);
	PARLEY_ASSERT((rc == 0) == token_well_formed(token, strlen(token)));
	free(token);

	char *pem = csr_text(csr, clen);
	struct parley_err err = { 0 };
	X509_REQ *req = NULL;
	rc = pki_csr_from_pem(pem, strlen(pem), &req, &err);
	free(pem);
	if (rc < 0) {
		PARLEY_ASSERT(!req);
		PARLEY_ASSERT(rc == -EINVAL || rc == -EFBIG || rc == -E2BIG);
		check_msg(rc, &err);
		return 0;
	}
	PARLEY_ASSERT(rc == 0 && req);
	struct parley_err perr_ = { 0 };
	int pre = csr_precheck(req, &perr_);
	PARLEY_ASSERT(pre == 0 || pre == -EKEYREJECTED || pre == -EBADMSG);
	if (pre < 0)
		check_msg(pre, &perr_);

	X509 *cert = NULL;
	struct parley_err serr = { 0 };
	int sign = pki_csr_sign_as(ca_key, ca_cert, req, HOST, JOIN_CERT_DAYS,
				   &cert, &serr);
	if (sign < 0) {
		PARLEY_ASSERT(!cert);
		check_msg(sign, &serr);
	}
	/* The precheck promises exactly the signer's rule. */
	PARLEY_ASSERT((pre == 0) == (sign == 0));
	if (sign == 0)
		check_signed(req, cert);
	X509_free(cert);
	X509_REQ_free(req);
	return 0;
}
