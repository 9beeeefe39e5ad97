/* AES-256-XTS (aes-xts-plain64, 512-byte units) with VAES on 512-bit
 * registers: four blocks per AES round instruction. blk_xts.c uses it when
 * the CPU has AVX-512F and VAES (xts_vaes_usable), and OpenSSL otherwise.
 *
 * Why not OpenSSL: the OpenSSL 3.0 of Debian 12 runs AES-NI one 128-bit
 * block per instruction (about 2 GB/s here, ECB or XTS alike); a 64 KiB
 * request then spends as long in AES as in the rest of its exit, and the
 * encrypted disk stayed near 0.6 of the plain one. The round keys live in
 * the caller's mlock'd key page. Private to the vmm. */
#ifndef PARLEY_VMX_BLK_XTS_VAES_H
#define PARLEY_VMX_BLK_XTS_VAES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of round keys: key 1 encrypt and decrypt, key 2 encrypt, 15 each. */
#define XTS_VAES_RK_BYTES (3u * 15u * 16u)

/* The CPU (and the kernel, for the register state) runs AVX-512F + VAES. */
bool xts_vaes_usable(void);
/* Expand key[0..64) (key 1, key 2) into rk[0..XTS_VAES_RK_BYTES). Only
 * when xts_vaes_usable(). */
void xts_vaes_schedule(const uint8_t *key, uint8_t *rk);
/* len bytes (a multiple of 512) of units first_unit on, in -> out (may be
 * the same buffer); enc != 0 encrypts. Only when xts_vaes_usable(). */
void xts_vaes_crypt(const uint8_t *rk, int enc, const uint8_t *in,
		    uint8_t *out, size_t len, uint64_t first_unit);

#endif
