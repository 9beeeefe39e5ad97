#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

int perr(struct parley_err *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

int perr_prefix(struct parley_err *err, const char *fmt, ...)
{
	if (!err)
		return -EINVAL;
	char head[PARLEY_ERR_MSG_MAX], old[PARLEY_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%s", perr_msg(err));
	/* A message cut short at the end is still a useful message. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
	snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
	return err->code;
}

const char *perr_msg(const struct parley_err *err)
{
	if (!err)
		return "unknown error";
	if (err->msg[0])
		return err->msg;
	return strerror(err->code < 0 ? -err->code : err->code);
}

void parley_assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "parley: invariant broken at %s:%d: %s\n", file, line,
		what);
	abort();
}
