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

/* Versions as numbers: "X.Y.Z", each part 0..65535 with no sign or
 * padding beyond five digits; with `prefix`, a space and anything after
 * it is ignored (parley_version()'s "0.4.0 (36e23e5)"). 0 or -EINVAL. */
int parley_version_parse(const char *s, bool prefix, unsigned v[3]);
/* <0, 0, >0 as a is older than, equal to, newer than b. */
int parley_version_cmp(const unsigned a[3], const unsigned b[3]);
/* The same for `parts` numbers ("1.1": an ABI version). */
int parley_dotted_parse(const char *s, unsigned parts, bool prefix,
			unsigned *v);

#endif
