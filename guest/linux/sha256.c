/* SHA-256 (FIPS 180-4), sha256.h. */
#include "sha256.h"

#include "../lib/sha256_block.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void pl_sha256_init(struct pl_sha256 *s)
{
	static const uint32_t h0[8] = PARLEY_SHA256_H0;
	memcpy(s->h, h0, sizeof(h0));
	s->len = 0;
	s->nbuf = 0;
}

void pl_sha256_update(struct pl_sha256 *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	s->len += n;
	while (n) {
		size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
		memcpy(s->buf + s->nbuf, p, take);
		s->nbuf += take;
		p += take;
		n -= take;
		if (s->nbuf == 64) {
			parley_sha256_block(s->h, s->buf);
			s->nbuf = 0;
		}
	}
}

void pl_sha256_final(struct pl_sha256 *s, uint8_t out[32])
{
	uint64_t bits = s->len * 8;
	uint8_t pad[72] = { 0x80 };
	size_t padlen = (s->nbuf < 56 ? 56 : 120) - s->nbuf;
	for (int i = 0; i < 8; i++)
		pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
	pl_sha256_update(s, pad, padlen + 8);
	parley_sha256_out(s->h, out);
}

int pl_sha256_file(const char *path, uint8_t out[32])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct pl_sha256 s;
	uint8_t buf[4096];
	ssize_t n;
	pl_sha256_init(&s);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		pl_sha256_update(&s, buf, (size_t)n);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	if (!rc)
		pl_sha256_final(&s, out);
	return rc;
}
