/*
 * parley-vmm-evil: a fake vmm process for the hostile_vmm suite. It speaks
 * the real control protocol (agent/ctl) from the vmm's side, as a vmm that
 * a partition has taken over would, and misbehaves in one way per mode.
 * It runs no guest; it is never installed.
 *
 * The mode is the partition's name after "evil-" (argv[1], which the agent
 * passes to every vmm), or PARLEY_EVIL_MODE. What it observes itself (a
 * refused writable mapping, a fault on a revoked window) it reports on its
 * console as "evil: ..." lines, so a test reads them like any console.
 *
 * Modes: honest, withhold_unmapped, closed_before_unmapped,
 * finished_then_run, dirty_withheld, dirty_endless, dirty_overflow, dirty_backwards,
 * garbage, oversized, unsolicited, fd_flood, request_flood, ro_write,
 * keep_revoked,
 * truncate_own, tgkill_agent, exec_rwx, update_lie (an update stage
 * begun honestly, then a WRITE naming the config region, which the
 * partition could never have passed).
 */
#include "agent/ctl/ctl.h"
#include "agent/ctl/stop.h"
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define SOCK CTL_FD_SOCK
#define PAGE PARLEY_PAGE_SIZE

static const char *mode = "honest";
static uint64_t cfg_pages;

static bool is(const char *m)
{
	return strcmp(mode, m) == 0;
}

static void say(const char *fmt, ...)
{
	struct ctl_console c = { 0 };
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c.buf, sizeof(c.buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(c.buf) - 2)
		n = (int)sizeof(c.buf) - 2;
	c.buf[n++] = '\n';
	c.len = (uint32_t)n;
	ctl_send(SOCK, CTL_CONSOLE, &c,
		 (uint32_t)(offsetof(struct ctl_console, buf) + c.len));
}

static const char *result(int rc)
{
	return rc < 0 ? strerror(errno) : "ok";
}

/* ---- the channel window, as the real vmm would map it -------------------- */

static struct {
	bool have;
	struct ctl_map m;
	int mem[CTL_MAP_MEMS_MAX];
	uint8_t *view;
	bool revoked;
	struct timespec revoked_at;
} win;

static void map_view(void)
{
	win.view = mmap(NULL, win.m.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	if (win.view == MAP_FAILED) {
		win.view = NULL;
		return;
	}
	for (unsigned i = 0; i < win.m.nseg; i++) {
		int prot = PROT_READ | (win.m.seg[i].readonly ? 0 : PROT_WRITE);
		if (mmap(win.view + win.m.seg[i].off, win.m.seg[i].len, prot,
			 MAP_SHARED | MAP_FIXED, win.mem[win.m.seg[i].mem],
			 (off_t)win.m.seg[i].file_off) == MAP_FAILED)
			say("evil: mapping segment %u: %s", i, strerror(errno));
	}
}

/* What a vmm can do with the descriptor of a section it may only read. */
static void try_ro_section(unsigned seg)
{
	int fd = win.mem[win.m.seg[seg].mem];
	off_t off = (off_t)win.m.seg[seg].file_off;
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	say("evil: seg %u mmap-rw %s", seg,
	    p == MAP_FAILED ? strerror(errno) : "ok");
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, off);
	if (p != MAP_FAILED) {
		say("evil: seg %u mprotect-rw %s", seg,
		    result(mprotect(p, PAGE, PROT_READ | PROT_WRITE)));
		munmap(p, PAGE);
	}
	say("evil: seg %u ftruncate %s", seg, result(ftruncate(fd, 0)));
	say("evil: seg %u write %s", seg, result((int)pwrite(fd, "x", 1, off)));
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rw = open(path, O_RDWR | O_CLOEXEC);
	/* Informational: the jail (no /proc, another uid) closes this. */
	say("evil: seg %u reopen-rw %s", seg, rw < 0 ? strerror(errno) : "ok");
	if (rw >= 0)
		close(rw);
}

static void on_map(struct ctl_msg *m)
{
	win.have = true;
	win.revoked = false;
	win.m = m->u.map;
	for (unsigned i = 0; i < m->u.map.nmem; i++)
		win.mem[i] = m->fds[2 + i];
	if (is("ro_write"))
		for (unsigned i = 0; i < win.m.nseg; i++)
			if (win.m.seg[i].readonly)
				try_ro_section(i);
	map_view();
	struct ctl_chan_ref ref = { .chan = m->u.map.chan,
				    .handle = m->u.map.handle };
	ctl_send(SOCK, CTL_MAPPED, &ref, sizeof(ref));
}

/* The producer's section this side may write (the mem index of a writable
 * data segment: one that starts a page into its section), or -1. */
static int own_section(void)
{
	for (unsigned i = 0; i < win.m.nseg; i++)
		if (!win.m.seg[i].readonly && win.m.seg[i].file_off == PAGE)
			return (int)win.m.seg[i].mem;
	return -1;
}

static void on_open_reply(const struct ctl_open_reply *r)
{
	if (is("defer_loop"))
		return;
	say("evil: open %d %s", r->status, r->detail);
	if (is("truncate_own") && win.have) {
		int s = own_section();
		say("evil: truncate own section %s",
		    s < 0 ? "none" : result(ftruncate(win.mem[s], 0)));
	}
}

static void sigbus(int sig)
{
	(void)sig;
	say("evil: revoked window faulted (SIGBUS)");
	_exit(3);
}

/* A revoked window we kept: once the agent has had time to enforce the
 * revocation, read and write it. */
static void touch_revoked(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!win.revoked || !win.view ||
	    now.tv_sec - win.revoked_at.tv_sec < 2)
		return;
	signal(SIGBUS, sigbus);
	for (unsigned i = 0; i < win.m.nseg; i++) {
		volatile uint8_t *p = win.view + win.m.seg[i].off;
		uint8_t v = *p;
		if (!win.m.seg[i].readonly)
			*p = (uint8_t)(v + 1);
	}
	say("evil: revoked window still there");
	win.revoked = false;
}

static void on_unmap(const struct ctl_chan_ref *r)
{
	struct ctl_chan_ref ref = { .chan = r->chan, .handle = win.m.handle };
	if (is("withhold_unmapped"))
		return;
	if (is("closed_before_unmapped")) {
		ctl_send(SOCK, CTL_CLOSED, &ref, sizeof(ref));
		return;
	}
	if (is("keep_revoked")) {
		win.revoked = true;
		clock_gettime(CLOCK_MONOTONIC, &win.revoked_at);
	} else if (win.view) {
		munmap(win.view, win.m.size);
		win.view = NULL;
	}
	ctl_send(SOCK, CTL_UNMAPPED, &ref, sizeof(ref));
}

/* ---- dirty reports ------------------------------------------------------ */

static void send_chunk(uint64_t first, uint64_t n, uint32_t last)
{
	static struct ctl_dirty d;
	memset(&d, 0, sizeof(d));
	d.first_page = first;
	d.npages = n;
	d.last = last;
	if (ctl_send(SOCK, CTL_DIRTY, &d, sizeof(d)) < 0)
		_exit(4);
}

static void on_dirty_req(void)
{
	const uint64_t per = 8ull * CTL_DIRTY_BYTES;
	uint64_t first = 0, n = cfg_pages < per ? cfg_pages : per;
	if (is("dirty_withheld"))
		return;
	if (is("defer_loop")) {
		struct ctl_open_req r = { .vcpu = 0 };
		snprintf(r.name, sizeof(r.name), "evil");
		ctl_send(SOCK, CTL_OPEN_REQ, &r, sizeof(r));
	}
	if (is("dirty_endless")) {
		for (int i = 0; i < 100000; i++)
			send_chunk(0, n, 0);
		return;
	}
	if (is("dirty_overflow")) {
		send_chunk(0, cfg_pages + 1, 1);
		return;
	}
	if (is("request_flood")) {
		/* requests while the agent waits for this report */
		struct ctl_chan_ref ref = { .chan = 1, .handle = 1 };
		for (int i = 0; i < 64; i++)
			ctl_send(SOCK, CTL_CLOSED, &ref, sizeof(ref));
	}
	if (is("dirty_backwards")) {
		send_chunk(1, 1, 0);
		send_chunk(0, 1, 0);
		return;
	}
	do {
		n = cfg_pages - first < per ? cfg_pages - first : per;
		send_chunk(first, n, first + n >= cfg_pages);
		first += n;
	} while (first < cfg_pages);
}

/* ---- misbehaviour that needs no request --------------------------------- */

static void send_raw(const void *buf, size_t len)
{
	if (send(SOCK, buf, len, MSG_NOSIGNAL) < 0)
		say("evil: send %s", strerror(errno));
}

static void fd_flood(void)
{
	enum { N = 250 }; /* SCM_MAX_FD is 253 */
	int fds[N];
	/* dup, not open: inside the jail there is no /dev to open. */
	for (int i = 0; i < N; i++)
		fds[i] = fcntl(SOCK, F_DUPFD_CLOEXEC, 0);
	struct ctl_hdr h = { .type = CTL_CONSOLE, .len = 8 };
	char pkt[sizeof(h) + 8] = { 0 };
	memcpy(pkt, &h, sizeof(h));
	struct iovec iov = { pkt, sizeof(pkt) };
	_Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(fds))];
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	say("evil: fd flood %s", result((int)sendmsg(SOCK, &m, MSG_NOSIGNAL)));
}

static void sandbox(void)
{
	struct parley_err err = { 0 };
	if (vmx_sandbox_enter(NULL, &err) < 0)
		say("evil: sandbox %s", perr_msg(&err));
}

/* The agent is our parent today; inside the jail's PID namespace it has no
 * pid we could name. Signal 0 probes without hurting: the test is whether
 * the filter lets the call through at all. */
static void tgkill_agent(void)
{
	/* Inside the jail's PID namespace the agent has no pid here
	 * (getppid() is 0): aim at another process instead — any tgid but
	 * our own must be fatal under the filter. */
	pid_t agent = getppid() > 0 ? getppid() : getpid() + 1;
	sandbox();
	long rc = syscall(SYS_tgkill, agent, agent, 0);
	say("evil: tgkill of the agent %s", rc == 0 ? "allowed" : strerror(errno));
}

static void exec_rwx(void)
{
	sandbox();
	uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		say("evil: rwx mmap %s", strerror(errno));
		return;
	}
	p[0] = 0xc3; /* ret */
	((void (*)(void))(uintptr_t)p)();
	say("evil: executed an RWX page");
}

static void start(void)
{
	static bool started;
	if (started)
		return;
	started = true;
	say("evil: mode %s", mode);
	if (is("finished_then_run")) {
		struct ctl_finished f = { .reason = VMX_STOP_EXIT };
		ctl_send(SOCK, CTL_FINISHED, &f, sizeof(f));
		for (;;)
			pause(); /* and never exit */
	} else if (is("garbage")) {
		uint32_t junk[16] = { 0xdeadbeef, 56 };
		send_raw(junk, sizeof(junk));
	} else if (is("oversized")) {
		static char big[65536];
		struct ctl_hdr h = { .type = CTL_CONSOLE,
				     .len = sizeof(big) - sizeof(h) };
		memcpy(big, &h, sizeof(h));
		send_raw(big, sizeof(big));
	} else if (is("unsolicited")) {
		ctl_send(SOCK, CTL_STATE_DONE, NULL, 0);
	} else if (is("fd_flood")) {
		fd_flood();
	} else if (is("tgkill_agent")) {
		tgkill_agent();
	} else if (is("exec_rwx")) {
		exec_rwx();
	} else if (is("open_noread")) {
		/* ask, never read a reply */
		struct ctl_open_req r = { .vcpu = 0 };
		snprintf(r.name, sizeof(r.name), "nogrant");
		int sent = 0;
		for (int i = 0; i < 20000; i++)
			if (send(SOCK, &(struct { struct ctl_hdr h; struct ctl_open_req r; }){
				{ CTL_OPEN_REQ, sizeof(r) }, r }, sizeof(struct ctl_hdr) + sizeof(r),
				MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
				sent++;
			else
				usleep(1000);
		for (;;)
			pause();
	} else if (is("device_flood")) {
		/* a device's state, flipped without end: each a change */
		struct ctl_device_state d = { .state = 1 };
		snprintf(d.device, sizeof(d.device), "console");
		snprintf(d.plugin, sizeof(d.plugin), "evil");
		for (int i = 0; i < 20000; i++) {
			d.state = 1 + (uint32_t)(i & 1);
			snprintf(d.detail, sizeof(d.detail), "flip %d", i);
			ctl_send(SOCK, CTL_DEVICE_STATE, &d, sizeof(d));
		}
		say("evil: flooded");
		for (;;)
			pause();
	} else if (is("stderr_probe")) {
		/* what its stderr is, and a forged line of the agent's */
		struct stat st;
		int rc = fstat(2, &st);
		say("evil: fd2 %s %u:%u", rc < 0 ? strerror(errno)
			: S_ISCHR(st.st_mode) ? "chr" : "other",
		    rc < 0 ? 0 : major(st.st_rdev),
		    rc < 0 ? 0 : minor(st.st_rdev));
		static const char forged[] = "parley-agent: FORGED\n";
		(void)!write(2, forged, sizeof(forged) - 1);
		for (;;)
			pause();
	} else if (is("finish_escapes")) {
		/* its last word, made to clear a terminal and forge a line */
		struct ctl_finished f = { .reason = VMX_STOP_KILLED };
		snprintf(f.detail, sizeof(f.detail), "\x1b[2J\x1b[31mX\nother:"
			 " exited with code 0\r\x1b]0;pwned\x07\x9b");
		ctl_send(SOCK, CTL_FINISHED, &f, sizeof(f));
		for (;;)
			pause();
	} else if (is("update_lie")) {
		struct ctl_update_req u = { .op = CTL_UPD_BEGIN, .arg = 4096 };
		ctl_send(SOCK, CTL_UPDATE_REQ, &u, sizeof(u));
	} else if (!is("honest")) {
		struct ctl_open_req r = { .vcpu = 0 };
		snprintf(r.name, sizeof(r.name), "evil");
		ctl_send(SOCK, CTL_OPEN_REQ, &r, sizeof(r));
	}
}

/* ---- the loop ------------------------------------------------------------ */

static void finish(unsigned reason)
{
	struct ctl_finished f = { .reason = reason };
	snprintf(f.detail, sizeof(f.detail), "evil vmm ends");
	ctl_send(SOCK, CTL_FINISHED, &f, sizeof(f));
	_exit(0);
}

static void handle(struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_PAUSE:
		ctl_send(SOCK, CTL_PAUSED, NULL, 0);
		break;
	case CTL_RESUME:
		ctl_send(SOCK, CTL_RESUMED, NULL, 0);
		start();
		break;
	case CTL_STOP:
		finish(VMX_STOP_KILLED);
		break;
	case CTL_DIRTY_REQ:
		on_dirty_req();
		break;
	case CTL_MAP:
		on_map(m);
		break;
	case CTL_UNMAP:
		on_unmap(&m->u.ref);
		break;
	case CTL_OPEN_REPLY:
		on_open_reply(&m->u.open_reply);
		break;
	case CTL_UPDATE_REPLY:
		say("evil: update reply %d", m->u.update_reply.status);
		if (is("update_lie") && m->u.update_reply.status == PARLEY_OK) {
			struct ctl_update_req u = { .op = CTL_UPD_WRITE,
						    .gpa = PARLEY_CONFIG_BASE,
						    .len = 16 };
			ctl_send(SOCK, CTL_UPDATE_REQ, &u, sizeof(u));
		}
		break;
	default:
		break;
	}
}

int main(int argc, char **argv)
{
	const char *env = getenv("PARLEY_EVIL_MODE");
	if (argc > 1 && !strncmp(argv[1], "evil-", 5))
		mode = argv[1] + 5;
	else if (env)
		mode = env;
	static struct ctl_msg m;
	if (ctl_read(SOCK, CTL_FROM_AGENT, &m) < 0 || m.type != CTL_LAUNCH)
		_exit(2);
	cfg_pages = m.u.launch.cfg_size / PAGE;
	ctl_send(SOCK, CTL_READY, NULL, 0);
	for (;;) {
		struct pollfd pf = { .fd = SOCK, .events = POLLIN };
		if (poll(&pf, 1, 100) < 0 && errno != EINTR)
			_exit(2);
		touch_revoked();
		if (!(pf.revents & (POLLIN | POLLHUP)))
			continue;
		int rc = ctl_read(SOCK, CTL_FROM_AGENT, &m);
		if (rc == -EAGAIN || rc == -EINTR)
			continue;
		if (rc < 0)
			_exit(0); /* the agent closed the link */
		handle(&m);
	}
}
