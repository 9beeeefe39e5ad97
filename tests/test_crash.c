/* The crash test of issue 10, everything at once against a real parleyd:
 * API writers create and delete hosts, partitions and grants (each 2xx
 * they got written down), a real parley-agent streams audit events (a
 * chantest partition asking for channels it has no grant for, each event
 * naming its own channel; its status and the policy bundles the grants
 * bring come along), and in each of ROUNDS rounds parleyd, the agent or
 * both are killed with SIGKILL at a random point of the stream (seeded;
 * the seed is printed, PARLEY_CRASH_SEED replays it; a kill of parleyd
 * also aims into the API stream: just after a writer was answered) and
 * restarted. A round whose kill did not land mid-stream is run again.
 *
 * Afterwards: PRAGMA integrity_check says ok (sqlite3, read-only), the
 * chain verifies, every acknowledged API write is there exactly once,
 * every audit event the agent had made durable (in its outbox file or in
 * the store at a kill or stop) is stored exactly once, and table rows
 * equal audit events: each host, partition and grant row has its one
 * creating api_change event and no deleting one; an object created by an
 * event and gone from its table has exactly one deleting event; the
 * partition's state is what its partition_state events say. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "common/fileio.h"
#include "common/grant.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

#define ROUNDS 20
#define TRIES_PER_ROUND 3
#define TRIES_MAX (ROUNDS * TRIES_PER_ROUND)
#define PER_TRY 1000            /* events of one agent start */
#define WRITERS 3

/* ---- the agent's events: how many times each (try, index) is where ---- */

struct tally {
	uint8_t n[TRIES_MAX][PER_TRY];
	unsigned total[TRIES_MAX];
	unsigned stray;          /* host-a denials not named r<T>c<K> */
};

static void mark(struct tally *t, const char *channel)
{
	unsigned r, k;
	char tail;
	if (sscanf(channel, "r%uc%u%c", &r, &k, &tail) != 2 ||
	    r >= TRIES_MAX || k >= PER_TRY) {
		t->stray++;
		return;
	}
	if (t->n[r][k] < 255)
		t->n[r][k]++;
	t->total[r]++;
}

/* The store as read so far: rows are appended with ids 1, 2, 3 ... and
 * never change, so reading on from the last id seen is the whole trail.
 * Opened once (opening takes the write lock, which a daemon ingesting
 * back to back can hold past the busy timeout; reading does not). */
static struct store *reader;
static uint64_t last_id;
static struct tally stored;

static int stored_row(const struct store_audit *row, void *ctx)
{
	(void)ctx;
	last_id = row->id;
	if (!strcmp(row->event, "open_denied") && !strcmp(row->host, "host-a"))
		mark(&stored, row->channel);
	return 0;
}

static void scan(void)
{
	struct parley_err err = { 0 };
	int n;
	do {
		n = store_audit_list(reader, last_id, 2000, stored_row, NULL,
				     &err);
		cr_assert_geq(n, 0, "%s", perr_msg(&err));
	} while (n == 2000);
}

static void file_event(const char *event, const char *channel, void *ctx)
{
	if (!strcmp(event, "open_denied"))
		mark(ctx, channel);
}

static struct tally file, expect;

/* What the stopped agent `a` made durable: its file and the store now. */
static void durable(const struct fd_agent *a)
{
	memset(&file, 0, sizeof(file));
	fd_outbox_events(a, file_event, &file);
	scan();
	for (unsigned r = 0; r < TRIES_MAX; r++)
		for (unsigned k = 0; k < PER_TRY; k++)
			if (file.n[r][k] || stored.n[r][k])
				expect.n[r][k] = 1;
}

/* Events of try t in the file but not (yet) in the store. */
static unsigned pending(unsigned t)
{
	unsigned n = 0;
	for (unsigned k = 0; k < PER_TRY; k++)
		n += file.n[t][k] && !stored.n[t][k];
	return n;
}

/* ---- API writers ---- */

static volatile sig_atomic_t writer_stop;

static void on_term(int sig)
{
	(void)sig;
	writer_stop = 1;
}

struct wr {
	const char *dir, *token;
	int port;                /* 0: look it up (parleyd restarted) */
	int acks;                /* fd of acks-W: "K name" per 2xx */
};

static int api_port(const char *dir)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/parleyd.api-port", dir);
	if (file_read_all(path, 64, &buf, &len, NULL) < 0)
		return 0;
	int port = atoi((char *)buf);
	free(buf);
	return port;
}

/* One change; its 2xx written down as "K name" before the next request. */
static bool op(struct wr *w, const char *method, const char *path,
	       const char *body, int want, char kind, const char *name)
{
	if (!w->port)
		w->port = api_port(w->dir);
	if (!w->port) {
		usleep(20000);
		return false;
	}
	int status = ac_request(w->port, w->token, method, path, body);
	if (status == 0) {       /* gone: find the next parleyd */
		w->port = 0;
		usleep(20000);
	}
	if (status != want)
		return false;
	char line[128];
	int n = snprintf(line, sizeof(line), "%c %s\n", kind, name);
	if (write(w->acks, line, (size_t)n) != n)
		_exit(3);
	return true;
}

/* Writer `id`: hosts, thin partitions on them, every third a grant from
 * the agent's partition to it (a policy bundle for the agent); every
 * other iteration deletes what it made, grant first. Runs until SIGTERM,
 * finishing the request in hand (one unanswered is not written down). */
static void writer_main(const char *dir, const char *token, unsigned id)
{
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	char path[700];
	snprintf(path, sizeof(path), "%s/acks-%u", dir, id);
	struct wr w = { dir, token, 0,
			open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			     0644) };
	if (w.acks < 0)
		_exit(2);
	for (unsigned i = 0; !writer_stop; i++) {
		char h[32], p[32], g[32], body[512], url[128];
		snprintf(h, sizeof(h), "w%uh%u", id, i);
		snprintf(p, sizeof(p), "w%up%u", id, i);
		snprintf(g, sizeof(g), "w%ug%u", id, i);
		snprintf(body, sizeof(body), "{\"name\":\"%s\"}", h);
		bool H = op(&w, "POST", "/v1/hosts", body, 201, 'H', h);
		snprintf(body, sizeof(body), "{\"host\":\"%s\",\"backend\":"
			 "\"thin\",\"spec\":{\"name\":\"%s\"}}", h, p);
		bool P = H && !writer_stop &&
			 op(&w, "POST", "/v1/partitions", body, 201, 'P', p);
		snprintf(body, sizeof(body), "{\"channel\":\"%s\",\"endpoint_a\":"
			 "\"a\",\"endpoint_b\":\"%s\",\"direction\":\"a_to_b\","
			 "\"ring_bytes\":\"64K\"}", g, p);
		bool G = P && i % 3 == 0 && !writer_stop &&
			 op(&w, "POST", "/v1/grants", body, 201, 'G', g);
		if (i % 2 == 0 || writer_stop)
			continue;
		snprintf(url, sizeof(url), "/v1/grants/%s", g);
		bool ok = !G || op(&w, "DELETE", url, NULL, 200, 'g', g);
		snprintf(url, sizeof(url), "/v1/partitions/%s", p);
		ok = ok && (!P || op(&w, "DELETE", url, NULL, 204, 'p', p));
		snprintf(url, sizeof(url), "/v1/hosts/%s", h);
		if (ok && H)
			op(&w, "DELETE", url, NULL, 204, 'h', h);
	}
	close(w.acks);
	_exit(0);
}

static pid_t writer(const char *dir, const char *token, unsigned id)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent);
		writer_main(dir, token, id);
	}
	return pid;
}

/* Every "K name" line of the writers so far (*n of them); caller frees. */
static char (*acks_read(const char *dir, unsigned *n))[80]
{
	char (*v)[80] = NULL;
	*n = 0;
	for (unsigned id = 0; id < WRITERS; id++) {
		char path[700];
		uint8_t *buf;
		size_t len;
		snprintf(path, sizeof(path), "%s/acks-%u", dir, id);
		if (file_read_all(path, 64 << 20, &buf, &len, NULL) < 0)
			continue;
		for (char *l = (char *)buf, *e; (e = strchr(l, '\n')); l = e + 1) {
			if ((*n & 1023) == 0)
				v = realloc(v, (*n + 1024) * sizeof(*v));
			/* "K name" -> "K:name", the event keys' form */
			snprintf(v[*n], 80, "%c:%.*s", l[0], (int)(e - l - 2),
				 l + 2);
			(*n)++;
		}
		free(buf);
	}
	return v;
}

static unsigned acks_count(const char *dir)
{
	unsigned n;
	free(acks_read(dir, &n));
	return n;
}

/* ---- rows and events ---- */

struct keys {
	char (*v)[80];
	unsigned n;
};

static void key_add(struct keys *k, char kind, const char *name)
{
	if ((k->n & 1023) == 0)
		k->v = realloc(k->v, (k->n + 1024) * sizeof(*k->v));
	snprintf(k->v[k->n++], 80, "%c:%s", kind, name);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* How many times `key` is in the sorted k. */
static unsigned key_count(const struct keys *k, const char *key)
{
	unsigned lo = 0, hi = k->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (strcmp(k->v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	unsigned c = 0;
	while (lo + c < k->n && !strcmp(k->v[lo + c], key))
		c++;
	return c;
}

struct trail {
	struct keys ev;          /* api_change as "H:name", "h:name", ... */
	unsigned other_changes;  /* api_change events of no known kind */
	char state[STORE_NAME_MAX];     /* partition a, replayed */
	bool state_broken;
	char why[300];
	unsigned enrolled;       /* baseline_enrolled events of a */
	unsigned states;         /* partition_state events of a */
};

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static int trail_row(const struct store_audit *r, void *ctx)
{
	struct trail *t = ctx;
	if (!strcmp(r->partition, "a") && !strcmp(r->host, "host-a")) {
		char from[STORE_NAME_MAX], to[STORE_NAME_MAX];
		if (!strcmp(r->event, "baseline_enrolled"))
			t->enrolled++;
		if (!strcmp(r->event, "partition_state") && !t->state_broken) {
			if (sscanf(r->detail, "%63s -> %63s", from, to) != 2 ||
			    strcmp(from, t->state)) {
				t->state_broken = true;
				snprintf(t->why, sizeof(t->why), "event %llu "
					 "\"%s\" after %s",
					 (unsigned long long)r->id, r->detail,
					 t->state);
			} else {
				t->states++;
				snprintf(t->state, sizeof(t->state), "%s", to);
			}
		}
	}
	if (strcmp(r->event, "api_change"))
		return 0;
	const char *d = r->detail;
	if (starts(d, "POST /v1/hosts -> 201 "))
		key_add(&t->ev, 'H', r->host);
	else if (starts(d, "DELETE /v1/hosts/") && strstr(d, " -> 204 "))
		key_add(&t->ev, 'h', r->host);
	else if (starts(d, "POST /v1/partitions -> 201 "))
		key_add(&t->ev, 'P', r->partition);
	else if (starts(d, "DELETE /v1/partitions/") && strstr(d, " -> 204 "))
		key_add(&t->ev, 'p', r->partition);
	else if (starts(d, "POST /v1/grants -> 201 "))
		key_add(&t->ev, 'G', r->channel);
	else if (starts(d, "DELETE /v1/grants/") && strstr(d, " -> 200 "))
		key_add(&t->ev, 'g', r->channel);
	else
		t->other_changes++;
	return 0;
}

static void host_row(const char *name, void *ctx)
{
	key_add(ctx, 'H', name);
}

static void part_row(const char *name, void *ctx)
{
	key_add(ctx, 'P', name);
}

/* Every host, partition and grant row, as keys "H:name", "P:", "G:". */
static void rows(struct store *s, struct keys *k)
{
	fd_each_host(s, host_row, k);
	fd_each_partition(s, part_row, k);
	struct grant_set set = { 0 };
	cr_assert_eq(store_grant_list(s, &set, NULL), 0);
	for (unsigned i = 0; i < set.n; i++)
		key_add(k, 'G', set.g[i].channel);
	grant_set_free(&set);
}

/* The fixture put in the store before the writers: no api_change. */
static bool fixture(const char *key)
{
	return !strcmp(key, "H:host-a") || !strcmp(key, "P:a");
}

/* Table rows equal audit events; returns the number of rows. */
static unsigned check_rows_and_events(struct store *s, const struct trail *t,
				      const struct keys *acked)
{
	struct keys rk = { 0 };
	rows(s, &rk);
	qsort(rk.v, rk.n, sizeof(*rk.v), key_cmp);
	char key[80];
	/* Each row: one creating event, no deleting one. */
	for (unsigned i = 0; i < rk.n; i++) {
		if (fixture(rk.v[i]))
			continue;
		cr_expect_eq(key_count(&t->ev, rk.v[i]), 1,
			     "row %s: %u creating events", rk.v[i],
			     key_count(&t->ev, rk.v[i]));
		snprintf(key, sizeof(key), "%c:%s", rk.v[i][0] - 'A' + 'a',
			 rk.v[i] + 2);
		cr_expect_eq(key_count(&t->ev, key), 0,
			     "row %s is there after its deleting event", rk.v[i]);
	}
	/* Each event: once; a creation whose row is gone has its deletion,
	 * a deletion follows its creation and left no row. */
	for (unsigned i = 0; i < t->ev.n; i++) {
		const char *e = t->ev.v[i];
		if (i > 0 && !strcmp(e, t->ev.v[i - 1]))
			continue;
		cr_expect_eq(key_count(&t->ev, e), 1, "event %s %u times", e,
			     key_count(&t->ev, e));
		bool create = e[0] >= 'A' && e[0] <= 'Z';
		snprintf(key, sizeof(key), "%c:%s",
			 create ? e[0] - 'A' + 'a' : e[0] - 'a' + 'A', e + 2);
		if (create && !key_count(&rk, e))
			cr_expect_eq(key_count(&t->ev, key), 1, "%s: no row, and "
				     "%u deleting events", e,
				     key_count(&t->ev, key));
		if (!create) {
			cr_expect_eq(key_count(&t->ev, key), 1, "%s: %u creating "
				     "events", e, key_count(&t->ev, key));
			cr_expect_eq(key_count(&rk, key), 0,
				     "%s: the row is still there", e);
		}
	}
	/* Each acknowledged write: its event, exactly once. */
	for (unsigned i = 0; i < acked->n; i++)
		cr_expect_eq(key_count(&t->ev, acked->v[i]), 1,
			     "acknowledged %s: %u events", acked->v[i],
			     key_count(&t->ev, acked->v[i]));
	cr_expect_eq(t->other_changes, 0, "api_change events of other kinds");
	free(rk.v);
	return rk.n;
}

/* ---- the rounds ---- */

static void start_stream(struct api_client *c, struct fd_agent *a,
			 unsigned try)
{
	char spec[256];
	snprintf(spec, sizeof(spec),
		 "{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		 "\"cmdline\":\"steps=spamn:%u:r%uc,sleep:60000\"}", PER_TRY,
		 try);
	const char *specs[] = { spec, NULL };
	/* The refusals are this test's stream of records: every one. */
	const char *all[] = { "--audit-refusals", "all", NULL };
	fd_start_agent_with(&c->f, a, specs, all);
}

/* Poll the store every 2 ms (so the kill follows the evidence closely)
 * until try t has `want` events stored; false after 30 s. */
static bool stored_at_least(unsigned t, unsigned want)
{
	for (int waited = 0; waited < 30000; waited += 2) {
		scan();
		if (stored.total[t] >= want)
			return true;
		usleep(2000);
	}
	return false;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum target { K_DAEMON, K_AGENT, K_BOTH };
static const char *const target_name[] = { "parleyd", "agent", "both" };

/* One try of a round: the agent streams try t's events, and at a random
 * point `what` is killed. Returns whether the kill landed mid-stream:
 * some but not all of the try's events stored at the kill (with parleyd
 * killed: the writers' acknowledged writes moving too; with both: events
 * in the agent's file that no daemon had stored). Leaves parleyd running
 * and the agent stopped, its durable events in `expect`. */
static bool try_round(struct api_client *c, struct fd_agent *a, unsigned t,
		      enum target what, unsigned at, unsigned *seed)
{
	unsigned acks0 = acks_count(c->f.dir);
	double t0 = now_s();
	start_stream(c, a, t);
	cr_assert(stored_at_least(t, at), "try %u: %u of %u events stored:\n%s",
		  t, stored.total[t], at, fd_agent_log(a));
	double t1 = now_s();
	bool mid;
	unsigned acks = 0, left = 0, got;
	if (what == K_AGENT) {
		fd_kill_agent(a);
		durable(a);
		acks = acks_count(c->f.dir);
		got = stored.total[t];
		mid = got > 0 && got < PER_TRY;
	} else {
		/* Into the API stream too: as soon as a writer was answered
		 * (the others' requests are then in the daemon), give or take
		 * a few ms. */
		unsigned before = acks_count(c->f.dir);
		for (int i = 0; i < 1000 && acks_count(c->f.dir) == before; i++)
			usleep(1000);
		usleep((useconds_t)(rand_r(seed) % 4000));
		ac_kill(c);
		acks = acks_count(c->f.dir);
		scan(); /* final until parleyd is back */
		got = stored.total[t];
		mid = got > 0 && got < PER_TRY && acks > acks0;
		if (what == K_BOTH) {
			/* The agent goes on making events no daemon sees. */
			usleep((useconds_t)(rand_r(seed) % 200) * 1000);
			for (int i = 0; i < 150; i++) {
				memset(&file, 0, sizeof(file));
				fd_outbox_events(a, file_event, &file);
				if (pending(t) > 0)
					break;
				usleep(20000);
			}
			fd_kill_agent(a);
			durable(a);
			left = pending(t);
			mid = mid && left > 0;
		}
		ac_kill_restart(c);
		if (what == K_DAEMON) {
			/* Let the agent find the new parleyd, then stop it. */
			usleep(100000 + (useconds_t)(rand_r(seed) % 300) * 1000);
			fd_stop_agent(a);
			durable(a);
		}
	}
	cr_log_info("try %u: killed %s at %u of %u events stored (aimed at "
		    "%u), %u only in the file, API acks %u at the round's start, "
		    "%u at the kill -> %s (%.2f s to the kill, %.2f s after)", t,
		    target_name[what], got, PER_TRY, at, left, acks0, acks,
		    mid ? "mid-stream" : "NOT mid-stream, again", t1 - t0,
		    now_s() - t1);
	return mid;
}

struct all_wait {
	unsigned missing;
};

static bool all_stored(struct fleetd *f, void *ctx)
{
	(void)f;
	struct all_wait *w = ctx;
	scan();
	w->missing = 0;
	for (unsigned r = 0; r < TRIES_MAX; r++)
		for (unsigned k = 0; k < PER_TRY; k++)
			w->missing += expect.n[r][k] && !stored.n[r][k];
	return w->missing == 0;
}

static void integrity_ok(const char *path)
{
	sqlite3 *db = NULL;
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
		     SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st = NULL;
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st,
					NULL), SQLITE_OK, "%s",
		     sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sqlite3_errmsg(db));
	const char *r = (const char *)sqlite3_column_text(st, 0);
	cr_expect_str_eq(r ? r : "(null)", "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

Test(crash, kill9_of_parleyd_and_agent_under_writers_and_audit_stream,
     .timeout = 240)
{
	signal(SIGPIPE, SIG_IGN);
	const char *env = getenv("PARLEY_CRASH_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)time(NULL) ^ (unsigned)getpid();
	cr_log_info("seed %u (PARLEY_CRASH_SEED=%u replays it)", seed, seed);
	fprintf(stderr, "crash: seed %u\n", seed);

	struct api_client c;
	ac_start(&c);
	reader = fd_store(&c.f);
	last_id = 0;
	memset(&stored, 0, sizeof(stored));
	memset(&expect, 0, sizeof(expect));
	cr_assert_eq(store_host_put(reader, "host-a", "",
				    (struct store_blob){ 0 }, NULL), 0);
	struct store_part_in in = { .name = "a", .host = "host-a",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(reader, &in, NULL, NULL), 0);
	struct fd_agent *a = fd_host(&c.f, "host-a", NULL);

	pid_t w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++)
		w[i] = writer(c.f.dir, c.admin, i);

	/* Each target about a third of the rounds, in a seeded order. */
	enum target order[ROUNDS];
	for (unsigned i = 0; i < ROUNDS; i++)
		order[i] = (enum target)(i % 3);
	for (unsigned i = ROUNDS - 1; i > 0; i--) {
		unsigned j = (unsigned)rand_r(&seed) % (i + 1);
		enum target x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	unsigned t = 0, kills[3] = { 0 };
	double start = now_s();
	for (unsigned round = 0; round < ROUNDS; round++) {
		bool mid = false;
		for (unsigned k = 0; k < TRIES_PER_ROUND && !mid; k++, t++) {
			enum target what = order[round];
			unsigned at = 1 + rand_r(&seed) % (PER_TRY / 3);
			mid = try_round(&c, a, t, what, at, &seed);
			kills[what] += mid;
		}
		cr_assert(mid, "round %u: no kill in %d tries landed "
			  "mid-stream", round, TRIES_PER_ROUND);
	}

	cr_log_info("rounds: %.1f s", now_s() - start);
	/* The agent sends what its file holds; parleyd skips what it has. */
	const char *quiet[] = {
		"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=sleep:60000\"}", NULL };
	fd_start_agent(&c.f, a, quiet);
	struct all_wait aw = { 0 };
	cr_assert(fd_wait(all_stored, &c.f, &aw, 60000),
		  "%u durable events never arrived:\n%s", aw.missing,
		  fd_agent_log(a));
	for (unsigned i = 0; i < WRITERS; i++) {
		kill(w[i], SIGTERM);
		int st;
		cr_assert_eq(waitpid(w[i], &st, 0), w[i]);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "writer %u: status %d", i, st);
	}
	usleep(500000); /* duplicates, if any, would arrive now */
	fd_stop_agent(a);
	ac_kill(&c);    /* the last state is a crash's too */

	/* Every durable event, exactly once; nothing else from host-a. */
	scan();
	unsigned want = 0, got = 0;
	for (unsigned r = 0; r < t; r++)
		for (unsigned k = 0; k < PER_TRY; k++) {
			cr_assert_leq(stored.n[r][k], 1, "r%uc%u stored %u "
				      "times", r, k, stored.n[r][k]);
			cr_assert(!expect.n[r][k] || stored.n[r][k],
				  "r%uc%u durable at a kill, not stored", r, k);
			want += expect.n[r][k];
			got += stored.n[r][k];
		}
	cr_expect_eq(stored.stray, 0);

	integrity_ok(c.f.store);
	uint64_t bad = 0, nrows = 0;
	struct parley_err err = { 0 };
	cr_expect_eq(store_audit_verify(reader, &bad, &nrows, &err), 0,
		     "chain: row %llu: %s", (unsigned long long)bad,
		     perr_msg(&err));

	struct trail tr = { 0 };
	snprintf(tr.state, sizeof(tr.state), "defined");
	cr_assert_geq(store_audit_list(reader, 0, 0, trail_row, &tr, NULL), 0);
	qsort(tr.ev.v, tr.ev.n, sizeof(*tr.ev.v), key_cmp);
	struct keys acked = { 0 };
	acked.v = acks_read(c.f.dir, &acked.n);
	unsigned nr = check_rows_and_events(reader, &tr, &acked);
	cr_expect_gt(acked.n, ROUNDS, "the writers got only %u writes through",
		     acked.n);
	cr_expect_not(tr.state_broken, "partition a: %s", tr.why);
	struct store_partition p;
	cr_assert_eq(store_partition_get(reader, "a", &p, NULL), 0);
	cr_expect_str_eq(p.state, tr.state, "partition a: row %s, events %s",
			 p.state, tr.state);
	store_partition_free(&p);
	struct store_baseline bl;
	bool has = store_baseline_get(reader, "a", &bl, NULL) == 0;
	cr_expect_eq(tr.enrolled, has ? 1u : 0u, "baseline %d, %u "
		     "baseline_enrolled events", has, tr.enrolled);
	cr_log_info("%u rounds in %u tries (kills: parleyd %u, agent %u, "
		    "both %u); %u events durable at the kills, %u stored (the "
		    "rest appended, never synced); %u acknowledged API writes, "
		    "%u api_change events, %u rows; partition a: %u state events, "
		    "%u baseline_enrolled; %llu audit rows verified",
		    ROUNDS, t, kills[K_DAEMON], kills[K_AGENT], kills[K_BOTH],
		    want, got, acked.n, tr.ev.n, nr, tr.states, tr.enrolled,
		    (unsigned long long)nrows);
	free(acked.v);
	free(tr.ev.v);
	store_close(reader);
	reader = NULL;
	ac_stop(&c);
}
