/* hostile: a partition that misbehaves in the way its command line names
 * (`mode=...`), so tests can check that exactly this partition stops, with
 * the right reason, and nothing else does.
 *
 *   mode=place hc=NAME at=PLACE [chan=C]   hypercall NAME with its argument
 *       struct at PLACE (config, bootinfo, pt, gdt, tss, rodata, text,
 *       chanro: the data section of channel C, which this side only reads;
 *       heap: a legitimate place, as a control). The struct is not written
 *       first: PLACE keeps its bytes unless the vmm writes there.
 *   mode=buf at=PLACE [chan=C]      a console write whose buffer is at PLACE
 *   mode=upd_buf at=PLACE [chan=C]  an update write whose buffer is at PLACE
 *   mode=launder chan=C [delay_us=N]  (2 vCPUs) CHAN_OPEN with the struct
 *       in the config region holding tampered bytes; vCPU 1 restores the
 *       baseline bytes N us later, before the grant manager looks
 *   mode=exec_{data,stack,heap,rodata,bootinfo,config}  run a `ret` there
 *   mode=write_text, ud2, null, ... (below): one fault each
 *   mode=svc_names  service hypercalls with names that are unterminated,
 *       empty or outside the alphabet, an accept of a service not offered:
 *       each answered INVAL (the partition can correct them), printed
 */
#include <parley/guest.h>

/* Where agent/ctl/sysmap.h lays the system tables (supervisor-only). */
#define SYS_PML4 0x1000u
#define SYS_GDT  0xf000u
#define SYS_TSS  0x10000u

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
/* In .rodata: read-only to the partition, and not executable. Its first
 * byte is a `ret`, so running it shows whether NX holds. */
static const _Alignas(16) uint8_t ro_blob[256] = { 0xc3, 'r', 'o' };
/* In .data (initialised, so not .bss): writable, not executable. */
static _Alignas(16) uint8_t data_blob[256] = { 1 };
static _Alignas(16) uint8_t arg_blob[256]; /* the control place */

static int arg_is(const struct parley_boot_info *bi, const char *key,
		  const char *m)
{
	size_t len;
	const char *v = parley_cmdline_get(bi, key, &len);
	return v && len == strlen(m) && strncmp(v, m, len) == 0;
}

static int mode_is(const struct parley_boot_info *bi, const char *m)
{
	return arg_is(bi, "mode", m);
}

static volatile uint64_t sink;

static const char *const hc_names[PARLEY_HC_MAX + 1] = {
	[PARLEY_HC_CONSOLE_WRITE] = "console", [PARLEY_HC_CLOCK] = "clock",
	[PARLEY_HC_EXIT] = "exit", [PARLEY_HC_HALT] = "halt",
	[PARLEY_HC_CHAN_OPEN] = "open", [PARLEY_HC_CHAN_NOTIFY] = "notify",
	[PARLEY_HC_CHAN_WAIT] = "wait", [PARLEY_HC_CHAN_CLOSE] = "close",
	[PARLEY_HC_SVC_OFFER] = "svc_offer", [PARLEY_HC_SVC_CALL] = "svc_call",
	[PARLEY_HC_SVC_ACCEPT] = "svc_accept",
	[PARLEY_HC_UPDATE_BEGIN] = "upd_begin",
	[PARLEY_HC_UPDATE_WRITE] = "upd_write",
	[PARLEY_HC_UPDATE_COMMIT] = "upd_commit",
	[PARLEY_HC_UPDATE_STATUS] = "upd_status",
	[PARLEY_HC_SEG_ATTACH] = "seg_attach",
	[PARLEY_HC_SEG_DETACH] = "seg_detach",
	[PARLEY_HC_BLK_INFO] = "blk_info", [PARLEY_HC_BLK_READ] = "blk_read",
	[PARLEY_HC_BLK_WRITE] = "blk_write",
	[PARLEY_HC_BLK_FLUSH] = "blk_flush",
	[PARLEY_HC_BLK_SUBMIT] = "blk_submit",
};

static unsigned hc_named(const struct parley_boot_info *bi)
{
	for (unsigned i = 1; i <= PARLEY_HC_MAX; i++)
		if (hc_names[i] && arg_is(bi, "hc", hc_names[i]))
			return i;
	return 0;
}

/* The channel named by chan=, opened as its reader: the address of the
 * section it may only read (the producer's records). 0 if it failed. */
static uint64_t chan_ro(const struct parley_boot_info *bi)
{
	char name[PARLEY_CHAN_NAME_MAX];
	size_t len;
	const char *v = parley_cmdline_get(bi, "chan", &len);
	if (!v || len >= sizeof(name))
		return 0;
	memcpy(name, v, len);
	name[len] = 0;
	static struct parley_chan c;
	int64_t rc = parley_chan_open(name, &c, NULL);
	parley_printf("hostile: open %s %lld rx %d\n", name, (long long)rc,
		      c.has_rx);
	return rc == PARLEY_OK && c.has_rx ? (uint64_t)(uintptr_t)c.rx.data
					   : 0;
}

static uint64_t place(const struct parley_boot_info *bi)
{
	if (arg_is(bi, "at", "config"))
		return bi->config_base;
	if (arg_is(bi, "at", "bootinfo"))
		return (uintptr_t)bi;
	if (arg_is(bi, "at", "pt"))
		return SYS_PML4;
	if (arg_is(bi, "at", "gdt"))
		return SYS_GDT;
	if (arg_is(bi, "at", "tss"))
		return SYS_TSS;
	if (arg_is(bi, "at", "rodata"))
		return (uintptr_t)ro_blob;
	if (arg_is(bi, "at", "text"))
		return (uintptr_t)hc_raw & ~15ull;
	if (arg_is(bi, "at", "chanro"))
		return chan_ro(bi);
	if (arg_is(bi, "at", "heap"))
		return (uintptr_t)arg_blob;
	return 0;
}

/* Returns only if the vmm accepted the call: the test then fails on the
 * exit code and the line. */
static _Alignas(8) struct parley_hc_svc_offer svc_o;
static _Alignas(8) struct parley_hc_svc_call svc_c;
static _Alignas(8) struct parley_hc_svc_accept svc_a;

static int64_t svc_offer_raw(const char *name, int fill)
{
	memset(&svc_o, 0, sizeof(svc_o));
	if (fill)
		memset(svc_o.name, 'a', sizeof(svc_o.name)); /* no NUL */
	else
		memcpy(svc_o.name, name, strlen(name) + 1);
	parley_hypercall(PARLEY_HC_SVC_OFFER, &svc_o);
	return svc_o.ret;
}

static int64_t svc_call_raw(const char *name, const char *target, int fill)
{
	memset(&svc_c, 0, sizeof(svc_c));
	memcpy(svc_c.name, name, strlen(name) + 1);
	if (fill)
		memset(svc_c.target, 't', sizeof(svc_c.target));
	else
		memcpy(svc_c.target, target, strlen(target) + 1);
	parley_hypercall(PARLEY_HC_SVC_CALL, &svc_c);
	return svc_c.ret;
}

static int64_t svc_accept_raw(const char *name)
{
	memset(&svc_a, 0, sizeof(svc_a));
	memcpy(svc_a.name, name, strlen(name) + 1);
	parley_hypercall(PARLEY_HC_SVC_ACCEPT, &svc_a);
	return svc_a.ret;
}

static int mode_svc_names(void)
{
	long r[8];
	r[0] = (long)svc_offer_raw(NULL, 1);            /* unterminated */
	r[1] = (long)svc_offer_raw("a/b", 0);           /* alphabet */
	r[2] = (long)svc_call_raw("auth", "", 0);       /* empty target */
	r[3] = (long)svc_call_raw("auth", NULL, 1);     /* unterminated */
	r[4] = (long)svc_call_raw("x y", "w", 0);       /* alphabet */
	r[5] = (long)svc_accept_raw("nope");            /* not offered */
	r[6] = (long)svc_offer_raw("auth", 0);
	r[7] = (long)svc_accept_raw("auth");            /* nobody called */
	parley_printf("hostile: svc %ld %ld %ld %ld %ld %ld %ld %ld\n", r[0],
		      r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	return 0;
}

static int mode_place(const struct parley_boot_info *bi)
{
	unsigned nr = hc_named(bi);
	uint64_t at = place(bi);
	if (!nr || !at) {
		parley_puts("hostile: bad hc= or at=");
		return 4;
	}
	hc_raw(PARLEY_HC_PORT_BASE + nr, at);
	parley_printf("hostile: accepted %s at 0x%llx\n", hc_names[nr],
		      (unsigned long long)at);
	return 0;
}

static int mode_buf(const struct parley_boot_info *bi)
{
	uint64_t at = place(bi);
	if (!at) {
		parley_puts("hostile: bad at=");
		return 4;
	}
	console_with(at, 16);
	parley_printf("\nhostile: accepted buffer at 0x%llx\n",
		      (unsigned long long)at);
	return 0;
}

static int mode_upd_buf(const struct parley_boot_info *bi)
{
	uint64_t at = place(bi);
	if (!at) {
		parley_puts("hostile: bad at=");
		return 4;
	}
	struct parley_hc_update_write a = { .offset = 0, .buf = at, .len = 16 };
	parley_hypercall(PARLEY_HC_UPDATE_WRITE, &a);
	parley_printf("hostile: update write accepted buffer at 0x%llx: %lld\n",
		      (unsigned long long)at, (long long)a.ret);
	return 0;
}

/* Laundering (issue 8, finding 1): vCPU 0 writes a CHAN_OPEN struct over
 * the start of its config region and asks; vCPU 1 puts the baseline bytes
 * back a moment later, so that the grant manager's check would see an
 * untouched file while the vmm's copy of the struct still held the
 * tampered bytes, to be written back unlogged after the check passed. */
static struct {
	volatile int go, restored;
	uint8_t saved[sizeof(struct parley_hc_chan_open)];
} laund;

static int mode_launder(const struct parley_boot_info *bi)
{
	uint8_t *cfg = (uint8_t *)(uintptr_t)bi->config_base;
	struct parley_hc_chan_open a;
	size_t len;
	const char *v = parley_cmdline_get(bi, "chan", &len);
	if (!v || len >= sizeof(a.name) || bi->vcpus < 2 || !bi->nconfig)
		return 4;
	memset(&a, 0, sizeof(a));
	memcpy(a.name, v, len);
	memcpy(laund.saved, cfg, sizeof(laund.saved));
	memcpy(cfg, &a, sizeof(a));
	laund.go = 1;
	hc_raw(PARLEY_HC_PORT_BASE + PARLEY_HC_CHAN_OPEN, (uintptr_t)cfg);
	memcpy(&a, cfg, sizeof(a));
	parley_printf("hostile: laundered open %lld restored %d\n",
		      (long long)a.ret, laund.restored);
	return 0;
}

static void launder_restore(const struct parley_boot_info *bi)
{
	uint64_t delay = (uint64_t)parley_cmdline_int(bi, "delay_us", 100);
	while (!laund.go)
		__asm__ volatile("pause");
	uint64_t end = parley_rdtsc() + delay * bi->tsc_khz / 1000;
	while (parley_rdtsc() < end)
		__asm__ volatile("pause");
	memcpy((void *)(uintptr_t)bi->config_base, laund.saved,
	       sizeof(laund.saved));
	laund.restored = 1;
}

void parley_secondary(const struct parley_boot_info *bi, uint32_t cpu)
{
	if (cpu == 1 && mode_is(bi, "launder"))
		launder_restore(bi);
	parley_halt();
}

/* W^X: put a `ret` at p (unless it is already there) and call it. */
static void run_at(uint8_t *p)
{
	if (*p != 0xc3)
		*(volatile uint8_t *)p = 0xc3;
	((void (*)(void))(uintptr_t)p)();
	parley_printf("hostile: executed 0x%llx\n",
		      (unsigned long long)(uintptr_t)p);
}

static void mode_exec(const struct parley_boot_info *bi)
{
	uint8_t stack_code[16];
	if (mode_is(bi, "exec_data"))
		run_at(data_blob);
	if (mode_is(bi, "exec_stack"))
		run_at(stack_code);
	if (mode_is(bi, "exec_heap"))
		run_at((uint8_t *)(uintptr_t)bi->heap_start);
	if (mode_is(bi, "exec_rodata"))
		run_at((uint8_t *)(uintptr_t)ro_blob);
	if (mode_is(bi, "exec_bootinfo"))
		((void (*)(void))(uintptr_t)bi)();
	if (mode_is(bi, "exec_config"))
		run_at((uint8_t *)(uintptr_t)bi->config_base);
}

int main(const struct parley_boot_info *bi)
{
	parley_puts("hostile: starting");
	if (mode_is(bi, "place"))
		return mode_place(bi);
	if (mode_is(bi, "buf"))
		return mode_buf(bi);
	if (mode_is(bi, "launder"))
		return mode_launder(bi);
	mode_exec(bi);
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
	if (mode_is(bi, "hc_wait_reserved")) {
		struct parley_hc_chan_wait a = { .reserved = 1 };
		parley_hypercall(PARLEY_HC_CHAN_WAIT, &a);
	}
	if (mode_is(bi, "wild"))          /* unbacked guest-physical memory */
		sink = *(volatile uint64_t *)0x30000000;
	if (mode_is(bi, "wild_write"))
		*(volatile uint64_t *)0x30000000 = 1;
	if (mode_is(bi, "svc_names"))
		return mode_svc_names();
	if (mode_is(bi, "upd_buf"))
		return mode_upd_buf(bi);
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
