#include "agent/link.h"
#include "agent/partition.h"
#include "agent/backend.h"
#include "agent/link_int.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/version.h"
#include "common/wire.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/x509.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void link_state_path(const struct agent_link *l, const char *name,
		       char *out, size_t cap)
{
	if (path_join(out, cap, l->state_dir, name) < 0)
		out[0] = 0;
}

static void send_frame(struct agent_link *l, const uint8_t *f, size_t len)
{
	if (l->bev)
		evbuffer_add(bufferevent_get_output(l->bev), f, len);
}

void link_send_env(struct agent_link *l, const Parley__V1__Envelope *e)
{
	if (l->bev)
		frame_push(bufferevent_get_output(l->bev), e);
}

/* Synced records not yet sent on this connection, in seq order. */
void link_send_synced(struct agent_link *l)
{
	if (!l->up)
		return;
	const struct outbox_rec *r;
	while ((r = outbox_next_unsent(&l->ob)))
		send_frame(l, r->frame, r->len);
}

static void on_sync_done(evutil_socket_t fd, short what, void *arg);

/* Hand what the outbox buffered to its sync thread: one write and one
 * fdatasync for all of it, off the loop. Falls back to syncing here if
 * the thread cannot start. */
static void start_sync(struct agent_link *l)
{
	struct parley_err err = { 0 };
	int rc = outbox_sync_start(&l->ob, &err);
	if (rc > 0 && !l->sync_done_ev) {
		l->sync_done_ev = event_new(l->base, outbox_sync_fd(&l->ob),
					    EV_READ | EV_PERSIST,
					    on_sync_done, l);
		if (!l->sync_done_ev || event_add(l->sync_done_ev, NULL) < 0)
			log_error("outbox: cannot watch the sync thread");
	}
	if (rc < 0) {
		log_error("%s; syncing on the loop", perr_msg(&err));
		if (outbox_sync(&l->ob, &err) < 0)
			log_error("outbox not synced, records held back: %s",
				  perr_msg(&err));
		link_send_synced(l);
	}
}

/* A batch is on disk: its records go out; what gathered meanwhile is the
 * next batch (group commit: batches grow while the disk is slow). */
static void on_sync_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct agent_link *l = arg;
	struct parley_err err = { 0 };
	if (outbox_sync_done(&l->ob, &err) < 0)
		log_error("outbox not synced, records held back: %s",
			  perr_msg(&err));
	link_send_synced(l);
	start_sync(l);
}

static void on_sync(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct agent_link *l = arg;
	l->sync_due = false;
	start_sync(l);
}

/* At the end of this loop turn (a batch in flight: when it is done). */
static void schedule_sync(struct agent_link *l)
{
	if (l->sync_due || !l->sync_ev)
		return;
	l->sync_due = true;
	event_active(l->sync_ev, EV_TIMEOUT, 0);
}

/* Queue a record that must reach the store: buffered in the outbox now,
 * on disk and sent at the end of this loop turn. */
static void enqueue(struct agent_link *l, uint64_t seq,
		    const Parley__V1__Envelope *e)
{
	/* Checked as the daemon will check it: a record it would refuse
	 * must not sit at the head of the queue and wedge the link. */
	struct parley_err err = { 0 };
	if (wire_check(e, &err) < 0) {
		log_error("record %llu not sent, it would be refused: %s",
			  (unsigned long long)seq, perr_msg(&err));
		return;
	}
	uint8_t *frame;
	size_t len;
	if (frame_encode(e, &frame, &len) < 0) {
		log_error("record %llu could not be encoded",
			  (unsigned long long)seq);
		return;
	}
	if (outbox_append(&l->ob, seq, frame, len, &err) < 0) {
		log_warn("%s", perr_msg(&err));
		return;
	}
	schedule_sync(l);
}

/* 0 when no seq can be handed out (the seq bound could not be written). */
static uint64_t take_seq(struct agent_link *l)
{
	struct parley_err err = { 0 };
	uint64_t s = outbox_take_seq(&l->ob, &err);
	if (!s)
		log_error("record not queued: %s", perr_msg(&err));
	return s;
}

#define AUDIT_BATCH_MAX 256

struct agent_audit_pending {
	Parley__V1__AuditEvent ev;   /* strings owned (strdup) */
};

static void pend_free(struct agent_audit_pending *p)
{
	Parley__V1__AuditEvent *a = &p->ev;
	free(a->event);
	free(a->partition);
	free(a->channel);
	free(a->reason);
	free(a->file);
	free(a->detail);
}

/* Everything gathered so far as one AuditBatch record, before any other
 * record takes a later sequence number (the daemon skips seqs at or below
 * the highest it holds, so order on the wire must follow seq order). */
static void flush_audit(struct agent_link *l)
{
	if (!l->npend)
		return;
	Parley__V1__AuditEvent *ptr[AUDIT_BATCH_MAX];
	for (unsigned i = 0; i < l->npend; i++)
		ptr[i] = &l->pend[i].ev;
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch b;
	wire_init_envelope(&e, 0);
	parley__v1__audit_batch__init(&b);
	b.events = ptr;
	b.n_events = l->npend;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &b;
	enqueue(l, l->pend[l->npend - 1].ev.seq, &e);
	for (unsigned i = 0; i < l->npend; i++)
		pend_free(&l->pend[i]);
	l->npend = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_audit(arg);
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

void agent_link_audit(const struct audit_event *ev, void *arg)
{
	struct agent_link *l = arg;
	if (!l->pend)
		l->pend = calloc(AUDIT_BATCH_MAX, sizeof(*l->pend));
	if (!l->pend)
		return;
	Parley__V1__AuditEvent *a = &l->pend[l->npend].ev;
	parley__v1__audit_event__init(a);
	if (!(a->seq = take_seq(l)))
		return;
	a->time_unix_ms = now_ms();
	a->event = dup_or_empty(ev->event);
	a->partition = dup_or_empty(ev->partition);
	a->channel = dup_or_empty(ev->channel);
	a->reason = dup_or_empty(ev->reason);
	a->file = dup_or_empty(ev->file);
	a->detail = dup_or_empty(ev->detail);
	/* One event the daemon would refuse must not sink the batch. */
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch b;
	wire_init_envelope(&e, 0);
	parley__v1__audit_batch__init(&b);
	b.events = &a;
	b.n_events = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &b;
	struct parley_err err = { 0 };
	if (wire_check(&e, &err) < 0) {
		log_error("audit event %llu not sent, it would be refused: %s",
			  (unsigned long long)a->seq, perr_msg(&err));
		pend_free(&l->pend[l->npend]);
		return;
	}
	if (++l->npend == AUDIT_BATCH_MAX)
		flush_audit(l);
	else if (l->npend == 1 && l->flush_ev)
		event_active(l->flush_ev, EV_TIMEOUT, 0);
}

void agent_link_measurement(struct agent_link *l, const char *partition,
			    const struct measure *m)
{
	Parley__V1__Envelope e;
	Parley__V1__MeasurementReport r;
	Parley__V1__Measurement x, *xp = &x;
	Parley__V1__FileDigest fd[PARLEY_CONFIG_FILES_MAX], *fp[PARLEY_CONFIG_FILES_MAX];
	ProtobufCBinaryData segs[MEASURE_SEGS_MAX];
	flush_audit(l);
	wire_init_envelope(&e, 0);
	parley__v1__measurement_report__init(&r);
	parley__v1__measurement__init(&x);
	if (!(x.seq = take_seq(l)))
		return;
	x.partition = (char *)partition;
	x.time_unix_ms = now_ms();
	wire_bytes(&x.digest, m->digest, MEASURE_DIGEST);
	for (unsigned i = 0; i < m->nfile; i++) {
		parley__v1__file_digest__init(&fd[i]);
		fd[i].name = (char *)m->file[i].name;
		wire_bytes(&fd[i].sha256, m->file[i].digest, MEASURE_DIGEST);
		fp[i] = &fd[i];
	}
	x.files = fp;
	x.n_files = m->nfile;
	for (unsigned i = 0; i < m->nseg; i++)
		wire_bytes(&segs[i], m->seg[i].digest, MEASURE_DIGEST);
	x.segments = segs;
	x.n_segments = m->nseg;
	r.measurements = &xp;
	r.n_measurements = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS;
	e.measurements = &r;
	enqueue(l, x.seq, &e);
}

static void status(struct agent_link *l, const char *partition,
		   const char *backend, const char *state, const char *reason,
		   int64_t code, const struct partition *p);

void agent_link_status(struct agent_link *l, const char *partition,
		       const char *backend, const char *state,
		       const char *reason, int64_t code)
{
	status(l, partition, backend, state, reason, code, NULL);
}

void agent_link_status_of(struct agent_link *l, const struct partition *p,
			  const char *state, const char *reason, int64_t code)
{
	status(l, p->name, backend_name(p->backend), state, reason, code, p);
}

static void status(struct agent_link *l, const char *partition,
		   const char *backend, const char *state, const char *reason,
		   int64_t code, const struct partition *p)
{
	Parley__V1__DeviceState dv[PART_DEVICES_MAX];
	Parley__V1__DeviceState *dp[PART_DEVICES_MAX];
	Parley__V1__Envelope e;
	Parley__V1__PartitionStatus st;
	flush_audit(l);
	wire_init_envelope(&e, 0);
	parley__v1__partition_status__init(&st);
	if (!(st.seq = take_seq(l)))
		return;
	st.partition = (char *)partition;
	st.state = (char *)state;
	st.reason = (char *)(reason ? reason : "");
	st.exit_code = code;
	st.time_unix_ms = now_ms();
	st.backend = (char *)(backend ? backend : "");
	for (unsigned i = 0; p && i < p->ndevice && i < WIRE_DEVICES_MAX;
	     i++) {
		parley__v1__device_state__init(&dv[i]);
		dv[i].device = (char *)p->device[i].device;
		dv[i].plugin = (char *)p->device[i].plugin;
		dv[i].state = (char *)part_device_state_name(
			p->device[i].state);
		dp[i] = &dv[i];
		st.n_devices = i + 1;
	}
	st.devices = dp;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_STATUS;
	e.status = &st;
	enqueue(l, st.seq, &e);
}

int agent_link_admit(struct agent_link *l, const char *partition,
		     const struct measure *m, struct parley_err *err)
{
	const Parley__V1__Baseline *b = agent_policy_baseline(&l->policy,
							      partition);
	if (!b)
		return 0; /* the daemon enrols our first measurement */
	for (unsigned i = 0; i < m->nfile; i++) {
		const Parley__V1__FileDigest *want = NULL;
		for (size_t k = 0; k < b->n_files; k++)
			if (!strcmp(b->files[k]->name, m->file[i].name))
				want = b->files[k];
		if (!want || memcmp(want->sha256.data, m->file[i].digest,
				    MEASURE_DIGEST))
			return perr(err, -EBADMSG, "partition %s: config file "
				    "\"%s\" differs from its baseline",
				    partition, m->file[i].name);
	}
	if (b->n_files != m->nfile)
		return perr(err, -EBADMSG, "partition %s: its baseline lists "
			    "other config files", partition);
	return 0;
}

/* ---- connection ---------------------------------------------------------- */

static void schedule_retry(struct agent_link *l);

static void disconnect(struct agent_link *l, const char *why)
{
	if (l->bev) {
		bufferevent_free(l->bev);
		l->bev = NULL;
	}
	if (l->up)
		log_warn("daemon link down: %s", why);
	l->up = false;
	event_del(l->hb_ev);
	schedule_retry(l);
}

/* The daemon's words, printable and bounded: they go into our log. */
static void printable(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	for (; s && *s && n + 1 < cap; s++)
		out[n++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f
				   ? *s : '?';
	out[n] = 0;
}

bool agent_link_update_progress(struct agent_link *l, const uint8_t *sha256,
				const char *state, uint64_t received,
				const char *reason, const char *version)
{
	if (!l->up || !l->bev)
		return false;
	Parley__V1__Envelope e;
	Parley__V1__UpdateProgress p;
	wire_init_envelope(&e, 0);
	parley__v1__update_progress__init(&p);
	if (sha256)
		wire_bytes(&p.sha256, sha256, 32);
	p.state = (char *)state;
	p.received = received;
	/* Our own words, but bounded and printable as the daemon checks. */
	char r[WIRE_DETAIL_MAX + 1];
	printable(r, sizeof(r), reason);
	p.reason = r;
	p.version = (char *)(version ? version : "");
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS;
	e.update_progress = &p;
	struct parley_err err = { 0 };
	if (wire_check(&e, &err) < 0) {
		log_error("update progress not sent: %s", perr_msg(&err));
		return false;
	}
	link_send_env(l, &e);
	return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct agent_link *l = arg;
	for (;;) {
		Parley__V1__Envelope *e = NULL;
		struct parley_err err = { 0 };
		int rc = frame_pull(bufferevent_get_input(bev), FRAME_MAX, &e,
				    &err);
		if (rc == 0)
			return;
		if (rc < 0) {
			disconnect(l, perr_msg(&err));
			return;
		}
		bool was_up = l->up;
		rc = agent_link_dispatch(l, e, &err);
		/* A bundle refused after the welcome is answered (a negative
		 * PolicyAck) and the link goes on; any other refusal is a
		 * daemon that broke the protocol: drop the link, the next
		 * welcome resyncs. */
		bool drop = rc < 0 &&
			    !(was_up && e->body_case ==
					PARLEY__V1__ENVELOPE__BODY_POLICY);
		parley__v1__envelope__free_unpacked(e, NULL);
		if (drop) {
			log_warn("daemon frame refused: %s", perr_msg(&err));
			disconnect(l, perr_msg(&err));
			return;
		}
		if (!l->bev)
			return;
	}
}

static void send_hello(struct agent_link *l)
{
	Parley__V1__Envelope e;
	Parley__V1__Hello h;
	wire_init_envelope(&e, 1);
	parley__v1__hello__init(&h);
	h.host = l->host;
	h.policy_version = l->policy.version;
	h.agent_version = (char *)(l->version ? l->version : parley_version());
	h.next_seq = l->ob.next_seq;
	static const char *names[WIRE_HELLO_PARTS_MAX];
	if (l->held) {
		h.partitions_listed = true;
		h.n_partitions = l->held(l->ready_ctx, names,
					 WIRE_HELLO_PARTS_MAX);
		h.partitions = (char **)names;
	}
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	link_send_env(l, &e);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct agent_link *l = arg;
	if (what & BEV_EVENT_CONNECTED) {
		l->n_connects++;
		send_hello(l);
		return;
	}
	struct parley_err err = { 0 };
	if (what & BEV_EVENT_ERROR)
		tls_bev_error(bev, &err);
	char why[128];
	snprintf(why, sizeof(why), "refused (%s)", l->last_error);
	disconnect(l, err.msg[0] ? err.msg : l->last_error[0] ? why
					      : "closed by the daemon");
}

static void connect_now(struct agent_link *l)
{
	struct parley_err err = { 0 };
	l->bev = tls_bev_connect(l->base, l->ctx, l->server, l->port, &err);
	if (!l->bev) {
		log_debug("connect: %s", perr_msg(&err));
		schedule_retry(l);
		return;
	}
	bufferevent_setcb(l->bev, on_read, NULL, on_event, l);
	bufferevent_enable(l->bev, EV_READ | EV_WRITE);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_now(arg);
}

/* Jittered exponential backoff: a fleet that lost its daemon does not come
 * back all in the same millisecond. */
static void schedule_retry(struct agent_link *l)
{
	/* The next replica: the one just lost or refused may be down for
	 * good; a welcome anywhere resets the backoff. */
	if (l->nservers > 1) {
		l->cur = (l->cur + 1) % l->nservers;
		snprintf(l->server, sizeof(l->server), "%s",
			 l->servers[l->cur]);
		l->port = l->ports[l->cur];
	}
	unsigned ms = l->backoff_ms / 2 + (unsigned)(random() % (l->backoff_ms + 1));
	l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							  : l->backoff_ms * 2;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_add(l->retry_ev, &tv);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct agent_link *l = arg;
	Parley__V1__Envelope e;
	Parley__V1__Heartbeat h;
	wire_init_envelope(&e, 0);
	parley__v1__heartbeat__init(&h);
	h.sent_unix_ms = now_ms();
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	link_send_env(l, &e);
}

static int host_from_cert(struct agent_link *l, const char *crt,
			  struct parley_err *err)
{
	X509 *x = NULL;
	int rc = pki_read_cert(crt, &x, err);
	if (rc < 0)
		return rc;
	X509_NAME *n = X509_get_subject_name(x);
	int len = X509_NAME_get_text_by_NID(n, NID_commonName, l->host,
					    sizeof(l->host));
	X509_free(x);
	if (len <= 0)
		return perr(err, -EINVAL, "%s: no CN", crt);
	return 0;
}

int agent_link_init(struct agent_link *l, struct event_base *base,
		    const char *state_dir, const char *server, int port,
		    struct chanmgr *cm, struct parley_err *err)
{
	memset(l, 0, sizeof(*l));
	l->base = base;
	l->cm = cm;
	l->port = port;
	l->backoff_ms = BACKOFF_MIN_MS;
	snprintf(l->server, sizeof(l->server), "%s", server);
	snprintf(l->servers[0], sizeof(l->servers[0]), "%s", server);
	l->ports[0] = port;
	l->nservers = 1;
	snprintf(l->state_dir, sizeof(l->state_dir), "%s", state_dir);
	char ca[4200], crt[4200], key[4200], pub[4200], bundle[4200];
	link_state_path(l, "ca.crt", ca, sizeof(ca));
	link_state_path(l, "host.crt", crt, sizeof(crt));
	link_state_path(l, "host.key", key, sizeof(key));
	link_state_path(l, "policy.pub", pub, sizeof(pub));
	link_state_path(l, "bundle.pb", bundle, sizeof(bundle));
	int rc = host_from_cert(l, crt, err);
	if (rc == 0)
		rc = sign_read_pub(pub, &l->policy_pub, err);
	if (rc == 0 && !(l->ctx = tls_client_ctx(ca, crt, key, err)))
		rc = -EINVAL;
	if (rc < 0)
		return rc;
	if (outbox_open(&l->ob, state_dir, err) < 0)
		return -EIO;
	if ((rc = agent_link_cmd_load(l, err)) < 0)
		return rc;
	l->ob_open = true;
	if (access(bundle, R_OK) == 0) {
		/* Enforce the last good bundle until the daemon says more. */
		if (bundle_load(bundle, l->policy_pub, l->host, &l->policy,
				err) < 0)
			return -EINVAL;
		link_apply_policy(l);
		log_info("enforcing persisted policy version %llu",
			 (unsigned long long)l->policy.version);
	}
	l->retry_ev = evtimer_new(base, on_retry, l);
	l->flush_ev = event_new(base, -1, 0, on_flush, l);
	l->sync_ev = event_new(base, -1, 0, on_sync, l);
	l->hb_ev = event_new(base, -1, EV_PERSIST, on_heartbeat, l);
	return 0;
}

void agent_link_start(struct agent_link *l)
{
	if (l->policy.version)
		link_become_ready(l); /* the persisted bundle holds until told more */
	connect_now(l);
}

void agent_link_free(struct agent_link *l)
{
	if (l->bev)
		bufferevent_free(l->bev);
	l->bev = NULL;
	if (l->retry_ev)
		event_free(l->retry_ev);
	if (l->hb_ev)
		event_free(l->hb_ev);
	/* A clean exit keeps everything queued: pending audit events into
	 * the outbox, the outbox onto disk; the next start sends them. */
	if (l->sync_done_ev)
		event_free(l->sync_done_ev);
	l->sync_done_ev = NULL;
	if (l->ob_open) {
		flush_audit(l);
		struct parley_err err = { 0 };
		if (outbox_sync(&l->ob, &err) < 0)
			log_error("outbox at exit: %s", perr_msg(&err));
		outbox_close(&l->ob);
		l->ob_open = false;
	}
	for (unsigned i = 0; i < l->npend; i++)
		pend_free(&l->pend[i]);
	l->npend = 0;
	if (l->flush_ev)
		event_free(l->flush_ev);
	if (l->sync_ev)
		event_free(l->sync_ev);
	l->flush_ev = l->sync_ev = NULL;
	free(l->pend);
	l->pend = NULL;
	agent_policy_free(&l->policy);
	if (l->ctx)
		SSL_CTX_free(l->ctx);
	EVP_PKEY_free(l->policy_pub);
}
