/* SHA-256 (FIPS 180-4), small and freestanding: the examples hash
 * passwords against their key files with it. */
#include <parley/guest.h>

#include "sha256_block.h"

void parley_sha256(const void *data, size_t len, uint8_t out[32])
{
	uint32_t s[8] = PARLEY_SHA256_H0;
	const uint8_t *p = data;
	size_t left = len;
	for (; left >= 64; left -= 64, p += 64)
		parley_sha256_block(s, p);
	uint8_t tail[128];
	memset(tail, 0, sizeof(tail));
	memcpy(tail, p, left);
	tail[left] = 0x80;
	size_t tn = left < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		tail[tn - 1 - i] = (uint8_t)(bits >> (8 * i));
	parley_sha256_block(s, tail);
	if (tn == 128)
		parley_sha256_block(s, tail + 64);
	parley_sha256_out(s, out);
}
