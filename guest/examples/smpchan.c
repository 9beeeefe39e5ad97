/* smpchan: vCPU 0 opens channel `c1`; vCPU 1, which made no hypercall for
 * it, then reads the window's header. On the process backend each vCPU is
 * a process of its own, and the window reaches vCPU 1's the first time it
 * touches it: this partition shows that it does. Prints
 * "smpchan: vcpu 1 read the window" and exits 0; needs vcpus >= 2. */
#include <parley/guest.h>
#include <parley/ring.h>

static volatile uint64_t hdr_gpa, seen;

void parley_secondary(const struct parley_boot_info *bi, uint32_t cpu)
{
	(void)bi;
	if (cpu == 1) {
		while (!hdr_gpa)
			__asm__ volatile("pause");
		seen = *(volatile const uint64_t *)(uintptr_t)hdr_gpa;
	}
	parley_halt();
}

int main(const struct parley_boot_info *bi)
{
	if (bi->vcpus < 2)
		return 2;
	struct parley_chan c;
	int64_t rc = parley_chan_open("c1", &c, NULL);
	if (rc != PARLEY_OK) {
		parley_printf("smpchan: open %ld\n", (long)rc);
		return 3;
	}
	hdr_gpa = (uint64_t)(uintptr_t)c.hdr;
	uint64_t end = parley_clock_ns() + 5000000000ull;
	while (!seen && parley_clock_ns() < end)
		;
	if (seen != PARLEY_RING_MAGIC) {
		parley_printf("smpchan: vcpu 1 saw 0x%lx\n", (unsigned long)seen);
		return 4;
	}
	parley_puts("smpchan: vcpu 1 read the window");
	return 0;
}
