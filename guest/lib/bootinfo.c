#include <parley/guest.h>

const struct parley_config_file *parley_config_find(
	const struct parley_boot_info *bi, const char *name)
{
	const struct parley_config_file *f =
		(const struct parley_config_file *)(uintptr_t)bi->config;
	for (uint32_t i = 0; i < bi->nconfig; i++)
		if (strncmp(f[i].name, name, PARLEY_CONFIG_NAME_MAX) == 0)
			return &f[i];
	return NULL;
}

/* The command line is space-separated words, each `key` or `key=value`. */
const char *parley_cmdline_get(const struct parley_boot_info *bi,
			       const char *key, size_t *len)
{
	const char *p = (const char *)(uintptr_t)bi->cmdline;
	size_t klen = strlen(key);
	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (*p && *p != ' ')
			p++;
		size_t wlen = (size_t)(p - w);
		if (wlen >= klen && strncmp(w, key, klen) == 0 &&
		    (wlen == klen || w[klen] == '=')) {
			const char *v = wlen == klen ? w + klen : w + klen + 1;
			if (len)
				*len = (size_t)(p - v);
			return v;
		}
	}
	return NULL;
}

long parley_cmdline_int(const struct parley_boot_info *bi, const char *key,
			long dflt)
{
	size_t len;
	const char *v = parley_cmdline_get(bi, key, &len);
	if (!v || !len)
		return dflt;
	long sign = 1, n = 0;
	if (*v == '-') {
		sign = -1;
		v++;
		len--;
	}
	for (; len && *v >= '0' && *v <= '9'; len--, v++)
		n = n * 10 + (*v - '0');
	return sign * n;
}
