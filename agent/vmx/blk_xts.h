/* AES-256-XTS per 512-byte unit, tweak = the unit's number from the start
 * of the disk (dm-crypt aes-xts-plain64 with 512-byte sectors), through
 * OpenSSL EVP: a file parley wrote opens with `cryptsetup open --type
 * plain --cipher aes-xts-plain64 --key-size 512`. Private to the vmm.
 *
 * The key lives in one mlock'd page (never swapped) and is wiped by
 * xts_free; the cipher contexts are made before the sandbox (OpenSSL may
 * open files when it first fetches a cipher) and freed, cleansed, with it.
 * One request at a time per disk (a lock), as the bounce buffer is
 * shared. */
#ifndef PARLEY_VMX_BLK_XTS_H
#define PARLEY_VMX_BLK_XTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

#define XTS_UNIT 512u
#define XTS_KEY_BYTES 64u

struct blk_xts;

/* A context for key[0..64) (copied; the caller wipes its own). The two
 * halves must differ (OpenSSL refuses equal halves: -EINVAL). */
int xts_new(const uint8_t *key, size_t bounce_bytes, struct blk_xts **out,
	    struct parley_err *err);
/* The same, choosing the implementation: vaes (only where
 * xts_vaes_usable()) or the portable one on OpenSSL's AES-ECB; xts_new
 * takes VAES whenever the CPU has it. Tests check both. */
int xts_new_with(const uint8_t *key, size_t bounce_bytes, bool vaes,
		 struct blk_xts **out, struct parley_err *err);
/* Encrypt len bytes (a multiple of XTS_UNIT) at disk byte offset off
 * from in into the bounce buffer, pwrite them to fd. 0 or -errno. */
int xts_pwrite(struct blk_xts *x, int fd, const uint8_t *in, size_t len,
	       uint64_t off);
/* pread len bytes at off into out, decrypt them in place. 0 or -errno. */
int xts_pread(struct blk_xts *x, int fd, uint8_t *out, size_t len,
	      uint64_t off);
/* The same on memory only (bench, tests): enc != 0 encrypts. */
int xts_crypt(struct blk_xts *x, int enc, const uint8_t *in, uint8_t *out,
	      size_t len, uint64_t off);
/* Wipe the key and cipher state, free everything. NULL is fine. */
void xts_free(struct blk_xts *x);

#endif
