#include <parley/guest.h>

__attribute__((weak)) void parley_secondary(const struct parley_boot_info *bi,
					    uint32_t cpu)
{
	(void)bi;
	(void)cpu;
	parley_halt();
}

void parley_start(const struct parley_boot_info *bi, uint32_t cpu);

__attribute__((noreturn)) void parley_start(const struct parley_boot_info *bi,
					    uint32_t cpu)
{
	if (cpu != 0)
		parley_secondary(bi, cpu);
	else
		parley_exit(main(bi));
	parley_halt();
}
