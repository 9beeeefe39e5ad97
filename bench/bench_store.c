/*
 * The store suite: the audit trail's ingest rate on PostgreSQL -- what
 * each parleyd replica's agents' events cost the shared database.
 *
 * A throw-away cluster (tests/helpers/pgcluster.c: initdb, pg_ctl on a
 * private unix socket, fsync ON as a real one runs) in a temporary
 * directory; one database; the store API over libpq as parleyd uses it:
 * store_ingest_audit of batches of 1,000 events (each batch one
 * transaction under the store's write lock, with its per-host sequence
 * check), 200,000 events in all after 10,000 to warm up. Then the chain is
 * verified (rate on stderr). Stopped by PID and removed at the end.
 *
 *   BENCH store_pg_audit_events_per_s N events/s
 */
#include "bench/bench.h"
#include "db/store.h"
#include "tests/helpers/pgcluster.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000
#define WARM 10000
#define TOTAL 200000

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int create_db(const char *base)
{
	char ci[600];
	snprintf(ci, sizeof(ci), "%s dbname=postgres", base);
	PGconn *c = PQconnectdb(ci);
	int rc = -1;
	if (c && PQstatus(c) == CONNECTION_OK) {
		PGresult *r = PQexec(c, "CREATE DATABASE bench");
		rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
		if (rc < 0)
			bench_note("CREATE DATABASE: %s",
				   PQresultErrorMessage(r));
		PQclear(r);
	} else {
		bench_note("connect: %s", c ? PQerrorMessage(c) : "no memory");
	}
	PQfinish(c);
	return rc;
}

/* n events with seqs from first; detail into buf (96 bytes each). */
static void events(struct store_audit_in *ev, char *buf, unsigned n,
		   uint64_t first)
{
	for (unsigned i = 0; i < n; i++) {
		char *d = buf + 96 * i;
		snprintf(d, 96, "re-measured motd: page 3 differs from its "
			 "baseline (seq %llu)", (unsigned long long)(first + i));
		ev[i] = (struct store_audit_in){
			.seq = first + i, .event = "open_denied",
			.partition = "partition-17", .channel = "telemetry",
			.reason = "INTEGRITY", .file = "motd", .detail = d,
		};
	}
}

static int ingest(struct store *s, uint64_t *seq, unsigned total)
{
	static struct store_audit_in ev[BATCH];
	static char buf[BATCH * 96];
	for (unsigned done = 0; done < total; done += BATCH) {
		events(ev, buf, BATCH, *seq + 1);
		struct parley_err e = { 0 };
		if (store_ingest_audit(s, "h1", ev, BATCH, NULL, &e) < 0) {
			bench_note("ingest: %s", perr_msg(&e));
			return -1;
		}
		*seq += BATCH;
	}
	return 0;
}

static int run(const char *base)
{
	char uri[700];
	snprintf(uri, sizeof(uri), "postgresql:%s dbname=bench", base);
	struct store *s = NULL;
	struct parley_err e = { 0 };
	if (create_db(base) < 0 || store_open(uri, &s, &e) < 0) {
		bench_note("store: %s", perr_msg(&e));
		return 1;
	}
	uint64_t seq = 0;
	int rc = store_host_put(s, "h1", "", (struct store_blob){ NULL, 0 },
				&e);
	if (rc == 0)
		rc = ingest(s, &seq, WARM);
	double t0 = now_s();
	if (rc == 0)
		rc = ingest(s, &seq, TOTAL);
	double dt = now_s() - t0;
	if (rc == 0) {
		bench_note("%u events in batches of %u: %.2f s", TOTAL, BATCH,
			   dt);
		bench_figure("store_pg_audit_events_per_s", TOTAL / dt,
			     "events/s");
		uint64_t bad = 0, rows = 0;
		t0 = now_s();
		rc = store_audit_verify(s, &bad, &rows, &e);
		if (rc == 0)
			bench_note("verify: %.0f rows/s (%llu rows)",
				   rows / (now_s() - t0),
				   (unsigned long long)rows);
		else
			bench_note("verify: %s", perr_msg(&e));
	}
	store_close(s);
	return rc == 0 ? 0 : 1;
}

int main(void)
{
	char dir[] = "/tmp/parley-bench-pg-XXXXXX", why[512], base[600];
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	const char *no = pgc_start(dir, true, why, sizeof(why));
	int rc = 1;
	if (no)
		bench_note("no PostgreSQL cluster: %s", no);
	else {
		pgc_conninfo(dir, base, sizeof(base));
		rc = run(base);
	}
	pgc_stop(dir);
	return rc;
}
