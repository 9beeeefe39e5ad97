/*
 * Agent update packages: one file that carries a new parley-agent and
 * parley-vmm (and optional files for the partition that applies the
 * update), signed with a release key. The format and the reasons for its
 * shape are in agent/update/README.md; in short:
 *
 *   [0, 8)     magic "PARLEYPK"
 *   [8, 12)    format, u32 little-endian (UPDPKG_FORMAT)
 *   [12, 16)   manifest length M, u32 little-endian, 1..UPDPKG_MANIFEST_MAX
 *   [16, 80)   Ed25519 signature over bytes [0, 16) followed by the
 *              manifest; 64 zero bytes: unsigned
 *   [80, 80+M) manifest, JSON (below)
 *   then       every file's bytes, in manifest order, nothing after
 *
 *   { "product": "parley-agent", "version": "0.5.0",
 *     "replaces_min": "0.4.0",          oldest running version it replaces
 *     "abi_min": "1.0", "abi_max": "1.1",  partition ABI it speaks
 *     "files": [ { "name": "parley-agent", "size": 123,
 *                  "sha256": "<64 hex>" }, ... ] }
 *
 * The signature covers the manifest only; the manifest binds each file by
 * size and SHA-256. Nothing in a package is believed before the checks of
 * updpkg_verify() pass, in this order: structure (magic, format, sizes:
 * truncated), signature (unsigned, another key), manifest, file sizes
 * (truncated) and hashes, then fit (newer than what runs, may replace it,
 * speaks the running ABI).
 */
#ifndef PARLEY_COMMON_UPDPKG_H
#define PARLEY_COMMON_UPDPKG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "common/err.h"

#define UPDPKG_MAGIC "PARLEYPK"
#define UPDPKG_FORMAT 1u
#define UPDPKG_HDR 80u              /* magic, format, length, signature */
#define UPDPKG_SIGNED_HDR 16u       /* header bytes the signature covers */
#define UPDPKG_SIG_OFF 16u
#define UPDPKG_MANIFEST_MAX (64u * 1024)
/* A whole package: two statically linked programs with room to spare. The
 * agent stages at most this much from a partition. */
#define UPDPKG_MAX (256ull << 20)
#define UPDPKG_FILES_MAX 16
#define UPDPKG_NAME_MAX 64
#define UPDPKG_VERSION_MAX 32

/* Why a package was refused; each has a stable name (updpkg_refusal_name)
 * that audit records and the partition's detail field carry. */
enum updpkg_refusal {
	UPDPKG_OK = 0,
	UPDPKG_MALFORMED,       /* bad magic, format, manifest, trailing bytes */
	UPDPKG_TRUNCATED,       /* shorter than its header or manifest says */
	UPDPKG_UNSIGNED,        /* signature all zero */
	UPDPKG_BAD_SIGNATURE,   /* does not verify with the trusted key */
	UPDPKG_HASH_MISMATCH,   /* a file's SHA-256 is not the manifest's */
	UPDPKG_NOT_NEWER,       /* version <= the running one */
	UPDPKG_TOO_OLD,         /* running version < replaces_min */
	UPDPKG_ABI,             /* running ABI outside [abi_min, abi_max] */
	UPDPKG_PRODUCT,         /* not a parley-agent package */
	UPDPKG_REFUSAL_MAX_,
};

struct updpkg_version {
	unsigned v[3];          /* major, minor, patch; each <= 65535 */
};

struct updpkg_file {
	char name[UPDPKG_NAME_MAX];   /* [A-Za-z0-9_.-], unique */
	uint64_t off, size;           /* in the package */
	uint8_t sha256[32];
};

struct updpkg {
	uint32_t manifest_len;
	bool is_signed;
	char product[UPDPKG_NAME_MAX];
	char version_s[UPDPKG_VERSION_MAX];
	struct updpkg_version version, replaces_min;
	unsigned abi_min[2], abi_max[2];  /* major, minor */
	unsigned nfile;
	struct updpkg_file file[UPDPKG_FILES_MAX];
};

/* "X.Y.Z" exactly (each part 0..65535, no sign, no leading junk); with
 * `prefix` true, anything after a space is ignored too (parley_version()'s
 * "0.4.0 (36e23e5)"). 0 or -EINVAL. */
int updpkg_version_parse(const char *s, bool prefix, struct updpkg_version *v);
/* <0, 0, >0 as a is older than, equal to, newer than b. */
int updpkg_version_cmp(const struct updpkg_version *a,
		       const struct updpkg_version *b);

/* Header only: magic, format, manifest length within its cap and within
 * len. Fills out->manifest_len and is_signed. */
int updpkg_parse_header(const uint8_t *buf, size_t len, struct updpkg *out,
			enum updpkg_refusal *why, struct parley_err *err);

/* The manifest's JSON (m[0..mlen)): every field checked, unknown fields
 * refused, files' offsets laid out after the header. Fills the rest of
 * *out. The fuzz target drives this with hostile bytes. */
int updpkg_parse_manifest(const uint8_t *m, size_t mlen, struct updpkg *out,
			  struct parley_err *err);

/* What the running agent is: its version and the ABI its partitions
 * speak. */
struct updpkg_running {
	struct updpkg_version version;
	unsigned abi_major, abi_minor;
};
/* This program's own (parley_version(), PARLEY_ABI_*). */
void updpkg_running_self(struct updpkg_running *r);

/* Every check, in the order the header comment gives, against `pub`
 * (the trusted release key) and `run`. 0 with *out filled, or a negative
 * errno with *why set and err naming the reason (-EBADMSG for a refusal,
 * -ENOMEM). */
int updpkg_verify(const uint8_t *buf, size_t len, EVP_PKEY *pub,
		  const struct updpkg_running *run, struct updpkg *out,
		  enum updpkg_refusal *why, struct parley_err *err);

/* The same checks but signature and fit: what `parley-pkg inspect` shows
 * for a package it has no key for. */
int updpkg_parse(const uint8_t *buf, size_t len, struct updpkg *out,
		 enum updpkg_refusal *why, struct parley_err *err);

/* The file of that name, or NULL. */
const struct updpkg_file *updpkg_find(const struct updpkg *p,
				      const char *name);

/* "unsigned", "bad-signature", ...; "?" out of range. */
const char *updpkg_refusal_name(enum updpkg_refusal r);

/* ---- making packages (parley-pkg, tests) ------------------------------ */

/* One input file: its name in the package and its bytes. */
struct updpkg_input {
	const char *name;
	const uint8_t *data;
	size_t len;
};

/* Build an unsigned package from the manifest fields and files (hashes
 * and sizes computed here). *out is malloc'd. 0, -EINVAL (a field the
 * parser would refuse: checked by parsing the result), -ENOMEM. */
int updpkg_build(const char *version, const char *replaces_min,
		 const char *abi_min, const char *abi_max,
		 const struct updpkg_input *files, unsigned n, uint8_t **out,
		 size_t *outlen, struct parley_err *err);

/* Sign a package in place (its signature field) with an Ed25519 private
 * key. The package must parse (updpkg_parse_header + manifest). */
int updpkg_sign(uint8_t *buf, size_t len, EVP_PKEY *key,
		struct parley_err *err);

#endif
