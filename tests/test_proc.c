/* Partitions on the process backend (ptrace'd stub processes), driven
 * through the agent's partition API exactly as on KVM: these run wherever
 * the tests run, /dev/kvm or not. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "tests/helpers/testutil.h"

static struct partition *start_on(uint32_t backend, const char *name,
				   const char *image, const char *cmdline,
				   const char *json, bool paused,
				   struct t_console *out)
{
	struct part_spec s;
	struct parley_err err = { 0 };
	if (json)
		cr_assert_eq(spec_parse(json, strlen(json),
					PARLEY_BUILD_DIR "/guest", &s, &err),
			     0, "%s", perr_msg(&err));
	else
		t_spec(&s, name, image, cmdline, NULL);
	struct part_opts o = t_opts(out);
	o.backend = backend;
	o.start_paused = paused;
	struct partition *p = NULL;
	int rc = partition_create(&s, &o, &p, &err);
	spec_free(&s);
	cr_assert_eq(rc, 0, "create %s: %s", name, perr_msg(&err));
	return p;
}

static struct partition *start(const char *name, const char *image,
			       const char *cmdline, struct t_console *out)
{
	return start_on(CTL_BACKEND_PROCESS, name, image, cmdline, NULL,
			false, out);
}

static void finish(struct partition *p)
{
	cr_assert_eq(partition_wait(p, 20000), 0, "%s did not finish",
		     p->name);
}

#define STOPPED_WITH(p, r)                                                \
	cr_assert_eq((p)->fin.reason, (r), "%s: %s (%s)", (p)->name,       \
		     vmx_stop_name((p)->fin.reason), (p)->fin.detail)

Test(proc, hello_runs_and_exits_with_its_code, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("hello", "hello.elf", "exit=7", &out);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert_eq(p->fin.code, 7);
	cr_assert(out.buf && strstr(out.buf, "hello, world (abi 1.0, 8 MiB, "
				    "1 vcpu)\n"), "output: %s", out.buf);
	cr_assert_eq(p->backend, CTL_BACKEND_PROCESS);
	partition_destroy(p);
	t_console_free(&out);
}

Test(proc, counter_prints_every_tick, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("counter", "counter.elf",
				    "count=5 work=1000", &out);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert_eq(p->fin.code, 0);
	cr_assert_eq(t_count_lines(out.buf, "tick "), 5, "%s", out.buf);
	partition_destroy(p);
	t_console_free(&out);
}

Test(proc, secondary_vcpus_park_and_partition_exits, .timeout = 30)
{
	const char *json = "{\"name\":\"smp\",\"image\":\"hello.elf\","
			   "\"vcpus\":4,\"memory\":\"8M\"}";
	struct t_console out = { 0 };
	struct partition *p = start_on(CTL_BACKEND_PROCESS, "smp", NULL, NULL,
				       json, false, &out);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert(strstr(out.buf, "4 vcpu"), "%s", out.buf);
	partition_destroy(p);
	t_console_free(&out);
}

/* ---- channels on the process backend ---- */
#include "tests/helpers/fleet.h"

#define BOTH(ch, a, b)                                                     \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"
#define ONEWAY(ch, a, b)                                                   \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"a_to_b\",\"ring_bytes\":4096}"
#define GRANTS0 "{\"grants\":[]}"
#define GRANTS(x) "{\"grants\":[" x "]}"
#define GRANTS2(x, y) "{\"grants\":[" x "," y "]}"
#define OUT_HAS(f, s)                                                      \
	cr_assert(strstr(t_fleet_out(f), s), "no \"%s\" in:\n%s", s,      \
		  t_fleet_out(f))
#define AUDIT_HAS(f, s)                                                    \
	cr_assert(strstr(t_fleet_audit(f), s), "no %s in audit:\n%s", s,  \
		  t_fleet_audit(f))

static const char *const motd[] = { "motd=hello, operator\n",
				    "app.conf=mode=strict\n", NULL };

static void fleet(struct t_fleet *f, const char *grants)
{
	t_fleet_init(f, grants);
	f->backend = CTL_BACKEND_PROCESS;
}

static void done(struct t_fleet *f, int ms)
{
	cr_assert_eq(t_fleet_run(f, ms), 0, "still running:\n%s",
		     t_fleet_out(f));
}

static void exit0(struct t_fleet *f, struct partition *p)
{
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s: %s (%s)\n%s", p->name,
		     vmx_stop_name(p->fin.reason), p->fin.detail,
		     t_fleet_out(f));
	cr_assert_eq(p->fin.code, 0, "%s exit %lld\n%s", p->name,
		     (long long)p->fin.code, t_fleet_out(f));
}

Test(proc_chan, ping_pong_with_checksums, .timeout = 120)
{
	struct t_fleet f;
	fleet(&f, GRANTS(BOTH("pingpong", "ping", "pong")));
	struct partition *a = t_fleet_add(&f, "ping", "ping.elf", "count=2000",
					  NULL, false, NULL);
	struct partition *b = t_fleet_add(&f, "pong", "pong.elf", "count=2000",
					  NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 60000);
	exit0(&f, a);
	exit0(&f, b);
	OUT_HAS(&f, "ping| ping: 2000 messages each way");
	OUT_HAS(&f, "checksums ok");
	AUDIT_HAS(&f, "\"event\":\"open_allowed\",\"partition\":\"ping\"");
	t_fleet_free(&f);
}

Test(proc_chan, no_grant_is_refused_and_audited, .timeout = 30)
{
	struct t_fleet f;
	fleet(&f, GRANTS(BOTH("c1", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
					  "steps=open:c9", NULL, false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=sleep:1", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(&f, a);
	OUT_HAS(&f, "a| open c9 -2 \n");
	AUDIT_HAS(&f, "\"reason\":\"NO_GRANT\"");
	t_fleet_free(&f);
}

Test(proc_chan, tampered_config_is_integrity_quarantine_and_revoke,
     .timeout = 60)
{
	struct t_fleet f;
	fleet(&f, GRANTS2(BOTH("c1", "a", "b"), BOTH("c2", "b", "a")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,recvall:0", motd, false, NULL);
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
		"steps=open:c1,sleep:50,tamper:app.conf,open:c2,open:c1",
		motd, false, NULL);
	t_fleet_go(&f);
	done(&f, 20000);
	exit0(&f, a);
	exit0(&f, b);
	OUT_HAS(&f, "b| open c2 -3 b/app.conf\n");
	OUT_HAS(&f, "b| open c1 -9 \n");
	OUT_HAS(&f, "a| closed after 0\n");
	AUDIT_HAS(&f, "\"event\":\"quarantine\",\"partition\":\"b\","
		      "\"reason\":\"INTEGRITY\",\"file\":\"app.conf\"");
	t_fleet_free(&f);
}

Test(proc_chan, one_way_receiver_writing_data_is_stopped, .timeout = 30)
{
	struct t_fleet f;
	fleet(&f, GRANTS(ONEWAY("c1", "s", "r")));
	struct partition *s = t_fleet_add(&f, "s", "chantest.elf",
		"steps=open:c1,send:0:10,sleep:500", NULL, false, NULL);
	struct partition *r = t_fleet_add(&f, "r", "chantest.elf",
		"steps=open:c1,recv:0:10,rowrite:0", NULL, false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(&f, s);
	STOPPED_WITH(r, VMX_STOP_READONLY_WRITE);
	OUT_HAS(&f, "r| received 10\n");
	t_fleet_free(&f);
}

Test(proc_chan, revoke_mid_stream_closes_and_old_window_faults,
     .timeout = 60)
{
	struct t_fleet f;
	fleet(&f, GRANTS(ONEWAY("c1", "s", "r")));
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
	STOPPED_WITH(r, VMX_STOP_REVOKED_ACCESS);
	cr_assert(s->fin.reason == VMX_STOP_REVOKED_ACCESS ||
		  (s->fin.reason == VMX_STOP_EXIT && s->fin.code == 0),
		  "s: %s", vmx_stop_name(s->fin.reason));
	t_fleet_free(&f);
}

Test(proc_chan, stale_and_forged_handles_are_bad_handle, .timeout = 30)
{
	struct t_fleet f;
	fleet(&f, GRANTS(BOTH("c1", "a", "b")));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,close:0,stale:0", NULL, false, NULL);
	t_fleet_add(&f, "b", "chantest.elf", "steps=open:c1,sleep:100", NULL,
		    false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(&f, a);
	OUT_HAS(&f, "a| stale notify -6\n");
	OUT_HAS(&f, "a| forged notify -6\n");
	OUT_HAS(&f, "a| doorbell survived\n");
	t_fleet_free(&f);
}
