#include "common/pki_join.h"
#include "common/jsonv.h"
#include "common/pki.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

/* As common/pki.c: a hundred years. */
#define JOIN_DAYS_MAX 36500

/* The key types pki_csr_sign admits (its check is private to pki.c). */
static bool key_ok(EVP_PKEY *k)
{
	if (EVP_PKEY_is_a(k, "ED25519"))
		return true;
	if (!EVP_PKEY_is_a(k, "EC"))
		return false;
	char group[64];
	if (!EVP_PKEY_get_group_name(k, group, sizeof(group), NULL))
		return false;
	return OBJ_sn2nid(group) == NID_X9_62_prime256v1 ||
	       EC_curve_nist2nid(group) == NID_X9_62_prime256v1;
}

int pki_csr_sign_as(EVP_PKEY *ca_key, X509 *ca_cert, X509_REQ *req,
		    const char *cn, int days, X509 **out,
		    struct parley_err *err)
{
	*out = NULL;
	if (days < 1 || days > JOIN_DAYS_MAX)
		return perr(err, -EINVAL, "days must be 1..%d, not %d",
			    JOIN_DAYS_MAX, days);
	if (!cn || !jv_name_valid(cn, strlen(cn), PKI_CN_MAX))
		return perr(err, -EINVAL, "CN is not a valid host name");
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if (!pub)
		return pki_ossl_err(err, -EINVAL, "CSR: no usable public key");
	if (!key_ok(pub)) {
		ERR_clear_error();
		return perr(err, -EKEYREJECTED,
			    "CSR: key type %s refused (Ed25519 or P-256 only)",
			    EVP_PKEY_get0_type_name(pub));
	}
	if (X509_REQ_verify(req, pub) != 1)
		return pki_ossl_err(err, -EBADMSG,
				    "CSR: signature does not match its key");
	return pki_issue(ca_key, ca_cert, pub, cn, -PKI_SKEW_S,
			 days * 86400L, false, out, err);
}
