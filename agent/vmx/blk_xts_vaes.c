/* AES-256-XTS with VAES (blk_xts_vaes.h). Checked against OpenSSL's own
 * XTS in tests/test_disk.c (xts_vaes_equals_openssl_xts) and, through the
 * vmm, against dm-crypt and the Python cryptography package. */
#include "agent/vmx/blk_xts_vaes.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define VAES __attribute__((target("aes,avx512f,vaes")))
/* Inlined into their VAES callers: at -O2 gcc otherwise keeps calls and
 * register spills in the inner loop and runs at half speed. */
#define HOT VAES static inline __attribute__((always_inline))

/* From CPUID and XCR0 rather than __builtin_cpu_supports: clang 14 (the
 * fuzz build's compiler) knows no "vaes" there. AVX-512 code also needs the
 * OS to save its state: XCR0's SSE, AVX, opmask and ZMM bits. */
bool xts_vaes_usable(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_AES) ||
	    !(c & bit_OSXSAVE))
		return false;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	(void)hi;
	if ((lo & 0xe6) != 0xe6)
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & (1u << 16)) /* AVX512F */ && (c & (1u << 9)) /* VAES */;
}

/* The AES-256 key expansion of Intel's AES-NI white paper. */
HOT __m128i expand_a(__m128i t1, __m128i t2)
{
	t2 = _mm_shuffle_epi32(t2, 0xff);
	__m128i t4 = _mm_slli_si128(t1, 4);
	t1 = _mm_xor_si128(t1, t4);
	t4 = _mm_slli_si128(t4, 4);
	t1 = _mm_xor_si128(t1, t4);
	t4 = _mm_slli_si128(t4, 4);
	t1 = _mm_xor_si128(t1, t4);
	return _mm_xor_si128(t1, t2);
}

HOT __m128i expand_b(__m128i t1, __m128i t3)
{
	__m128i t2 = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t1, 0), 0xaa);
	__m128i t4 = _mm_slli_si128(t3, 4);
	t3 = _mm_xor_si128(t3, t4);
	t4 = _mm_slli_si128(t4, 4);
	t3 = _mm_xor_si128(t3, t4);
	t4 = _mm_slli_si128(t4, 4);
	t3 = _mm_xor_si128(t3, t4);
	return _mm_xor_si128(t3, t2);
}

/* aeskeygenassist wants its round constant as an immediate. */
#define STEP(i, rcon)                                                   \
	do {                                                            \
		t1 = expand_a(t1, _mm_aeskeygenassist_si128(t3, rcon)); \
		k[i] = t1;                                              \
		if ((i) + 1 < 15) {                                     \
			t3 = expand_b(t1, t3);                          \
			k[(i) + 1] = t3;                                \
		}                                                       \
	} while (0)

HOT void expand(const uint8_t *key, __m128i k[15])
{
	__m128i t1 = _mm_loadu_si128((const __m128i *)key);
	__m128i t3 = _mm_loadu_si128((const __m128i *)(key + 16));
	k[0] = t1;
	k[1] = t3;
	STEP(2, 0x01);
	STEP(4, 0x02);
	STEP(6, 0x04);
	STEP(8, 0x08);
	STEP(10, 0x10);
	STEP(12, 0x20);
	STEP(14, 0x40);
}

VAES void xts_vaes_schedule(const uint8_t *key, uint8_t *rk)
{
	__m128i e1[15], d1[15], e2[15];
	expand(key, e1);
	expand(key + 32, e2);
	/* The equivalent inverse cipher: reversed, InvMixColumns inside. */
	d1[0] = e1[14];
	for (int i = 1; i < 14; i++)
		d1[i] = _mm_aesimc_si128(e1[14 - i]);
	d1[14] = e1[0];
	memcpy(rk, e1, sizeof(e1));
	memcpy(rk + 240, d1, sizeof(d1));
	memcpy(rk + 480, e2, sizeof(e2));
	/* Our stack copies go too: the key page is the only home. */
	volatile uint8_t *v = (volatile uint8_t *)e1;
	for (size_t i = 0; i < sizeof(e1); i++)
		v[i] = 0;
	v = (volatile uint8_t *)d1;
	for (size_t i = 0; i < sizeof(d1); i++)
		v[i] = 0;
	v = (volatile uint8_t *)e2;
	for (size_t i = 0; i < sizeof(e2); i++)
		v[i] = 0;
}

HOT void load_keys(const uint8_t *rk, __m512i k[15])
{
	_Pragma("GCC unroll 15")
	for (int i = 0; i < 15; i++)
		k[i] = _mm512_broadcast_i32x4(
			_mm_loadu_si128((const __m128i *)(rk + 16 * i)));
}

/* Eight registers (32 blocks) through the cipher together: each round's
 * instructions are independent, which hides their latency. */
HOT void enc8(__m512i x[8], const __m512i k[15])
{
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		x[j] = _mm512_xor_si512(x[j], k[0]);
	for (int r = 1; r < 14; r++)
		_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
			x[j] = _mm512_aesenc_epi128(x[j], k[r]);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		x[j] = _mm512_aesenclast_epi128(x[j], k[14]);
}

HOT void dec8(__m512i x[8], const __m512i k[15])
{
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		x[j] = _mm512_xor_si512(x[j], k[0]);
	for (int r = 1; r < 14; r++)
		_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
			x[j] = _mm512_aesdec_epi128(x[j], k[r]);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		x[j] = _mm512_aesdeclast_epi128(x[j], k[14]);
}

/* Every 128-bit lane times x^4 in GF(2^128) (IEEE 1619, little-endian):
 * shifted left by 4, the low qword's top nibble carried into the high
 * one, the high qword's top nibble folded back as nibble * 0x87. */
HOT __m512i times_x4(__m512i v)
{
	__m512i top = _mm512_srli_epi64(v, 60);
	__m512i sw = _mm512_shuffle_epi32(top, _MM_PERM_BADC);
	__m512i red = _mm512_xor_si512(
		_mm512_xor_si512(sw, _mm512_slli_epi64(sw, 1)),
		_mm512_xor_si512(_mm512_slli_epi64(sw, 2),
				 _mm512_slli_epi64(sw, 7)));
	/* Even qwords (low halves) take the fold, odd ones the carry. */
	__m512i in = _mm512_mask_blend_epi64(0xaa, red, sw);
	return _mm512_xor_si512(_mm512_slli_epi64(v, 4), in);
}

static void times_x(uint64_t t[2])
{
	uint64_t carry = t[1] >> 63;
	t[1] = (t[1] << 1) | (t[0] >> 63);
	t[0] = (t[0] << 1) ^ (carry * 0x87);
}

/* One 512-byte unit whose first tweak is t0 (16 bytes). */
HOT void unit(const __m512i k[15], int enc, const uint8_t *t0,
		      const uint8_t *in, uint8_t *out)
{
	uint64_t t[8];
	memcpy(t, t0, 16);
	for (int i = 1; i < 4; i++) {
		memcpy(t + 2 * i, t + 2 * i - 2, 16);
		times_x(t + 2 * i);
	}
	__m512i tw[8], x[8];
	tw[0] = _mm512_loadu_si512(t);
	for (int j = 1; j < 8; j++)
		tw[j] = times_x4(tw[j - 1]);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		x[j] = _mm512_xor_si512(_mm512_loadu_si512(in + 64 * j), tw[j]);
	if (enc)
		enc8(x, k);
	else
		dec8(x, k);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		_mm512_storeu_si512(out + 64 * j, _mm512_xor_si512(x[j], tw[j]));
}

VAES void xts_vaes_crypt(const uint8_t *rk, int enc, const uint8_t *in,
			 uint8_t *out, size_t len, uint64_t first_unit)
{
	__m512i k[15], k2[15];
	load_keys(rk + (enc ? 0 : 240), k);
	load_keys(rk + 480, k2);
	size_t units = len / 512;
	for (size_t base = 0; base < units; base += 32) {
		/* First tweaks of up to 32 units at once: plain64, the unit
		 * number little-endian, zero-padded, encrypted with key 2. */
		uint64_t n[64] __attribute__((aligned(64)));
		for (unsigned u = 0; u < 32; u++) {
			n[2 * u] = first_unit + base + u;
			n[2 * u + 1] = 0;
		}
		__m512i t[8];
		_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
			t[j] = _mm512_load_si512(n + 8 * j);
		enc8(t, k2);
		_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
			_mm512_store_si512(n + 8 * j, t[j]);
		size_t m = units - base < 32 ? units - base : 32;
		for (size_t u = 0; u < m; u++)
			unit(k, enc, (const uint8_t *)(n + 2 * u),
			     in + (base + u) * 512, out + (base + u) * 512);
		/* Tweaks are derived from the key: not left on the stack. */
		volatile uint64_t *v = n;
		for (int i = 0; i < 64; i++)
			v[i] = 0;
	}
}
