/* The production vmm reports every dirty page it is told of. A build with
 * PARLEY_VMM_UNDERREPORT drops them all: it is the lying vmm process the
 * tests use to check that the grant manager's background re-hash catches a
 * vmm that hides writes. It is never installed. */
#include <stdint.h>
#include <string.h>

void vmx_dirty_filter(uint64_t *bitmap, uint64_t pages);

void vmx_dirty_filter(uint64_t *bitmap, uint64_t pages)
{
#ifdef PARLEY_VMM_UNDERREPORT
	memset(bitmap, 0, (pages + 63) / 64 * 8);
#else
	(void)bitmap;
	(void)pages;
#endif
}
