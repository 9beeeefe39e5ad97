/*
 * The control link to a partition's vmm process, from the grant manager's
 * side: every message a vmm sends is read here (through ctl_read) and
 * nowhere else, and the vmm process is killed and reaped from here.
 *
 * The vmm is untrusted: its partition may have taken it over. So nothing
 * here waits for it without a deadline, no request it sends is handled
 * while the agent waits for a reply (requests are deferred to the event
 * loop), and every fault of it kills it (SIGKILL by pidfd, then reaped
 * without blocking) and stops the partition with a named reason.
 */
#include "agent/partition.h"
#include "agent/disk/disks.h"
#include "agent/partition_int.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int timeout_of(const struct partition *p)
{
	return p->opts.timeout_ms > 0 ? p->opts.timeout_ms : 5000;
}

static bool is_deferred_kind(uint32_t type)
{
	return ctl_is_request(type) || type == CTL_MAPPED ||
	       type == CTL_UNMAPPED;
}

/* Keep a request that arrived while we wait for something else; a vmm that
 * floods us with them is broken (a vCPU has at most one open waiting). */
static int defer(struct partition *p, const struct ctl_msg *m)
{
	if (p->ndefer == PART_DEFER_MAX)
		return -EPROTO;
	struct part_deferred *d = &p->defer[p->ndefer++];
	d->type = m->type;
	if (m->type == CTL_OPEN_REQ)
		d->u.open_req = m->u.open_req;
	else if (m->type == CTL_UPDATE_REQ)
		d->u.update_req = m->u.update_req;
	else
		d->u.ref = m->u.ref;
	return 0;
}

bool partition_has_deferred(const struct partition *p)
{
	return p->ndefer > 0 && !p->finished;
}

/* ---- the vmm process: kill and reap, never wait on it ------------------ */

void part_watch(struct partition *p)
{
	if (p->pidfd < 0 && p->pid > 0)
		p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
}

/* SIGKILL through the pidfd, so a reaped and reused pid is never hit. */
static void vmm_kill(struct partition *p)
{
	if (p->pid <= 0)
		return;
	if (p->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
	else
		kill(p->pid, SIGKILL);
}

/* How an unreported end looked, once the exit status is known. */
static void describe_death(struct partition *p)
{
	int st = p->wait_status;
	if (!p->unreported || p->fin.reason != VMX_STOP_VMM_DIED)
		return;
	if (WIFSIGNALED(st))
		snprintf(p->fin.detail, sizeof(p->fin.detail),
			 "vmm process killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(p->fin.detail, sizeof(p->fin.detail),
			 "vmm process ended (status %d) without a report",
			 WEXITSTATUS(st));
}

/* A vmm adopted from the agent before us (agent/update_adopt.c) is not our
 * child: waitid cannot reap it (its zombie goes to init or a subreaper), so
 * its end is read off its pidfd alone and its exit status is unknown. */
static bool reap_adopted(struct partition *p)
{
	struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };
	if (p->pidfd >= 0 && poll(&pf, 1, 0) == 0)
		return false;
	p->pid = 0;
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
	if (p->unreported && p->fin.reason == VMX_STOP_VMM_DIED)
		snprintf(p->fin.detail, sizeof(p->fin.detail), "vmm process "
			 "(adopted at a hand-over) ended without a report");
	return true;
}

int partition_reap_fd(const struct partition *p)
{
	return p->pid > 0 ? p->pidfd : -1;
}

bool partition_reap(struct partition *p)
{
	if (p->pid <= 0)
		return true;
	if (p->adopted)
		return reap_adopted(p);
	siginfo_t si = { 0 };
	int rc = p->pidfd >= 0
			 ? waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si,
				  WEXITED | WNOHANG)
			 : waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
	if (rc < 0 && errno != ECHILD)
		return false;
	if (rc == 0 && si.si_pid == 0)
		return false; /* still running */
	p->wait_status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0)
						   : si.si_status & 0x7f;
	p->pid = 0;
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
	describe_death(p);
	return true;
}

static void stopped(struct partition *p)
{
	p->finished = true;
	p->state = PART_STOPPED;
	p->ndefer = 0; /* requests of a stopped partition are moot */
}

static void drain_after_kill(struct partition *p, bool believe_finished);
static void on_device_state(struct partition *p,
			    const struct ctl_device_state *d);

/* CTL_DEVICE_STATE's numbering (part_device_state_name) */
enum { DEV_NONE = 0, DEV_TORN_DOWN = 7, DEV_FAILED = 8 };

/* The vmm is gone without tearing its devices down: each device it left
 * in another state is "failed" now (its word cannot come any more),
 * kept, reported and audited as any device state -- not "running" for a
 * stopped partition. */
static void devices_gone(struct partition *p, const char *why)
{
	for (unsigned i = 0; i < p->ndevice; i++) {
		uint32_t st = p->device[i].state;
		if (st == DEV_NONE || st == DEV_TORN_DOWN || st == DEV_FAILED)
			continue;
		struct ctl_device_state d = { .state = DEV_FAILED };
		snprintf(d.device, sizeof(d.device), "%s", p->device[i].device);
		snprintf(d.plugin, sizeof(d.plugin), "%s", p->device[i].plugin);
		snprintf(d.detail, sizeof(d.detail), "%s", why);
		on_device_state(p, &d);
	}
}

void partition_fault(struct partition *p, unsigned reason, const char *fmt,
		     ...)
{
	if (p->finished)
		return;
	vmm_kill(p);
	drain_after_kill(p, false);
	devices_gone(p, "its vmm ended without tearing it down");
	p->fin = (struct ctl_finished){ .reason = reason };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->fin.detail, sizeof(p->fin.detail), fmt, ap);
	va_end(ap);
	p->unreported = reason == VMX_STOP_VMM_DIED;
	stopped(p);
	partition_reap(p);
}

/* The link ended or broke (ctl_read's return rc < 0). */
static void link_fault(struct partition *p, int rc)
{
	if (rc == -EPIPE)
		partition_fault(p, VMX_STOP_VMM_DIED,
				"vmm process ended without a report");
	else
		partition_fault(p, VMX_STOP_VMM_PROTOCOL,
				"malformed control message from the vmm (%s)",
				strerror(-rc));
}

/* ---- messages ----------------------------------------------------------- */

static void on_console(struct partition *p, const struct ctl_console *c)
{
	if (!p->t_first_console_ns)
		p->t_first_console_ns = mono_now_ns();
	if (p->opts.on_console)
		p->opts.on_console(p, c->buf, c->len, p->opts.ctx);
}

const char *part_device_state_name(uint32_t state)
{
	static const char *const names[] = {
		"none", "initialising", "powering-up", "loading-state",
		"running", "saving-state", "powering-down", "torn-down",
		"failed" };
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

/* CTL_DEVICE_STATE: kept for the partition's status, and reported. The
 * names are the vmm's (checked printable here: they reach the audit). */
static void on_device_state(struct partition *p,
			    const struct ctl_device_state *d)
{
	for (const char *c = d->device; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return;
	for (const char *c = d->plugin; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return;
	unsigned i;
	for (i = 0; i < p->ndevice; i++)
		if (!strcmp(p->device[i].device, d->device) &&
		    !strcmp(p->device[i].plugin, d->plugin))
			break;
	if (i == p->ndevice && p->ndevice < PART_DEVICES_MAX) {
		snprintf(p->device[i].device, sizeof(p->device[i].device),
			 "%s", d->device);
		snprintf(p->device[i].plugin, sizeof(p->device[i].plugin),
			 "%s", d->plugin);
		p->ndevice++;
	}
	if (i < p->ndevice) {
		/* the same state again says nothing new: not reported */
		if (p->device[i].state == d->state &&
		    !strncmp(p->device[i].why, d->detail,
			     sizeof(p->device[i].why)))
			return;
		p->device[i].state = d->state;
		snprintf(p->device[i].why, sizeof(p->device[i].why), "%s",
			 d->detail);
	}
	char detail[sizeof(d->detail)];
	size_t n = 0;
	for (; d->detail[n]; n++)
		detail[n] = d->detail[n] >= 0x20 && d->detail[n] < 0x7f
				    ? d->detail[n] : '?';
	detail[n] = 0;
	if (p->opts.on_device_state)
		p->opts.on_device_state(p, d->device, d->plugin,
					part_device_state_name(d->state),
					n ? detail : NULL,
					p->opts.ctx);
}

/* CTL_FINISHED: the vmm's last word. Its process has no business running
 * after it, so it is killed rather than waited for. */
static void on_finished(struct partition *p, const struct ctl_finished *f)
{
	p->fin = *f;
	p->unreported = false;
	vmm_kill(p);
	stopped(p);
	partition_reap(p);
}

/* A CHAN_OPEN (or an update request) as read from the vmm: its vCPU waits
 * for the answer, so it cannot ask again before it has it — a second one
 * is the vmm's, not the partition's, and would let it keep the grant
 * manager busy for ever (each open waits for dirty reports, during which
 * it could ask again). */
static int note_open(struct partition *p, const struct ctl_msg *m)
{
	uint32_t v = m->type == CTL_UPDATE_REQ ? m->u.update_req.vcpu
					       : m->u.open_req.vcpu;
	if (v >= p->vcpus || v >= 32) {
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "channel open for "
				"vCPU %u of %u", v, p->vcpus);
		return -ESRCH;
	}
	if (p->open_pending & (1u << v)) {
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "a second channel "
				"open from vCPU %u before the first was "
				"answered", v);
		return -ESRCH;
	}
	p->open_pending |= 1u << v;
	return 0;
}

static void dispatch_request(struct partition *p, const struct ctl_msg *m)
{
	if (p->opts.on_request)
		p->opts.on_request(p, m, p->opts.ctx);
}

/* One message outside any wait (from the event loop). A reply nobody
 * asked for is a protocol error: we never stop waiting for one without
 * killing the vmm that owed it. */
static int on_message(struct partition *p, const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_CONSOLE:
		on_console(p, &m->u.console);
		return 0;
	case CTL_DEVICE_STATE:
		on_device_state(p, &m->u.device_state);
		return 0;
	case CTL_OPEN_REQ:
	case CTL_UPDATE_REQ:
	case CTL_CLOSED:
	case CTL_MAPPED:
	case CTL_UNMAPPED:
		dispatch_request(p, m);
		return p->finished;
	case CTL_FINISHED:
		on_finished(p, &m->u.finished);
		return 1;
	case CTL_PONG:
		/* The answer to a hand-over's health check that nobody
		 * awaits any more (a new agent that failed, then rollback):
		 * harmless, costs what a console message costs. */
		return 0;
	default:
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "unsolicited %s "
				"from the vmm", ctl_type_name(m->type));
		return 1;
	}
}

static struct ctl_msg *msg_new(void)
{
	return malloc(sizeof(struct ctl_msg));
}

static int poll_one(int fd, int timeout_ms);

int partition_handle(struct partition *p)
{
	if (p->finished)
		return 1;
	struct ctl_msg *m = msg_new();
	if (!m)
		return -ENOMEM;
	int rc;
	if (p->ndefer) {
		struct part_deferred d = p->defer[0];
		memmove(p->defer, p->defer + 1,
			--p->ndefer * sizeof(p->defer[0]));
		m->type = d.type;
		m->nfds = 0;
		if (d.type == CTL_OPEN_REQ)
			m->u.open_req = d.u.open_req;
		else if (d.type == CTL_UPDATE_REQ)
			m->u.update_req = d.u.update_req;
		else
			m->u.ref = d.u.ref;
		rc = on_message(p, m);
	} else if (poll_one(p->ctl, 0) == 0) {
		/* Nothing there any more: handling another partition since
		 * the caller's poll (a re-measurement takes this vmm's console
		 * output on its way to the dirty report) may have read it
		 * empty. A blocking read would hang the whole agent. */
		rc = -EAGAIN;
	} else {
		rc = ctl_read(p->ctl, CTL_FROM_VMM, m);
		if (rc == 0 && (m->type == CTL_OPEN_REQ ||
				m->type == CTL_UPDATE_REQ) && note_open(p, m) < 0)
			rc = 1;
		else if (rc == 0)
			rc = on_message(p, m);
		else if (rc != -EAGAIN && rc != -EINTR)
			link_fault(p, rc), rc = 1;
		else
			rc = -EAGAIN;
	}
	free(m);
	return rc;
}

static int poll_one(int fd, int timeout_ms)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	int n;
	do
		n = poll(&pf, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n;
}

static int remaining(uint64_t deadline)
{
	uint64_t now = mono_now_ns();
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

static uint64_t deadline_of(const struct partition *p)
{
	return mono_now_ns() + (uint64_t)timeout_of(p) * 1000000;
}

/* While waiting for `want`: console output is delivered, requests are
 * deferred (never dispatched here), anything else is the vmm's fault. */
static int await_other(struct partition *p, const struct ctl_msg *m,
		       uint32_t want)
{
	if (m->type == CTL_CONSOLE) {
		on_console(p, &m->u.console);
		return 0;
	}
	if (m->type == CTL_DEVICE_STATE) {
		on_device_state(p, &m->u.device_state);
		return 0;
	}
	if (m->type == CTL_DEVICE_SAVED && want == CTL_STATE_DONE &&
	    p->saving && p->nsaving < CTL_DEVICES_MAX) {
		p->saving[p->nsaving++] = m->u.device_blob;
		return 0;
	}
	if (m->type == CTL_PONG)
		return 0; /* a stale health check's (on_message) */
	if ((m->type == CTL_OPEN_REQ || m->type == CTL_UPDATE_REQ) &&
	    note_open(p, m) < 0)
		return -ESRCH;
	if (is_deferred_kind(m->type)) {
		if (defer(p, m) == 0)
			return 0;
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "more than %d "
				"requests while the agent waited for %s",
				PART_DEFER_MAX, ctl_type_name(want));
		return -ESRCH;
	}
	if (m->type == CTL_FINISHED) {
		on_finished(p, &m->u.finished);
		return -ESRCH;
	}
	partition_fault(p, VMX_STOP_VMM_PROTOCOL, "%s from the vmm while "
			"the agent waited for %s", ctl_type_name(m->type),
			ctl_type_name(want));
	return -ESRCH;
}

/* The request a reply answers: only that one may be refused. */
static uint32_t request_of(uint32_t want)
{
	switch (want) {
	case CTL_PAUSED:
		return CTL_PAUSE;
	case CTL_RESUMED:
		return CTL_RESUME;
	case CTL_VCPU_STATE:
	case CTL_STATE_DONE:
		return CTL_GET_STATE;
	case CTL_DIRTY:
		return CTL_DIRTY_REQ;
	default:
		return CTL_LAUNCH;
	}
}

/* Wait until `deadline` for one message of type `want` into *m. The vmm
 * that does not answer in time, or breaks the protocol meanwhile, is
 * killed. 0, or -ETIMEDOUT / -ESRCH (stopped) / the vmm's refusal. */
static int await_msg(struct partition *p, uint32_t want, uint64_t deadline,
		     struct ctl_msg *m, struct parley_err *err)
{
	while (!p->finished) {
		int ready = poll_one(p->ctl, remaining(deadline));
		if (ready == 0) {
			partition_fault(p, VMX_STOP_VMM_TIMEOUT, "no %s from "
					"the vmm within %d ms",
					ctl_type_name(want), timeout_of(p));
			return perr(err, -ETIMEDOUT, "vmm of %s did not answer "
				    "in time", p->name);
		}
		int rc = ready < 0 ? -errno : ctl_read(p->ctl, CTL_FROM_VMM, m);
		if (rc == -EAGAIN || rc == -EINTR)
			continue;
		if (rc < 0) {
			link_fault(p, rc);
			break;
		}
		if (m->type == want)
			return 0;
		if (m->type == CTL_REFUSED &&
		    m->u.refused.type == request_of(want))
			return perr(err, m->u.refused.code, "vmm refused %s",
				    ctl_type_name(m->u.refused.type));
		if (await_other(p, m, want) < 0)
			break;
	}
	return perr(err, -ESRCH, "partition %s stopped: %s (%s)", p->name,
		    vmx_stop_name(p->fin.reason), p->fin.detail);
}

int part_await(struct partition *p, uint32_t want, void *out, size_t cap,
	       struct parley_err *err)
{
	struct ctl_msg *m = msg_new();
	if (!m)
		return perr(err, -ENOMEM, "out of memory");
	int rc = await_msg(p, want, deadline_of(p), m, err);
	if (rc == 0) {
		if (out)
			memcpy(out, m->u.raw, m->len < cap ? m->len : cap);
		rc = (int)m->len;
	}
	free(m);
	return rc;
}

int partition_wait(struct partition *p, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
				: mono_now_ns() + (uint64_t)timeout_ms * 1000000;
	for (;;) {
		int fd = p->finished ? partition_reap_fd(p) : p->ctl;
		if (fd < 0)
			return 0;
		int t = timeout_ms < 0 ? -1 : remaining(deadline);
		int n = poll_one(fd, t);
		if (n > 0 && p->finished)
			partition_reap(p);
		else if (n > 0)
			partition_handle(p);
		else if (n == 0 && timeout_ms >= 0 && !remaining(deadline))
			return p->finished ? 0 : -ETIMEDOUT;
	}
}

int partition_pause(struct partition *p, struct parley_err *err)
{
	if (p->state != PART_RUNNING)
		return perr(err, -EBUSY, "%s is %s, not running", p->name,
			    part_state_name(p->state));
	int rc = partition_send(p, CTL_PAUSE, NULL, 0, NULL, 0);
	if (rc == 0)
		rc = part_await(p, CTL_PAUSED, NULL, 0, err);
	if (rc < 0)
		return rc;
	p->state = PART_PAUSED;
	return 0;
}

int partition_resume(struct partition *p, struct parley_err *err)
{
	if (p->state != PART_PAUSED)
		return perr(err, -EBUSY, "%s is %s, not paused", p->name,
			    part_state_name(p->state));
	int rc = partition_send(p, CTL_RESUME, NULL, 0, NULL, 0);
	if (rc == 0)
		rc = part_await(p, CTL_RESUMED, NULL, 0, err);
	if (rc < 0)
		return rc;
	p->state = PART_RUNNING;
	return 0;
}

/* After the kill: what the vmm had sent before it died is still queued.
 * Console output is delivered (what a faulty vmm said last is evidence),
 * and when stopping, a report of its own end is believed (it came before
 * our kill); requests are dropped. Bounded by the socket's buffer and by
 * a count; the socket is made non-blocking for good (the link is over). */
static void drain_after_kill(struct partition *p, bool believe_finished)
{
	int fl = fcntl(p->ctl, F_GETFL);
	if (fl < 0 || fcntl(p->ctl, F_SETFL, fl | O_NONBLOCK) < 0)
		return;
	struct ctl_msg *m = msg_new();
	for (int i = 0; m && i < 1024; i++) {
		int rc = ctl_read(p->ctl, CTL_FROM_VMM, m);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			break;
		for (unsigned k = 0; k < m->nfds; k++)
			close(m->fds[k]);
		if (m->type == CTL_CONSOLE)
			on_console(p, &m->u.console);
		else if (m->type == CTL_DEVICE_STATE)
			on_device_state(p, &m->u.device_state);
		else if (m->type == CTL_FINISHED && believe_finished)
			p->fin = m->u.finished;
	}
	free(m);
}

/* A stop first asks the vmm to power its devices down (CTL_STOP: each
 * device through powering-down to torn-down, the file disk flushing) and
 * gives it this long to report its end; one that does not is killed as
 * it would have been without asking. Short: a stop must not wait on a
 * vmm that lies or hangs. */
#define POWER_DOWN_MS 1000

/* Ask, then read what the vmm sends until its CTL_FINISHED or the
 * deadline: console output and device states are delivered, requests
 * dropped (the grant manager is not called back while it stops a
 * partition). True if the vmm reported its end. */
static bool power_down(struct partition *p)
{
	if (p->state != PART_RUNNING && p->state != PART_PAUSED)
		return false; /* not launched: nothing powered up */
	if (partition_send(p, CTL_STOP, NULL, 0, NULL, 0) < 0)
		return false;
	struct ctl_msg *m = msg_new();
	uint64_t until = mono_now_ns() + POWER_DOWN_MS * 1000000ull;
	bool done = false;
	while (m && !done) {
		int t = remaining(until);
		if (!t || poll_one(p->ctl, t) <= 0)
			break;
		int rc = ctl_read(p->ctl, CTL_FROM_VMM, m);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			break;
		for (unsigned k = 0; k < m->nfds; k++)
			close(m->fds[k]);
		if (m->type == CTL_CONSOLE)
			on_console(p, &m->u.console);
		else if (m->type == CTL_DEVICE_STATE)
			on_device_state(p, &m->u.device_state);
		else if (m->type == CTL_FINISHED) {
			p->fin = m->u.finished;
			done = true;
		}
	}
	free(m);
	return done;
}

int partition_stop(struct partition *p)
{
	if (p->finished || p->pid <= 0)
		return 0;
	bool reported = power_down(p);
	vmm_kill(p);
	if (!reported) {
		p->fin = (struct ctl_finished){ .reason = VMX_STOP_KILLED };
		snprintf(p->fin.detail, sizeof(p->fin.detail),
			 "stopped by the agent");
	}
	p->fin.detail[sizeof(p->fin.detail) - 1] = 0;
	drain_after_kill(p, !reported);
	/* a vmm that did not power its devices down in time (a reported
	 * power-down left them torn down: nothing to do) */
	devices_gone(p, "its vmm was killed before tearing it down");
	stopped(p);
	partition_reap(p);
	return 0;
}

/* After SIGKILL a process cannot choose to linger; this bounds the wait
 * for the kernel's teardown of its memory. */
#define REAP_AFTER_KILL_MS 2000

void partition_destroy(struct partition *p)
{
	if (!p)
		return;
	/* The destroy path stops as partition_stop does: devices powered
	 * down first, if the vmm answers in time. */
	if (p->pid > 0 && !p->finished)
		partition_stop(p);
	if (p->pid > 0) {
		vmm_kill(p);
		uint64_t until = mono_now_ns() + REAP_AFTER_KILL_MS * 1000000ull;
		while (!partition_reap(p) && mono_now_ns() < until) {
			if (p->pidfd >= 0)
				poll_one(p->pidfd, remaining(until));
			else
				usleep(1000); /* no pidfd: poll the pid */
		}
		if (p->pidfd >= 0)
			close(p->pidfd);
	}
	if (p->ctl >= 0)
		close(p->ctl);
	if (p->mem)
		munmap((void *)p->mem, p->ram_size + p->cfg_size);
	if (p->mem_fd >= 0)
		close(p->mem_fd);
	measure_free(&p->measure);
	part_disks_drop(p);
	free((void *)p->devload);
	free(p->saving);
	free(p);
}

int partition_send(struct partition *p, uint32_t type, const void *payload,
		   uint32_t len, const int *fds, unsigned nfds)
{
	if (p->finished)
		return -ESRCH;
	if (type == CTL_OPEN_REPLY && len >= sizeof(struct ctl_open_reply)) {
		const struct ctl_open_reply *r = payload;
		if (r->vcpu < 32)
			p->open_pending &= ~(1u << r->vcpu);
	}
	if (type == CTL_UPDATE_REPLY && len >= sizeof(struct ctl_update_reply)) {
		const struct ctl_update_reply *r = payload;
		if (r->vcpu < 32)
			p->open_pending &= ~(1u << r->vcpu);
	}
	/* Never blocks: a vmm that does not read what the agent sends it
	 * would otherwise stop the grant manager for every partition. */
	int rc = ctl_post_fds(p->ctl, type, payload, len, fds, nfds);
	if (rc == -EAGAIN) {
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "does not read its "
				"control socket (%s refused)",
				ctl_type_name(type));
		return -ESRCH;
	}
	return rc;
}

/* One chunk of a dirty report, against what the report must be: the next
 * pages in order, inside the region, the last one flagged as such. */
static int dirty_chunk_ok(const struct partition *p, const struct ctl_dirty *d,
			  uint64_t next, uint64_t k, uint64_t chunks)
{
	uint64_t pages = p->measure.npages;
	if (k >= chunks || d->first_page != next || next > pages ||
	    d->npages > pages - next || (d->npages == 0 && pages != 0))
		return -1;
	return d->last == (next + d->npages == pages) ? 0 : -1;
}

int partition_fetch_dirty(struct partition *p, struct parley_err *err)
{
	const uint64_t per = 8ull * CTL_DIRTY_BYTES;
	uint64_t chunks = (p->measure.npages + per - 1) / per;
	if (chunks == 0)
		chunks = 1; /* an empty region is one empty, last chunk */
	int rc = partition_send(p, CTL_DIRTY_REQ, NULL, 0, NULL, 0);
	if (rc < 0)
		return perr(err, rc, "asking %s for its dirty pages: %s",
			    p->name, strerror(-rc));
	struct ctl_msg *m = msg_new();
	if (!m)
		return perr(err, -ENOMEM, "out of memory");
	/* One deadline for the whole report, however it is cut. */
	uint64_t deadline = deadline_of(p), next = 0;
	for (uint64_t k = 0; rc == 0; k++) {
		rc = await_msg(p, CTL_DIRTY, deadline, m, err);
		if (rc < 0)
			break;
		const struct ctl_dirty *d = &m->u.dirty;
		if (dirty_chunk_ok(p, d, next, k, chunks) < 0 ||
		    measure_mark_dirty(&p->measure, d->first_page, d->npages,
				       d->bits, sizeof(d->bits)) < 0) {
			partition_fault(p, VMX_STOP_VMM_PROTOCOL, "dirty report "
					"chunk %llu: pages %llu+%llu (last %u) "
					"where %llu of %llu pages were due",
					(unsigned long long)k,
					(unsigned long long)d->first_page,
					(unsigned long long)d->npages, d->last,
					(unsigned long long)next,
					(unsigned long long)p->measure.npages);
			rc = perr(err, -EPROTO, "%s: dirty report out of "
				  "order or outside the config region", p->name);
			break;
		}
		next += d->npages;
		if (d->last)
			break;
	}
	free(m);
	return rc;
}

/* ---- the hand-over's health check (agent/update_adopt.c) --------------- */

int partition_ping(struct partition *p, uint64_t nonce)
{
	struct ctl_ping ping = { .nonce = nonce };
	return partition_send(p, CTL_PING, &ping, sizeof(ping), NULL, 0);
}

/* Before the old agent has let go, the new one must change nothing: so no
 * request is dispatched (each is deferred, to be handled after the commit)
 * and no fault kills the vmm (the old agent may yet serve it again); what
 * would be a fault is returned as an error with the reason. */
int partition_read_held(struct partition *p, uint64_t nonce,
			struct parley_err *err)
{
	struct ctl_msg *m = msg_new();
	if (!m)
		return perr(err, -ENOMEM, "out of memory");
	int rc = ctl_read(p->ctl, CTL_FROM_VMM, m);
	if (rc == -EAGAIN || rc == -EINTR) {
		rc = 0;
	} else if (rc < 0) {
		rc = perr(err, rc, "%s: control link %s", p->name,
			  rc == -EPIPE ? "ended" : "broke the protocol");
	} else if (m->type == CTL_PONG) {
		rc = m->u.ping.nonce == nonce;
	} else if (m->type == CTL_CONSOLE) {
		on_console(p, &m->u.console);
	} else if (m->type == CTL_DEVICE_STATE) {
		on_device_state(p, &m->u.device_state);
	} else if (m->type == CTL_FINISHED) {
		/* It ended on its own: nothing to wait for. */
		p->fin = m->u.finished;
		p->unreported = false;
		stopped(p);
		rc = 1;
	} else if (is_deferred_kind(m->type)) {
		uint32_t v = m->u.open_req.vcpu;
		if (m->type == CTL_OPEN_REQ &&
		    (v >= p->vcpus || v >= 32 || (p->open_pending & (1u << v))))
			rc = perr(err, -EPROTO, "%s: channel open from vCPU %u "
				  "during the hand-over", p->name, v);
		else if (defer(p, m) < 0)
			rc = perr(err, -EPROTO, "%s: more than %d requests "
				  "during the hand-over", p->name,
				  PART_DEFER_MAX);
		else if (m->type == CTL_OPEN_REQ)
			p->open_pending |= 1u << v;
	} else {
		rc = perr(err, -EPROTO, "%s: %s from the vmm during the "
			  "hand-over", p->name, ctl_type_name(m->type));
	}
	for (unsigned i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	free(m);
	return rc;
}
