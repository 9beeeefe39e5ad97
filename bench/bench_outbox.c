/*
 * Suite `outbox`: the agent's durable outbox (agent/outbox.c) through the
 * path every audit event takes — agent_link_audit, the AuditBatch of the
 * loop turn, wire_check, frame encoding, the append, the group-commit
 * fdatasync (at most one a millisecond) — on a real agent link that has no
 * daemon to talk to, in a state directory on disk (not tmpfs).
 *
 *   agent_outbox_events_per_s      events made durable per second, offered
 *                                  one per loop turn (a partition flooding
 *                                  channel opens: the smallest batches)
 *   agent_outbox_raw_events_per_s  the baseline: the same bytes written with
 *                                  plain write + fdatasync at the same sync
 *                                  points, nothing else
 *   agent_outbox_vs_raw            the first over the second
 * stderr: the same at 16 and 256 events per turn, syncs, events per sync.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/link.h"
#include "bench/bench.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"

#define EVENTS 50000
#define CHUNKS_MAX 200000

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_pki(const char *dir, struct parley_err *err)
{
	EVP_PKEY *ca_k = NULL, *k = NULL, *pol = NULL;
	X509 *ca_x = NULL, *x = NULL;
	char p[600];
	int rc = pki_ca_new("parley-bench-ca", 1, &ca_k, &ca_x, err);
	if (rc == 0)
		rc = pki_key_new(&k, err);
	if (rc == 0)
		rc = pki_issue(ca_k, ca_x, k, "bench-host", -PKI_SKEW_S, 86400,
			       false, &x, err);
	if (rc == 0 && (rc = path_join(p, sizeof(p), dir, "ca.crt")) == 0)
		rc = pki_write_cert(p, ca_x, err);
	if (rc == 0 && (rc = path_join(p, sizeof(p), dir, "host.crt")) == 0)
		rc = pki_write_cert(p, x, err);
	if (rc == 0 && (rc = path_join(p, sizeof(p), dir, "host.key")) == 0)
		rc = pki_write_key(p, k, err);
	if (rc == 0)
		rc = pki_key_new(&pol, err);
	if (rc == 0 && (rc = path_join(p, sizeof(p), dir, "policy.pub")) == 0)
		rc = sign_write_pub(p, pol, err);
	EVP_PKEY_free(ca_k);
	EVP_PKEY_free(k);
	EVP_PKEY_free(pol);
	X509_free(ca_x);
	X509_free(x);
	return rc;
}

struct run {
	double secs;
	uint64_t syncs;
	size_t nchunk;
	size_t chunk[CHUNKS_MAX];  /* bytes each sync wrote */
};

/* EVENTS events, per_turn of them each loop turn, until all are synced. */
static void offer(struct agent_link *l, struct event_base *base,
		  unsigned per_turn, struct run *r)
{
	struct audit_event ev = { .event = "open_denied", .partition = "web",
				  .channel = "db", .reason = "NO_GRANT" };
	uint64_t bytes = l->ob.file_bytes, syncs = l->ob.n_syncs;
	r->nchunk = 0;
	double t0 = now_s();
	for (unsigned done = 0;
	     done < EVENTS || l->npend || l->ob.wlen || l->ob.busy;) {
		for (unsigned i = 0; i < per_turn && done < EVENTS; i++, done++)
			agent_link_audit(&ev, l);
		event_base_loop(base, done < EVENTS ? EVLOOP_NONBLOCK
						    : EVLOOP_ONCE);
		if (l->ob.file_bytes != bytes && r->nchunk < CHUNKS_MAX)
			r->chunk[r->nchunk++] = l->ob.file_bytes - bytes;
		bytes = l->ob.file_bytes;
	}
	r->secs = now_s() - t0;
	r->syncs = l->ob.n_syncs - syncs;
}

/* The same bytes, the same sync points, plain write + fdatasync. */
static double raw(const char *dir, const struct run *r)
{
	char p[600];
	if (path_join(p, sizeof(p), dir, "raw") < 0)
		return -1;
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		      0600);
	if (fd < 0)
		return -1;
	size_t max = 0;
	for (size_t i = 0; i < r->nchunk; i++)
		max = r->chunk[i] > max ? r->chunk[i] : max;
	uint8_t *buf = malloc(max ? max : 1);
	memset(buf, 0x5a, max);
	double t0 = now_s();
	for (size_t i = 0; i < r->nchunk; i++)
		if (fd_write_all(fd, buf, r->chunk[i]) < 0 || fdatasync(fd) < 0) {
			close(fd);
			free(buf);
			return -1;
		}
	double secs = now_s() - t0;
	close(fd);
	unlink(p);
	free(buf);
	return secs;
}

/* What each record cost before the outbox was durable: the seq file
 * rewritten (temporary file, fsync, rename, directory fsync) per record. */
static double before(const char *dir)
{
	char p[600];
	if (path_join(p, sizeof(p), dir, "seq.before") < 0)
		return -1;
	const unsigned n = 200;
	double t0 = now_s();
	for (unsigned i = 0; i < n; i++)
		if (pki_write_file(p, "12345\n", 6, 0600, NULL) < 0)
			return -1;
	double secs = now_s() - t0;
	unlink(p);
	return n / secs;
}

int main(void)
{
	log_init("bench_outbox", LOG_WARN);
	/* On disk: tmpfs would make fdatasync free. */
	const char *base_dir = getenv("PARLEY_BENCH_DIR");
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/parley-bench-outbox-XXXXXX",
		 base_dir ? base_dir : "/var/tmp");
	if (!mkdtemp(dir)) {
		perror(dir);
		return 1;
	}
	struct parley_err err = { 0 };
	struct event_base *base = event_base_new();
	static struct agent_link l;
	if (!base || write_pki(dir, &err) < 0 ||
	    agent_link_init(&l, base, dir, "127.0.0.1", 9, NULL, &err) < 0) {
		fprintf(stderr, "bench_outbox: %s\n", perr_msg(&err));
		return 1;
	}
	bench_note("state directory %s; %d events per run", dir, EVENTS);
	static struct run r;
	const unsigned per_turn[] = { 256, 16, 1 };
	double eps = 0, raw_eps = 0;
	int rc = 0;
	for (unsigned i = 0; i < 3; i++) {
		offer(&l, base, per_turn[i], &r);
		double rs = raw(dir, &r);
		double e = EVENTS / r.secs, re = rs > 0 ? EVENTS / rs : 0;
		bench_note("%3u events per turn: %.0f events/s durable, %llu "
			   "syncs (%.1f events each), raw write+fdatasync of the "
			   "same bytes %.0f events/s (outbox %.2f of raw)",
			   per_turn[i], e, (unsigned long long)r.syncs,
			   r.syncs ? (double)EVENTS / (double)r.syncs : 0, re,
			   re > 0 ? e / re : 0);
		if (rs < 0)
			rc = 1;
		eps = e;
		raw_eps = re;
		/* As if the daemon acknowledged all: compaction, untimed. */
		outbox_ack(&l.ob, UINT64_MAX);
	}
	bench_note("before (memory outbox, seq file rewritten per record): "
		   "%.0f records/s at most", before(dir));
	bench_figure("agent_outbox_events_per_s", eps, "events/s");
	bench_figure("agent_outbox_raw_events_per_s", raw_eps, "events/s");
	bench_figure("agent_outbox_vs_raw", raw_eps > 0 ? eps / raw_eps : 0,
		     "ratio");
	agent_link_free(&l);
	event_base_free(base);
	const char *names[] = { "outbox", "seq", "ca.crt", "host.crt",
				"host.key", "policy.pub" };
	for (unsigned i = 0; i < 6; i++) {
		char p[700];
		if (path_join(p, sizeof(p), dir, names[i]) == 0)
			unlink(p);
	}
	rmdir(dir);
	return rc;
}
