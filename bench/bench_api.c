/*
 * bench_api: the api suite (`./dev bench api`, bench/README.md). A real
 * parleyd on 127.0.0.1 with a fresh SQLite store holding 10,000 partitions
 * (5,000 hosts, filled in one transaction before the daemon starts), 1,000
 * simulated agents connected (bench/fleet_client.c), then `GET
 * /v1/partitions` (first page, default limit 100) over keep-alive HTTP/1.1
 * from a client on the same libevent loop (raw non-blocking sockets):
 *
 *   1. closed loop, C connections, one request in flight on each, S s:
 *      `BENCH api_rps <n> req/s`
 *   2. open loop at R requests/s for S s, each request sent at its
 *      scheduled time on whatever connection is idle (a new one is opened
 *      when none is, up to a cap; beyond, it waits in a queue), latency
 *      from the scheduled time to the last byte of the response:
 *      `BENCH api_p99_ms_at_2000rps <ms> ms`
 *
 *   bench_api [--agents N] [--partitions P] [--conns C] [--rate R]
 *             [--secs S] [--keep]
 */
#include "bench/fleet_bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define AGENTS_DEFAULT 1000
#define PARTITIONS_DEFAULT 10000
#define CONNS_DEFAULT 32
#define RATE_DEFAULT 2000
#define SECS_DEFAULT 5
#define WINDOW 128
#define RAMP_MS 60000
#define WARMUP_MS 500
#define DRAIN_MS 10000
#define OPEN_CONNS_INIT 64
#define OPEN_CONNS_MAX 512
#define RESP_MAX (4u << 20)

struct opts {
	unsigned agents, partitions, conns, rate, secs;
	bool keep;
};

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

static void figure(const char *name, const char *value, const char *unit)
{
	printf("BENCH %s %s %s\n", name, value, unit);
	fflush(stdout);
}

/* A run with a failed or unanswered request has no figure: a dropped
 * request is exactly the tail a percentile would leave out. What went
 * wrong is printed where the figure would be, and the suite fails. */
static int no_figure(const char *name, uint64_t errors, uint64_t unanswered)
{
	printf("NOFIGURE %s: %llu errors, %llu requests unanswered\n", name,
	       (unsigned long long)errors, (unsigned long long)unanswered);
	fflush(stdout);
	return -EIO;
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

/* Sorts v. */
static void spread(const char *label, double *v, size_t n)
{
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	note("%-22s n=%-7zu p50 %7.3f  p90 %7.3f  p99 %7.3f  p99.9 %7.3f  "
	     "max %7.3f ms", label, n, pct(v, n, 50) * 1e3,
	     pct(v, n, 90) * 1e3, pct(v, n, 99) * 1e3, pct(v, n, 99.9) * 1e3,
	     v[n - 1] * 1e3);
}

/* ---- the HTTP client ---------------------------------------------------- */

struct hconn;

struct hclient {
	struct event_base *base;
	struct sockaddr_in addr;
	char req[512];
	size_t req_len;
	struct hconn **c;
	unsigned nc, cap;
	/* closed loop: resend on every response */
	bool closed_loop;
	/* open loop */
	struct event *timer;
	struct event *tick;        /* wakes the loop: agents' timers, deadlines */
	uint64_t t0, period_ns, end_ns;
	uint64_t next_idx;         /* next request to schedule */
	uint64_t *queue;           /* scheduled times waiting for a conn */
	size_t qhead, qtail, qcap;
	size_t max_queue;
	unsigned max_conns;
	/* counting */
	uint64_t win_start, win_end;
	uint64_t done_in_win, done, errors, inflight, bytes;
	uint64_t sched_in_win;     /* open loop: requests due in the window */
	size_t resp_len;           /* first response's body length */
	double *lat, *lat_sent;    /* from scheduled / actual send time */
	size_t nlat, latcap;
	char last_error[160];
};

struct hconn {
	struct hclient *h;
	int fd;
	struct event *ev;
	bool busy, connected, dead;
	uint64_t t_sched, t_sent;
	size_t sent;
	char *buf;
	size_t len;
};

static void herr(struct hclient *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void herr(struct hclient *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->last_error, sizeof(h->last_error), fmt, ap);
	va_end(ap);
	h->errors++;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg);

static struct hconn *conn_open(struct hclient *h)
{
	if (h->nc == h->cap)
		return NULL;
	struct hconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->buf = malloc(RESP_MAX);
	c->h = h;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!c->buf || c->fd < 0)
		goto fail;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&h->addr, sizeof(h->addr)) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	c->ev = event_new(h->base, c->fd, EV_READ | EV_PERSIST, conn_cb, c);
	if (!c->ev || event_add(c->ev, NULL) < 0)
		goto fail;
	h->c[h->nc++] = c;
	return c;
fail:
	herr(h, "connect: %s", strerror(errno));
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
	return NULL;
}

static void conn_free(struct hconn *c)
{
	if (c->ev)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

static void conn_dead(struct hconn *c, const char *why)
{
	struct hclient *h = c->h;
	herr(h, "%s", why);
	if (c->busy)
		h->inflight--;
	c->busy = false;
	c->dead = true;
	event_del(c->ev);
}

static void conn_write(struct hconn *c)
{
	struct hclient *h = c->h;
	while (c->sent < h->req_len) {
		ssize_t w = send(c->fd, h->req + c->sent, h->req_len - c->sent,
				 MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == ENOTCONN) {
				/* Not connected yet or full: wait to write. */
				event_del(c->ev);
				event_assign(c->ev, h->base, c->fd,
					     EV_READ | EV_WRITE | EV_PERSIST,
					     conn_cb, c);
				event_add(c->ev, NULL);
				return;
			}
			conn_dead(c, "send failed");
			return;
		}
		c->sent += (size_t)w;
	}
}

static void conn_send(struct hconn *c, uint64_t t_sched)
{
	c->busy = true;
	c->t_sched = t_sched;
	c->t_sent = fleet_now_ns();
	c->sent = 0;
	c->len = 0;
	c->h->inflight++;
	conn_write(c);
}

static bool queue_pop(struct hclient *h, uint64_t *t)
{
	if (h->qhead == h->qtail)
		return false;
	*t = h->queue[h->qhead++ % h->qcap];
	return true;
}

/* A full response in c->buf? Returns its total length, 0 if not yet, -1
 * when it cannot be parsed. */
static long resp_complete(struct hconn *c, int *status, size_t *body)
{
	c->buf[c->len < RESP_MAX ? c->len : RESP_MAX - 1] = 0;
	char *end = strstr(c->buf, "\r\n\r\n");
	if (!end)
		return c->len >= RESP_MAX - 1 ? -1 : 0;
	if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1)
		return -1;
	long cl = -1;
	for (char *p = c->buf; p && p < end; p = strstr(p, "\r\n")) {
		p += 2;
		if (!strncasecmp(p, "Content-Length:", 15))
			cl = atol(p + 15);
	}
	if (cl < 0)
		return -1;
	size_t total = (size_t)(end + 4 - c->buf) + (size_t)cl;
	*body = (size_t)cl;
	if (total >= RESP_MAX)
		return -1;
	return c->len >= total ? (long)total : 0;
}

static void on_response(struct hconn *c, int status, size_t body)
{
	struct hclient *h = c->h;
	uint64_t now = fleet_now_ns();
	c->busy = false;
	h->inflight--;
	if (status != 200) {
		herr(h, "HTTP %d: %.100s", status, c->buf);
	} else {
		h->done++;
		h->bytes += body;
		if (!h->resp_len)
			h->resp_len = body;
		if (c->t_sched >= h->win_start && c->t_sched < h->win_end) {
			h->done_in_win++;
			if (h->nlat == h->latcap) {
				size_t n = h->latcap ? 2 * h->latcap : 65536;
				double *l = realloc(h->lat, n * sizeof(*l));
				if (l)
					h->lat = l;
				double *l2 = realloc(h->lat_sent,
						     n * sizeof(*l2));
				if (l2)
					h->lat_sent = l2;
				if (l && l2)
					h->latcap = n;
			}
			if (h->nlat < h->latcap) {
				h->lat_sent[h->nlat] =
					(double)(now - c->t_sent) / 1e9;
				h->lat[h->nlat++] =
					(double)(now - c->t_sched) / 1e9;
			}
		}
	}
	if (h->closed_loop) {
		if (now < h->end_ns)
			conn_send(c, now);
		return;
	}
	uint64_t t;
	if (queue_pop(h, &t))
		conn_send(c, t);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct hconn *c = arg;
	struct hclient *h = c->h;
	if (what & EV_WRITE) {
		event_del(c->ev);
		event_assign(c->ev, h->base, c->fd, EV_READ | EV_PERSIST,
			     conn_cb, c);
		event_add(c->ev, NULL);
		if (c->busy)
			conn_write(c);
	}
	if (!(what & EV_READ) || c->dead)
		return;
	for (;;) {
		ssize_t r = recv(c->fd, c->buf + c->len, RESP_MAX - 1 - c->len,
				 0);
		if (r < 0) {
			if (errno == EAGAIN)
				return;
			conn_dead(c, "recv failed");
			return;
		}
		if (r == 0) {
			conn_dead(c, "closed by parleyd");
			return;
		}
		c->len += (size_t)r;
		if (!c->busy) {
			conn_dead(c, "bytes with no request in flight");
			return;
		}
		int status = 0;
		size_t body = 0;
		long total = resp_complete(c, &status, &body);
		if (total < 0) {
			conn_dead(c, "unparsable response");
			return;
		}
		if (total > 0) {
			if ((size_t)total != c->len) {
				conn_dead(c, "trailing bytes");
				return;
			}
			on_response(c, status, body);
		}
	}
}

static struct hconn *idle_conn(struct hclient *h)
{
	for (unsigned i = 0; i < h->nc; i++)
		if (!h->c[i]->busy && !h->c[i]->dead)
			return h->c[i];
	if (h->nc < h->max_conns)
		return conn_open(h);
	return NULL;
}

/* Every request whose scheduled time has come: on an idle connection or
 * into the queue. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct hclient *h = arg;
	uint64_t now = fleet_now_ns();
	for (;;) {
		uint64_t t = h->t0 + h->next_idx * h->period_ns;
		if (t > now || t >= h->end_ns)
			break;
		h->next_idx++;
		if (t >= h->win_start && t < h->win_end)
			h->sched_in_win++;
		struct hconn *c = h->qhead == h->qtail ? idle_conn(h) : NULL;
		if (c) {
			conn_send(c, t);
			continue;
		}
		if (h->qtail - h->qhead == h->qcap) {
			herr(h, "queue full");
			continue;
		}
		h->queue[h->qtail++ % h->qcap] = t;
		if (h->qtail - h->qhead > h->max_queue)
			h->max_queue = h->qtail - h->qhead;
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static int hclient_init(struct hclient *h, int port, const char *token)
{
	*h = (struct hclient){ .cap = OPEN_CONNS_MAX };
	struct event_config *cfg = event_config_new();
	if (!cfg)
		return -ENOMEM;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	h->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!h->base)
		return -ENOMEM;
	h->tick = event_new(h->base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = { 0, 1000 };
	if (!h->tick || event_add(h->tick, &tv) < 0)
		return -ENOMEM;
	h->addr.sin_family = AF_INET;
	h->addr.sin_port = htons((uint16_t)port);
	h->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int n = snprintf(h->req, sizeof(h->req),
			 "GET /v1/partitions HTTP/1.1\r\n"
			 "Host: 127.0.0.1:%d\r\n"
			 "Authorization: Bearer %s\r\n"
			 "Accept: application/json\r\n\r\n", port, token);
	if (n < 0 || (size_t)n >= sizeof(h->req))
		return -EINVAL;
	h->req_len = (size_t)n;
	h->c = calloc(h->cap, sizeof(*h->c));
	h->qcap = 1u << 20;
	h->queue = calloc(h->qcap, sizeof(*h->queue));
	return h->c && h->queue ? 0 : -ENOMEM;
}

static void hclient_reset(struct hclient *h)
{
	h->done_in_win = h->done = h->errors = h->bytes = 0;
	h->sched_in_win = 0;
	h->nlat = 0;
	h->qhead = h->qtail = h->max_queue = 0;
	h->next_idx = 0;
	h->last_error[0] = 0;
}

static void hclient_free(struct hclient *h)
{
	for (unsigned i = 0; i < h->nc; i++)
		conn_free(h->c[i]);
	if (h->timer)
		event_free(h->timer);
	if (h->tick)
		event_free(h->tick);
	free(h->c);
	free(h->queue);
	free(h->lat);
	free(h->lat_sent);
	if (h->base)
		event_base_free(h->base);
}

/* The HTTP client runs on its own event base with precise timers (timerfd:
 * f->base's millisecond epoll timeouts made requests leave up to ~3 ms
 * late); the agents' loop is run without blocking on every turn so their
 * heartbeats go on. */
static bool h_run_until(struct hclient *h, struct fleet *f,
			bool (*done)(struct fleet *, void *), void *ctx,
			int timeout_ms)
{
	uint64_t end = fleet_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (!done(f, ctx)) {
		if (fleet_now_ns() >= end)
			return false;
		event_base_loop(h->base, EVLOOP_ONCE);
		event_base_loop(f->base, EVLOOP_NONBLOCK);
	}
	return true;
}

static bool past(struct fleet *f, void *ctx)
{
	(void)f;
	return fleet_now_ns() >= *(const uint64_t *)ctx;
}

static bool drained(struct fleet *f, void *ctx)
{
	(void)f;
	struct hclient *h = ctx;
	return h->inflight == 0 && h->qhead == h->qtail;
}

/* ---- phases ------------------------------------------------------------- */

struct cpu0 {
	uint64_t t0;
	double d0, b0, p0, i0;
};

static void cpu_begin(struct cpu0 *c, const struct fleet_env *e)
{
	c->t0 = fleet_now_ns();
	c->d0 = fleet_cpu_s(e->pid);
	c->b0 = fleet_self_cpu_s();
	if (fleet_host_cpu(&c->p0, &c->i0) < 0)
		c->p0 = -1;
}

static void cpu_end(const struct cpu0 *c, const struct fleet_env *e,
		    const char *name)
{
	double w = fleet_since_s(c->t0), pr = 0, ir = 0;
	double d = fleet_cpu_s(e->pid) - c->d0, b = fleet_self_cpu_s() - c->b0;
	double irq = 0, oth = 0;
	if (c->p0 >= 0 && fleet_host_cpu(&pr, &ir) == 0) {
		irq = ir - c->i0;
		oth = pr - c->p0 - d - b;
		if (oth < 0)
			oth = 0;
	}
	note("%-12s wall %6.3f s | CPU s: parleyd %6.3f (%3.0f%% of a core) "
	     "bench %6.3f (%3.0f%%) softirq %5.3f others %5.3f", name, w, d,
	     100 * d / w, b, 100 * b / w, irq, oth);
}

static int saturate(struct hclient *h, struct fleet *f,
		    const struct fleet_env *e, const struct opts *o)
{
	hclient_reset(h);
	h->closed_loop = true;
	for (unsigned i = h->nc; i < o->conns; i++)
		if (!conn_open(h))
			return note("connect: %s", h->last_error), -EIO;
	uint64_t now = fleet_now_ns();
	h->win_start = now + WARMUP_MS * 1000000ull;
	h->win_end = h->win_start + (uint64_t)o->secs * 1000000000ull;
	h->end_ns = h->win_end;
	struct cpu0 c;
	cpu_begin(&c, e);
	for (unsigned i = 0; i < o->conns; i++)
		conn_send(h->c[i], now);
	h_run_until(h, f, past, &h->end_ns,
			(int)((h->end_ns - now) / 1000000) + 1000);
	bool ok = h_run_until(h, f, drained, h, DRAIN_MS);
	cpu_end(&c, e, "saturation");
	double rps = (double)h->done_in_win / o->secs;
	note("saturation: %u connections, %llu responses in the %u s window "
	     "(%llu in all, %zu-byte bodies, %.1f MB/s), %llu errors%s%s",
	     o->conns, (unsigned long long)h->done_in_win, o->secs,
	     (unsigned long long)h->done, h->resp_len,
	     (double)h->bytes / 1e6 / (o->secs + WARMUP_MS / 1e3),
	     (unsigned long long)h->errors, h->errors ? ", last: " : "",
	     h->last_error);
	spread("closed-loop latency", h->lat, h->nlat);
	/* Closed loop: each connection's request still in flight after the
	 * drain is one unanswered. */
	if (!ok || !h->done_in_win || h->errors)
		return no_figure("api_rps", h->errors, h->inflight);
	char v[32];
	snprintf(v, sizeof(v), "%.0f", rps);
	figure("api_rps", v, "req/s");
	return 0;
}

static int open_loop(struct hclient *h, struct fleet *f,
		     const struct fleet_env *e, const struct opts *o)
{
	hclient_reset(h);
	h->closed_loop = false;
	h->max_conns = OPEN_CONNS_MAX;
	for (unsigned i = h->nc; i < OPEN_CONNS_INIT; i++)
		if (!conn_open(h))
			return note("connect: %s", h->last_error), -EIO;
	/* Let the new connections be accepted before the clock starts. */
	uint64_t t = fleet_now_ns() + 200000000ull;
	h_run_until(h, f, past, &t, 1000);
	h->period_ns = 1000000000ull / o->rate;
	h->t0 = fleet_now_ns();
	h->win_start = h->t0 + WARMUP_MS * 1000000ull;
	h->win_end = h->win_start + (uint64_t)o->secs * 1000000000ull;
	h->end_ns = h->win_end;
	if (!h->timer)
		h->timer = event_new(h->base, -1, EV_PERSIST, on_timer, h);
	struct timeval tv = { 0, 200 };
	event_add(h->timer, &tv);
	struct cpu0 c;
	cpu_begin(&c, e);
	h_run_until(h, f, past, &h->end_ns,
			(int)((h->end_ns - h->t0) / 1000000) + 1000);
	event_del(h->timer);
	bool ok = h_run_until(h, f, drained, h, DRAIN_MS);
	cpu_end(&c, e, "open loop");
	uint64_t sched = h->sched_in_win;
	uint64_t unanswered = sched > h->done_in_win ? sched - h->done_in_win
						     : 0;
	note("open loop: %u req/s scheduled for %u s (after %d ms warm-up): "
	     "%llu of %llu answered; %u connections used, queue at most "
	     "%zu; %llu errors%s%s", o->rate, o->secs, WARMUP_MS,
	     (unsigned long long)h->done_in_win, (unsigned long long)sched,
	     h->nc, h->max_queue, (unsigned long long)h->errors,
	     h->errors ? ", last: " : "", h->last_error);
	size_t n = h->nlat;
	spread("sent -> response", h->lat_sent, n);
	spread("scheduled -> response", h->lat, n);
	char v[32], name[64];
	snprintf(name, sizeof(name), "api_p99_ms_at_%urps", o->rate);
	/* The p99 is over every request due in the window: one unanswered,
	 * failed or not timed (latency store full) and there is none. */
	if (!ok || !n || h->errors || unanswered || n != h->done_in_win)
		return no_figure(name, h->errors,
				 unanswered + (h->done_in_win - n));
	snprintf(v, sizeof(v), "%.2f", pct(h->lat, n, 99) * 1e3);
	figure(name, v, "ms");
	return 0;
}

/* ---- setup -------------------------------------------------------------- */

static int read_small(const char *dir, const char *file, char *out,
		      size_t cap)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return -errno;
	size_t n = fread(out, 1, cap - 1, fp);
	fclose(fp);
	out[n] = 0;
	out[strcspn(out, "\r\n \t")] = 0;
	return n ? 0 : -ENODATA;
}

/* Up to 10 s for the API port and the admin token. */
static int api_files(const struct fleet_env *e, int *port, char *tok,
		     size_t cap)
{
	char buf[32];
	for (int waited = 0; waited < 10000; waited += 10) {
		if (read_small(e->dir, "parleyd.api-port", buf,
			       sizeof(buf)) == 0 &&
		    read_small(e->dir, "admin.token", tok, cap) == 0 &&
		    (*port = atoi(buf)) > 0)
			return 0;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

/* The store: P/2 hosts with two partitions and one grant each, in one
 * transaction (fleet_populate); the first `agents` of them are the
 * simulated agents' hosts. */
static int populate(const struct fleet_env *e, struct fleet_id *ids,
		    unsigned agents, unsigned partitions,
		    struct parley_err *err)
{
	unsigned hosts = (partitions + 1) / 2;
	if (hosts < agents)
		hosts = agents;
	struct fleet_id *all = calloc(hosts, sizeof(*all));
	if (!all)
		return -ENOMEM;
	memcpy(all, ids, agents * sizeof(*all));
	for (unsigned i = agents; i < hosts; i++)
		snprintf(all[i].name, sizeof(all[i].name), "fleet-%05u", i);
	int rc = fleet_populate(e, all, hosts, err);
	for (unsigned i = 0; i < agents; i++)
		ids[i].version = all[i].version;
	free(all);
	if (rc == 0)
		note("store: %u hosts, %u partitions, %u grants", hosts,
		     2 * hosts, hosts);
	return rc;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "agents", required_argument, NULL, 'n' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' },
		{ "secs", required_argument, NULL, 's' },
		{ "keep", no_argument, NULL, 'k' },
		{ 0 },
	};
	*o = (struct opts){ AGENTS_DEFAULT, PARTITIONS_DEFAULT, CONNS_DEFAULT,
			    RATE_DEFAULT, SECS_DEFAULT, false };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'k') {
			o->keep = true;
			continue;
		}
		if (c == '?' || !optarg)
			return -EINVAL;
		char *end;
		unsigned long v = strtoul(optarg, &end, 10);
		if (*end || !v || v > 1000000)
			return -EINVAL;
		switch (c) {
		case 'n': o->agents = (unsigned)v; break;
		case 'p': o->partitions = (unsigned)v; break;
		case 'c': o->conns = v > 256 ? 256 : (unsigned)v; break;
		case 'r': o->rate = v > 100000 ? 100000 : (unsigned)v; break;
		case 's': o->secs = v > 60 ? 60 : (unsigned)v; break;
		}
	}
	return optind < argc ? -EINVAL : 0;
}

static int run(struct opts *o, struct fleet_env *e, struct fleet *f,
	       struct fleet_id **ids, struct hclient *h)
{
	struct parley_err err = { 0 };
	long lim = fleet_raise_nofile((long)o->agents + 4096);
	if (lim < (long)o->agents + OPEN_CONNS_MAX + 256)
		return note("RLIMIT_NOFILE %ld is too low", lim), -EMFILE;
	int rc = fleet_env_init(e, &err);
	if (rc < 0)
		return note("%s", perr_msg(&err)), rc;
	note("state in %s, parleyd %s", e->dir, e->parleyd);
	rc = fleet_pki(e, o->agents, ids, &err);
	if (rc < 0)
		return note("certificates: %s", perr_msg(&err)), rc;
	uint64_t t = fleet_now_ns();
	rc = populate(e, *ids, o->agents, o->partitions, &err);
	if (rc < 0)
		return note("store: %s", perr_msg(&err)), rc;
	note("store filled in one transaction in %.2f s", fleet_since_s(t));
	rc = fleet_daemon_start(e, &err);
	if (rc < 0)
		return note("%s", perr_msg(&err)), rc;
	int port;
	char token[128];
	if (api_files(e, &port, token, sizeof(token)) < 0)
		return note("no API port or admin token in %s", e->dir),
		       -ETIMEDOUT;
	note("parleyd pid %d, agents on 127.0.0.1:%d, API on 127.0.0.1:%d",
	     (int)e->pid, e->port, port);
	rc = fleet_client_init(f, e, *ids, o->agents, WINDOW, &err);
	if (rc < 0)
		return note("client: %s", perr_msg(&err)), rc;
	t = fleet_now_ns();
	fleet_ramp_start(f);
	bool up = fleet_run_until(f, fleet_ramp_done, NULL, RAMP_MS);
	f->ramping = false;
	note("%u of %u agents connected in %.2f s%s", f->connected, o->agents,
	     fleet_since_s(t), up ? "" : " (TIMED OUT)");
	if (f->connected < o->agents && f->last_error[0])
		note("last agent error: %s", f->last_error);
	rc = hclient_init(h, port, token);
	if (rc < 0)
		return note("HTTP client: no event base"), rc;
	int bad = !up;
	if (saturate(h, f, e, o) < 0)
		bad = 1;
	if (open_loop(h, f, e, o) < 0)
		bad = 1;
	note("%u agents still connected at the end", f->connected);
	if (!fleet_daemon_alive(e))
		return note("parleyd died (see %s)", e->log), -ECHILD;
	return bad ? -EIO : 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: bench_api [--agents N] "
			"[--partitions P] [--conns C] [--rate R] [--secs S] "
			"[--keep]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	static struct fleet_env e;
	static struct fleet f;
	static struct hclient h;
	struct fleet_id *ids = NULL;
	uint64_t t_all = fleet_now_ns();
	int rc = run(&o, &e, &f, &ids, &h);
	hclient_free(&h);
	fleet_daemon_stop(&e);
	fleet_client_free(&f);
	fleet_ids_free(ids, o.agents);
	if (o.keep)
		note("kept %s", e.dir);
	else
		fleet_env_remove(&e);
	note("whole suite: %.1f s", fleet_since_s(t_all));
	return rc < 0 ? 1 : 0;
}
