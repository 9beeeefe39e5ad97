/* "HOST:PORT" as flags and configs write it ("[::1]:7420" for IPv6). */
#ifndef PARLEY_COMMON_HOSTPORT_H
#define PARLEY_COMMON_HOSTPORT_H

#include <stddef.h>
#include <sys/socket.h>

/* 0, or -EINVAL for anything that is not HOST:PORT with PORT 0..65535. */
int hostport_split(const char *s, char *host, size_t cap, int *port);

struct sockaddr_storage;

/* An IPv4 or IPv6 address literal and a port as a socket address (*len
 * set); -EINVAL for anything else (listeners take no names). */
int hostport_sockaddr(const char *host, int port, struct sockaddr_storage *ss,
		      socklen_t *len);

#endif
