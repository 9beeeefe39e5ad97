/* The attacker of issue 10 item 6: someone with write access to the
 * store file but not the checkpoint key. Rewrites one audit row's detail
 * and recomputes the whole chain after it (and the head) with SQL and
 * SHA-256 -- the chain alone then verifies; only a signed checkpoint can
 * tell. */
#ifndef PARLEY_TEST_AUDIT_REWRITE_H
#define PARLEY_TEST_AUDIT_REWRITE_H

#include <stdint.h>

void t_audit_rewrite(const char *store_path, uint64_t id, const char *detail);

#endif
