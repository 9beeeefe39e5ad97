/*
 * Disk keys sealed to one host (issue 13): the daemon's key process seals
 * a disk's 64-byte XTS key to the host's certificate key, the agent opens
 * it with its private half. ECIES over X25519:
 *
 *   sealed = u8 1 | ephemeral X25519 public (32) | nonce (12) |
 *            AES-256-GCM(key) (64) | tag (16)                 = SEAL_LEN
 *   k      = HKDF-SHA256(ikm = X25519(eph, host), salt = eph_pub ||
 *                        host_pub, info = "parley disk key seal v1")
 *   aad    = "parley-disk-key\0" host \0 partition \0 disk \0 u64 version
 *
 * Agents' keys are Ed25519 (pki_key_new): the X25519 key is the
 * birational map of the Ed25519 one (RFC 7748 section 4.1; libsodium's
 * crypto_sign_ed25519_pk_to_curve25519), the private half from the
 * SHA-512 of the seed as Ed25519 itself derives its scalar. A sealed key
 * opens only with that host's private key, and only for the (host,
 * partition, disk, version) it was sealed for: moved to another entry it
 * fails its tag. An ECDSA P-256 host key is refused (-EKEYREJECTED).
 */
#ifndef PARLEY_COMMON_SEAL_H
#define PARLEY_COMMON_SEAL_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "common/err.h"

#define SEAL_KEY_LEN 64                      /* an XTS key: two halves */
#define SEAL_LEN (1 + 32 + 12 + SEAL_KEY_LEN + 16)

/* What a sealed key is bound to. Names as the policy has them. */
struct seal_ctx {
	const char *host, *partition, *disk;
	uint64_t version;
};

/* Seal key[] to pub (an Ed25519 public key, or a private one: its public
 * half is used). */
int seal_key(EVP_PKEY *pub, const struct seal_ctx *c,
	     const uint8_t key[SEAL_KEY_LEN], uint8_t out[SEAL_LEN],
	     struct parley_err *err);
/* Open with the Ed25519 private key. -EBADMSG for anything that is not
 * a key sealed to us for exactly c (wrong length, kind, tag); key[] is
 * wiped on failure. */
int seal_open(EVP_PKEY *priv, const struct seal_ctx *c, const uint8_t *in,
	      size_t len, uint8_t key[SEAL_KEY_LEN], struct parley_err *err);

/* AES-256-GCM with a random nonce, for the daemon's wrapping of disk keys
 * at rest: out = nonce (12) | ct (len) | tag (16). */
#define WRAP_OVERHEAD (12 + 16)
int seal_gcm(const uint8_t k[32], const uint8_t *aad, size_t aadlen,
	     const uint8_t *in, size_t len, uint8_t *out);
/* -EBADMSG when the tag does not match; out[] wiped then. */
int seal_gcm_open(const uint8_t k[32], const uint8_t *aad, size_t aadlen,
		  const uint8_t *in, size_t len, uint8_t *out);

/* What the daemon binds a wrapped disk key to (daemon/keys/): moved to
 * another (partition, disk, version) it does not unwrap. out holds at
 * least SEAL_WRAP_AAD_MAX bytes; names are at most 63 bytes. */
#define SEAL_WRAP_AAD_MAX (16 + 2 * 64 + 8)
size_t seal_wrap_aad(const char *partition, const char *disk,
		     uint64_t version, uint8_t *out);

#endif
