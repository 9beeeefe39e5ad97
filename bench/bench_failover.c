/*
 * bench_failover: the failover suite (`./dev bench failover`, issue 15).
 * Two parleyd replicas on one store -- PostgreSQL, a throw-away cluster
 * the bench starts (tests/helpers/pgcluster.c), or with --store sqlite one
 * SQLite file -- (fleet_setup.c), N simulated
 * agents (fleet_client.c) all connected to the first; kill -9 of it; each
 * agent, on its lost link, connects to the second. The figure is the time
 * from the kill to the last agent welcomed again:
 *
 *   BENCH failover_all_reconnected_s <s> s          (PostgreSQL)
 *   BENCH failover_sqlite_all_reconnected_s <s> s   (--store sqlite)
 *
 * The simulated agents reconnect at once (at most W handshakes in flight);
 * a real agent first waits its jittered backoff (50-150 ms for the first
 * retry), which spreads the same work over a little more time. Nothing here
 * asserts on time: the exit status says only whether every agent came back.
 *
 *   bench_failover [--agents N] [--window W] [--store sqlite|postgresql]
 *                  [--keep]
 */
#include "bench/fleet_bench.h"
#include "db/store.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define AGENTS_DEFAULT 5000
#define WINDOW_DEFAULT 128
#define RAMP_MS 95000
#define DROP_MS 20000
#define FAILOVER_MS 60000
#define HOLD_MS 20000

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "# ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static bool all_dropped(struct fleet *f, void *ctx)
{
	(void)ctx;
	return f->connected == 0;
}

/* How many hosts the store says replica `port`'s parleyd holds. */
static uint64_t held_by_port(struct store *s, int port)
{
	struct store_replica *r = NULL;
	int n = store_replica_list(s, &r, NULL);
	char tail[16];
	snprintf(tail, sizeof(tail), "-%d", port);
	uint64_t held = 0;
	for (int i = 0; i < n; i++) {
		size_t a = strlen(r[i].name), b = strlen(tail);
		if (a > b && !strcmp(r[i].name + a - b, tail))
			held = r[i].hosts;
	}
	free(r);
	return held;
}

struct opts {
	unsigned agents, window;
	bool keep;
	bool sqlite;
	char pg[PATH_MAX];         /* the cluster's directory, "" if none */
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "agents", required_argument, NULL, 'n' },
		{ "window", required_argument, NULL, 'w' },
		{ "keep", no_argument, NULL, 'k' },
		{ "store", required_argument, NULL, 's' },
		{ 0 },
	};
	*o = (struct opts){ AGENTS_DEFAULT, WINDOW_DEFAULT, false, false,
			    "" };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'k') {
			o->keep = true;
			continue;
		}
		if (c == 's' && (!strcmp(optarg, "sqlite") ||
				 !strcmp(optarg, "postgresql"))) {
			o->sqlite = !strcmp(optarg, "sqlite");
			continue;
		}
		if (c == '?' || !optarg)
			return -EINVAL;
		char *end;
		unsigned long v = strtoul(optarg, &end, 10);
		if (*end || !v || v > 1000000)
			return -EINVAL;
		if (c == 'n')
			o->agents = (unsigned)v;
		else
			o->window = (unsigned)v;
	}
	return optind < argc ? -EINVAL : 0;
}

static int run(struct opts *o, struct fleet_env *e, struct fleet *f,
	       struct fleet_id **ids, pid_t *b_pid)
{
	struct parley_err err = { 0 };
	long lim = fleet_raise_nofile((long)o->agents + 4096);
	if (lim < (long)o->agents + 256) {
		o->agents = lim > 512 ? (unsigned)lim - 256 : 256;
		note("too few file descriptors: %u agents", o->agents);
	}
	int rc = fleet_env_init(e, &err);
	if (rc == 0 && !o->sqlite)
		rc = fleet_pg_store(e, o->pg, sizeof(o->pg), &err);
	if (rc == 0)
		rc = fleet_pki(e, o->agents, ids, &err);
	if (rc == 0)
		rc = fleet_populate(e, *ids, o->agents, &err);
	if (rc == 0)
		rc = fleet_daemon_start(e, &err);
	int b_port = 0;
	if (rc == 0 && !o->sqlite)
		rc = fleet_pg_replica_dir(e, "replica-b", &err);
	if (rc == 0)
		rc = fleet_replica_start(e, "replica-b", b_pid, &b_port, &err);
	if (rc == 0)
		rc = fleet_client_init(f, e, *ids, o->agents, o->window, &err);
	if (rc < 0)
		return note("%s", perr_msg(&err)), rc;
	note("replica A pid %d port %d, replica B pid %d port %d, store %s",
	     (int)e->pid, e->port, (int)*b_pid, b_port, e->store);
	uint64_t t = fleet_now_ns();
	fleet_ramp_start(f);
	bool ok = fleet_run_until(f, fleet_ramp_done, NULL, RAMP_MS);
	f->ramping = false;
	note("%u of %u agents on A in %.2f s%s", f->connected, f->n,
	     fleet_since_s(t), ok ? "" : " (TIMED OUT)");
	if (f->connected < f->n)
		return -ETIMEDOUT;

	/* kill -9 of the replica holding every agent. */
	kill(e->pid, SIGKILL);
	waitpid(e->pid, NULL, 0);
	e->pid = 0;
	uint64_t t_kill = fleet_now_ns();
	bool dropped = fleet_run_until(f, all_dropped, NULL, DROP_MS);
	note("every link lost %.3f s after the kill%s", fleet_since_s(t_kill),
	     dropped ? "" : " (NOT all)");
	f->addr.sin_port = htons((uint16_t)b_port);
	ok = fleet_reconnect(f, f->n, FAILOVER_MS);
	double s = fleet_since_s(t_kill);
	note("%u of %u agents welcomed by B, the last %.2f s after the kill; "
	     "%llu connection errors", f->connected, f->n, s,
	     (unsigned long long)f->n_conn_errors);
	if (!ok || f->connected < f->n)
		return -ETIMEDOUT;
	char v[32];
	snprintf(v, sizeof(v), "%.2f", s);
	printf("BENCH failover_%sall_reconnected_s %s s\n",
	       o->sqlite ? "sqlite_" : "", v);
	fflush(stdout);

	/* Cross-check: the store says B holds them all (the holds are
	 * batched per loop turn, so they may trail the welcomes a little). */
	struct store *st = NULL;
	if (store_open(e->store, &st, &err) == 0) {
		uint64_t held = 0;
		for (int w = 0; w < HOLD_MS; w += 50) {
			if ((held = held_by_port(st, b_port)) >= f->n)
				break;
			fleet_run_until(f, all_dropped, NULL, 50);
		}
		note("the store says B holds %llu of %u hosts",
		     (unsigned long long)held, f->n);
		store_close(st);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: bench_failover [--agents N] "
			"[--window W] [--store sqlite|postgresql] [--keep]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	static struct fleet_env e;
	static struct fleet f;
	struct fleet_id *ids = NULL;
	pid_t b_pid = 0;
	int rc = run(&o, &e, &f, &ids, &b_pid);
	fleet_daemon_stop(&e);
	if (b_pid > 0) {
		kill(b_pid, SIGTERM);
		waitpid(b_pid, NULL, 0);
	}
	fleet_client_free(&f);
	fleet_ids_free(ids, o.agents);
	if (!o.keep)
		fleet_pg_stop(o.pg);
	if (o.keep)
		note("kept %s", e.dir);
	else
		fleet_env_remove(&e);
	return rc < 0 ? 1 : 0;
}
