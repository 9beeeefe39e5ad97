#include "common/version.h"
#include "parley_version.h"

#include <stdio.h>

const char *parley_version(void)
{
	return PARLEY_VERSION_STRING;
}

void parley_print_version(const char *prog)
{
	printf("%s %s\n", prog, PARLEY_VERSION_STRING);
}
