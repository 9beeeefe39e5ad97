/*
 * The one door to guest memory. Every read or write of partition memory the
 * agent or a vmm process makes goes through gmem_ptr(), which checks the
 * whole range [gpa, gpa + len) against the regions actually backed, without
 * overflow, before handing out a host pointer.
 */
#ifndef PARLEY_CTL_GMEM_H
#define PARLEY_CTL_GMEM_H

#include <stdint.h>
#include <parley/abi.h>

#define GMEM_REGIONS_MAX 4

struct gmem_region {
	parley_gpa_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct gmem {
	unsigned nregion;
	struct gmem_region region[GMEM_REGIONS_MAX];
};

/* Add a region; regions must not overlap (checked by the caller's layout). */
int gmem_add(struct gmem *g, parley_gpa_t gpa, uint64_t size, uint8_t *host);

/* Host pointer for [gpa, gpa + len) if it lies wholly inside one region and
 * gpa is a multiple of align (a power of two, or 1); NULL otherwise. A
 * zero-length range is valid anywhere inside or at the end of a region. */
void *gmem_ptr(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
	       uint64_t align);

#endif
