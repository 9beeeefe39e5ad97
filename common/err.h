/*
 * One error convention for all of parley: a function returns 0 (or a
 * non-negative count) on success and a negative errno on failure. Where a
 * person needs to know *what* was wrong (a parser, a loader, a spec), the
 * function also takes a `struct parley_err *` (may be NULL) that receives a
 * message naming the problem; its code always equals the return value.
 */
#ifndef PARLEY_COMMON_ERR_H
#define PARLEY_COMMON_ERR_H

#include <stddef.h>

#define PARLEY_ERR_MSG_MAX 256

struct parley_err {
	int code;                     /* negative errno, 0 when unset */
	char msg[PARLEY_ERR_MSG_MAX];
};

/* Record `code` (negative errno) and a message; returns `code`, so callers
 * can write `return perr(err, -EINVAL, "...")`. */
int perr(struct parley_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix an already-set message with more context ("spec x.json: ...").
 * Returns err->code, or -EINVAL when err is NULL: callers that may get a
 * NULL err return their own code (`return perr_prefix(err, ...), rc;`). */
int perr_prefix(struct parley_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The message, or strerror of the code when no message was set. */
const char *perr_msg(const struct parley_err *err);

/* Abort with file:line on a broken internal invariant (never on bad input). */
#define PARLEY_ASSERT(cond)                                              \
	do {                                                             \
		if (!(cond))                                             \
			parley_assert_fail(#cond, __FILE__, __LINE__);   \
	} while (0)
__attribute__((noreturn)) void parley_assert_fail(const char *what,
						  const char *file, int line);

#endif
