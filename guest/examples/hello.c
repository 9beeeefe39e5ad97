/* hello: greets, lists its key configuration files, and exits with the code
 * given as `exit=N` on its command line. With `dump` it prints every config
 * file in hex, so tests can compare what the partition reads with the host
 * file byte for byte. */
#include <parley/guest.h>

static void dump(const struct parley_config_file *f)
{
	const unsigned char *p = (const unsigned char *)(uintptr_t)f->gpa;
	char line[2 * 32 + 1];
	for (uint64_t off = 0; off < f->size; off += 32) {
		uint64_t n = f->size - off < 32 ? f->size - off : 32;
		for (uint64_t i = 0; i < n; i++)
			parley_snprintf(line + 2 * i, 3, "%02x", p[off + i]);
		parley_printf("hex %s %lu %s\n", f->name, off, line);
	}
}

int main(const struct parley_boot_info *bi)
{
	parley_printf("hello, world (abi %u.%u, %lu MiB, %u vcpu)\n",
		      bi->abi_major, bi->abi_minor, bi->mem_size >> 20,
		      bi->vcpus);
	const struct parley_config_file *f =
		(const struct parley_config_file *)(uintptr_t)bi->config;
	for (uint32_t i = 0; i < bi->nconfig; i++) {
		parley_printf("config %s: %lu bytes at %p\n", f[i].name,
			      f[i].size, (void *)(uintptr_t)f[i].gpa);
		if (parley_cmdline_get(bi, "dump", NULL))
			dump(&f[i]);
	}
	return (int)parley_cmdline_int(bi, "exit", 0);
}
