/* counter: prints `tick N value V` for N in [0, count) with a deterministic
 * computation between lines, so an interrupted and resumed run (pause,
 * save, restore) can be compared with an uninterrupted one line by line.
 * `count=N` (default 20), `work=N` inner iterations (default 200000). */
#include <parley/guest.h>

int main(const struct parley_boot_info *bi)
{
	long count = parley_cmdline_int(bi, "count", 20);
	long work = parley_cmdline_int(bi, "work", 200000);
	uint64_t v = 0x9e3779b97f4a7c15ull;
	/* Floating point too, so a restore that lost SSE state would show. */
	double f = 1.0;
	for (long n = 0; n < count; n++) {
		for (long i = 0; i < work; i++) {
			v ^= v << 13;
			v ^= v >> 7;
			v ^= v << 17;
		}
		f = f * 1.5 + (double)(v & 0xff);
		if (f > 1e12)
			f /= 1e6;
		parley_printf("tick %ld value %016lx f %lu\n", n, v,
			      (unsigned long)f);
	}
	return 0;
}
