/* escape: a partition that tries, in the way its command line names
 * (`mode=...`), to reach past the process backend's confinement into the
 * host kernel or into what is left of its stub process. Each attempt must
 * stop exactly this partition with a named reason. `mode=wait` prints
 * "escape: waiting" and spins, so a test can look at its process from
 * outside. */
#include <parley/guest.h>

/* Where the process backend's stub lives (agent/stub/stub.h): partitions
 * cannot include agent headers, and a hostile one would know anyway. */
#define STUB_BASE 0x600000000000ull
#define STUB_SITE 0x600000100000ull
#define VSYSCALL_TIME 0xffffffffff600400ull

/* Code reached by a far jump into the host's 32-bit user code segment
 * (selector 0x23): the same bytes decode alike in both modes. */
__asm__(".text\n"
	"compat_ud2:\n"
	"	ud2\n"
	"compat_int80:\n"
	"	movl $20, %eax\n"       /* i386 getpid */
	"	int $0x80\n"
	"	ud2\n");
void compat_ud2(void);
void compat_int80(void);

static void far_jump32(void (*to)(void))
{
	static struct __attribute__((packed)) {
		uint32_t off;
		uint16_t sel;
	} fp;
	fp.off = (uint32_t)(uintptr_t)to;
	fp.sel = 0x23;
	__asm__ volatile("ljmpl *%0" : : "m"(fp) : "memory");
}

static int mode_is(const struct parley_boot_info *bi, const char *m)
{
	size_t len;
	const char *v = parley_cmdline_get(bi, "mode", &len);
	return v && len == strlen(m) && strncmp(v, m, len) == 0;
}

static volatile uint64_t sink;
static _Alignas(4096) volatile uint8_t data_page[4096] = { 0xc3 }; /* ret */

static void jump_to(uint64_t addr)
{
	__asm__ volatile("call *%0" : : "r"(addr) : "memory");
}

int main(const struct parley_boot_info *bi)
{
	parley_puts("escape: starting");
	if (mode_is(bi, "syscall")) /* getpid */
		__asm__ volatile("movl $39, %%eax; syscall" ::: "rax", "rcx",
				 "r11", "memory");
	if (mode_is(bi, "sysenter"))
		__asm__ volatile("movl $20, %%eax; sysenter" ::: "rax", "rcx",
				 "r11", "memory");
	if (mode_is(bi, "int80"))
		__asm__ volatile("movl $20, %%eax; int $0x80" ::: "rax",
				 "memory");
	if (mode_is(bi, "farjump32"))
		far_jump32(compat_ud2);
	if (mode_is(bi, "farjump32_int80"))
		far_jump32(compat_int80);
	if (mode_is(bi, "vsyscall"))
		jump_to(VSYSCALL_TIME);
	if (mode_is(bi, "site")) /* the stub's injection site: `syscall` */
		jump_to(STUB_SITE);
	if (mode_is(bi, "site_int3"))
		jump_to(STUB_SITE + 2);
	if (mode_is(bi, "read_stub"))
		sink = *(volatile uint64_t *)STUB_BASE;
	if (mode_is(bi, "read_stub_data"))
		sink = *(volatile uint64_t *)(STUB_SITE + 0x1000);
	if (mode_is(bi, "write_text"))
		*(volatile uint8_t *)(uintptr_t)main = 0xcc;
	if (mode_is(bi, "exec_data"))
		jump_to((uint64_t)(uintptr_t)data_page);
	if (mode_is(bi, "wait")) {
		parley_puts("escape: waiting");
		for (;;)
			sink++;
	}
	parley_puts("escape: still here");
	return 3;
}
