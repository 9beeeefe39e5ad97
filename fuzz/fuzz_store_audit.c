/*
 * libFuzzer target for the store's audit path (db/store_audit.c): agent
 * bytes become audit events. The input is cut at NUL bytes into fields,
 * seven per event (host, event, partition, channel, reason, file,
 * detail), at most 8 events, ingested as one batch from host "h1". Either
 * the batch is refused with one of the codes store.h documents, a
 * printable message, and nothing stored, or every event is stored byte
 * for byte, the same batch again stores nothing, and the chain verifies.
 * An event naming another host ("h2", say) makes the batch a refusal:
 * -EPERM, unless an earlier check refused it first, and -EPERM never
 * without one.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "db/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELDS 7
#define EVENTS_MAX 8
/* Start over on a fresh file now and then: verify walks the whole chain. */
#define ROWS_MAX 5000

static struct store *st;
static char path[64];
static uint64_t seq, rows;

static char dir[] = "/tmp/fuzz-store-XXXXXX";

static void cleanup(void)
{
	char f[80];
	store_close(st);
	static const char *const sfx[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		snprintf(f, sizeof(f), "%s%s", path, sfx[i]);
		unlink(f);
	}
	rmdir(dir);
}

static void fresh(void)
{
	struct parley_err e = { 0 };
	store_close(st);
	st = NULL;
	if (!path[0]) {
		PARLEY_ASSERT(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/audit.db", dir);
		atexit(cleanup);
	}
	unlink(path);
	PARLEY_ASSERT(store_open(path, &st, &e) == 0);
	PARLEY_ASSERT(store_host_put(st, "h1", "", (struct store_blob){ 0 },
				     &e) == 0);
	seq = rows = 0;
}

/* Fields at NUL bytes; the last one ends at the input's end. */
static unsigned split(char *buf, size_t size, const char **f, unsigned max)
{
	unsigned n = 0;
	size_t at = 0;
	while (n < max && at <= size) {
		f[n++] = buf + at;
		at += strlen(buf + at) + 1;
	}
	return n;
}

struct expect {
	const struct store_audit_in *ev;
	unsigned i, n;
};

static int same(const struct store_audit *r, void *ctx)
{
	struct expect *x = ctx;
	const struct store_audit_in *e = &x->ev[x->i++];
	const char *want[] = { "h1", e->event, e->partition, e->channel,
			       e->reason, e->file, e->detail };
	const char *got[] = { r->host, r->event, r->partition, r->channel,
			      r->reason, r->file, r->detail };
	for (int i = 0; i < FIELDS; i++)
		PARLEY_ASSERT(strcmp(got[i], want[i] ? want[i] : "") == 0);
	return 0;
}

static void check_stored(const struct store_audit_in *ev, unsigned n)
{
	struct store_ingest r;
	struct parley_err e = { 0 };
	struct expect x = { ev, 0, n };
	PARLEY_ASSERT(store_audit_list(st, rows - n, 0, same, &x, &e) ==
		      (int)n);
	/* The agent resends: nothing new. */
	PARLEY_ASSERT(store_ingest_audit(st, "h1", ev, n, &r, &e) == 0);
	PARLEY_ASSERT(r.stored == 0 && r.skipped == n);
	uint64_t bad, got;
	PARLEY_ASSERT(store_audit_verify(st, &bad, &got, &e) == 0);
	PARLEY_ASSERT(got == rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!st || rows > ROWS_MAX)
		fresh();
	char *buf = malloc(size + 1);
	PARLEY_ASSERT(buf);
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *f[FIELDS * EVENTS_MAX];
	unsigned nf = split(buf, size, f, FIELDS * EVENTS_MAX);
	unsigned n = (nf + FIELDS - 1) / FIELDS;
	struct store_audit_in ev[EVENTS_MAX] = { 0 };
	for (unsigned i = 0; i < nf; i++) {
		const char **fld[FIELDS] = {
			&ev[i / FIELDS].host, &ev[i / FIELDS].event,
			&ev[i / FIELDS].partition, &ev[i / FIELDS].channel,
			&ev[i / FIELDS].reason, &ev[i / FIELDS].file,
			&ev[i / FIELDS].detail,
		};
		*fld[i % FIELDS] = f[i];
	}
	bool other_host = false;
	for (unsigned i = 0; i < n; i++) {
		ev[i].seq = seq + 1 + i;
		ev[i].time_ms = 1;
		if (ev[i].host && ev[i].host[0] && strcmp(ev[i].host, "h1"))
			other_host = true;
	}
	struct parley_err e = { 0 };
	struct store_ingest r;
	int rc = store_ingest_audit(st, "h1", ev, n, &r, &e);
	PARLEY_ASSERT(rc == 0 || rc == -EINVAL || rc == -E2BIG ||
		      rc == -EPERM);
	PARLEY_ASSERT(!other_host || rc < 0);
	PARLEY_ASSERT(rc != -EPERM || other_host);
	if (rc < 0) {
		PARLEY_ASSERT(e.code == rc && e.msg[0]);
		for (const char *c = e.msg; *c; c++)
			PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
		/* Refused as a whole: nothing of it stored (the host's
		 * number moves with every stored event). */
		uint64_t now;
		PARLEY_ASSERT(store_host_seq(st, "h1", &now, &e) == 0);
		PARLEY_ASSERT(now == seq);
	}
	if (rc == 0) {
		PARLEY_ASSERT(r.stored == n && r.skipped == 0);
		seq += n;
		rows += n;
		check_stored(ev, n);
	}
	free(buf);
	return 0;
}
