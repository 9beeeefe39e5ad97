/*
 * Signed checkpoints of the audit chain's head (issue 10, "anchored
 * audit"), shared by parleyd (which has them signed by its key process)
 * and parleyctl (which verifies them offline). Like a Certificate
 * Transparency signed tree head: whoever holds a checkpoint and the public
 * key can tell whether a store still contains the history it covered.
 *
 * What is signed (Ed25519, the checkpoint key):
 *   "parley-audit-checkpoint-v1" (26 bytes) || u64 seq || hash[32] ||
 *   i64 time_ms                      (big-endian, CKPT_MSG_LEN bytes)
 * seq is the id of the last audit row covered, hash that row's hash.
 *
 * The exported document (GET /v1/audit/checkpoints), self-contained:
 *   {"format":"parley-audit-checkpoint-v1","seq":N,"hash":"<64 hex>",
 *    "time_ms":T,"key_id":"<64 hex>","signature":"<128 hex>","id":I}
 * id (optional, not signed) is the checkpoint's number in the store.
 * key_id names the public key (sign_key_id); the key itself travels out of
 * band (STATE_DIR/checkpoint.pub), never inside the document it checks.
 */
#ifndef PARLEY_COMMON_CHECKPOINT_H
#define PARLEY_COMMON_CHECKPOINT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include "common/err.h"

#define CKPT_FORMAT "parley-audit-checkpoint-v1"
#define CKPT_MSG_LEN (26 + 8 + 32 + 8)
/* A document larger than this is not one (its JSON is about 400 bytes). */
#define CKPT_DOC_MAX 4096

struct checkpoint {
	uint64_t seq;
	uint8_t hash[32];
	int64_t time_ms;
	char key_id[65];
	uint8_t sig[64];
};

/* The bytes that are signed. */
void checkpoint_message(uint64_t seq, const uint8_t hash[32], int64_t time_ms,
			uint8_t out[CKPT_MSG_LEN]);

/* The document above (a new reference). */
json_t *checkpoint_to_json(const struct checkpoint *c);
/* Parse a document: every member present with its type and size, no
 * other member; -EINVAL naming the first problem. */
int checkpoint_from_json(const json_t *doc, struct checkpoint *c,
			 struct parley_err *err);
/* The signature is pub's over the message, and key_id is pub's id:
 * 0, or -EBADMSG (bad signature) / -EKEYREJECTED (another key). */
int checkpoint_verify(const struct checkpoint *c, EVP_PKEY *pub,
		      struct parley_err *err);

/* A document file (at most CKPT_DOC_MAX bytes) parsed, and verified with
 * the Ed25519 public key in pubfile (PEM, as sign_write_pub writes it):
 * what `parleyctl audit verify` and `parleyd audit` do first. */
int checkpoint_load(const char *file, const char *pubfile,
		    struct checkpoint *c, struct parley_err *err);

#endif
