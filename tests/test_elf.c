/*
 * The partition image loader (agent/vmx/elf.c): a minimal image built here,
 * a table of hostile variants of it with the exact refusal each must get,
 * every truncation, and the real hello.elf when the build has made it.
 */
#include <criterion/criterion.h>

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/elf.h"

#define LOAD_MIN 0x100000ull
#define LOAD_MAX 0x400000ull
#define IMG_LEN 0x3020u /* the data segment's file bytes end the file */
#define PH_ROOM 20      /* room for ELF_SEGS_MAX + 1 PT_LOAD entries */
#define NPH 4           /* text, rodata, data, PT_GNU_STACK */

/* The image as bytes, with typed views of its headers at offset 0. */
union image {
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph[PH_ROOM];
	};
	uint8_t b[IMG_LEN];
};

struct fixture {
	union image u;
	size_t len;
	uint64_t min, max;
};

static Elf64_Phdr phdr(uint32_t type, uint32_t flags, uint64_t off,
		       uint64_t vaddr, uint64_t filesz, uint64_t memsz)
{
	return (Elf64_Phdr){
		.p_type = type, .p_flags = flags, .p_offset = off,
		.p_vaddr = vaddr, .p_paddr = vaddr, .p_filesz = filesz,
		.p_memsz = memsz, .p_align = type == PT_LOAD ? 0x1000 : 0x10,
	};
}

/* Text 0x40 bytes at 1 MiB, rodata 0x30 bytes a page up, data 0x20 file
 * bytes followed by 0x20e0 bytes of bss, and a PT_GNU_STACK to ignore. */
static void build(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->len = IMG_LEN;
	f->min = LOAD_MIN;
	f->max = LOAD_MAX;
	Elf64_Ehdr *eh = &f->u.eh;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100010;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = NPH;
	f->u.ph[0] = phdr(PT_LOAD, PF_R | PF_X, 0x1000, 0x100000, 0x40, 0x40);
	f->u.ph[1] = phdr(PT_LOAD, PF_R, 0x2000, 0x101000, 0x30, 0x30);
	f->u.ph[2] = phdr(PT_LOAD, PF_R | PF_W, 0x3000, 0x102000, 0x20, 0x2100);
	f->u.ph[3] = phdr(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0);
	memset(f->u.b + 0x1000, 0xc3, 0x40);
	memset(f->u.b + 0x2000, 0x52, 0x30);
	memset(f->u.b + 0x3000, 0xda, 0x20);
}

static int parse(const struct fixture *f, struct elf_image *img,
		 struct parley_err *e)
{
	return elf_parse(f->u.b, f->len, f->min, f->max, img, e);
}

Test(elf, minimal_image_parses)
{
	struct fixture f;
	struct elf_image img;
	struct parley_err e = { 0 };

	build(&f);
	cr_assert_eq(parse(&f, &img, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(img.entry, 0x100010);
	cr_assert_eq(img.nseg, 3);
	cr_assert_eq(img.seg[0].gpa, 0x100000);
	cr_assert_eq(img.seg[0].flags, PF_R | PF_X);
	cr_assert_eq(img.seg[1].gpa, 0x101000);
	cr_assert_eq(img.seg[1].flags, PF_R);
	cr_assert_eq(img.seg[2].gpa, 0x102000);
	cr_assert_eq(img.seg[2].file_off, 0x3000);
	cr_assert_eq(img.seg[2].file_size, 0x20);
	cr_assert_eq(img.seg[2].mem_size, 0x2100);
	cr_assert_eq(img.seg[2].flags, PF_R | PF_W);
	cr_assert_eq(img.lo, 0x100000);
	cr_assert_eq(img.hi, 0x105000);
}

Test(elf, load_copies_and_zero_fills_bss)
{
	struct fixture f;
	struct elf_image img;
	struct parley_err e = { 0 };
	size_t mem_len = LOAD_MAX;
	uint8_t *mem = malloc(mem_len);

	cr_assert_not_null(mem);
	memset(mem, 0xee, mem_len); /* stale bytes the loader must clear */
	build(&f);
	cr_assert_eq(parse(&f, &img, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(elf_load(f.u.b, f.len, &img, mem, mem_len, &e), 0, "%s",
		     perr_msg(&e));
	cr_assert_arr_eq(mem + 0x100000, f.u.b + 0x1000, 0x40);
	cr_assert_arr_eq(mem + 0x101000, f.u.b + 0x2000, 0x30);
	cr_assert_arr_eq(mem + 0x102000, f.u.b + 0x3000, 0x20);
	for (size_t i = 0x102020; i < 0x104100; i++)
		cr_assert_eq(mem[i], 0, "bss byte 0x%zx not zeroed", i);
	/* Outside the segments nothing is touched. */
	cr_assert_eq(mem[0x100040], 0xee);
	cr_assert_eq(mem[0x104100], 0xee);
	cr_assert_eq(mem[0xfffff], 0xee);
	free(mem);
}

Test(elf, segments_sorted_by_gpa)
{
	struct fixture f;
	struct elf_image img;
	struct parley_err e = { 0 };
	Elf64_Phdr t;

	build(&f);
	t = f.u.ph[0];
	f.u.ph[0] = f.u.ph[2];
	f.u.ph[2] = t;
	cr_assert_eq(parse(&f, &img, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(img.nseg, 3);
	for (unsigned i = 1; i < img.nseg; i++)
		cr_assert_lt(img.seg[i - 1].gpa, img.seg[i].gpa);
	cr_assert_eq(img.seg[0].phdr, 2);
	cr_assert_eq(img.seg[2].phdr, 0);
}

/* Edge cases that are legal and must stay legal. */
/* What ld makes of a PHDRS entry that got no sections (hello.elf has no
 * data): empty, at address 0, its offset not agreeing with its alignment. */
static void ok_empty_load(struct fixture *f)
{
	f->u.ph[1].p_filesz = f->u.ph[1].p_memsz = 0;
	f->u.ph[1].p_vaddr = f->u.ph[1].p_paddr = 0;
	f->u.ph[1].p_offset = 0xe8;
}
static void ok_note(struct fixture *f) { f->u.ph[3].p_type = PT_NOTE; }
static void ok_align0(struct fixture *f) { f->u.ph[0].p_align = 0; }
static void ok_align1(struct fixture *f)
{
	f->u.ph[0].p_align = 1;
	f->u.ph[0].p_vaddr = 0x100008;
	f->u.ph[0].p_memsz = f->u.ph[0].p_filesz = 0x38;
}
static void ok_entry_last(struct fixture *f) { f->u.eh.e_entry = 0x10003f; }
static void ok_touching(struct fixture *f)
{
	f->u.ph[1].p_vaddr = 0x100040; /* right after text, no alignment */
	f->u.ph[1].p_align = 0;
}
static void ok_at_max(struct fixture *f) { f->max = 0x104100; }
static void ok_osabi(struct fixture *f)
{
	f->u.eh.e_ident[EI_OSABI] = ELFOSABI_GNU;
}
static void ok_unknown_flags(struct fixture *f)
{
	f->u.ph[0].p_flags |= PF_MASKOS;
}

static void (*const legal[])(struct fixture *) = {
	ok_empty_load, ok_note, ok_align0, ok_align1, ok_entry_last,
	ok_touching, ok_at_max, ok_osabi, ok_unknown_flags,
};

Test(elf, legal_variants_parse)
{
	for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++) {
		struct fixture f;
		struct elf_image img;
		struct parley_err e = { 0 };

		build(&f);
		legal[i](&f);
		cr_expect_eq(parse(&f, &img, &e), 0, "legal variant %zu: %s",
			     i, perr_msg(&e));
	}
}

Test(elf, empty_load_is_skipped_and_flags_masked)
{
	struct fixture f;
	struct elf_image img;

	build(&f);
	ok_empty_load(&f);
	ok_unknown_flags(&f);
	cr_assert_eq(parse(&f, &img, NULL), 0);
	cr_assert_eq(img.nseg, 2);
	cr_assert_eq(img.seg[0].flags, PF_R | PF_X);
	cr_assert_eq(img.seg[1].phdr, 2);
}

/* 16 PT_LOAD segments is the most we take; make_loads(f, 17) is one too many. */
static void make_loads(struct fixture *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		f->u.ph[i] = phdr(PT_LOAD, PF_R | PF_X, 0x1000,
				  0x100000 + i * 0x1000ull, 0x40, 0x40);
	f->u.eh.e_phnum = n;
}

Test(elf, sixteen_segments_fit)
{
	struct fixture f;
	struct elf_image img;
	struct parley_err e = { 0 };

	build(&f);
	make_loads(&f, ELF_SEGS_MAX);
	cr_assert_eq(parse(&f, &img, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(img.nseg, ELF_SEGS_MAX);
	cr_assert_eq(img.hi, 0x100000 + ELF_SEGS_MAX * 0x1000ull);
}

/* Hostile variants: one per refusal. */
static void m_short(struct fixture *f) { f->len = sizeof(Elf64_Ehdr) - 1; }
static void m_magic(struct fixture *f) { f->u.eh.e_ident[EI_MAG1] = 'e'; }
static void m_class32(struct fixture *f)
{
	f->u.eh.e_ident[EI_CLASS] = ELFCLASS32;
}
static void m_bigendian(struct fixture *f)
{
	f->u.eh.e_ident[EI_DATA] = ELFDATA2MSB;
}
static void m_ident_version(struct fixture *f)
{
	f->u.eh.e_ident[EI_VERSION] = EV_NONE;
}
static void m_version(struct fixture *f) { f->u.eh.e_version = 2; }
static void m_dyn(struct fixture *f) { f->u.eh.e_type = ET_DYN; }
static void m_rel(struct fixture *f) { f->u.eh.e_type = ET_REL; }
static void m_core(struct fixture *f) { f->u.eh.e_type = ET_CORE; }
static void m_arm64(struct fixture *f) { f->u.eh.e_machine = EM_AARCH64; }
static void m_i386(struct fixture *f) { f->u.eh.e_machine = EM_386; }
static void m_ehsize(struct fixture *f) { f->u.eh.e_ehsize = 52; }
static void m_phentsize(struct fixture *f) { f->u.eh.e_phentsize = 32; }
static void m_phnum0(struct fixture *f) { f->u.eh.e_phnum = 0; }
static void m_phnum65(struct fixture *f) { f->u.eh.e_phnum = 65; }
static void m_phxnum(struct fixture *f) { f->u.eh.e_phnum = PN_XNUM; }
static void m_phoff_end(struct fixture *f) { f->u.eh.e_phoff = IMG_LEN - 8; }
static void m_phoff_wrap(struct fixture *f) { f->u.eh.e_phoff = UINT64_MAX - 8; }
static void m_no_load(struct fixture *f)
{
	for (int i = 0; i < 3; i++)
		f->u.ph[i].p_type = PT_NOTE;
}
static void m_17_loads(struct fixture *f) { make_loads(f, ELF_SEGS_MAX + 1); }
static void m_interp(struct fixture *f) { f->u.ph[3].p_type = PT_INTERP; }
static void m_dynamic(struct fixture *f) { f->u.ph[3].p_type = PT_DYNAMIC; }
static void m_filesz(struct fixture *f) { f->u.ph[0].p_memsz = 0x20; }
static void m_filesz_empty(struct fixture *f) { f->u.ph[1].p_memsz = 0; }
static void m_file_past(struct fixture *f) { f->u.ph[2].p_filesz = 0x21; }
static void m_offset_past(struct fixture *f) { f->u.ph[1].p_offset = 0x4000; }
static void m_file_wrap(struct fixture *f)
{
	f->u.ph[2].p_offset = UINT64_MAX - 0xf;
}
static void m_vaddr_wrap(struct fixture *f)
{
	f->u.ph[2].p_vaddr = UINT64_MAX - 0xfff;
}
static void m_below(struct fixture *f) { f->u.ph[0].p_vaddr = 0xff000; }
static void m_above(struct fixture *f) { f->u.ph[2].p_vaddr = 0x3ff000; }
static void m_bss_above(struct fixture *f) { f->max = 0x104000; }
static void m_far(struct fixture *f) { f->u.ph[1].p_vaddr = 0x7fff00001000; }
static void m_align3(struct fixture *f) { f->u.ph[1].p_align = 3; }
static void m_align_mod(struct fixture *f)
{
	f->u.ph[0].p_vaddr = 0x100008;
	f->u.eh.e_entry = 0x100010;
}
static void m_overlap(struct fixture *f) { f->u.ph[1].p_vaddr = 0x100000; }
static void m_overlap_bss(struct fixture *f) { f->u.ph[1].p_vaddr = 0x104000; }
static void m_overlap_inside(struct fixture *f)
{
	/* rodata wholly inside data's bss, listed before it */
	f->u.ph[1].p_vaddr = 0x103000;
}
static void m_entry_out(struct fixture *f) { f->u.eh.e_entry = 0x200000; }
static void m_entry_ro(struct fixture *f) { f->u.eh.e_entry = 0x101000; }
static void m_entry_end(struct fixture *f) { f->u.eh.e_entry = 0x100040; }
static void m_entry_nx(struct fixture *f) { f->u.ph[0].p_flags = PF_R; }
static void m_wx(struct fixture *f)
{
	f->u.ph[2].p_flags = PF_R | PF_W | PF_X;
}
static void m_wx_shared_page(struct fixture *f)
{
	/* data starts on text's page, after its 0x40 bytes */
	f->u.ph[2].p_vaddr = 0x100040;
	f->u.ph[2].p_offset = 0x1040;
	f->u.ph[2].p_memsz = 0x20;
}

struct hostile {
	const char *name;
	void (*mutate)(struct fixture *);
	int code;
	const char *msg; /* must appear in the message */
};

static const struct hostile hostile[] = {
	{ "shorter than header", m_short, -EINVAL,
	  "truncated: 0x3f bytes, shorter than the ELF header" },
	{ "bad magic", m_magic, -ENOEXEC, "bad magic" },
	{ "ELFCLASS32", m_class32, -ENOEXEC, "not ELF64 (EI_CLASS 1)" },
	{ "big-endian", m_bigendian, -ENOEXEC, "not little-endian (EI_DATA 2)" },
	{ "EI_VERSION 0", m_ident_version, -ENOEXEC, "bad ELF version" },
	{ "e_version 2", m_version, -ENOEXEC, "e_version 2" },
	{ "PIE", m_dyn, -ENOEXEC, "e_type 3 is not ET_EXEC" },
	{ "relocatable", m_rel, -ENOEXEC, "e_type 1 is not ET_EXEC" },
	{ "core", m_core, -ENOEXEC, "e_type 4 is not ET_EXEC" },
	{ "aarch64", m_arm64, -ENOEXEC, "not x86-64 (e_machine 183)" },
	{ "i386", m_i386, -ENOEXEC, "not x86-64 (e_machine 3)" },
	{ "e_ehsize", m_ehsize, -EINVAL, "bad e_ehsize 52 (expected 64)" },
	{ "e_phentsize", m_phentsize, -EINVAL,
	  "bad e_phentsize 32 (expected 56)" },
	{ "no phdrs", m_phnum0, -EINVAL, "no program headers" },
	{ "65 phdrs", m_phnum65, -E2BIG, "too many program headers (65" },
	{ "PN_XNUM", m_phxnum, -E2BIG, "too many program headers (65535" },
	{ "phdrs past end", m_phoff_end, -EINVAL,
	  "truncated: program headers end at 0x30f8 past end of file (0x3020 bytes)" },
	{ "phoff wraps", m_phoff_wrap, -EINVAL,
	  "program header offset 0xfffffffffffffff7 overflows" },
	{ "no PT_LOAD", m_no_load, -EINVAL, "no PT_LOAD segments" },
	{ "17 PT_LOAD", m_17_loads, -E2BIG, "too many PT_LOAD segments" },
	{ "PT_INTERP", m_interp, -ENOEXEC, "segment 3 is PT_INTERP" },
	{ "PT_DYNAMIC", m_dynamic, -ENOEXEC, "segment 3 is PT_DYNAMIC" },
	{ "filesz > memsz", m_filesz, -EINVAL,
	  "segment 0: p_filesz 0x40 > p_memsz 0x20" },
	{ "filesz > memsz 0", m_filesz_empty, -EINVAL,
	  "segment 1: p_filesz 0x30 > p_memsz 0x0" },
	{ "file bytes past end", m_file_past, -EINVAL,
	  "truncated: segment 2 file range [0x3000,0x3021) past end of file (0x3020 bytes)" },
	{ "offset past end", m_offset_past, -EINVAL,
	  "truncated: segment 1 file range [0x4000,0x4030)" },
	{ "file range wraps", m_file_wrap, -EINVAL,
	  "segment 2: p_offset 0xfffffffffffffff0 + p_filesz 0x20 overflows" },
	{ "vaddr+memsz wraps", m_vaddr_wrap, -EINVAL,
	  "segment 2: p_vaddr 0xfffffffffffff000 + p_memsz 0x2100 overflows" },
	{ "below load_min", m_below, -ERANGE,
	  "segment 0 starts at 0xff000 outside partition memory [0x100000,0x400000)" },
	{ "above load_max", m_above, -ERANGE,
	  "segment 2 ends at 0x401100 outside partition memory [0x100000,0x400000)" },
	{ "bss above load_max", m_bss_above, -ERANGE,
	  "segment 2 ends at 0x104100 outside partition memory" },
	{ "far away", m_far, -ERANGE, "segment 1 ends at 0x7fff00001030" },
	{ "p_align 3", m_align3, -EINVAL,
	  "segment 1: p_align 0x3 is not a power of two" },
	{ "p_align mismatch", m_align_mod, -EINVAL,
	  "segment 0: p_vaddr 0x100008 and p_offset 0x1000 disagree modulo p_align 0x1000" },
	{ "overlap", m_overlap, -EINVAL,
	  "segment 1 [0x100000,0x100030) overlaps segment 0 [0x100000,0x100040)" },
	{ "overlap bss", m_overlap_bss, -EINVAL,
	  "segment 2 [0x102000,0x104100) overlaps segment 1 [0x104000,0x104030)" },
	{ "inside bss", m_overlap_inside, -EINVAL,
	  "segment 2 [0x102000,0x104100) overlaps segment 1" },
	{ "entry outside", m_entry_out, -EINVAL,
	  "entry point 0x200000 is not inside an executable segment" },
	{ "entry in rodata", m_entry_ro, -EINVAL,
	  "entry point 0x101000 is not inside an executable segment" },
	{ "entry past text", m_entry_end, -EINVAL,
	  "entry point 0x100040 is not inside" },
	{ "no PF_X", m_entry_nx, -EINVAL, "entry point 0x100010 is not inside" },
	{ "W and X", m_wx, -EINVAL,
	  "segment 2 is writable and executable (W^X)" },
	{ "data on text's page", m_wx_shared_page, -EINVAL,
	  "segments 0 and 2 share a page, one writable and one executable" },
};

Test(elf, hostile_images_refused)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const struct hostile *h = &hostile[i];
		struct fixture f;
		struct elf_image img;
		struct parley_err e = { 0 };
		int rc;

		build(&f);
		h->mutate(&f);
		rc = parse(&f, &img, &e);
		cr_expect_eq(rc, h->code, "%s: got %d (%s), want %d", h->name,
			     rc, perr_msg(&e), h->code);
		cr_expect_eq(e.code, rc, "%s: err.code %d != rc %d", h->name,
			     e.code, rc);
		cr_expect(strstr(e.msg, h->msg) != NULL,
			  "%s: message \"%s\" lacks \"%s\"", h->name, e.msg,
			  h->msg);
		/* Without an err the code is the same. */
		cr_expect_eq(parse(&f, &img, NULL), h->code, "%s (no err)",
			     h->name);
	}
}

Test(elf, every_truncation_refused)
{
	struct fixture f;
	struct elf_image img;

	build(&f);
	for (size_t len = 0; len < IMG_LEN; len++) {
		struct parley_err e = { 0 };
		int rc;

		f.len = len;
		rc = parse(&f, &img, &e);
		cr_assert_eq(rc, -EINVAL, "length 0x%zx: got %d (%s)", len, rc,
			     perr_msg(&e));
		cr_assert(strstr(e.msg, "truncated") != NULL,
			  "length 0x%zx: \"%s\"", len, e.msg);
	}
}

Test(elf, empty_load_range_refused)
{
	struct fixture f;
	struct elf_image img;
	struct parley_err e = { 0 };

	build(&f);
	f.max = f.min;
	cr_assert_eq(parse(&f, &img, &e), -EINVAL);
	cr_assert(strstr(e.msg, "empty load range") != NULL, "%s", e.msg);
}

Test(elf, load_rechecks_bounds)
{
	struct fixture f;
	struct elf_image img, bad;
	struct parley_err e = { 0 };
	uint8_t *mem = calloc(1, LOAD_MAX);

	cr_assert_not_null(mem);
	build(&f);
	cr_assert_eq(parse(&f, &img, &e), 0, "%s", perr_msg(&e));
	/* Guest RAM smaller than the range the image was checked against. */
	cr_assert_eq(elf_load(f.u.b, f.len, &img, mem, 0x104000, &e), -ERANGE);
	cr_assert(strstr(e.msg, "outside guest RAM [0,0x104000)"), "%s",
		  e.msg);
	/* A shorter buffer than the one that was parsed. */
	cr_assert_eq(elf_load(f.u.b, f.len - 1, &img, mem, LOAD_MAX, &e),
		     -EINVAL);
	cr_assert(strstr(e.msg, "not inside the image"), "%s", e.msg);
	bad = img;
	bad.seg[1].gpa = UINT64_MAX - 0x10;
	cr_assert_eq(elf_load(f.u.b, f.len, &bad, mem, LOAD_MAX, &e), -ERANGE);
	bad = img;
	bad.seg[1].file_size = bad.seg[1].mem_size + 1;
	cr_assert_eq(elf_load(f.u.b, f.len, &bad, mem, LOAD_MAX, &e), -EINVAL);
	bad = img;
	bad.nseg = ELF_SEGS_MAX + 1;
	cr_assert_eq(elf_load(f.u.b, f.len, &bad, mem, LOAD_MAX, &e), -EINVAL);
	free(mem);
}

/* The real partition image, when the build has made it. */
static uint8_t *read_hello(size_t *len)
{
	FILE *fp = fopen(PARLEY_BUILD_DIR "/guest/hello.elf", "rb");
	uint8_t *buf;
	long n;

	if (!fp)
		return NULL;
	cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	cr_assert_gt(n, 0);
	rewind(fp);
	buf = malloc((size_t)n);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static const struct elf_seg *seg_of(const struct elf_image *img, uint64_t a)
{
	for (unsigned i = 0; i < img->nseg; i++)
		if (a >= img->seg[i].gpa &&
		    a - img->seg[i].gpa < img->seg[i].mem_size)
			return &img->seg[i];
	return NULL;
}

/* The last byte of the file elf_parse looks at: the program header table
 * or a segment's file bytes, whichever ends later. Section headers and
 * symbols after it are not needed, so cutting them off must still parse. */
static size_t bytes_needed(const struct elf_image *img, size_t phdr_end)
{
	size_t need = phdr_end;

	for (unsigned i = 0; i < img->nseg; i++) {
		size_t end = img->seg[i].file_off + img->seg[i].file_size;

		if (end > need)
			need = end;
	}
	return need;
}

Test(elf, real_hello_image)
{
	size_t len;
	uint8_t *buf = read_hello(&len);
	struct elf_image img;
	struct parley_err e = { 0 };
	const struct elf_seg *s;
	uint8_t *mem;

	if (!buf)
		cr_assert_fail("no " PARLEY_BUILD_DIR "/guest/hello.elf: the build makes it");
	cr_assert_eq(elf_parse(buf, len, 0x100000, 0x400000, &img, &e), 0,
		     "%s", perr_msg(&e));
	s = seg_of(&img, img.entry);
	cr_assert_not_null(s, "entry 0x%" PRIx64 " in no segment", img.entry);
	cr_assert(s->flags & PF_X);
	cr_assert_geq(img.lo, 0x100000);
	cr_assert_leq(img.hi, 0x400000);
	for (unsigned i = 1; i < img.nseg; i++)
		cr_assert_leq(img.seg[i - 1].gpa + img.seg[i - 1].mem_size,
			      img.seg[i].gpa);
	mem = calloc(1, 0x400000);
	cr_assert_not_null(mem);
	cr_assert_eq(elf_load(buf, len, &img, mem, 0x400000, &e), 0, "%s",
		     perr_msg(&e));
	for (unsigned i = 0; i < img.nseg; i++)
		cr_assert_arr_eq(mem + img.seg[i].gpa,
				 buf + img.seg[i].file_off,
				 img.seg[i].file_size);
	free(mem);
	free(buf);
}

Test(elf, real_hello_truncated)
{
	size_t len, need, phdr_end;
	uint8_t *buf = read_hello(&len);
	struct elf_image img, full;
	Elf64_Ehdr eh;

	if (!buf)
		cr_assert_fail("no " PARLEY_BUILD_DIR "/guest/hello.elf: the build makes it");
	cr_assert_eq(elf_parse(buf, len, 0x100000, 0x400000, &full, NULL), 0);
	memcpy(&eh, buf, sizeof(eh));
	phdr_end = eh.e_phoff + (size_t)eh.e_phnum * eh.e_phentsize;
	need = bytes_needed(&full, phdr_end);
	cr_assert_leq(need, len);
	/* Every length below what is needed, and a stride above it. */
	for (size_t n = 0; n <= len; n += n < need ? 1 : 61) {
		int rc = elf_parse(buf, n, 0x100000, 0x400000, &img, NULL);

		if (n < need)
			cr_assert_eq(rc, -EINVAL, "length 0x%zx parsed", n);
		else
			cr_assert_eq(rc, 0, "length 0x%zx refused", n);
	}
	cr_assert_eq(elf_parse(buf, len - 1, 0x100000, 0x400000, &img, NULL),
		     need < len ? 0 : -EINVAL);
	free(buf);
}
