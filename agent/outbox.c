#include "agent/outbox.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

static int grow(uint8_t **buf, size_t *cap, size_t need);

/* ---- the format ---------------------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t rec_crc(const uint8_t *hdr, const uint8_t *frame, size_t len)
{
	return crc32c(crc32c(0, hdr, 16), frame, len);
}

void outbox_rec_encode(uint8_t *out, uint64_t seq, const uint8_t *frame,
		       size_t len)
{
	put32(out, OUTBOX_REC_MAGIC);
	put32(out + 4, (uint32_t)len);
	put64(out + 8, seq);
	put32(out + 16, rec_crc(out, frame, len));
	memcpy(out + OUTBOX_REC_HDR, frame, len);
}

static int seqs_up(uint64_t after, uint64_t s, const char *what, size_t i,
		   struct parley_err *err)
{
	if (s <= after)
		return perr(err, -EINVAL, "%s %zu: seq %llu not above %llu",
			    what, i, (unsigned long long)s,
			    (unsigned long long)after);
	return 0;
}

int outbox_frame_seq(const Parley__V1__Envelope *e, uint64_t after,
		     uint64_t *seq, struct parley_err *err)
{
	uint64_t last = after;
	switch (e->body_case) {
	case PARLEY__V1__ENVELOPE__BODY_AUDIT:
		if (!e->audit->n_events)
			return perr(err, -EINVAL, "an empty audit batch");
		for (size_t i = 0; i < e->audit->n_events; i++) {
			uint64_t s = e->audit->events[i]->seq;
			if (seqs_up(last, s, "audit event", i, err) < 0)
				return err ? err->code : -EINVAL;
			last = s;
		}
		break;
	case PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS:
		if (!e->measurements->n_measurements)
			return perr(err, -EINVAL, "an empty measurement report");
		for (size_t i = 0; i < e->measurements->n_measurements; i++) {
			uint64_t s = e->measurements->measurements[i]->seq;
			if (seqs_up(last, s, "measurement", i, err) < 0)
				return err ? err->code : -EINVAL;
			last = s;
		}
		break;
	case PARLEY__V1__ENVELOPE__BODY_STATUS:
		if (seqs_up(last, e->status->seq, "status", 0, err) < 0)
			return err ? err->code : -EINVAL;
		last = e->status->seq;
		break;
	default:
		return perr(err, -EINVAL, "a %s is no outbox record",
			    wire_body_name(e->body_case));
	}
	*seq = last;
	return 0;
}

/* 1: a good record of *used bytes at buf (decoded into *env); 0: the bytes
 * end inside what the header announces (a write cut short); -1: bad; -2:
 * the checksum budget is spent (a file made of near-records would make
 * every offset cost a megabyte of CRC and decoding). */
static int rec_at(const uint8_t *buf, size_t avail, uint64_t prev,
		  size_t *budget, size_t *used, uint64_t *seq,
		  Parley__V1__Envelope **env)
{
	if (avail < 4)
		return 0;
	if (get32(buf) != OUTBOX_REC_MAGIC)
		return -1;
	if (avail < OUTBOX_REC_HDR)
		return 0;
	uint32_t len = get32(buf + 4);
	if (len <= FRAME_HDR || len > FRAME_HDR + FRAME_MAX)
		return -1;
	if (avail - OUTBOX_REC_HDR < len)
		return 0;
	const uint8_t *frame = buf + OUTBOX_REC_HDR;
	uint32_t inner = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 |
			 (uint32_t)frame[2] << 8 | frame[3];
	if (inner != len - FRAME_HDR)
		return -1;
	if (len > *budget)
		return -2;
	*budget -= len;
	if (get32(buf + 16) != rec_crc(buf, frame, len))
		return -1;
	uint64_t s = get64(buf + 8);
	size_t consumed = 0;
	Parley__V1__Envelope *e = NULL;
	if (frame_decode(frame, len, FRAME_MAX, &consumed, &e, NULL) != 1)
		return -1;
	uint64_t last;
	if (consumed != len || outbox_frame_seq(e, prev, &last, NULL) < 0 ||
	    last != s) {
		parley__v1__envelope__free_unpacked(e, NULL);
		return -1;
	}
	*used = OUTBOX_REC_HDR + len;
	*seq = s;
	*env = e;
	return 1;
}

int outbox_parse(const uint8_t *buf, size_t len, outbox_rec_cb cb, void *ctx,
		 struct outbox_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
	size_t off = 0;
	if (len >= OUTBOX_MAGIC_LEN && !memcmp(buf, OUTBOX_MAGIC,
					       OUTBOX_MAGIC_LEN))
		off = OUTBOX_MAGIC_LEN;
	else if (len < OUTBOX_MAGIC_LEN && !memcmp(buf, OUTBOX_MAGIC, len)) {
		scan->tail_bytes = len;  /* the header itself cut short */
		scan->tail_torn = len > 0;
		return 0;
	} else
		scan->bad_header = true;
	scan->valid_end = scan->bad_header ? 0 : off;
	size_t bad_from = scan->bad_header ? 0 : SIZE_MAX;
	bool torn = false;
	/* Every good record is checked once; resynchronising may check as
	 * much again, and a little more. */
	size_t budget = len + len / 2 + OUTBOX_CHECK_SLACK;
	while (off < len) {
		size_t used;
		uint64_t s;
		Parley__V1__Envelope *e = NULL;
		int r = rec_at(buf + off, len - off, scan->last_seq, &budget,
			       &used, &s, &e);
		if (r == -2) {
			scan->gave_up = true;
			if (bad_from == SIZE_MAX)
				bad_from = off;
			torn = false;
			break;
		}
		if (r <= 0) {
			/* Resynchronise on the next good record, if any. */
			if (bad_from == SIZE_MAX) {
				bad_from = off;
				torn = r == 0;
			}
			off++;
			continue;
		}
		if (bad_from != SIZE_MAX) {
			if (!scan->bad_bytes)
				scan->bad_at = bad_from;
			scan->bad_bytes += off - bad_from;
			bad_from = SIZE_MAX;
		}
		int rc = cb ? cb(s, buf + off + OUTBOX_REC_HDR,
				 used - OUTBOX_REC_HDR, e, ctx) : 0;
		parley__v1__envelope__free_unpacked(e, NULL);
		if (rc)
			return rc;
		scan->nrec++;
		scan->last_seq = s;
		off += used;
		scan->valid_end = off;
	}
	if (bad_from != SIZE_MAX) {
		scan->tail_bytes = len - bad_from;
		scan->tail_torn = torn;
	}
	return 0;
}

/* ---- the files ----------------------------------------------------------- */

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int dir_of(const struct outbox *o, char *out, size_t cap)
{
	snprintf(out, cap, "%s", o->path);
	char *slash = strrchr(out, '/');
	if (!slash)
		return snprintf(out, cap, "."), 0;
	*slash = 0;
	if (!out[0])
		snprintf(out, cap, "/");
	return 0;
}

static int sync_dir(const struct outbox *o)
{
	char d[4200];
	dir_of(o, d, sizeof(d));
	return fsync_dir(d);
}

static int load_bound(struct outbox *o, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(o->seq_path, 64, &buf, &len, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	/* Digits and an optional newline; anything else is refused rather
	 * than read as a smaller number than was written. */
	uint64_t v = 0;
	size_t i = 0;
	for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10) {
			i = 0;
			break;
		}
		v = v * 10 + (uint64_t)(buf[i] - '0');
	}
	bool ok = i > 0 && (i == len || (i + 1 == len && buf[i] == '\n'));
	free(buf);
	if (!ok)
		return perr(err, -EBADMSG, "%s: not a sequence number",
			    o->seq_path);
	o->seq_bound = v;
	return 0;
}

static int store_bound(struct outbox *o, uint64_t bound,
		       struct parley_err *err)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)bound);
	int rc = pki_write_file(o->seq_path, buf, (size_t)n, 0600, err);
	if (rc == 0)
		o->seq_bound = bound;
	return rc;
}

static void rec_free(struct outbox_rec *r)
{
	free(r->frame);
	free(r);
}

static int hold(struct outbox *o, uint64_t seq, uint8_t *frame, size_t len,
		bool synced)
{
	struct outbox_rec *r = calloc(1, sizeof(*r));
	if (!r) {
		free(frame);
		return -ENOMEM;
	}
	*r = (struct outbox_rec){ .seq = seq, .frame = frame, .len = len,
				  .synced = synced };
	if (o->tail)
		o->tail->next = r;
	else
		o->head = r;
	o->tail = r;
	if (!o->cursor)
		o->cursor = r;
	if (!synced && !o->unsynced)
		o->unsynced = r;
	o->n++;
	return 0;
}

static int on_loaded(uint64_t seq, const uint8_t *frame, size_t len,
		     const Parley__V1__Envelope *e, void *ctx)
{
	(void)e;
	struct outbox *o = ctx;
	uint8_t *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, frame, len);
	if (hold(o, seq, copy, len, true) < 0)
		return -ENOMEM;
	o->n_loaded++;
	return 0;
}

/* Read the file and say what was wrong with it; the records are held. */
static int load(struct outbox *o, bool *rewrite, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(o->path, OUTBOX_FILE_MAX, &buf, &len, err);
	if (rc == -ENOENT) {
		*rewrite = true;
		return 0;
	}
	if (rc == -EFBIG) {
		log_error("outbox %s is larger than %u bytes: not read, moved "
			  "to %s; its records are not sent", o->path,
			  OUTBOX_FILE_MAX, o->bad_path);
		*rewrite = true;
		return rename(o->path, o->bad_path) < 0
			       ? perr(err, -errno, "%s: %m", o->bad_path) : 0;
	}
	if (rc < 0)
		return rc;
	struct outbox_scan sc;
	rc = outbox_parse(buf, len, on_loaded, o, &sc);
	free(buf);
	if (rc)
		return perr(err, rc < 0 ? rc : -ENOMEM, "%s: out of memory",
			    o->path);
	o->file_bytes = sc.valid_end;
	if (sc.bad_header || sc.bad_bytes) {
		if (sc.bad_bytes)
			log_error("outbox %s is CORRUPT: %zu bad bytes from "
				  "offset %zu between good records; %u good "
				  "records kept, the file as found moved to %s",
				  o->path, sc.bad_bytes, sc.bad_at, sc.nrec,
				  o->bad_path);
		else
			log_error("outbox %s is CORRUPT: no outbox header; %u "
				  "good records kept, the file as found moved "
				  "to %s", o->path, sc.nrec, o->bad_path);
		if (rename(o->path, o->bad_path) < 0)
			return perr(err, -errno, "%s: %m", o->bad_path);
		*rewrite = true;
	}
	if (sc.gave_up)
		log_error("outbox %s is CORRUPT: too many near-records to check "
			  "(a hostile file?); everything from offset %zu dropped",
			  o->path, sc.valid_end);
	if (sc.tail_bytes && sc.tail_torn)
		log_warn("outbox %s: a torn last write (%zu bytes after the "
			 "last good record at offset %zu) cut off", o->path,
			 sc.tail_bytes, sc.valid_end);
	else if (sc.tail_bytes)
		log_error("outbox %s is CORRUPT at its end: %zu bad bytes from "
			  "offset %zu cut off", o->path, sc.tail_bytes,
			  sc.valid_end);
	if (sc.tail_bytes && !*rewrite &&
	    truncate(o->path, (off_t)sc.valid_end) < 0)
		return perr(err, -errno, "%s: %m", o->path);
	return 0;
}

static int open_append(struct outbox *o, struct parley_err *err)
{
	o->fd = open(o->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (o->fd < 0)
		return perr(err, -errno, "%s: %m", o->path);
	return 0;
}

int outbox_open(struct outbox *o, const char *dir, struct parley_err *err)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->done_fd = -1;
	if (path_join(o->path, sizeof(o->path), dir, "outbox") < 0 ||
	    path_join(o->tmp_path, sizeof(o->tmp_path), dir, "outbox.tmp") < 0 ||
	    path_join(o->bad_path, sizeof(o->bad_path), dir, "outbox.corrupt") < 0 ||
	    path_join(o->seq_path, sizeof(o->seq_path), dir, "seq") < 0)
		return perr(err, -ENAMETOOLONG, "%s: path too long", dir);
	unlink(o->tmp_path); /* a compaction cut short: the file still holds */
	bool rewrite = false;
	int rc = load_bound(o, err);
	if (rc == 0)
		rc = load(o, &rewrite, err);
	if (rc < 0) {
		outbox_close(o);
		return rc;
	}
	uint64_t last = o->tail ? o->tail->seq : 0;
	o->next_seq = o->seq_bound > last ? o->seq_bound : last + 1;
	if (!o->next_seq)
		o->next_seq = 1;
	rc = rewrite ? outbox_compact(o, err) : open_append(o, err);
	if (rc < 0) {
		outbox_close(o);
		return rc;
	}
	if (o->n)
		log_info("outbox: %u records not acknowledged yet (seq %llu to "
			 "%llu), sent once the daemon welcomes us", o->n,
			 (unsigned long long)o->head->seq,
			 (unsigned long long)o->tail->seq);
	return 0;
}

void outbox_close(struct outbox *o)
{
	if (o->thr_started) {
		/* A batch in flight is finished first: the thread takes a
		 * job before it looks at stop. */
		pthread_mutex_lock(&o->mu);
		o->stop = true;
		pthread_cond_signal(&o->cv);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->thr, NULL);
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		close(o->done_fd);
		o->thr_started = false;
	}
	o->done_fd = -1;
	free(o->ibuf);
	o->ibuf = NULL;
	o->ilen = o->icap = 0;
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	while (o->head) {
		struct outbox_rec *r = o->head;
		o->head = r->next;
		rec_free(r);
	}
	o->tail = o->cursor = o->unsynced = NULL;
	o->n = 0;
	free(o->wbuf);
	o->wbuf = NULL;
	o->wlen = o->wcap = 0;
}

/* ---- appending, syncing, acknowledging ------------------------------------ */

uint64_t outbox_take_seq(struct outbox *o, struct parley_err *err)
{
	if (o->next_seq >= o->seq_bound &&
	    store_bound(o, o->next_seq + OUTBOX_SEQ_BLOCK, err) < 0)
		return 0;
	return o->next_seq++;
}

int outbox_raise_seq(struct outbox *o, uint64_t held, struct parley_err *err)
{
	if (held < o->next_seq)
		return 0;
	if (held > UINT64_MAX / 2)
		return perr(err, -ERANGE, "the daemon says it holds seq %llu: "
			    "not believed, seqs go on from %llu",
			    (unsigned long long)held,
			    (unsigned long long)o->next_seq);
	log_error("the daemon holds seq %llu, beyond every seq this agent "
		  "remembers handing out (%llu): was the state directory "
		  "restored from a backup? Continuing above it",
		  (unsigned long long)held, (unsigned long long)o->next_seq);
	o->next_seq = held + 1;
	if (o->next_seq >= o->seq_bound)
		return store_bound(o, o->next_seq + OUTBOX_SEQ_BLOCK, err);
	return 0;
}

int outbox_append(struct outbox *o, uint64_t seq, uint8_t *frame, size_t len,
		  struct parley_err *err)
{
	size_t need = OUTBOX_REC_HDR + len;
	if (o->n >= OUTBOX_REC_MAX ||
	    o->file_bytes + o->ilen + o->wlen + need > OUTBOX_FILE_MAX) {
		o->n_dropped++;
		free(frame);
		return perr(err, -ENOBUFS, "outbox full (%u records): record "
			    "%llu dropped", o->n, (unsigned long long)seq);
	}
	PARLEY_ASSERT(!o->tail || seq > o->tail->seq);
	PARLEY_ASSERT(len > FRAME_HDR && len <= FRAME_HDR + FRAME_MAX);
	if (grow(&o->wbuf, &o->wcap, o->wlen + need) < 0) {
		free(frame);
		return perr(err, -ENOMEM, "record %llu: out of memory",
			    (unsigned long long)seq);
	}
	outbox_rec_encode(o->wbuf + o->wlen, seq, frame, len);
	int rc = hold(o, seq, frame, len, false);
	if (rc < 0)
		return perr(err, rc, "record %llu: out of memory",
			    (unsigned long long)seq);
	o->wlen += need;
	return 0;
}

/* Append a batch at `base` and make it durable; on failure cut the file
 * back, so a retry does not follow a torn record. Either thread. */
static int write_batch(int fd, const uint8_t *buf, size_t len, uint64_t base,
		       const char *path)
{
	int rc = fd_write_all(fd, buf, len);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (rc < 0 && ftruncate(fd, (off_t)base) < 0)
		log_error("%s: cutting back to %llu bytes: %m", path,
			  (unsigned long long)base);
	return rc;
}

/* Unsynced records are the list's tail: mark them up to `upto`. */
static void mark_synced(struct outbox *o, uint64_t upto)
{
	struct outbox_rec *r = o->unsynced;
	for (; r && r->seq <= upto; r = r->next)
		r->synced = true;
	o->unsynced = r;
}

static void maybe_compact(struct outbox *o)
{
	if (o->busy || o->wlen || o->acked_bytes < OUTBOX_COMPACT_MIN ||
	    o->acked_bytes * 2 < o->file_bytes)
		return;
	struct parley_err err = { 0 };
	if (outbox_compact(o, &err) < 0)
		log_error("outbox compaction: %s", perr_msg(&err));
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64 * 1024;
	while (c < need)
		c *= 2;
	uint8_t *p = realloc(*buf, c);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = c;
	return 0;
}

static void *sync_main(void *arg)
{
	struct outbox *o = arg;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (!o->job && !o->stop)
			pthread_cond_wait(&o->cv, &o->mu);
		if (!o->job)
			break;
		pthread_mutex_unlock(&o->mu);
		int rc = write_batch(o->fd, o->ibuf, o->ilen, o->flight_base,
				     o->path);
		pthread_mutex_lock(&o->mu);
		o->job = false;
		o->done = true;
		o->job_rc = rc;
		pthread_cond_broadcast(&o->cv);
		uint64_t one = 1;
		if (write(o->done_fd, &one, sizeof(one)) < 0)
			log_error("outbox: waking the loop: %m");
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static int start_thread(struct outbox *o, struct parley_err *err)
{
	o->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (o->done_fd < 0)
		return perr(err, -errno, "outbox: eventfd: %m");
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	int rc = pthread_create(&o->thr, NULL, sync_main, o);
	if (rc) {
		close(o->done_fd);
		o->done_fd = -1;
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		return perr(err, -rc, "outbox: starting the sync thread: %s",
			    strerror(rc));
	}
	o->thr_started = true;
	return 0;
}

int outbox_sync_start(struct outbox *o, struct parley_err *err)
{
	if (o->busy || !o->wlen)
		return 0;
	if (!o->thr_started) {
		int rc = start_thread(o, err);
		if (rc < 0)
			return rc;
	}
	/* The buffer goes to the thread; the loop appends into the other. */
	uint8_t *b = o->ibuf;
	size_t c = o->icap;
	o->ibuf = o->wbuf;
	o->icap = o->wcap;
	o->ilen = o->wlen;
	o->wbuf = b;
	o->wcap = c;
	o->wlen = 0;
	o->flight_base = o->file_bytes;
	o->flight_seq = o->tail ? o->tail->seq : 0;
	o->busy = true;
	pthread_mutex_lock(&o->mu);
	o->job = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	return 1;
}

int outbox_sync_fd(const struct outbox *o)
{
	return o->thr_started ? o->done_fd : -1;
}

/* The batch in flight is done (the caller saw done): take its result. */
static int finish(struct outbox *o, int rc, struct parley_err *err)
{
	o->busy = false;
	if (rc == 0) {
		o->file_bytes += o->ilen;
		o->ilen = 0;
		o->n_syncs++;
		mark_synced(o, o->flight_seq);
		maybe_compact(o);
		return 0;
	}
	/* Back in front of what was appended since, to be tried again. */
	if (grow(&o->wbuf, &o->wcap, o->ilen + o->wlen) < 0)
		log_error("outbox: out of memory keeping a failed batch: "
			  "its records are lost");
	else {
		memmove(o->wbuf + o->ilen, o->wbuf, o->wlen);
		memcpy(o->wbuf, o->ibuf, o->ilen);
		o->wlen += o->ilen;
	}
	o->ilen = 0;
	return perr(err, rc, "%s: %s", o->path, strerror(-rc));
}

int outbox_sync_done(struct outbox *o, struct parley_err *err)
{
	if (!o->thr_started)
		return 0;
	uint64_t v;
	if (read(o->done_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("outbox: reading the sync thread's word: %m");
	pthread_mutex_lock(&o->mu);
	bool done = o->done;
	int rc = o->job_rc;
	o->done = false;
	pthread_mutex_unlock(&o->mu);
	return done ? finish(o, rc, err) : 0;
}

int outbox_sync(struct outbox *o, struct parley_err *err)
{
	if (o->busy) {
		pthread_mutex_lock(&o->mu);
		while (o->job)
			pthread_cond_wait(&o->cv, &o->mu);
		int rc = o->job_rc;
		o->done = false;
		pthread_mutex_unlock(&o->mu);
		rc = finish(o, rc, err);
		if (rc < 0)
			return rc;
	}
	if (!o->wlen)
		return 0;
	int rc = write_batch(o->fd, o->wbuf, o->wlen, o->file_bytes, o->path);
	if (rc < 0)
		return perr(err, rc, "%s: %s", o->path, strerror(-rc));
	o->file_bytes += o->wlen;
	o->wlen = 0;
	o->n_syncs++;
	mark_synced(o, UINT64_MAX);
	maybe_compact(o);
	return 0;
}

const struct outbox_rec *outbox_next_unsent(struct outbox *o)
{
	struct outbox_rec *r = o->cursor;
	if (!r || !r->synced)
		return NULL;
	o->cursor = r->next;
	return r;
}

bool outbox_handed_out(const struct outbox *o, uint64_t seq)
{
	return !o->cursor || seq < o->cursor->seq;
}

void outbox_rewind(struct outbox *o)
{
	o->cursor = o->head;
}

void outbox_ack(struct outbox *o, uint64_t seq)
{
	bool moved = false;
	while (o->head && o->head->seq <= seq) {
		struct outbox_rec *r = o->head;
		o->head = r->next;
		if (o->cursor == r)
			moved = true;
		if (o->unsynced == r)
			o->unsynced = r->next;
		if (r->synced)
			o->acked_bytes += OUTBOX_REC_HDR + r->len;
		rec_free(r);
		o->n--;
	}
	if (!o->head)
		o->tail = NULL;
	if (moved)
		o->cursor = o->head;
	maybe_compact(o);
}

int outbox_compact(struct outbox *o, struct parley_err *err)
{
	PARLEY_ASSERT(!o->wlen && !o->busy);
	int fd = open(o->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0600);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", o->tmp_path);
	int rc = fd_write_all(fd, OUTBOX_MAGIC, OUTBOX_MAGIC_LEN);
	uint64_t bytes = OUTBOX_MAGIC_LEN;
	uint8_t *rec = NULL;
	size_t cap = 0;
	for (struct outbox_rec *r = o->head; rc == 0 && r; r = r->next) {
		size_t need = OUTBOX_REC_HDR + r->len;
		if (need > cap) {
			free(rec);
			cap = need;
			if (!(rec = malloc(cap))) {
				rc = -ENOMEM;
				break;
			}
		}
		outbox_rec_encode(rec, r->seq, r->frame, r->len);
		rc = fd_write_all(fd, rec, need);
		bytes += need;
	}
	free(rec);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(o->tmp_path, o->path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(o->tmp_path);
		return perr(err, rc, "%s: %s", o->tmp_path, strerror(-rc));
	}
	/* The rename is durable once the directory is. */
	rc = sync_dir(o);
	if (rc < 0)
		return perr(err, rc, "%s: syncing its directory: %s", o->path,
			    strerror(-rc));
	if (o->fd >= 0)
		close(o->fd);
	o->file_bytes = bytes;
	o->acked_bytes = 0;
	o->n_compactions++;
	for (struct outbox_rec *r = o->head; r; r = r->next)
		r->synced = true;
	return open_append(o, err);
}
