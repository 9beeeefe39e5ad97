/*
 * The version every parley program prints for --version: CMake's project
 * version, with `git describe` in parentheses when the tree was a git
 * checkout at configure time ("0.4.0 (36e23e5-dirty)").
 */
#ifndef PARLEY_COMMON_VERSION_H
#define PARLEY_COMMON_VERSION_H

const char *parley_version(void);
/* "PROG VERSION\n" on stdout: the whole of every program's --version. */
void parley_print_version(const char *prog);

#endif
