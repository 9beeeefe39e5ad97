#include "common/version.h"
#include "parley_version.h"

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
