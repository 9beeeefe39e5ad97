/* Segment sets from a partition: the attach and detach hypercalls, and
 * the glue to the table reader of segset.c (the table at the window's
 * start, segment 0). */
#include <parley/guest.h>

static void name_copy(char *dst, const char *src)
{
	/* Copied whole: a name as long as the field goes unterminated, and
	 * the agent refuses it (INVAL). */
	size_t i = 0;
	for (; i < PARLEY_CHAN_NAME_MAX && src[i]; i++)
		dst[i] = src[i];
	for (; i < PARLEY_CHAN_NAME_MAX; i++)
		dst[i] = 0;
}

int64_t parley_seg_attach(const char *name, struct parley_segset *s,
			  char *detail)
{
	struct parley_hc_seg_attach a;
	memset(&a, 0, sizeof(a));
	name_copy(a.name, name);
	parley_hypercall(PARLEY_HC_SEG_ATTACH, &a);
	if (detail)
		memcpy(detail, a.detail, sizeof(a.detail));
	if (a.ret != PARLEY_OK)
		return a.ret;
	s->handle = a.handle;
	s->base = (uint8_t *)(uintptr_t)a.gpa;
	s->size = a.size;
	s->self = a.member;
	return PARLEY_OK;
}

int64_t parley_seg_detach(const char *name)
{
	struct parley_hc_seg_detach a;
	memset(&a, 0, sizeof(a));
	name_copy(a.name, name);
	parley_hypercall(PARLEY_HC_SEG_DETACH, &a);
	return a.ret;
}

int parley_seg_table(const struct parley_segset *s, struct parley_segtab *t)
{
	const volatile struct parley_segset_hdr *h =
		(const volatile struct parley_segset_hdr *)s->base;
	for (;;) {
		/* Segment 0's length is the table's word, bounded by the
		 * window: the reader checks the rest against it. */
		uint64_t len = h->table_size;
		if (len > s->size)
			return PARLEY_SEG_CORRUPT;
		int rc = parley_segtab_read(s->base, len, t);
		if (rc != PARLEY_SEG_AGAIN)
			return rc;
		__asm__ volatile("pause");
	}
}

int64_t parley_seg_wait(const struct parley_segset *s, uint64_t timeout_ns)
{
	return parley_chan_wait(&s->handle, 1, timeout_ns, NULL);
}
