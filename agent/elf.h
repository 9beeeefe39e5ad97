/*
 * The ELF64 loader for partition images (DESIGN.md §4).
 *
 * An image is a static, non-relocatable x86-64 executable: only its PT_LOAD
 * program headers matter, section headers are never read. Partitions are
 * identity-mapped, so a segment's p_vaddr is its guest-physical address.
 * The image bytes are untrusted: elf_parse checks everything it reads, with
 * overflow-safe arithmetic, and never reads outside the buffer it is given.
 *
 * Error codes (the message in `err` says exactly what was wrong):
 *   -ENOEXEC  not a kind of image we can run (magic, class, byte order,
 *             version, type, machine, PT_INTERP or PT_DYNAMIC present)
 *   -EINVAL   a malformed image (truncated, bad header sizes, bad alignment,
 *             p_filesz > p_memsz, overlapping segments, no PT_LOAD, entry
 *             point outside code), or an empty load range from the caller
 *   -E2BIG    too many program headers or PT_LOAD segments
 *   -ERANGE   a segment outside the partition memory it must load into
 */
#ifndef PARLEY_AGENT_VMX_ELF_H
#define PARLEY_AGENT_VMX_ELF_H

#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

#define ELF_SEGS_MAX 16   /* PT_LOAD segments; our link script makes 3 */
#define ELF_PHNUM_MAX 64  /* program headers of any type we will look at */

struct elf_seg {
	uint64_t gpa;        /* p_vaddr: partitions are identity-mapped */
	uint64_t file_off, file_size, mem_size;
	uint32_t flags;      /* PF_R | PF_W | PF_X from the header */
	unsigned phdr;       /* its index in the program header table */
};

struct elf_image {
	uint64_t entry;
	unsigned nseg;
	struct elf_seg seg[ELF_SEGS_MAX]; /* PT_LOAD only, sorted by gpa */
	uint64_t lo, hi;     /* page-aligned span covering all segments: [lo, hi) */
};

/*
 * Validate an ELF64 x86-64 static executable in buf[0..len) that must load
 * entirely inside guest-physical [load_min, load_max). Reads nothing outside
 * buf. On failure *img is unspecified and err names the problem.
 *
 * "segment N" in messages is entry N (from 0) of the program header table,
 * in the order `readelf -l` lists them. PT_LOAD entries with p_memsz 0 load
 * nothing and are left out of img (ld emits one, at address 0, for a PHDRS
 * entry that got no sections). img->lo and img->hi are rounded to pages, so
 * they stay inside [load_min, load_max) only when the caller's bounds are
 * page-aligned.
 * img does not point into buf; elf_load needs the same buf again.
 */
int elf_parse(const uint8_t *buf, size_t len, uint64_t load_min,
	      uint64_t load_max, struct elf_image *img, struct parley_err *err);

/*
 * Copy every segment of a parsed image into guest RAM, the host mapping `mem`
 * of guest-physical [0, mem_len), zero-filling each segment's tail (bss).
 * Re-checks bounds against mem_len (defence in depth). Bytes of mem outside
 * the segments are left as they are. On failure mem may be partly written.
 */
int elf_load(const uint8_t *buf, size_t len, const struct elf_image *img,
	     uint8_t *mem, size_t mem_len, struct parley_err *err);

#endif
