/*
 * Policy bundles out to the agents: one on a hello (link.c's welcome),
 * and every link's after a change (link_push_policy), a slice of links per
 * loop turn, signed through the key process with a window of requests in
 * flight: while the key process checks and signs bundle i on the other
 * core, this one builds bundles i+1 .. i+KEYD_WINDOW and queues the
 * frames of those already signed. One request at a time, each signature
 * cost a round trip through the socketpair (two context switches and the
 * key process's work, during which this process only waited).
 */
#include "daemon/rpc/link_int.h"
#include "daemon/keys/keyd.h"
#include "daemon/policy/bundle.h"
#include "daemon/policy/diskkeys.h"
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include "common/log.h"
#include "common/sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bundles go out a slice of links per loop turn, so that a fleet-wide
 * change does not stop the loop reading sockets (and heartbeats) for as
 * long as it takes to build and sign every host's bundle, and the first
 * bundles reach their agents while the last are still being built. */
#define PUSH_SLICE 256

/* The certificate the agent proved it holds on this link: its disk keys
 * are sealed to its key (the key process checks it against the CA). */
static X509 *peer_key(struct link_conn *c)
{
	SSL *ssl = c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	return ssl ? SSL_get0_peer_certificate(ssl) : NULL;
}

static void send_bundle(struct link_conn *c, Parley__V1__PolicyBundle *b,
			uint64_t version)
{
	Parley__V1__Envelope e;
	wire_init_envelope(&e, 0);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_POLICY;
	e.policy = b;
	link_send_env(c, &e);
	c->pushed = version;
	c->ls->n_pushed++;
	log_info("pushed policy version %llu to %s",
		 (unsigned long long)version, c->host);
}

void link_push_one(struct link_conn *c)
{
	struct link_server *ls = c->ls;
	Parley__V1__PolicyBundle b;
	struct parley_err err = { 0 };
	uint64_t version = 0;
	if (policy_bundle_build_keys(ls->store, ls->policy_key, peer_key(c),
				     ls->key_id, c->host, c->pushed, &b,
				     &version, &err) < 0) {
		log_error("bundle for %s: %s", c->host, perr_msg(&err));
		return;
	}
	/* Not above what the agent holds (version 0: no grant ever
	 * involved the host): nothing was built, nothing to send. */
	if (b.body.data)
		send_bundle(c, &b, version);
	policy_bundle_free(&b);
}

/* A bundle whose signature is asked for. The slice runs inside one
 * callback and bufferevent_openssl only schedules its writes, so no link
 * is freed while its bundle is in flight. */
struct pending {
	struct link_conn *c;
	uint8_t *body;
	size_t len;
	uint64_t version;
};

/* The oldest request's answer: its bundle goes out, or is logged. */
static void finish(struct link_server *ls, struct pending *p)
{
	struct parley_err err = { 0 };
	uint8_t sig[SIGN_LEN];
	Parley__V1__PolicyBundle b;
	int rc = keyd_sign_bundle_recv(ls->policy_key, sig, &err);
	if (rc == 0)
		rc = policy_bundle_wrap(p->body, p->len, sig, ls->key_id, &b,
					&err);
	else
		free(p->body);
	p->body = NULL;
	if (rc < 0) {
		log_error("bundle for %s: %s", p->c->host, perr_msg(&err));
		return;
	}
	send_bundle(p->c, &b, p->version);
	policy_bundle_free(&b);
}

/* Build c's bundle if it moved and ask for its signature: 1 if a request
 * is in flight for it (p filled), 0 if there is nothing to send or it
 * failed (logged). */
static int start(struct link_conn *c, const struct policy_slice *sl,
		 struct pending *p)
{
	struct link_server *ls = c->ls;
	struct parley_err err = { 0 };
	*p = (struct pending){ .c = c };
	int rc = sl ? policy_slice_body(sl, ls->store, ls->policy_key,
					peer_key(c), c->host, c->pushed,
					&p->version, &p->body, &p->len, &err)
		    : policy_body_build_keys(ls->store, ls->policy_key,
					     peer_key(c), c->host, c->pushed,
					     &p->version, &p->body, &p->len,
					     &err);
	if (rc == 0 && p->body)
		rc = keyd_sign_bundle_send(ls->policy_key, c->host, p->version,
					   p->body, p->len, &err);
	if (rc < 0) {
		log_error("bundle for %s: %s", c->host, perr_msg(&err));
		free(p->body);
		p->body = NULL;
	}
	return p->body != NULL;
}

/* The slice's store rows in a few statements for all its hosts
 * (policy_slice_load), not some 20 per host: on PostgreSQL each is a
 * round trip, and host by host a fleet-wide push spent most of its time
 * waiting on them. If that read fails, each bundle is built by itself
 * as before (one host's bad row then fails only its own bundle). */
static bool slice_load(struct link_conn **l, unsigned n,
		       struct policy_slice *sl)
{
	const char *hosts[PUSH_SLICE];
	uint64_t after[PUSH_SLICE];
	struct parley_err err = { 0 };
	if (!n)
		return false;
	for (unsigned i = 0; i < n; i++) {
		hosts[i] = l[i]->host;
		after[i] = l[i]->pushed;
	}
	if (policy_slice_load(l[0]->ls->store, hosts, after, n, sl,
			      &err) == 0)
		return true;
	log_warn("policy push: reading %u hosts at once: %s; host by host",
		 n, perr_msg(&err));
	return false;
}

static void on_push_slice(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct link_server *ls = arg;
	struct pending ring[KEYD_WINDOW];
	struct link_conn *l[PUSH_SLICE];
	unsigned head = 0, n = 0, nl = 0;
	struct parley_err err = { 0 };
	for (unsigned k = 0; ls->push_cursor && k < PUSH_SLICE; k++) {
		struct link_conn *c = ls->push_cursor;
		ls->push_cursor = c->next;
		if (c->hello)
			l[nl++] = c;
	}
	/* One read transaction for the slice's reads (SQLite would take
	 * and drop its WAL read lock for each); the bundles of a slice are
	 * built from one state of the store. Without it (store busy), each
	 * read is its own, as before. */
	bool snap = store_read_begin(ls->store, &err) == 0;
	if (!snap)
		log_warn("policy push: no read snapshot: %s", perr_msg(&err));
	struct policy_slice sl;
	bool have = slice_load(l, nl, &sl);
	for (unsigned k = 0; k < nl; k++) {
		struct link_conn *c = l[k];
		/* Sealing its disk keys is a call to the key process,
		 * which answers in order: the window is read empty first. */
		bool drain = n && (have ? policy_slice_has_disk_keys(&sl,
								     c->host)
					: diskkeys_host_has(ls->store,
							    c->host));
		while (n == KEYD_WINDOW || (drain && n)) {
			finish(ls, &ring[head]);
			head = (head + 1) % KEYD_WINDOW;
			n--;
		}
		if (start(c, have ? &sl : NULL,
			  &ring[(head + n) % KEYD_WINDOW]))
			n++;
	}
	if (have)
		policy_slice_free(&sl);
	/* Nothing stays in flight past this callback: the key process's
	 * other calls (certificates, checkpoints) need the stream. */
	if (snap)
		store_read_end(ls->store);
	for (; n; n--, head = (head + 1) % KEYD_WINDOW)
		finish(ls, &ring[head]);
	/* Not event_active: libevent runs an event activated from a callback
	 * in the same pass, so every slice would run before any socket is
	 * polled and no bundle would leave until all were built. A zero
	 * timeout runs the next slice after the loop has polled the
	 * sockets: bundles leave, acks come in, while the rest is built. */
	static const struct timeval next_turn = { 0, 0 };
	if (ls->push_cursor)
		event_add(ls->push_ev, &next_turn);
}

void link_push_policy(struct link_server *ls)
{
	uint64_t v = 0;
	if (store_policy_version(ls->store, &v, NULL) < 0 ||
	    v == ls->seen_version)
		return;
	ls->seen_version = v;
	/* Links that connect meanwhile are added at the head and get their
	 * bundle with their welcome. */
	ls->push_cursor = ls->conns;
	if (ls->push_cursor)
		event_active(ls->push_ev, EV_TIMEOUT, 0);
}

int link_push_start(struct link_server *ls)
{
	ls->push_ev = event_new(ls->base, -1, 0, on_push_slice, ls);
	return ls->push_ev ? 0 : -ENOMEM;
}
