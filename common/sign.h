/*
 * Ed25519 signatures over policy bundles (DESIGN.md §2): the daemon signs
 * each host's bundle with its policy key, the agent verifies it with the
 * public half it was given at install time. The key pair is an ordinary
 * Ed25519 EVP_PKEY (pki_key_new, pki_read_key / pki_write_key for the
 * private half); the public half travels as a PEM SubjectPublicKeyInfo
 * file.
 */
#ifndef PARLEY_COMMON_SIGN_H
#define PARLEY_COMMON_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "common/err.h"

#define SIGN_LEN 64
/* Cap on a public key file: its PEM is about 113 bytes. */
#define SIGN_PUB_MAX 4096

/* Sign msg with an Ed25519 private key. 0, or -EINVAL when key is not an
 * Ed25519 private key, -ENOMEM. */
int sign_data(EVP_PKEY *key, const uint8_t *msg, size_t len,
	      uint8_t sig[SIGN_LEN]);

/* 0 when sig is a valid Ed25519 signature of msg by pub; -EBADMSG for any
 * signature that is not (wrong length included); -EINVAL when pub is not
 * an Ed25519 key. */
int sign_verify(EVP_PKEY *pub, const uint8_t *msg, size_t len,
		const uint8_t *sig, size_t siglen);

/* SHA-256 of the 32-byte raw public key, lower-case hex: names the key in
 * bundles and logs. Works on a private or a public-only key. */
int sign_key_id(EVP_PKEY *key, char hex[65]);

/* Public half only, as PEM SubjectPublicKeyInfo, written atomically with
 * mode 0644 / read capped at SIGN_PUB_MAX; reading refuses a key that is
 * not Ed25519 (-EKEYREJECTED). */
int sign_write_pub(const char *path, EVP_PKEY *key, struct parley_err *err);
int sign_read_pub(const char *path, EVP_PKEY **out, struct parley_err *err);

#endif
