/* Human-written byte sizes ("16M", "512KiB", "1073741824"). */
#ifndef PARLEY_COMMON_SIZE_H
#define PARLEY_COMMON_SIZE_H

#include <stdint.h>

/*
 * Parse a byte size: decimal digits with an optional suffix K, M, G (also
 * KiB, MiB, GiB; powers of 1024), no sign, no spaces, overflow refused.
 * Suffixes are case-sensitive, so "16MB" and "16m" are refused rather than
 * guessed at. Returns 0 and sets *out, or -EINVAL (not a size) / -ERANGE
 * (does not fit in 64 bits); *out is untouched on error.
 */
int parse_size(const char *s, uint64_t *out);

#endif
