/* Services between real partitions through the agent as proxy: the
 * authentication service (guest/examples/authsvc.c) and its client
 * (authclient.c), on every backend. */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/ctl/stop.h"
#include "agent/ipc/chanmgr.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

#define RULE(src, dst, svc, act)                                           \
	"{\"source\":\"" src "\",\"target\":\"" dst "\",\"service\":\"" svc \
	"\",\"action\":\"" act "\"}"
#define POLICY(rules) "{\"grants\":[],\"services\":[" rules "]}"
#define ALLOW POLICY(RULE("client", "auth", "auth", "allow"))

/* sha256("secret") */
static const char *const keys[] = {
	"keys=bob 0000000000000000000000000000000000000000000000000000000000000000\n"
	"alice 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n",
	NULL };

#define OUT_HAS(f, s) cr_assert(strstr(t_fleet_out(f), s), "no \"%s\" in:\n%s", s, t_fleet_out(f))
#define AUDIT_HAS(f, s) cr_assert(strstr(t_fleet_audit(f), s), "no %s in audit:\n%s", s, t_fleet_audit(f))

static void done(struct t_fleet *f, int ms)
{
	cr_assert_eq(t_fleet_run(f, ms), 0, "still running:\n%s", t_fleet_out(f));
}

static void exits(struct t_fleet *f, struct partition *p, int code)
{
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s: %s (%s)\n%s", p->name,
		     vmx_stop_name(p->fin.reason), p->fin.detail,
		     t_fleet_out(f));
	cr_assert_eq(p->fin.code, code, "%s exit %lld\n%s", p->name,
		     (long long)p->fin.code, t_fleet_out(f));
}

T_BACKEND_TEST(service, call_without_policy_is_denied_and_audited, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, "{\"grants\":[]}");
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "idle_ms=300", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf", "",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| connect auth -2 \n");
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"reason\":\"NO_POLICY\","
		      "\"detail\":\"target auth\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(service, deny_rule_is_denied_and_audited, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, POLICY(RULE("client", "auth", "auth", "deny")));
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "idle_ms=300", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf", "",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| connect auth -2 \n");
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"reason\":\"DENIED\"");
	t_fleet_free(&f);
}

/* A rule for another service or in the other direction allows nothing. */
T_BACKEND_TEST(service, rule_for_other_service_or_direction_denies, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, POLICY(RULE("client", "auth", "other", "allow") ","
				RULE("auth", "client", "auth", "allow")));
	t_fleet_add(&f, "auth", "authsvc.elf", "idle_ms=300", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf", "",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	OUT_HAS(&f, "client| connect auth -2 \n");
	AUDIT_HAS(&f, "\"reason\":\"NO_POLICY\"");
	t_fleet_free(&f);
}

/* The provider sleeps without a timeout (wait_ms=-1) and the client calls
 * only 200 ms later: only the agent's signal of a new caller (its window
 * mapped) wakes the provider to accept. */
T_BACKEND_TEST(service, right_and_wrong_password, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "callers=1 wait_ms=-1",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
		"user=alice pass=secret delay_ms=200", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| right password: status 0 ok alice\n");
	OUT_HAS(&f, "client| wrong password: status 1 denied\n");
	OUT_HAS(&f, "auth| caller client\n");
	OUT_HAS(&f, "auth| authsvc: 2 requests from 1 callers\n");
	AUDIT_HAS(&f, "\"event\":\"svc_offer\",\"partition\":\"auth\","
		      "\"channel\":\"auth\"");
	AUDIT_HAS(&f, "\"event\":\"svc_call_allowed\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"detail\":\"target auth\"");
	AUDIT_HAS(&f, "\"event\":\"svc_accept\",\"partition\":\"auth\","
		      "\"channel\":\"auth\",\"detail\":\"client\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(service, tampered_provider_is_refused, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "tamper=1 idle_ms=300", keys, false,
					  NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf", "",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| connect auth -3 auth/keys\n");
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"auth\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"keys\"");
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"reason\":\"INTEGRITY\","
		      "\"file\":\"keys\"");
	cr_assert_null(strstr(t_fleet_audit(&f), "svc_call_allowed"), "%s",
		       t_fleet_audit(&f));
	t_fleet_free(&f);
}

T_BACKEND_TEST(service, thousand_calls_several_in_flight, .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf", "callers=1",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
		"n=1000 inflight=8", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 60000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| 1000 calls, 8 in flight, 0 wrong answers\n");
	OUT_HAS(&f, "auth| authsvc: 1002 requests from 1 callers\n");
	t_fleet_free(&f);
}

/* Two callers at once, each with its own channel. */
T_BACKEND_TEST(service, two_callers_at_once, .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, POLICY(RULE("client", "auth", "auth", "allow") ","
				RULE("client2", "auth", "auth", "allow")));
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf", "callers=2",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
		"n=300 inflight=4", NULL, false, NULL);
	struct partition *c2 = t_fleet_add(&f, "client2", "authclient.elf",
		"n=300 inflight=16", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 60000);
	exits(&f, c, 0);
	exits(&f, c2, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| 300 calls, 4 in flight, 0 wrong answers\n");
	OUT_HAS(&f, "client2| 300 calls, 16 in flight, 0 wrong answers\n");
	OUT_HAS(&f, "auth| authsvc: 604 requests from 2 callers\n");
	t_fleet_free(&f);
}

/* The provider stops in the middle: the caller's receive ends with
 * PEER_DOWN instead of waiting for ever. */
T_BACKEND_TEST(service, provider_that_stops_gives_callers_an_error, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "stop_after=10", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
		"n=1000 inflight=8", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 30000);
	exits(&f, s, 3);
	exits(&f, c, 1);
	OUT_HAS(&f, "auth| stopping after 10\n");
	OUT_HAS(&f, "client| call failed: -4 after ");
	AUDIT_HAS(&f, "\"event\":\"peer_gone\",\"partition\":\"auth\","
		      "\"channel\":\"auth\"");
	t_fleet_free(&f);
}

/* Names a partition passes are checked by the vmm (terminated, not empty)
 * and the agent (alphabet), and answered INVAL without stopping it; the
 * agent audits the refused call. An accept of a service it does not offer
 * is INVAL, one with nobody calling TIMEOUT. */
T_BACKEND_TEST(service, hostile_names_are_refused, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *h = t_fleet_add(&f, "h", "hostile.elf",
					  "mode=svc_names", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, h, 0);
	OUT_HAS(&f, "h| hostile: svc -1 -1 -1 -1 -1 -1 0 -8\n");
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"h\","
		      "\"channel\":\"x y\",\"reason\":\"INVAL\"");
	AUDIT_HAS(&f, "\"event\":\"svc_offer\",\"partition\":\"h\","
		      "\"channel\":\"auth\"");
	t_fleet_free(&f);
}

/* The SDK believes no answer to a call that is not in flight: the
 * client's receive fails with INVAL rather than taking it. */
T_BACKEND_TEST(service, answer_to_unknown_call_is_refused_by_the_sdk, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "callers=1 evil=1", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf", "",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 1);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| call failed: -1\n");
	cr_assert_null(strstr(t_fleet_out(&f), "right password"), "%s",
		       t_fleet_out(&f));
	t_fleet_free(&f);
}

/* The rule goes away (a policy reload) while calls flow: the call's
 * channel is revoked; the client does not finish its calls. Either end
 * learns CLOSED from its next wait or, if it polled the window after the
 * unmap (the provider spins on its rings), is stopped for touching a
 * revoked window, as with any channel. */
T_BACKEND_TEST(service, rule_removed_revokes_the_call, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf",
					  "callers=1", keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
		"n=100000000 inflight=4", NULL, false, NULL);
	t_fleet_go(&f);
	for (int i = 0; i < 500 && !strstr(t_fleet_out(&f), "wrong password");
	     i++)
		t_fleet_run(&f, 20);
	OUT_HAS(&f, "client| wrong password: status 1 denied\n");
	t_fleet_set_grants(&f, "{\"grants\":[]}");
	done(&f, 20000);
	AUDIT_HAS(&f, "\"event\":\"revoke\",\"channel\":\"auth\","
		      "\"reason\":\"SERVICE_RULE_REMOVED\"");
	struct partition *both[] = { c, s };
	for (int i = 0; i < 2; i++) {
		struct partition *p = both[i];
		bool closed = p->fin.reason == VMX_STOP_EXIT;
		cr_assert(closed || p->fin.reason == VMX_STOP_REVOKED_ACCESS,
			  "%s: %s (%s)\n%s", p->name,
			  vmx_stop_name(p->fin.reason), p->fin.detail,
			  t_fleet_out(&f));
	}
	if (c->fin.reason == VMX_STOP_EXIT)
		cr_assert_eq(c->fin.code, 1, "%s", t_fleet_out(&f));
	cr_assert_null(strstr(t_fleet_out(&f), "wrong answers"), "%s",
		       t_fleet_out(&f));
	t_fleet_free(&f);
}

/* One caller holds at most 4 calls to one provider at once (each maps a
 * window into the provider, whose slots it could otherwise fill): the
 * fifth is LIMIT, audited. */
T_BACKEND_TEST(service, calls_per_caller_are_bounded, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf", "callers=4",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
					  "extra=4", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| extra connect 2 0\n");
	OUT_HAS(&f, "client| extra connect 3 -5\n");
	/* two calls on the first connection, one on each of the three
	 * extra ones: the provider took every call held open */
	OUT_HAS(&f, "auth| authsvc: 5 requests from 4 callers\n");
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"reason\":\"LIMIT\","
		      "\"detail\":\"target auth: calls open\"");
	t_fleet_free(&f);
}

/* A caller that hangs up frees its place (the bound is on calls held
 * open) and its provider learns PEER_DOWN and closes its end: seven
 * calls one after the other, more than the four one caller may hold. */
T_BACKEND_TEST(service, hang_up_and_call_again, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf", "callers=7",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
					  "reconnect=6", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 20000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| reconnected 6 times\n");
	OUT_HAS(&f, "auth| authsvc: 8 requests from 7 callers\n");
	t_fleet_free(&f);
}

/* A call is a channel, each re-measuring both ends: a caller calling and
 * hanging up in a loop gets LIMIT past the bucket opens have
 * (CM_OPEN_BURST, then CM_OPENS_PER_S a second), audited as a refusal. */
T_BACKEND_TEST(service, calling_in_a_loop_is_answered_limit, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	t_fleet_add(&f, "auth", "authsvc.elf", "callers=2000", keys, false,
		    NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
					  "reconnect=1000", NULL, false, NULL);
	t_fleet_go(&f);
	for (int i = 0; i < 600 && !c->finished; i++)
		t_fleet_run(&f, 50);
	exits(&f, c, 1);
	OUT_HAS(&f, ": -5\n"); /* "reconnect K: -5", PARLEY_E_LIMIT */
	const char *out = t_fleet_out(&f);
	const char *r = strstr(out, "client| reconnect ");
	long k = -1;
	cr_assert(r && sscanf(r, "client| reconnect %ld:", &k) == 1, "%s", out);
	cr_assert_geq(k, CM_OPEN_BURST - 2, "%s", out);
	AUDIT_HAS(&f, "\"event\":\"svc_call_denied\",\"partition\":\"client\","
		      "\"channel\":\"auth\",\"reason\":\"LIMIT\","
		      "\"detail\":\"target auth: calls: more than 64 a second\"");
	t_fleet_free(&f);
}

/* A caller hangs up one call while another of its calls stays open, then
 * opens a third: the provider replaces the call that went and must still
 * answer the one that stayed (authsvc once lost it: a new call took the
 * slot the open one still named, and closing that name had the provider
 * touch a window it had closed). */
T_BACKEND_TEST(service, hang_up_one_of_two_calls, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, ALLOW);
	struct partition *s = t_fleet_add(&f, "auth", "authsvc.elf", "callers=3",
					  keys, false, NULL);
	struct partition *c = t_fleet_add(&f, "client", "authclient.elf",
					  "overlap=1", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, c, 0);
	exits(&f, s, 0);
	OUT_HAS(&f, "client| overlap: B answered after A hung up\n");
	OUT_HAS(&f, "auth| authsvc: 5 requests from 3 callers\n");
	t_fleet_free(&f);
}
