/*
 * libFuzzer target for the segment-set data set (common/segset.c): any
 * bytes in, and either sets that meet every rule of common/segset.h — whose
 * compiled tables the SDK's reader (guest/lib/segset.c) accepts whole —
 * or an error with a printable message and nothing left allocated.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/segset.h"
#include <parley/segsdk.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct parley_segtab tab;

static void check_set(const struct segset_def *s)
{
	PARLEY_ASSERT(s->nmembers >= 2 && s->nmembers <= 64);
	PARLEY_ASSERT(s->ndecl >= 1 && s->ndecl <= PARLEY_SEGSET_DECL_MAX);
	uint8_t *t;
	size_t len;
	struct parley_err err = { 0 };
	int rc = segset_compile(s, &t, &len, &err);
	PARLEY_ASSERT(rc == 0);
	PARLEY_ASSERT(parley_segtab_read(t, len, &tab) == PARLEY_SEG_OK);
	PARLEY_ASSERT(tab.hdr.nsegs == 1 + s->ndecl + s->nmembers);
	for (uint32_t i = 0; i < tab.hdr.nsegs; i++) {
		const struct parley_segset_seg *g = &tab.seg[i];
		/* one writer, never among the readers */
		if (g->writer != PARLEY_SEG_WRITER_AGENT)
			PARLEY_ASSERT(!((g->readers >> g->writer) & 1));
		PARLEY_ASSERT(parley_segtab_find(&tab, g->name) == (int)i);
	}
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const known[] = { "hub", "left", "right", "mon",
					     "a", "b", NULL };
	for (int k = 0; k < 2; k++) {
		struct segset_doc d;
		struct parley_err err = { 0 };
		int rc = segset_doc_parse((const char *)data, size,
					  k ? known : NULL, &d, &err);
		if (rc == 0) {
			for (unsigned i = 0; i < d.n; i++)
				check_set(&d.s[i]);
		} else {
			PARLEY_ASSERT(rc == -EINVAL || rc == -ENOENT ||
				      rc == -EEXIST || rc == -E2BIG ||
				      rc == -EFBIG || rc == -ENOMEM);
			PARLEY_ASSERT(err.code == rc && err.msg[0]);
			for (const char *p = err.msg; *p; p++)
				PARLEY_ASSERT((unsigned char)*p >= 0x20 &&
					      (unsigned char)*p < 0x7f);
			PARLEY_ASSERT(d.n == 0 && d.s == NULL);
		}
		segset_doc_free(&d);
	}
	return 0;
}
