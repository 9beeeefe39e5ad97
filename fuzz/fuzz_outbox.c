/*
 * libFuzzer target for the agent's durable outbox (agent/outbox.c): any
 * bytes in, as the file a restarted agent reloads (a torn write, a
 * corrupted disk, a hostile edit).
 *  1. outbox_parse over the bytes: every record it passes on lies inside
 *     the input, re-encodes to exactly the bytes it came from, carries
 *     increasing seqs and a frame that decodes; the scan's figures add up.
 *  2. The bytes as the file of a state directory, opened with outbox_open:
 *     it holds exactly the records the parse found, and leaves a file that
 *     parses clean (no bad or torn bytes) and holds the same records.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/outbox.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEQS_MAX 4096

struct seen {
	const uint8_t *base;
	size_t size;
	unsigned n;
	uint64_t seq[SEQS_MAX];
};

static char dir[] = "/dev/shm/fuzz-outbox-XXXXXX";
static char file[64], seqf[64], bad[64];

static void cleanup(void)
{
	unlink(file);
	unlink(seqf);
	unlink(bad);
	rmdir(dir);
}

static void setup(void)
{
	if (!mkdtemp(dir))
		abort();
	snprintf(file, sizeof(file), "%s/outbox", dir);
	snprintf(seqf, sizeof(seqf), "%s/seq", dir);
	snprintf(bad, sizeof(bad), "%s/outbox.corrupt", dir);
	atexit(cleanup);
	log_init("fuzz_outbox", LOG_ERROR);
}

static int on_rec(uint64_t seq, const uint8_t *frame, size_t len,
		  const Parley__V1__Envelope *e, void *ctx)
{
	struct seen *s = ctx;
	PARLEY_ASSERT(e && len > FRAME_HDR && len <= FRAME_HDR + FRAME_MAX);
	if (s->base) {
		/* Inside the input, and exactly what encoding it gives. */
		PARLEY_ASSERT(frame >= s->base + OUTBOX_REC_HDR &&
			      frame + len <= s->base + s->size);
		uint8_t *again = malloc(OUTBOX_REC_HDR + len);
		PARLEY_ASSERT(again);
		outbox_rec_encode(again, seq, frame, len);
		PARLEY_ASSERT(!memcmp(again, frame - OUTBOX_REC_HDR,
				      OUTBOX_REC_HDR + len));
		free(again);
	}
	uint64_t last;
	PARLEY_ASSERT(outbox_frame_seq(e, 0, &last, NULL) == 0 && last == seq);
	PARLEY_ASSERT(!s->n || s->n > SEQS_MAX || seq > s->seq[s->n - 1]);
	if (s->n < SEQS_MAX)
		s->seq[s->n] = seq;
	s->n++;
	return 0;
}

static void reparse_clean(const struct seen *want)
{
	uint8_t *buf;
	size_t len;
	PARLEY_ASSERT(file_read_all(file, OUTBOX_FILE_MAX, &buf, &len, NULL) == 0);
	struct seen again = { 0 };
	struct outbox_scan sc;
	PARLEY_ASSERT(outbox_parse(buf, len, on_rec, &again, &sc) == 0);
	PARLEY_ASSERT(!sc.bad_header && !sc.bad_bytes && !sc.tail_bytes);
	PARLEY_ASSERT(sc.valid_end == len && again.n == want->n);
	for (unsigned i = 0; i < want->n && i < SEQS_MAX; i++)
		PARLEY_ASSERT(again.seq[i] == want->seq[i]);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	struct seen *s = calloc(1, sizeof(*s));
	PARLEY_ASSERT(s);
	s->base = data;
	s->size = size;
	struct outbox_scan sc;
	PARLEY_ASSERT(outbox_parse(data, size, on_rec, s, &sc) == 0);
	PARLEY_ASSERT(sc.nrec == s->n && sc.valid_end <= size);
	PARLEY_ASSERT(sc.tail_bytes <= size - sc.valid_end);
	PARLEY_ASSERT(!sc.tail_bytes || sc.valid_end + sc.tail_bytes == size);
	PARLEY_ASSERT(sc.bad_bytes <= size);
	PARLEY_ASSERT(sc.nrec || !sc.last_seq);

	unlink(seqf);
	unlink(bad);
	FILE *f = fopen(file, "wbe");
	PARLEY_ASSERT(f && fwrite(data, 1, size, f) == size && !fclose(f));
	struct outbox o;
	struct parley_err err = { 0 };
	PARLEY_ASSERT(outbox_open(&o, dir, &err) == 0);
	PARLEY_ASSERT(o.n == s->n);
	unsigned i = 0;
	for (const struct outbox_rec *r = o.head; r; r = r->next, i++) {
		PARLEY_ASSERT(r->synced);
		if (i < SEQS_MAX)
			PARLEY_ASSERT(r->seq == s->seq[i]);
	}
	PARLEY_ASSERT(o.next_seq > (o.tail ? o.tail->seq : 0));
	outbox_close(&o);
	s->base = NULL;
	reparse_clean(s);
	free(s);
	return 0;
}
