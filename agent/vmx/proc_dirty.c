/* Which config pages a process-backend partition wrote. */
#include "agent/vmx/vmm.h"

#include <string.h>

int proc_uffd_setup(struct vmx_vcpu *c)
{
	(void)c;
	return 0;
}

/* Without a write-protect record every page counts as written: the grant
 * manager re-hashes more than needed, never less. */
int proc_dirty(struct vmx_vm *vm, uint64_t *bitmap, uint64_t pages)
{
	(void)vm;
	memset(bitmap, 0, (pages + 63) / 64 * 8);
	for (uint64_t p = 0; p < pages; p++)
		bitmap[p / 64] |= 1ull << (p % 64);
	return 0;
}
