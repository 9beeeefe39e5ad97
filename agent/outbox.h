/*
 * The agent's durable outbox: records for the daemon (audit batches,
 * measurements, partition status — each a whole agent-link frame with the
 * host's sequence number) kept in the state directory until the daemon
 * acknowledges them, so a killed agent sends them after its restart.
 *
 * Files (both in the state directory, 0600):
 *   outbox  "PARLEYOB" (8 bytes), then records, appended:
 *           u32 magic "PLYR" | u32 len | u64 seq | u32 crc | len bytes
 *           (little-endian; crc = CRC-32C of magic, len, seq and the
 *           bytes; the bytes are the frame as sent: u32 big-endian length
 *           and a serialized Envelope). Seqs strictly increase.
 *   seq     a decimal bound: every seq ever handed out is below it. It is
 *           raised (written to a temporary file, fsync'd, renamed) before
 *           a seq at the bound is handed out, OUTBOX_SEQ_BLOCK at a time,
 *           so a seq is never handed out twice — not after a torn tail,
 *           a lost unsynced record or a corrupted file. Restarts leave
 *           gaps; the daemon only needs seqs to increase.
 *
 * Promise: outbox_append only buffers; outbox_sync (or the sync thread,
 * outbox_sync_start) writes every buffered record and fdatasyncs the file
 * once (group commit: the link starts one at the end of a loop turn, and
 * whatever gathers while it is on the disk goes in the next). A record is
 * handed to the transport only once synced. So after kill -9 every record the daemon may have seen is in the
 * file, and a record appended but not yet synced is lost without a trace
 * outside this process (never sent; its seq is not reused).
 *
 * The file is untrusted input on reload (outbox_parse, the one parser):
 * every record's magic, length (at most a frame of FRAME_MAX, and the
 * frame's own length prefix agreeing), CRC, frame
 * (decoded and wire_check'ed as the daemon will), body (audit, measurement
 * or status) and seqs (the record's seq is the last one its frame carries,
 * all above the previous record's) are checked. A bad tail is cut off
 * (a torn last write: a log line); bad bytes between good records are
 * reported as corruption (an error line naming offsets), the good records
 * kept, the file as found kept aside as outbox.corrupt and the outbox
 * rewritten without them. The CRC work of a parse is bounded (1.5 times
 * the file plus OUTBOX_CHECK_SLACK): a file built to make resynchronising
 * check a megabyte at every offset is cut where the budget runs out.
 *
 * Compaction: acknowledged records leave memory at once; once their bytes
 * are at least OUTBOX_COMPACT_MIN and half the file, the unacknowledged
 * rest is written to outbox.tmp, fsync'd and renamed over the file.
 */
#ifndef PARLEY_AGENT_OUTBOX_H
#define PARLEY_AGENT_OUTBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "parley.pb-c.h"

#define OUTBOX_MAGIC "PARLEYOB"
#define OUTBOX_MAGIC_LEN 8
#define OUTBOX_REC_MAGIC 0x52594c50u    /* "PLYR" read little-endian */
#define OUTBOX_REC_HDR 20
/* Unacknowledged records held; more are dropped with a log line (a daemon
 * away for that long has a host to look at). */
#define OUTBOX_REC_MAX 100000
/* A larger file is not read at start (moved aside, loudly). */
#define OUTBOX_FILE_MAX (256u << 20)
#define OUTBOX_COMPACT_MIN (256u << 10)
#define OUTBOX_SEQ_BLOCK 4096
/* Bytes a parse may checksum beyond 1.5 times the file's size. */
#define OUTBOX_CHECK_SLACK (16u << 20)

struct outbox_rec {
	struct outbox_rec *next;
	uint64_t seq;
	uint8_t *frame;          /* the frame, length prefix included */
	size_t len;
	bool synced;             /* in the file and fdatasync'd */
};

struct outbox {
	char path[4200], tmp_path[4200], seq_path[4200], bad_path[4200];
	int fd;                  /* O_APPEND */
	struct outbox_rec *head, *tail;  /* unacknowledged, in seq order */
	struct outbox_rec *cursor;       /* first not yet handed out */
	struct outbox_rec *unsynced;     /* first not yet synced */
	unsigned n;
	uint64_t next_seq, seq_bound;
	uint64_t file_bytes;     /* bytes in the file, all records synced */
	uint64_t acked_bytes;    /* of those, the acknowledged prefix */
	uint8_t *wbuf;           /* appended, not yet written */
	size_t wlen, wcap;
	/* The sync thread (outbox_sync_start): the loop hands it one batch
	 * at a time — ibuf, to be appended at flight_base — and learns of
	 * the end through done_fd (an eventfd). busy, job, stop, done and
	 * job_rc are shared under mu; the rest belongs to whoever holds the
	 * batch (the thread between job and done, else the loop). */
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool thr_started, busy, job, stop, done;
	int job_rc, done_fd;
	uint8_t *ibuf;
	size_t ilen, icap;
	uint64_t flight_base, flight_seq;  /* file offset, last seq in it */
	/* counters */
	uint64_t n_syncs, n_compactions, n_dropped, n_loaded;
};

/* What outbox_parse found. */
struct outbox_scan {
	size_t valid_end;        /* end of the last good record (or header) */
	size_t bad_bytes;        /* bad bytes followed by a good record */
	size_t bad_at;           /* offset of the first of them */
	size_t tail_bytes;       /* bytes after the last good record */
	bool tail_torn;          /* those look like a write cut short */
	bool bad_header;
	bool gave_up;            /* the checking budget ran out at valid_end */
	unsigned nrec;
	uint64_t last_seq;
};

/* Called for each good record in file order: its seq, its frame, and the
 * frame decoded (valid during the call). Non-zero stops the parse (and is
 * returned). */
typedef int (*outbox_rec_cb)(uint64_t seq, const uint8_t *frame, size_t len,
			     const Parley__V1__Envelope *e, void *ctx);

/* Parse a whole outbox file. Returns 0 (whatever the bytes: *scan says
 * what was kept), or the callback's non-zero value. */
int outbox_parse(const uint8_t *buf, size_t len, outbox_rec_cb cb, void *ctx,
		 struct outbox_scan *scan);

/* The seq an envelope carries as a record, checked: audit events,
 * measurements strictly increasing, each above `after`; *seq the last.
 * -EINVAL (err says why) for anything else. */
int outbox_frame_seq(const Parley__V1__Envelope *e, uint64_t after,
		     uint64_t *seq, struct parley_err *err);

/* One record as it goes into the file (header and frame) into out, which
 * holds OUTBOX_REC_HDR + len bytes. */
void outbox_rec_encode(uint8_t *out, uint64_t seq, const uint8_t *frame,
		       size_t len);

/* Open (creating) the outbox of state directory `dir`: read the files,
 * repair them as said above, hold the unacknowledged records (all synced,
 * none handed out yet). */
int outbox_open(struct outbox *o, const char *dir, struct parley_err *err);
/* Write what is buffered and sync it, in the calling thread (after
 * waiting for a batch the sync thread has). Leaves everything as it was
 * on error (the file cut back), so the next call tries again. */
int outbox_sync(struct outbox *o, struct parley_err *err);
/* The same off the event loop: hand what is buffered to the sync thread
 * (started at the first call) and return at once. 1: a batch went, 0:
 * nothing to do or a batch is still in flight (outbox_sync_done starts
 * nothing by itself: call this again after it). -errno if the thread
 * cannot start. */
int outbox_sync_start(struct outbox *o, struct parley_err *err);
/* Readable when the batch in flight is done (-1 before the first start). */
int outbox_sync_fd(const struct outbox *o);
/* On the loop, once outbox_sync_fd is readable: the batch's records count
 * as synced (outbox_next_unsent hands them out), or, if the write failed,
 * go back in front of the buffer to be tried again (its error returned). */
int outbox_sync_done(struct outbox *o, struct parley_err *err);
void outbox_close(struct outbox *o);

/* The next seq, or 0 if the seq bound could not be raised on disk (err
 * says why; hand nothing out then). */
uint64_t outbox_take_seq(struct outbox *o, struct parley_err *err);
/* Buffer a record (takes the frame, malloc'd, in all cases). seq must be
 * above every seq appended before. -ENOBUFS when OUTBOX_REC_MAX are held
 * or the file would pass OUTBOX_FILE_MAX. */
int outbox_append(struct outbox *o, uint64_t seq, uint8_t *frame, size_t len,
		  struct parley_err *err);
/* The daemon holds every seq up to `seq`: forget those records; compact
 * the file when worth it. */
void outbox_ack(struct outbox *o, uint64_t seq);
/* Whether every record up to `seq` has been handed out since the last
 * rewind (on a connection: sent on it). The daemon can acknowledge only
 * what it was sent; an ack beyond that would drop records it never got. */
bool outbox_handed_out(const struct outbox *o, uint64_t seq);
/* The next synced record not handed out since the last rewind, or NULL. */
const struct outbox_rec *outbox_next_unsent(struct outbox *o);
/* A new connection: every record not acknowledged goes out again. */
void outbox_rewind(struct outbox *o);
/* The daemon says it holds seqs up to `held`: never hand out one at or
 * below it (a seq file lost or restored from a backup). */
int outbox_raise_seq(struct outbox *o, uint64_t held, struct parley_err *err);
/* Rewrite the file with the unacknowledged records only (when nothing is
 * buffered). */
int outbox_compact(struct outbox *o, struct parley_err *err);

#endif
