#include <parley/guest.h>

void parley_hypercall(enum parley_hc_nr nr, void *arg)
{
	/* Identity-mapped: the struct's virtual address is its GPA. The
	 * "memory" clobber orders the agent's writes to *arg with our reads. */
	__asm__ volatile("outl %0, %1"
			 :
			 : "a"((uint32_t)(uintptr_t)arg),
			   "Nd"((uint16_t)(PARLEY_HC_PORT_BASE + nr))
			 : "memory");
}

int64_t parley_console_write(const void *buf, size_t len)
{
	struct parley_hc_console_write a = {
		.buf = (parley_gpa_t)(uintptr_t)buf, .len = len, .ret = 0 };
	parley_hypercall(PARLEY_HC_CONSOLE_WRITE, &a);
	return a.ret;
}

void parley_exit(int code)
{
	struct parley_hc_exit a = { .code = code };
	parley_hypercall(PARLEY_HC_EXIT, &a);
	for (;;)
		__asm__ volatile("ud2");
}

void parley_halt(void)
{
	struct parley_hc_halt a = { .reserved = 0 };
	parley_hypercall(PARLEY_HC_HALT, &a);
	for (;;)
		__asm__ volatile("ud2");
}

uint64_t parley_clock_ns(void)
{
	struct parley_hc_clock a = { 0 };
	parley_hypercall(PARLEY_HC_CLOCK, &a);
	return a.monotonic_ns;
}
