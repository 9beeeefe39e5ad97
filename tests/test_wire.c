/*
 * Typed readers of the agent link (common/wire.c): one good envelope of
 * every body type, then a table of hostile ones — each a good sample with
 * one field spoiled — with the exact error code and the words naming the
 * field. Refusals are checked straight through wire_check and again
 * through a real frame (frame_encode -> frame_decode); PolicyBody refusals
 * through wire_check_policy_body and through wire_body_decode of the
 * packed bytes. Also the grant model conversions.
 *
 * The samples are shared with tests/test_frame.c (wiretest_sample*).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/grant.h"
#include "common/wire.h"

#if defined(__SANITIZE_ADDRESS__)
#define WIRE_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WIRE_TEST_LSAN 1
#endif
#endif
#ifdef WIRE_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Criterion takes a test's verdict before its worker exits: look for leaks
 * while the test can still fail (without ASan this checks nothing). */
static void expect_no_leaks(void)
{
#ifdef WIRE_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

/* ---- samples: one good envelope per body, every part in one block ---- */

struct sample {
	Parley__V1__Envelope env; /* first: &env is the block */
	Parley__V1__Hello hello;
	Parley__V1__Welcome welcome;
	Parley__V1__PolicyBundle bundle;
	Parley__V1__PolicyAck policy_ack;
	Parley__V1__MeasurementReport report;
	Parley__V1__Measurement meas[2];
	Parley__V1__Measurement *meas_p[WIRE_BATCH_MAX + 1];
	Parley__V1__FileDigest files[WIRE_FILES_MAX + 1];
	Parley__V1__FileDigest *files_p[WIRE_FILES_MAX + 1];
	ProtobufCBinaryData segs[WIRE_SEGMENTS_MAX + 1];
	Parley__V1__AuditBatch audit;
	Parley__V1__AuditEvent events[4];
	Parley__V1__AuditEvent *events_p[WIRE_BATCH_MAX + 1];
	Parley__V1__Ack ack;
	Parley__V1__PartitionCommand command;
	Parley__V1__PartitionStatus status;
	Parley__V1__DeviceState devs[WIRE_DEVICES_MAX + 1];
	Parley__V1__DeviceState *devs_p[WIRE_DEVICES_MAX + 1];
	Parley__V1__Heartbeat heartbeat;
	Parley__V1__Error error;
	Parley__V1__PolicyBody body; /* packed into bundle.body */
	Parley__V1__Grant grants[3];
	Parley__V1__Grant *grants_p[WIRE_GRANTS_MAX + 1];
	Parley__V1__Baseline baselines[2];
	Parley__V1__Baseline *baselines_p[WIRE_BASELINES_MAX + 1];
	uint8_t *body_bytes;
	uint8_t digest[2 * WIRE_DIGEST_LEN]; /* room for wrong sizes */
	uint8_t sig[WIRE_SIG_LEN + 1];
	char names[WIRE_FILES_MAX + 1][16];
	char big[WIRE_SPEC_MAX + 2]; /* one long string per sample */
};

Parley__V1__Envelope *wiretest_sample(Parley__V1__Envelope__BodyCase c);
void wiretest_sample_free(Parley__V1__Envelope *e);
const Parley__V1__Envelope__BodyCase wiretest_bodies[] = {
	PARLEY__V1__ENVELOPE__BODY_HELLO,
	PARLEY__V1__ENVELOPE__BODY_WELCOME,
	PARLEY__V1__ENVELOPE__BODY_POLICY,
	PARLEY__V1__ENVELOPE__BODY_POLICY_ACK,
	PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS,
	PARLEY__V1__ENVELOPE__BODY_AUDIT,
	PARLEY__V1__ENVELOPE__BODY_ACK,
	PARLEY__V1__ENVELOPE__BODY_COMMAND,
	PARLEY__V1__ENVELOPE__BODY_STATUS,
	PARLEY__V1__ENVELOPE__BODY_HEARTBEAT,
	PARLEY__V1__ENVELOPE__BODY_ERROR,
	PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE,
};
const size_t wiretest_nbodies =
	sizeof(wiretest_bodies) / sizeof(wiretest_bodies[0]);

static const char key_id[] =
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* A string of n 'x' (the sample's one long string). */
static char *big(struct sample *s, size_t n)
{
	memset(s->big, 'x', n);
	s->big[n] = '\0';
	return s->big;
}

static void fill_digests(struct sample *s)
{
	for (size_t i = 0; i < sizeof(s->digest); i++)
		s->digest[i] = (uint8_t)(i * 7 + 1);
	memset(s->sig, 0x5a, sizeof(s->sig));
	for (size_t i = 0; i <= WIRE_FILES_MAX; i++) {
		parley__v1__file_digest__init(&s->files[i]);
		snprintf(s->names[i], sizeof(s->names[i]), "file%zu.conf", i);
		s->files[i].name = s->names[i];
		wire_bytes(&s->files[i].sha256, s->digest, WIRE_DIGEST_LEN);
		s->files_p[i] = &s->files[i];
	}
	for (size_t i = 0; i <= WIRE_SEGMENTS_MAX; i++)
		wire_bytes(&s->segs[i], s->digest, WIRE_DIGEST_LEN);
}

static void fill_grant(Parley__V1__Grant *g, const char *ch, const char *a,
		       const char *b, Parley__V1__Direction d, uint64_t ring)
{
	parley__v1__grant__init(g);
	g->channel = (char *)ch;
	g->endpoint_a = (char *)a;
	g->endpoint_b = (char *)b;
	g->direction = d;
	g->ring_bytes = ring;
	g->skip_integrity = false;
}

static void fill_body(struct sample *s)
{
	Parley__V1__PolicyBody *b = &s->body;
	parley__v1__policy_body__init(b);
	b->host = "host-1";
	b->version = 7;
	b->issued_unix_ms = 1700000000000ull;
	fill_grant(&s->grants[0], "telemetry", "ping", "pong",
		   PARLEY__V1__DIRECTION__A_TO_B, 4096);
	fill_grant(&s->grants[1], "control", "pong", "ping",
		   PARLEY__V1__DIRECTION__BOTH, 16u << 20);
	fill_grant(&s->grants[2], "logs.v2", "mon", "ping",
		   PARLEY__V1__DIRECTION__B_TO_A, 64 * 1024);
	s->grants[2].skip_integrity = true;
	for (size_t i = 0; i <= WIRE_GRANTS_MAX; i++)
		s->grants_p[i] = &s->grants[i < 3 ? i : 0];
	b->n_grants = 3;
	b->grants = s->grants_p;
	static const char *const parts[] = { "ping", "pong" };
	for (size_t i = 0; i < 2; i++) {
		Parley__V1__Baseline *bl = &s->baselines[i];
		parley__v1__baseline__init(bl);
		bl->partition = (char *)parts[i];
		wire_bytes(&bl->digest, s->digest, WIRE_DIGEST_LEN);
		bl->n_files = 2;
		bl->files = s->files_p;
		bl->n_segments = 2;
		bl->segments = s->segs;
		bl->golden = i == 1;
	}
	for (size_t i = 0; i <= WIRE_BASELINES_MAX; i++)
		s->baselines_p[i] = &s->baselines[i < 2 ? i : 0];
	b->n_baselines = 2;
	b->baselines = s->baselines_p;
}

/* Pack s->body into the bundle (again, after a change to the body). */
static void pack_body(struct sample *s)
{
	free(s->body_bytes);
	size_t n = parley__v1__policy_body__get_packed_size(&s->body);
	s->body_bytes = malloc(n ? n : 1);
	cr_assert_not_null(s->body_bytes);
	parley__v1__policy_body__pack(&s->body, s->body_bytes);
	wire_bytes(&s->bundle.body, s->body_bytes, n);
}

static void fill_link(struct sample *s)
{
	parley__v1__hello__init(&s->hello);
	s->hello.host = "host-1";
	s->hello.policy_version = 6;
	s->hello.agent_version = "parley-agent 0.1 (überbuild)";
	s->hello.next_seq = 1;
	parley__v1__welcome__init(&s->welcome);
	s->welcome.host = "host-1";
	s->welcome.policy_version = 7;
	s->welcome.acked_seq = 41;
	s->welcome.heartbeat_ms = 5000;
	parley__v1__policy_bundle__init(&s->bundle);
	pack_body(s);
	wire_bytes(&s->bundle.signature, s->sig, WIRE_SIG_LEN);
	s->bundle.key_id = (char *)key_id;
	parley__v1__policy_ack__init(&s->policy_ack);
	s->policy_ack.version = 7;
	s->policy_ack.ok = true;
	parley__v1__ack__init(&s->ack);
	s->ack.seq = 42;
	parley__v1__heartbeat__init(&s->heartbeat);
	s->heartbeat.sent_unix_ms = 1700000000123ull;
	parley__v1__error__init(&s->error);
	s->error.code = "NOT_YOUR_HOST";
	s->error.message = "partition \"x\" belongs to host-2";
}

static void fill_records(struct sample *s)
{
	parley__v1__measurement_report__init(&s->report);
	for (size_t i = 0; i < 2; i++) {
		Parley__V1__Measurement *m = &s->meas[i];
		parley__v1__measurement__init(m);
		m->seq = 10 + i;
		m->partition = i ? "pong" : "ping";
		wire_bytes(&m->digest, s->digest, WIRE_DIGEST_LEN);
		m->n_files = 2;
		m->files = s->files_p;
		m->n_segments = 1;
		m->segments = s->segs;
		m->time_unix_ms = 1700000000000ull + i;
	}
	for (size_t i = 0; i <= WIRE_BATCH_MAX; i++) {
		s->meas_p[i] = &s->meas[i < 2 ? i : 0];
		s->events_p[i] = &s->events[i < 4 ? i : 0];
	}
	s->report.n_measurements = 2;
	s->report.measurements = s->meas_p;
	parley__v1__audit_batch__init(&s->audit);
	static const char *const ev[] = { "chan_open", "chan_deny",
					  "quarantine", "agent_start" };
	for (size_t i = 0; i < 4; i++) {
		Parley__V1__AuditEvent *a = &s->events[i];
		parley__v1__audit_event__init(a);
		a->seq = 20 + 2 * i;
		a->time_unix_ms = 1700000000000ull + i;
		a->event = (char *)ev[i];
	}
	s->events[0].partition = "ping";
	s->events[0].channel = "telemetry";
	s->events[1].partition = "pong";
	s->events[1].channel = "control";
	s->events[1].reason = "INTEGRITY";
	s->events[1].file = "app.conf";
	s->events[1].detail = "sha256 changed: 3f…a1 → 77…02";
	s->events[2].partition = "pong";
	s->events[2].reason = "INTEGRITY";
	s->audit.n_events = 4;
	s->audit.events = s->events_p;
}

static void fill_partition(struct sample *s)
{
	parley__v1__partition_command__init(&s->command);
	s->command.partition = "ping";
	s->command.action = PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE;
	s->command.spec_json = "{\"name\":\"ping\",\"image\":\"ping.elf\"}";
	parley__v1__partition_status__init(&s->status);
	s->status.seq = 30;
	s->status.partition = "ping";
	s->status.state = "stopped";
	s->status.reason = "triple fault at rip 0x401000";
	s->status.exit_code = -1;
	s->status.time_unix_ms = 1700000000456ull;
	for (unsigned i = 0; i <= WIRE_DEVICES_MAX; i++) {
		parley__v1__device_state__init(&s->devs[i]);
		s->devs[i].device = i ? "data" : "console";
		s->devs[i].plugin = i == 0 ? "console" : i == 1 ? "file" : "xts";
		s->devs[i].state = "torn-down";
		s->devs_p[i] = &s->devs[i];
	}
	s->status.devices = s->devs_p;
	s->status.n_devices = 3;
}

static void set_body(struct sample *s, Parley__V1__Envelope__BodyCase c)
{
	s->env.body_case = c;
	switch (c) {
	case PARLEY__V1__ENVELOPE__BODY_HELLO: s->env.hello = &s->hello; break;
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		s->env.welcome = &s->welcome; break;
	case PARLEY__V1__ENVELOPE__BODY_POLICY: s->env.policy = &s->bundle; break;
	case PARLEY__V1__ENVELOPE__BODY_POLICY_ACK:
		s->env.policy_ack = &s->policy_ack; break;
	case PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS:
		s->env.measurements = &s->report; break;
	case PARLEY__V1__ENVELOPE__BODY_AUDIT: s->env.audit = &s->audit; break;
	case PARLEY__V1__ENVELOPE__BODY_ACK: s->env.ack = &s->ack; break;
	case PARLEY__V1__ENVELOPE__BODY_COMMAND:
		s->env.command = &s->command; break;
	case PARLEY__V1__ENVELOPE__BODY_STATUS: s->env.status = &s->status; break;
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT:
		s->env.heartbeat = &s->heartbeat; break;
	case PARLEY__V1__ENVELOPE__BODY_ERROR: s->env.error = &s->error; break;
	case PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE:
		s->env.command_done = &s->ack; break;
	default: s->env.hello = NULL; break;
	}
}

/* A good envelope carrying body `c` (NOT_SET: none); free with
 * wiretest_sample_free. */
Parley__V1__Envelope *wiretest_sample(Parley__V1__Envelope__BodyCase c)
{
	struct sample *s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	wire_init_envelope(&s->env, 1000 + (uint64_t)c);
	fill_digests(s);
	fill_body(s);
	fill_link(s);
	fill_records(s);
	fill_partition(s);
	set_body(s, c);
	return &s->env;
}

void wiretest_sample_free(Parley__V1__Envelope *e)
{
	struct sample *s = (struct sample *)e;
	if (!s)
		return;
	free(s->body_bytes);
	free(s);
}

/* ---- good envelopes --------------------------------------------------- */

Test(wire, every_sample_passes)
{
	for (size_t i = 0; i < wiretest_nbodies; i++) {
		Parley__V1__Envelope *e = wiretest_sample(wiretest_bodies[i]);
		struct parley_err err = { 0 };
		int rc = wire_check(e, &err);
		cr_expect_eq(rc, 0, "%s: %d %s",
			     wire_body_name(wiretest_bodies[i]), rc, err.msg);
		wiretest_sample_free(e);
	}
	expect_no_leaks();
}

Test(wire, limits_accepted)
{
	Parley__V1__Envelope *e = wiretest_sample(0);
	struct sample *s = (struct sample *)e;
	struct parley_err err = { 0 };
	/* Every bound is inclusive. */
	s->report.n_measurements = 1;
	s->meas[0].n_files = WIRE_FILES_MAX;
	s->meas[0].n_segments = WIRE_SEGMENTS_MAX;
	set_body(s, PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->audit.n_events = 1;
	s->events[0].detail = big(s, WIRE_DETAIL_MAX);
	set_body(s, PARLEY__V1__ENVELOPE__BODY_AUDIT);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->command.spec_json = big(s, WIRE_SPEC_MAX);
	set_body(s, PARLEY__V1__ENVELOPE__BODY_COMMAND);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->error.message = big(s, WIRE_ERRMSG_MAX);
	s->error.code = "E";
	set_body(s, PARLEY__V1__ENVELOPE__BODY_ERROR);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->hello.host = big(s, WIRE_NAME_MAX - 1);
	static char *names[WIRE_HELLO_PARTS_MAX];
	for (int i = 0; i < WIRE_HELLO_PARTS_MAX; i++)
		names[i] = big(s, WIRE_NAME_MAX - 1);
	s->hello.partitions_listed = true;
	s->hello.n_partitions = WIRE_HELLO_PARTS_MAX;
	s->hello.partitions = names;
	set_body(s, PARLEY__V1__ENVELOPE__BODY_HELLO);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->welcome.heartbeat_ms = WIRE_HEARTBEAT_MAX_MS;
	set_body(s, PARLEY__V1__ENVELOPE__BODY_WELCOME);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	/* A refused bundle may not know its version; an ack of 0 is "none". */
	s->policy_ack.ok = false;
	s->policy_ack.version = 0;
	s->policy_ack.error = "signature does not verify";
	set_body(s, PARLEY__V1__ENVELOPE__BODY_POLICY_ACK);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	s->ack.seq = 0;
	set_body(s, PARLEY__V1__ENVELOPE__BODY_ACK);
	cr_expect_eq(wire_check(e, &err), 0, "%s", err.msg);
	/* Every action but CREATE, without a spec; each of them, and
	 * CREATE, for an agent's VM too. */
	s->command.spec_json = NULL;
	set_body(s, PARLEY__V1__ENVELOPE__BODY_COMMAND);
	for (int a = 1; a <= 3; a++) {
		s->command.action = a;
		cr_expect_eq(wire_check(e, &err), 0, "action %d: %s", a,
			     err.msg);
		s->command.vm = true;
		cr_expect_eq(wire_check(e, &err), 0, "vm action %d: %s", a,
			     err.msg);
		s->command.vm = false;
	}
	s->command.action = PARLEY__V1__PARTITION_COMMAND__ACTION__CREATE;
	s->command.spec_json = "{\"kind\":\"vm\",\"name\":\"ping\"}";
	s->command.vm = true;
	cr_expect_eq(wire_check(e, &err), 0, "vm create: %s", err.msg);
	s->command.vm = false;
	wiretest_sample_free(e);
	expect_no_leaks();
}

Test(wire, policy_body_limits_accepted)
{
	Parley__V1__Envelope *e = wiretest_sample(0);
	struct sample *s = (struct sample *)e;
	struct parley_err err = { 0 };
	/* 4096 grants, all different: give each its own channel name. */
	static Parley__V1__Grant g[WIRE_GRANTS_MAX];
	static char ch[WIRE_GRANTS_MAX][16];
	for (size_t i = 0; i < WIRE_GRANTS_MAX; i++) {
		snprintf(ch[i], sizeof(ch[i]), "ch%zu", i);
		fill_grant(&g[i], ch[i], "ping", "pong",
			   PARLEY__V1__DIRECTION__BOTH, 4096);
		s->grants_p[i] = &g[i];
	}
	s->body.n_grants = WIRE_GRANTS_MAX;
	s->body.n_baselines = 0;
	cr_expect_eq(wire_check_policy_body(&s->body, NULL, &err), 0, "%s",
		     err.msg);
	pack_body(s);
	Parley__V1__PolicyBody *b = NULL;
	int rc = wire_body_decode(&s->bundle.body, &b, &err);
	cr_assert_eq(rc, 0, "%d %s", rc, err.msg);
	cr_expect_eq(b->n_grants, WIRE_GRANTS_MAX);
	cr_expect_str_eq(b->grants[4095]->channel, "ch4095");
	parley__v1__policy_body__free_unpacked(b, NULL);
	wiretest_sample_free(e);
	expect_no_leaks();
}

Test(wire, body_decode_round_trip)
{
	Parley__V1__Envelope *e = wiretest_sample(PARLEY__V1__ENVELOPE__BODY_POLICY);
	struct parley_err err = { 0 };
	Parley__V1__PolicyBody *b = NULL;
	int rc = wire_body_decode(&e->policy->body, &b, &err);
	cr_assert_eq(rc, 0, "%d %s", rc, err.msg);
	cr_expect_str_eq(b->host, "host-1");
	cr_expect_eq(b->version, 7);
	cr_assert_eq(b->n_grants, 3);
	cr_expect_str_eq(b->grants[2]->channel, "logs.v2");
	cr_expect_eq(b->grants[2]->direction, PARLEY__V1__DIRECTION__B_TO_A);
	cr_expect(b->grants[2]->skip_integrity);
	cr_assert_eq(b->n_baselines, 2);
	cr_expect_str_eq(b->baselines[1]->partition, "pong");
	cr_expect(b->baselines[1]->golden);
	cr_assert_eq(b->baselines[1]->n_files, 2);
	cr_expect_str_eq(b->baselines[1]->files[1]->name, "file1.conf");
	cr_expect_eq(b->baselines[1]->files[1]->sha256.len, 32);
	cr_expect_eq(b->baselines[1]->n_segments, 2);
	parley__v1__policy_body__free_unpacked(b, NULL);
	wiretest_sample_free(e);
	expect_no_leaks();
}

Test(wire, body_decode_refusals)
{
	struct parley_err err = { 0 };
	Parley__V1__PolicyBody *b = (void *)1;
	ProtobufCBinaryData d;
	/* Too big, refused before a byte of it is read. */
	wire_bytes(&d, NULL, WIRE_POLICY_BODY_MAX + 1);
	cr_expect_eq(wire_body_decode(&d, &b, &err), -EMSGSIZE);
	cr_expect_null(b);
	cr_expect(strstr(err.msg, "policy.body: 1048577 bytes"), "%s", err.msg);
	/* Not a PolicyBody: a truncated varint, a bad wire type. */
	static const uint8_t junk[] = { 0x10, 0xff, 0xff };
	wire_bytes(&d, junk, sizeof(junk));
	cr_expect_eq(wire_body_decode(&d, &b, &err), -EBADMSG);
	cr_expect_null(b);
	static const uint8_t badtype[] = { 0x0d, 1, 2, 3, 4 }; /* host as fixed32 */
	wire_bytes(&d, badtype, sizeof(badtype));
	cr_expect_eq(wire_body_decode(&d, &b, &err), -EBADMSG);
	/* Field number 0 as an overlong tag: protobuf-c keeps it, we do not. */
	static const uint8_t tag0[] = { 0x80, 0x00, 0x07 };
	wire_bytes(&d, tag0, sizeof(tag0));
	cr_expect_eq(wire_body_decode(&d, &b, &err), -EBADMSG);
	cr_expect(strstr(err.msg, "PolicyBody: field number 0"), "%s", err.msg);
	cr_expect_null(b);
	/* Empty: a PolicyBody of defaults, whose host is missing. */
	wire_bytes(&d, NULL, 0);
	cr_expect_eq(wire_body_decode(&d, &b, &err), -EINVAL);
	cr_expect(strstr(err.msg, "policy.body.host: missing"), "%s", err.msg);
	cr_expect_null(b);
	expect_no_leaks();
}

/* ---- the hostile table ------------------------------------------------ */

typedef void (*spoil_fn)(struct sample *s);

struct hostile {
	const char *what;
	Parley__V1__Envelope__BodyCase body; /* POLICY + in_body: PolicyBody */
	bool in_body;
	bool not_on_wire; /* cannot be packed as it stands (NULL pointers) */
	spoil_fn spoil;
	int code;
	const char *msg;
};

#define SPOIL(name, ...) \
	static void name(struct sample *s) { (void)s; __VA_ARGS__; }

/* hello, welcome */
SPOIL(hello_host_slash, s->hello.host = "a/b")
SPOIL(hello_host_empty, s->hello.host = "")
SPOIL(hello_host_null, s->hello.host = NULL)
SPOIL(hello_host_64, s->hello.host = big(s, 64))
SPOIL(hello_host_dot, s->hello.host = ".hidden")
SPOIL(hello_host_space, s->hello.host = "host 1")
SPOIL(hello_version_65, s->hello.agent_version = big(s, 65))
SPOIL(hello_version_esc, s->hello.agent_version = "v1\x1b[31m")
SPOIL(hello_version_c1, s->hello.agent_version = "v1\xc2\x9b" "31m")
SPOIL(hello_version_utf8, s->hello.agent_version = "v1\xff")
SPOIL(hello_version_overlong, s->hello.agent_version = "\xc0\xaf")
SPOIL(hello_version_surrogate, s->hello.agent_version = "\xed\xa0\x80")
SPOIL(hello_version_cut, s->hello.agent_version = "v\xe2\x82")
SPOIL(hello_seq_0, s->hello.next_seq = 0)
static char *hello_names[WIRE_HELLO_PARTS_MAX + 1];
SPOIL(hello_parts_unlisted, s->hello.n_partitions = 1;
      hello_names[0] = "a"; s->hello.partitions = hello_names)
SPOIL(hello_parts_bad_name, s->hello.partitions_listed = true;
      s->hello.n_partitions = 2; hello_names[0] = "a";
      hello_names[1] = "../b"; s->hello.partitions = hello_names)
SPOIL(hello_parts_null_name, s->hello.partitions_listed = true;
      s->hello.n_partitions = 1; hello_names[0] = NULL;
      s->hello.partitions = hello_names)
SPOIL(hello_parts_too_many, s->hello.partitions_listed = true;
      s->hello.n_partitions = WIRE_HELLO_PARTS_MAX + 1;
      for (int i = 0; i <= WIRE_HELLO_PARTS_MAX; i++) hello_names[i] = "a";
      s->hello.partitions = hello_names)
SPOIL(welcome_hb_0, s->welcome.heartbeat_ms = 0)
SPOIL(welcome_hb_9, s->welcome.heartbeat_ms = WIRE_HEARTBEAT_MIN_MS - 1)
SPOIL(welcome_hb_big, s->welcome.heartbeat_ms = WIRE_HEARTBEAT_MAX_MS + 1)
SPOIL(welcome_host, s->welcome.host = "-x")
/* policy bundle */
SPOIL(sig_63, s->bundle.signature.len = 63)
SPOIL(sig_65, s->bundle.signature.len = 65)
SPOIL(sig_0, wire_bytes(&s->bundle.signature, NULL, 0))
SPOIL(key_id_upper, s->bundle.key_id = "0123456789ABCDEF0123456789abcdef"
					"0123456789abcdef0123456789abcdef")
SPOIL(key_id_short, s->bundle.key_id = "0123456789abcdef")
SPOIL(key_id_none, s->bundle.key_id = "")
SPOIL(bundle_no_body, wire_bytes(&s->bundle.body, NULL, 0))
/* policy ack */
SPOIL(ack_ok_v0, s->policy_ack.version = 0)
SPOIL(ack_ok_error, s->policy_ack.error = "but")
SPOIL(ack_fail_silent, s->policy_ack.ok = false)
SPOIL(ack_error_513, s->policy_ack.ok = false;
      s->policy_ack.error = big(s, 513))
/* measurements */
SPOIL(meas_empty, s->report.n_measurements = 0)
SPOIL(meas_1025, s->report.n_measurements = WIRE_BATCH_MAX + 1)
SPOIL(meas_seq_0, s->meas[1].seq = 0)
SPOIL(meas_seq_back, s->meas[1].seq = s->meas[0].seq)
SPOIL(meas_part, s->meas[0].partition = "pi ng")
SPOIL(meas_part_none, s->meas[0].partition = "")
SPOIL(meas_digest_31, s->meas[0].digest.len = 31)
SPOIL(meas_digest_0, wire_bytes(&s->meas[0].digest, NULL, 0))
SPOIL(meas_file_sha_33, s->files[1].sha256.len = 33)
SPOIL(meas_files_33, s->meas[0].n_files = WIRE_FILES_MAX + 1)
SPOIL(meas_files_dup, s->files[1].name = s->names[0])
SPOIL(meas_file_slash, s->files[0].name = "../etc/passwd")
SPOIL(meas_file_ctl, s->files[0].name = "a\tb")
SPOIL(meas_file_none, s->files[0].name = "")
SPOIL(meas_segs_17, s->meas[0].n_segments = WIRE_SEGMENTS_MAX + 1)
SPOIL(meas_seg_16, s->segs[0].len = 16)
SPOIL(meas_null, s->meas_p[1] = NULL)
/* audit */
SPOIL(audit_empty, s->audit.n_events = 0)
SPOIL(audit_1025, s->audit.n_events = WIRE_BATCH_MAX + 1)
SPOIL(audit_part, s->events[3].partition = "a/b")
SPOIL(audit_chan, s->events[0].channel = big(s, 64))
SPOIL(audit_event_none, s->events[0].event = "")
SPOIL(audit_event_space, s->events[0].event = "chan open")
SPOIL(audit_event_65, s->events[0].event = big(s, 65))
SPOIL(audit_reason_65, s->events[1].reason = big(s, 65))
SPOIL(audit_reason_nl, s->events[1].reason = "INTEGRITY\nfake log line")
SPOIL(audit_detail_257, s->events[1].detail = big(s, 257))
SPOIL(audit_file_slash, s->events[1].file = "/etc/shadow")
SPOIL(audit_seq_back, s->events[2].seq = 1)
SPOIL(audit_seq_0, s->events[0].seq = 0)
/* command */
SPOIL(cmd_action_5, s->command.action = 5)
SPOIL(cmd_action_neg, s->command.action = -1)
SPOIL(cmd_part, s->command.partition = "")
SPOIL(cmd_create_no_spec, s->command.spec_json = "")
SPOIL(cmd_stop_spec, s->command.action =
      PARLEY__V1__PARTITION_COMMAND__ACTION__STOP)
SPOIL(cmd_spec_big, s->command.spec_json = big(s, WIRE_SPEC_MAX + 1))
SPOIL(cmd_vm_measure, (s->command.action =
		       PARLEY__V1__PARTITION_COMMAND__ACTION__MEASURE,
		       s->command.vm = true))
/* status */
SPOIL(status_state, s->status.state = "zombie")
SPOIL(status_dev_state, s->devs[1].state = "zombie")
SPOIL(status_dev_state_none, s->devs[2].state = "none")
SPOIL(status_dev_name, s->devs[1].device = "a/b")
SPOIL(status_dev_plugin_none, s->devs[0].plugin = "")
SPOIL(status_dev_twice, s->devs[2].plugin = "file")
SPOIL(status_devs_18, s->status.n_devices = WIRE_DEVICES_MAX + 1)
SPOIL(status_state_none, s->status.state = "")
SPOIL(status_seq_0, s->status.seq = 0)
SPOIL(status_reason_nl, s->status.reason = "stopped\r\n")
SPOIL(status_reason_65, s->status.reason = big(s, 65))
SPOIL(status_part, s->status.partition = "..")
/* error */
SPOIL(error_code_none, s->error.code = "")
SPOIL(error_code_space, s->error.code = "NOT YOURS")
SPOIL(error_msg_513, s->error.message = big(s, 513))
/* envelope */
SPOIL(env_no_body, set_body(s, PARLEY__V1__ENVELOPE__BODY__NOT_SET))
SPOIL(env_case_99, s->env.body_case = 99; s->env.hello = &s->hello)
SPOIL(env_case_null, s->env.hello = NULL)
/* PolicyBody */
SPOIL(body_version_0, s->body.version = 0)
SPOIL(body_host, s->body.host = "host/1")
SPOIL(body_host_none, s->body.host = "")
SPOIL(grant_channel, s->grants[1].channel = "a b")
SPOIL(grant_channel_64, s->grants[1].channel = big(s, 64))
SPOIL(grant_ep_a, s->grants[0].endpoint_a = "")
SPOIL(grant_ep_b, s->grants[0].endpoint_b = "-p")
SPOIL(grant_same_ends, s->grants[0].endpoint_b = "ping")
SPOIL(cdone_seq_0, s->ack.seq = 0)
SPOIL(cdone_seq_big, s->ack.seq = (uint64_t)INT64_MAX + 1)
SPOIL(cdone_seq_max, s->ack.seq = UINT64_MAX)
SPOIL(grant_dir_3, s->grants[0].direction = 3)
SPOIL(grant_dir_neg, s->grants[0].direction = -2)
SPOIL(grant_ring_3000, s->grants[0].ring_bytes = 3000)
SPOIL(grant_ring_2k, s->grants[0].ring_bytes = 2048)
SPOIL(grant_ring_32m, s->grants[0].ring_bytes = 32u << 20)
SPOIL(grant_ring_0, s->grants[0].ring_bytes = 0)
SPOIL(grant_dup, s->grants[2].channel = "telemetry")
SPOIL(grants_4097, s->body.n_grants = WIRE_GRANTS_MAX + 1)
SPOIL(base_digest_0, wire_bytes(&s->baselines[0].digest, NULL, 0))
SPOIL(base_dup, s->baselines[1].partition = "ping")
SPOIL(base_1025, s->body.n_baselines = WIRE_BASELINES_MAX + 1)
SPOIL(base_file_sha, s->files[0].sha256.len = 20)
SPOIL(base_files_33, s->baselines[1].n_files = WIRE_FILES_MAX + 1)
SPOIL(base_seg, s->segs[1].len = 64)
SPOIL(base_segs_17, s->baselines[0].n_segments = WIRE_SEGMENTS_MAX + 1)

#define HELLO PARLEY__V1__ENVELOPE__BODY_HELLO
#define WELCOME PARLEY__V1__ENVELOPE__BODY_WELCOME
#define POLICY PARLEY__V1__ENVELOPE__BODY_POLICY
#define PACK PARLEY__V1__ENVELOPE__BODY_POLICY_ACK
#define MEAS PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS
#define AUDIT PARLEY__V1__ENVELOPE__BODY_AUDIT
#define CMD PARLEY__V1__ENVELOPE__BODY_COMMAND
#define STATUS PARLEY__V1__ENVELOPE__BODY_STATUS
#define ERROR PARLEY__V1__ENVELOPE__BODY_ERROR
#define CDONE PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE

/* An envelope row, a row that cannot be packed, a PolicyBody row. */
#define E(b, fn, code, msg) { #fn, b, false, false, fn, code, msg }
#define N(b, fn, code, msg) { #fn, b, false, true, fn, code, msg }
#define B(fn, code, msg) { #fn, POLICY, true, false, fn, code, msg }

static const struct hostile hostile[] = {
	E(HELLO, hello_host_slash, -EINVAL,
	  "hello.host: \"a/b\" is not a valid name"),
	E(HELLO, hello_host_empty, -EINVAL, "hello.host: missing"),
	E(HELLO, hello_host_null, -EINVAL, "hello.host: missing"),
	E(HELLO, hello_host_64, -EINVAL, "hello.host: \"xxxx"),
	E(HELLO, hello_host_dot, -EINVAL,
	  "hello.host: \".hidden\" is not a valid name"),
	E(HELLO, hello_host_space, -EINVAL, "hello.host: \"host 1\" is not"),
	E(HELLO, hello_version_65, -EINVAL,
	  "hello.agent_version: 65 bytes, at most 64"),
	E(HELLO, hello_version_esc, -EINVAL,
	  "hello.agent_version: control character U+001B at offset 2"),
	E(HELLO, hello_version_c1, -EINVAL,
	  "hello.agent_version: control character U+009B at offset 2"),
	E(HELLO, hello_version_utf8, -EINVAL,
	  "hello.agent_version: invalid UTF-8 at offset 2"),
	E(HELLO, hello_version_overlong, -EINVAL,
	  "hello.agent_version: invalid UTF-8 at offset 0"),
	E(HELLO, hello_version_surrogate, -EINVAL,
	  "hello.agent_version: invalid UTF-8 at offset 0"),
	E(HELLO, hello_version_cut, -EINVAL,
	  "hello.agent_version: invalid UTF-8 at offset 1"),
	E(HELLO, hello_seq_0, -EINVAL, "hello.next_seq: 0"),
	E(HELLO, hello_parts_unlisted, -EINVAL,
	  "hello.partitions without partitions_listed"),
	E(HELLO, hello_parts_bad_name, -EINVAL,
	  "hello.partitions: \"../b\" is not a valid name"),
	N(HELLO, hello_parts_null_name, -EINVAL, "hello.partitions: missing"),
	E(HELLO, hello_parts_too_many, -E2BIG,
	  "hello.partitions: 1025, at most 1024"),
	E(WELCOME, welcome_hb_0, -EINVAL,
	  "welcome.heartbeat_ms: 0 is outside 10..3600000"),
	E(WELCOME, welcome_hb_9, -EINVAL, "welcome.heartbeat_ms: 9 is outside"),
	E(WELCOME, welcome_hb_big, -EINVAL,
	  "welcome.heartbeat_ms: 3600001 is outside"),
	E(WELCOME, welcome_host, -EINVAL,
	  "welcome.host: \"-x\" is not a valid name"),
	E(POLICY, sig_63, -EINVAL, "policy.signature: 63 bytes, want 64"),
	E(POLICY, sig_65, -EINVAL, "policy.signature: 65 bytes, want 64"),
	E(POLICY, sig_0, -EINVAL, "policy.signature: 0 bytes, want 64"),
	E(POLICY, key_id_upper, -EINVAL,
	  "policy.key_id: byte 10 is not a lower-case hex digit"),
	E(POLICY, key_id_short, -EINVAL,
	  "policy.key_id: 16 characters, want 64 hex digits"),
	E(POLICY, key_id_none, -EINVAL, "policy.key_id: 0 characters"),
	E(POLICY, bundle_no_body, -EINVAL, "policy.body: missing"),
	E(PACK, ack_ok_v0, -EINVAL, "policy_ack.version: 0 in an ok ack"),
	E(PACK, ack_ok_error, -EINVAL, "policy_ack.error: set in an ok ack"),
	E(PACK, ack_fail_silent, -EINVAL, "policy_ack.error: missing"),
	E(PACK, ack_error_513, -EINVAL,
	  "policy_ack.error: 513 bytes, at most 512"),
	E(MEAS, meas_empty, -EINVAL, "measurements.measurements: empty batch"),
	E(MEAS, meas_1025, -E2BIG,
	  "measurements.measurements: 1025 entries, at most 1024"),
	E(MEAS, meas_seq_0, -EINVAL, "measurements.measurements[1].seq: 0"),
	E(MEAS, meas_seq_back, -EINVAL,
	  "measurements.measurements[1].seq: 10 after 10"),
	E(MEAS, meas_part, -EINVAL,
	  "measurements.measurements[0].partition: \"pi ng\" is not a valid"),
	E(MEAS, meas_part_none, -EINVAL,
	  "measurements.measurements[0].partition: missing"),
	E(MEAS, meas_digest_31, -EINVAL,
	  "measurements.measurements[0].digest: 31 bytes, want 32"),
	E(MEAS, meas_digest_0, -EINVAL,
	  "measurements.measurements[0].digest: 0 bytes, want 32"),
	E(MEAS, meas_file_sha_33, -EINVAL,
	  "measurements.measurements[0].files[1].sha256: 33 bytes, want 32"),
	E(MEAS, meas_files_33, -E2BIG,
	  "measurements.measurements[0].files: 33 entries, at most 32"),
	E(MEAS, meas_files_dup, -EEXIST,
	  "measurements.measurements[0].files[1]: duplicate \"file0.conf\" "
	  "(also [0])"),
	E(MEAS, meas_file_slash, -EINVAL,
	  "measurements.measurements[0].files[0].name: \"../etc/passwd\" is "
	  "not a file name"),
	E(MEAS, meas_file_ctl, -EINVAL,
	  "measurements.measurements[0].files[0].name: \"a\\x09b\" is not"),
	E(MEAS, meas_file_none, -EINVAL,
	  "measurements.measurements[0].files[0].name: 0 bytes, must be 1..63"),
	E(MEAS, meas_segs_17, -E2BIG,
	  "measurements.measurements[0].segments: 17 entries, at most 16"),
	E(MEAS, meas_seg_16, -EINVAL,
	  "measurements.measurements[0].segments[0]: 16 bytes, want 32"),
	N(MEAS, meas_null, -EINVAL, "measurements.measurements[1]: missing"),
	E(AUDIT, audit_empty, -EINVAL, "audit.events: empty batch"),
	E(AUDIT, audit_1025, -E2BIG, "audit.events: 1025 entries, at most 1024"),
	E(AUDIT, audit_part, -EINVAL,
	  "audit.events[3].partition: \"a/b\" is not a valid name"),
	E(AUDIT, audit_chan, -EINVAL, "audit.events[0].channel: \"xxx"),
	E(AUDIT, audit_event_none, -EINVAL, "audit.events[0].event: missing"),
	E(AUDIT, audit_event_space, -EINVAL,
	  "audit.events[0].event: \"chan open\" is not a token"),
	E(AUDIT, audit_event_65, -EINVAL, "audit.events[0].event: \"xxx"),
	E(AUDIT, audit_reason_65, -EINVAL,
	  "audit.events[1].reason: 65 bytes, at most 64"),
	E(AUDIT, audit_reason_nl, -EINVAL,
	  "audit.events[1].reason: control character U+000A at offset 9"),
	E(AUDIT, audit_detail_257, -EINVAL,
	  "audit.events[1].detail: 257 bytes, at most 256"),
	E(AUDIT, audit_file_slash, -EINVAL,
	  "audit.events[1].file: \"/etc/shadow\" is not a file name"),
	E(AUDIT, audit_seq_back, -EINVAL, "audit.events[2].seq: 1 after 22"),
	E(AUDIT, audit_seq_0, -EINVAL, "audit.events[0].seq: 0"),
	E(CMD, cmd_action_5, -EINVAL,
	  "command.action: 5 is not CREATE, START, STOP, DESTROY or MEASURE"),
	E(CMD, cmd_action_neg, -EINVAL, "command.action: -1 is not"),
	E(CMD, cmd_part, -EINVAL, "command.partition: missing"),
	E(CMD, cmd_create_no_spec, -EINVAL,
	  "command.spec_json: missing for CREATE or MEASURE"),
	E(CMD, cmd_stop_spec, -EINVAL,
	  "command.spec_json: only CREATE and MEASURE take a spec"),
	E(CMD, cmd_spec_big, -EINVAL,
	  "command.spec_json: 65537 bytes, at most 65536"),
	E(CMD, cmd_vm_measure, -EINVAL, "command.vm: a libvirt partition"),
	E(STATUS, status_state, -EINVAL,
	  "status.state: \"zombie\" is not created, starting, running, "
	  "paused, stopped or destroyed"),
	E(STATUS, status_state_none, -EINVAL, "status.state: \"\" is not"),
	E(STATUS, status_dev_state, -EINVAL,
	  "status.devices[1].state: \"zombie\" is not a device state"),
	E(STATUS, status_dev_state_none, -EINVAL,
	  "status.devices[2].state: \"none\" is not a device state"),
	E(STATUS, status_dev_name, -EINVAL,
	  "status.devices[1].device: \"a/b\" is not a valid name"),
	E(STATUS, status_dev_plugin_none, -EINVAL,
	  "status.devices[0].plugin: missing"),
	E(STATUS, status_dev_twice, -EINVAL,
	  "status.devices[2]: device data (plugin file) twice"),
	E(STATUS, status_devs_18, -EINVAL, "status.devices: 18, at most 17"),
	E(STATUS, status_seq_0, -EINVAL, "status.seq: 0"),
	E(STATUS, status_reason_nl, -EINVAL,
	  "status.reason: control character U+000D at offset 7"),
	E(STATUS, status_reason_65, -EINVAL,
	  "status.reason: 65 bytes, at most 64"),
	E(STATUS, status_part, -EINVAL,
	  "status.partition: \"..\" is not a valid name"),
	E(ERROR, error_code_none, -EINVAL, "error.code: missing"),
	E(ERROR, error_code_space, -EINVAL,
	  "error.code: \"NOT YOURS\" is not a token"),
	E(ERROR, error_msg_513, -EINVAL,
	  "error.message: 513 bytes, at most 512"),
	/* A confirmed command's id: a store id, 1..INT64_MAX. */
	E(CDONE, cdone_seq_0, -EINVAL, "command_done.seq: 0 is no command id"),
	E(CDONE, cdone_seq_big, -EINVAL,
	  "command_done.seq: 9223372036854775808 is no command id"),
	E(CDONE, cdone_seq_max, -EINVAL,
	  "command_done.seq: 18446744073709551615 is no command id"),
	E(HELLO, env_no_body, -EPROTO, "envelope: no body"),
	N(HELLO, env_case_99, -EPROTO, "envelope: body case 99 is not known"),
	N(HELLO, env_case_null, -EPROTO, "envelope.hello: set but missing"),
	B(body_version_0, -EINVAL,
	  "policy.body.version: 0 (versions start at 1)"),
	B(body_host, -EINVAL,
	  "policy.body.host: \"host/1\" is not a valid name"),
	B(body_host_none, -EINVAL, "policy.body.host: missing"),
	B(grant_channel, -EINVAL,
	  "policy.body.grants[1].channel: \"a b\" is not a valid name"),
	B(grant_channel_64, -EINVAL, "policy.body.grants[1].channel: \"xxx"),
	B(grant_ep_a, -EINVAL, "policy.body.grants[0].endpoint_a: missing"),
	B(grant_ep_b, -EINVAL,
	  "policy.body.grants[0].endpoint_b: \"-p\" is not a valid name"),
	B(grant_same_ends, -EINVAL,
	  "policy.body.grants[0]: endpoint_a and endpoint_b are both \"ping\""),
	B(grant_dir_3, -EINVAL,
	  "policy.body.grants[0].direction: 3 is not A_TO_B, B_TO_A or BOTH"),
	B(grant_dir_neg, -EINVAL, "policy.body.grants[0].direction: -2 is not"),
	B(grant_ring_3000, -EINVAL,
	  "policy.body.grants[0].ring_bytes: 3000 is not a power of two in "
	  "4K..16M"),
	B(grant_ring_2k, -EINVAL, "policy.body.grants[0].ring_bytes: 2048"),
	B(grant_ring_32m, -EINVAL,
	  "policy.body.grants[0].ring_bytes: 33554432"),
	B(grant_ring_0, -EINVAL, "policy.body.grants[0].ring_bytes: 0 is"),
	B(grant_dup, -EEXIST,
	  "policy.body.grants[2]: duplicate \"telemetry\" (also [0])"),
	B(grants_4097, -E2BIG,
	  "policy.body.grants: 4097 entries, at most 4096"),
	B(base_digest_0, -EINVAL,
	  "policy.body.baselines[0].digest: 0 bytes, want 32"),
	B(base_dup, -EEXIST,
	  "policy.body.baselines[1]: duplicate \"ping\" (also [0])"),
	B(base_1025, -E2BIG,
	  "policy.body.baselines: 1025 entries, at most 1024"),
	B(base_file_sha, -EINVAL,
	  "policy.body.baselines[0].files[0].sha256: 20 bytes, want 32"),
	B(base_files_33, -E2BIG,
	  "policy.body.baselines[1].files: 33 entries, at most 32"),
	B(base_seg, -EINVAL,
	  "policy.body.baselines[0].segments[1]: 64 bytes, want 32"),
	B(base_segs_17, -E2BIG,
	  "policy.body.baselines[0].segments: 17 entries, at most 16"),
};

static void expect_refused(const struct hostile *h, const char *how, int rc,
			   const struct parley_err *err)
{
	cr_expect_eq(rc, h->code, "%s (%s): rc %d, want %d (%s)", h->what, how,
		     rc, h->code, err->msg);
	cr_expect_eq(err->code, rc, "%s (%s): err.code %d", h->what, how,
		     err->code);
	cr_expect(strstr(err->msg, h->msg), "%s (%s): message \"%s\", want "
		  "\"%s\"", h->what, how, err->msg, h->msg);
}

/* The same refusal after a trip through a real frame. */
static void refuse_framed(const struct hostile *h, Parley__V1__Envelope *e)
{
	uint8_t *buf;
	size_t len, used = 7;
	int rc = frame_encode(e, &buf, &len);
	if (h->code == -EPROTO && rc == -EPROTO)
		return; /* no body: refused before it could leave */
	cr_assert_eq(rc, 0, "%s: frame_encode %d", h->what, rc);
	struct parley_err err = { 0 };
	Parley__V1__Envelope *out = (void *)1;
	rc = frame_decode(buf, len, 0, &used, &out, &err);
	expect_refused(h, "framed", rc, &err);
	cr_expect_null(out, "%s: *out set on error", h->what);
	cr_expect_eq(used, 0, "%s: *consumed set on error", h->what);
	free(buf);
}

static void refuse_body(const struct hostile *h, struct sample *s)
{
	struct parley_err err = { 0 };
	int rc = wire_check_policy_body(&s->body, "policy.body", &err);
	expect_refused(h, "wire_check_policy_body", rc, &err);
	pack_body(s);
	Parley__V1__PolicyBody *b = (void *)1;
	memset(&err, 0, sizeof(err));
	rc = wire_body_decode(&s->bundle.body, &b, &err);
	expect_refused(h, "wire_body_decode", rc, &err);
	cr_expect_null(b, "%s: *out set on error", h->what);
}

Test(wire, hostile_table)
{
	size_t n = sizeof(hostile) / sizeof(hostile[0]);
	cr_expect_geq(n, 30);
	for (size_t i = 0; i < n; i++) {
		const struct hostile *h = &hostile[i];
		Parley__V1__Envelope *e = wiretest_sample(h->body);
		struct sample *s = (struct sample *)e;
		h->spoil(s);
		if (h->in_body) {
			refuse_body(h, s);
		} else {
			struct parley_err err = { 0 };
			expect_refused(h, "wire_check", wire_check(e, &err),
				       &err);
			if (!h->not_on_wire)
				refuse_framed(h, e);
		}
		wiretest_sample_free(e);
	}
	expect_no_leaks();
}

/* A message never overflows its buffer and never holds raw hostile bytes. */
Test(wire, messages_quote_hostile_text)
{
	Parley__V1__Envelope *e = wiretest_sample(PARLEY__V1__ENVELOPE__BODY_HELLO);
	struct sample *s = (struct sample *)e;
	struct parley_err err = { 0 };
	memset(s->big, '\x1b', 5000);
	s->big[5000] = '\0';
	s->hello.host = s->big;
	cr_expect_eq(wire_check(e, &err), -EINVAL);
	cr_expect_lt(strlen(err.msg), sizeof(err.msg));
	cr_expect_null(strchr(err.msg, '\x1b'), "%s", err.msg);
	cr_expect(strstr(err.msg, "\\x1b"), "%s", err.msg);
	wiretest_sample_free(e);
	expect_no_leaks();
}

/* ---- helpers ---------------------------------------------------------- */

Test(wire, body_names)
{
	cr_expect_str_eq(wire_body_name(PARLEY__V1__ENVELOPE__BODY__NOT_SET),
			 "none");
	cr_expect_str_eq(wire_body_name(PARLEY__V1__ENVELOPE__BODY_HELLO),
			 "hello");
	cr_expect_str_eq(wire_body_name(PARLEY__V1__ENVELOPE__BODY_POLICY_ACK),
			 "policy_ack");
	cr_expect_str_eq(wire_body_name(PARLEY__V1__ENVELOPE__BODY_ERROR),
			 "error");
	cr_expect_str_eq(wire_body_name(99), "unknown");
	Parley__V1__Envelope e;
	wire_init_envelope(&e, 77);
	cr_expect_eq(e.request_id, 77);
	cr_expect_eq(e.body_case, PARLEY__V1__ENVELOPE__BODY__NOT_SET);
}

Test(wire, grant_model_round_trip)
{
	static const struct grant in[] = {
		{ "telemetry", "ping", "pong", GRANT_A_TO_B, 4096, true },
		{ "back", "pong", "ping", GRANT_B_TO_A, 1u << 20, false },
		{ "both.ways", "a", "b", GRANT_BOTH, 16u << 20, true },
	};
	for (size_t i = 0; i < 3; i++) {
		Parley__V1__Grant w;
		wire_grant_from_model(&w, &in[i]);
		/* Through the wire and back into the model. */
		size_t n = parley__v1__grant__get_packed_size(&w);
		uint8_t buf[256];
		cr_assert_leq(n, sizeof(buf));
		parley__v1__grant__pack(&w, buf);
		Parley__V1__Grant *u = parley__v1__grant__unpack(NULL, n, buf);
		cr_assert_not_null(u);
		struct grant g;
		struct parley_err err = { 0 };
		int rc = wire_grant_to_model(u, NULL, &g, &err);
		cr_expect_eq(rc, 0, "%s", err.msg);
		cr_expect_str_eq(g.channel, in[i].channel);
		cr_expect_str_eq(g.a, in[i].a);
		cr_expect_str_eq(g.b, in[i].b);
		cr_expect_eq(g.dir, in[i].dir);
		cr_expect_eq(g.ring_bytes, in[i].ring_bytes);
		cr_expect_eq(g.require_integrity, in[i].require_integrity);
		parley__v1__grant__free_unpacked(u, NULL);
	}
	expect_no_leaks();
}

Test(wire, grant_to_model_refuses)
{
	Parley__V1__Grant w;
	struct grant g;
	struct parley_err err = { 0 };
	fill_grant(&w, "telemetry", "ping", "ping", PARLEY__V1__DIRECTION__BOTH,
		   4096);
	cr_expect_eq(wire_grant_to_model(&w, NULL, &g, &err), -EINVAL);
	cr_expect(strstr(err.msg, "grant: endpoint_a and endpoint_b are both"),
		  "%s", err.msg);
	cr_expect_eq(g.channel[0], 0, "model zeroed on error");
	fill_grant(&w, "telemetry", "ping", "pong", PARLEY__V1__DIRECTION__BOTH,
		   4097);
	cr_expect_eq(wire_grant_to_model(&w, "grants[5]", &g, &err), -EINVAL);
	cr_expect(strstr(err.msg, "grants[5].ring_bytes: 4097"), "%s", err.msg);
}

/* UpdateRollback (Envelope field 26, daemon -> agent): each hostile field
 * refused by wire_check and again after a trip through a real frame (the
 * agent's reader), with the field named; good ones pass both. */
static int rollback_framed(const char *expect, uint64_t request,
			   struct parley_err *err)
{
	Parley__V1__Envelope e;
	Parley__V1__UpdateRollback m;
	wire_init_envelope(&e, 0);
	parley__v1__update_rollback__init(&m);
	m.expect_version = (char *)(expect ? expect : "");
	m.request = request;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK;
	e.update_rollback = &m;
	int rc = wire_check(&e, err);
	/* Packed as protobuf-c would (frame_encode checks first). */
	size_t len = parley__v1__envelope__get_packed_size(&e);
	uint8_t *buf = malloc(len + 4);
	cr_assert(buf);
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	parley__v1__envelope__pack(&e, buf + 4);
	Parley__V1__Envelope *out = NULL;
	size_t used = 0;
	struct parley_err e2 = { 0 };
	int frc = frame_decode(buf, len + 4, 0, &used, &out, &e2);
	free(buf);
	cr_expect_eq(frc < 0, rc < 0, "framed %d, checked %d: %s / %s", frc,
		     rc, e2.msg, err->msg);
	if (frc > 0) {
		cr_expect_eq(out->body_case,
			     PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK);
		cr_expect_eq(out->update_rollback->request, request);
		parley__v1__envelope__free_unpacked(out, NULL);
	} else {
		cr_expect_null(out);
		cr_expect(strstr(e2.msg, "update_rollback."), "%s", e2.msg);
	}
	return rc;
}

Test(wire, update_rollback_hostile_framed)
{
	struct parley_err err = { 0 };
	cr_expect_eq(rollback_framed("", 1, &err), 0, "%s", err.msg);
	cr_expect_eq(rollback_framed("0.4.0", UINT64_MAX, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(rollback_framed("0.4.0 (36e23e5-dirty)+next", 2, &err),
		     0, "%s", err.msg);
	cr_expect_eq(rollback_framed("", 0, &err), -EINVAL);
	cr_expect(strstr(err.msg, "update_rollback.request"), "%s", err.msg);
	static const char *const bad[] = {
		"x", "0.4", "0.4.0.1", "-1.0.0", "0.4.0\n", "0.4.0 \x7f",
		"0.4.0 \xc3", "999999.0.0",
		"1.2.3 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		cr_expect_eq(rollback_framed(bad[i], 1, &err), -EINVAL, "%s",
			     bad[i]);
		cr_expect(strstr(err.msg, "update_rollback.expect_version"),
			  "%s: %s", bad[i], err.msg);
	}
	cr_expect_str_eq(wire_body_name(
		PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK), "update_rollback");
}
