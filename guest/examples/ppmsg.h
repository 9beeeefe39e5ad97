/* The messages ping and pong send each other (and a Linux VM's
 * `parley-chan pong`, guest/linux/): a sequence number, a payload of a
 * size and content derived from it, and a checksum over both, so either
 * side can tell a lost, reordered or damaged message. Freestanding and
 * hosted alike: only <stdint.h> and compiler builtins. */
#ifndef PPMSG_H
#define PPMSG_H

#include <stdint.h>

#define PP_SALT_PING 0x70696e67ull
#define PP_SALT_PONG 0x706f6e67ull

#define PP_MAX 2048

struct pp_msg {
	uint32_t seq;
	uint32_t len;       /* payload bytes */
	uint8_t payload[PP_MAX];
};

static inline uint64_t pp_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static inline uint64_t pp_fnv(const void *p, uint32_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* Fill a message for seq from side `salt`; returns bytes to send. */
static inline uint32_t pp_fill(struct pp_msg *m, uint32_t seq, uint64_t salt)
{
	uint64_t r = pp_mix(seq ^ salt);
	m->seq = seq;
	m->len = 1 + (uint32_t)(r % (PP_MAX - 8));
	for (uint32_t i = 0; i < m->len; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		m->payload[i] = (uint8_t)(r >> 56);
	}
	uint64_t sum = pp_fnv(m, 8 + m->len);
	__builtin_memcpy(m->payload + m->len, &sum, 8);
	return 8 + m->len + 8;
}

/* Check a received message; 0 if it is exactly what seq should be. */
static inline int pp_check(const struct pp_msg *m, uint32_t got, uint32_t seq)
{
	uint64_t sum;
	if (got < 16 || m->seq != seq || m->len + 16 != got)
		return -1;
	__builtin_memcpy(&sum, m->payload + m->len, 8);
	return sum == pp_fnv(m, 8 + m->len) ? 0 : -1;
}

#endif
