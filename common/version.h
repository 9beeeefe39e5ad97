/*
 * The version every parley program prints for --version: CMake's project
 * version, with `git describe` in parentheses when the tree was a git
 * checkout at configure time ("0.4.0 (36e23e5-dirty)").
 */
#ifndef PARLEY_COMMON_VERSION_H
#define PARLEY_COMMON_VERSION_H

#include <stdbool.h>

const char *parley_version(void);
/* "PROG VERSION\n" on stdout: the whole of every program's --version. */
void parley_print_version(const char *prog);
/* The GNU convention: --help (or -h) or --version anywhere before "--"
 * wins over everything else on the line. Prints `usage` or the version
 * on stdout and returns true (the caller exits 0); false if neither is
 * there. */
bool parley_help_or_version(int argc, char **argv, const char *prog,
			    const char *usage);

#endif
