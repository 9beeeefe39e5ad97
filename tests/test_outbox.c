/* The agent's durable outbox file (agent/outbox.c): append, sync, reload,
 * a torn tail, corruption and hostile records, compaction, and seqs that
 * are never handed out twice. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/outbox.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/wire.h"
#include "tests/helpers/testutil.h"

/* An audit batch of n events, seqs first..first+n-1, as a frame. */
static uint8_t *audit_frame(uint64_t first, unsigned n, size_t *len)
{
	Parley__V1__AuditEvent ev[8], *p[8];
	cr_assert(n <= 8);
	for (unsigned i = 0; i < n; i++) {
		parley__v1__audit_event__init(&ev[i]);
		ev[i].seq = first + i;
		ev[i].time_unix_ms = 1700000000000ull + first + i;
		ev[i].event = (char *)"open_denied";
		ev[i].partition = (char *)"a";
		ev[i].channel = (char *)"c1";
		ev[i].reason = (char *)"NO_GRANT";
		ev[i].file = (char *)"";
		ev[i].detail = (char *)"";
		p[i] = &ev[i];
	}
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch b;
	wire_init_envelope(&e, 0);
	parley__v1__audit_batch__init(&b);
	b.events = p;
	b.n_events = n;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &b;
	cr_assert_eq(wire_check(&e, NULL), 0);
	uint8_t *f;
	cr_assert_eq(frame_encode(&e, &f, len), 0);
	return f;
}

/* Take n seqs for one batch and append it. */
static uint64_t append_batch(struct outbox *o, unsigned n)
{
	uint64_t first = 0, s = 0;
	for (unsigned i = 0; i < n; i++) {
		s = outbox_take_seq(o, NULL);
		cr_assert(s);
		if (!first)
			first = s;
	}
	size_t len;
	uint8_t *f = audit_frame(first, n, &len);
	struct parley_err err = { 0 };
	cr_assert_eq(outbox_append(o, s, f, len, &err), 0, "%s",
		     perr_msg(&err));
	return s;
}

static void open_ok(struct outbox *o, const char *dir)
{
	struct parley_err err = { 0 };
	cr_assert_eq(outbox_open(o, dir, &err), 0, "%s", perr_msg(&err));
}

static void sync_ok(struct outbox *o)
{
	struct parley_err err = { 0 };
	cr_assert_eq(outbox_sync(o, &err), 0, "%s", perr_msg(&err));
}

static char *file_in(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	sprintf(p, "%s/%s", dir, name);
	return p;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *buf;
	cr_assert_eq(file_read_all(path, OUTBOX_FILE_MAX, &buf, len, NULL), 0,
		     "%s", path);
	return buf;
}

static off_t size_of(const char *dir, const char *name)
{
	char *p = file_in(dir, name);
	struct stat st;
	off_t n = stat(p, &st) == 0 ? st.st_size : -1;
	free(p);
	return n;
}

/* The seqs the outbox holds, in order, into out[]; returns how many. */
static unsigned held(const struct outbox *o, uint64_t *out, unsigned cap)
{
	unsigned n = 0;
	for (const struct outbox_rec *r = o->head; r && n < cap; r = r->next)
		out[n++] = r->seq;
	cr_assert_eq(n, o->n);
	return n;
}

static int count_cb(uint64_t seq, const uint8_t *f, size_t len,
		    const Parley__V1__Envelope *e, void *ctx)
{
	(void)seq, (void)f, (void)len, (void)e;
	(*(unsigned *)ctx)++;
	return 0;
}

/* Parse the file as it is now: no bad bytes anywhere. */
static unsigned clean_records(const char *dir)
{
	char *p = file_in(dir, "outbox");
	size_t len;
	uint8_t *buf = slurp(p, &len);
	struct outbox_scan sc;
	unsigned n = 0;
	cr_assert_eq(outbox_parse(buf, len, count_cb, &n, &sc), 0);
	cr_assert(!sc.bad_header && !sc.bad_bytes && !sc.tail_bytes,
		  "%s is not clean", p);
	cr_assert_eq(sc.valid_end, len);
	free(buf);
	free(p);
	return n;
}

Test(outbox, synced_records_come_back_in_order_and_unsent)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(o.next_seq, 1);
	uint64_t s1 = append_batch(&o, 3), s2 = append_batch(&o, 1);
	cr_assert_null(outbox_next_unsent(&o), "handed out before synced");
	sync_ok(&o);
	const struct outbox_rec *r = outbox_next_unsent(&o);
	cr_assert(r && r->seq == s1);
	r = outbox_next_unsent(&o);
	cr_assert(r && r->seq == s2);
	cr_assert_null(outbox_next_unsent(&o));
	uint8_t *f1 = malloc(o.head->len);
	size_t l1 = o.head->len;
	memcpy(f1, o.head->frame, l1);
	outbox_close(&o);

	open_ok(&o, dir);
	uint64_t s[4];
	cr_assert_eq(held(&o, s, 4), 2);
	cr_assert(s[0] == s1 && s[1] == s2);
	cr_assert(o.head->len == l1 && !memcmp(o.head->frame, f1, l1),
		  "the frame came back changed");
	cr_assert(o.next_seq > s2);
	r = outbox_next_unsent(&o);
	cr_assert(r && r->seq == s1, "a reloaded record is not sent");
	/* Acknowledged up to s1: only s2 is sent again after a rewind. */
	outbox_ack(&o, s1);
	outbox_rewind(&o);
	r = outbox_next_unsent(&o);
	cr_assert(r && r->seq == s2);
	cr_assert_null(outbox_next_unsent(&o));
	outbox_close(&o);
	free(f1);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, unsynced_record_is_lost_and_its_seq_never_reused)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	uint64_t kept = append_batch(&o, 1);
	sync_ok(&o);
	uint64_t lost = append_batch(&o, 2);
	outbox_close(&o); /* as kill -9: the buffer never reached the file */
	open_ok(&o, dir);
	uint64_t s[4];
	cr_assert_eq(held(&o, s, 4), 1);
	cr_assert_eq(s[0], kept);
	uint64_t next = append_batch(&o, 1);
	cr_assert_gt(next, lost, "seq %llu handed out again",
		     (unsigned long long)next);
	sync_ok(&o);
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, seqs_increase_across_restarts_even_when_all_acknowledged)
{
	char *dir = t_tmpdir();
	uint64_t last = 0;
	for (int round = 0; round < 5; round++) {
		struct outbox o;
		open_ok(&o, dir);
		uint64_t s = append_batch(&o, 2);
		cr_assert_gt(s - 1, last, "round %d reused a seq", round);
		sync_ok(&o);
		outbox_ack(&o, s);
		outbox_compact(&o, NULL); /* nothing left in the file */
		cr_assert_eq(clean_records(dir), 0);
		last = s;
		outbox_close(&o);
	}
	t_rmtree(dir);
	free(dir);
}

Test(outbox, daemon_holding_more_raises_the_next_seq)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	/* A seq near the end of the space would wrap: refused. */
	cr_assert_eq(outbox_raise_seq(&o, UINT64_MAX, NULL), -ERANGE);
	cr_assert_eq(o.next_seq, 1);
	cr_assert_eq(outbox_raise_seq(&o, 1000000, NULL), 0);
	cr_assert_eq(outbox_take_seq(&o, NULL), 1000001);
	outbox_close(&o);
	open_ok(&o, dir);
	cr_assert_gt(o.next_seq, 1000001, "the raise was not kept");
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

/* Three synced records; the path of the file. */
static char *three_records(const char *dir, uint64_t s[3])
{
	struct outbox o;
	open_ok(&o, dir);
	for (int i = 0; i < 3; i++)
		s[i] = append_batch(&o, 2);
	sync_ok(&o);
	outbox_close(&o);
	return file_in(dir, "outbox");
}

Test(outbox, torn_tail_is_cut_at_every_length)
{
	char *dir = t_tmpdir();
	uint64_t s[3];
	char *path = three_records(dir, s);
	size_t len;
	uint8_t *orig = slurp(path, &len);
	/* Where the last record starts: the file with two records. */
	struct outbox_scan sc;
	cr_assert_eq(outbox_parse(orig, len, NULL, NULL, &sc), 0);
	cr_assert_eq(sc.nrec, 3);
	size_t rec3 = len - (OUTBOX_REC_HDR + 4); /* at least this far */
	for (size_t cut = 1; cut < len - OUTBOX_MAGIC_LEN; cut++) {
		if (len - cut < rec3 - 200 && cut % 7)
			continue; /* every length near the end, some before */
		int fd = open(path, O_WRONLY | O_TRUNC);
		cr_assert(fd >= 0);
		cr_assert_eq(fd_write_all(fd, orig, len - cut), 0);
		close(fd);
		struct outbox o;
		open_ok(&o, dir);
		cr_assert_lt(o.n, 3, "cut %zu: a torn record was kept", cut);
		uint64_t h[3];
		unsigned n = held(&o, h, 3);
		for (unsigned i = 0; i < n; i++)
			cr_assert_eq(h[i], s[i]);
		cr_assert_eq(clean_records(dir), n, "cut %zu: not cut back",
			     cut);
		/* Appending after a cut tail reads back whole. */
		uint64_t more = append_batch(&o, 1);
		cr_assert_gt(more, s[2]);
		sync_ok(&o);
		outbox_close(&o);
		cr_assert_eq(clean_records(dir), n + 1);
		cr_assert_eq(size_of(dir, "outbox.corrupt"), -1,
			     "cut %zu: a torn tail is no corruption", cut);
	}
	free(orig);
	free(path);
	t_rmtree(dir);
	free(dir);
}

static void rewrite(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(fd_write_all(fd, buf, len), 0);
	close(fd);
}

Test(outbox, corruption_in_the_middle_keeps_the_good_records)
{
	char *dir = t_tmpdir();
	uint64_t s[3];
	char *path = three_records(dir, s);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	size_t rec = (len - OUTBOX_MAGIC_LEN) / 3;
	/* Every byte of the second record flipped in turn. */
	for (size_t i = 0; i < rec; i += 3) {
		size_t at = OUTBOX_MAGIC_LEN + rec + i;
		buf[at] ^= 0x41;
		rewrite(path, buf, len);
		buf[at] ^= 0x41;
		struct outbox o;
		open_ok(&o, dir);
		uint64_t h[3];
		cr_assert_eq(held(&o, h, 3), 2, "byte %zu", i);
		cr_assert(h[0] == s[0] && h[1] == s[2], "byte %zu", i);
		outbox_close(&o);
		cr_assert_eq(size_of(dir, "outbox.corrupt"), (off_t)len,
			     "the file as found is not kept aside");
		cr_assert_eq(clean_records(dir), 2, "not rewritten");
	}
	free(buf);
	free(path);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, bad_header_and_garbage_files)
{
	char *dir = t_tmpdir();
	char *path = file_in(dir, "outbox");
	static const uint8_t garbage[] = "PARLEYOX and then nothing of use at all";
	rewrite(path, garbage, sizeof(garbage));
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(o.n, 0);
	outbox_close(&o);
	cr_assert_eq(clean_records(dir), 0);
	/* The header itself cut short: a torn first write. */
	rewrite(path, "PARL", 4);
	open_ok(&o, dir);
	outbox_close(&o);
	cr_assert_eq(clean_records(dir), 0);
	/* An empty file. */
	rewrite(path, "", 0);
	open_ok(&o, dir);
	outbox_close(&o);
	free(path);
	t_rmtree(dir);
	free(dir);
}

/* A record with a good checksum around a bad frame: what a hostile edit
 * can write (a CRC is no MAC). Each is dropped, the rest kept. */
static void hostile_record(const char *dir, uint64_t seq, const uint8_t *frame,
			   size_t flen, const char *what)
{
	uint64_t s[3];
	char *path = three_records(dir, s);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	size_t rlen = OUTBOX_REC_HDR + flen;
	uint8_t *all = malloc(len + rlen);
	memcpy(all, buf, len);
	outbox_rec_encode(all + len, seq ? seq : s[2] + 1, frame, flen);
	rewrite(path, all, len + rlen);
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(o.n, 3, "%s: kept", what);
	cr_assert_eq(o.tail->seq, s[2], "%s", what);
	cr_assert_gt(o.next_seq, s[2]);
	outbox_close(&o);
	cr_assert_eq(clean_records(dir), 3);
	unlink(path);
	free(all);
	free(buf);
	free(path);
}

Test(outbox, hostile_records_with_good_checksums_are_dropped)
{
	char *dir = t_tmpdir();
	/* A hello: no record the agent would send. */
	Parley__V1__Envelope e;
	Parley__V1__Hello h;
	wire_init_envelope(&e, 1);
	parley__v1__hello__init(&h);
	h.host = (char *)"host-a";
	h.agent_version = (char *)"x";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	uint8_t *f;
	size_t len;
	cr_assert_eq(frame_encode(&e, &f, &len), 0);
	hostile_record(dir, 0, f, len, "hello");
	free(f);
	/* An audit batch whose events do not carry the record's seq. */
	f = audit_frame(500, 2, &len);
	hostile_record(dir, 400, f, len, "seq mismatch");
	/* A copy of an earlier record: seqs must increase. */
	hostile_record(dir, 501, f, len, "seq replayed");
	free(f);
	f = audit_frame(1, 2, &len);
	hostile_record(dir, 2, f, len, "seq going back");
	free(f);
	/* Not a protobuf envelope; a frame whose prefix lies. */
	uint8_t junk[16] = { 0, 0, 0, 12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			     0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	hostile_record(dir, 0, junk, sizeof(junk), "junk envelope");
	junk[3] = 200;
	hostile_record(dir, 0, junk, sizeof(junk), "frame prefix too long");
	/* Events the daemon would refuse (an empty event name). */
	Parley__V1__AuditEvent ev, *ep = &ev;
	Parley__V1__AuditBatch b;
	parley__v1__audit_event__init(&ev);
	ev.seq = 900;
	ev.event = (char *)"";
	parley__v1__audit_batch__init(&b);
	b.events = &ep;
	b.n_events = 1;
	wire_init_envelope(&e, 0);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &b;
	if (wire_check(&e, NULL) < 0) {
		cr_assert_eq(frame_encode(&e, &f, &len), 0);
		hostile_record(dir, 900, f, len, "refused event");
		free(f);
	}
	t_rmtree(dir);
	free(dir);
}

Test(outbox, huge_length_field_is_no_allocation)
{
	char *dir = t_tmpdir();
	uint64_t s[3];
	char *path = three_records(dir, s);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	/* The second record's length: 4 GiB - 1. */
	size_t rec = (len - OUTBOX_MAGIC_LEN) / 3;
	memset(buf + OUTBOX_MAGIC_LEN + rec + 4, 0xff, 4);
	rewrite(path, buf, len);
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(o.n, 2);
	outbox_close(&o);
	free(buf);
	free(path);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, bad_seq_file_is_refused_not_read_as_a_smaller_number)
{
	char *dir = t_tmpdir();
	const char *bad[] = { "12x\n", "", "-5\n", "99999999999999999999999\n",
			      "7\n\n" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(t_write(dir, "seq", bad[i], strlen(bad[i])));
		struct outbox o;
		struct parley_err err = { 0 };
		cr_assert_eq(outbox_open(&o, dir, &err), -EBADMSG, "\"%s\"",
			     bad[i]);
		cr_assert(strstr(err.msg, "seq"), "%s", err.msg);
	}
	/* The memory-only agent's seq file (the next seq) is read as is. */
	free(t_write(dir, "seq", "4242\n", 5));
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(outbox_take_seq(&o, NULL), 4242);
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, compaction_after_acknowledgement)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	uint64_t last = 0;
	unsigned n = 0;
	while (o.file_bytes < 2 * OUTBOX_COMPACT_MIN + 4096) {
		last = append_batch(&o, 8);
		n++;
		if (n % 50 == 0)
			sync_ok(&o);
	}
	sync_ok(&o);
	off_t before = size_of(dir, "outbox");
	uint64_t compactions = o.n_compactions;
	/* Acknowledge all but the last 10 records. */
	uint64_t keep_from = 0;
	unsigned i = 0;
	for (const struct outbox_rec *r = o.head; r; r = r->next, i++)
		if (i == n - 10)
			keep_from = r->seq;
	outbox_ack(&o, keep_from - 1);
	cr_assert_eq(o.n_compactions, compactions + 1);
	off_t after = size_of(dir, "outbox");
	cr_assert_lt(after, before / 10, "%lld -> %lld bytes",
		     (long long)before, (long long)after);
	cr_assert_eq(size_of(dir, "outbox.tmp"), -1);
	/* Appending goes on into the new file. */
	uint64_t more = append_batch(&o, 1);
	sync_ok(&o);
	outbox_close(&o);
	open_ok(&o, dir);
	uint64_t h[16];
	cr_assert_eq(held(&o, h, 16), 11);
	cr_assert_eq(h[0], keep_from);
	cr_assert_eq(h[9], last);
	cr_assert_eq(h[10], more);
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, full_outbox_drops_with_an_error)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	o.n = OUTBOX_REC_MAX; /* as if that many were held */
	size_t len;
	uint8_t *f = audit_frame(1, 1, &len);
	struct parley_err err = { 0 };
	cr_assert_eq(outbox_append(&o, 1, f, len, &err), -ENOBUFS);
	cr_assert(strstr(err.msg, "full"), "%s", err.msg);
	cr_assert_eq(o.n_dropped, 1);
	o.n = 0;
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

/* A file written by hand from the documented format (fuzz/seeds/outbox,
 * made by fuzz/make_outbox_seeds.py, not by outbox.c): the format read
 * is the format documented. */
Test(outbox, documented_format_is_read)
{
	char *dir = t_tmpdir();
	size_t len;
	uint8_t *buf = slurp(PARLEY_SOURCE_DIR "/fuzz/seeds/outbox/valid3", &len);
	free(t_write(dir, "outbox", buf, len));
	struct outbox o;
	open_ok(&o, dir);
	uint64_t h[4];
	cr_assert_eq(held(&o, h, 4), 3);
	cr_assert(h[0] == 2 && h[1] == 3 && h[2] == 7, "%llu %llu %llu",
		  (unsigned long long)h[0], (unsigned long long)h[1],
		  (unsigned long long)h[2]);
	cr_assert_eq(o.next_seq, 8);
	outbox_close(&o);
	free(buf);
	t_rmtree(dir);
	free(dir);
}

static void wait_done(struct outbox *o)
{
	struct pollfd p = { .fd = outbox_sync_fd(o), .events = POLLIN };
	cr_assert(p.fd >= 0);
	cr_assert_eq(poll(&p, 1, 10000), 1, "the sync thread never finished");
	struct parley_err err = { 0 };
	cr_assert_eq(outbox_sync_done(o, &err), 0, "%s", perr_msg(&err));
}

Test(outbox, sync_thread_batches_and_hands_out_only_synced_records)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	uint64_t a = append_batch(&o, 2);
	cr_assert_eq(outbox_sync_start(&o, NULL), 1);
	/* Appended while the first batch is on its way: not in it. */
	uint64_t b = append_batch(&o, 1);
	cr_assert_eq(outbox_sync_start(&o, NULL), 0, "two batches in flight");
	wait_done(&o);
	const struct outbox_rec *r = outbox_next_unsent(&o);
	cr_assert(r && r->seq == a);
	cr_assert_null(outbox_next_unsent(&o), "%llu handed out unsynced",
		       (unsigned long long)b);
	cr_assert_eq(outbox_sync_start(&o, NULL), 1);
	/* A daemon acknowledging more than it was sent (hostile, or a
	 * restored store) while a batch is in flight. */
	outbox_ack(&o, UINT64_MAX);
	wait_done(&o);
	cr_assert_null(outbox_next_unsent(&o));
	uint64_t c = append_batch(&o, 1);
	cr_assert_eq(outbox_sync_start(&o, NULL), 1);
	outbox_close(&o); /* with a batch in flight: it is finished first */
	open_ok(&o, dir);
	uint64_t h[4];
	unsigned n = held(&o, h, 4);
	cr_assert_eq(h[n - 1], c, "the batch in flight at close was lost");
	outbox_close(&o);
	t_rmtree(dir);
	free(dir);
}

Test(outbox, synchronous_sync_waits_for_the_batch_in_flight)
{
	char *dir = t_tmpdir();
	struct outbox o;
	open_ok(&o, dir);
	append_batch(&o, 1);
	cr_assert_eq(outbox_sync_start(&o, NULL), 1);
	uint64_t b = append_batch(&o, 1);
	sync_ok(&o);
	cr_assert(!o.busy && !o.wlen);
	cr_assert_eq(o.tail->seq, b);
	cr_assert(o.tail->synced && o.head->synced);
	outbox_close(&o);
	cr_assert_eq(clean_records(dir), 2);
	t_rmtree(dir);
	free(dir);
}

/* Near-records every 24 bytes, each claiming a megabyte with a length
 * prefix that agrees and a wrong CRC: without a bound, resynchronising
 * would checksum a megabyte at each of them (hundreds of gigabytes). */
Test(outbox, near_records_cannot_make_reload_endless, .timeout = 60)
{
	char *dir = t_tmpdir();
	uint64_t s[3];
	char *path = three_records(dir, s);
	size_t len;
	uint8_t *good = slurp(path, &len);
	const size_t junk = 8u << 20;
	uint8_t *all = malloc(len + junk);
	memcpy(all, good, len);
	const uint32_t claim = 1u << 20;
	for (size_t off = len; off + 24 <= len + junk; off += 24) {
		uint8_t *p = all + off;
		uint32_t w[6] = { OUTBOX_REC_MAGIC, claim, 7, 0, 0x12345678, 0 };
		for (int i = 0; i < 5; i++)
			for (int b = 0; b < 4; b++)
				p[4 * i + b] = (uint8_t)(w[i] >> (8 * b));
		uint32_t inner = claim - 4; /* big-endian, as a frame's */
		p[20] = (uint8_t)(inner >> 24);
		p[21] = (uint8_t)(inner >> 16);
		p[22] = (uint8_t)(inner >> 8);
		p[23] = (uint8_t)inner;
	}
	struct outbox_scan sc;
	cr_assert_eq(outbox_parse(all, len + junk, NULL, NULL, &sc), 0);
	cr_assert(sc.gave_up, "the check budget never ran out");
	cr_assert_eq(sc.nrec, 3);
	cr_assert_eq(sc.valid_end, len);
	rewrite(path, all, len + junk);
	struct outbox o;
	open_ok(&o, dir);
	cr_assert_eq(o.n, 3);
	outbox_close(&o);
	cr_assert_eq(clean_records(dir), 3);
	free(all);
	free(good);
	free(path);
	t_rmtree(dir);
	free(dir);
}
