/*
 * The key process's protocol (daemon/keys/README.md): the only things the
 * network-facing parleyd process can ask of the process that holds the
 * private keys. Every message, both ways, is
 *
 *   u32 length of the rest | u16 type | u16 0 | payload     (big-endian)
 *
 * over a SOCK_STREAM socketpair, one request then its one reply. Requests:
 *
 *   INFO             ()                    -> has_ca, public keys (DER)
 *   SIGN_BUNDLE      u64 version, name host, blob body
 *                                          -> 64-byte Ed25519 signature
 *   ISSUE_CERT       u32 days, name host, blob CSR (DER)
 *                                          -> certificate (DER)
 *   SIGN_CHECKPOINT  u64 seq, 32-byte hash, i64 time_ms
 *                                          -> 64-byte Ed25519 signature
 *   DISK_KEY_NEW     u64 key_version, name partition, name disk
 *                                          -> a new disk key, wrapped
 *   DISK_KEY_SEAL    u64 key_version, name host, name partition,
 *                    name disk, blob wrapped, blob host certificate (DER)
 *                                          -> that key sealed to the host
 *
 * name = u16 length | bytes (a jv_name_valid name), blob = u32 length |
 * bytes. A reply is i32 status (0 or -errno) | name-like u16-prefixed
 * message | blob data. keyd_req_parse and keyd_rep_parse are the one
 * door each side reads through: a field that is short, long, out of range
 * or followed by anything is -EBADMSG, a length over its cap -EMSGSIZE.
 */
#ifndef PARLEY_DAEMON_KEYD_PROTO_H
#define PARLEY_DAEMON_KEYD_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

#define KEYD_HDR 8
/* The largest bundle body: the largest frame parleyd can be configured
 * for (daemon/config.c frame_max). */
#define KEYD_BODY_MAX (64u << 20)
#define KEYD_CSR_MAX (16u << 10)
#define KEYD_NAME_MAX 64            /* = STORE_NAME_MAX */
#define KEYD_MSG_MAX (KEYD_BODY_MAX + 256)
#define KEYD_REPLY_MSG_MAX 256
#define KEYD_DAYS_MAX 36500
/* A wrapped disk key (nonce | 64 | tag) and a host's certificate (DER). */
#define KEYD_WRAPPED_LEN (12 + 64 + 16)
#define KEYD_CERT_MAX (8u << 10)

enum keyd_type {
	KEYD_INFO = 1,
	KEYD_SIGN_BUNDLE = 2,
	KEYD_ISSUE_CERT = 3,
	KEYD_SIGN_CHECKPOINT = 4,
	KEYD_DISK_KEY_NEW = 5,
	KEYD_DISK_KEY_SEAL = 6,
	KEYD_REPLY = 0x80,
};

struct keyd_req {
	enum keyd_type type;
	char host[KEYD_NAME_MAX];       /* SIGN_BUNDLE, ISSUE_CERT,
					 * DISK_KEY_SEAL */
	uint64_t version;               /* SIGN_BUNDLE, DISK_KEY_*: > 0 */
	char part[KEYD_NAME_MAX];       /* DISK_KEY_* */
	char disk[KEYD_NAME_MAX];
	const uint8_t *data2;           /* DISK_KEY_SEAL: the host's
					 * certificate */
	size_t len2;
	uint32_t days;                  /* ISSUE_CERT, 1..KEYD_DAYS_MAX */
	const uint8_t *data;            /* body / CSR: points into the msg */
	size_t len;
	uint64_t seq;                   /* SIGN_CHECKPOINT, > 0 */
	uint8_t hash[32];
	int64_t time_ms;                /* >= 0 */
};

struct keyd_rep {
	int32_t status;                 /* 0 or -errno */
	char msg[KEYD_REPLY_MSG_MAX];   /* why, when status < 0 */
	const uint8_t *data;            /* points into the msg */
	size_t len;
};

/* What INFO answers. */
struct keyd_info {
	uint8_t has_ca;
	const uint8_t *policy_pub, *ckpt_pub;   /* DER SubjectPublicKeyInfo */
	size_t policy_pub_len, ckpt_pub_len;
};

/* The header: the length of the rest and the type; -EMSGSIZE over `max`
 * (the parsers check the rest). */
int keyd_hdr(const uint8_t hdr[KEYD_HDR], size_t max, size_t *rest,
	     unsigned *type, struct parley_err *err);

/* A whole message (header included). */
int keyd_req_parse(const uint8_t *msg, size_t len, struct keyd_req *r,
		   struct parley_err *err);
int keyd_rep_parse(const uint8_t *msg, size_t len, struct keyd_rep *r,
		   struct parley_err *err);
int keyd_info_parse(const uint8_t *data, size_t len, struct keyd_info *i,
		    struct parley_err *err);

/* Encoders: *out malloc'd, the caller frees. */
int keyd_req_encode(const struct keyd_req *r, uint8_t **out, size_t *len);
int keyd_rep_encode(const struct keyd_rep *r, uint8_t **out, size_t *len);
int keyd_info_encode(const struct keyd_info *i, uint8_t **out, size_t *len);

/* Blocking I/O of one message, restarted on EINTR. keyd_recv: -EPIPE at
 * a clean end of file before a message, *msg malloc'd. */
int keyd_send(int fd, const uint8_t *msg, size_t len);
int keyd_recv(int fd, size_t max, uint8_t **msg, size_t *len,
	      struct parley_err *err);

#endif
