/*
 * The small PKI parley needs: one CA per fleet that signs the daemon's
 * server certificate and one client certificate per agent host, whose CN is
 * the host's name (its identity on the agent link, DESIGN.md §2).
 *
 * Keys are Ed25519 (OpenSSL 3.0 does TLS 1.3 with Ed25519 certificates on
 * both sides; tests/test_tls.c proves it). Certificates are X.509 v3 with a
 * random positive 128-bit serial. Objects are plain OpenSSL ones: the caller
 * frees them with EVP_PKEY_free / X509_free / X509_REQ_free.
 *
 * Every function returns 0 or a negative errno and, where it takes one,
 * fills `err` with a message that includes OpenSSL's reason. Certificates
 * that are refused give -EKEYREJECTED (-EKEYEXPIRED when out of their
 * validity window); a signature that does not match gives -EBADMSG.
 */
#ifndef PARLEY_COMMON_PKI_H
#define PARLEY_COMMON_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "common/err.h"

/* ub-common-name in X.509: a CN longer than this cannot be encoded. */
#define PKI_CN_MAX 64
/* Cap on PEM read from a file or the wire; ours are well under 2 KiB. */
#define PKI_PEM_MAX (16 * 1024)
/* Seconds a new certificate is back-dated, for clocks slightly behind. */
#define PKI_SKEW_S 300

/* A fresh Ed25519 key pair. */
int pki_key_new(EVP_PKEY **out, struct parley_err *err);

/* A self-signed CA certificate (basicConstraints CA:TRUE critical,
 * keyUsage keyCertSign+cRLSign critical) for a new key, valid from
 * PKI_SKEW_S ago for `days` days (1..36500). */
int pki_ca_new(const char *cn, int days, EVP_PKEY **key, X509 **cert,
	       struct parley_err *err);

/*
 * Issue a leaf certificate for subject_key's public half, CN = `cn`
 * (any 1..PKI_CN_MAX-byte UTF-8 string: this is the mechanism, callers
 * apply the naming policy -- tests make certificates with bad names),
 * valid from now + not_before_offset_s to now + not_after_offset_s (both
 * may be negative, for already-expired certificates in tests).
 * server: extendedKeyUsage serverAuth and subjectAltName IP:127.0.0.1,
 * IP:::1, DNS:localhost (and DNS:cn when cn is a valid name); else
 * extendedKeyUsage clientAuth and no subjectAltName. Always
 * basicConstraints CA:FALSE and keyUsage digitalSignature, both critical.
 */
int pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, EVP_PKEY *subject_key,
	      const char *cn, long not_before_offset_s,
	      long not_after_offset_s, bool server, X509 **out,
	      struct parley_err *err);

/* Check `cert` against `ca` alone (no system trust store), now, for the
 * given purpose (server: serverAuth, else clientAuth). -EKEYEXPIRED when
 * expired or not yet valid, -EKEYREJECTED otherwise. */
int pki_verify(X509 *ca, X509 *cert, bool server, struct parley_err *err);

/* Files. Written atomically (temporary file in the same directory,
 * fsync, rename, fsync of the directory): keys 0600, certificates and
 * public keys 0644. Reads are capped at PKI_PEM_MAX and take the first
 * PEM object of the right type. */
int pki_write_key(const char *path, EVP_PKEY *key, struct parley_err *err);
int pki_write_cert(const char *path, X509 *cert, struct parley_err *err);
int pki_read_key(const char *path, EVP_PKEY **out, struct parley_err *err);
int pki_read_cert(const char *path, X509 **out, struct parley_err *err);

/* Write `len` bytes to `path` atomically with file mode `mode`. */
int pki_write_file(const char *path, const void *buf, size_t len,
		   mode_t mode, struct parley_err *err);

/* SHA-256 of the certificate's DER, lower-case hex, NUL-terminated. */
int pki_fingerprint(X509 *cert, char hex[65]);

/* n bytes as 2n lower-case hex digits and a NUL. */
void pki_hex(const unsigned char *in, size_t n, char *out);

/* The certificate's subject CN as a NUL-terminated UTF-8 string; exactly
 * one CN must be present, without NUL bytes, shorter than cap. */
int pki_cert_cn(X509 *cert, char *out, size_t cap, struct parley_err *err);

/* A certificate signing request for `key` with subject CN = cn, signed by
 * key (so its holder proves possession). */
int pki_csr_new(EVP_PKEY *key, const char *cn, X509_REQ **out,
		struct parley_err *err);

/* The key types a CSR may carry: Ed25519 or EC on P-256 (the signer's
 * rule; a join checks it before spending a token). */
bool pki_csr_key_ok(EVP_PKEY *pub);

/*
 * Sign a CSR from an agent as a client certificate valid for `days`
 * (1..36500) days. The request is untrusted: its signature must verify
 * with its own public key (-EBADMSG), the key must be Ed25519 or ECDSA
 * P-256 (-EKEYREJECTED), and its subject must hold exactly one CN that is
 * a valid name (jv_name_valid, cap PKI_CN_MAX; -EINVAL). Only that CN and
 * the public key are copied; the request's extensions and any other
 * subject fields are ignored.
 */
int pki_csr_sign(EVP_PKEY *ca_key, X509 *ca_cert, X509_REQ *req, int days,
		 X509 **out, struct parley_err *err);

/* PEM in memory, for the wire. *_to_pem: a new NUL-terminated string the
 * caller frees with free(); *len excludes the NUL. *_from_pem: at most
 * PKI_PEM_MAX bytes (-EFBIG), the first object of the type is taken. */
int pki_cert_to_pem(X509 *cert, char **pem, size_t *len,
		    struct parley_err *err);
int pki_cert_from_pem(const char *pem, size_t len, X509 **out,
		      struct parley_err *err);
int pki_csr_to_pem(X509_REQ *req, char **pem, size_t *len,
		   struct parley_err *err);
int pki_csr_from_pem(const char *pem, size_t len, X509_REQ **out,
		     struct parley_err *err);

/* Record `code` and a message "<fmt>: <OpenSSL's reasons>" in err, and
 * empty the calling thread's OpenSSL error queue (a stale entry would be
 * taken for the cause of a later failure). Returns code. */
int pki_ossl_err(struct parley_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
