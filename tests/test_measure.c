/* Measurement (agent/ipc/measure.c) on memory laid out here: the dirty
 * report is untrusted input and bounded; the full re-hash tells a write
 * the vmm hid from one it reported. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ipc/measure.h"

#define PAGES 70
#define PAGE PARLEY_PAGE_SIZE

static uint8_t cfg[PAGES * PAGE];

static void baseline(struct measure *m)
{
	struct measure_input_file f[] = { { "motd", 0, 100 },
					  { "app.conf", PAGE, 3 * PAGE } };
	struct parley_err err = { 0 };
	memset(cfg, 0x33, sizeof(cfg));
	cr_assert_eq(measure_baseline(m, cfg, 0, cfg, sizeof(cfg), f, 2, NULL,
				      0, &err), 0, "%s", perr_msg(&err));
}

Test(measure, dirty_report_is_bounded)
{
	struct measure m;
	uint8_t bits[8];
	memset(bits, 0xff, sizeof(bits));
	baseline(&m);
	/* n past the bits given, past the region, first past the end */
	cr_expect_eq(measure_mark_dirty(&m, 0, 65, bits, sizeof(bits)), -EINVAL);
	cr_expect_eq(measure_mark_dirty(&m, 10, 61, bits, sizeof(bits)), -EINVAL);
	cr_expect_eq(measure_mark_dirty(&m, PAGES + 1, 0, bits, sizeof(bits)),
		     -EINVAL);
	cr_expect_eq(measure_mark_dirty(&m, UINT64_MAX, 2, bits, sizeof(bits)),
		     -EINVAL);
	cr_expect_eq(measure_mark_dirty(&m, 6, 64, bits, sizeof(bits)), 0);
	cr_expect_eq(measure_mark_dirty(&m, PAGES, 0, bits, sizeof(bits)), 0);
	measure_free(&m);
}

Test(measure, full_rehash_tells_hidden_from_reported)
{
	struct measure m;
	uint8_t one = 1;
	baseline(&m);
	cfg[2 * PAGE] ^= 1;  /* app.conf, reported below */
	cfg[40 * PAGE] ^= 1; /* padding, hidden */
	cr_assert_eq(measure_mark_dirty(&m, 2, 1, &one, 1), 0);
	uint64_t *differ = measure_rehash_all(&m, cfg);
	cr_assert(differ);
	cr_expect_eq(measure_unreported(&m, differ), 40);
	cr_expect_eq(measure_reported_differs(&m, differ), 2);
	cr_expect_eq(measure_file_of_page(&m, 2), 1);
	free(differ);
	cfg[40 * PAGE] ^= 1;
	cfg[2 * PAGE] ^= 1;
	differ = measure_rehash_all(&m, cfg);
	cr_expect_eq(measure_unreported(&m, differ), -1);
	cr_expect_eq(measure_reported_differs(&m, differ), -1);
	free(differ);
	measure_free(&m);
}
