/* Every API change and its api_change audit event in one transaction
 * (daemon/rpc/api.c run_change), against a real parleyd: the event is
 * there after a change, names the request and the token; a refused change
 * leaves neither row nor event; a busy store answers 503 with nothing
 * changed; and after kill -9 at random points under writers, table rows
 * and events match one to one. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

struct ev {
	char host[STORE_NAME_MAX], part[STORE_NAME_MAX];
	char detail[STORE_DETAIL_MAX];
};

struct evs {
	struct ev *e;
	unsigned n, cap;
};

static int collect(const struct store_audit *row, void *ctx)
{
	struct evs *l = ctx;
	if (strcmp(row->event, "api_change"))
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->e = realloc(l->e, l->cap * sizeof(*l->e));
	}
	struct ev *e = &l->e[l->n++];
	snprintf(e->host, sizeof(e->host), "%s", row->host);
	snprintf(e->part, sizeof(e->part), "%s", row->partition);
	snprintf(e->detail, sizeof(e->detail), "%s", row->detail);
	return 0;
}

/* Every api_change event in the store (parleyd may be running: WAL). */
static struct evs events(struct api_client *c)
{
	struct evs l = { 0 };
	struct store *s = fd_store(&c->f);
	uint64_t after = 0;
	int n;
	do {
		n = store_audit_list(s, after, 0, collect, &l, NULL);
		cr_assert_geq(n, 0);
		after += (uint64_t)n;
	} while (n > 0);
	store_close(s);
	return l;
}

static unsigned count(const struct evs *l, const char *prefix,
		      const char *host, const char *part)
{
	unsigned k = 0;
	for (unsigned i = 0; i < l->n; i++)
		if (!strncmp(l->e[i].detail, prefix, strlen(prefix)) &&
		    (!host || !strcmp(l->e[i].host, host)) &&
		    (!part || !strcmp(l->e[i].part, part)))
			k++;
	return k;
}

static const char *resp_id(const struct ac_resp *r, char *out, size_t cap)
{
	const char *p = strcasestr(r->raw, "\r\nX-Request-Id: ");
	out[0] = '\0';
	if (p)
		snprintf(out, cap, "%.*s", (int)strcspn(p + 16, "\r"), p + 16);
	return out;
}

Test(api, change_and_audit_event_together, .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	struct ac_resp r;
	char id[64], want[200];
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	resp_id(&r, id, sizeof(id));
	ac_free(&r);
	/* The reply came after the commit: the event is there already. */
	struct evs l = events(&c);
	cr_assert_eq(l.n, 1);
	cr_expect_str_eq(l.e[0].host, "h1");
	snprintf(want, sizeof(want), "POST /v1/hosts -> 201 request_id=%s "
		 "token=bootstrap", id);
	cr_expect_str_eq(l.e[0].detail, want);
	free(l.e);

	/* Refused changes: no row, no event. */
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_expect_eq(r.status, 409);
	ac_free(&r);
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"-bad\"}", &r);
	cr_expect_eq(r.status, 400);
	ac_free(&r);
	ac_call(&c, "POST", "/v1/partitions", c.admin, "{\"host\":\"nohost\","
		"\"backend\":\"thin\",\"spec\":{\"name\":\"p9\"}}", &r);
	cr_expect_eq(r.status, 404);
	ac_free(&r);
	ac_call(&c, "DELETE", "/v1/grants/nochan", c.admin, NULL, &r);
	cr_expect_eq(r.status, 404);
	ac_free(&r);
	l = events(&c);
	cr_expect_eq(l.n, 1, "events after refusals: %u", l.n);
	free(l.e);
	ac_call(&c, "GET", "/v1/partitions/p9", c.admin, NULL, &r);
	cr_expect_eq(r.status, 404);
	ac_free(&r);

	/* A thin partition, then its deletion: one event each, naming it. */
	ac_call(&c, "POST", "/v1/partitions", c.admin, "{\"host\":\"h1\","
		"\"backend\":\"thin\",\"spec\":{\"name\":\"p1\"}}", &r);
	cr_expect_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	ac_call(&c, "DELETE", "/v1/partitions/p1", c.admin, NULL, &r);
	cr_expect_eq(r.status, 204, "%s", r.raw);
	ac_free(&r);
	l = events(&c);
	cr_expect_eq(count(&l, "POST /v1/partitions -> 201", "h1", "p1"), 1);
	cr_expect_eq(count(&l, "DELETE /v1/partitions/p1 -> 204", "h1", "p1"),
		     1);
	cr_expect_eq(l.n, 3);
	free(l.e);

	/* Another writer holds the store: 503 after the busy timeout, JSON,
	 * and nothing changed. */
	struct store *s = fd_store(&c.f);
	cr_assert_eq(store_begin(s, NULL), 0);
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h2\"}", &r);
	cr_expect_eq(r.status, 503, "%s", r.raw);
	cr_expect_str_eq(ac_code(&r), "UNAVAILABLE");
	ac_free(&r);
	cr_assert_eq(store_rollback(s, NULL), 0);
	store_close(s);
	ac_call(&c, "GET", "/v1/hosts/h2", c.admin, NULL, &r);
	cr_expect_eq(r.status, 404);
	ac_free(&r);
	l = events(&c);
	cr_expect_eq(l.n, 3);
	free(l.e);
	ac_stop(&c);
}

/* ---- kill -9 under writers ---- */

/* Hosts and thin partitions, as fast as the daemon takes them. */
static pid_t writer(int port, const char *token, unsigned round)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid)
		return pid;
	for (unsigned i = 0;; i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"name\":\"k%uh%u\"}", round, i);
		if (ac_request(port, token, "POST", "/v1/hosts", body) != 201)
			continue;
		snprintf(body, sizeof(body), "{\"host\":\"k%uh%u\",\"backend\":"
			 "\"thin\",\"spec\":{\"name\":\"k%up%u\"}}", round, i,
			 round, i);
		ac_request(port, token, "POST", "/v1/partitions", body);
	}
}

struct names {
	char (*v)[STORE_NAME_MAX];
	unsigned n;
};

static void add_name(const char *name, void *ctx)
{
	struct names *l = ctx;
	if ((l->n & 255) == 0)
		l->v = realloc(l->v, (l->n + 256) * sizeof(*l->v));
	snprintf(l->v[l->n++], STORE_NAME_MAX, "%s", name);
}

Test(api, kill9_rows_match_audit_events, .timeout = 240)
{
	struct api_client c;
	ac_start(&c);
	srand((unsigned)time(NULL));
	const unsigned rounds = 12;
	for (unsigned round = 0; round < rounds; round++) {
		pid_t w = writer(c.port, c.admin, round);
		/* 150..900 ms in: any point of a request, commit included. */
		usleep(150000 + (useconds_t)(rand() % 750) * 1000);
		if (round + 1 < rounds)
			ac_kill_restart(&c);
		else
			ac_kill(&c);
		kill(w, SIGKILL);
		waitpid(w, NULL, 0);
	}
	struct store *s = fd_store(&c.f);
	uint64_t bad = 0;
	cr_expect_eq(store_audit_verify(s, &bad, NULL, NULL), 0,
		     "chain: row %llu",
		     (unsigned long long)bad);
	struct names hn = { 0 }, pn = { 0 };
	fd_each_host(s, add_name, &hn);
	fd_each_partition(s, add_name, &pn);
	store_close(s);
	int nh = (int)hn.n, np = (int)pn.n;
	cr_expect_gt(nh, rounds, "the writers created only %d hosts", nh);
	struct evs l = events(&c);
	/* Each row has its event, exactly one ... */
	for (int i = 0; i < nh; i++)
		cr_expect_eq(count(&l, "POST /v1/hosts -> 201", hn.v[i], NULL),
			     1, "host %s", hn.v[i]);
	for (int i = 0; i < np; i++)
		cr_expect_eq(count(&l, "POST /v1/partitions -> 201", NULL,
				   pn.v[i]), 1, "partition %s", pn.v[i]);
	/* ... and no event lacks its row. */
	cr_expect_eq(count(&l, "POST /v1/hosts -> 201", NULL, NULL),
		     (unsigned)nh);
	cr_expect_eq(count(&l, "POST /v1/partitions -> 201", NULL, NULL),
		     (unsigned)np);
	cr_expect_eq(l.n, (unsigned)(nh + np));
	free(l.e);
	free(hn.v);
	free(pn.v);
	ac_stop(&c);
}
