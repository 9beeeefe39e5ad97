#include "daemon/rpc/link_int.h"
#include "common/clock.h"
#include "daemon/agentvm.h"
#include "common/frame.h"
#include "common/hostport.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/wire.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 200
/* An agent heartbeats every heartbeat_ms; silence for this many is death. */
#define DEAD_AFTER_BEATS 3
/* Seconds a refused peer has to read its Error frame before the
 * connection is dropped anyway (a peer that does not read must not hold
 * the slot). */
#define REFUSE_GRACE_S 2
/* Answers an agent has not read: reading from it pauses above the first,
 * resumes at the second (a policy bundle or an update window is well
 * below: they are sent by the daemon's own pace, not the agent's). */
#define LINK_OUT_PAUSE (8u << 20)
#define LINK_OUT_RESUME (1u << 20)

static void conn_free(struct link_conn *c)
{
	struct link_server *ls = c->ls;
	if (ls->push_cursor == c)
		ls->push_cursor = c->next;
	if (c->held)
		link_replica_release(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		ls->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ls->nconns--;
	listen_guard_closed(&ls->guard);
	bufferevent_free(c->bev);
	free(c);
}

/* ---- refusals: the Error frame first, then the close ---- */

static void on_refused_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	/* Read and dropped: unread bytes at close would make the kernel
	 * send a reset, which can destroy the Error frame in flight. */
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_refused_drained(struct bufferevent *bev, void *arg)
{
	/* A write callback deferred from before the refusal (the output
	 * emptied, then the Error frame was pushed): the frame has not
	 * left yet. */
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	/* close_notify, so the peer sees a clean end after the frame. */
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl)
		SSL_shutdown(ssl);
	conn_free(arg);
}

static void on_refused_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what; /* EOF, error or the grace ran out: done either way */
	conn_free(arg);
}

void link_refuse(struct link_conn *c, const char *code, const char *why,
		 const char *partition)
{
	struct link_server *ls = c->ls;
	if (c->closing)
		return;
	c->closing = true;
	c->hello = false;           /* no pushes, no commands, not "connected" */
	if (c->paused) {
		/* the Error frame goes after what waits: all of it, not
		 * down to LINK_OUT_RESUME */
		c->paused = false;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	}
	ls->n_refused++;
	log_warn("agent %s: %s: %s", c->host[0] ? c->host : "(unverified)",
		 code, why);
	struct store_audit_in ev = { .host = c->host, .event = "link_refused",
				     .partition = partition, .reason = code,
				     .detail = why };
	struct parley_err err = { 0 };
	if (store_audit_append(ls->store, &ev, 1, NULL, &err) < 0)
		log_error("agent %s: auditing the refusal: %s", c->host,
			  perr_msg(&err));
	Parley__V1__Envelope e;
	Parley__V1__Error er;
	wire_init_envelope(&e, 0);
	parley__v1__error__init(&er);
	er.code = (char *)code;
	er.message = (char *)why;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_ERROR;
	e.error = &er;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	/* If it cannot even be encoded, the grace timeout closes. */
	frame_push(bufferevent_get_output(c->bev), &e);
	struct timeval tv = { REFUSE_GRACE_S, 0 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_setcb(c->bev, on_refused_read, on_refused_drained,
			  on_refused_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void link_send_env(struct link_conn *c, Parley__V1__Envelope *e)
{
	if (c->closing)
		return;
	if (frame_push(bufferevent_get_output(c->bev), e) < 0)
		log_error("agent %s: could not encode a frame", c->host);
}

void link_send_ack(struct link_conn *c, uint64_t rid, uint64_t seq)
{
	Parley__V1__Envelope e;
	Parley__V1__Ack a;
	wire_init_envelope(&e, rid);
	parley__v1__ack__init(&a);
	a.seq = seq;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_ACK;
	e.ack = &a;
	link_send_env(c, &e);
}

/* vm: the partition is a VM its agent runs (PartitionCommand.vm). id:
 * a stored command's (link_cmd_flush), 0 for one derived from the stored
 * state (sent again at each hello: the agent takes repeats). */
static void send_command_id(struct link_conn *c, const char *partition,
			    Parley__V1__PartitionCommand__Action action,
			    const char *spec, bool vm, uint64_t id)
{
	Parley__V1__Envelope e;
	Parley__V1__PartitionCommand pc;
	wire_init_envelope(&e, id);
	parley__v1__partition_command__init(&pc);
	pc.partition = (char *)partition;
	pc.action = action;
	pc.spec_json = (char *)(spec ? spec : "");
	pc.vm = vm;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_COMMAND;
	e.command = &pc;
	link_send_env(c, &e);
}

static void send_command(struct link_conn *c, const char *partition,
			 Parley__V1__PartitionCommand__Action action,
			 const char *spec, bool vm)
{
	send_command_id(c, partition, action, spec, vm, 0);
}

/* Whether it is one of the agent's VMs is the store's word: a thin
 * partition's row is gone before its DESTROY, a VM's stays until its
 * agent says it is destroyed. A VM's start may come before its agent had
 * it (defined while the agent was away): its CREATE first, a repeat if
 * the agent has it. So may a thin partition's, one its agent lost in a
 * restart (link_lost.c): its CREATE from the stored spec first, which an
 * agent that has it takes as a repeat. */
void link_send_command_to(struct link_conn *c, const char *partition,
			  int action, const char *spec, uint64_t id)
{
	struct store_partition p;
	bool vm = false;
	if (store_partition_get(c->ls->store, partition, &p, NULL) == 0) {
		vm = agentvm_part(&p);
		bool thin = p.kind == STORE_PART_THIN && p.spec_len > 2;
		if ((vm || thin) && !spec &&
		    action == PARLEY__V1__PARTITION_COMMAND__ACTION__START)
			send_command(
				c, partition,
				PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE,
				p.spec_json, vm);
		store_partition_free(&p);
	}
	send_command_id(c, partition,
			(Parley__V1__PartitionCommand__Action)action, spec, vm,
			id);
}

static struct link_conn *find_host(struct link_server *ls, const char *host)
{
	for (struct link_conn *c = ls->conns; c; c = c->next)
		if (c->hello && !strcmp(c->host, host))
			return c;
	return NULL;
}

struct link_conn *link_find_host(struct link_server *ls, const char *host)
{
	return find_host(ls, host);
}

bool link_host_connected(struct link_server *ls, const char *host)
{
	return find_host(ls, host) != NULL;
}

/* An agent's VM (daemon/agentvm.h): what its stored state asks for
 * that the agent has not reported yet -- defined: CREATE (which starts
 * it); start-, stop-, destroy-requested: START, STOP, DESTROY. Sent again
 * at each hello and change until the agent reports; it takes repeats. */
static void send_vm(struct link_conn *c, const struct store_partition *p)
{
#define A(x) PARLEY__V1__PARTITION_COMMAND__ACTION__##x
	static const struct {
		const char *state;
		Parley__V1__PartitionCommand__Action action;
	} asks[] = {
		{ "defined", A(CREATE) },
		/* (a start asked for before its agent had it: CREATE too,
		 * which the agent takes as a repeat if it has it) */
		{ "start-requested", A(CREATE) },
		{ "start-requested", A(START) },
		{ "stop-requested", A(STOP) },
		{ AGENTVM_DESTROY_REQUESTED, A(DESTROY) },
	};
#undef A
	for (size_t k = 0; k < sizeof(asks) / sizeof(asks[0]); k++) {
		if (strcmp(p->state, asks[k].state))
			continue;
		bool create = asks[k].action ==
			      PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE;
		send_command(c, p->name, asks[k].action,
			     create ? p->spec_json : NULL, true);
		log_info("asked %s: %s VM %s", c->host, asks[k].state, p->name);
	}
}

/* Thin partitions the store holds for this host with a spec and not yet
 * created there: the agent creates and starts them. */
static void send_commands(struct link_conn *c)
{
	struct store_partition *p = NULL;
	/* The bundle first, if it moved: a new partition's disk keys must
	 * be at the agent before its CREATE (the agent opens its disks as
	 * it creates it). */
	link_push_one(c);
	int n = store_partition_list(c->ls->store, c->host, NULL,
				     STORE_LIST_MAX, &p, NULL);
	for (int i = 0; i < n; i++)
		if (agentvm_part(&p[i]))
			send_vm(c, &p[i]);
	for (int i = 0; i < n; i++) {
		if (p[i].kind != STORE_PART_THIN || p[i].spec_len <= 2 ||
		    strcmp(p[i].state, "defined"))
			continue;
		send_command(c, p[i].name, PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE,
			     p[i].spec_json, false);
		send_command(c, p[i].name, PARLEY__V1__PARTITION_COMMAND__ACTION__START,
			     NULL, false);
		log_info("asked %s to create and start %s", c->host, p[i].name);
	}
	/* libvirt partitions run beside the agent, not under it; it still
	 * measures their key configuration files (host files) for their
	 * baselines. */
	for (int i = 0; i < n; i++) {
		struct store_baseline b;
		if (p[i].kind != STORE_PART_LIBVIRT || p[i].spec_len <= 2 ||
		    agentvm_part(&p[i]) ||
		    store_baseline_get(c->ls->store, p[i].name, &b, NULL) == 0)
			continue;
		send_command(c, p[i].name,
			     PARLEY__V1__PARTITION_COMMAND__ACTION__MEASURE,
			     p[i].spec_json, false);
		log_info("asked %s to measure %s", c->host, p[i].name);
	}
	if (n > 0)
		store_partition_list_free(p, (unsigned)n);
}

int link_send_commands(struct link_server *ls, const char *host)
{
	struct link_conn *c = find_host(ls, host);
	if (!c)
		return -ENOTCONN;
	send_commands(c);
	return 0;
}

int link_send_command(struct link_server *ls, const char *host,
		      const char *partition, int action)
{
	struct link_conn *c = find_host(ls, host);
	if (!c)
		return -ENOTCONN;
	link_send_command_to(c, partition, action, NULL, 0);
	return 0;
}

static void welcome(struct link_conn *c, const Parley__V1__Envelope *e)
{
	struct link_server *ls = c->ls;
	const Parley__V1__Hello *h = e->hello;
	uint64_t seq = 0, version = 0;
	store_host_seq(ls->store, c->host, &seq, NULL);
	store_policy_host_version(ls->store, c->host, &version, NULL);
	c->hello = true;
	c->pushed = h->policy_version;
	/* Before anything is sent: what this agent understands
	 * (link_agent_current). */
	snprintf(c->agent_version, sizeof(c->agent_version), "%s",
		 h->agent_version ? h->agent_version : "");
	/* Ours now, in the store: commands other replicas' APIs take for
	 * this host are left there for us. */
	link_replica_hold(c);
	c->held = true;
	Parley__V1__Envelope w;
	Parley__V1__Welcome wb;
	wire_init_envelope(&w, e->request_id);
	parley__v1__welcome__init(&wb);
	wb.host = c->host;
	wb.policy_version = version;
	wb.acked_seq = seq;
	wb.heartbeat_ms = ls->heartbeat_ms;
	w.body_case = PARLEY__V1__ENVELOPE__BODY_WELCOME;
	w.welcome = &wb;
	link_send_env(c, &w);
	log_info("agent %s connected (policy %llu, seq %llu)", c->host,
		 (unsigned long long)h->policy_version,
		 (unsigned long long)seq);
	link_push_one(c);
	link_lost_hello(c, h);
	send_commands(c);
	/* Commands stored for this host and not confirmed by its agent:
	 * issued while it was away, or sent on a connection that was lost
	 * before the confirmation came. */
	link_cmd_flush(c);
	link_update_hello(c, h);
	link_rollback_hello(c);
	link_replica_tell(c);
}

/* A host an operator created without a join (no certificate pinned):
 * its first certificate is pinned now, with its audit event, in one
 * transaction -- so that deleting the host can revoke it. */
static int pin_first(struct link_conn *c, struct parley_err *err)
{
	struct store *s = c->ls->store;
	char fp[2 * STORE_DIGEST + 1], detail[128];
	for (unsigned i = 0; i < STORE_DIGEST; i++)
		snprintf(fp + 2 * i, 3, "%02x", c->cert_sha256[i]);
	snprintf(detail, sizeof(detail), "certificate sha256:%s", fp);
	struct store_audit_in ev = { .host = c->host, .event = "cert_pinned",
				     .detail = detail };
	bool now = false;
	int rc = store_begin(s, err);
	if (rc < 0)
		return rc;
	rc = store_host_pin_first(s, c->host,
				  (struct store_blob){ c->cert_sha256,
						       STORE_DIGEST },
				  &now, err);
	if (rc == 0 && now)
		rc = store_audit_append(s, &ev, 1, NULL, err);
	if (rc < 0) {
		store_rollback(s, NULL);
		return rc;
	}
	rc = store_commit(s, err);
	if (rc == 0 && now)
		log_info("agent %s: first certificate pinned (sha256:%.16s...)",
			 c->host, fp);
	return rc;
}

/* Enrolled identities only: the host must exist (an operator added it,
 * or it joined) and the certificate must be its pinned one. */
static void on_hello(struct link_conn *c, const Parley__V1__Envelope *e)
{
	struct link_server *ls = c->ls;
	const Parley__V1__Hello *h = e->hello;
	if (strcmp(h->host, c->host)) {
		link_refuse(c, "HOST_MISMATCH", "hello names another host "
			    "than the certificate", NULL);
		return;
	}
	struct store_host sh;
	struct parley_err err = { 0 };
	int rc = store_host_get(ls->store, c->host, &sh, &err);
	if (rc == -ENOENT) {
		ls->n_unknown_host++;
		link_refuse(c, "UNKNOWN_HOST", "no such host is enrolled "
			    "(parleyctl host add, then parley-agent join)",
			    NULL);
		return;
	}
	if (rc < 0) {
		link_refuse(c, "INTERNAL", perr_msg(&err), NULL);
		return;
	}
	if (sh.has_cert &&
	    memcmp(sh.cert_sha256, c->cert_sha256, STORE_DIGEST) != 0) {
		link_refuse(c, "CERT_MISMATCH", "not the certificate pinned "
			    "for this host (it joined with another)", NULL);
		return;
	}
	if (!sh.has_cert && (rc = pin_first(c, &err)) < 0) {
		link_refuse(c, rc == -ESTALE ? "CERT_MISMATCH" : "INTERNAL",
			    perr_msg(&err), NULL);
		return;
	}
	welcome(c, e);
}

static void on_policy_ack(struct link_conn *c, const Parley__V1__Envelope *e)
{
	const Parley__V1__PolicyAck *a = e->policy_ack;
	if (!a->ok)
		log_warn("agent %s refused policy %llu: %s", c->host,
			 (unsigned long long)a->version, a->error);
	link_batch_policy_ack(c->ls, c->host, a);
}

/* The agent measures the round trip: its time back, and nothing else of
 * what it sent (protobuf-c keeps unknown fields: an echo of the frame
 * itself would return a padded heartbeat at full size). */
static void echo_heartbeat(struct link_conn *c, const Parley__V1__Envelope *in)
{
	Parley__V1__Envelope e;
	Parley__V1__Heartbeat hb;
	wire_init_envelope(&e, in->request_id);
	parley__v1__heartbeat__init(&hb);
	hb.sent_unix_ms = in->heartbeat->sent_unix_ms;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &hb;
	link_send_env(c, &e);
}

/* Every message passes link_door (the ownership rule) before its
 * handler; a type the door has no rule for never gets here. */
static void dispatch(struct link_conn *c, Parley__V1__Envelope *e)
{
	if (!c->hello && e->body_case != PARLEY__V1__ENVELOPE__BODY_HELLO) {
		link_refuse(c, "NO_HELLO", "the first message must be hello",
			    NULL);
		return;
	}
	if (link_door(c, e) < 0)
		return;
	switch (e->body_case) {
	case PARLEY__V1__ENVELOPE__BODY_HELLO:
		if (c->hello)
			link_refuse(c, "HELLO_TWICE", "hello twice", NULL);
		else
			on_hello(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS:
		link_on_measurements(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_AUDIT:
		link_on_audit(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_STATUS:
		link_on_status(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_POLICY_ACK:
		on_policy_ack(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS:
		link_on_update_progress(c, e);
		break;
	case PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE:
		link_batch_cmd_done(c->ls, c->host, e->command_done->seq);
		break;
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT:
		echo_heartbeat(c, e);
		break;
	default: /* the door refuses these first */
		link_refuse(c, "UNEXPECTED", wire_body_name(e->body_case),
			    NULL);
	}
}


static void on_read(struct bufferevent *bev, void *arg);

/* What the agent has not read yet fell to LINK_OUT_RESUME: read again,
 * starting with what came before the pause. */
static void on_drained(struct bufferevent *bev, void *arg)
{
	struct link_conn *c = arg;
	if (!c->paused || c->closing)
		return;
	c->paused = false;
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(bev, EV_READ);
	on_read(bev, c);
}

/* An agent that sends and never reads would have every answer (acks,
 * heartbeats) pile up here without bound: past LINK_OUT_PAUSE unread,
 * nothing more is read from it until it reads. Its silence then ends
 * it as any silent peer (sweep_dead). */
static bool pause_for_output(struct link_conn *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) <=
	    LINK_OUT_PAUSE)
		return false;
	c->paused = true;
	c->out_seen = evbuffer_get_length(bufferevent_get_output(c->bev));
	c->ls->n_paused++;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, LINK_OUT_RESUME, 0);
	return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct link_conn *c = arg;
	/* Nothing is read before the certificate was checked (on_event). */
	if (!c->verified || c->closing || c->paused)
		return;
	c->last_rx_ms = mono_now_ms();
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!c->closing && !pause_for_output(c)) {
		Parley__V1__Envelope *e = NULL;
		struct parley_err err = { 0 };
		int rc = frame_pull(in, c->ls->frame_max, &e, &err);
		if (rc == 0)
			return;
		if (rc < 0) {
			link_refuse(c, "BAD_FRAME", perr_msg(&err), NULL);
			return;
		}
		c->ls->n_frames++;
		dispatch(c, e);
		parley__v1__envelope__free_unpacked(e, NULL);
	}
}

static void cert_digest(SSL *ssl, uint8_t out[STORE_DIGEST])
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	unsigned n = 0;
	if (!x || X509_digest(x, EVP_sha256(), out, &n) != 1 ||
	    n != STORE_DIGEST)
		memset(out, 0, STORE_DIGEST);
}

/* Right after the handshake, before anything the peer sent is looked
 * at: the CN, and the certificate's fingerprint against the revoked. */
static void verify_peer(struct link_conn *c)
{
	struct link_server *ls = c->ls;
	struct parley_err err = { 0 };
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	if (tls_peer_host(ssl, c->host, sizeof(c->host), &err) < 0) {
		link_refuse(c, "BAD_CERT", perr_msg(&err), NULL);
		return;
	}
	cert_digest(ssl, c->cert_sha256);
	bool revoked = false;
	int rc = store_cert_revoked(ls->store,
				    (struct store_blob){ c->cert_sha256,
							 STORE_DIGEST },
				    &revoked, NULL, &err);
	if (rc < 0) {
		link_refuse(c, "INTERNAL", perr_msg(&err), NULL);
		return;
	}
	if (revoked) {
		ls->n_revoked++;
		link_refuse(c, "CERT_REVOKED", "this certificate was revoked "
			    "(its host was deleted or joined again)", NULL);
		return;
	}
	c->verified = true;
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		on_read(c->bev, c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct link_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		verify_peer(c);
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		struct parley_err err = { 0 };
		if ((what & BEV_EVENT_ERROR) && tls_bev_error(bev, &err) < 0)
			log_info("agent %s: connection closed: %s",
				 c->host[0] ? c->host : "(unverified)",
				 perr_msg(&err));
		else if (c->host[0])
			log_info("agent %s disconnected", c->host);
		conn_free(c);
	}
}

void link_host_deleted(struct link_server *ls, const char *host)
{
	for (struct link_conn *c = ls->conns; c; c = c->next)
		if (!c->closing && c->verified && !strcmp(c->host, host))
			link_refuse(c, "HOST_DELETED", "the host was deleted "
				    "and its certificate revoked", NULL);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int len, void *arg)
{
	(void)l;
	(void)sa;
	(void)len;
	struct link_server *ls = arg;
	struct link_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->ls = ls;
	c->last_rx_ms = mono_now_ms();
	c->bev = tls_bev_accept(ls->base, fd, ls->ctx);
	if (!c->bev) {
		free(c);
		return;
	}
	c->next = ls->conns;
	if (ls->conns)
		ls->conns->prev = c;
	ls->conns = c;
	ls->nconns++;
	listen_guard_opened(&ls->guard);
	bufferevent_setcb(c->bev, on_read, on_drained, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Connections silent for DEAD_AFTER_BEATS heartbeats are closed: a host
 * that vanished without a FIN must not hold its slot (or look connected). */
static void sweep_dead(struct link_server *ls)
{
	uint64_t now = mono_now_ms(), limit = (uint64_t)ls->heartbeat_ms *
					  DEAD_AFTER_BEATS;
	/* After a turn of the loop that took long, silence may be ours: the
	 * sockets were not read. Judge again next time. */
	bool late = ls->last_sweep_ms &&
		    now - ls->last_sweep_ms > 4 * (uint64_t)ls->poll_ms;
	ls->last_sweep_ms = now;
	if (late || ls->push_cursor)
		return;
	for (struct link_conn *c = ls->conns, *next; c; c = next) {
		next = c->next;
		if (c->paused) {
			/* not read while it reads what waits: alive while
			 * that shrinks */
			size_t o = evbuffer_get_length(
				bufferevent_get_output(c->bev));
			if (o < c->out_seen)
				c->last_rx_ms = now;
			c->out_seen = o;
		}
		if (now - c->last_rx_ms > limit) {
			log_warn("agent %s: silent for %llu ms, closing",
				 c->host[0] ? c->host : "(unverified)",
				 (unsigned long long)(now - c->last_rx_ms));
			conn_free(c);
		}
	}
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct link_server *ls = arg;
	/* The safety net for changes other replicas made; a notification
	 * from the store may call link_store_changed sooner. Where the
	 * store tells cheaply that nothing was committed since the last
	 * look (SQLite), the poll only beats: a lone daemon reads nothing
	 * every poll_ms. PostgreSQL cannot tell: it looks every time. */
	uint64_t mark = 0, own = store_own_commits(ls->store);
	bool known = store_mark(ls->store, &mark, NULL) == 0;
	if (known && ls->marked && mark == ls->mark) {
		link_replica_beat(ls);
	} else {
		ls->n_polls_looked++;
		link_store_changed(ls);
	}
	/* The mark from before the look, plus what the look committed
	 * itself (a beat, a deleted command): no second look for those,
	 * but another writer's commit during the look is seen next time. */
	ls->marked = known;
	ls->mark = mark + (store_own_commits(ls->store) - own);
	sweep_dead(ls);
}

/* HOSTNAME-PORT (a store name: no ':'), the hostname cut to fit. */
static void default_replica_name(struct link_server *ls)
{
	char hn[256] = "parleyd";
	if (gethostname(hn, sizeof(hn) - 1) < 0 || !hn[0])
		snprintf(hn, sizeof(hn), "parleyd");
	for (char *p = hn; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
		      *p == '_'))
			*p = '_';
	char port[16];
	int pl = snprintf(port, sizeof(port), "-%d", ls->port);
	int room = (int)sizeof(ls->replica) - 1 - pl;
	snprintf(ls->replica, sizeof(ls->replica), "%.*s%s", room, hn, port);
}

int link_start(struct link_server *ls, const char *host, int port,
	       struct parley_err *err)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (hostport_sockaddr(host, port, &ss, &len) < 0)
		return perr(err, -EINVAL, "listen: \"%s\" is not an IP address",
			    host);
	ls->lis = evconnlistener_new_bind(ls->base, on_accept, ls,
					  LEV_OPT_CLOSE_ON_FREE |
						  LEV_OPT_REUSEABLE |
						  LEV_OPT_CLOSE_ON_EXEC,
					  1024, (struct sockaddr *)&ss,
					  (int)len);
	if (!ls->lis)
		return perr(err, -errno, "listen on %s:%d: %m", host, port);
	if (listen_guard_init(&ls->guard, ls->base, ls->lis, "agent link") < 0)
		return perr(err, -ENOMEM, "agent link: no memory");
	/* a quarter of the descriptors, as the API's (api.h) */
	listen_guard_cap(&ls->guard, 4, &ls->nconns);
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	getsockname(evconnlistener_get_fd(ls->lis), (struct sockaddr *)&got, &gl);
	ls->port = ntohs(got.ss_family == AF_INET
				 ? ((struct sockaddr_in *)&got)->sin_port
				 : ((struct sockaddr_in6 *)&got)->sin6_port);
	store_policy_version(ls->store, &ls->seen_version, NULL);
	if (!ls->poll_ms)
		ls->poll_ms = POLL_MS;
	ls->started_ms = (int64_t)time(NULL) * 1000;
	if (!ls->replica[0])
		default_replica_name(ls);
	if (!ls->advertise[0] && strcmp(host, "0.0.0.0") && strcmp(host, "::"))
		snprintf(ls->advertise, sizeof(ls->advertise),
			 strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, ls->port);
	/* Whatever this name held before (a replica killed and started
	 * again) is void: its agents say hello again. */
	struct parley_err ferr = { 0 };
	if (store_replica_forget(ls->store, ls->replica, &ferr) < 0)
		log_warn("replica %s: %s", ls->replica, perr_msg(&ferr));
	link_replica_beat(ls);
	if (link_batch_start(ls) < 0)
		return perr(err, -ENOMEM, "link: out of memory");
	if (link_push_start(ls) < 0)
		return perr(err, -ENOMEM, "link: out of memory");
	ls->poll_ev = event_new(ls->base, -1, EV_PERSIST, on_poll, ls);
	struct timeval tv = { ls->poll_ms / 1000,
			      (ls->poll_ms % 1000) * 1000 };
	event_add(ls->poll_ev, &tv);
	link_listen_start(ls);
	return 0;
}

void link_stop(struct link_server *ls)
{
	/* Every agent released in the last batch: one transaction, not one
	 * per agent, for a replica shutting down with a fleet. */
	for (struct link_conn *c = ls->conns; ls->batch && c; c = c->next)
		if (c->held) {
			link_batch_hold(ls, c->host, false);
			c->held = false;
		}
	link_batch_stop(ls); /* commits what is queued */
	while (ls->conns)
		conn_free(ls->conns);
	link_listen_stop(ls);
	if (ls->poll_ev)
		event_free(ls->poll_ev);
	if (ls->push_ev)
		event_free(ls->push_ev);
	ls->push_ev = NULL;
	ls->push_cursor = NULL;
	listen_guard_free(&ls->guard);
	if (ls->lis)
		evconnlistener_free(ls->lis);
	ls->poll_ev = NULL;
	ls->lis = NULL;
}
