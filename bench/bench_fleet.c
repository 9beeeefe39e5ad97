/*
 * bench_fleet: the fleet suite (`./dev bench fleet`). A real parleyd on
 * 127.0.0.1 with a fresh SQLite store, and N simulated agents in this
 * process (fleet_client.c). Figures on stdout, each
 * `BENCH <name> <value> <unit>`; spread, CPU shares and cross-checks on
 * stderr. See bench/README.md for what each figure holds. Nothing here
 * asserts on time: the exit status says only whether every measurement
 * could be made.
 *
 *   bench_fleet [--agents N] [--window W] [--audit-agents M]
 *               [--audit-batch B] [--audit-secs S] [--keep]
 *
 * Built a second time as bench_fleet_pg (FLEET_PG): the store on a
 * throw-away PostgreSQL cluster, two replicas on it, the agents split
 * between them (even to A, odd to B), the policy change committed by the
 * bench (as through either's API) and pushed by each to its half;
 * figures fleet_pg_agents_connected and fleet_pg_policy_ack_all_s. The
 * audit and memory figures are the SQLite suite's alone.
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

#define AGENTS_DEFAULT 10000
#define WINDOW_DEFAULT 128
#define AUDIT_AGENTS_DEFAULT 100
#define AUDIT_BATCH_DEFAULT 100
#define AUDIT_SECS_DEFAULT 5
#define AUDIT_WARMUP_MS 500
/* Every phase is bounded; together well under three minutes. */
#define RAMP_MS 95000
#define SETTLE_MS 30000
#define PUSH_MS 75000
#define RECONNECT_MS 20000
#define DRAIN_MS 10000
#define LAG_POLL_MS 20

struct opts {
	unsigned agents, window, audit_agents, audit_batch, audit_secs;
	bool keep;
	char pg[PATH_MAX];         /* FLEET_PG: the cluster's directory */
	pid_t b_pid;               /* FLEET_PG: replica B */
};

/* CPU used by parleyd and by this process over a phase. */
struct phase {
	const char *name;
	uint64_t t0;
	double d0, b0, p0, i0;
};

/* Share of the CPUs other processes may use before a run is called noisy
 * (as the vmx suite does). */
#define OTHERS_MAX 0.10

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

#ifdef FLEET_PG
#define PG 1
#else
#define PG 0
#endif

static void figure(const char *name, const char *value, const char *unit)
{
	if (PG && !strncmp(name, "fleet_", 6))
		printf("BENCH fleet_pg_%s %s %s\n", name + 6, value, unit);
	else
		printf("BENCH %s %s %s\n", name, value, unit);
	fflush(stdout);
}

static void phase_begin(struct phase *p, const char *name,
			const struct fleet_env *e)
{
	p->name = name;
	p->t0 = fleet_now_ns();
	p->d0 = fleet_cpu_s(e->pid);
	p->b0 = fleet_self_cpu_s();
	if (fleet_host_cpu(&p->p0, &p->i0) < 0)
		p->p0 = p->i0 = -1;
}

struct phase_cpu {
	double wall, daemon, bench, irq, others;
};

static struct phase_cpu phase_cpu(const struct phase *p,
				  const struct fleet_env *e)
{
	struct phase_cpu c = { .wall = fleet_since_s(p->t0) };
	double pr, ir;
	c.daemon = fleet_cpu_s(e->pid) - p->d0;
	c.bench = fleet_self_cpu_s() - p->b0;
	if (p->p0 >= 0 && fleet_host_cpu(&pr, &ir) == 0) {
		c.irq = ir - p->i0;
		c.others = pr - p->p0 - c.daemon - c.bench;
		if (c.others < 0)
			c.others = 0;
	}
	return c;
}

/* Where the wall time of a phase went: parleyd's CPU, this process's,
 * interrupts (loopback TCP) and other processes' (2 cores here: the bench
 * client and the daemon compete, with each other and with anything else
 * running). */
static double phase_end(const struct phase *p, const struct fleet_env *e)
{
	struct phase_cpu c = phase_cpu(p, e);
	double w = c.wall > 0 ? c.wall : 1;
	note("%-14s wall %7.3f s | CPU s: parleyd %6.3f (%3.0f%% of a core) "
	     "bench %6.3f (%3.0f%%) softirq %5.3f others %6.3f", p->name,
	     c.wall, c.daemon, 100 * c.daemon / w, c.bench, 100 * c.bench / w,
	     c.irq, c.others);
	return c.wall;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)rank;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (rank - (double)lo) * (v[lo + 1] - v[lo]);
}

static void spread(const char *label, double *v, size_t n, double scale,
		   const char *unit)
{
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	note("%-26s n=%-6zu p50 %8.3f  p90 %8.3f  p99 %8.3f  min %8.3f  "
	     "max %8.3f %s", label, n, pct(v, n, 50) * scale,
	     pct(v, n, 90) * scale, pct(v, n, 99) * scale, v[0] * scale,
	     v[n - 1] * scale, unit);
}

static void fleet_failed(const struct fleet *f)
{
	if (f->last_error[0])
		note("last error: %s", f->last_error);
}

/* ---- store polling inside the loop -------------------------------------- */

struct lag_poll {
	struct fleet *f;
	struct store *s;
	struct event *ev;
	bool armed, done;
	int last;                  /* connected hosts lagging at last look */
	uint64_t t_done_ns;
	unsigned polls;
};

/* "fleet-%05u" back to its index. */
static int host_index(const struct fleet *f, const char *host)
{
	unsigned i;
	if (sscanf(host, "fleet-%u", &i) != 1 || i >= f->n)
		return -1;
	return (int)i;
}

static int lagging_up(struct fleet *f, struct store *s)
{
	struct store_lag *l = NULL;
	struct parley_err err = { 0 };
	int n = store_policy_lagging(s, &l, &err);
	if (n < 0) {
		note("store_policy_lagging: %s", perr_msg(&err));
		return n;
	}
	int up = 0;
	for (int i = 0; i < n; i++) {
		int k = host_index(f, l[i].host);
		if (k >= 0 && f->a[k].state == FA_UP)
			up++;
	}
	free(l);
	return up;
}

static void on_lag_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct lag_poll *p = arg;
	if (!p->armed || p->done)
		return;
	p->polls++;
	p->last = lagging_up(p->f, p->s);
	if (p->last == 0) {
		p->done = true;
		p->t_done_ns = fleet_now_ns();
	}
}

static bool lag_done(struct fleet *f, void *ctx)
{
	(void)f;
	return ((struct lag_poll *)ctx)->done;
}

/* Wait (in the loop, so acks still flow) until no connected host lags. */
static bool wait_store(struct fleet *f, struct store *s, int timeout_ms,
		       uint64_t *t_done)
{
	struct lag_poll p = { .f = f, .s = s, .armed = true, .last = -1 };
	p.ev = event_new(f->base, -1, EV_PERSIST, on_lag_poll, &p);
	struct timeval tv = { 0, LAG_POLL_MS * 1000 };
	event_add(p.ev, &tv);
	on_lag_poll(-1, 0, &p);
	bool ok = fleet_run_until(f, lag_done, &p, timeout_ms);
	event_free(p.ev);
	if (!ok)
		note("store: %d connected hosts still lagging after %d ms",
		     p.last, timeout_ms);
	*t_done = p.t_done_ns;
	return ok;
}

/* ---- phases ------------------------------------------------------------- */

static double rss_note(const struct fleet_env *e, const char *when)
{
	long kib = fleet_rss_kib(e->pid);
	note("parleyd VmRSS %s: %ld KiB", when, kib);
	return (double)kib;
}

/* Figure 1: connect everyone; then everyone's first bundle acked. */
static int ramp(struct fleet *f, struct fleet_env *e, struct store *s)
{
	struct phase ph;
	phase_begin(&ph, "ramp-up", e);
	fleet_ramp_start(f);
	bool ok = fleet_run_until(f, fleet_ramp_done, NULL, RAMP_MS);
	f->ramping = false;
	double wall = phase_end(&ph, e);
	char v[32];
	snprintf(v, sizeof(v), "%u", f->connected);
	figure("fleet_agents_connected", v, "agents");
	note("%u of %u agents welcomed in %.2f s (%.0f/s, %u handshakes in "
	     "flight at most); %llu connection errors, %llu dropped, %u gave "
	     "up%s", f->connected, f->n, wall, f->connected / wall, f->window,
	     (unsigned long long)f->n_conn_errors,
	     (unsigned long long)f->n_dropped, f->gave_up,
	     ok ? "" : "; ramp-up TIMED OUT");
	double *lat = calloc(f->n ? f->n : 1, sizeof(*lat));
	size_t k = 0;
	for (unsigned i = 0; lat && i < f->n; i++)
		if (f->a[i].state == FA_UP)
			lat[k++] = (double)(f->a[i].t_up_ns -
					    f->a[i].t_start_ns) / 1e9;
	spread("connect -> Welcome", lat, k, 1e3, "ms");
	free(lat);
	if (f->connected < f->n)
		fleet_failed(f);

	phase_begin(&ph, "first bundles", e);
	uint64_t *want = calloc(f->n ? f->n : 1, sizeof(*want));
	if (!want)
		return -ENOMEM;
	for (unsigned i = 0; i < f->n; i++)
		want[i] = f->a[i].id->version;
	unsigned nw = fleet_want(f, want);
	free(want);
	bool got = fleet_run_until(f, fleet_got_all, &nw, SETTLE_MS);
	uint64_t t;
	bool st = wait_store(f, s, SETTLE_MS, &t);
	phase_end(&ph, e);
	note("first bundles: %u of %u agents hold theirs%s; the store has "
	     "every ack%s", f->n_got, nw, got ? "" : " (TIMED OUT)",
	     st ? "" : " NOT");
	return ok && got && st ? 0 : -ETIMEDOUT;
}

/* What the child that commits the change reports. */
struct change {
	int rc;
	uint64_t t_begin, t_commit;  /* fleet_now_ns: one clock for both */
	uint64_t first, last;        /* the versions it made */
	char msg[256];
};

/* The change, in a child process with its own store connection, as
 * another writer (an API client of either replica) would commit it:
 * this process's simulated agents go on heartbeating meanwhile. Done in
 * this process, its loop stopped for the whole transaction -- 7 to 14 s
 * on PostgreSQL on the shared machine -- and the replicas closed agents
 * silent for three heartbeats (15 s) before their bundle came. */
static void change_child(const struct fleet_env *e, const struct fleet_id *ids,
			 unsigned n, int fd)
{
	struct change c = { .t_begin = fleet_now_ns() };
	struct parley_err err = { 0 };
	struct store *s = NULL;
	c.rc = store_open(e->store, &s, &err);
	if (c.rc == 0)
		c.rc = store_begin(s, &err);
	for (unsigned i = 0; c.rc == 0 && i < n; i++) {
		struct grant g = { .dir = GRANT_BOTH,
				   .ring_bytes = FLEET_RING_AFTER,
				   .require_integrity = true };
		uint64_t v = 0;
		fleet_chan_name(g.channel, ids[i].name);
		fleet_part_name(g.a, ids[i].name, 'a');
		fleet_part_name(g.b, ids[i].name, 'b');
		c.rc = store_grant_update(s, &g, &v, &err);
		if (!i)
			c.first = v;
		c.last = v;
	}
	if (c.rc == 0)
		c.rc = store_commit(s, &err);
	else if (s)
		store_rollback(s, NULL);
	c.t_commit = fleet_now_ns();
	snprintf(c.msg, sizeof(c.msg), "%s", perr_msg(&err));
	store_close(s);
	ssize_t w = write(fd, &c, sizeof(c));
	_exit(w == (ssize_t)sizeof(c) ? 0 : 1);
}

static void on_change(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

static bool changed(struct fleet *f, void *ctx)
{
	(void)f;
	return *(const bool *)ctx;
}

static int change_commit(struct fleet *f, const struct fleet_env *e,
			 const struct fleet_id *ids, struct change *c)
{
	int p[2];
	bool ready = false;
	if (pipe(p) < 0)
		return -errno;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		close(p[0]);
		change_child(e, ids, f->n, p[1]);
	}
	close(p[1]);
	struct event *ev = event_new(f->base, p[0], EV_READ, on_change, &ready);
	if (ev)
		event_add(ev, NULL);
	/* As long as the transaction takes: bounded by the push's bound. */
	fleet_run_until(f, changed, &ready, ev ? PUSH_MS : 0);
	event_free(ev);
	ssize_t r = read(p[0], c, sizeof(*c));
	close(p[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	if (r != (ssize_t)sizeof(*c)) {
		snprintf(c->msg, sizeof(c->msg), "the committing process "
			 "ended without a word (status %d)", st);
		return -EIO;
	}
	if (c->rc == 0 && c->last - c->first + 1 != f->n) {
		snprintf(c->msg, sizeof(c->msg), "versions %llu..%llu for %u "
			 "grants", (unsigned long long)c->first,
			 (unsigned long long)c->last, f->n);
		return -EPROTO;
	}
	return c->rc;
}

/* Figure 2: every grant changed in one transaction; time until the store
 * holds every connected host's ack of its new bundle. */
static int push_all(struct fleet *f, struct fleet_env *e, struct store *s,
		    const struct fleet_id *ids)
{
	uint64_t *want = calloc(f->n ? f->n : 1, sizeof(*want));
	if (!want)
		return -ENOMEM;
	struct phase ph;
	struct change c = { 0 };
	phase_begin(&ph, "policy change", e);
	int rc = change_commit(f, e, ids, &c);
	if (rc < 0) {
		note("policy change: %s", c.msg);
		free(want);
		return rc;
	}
	for (unsigned i = 0; i < f->n; i++)
		want[i] = c.first + i;
	uint64_t t0 = c.t_commit;
	note("policy change: %u grants updated in one transaction in %.3f s "
	     "(policy versions %llu..%llu; committed by a child process, "
	     "the agents heartbeating meanwhile)", f->n,
	     (double)(t0 - c.t_begin) / 1e9, (unsigned long long)c.first,
	     (unsigned long long)c.last);
	unsigned nw = fleet_want(f, want);
	free(want);
	fleet_run_until(f, fleet_got_or_lost, &nw, PUSH_MS);
	bool got = f->n_got >= nw;
	uint64_t t_agents = f->t_last_got_ns;
	uint64_t t_store = 0;
	bool st = got && wait_store(f, s, PUSH_MS, &t_store);
	phase_end(&ph, e);
	if (f->n_lost_wanted)
		note("policy change: %u agents lost their link before their "
		     "bundle came, the last %.3f s after commit",
		     f->n_lost_wanted, (double)(f->t_last_drop_ns - t0) / 1e9);
	double *lat = calloc(f->n ? f->n : 1, sizeof(*lat));
	size_t k = 0;
	for (unsigned i = 0; lat && i < f->n; i++)
		if (f->a[i].want && f->a[i].got)
			lat[k++] = (double)(f->a[i].t_got_ns - t0) / 1e9;
	spread("commit -> bundle at agent", lat, k, 1e3, "ms");
	free(lat);
	if (!got || !st) {
		note("policy change: %u of %u agents got their bundle in %.0f "
		     "s; the store %s every ack: no figure", f->n_got, nw,
		     fleet_since_s(t0), st ? "has" : "does NOT have");
		fleet_failed(f);
		return -ETIMEDOUT;
	}
	double s_all = (double)(t_store - t0) / 1e9;
	note("policy change: last bundle at its agent %.3f s after commit "
	     "(acks sent at once); every ack in the store %.3f s after "
	     "commit", (double)(t_agents - t0) / 1e9, s_all);
	char v[32];
	snprintf(v, sizeof(v), "%.3f", s_all);
	figure("fleet_policy_ack_all_s", v, "s");
	return 0;
}

static bool past(struct fleet *f, void *ctx)
{
	(void)f;
	return fleet_now_ns() >= *(const uint64_t *)ctx;
}

/* Figure 4 (and a batch-size sweep on stderr when `figure_name`): events
 * acknowledged per second, each ack after the daemon's commit. */
static int audit(struct fleet *f, struct fleet_env *e, struct store *s,
		 unsigned m, unsigned batch, unsigned secs,
		 const char *figure_name)
{
	char label[64];
	snprintf(label, sizeof(label), "audit %ux%u", m, batch);
	struct phase ph;
	uint64_t start = fleet_now_ns();
	uint64_t w0 = start + AUDIT_WARMUP_MS * 1000000ull;
	uint64_t w1 = w0 + (uint64_t)secs * 1000000000ull;
	phase_begin(&ph, label, e);
	if (f->connected < m) {
		note("%s: %u agents up, connecting %u more", label,
		     f->connected, m - f->connected);
		fleet_reconnect(f, m - f->connected, RECONNECT_MS);
		start = fleet_now_ns();
		w0 = start + AUDIT_WARMUP_MS * 1000000ull;
		w1 = w0 + (uint64_t)secs * 1000000000ull;
	}
	unsigned k = fleet_audit_start(f, m, batch, w0, w1);
	if (!k) {
		note("audit: no agent to send");
		return -ENOENT;
	}
	fleet_run_until(f, past, &w1, (int)((w1 - start) / 1000000) + 1000);
	fleet_audit_stop(f);
	bool idle = fleet_run_until(f, fleet_audit_idle, NULL, DRAIN_MS);
	phase_end(&ph, e);
	/* Cross-check with the store: what the hosts' sequence numbers say
	 * was committed against what was sent (all of it acked when idle). */
	uint64_t stored = 0, sent = 0;
	for (unsigned i = 0; i < f->n; i++) {
		struct fleet_agent *a = &f->a[i];
		uint64_t seq = 0;
		if (a->next_seq > 1)
			store_host_seq(s, a->id->name, &seq, NULL);
		stored += seq;
		sent += a->next_seq - 1;
	}
	double rate = (double)f->ev_acked_in_win / (double)secs;
	note("%s: %u agents x %u events a batch: %.0f ev/s over %u s "
	     "(%.0f batches/s = commits/s); %llu events acked in all; the "
	     "store holds %llu of the %llu events sent so far%s; %llu bad "
	     "acks", label, k, batch, rate, secs, rate / batch,
	     (unsigned long long)f->ev_acked, (unsigned long long)stored,
	     (unsigned long long)sent,
	     idle ? "" : " (some batches never acked)",
	     (unsigned long long)f->bad_acks);
	spread("batch sent -> Ack", f->audit_lat, f->audit_nlat, 1e3, "ms");
	for (unsigned i = 0; i < f->n; i++)
		f->a[i].audit = false;
	if (figure_name) {
		char v[32];
		snprintf(v, sizeof(v), "%.0f", rate);
		figure(figure_name, v, "ev/s");
	}
	return idle ? 0 : -ETIMEDOUT;
}

/* Every run of digits as one '#', so that messages differing only in
 * numbers compare equal. */
static void digits_out(char *m)
{
	char *o = m;
	for (const char *p = m; *p; p++) {
		if (*p >= '0' && *p <= '9') {
			if (o == m || o[-1] != '#')
				*o++ = '#';
			continue;
		}
		*o++ = *p;
	}
	*o = 0;
}

/* What parleyd warned about, counted by message with host names cut. */
static void log_summary(const struct fleet_env *e)
{
	FILE *fp = fopen(e->log, "r");
	if (!fp)
		return;
	char line[1024], first[3][200] = { { 0 } };
	unsigned long warn = 0, lines = 0, count[3] = { 0 };
	unsigned nfirst = 0;
	while (fgets(line, sizeof(line), fp)) {
		lines++;
		char *w = strstr(line, " warn: ");
		if (!w)
			w = strstr(line, " error: ");
		if (!w)
			continue;
		warn++;
		/* "agent fleet-01234: ..." -> "agent *: ..." */
		char msg[200];
		const char *p = strchr(w + 1, ' ') + 1, *h = strstr(p, "fleet-");
		if (h && h - p < 40)
			snprintf(msg, sizeof(msg), "%.*s*%s", (int)(h - p), p,
				 h + strspn(h, "fleet-0123456789"));
		else
			snprintf(msg, sizeof(msg), "%s", p);
		msg[strcspn(msg, "\n")] = 0;
		digits_out(msg);
		unsigned i = 0;
		while (i < nfirst && strcmp(first[i], msg))
			i++;
		if (i == nfirst && nfirst < 3)
			snprintf(first[nfirst++], sizeof(first[0]), "%s", msg);
		if (i < nfirst)
			count[i]++;
	}
	fclose(fp);
	note("parleyd log: %lu lines, %lu warnings or errors%s", lines, warn,
	     nfirst ? ", among them:" : "");
	for (unsigned i = 0; i < nfirst; i++)
		note("  %5lu x %s", count[i], first[i]);
}

/* ---- main --------------------------------------------------------------- */

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "agents", required_argument, NULL, 'n' },
		{ "window", required_argument, NULL, 'w' },
		{ "audit-agents", required_argument, NULL, 'm' },
		{ "audit-batch", required_argument, NULL, 'b' },
		{ "audit-secs", required_argument, NULL, 's' },
		{ "keep", no_argument, NULL, 'k' },
		{ 0 },
	};
	*o = (struct opts){ AGENTS_DEFAULT, WINDOW_DEFAULT,
			    AUDIT_AGENTS_DEFAULT, AUDIT_BATCH_DEFAULT,
			    AUDIT_SECS_DEFAULT, false, "", 0 };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end;
		unsigned long v = 0;
		if (c == 'k') {
			o->keep = true;
			continue;
		}
		if (c == '?' || !optarg)
			return -EINVAL;
		v = strtoul(optarg, &end, 10);
		if (*end || !v || v > 1000000)
			return -EINVAL;
		switch (c) {
		case 'n': o->agents = (unsigned)v; break;
		case 'w': o->window = (unsigned)v; break;
		case 'm': o->audit_agents = (unsigned)v; break;
		case 'b': o->audit_batch = v > 1024 ? 1024 : (unsigned)v; break;
		case 's': o->audit_secs = v > 60 ? 60 : (unsigned)v; break;
		}
	}
	return optind < argc ? -EINVAL : 0;
}

static int run(struct opts *o, struct fleet_env *e, struct fleet *f,
	       struct fleet_id **ids, struct store **s)
{
	struct parley_err err = { 0 };
	long lim = fleet_raise_nofile((long)o->agents + 4096);
	note("RLIMIT_NOFILE %ld (parleyd inherits it)", lim);
	if (lim < (long)o->agents + 256) {
		unsigned n = lim > 512 ? (unsigned)lim - 256 : 256;
		note("too few file descriptors for %u agents: %u", o->agents,
		     n);
		o->agents = n;
	}
	int rc = fleet_env_init(e, &err);
	if (rc < 0)
		return note("%s", perr_msg(&err)), rc;
	note("state in %s, parleyd %s", e->dir, e->parleyd);
	if (PG && (rc = fleet_pg_store(e, o->pg, sizeof(o->pg), &err)) < 0)
		return note("%s", perr_msg(&err)), rc;
	uint64_t t = fleet_now_ns();
	rc = fleet_pki(e, o->agents, ids, &err);
	if (rc < 0)
		return note("certificates: %s", perr_msg(&err)), rc;
	note("%u client certificates issued in-process in %.2f s", o->agents,
	     fleet_since_s(t));
	t = fleet_now_ns();
	rc = fleet_populate(e, *ids, o->agents, &err);
	if (rc < 0)
		return note("store: %s", perr_msg(&err)), rc;
	note("store: %u hosts, %u partitions, %u grants in one transaction "
	     "in %.2f s", o->agents, 2 * o->agents, o->agents,
	     fleet_since_s(t));
	rc = fleet_daemon_start(e, &err);
	if (rc < 0)
		return note("%s", perr_msg(&err)), rc;
	note("parleyd pid %d listening on 127.0.0.1:%d (log %s)", (int)e->pid,
	     e->port, e->log);
	int b_port = 0;
	if (PG) {
		rc = fleet_pg_replica_dir(e, "replica-b", &err);
		if (rc == 0)
			rc = fleet_replica_start(e, "replica-b", &o->b_pid,
						 &b_port, &err);
		if (rc < 0)
			return note("%s", perr_msg(&err)), rc;
		note("replica B pid %d on 127.0.0.1:%d: odd agents there; "
		     "store %s", (int)o->b_pid, b_port, e->store);
	}
	rc = store_open(e->store, s, &err);
	if (rc < 0)
		return note("store: %s", perr_msg(&err)), rc;
	rc = fleet_client_init(f, e, *ids, o->agents, o->window, &err);
	if (rc < 0)
		return note("client: %s", perr_msg(&err)), rc;
	if (PG) {
		f->addr2 = f->addr;
		f->addr2.sin_port = htons((uint16_t)b_port);
	}

	int bad = 0;
	double rss0 = rss_note(e, "before any agent");
	if (ramp(f, e, *s) < 0)
		bad = 1;
	double rss1 = rss_note(e, "with the fleet connected");
	if (PG) {
		/* Cross-check: each replica holds its half (the holds are
		 * written in the loop turn's batch). */
		struct store_replica *r = NULL;
		int nr = store_replica_list(*s, &r, NULL);
		for (int i = 0; i < nr; i++)
			note("replica %s holds %llu agents", r[i].name,
			     (unsigned long long)r[i].hosts);
		free(r);
	}
	if (PG) {
		/* parleyd's memory is the SQLite suite's figure. */
	} else if (f->connected && rss0 > 0 && rss1 > 0) {
		char v[32];
		snprintf(v, sizeof(v), "%.1f", (rss1 - rss0) / f->connected);
		figure("daemon_kib_per_agent", v, "KiB");
	} else {
		bad = 1;
	}
	if (!fleet_daemon_alive(e))
		return note("parleyd died (see %s)", e->log), -ECHILD;
	if (!f->connected || push_all(f, e, *s, *ids) < 0)
		bad = 1;
	rss_note(e, "after the fleet-wide push");
	if (PG) /* store_pg_audit_events_per_s is the store suite's */
		return bad ? -EIO : 0;
	/* Per-commit cost first (one event a batch), on stderr only. */
	if (audit(f, e, *s, o->audit_agents, 1, 1, NULL) < 0)
		bad = 1;
	if (audit(f, e, *s, o->audit_agents, o->audit_batch, o->audit_secs,
		  "store_audit_events_per_s") < 0)
		bad = 1;
	rss_note(e, "at the end");
	if (!fleet_daemon_alive(e))
		return note("parleyd died (see %s)", e->log), -ECHILD;
	return bad ? -EIO : 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: bench_fleet [--agents N] [--window W] "
			"[--audit-agents M] [--audit-batch B] "
			"[--audit-secs S] [--keep]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	static struct fleet_env e;
	static struct fleet f;
	struct fleet_id *ids = NULL;
	struct store *s = NULL;
	uint64_t t_all = fleet_now_ns();
	double own0 = fleet_family_cpu_s(), p0 = -1, i0;
	fleet_host_cpu(&p0, &i0);
	int rc = run(&o, &e, &f, &ids, &s);
	store_close(s);
	fleet_daemon_stop(&e);
	if (e.dir[0])
		log_summary(&e);
	if (o.b_pid > 0) {
		kill(o.b_pid, SIGTERM);
		waitpid(o.b_pid, NULL, 0);
	}
	fleet_client_free(&f);
	fleet_ids_free(ids, o.agents);
	if (!o.keep)
		fleet_pg_stop(o.pg);
	if (o.keep)
		note("kept %s", e.dir);
	else
		fleet_env_remove(&e);
	/* parleyd is reaped by now: its time is among the children's. */
	double wall = fleet_since_s(t_all), p1 = -1, i1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (p0 >= 0 && fleet_host_cpu(&p1, &i1) == 0 && ncpu > 0) {
		double others = p1 - p0 - (fleet_family_cpu_s() - own0);
		double share = others > 0 ? others / (wall * (double)ncpu) : 0;
		note("whole suite: %.1f s; other processes used %.0f%% of the "
		     "%ld CPUs%s", wall, 100 * share, ncpu, share > OTHERS_MAX ?
		     ": figures INFLATED, rerun on an idle machine" : "");
	} else {
		note("whole suite: %.1f s", wall);
	}
	return rc < 0 ? 1 : 0;
}
