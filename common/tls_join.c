#include "common/tls_join.h"
#include "common/pki.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* TLS 1.3 only; no resumption (one exchange per connection: nothing to
 * resume, and one more way in). */
static int ctx_base(SSL_CTX *ctx, struct parley_err *err)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		return pki_ossl_err(err, -EINVAL, "TLS 1.3 only");
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return 0;
}

static int ctx_identity(SSL_CTX *ctx, const char *ca, const char *cert,
			const char *key, struct parley_err *err)
{
	X509 *x = NULL, *cax = NULL;
	EVP_PKEY *k = NULL;
	int rc = pki_read_cert(cert, &x, err);
	if (!rc)
		rc = pki_read_key(key, &k, err);
	if (!rc)
		rc = pki_read_cert(ca, &cax, err);
	if (!rc && X509_check_private_key(x, k) != 1)
		rc = pki_ossl_err(err, -EINVAL,
				  "%s does not match the key in %s", key, cert);
	if (!rc && (SSL_CTX_use_certificate(ctx, x) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, k) != 1))
		rc = pki_ossl_err(err, -EINVAL, "%s: unusable", cert);
	/* add1: the context takes its own reference. */
	if (!rc && SSL_CTX_add1_chain_cert(ctx, cax) != 1)
		rc = pki_ossl_err(err, -EINVAL, "%s: as chain certificate", ca);
	X509_free(cax);
	EVP_PKEY_free(k);
	X509_free(x);
	return rc;
}

SSL_CTX *tls_server_ctx_noclient(const char *ca, const char *cert,
				 const char *key, struct parley_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		pki_ossl_err(err, -ENOMEM, "SSL_CTX_new");
		return NULL;
	}
	int rc = ctx_base(ctx, err);
	if (!rc && !SSL_CTX_set_num_tickets(ctx, 0))
		rc = pki_ossl_err(err, -EINVAL, "no tickets");
	/* The joining agent has no certificate: none is asked for. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (!rc)
		rc = ctx_identity(ctx, ca, cert, key, err);
	if (rc < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The certificate of `chain` whose SHA-256 is `hex`, or NULL. */
static X509 *find_pinned(STACK_OF(X509) *chain, const char *hex)
{
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		char fp[65];
		X509 *c = sk_X509_value(chain, i);
		if (pki_fingerprint(c, fp) == 0 && !strcmp(fp, hex))
			return c;
	}
	return NULL;
}

/* Replaces OpenSSL's chain verification for the join client: the pinned
 * certificate, found among what the server sent, is the only anchor; the
 * rest (purpose, name or address, validity) is OpenSSL's usual check. */
static int verify_pinned(X509_STORE_CTX *x, void *arg)
{
	struct tls_pin *pin = arg;
	X509 *ca = find_pinned(X509_STORE_CTX_get0_untrusted(x),
			       pin->ca_sha256);
	if (!ca) {
		pin->failed = true;
		snprintf(pin->why, sizeof(pin->why), "the server's chain holds "
			 "no CA certificate with SHA-256 %.16s... (the value "
			 "parley-pki ca printed: the certificate's DER form, "
			 "not sha256sum of ca.crt)", pin->ca_sha256);
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_UNTRUSTED);
		return 0;
	}
	STACK_OF(X509) *anchors = sk_X509_new_null();
	if (!anchors || !sk_X509_push(anchors, ca)) {
		sk_X509_free(anchors);
		X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
		return 0;
	}
	X509_STORE_CTX_set0_trusted_stack(x, anchors);
	int ok = X509_verify_cert(x);
	if (ok != 1) {
		pin->failed = true;
		snprintf(pin->why, sizeof(pin->why), "the server certificate "
			 "does not verify against the pinned CA: %s",
			 X509_verify_cert_error_string(
				 X509_STORE_CTX_get_error(x)));
	}
	X509_STORE_CTX_set0_trusted_stack(x, NULL);
	sk_X509_free(anchors);
	return ok == 1;
}

SSL_CTX *tls_join_client_ctx(struct tls_pin *pin, struct parley_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		pki_ossl_err(err, -ENOMEM, "SSL_CTX_new");
		return NULL;
	}
	int rc = ctx_base(ctx, err);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_pinned, pin);
	if (!rc && !SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER))
		rc = pki_ossl_err(err, -EINVAL, "certificate purpose");
	if (rc < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
