/* Segment sets in real partitions (issue 14): members attach through
 * SEG_ATTACH, the agent maps the table and each segment with the access
 * the table gives (guest/examples/segmember.c), on every backend. */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/ctl/stop.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

/* Four members, one writer per segment: a writes a pipe every other
 * member reads; b, c, d each write their segment of queue "ev", which a
 * reads (merged). */
#define T4 "{\"grants\":[],\"segsets\":[{\"name\":\"t4\","                  \
	"\"members\":[\"a\",\"b\",\"c\",\"d\"],\"segments\":["             \
	"{\"name\":\"p.a\",\"kind\":\"pipe\",\"writer\":\"a\",\"size\":\"64K\"}," \
	"{\"name\":\"ev.b\",\"kind\":\"queue\",\"queue\":\"ev\",\"writer\":\"b\"," \
	"\"size\":\"16K\",\"readers\":[\"a\"]},"                            \
	"{\"name\":\"ev.c\",\"kind\":\"queue\",\"queue\":\"ev\",\"writer\":\"c\"," \
	"\"size\":\"16K\",\"readers\":[\"a\"]},"                            \
	"{\"name\":\"ev.d\",\"kind\":\"queue\",\"queue\":\"ev\",\"writer\":\"d\"," \
	"\"size\":\"16K\",\"readers\":[\"a\"]},"                            \
	"{\"name\":\"status\",\"kind\":\"area\",\"writer\":\"agent\","      \
	"\"size\":\"4K\"}]}]}"

static const char *const conf[] = { "conf=hello\n", NULL };

#define OUT_HAS(f, s) cr_assert(strstr(t_fleet_out(f), s), "no \"%s\" in:\n%s", s, t_fleet_out(f))
#define OUT_HASNT(f, s) cr_assert_null(strstr(t_fleet_out(f), s), "\"%s\" in:\n%s", s, t_fleet_out(f))
#define AUDIT_HAS(f, s) cr_assert(strstr(t_fleet_audit(f), s), "no %s in audit:\n%s", s, t_fleet_audit(f))

static void done(struct t_fleet *f, int ms)
{
	cr_assert_eq(t_fleet_run(f, ms), 0, "still running:\n%s\naudit:\n%s",
		     t_fleet_out(f), t_fleet_audit(f));
}

static void exits(struct t_fleet *f, struct partition *p, int code)
{
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s: %s (%s)\n%s", p->name,
		     vmx_stop_name(p->fin.reason), p->fin.detail,
		     t_fleet_out(f));
	cr_assert_eq(p->fin.code, code, "%s exit %lld\n%s", p->name,
		     (long long)p->fin.code, t_fleet_out(f));
}

static struct partition *add(struct t_fleet *f, const char *name,
			     const char *cmdline)
{
	return t_fleet_add(f, name, "segmember.elf", cmdline, conf, false,
			   NULL);
}

/* 25,000 messages from each of the four writers: 100,000 in all, each
 * checked by every reader (sequence, pattern, checksum). */
T_BACKEND_TEST(segset, four_members_pass_100k_messages, .timeout = 240)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *p[4];
	const char *names[4] = { "a", "b", "c", "d" };
	for (int i = 0; i < 4; i++)
		p[i] = add(&f, names[i], "set=t4 n=25000");
	t_fleet_go(&f);
	done(&f, 200000);
	for (int i = 0; i < 4; i++)
		exits(&f, p[i], 0);
	OUT_HAS(&f, "a| sent 25000\n");
	OUT_HAS(&f, "a| got 25000 from b, 0 bad\n");
	OUT_HAS(&f, "a| got 25000 from c, 0 bad\n");
	OUT_HAS(&f, "a| got 25000 from d, 0 bad\n");
	OUT_HAS(&f, "b| got 25000 from a, 0 bad\n");
	OUT_HAS(&f, "c| got 25000 from a, 0 bad\n");
	OUT_HAS(&f, "d| got 25000 from a, 0 bad\n");
	OUT_HAS(&f, "d| sent 25000\n");
	for (int i = 0; i < 4; i++) {
		char want[120];
		snprintf(want, sizeof(want), "\"event\":\"seg_attach\","
			 "\"partition\":\"%s\",\"channel\":\"t4\"", names[i]);
		AUDIT_HAS(&f, want);
	}
	AUDIT_HAS(&f, "\"event\":\"seg_removed\"");
	t_fleet_free(&f);
}

/* The table is read-only for members: writing it is a real fault. */
T_BACKEND_TEST(segset, writing_a_read_only_segment_stops_the_member,
	       .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "set=t4 bad_write=1");
	t_fleet_go(&f);
	done(&f, 10000);
	OUT_HAS(&f, "a| attach 0");
	OUT_HAS(&f, "a| writing the table\n");
	OUT_HASNT(&f, "wrote the table");
	cr_assert_eq(a->fin.reason, VMX_STOP_READONLY_WRITE, "%s (%s)",
		     vmx_stop_name(a->fin.reason), a->fin.detail);
	AUDIT_HAS(&f, "\"reason\":\"readonly-write\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(segset, tampered_member_is_refused_at_attach, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "set=t4 tamper=1");
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, a, 0);
	OUT_HAS(&f, "a| attach -3 a/conf\n");
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"a\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"conf\"");
	AUDIT_HAS(&f, "\"event\":\"seg_refused\",\"partition\":\"a\","
		      "\"channel\":\"t4\",\"reason\":\"INTEGRITY\","
		      "\"file\":\"conf\"");
	cr_assert_null(strstr(t_fleet_audit(&f), "seg_attach"), "%s",
		       t_fleet_audit(&f));
	t_fleet_free(&f);
}

/* a attaches clean, tampers once everyone is there, and is re-measured
 * when it attaches again: quarantined, removed, the others woken. */
T_BACKEND_TEST(segset, member_tampering_later_is_removed_others_notified,
	       .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "set=t4 tamper_later=1");
	struct partition *b = add(&f, "b", "set=t4 watch=1");
	struct partition *c = add(&f, "c", "set=t4 watch=1");
	struct partition *d = add(&f, "d", "set=t4 watch=1");
	t_fleet_go(&f);
	done(&f, 30000);
	exits(&f, a, 0);
	exits(&f, b, 0);
	exits(&f, c, 0);
	exits(&f, d, 0);
	OUT_HAS(&f, "a| attach 0");
	OUT_HAS(&f, "a| reattach -3 a/conf\n");
	OUT_HAS(&f, "b| removed a");
	OUT_HAS(&f, "c| removed a");
	OUT_HAS(&f, "d| removed a");
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"a\","
		      "\"channel\":\"t4\",\"reason\":\"QUARANTINED\","
		      "\"detail\":\"notified: b c d\"");
	t_fleet_free(&f);
}

/* Run until the output holds `text` (the partitions' own progress, not
 * a clock, orders what a test does next). */
static void run_until(struct t_fleet *f, const char *text)
{
	for (int i = 0; i < 1500 && !strstr(t_fleet_out(f), text); i++)
		t_fleet_run(f, 20);
	cr_assert(strstr(t_fleet_out(f), text), "no \"%s\" in:\n%s", text,
		  t_fleet_out(f));
}

/* a tampers after attaching and says nothing more; b's attach re-measures
 * the members already there (as a channel open re-measures the peer), so
 * a is quarantined and removed, its window unmapped (its wait says
 * CLOSED); b sees a removed in the table. */
T_BACKEND_TEST(segset, tampered_member_found_at_anothers_attach,
	       .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "set=t4 tamper_wait=1");
	t_fleet_go(&f);
	run_until(&f, "a| tampered conf\n");
	struct partition *b = add(&f, "b", "set=t4 show=1");
	t_fleet_go(&f);
	done(&f, 30000);
	exits(&f, a, 0);
	exits(&f, b, 0);
	OUT_HAS(&f, "a| removed from the set\n");
	OUT_HAS(&f, "b| attach 0");
	OUT_HAS(&f, "b| table a=removed/1 b=present/1 c=absent/0 "
		    "d=absent/0\n");
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"a\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"conf\"");
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"a\","
		      "\"channel\":\"t4\",\"reason\":\"QUARANTINED\"");
	t_fleet_free(&f);
}

/* d is started only once the others attached, and sees them. */
T_BACKEND_TEST(segset, late_joiner_sees_the_current_table, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *p[4];
	p[0] = add(&f, "a", "set=t4 watch=1");
	p[1] = add(&f, "b", "set=t4 watch=1");
	p[2] = add(&f, "c", "set=t4 watch=1");
	t_fleet_go(&f);
	run_until(&f, "a| member 0");
	run_until(&f, "b| member 1");
	run_until(&f, "c| member 2");
	p[3] = add(&f, "d", "set=t4 show=1");
	t_fleet_go(&f);
	done(&f, 30000);
	for (int i = 0; i < 4; i++)
		exits(&f, p[i], 0);
	OUT_HAS(&f, "d| table a=present/1 b=present/1 c=present/1 "
		    "d=present/1\n");
	OUT_HAS(&f, "| removed d epoch"); /* the first to look */
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"d\","
		      "\"channel\":\"t4\",\"reason\":\"STOPPED\"");
	t_fleet_free(&f);
}

T_BACKEND_TEST(segset, non_member_gets_no_grant_audited, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *r = add(&f, "rogue", "set=t4");
	struct partition *a = add(&f, "a", "set=nosuch");
	t_fleet_go(&f);
	done(&f, 10000);
	exits(&f, r, 0);
	exits(&f, a, 0);
	OUT_HAS(&f, "rogue| attach -2");
	OUT_HAS(&f, "a| attach -2");
	AUDIT_HAS(&f, "\"event\":\"seg_refused\",\"partition\":\"rogue\","
		      "\"channel\":\"t4\",\"reason\":\"NO_GRANT\","
		      "\"detail\":\"not a member\"");
	AUDIT_HAS(&f, "\"event\":\"seg_refused\",\"partition\":\"a\","
		      "\"channel\":\"nosuch\",\"reason\":\"NO_GRANT\","
		      "\"detail\":\"no such set\"");
	t_fleet_free(&f);
}

/* An unterminated name is refused (INVAL); an argument struct the
 * partition may not name stops it before the agent is asked. */
T_BACKEND_TEST(segset, hostile_attach_arguments, .timeout = 30)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "hostile=1");
	t_fleet_go(&f);
	done(&f, 10000);
	OUT_HAS(&f, "a| unterminated -1\n");
	OUT_HAS(&f, "a| bad pointer next\n");
	OUT_HASNT(&f, "still running");
	cr_assert_eq(a->fin.reason, VMX_STOP_BAD_HYPERCALL, "%s (%s)",
		     vmx_stop_name(a->fin.reason), a->fin.detail);
	cr_assert_null(strstr(t_fleet_audit(&f), "seg_attach"), "%s",
		       t_fleet_audit(&f));
	t_fleet_free(&f);
}

/* Detach takes the member out like a stop: the others see it removed. */
T_BACKEND_TEST(segset, detach_removes_the_member, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *p[4];
	p[0] = add(&f, "a", "set=t4 watch=1");
	p[1] = add(&f, "b", "set=t4 detach=1");
	p[2] = add(&f, "c", "set=t4 watch=1");
	p[3] = add(&f, "d", "set=t4 watch=1");
	t_fleet_go(&f);
	done(&f, 30000);
	for (int i = 0; i < 4; i++)
		exits(&f, p[i], 0);
	OUT_HAS(&f, "b| detach 0\n");
	OUT_HAS(&f, "a| removed b");
	AUDIT_HAS(&f, "\"event\":\"seg_detach\",\"partition\":\"b\","
		      "\"channel\":\"t4\"");
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"b\","
		      "\"channel\":\"t4\",\"reason\":\"DETACHED\"");
	t_fleet_free(&f);
}

/* The set leaves the policy: every member is removed (SET_CHANGED), told
 * first, and keeps its windows for the grace, so one reading the table
 * then sees everyone removed instead of faulting. */
T_BACKEND_TEST(segset, set_removed_from_policy_removes_members, .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, T4);
	struct partition *a = add(&f, "a", "set=t4 all=0 watch=1");
	struct partition *b = add(&f, "b", "set=t4 all=0 watch=1");
	t_fleet_go(&f);
	run_until(&f, "a| member 0");
	run_until(&f, "b| member 1");
	t_fleet_set_grants(&f, "{\"grants\":[]}");
	done(&f, 30000);
	exits(&f, a, 0);
	exits(&f, b, 0);
	/* each sees the other or itself removed, whichever it reads first */
	OUT_HAS(&f, "a| removed ");
	OUT_HAS(&f, "b| removed ");
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"a\","
		      "\"channel\":\"t4\",\"reason\":\"SET_CHANGED\"");
	AUDIT_HAS(&f, "\"event\":\"seg_removed\",\"partition\":\"b\","
		      "\"channel\":\"t4\",\"reason\":\"SET_CHANGED\"");
	t_fleet_free(&f);
}
