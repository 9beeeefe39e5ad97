/*
 * libFuzzer target for the partition image loader: any bytes go to
 * elf_parse, and whatever it accepts is loaded into a guest RAM buffer, so
 * the sanitizers see every read of the image and every write to guest RAM.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/elf.h"

#define FUZZ_LOAD_MIN 0x100000ull
#define FUZZ_MEM_LEN 0x1000000ull /* 16 MiB of guest RAM */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Allocated once: 16 MiB per input would swamp the run. */
	static uint8_t *mem;
	struct parley_err err = { 0 };
	struct elf_image img;

	if (!mem) {
		mem = calloc(1, FUZZ_MEM_LEN);
		if (!mem)
			abort();
	}
	if (elf_parse(data, size, FUZZ_LOAD_MIN, FUZZ_MEM_LEN, &img, &err))
		return 0;
	/* A parse that succeeded must have a load that succeeds. */
	if (elf_load(data, size, &img, mem, FUZZ_MEM_LEN, &err))
		abort();
	return 0;
}
