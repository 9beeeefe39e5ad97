/* A partition's refusals past its bucket are counted, not recorded one by
 * one (agent/ipc/audit.h): the audit by itself, then a real partition
 * asking in a loop for a channel it has no grant for. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "agent/ipc/audit.h"
#include "agent/ipc/chanmgr.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

struct seen {
	unsigned denied_p, denied_q, allowed, fault, limit, ended;
	unsigned long ended_sum;
};

static void sink(const struct audit_event *e, void *ctx)
{
	struct seen *s = ctx;
	if (!strcmp(e->event, "open_denied") && !strcmp(e->partition, "p"))
		s->denied_p++;
	else if (!strcmp(e->event, "open_denied"))
		s->denied_q++;
	else if (!strcmp(e->event, "open_allowed"))
		s->allowed++;
	else if (!strcmp(e->event, "fault"))
		s->fault++;
	else if (!strcmp(e->event, "audit_limited") &&
		 !strcmp(e->reason, "LIMIT"))
		s->limit++;
	else if (!strcmp(e->event, "audit_limited")) {
		cr_assert_str_eq(e->reason, "ENDED");
		s->ended++;
		s->ended_sum += strtoul(e->detail, NULL, 10);
	}
}

static void emit(struct audit *a, const char *event, const char *part,
		 unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		audit_emit(a, &(struct audit_event){ event, part, "nope",
						     "NO_GRANT", NULL, NULL });
}

/* 1 a second, so a burst of 8: the rest of a quick loop is counted. */
Test(audit_limit, refusals_past_the_bucket_are_counted_once_ended)
{
	struct seen s = { 0 };
	struct audit a = { .sink = sink, .sink_ctx = &s };
	audit_limits(&a, 1);
	emit(&a, "open_denied", "p", 100);
	emit(&a, "open_allowed", "p", 5);  /* not a refusal: never held */
	emit(&a, "fault", "p", 5);
	emit(&a, "open_denied", "q", 5);   /* its own bucket */
	cr_assert_eq(s.denied_p, 8);
	cr_assert_eq(s.limit, 1, "one record when the episode begins");
	cr_assert_eq(a.left_out, 92);
	cr_assert_eq(s.allowed, 5);
	cr_assert_eq(s.fault, 5);
	cr_assert_eq(s.denied_q, 5);
	cr_assert_eq(s.ended, 0, "ended before a second passed");
	audit_forget(&a, "p");
	cr_assert_eq(s.ended, 1);
	cr_assert_eq(s.ended_sum, 92, "every refusal in some count");
	audit_forget(&a, "p");             /* gone already: nothing */
	cr_assert_eq(s.ended, 1);
	audit_free(&a);
}

/* The housekeeping ends an episode once its last refusal is a second
 * old; the bucket has refilled meanwhile. */
Test(audit_limit, a_second_without_refusals_ends_the_episode)
{
	struct seen s = { 0 };
	struct audit a = { .sink = sink, .sink_ctx = &s };
	audit_limits(&a, 1);
	emit(&a, "open_denied", "p", 20);
	audit_tick(&a);
	cr_assert_eq(s.ended, 0);
	usleep(1100000);
	audit_tick(&a);
	cr_assert_eq(s.ended, 1);
	cr_assert_eq(s.ended_sum, 12);
	emit(&a, "open_denied", "p", 1);
	cr_assert_eq(s.denied_p, 9, "refilled: recorded again");
	cr_assert_eq(s.limit, 1);
	audit_free(&a);
}

/* Past the bucket, a refusal that names a changed file (INTEGRITY) or a
 * quarantine is still recorded, and costs the bucket nothing; every kind
 * of refusal a partition can ask for is held. */
Test(audit_limit, integrity_refusals_always_recorded)
{
	struct seen s = { 0 };
	struct audit a = { .sink = sink, .sink_ctx = &s };
	audit_limits(&a, 1);
	emit(&a, "open_denied", "p", 8);
	cr_assert_eq(s.denied_p, 8);
	audit_emit(&a, &(struct audit_event){ "open_denied", "p", "c",
					      "INTEGRITY", "app.conf",
					      "p/app.conf" });
	audit_emit(&a, &(struct audit_event){ "open_denied", "p", "c",
					      "QUARANTINED", NULL, NULL });
	cr_assert_eq(s.denied_p, 10);
	cr_assert_eq(a.left_out, 0);
	static const char *const held[] = { "open_denied", "svc_offer_denied",
					    "svc_call_denied", "seg_refused",
					    "update_denied", "update_refused" };
	for (size_t i = 0; i < sizeof(held) / sizeof(*held); i++)
		emit(&a, held[i], "p", 1);
	cr_assert_eq(a.left_out, 6);
	cr_assert_eq(s.limit, 1);
	audit_free(&a);
}

Test(audit_limit, all_records_every_refusal)
{
	struct seen s = { 0 };
	struct audit a = { .sink = sink, .sink_ctx = &s };
	audit_limits(&a, -1);
	emit(&a, "open_denied", "p", 5000);
	cr_assert_eq(s.denied_p, 5000);
	cr_assert_eq(s.limit + s.ended, 0);
	cr_assert_eq(a.left_out, 0);
	audit_free(&a);
}

/* A partition's name is a key here, and a name is anything a spec
 * allows: a bucket per name, each freed. */
Test(audit_limit, many_partitions_each_their_own_bucket)
{
	struct seen s = { 0 };
	struct audit a = { .sink = sink, .sink_ctx = &s };
	audit_limits(&a, 1);
	char name[32];
	for (unsigned i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "q%u", i);
		emit(&a, "open_denied", name, 9);
	}
	cr_assert_eq(s.denied_q, 500 * 8);
	cr_assert_eq(s.limit, 500);
	cr_assert_eq(a.left_out, 500);
	audit_free(&a);
}

/* The counts of the audit's ENDED records (JSON lines), summed; *n: how
 * many. */
static unsigned long ended_counts(const char *aud, int *n)
{
	unsigned long sum = 0;
	for (const char *p = aud; (p = strstr(p, "\"reason\":\"ENDED\""));
	     p++) {
		const char *d = strstr(p, "\"detail\":\"");
		cr_assert(d, "%s", aud);
		sum += strtoul(d + 10, NULL, 10);
		++*n;
	}
	return sum;
}

/* A real partition asks 3,000 times for a channel it has no grant for,
 * under the default limit: the first AUDIT_DENY_BURST and AUDIT_DENY_PER_S
 * a second are recorded, and every other one is in an ENDED count. */
T_BACKEND_TEST(audit_limit, a_partition_asking_in_a_loop_costs_a_bounded_audit,
	       .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, NULL);
	t_fleet_add(&f, "spam", "chantest.elf",
		    "steps=spam:3000:nogrant,sleep:1500", NULL, false, NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 60000), 0, "%s", t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	cr_assert(strstr(out, "spammed 3000 (0 allowed)"), "%s", out);
	const char *aud = t_fleet_audit(&f);
	int denied = t_count(aud, "\"event\":\"open_denied\",\"partition\":"
				  "\"spam\"");
	int limit = t_count(aud, "\"event\":\"audit_limited\",\"partition\":"
				 "\"spam\",\"reason\":\"LIMIT\"");
	int ended = 0;
	unsigned long counted = ended_counts(aud, &ended);
	cr_assert_geq(denied, AUDIT_DENY_BURST);
	cr_assert_lt(denied, 3000, "nothing was held back");
	cr_assert_geq(limit, 1);
	cr_assert_eq(ended, limit, "each episode ended, with its count:\n%s",
		     aud + (strlen(aud) > 2000 ? strlen(aud) - 2000 : 0));
	cr_assert_eq(denied + counted, 3000, "%d recorded, %lu counted",
		     denied, counted);
	cr_log_info("3000 refusals: %d recorded, %lu counted in %d episode(s)",
		    denied, counted, ended);
	t_fleet_free(&f);
}

/* The option: a number a second or 'all'; anything else is refused
 * before the agent starts anything, naming the option. */
Test(audit_limit, option_values_checked)
{
	static const char *const bad[] = { "0", "-5", "abc", "12x", "",
					   "100001", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char *out = NULL;
		char *const argv[] = { T_AGENT, "run", "--audit-refusals",
				       (char *)bad[i], "nothing.json", NULL };
		int rc = t_run(argv, &out, 20);
		cr_expect_eq(rc, 2, "'%s': rc %d: %s", bad[i], rc, out);
		cr_expect(strstr(out, "--audit-refusals"), "'%s': %s", bad[i],
			  out);
		free(out);
	}
}

/* A partition opening and closing a granted channel in a loop: past
 * CM_OPEN_BURST (then CM_OPENS_PER_S a second) it is answered LIMIT
 * before anything is re-measured or mapped; each open let through is
 * recorded (open_allowed), each LIMIT is a refusal in the audit (one by
 * one, or counted). Its peer keeps running. */
T_BACKEND_TEST(audit_limit, a_partition_opening_in_a_loop_is_answered_limit,
	       .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, "{\"grants\":[{\"channel\":\"c1\",\"endpoint_a\":"
			 "\"a\",\"endpoint_b\":\"b\",\"direction\":\"both\","
			 "\"ring_bytes\":4096}]}");
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
					  "steps=sleep:8000", NULL, false,
					  NULL);
	t_fleet_add(&f, "a", "chantest.elf",
		    "steps=sleep:300,openclose:2000:c1,sleep:1500", NULL, false,
		    NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 60000), 0, "%s", t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	const char *r = strstr(out, "openclosed 2000 ");
	long ok = -1, limit = -1, other = -1;
	cr_assert(r && sscanf(r, "openclosed 2000 ok=%ld limit=%ld other=%ld",
			      &ok, &limit, &other) == 3, "%s", out);
	cr_assert_eq(other, 0, "%s", out);
	cr_assert_eq(ok + limit, 2000);
	cr_assert_geq(ok, CM_OPEN_BURST);
	cr_assert_gt(limit, 0, "the bucket did not hold");
	const char *aud = t_fleet_audit(&f);
	cr_assert_eq(t_count(aud, "\"event\":\"open_allowed\",\"partition\":"
				  "\"a\""), ok);
	int recorded = t_count(aud, "\"event\":\"open_denied\",\"partition\":"
				    "\"a\",\"channel\":\"c1\",\"reason\":"
				    "\"LIMIT\"");
	int ended = 0;
	unsigned long counted = ended_counts(aud, &ended);
	cr_assert_eq(recorded + counted, (unsigned long)limit,
		     "%d recorded, %lu counted, %ld LIMIT", recorded, counted,
		     limit);
	cr_assert(b->fin.reason == VMX_STOP_EXIT && b->fin.code == 0,
		  "the peer: %s (%s)\n%s", vmx_stop_name(b->fin.reason),
		  b->fin.detail, out);
	cr_log_info("2000 opens: %ld let through, %ld LIMIT (%d recorded, "
		    "%lu counted)", ok, limit, recorded, counted);
	t_fleet_free(&f);
}

/* What an open refused for a down peer costs: nothing before either end
 * was re-measured (a grant without require_integrity), a token after
 * (the asker is re-measured first, whether or not its peer is up). */
T_BACKEND_TEST(audit_limit, a_refusal_after_a_re_measure_is_charged,
	       .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, "{\"grants\":[{\"channel\":\"free\",\"endpoint_a\":"
			 "\"a\",\"endpoint_b\":\"gone\",\"direction\":\"both\","
			 "\"ring_bytes\":4096,\"require_integrity\":false},"
			 "{\"channel\":\"paid\",\"endpoint_a\":\"a\","
			 "\"endpoint_b\":\"gone\",\"direction\":\"both\","
			 "\"ring_bytes\":4096}]}");
	t_fleet_add(&f, "a", "chantest.elf", "steps=openclose:1000:free,"
		    "openclose:1000:paid", NULL, false, NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 60000), 0, "%s", t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	cr_assert(strstr(out, "openclosed 1000 ok=0 limit=0 other=1000"),
		  "refused before any re-measure, and charged:\n%s", out);
	const char *r = strstr(out, "openclosed 1000 ok=0 limit=0 other=1000");
	long ok = -1, limit = -1, other = -1;
	r = r ? strstr(r + 1, "openclosed 1000 ") : NULL;
	cr_assert(r && sscanf(r, "openclosed 1000 ok=%ld limit=%ld other=%ld",
			      &ok, &limit, &other) == 3, "%s", out);
	cr_assert_eq(ok, 0);
	cr_assert_gt(limit, 0, "re-measured for nothing, never charged: %s",
		     out);
	cr_assert_geq(other, CM_OPEN_BURST, "%s", out);
	t_fleet_free(&f);
}

/* Segment-set attaches draw on the same bucket: attaching and detaching
 * in a loop is answered LIMIT past it (seg_refused LIMIT). */
T_BACKEND_TEST(audit_limit, a_member_attaching_in_a_loop_is_answered_limit,
	       .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, "{\"grants\":[],\"segsets\":[{\"name\":\"s1\","
			 "\"members\":[\"a\",\"b\"],\"segments\":[{\"name\":"
			 "\"p.a\",\"kind\":\"pipe\",\"writer\":\"a\",\"size\":"
			 "\"64K\"}]}]}");
	t_fleet_add(&f, "a", "chantest.elf", "steps=segloop:1000:s1", NULL,
		    false, NULL);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 60000), 0, "%s", t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	const char *r = strstr(out, "seglooped 1000 ");
	long ok = -1, limit = -1, other = -1;
	cr_assert(r && sscanf(r, "seglooped 1000 ok=%ld limit=%ld other=%ld",
			      &ok, &limit, &other) == 3, "%s", out);
	cr_assert_eq(other, 0, "%s", out);
	cr_assert_geq(ok, CM_OPEN_BURST, "%s", out);
	cr_assert_gt(limit, 0, "the bucket did not hold: %s", out);
	cr_assert(strstr(t_fleet_audit(&f), "\"event\":\"seg_refused\","
			 "\"partition\":\"a\",\"channel\":\"s1\",\"reason\":"
			 "\"LIMIT\""), "%s", t_fleet_audit(&f));
	t_fleet_free(&f);
}
