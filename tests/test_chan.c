/* Attested channels with real partitions under a real grant manager. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ctl/stop.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

#define BOTH(ch, a, b)                                                     \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"
#define ONEWAY(ch, a, b)                                                   \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"a_to_b\",\"ring_bytes\":4096}"
#define GRANTS0 "{\"grants\":[]}"
#define GRANTS(x) "{\"grants\":[" x "]}"
#define GRANTS2(x, y) "{\"grants\":[" x "," y "]}"

static const char *const motd[] = { "motd=hello, operator\n",
				    "app.conf=mode=strict\n", NULL };

#define OUT_HAS(f, s) cr_assert(strstr(t_fleet_out(f), s), "no \"%s\" in:\n%s", s, t_fleet_out(f))
#define AUDIT_HAS(f, s) cr_assert(strstr(t_fleet_audit(f), s), "no %s in audit:\n%s", s, t_fleet_audit(f))

static void done(struct t_fleet *f, int ms)
{
	cr_assert_eq(t_fleet_run(f, ms), 0, "still running:\n%s", t_fleet_out(f));
}

#define exit0(p) exit0_(f_, p)
static void exit0_(struct t_fleet *f, struct partition *p)
{
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s: %s (%s)\n%s", p->name,
		     vmx_stop_name(p->fin.reason), p->fin.detail,
		     t_fleet_out(f));
	cr_assert_eq(p->fin.code, 0, "%s exit %lld\n%s", p->name,
		     (long long)p->fin.code, t_fleet_out(f));
}

T_BACKEND_TEST(chan, ping_pong_100000_messages_with_checksums, .timeout = 120)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("pingpong", "ping", "pong")));
	struct partition *a = t_fleet_add(&f, "ping", "ping.elf", "count=100000",
					  NULL, false, NULL);
	struct partition *b = t_fleet_add(&f, "pong", "pong.elf", "count=100000",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 60000);
	exit0(a);
	exit0(b);
	OUT_HAS(&f, "ping| ping: 100000 messages each way");
	OUT_HAS(&f, "checksums ok");
	OUT_HAS(&f, "pong| pong: 100000 messages checked and answered");
	AUDIT_HAS(&f, "\"event\":\"open_allowed\",\"partition\":\"ping\"");
	t_fleet_free(&f);
}

/* A pong that sleeps in CHAN_WAIT as soon as its ring is empty (spin 0):
 * every message must still wake it (the flag/doorbell handshake with no
 * spin to hide a lost wake-up), and it must really sleep. */
T_BACKEND_TEST(chan, peer_sleeping_at_once_misses_no_message, .timeout = 60)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("pingpong", "ping", "pong")));
	struct partition *a = t_fleet_add(&f, "ping", "ping.elf",
					  "count=2000 window=1", NULL, false,
					  NULL);
	struct partition *b = t_fleet_add(&f, "pong", "pong.elf",
					  "count=2000 sleep_from=0", NULL, false,
					  NULL);
	t_fleet_go(&f);
	done(&f, 45000);
	exit0(a);
	exit0(b);
	const char *out = t_fleet_out(&f);
	const char *s = strstr(out, "pong| pong: 2000 messages checked and "
				    "answered, asleep for ");
	cr_assert(s, "%s", out);
	unsigned slept = (unsigned)strtoul(s + strlen("pong| pong: 2000 "
		"messages checked and answered, asleep for "), NULL, 10);
	/* ping makes each message after the last answer: pong finds an
	 * empty ring nearly every time */
	cr_assert_gt(slept, 1000, "pong slept %u times\n%s", slept, out);
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, no_grant_is_refused_and_audited, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("c1", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
					  "steps=open:c9", NULL, false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=sleep:1", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(a);
	OUT_HAS(&f, "a| open c9 -2 \n");
	AUDIT_HAS(&f, "\"event\":\"open_denied\",\"partition\":\"a\","
		      "\"channel\":\"c9\",\"reason\":\"NO_GRANT\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, peer_not_running_is_peer_down, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("c1", "a", "b")));
	t_fleet_add(&f, "a", "chantest.elf", "steps=open:c1", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	OUT_HAS(&f, "a| open c1 -4 \n");
	AUDIT_HAS(&f, "\"reason\":\"PEER_DOWN\"");
	t_fleet_free(&f);
}

/* A partition that no longer matches its baseline is caught whenever it
 * asks, even for a channel whose peer is not running (integrity is checked
 * for the asker before the peer is looked at). */
T_BACKEND_TEST(chan, tampered_asker_caught_with_peer_down, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("c1", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=tamper:app.conf,open:c1,open:c1", motd, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(a);
	OUT_HAS(&f, "a| open c1 -3 a/app.conf\n");
	OUT_HAS(&f, "a| open c1 -9 \n");
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"a\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	cr_assert_null(strstr(t_fleet_audit(&f), "PEER_DOWN"), "%s",
		       t_fleet_audit(&f));
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, tampered_config_is_integrity_quarantine_and_revoke, .timeout = 60)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS2(BOTH("c1", "a", "b"), BOTH("c2", "b", "a")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,recvall:0", motd, false, NULL);
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
		"steps=open:c1,sleep:50,tamper:app.conf,open:c2,open:c1",
		motd, false, NULL);
	t_fleet_go(&f);
	done(&f, 20000);
	exit0(a);
	exit0(b);
	OUT_HAS(&f, "b| open c2 -3 b/app.conf\n");
	OUT_HAS(&f, "b| open c1 -9 \n");      /* quarantined: no more opens */
	OUT_HAS(&f, "a| closed after 0\n");   /* its channel was revoked */
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"b\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	AUDIT_HAS(&f, "\"event\":\"revoke\",\"channel\":\"c1\","
		      "\"reason\":\"QUARANTINE\"");
	AUDIT_HAS(&f, "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\","
		      "\"detail\":\"b/app.conf\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, rewriting_same_bytes_is_rehashed_and_allowed, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS2(BOTH("c1", "a", "b"), BOTH("c2", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,same:motd,open:c2", motd, false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=sleep:200", motd, false,
		    NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(a);
	OUT_HAS(&f, "a| open c1 0 \n");
	OUT_HAS(&f, "a| open c2 0 \n");
	cr_assert_null(strstr(t_fleet_audit(&f), "INTEGRITY"));
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, one_way_receiver_writing_data_is_stopped, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(ONEWAY("c1", "s", "r")));
	struct partition *s = t_fleet_add(&f, "s", "chantest.elf",
		"steps=open:c1,send:0:10,sleep:500", NULL, false, NULL);
	struct partition *r = t_fleet_add(&f, "r", "chantest.elf",
		"steps=open:c1,recv:0:10,rowrite:0", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(s);
	cr_assert_eq(r->fin.reason, VMX_STOP_READONLY_WRITE, "%s: %s",
		     vmx_stop_name(r->fin.reason), r->fin.detail);
	OUT_HAS(&f, "r| received 10\n");
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, revoke_mid_stream_closes_and_old_window_faults, .timeout = 60)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(ONEWAY("c1", "s", "r")));
	struct partition *s = t_fleet_add(&f, "s", "chantest.elf",
		"steps=open:c1,sendall:0", NULL, false, NULL);
	struct partition *r = t_fleet_add(&f, "r", "chantest.elf",
		"steps=open:c1,recvall:0,touch:0", NULL, false, NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 300), 2, "%s", t_fleet_out(&f));
	t_fleet_set_grants(&f, GRANTS0);
	done(&f, 20000);
	AUDIT_HAS(&f, "\"event\":\"revoke\",\"channel\":\"c1\","
		      "\"reason\":\"GRANT_REMOVED\"");
	cr_assert_eq(r->fin.reason, VMX_STOP_REVOKED_ACCESS, "r: %s (%s)\n%s",
		     vmx_stop_name(r->fin.reason), r->fin.detail,
		     t_fleet_out(&f));
	/* The sender either saw CLOSED while it slept or touched the gone
	 * window while it wrote: both are the revocation working. */
	cr_assert(s->fin.reason == VMX_STOP_REVOKED_ACCESS ||
		  (s->fin.reason == VMX_STOP_EXIT && s->fin.code == 0),
		  "s: %s", vmx_stop_name(s->fin.reason));
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, stale_and_forged_handles_are_bad_handle, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("c1", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,close:0,stale:0", NULL, false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=open:c1,sleep:100", NULL,
		    false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(a);
	OUT_HAS(&f, "a| close 0\n");
	OUT_HAS(&f, "a| stale notify -6\n");
	OUT_HAS(&f, "a| stale wait -6\n");
	OUT_HAS(&f, "a| stale close -6\n");
	OUT_HAS(&f, "a| forged notify -6\n");
	OUT_HAS(&f, "a| doorbell survived\n");
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, scribbled_ring_cannot_hurt_the_agent, .timeout = 90)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS2(BOTH("c1", "a", "b"),
				       BOTH("pingpong", "ping", "pong")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,scribble:0:3000", NULL, false, NULL);
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
		"steps=open:c1,scribble:0:1000,sleep:2000,recvall:0", NULL,
		false, NULL);
	t_fleet_go(&f);
	done(&f, 30000);
	OUT_HAS(&f, "a| scribbled 3000\n");
	/* The scribbler is not stopped for writing its own side of the ring
	 * (the agent does not police ring contents), and its peer survives
	 * it: every index it reads is bounds-checked (DESIGN.md section 5),
	 * so its receive fails with PARLEY_E_INVAL (the SDK's answer to
	 * PARLEY_RING_CORRUPT) or, where the garbage happens to look like a
	 * record or an empty ring, it reads a bad message or waits until the
	 * scribbler's exit closes the channel. Never a fault, never a stop by
	 * the agent: b ends by its own exit. */
	exit0(a);
	cr_assert_eq(b->fin.reason, VMX_STOP_EXIT, "b: %s (%s)\n%s",
		     vmx_stop_name(b->fin.reason), b->fin.detail,
		     t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	const char *failed = strstr(out, "b| recv 0 failed: ");
	cr_assert(failed || strstr(out, "b| closed after ") ||
		  strstr(out, ": bad message\n"),
		  "b's receive did not end as expected:\n%s", out);
	if (failed)
		cr_assert(!strncmp(failed, "b| recv 0 failed: -1\n", 21),
			  "b's receive failed with another code:\n%s", out);
	/* The grant manager still works: a fresh pair talks as before. */
	struct partition *p = t_fleet_add(&f, "ping", "ping.elf", "count=2000",
					  NULL, false, NULL);
	struct partition *q = t_fleet_add(&f, "pong", "pong.elf", "count=2000",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 30000);
	exit0(p);
	exit0(q);
	t_fleet_free(&f);
}

static const char *golden_for(const char *name, const char *file_hex)
{
	static char buf[512];
	snprintf(buf, sizeof(buf),
		 "{\"partitions\":{\"%s\":{\"files\":{\"motd\":\"%s\","
		 "\"app.conf\":\"%s\"}}}}", name, file_hex, file_hex);
	return buf;
}

T_BACKEND_TEST(chan, golden_baseline_mismatch_refuses_start, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, NULL);
	struct baseline_db db = { .mode = BASELINE_GOLDEN };
	const char *doc = golden_for("g", "00000000000000000000000000000000"
					  "00000000000000000000000000000000");
	struct parley_err err = { 0 };
	cr_assert_eq(baseline_parse(&db, doc, strlen(doc), &err), 0, "%s",
		     perr_msg(&err));
	f.db = &db;
	t_fleet_add(&f, "g", "chantest.elf", "", motd, true, &err);
	cr_assert_eq(err.code, -EBADMSG, "%d %s", err.code, err.msg);
	cr_assert(strstr(err.msg, "config file \"motd\" differs"), "%s",
		  err.msg);
	t_fleet_add(&f, "unknown", "chantest.elf", "", motd, true, &err);
	cr_assert(strstr(err.msg, "no golden baseline"), "%s", err.msg);
	baseline_free(&db);
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, enrolled_baseline_then_changed_file_refused, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, NULL);
	char *path;
	cr_assert(asprintf(&path, "%s/baselines.json", f.dir) > 0);
	struct baseline_db db;
	struct parley_err err = { 0 };
	cr_assert_eq(baseline_load(&db, path, BASELINE_ENROLL, &err), 0);
	f.db = &db;
	struct partition *e = t_fleet_add(&f, "e", "chantest.elf", "", motd,
					  false, NULL);
	cr_assert_eq(baseline_save(&db, &err), 0, "%s", perr_msg(&err));
	baseline_free(&db);
	cr_assert_eq(baseline_load(&db, path, BASELINE_GOLDEN, &err), 0, "%s",
		     perr_msg(&err));
	/* The same files start again; a changed one does not. */
	const char *changed[] = { "motd=hello, intruder\n",
				  "app.conf=mode=strict\n", NULL };
	t_fleet_add(&f, "e2", "chantest.elf", "", motd, true, &err);
	cr_assert(strstr(err.msg, "no golden baseline"));
	sup_free(&f.sup); /* e must go before a second "e" may start */
	f.cm.nparts = 0;
	(void)e;
	t_fleet_add(&f, "e", "chantest.elf", "", motd, false, NULL);
	t_fleet_add(&f, "e", "chantest.elf", "", changed, true, &err);
	cr_assert(strstr(err.msg, "config file \"motd\" differs"), "%s",
		  err.msg);
	baseline_free(&db);
	free(path);
	t_fleet_free(&f);
}

static void unreported_write(const char *vmm, bool expect_caught)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, NULL);
	f.vmm = vmm;
	struct partition *p = t_fleet_add(&f, "w", "chantest.elf",
		"steps=tamper:motd,sleep:3000", motd, false, NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 200), 1);
	chanmgr_full_check(&f.cm, true);
	if (expect_caught) {
		cr_assert(p->finished);
		cr_assert_eq(p->fin.reason, VMX_STOP_COMPROMISED, "%s",
			     vmx_stop_name(p->fin.reason));
		AUDIT_HAS(&f, "\"reason\":\"COMPROMISED\",\"file\":\"motd\"");
	} else {
		cr_assert_not(p->finished, "honest vmm stopped: %s",
			      p->fin.detail);
		cr_assert_null(strstr(t_fleet_audit(&f), "COMPROMISED"));
		/* The write was reported and still differs: the partition's
		 * own tampering, quarantined without waiting for an open. */
		AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"w\","
			      "\"reason\":\"INTEGRITY\",\"file\":\"motd\"");
		partition_stop(p);
	}
	t_fleet_run(&f, 5000);
	t_fleet_free(&f);
}

T_BACKEND_TEST(chan, vmm_hiding_writes_is_caught_by_full_rehash, .timeout = 30)
{
	unreported_write(T_BIN("parley-vmm-liar"), true);
}

T_BACKEND_TEST(chan, honest_vmm_passes_full_rehash, .timeout = 30)
{
	unreported_write(T_VMM, false);
}

T_BACKEND_TEST(chan, more_windows_than_slots_is_limit, .timeout = 60)
{
	/* 33 grants between a and b: a partition holds at most CTL_WIN_SLOTS. */
	char grants[8192] = "{\"grants\":[", steps[1024] = "steps=";
	for (int i = 0; i <= CTL_WIN_SLOTS; i++) {
		char g[160], s[16];
		snprintf(g, sizeof(g), "%s{\"channel\":\"c%d\",\"endpoint_a\":"
			 "\"a\",\"endpoint_b\":\"b\",\"direction\":\"a_to_b\","
			 "\"ring_bytes\":4096}", i ? "," : "", i);
		strcat(grants, g);
		snprintf(s, sizeof(s), "%sopen:c%d", i ? "," : "", i);
		strcat(steps, s);
	}
	strcat(grants, "]}");
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, grants);
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf", steps, NULL,
					  false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=sleep:1000", NULL, false,
		    NULL);
	t_fleet_go(&f);
	done(&f, 20000);
	exit0(a);
	OUT_HAS(&f, "a| open c31 0 \n");
	OUT_HAS(&f, "a| open c32 -5 \n");
	AUDIT_HAS(&f, "\"channel\":\"c32\",\"reason\":\"LIMIT\"");
	t_fleet_free(&f);
}

/* A config region up to 1 MiB is re-hashed whole on every open: a write
 * the vmm hid from its dirty report is caught at the open itself, not only
 * by the background re-hash (which is off here). */
T_BACKEND_TEST(chan, small_config_is_rehashed_whole_on_open, .timeout = 30)
{
	struct t_fleet f, *f_ __attribute__((unused)) = &f;
	t_fleet_init(&f, GRANTS(BOTH("c1", "w", "b")));
	t_fleet_add(&f, "b", "chantest.elf", "steps=sleep:1000", motd, false,
		    NULL);
	f.vmm = T_BIN("parley-vmm-liar");
	struct partition *w = t_fleet_add(&f, "w", "chantest.elf",
		"steps=tamper:motd,open:c1", motd, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	cr_assert_eq(w->fin.reason, VMX_STOP_COMPROMISED, "%s (%s)",
		     vmx_stop_name(w->fin.reason), w->fin.detail);
	AUDIT_HAS(&f, "\"event\":\"open_denied\",\"partition\":\"w\","
		      "\"channel\":\"c1\",\"reason\":\"INTEGRITY\"");
	AUDIT_HAS(&f, "\"reason\":\"COMPROMISED\",\"file\":\"motd\"");
	cr_assert_null(strstr(t_fleet_audit(&f), "open_allowed"));
	t_fleet_free(&f);
}
