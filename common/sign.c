#include "common/sign.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "common/fileio.h"
#include "common/pki.h"

int sign_data(EVP_PKEY *key, const uint8_t *msg, size_t len,
	      uint8_t sig[SIGN_LEN])
{
	if (!EVP_PKEY_is_a(key, "ED25519"))
		return -EINVAL;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c)
		return -ENOMEM;
	size_t n = SIGN_LEN;
	int rc = 0;
	/* EdDSA is one-shot: no digest, the message is signed whole. A
	 * public-only key fails here. */
	if (EVP_DigestSignInit(c, NULL, NULL, NULL, key) != 1 ||
	    EVP_DigestSign(c, sig, &n, msg, len) != 1 || n != SIGN_LEN)
		rc = -EINVAL;
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return rc;
}

int sign_verify(EVP_PKEY *pub, const uint8_t *msg, size_t len,
		const uint8_t *sig, size_t siglen)
{
	if (!EVP_PKEY_is_a(pub, "ED25519"))
		return -EINVAL;
	if (siglen != SIGN_LEN)
		return -EBADMSG;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c)
		return -ENOMEM;
	int rc = -EBADMSG;
	if (EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) != 1)
		rc = -EINVAL;
	else if (EVP_DigestVerify(c, sig, siglen, msg, len) == 1)
		rc = 0;
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return rc;
}

int sign_key_id(EVP_PKEY *key, char hex[65])
{
	uint8_t raw[32], md[SHA256_DIGEST_LENGTH];
	size_t n = sizeof(raw);
	if (!EVP_PKEY_is_a(key, "ED25519") ||
	    EVP_PKEY_get_raw_public_key(key, raw, &n) != 1 || n != 32) {
		ERR_clear_error();
		return -EINVAL;
	}
	SHA256(raw, n, md);
	pki_hex(md, sizeof(md), hex);
	return 0;
}

int sign_write_pub(const char *path, EVP_PKEY *key, struct parley_err *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_PUBKEY(b, key)) {
		BIO_free(b);
		return pki_ossl_err(err, -EINVAL, "%s: encoding the key",
				    path);
	}
	char *p;
	long n = BIO_get_mem_data(b, &p);
	int rc = pki_write_file(path, p, (size_t)n, 0644, err);
	BIO_free(b);
	return rc;
}

int sign_read_pub(const char *path, EVP_PKEY **out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(path, SIGN_PUB_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	free(buf);
	if (!k)
		return pki_ossl_err(err, -EINVAL, "%s: not a PEM public key",
				    path);
	if (!EVP_PKEY_is_a(k, "ED25519")) {
		rc = perr(err, -EKEYREJECTED, "%s: a %s key, not Ed25519",
			  path, EVP_PKEY_get0_type_name(k));
		EVP_PKEY_free(k);
		return rc;
	}
	*out = k;
	return 0;
}
