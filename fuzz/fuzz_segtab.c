/*
 * libFuzzer target for the SDK's table reader and pipes
 * (guest/lib/segset.c): the table is shared memory the agent writes and a
 * member reads, so any bytes must give either _CORRUPT / _AGAIN or a table
 * whose every field holds what include/parley/segset.h promises — and then
 * pipe ends opened over a window of those bytes must never read or write
 * outside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include <parley/segsdk.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct parley_segtab tab;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The mapped table: a page-rounded private copy of the input. */
	size_t len = (size + 4095) & ~(size_t)4095;
	if (len == 0 || len > (1u << 20))
		return 0;
	uint8_t *t = calloc(1, len);
	memcpy(t, data, size);
	int rc = parley_segtab_read(t, len, &tab);
	PARLEY_ASSERT(rc == PARLEY_SEG_OK || rc == PARLEY_SEG_AGAIN ||
		      rc == PARLEY_SEG_CORRUPT);
	if (rc != PARLEY_SEG_OK || tab.hdr.window_size > (8u << 20)) {
		free(t);
		return 0;
	}
	const struct parley_segset_hdr *h = &tab.hdr;
	uint64_t end = 0;
	for (uint32_t i = 0; i < h->nsegs; i++) {
		PARLEY_ASSERT(tab.seg[i].offset == end);
		end += tab.seg[i].size;
		PARLEY_ASSERT(tab.seg[i].name[PARLEY_SEG_NAME_MAX - 1] == 0);
	}
	PARLEY_ASSERT(end == h->window_size);
	/* A window of the whole set, the table at its start, the rest
	 * filled from the input too: every pipe end, as every member. */
	uint8_t *win = calloc(1, h->window_size);
	memcpy(win, t, len < h->window_size ? len : h->window_size);
	for (uint32_t i = 0; i < h->window_size && size; i += 64)
		win[i] ^= data[i % size];
	for (uint32_t s = 1; s <= h->ndecl; s++) {
		for (uint32_t m = 0; m < h->nmembers; m++) {
			struct parley_seg_pipe p;
			uint8_t buf[256];
			uint32_t got;
			if (parley_seg_pipe_reader(&p, &tab, win, m,
						   tab.seg[s].name) == 0) {
				for (int k = 0; k < 8; k++)
					if (parley_seg_recv(&p, buf, sizeof(buf),
							    &got) == 0)
						PARLEY_ASSERT(got <= sizeof(buf));
			}
			if (parley_seg_pipe_writer(&p, &tab, win, m,
						   tab.seg[s].name) == 0)
				for (int k = 0; k < 8; k++)
					(void)parley_seg_send(&p, buf, 40);
		}
	}
	free(win);
	free(t);
	return 0;
}
