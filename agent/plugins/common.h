/* Shared by the plugins built here: writing a refusal's reason. */
#ifndef PARLEY_PLUGINS_COMMON_H
#define PARLEY_PLUGINS_COMMON_H

#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4)))
static inline int plug_why(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -1;
}

#endif
