/*
 * The grant manager against a compromised vmm process (issue 8, DESIGN.md
 * section 2): parley-vmm-evil (tests/evil/vmm_evil.c) speaks the control
 * protocol as a vmm that its partition has taken over, one misbehaviour
 * per mode. In each, the grant manager runs in this process (under ASan
 * in the sanitizer build) beside a real partition "peer" on the first
 * backend present; the peer must keep running and exit 0, the evil vmm
 * must end up killed with the partition stopped for a named reason and an
 * audit event, and nothing may leak (LSan checks at the end of the test).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "agent/ctl/clock.h"
#include "agent/ctl/stop.h"
#include "agent/ipc/audit.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

#define EVIL T_BIN("parley-vmm-evil")

struct scene {
	struct t_fleet f;
	struct partition *peer, *evil;
	char name[64];
};

static const char *const motd[] = { "motd=hello, operator\n", NULL };

/* The agent's deadline for a vmm's replies in the next scene (0: the
 * fleet's default). */
static int scene_timeout_ms;

static uint32_t first_backend(void)
{
	uint32_t b[T_BACKENDS_MAX];
	t_backends(b);
	return b[0];
}

/* grant: a policy with %s standing for the evil partition's name (one or
 * more times). The evil partition runs chantest.elf's layout with a config
 * file, so that its dirty report has pages to cover. */
static void scene_start(struct scene *s, const char *mode, const char *grant,
			const char *peer_steps)
{
	char grants[1024];
	snprintf(s->name, sizeof(s->name), "evil-%s", mode);
	snprintf(grants, sizeof(grants), grant, s->name, s->name, s->name);
	t_fleet_init(&s->f, grants);
	s->f.backend = first_backend();
	s->f.timeout_ms = scene_timeout_ms;
	s->f.cm.unmap_ms = 300;
	s->peer = t_fleet_add(&s->f, "peer", "chantest.elf", peer_steps, NULL,
			      false, NULL);
	s->f.vmm = EVIL;
	s->evil = t_fleet_add(&s->f, s->name, "chantest.elf", "", motd, false,
			      NULL);
	s->f.vmm = T_VMM;
	t_fleet_go(&s->f);
}

#define OUT(s) t_fleet_out(&(s)->f)
#define AUDIT(s) t_fleet_audit(&(s)->f)
#define OUT_HAS(s, x) cr_assert(strstr(OUT(s), x), "no \"%s\" in:\n%s", x, OUT(s))
#define AUDIT_HAS(s, x) cr_assert(strstr(AUDIT(s), x), "no %s in audit:\n%s", x, AUDIT(s))

/* Run until `p` has finished, for at most ms. */
static void run_until_finished(struct scene *s, struct partition *p, int ms)
{
	uint64_t end = mono_now_ns() + (uint64_t)ms * 1000000;
	while (!p->finished && mono_now_ns() < end)
		sup_step(&s->f.sup, -1, 20);
}

/* Run until the audit shows `what`, for at most ms. */
static void run_until_audit(struct scene *s, const char *what, int ms)
{
	uint64_t end = mono_now_ns() + (uint64_t)ms * 1000000;
	while (!strstr(AUDIT(s), what) && mono_now_ns() < end)
		sup_step(&s->f.sup, -1, 20);
}

/* The evil vmm stopped for `reason`, audited under that name, and its
 * process reaped (killed, not waited for). */
static void evil_stopped(struct scene *s, unsigned reason)
{
	run_until_finished(s, s->evil, 10000);
	cr_assert(s->evil->finished, "evil still running:\n%s", OUT(s));
	cr_assert_eq(s->evil->fin.reason, reason, "evil: %s (%s), want %s\n%s",
		     vmx_stop_name(s->evil->fin.reason), s->evil->fin.detail,
		     vmx_stop_name(reason), AUDIT(s));
	char want[160];
	snprintf(want, sizeof(want), "\"event\":\"fault\",\"partition\":\"%s\","
		 "\"reason\":\"%s\"", s->name, vmx_stop_name(reason));
	run_until_audit(s, want, 2000);
	AUDIT_HAS(s, want);
	uint64_t end = mono_now_ns() + 3000000000ull;
	while (s->evil->pid > 0 && mono_now_ns() < end)
		sup_step(&s->f.sup, -1, 20);
	cr_assert_eq(s->evil->pid, 0, "evil vmm process not reaped");
}

/* The real partition beside it was not disturbed. */
static void peer_exits_0(struct scene *s)
{
	run_until_finished(s, s->peer, 20000);
	cr_assert_eq(s->peer->fin.reason, VMX_STOP_EXIT, "peer: %s (%s)\n%s",
		     vmx_stop_name(s->peer->fin.reason), s->peer->fin.detail,
		     OUT(s));
	cr_assert_eq(s->peer->fin.code, 0, "peer exit %lld",
		     (long long)s->peer->fin.code);
}

static void scene_end(struct scene *s)
{
	t_fleet_free(&s->f);
}

#define BOTH_EVIL                                                          \
	"{\"grants\":[{\"channel\":\"evil\",\"endpoint_a\":\"%s\","          \
	"\"endpoint_b\":\"peer\",\"direction\":\"both\",\"ring_bytes\":4096}]}"
/* peer -> evil: the evil side may only read the data. */
#define TO_EVIL                                                            \
	"{\"grants\":[{\"channel\":\"evil\",\"endpoint_a\":\"peer\","        \
	"\"endpoint_b\":\"%s\",\"direction\":\"a_to_b\",\"ring_bytes\":4096}]}"
/* evil -> peer: the evil side writes the data section. */
#define FROM_EVIL                                                          \
	"{\"grants\":[{\"channel\":\"evil\",\"endpoint_a\":\"%s\","          \
	"\"endpoint_b\":\"peer\",\"direction\":\"a_to_b\",\"ring_bytes\":4096}]}"

/* Open, then revoke by removing the grant. */
static void open_then_revoke(struct scene *s)
{
	char want[128];
	snprintf(want, sizeof(want), "\"event\":\"open_allowed\","
		 "\"partition\":\"%s\"", s->name);
	run_until_audit(s, want, 5000);
	AUDIT_HAS(s, want);
	t_fleet_set_grants(&s->f, "{\"grants\":[]}");
	AUDIT_HAS(s, "\"event\":\"revoke\",\"channel\":\"evil\"");
}

/* ---- revocation ---------------------------------------------------------- */

Test(hostile_vmm, withheld_unmapped_is_killed_at_the_deadline, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "withhold_unmapped", BOTH_EVIL, "steps=sleep:1500");
	open_then_revoke(&s);
	evil_stopped(&s, VMX_STOP_VMM_TIMEOUT);
	AUDIT_HAS(&s, "\"reason\":\"UNMAP_TIMEOUT\"");
	cr_assert_eq(s.f.cm.nchans, 0, "revoked channel still held");
	peer_exits_0(&s);
	scene_end(&s);
}

/* Issue 8 item 2: CLOSED deferred while the agent waited for UNMAPPED ran
 * inside the stop and freed the channel under the revocation. */
Test(hostile_vmm, closed_before_unmapped_frees_nothing_twice, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "closed_before_unmapped", BOTH_EVIL, "steps=sleep:1500");
	open_then_revoke(&s);
	evil_stopped(&s, VMX_STOP_VMM_TIMEOUT);
	cr_assert_eq(s.f.cm.nchans, 0);
	peer_exits_0(&s);
	scene_end(&s);
}

Test(hostile_vmm, kept_revoked_mapping_faults, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "keep_revoked", TO_EVIL, "steps=sleep:4000");
	open_then_revoke(&s);
	evil_stopped(&s, VMX_STOP_VMM_DIED);
	OUT_HAS(&s, "evil: revoked window faulted (SIGBUS)");
	cr_assert_null(strstr(OUT(&s), "still there"), "%s", OUT(&s));
	peer_exits_0(&s);
	scene_end(&s);
}

/* ---- the ending ------------------------------------------------------------ */

Test(hostile_vmm, finished_then_running_is_killed_not_awaited, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "finished_then_run", BOTH_EVIL, "steps=sleep:500");
	uint64_t t0 = mono_now_ns();
	run_until_finished(&s, s.evil, 5000);
	cr_assert(s.evil->finished);
	cr_assert_eq(s.evil->fin.reason, VMX_STOP_EXIT, "%s",
		     vmx_stop_name(s.evil->fin.reason));
	uint64_t end = mono_now_ns() + 3000000000ull;
	while (s.evil->pid > 0 && mono_now_ns() < end)
		sup_step(&s.f.sup, -1, 20);
	cr_assert_eq(s.evil->pid, 0, "the vmm that lingered was not killed");
	cr_assert_lt(mono_now_ns() - t0, 2000000000ull, "the agent waited");
	peer_exits_0(&s);
	scene_end(&s);
}

/* ---- dirty reports --------------------------------------------------------- */

static void dirty_case(const char *mode)
{
	struct scene s;
	scene_start(&s, mode, BOTH_EVIL, "steps=sleep:1000");
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	cr_assert(strstr(s.evil->fin.detail, "dirty report"), "%s",
		  s.evil->fin.detail);
	AUDIT_HAS(&s, "\"event\":\"open_denied\"");
	peer_exits_0(&s);
	scene_end(&s);
}

/* No report at all: killed at the deadline, which is one for the whole
 * report (never renewed by a chunk). */
Test(hostile_vmm, withheld_dirty_report_is_killed_at_the_deadline,
     .timeout = 60)
{
	struct scene s;
	scene_timeout_ms = 1000;
	scene_start(&s, "dirty_withheld", BOTH_EVIL, "steps=sleep:2000");
	evil_stopped(&s, VMX_STOP_VMM_TIMEOUT);
	cr_assert(strstr(s.evil->fin.detail, "no CTL_DIRTY"), "%s",
		  s.evil->fin.detail);
	AUDIT_HAS(&s, "\"event\":\"open_denied\"");
	peer_exits_0(&s);
	scene_end(&s);
}

Test(hostile_vmm, endless_dirty_chunks, .timeout = 60)
{
	dirty_case("dirty_endless");
}

Test(hostile_vmm, dirty_chunk_past_the_bitmap, .timeout = 60)
{
	dirty_case("dirty_overflow");
}

Test(hostile_vmm, dirty_chunks_backwards, .timeout = 60)
{
	dirty_case("dirty_backwards");
}

/* ---- the link itself ------------------------------------------------------- */

static void protocol_case(const char *mode)
{
	struct scene s;
	scene_start(&s, mode, BOTH_EVIL, "steps=sleep:1000");
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	peer_exits_0(&s);
	scene_end(&s);
}

Test(hostile_vmm, garbage_message, .timeout = 60)
{
	protocol_case("garbage");
}

Test(hostile_vmm, oversized_message, .timeout = 60)
{
	protocol_case("oversized");
}

Test(hostile_vmm, unsolicited_reply, .timeout = 60)
{
	protocol_case("unsolicited");
}

/* Requests while the agent waits for a reply are deferred, up to a bound. */
Test(hostile_vmm, request_flood_during_a_wait, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "request_flood", BOTH_EVIL, "steps=sleep:1000");
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	cr_assert(strstr(s.evil->fin.detail, "requests while the agent "
			 "waited"), "%s", s.evil->fin.detail);
	peer_exits_0(&s);
	scene_end(&s);
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	cr_assert(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

Test(hostile_vmm, fd_flood_is_refused_and_closed, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "fd_flood", BOTH_EVIL, "steps=sleep:1000");
	unsigned before = open_fds();
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	cr_assert_leq(open_fds(), before, "descriptors left behind: %u > %u",
		      open_fds(), before);
	peer_exits_0(&s);
	scene_end(&s);
}

/* ---- channel memory rights ------------------------------------------------- */

Test(hostile_vmm, read_only_sections_refuse_every_write, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "ro_write", TO_EVIL, "steps=sleep:1000");
	run_until_audit(&s, "\"event\":\"open_allowed\"", 5000);
	uint64_t end = mono_now_ns() + 3000000000ull;
	while (!strstr(OUT(&s), "evil: open") && mono_now_ns() < end)
		sup_step(&s.f.sup, -1, 20);
	OUT_HAS(&s, "evil: open 0");
	/* header, producer index, data: all the producer's or the agent's */
	for (int seg = 0; seg < 4; seg++) {
		if (seg == 2)
			continue; /* the consumer index: its own */
		char want[64];
		snprintf(want, sizeof(want), "evil: seg %d mmap-rw Permission "
			 "denied", seg);
		OUT_HAS(&s, want);
		snprintf(want, sizeof(want), "evil: seg %d mprotect-rw "
			 "Permission denied", seg);
		OUT_HAS(&s, want);
		snprintf(want, sizeof(want), "evil: seg %d write Bad file "
			 "descriptor", seg);
		OUT_HAS(&s, want);
	}
	cr_assert_null(strstr(OUT(&s), "mmap-rw ok"), "%s", OUT(&s));
	cr_assert_null(strstr(OUT(&s), "mprotect-rw ok"), "%s", OUT(&s));
	cr_assert_null(strstr(OUT(&s), "ftruncate ok"), "%s", OUT(&s));
	cr_assert_null(strstr(OUT(&s), "write ok"), "%s", OUT(&s));
	if (strstr(OUT(&s), "reopen-rw ok"))
		cr_log_warn("a read-only section fd re-opens read-write "
			    "through /proc: closed only once the vmm runs "
			    "jailed (issue 8, vmm privileges)");
	partition_stop(s.evil);
	evil_stopped(&s, VMX_STOP_KILLED);
	peer_exits_0(&s);
	scene_end(&s);
}

/* A writer can cut its own section: that harms only its channel, and the
 * fault is put on the writer, not on the peer that reads it. */
Test(hostile_vmm, truncating_its_own_section_is_the_writers_fault,
     .timeout = 60)
{
	struct scene s;
	scene_start(&s, "truncate_own", FROM_EVIL, "steps=open:evil,recvall:0");
	evil_stopped(&s, VMX_STOP_COMPROMISED);
	/* ("evil: truncate own section ok" may be cut off by the kill.) */
	char want[160];
	snprintf(want, sizeof(want), "\"partition\":\"%s\",\"channel\":\"evil\","
		 "\"reason\":\"SECTION_TRUNCATED\"", s.name);
	AUDIT_HAS(&s, want);
	run_until_finished(&s, s.peer, 20000);
	cr_log_info("peer: %s (%s)", vmx_stop_name(s.peer->fin.reason),
		    s.peer->fin.detail);
	if (s.peer->fin.reason != VMX_STOP_EXIT) {
		/* It touched the cut section before it learnt of the
		 * revocation: its fault names the writer. */
		snprintf(want, sizeof(want), "after %s truncated", s.name);
		AUDIT_HAS(&s, want);
	} else {
		cr_assert_eq(s.peer->fin.code, 0, "%s", OUT(&s));
	}
	scene_end(&s);
}

/* The same, with a peer that reads the cut channel: it is stopped (the
 * window went under it), and its fault names the writer that cut it. */
Test(hostile_vmm, a_peer_stopped_by_a_cut_section_is_not_blamed, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "truncate_own", FROM_EVIL, "steps=open:evil,sleep:200,"
		    "touch:0");
	evil_stopped(&s, VMX_STOP_COMPROMISED);
	run_until_finished(&s, s.peer, 20000);
	cr_assert_neq(s.peer->fin.reason, VMX_STOP_EXIT, "%s", OUT(&s));
	cr_log_info("peer: %s (%s)", vmx_stop_name(s.peer->fin.reason),
		    s.peer->fin.detail);
	char want[160];
	snprintf(want, sizeof(want), "\"partition\":\"peer\",\"reason\":\"%s\","
		 "\"detail\":\"", vmx_stop_name(s.peer->fin.reason));
	run_until_audit(&s, want, 2000);
	AUDIT_HAS(&s, want);
	snprintf(want, sizeof(want), "; after %s truncated its section", s.name);
	AUDIT_HAS(&s, want);
	scene_end(&s);
}

/* ---- the sandbox --------------------------------------------------------- */

/* A forbidden call is fatal to the vmm (SIGSYS), or the vmm jail keeps
 * it from reaching anything. Getting through is a failure, never a skip:
 * the jail (agent/vmm_jail.c) is parley's own, not a machine capability. */
static void sandbox_case(const char *mode, const char *got_through)
{
	struct scene s;
	scene_start(&s, mode, BOTH_EVIL, "steps=sleep:1000");
	run_until_finished(&s, s.evil, 3000);
	bool through = strstr(OUT(&s), got_through) != NULL;
	if (!s.evil->finished)
		partition_stop(s.evil);
	peer_exits_0(&s);
	if (through) {
		scene_end(&s);
		cr_assert_fail("the vmm's seccomp filter and jail let it through "
			       "(\"%s\")", got_through);
	}
	cr_assert_eq(s.evil->fin.reason, VMX_STOP_VMM_DIED, "%s (%s)",
		     vmx_stop_name(s.evil->fin.reason), s.evil->fin.detail);
	cr_assert(strstr(s.evil->fin.detail, "signal 31") ||
		  strstr(OUT(&s), "cannot name the agent"), "%s\n%s",
		  s.evil->fin.detail, OUT(&s));
	scene_end(&s);
}

Test(hostile_vmm, tgkill_of_the_agent, .timeout = 60)
{
	sandbox_case("tgkill_agent", "tgkill of the agent allowed");
}

Test(hostile_vmm, exec_of_an_rwx_page, .timeout = 60)
{
	sandbox_case("exec_rwx", "executed an RWX page");
}

/* A vmm that asks and never reads the answers: the grant manager's sends
 * never block (the socket fills, the send would), so it kills that vmm
 * and keeps serving the others instead of hanging in sendmsg. */
Test(hostile_vmm, replies_never_read_do_not_block_the_agent, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "open_noread", BOTH_EVIL, "steps=sleep:1000");
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	cr_assert(strstr(s.evil->fin.detail, "does not read its control "
			 "socket"), "%s", s.evil->fin.detail);
	peer_exits_0(&s);
	scene_end(&s);
}

/* A vCPU waits for the answer to its CHAN_OPEN, so a second open from it
 * before the answer is the vmm's doing: each open waits for dirty reports,
 * and a vmm that asked again during every wait would keep the grant
 * manager busy for ever. It is killed at the second ask. */
Test(hostile_vmm, second_open_before_the_answer_is_refused, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "defer_loop", BOTH_EVIL, "steps=sleep:1000");
	evil_stopped(&s, VMX_STOP_VMM_PROTOCOL);
	cr_assert(strstr(s.evil->fin.detail, "second channel open from "
			 "vCPU 0"), "%s", s.evil->fin.detail);
	peer_exits_0(&s);
	scene_end(&s);
}

/* A vmm the partition took over reports its devices' states without end
 * (each a change): they are charged to the partition's audit bucket as
 * its refusals are -- counted past the burst, not recorded one by one
 * (200,000 were 56 MB of audit in 3.5 s before). */
Test(hostile_vmm, device_state_flood_is_counted_not_recorded, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "device_flood", BOTH_EVIL, "steps=sleep:300");
	uint64_t t0 = mono_now_ns();
	uint64_t end = t0 + 20000000000ull;
	while (!strstr(OUT(&s), "evil: flooded") && mono_now_ns() < end)
		sup_step(&s.f.sup, -1, 20);
	OUT_HAS(&s, "evil: flooded");
	double secs = (double)(mono_now_ns() - t0) / 1e9;
	unsigned n = 0;
	for (const char *p = AUDIT(&s); (p = strstr(p, "\"event\":"
					 "\"device_state\"")); p++)
		n++;
	/* the burst, then AUDIT_DENY_PER_S a second (and a margin) */
	unsigned bound = AUDIT_DENY_BURST + (unsigned)(secs + 1) *
					       AUDIT_DENY_PER_S + 16;
	cr_expect_leq(n, bound, "%u device_state records in %.1f s", n, secs);
	cr_expect_gt(n, 0);
	AUDIT_HAS(&s, "\"event\":\"audit_limited\"");
	peer_exits_0(&s);
	scene_end(&s);
}

/* The vmm's last word is free text for the operator's log and terminal:
 * escape sequences and line breaks in it arrive as '?', so it can neither
 * drive a terminal nor forge a line of the agent's output. */
Test(hostile_vmm, finish_detail_cannot_drive_a_terminal, .timeout = 60)
{
	struct scene s;
	scene_start(&s, "finish_escapes", BOTH_EVIL, "steps=sleep:300");
	run_until_finished(&s, s.evil, 10000);
	cr_assert(s.evil->finished, "%s", OUT(&s));
	for (const char *c = s.evil->fin.detail; *c; c++)
		cr_assert((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f,
			  "byte 0x%02x in the detail", (unsigned char)*c);
	cr_expect(strstr(s.evil->fin.detail, "?[2J?[31mX?other: exited with "
			 "code 0??]0;pwned??"), "%s", s.evil->fin.detail);
	cr_expect_null(strchr(OUT(&s), 0x1b), "%s", OUT(&s));
	cr_expect_null(strstr(OUT(&s), "\nother: exited"), "%s", OUT(&s));
	peer_exits_0(&s);
	scene_end(&s);
}

/* The agent's stderr is not the vmm's: a vmm its partition took over
 * could forge the agent's lines there (and truncate a log file opened for
 * writing). Its fd 2 is /dev/null; its diagnostics come as console lines
 * (PARLEY_VMM_STDERR=inherit, for a test run's sanitizers, aside). */
Test(hostile_vmm, stderr_is_not_the_agents, .timeout = 60)
{
	unsetenv("PARLEY_VMM_STDERR");
	struct scene s;
	scene_start(&s, "stderr_probe", BOTH_EVIL, "steps=sleep:300");
	uint64_t end = mono_now_ns() + 20000000000ull;
	while (!strstr(OUT(&s), "evil: fd2") && mono_now_ns() < end)
		sup_step(&s.f.sup, -1, 20);
	OUT_HAS(&s, "evil: fd2 chr 1:3");
	peer_exits_0(&s);
	scene_end(&s);
}
