/* "HOST:PORT" as flags and configs write it ("[::1]:7420" for IPv6). */
#ifndef PARLEY_COMMON_HOSTPORT_H
#define PARLEY_COMMON_HOSTPORT_H

#include <stddef.h>

/* 0, or -EINVAL for anything that is not HOST:PORT with PORT 0..65535. */
int hostport_split(const char *s, char *host, size_t cap, int *port);

#endif
