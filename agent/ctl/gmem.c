#include "agent/ctl/gmem.h"

#include <errno.h>
#include <stddef.h>

int gmem_add(struct gmem *g, parley_gpa_t gpa, uint64_t size, uint8_t *host)
{
	if (g->nregion >= GMEM_REGIONS_MAX)
		return -ENOSPC;
	g->region[g->nregion++] = (struct gmem_region){ gpa, size, host };
	return 0;
}

static bool align_ok(parley_gpa_t gpa, uint64_t align)
{
	return align && !(align & (align - 1)) && !(gpa & (align - 1));
}

void *gmem_ptr(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
	       uint64_t align)
{
	uint64_t end;
	if (!align_ok(gpa, align) || __builtin_add_overflow(gpa, len, &end))
		return NULL;
	for (unsigned i = 0; i < g->nregion; i++) {
		const struct gmem_region *r = &g->region[i];
		if (gpa >= r->gpa && end <= r->gpa + r->size)
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int gmem_guest_init(struct gmem *g, uint64_t ram_size)
{
	g->guest = (struct gmem_guest){ 0 };
	if (ram_size <= PARLEY_IMAGE_MIN || ram_size > PARLEY_CONFIG_BASE)
		return -EINVAL;
	g->guest.lo = PARLEY_IMAGE_MIN;
	g->guest.hi = ram_size;
	return 0;
}

int gmem_guest_ro(struct gmem *g, parley_gpa_t gpa, uint64_t size)
{
	struct gmem_guest *v = &g->guest;
	uint64_t end;
	if (!size || __builtin_add_overflow(gpa, size, &end) || gpa < v->lo ||
	    end > v->hi)
		return -EINVAL;
	if (v->nro >= GMEM_RO_MAX)
		return -ENOSPC;
	v->ro[v->nro++] = (struct gmem_span){ gpa, end };
	return 0;
}

/* Does [gpa, end) touch [lo, hi)? An empty range touches where it lies. */
static bool touches(uint64_t gpa, uint64_t end, uint64_t lo, uint64_t hi)
{
	if (gpa == end)
		return gpa >= lo && gpa < hi;
	return gpa < hi && end > lo;
}

/* Name what a range outside the partition's RAM touches, lowest first. */
static enum gmem_refusal where(uint64_t gpa, uint64_t end)
{
	static const struct {
		uint64_t lo, hi;
		enum gmem_refusal r;
	} map[] = {
		{ 0, PARLEY_SYS_BASE, GMEM_NULL_PAGE },
		{ PARLEY_SYS_BASE, PARLEY_SYS_BASE + PARLEY_SYS_SIZE, GMEM_SYSTEM },
		{ PARLEY_BOOT_INFO_GPA, PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE,
		  GMEM_BOOT_INFO },
		{ PARLEY_CONFIG_BASE, PARLEY_CONFIG_BASE + PARLEY_CONFIG_MAX,
		  GMEM_CONFIG },
		{ PARLEY_CHAN_BASE, PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE,
		  GMEM_CHANNEL },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (touches(gpa, end, map[i].lo, map[i].hi))
			return map[i].r;
	return GMEM_OUTSIDE;
}

enum gmem_refusal gmem_guest_check(const struct gmem *g, parley_gpa_t gpa,
				   uint64_t len, uint64_t align, bool write)
{
	const struct gmem_guest *v = &g->guest;
	uint64_t end;
	if (!align_ok(gpa, align))
		return GMEM_UNALIGNED;
	if (__builtin_add_overflow(gpa, len, &end))
		return GMEM_WRAPS;
	if (gpa < v->lo || end > v->hi)
		return where(gpa, end);
	for (unsigned i = 0; write && i < v->nro; i++)
		if (touches(gpa, end, v->ro[i].gpa, v->ro[i].end))
			return GMEM_READONLY;
	return GMEM_OK;
}

const char *gmem_refusal_str(enum gmem_refusal r)
{
	static const char *const s[] = {
		[GMEM_OK] = "admitted",
		[GMEM_UNALIGNED] = "not aligned",
		[GMEM_WRAPS] = "wrapping past the end of the address space",
		[GMEM_NULL_PAGE] = "in page 0",
		[GMEM_SYSTEM] = "in the system tables (page tables, GDT, TSS)",
		[GMEM_BOOT_INFO] = "in boot info",
		[GMEM_READONLY] = "in a read-only image page",
		[GMEM_CONFIG] = "in the config region",
		[GMEM_CHANNEL] = "in the channel window area",
		[GMEM_OUTSIDE] = "outside guest memory",
	};
	return (unsigned)r < sizeof(s) / sizeof(s[0]) ? s[r] : "refused";
}

static void *guest_ptr(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
		       uint64_t align, bool write, enum gmem_refusal *why)
{
	enum gmem_refusal r = gmem_guest_check(g, gpa, len, align, write);
	void *p = r == GMEM_OK ? gmem_ptr(g, gpa, len, align) : NULL;
	if (!p && r == GMEM_OK)
		r = GMEM_OUTSIDE; /* declared but not backed: not the guest's */
	if (why)
		*why = r;
	return p;
}

void *gmem_guest_rw(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
		    uint64_t align, enum gmem_refusal *why)
{
	return guest_ptr(g, gpa, len, align, true, why);
}

const void *gmem_guest_r(const struct gmem *g, parley_gpa_t gpa, uint64_t len,
			 uint64_t align, enum gmem_refusal *why)
{
	return guest_ptr(g, gpa, len, align, false, why);
}

bool gmem_guest_is_ro(const struct gmem *g, parley_gpa_t gpa)
{
	for (unsigned i = 0; i < g->guest.nro; i++)
		if (gpa >= g->guest.ro[i].gpa && gpa < g->guest.ro[i].end)
			return true;
	return false;
}
