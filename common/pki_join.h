/*
 * Issuing an agent's certificate when it joins (daemon/join.c): the
 * request comes from a machine that is not yet known, so its subject is
 * ignored and the daemon names the host -- from the join token.
 */
#ifndef PARLEY_COMMON_PKI_JOIN_H
#define PARLEY_COMMON_PKI_JOIN_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include "common/err.h"

/*
 * As pki_csr_sign (signature checked against the request's own key:
 * -EBADMSG; Ed25519 or P-256 only: -EKEYREJECTED; days 1..36500: -EINVAL),
 * but the certificate's CN is `cn` (a valid name, jv_name_valid, cap
 * PKI_CN_MAX: -EINVAL) whatever the request's subject says. Only the
 * public key is taken from the request. *out is the caller's (X509_free).
 */
int pki_csr_sign_as(EVP_PKEY *ca_key, X509 *ca_cert, X509_REQ *req,
		    const char *cn, int days, X509 **out,
		    struct parley_err *err);

#endif
