/* Disk keys sealed to a host (seal.h). */
#include "common/seal.h"

#include <errno.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define KIND_X25519 1
#define INFO "parley disk key seal v1"
#define AAD_MAX (16 + 3 * 64 + 8)

/* Ed25519 public y -> X25519 u = (1 + y) / (1 - y) mod 2^255 - 19. */
static int ed_to_x_pub(const uint8_t ed[32], uint8_t x[32])
{
	uint8_t be[32];
	for (int i = 0; i < 32; i++)
		be[i] = ed[31 - i];
	be[0] &= 0x7f;                     /* the sign bit of x */
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *p = BN_new(), *y = BN_new(), *one = BN_new(), *n = BN_new(),
	       *d = BN_new(), *u = BN_new();
	int rc = -ENOMEM;
	if (ctx && p && y && one && n && d && u && BN_one(one) &&
	    BN_set_bit(p, 255) && BN_sub_word(p, 19) &&
	    BN_bin2bn(be, 32, y) && BN_mod_add(n, one, y, p, ctx) &&
	    BN_mod_sub(d, one, y, p, ctx)) {
		/* y = 1 has no image: not a key anyone made. */
		if (BN_is_zero(d))
			rc = -EKEYREJECTED;
		else if (BN_mod_inverse(d, d, p, ctx) &&
			 BN_mod_mul(u, n, d, p, ctx) &&
			 BN_bn2lebinpad(u, x, 32) == 32)
			rc = 0;
	}
	BN_free(p), BN_free(y), BN_free(one), BN_free(n), BN_free(d);
	BN_free(u);
	BN_CTX_free(ctx);
	return rc;
}

static int host_x_pub(EVP_PKEY *k, uint8_t x[32], struct parley_err *err)
{
	uint8_t ed[32];
	size_t n = sizeof(ed);
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519)
		return perr(err, -EKEYREJECTED, "disk keys are sealed to "
			    "Ed25519 host keys only");
	if (EVP_PKEY_get_raw_public_key(k, ed, &n) != 1 || n != 32 ||
	    ed_to_x_pub(ed, x) < 0)
		return perr(err, -EKEYREJECTED, "host key: not usable");
	return 0;
}

static size_t aad_of(const struct seal_ctx *c, uint8_t *a)
{
	size_t n = 0;
	static const char tag[16] = "parley-disk-key";
	memcpy(a, tag, 16);
	n = 16;
	const char *f[3] = { c->host, c->partition, c->disk };
	for (int i = 0; i < 3; i++) {
		size_t l = strnlen(f[i], 63);
		memcpy(a + n, f[i], l);
		n += l;
		a[n++] = 0;
	}
	for (int i = 7; i >= 0; i--)
		a[n++] = (uint8_t)(c->version >> (8 * i));
	return n;
}

static int hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
		size_t saltlen, uint8_t out[32])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM ps[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						  (void *)ikm, ikmlen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
						  (void *)salt, saltlen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
						  (void *)INFO,
						  sizeof(INFO) - 1),
		OSSL_PARAM_construct_end(),
	};
	int rc = kc && EVP_KDF_derive(kc, out, 32, ps) == 1 ? 0 : -ENOMEM;
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return rc;
}

/* The shared key: X25519(mine, theirs), through HKDF. */
static int derive(EVP_PKEY *mine, const uint8_t theirs[32],
		  const uint8_t salt[64], uint8_t k[32])
{
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL,
						     theirs, 32);
	EVP_PKEY_CTX *c = peer ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
	uint8_t z[32];
	size_t zl = sizeof(z);
	int rc = -EBADMSG;
	if (c && EVP_PKEY_derive_init(c) == 1 &&
	    EVP_PKEY_derive_set_peer(c, peer) == 1 &&
	    EVP_PKEY_derive(c, z, &zl) == 1 && zl == 32)
		rc = hkdf(z, 32, salt, 64, k);
	OPENSSL_cleanse(z, sizeof(z));
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(peer);
	return rc;
}

int seal_gcm(const uint8_t k[32], const uint8_t *aad, size_t aadlen,
	     const uint8_t *in, size_t len, uint8_t *out)
{
	if (RAND_bytes(out, 12) != 1)
		return -EIO;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, m = 0, rc = -ENOMEM;
	if (c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, out) == 1 &&
	    EVP_EncryptUpdate(c, NULL, &n, aad, (int)aadlen) == 1 &&
	    EVP_EncryptUpdate(c, out + 12, &n, in, (int)len) == 1 &&
	    EVP_EncryptFinal_ex(c, out + 12 + n, &m) == 1 &&
	    (size_t)(n + m) == len &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16,
				out + 12 + len) == 1)
		rc = 0;
	EVP_CIPHER_CTX_free(c);
	return rc;
}

int seal_gcm_open(const uint8_t k[32], const uint8_t *aad, size_t aadlen,
		  const uint8_t *in, size_t len, uint8_t *out)
{
	if (len < WRAP_OVERHEAD)
		return -EBADMSG;
	size_t ct = len - WRAP_OVERHEAD;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, m = 0, rc = -ENOMEM;
	if (c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, in) == 1 &&
	    EVP_DecryptUpdate(c, NULL, &n, aad, (int)aadlen) == 1 &&
	    EVP_DecryptUpdate(c, out, &n, in + 12, (int)ct) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
				(void *)(in + 12 + ct)) == 1)
		rc = EVP_DecryptFinal_ex(c, out + n, &m) == 1 ? 0 : -EBADMSG;
	EVP_CIPHER_CTX_free(c);
	if (rc < 0)
		OPENSSL_cleanse(out, ct);
	return rc;
}

int seal_key(EVP_PKEY *pub, const struct seal_ctx *c,
	     const uint8_t key[SEAL_KEY_LEN], uint8_t out[SEAL_LEN],
	     struct parley_err *err)
{
	uint8_t salt[64], k[32], aad[AAD_MAX];
	size_t n = 32;
	int rc = host_x_pub(pub, salt + 32, err);
	if (rc < 0)
		return rc;
	EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	if (!eph || EVP_PKEY_get_raw_public_key(eph, salt, &n) != 1) {
		EVP_PKEY_free(eph);
		return perr(err, -ENOMEM, "seal: no ephemeral key");
	}
	out[0] = KIND_X25519;
	memcpy(out + 1, salt, 32);
	rc = derive(eph, salt + 32, salt, k);
	EVP_PKEY_free(eph);
	if (rc == 0)
		rc = seal_gcm(k, aad, aad_of(c, aad), key, SEAL_KEY_LEN,
			      out + 33);
	OPENSSL_cleanse(k, sizeof(k));
	return rc < 0 ? perr(err, rc, "seal: %s", strerror(-rc)) : 0;
}

/* The X25519 private key of an Ed25519 one: the scalar Ed25519 derives
 * from its seed (the first half of SHA-512(seed); X25519 clamps it). */
static EVP_PKEY *x_priv(EVP_PKEY *ed)
{
	uint8_t seed[32], h[64];
	size_t n = sizeof(seed);
	EVP_PKEY *x = NULL;
	if (EVP_PKEY_get_raw_private_key(ed, seed, &n) == 1 && n == 32 &&
	    SHA512(seed, 32, h))
		x = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, h, 32);
	OPENSSL_cleanse(seed, sizeof(seed));
	OPENSSL_cleanse(h, sizeof(h));
	return x;
}

int seal_open(EVP_PKEY *priv, const struct seal_ctx *c, const uint8_t *in,
	      size_t len, uint8_t key[SEAL_KEY_LEN], struct parley_err *err)
{
	uint8_t salt[64], k[32], aad[AAD_MAX];
	if (len != SEAL_LEN)
		return perr(err, -EBADMSG, "sealed key: %zu bytes, not %d",
			    len, SEAL_LEN);
	if (in[0] != KIND_X25519)
		return perr(err, -EBADMSG, "sealed key: kind %u unknown",
			    in[0]);
	int rc = host_x_pub(priv, salt + 32, err);
	if (rc < 0)
		return rc;
	memcpy(salt, in + 1, 32);
	EVP_PKEY *x = x_priv(priv);
	rc = x ? derive(x, salt, salt, k) : -EKEYREJECTED;
	EVP_PKEY_free(x);
	if (rc == 0)
		rc = seal_gcm_open(k, aad, aad_of(c, aad), in + 33,
				   SEAL_LEN - 33, key);
	OPENSSL_cleanse(k, sizeof(k));
	if (rc < 0) {
		OPENSSL_cleanse(key, SEAL_KEY_LEN);
		return perr(err, rc == -EBADMSG ? -EBADMSG : rc,
			    "sealed key for %s/%s v%llu: %s", c->partition,
			    c->disk, (unsigned long long)c->version,
			    rc == -EBADMSG ? "does not open with this host's "
			    "key (not sealed to it, or for another entry)"
					   : strerror(-rc));
	}
	return 0;
}

size_t seal_wrap_aad(const char *partition, const char *disk,
		     uint64_t version, uint8_t *a)
{
	size_t n = 16, l;
	memcpy(a, "parley-disk-wrap", 16);
	l = strnlen(partition, 63);
	memcpy(a + n, partition, l);
	n += l;
	a[n++] = 0;
	l = strnlen(disk, 63);
	memcpy(a + n, disk, l);
	n += l;
	a[n++] = 0;
	for (int i = 7; i >= 0; i--)
		a[n++] = (uint8_t)(version >> (8 * i));
	return n;
}
