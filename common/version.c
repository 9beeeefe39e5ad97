#include "common/version.h"
#include "parley_version.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *parley_version(void)
{
	return PARLEY_VERSION_STRING;
}

void parley_print_version(const char *prog)
{
	printf("%s %s\n", prog, PARLEY_VERSION_STRING);
}

bool parley_help_or_version(int argc, char **argv, const char *prog,
			    const char *usage)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return true;
		}
		if (!strcmp(argv[i], "--version")) {
			parley_print_version(prog);
			return true;
		}
	}
	return false;
}

int parley_dotted_parse(const char *s, unsigned parts, bool prefix,
			unsigned *v)
{
	for (unsigned i = 0; i < parts; i++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned long n = 0;
		unsigned digits = 0;
		while (*s >= '0' && *s <= '9') {
			n = n * 10 + (unsigned)(*s++ - '0');
			if (++digits > 5 || n > 65535)
				return -EINVAL;
		}
		v[i] = (unsigned)n;
		if (i + 1 < parts && *s++ != '.')
			return -EINVAL;
	}
	return *s == 0 || (prefix && *s == ' ') ? 0 : -EINVAL;
}

int parley_version_parse(const char *s, bool prefix, unsigned v[3])
{
	return parley_dotted_parse(s, 3, prefix, v);
}

int parley_version_cmp(const unsigned a[3], const unsigned b[3])
{
	for (int i = 0; i < 3; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}
