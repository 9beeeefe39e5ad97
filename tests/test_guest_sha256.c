/* The Linux guest tool's SHA-256 (guest/linux/sha256.c, on the block
 * function it shares with the partition SDK: guest/lib/sha256_block.h)
 * against OpenSSL's, at every length around the padding's edges and fed
 * in uneven pieces: a guest-reported digest must be the host's digest of
 * the same bytes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest/linux/sha256.h"

static void reference(const uint8_t *p, size_t n, uint8_t out[32])
{
	unsigned len = 0;
	cr_assert(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL));
	cr_assert_eq(len, 32);
}

Test(guest_sha256, every_length_around_the_padding_matches_openssl)
{
	static uint8_t buf[1200];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t j = 0; j <= 303; j++) {
		/* 0..300 bytes, then a few long ones */
		size_t n = j <= 300 ? j : (size_t[]){ 1023, 1025, 1200 }[j - 301];
		uint8_t want[32], got[32];
		reference(buf, n, want);
		struct pl_sha256 s;
		pl_sha256_init(&s);
		/* pieces of 1, 2, 3, ... bytes: every buffer boundary */
		for (size_t off = 0, k = 1; off < n; off += k, k = k % 70 + 1)
			pl_sha256_update(&s, buf + off, k < n - off ? k : n - off);
		pl_sha256_final(&s, got);
		cr_assert_arr_eq(got, want, 32, "length %zu", n);
	}
}

Test(guest_sha256, a_file_and_a_missing_one)
{
	char path[] = "/tmp/parley-sha-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	static uint8_t data[10000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ (i >> 7));
	ssize_t w = write(fd, data, sizeof(data));
	close(fd);
	uint8_t want[32], got[32];
	int rc = pl_sha256_file(path, got);
	unlink(path); /* before any assertion: nothing left in /tmp */
	cr_assert_eq(w, (ssize_t)sizeof(data));
	reference(data, sizeof(data), want);
	cr_assert_eq(rc, 0);
	cr_assert_arr_eq(got, want, 32);
	cr_assert_eq(pl_sha256_file(path, got), -ENOENT);
}
