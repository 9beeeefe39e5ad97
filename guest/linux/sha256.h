/* SHA-256 for the guest tool (guest-reported digests): the guest image
 * carries no crypto library, and a file's digest is all it needs. */
#ifndef PARLEY_LINUX_SHA256_H
#define PARLEY_LINUX_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct pl_sha256 {
	uint32_t h[8];
	uint64_t len;       /* bytes hashed */
	uint8_t buf[64];
	size_t nbuf;
};

void pl_sha256_init(struct pl_sha256 *s);
void pl_sha256_update(struct pl_sha256 *s, const void *p, size_t n);
void pl_sha256_final(struct pl_sha256 *s, uint8_t out[32]);

/* The SHA-256 of the file at path: 0 or -errno. */
int pl_sha256_file(const char *path, uint8_t out[32]);

#endif
