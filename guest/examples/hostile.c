/* hostile: a partition that misbehaves in the way its command line names
 * (`mode=...`), so tests can check that exactly this partition stops, with
 * the right reason, and nothing else does. */
#include <parley/guest.h>

static void hc_raw(unsigned port, uint64_t arg)
{
	__asm__ volatile("outl %0, %w1" : : "a"((uint32_t)arg), "Nd"((uint16_t)port)
			 : "memory");
}

static void console_with(uint64_t buf, uint64_t len)
{
	struct parley_hc_console_write a = { .buf = buf, .len = len };
	parley_hypercall(PARLEY_HC_CONSOLE_WRITE, &a);
}

static _Alignas(16) char scratch[64];

static int mode_is(const struct parley_boot_info *bi, const char *m)
{
	size_t len;
	const char *v = parley_cmdline_get(bi, "mode", &len);
	return v && len == strlen(m) && strncmp(v, m, len) == 0;
}

static volatile uint64_t sink;

int main(const struct parley_boot_info *bi)
{
	parley_puts("hostile: starting");
	if (mode_is(bi, "ud2"))
		__asm__ volatile("ud2");
	if (mode_is(bi, "badport"))
		__asm__ volatile("outb %%al, $0x80" : : "a"(0));
	if (mode_is(bi, "inport")) {
		uint8_t v;
		__asm__ volatile("inb $0x60, %0" : "=a"(v));
		sink = v;
	}
	if (mode_is(bi, "hc_oob"))        /* struct past the end of RAM */
		hc_raw(PARLEY_HC_PORT_BASE + PARLEY_HC_CONSOLE_WRITE,
		       bi->mem_size - 8);
	if (mode_is(bi, "hc_buf_oob"))    /* buffer runs past the end of RAM */
		console_with(bi->mem_size - 16, 64);
	if (mode_is(bi, "hc_overflow"))   /* buf + len wraps around */
		console_with(0xfffffffffffff000ull, 0x2000);
	if (mode_is(bi, "hc_unaligned"))
		hc_raw(PARLEY_HC_PORT_BASE + PARLEY_HC_CONSOLE_WRITE,
		       (uintptr_t)scratch + 4);
	if (mode_is(bi, "hc_unknown"))
		hc_raw(PARLEY_HC_PORT_BASE + 0x42, (uintptr_t)scratch);
	if (mode_is(bi, "hc_halt_reserved")) {
		struct parley_hc_halt a = { .reserved = 7 };
		parley_hypercall(PARLEY_HC_HALT, &a);
	}
	if (mode_is(bi, "wild"))          /* unbacked guest-physical memory */
		sink = *(volatile uint64_t *)0x30000000;
	if (mode_is(bi, "wild_write"))
		*(volatile uint64_t *)0x30000000 = 1;
	if (mode_is(bi, "null"))
		sink = *(volatile uint64_t *)0;
	if (mode_is(bi, "write_text"))    /* code is mapped read-only */
		*(volatile uint8_t *)(uintptr_t)main = 0xcc;
	if (mode_is(bi, "read_sys"))      /* page tables are supervisor-only */
		sink = *(volatile uint64_t *)0x1000;
	if (mode_is(bi, "write_bootinfo"))
		*(volatile uint64_t *)(uintptr_t)bi = 0;
	if (mode_is(bi, "spin"))
		for (;;)
			sink++;
	parley_puts("hostile: unknown mode, exiting 3");
	return 3;
}
