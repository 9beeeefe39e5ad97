/*
 * bench_console: the console suite (`./dev bench console`, bench/README.md).
 * A real parleyd on 127.0.0.1 with a fresh store of 50 hosts, 1,000
 * partitions (20 a host) and 2,000 grants, filled before it starts.
 *
 *   1. `BENCH sse_event_latency_ms`: 100 clients on GET /v1/events (raw
 *      sockets in this process, one poll loop); 200 times, a change
 *      (POST /v1/hosts) and, for every client, the time from just before
 *      the request was sent to the arrival of the event naming that host.
 *      p99 over the 20,000 arrivals. The interval holds the request's own
 *      handling and its commit (fsync), so it is an upper bound of commit
 *      -> event; stderr also gives it from the response's arrival (after
 *      the commit).
 *   2. `BENCH ui_graph_render_ms`: bench/console_bench.js in headless
 *      Chromium (node + Debian's chromium): navigation start to the first
 *      frame painted with all 1,000 nodes and 2,000 edges drawn; median of
 *      5 runs after a warm-up.
 *   3. `BENCH console_load_10k_vs_10`: the page loaded (every list read,
 *      every view drawn: `data-loaded`) and painted, from navigation start,
 *      over a parleyd of 10,000 partitions (100 hosts of 100, a grant
 *      each to a neighbour) against one of 10 (one host), each its own
 *      fresh store and daemon in this run; the ratio of the medians (5
 *      loads after a warm-up each), the two times as
 *      `console_load_10k_ms` and `console_load_10_ms`.
 *
 *   bench_console [--clients N] [--events N] [--keep]
 */
#include "bench/bench.h"
#include "bench/fleet_bench.h"
#include "common/grant.h"
#include "db/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOSTS 50
#define PER_HOST 20
#define GRANTS 2000
#define CLIENTS_DEFAULT 100
#define EVENTS_DEFAULT 200
#define GAP_MS 20
#define WAIT_MS 10000

static double now_ms(void)
{
	return (double)fleet_now_ns() / 1e6;
}

/* ---- the store ----------------------------------------------------------- */

/* hosts x per_host partitions on a store not yet in use. */
static int put_parts(struct store *s, unsigned hosts, unsigned per_host,
		     struct parley_err *err)
{
	static const char spec[] = "{}";
	char host[32], part[40];
	int rc = 0;
	for (unsigned h = 0; rc == 0 && h < hosts; h++) {
		snprintf(host, sizeof(host), "host-%02u", h);
		rc = store_host_put(s, host, "", (struct store_blob){ NULL, 0 },
				    err);
		for (unsigned i = 0; rc == 0 && i < per_host; i++) {
			snprintf(part, sizeof(part), "p-%02u-%02u", h, i);
			struct store_part_in p = {
				.name = part, .host = host,
				.kind = STORE_PART_THIN, .spec_json = spec,
				.spec_len = sizeof(spec) - 1,
				.state = "defined",
			};
			rc = store_partition_put(s, &p, NULL, err);
		}
	}
	return rc;
}

/* fill(s, arg) on e's store in one transaction, before parleyd starts. */
typedef int (*fill_fn)(struct store *s, const void *arg,
		       struct parley_err *err);

static int fill_store(const struct fleet_env *e, fill_fn fill,
		      const void *arg, struct parley_err *err)
{
	struct store *s = NULL;
	int rc = store_open(e->store, &s, err);
	if (rc == 0)
		rc = store_begin(s, err);
	if (rc == 0)
		rc = fill(s, arg, err);
	if (rc == 0)
		rc = store_commit(s, err);
	else if (s)
		store_rollback(s, NULL);
	store_close(s);
	return rc;
}

static int populate(struct store *s, const void *arg, struct parley_err *err)
{
	(void)arg;
	int rc = put_parts(s, HOSTS, PER_HOST, err);
	/* Two grants a partition: to its neighbour in the host, and to one
	 * on another host. */
	const unsigned n = HOSTS * PER_HOST;
	for (unsigned g = 0; rc == 0 && g < GRANTS; g++) {
		unsigned a = g % n, b = g < n ? (a / PER_HOST) * PER_HOST +
			(a % PER_HOST + 1) % PER_HOST : (a + 7 * PER_HOST + 3) % n;
		struct grant gr = { .dir = g % 3 == 0 ? GRANT_BOTH : GRANT_A_TO_B,
				    .ring_bytes = 4096,
				    .require_integrity = true };
		snprintf(gr.channel, sizeof(gr.channel), "ch-%04u", g);
		snprintf(gr.a, sizeof(gr.a), "p-%02u-%02u", a / PER_HOST,
			 a % PER_HOST);
		snprintf(gr.b, sizeof(gr.b), "p-%02u-%02u", b / PER_HOST,
			 b % PER_HOST);
		rc = store_grant_add(s, &gr, NULL, err);
	}
	return rc;
}

static int read_file(const char *dir, const char *name, char *out, size_t cap)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(p, "r");
		if (f) {
			bool ok = fgets(out, (int)cap, f) != NULL;
			fclose(f);
			if (ok) {
				out[strcspn(out, "\n")] = '\0';
				return 0;
			}
		}
		usleep(10000);
	}
	return -ENOENT;
}

/* ---- HTTP -------------------------------------------------------------- */

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int post_host(int port, const char *token, const char *name)
{
	int fd = connect_to(port);
	if (fd < 0)
		return -1;
	char body[64], req[512];
	int bl = snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	int n = snprintf(req, sizeof(req), "POST /v1/hosts HTTP/1.1\r\n"
			 "Host: x\r\nConnection: close\r\nAuthorization: "
			 "Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token,
			 bl, body);
	int status = -1;
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		char buf[4096];
		ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);
		if (k > 12) {
			buf[k] = '\0';
			status = atoi(buf + 9);
		}
	}
	close(fd);
	return status;
}

struct client {
	int fd;
	char *buf;
	size_t len, cap;
	bool ready;
};

static int client_open(struct client *c, int port, const char *token)
{
	memset(c, 0, sizeof(*c));
	c->fd = connect_to(port);
	if (c->fd < 0)
		return -1;
	char req[256];
	int n = snprintf(req, sizeof(req), "GET /v1/events HTTP/1.1\r\nHost: x"
			 "\r\nAuthorization: Bearer %s\r\n\r\n", token);
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	return c->buf ? 0 : -1;
}

/* Read what is there; false on EOF or error. */
static bool client_read(struct client *c)
{
	for (;;) {
		if (c->len + 4097 > c->cap) {
			/* Keep the tail only: markers are searched in what
			 * came since the last look. */
			size_t keep = 4096;
			memmove(c->buf, c->buf + c->len - keep, keep);
			c->len = keep;
		}
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1,
				 0);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			continue;
		}
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
}

/* Wait until every client's buffer has `marker` (then cut it out), noting
 * when, ms after t0; false on a client lost or WAIT_MS passed. */
static bool wait_all(struct client *c, unsigned n, const char *marker,
		     double t0, double *out)
{
	struct pollfd *p = calloc(n, sizeof(*p));
	bool *got = calloc(n, sizeof(*got));
	unsigned have = 0;
	bool ok = p && got;
	while (ok && have < n) {
		for (unsigned i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = got[i] ? -1 : c[i].fd,
						.events = POLLIN };
		int r = poll(p, n, 100);
		double t = now_ms();
		if (t - t0 > WAIT_MS) {
			ok = false;
			break;
		}
		for (unsigned i = 0; r > 0 && i < n; i++) {
			if (got[i] || !(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			if (!client_read(&c[i]))
				ok = false;
			char *m = strstr(c[i].buf, marker);
			if (m) {
				got[i] = true;
				have++;
				out[i] = t - t0;
				c[i].len = 0;
				c[i].buf[0] = '\0';
			}
		}
	}
	free(p);
	free(got);
	return ok;
}

static int sse_latency(int port, const char *token, unsigned nclients,
		       unsigned events)
{
	struct client *c = calloc(nclients, sizeof(*c));
	double *lat = calloc((size_t)nclients * events, sizeof(*lat));
	double *after = calloc((size_t)nclients * events, sizeof(*after));
	double *tmp = calloc(nclients, sizeof(*tmp));
	int rc = c && lat && after && tmp ? 0 : -ENOMEM;
	for (unsigned i = 0; rc == 0 && i < nclients; i++)
		rc = client_open(&c[i], port, token);
	if (rc == 0 && !wait_all(c, nclients, "event: ready", now_ms(), tmp))
		rc = -EIO;
	size_t k = 0;
	for (unsigned e = 0; rc == 0 && e < events; e++) {
		char name[32], marker[64];
		snprintf(name, sizeof(name), "lat-%05u", e);
		snprintf(marker, sizeof(marker), "\"host\":\"%s\"", name);
		double t0 = now_ms();
		if (post_host(port, token, name) != 201) {
			rc = -EIO;
			break;
		}
		double t1 = now_ms() - t0;
		if (!wait_all(c, nclients, marker, t0, tmp)) {
			rc = -EIO;
			break;
		}
		for (unsigned i = 0; i < nclients; i++, k++) {
			lat[k] = tmp[i];
			after[k] = tmp[i] - t1;
		}
		usleep(GAP_MS * 1000);
	}
	if (rc == 0) {
		bench_note("sse: %u clients x %u events", nclients, events);
		double p50 = bench_pct(after, k, 50), p99a = bench_pct(after, k, 99);
		bench_note("sse: from the response's arrival: p50 %.2f p99 %.2f ms",
		     p50, p99a);
		double med = bench_pct(lat, k, 50), p90 = bench_pct(lat, k, 90),
		       p99 = bench_pct(lat, k, 99);
		bench_note("sse: from the request sent: p50 %.2f p90 %.2f p99 %.2f "
		     "max %.2f ms", med, p90, p99, lat[k - 1]);
		bench_figure("sse_event_latency_ms", p99, "ms");
	} else {
		printf("NOFIGURE sse_event_latency_ms: %s\n", strerror(-rc));
	}
	for (unsigned i = 0; c && i < nclients; i++) {
		if (c[i].fd >= 0)
			close(c[i].fd);
		free(c[i].buf);
	}
	free(c);
	free(lat);
	free(after);
	free(tmp);
	return rc;
}

/* The fleet of the load figure: hosts x per_host partitions, each
 * granted a channel to its neighbour on its host. */
struct shape {
	unsigned hosts, per_host;
};

static int populate_load(struct store *s, const void *arg,
			 struct parley_err *err)
{
	const struct shape *sh = arg;
	unsigned hosts = sh->hosts, per_host = sh->per_host;
	int rc = put_parts(s, hosts, per_host, err);
	for (unsigned h = 0; rc == 0 && h < hosts; h++)
		for (unsigned i = 0; rc == 0 && i < per_host; i++) {
			struct grant gr = { .dir = GRANT_A_TO_B,
					    .ring_bytes = 4096 };
			snprintf(gr.channel, sizeof(gr.channel), "c-%02u-%02u",
				 h, i);
			snprintf(gr.a, sizeof(gr.a), "p-%02u-%02u", h, i);
			snprintf(gr.b, sizeof(gr.b), "p-%02u-%02u", h,
				 (i + 1) % per_host);
			rc = store_grant_add(s, &gr, NULL, err);
		}
	return rc;
}

/* bench/console_bench.js in mode `mode`; its figure line (median ms) is
 * read back into *ms when out is set, else passed on. */
static int run_js(int port, const char *token, const char *mode,
		  const char *want, double *ms)
{
	char url[64];
	int p[2];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	if (ms && pipe(p) < 0)
		return -errno;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (ms) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
		}
		setenv("PARLEY_URL", url, 1);
		setenv("PARLEY_TOKEN", token, 1);
		setenv("PARLEY_WANT", want, 1);
		setenv("PARLEY_MODE", mode, 1);
		execlp("node", "node", PARLEY_SOURCE_DIR
		       "/bench/console_bench.js", (char *)NULL);
		_exit(127);
	}
	char line[256] = "";
	if (ms) {
		close(p[1]);
		FILE *f = fdopen(p[0], "r");
		char l[256];
		while (f && fgets(l, sizeof(l), f))
			if (!strncmp(l, "BENCH ", 6))
				snprintf(line, sizeof(line), "%s", l);
		if (f)
			fclose(f);
	}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return -EIO;
	if (ms) {
		char name[64];
		if (sscanf(line, "BENCH %63s %lf", name, ms) != 2)
			return -EIO;
	}
	return 0;
}

/* One fleet of hosts x per_host, its own store and daemon: the median
 * load in *ms. */
static int load_fleet(unsigned hosts, unsigned per_host, double *ms)
{
	struct fleet_env e;
	struct fleet_id *ids = NULL;
	struct parley_err err = { 0 };
	char want[32], port_s[16], token[128];
	int rc = fleet_env_init(&e, &err);
	if (rc == 0)
		rc = fleet_pki(&e, 0, &ids, &err);
	if (rc == 0)
		rc = fill_store(&e, populate_load,
				&(struct shape){ hosts, per_host }, &err);
	if (rc == 0)
		rc = fleet_daemon_start(&e, &err);
	if (rc < 0)
		bench_note("load %u: %s", hosts * per_host, perr_msg(&err));
	if (rc == 0 && (read_file(e.dir, "parleyd.api-port", port_s,
				  sizeof(port_s)) < 0 ||
			read_file(e.dir, "admin.token", token,
				  sizeof(token)) < 0))
		rc = -EIO;
	snprintf(want, sizeof(want), "%u", hosts * per_host);
	if (rc == 0)
		rc = run_js(atoi(port_s), token, "load", want, ms);
	if (rc == 0)
		bench_note("load: %u partitions, %u grants: %.1f ms",
			   hosts * per_host, hosts * per_host, *ms);
	fleet_daemon_stop(&e);
	fleet_ids_free(ids, 0);
	fleet_env_remove(&e);
	return rc;
}

/* console_load_10k_vs_10: the same page over 10 and 10,000 partitions. */
static int console_load(void)
{
	double small = 0, big = 0;
	int rc = load_fleet(1, 10, &small);
	if (rc == 0)
		rc = load_fleet(100, 100, &big);
	if (rc < 0 || small <= 0) {
		printf("NOFIGURE console_load_10k_vs_10: console_bench.js "
		       "failed (node and chromium: ./dev deps)\n");
		return -EIO;
	}
	bench_figure("console_load_10_ms", small, "ms");
	bench_figure("console_load_10k_ms", big, "ms");
	bench_figure("console_load_10k_vs_10", big / small, "x");
	return 0;
}

/* bench/console_bench.js, its figure line passed on. */
static int graph_render(int port, const char *token)
{
	char want[32];
	snprintf(want, sizeof(want), "%u/%u", HOSTS * PER_HOST, GRANTS);
	if (run_js(port, token, "graph", want, NULL) < 0) {
		printf("NOFIGURE ui_graph_render_ms: console_bench.js failed "
		       "(node and chromium: ./dev deps)\n");
		return -EIO;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "events", required_argument, NULL, 'e' },
		{ "keep", no_argument, NULL, 'k' },
		{ 0 },
	};
	unsigned clients = CLIENTS_DEFAULT, events = EVENTS_DEFAULT;
	bool keep = false;
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (o == 'c')
			clients = (unsigned)atoi(optarg);
		else if (o == 'e')
			events = (unsigned)atoi(optarg);
		else if (o == 'k')
			keep = true;
		else
			return 2;
	}
	if (!clients || !events)
		return 2;
	struct fleet_env e;
	struct fleet_id *ids = NULL;
	struct parley_err err = { 0 };
	int rc = fleet_env_init(&e, &err);
	if (rc == 0)
		rc = fleet_pki(&e, 0, &ids, &err);
	if (rc == 0)
		rc = fill_store(&e, populate, NULL, &err);
	double t0 = now_ms();
	if (rc == 0)
		rc = fleet_daemon_start(&e, &err);
	if (rc < 0) {
		bench_note("setup: %s", perr_msg(&err));
		fleet_daemon_stop(&e);
		return 1;
	}
	char port_s[16], token[128];
	int failed = read_file(e.dir, "parleyd.api-port", port_s,
			       sizeof(port_s)) < 0 ||
		     read_file(e.dir, "admin.token", token, sizeof(token)) < 0;
	if (failed) {
		bench_note("parleyd's API did not come up (%s)", e.log);
	} else {
		int port = atoi(port_s);
		bench_note("parleyd up in %.0f ms: %u partitions, %u grants, API on "
		     "%d", now_ms() - t0, HOSTS * PER_HOST, GRANTS, port);
		failed |= sse_latency(port, token, clients, events) < 0;
		failed |= graph_render(port, token) < 0;
	}
	fleet_daemon_stop(&e);
	fleet_ids_free(ids, 0);
	if (!keep)
		fleet_env_remove(&e);
	else
		bench_note("kept %s", e.dir);
	/* Its own daemons, one at a time (the first is gone). */
	failed |= console_load() < 0;
	return failed ? 1 : 0;
}
