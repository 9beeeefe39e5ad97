/*
 * ELF64 loader for partition images: see elf.h for the contract.
 *
 * Every header is copied out of the untrusted buffer with memcpy (the buffer
 * need not be aligned) after its bounds are checked, and every sum or product
 * of image fields goes through __builtin_*_overflow.
 */
#include "agent/elf.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <string.h>

/* Image fields are little-endian and we read them as host integers. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "elf.c assumes a little-endian host");

#define ELF_PAGE 0x1000ull

static int check_ident(const Elf64_Ehdr *eh, struct parley_err *err)
{
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return perr(err, -ENOEXEC, "image: bad magic (not an ELF file)");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64)
		return perr(err, -ENOEXEC, "image: not ELF64 (EI_CLASS %u)",
			    eh->e_ident[EI_CLASS]);
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return perr(err, -ENOEXEC,
			    "image: not little-endian (EI_DATA %u)",
			    eh->e_ident[EI_DATA]);
	if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
		return perr(err, -ENOEXEC,
			    "image: bad ELF version (EI_VERSION %u, e_version %u)",
			    eh->e_ident[EI_VERSION], eh->e_version);
	return 0;
}

/* What kind of file: only a static x86-64 executable can run, because
 * nothing in the agent relocates an image or runs a dynamic linker. */
static int check_kind(const Elf64_Ehdr *eh, struct parley_err *err)
{
	if (eh->e_type != ET_EXEC)
		return perr(err, -ENOEXEC,
			    "image: e_type %u is not ET_EXEC (PIE and shared objects are refused: images are not relocated)",
			    eh->e_type);
	if (eh->e_machine != EM_X86_64)
		return perr(err, -ENOEXEC, "image: not x86-64 (e_machine %u)",
			    eh->e_machine);
	return 0;
}

static int check_phdr_table(const Elf64_Ehdr *eh, size_t len,
			    struct parley_err *err)
{
	uint64_t size, end;

	if (eh->e_ehsize != sizeof(Elf64_Ehdr))
		return perr(err, -EINVAL, "image: bad e_ehsize %u (expected %zu)",
			    eh->e_ehsize, sizeof(Elf64_Ehdr));
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return perr(err, -EINVAL,
			    "image: bad e_phentsize %u (expected %zu)",
			    eh->e_phentsize, sizeof(Elf64_Phdr));
	if (eh->e_phnum == 0)
		return perr(err, -EINVAL, "image: no program headers");
	/* Also refuses PN_XNUM (0xffff), the escape to a count kept in the
	 * section headers, which we do not read. */
	if (eh->e_phnum > ELF_PHNUM_MAX)
		return perr(err, -E2BIG,
			    "image: too many program headers (%u, at most %d)",
			    eh->e_phnum, ELF_PHNUM_MAX);
	size = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr); /* <= 64 * 56 */
	if (__builtin_add_overflow(eh->e_phoff, size, &end))
		return perr(err, -EINVAL,
			    "image: program header offset 0x%" PRIx64 " overflows",
			    eh->e_phoff);
	if (end > len)
		return perr(err, -EINVAL,
			    "image: truncated: program headers end at 0x%" PRIx64
			    " past end of file (0x%zx bytes)", end, len);
	return 0;
}

static int check_ehdr(const uint8_t *buf, size_t len, Elf64_Ehdr *eh,
		      struct parley_err *err)
{
	int rc;

	if (len < sizeof(*eh))
		return perr(err, -EINVAL,
			    "image: truncated: 0x%zx bytes, shorter than the ELF header (0x%zx bytes)",
			    len, sizeof(*eh));
	memcpy(eh, buf, sizeof(*eh));
	rc = check_ident(eh, err);
	if (!rc)
		rc = check_kind(eh, err);
	if (!rc)
		rc = check_phdr_table(eh, len, err);
	return rc;
}

/* The file bytes of segment i must lie in the buffer, its memory must not
 * wrap around. */
static int check_sizes(const Elf64_Phdr *ph, unsigned i, size_t len,
		       struct parley_err *err)
{
	uint64_t end;

	if (ph->p_filesz > ph->p_memsz)
		return perr(err, -EINVAL,
			    "image: segment %u: p_filesz 0x%" PRIx64
			    " > p_memsz 0x%" PRIx64, i, ph->p_filesz,
			    ph->p_memsz);
	if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &end))
		return perr(err, -EINVAL,
			    "image: segment %u: p_offset 0x%" PRIx64
			    " + p_filesz 0x%" PRIx64 " overflows", i,
			    ph->p_offset, ph->p_filesz);
	if (end > len)
		return perr(err, -EINVAL,
			    "image: truncated: segment %u file range [0x%" PRIx64
			    ",0x%" PRIx64 ") past end of file (0x%zx bytes)", i,
			    ph->p_offset, end, len);
	if (__builtin_add_overflow(ph->p_vaddr, ph->p_memsz, &end))
		return perr(err, -EINVAL,
			    "image: segment %u: p_vaddr 0x%" PRIx64
			    " + p_memsz 0x%" PRIx64 " overflows", i,
			    ph->p_vaddr, ph->p_memsz);
	return 0;
}

static int check_range(const Elf64_Phdr *ph, unsigned i, uint64_t load_min,
		       uint64_t load_max, struct parley_err *err)
{
	uint64_t end = ph->p_vaddr + ph->p_memsz; /* check_sizes: no wrap */

	if (ph->p_vaddr < load_min)
		return perr(err, -ERANGE,
			    "image: segment %u starts at 0x%" PRIx64
			    " outside partition memory [0x%" PRIx64 ",0x%" PRIx64
			    ")", i, ph->p_vaddr, load_min, load_max);
	if (end > load_max)
		return perr(err, -ERANGE,
			    "image: segment %u ends at 0x%" PRIx64
			    " outside partition memory [0x%" PRIx64 ",0x%" PRIx64
			    ")", i, end, load_min, load_max);
	return 0;
}

/* The ELF rule: a loader may map file pages straight into memory, so an
 * aligned segment's address and offset agree modulo the alignment. */
static int check_align(const Elf64_Phdr *ph, unsigned i,
		       struct parley_err *err)
{
	uint64_t a = ph->p_align;

	if (a <= 1)
		return 0;
	if (a & (a - 1))
		return perr(err, -EINVAL,
			    "image: segment %u: p_align 0x%" PRIx64
			    " is not a power of two", i, a);
	if ((ph->p_vaddr - ph->p_offset) & (a - 1))
		return perr(err, -EINVAL,
			    "image: segment %u: p_vaddr 0x%" PRIx64
			    " and p_offset 0x%" PRIx64
			    " disagree modulo p_align 0x%" PRIx64, i,
			    ph->p_vaddr, ph->p_offset, a);
	return 0;
}

static int check_overlap(const struct elf_image *img,
			 const struct elf_seg *s, struct parley_err *err)
{
	uint64_t end = s->gpa + s->mem_size;

	for (unsigned j = 0; j < img->nseg; j++) {
		const struct elf_seg *o = &img->seg[j];
		uint64_t oend = o->gpa + o->mem_size;

		if (s->gpa < oend && o->gpa < end)
			return perr(err, -EINVAL,
				    "image: segment %u [0x%" PRIx64 ",0x%" PRIx64
				    ") overlaps segment %u [0x%" PRIx64
				    ",0x%" PRIx64 ")", s->phdr, s->gpa, end,
				    o->phdr, o->gpa, oend);
	}
	return 0;
}

static int add_load(const Elf64_Phdr *ph, unsigned i, size_t len,
		    uint64_t load_min, uint64_t load_max,
		    struct elf_image *img, struct parley_err *err)
{
	struct elf_seg s;
	int rc;

	rc = check_sizes(ph, i, len, err);
	if (rc)
		return rc;
	/* An empty PT_LOAD loads nothing; ld emits one for a PHDRS entry that
	 * got no sections (say, a partition without read-only data). */
	if (ph->p_memsz == 0)
		return 0;
	rc = check_range(ph, i, load_min, load_max, err);
	if (!rc)
		rc = check_align(ph, i, err);
	if (rc)
		return rc;
	if (img->nseg == ELF_SEGS_MAX)
		return perr(err, -E2BIG,
			    "image: too many PT_LOAD segments (more than %d)",
			    ELF_SEGS_MAX);
	s = (struct elf_seg){
		.gpa = ph->p_vaddr,
		.file_off = ph->p_offset,
		.file_size = ph->p_filesz,
		.mem_size = ph->p_memsz,
		.flags = ph->p_flags & (PF_R | PF_W | PF_X),
		.phdr = i,
	};
	rc = check_overlap(img, &s, err);
	if (rc)
		return rc;
	img->seg[img->nseg++] = s;
	return 0;
}

static int check_phdr(const Elf64_Phdr *ph, unsigned i, size_t len,
		      uint64_t load_min, uint64_t load_max,
		      struct elf_image *img, struct parley_err *err)
{
	switch (ph->p_type) {
	case PT_LOAD:
		return add_load(ph, i, len, load_min, load_max, img, err);
	case PT_INTERP:
		return perr(err, -ENOEXEC,
			    "image: segment %u is PT_INTERP: dynamically linked images need a loader we do not have",
			    i);
	case PT_DYNAMIC:
		return perr(err, -ENOEXEC,
			    "image: segment %u is PT_DYNAMIC: dynamically linked images need a loader we do not have",
			    i);
	default:
		return 0; /* PT_NOTE, PT_GNU_STACK, ...: nothing to load */
	}
}

/* Insertion sort: at most ELF_SEGS_MAX entries. */
static void sort_segs(struct elf_image *img)
{
	for (unsigned i = 1; i < img->nseg; i++) {
		struct elf_seg s = img->seg[i];
		unsigned j = i;

		for (; j > 0 && img->seg[j - 1].gpa > s.gpa; j--)
			img->seg[j] = img->seg[j - 1];
		img->seg[j] = s;
	}
}

static int check_entry(const struct elf_image *img, struct parley_err *err)
{
	for (unsigned i = 0; i < img->nseg; i++) {
		const struct elf_seg *s = &img->seg[i];

		if ((s->flags & PF_X) && img->entry >= s->gpa &&
		    img->entry - s->gpa < s->mem_size)
			return 0;
	}
	return perr(err, -EINVAL,
		    "image: entry point 0x%" PRIx64
		    " is not inside an executable segment", img->entry);
}

/* Do two segments touch a common 4 KiB page? (Sorted: a before b, and
 * both end below 2^64 - ELF_PAGE, checked by check_range.) */
static bool share_page(const struct elf_seg *a, const struct elf_seg *b)
{
	uint64_t a_last = (a->gpa + a->mem_size - 1) & ~(ELF_PAGE - 1);
	return a_last >= (b->gpa & ~(ELF_PAGE - 1));
}

/* W^X (the partition's page tables map text read-only and everything else
 * no-execute): no segment may be both writable and executable, and none
 * writable may share a page with one executable, where its bytes would be
 * read-only. */
static int check_wx(const struct elf_image *img, struct parley_err *err)
{
	for (unsigned i = 0; i < img->nseg; i++) {
		const struct elf_seg *s = &img->seg[i];
		if ((s->flags & PF_W) && (s->flags & PF_X))
			return perr(err, -EINVAL, "image: segment %u is "
				    "writable and executable (W^X)", s->phdr);
		for (unsigned j = i + 1; j < img->nseg; j++) {
			const struct elf_seg *t = &img->seg[j];
			bool wx = ((s->flags & PF_W) && (t->flags & PF_X)) ||
				  ((s->flags & PF_X) && (t->flags & PF_W));
			if (wx && share_page(s, t))
				return perr(err, -EINVAL, "image: segments %u "
					    "and %u share a page, one writable "
					    "and one executable (W^X)",
					    s->phdr, t->phdr);
		}
	}
	return 0;
}

/* Segments are sorted and disjoint, so the span runs from the first start
 * to the last end. */
static int set_span(struct elf_image *img, struct parley_err *err)
{
	const struct elf_seg *last = &img->seg[img->nseg - 1];
	uint64_t end = last->gpa + last->mem_size;

	img->lo = img->seg[0].gpa & ~(ELF_PAGE - 1);
	if (__builtin_add_overflow(end, ELF_PAGE - 1, &img->hi))
		return perr(err, -ERANGE,
			    "image: segment %u ends at 0x%" PRIx64
			    ", too close to 2^64 to round up to a page",
			    last->phdr, end);
	img->hi &= ~(ELF_PAGE - 1);
	return 0;
}

static int parse_phdrs(const uint8_t *buf, size_t len, const Elf64_Ehdr *eh,
		       uint64_t load_min, uint64_t load_max,
		       struct elf_image *img, struct parley_err *err)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		int rc;

		/* check_phdr_table: the whole table lies inside buf. */
		memcpy(&ph, buf + eh->e_phoff + (size_t)i * sizeof(ph),
		       sizeof(ph));
		rc = check_phdr(&ph, i, len, load_min, load_max, img, err);
		if (rc)
			return rc;
	}
	if (img->nseg == 0)
		return perr(err, -EINVAL, "image: no PT_LOAD segments");
	return 0;
}

int elf_parse(const uint8_t *buf, size_t len, uint64_t load_min,
	      uint64_t load_max, struct elf_image *img, struct parley_err *err)
{
	Elf64_Ehdr eh;
	int rc;

	if (load_min >= load_max)
		return perr(err, -EINVAL,
			    "image: empty load range [0x%" PRIx64 ",0x%" PRIx64
			    ")", load_min, load_max);
	rc = check_ehdr(buf, len, &eh, err);
	if (rc)
		return rc;
	memset(img, 0, sizeof(*img));
	img->entry = eh.e_entry;
	rc = parse_phdrs(buf, len, &eh, load_min, load_max, img, err);
	if (rc)
		return rc;
	sort_segs(img);
	rc = check_entry(img, err);
	if (rc == 0)
		rc = check_wx(img, err);
	if (rc)
		return rc;
	return set_span(img, err);
}

/* Bounds of one parsed segment against this buffer and this guest RAM;
 * elf_parse has checked them already, unless img was altered since. */
static int check_seg_fits(const struct elf_seg *s, size_t len, size_t mem_len,
			  struct parley_err *err)
{
	uint64_t fend, mend;

	if (s->file_size > s->mem_size ||
	    __builtin_add_overflow(s->file_off, s->file_size, &fend) ||
	    fend > len)
		return perr(err, -EINVAL,
			    "image: segment %u file range [0x%" PRIx64
			    ",+0x%" PRIx64 ") not inside the image (0x%zx bytes)",
			    s->phdr, s->file_off, s->file_size, len);
	if (__builtin_add_overflow(s->gpa, s->mem_size, &mend) ||
	    mend > mem_len)
		return perr(err, -ERANGE,
			    "image: segment %u [0x%" PRIx64 ",+0x%" PRIx64
			    ") outside guest RAM [0,0x%zx)", s->phdr, s->gpa,
			    s->mem_size, mem_len);
	return 0;
}

int elf_load(const uint8_t *buf, size_t len, const struct elf_image *img,
	     uint8_t *mem, size_t mem_len, struct parley_err *err)
{
	if (img->nseg > ELF_SEGS_MAX)
		return perr(err, -EINVAL, "image: %u segments (at most %d)",
			    img->nseg, ELF_SEGS_MAX);
	for (unsigned i = 0; i < img->nseg; i++) {
		const struct elf_seg *s = &img->seg[i];
		int rc = check_seg_fits(s, len, mem_len, err);

		if (rc)
			return rc;
		memcpy(mem + s->gpa, buf + s->file_off, s->file_size);
		memset(mem + s->gpa + s->file_size, 0,
		       s->mem_size - s->file_size);
	}
	return 0;
}
