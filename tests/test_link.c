/* The agent link's promises, over real TLS on loopback against a real
 * parleyd: every refusal reaches the peer as an Error frame before the
 * close; one ownership rule for every message type; only enrolled hosts,
 * with their pinned, unrevoked certificate; records and the audit events
 * they cause committed together; policy acks committed in batches. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/join.h"
#include "tests/helpers/linkpeer.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"
#include "common/fileio.h"
#include "daemon/rpc/link.h"
#include "daemon/rpc/metrics.h"
#include <event2/buffer.h>

#define BUF 65536

static void put_host(struct fleetd *f, const char *h)
{
	struct store *s = fd_store(f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(s, h, "", (struct store_blob){ 0 }, &err),
		     0, "%s", perr_msg(&err));
	store_close(s);
}

static void put_part(struct fleetd *f, const char *name, const char *host)
{
	struct store *s = fd_store(f);
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);
}

/* host-a with partition a, host-x with xp and xp2; certificates for
 * them and for "ghost", which is not enrolled. */
static void setup(struct fleetd *f)
{
	fd_init(f);
	put_host(f, "host-a");
	put_host(f, "host-x");
	put_part(f, "a", "host-a");
	put_part(f, "xp", "host-x");
	put_part(f, "xp2", "host-x");
	fd_start_daemon(f);
	fd_host(f, "host-a", NULL);   /* agent[0] */
	fd_host(f, "host-x", NULL);   /* agent[1] */
	fd_host(f, "ghost", NULL);    /* agent[2] */
}

static const char *dir_of(struct fleetd *f, const char *host)
{
	for (unsigned i = 0; i < f->n; i++)
		if (!strcmp(f->agent[i].name, host))
			return f->agent[i].dir;
	cr_assert_fail("no agent %s", host);
	return NULL;
}

/* ---- frames ---- */

static void add_heartbeat(uint8_t *b, size_t *n)
{
	Parley__V1__Envelope e;
	Parley__V1__Heartbeat h;
	wire_init_envelope(&e, 7);
	parley__v1__heartbeat__init(&h);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	lp_add(b, BUF, n, &e);
}

static void add_measurement(uint8_t *b, size_t *n, uint64_t seq,
			    const char *part, size_t digest_len)
{
	Parley__V1__Envelope e;
	Parley__V1__MeasurementReport r;
	Parley__V1__Measurement m, *mp = &m;
	uint8_t d[40];
	memset(d, (int)seq, sizeof(d));
	wire_init_envelope(&e, 100 + seq);
	parley__v1__measurement_report__init(&r);
	parley__v1__measurement__init(&m);
	m.seq = seq;
	m.partition = (char *)part;
	wire_bytes(&m.digest, d, digest_len);
	r.measurements = &mp;
	r.n_measurements = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS;
	e.measurements = &r;
	lp_add(b, BUF, n, &e);
}

/* Events about parts[0..np-1], seqs from seq. */
static void add_audit(uint8_t *b, size_t *n, uint64_t seq,
		      const char *const *parts, size_t np)
{
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch ab;
	Parley__V1__AuditEvent ev[4], *evp[4];
	cr_assert_leq(np, 4);
	wire_init_envelope(&e, 200 + seq);
	parley__v1__audit_batch__init(&ab);
	for (size_t i = 0; i < np; i++) {
		parley__v1__audit_event__init(&ev[i]);
		ev[i].seq = seq + i;
		ev[i].event = "open_denied";
		ev[i].partition = (char *)parts[i];
		ev[i].channel = "c1";
		ev[i].reason = "NO_GRANT";
		evp[i] = &ev[i];
	}
	ab.events = evp;
	ab.n_events = np;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &ab;
	lp_add(b, BUF, n, &e);
}

/* reason and backend: NULL leaves them empty. */
static void add_status_why(uint8_t *b, size_t *n, uint64_t seq,
			   const char *part, const char *state,
			   const char *reason, const char *backend)
{
	Parley__V1__Envelope e;
	Parley__V1__PartitionStatus st;
	wire_init_envelope(&e, 300 + seq);
	parley__v1__partition_status__init(&st);
	st.seq = seq;
	st.partition = (char *)part;
	st.state = (char *)state;
	if (reason)
		st.reason = (char *)reason;
	if (backend)
		st.backend = (char *)backend;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_STATUS;
	e.status = &st;
	lp_add(b, BUF, n, &e);
}

static void add_status(uint8_t *b, size_t *n, uint64_t seq, const char *part,
		       const char *state)
{
	add_status_why(b, n, seq, part, state, NULL, NULL);
}

static void add_policy_ack(uint8_t *b, size_t *n, uint64_t v, bool ok,
			   const char *why)
{
	Parley__V1__Envelope e;
	Parley__V1__PolicyAck a;
	wire_init_envelope(&e, 0);
	parley__v1__policy_ack__init(&a);
	a.version = v;
	a.ok = ok;
	a.error = (char *)(why ? why : "");
	e.body_case = PARLEY__V1__ENVELOPE__BODY_POLICY_ACK;
	e.policy_ack = &a;
	lp_add(b, BUF, n, &e);
}

/* ---- what the store holds ---- */

struct ev_count {
	const char *host, *event, *partition, *reason; /* NULL: any */
	unsigned n;
	char detail[512];
};

static int ev_row(const struct store_audit *r, void *ctx)
{
	struct ev_count *c = ctx;
	if ((!c->host || !strcmp(r->host, c->host)) &&
	    (!c->event || !strcmp(r->event, c->event)) &&
	    (!c->partition || !strcmp(r->partition, c->partition)) &&
	    (!c->reason || !strcmp(r->reason, c->reason))) {
		c->n++;
		snprintf(c->detail, sizeof(c->detail), "%s", r->detail);
	}
	return 0;
}

static unsigned events(struct fleetd *f, struct ev_count *c)
{
	c->n = 0;
	struct store *s = fd_store(f);
	cr_assert_geq(store_audit_list(s, 0, 0, ev_row, c, NULL), 0);
	store_close(s);
	return c->n;
}

/* ---- refusals reach the peer ---- */

struct refusal {
	const char *name, *as, *code;
	void (*build)(uint8_t *b, size_t *n);
};

static void b_host_mismatch(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "host-x");
}

static void b_no_hello(uint8_t *b, size_t *n)
{
	add_heartbeat(b, n);
}

static void b_junk(uint8_t *b, size_t *n)
{
	for (size_t i = 0; i < 64; i++)
		b[(*n)++] = (uint8_t)(i * 37 + 11);
}

static void b_oversized(uint8_t *b, size_t *n)
{
	memset(b + *n, 0xff, 4);
	*n += 4;
}

static void b_unknown_host(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "ghost");
}

static void b_hello_twice(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "host-a");
	lp_add_hello(b, BUF, n, "host-a");
}

/* A type only the daemon sends. */
static void b_unexpected(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "host-a");
	Parley__V1__Envelope e;
	Parley__V1__Welcome w;
	wire_init_envelope(&e, 2);
	parley__v1__welcome__init(&w);
	w.host = "host-a";
	w.heartbeat_ms = 1000;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_WELCOME;
	e.welcome = &w;
	lp_add(b, BUF, n, &e);
}

static void b_foreign(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "host-x");
	add_status(b, n, 1, "a", "running");
}

static void b_unknown_partition(uint8_t *b, size_t *n)
{
	lp_add_hello(b, BUF, n, "host-a");
	add_measurement(b, n, 1, "nowhere", 32);
}

static const struct refusal refusals[] = {
	{ "hello naming another host", "host-a", "HOST_MISMATCH",
	  b_host_mismatch },
	{ "a record before hello", "host-a", "NO_HELLO", b_no_hello },
	{ "bytes that are no frame", "host-a", "BAD_FRAME", b_junk },
	{ "a 4 GiB frame header", "host-a", "BAD_FRAME", b_oversized },
	{ "a host nobody enrolled", "ghost", "UNKNOWN_HOST", b_unknown_host },
	{ "hello twice", "host-a", "HELLO_TWICE", b_hello_twice },
	{ "a message only the daemon sends", "host-a", "UNEXPECTED",
	  b_unexpected },
	{ "another host's partition", "host-x", "FOREIGN_PARTITION",
	  b_foreign },
	{ "a measurement of no partition", "host-a", "BAD_MEASUREMENT",
	  b_unknown_partition },
};

Test(link, every_refusal_reaches_the_peer_before_the_close, .timeout = 120)
{
	struct fleetd f;
	setup(&f);
	static uint8_t b[BUF];
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *t = &refusals[i];
		size_t n = 0;
		t->build(b, &n);
		struct lp_result r;
		lp_session(f.port, dir_of(&f, t->as), b, n, 0, &r);
		cr_assert(r.handshake, "%s: no handshake", t->name);
		cr_expect_eq(r.errors, 1, "%s: %u Error frames", t->name,
			     r.errors);
		cr_expect_str_eq(r.error_code, t->code, "%s: %s (%s)",
				 t->name, r.error_code, r.error_msg);
		cr_expect(r.error_before_eof, "%s: no close after the Error",
			  t->name);
		cr_expect_not(r.junk, "%s", t->name);
		struct ev_count c = { .host = t->as, .event = "link_refused",
				      .reason = t->code };
		cr_expect_geq(events(&f, &c), 1, "%s: not audited", t->name);
	}
	/* The unknown host stays unknown: no hello created it. */
	struct store *s = fd_store(&f);
	struct store_host h;
	cr_expect_eq(store_host_get(s, "ghost", &h, NULL), -ENOENT);
	store_close(s);
	fd_stop(&f);
}

/* A certificate other than the one pinned for its host, from the same
 * CA and with the same CN. */
Test(link, certificate_other_than_the_pinned_one_refused, .timeout = 60)
{
	struct fleetd f;
	setup(&f);
	uint8_t other[32];
	memset(other, 0x55, sizeof(other));
	struct store *s = fd_store(&f);
	cr_assert_eq(store_host_put(s, "host-a", "",
				    (struct store_blob){ other, 32 }, NULL), 0);
	store_close(s);
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, "host-a");
	struct lp_result r;
	lp_session(f.port, dir_of(&f, "host-a"), b, n, 0, &r);
	cr_expect_str_eq(r.error_code, "CERT_MISMATCH", "%s", r.error_msg);
	cr_expect(r.error_before_eof);
	cr_expect_eq(r.welcomes, 0);
	fd_stop(&f);
}

/* ---- one ownership rule, every message type ---- */

struct owner_case {
	const char *type;
	void (*build)(uint8_t *b, size_t *n, const char *part);
};

static void o_measurement(uint8_t *b, size_t *n, const char *part)
{
	add_measurement(b, n, 1, part, 32);
}

static void o_audit(uint8_t *b, size_t *n, const char *part)
{
	const char *p[] = { part };
	add_audit(b, n, 1, p, 1);
}

/* A batch whose first event is about the sender's own partition: the
 * foreign second one refuses the whole batch. */
static void o_audit_mixed(uint8_t *b, size_t *n, const char *part)
{
	const char *p[] = { "xp", part };
	add_audit(b, n, 1, p, 2);
}

static void o_status(uint8_t *b, size_t *n, const char *part)
{
	add_status(b, n, 1, part, "running");
}

/* Every agent -> daemon type that names a partition (link_door.c's
 * rules; hello, heartbeat and policy ack name none). */
static const struct owner_case owner_cases[] = {
	{ "measurement", o_measurement },
	{ "audit", o_audit },
	{ "audit, mixed batch", o_audit_mixed },
	{ "status", o_status },
};

Test(link, foreign_partition_refused_for_every_message_type, .timeout = 120)
{
	struct fleetd f;
	setup(&f);
	static uint8_t b[BUF];
	for (size_t i = 0; i < sizeof(owner_cases) / sizeof(owner_cases[0]);
	     i++) {
		const struct owner_case *t = &owner_cases[i];
		/* host-x about host-a's partition a: refused, nothing kept. */
		size_t n = 0;
		lp_add_hello(b, BUF, &n, "host-x");
		t->build(b, &n, "a");
		struct lp_result r;
		lp_session(f.port, dir_of(&f, "host-x"), b, n, 0, &r);
		cr_expect_eq(r.welcomes, 1, "%s", t->type);
		cr_expect_eq(r.acks, 0, "%s: acknowledged", t->type);
		cr_expect_str_eq(r.error_code, "FOREIGN_PARTITION", "%s: %s (%s)",
				 t->type, r.error_code, r.error_msg);
		cr_expect(r.error_before_eof, "%s", t->type);
		struct ev_count c = { .host = "host-x", .event = "link_refused",
				      .partition = "a",
				      .reason = "FOREIGN_PARTITION" };
		cr_expect_eq(events(&f, &c), i + 1, "%s: refusal not audited",
			     t->type);
		struct ev_count stored = { .host = "host-x",
					   .event = "open_denied" };
		cr_expect_eq(events(&f, &stored), 0, "%s: events stored",
			     t->type);
		struct store *s = fd_store(&f);
		uint64_t seq = 9;
		struct store_baseline bl;
		struct store_partition p;
		cr_expect_eq(store_host_seq(s, "host-x", &seq, NULL), 0);
		cr_expect_eq(seq, 0, "%s: host-x's seq moved", t->type);
		cr_expect_eq(store_baseline_get(s, "a", &bl, NULL), -ENOENT,
			     "%s: a enrolled by host-x", t->type);
		cr_assert_eq(store_partition_get(s, "a", &p, NULL), 0);
		cr_expect_str_eq(p.state, "defined", "%s", t->type);
		store_partition_free(&p);
		store_close(s);
	}
	/* The control: the same messages about its own partition, or one
	 * the store does not know (audit only), are taken. */
	size_t n = 0;
	const char *own[] = { "xp", "local-only" };
	lp_add_hello(b, BUF, &n, "host-x");
	add_audit(b, &n, 1, own, 2);
	add_measurement(b, &n, 3, "xp", 32);
	add_status(b, &n, 4, "xp", "running");
	struct lp_result r;
	lp_session(f.port, dir_of(&f, "host-x"), b, n, 4, &r);
	cr_expect_eq(r.errors, 0, "%s: %s", r.error_code, r.error_msg);
	cr_expect_eq(r.acks, 3);
	cr_expect_eq(r.last_ack, 4);
	fd_stop(&f);
}

/* ---- records and their audit events, together ---- */

Test(link, enrolment_and_state_changes_audited_with_their_rows,
     .timeout = 60)
{
	struct fleetd f;
	setup(&f);
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, "host-x");
	add_measurement(b, &n, 1, "xp", 32);   /* enrols xp */
	add_measurement(b, &n, 2, "xp", 32);   /* xp has a baseline now */
	add_status(b, &n, 3, "xp", "running"); /* defined -> running */
	add_status(b, &n, 4, "xp", "running"); /* no change */
	add_status(b, &n, 5, "xp", "stopped"); /* running -> stopped */
	struct lp_result r;
	lp_session(f.port, dir_of(&f, "host-x"), b, n, 6, &r);
	cr_assert_eq(r.errors, 0, "%s: %s", r.error_code, r.error_msg);
	cr_assert_eq(r.acks, 5);
	struct ev_count en = { .host = "host-x", .event = "baseline_enrolled",
			       .partition = "xp" };
	cr_expect_eq(events(&f, &en), 1);
	cr_expect(strstr(en.detail, "seq 1"), "%s", en.detail);
	struct ev_count st = { .host = "host-x", .event = "partition_state",
			       .partition = "xp" };
	cr_expect_eq(events(&f, &st), 2);
	cr_expect_str_eq(st.detail, "running -> stopped (exit 0)");
	struct store *s = fd_store(&f);
	struct store_baseline bl;
	cr_expect_eq(store_baseline_get(s, "xp", &bl, NULL), 0);
	/* The first hello pinned host-x's certificate, audited. */
	struct store_host h;
	cr_assert_eq(store_host_get(s, "host-x", &h, NULL), 0);
	cr_expect(h.has_cert);
	store_close(s);
	struct ev_count pin = { .host = "host-x", .event = "cert_pinned" };
	cr_expect_eq(events(&f, &pin), 1);
	/* Sent again (the agent did not see the Acks): nothing twice. */
	lp_session(f.port, dir_of(&f, "host-x"), b, n, 6, &r);
	cr_expect_eq(r.acks, 5);
	cr_expect_eq(events(&f, &en), 1);
	cr_expect_eq(events(&f, &st), 2);
	cr_expect_eq(events(&f, &pin), 1);
	fd_stop(&f);
}

/* ---- an agent's VM (daemon/agentvm.h) ---- */

static void put_vm(struct fleetd *f, const char *name, const char *host,
		   const char *state)
{
	char spec[128];
	snprintf(spec, sizeof(spec), "{\"kind\":\"vm\",\"name\":\"%s\"}",
		 name);
	struct store *s = fd_store(f);
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_LIBVIRT,
				    .spec_json = spec, .spec_len = strlen(spec),
				    .state = state };
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);
}

static void state_of(struct fleetd *f, const char *name, char *out,
		     size_t cap)
{
	struct store *s = fd_store(f);
	struct store_partition p;
	int rc = store_partition_get(s, name, &p, NULL);
	snprintf(out, cap, "%s", rc == 0 ? p.state : "(none)");
	if (rc == 0)
		store_partition_free(&p);
	store_close(s);
}

/* A VM's row goes with its agent's "destroyed" (and only a VM's: a thin
 * partition's report only sets its state); a destroy asked for stays
 * asked for whatever else the agent reports first; the reason of each
 * change is in its partition_state event. */
Test(link, agent_vm_rows_go_with_destroyed_only, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	put_host(&f, "host-x");
	put_vm(&f, "vm1", "host-x", "running");
	put_vm(&f, "vm2", "host-x", "destroy-requested");
	put_part(&f, "xp", "host-x");
	fd_start_daemon(&f);
	fd_host(&f, "host-x", NULL);
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, "host-x");
	add_status_why(b, &n, 1, "vm1", "destroyed", NULL, "vm");
	add_status_why(b, &n, 2, "vm2", "stopped", "killed", "vm");
	add_status_why(b, &n, 3, "xp", "destroyed", NULL, NULL);
	struct lp_result r;
	lp_session(f.port, dir_of(&f, "host-x"), b, n, 0, &r);
	cr_assert_eq(r.errors, 0, "%s: %s", r.error_code, r.error_msg);
	cr_assert_eq(r.last_ack, 3);
	char st[64];
	state_of(&f, "vm1", st, sizeof(st));
	cr_expect_str_eq(st, "(none)");
	state_of(&f, "vm2", st, sizeof(st));
	cr_expect_str_eq(st, "destroy-requested");
	state_of(&f, "xp", st, sizeof(st));
	cr_expect_str_eq(st, "destroyed");
	struct ev_count e2 = { .host = "host-x", .event = "partition_state",
			       .partition = "vm2" };
	cr_expect_eq(events(&f, &e2), 1);
	cr_expect_str_eq(e2.detail,
			 "destroy-requested -> stopped (exit 0, killed)");
	struct ev_count e1 = { .host = "host-x", .event = "partition_state",
			       .partition = "vm1" };
	cr_expect_eq(events(&f, &e1), 1);
	cr_expect_str_eq(e1.detail, "running -> destroyed");
	fd_stop(&f);
}

/* ---- policy acks, batched ---- */


static bool refusal_stored(struct fleetd *f, void *ctx)
{
	return events(f, ctx) > 0;
}

Test(link, policy_acks_and_refusals_committed, .timeout = 60)
{
	struct fleetd f;
	setup(&f);
	struct store *s = fd_store(&f);
	struct grant g = { .dir = GRANT_BOTH, .ring_bytes = 65536 };
	snprintf(g.channel, sizeof(g.channel), "c1");
	snprintf(g.a, sizeof(g.a), "xp");
	snprintf(g.b, sizeof(g.b), "xp2");
	uint64_t v = 0;
	cr_assert_eq(store_grant_add(s, &g, &v, NULL), 0);
	store_close(s);
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, "host-x");
	/* A refusal, an ack of a version never given (logged, not
	 * stored), the real ack. */
	add_policy_ack(b, &n, v, false, "signature does not verify");
	add_policy_ack(b, &n, v + 7, true, NULL);
	add_policy_ack(b, &n, v, true, NULL);
	add_heartbeat(b, &n);
	struct lp_result r;
	/* Welcome, the bundle, the heartbeat's echo. */
	lp_session(f.port, dir_of(&f, "host-x"), b, n, 3, &r);
	cr_expect_eq(r.errors, 0, "%s: %s", r.error_code, r.error_msg);
	struct fd_ack w = { "host-x", v };
	cr_expect(fd_wait(fd_acked, &f, &w, 10000), "ack not stored");
	struct ev_count c = { .host = "host-x", .event = "policy_refused" };
	cr_expect(fd_wait(refusal_stored, &f, &c, 10000));
	cr_expect(strstr(c.detail, "signature does not verify"), "%s",
		  c.detail);
	s = fd_store(&f);
	uint64_t acked = 0;
	store_policy_acked(s, "host-x", &acked, NULL);
	cr_expect_eq(acked, v);
	store_close(s);
	fd_stop(&f);
}

/* ---- deleted hosts stay out ---- */

static void hello_session(struct fleetd *f, const char *dir,
			  const char *host, struct lp_result *r)
{
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, host);
	add_heartbeat(b, &n);
	lp_session(f->port, dir, b, n, 2, r);
}

static void delete_host(struct fleetd *f, const char *h)
{
	struct store *s = fd_store(f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_delete(s, h, &err), 0, "%s", perr_msg(&err));
	store_close(s);
}

Test(link, deleted_host_revoked_until_it_joins_again, .timeout = 120)
{
	struct jn j;
	jn_start(&j);
	char tok[69], *out;
	jn_token(&j, "h1", 60000, tok);
	cr_assert_eq(jn_join(&j, "agent-h1", tok, NULL, &out), 0, "%s", out);
	free(out);
	char *d1 = jn_path(&j, "agent-h1");
	struct lp_result r;
	hello_session(&j.f, d1, "h1", &r);
	cr_assert_eq(r.welcomes, 1, "%s: %s", r.error_code, r.error_msg);

	/* Deleted: its certificate is refused at the handshake. */
	delete_host(&j.f, "h1");
	hello_session(&j.f, d1, "h1", &r);
	cr_expect_str_eq(r.error_code, "CERT_REVOKED", "%s", r.error_msg);
	cr_expect(r.error_before_eof);
	cr_expect_eq(r.welcomes, 0);

	/* Added again by the operator: the old certificate stays out. */
	put_host(&j.f, "h1");
	hello_session(&j.f, d1, "h1", &r);
	cr_expect_str_eq(r.error_code, "CERT_REVOKED", "%s", r.error_msg);

	/* A new join lets it in; joining once more revokes that one. */
	jn_token(&j, "h1", 60000, tok);
	cr_assert_eq(jn_join(&j, "agent-h1b", tok, NULL, &out), 0, "%s", out);
	free(out);
	char *d2 = jn_path(&j, "agent-h1b");
	hello_session(&j.f, d2, "h1", &r);
	cr_expect_eq(r.welcomes, 1, "%s: %s", r.error_code, r.error_msg);
	jn_token(&j, "h1", 60000, tok);
	cr_assert_eq(jn_join(&j, "agent-h1c", tok, NULL, &out), 0, "%s", out);
	free(out);
	hello_session(&j.f, d2, "h1", &r);
	cr_expect_str_eq(r.error_code, "CERT_REVOKED", "%s", r.error_msg);

	/* Each join: the token spent, the pin and its event, together. */
	struct ev_count joined = { .host = "h1", .event = "host_joined" };
	cr_expect_eq(events(&j.f, &joined), 3);
	struct ev_count rev = { .host = "h1", .event = "link_refused",
				.reason = "CERT_REVOKED" };
	cr_expect_eq(events(&j.f, &rev), 3);
	free(d1);
	free(d2);
	fd_stop(&j.f);
}

/* A host an operator created without a join: its first certificate is
 * pinned at hello, so deleting the host revokes it too. */
Test(link, first_certificate_pinned_then_revoked_with_its_host,
     .timeout = 60)
{
	struct fleetd f;
	setup(&f);
	struct lp_result r;
	hello_session(&f, dir_of(&f, "host-x"), "host-x", &r);
	cr_assert_eq(r.welcomes, 1, "%s: %s", r.error_code, r.error_msg);
	struct store *s = fd_store(&f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_delete(s, "xp", &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(store_partition_delete(s, "xp2", &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);
	delete_host(&f, "host-x");
	hello_session(&f, dir_of(&f, "host-x"), "host-x", &r);
	cr_expect_str_eq(r.error_code, "CERT_REVOKED", "%s", r.error_msg);
	put_host(&f, "host-x");
	hello_session(&f, dir_of(&f, "host-x"), "host-x", &r);
	cr_expect_str_eq(r.error_code, "CERT_REVOKED", "%s", r.error_msg);
	/* host-a, never deleted, is untouched. */
	hello_session(&f, dir_of(&f, "host-a"), "host-a", &r);
	cr_expect_eq(r.welcomes, 1, "%s: %s", r.error_code, r.error_msg);
	fd_stop(&f);
}

/* The refusal counters as /metrics shows them. */
Test(link, refusal_counters_in_the_exposition)
{
	struct metrics_link l = { .refused = 10, .unknown_host = 3,
				  .revoked = 2, .foreign = 1 };
	struct evbuffer *b = evbuffer_new();
	metrics_render_link(&l, b);
	size_t len = evbuffer_get_length(b);
	char *t = calloc(1, len + 1);
	evbuffer_remove(b, t, len);
	cr_expect(strstr(t, "# HELP parley_link_refusals_total "), "%s", t);
	cr_expect(strstr(t, "# TYPE parley_link_refusals_total counter\n"));
	cr_expect(strstr(t, "parley_link_refusals_total{cause=\"unknown_host\"} "
			    "3\n"), "%s", t);
	cr_expect(strstr(t, "{cause=\"revoked_cert\"} 2\n"), "%s", t);
	cr_expect(strstr(t, "{cause=\"foreign_partition\"} 1\n"), "%s", t);
	cr_expect(strstr(t, "{cause=\"other\"} 4\n"), "%s", t);
	free(t);
	evbuffer_free(b);
}

/* ---- through the API ---- */

static bool daemon_log_has(struct fleetd *f, void *ctx)
{
	char *log = fd_daemon_log(f);
	bool has = strstr(log, ctx) != NULL;
	free(log);
	return has;
}

static int link_port(struct fleetd *f)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/parleyd.port", f->dir);
	cr_assert_eq(file_read_all(path, 64, &buf, &len, NULL), 0);
	int port = atoi((char *)buf);
	free(buf);
	return port;
}

/* DELETE /v1/hosts/NAME cuts the connected agent off and revokes its
 * certificate: its reconnections are refused at the handshake, and
 * /metrics counts them, as it counts hellos from hosts nobody enrolled. */
Test(link, api_delete_cuts_the_agent_off_and_metrics_count_refusals,
     .timeout = 90)
{
	struct api_client c;
	ac_start(&c);
	c.f.port = link_port(&c.f);
	struct ac_resp r;
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	struct fd_agent *a = fd_host(&c.f, "h1", NULL);
	struct fd_agent *g = fd_host(&c.f, "ghost", NULL);
	fd_start_agent(&c.f, a, NULL);
	cr_assert(fd_wait(daemon_log_has, &c.f, "agent h1 connected", 15000),
		  "%s", fd_daemon_log(&c.f));
	ac_call(&c, "DELETE", "/v1/hosts/h1", c.admin, NULL, &r);
	cr_assert_eq(r.status, 204, "%s", r.raw);
	ac_free(&r);
	cr_expect(fd_wait(daemon_log_has, &c.f, "agent h1: HOST_DELETED",
			  10000), "%s", fd_daemon_log(&c.f));
	/* The agent reconnects by itself, and is refused. */
	cr_expect(fd_wait(daemon_log_has, &c.f, "agent h1: CERT_REVOKED",
			  20000), "%s", fd_daemon_log(&c.f));
	struct lp_result lr;
	static uint8_t b[BUF];
	size_t n = 0;
	lp_add_hello(b, BUF, &n, "ghost");
	lp_session(c.f.port, g->dir, b, n, 0, &lr);
	cr_expect_str_eq(lr.error_code, "UNKNOWN_HOST");
	ac_call(&c, "GET", "/metrics", c.admin, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_expect(strstr(r.raw, "parley_link_refusals_total{cause=\"unknown_host\"} "
				"1\n"), "%s", r.raw);
	cr_expect_null(strstr(r.raw, "{cause=\"revoked_cert\"} 0\n"), "%s",
		       r.raw);
	ac_free(&r);
	fd_stop_agent(a);
	ac_stop(&c);
}

/* ---- kill -9: rows and audit events agree ---- */

#define CRASH_PARTS 40
#define CRASH_ROUNDS 8

struct state_walk {
	char state[CRASH_PARTS][STORE_NAME_MAX];
	unsigned enrolled[CRASH_PARTS];
	bool broken;
	char why[256];
};

static int part_index(const char *p)
{
	int i;
	return sscanf(p, "cp%d", &i) == 1 && i >= 0 && i < CRASH_PARTS ? i : -1;
}

/* Replays partition_state events ("A -> B") over "defined" and counts
 * baseline_enrolled per partition. */
static int walk_row(const struct store_audit *r, void *ctx)
{
	struct state_walk *w = ctx;
	int i = part_index(r->partition);
	if (i < 0 || strcmp(r->host, "host-x"))
		return 0;
	if (!strcmp(r->event, "baseline_enrolled"))
		w->enrolled[i]++;
	if (strcmp(r->event, "partition_state"))
		return 0;
	char from[STORE_NAME_MAX], to[STORE_NAME_MAX];
	if (sscanf(r->detail, "%63s -> %63s", from, to) != 2 ||
	    strcmp(from, w->state[i])) {
		w->broken = true;
		snprintf(w->why, sizeof(w->why), "event %llu \"%s\" after %s",
			 (unsigned long long)r->id, r->detail, w->state[i]);
		return 1;
	}
	snprintf(w->state[i], sizeof(w->state[i]), "%s", to);
	return 0;
}

static void killer(pid_t daemon, unsigned delay_us)
{
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0) {
		usleep(delay_us);
		kill(daemon, SIGKILL);
		_exit(0);
	}
	(void)p; /* reaped after the round */
}

Test(link, kill9_never_separates_rows_from_their_audit_events,
     .timeout = 180)
{
	signal(SIGPIPE, SIG_IGN);
	struct fleetd f;
	fd_init(&f);
	put_host(&f, "host-x");
	struct store *s = fd_store(&f);
	cr_assert_eq(store_begin(s, NULL), 0);
	for (int i = 0; i < CRASH_PARTS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "cp%d", i);
		struct store_part_in in = { .name = name, .host = "host-x",
					    .kind = STORE_PART_THIN,
					    .spec_json = "{}", .spec_len = 2,
					    .state = "defined" };
		cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	}
	cr_assert_eq(store_commit(s, NULL), 0);
	store_close(s);
	fd_start_daemon(&f);
	fd_host(&f, "host-x", NULL);
	unsigned seed = 12345, acked = 0;
	uint64_t seq = 1;
	static uint8_t b[BUF];
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		size_t n = 0;
		lp_add_hello(b, BUF, &n, "host-x");
		for (int k = 0; k < 30; k++) {
			char name[16];
			snprintf(name, sizeof(name), "cp%d",
				 (int)(rand_r(&seed) % CRASH_PARTS));
			if (k % 2)
				add_measurement(b, &n, seq++, name, 32);
			else
				add_status(b, &n, seq++, name,
					   rand_r(&seed) % 2 ? "running"
							     : "stopped");
		}
		killer(f.daemon, 30000 + rand_r(&seed) % 250000);
		struct lp_result r;
		lp_session(f.port, dir_of(&f, "host-x"), b, n, 0, &r);
		acked += r.acks;
		fd_kill_daemon(&f);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		fd_start_daemon(&f);
	}
	s = fd_store(&f);
	struct state_walk w;
	memset(&w, 0, sizeof(w));
	for (int i = 0; i < CRASH_PARTS; i++)
		snprintf(w.state[i], sizeof(w.state[i]), "defined");
	cr_assert_geq(store_audit_list(s, 0, 0, walk_row, &w, NULL), 0);
	cr_expect_not(w.broken, "%s", w.why);
	unsigned enrolled = 0;
	for (int i = 0; i < CRASH_PARTS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "cp%d", i);
		struct store_partition p;
		struct store_baseline bl;
		cr_assert_eq(store_partition_get(s, name, &p, NULL), 0);
		cr_expect_str_eq(p.state, w.state[i], "%s: row %s, events say %s",
				 name, p.state, w.state[i]);
		store_partition_free(&p);
		bool has = store_baseline_get(s, name, &bl, NULL) == 0;
		cr_expect_eq(w.enrolled[i], has ? 1u : 0u,
			     "%s: baseline %d, %u baseline_enrolled events",
			     name, has, w.enrolled[i]);
		enrolled += has;
	}
	uint64_t bad = 0;
	cr_expect_eq(store_audit_verify(s, &bad, NULL, NULL), 0);
	store_close(s);
	cr_log_info("after %d kills: %u of %d records acknowledged, %u "
		    "partitions enrolled", CRASH_ROUNDS, acked,
		    CRASH_ROUNDS * 30, enrolled);
	cr_expect_gt(enrolled, 0, "the daemon never got to store anything");
	fd_stop(&f);
}

/* ---- an agent that sends and never reads ---- */

/* Every heartbeat is answered; an enrolled agent that never reads would
 * have the answers pile up in the daemon without bound. Past 8 MiB
 * unread, the daemon stops reading from it: its writes stall, the
 * daemon's memory stays where it was, other clients are served, and
 * /metrics counts the pause. */
Test(link, an_agent_that_never_reads_is_not_read_either, .timeout = 120)
{
	struct api_client c;
	t_asan_small_quarantine();
	ac_start(&c);
	c.f.port = link_port(&c.f);
	struct ac_resp r;
	ac_call_ok(&c, "POST", "/v1/hosts", "{\"name\":\"h1\"}", 201, NULL);
	struct fd_agent *a = fd_host(&c.f, "h1", NULL);
	static uint8_t head[BUF], beats[BUF];
	size_t nh = 0, nb = 0;
	lp_add_hello(head, BUF, &nh, "h1");
	while (nb + 64 < BUF)
		add_heartbeat(beats, &nb);
	long before = t_rss_kib(c.f.daemon);
	cr_assert_gt(before, 0);
	struct lp_conn lc;
	/* 256 MiB of heartbeats (~16 bytes each, answered with as many):
	 * far past the pause if the daemon kept reading */
	lp_flood(c.f.port, a->dir, head, nh, beats, nb, 256ull << 20, 3000,
		 &lc);
	long during = t_rss_kib(c.f.daemon);
	cr_expect(lc.stalled, "the daemon read all %llu bytes",
		  (unsigned long long)lc.sent);
	cr_expect_lt(lc.sent, 64ull << 20, "%llu bytes read before the pause",
		     (unsigned long long)lc.sent);
	cr_expect_lt(during - before, 64 * 1024, "the daemon grew from %ld "
		     "to %ld KiB", before, during);
	ac_call(&c, "GET", "/metrics", c.admin, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_expect(strstr(r.raw, "parley_link_read_pauses_total 1\n"), "%s",
		  r.raw);
	ac_free(&r);
	lp_close(&lc);
	ac_stop(&c);
}
