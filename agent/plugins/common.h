/* Shared by the plugins built here: a refusal's reason, the operation
 * that has nothing to do, and a state that is one number (version 1). */
#ifndef PARLEY_PLUGINS_COMMON_H
#define PARLEY_PLUGINS_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 4)))
static inline int plug_why(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -1;
}

static inline int plug_nothing(void *dev, char *why, size_t n)
{
	(void)dev, (void)why, (void)n;
	return 0;
}

/* The state: *v (8 bytes), version 1. */
static inline int plug_save_u64(uint64_t v, void *buf, size_t cap,
				size_t *len, uint32_t *version, char *why,
				size_t n)
{
	if (cap < sizeof(v))
		return plug_why(why, n, "no room for the state");
	memcpy(buf, &v, sizeof(v));
	*len = sizeof(v);
	*version = 1;
	return 0;
}

static inline int plug_load_u64(uint64_t *v, const void *state, size_t len,
				uint32_t version, char *why, size_t n)
{
	if (version != 1 || len != sizeof(*v))
		return plug_why(why, n, "saved state version %u, %zu bytes "
				"(version 1, 8 bytes wanted)", version, len);
	memcpy(v, state, sizeof(*v));
	return 0;
}

#endif
