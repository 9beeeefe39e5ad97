/* hcbench: the partition the vmx bench suite (bench/bench_vmx) drives.
 *
 *   mode=hello               print one line as the very first thing, exit 0:
 *                            its console write is the first hypercall, which
 *                            ends the bench's cold-start interval
 *   mode=loop n=N batches=B warm=W
 *                            W untimed CLOCK hypercalls, "K <tsc_khz>",
 *                            then B batches of "S <b>", N CLOCK
 *                            hypercalls, "E <b> <tsc cycles> <first ns>
 *                            <last ns>"
 *
 * In loop mode the bench times the S and E markers on arrival; the numbers
 * in E are the partition's own view (rdtsc around the N calls, and the CLOCK
 * values the first and last of them returned) for a cross-check. */
#include <parley/guest.h>

static void say(const char *s)
{
	parley_console_write(s, strlen(s));
}

static void batch(long b, long n)
{
	parley_printf("S %ld\n", b);
	uint64_t t0 = parley_rdtsc();
	uint64_t first = parley_clock_ns(), last = first;
	for (long i = 1; i < n; i++)
		last = parley_clock_ns();
	uint64_t t1 = parley_rdtsc();
	parley_printf("E %ld %lu %lu %lu\n", b, t1 - t0, first, last);
}

int main(const struct parley_boot_info *bi)
{
	size_t len;
	const char *mode = parley_cmdline_get(bi, "mode", &len);
	if (!mode || (len == 5 && strncmp(mode, "hello", 5) == 0)) {
		say("hcbench: up\n");
		return 0;
	}
	if (len != 4 || strncmp(mode, "loop", 4) != 0) {
		say("hcbench: unknown mode\n");
		return 2;
	}
	long n = parley_cmdline_int(bi, "n", 1000);
	long batches = parley_cmdline_int(bi, "batches", 10);
	long warm = parley_cmdline_int(bi, "warm", 0);
	if (n < 1 || batches < 1) {
		say("hcbench: n and batches must be positive\n");
		return 2;
	}
	/* First touches of stack and code, and the vmm's first exits, are
	 * slower than the steady state the batches measure. */
	for (long i = 0; i < warm; i++)
		parley_clock_ns();
	parley_printf("K %lu\n", bi->tsc_khz);
	for (long b = 0; b < batches; b++)
		batch(b, n);
	return 0;
}
