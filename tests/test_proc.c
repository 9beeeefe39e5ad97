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
#include <sys/mman.h>
#include <sys/wait.h>
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

/* ---- channels on the process backend (the channel cases themselves run
 * on every backend in test_chan.c; what is here is the process backend's
 * own: a window reaching a vCPU that never asked for it) ---- */
#include "tests/helpers/fleet.h"

#define BOTH(ch, a, b)                                                     \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"
#define GRANTS(x) "{\"grants\":[" x "]}"
#define OUT_HAS(f, s)                                                      \
	cr_assert(strstr(t_fleet_out(f), s), "no \"%s\" in:\n%s", s,      \
		  t_fleet_out(f))

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

/* ---- misbehaving partitions on the process backend ---- */

struct bad_case {
	const char *image, *mode;
	unsigned reason;
	const char *detail;
};

/* hostile.elf's modes stop with KVM's reasons; escape.elf's try the ways
 * out of a process that only this backend has. */
static const struct bad_case bad_cases[] = {
	{ "hostile.elf", "ud2", VMX_STOP_TRIPLE_FAULT, "invalid opcode" },
	{ "hostile.elf", "null", VMX_STOP_TRIPLE_FAULT, "cr2 0x0" },
	{ "hostile.elf", "write_text", VMX_STOP_TRIPLE_FAULT, "cr2 0x1" },
	{ "hostile.elf", "read_sys", VMX_STOP_TRIPLE_FAULT, "cr2 0x1000" },
	{ "hostile.elf", "write_bootinfo", VMX_STOP_TRIPLE_FAULT,
	  "cr2 0x13000" },
	{ "hostile.elf", "badport", VMX_STOP_BAD_PORT, "port 0x80" },
	{ "hostile.elf", "inport", VMX_STOP_BAD_PORT,
	  "IN of 1 byte(s) to port 0x60" },
	{ "hostile.elf", "hc_oob", VMX_STOP_BAD_HYPERCALL,
	  "outside guest memory" },
	{ "hostile.elf", "hc_unaligned", VMX_STOP_BAD_HYPERCALL,
	  "not 8-byte aligned" },
	{ "hostile.elf", "hc_unknown", VMX_STOP_BAD_HYPERCALL,
	  "unknown hypercall number 66" },
	{ "hostile.elf", "wild", VMX_STOP_BAD_ACCESS,
	  "guest-physical 0x30000000" },
	{ "hostile.elf", "wild_write", VMX_STOP_BAD_ACCESS, "guest-physical" },
	{ "escape.elf", "syscall", VMX_STOP_SYSCALL, "syscall" },
	{ "escape.elf", "sysenter", VMX_STOP_SYSCALL, "" },
	{ "escape.elf", "int80", VMX_STOP_SYSCALL, "" },
	{ "escape.elf", "farjump32", VMX_STOP_TRIPLE_FAULT,
	  "code segment 0x23" },
	{ "escape.elf", "farjump32_int80", VMX_STOP_SYSCALL, "" },
	{ "escape.elf", "vsyscall", VMX_STOP_SYSCALL, "vsyscall" },
	{ "escape.elf", "site", VMX_STOP_SYSCALL, "syscall" },
	{ "escape.elf", "site_int3", VMX_STOP_TRIPLE_FAULT, "breakpoint" },
	{ "escape.elf", "read_stub", VMX_STOP_TRIPLE_FAULT,
	  "cr2 0x600000000000" },
	{ "escape.elf", "read_stub_data", VMX_STOP_TRIPLE_FAULT,
	  "cr2 0x600000101000" },
	{ "escape.elf", "write_text", VMX_STOP_TRIPLE_FAULT, "protection" },
	{ "escape.elf", "exec_data", VMX_STOP_TRIPLE_FAULT, "execute" },
};

/* Whether this host's kernel lets a 64-bit process far-jump into its
 * 32-bit code segment (0x23). Some do not (ia32 emulation off, or a guest
 * kernel under PVM): the jump itself then faults with #GP, in the
 * partition's own code segment. Asked of a child that jumps to a `ud2`
 * below 2 GiB: SIGILL means it got there. */
static bool host_runs_compat32(void)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGILL, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE |
				     PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS |
				     MAP_32BIT, -1, 0);
		if (code == MAP_FAILED)
			_exit(3);
		code[0] = 0x0f, code[1] = 0x0b; /* ud2 */
		static struct __attribute__((packed)) {
			uint32_t off;
			uint16_t sel;
		} fp;
		fp.off = (uint32_t)(uintptr_t)code;
		fp.sel = 0x23;
		__asm__ volatile("ljmpl *%0" : : "m"(fp) : "memory");
		_exit(4);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && (WTERMSIG(st) == SIGILL ||
				      WTERMSIG(st) == SIGSEGV),
		  "the compat-mode probe ended with status 0x%x", st);
	return WTERMSIG(st) == SIGILL;
}

static void run_bad(const struct bad_case *c, struct partition *n)
{
	struct t_console out = { 0 };
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "mode=%s", c->mode);
	struct partition *h = start("bad", c->image, cmd, &out);
	finish(h);
	cr_assert_eq(h->fin.reason, c->reason, "%s %s: got %s (%s)", c->image,
		     c->mode, vmx_stop_name(h->fin.reason), h->fin.detail);
	cr_assert(strstr(h->fin.detail, c->detail), "%s: detail \"%s\"",
		  c->mode, h->fin.detail);
	cr_assert(out.buf && strstr(out.buf, "starting"), "%s", out.buf);
	cr_assert_null(strstr(out.buf, "unknown mode"));
	cr_assert_null(strstr(out.buf, "still here"), "%s", c->mode);
	cr_assert_eq(n->finished, false, "the neighbour stopped with %s",
		     c->mode);
	partition_destroy(h);
	t_console_free(&out);
}

Test(proc_hostile, each_attempt_stops_only_that_partition, .timeout = 240)
{
	struct t_console nout = { 0 };
	struct partition *n = start("neighbour", "counter.elf",
				    "count=1000000 work=100000", &nout);
	bool compat = host_runs_compat32();
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(*bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		/* Where the host refuses the 32-bit segment, the far jump
		 * itself is the fault: stopped all the same, named so. */
		struct bad_case refused = { c->image, c->mode,
					    VMX_STOP_TRIPLE_FAULT,
					    "general protection" };
		run_bad(!compat && !strncmp(c->mode, "farjump32", 9) ?
			&refused : c, n);
	}
	cr_log_info("the host %s a far jump into its 32-bit code segment",
		    compat ? "runs" : "refuses");
	partition_stop(n);
	STOPPED_WITH(n, VMX_STOP_KILLED);
	cr_assert_gt(t_count_lines(nout.buf, "tick "), 0);
	partition_destroy(n);
	t_console_free(&nout);
}


static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert(f, "%s", path);
	char *buf = calloc(1, 65536);
	size_t len = fread(buf, 1, 65535, f);
	buf[len] = 0;
	fclose(f);
	return buf;
}

Test(proc_hostile, child_holds_no_fd_and_nothing_of_the_stub, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("wait", "escape.elf", "mode=wait", &out);
	for (int i = 0; i < 500 && !(out.buf && strstr(out.buf, "waiting"));
	     i++)
		partition_wait(p, 10);
	cr_assert(out.buf && strstr(out.buf, "waiting"));
	pid_t kids[4];
	cr_assert_eq(t_children_of(p->pid, kids, 4), 1);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)kids[0]);
	DIR *d = opendir(path);
	cr_assert(d, "%s", path);
	int nfd = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		nfd += e->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(nfd, 0, "the partition's process holds %d fds", nfd);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)kids[0]);
	char *maps = slurp(path);
	cr_assert_null(strstr(maps, "[stack]"), "%s", maps);
	cr_assert_null(strstr(maps, "[vdso]"), "%s", maps);
	cr_assert_null(strstr(maps, "[vvar]"), "%s", maps);
	cr_assert_null(strstr(maps, "600000000000-"), "stub text left:\n%s",
		       maps);
	cr_assert_null(strstr(maps, "rwxp"), "%s", maps);
	cr_assert_null(strstr(maps, "rwxs"), "%s", maps);
	/* What is left: guest memory below 4 GiB, the injection site, and
	 * the vsyscall page nobody can unmap. */
	for (char *l = maps; *l; l = strchr(l, '\n') + 1) {
		unsigned long long lo = strtoull(l, NULL, 16);
		cr_assert(lo < 0x100000000ull || lo == 0x600000100000ull ||
			  lo == 0xffffffffff600000ull, "left: %.60s", l);
		if (!strchr(l, '\n'))
			break;
	}
	free(maps);
	/* Both run under seccomp: the vmm its allowlist, the child the stub's
	 * own filter, with no way to gain privileges by exec. */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)kids[0]);
	char *st = slurp(path);
	cr_assert(strstr(st, "Seccomp:\t2") && strstr(st, "NoNewPrivs:\t1"),
		  "%s", st);
	free(st);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
	st = slurp(path);
	cr_assert(strstr(st, "Seccomp:\t2"), "%s", st);
	free(st);
	partition_stop(p);
	partition_destroy(p);
	t_console_free(&out);
}

/* ---- lifecycle ---- */

static void wait_lines(struct partition *p, struct t_console *out,
		       const char *prefix, int n)
{
	for (int i = 0; i < 2000 && t_count_lines(out->buf, prefix) < n; i++) {
		cr_assert_eq(p->finished, false, "finished early: %s",
			     p->fin.detail);
		if (partition_wait(p, 10) == 0)
			break;
	}
	cr_assert_geq(t_count_lines(out->buf, prefix), n);
}

/* Neither gone nor a zombie waiting for its reaper. */
static bool alive(pid_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[2] != 'Z' && rp[2] != 'X';
}

Test(proc, vmm_process_death_ends_the_partition, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("spin", "hostile.elf", "mode=spin", &out);
	pid_t vmm = p->pid, kids[4];
	cr_assert_eq(partition_wait(p, 100), -ETIMEDOUT);
	int n = t_children_of(vmm, kids, 4);
	cr_assert_eq(n, 1);
	kill(vmm, SIGKILL);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_VMM_DIED);
	/* The stub child dies with its tracer (PTRACE_O_EXITKILL). */
	for (int i = 0; i < 100 && alive(kids[0]); i++)
		usleep(10000);
	cr_assert_not(alive(kids[0]), "the partition's process lives on");
	partition_destroy(p);
	t_console_free(&out);
}

/* ---- dirty tracking of the config region ---- */

static unsigned dirty_count(struct partition *p, uint64_t *first)
{
	unsigned n = 0;
	for (uint64_t i = 0; i < p->measure.npages; i++)
		if (p->measure.dirty[i / 64] & (1ull << (i % 64))) {
			if (!n)
				*first = i;
			n++;
		}
	memset(p->measure.dirty, 0, (p->measure.npages + 63) / 64 * 8);
	return n;
}

Test(proc, dirty_report_names_exactly_the_pages_written, .timeout = 60)
{
	char *dir = t_tmpdir();
	static char big[3 * 4096];
	memset(big, 'x', sizeof(big));
	free(t_write(dir, "motd", "hello\n", 6));
	free(t_write(dir, "big", big, sizeof(big)));
	char *json;
	cr_assert(asprintf(&json,
		"{\"name\":\"dirty\",\"image\":\"%s\",\"memory\":\"8M\","
		"\"cmdline\":\"steps=sleep:300,same:motd,sleep:3000\","
		"\"config\":[{\"name\":\"big\",\"path\":\"big\"},"
		"{\"name\":\"motd\",\"path\":\"motd\"}]}",
		"chantest.elf") > 0);
	struct t_console out = { 0 };
	/* Config files beside the spec (its directory), the image from the
	 * build's image directory. */
	struct part_spec s;
	struct parley_err perr = { 0 };
	cr_assert_eq(spec_parse(json, strlen(json), dir, &s, &perr), 0, "%s",
		     perr_msg(&perr));
	struct part_opts o = t_opts(&out);
	o.backend = CTL_BACKEND_PROCESS;
	struct partition *p = NULL;
	cr_assert_eq(partition_create(&s, &o, &p, &perr), 0, "%s",
		     perr_msg(&perr));
	spec_free(&s);
	struct parley_err err = { 0 };
	uint64_t first = 0;
	cr_assert_eq(p->measure.npages, 4);
	cr_assert_eq(partition_fetch_dirty(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(dirty_count(p, &first), 0, "dirty before any write");
	for (int i = 0; i < 500 && !(out.buf && strstr(out.buf, "rewrote"));
	     i++)
		partition_wait(p, 10);
	cr_assert(out.buf && strstr(out.buf, "rewrote motd"), "%s (%s: %s)",
		  out.buf, vmx_stop_name(p->fin.reason), p->fin.detail);
	cr_assert_eq(partition_fetch_dirty(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(dirty_count(p, &first), 1, "one page written");
	cr_assert_eq(first, 3, "motd lies after big's three pages");
	/* Re-armed: nothing written since. */
	cr_assert_eq(partition_fetch_dirty(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(dirty_count(p, &first), 0, "reported twice");
	partition_stop(p);
	partition_destroy(p);
	t_console_free(&out);
	free(json);
	t_rmtree(dir);
	free(dir);
}

/* ---- save and restore, across backends ---- */

static void save_restore(uint32_t from, uint32_t to)
{
	const char *cmd = "count=12 work=2000000";
	struct t_console whole = { 0 }, before = { 0 }, after = { 0 };
	struct partition *p = start_on(from, "counter", "counter.elf", cmd,
				       NULL, false, &whole);
	finish(p);
	cr_assert_eq(p->fin.code, 0);
	partition_destroy(p);

	char *dir = t_tmpdir(), *snap;
	cr_assert(asprintf(&snap, "%s/counter.snap", dir) > 0);
	p = start_on(from, "counter", "counter.elf", cmd, NULL, false, &before);
	wait_lines(p, &before, "tick ", 4);
	struct parley_err err = { 0 };
	cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(partition_save(p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(p);

	struct part_opts o = t_opts(&after);
	o.backend = to;
	cr_assert_eq(partition_restore(snap, NULL, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(p->backend, to);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert_eq(p->fin.code, 0);
	char *joined;
	cr_assert(asprintf(&joined, "%s%s", before.buf,
			   after.buf ? after.buf : "") > 0);
	cr_assert_str_eq(joined, whole.buf);
	cr_assert_gt(t_count_lines(after.buf, "tick "), 0);
	partition_destroy(p);
	free(joined);
	free(snap);
	t_rmtree(dir);
	free(dir);
	t_console_free(&whole);
	t_console_free(&before);
	t_console_free(&after);
}

Test(proc, save_restore_on_the_process_backend, .timeout = 90)
{
	save_restore(CTL_BACKEND_PROCESS, CTL_BACKEND_PROCESS);
}

/* Across backends: KVM must be there, so these live in a kvm_* suite. */
Test(kvm_proc, snapshot_from_process_restores_on_kvm, .timeout = 90)
{
	T_REQUIRE_KVM();
	save_restore(CTL_BACKEND_PROCESS, CTL_BACKEND_KVM);
}

Test(kvm_proc, snapshot_from_kvm_restores_on_process, .timeout = 90)
{
	T_REQUIRE_KVM();
	save_restore(CTL_BACKEND_KVM, CTL_BACKEND_PROCESS);
}

/* ---- a figure, logged and never asserted on ---- */
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include "agent/ctl/clock.h"

/* A bare ptrace round trip for a user-mode `out dx,eax`: SIGSEGV stop,
 * GETREGS, rip + 1, SETREGS, SYSEMU: the floor the process backend's
 * hypercall path stands on. ns per round. */
static double bare_ptrace_out_ns(unsigned n)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		for (;;)
			__asm__ volatile("outl %%eax, %%dx" : : "a"(0),
					 "d"(0x500));
	}
	int st;
	waitpid(pid, &st, 0);
	ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
	uint64_t t0 = 0;
	for (unsigned i = 0; i <= n; i++) {
		if (i == 1)
			t0 = mono_now_ns(); /* the first round warms up */
		ptrace(PTRACE_SYSEMU, pid, 0, 0);
		waitpid(pid, &st, 0);
		struct user_regs_struct r;
		ptrace(PTRACE_GETREGS, pid, 0, &r);
		r.rip += 1;
		ptrace(PTRACE_SETREGS, pid, 0, &r);
	}
	double ns = (double)(mono_now_ns() - t0) / n;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return ns;
}

struct marks {
	uint64_t s, e;
};

static void on_mark(struct partition *p, const char *buf, size_t len,
		    void *ctx)
{
	uint64_t now = mono_now_ns();
	struct marks *m = ctx;
	(void)p;
	if (len > 2 && buf[0] == 'S' && buf[1] == ' ')
		m->s = now;
	else if (len > 2 && buf[0] == 'E' && buf[1] == ' ')
		m->e = now;
}

Test(proc_bench, hypercall_round_trip_vs_bare_ptrace_stop, .timeout = 120)
{
	const unsigned n = 20000;
	double bare = bare_ptrace_out_ns(n);
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"name\":\"hcbench\",\"image\":\"hcbench.elf\","
		 "\"memory\":\"8M\",\"cmdline\":\"mode=loop n=%u batches=1 "
		 "warm=200\"}", n);
	struct part_spec s;
	cr_assert_eq(spec_parse(json, strlen(json), PARLEY_BUILD_DIR "/guest",
				&s, NULL), 0);
	struct marks m = { 0 };
	struct part_opts o = t_opts(NULL);
	o.backend = CTL_BACKEND_PROCESS;
	o.on_console = on_mark;
	o.ctx = &m;
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert(m.e > m.s);
	double hc = (double)(m.e - m.s) / n;
	cr_log_info("BENCH proc_hypercall_vs_ptrace_stop %.2f ratio "
		    "(hypercall %.1f us, bare ptrace stop %.1f us)",
		    hc / bare, hc / 1000, bare / 1000);
	fprintf(stderr, "BENCH proc_hypercall_vs_ptrace_stop %.2f ratio "
		"(hypercall %.1f us, bare ptrace stop %.1f us)\n", hc / bare,
		hc / 1000, bare / 1000);
	partition_destroy(p);
}

Test(proc_chan, a_window_reaches_every_vcpu_of_the_partition, .timeout = 30)
{
	struct t_fleet f;
	fleet(&f, GRANTS(BOTH("c1", "a", "b")));
	f.vcpus = 2;
	struct partition *a = t_fleet_add(&f, "a", "smpchan.elf", "", NULL,
					  false, NULL);
	f.vcpus = 0;
	t_fleet_add(&f, "b", "chantest.elf", "steps=open:c1,sleep:300", NULL,
		    false, NULL);
	t_fleet_go(&f);
	done(&f, 10000);
	exit0(&f, a);
	OUT_HAS(&f, "a| smpchan: vcpu 1 read the window");
	t_fleet_free(&f);
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double cold_start_ms(uint32_t backend)
{
	enum { RUNS = 7 };
	double ms[RUNS];
	for (int i = 0; i < RUNS; i++) {
		struct t_console out = { 0 };
		struct partition *p = start_on(backend, "hello", "hello.elf", "",
					       NULL, false, &out);
		finish(p);
		STOPPED_WITH(p, VMX_STOP_EXIT);
		cr_assert(p->t_first_console_ns > p->t_created_ns);
		ms[i] = (double)(p->t_first_console_ns - p->t_created_ns) / 1e6;
		partition_destroy(p);
		t_console_free(&out);
	}
	qsort(ms, RUNS, sizeof(*ms), by_value);
	return ms[RUNS / 2];
}

Test(proc_bench, cold_start_to_first_console, .timeout = 60)
{
	double proc = cold_start_ms(CTL_BACKEND_PROCESS);
	double kvm = t_kvm_missing() ? 0 : cold_start_ms(CTL_BACKEND_KVM);
	fprintf(stderr, "BENCH proc_partition_cold_start_ms %.2f ms (median "
		"of 7, created to first console; kvm in the same run: %.2f ms)\n",
		proc, kvm);
}
