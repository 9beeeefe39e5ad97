#include "common/checkpoint.h"
#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t put_be(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * (7 - i)));
	return 8;
}

void checkpoint_message(uint64_t seq, const uint8_t hash[32], int64_t time_ms,
			uint8_t out[CKPT_MSG_LEN])
{
	_Static_assert(sizeof(CKPT_FORMAT) - 1 == 26, "CKPT_MSG_LEN");
	size_t n = sizeof(CKPT_FORMAT) - 1;
	memcpy(out, CKPT_FORMAT, n);
	n += put_be(out + n, seq);
	memcpy(out + n, hash, 32);
	n += 32;
	put_be(out + n, (uint64_t)time_ms);
}

json_t *checkpoint_to_json(const struct checkpoint *c)
{
	char hash[65], sig[129];
	pki_hex(c->hash, sizeof(c->hash), hash);
	pki_hex(c->sig, sizeof(c->sig), sig);
	return json_pack("{s:s,s:I,s:s,s:I,s:s,s:s}", "format", CKPT_FORMAT,
			 "seq", (json_int_t)c->seq, "hash", hash, "time_ms",
			 (json_int_t)c->time_ms, "key_id", c->key_id,
			 "signature", sig);
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < 2 * n; i++) {
		char ch = s[i];
		int v = ch >= '0' && ch <= '9' ? ch - '0' :
			ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
		if (v < 0)
			return -EINVAL;
		if (out)
			out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] << 4) | v
						     : v);
	}
	return 0;
}

static const char *hex_member(const json_t *doc, const char *key, size_t n,
			      uint8_t *out)
{
	const char *s = json_string_value(json_object_get(doc, key));
	return s && unhex(s, out, n) == 0 ? s : NULL;
}

int checkpoint_from_json(const json_t *doc, struct checkpoint *c,
			 struct parley_err *err)
{
	static const char *const keys[] = { "format", "seq", "hash",
					    "time_ms", "key_id", "signature",
					    "id" };
	memset(c, 0, sizeof(*c));
	if (!json_is_object(doc))
		return perr(err, -EINVAL, "checkpoint: not a JSON object");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)doc, k, v) {
		bool known = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			known |= !strcmp(k, keys[i]);
		if (!known)
			return perr(err, -EINVAL, "checkpoint: unknown member "
				    "\"%.64s\"", k);
	}
	const char *fmt = json_string_value(json_object_get(doc, "format"));
	if (!fmt || strcmp(fmt, CKPT_FORMAT))
		return perr(err, -EINVAL, "checkpoint: format is not \"%s\"",
			    CKPT_FORMAT);
	json_t *seq = json_object_get(doc, "seq"), *t =
		json_object_get(doc, "time_ms");
	if (!json_is_integer(seq) || json_integer_value(seq) <= 0)
		return perr(err, -EINVAL, "checkpoint: seq is not a positive "
			    "integer");
	if (!json_is_integer(t) || json_integer_value(t) < 0)
		return perr(err, -EINVAL, "checkpoint: time_ms is not a "
			    "non-negative integer");
	c->seq = (uint64_t)json_integer_value(seq);
	c->time_ms = (int64_t)json_integer_value(t);
	if (!hex_member(doc, "hash", 32, c->hash))
		return perr(err, -EINVAL, "checkpoint: hash is not 64 hex "
			    "digits");
	if (!hex_member(doc, "signature", 64, c->sig))
		return perr(err, -EINVAL, "checkpoint: signature is not 128 "
			    "hex digits");
	const char *kid = hex_member(doc, "key_id", 32, NULL);
	if (!kid)
		return perr(err, -EINVAL, "checkpoint: key_id is not 64 hex "
			    "digits");
	memcpy(c->key_id, kid, 65);
	return 0;
}

int checkpoint_verify(const struct checkpoint *c, EVP_PKEY *pub,
		      struct parley_err *err)
{
	char id[65];
	uint8_t msg[CKPT_MSG_LEN];
	if (sign_key_id(pub, id) < 0)
		return perr(err, -EINVAL, "checkpoint: not an Ed25519 key");
	if (strcmp(id, c->key_id))
		return perr(err, -EKEYREJECTED, "checkpoint: signed by key "
			    "%.16s..., the key given is %.16s...", c->key_id,
			    id);
	checkpoint_message(c->seq, c->hash, c->time_ms, msg);
	int rc = sign_verify(pub, msg, sizeof(msg), c->sig, sizeof(c->sig));
	if (rc < 0)
		return perr(err, rc == -EBADMSG ? -EBADMSG : rc, "checkpoint: "
			    "the signature does not verify");
	return 0;
}

int checkpoint_load(const char *file, const char *pubfile,
		    struct checkpoint *c, struct parley_err *err)
{
	uint8_t *buf = NULL;
	size_t len;
	EVP_PKEY *pub = NULL;
	json_error_t jerr;
	json_t *doc = NULL;
	int rc = file_read_all(file, CKPT_DOC_MAX, &buf, &len, err);
	if (rc == 0 && !(doc = json_loadb((const char *)buf, len, 0, &jerr)))
		rc = perr(err, -EINVAL, "%s: not JSON: %s", file, jerr.text);
	if (rc == 0)
		rc = checkpoint_from_json(doc, c, err);
	if (rc == 0)
		rc = sign_read_pub(pubfile, &pub, err);
	if (rc == 0)
		rc = checkpoint_verify(c, pub, err);
	EVP_PKEY_free(pub);
	json_decref(doc);
	free(buf);
	return rc;
}
