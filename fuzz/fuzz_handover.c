/*
 * libFuzzer target for the hand-over message (agent/handover.c): the bytes
 * a new agent reads from the memfd the agent before it passed. The count
 * of descriptors that "came with it" is the message's own last four bytes
 * (so that accepted messages are reachable); a real receiver counts what
 * it received.
 *
 * Oracle: a refusal is -EBADMSG or -E2BIG with a printable message;
 * an accepted message re-encodes to exactly the input bytes (one parser,
 * one meaning per message), and every index in it is in range.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/handover.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const struct handover *h, const uint8_t *data,
			   size_t size)
{
	struct parley_err err = { 0 };
	uint8_t *again;
	size_t len;
	PARLEY_ASSERT(handover_encode(h, &again, &len, &err) == 0);
	PARLEY_ASSERT(len == size && !memcmp(again, data, size));
	free(again);
	for (unsigned i = 0; i < h->nchan; i++)
		for (int s = 0; s < 2; s++)
			PARLEY_ASSERT(h->chan[i].end[s].part <
				      (int32_t)h->npart);
	for (unsigned i = 0; i < h->npending; i++)
		PARLEY_ASSERT(h->pending[i] < h->nchan);
	for (unsigned i = 0; i < h->noffer; i++)
		PARLEY_ASSERT(h->offer[i].part < h->npart);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned nfds = 0;
	if (size >= 4)
		nfds = (unsigned)data[size - 4] | (unsigned)data[size - 3] << 8 |
		       (unsigned)data[size - 2] << 16 |
		       (unsigned)data[size - 1] << 24;
	struct handover h;
	struct parley_err err = { 0 };
	int rc = handover_parse(data, size, nfds, &h, &err);
	if (rc == 0) {
		check_accepted(&h, data, size);
		handover_free(&h);
		return 0;
	}
	PARLEY_ASSERT(rc == -EBADMSG || rc == -E2BIG);
	for (const char *m = perr_msg(&err); *m; m++)
		PARLEY_ASSERT((unsigned char)*m >= 0x20 &&
			      (unsigned char)*m < 0x7f);
	return 0;
}
