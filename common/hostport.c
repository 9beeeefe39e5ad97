#include "common/hostport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int hostport_split(const char *s, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= cap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}
