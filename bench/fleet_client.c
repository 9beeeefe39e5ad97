/*
 * The simulated agents: a light client per host on one libevent loop. Each
 * connects over TLS 1.3 with its own client certificate (CN = its host),
 * says Hello, and then does what agent/link.c does with what the daemon
 * sends, minus the work that would run on the host itself: a PolicyBundle
 * is decoded (its version, its host) and acknowledged at once -- its
 * signature is not verified, which a real agent does on its own CPU, not
 * the daemon's -- and nothing is persisted. Audit senders send a batch of
 * events and wait for its Ack before the next, as the store acknowledges
 * only what it committed.
 */
#include "bench/fleet_bench.h"
#include "common/frame.h"
#include "common/tls.h"
#include "common/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#define TICK_MS 10

static void note_error(struct fleet *f, const char *fmt, const char *a,
		       const char *b)
{
	snprintf(f->last_error, sizeof(f->last_error), fmt, a, b);
}

static uint64_t now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

int fleet_client_init(struct fleet *f, const struct fleet_env *e,
		      const struct fleet_id *ids, unsigned n, unsigned window,
		      struct parley_err *err)
{
	memset(f, 0, sizeof(*f));
	f->n = n;
	f->window = window ? window : 1;
	f->max_attempts = 3;
	f->a = calloc(n ? n : 1, sizeof(*f->a));
	f->retry = calloc(n ? n : 1, sizeof(*f->retry));
	f->base = event_base_new();
	if (!f->a || !f->retry || !f->base)
		return perr(err, -ENOMEM, "out of memory");
	/* The context's own identity is a placeholder: every connection
	 * gets its host's certificate and key (SSL_use_*). */
	f->ctx = tls_client_ctx(e->ca, e->ctx_crt, e->ctx_key, err);
	if (!f->ctx)
		return err->code ? err->code : -EINVAL;
	/* Idle connections give their 2 x ~17 KiB record buffers back: this
	 * process holds thousands of them. */
	SSL_CTX_set_mode(f->ctx, SSL_MODE_RELEASE_BUFFERS);
	f->addr.sin_family = AF_INET;
	f->addr.sin_port = htons((uint16_t)e->port);
	f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < n; i++)
		f->a[i] = (struct fleet_agent){ .f = f, .id = &ids[i],
						.idx = i, .next_seq = 1,
						.want = ids[i].version };
	f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, f);
	struct timeval tv = { 0, TICK_MS * 1000 };
	if (!f->tick || event_add(f->tick, &tv) < 0)
		return perr(err, -ENOMEM, "timer");
	return 0;
}

void fleet_client_free(struct fleet *f)
{
	for (unsigned i = 0; f->a && i < f->n; i++) {
		if (f->a[i].bev)
			bufferevent_free(f->a[i].bev);
		if (f->a[i].hb)
			event_free(f->a[i].hb);
	}
	if (f->tick)
		event_free(f->tick);
	if (f->base)
		event_base_free(f->base);
	if (f->ctx)
		SSL_CTX_free(f->ctx);
	free(f->a);
	free(f->retry);
	free(f->audit_lat);
	free(f->audit_ev);
	free(f->audit_evp);
	memset(f, 0, sizeof(*f));
}

bool fleet_run_until(struct fleet *f, bool (*done)(struct fleet *, void *),
		     void *ctx, int timeout_ms)
{
	uint64_t end = fleet_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (!done(f, ctx)) {
		if (fleet_now_ns() >= end)
			return false;
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	return true;
}

/* ---- frames ------------------------------------------------------------- */

static void send_env(struct fleet_agent *a, const Parley__V1__Envelope *e)
{
	if (frame_push(bufferevent_get_output(a->bev), e) < 0)
		note_error(a->f, "%s: could not encode a %s", a->id->name,
			   wire_body_name(e->body_case));
}

static void send_hello(struct fleet_agent *a)
{
	Parley__V1__Envelope e;
	Parley__V1__Hello h;
	wire_init_envelope(&e, 1);
	parley__v1__hello__init(&h);
	h.host = (char *)a->id->name;
	h.policy_version = a->bundle_version;
	h.agent_version = (char *)"bench-fleet";
	h.next_seq = a->next_seq;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	send_env(a, &e);
}

static void send_policy_ack(struct fleet_agent *a, uint64_t rid, uint64_t v,
			    const char *error)
{
	Parley__V1__Envelope e;
	Parley__V1__PolicyAck k;
	wire_init_envelope(&e, rid);
	parley__v1__policy_ack__init(&k);
	k.version = v;
	k.ok = error == NULL;
	k.error = (char *)(error ? error : "");
	e.body_case = PARLEY__V1__ENVELOPE__BODY_POLICY_ACK;
	e.policy_ack = &k;
	send_env(a, &e);
}

static void on_bundle(struct fleet_agent *a, const Parley__V1__Envelope *e)
{
	struct fleet *f = a->f;
	Parley__V1__PolicyBody *b = NULL;
	struct parley_err err = { 0 };
	int rc = wire_body_decode(&e->policy->body, &b, &err);
	if (rc == 0 && strcmp(b->host, a->id->name))
		rc = perr(&err, -EPERM, "bundle for host %s", b->host);
	if (rc == 0 && b->version <= a->bundle_version)
		rc = perr(&err, -ESTALE, "bundle version %llu, holding %llu",
			  (unsigned long long)b->version,
			  (unsigned long long)a->bundle_version);
	if (rc < 0) {
		f->n_bad_bundles++;
		note_error(f, "%s: %s", a->id->name, perr_msg(&err));
		send_policy_ack(a, e->request_id, 0, perr_msg(&err));
		if (b)
			parley__v1__policy_body__free_unpacked(b, NULL);
		return;
	}
	a->bundle_version = b->version;
	a->bundles++;
	f->n_bundles++;
	parley__v1__policy_body__free_unpacked(b, NULL);
	send_policy_ack(a, e->request_id, a->bundle_version, NULL);
	if (a->want && !a->got && a->bundle_version >= a->want) {
		a->got = true;
		a->t_got_ns = fleet_now_ns();
		f->t_last_got_ns = a->t_got_ns;
		f->n_got++;
	}
}

static void pump(struct fleet *f);
static void send_batch(struct fleet_agent *a);

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fleet_agent *a = arg;
	Parley__V1__Envelope e;
	Parley__V1__Heartbeat h;
	wire_init_envelope(&e, 0);
	parley__v1__heartbeat__init(&h);
	h.sent_unix_ms = now_unix_ms();
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	send_env(a, &e);
}

/* Up: heartbeats at the daemon's pace, as agent/link.c sends them (the
 * daemon closes a link silent for three of them). */
static void on_welcome(struct fleet_agent *a, const Parley__V1__Envelope *e)
{
	struct fleet *f = a->f;
	if (a->state != FA_CONNECTING)
		return;
	a->state = FA_UP;
	a->t_up_ns = fleet_now_ns();
	f->inflight--;
	f->connected++;
	uint32_t ms = e->welcome->heartbeat_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	if (!a->hb)
		a->hb = event_new(f->base, -1, EV_PERSIST, on_heartbeat, a);
	if (a->hb)
		event_add(a->hb, &tv);
	pump(f);
}

static void on_ack(struct fleet_agent *a, const Parley__V1__Envelope *e)
{
	struct fleet *f = a->f;
	if (!a->audit || !a->wait_seq) {
		f->bad_acks++;
		return;
	}
	uint64_t now = fleet_now_ns();
	if (e->ack->seq != a->wait_seq)
		f->bad_acks++;
	f->ev_acked += f->audit_batch;
	f->batches_acked++;
	if (now >= f->win_start_ns && now < f->win_end_ns) {
		f->ev_acked_in_win += f->audit_batch;
		if (f->audit_nlat < f->audit_cap)
			f->audit_lat[f->audit_nlat++] =
				(double)(now - a->t_sent_ns) / 1e9;
	}
	a->wait_seq = 0;
	if (f->audit_on)
		send_batch(a);
}

static void dispatch(struct fleet_agent *a, const Parley__V1__Envelope *e)
{
	switch (e->body_case) {
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		on_welcome(a, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_POLICY:
		on_bundle(a, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_ACK:
		on_ack(a, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_ERROR:
		a->f->n_error_frames++;
		note_error(a->f, "daemon: %s: %s", e->error->code,
			   e->error->message);
		break;
	default:
		break;
	}
}

/* ---- connections -------------------------------------------------------- */

/* The link is gone. While ramping up, try again (max_attempts in all);
 * afterwards the agent stays down until fleet_reconnect. */
static void lost(struct fleet_agent *a, const char *why)
{
	struct fleet *f = a->f;
	note_error(f, "%s: %s", a->id->name, why);
	bufferevent_free(a->bev);
	a->bev = NULL;
	if (a->hb)
		event_del(a->hb);
	if (a->state == FA_CONNECTING) {
		f->inflight--;
		f->n_conn_errors++;
	} else if (a->state == FA_UP) {
		f->connected--;
		f->n_dropped++;
		f->t_last_drop_ns = fleet_now_ns();
	}
	if (a->want && !a->got) {
		a->want = 0;
		f->n_lost_wanted++;
	}
	a->wait_seq = 0;
	a->state = FA_IDLE;
	if (!f->ramping)
		return;
	if (++a->attempts < f->max_attempts) {
		f->retry[f->nretry++] = a->idx;
	} else {
		a->state = FA_FAILED;
		f->gave_up++;
	}
	pump(f);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct fleet_agent *a = arg;
	for (;;) {
		Parley__V1__Envelope *e = NULL;
		struct parley_err err = { 0 };
		int rc = frame_pull(bufferevent_get_input(bev), FRAME_MAX, &e,
				    &err);
		if (rc == 0)
			return;
		if (rc < 0) {
			lost(a, perr_msg(&err));
			return;
		}
		dispatch(a, e);
		parley__v1__envelope__free_unpacked(e, NULL);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct fleet_agent *a = arg;
	if (what & BEV_EVENT_CONNECTED) {
		send_hello(a);
		return;
	}
	struct parley_err err = { 0 };
	if (what & BEV_EVENT_ERROR)
		tls_bev_error(bev, &err);
	lost(a, err.msg[0] ? err.msg : "closed by the daemon");
}

/* A bufferevent connecting to the daemon: as common/tls.c's
 * tls_bev_connect, with the host's own certificate and key set on the SSL
 * before the handshake, and no name resolution. NULL with *why set. */
static struct bufferevent *open_bev(struct fleet_agent *a, const char **why)
{
	struct fleet *f = a->f;
	struct parley_err err = { 0 };
	SSL *ssl = tls_client_new(f->ctx, "127.0.0.1", &err);
	if (!ssl) {
		*why = "tls_client_new";
		return NULL;
	}
	if (SSL_use_certificate(ssl, a->id->cert) != 1 ||
	    SSL_use_PrivateKey(ssl, a->id->key) != 1) {
		SSL_free(ssl);
		*why = "SSL_use_certificate";
		return NULL;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	if (fd < 0) {
		*why = strerror(errno);
		SSL_free(ssl);
		return NULL;
	}
	/* On failure the SSL is freed with it (see tls_bev_accept). */
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		f->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		*why = "bufferevent_openssl_socket_new";
	}
	return bev;
}

static int start(struct fleet_agent *a)
{
	struct fleet *f = a->f;
	const char *why = NULL;
	a->bev = open_bev(a, &why);
	if (!a->bev) {
		note_error(f, "%s: %s", a->id->name, why);
		return -EIO;
	}
	bufferevent_setcb(a->bev, on_read, NULL, on_event, a);
	bufferevent_enable(a->bev, EV_READ | EV_WRITE);
	/* A refusal found later arrives as an error event (lost()); one
	 * found at once is not reported at all. */
	const struct sockaddr_in *to =
		f->addr2.sin_port && a->idx % 2 ? &f->addr2 : &f->addr;
	if (bufferevent_socket_connect(a->bev, (struct sockaddr *)to,
				       sizeof(*to)) < 0) {
		note_error(f, "%s: connect: %s", a->id->name, strerror(errno));
		bufferevent_free(a->bev);
		a->bev = NULL;
		return -EIO;
	}
	a->state = FA_CONNECTING;
	a->t_start_ns = fleet_now_ns();
	f->inflight++;
	return 0;
}

static void pump(struct fleet *f)
{
	while (f->ramping && f->inflight < f->window) {
		unsigned i;
		if (f->nretry)
			i = f->retry[--f->nretry];
		else if (f->next < f->n)
			i = f->next++;
		else
			break;
		struct fleet_agent *a = &f->a[i];
		if (start(a) < 0) {
			a->state = FA_FAILED;
			f->gave_up++;
			f->n_conn_errors++;
		}
	}
}

void fleet_ramp_start(struct fleet *f)
{
	f->ramping = true;
	pump(f);
}

bool fleet_ramp_done(struct fleet *f, void *ctx)
{
	(void)ctx;
	return f->inflight == 0 && f->nretry == 0 && f->next == f->n;
}

bool fleet_reconnect(struct fleet *f, unsigned m, int timeout_ms)
{
	f->nretry = 0;
	for (unsigned i = 0; i < f->n && f->nretry < m; i++) {
		struct fleet_agent *a = &f->a[i];
		if (a->state == FA_UP || a->state == FA_CONNECTING)
			continue;
		if (a->state == FA_FAILED)
			f->gave_up--;
		a->state = FA_IDLE;
		a->attempts = 0;
		f->retry[f->nretry++] = i;
	}
	/* Highest index on top: start with the lowest. */
	for (unsigned i = 0; i < f->nretry / 2; i++) {
		unsigned t = f->retry[i];
		f->retry[i] = f->retry[f->nretry - 1 - i];
		f->retry[f->nretry - 1 - i] = t;
	}
	f->ramping = true;
	pump(f);
	bool ok = fleet_run_until(f, fleet_ramp_done, NULL, timeout_ms);
	f->ramping = false;
	return ok;
}

unsigned fleet_want(struct fleet *f, const uint64_t *want)
{
	unsigned n = 0;
	f->n_got = 0;
	f->n_lost_wanted = 0;
	f->t_last_got_ns = 0;
	for (unsigned i = 0; i < f->n; i++) {
		struct fleet_agent *a = &f->a[i];
		a->want = a->state == FA_UP ? want[i] : 0;
		a->got = a->want && a->bundle_version >= a->want;
		if (!a->want)
			continue;
		n++;
		if (a->got) {
			f->n_got++;
			a->t_got_ns = fleet_now_ns();
		}
	}
	return n;
}

bool fleet_got_all(struct fleet *f, void *ctx)
{
	return f->n_got >= *(const unsigned *)ctx;
}

bool fleet_got_or_lost(struct fleet *f, void *ctx)
{
	return f->n_got + f->n_lost_wanted >= *(const unsigned *)ctx;
}

/* ---- audit -------------------------------------------------------------- */

/* Events as an agent's grant manager records them: a decision on a
 * channel between two of the host's partitions. */
static void send_batch(struct fleet_agent *a)
{
	struct fleet *f = a->f;
	char part[FLEET_NAME_MAX + 4], chan[FLEET_NAME_MAX + 4];
	fleet_part_name(part, a->id->name, 'a');
	fleet_chan_name(chan, a->id->name);
	uint64_t t = now_unix_ms();
	for (unsigned i = 0; i < f->audit_batch; i++) {
		Parley__V1__AuditEvent *x = &f->audit_ev[i];
		parley__v1__audit_event__init(x);
		x->seq = a->next_seq + i;
		x->time_unix_ms = t;
		x->event = (char *)"open_allowed";
		x->partition = part;
		x->channel = chan;
		x->reason = (char *)"";
		x->file = (char *)"";
		x->detail = (char *)"bench: channel opened, both endpoints "
				    "match their baselines";
		f->audit_evp[i] = x;
	}
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch b;
	wire_init_envelope(&e, a->next_seq);
	parley__v1__audit_batch__init(&b);
	b.events = f->audit_evp;
	b.n_events = f->audit_batch;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &b;
	a->wait_seq = a->next_seq + f->audit_batch - 1;
	a->next_seq += f->audit_batch;
	a->t_sent_ns = fleet_now_ns();
	send_env(a, &e);
}

unsigned fleet_audit_start(struct fleet *f, unsigned m, unsigned batch,
			   uint64_t win_start_ns, uint64_t win_end_ns)
{
	free(f->audit_ev);
	free(f->audit_evp);
	free(f->audit_lat);
	f->audit_batch = batch;
	f->audit_ev = calloc(batch, sizeof(*f->audit_ev));
	f->audit_evp = calloc(batch, sizeof(*f->audit_evp));
	f->audit_cap = 1u << 20;
	f->audit_lat = calloc(f->audit_cap, sizeof(*f->audit_lat));
	f->audit_nlat = 0;
	f->ev_acked = f->ev_acked_in_win = f->batches_acked = f->bad_acks = 0;
	f->win_start_ns = win_start_ns;
	f->win_end_ns = win_end_ns;
	if (!f->audit_ev || !f->audit_evp || !f->audit_lat)
		return 0;
	f->audit_on = true;
	unsigned k = 0;
	for (unsigned i = 0; i < f->n && k < m; i++) {
		struct fleet_agent *a = &f->a[i];
		if (a->state != FA_UP)
			continue;
		a->audit = true;
		send_batch(a);
		k++;
	}
	return k;
}

void fleet_audit_stop(struct fleet *f)
{
	f->audit_on = false;
}

bool fleet_audit_idle(struct fleet *f, void *ctx)
{
	(void)ctx;
	for (unsigned i = 0; i < f->n; i++)
		if (f->a[i].audit && f->a[i].wait_seq && f->a[i].bev)
			return false;
	return true;
}
