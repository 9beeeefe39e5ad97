#include "common/size.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static const struct {
	const char *suffix;
	unsigned shift;
} size_suffixes[] = {
	{ "", 0 },
	{ "K", 10 }, { "KiB", 10 },
	{ "M", 20 }, { "MiB", 20 },
	{ "G", 30 }, { "GiB", 30 },
};

static int size_shift(const char *suffix, unsigned *shift)
{
	for (size_t i = 0; i < sizeof(size_suffixes) / sizeof(size_suffixes[0]);
	     i++) {
		if (!strcmp(suffix, size_suffixes[i].suffix)) {
			*shift = size_suffixes[i].shift;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_size(const char *s, uint64_t *out)
{
	if (!s)
		return -EINVAL;
	size_t ndigits = 0;
	while (s[ndigits] >= '0' && s[ndigits] <= '9')
		ndigits++;
	unsigned shift;
	/* Syntax first, so "99999999999999999999X" is "not a size", not
	 * "too large". */
	if (!ndigits || size_shift(s + ndigits, &shift))
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < ndigits; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (v > UINT64_MAX >> shift)
		return -ERANGE;
	*out = v << shift;
	return 0;
}
