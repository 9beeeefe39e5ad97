/* parleyd and agents as real processes on loopback (mutual TLS). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bundle.h"
#include "common/pki.h"
#include "common/wire.h"
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "common/tls.h"
#include "common/frame.h"
#include "common/sign.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/linkpeer.h"
#include "agent/backend.h"
#include "tests/helpers/testutil.h"

static void add_host(struct store *s, const char *h)
{
	cr_assert_eq(store_host_put(s, h, "", (struct store_blob){ 0 }, NULL), 0);
}

static void add_part(struct store *s, const char *name, const char *host)
{
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0, "%s",
		     perr_msg(&err));
}

static uint64_t add_grant(struct store *s, const char *ch, const char *a,
			  const char *b)
{
	struct grant g = { .dir = GRANT_BOTH, .ring_bytes = 65536,
			   .require_integrity = true };
	snprintf(g.channel, sizeof(g.channel), "%s", ch);
	snprintf(g.a, sizeof(g.a), "%s", a);
	snprintf(g.b, sizeof(g.b), "%s", b);
	uint64_t v = 0;
	struct parley_err err = { 0 };
	cr_assert_eq(store_grant_add(s, &g, &v, &err), 0, "%s", perr_msg(&err));
	return v;
}


static void load_bundle(struct fd_agent *a, struct agent_policy *p)
{
	char path[700], pub[700];
	snprintf(path, sizeof(path), "%s/bundle.pb", a->dir);
	snprintf(pub, sizeof(pub), "%s/policy.pub", a->dir);
	EVP_PKEY *k = NULL;
	cr_assert_eq(sign_read_pub(pub, &k, NULL), 0);
	struct parley_err err = { 0 };
	cr_assert_eq(bundle_load(path, k, a->name, p, &err), 0, "%s",
		     perr_msg(&err));
	EVP_PKEY_free(k);
}

Test(daemon, three_agents_get_only_their_own_bundles, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	const char *hosts[] = { "host-a", "host-b", "host-c" };
	for (int i = 0; i < 3; i++)
		add_host(s, hosts[i]);
	add_part(s, "p1", "host-a");
	add_part(s, "p2", "host-a");
	add_part(s, "q1", "host-b");
	add_part(s, "q2", "host-b");
	uint64_t va = add_grant(s, "ga", "p1", "p2");
	uint64_t vb = add_grant(s, "gb", "q1", "q2");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *a[3];
	for (int i = 0; i < 3; i++) {
		a[i] = fd_host(&f, hosts[i], NULL);
		fd_start_agent(&f, a[i], NULL);
	}
	struct fd_ack wa = { "host-a", va }, wb = { "host-b", vb };
	cr_assert(fd_wait(fd_acked, &f, &wa, 15000), "host-a never acked");
	cr_assert(fd_wait(fd_acked, &f, &wb, 15000), "host-b never acked");
	struct agent_policy pa, pb;
	load_bundle(a[0], &pa);
	load_bundle(a[1], &pb);
	cr_assert_eq(pa.grants.n, 1);
	cr_assert_str_eq(pa.grants.g[0].channel, "ga");
	cr_assert_eq(pb.grants.n, 1);
	cr_assert_str_eq(pb.grants.g[0].channel, "gb");
	agent_policy_free(&pa);
	agent_policy_free(&pb);
	char path[700];
	snprintf(path, sizeof(path), "%s/bundle.pb", a[2]->dir);
	cr_assert_neq(access(path, F_OK), 0, "host-c got a bundle");
	fd_stop(&f);
}

static bool log_has(struct fleetd *f, void *ctx)
{
	const char *const *w = ctx; /* { agent index as string, needle } */
	char *log = fd_agent_log(&f->agent[atoi(w[0])]);
	bool has = strstr(log, w[1]) != NULL;
	free(log);
	return has;
}

Test(daemon, grant_added_opens_and_removed_revokes, .timeout = 90)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	add_part(s, "a", "host-a");
	add_part(s, "b", "host-a");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	/* a stays alive after sending: the revocation, not a's exit (which
	 * b would see as the peer gone), is what must close b's channel. */
	const char *specs[] = {
		"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=sleep:1500,open:c1,send:0:100,sleep:60000\"}",
		"{\"name\":\"b\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=sleep:1500,open:c1,recv:0:100,recvall:0\"}",
		NULL };
	fd_start_agent(&f, h, specs);
	s = fd_store(&f);
	uint64_t v = add_grant(s, "c1", "a", "b");
	store_close(s);
	struct fd_ack w = { "host-a", v };
	cr_assert(fd_wait(fd_acked, &f, &w, 15000), "grant never acked");
	const char *got[] = { "0", "b| received 100" };
	cr_assert(fd_wait(log_has, &f, got, 20000), "no traffic:\n%s",
		  fd_agent_log(h));
	s = fd_store(&f);
	uint64_t v2 = 0;
	cr_assert_eq(store_grant_remove(s, "c1", &v2, NULL), 0);
	store_close(s);
	const char *closed[] = { "0", "b| closed after 0" };
	cr_assert(fd_wait(log_has, &f, closed, 20000), "not revoked:\n%s",
		  fd_agent_log(h));
	fd_stop(&f);
}

static bool daemon_log_has(struct fleetd *f, void *ctx)
{
	char *log = fd_daemon_log(f);
	bool has = strstr(log, ctx) != NULL;
	free(log);
	return has;
}

Test(daemon, foreign_and_expired_certificates_are_refused, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "intruder");
	add_host(s, "stale");
	add_host(s, "good");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *x = fd_host(&f, "intruder", "foreign");
	struct fd_agent *y = fd_host(&f, "stale", "expired");
	struct fd_agent *z = fd_host(&f, "good", NULL);
	fd_start_agent(&f, x, NULL);
	fd_start_agent(&f, y, NULL);
	fd_start_agent(&f, z, NULL);
	cr_assert(fd_wait(daemon_log_has, &f, "agent good connected", 15000),
		  "%s", fd_daemon_log(&f));
	cr_assert(fd_wait(daemon_log_has, &f, "certificate has expired", 15000) ||
		  fd_wait(daemon_log_has, &f, "expired", 100), "%s",
		  fd_daemon_log(&f));
	char *log = fd_daemon_log(&f);
	cr_assert_null(strstr(log, "agent intruder connected"), "%s", log);
	cr_assert_null(strstr(log, "agent stale connected"), "%s", log);
	free(log);
	fd_stop(&f);
}

Test(daemon, persisted_bundle_enforced_while_daemon_is_down, .timeout = 90)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	add_part(s, "a", "host-a");
	add_part(s, "b", "host-a");
	uint64_t v = add_grant(s, "c1", "a", "b");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	fd_start_agent(&f, h, NULL);
	struct fd_ack w = { "host-a", v };
	cr_assert(fd_wait(fd_acked, &f, &w, 15000));
	fd_stop_agent(h);
	fd_kill_daemon(&f);
	/* No daemon now: the agent starts on what it persisted. */
	const char *specs[] = {
		"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=open:c1,send:0:50,sleep:200\"}",
		"{\"name\":\"b\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=open:c1,recv:0:50\"}",
		NULL };
	fd_start_agent(&f, h, specs);
	const char *got[] = { "0", "b| received 50" };
	cr_assert(fd_wait(log_has, &f, got, 20000), "%s", fd_agent_log(h));
	const char *pers[] = { "0", "enforcing persisted policy version" };
	cr_assert(log_has(&f, pers));
	/* The daemon comes back: the agent reconnects by itself. */
	fd_start_daemon(&f);
	const char *up[] = { "0", "daemon link up" };
	cr_assert(fd_wait(log_has, &f, up, 20000), "%s", fd_agent_log(h));
	fd_stop(&f);
}

Test(daemon, replayed_older_bundle_is_refused)
{
	/* Unit level: what the agent does with a bundle not newer than the
	 * one it enforces, and with a forged or foreign one. */
	EVP_PKEY *k = NULL, *other = NULL;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	cr_assert_eq(pki_key_new(&other, NULL), 0);
	Parley__V1__PolicyBody b;
	parley__v1__policy_body__init(&b);
	b.host = "host-a";
	b.version = 5;
	uint8_t body[256], sig[SIGN_LEN];
	size_t len = parley__v1__policy_body__pack(&b, body);
	cr_assert_eq(sign_data(k, body, len, sig), 0);
	Parley__V1__PolicyBundle pb;
	parley__v1__policy_bundle__init(&pb);
	wire_bytes(&pb.body, body, len);
	wire_bytes(&pb.signature, sig, SIGN_LEN);
	struct agent_policy p;
	struct parley_err err = { 0 };
	cr_assert_eq(bundle_accept(k, "host-a", 4, &pb, &p, &err), 0, "%s",
		     perr_msg(&err));
	agent_policy_free(&p);
	cr_assert_eq(bundle_accept(k, "host-a", 5, &pb, &p, &err), -ESTALE);
	cr_assert(strstr(err.msg, "replayed"), "%s", err.msg);
	cr_assert_eq(bundle_accept(k, "host-a", 9, &pb, &p, &err), -ESTALE);
	cr_assert_eq(bundle_accept(k, "host-b", 0, &pb, &p, &err), -EPERM);
	cr_assert_eq(bundle_accept(other, "host-a", 0, &pb, &p, &err),
		     -EBADMSG);
	sig[3] ^= 1;
	cr_assert_eq(bundle_accept(k, "host-a", 0, &pb, &p, &err), -EBADMSG);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

/* A client with a valid certificate that then sends bytes no agent would:
 * the daemon must close that connection and keep serving the others. */
static int raw_session(struct fleetd *f, struct fd_agent *a, const void *bytes,
		       size_t len)
{
	struct lp_result r;
	lp_session(f->port, a->dir, bytes, len, 0, &r);
	return r.closed;
}

Test(daemon, malformed_frames_close_only_that_connection, .timeout = 90)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	add_part(s, "a", "host-a");
	add_part(s, "b", "host-a");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *good = fd_host(&f, "host-a", NULL);
	struct fd_agent *bad = fd_host(&f, "host-x", NULL);
	fd_start_agent(&f, good, NULL);
	cr_assert(fd_wait(daemon_log_has, &f, "agent host-a connected", 15000));
	uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	uint8_t zero[4] = { 0, 0, 0, 0 };
	uint8_t junk[64];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	uint8_t garbage_pb[12] = { 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff,
				   0xff, 0xff, 0xff, 0xff };
	cr_assert(raw_session(&f, bad, huge, sizeof(huge)), "oversized");
	cr_assert(raw_session(&f, bad, zero, sizeof(zero)), "zero length");
	cr_assert(raw_session(&f, bad, junk, sizeof(junk)), "random bytes");
	cr_assert(raw_session(&f, bad, garbage_pb, sizeof(garbage_pb)),
		  "not protobuf");
	/* The good agent is still served: a new grant reaches it. */
	s = fd_store(&f);
	uint64_t v = add_grant(s, "c1", "a", "b");
	store_close(s);
	struct fd_ack w = { "host-a", v };
	cr_assert(fd_wait(fd_acked, &f, &w, 15000), "%s", fd_daemon_log(&f));
	char *log = fd_daemon_log(&f);
	cr_assert(strstr(log, "BAD_FRAME"), "%s", log);
	free(log);
	fd_stop(&f);
}

struct count_ctx {
	uint64_t rows;
	uint64_t denied;
};

static int count_row(const struct store_audit *r, void *ctx)
{
	struct count_ctx *c = ctx;
	c->rows++;
	if (!strcmp(r->event, "open_denied") && !strcmp(r->host, "host-a"))
		c->denied++;
	return 0;
}

static bool all_denied_stored(struct fleetd *f, void *ctx)
{
	struct count_ctx c = { 0 };
	struct store *s = fd_store(f);
	store_audit_list(s, 0, 0, count_row, &c, NULL);
	store_close(s);
	*(uint64_t *)ctx = c.denied;
	return c.denied >= 3000;
}

/* Denials stored now, read straight after a kill: the daemon is gone, so
 * nothing more arrives. */
static uint64_t denied_now(struct fleetd *f)
{
	uint64_t n = 0;
	all_denied_stored(f, &n);
	return n;
}

/* Wait (polling the store every 2 ms, so the kill follows the evidence
 * closely) until more than `above` denials are stored; then kill -9.
 * Returns the count stored when the daemon was dead. */
static uint64_t kill_after_more_than(struct fleetd *f, uint64_t above)
{
	for (int waited = 0; waited < 30000; waited += 2) {
		if (denied_now(f) > above)
			break;
		usleep(2000);
	}
	fd_kill_daemon(f);
	return denied_now(f);
}

#define KILL9_EVENTS 3000
#define KILL9_KILLS 2
#define KILL9_TRIES 3

/* One try: a partition emits KILL9_EVENTS denials; the daemon is killed
 * KILL9_KILLS times, each as soon as the store shows the stream has moved
 * on since the last kill. A kill landed mid-stream when the store held
 * more than at the previous kill and fewer than all: the daemon acks only
 * what it stored, so the agent then still held unacknowledged records
 * and had to resend them to the next daemon. Whatever the kills hit, the
 * end state must be exact. Returns whether every kill landed mid-stream. */
static bool kill9_try(int attempt, uint64_t at[KILL9_KILLS])
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	add_part(s, "a", "host-a");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	const char *specs[] = {
		"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=spam:3000:nochan,sleep:60000\"}",
		NULL };
	/* The refusals are this test's stream of records: every one. */
	const char *all[] = { "--audit-refusals", "all", NULL };
	fd_start_agent_with(&f, h, specs, all);
	bool mid = true;
	uint64_t prev = 0;
	for (int i = 0; i < KILL9_KILLS; i++) {
		at[i] = kill_after_more_than(&f, prev);
		if (at[i] <= prev || at[i] >= KILL9_EVENTS)
			mid = false;
		prev = at[i];
		usleep(200000); /* the agent finds the daemon gone */
		fd_start_daemon(&f);
	}
	cr_log_info("try %d: denials stored at the kills: %llu, %llu of %d",
		    attempt, (unsigned long long)at[0],
		    (unsigned long long)at[1], KILL9_EVENTS);
	uint64_t denied = 0;
	cr_assert(fd_wait(all_denied_stored, &f, &denied, 60000),
		  "only %llu of 3000 events stored", (unsigned long long)denied);
	usleep(500000); /* duplicates, if any, would arrive now */
	struct count_ctx c = { 0 };
	s = fd_store(&f);
	store_audit_list(s, 0, 0, count_row, &c, NULL);
	cr_assert_eq(c.denied, KILL9_EVENTS, "%llu events for 3000 denials",
		     (unsigned long long)c.denied);
	uint64_t bad = 0, rows = 0;
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_verify(s, &bad, &rows, &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);
	fd_stop(&f);
	return mid;
}

/* The test proves something only if the kills hit records in flight: a
 * try whose kill came too late (the whole stream already stored) is run
 * again, and the test fails if no try lands every kill mid-stream. */
Test(daemon, kill9_loses_nothing_acknowledged_and_duplicates_nothing,
     .timeout = 180)
{
	uint64_t at[KILL9_KILLS] = { 0 };
	bool mid = false;
	for (int t = 0; t < KILL9_TRIES && !mid; t++)
		mid = kill9_try(t, at);
	cr_assert(mid, "no try in %d killed the daemon mid-stream (stored at "
		  "the kills of the last: %llu, %llu of %d)", KILL9_TRIES,
		  (unsigned long long)at[0], (unsigned long long)at[1],
		  KILL9_EVENTS);
}

static bool part_state_is(struct fleetd *f, void *ctx)
{
	const char *const *w = ctx; /* { partition, state } */
	struct store *s = fd_store(f);
	struct store_partition p;
	bool is = false;
	if (store_partition_get(s, w[0], &p, NULL) == 0) {
		is = !strcmp(p.state, w[1]);
		store_partition_free(&p);
	}
	store_close(s);
	return is;
}

Test(daemon, thin_partition_created_on_command, .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	const char *spec = "{\"name\":\"hc\",\"image\":\"hello.elf\","
			   "\"memory\":\"4M\",\"cmdline\":\"exit=0\"}";
	struct store_part_in in = { .name = "hc", .host = "host-a",
				    .kind = STORE_PART_THIN, .spec_json = spec,
				    .spec_len = strlen(spec), .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	fd_start_agent(&f, h, NULL);
	const char *hello[] = { "0", "hc| hello, world" };
	cr_assert(fd_wait(log_has, &f, hello, 20000), "%s", fd_agent_log(h));
	const char *stopped[] = { "hc", "stopped" };
	cr_assert(fd_wait(part_state_is, &f, stopped, 20000),
		  "state never reached the store\n%s", fd_daemon_log(&f));
	/* The agent said what ran it (PartitionStatus.backend). */
	s = fd_store(&f);
	struct store_partition p;
	cr_assert_eq(store_partition_get(s, "hc", &p, NULL), 0);
	cr_expect_str_eq(p.vmm_backend,
			 backend_kvm_missing() ? "process" : "kvm");
	store_partition_free(&p);
	store_close(s);
	fd_stop(&f);
}

struct refused_ctx {
	unsigned evil_abs, evil_key;
	char detail[2][512];
};

static int refused_row(const struct store_audit *r, void *ctx)
{
	struct refused_ctx *c = ctx;
	if (strcmp(r->event, "spec_refused") || strcmp(r->host, "host-a"))
		return 0;
	if (!strcmp(r->partition, "evil-abs")) {
		c->evil_abs++;
		snprintf(c->detail[0], sizeof(c->detail[0]), "%s", r->detail);
	} else if (!strcmp(r->partition, "evil-key")) {
		c->evil_key++;
		snprintf(c->detail[1], sizeof(c->detail[1]), "%s", r->detail);
	}
	return 0;
}

static bool both_refusals_stored(struct fleetd *f, void *ctx)
{
	struct refused_ctx *c = ctx;
	memset(c, 0, sizeof(*c));
	struct store *s = fd_store(f);
	store_audit_list(s, 0, 0, refused_row, c, NULL);
	store_close(s);
	return c->evil_abs && c->evil_key;
}

static void put_thin(struct store *s, const char *name, const char *spec)
{
	struct store_part_in in = { .name = name, .host = "host-a",
				    .kind = STORE_PART_THIN, .spec_json = spec,
				    .spec_len = strlen(spec), .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
}

/* issue 8 item 8: specs the daemon sends (an API admin writes them) name
 * files beneath the agent's image and config directories only. An absolute
 * path is refused as text; "host.key", which lies in the agent's state dir
 * (where daemon specs' paths once resolved), is simply not found. Each
 * refusal is audited and reaches the daemon's store. */
Test(daemon, spec_naming_file_outside_image_dir_refused_and_audited,
     .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	put_thin(s, "evil-abs", "{\"name\":\"evil-abs\",\"image\":"
		 "\"/etc/passwd\",\"memory\":\"4M\"}");
	put_thin(s, "evil-key", "{\"name\":\"evil-key\",\"image\":\"hello.elf\","
		 "\"memory\":\"4M\",\"config\":[{\"name\":\"k\",\"path\":"
		 "\"host.key\"}]}");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *h = fd_host(&f, "host-a", NULL);
	fd_start_agent(&f, h, NULL);
	struct refused_ctx c;
	cr_assert(fd_wait(both_refusals_stored, &f, &c, 20000),
		  "refusals not audited\nagent:\n%s\ndaemon:\n%s",
		  fd_agent_log(h), fd_daemon_log(&f));
	cr_expect(strstr(c.detail[0], "field \"image\": \"/etc/passwd\" is an "
				      "absolute path"), "%s", c.detail[0]);
	cr_expect(strstr(c.detail[1], "config[0].path: \"host.key\" not "
				      "found"), "%s", c.detail[1]);
	char *log = fd_agent_log(h);
	cr_expect_null(strstr(log, "evil-key| "), "it ran:\n%s", log);
	free(log);
	fd_stop(&f);
}

/* A valid agent of host-x that reports on host-a's partition. */
Test(daemon, report_about_another_hosts_partition_is_refused_and_audited,
     .timeout = 60)
{
	struct fleetd f;
	fd_init(&f);
	struct store *s = fd_store(&f);
	add_host(s, "host-a");
	add_host(s, "host-x");
	add_part(s, "a", "host-a");
	store_close(s);
	fd_start_daemon(&f);
	struct fd_agent *x = fd_host(&f, "host-x", NULL);
	Parley__V1__Envelope h, m;
	Parley__V1__Hello hb;
	Parley__V1__MeasurementReport r;
	Parley__V1__Measurement me, *mp = &me;
	uint8_t d[32] = { 1 };
	wire_init_envelope(&h, 1);
	parley__v1__hello__init(&hb);
	hb.host = "host-x";
	hb.next_seq = 1;
	h.body_case = PARLEY__V1__ENVELOPE__BODY_HELLO;
	h.hello = &hb;
	wire_init_envelope(&m, 2);
	parley__v1__measurement_report__init(&r);
	parley__v1__measurement__init(&me);
	me.seq = 1;
	me.partition = "a";
	wire_bytes(&me.digest, d, sizeof(d));
	r.measurements = &mp;
	r.n_measurements = 1;
	m.body_case = PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS;
	m.measurements = &r;
	uint8_t *f1, *f2, both[4096];
	size_t l1, l2;
	cr_assert_eq(frame_encode(&h, &f1, &l1), 0);
	cr_assert_eq(frame_encode(&m, &f2, &l2), 0);
	memcpy(both, f1, l1);
	memcpy(both + l1, f2, l2);
	cr_assert(raw_session(&f, x, both, l1 + l2), "connection kept");
	free(f1);
	free(f2);
	s = fd_store(&f);
	struct count_ctx c = { 0 };
	store_audit_list(s, 0, 0, count_row, &c, NULL);
	struct store_baseline b;
	cr_assert_neq(store_baseline_get(s, "a", &b, NULL), 0,
		      "host-x enrolled host-a's partition");
	store_close(s);
	char *log = fd_daemon_log(&f);
	cr_assert(strstr(log, "agent host-x: FOREIGN_PARTITION"), "%s", log);
	free(log);
	cr_assert_geq(c.rows, 1, "the refusal was not audited");
	fd_stop(&f);
}
