/*
 * The doors to guest memory.
 *
 * gmem_ptr() is the vmm's and the grant manager's own door: it checks the
 * whole range [gpa, gpa + len) against the regions actually backed, without
 * overflow, before handing out a host pointer. It admits every backed byte,
 * system tables and config region included, so it is for addresses the
 * agent chose itself (boot info set-up, measurement), never for one a
 * partition supplied.
 *
 * gmem_guest_rw() and gmem_guest_r() are the door for addresses a partition
 * supplied (hypercall argument structs and buffers). They admit only what
 * the partition itself may write (or, for _r, read from its own image):
 * its RAM from PARLEY_IMAGE_MIN up, minus the image's read-only pages for
 * _rw. Never page 0, the system tables, boot info, the config region or a
 * channel window: a vmm writing there through its host mapping would write
 * where the partition cannot, unseen by the dirty log (the laundering
 * attack), or into the tables that confine the partition.
 */
#ifndef PARLEY_CTL_GMEM_H
#define PARLEY_CTL_GMEM_H

#include <stdbool.h>
#include <stdint.h>
#include <parley/abi.h>

#define GMEM_REGIONS_MAX 4
/* Read-only image ranges one partition may have (ctl_launch.ro[]). */
#define GMEM_RO_MAX 16

struct gmem_region {
	parley_gpa_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct gmem_span {
	uint64_t gpa, end;        /* [gpa, end) */
};

/* What a partition may name in a hypercall: [lo, hi) of its RAM, of which
 * ro[] are its read-only image pages. All zero (no RAM): nothing. */
struct gmem_guest {
	uint64_t lo, hi;
	unsigned nro;
	struct gmem_span ro[GMEM_RO_MAX];
};

struct gmem {
	unsigned nregion;
	struct gmem_region region[GMEM_REGIONS_MAX];
	struct gmem_guest guest;
};

/* Add a region; regions must not overlap (checked by the caller's layout). */
int gmem_add(struct gmem *g, parley_gpa_t gpa, uint64_t size, uint8_t *host);

/* Host pointer for [gpa, gpa + len) if it lies wholly inside one region and
 * gpa is a multiple of align (a power of two, or 1); NULL otherwise. A
 * zero-length range is valid anywhere inside or at the end of a region.
 * Not for guest-supplied addresses: see gmem_guest_rw(). */
void *gmem_ptr(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
	       uint64_t align);

/* Declare the partition's own memory: RAM [PARLEY_IMAGE_MIN, ram_size).
 * Resets the read-only ranges. 0, or -EINVAL for a RAM size that leaves
 * nothing above PARLEY_IMAGE_MIN or reaches the config region. */
int gmem_guest_init(struct gmem *g, uint64_t ram_size);

/* Add a read-only image range [gpa, gpa + size) inside that RAM. 0,
 * -EINVAL (outside it, empty or wrapping), -ENOSPC (table full). */
int gmem_guest_ro(struct gmem *g, parley_gpa_t gpa, uint64_t size);

/* Why a guest-supplied range was refused, named after what it touched. */
enum gmem_refusal {
	GMEM_OK = 0,
	GMEM_UNALIGNED,           /* gpa not a multiple of align */
	GMEM_WRAPS,               /* gpa + len past 2^64 */
	GMEM_NULL_PAGE,           /* page 0 */
	GMEM_SYSTEM,              /* page tables, GDT, TSS */
	GMEM_BOOT_INFO,           /* boot info, config table, command line */
	GMEM_READONLY,            /* a read-only image page (write only) */
	GMEM_CONFIG,              /* the config region */
	GMEM_CHANNEL,             /* the channel window area */
	GMEM_OUTSIDE,             /* anything else: not the partition's */
};

/* Check [gpa, gpa + len) as a range the vmm will write (write = true:
 * writable RAM only) or only read (read-only image pages admitted too). */
enum gmem_refusal gmem_guest_check(const struct gmem *g, parley_gpa_t gpa,
				   uint64_t len, uint64_t align, bool write);

/* "in the config region", ...: completes "argument at 0x.. is ". */
const char *gmem_refusal_str(enum gmem_refusal r);

/* Host pointer for a guest-supplied range the vmm reads and writes back
 * (argument structs): NULL unless gmem_guest_check(..., true) admits it and
 * it is backed. *why (may be NULL) gets the reason either way. */
void *gmem_guest_rw(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
		    uint64_t align, enum gmem_refusal *why);

/* The same for a range the vmm only reads (a console buffer): the
 * partition's read-only image (text, rodata) is admitted as well. */
const void *gmem_guest_r(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
			 uint64_t align, enum gmem_refusal *why);

/* Is gpa inside one of the read-only image ranges? */
bool gmem_guest_is_ro(const struct gmem *g, parley_gpa_t gpa);

#endif
