#include "agent/ctl/gmem.h"

#include <errno.h>
#include <stddef.h>

int gmem_add(struct gmem *g, parley_gpa_t gpa, uint64_t size, uint8_t *host)
{
	if (g->nregion >= GMEM_REGIONS_MAX)
		return -ENOSPC;
	g->region[g->nregion++] = (struct gmem_region){ gpa, size, host };
	return 0;
}

void *gmem_ptr(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
	       uint64_t align)
{
	uint64_t end;
	if (align == 0 || (align & (align - 1)) || (gpa & (align - 1)))
		return NULL;
	if (__builtin_add_overflow(gpa, len, &end))
		return NULL;
	for (unsigned i = 0; i < g->nregion; i++) {
		const struct gmem_region *r = &g->region[i];
		if (gpa >= r->gpa && end <= r->gpa + r->size)
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}
