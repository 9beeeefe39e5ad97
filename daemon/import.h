#ifndef PARLEY_DAEMON_IMPORT_H
#define PARLEY_DAEMON_IMPORT_H

#include "common/err.h"

/* Grants from a policy file into the store, their partitions on `host`,
 * as one policy version. */
int daemon_import(const char *store_path, const char *host,
		  const char *policy, struct parley_err *err);

#endif
