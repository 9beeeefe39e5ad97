#include "agent/partition.h"
#include "agent/partition_int.h"
#include "agent/backend.h"
#include "agent/elf.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"
#include "common/fileio.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define IMAGE_FILE_MAX (64u << 20)

const char *part_state_name(enum part_state s)
{
	static const char *const n[] = { "created", "running", "paused",
					 "stopped" };
	return s <= PART_STOPPED ? n[s] : "?";
}

static int timeout_of(const struct partition *p)
{
	return p->opts.timeout_ms > 0 ? p->opts.timeout_ms : 5000;
}

static int resolve_image(const struct part_spec *s, const struct part_opts *o,
			 char *out, size_t cap, struct parley_err *err)
{
	if (s->image[0] == '/') {
		if ((size_t)snprintf(out, cap, "%s", s->image) >= cap)
			return perr(err, -ENAMETOOLONG, "image path too long");
		return 0;
	}
	if (path_join(out, cap, s->base_dir ? s->base_dir : ".", s->image) == 0 &&
	    access(out, R_OK) == 0)
		return 0;
	for (const char *const *d = o->image_dirs; d && *d; d++)
		if (path_join(out, cap, *d, s->image) == 0 &&
		    access(out, R_OK) == 0)
			return 0;
	return perr(err, -ENOENT, "image \"%s\" not found beside the spec%s",
		    s->image, o->image_dirs ? " or in the image directories"
					    : "");
}

static int default_vmm(char *out, size_t cap)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return -errno;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	return path_join(out, cap, self, "parley-vmm");
}

/* Guest memory: one memfd, RAM then config region. Sealed against resizing
 * so a vmm process cannot shrink it under our mapping. */
static int mem_create(struct partition *p, uint8_t **rw, struct parley_err *err)
{
	char nm[80];
	uint64_t total = p->ram_size + p->cfg_size;
	snprintf(nm, sizeof(nm), "parley:%s", p->name);
	p->mem_fd = memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->mem_fd < 0)
		return perr(err, -errno, "memfd_create: %m");
	if (ftruncate(p->mem_fd, (off_t)total) < 0)
		return perr(err, -errno, "sizing guest memory: %m");
	if (fcntl(p->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
					       F_SEAL_SEAL) < 0)
		return perr(err, -errno, "sealing guest memory: %m");
	*rw = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, p->mem_fd, 0);
	if (*rw == MAP_FAILED)
		return perr(err, -errno, "mapping guest memory: %m");
	return 0;
}

/* Keep only a read-only view once the layout is written. */
static int mem_seal_view(struct partition *p, uint8_t *rw,
			 struct parley_err *err)
{
	uint64_t total = p->ram_size + p->cfg_size;
	munmap(rw, total);
	void *ro = mmap(NULL, total, PROT_READ, MAP_SHARED, p->mem_fd, 0);
	if (ro == MAP_FAILED)
		return perr(err, -errno, "mapping guest memory read-only: %m");
	p->mem = ro;
	return 0;
}

struct loaded {
	uint8_t *image;
	size_t image_len;
	struct elf_image elf;
	struct layout_config_file cfg[PARLEY_CONFIG_FILES_MAX];
	uint8_t *cfg_buf[PARLEY_CONFIG_FILES_MAX];
	unsigned ncfg;
};

static void loaded_free(struct loaded *l)
{
	free(l->image);
	for (unsigned i = 0; i < l->ncfg; i++)
		free(l->cfg_buf[i]);
}

static int load_inputs(const struct part_spec *s, const struct part_opts *o,
		       struct loaded *l, struct parley_err *err)
{
	char path[PATH_MAX];
	int rc = resolve_image(s, o, path, sizeof(path), err);
	if (rc < 0)
		return rc;
	rc = file_read_all(path, IMAGE_FILE_MAX, &l->image, &l->image_len, err);
	if (rc < 0)
		return rc;
	uint64_t max = layout_stack_floor(s->mem_bytes, s->vcpus);
	if (max > LAYOUT_IMAGE_MAX)
		max = LAYOUT_IMAGE_MAX;
	rc = elf_parse(l->image, l->image_len, PARLEY_IMAGE_MIN, max, &l->elf,
		       err);
	if (rc < 0)
		return perr_prefix(err, "%s", path), rc;
	for (unsigned i = 0; i < s->nconfig; i++) {
		size_t len;
		rc = file_read_all(s->config[i].path, PARLEY_CONFIG_MAX,
				   &l->cfg_buf[i], &len, err);
		if (rc < 0)
			return perr_prefix(err, "config \"%s\"",
					   s->config[i].name), rc;
		l->ncfg = i + 1;
		l->cfg[i] = (struct layout_config_file){
			s->config[i].name, l->cfg_buf[i], len };
	}
	if (layout_config_bytes(l->cfg, l->ncfg) > PARLEY_CONFIG_MAX)
		return perr(err, -E2BIG, "config files exceed %llu bytes",
			    (unsigned long long)PARLEY_CONFIG_MAX);
	return 0;
}

static void params_of(const struct partition *p, const char *cmdline,
		      const struct loaded *l, struct layout_params *lp)
{
	*lp = (struct layout_params){
		.ram_size = p->ram_size, .vcpus = p->vcpus,
		.image_hi = p->image_hi, .nrange = p->nrange,
		.ranges = p->range, .nconfig = l ? l->ncfg : 0,
		.config = l ? l->cfg : NULL, .cmdline = cmdline,
	};
}

static int lay_out(struct partition *p, const struct part_spec *s,
		   const struct loaded *l, struct parley_err *err)
{
	uint8_t *rw;
	int rc = mem_create(p, &rw, err);
	if (rc < 0)
		return rc;
	struct layout_params lp;
	params_of(p, s->cmdline, l, &lp);
	rc = elf_load(l->image, l->image_len, &l->elf, rw, p->ram_size, err);
	if (rc == 0)
		rc = layout_system(rw, &lp, err);
	if (rc == 0)
		rc = layout_boot(rw, rw + p->ram_size, p->cfg_size, &lp, err);
	if (rc < 0) {
		munmap(rw, p->ram_size + p->cfg_size);
		return rc;
	}
	return mem_seal_view(p, rw, err);
}

/* The guest memory again, read-only: the vmm maps what the partition may
 * only read from it, so the kernel refuses to make those pages writable. */
static int mem_reopen_ro(int mem_fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mem_fd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

int part_spawn_vmm(struct partition *p, struct parley_err *err)
{
	char vmm[PATH_MAX];
	if (p->opts.vmm_path) {
		if ((size_t)snprintf(vmm, sizeof(vmm), "%s", p->opts.vmm_path) >=
		    sizeof(vmm))
			return perr(err, -ENAMETOOLONG, "vmm path too long");
	} else if (default_vmm(vmm, sizeof(vmm)) < 0)
		return perr(err, -ENOENT, "cannot find parley-vmm");
	int rc = backend_resolve(p->opts.backend, &p->backend, err);
	if (rc < 0)
		return rc;
	int bfd = backend_open_fd(p->backend, vmm, err);
	if (bfd < 0)
		return bfd;
	int rofd = mem_reopen_ro(p->mem_fd);
	if (rofd < 0) {
		close(bfd);
		return perr(err, -errno, "re-opening guest memory read-only: %m");
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		close(bfd);
		close(rofd);
		return perr(err, -errno, "socketpair: %m");
	}
	/* Sources above the target numbers, so that one dup2 cannot
	 * overwrite the source of the next. */
	enum { NFD = 4 };
	const int target[NFD] = { CTL_FD_SOCK, CTL_FD_MEM, CTL_FD_BACKEND,
				  CTL_FD_MEM_RO };
	int src[NFD] = { sv[1], p->mem_fd, bfd, rofd };
	int high[NFD];
	bool ok = true;
	for (int i = 0; i < NFD; i++) {
		high[i] = fcntl(src[i], F_DUPFD_CLOEXEC, CTL_FD_MEM_RO + 1);
		ok = ok && high[i] >= 0;
	}
	close(sv[1]);
	close(bfd);
	close(rofd);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	for (int i = 0; i < NFD; i++)
		if (high[i] >= 0)
			posix_spawn_file_actions_adddup2(&fa, high[i], target[i]);
	/* The vmm process starts with no signal blocked or caught, whatever
	 * the agent does with its own. */
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	char *argv[] = { vmm, p->name, NULL };
	rc = !ok ? EMFILE : posix_spawn(&p->pid, vmm, &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	for (int i = 0; i < NFD; i++)
		if (high[i] >= 0)
			close(high[i]);
	if (rc) {
		close(sv[0]);
		p->pid = 0;
		return perr(err, -rc, "starting %s: %s", vmm, strerror(rc));
	}
	p->ctl = sv[0];
	return 0;
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
	else
		d->u.ref = m->u.ref;
	return 0;
}

bool partition_has_deferred(const struct partition *p)
{
	return p->ndefer > 0 && !p->finished;
}

/* ---- the vmm process: kill and reap, never wait on it ------------------ */

static int pidfd_of(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
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

int partition_reap_fd(const struct partition *p)
{
	return p->pid > 0 ? p->pidfd : -1;
}

bool partition_reap(struct partition *p)
{
	if (p->pid <= 0)
		return true;
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

void partition_fault(struct partition *p, unsigned reason, const char *fmt,
		     ...)
{
	if (p->finished)
		return;
	vmm_kill(p);
	drain_after_kill(p, false);
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

int part_launch(struct partition *p, uint32_t flags,
		  const struct ctl_vcpu_state *st, struct parley_err *err)
{
	struct ctl_launch l = {
		.ram_size = p->ram_size, .cfg_size = p->cfg_size,
		.entry = p->entry, .boot_info = PARLEY_BOOT_INFO_GPA,
		.vcpus = p->vcpus, .flags = flags, .backend = p->backend,
	};
	for (unsigned i = 0; i < p->nrange && l.nro < CTL_RO_RANGES_MAX; i++) {
		if (p->range[i].flags & PF_W)
			continue;
		uint64_t lo = p->range[i].gpa & ~(PARLEY_PAGE_SIZE - 1);
		uint64_t hi = (p->range[i].gpa + p->range[i].size +
			       PARLEY_PAGE_SIZE - 1) & ~(PARLEY_PAGE_SIZE - 1);
		l.ro[l.nro].gpa = lo;
		l.ro[l.nro].size = hi - lo;
		l.ro[l.nro].exec = (p->range[i].flags & PF_X) != 0;
		l.nro++;
	}
	if (p->pidfd < 0 && p->pid > 0)
		p->pidfd = pidfd_of(p->pid);
	int rc = ctl_send(p->ctl, CTL_LAUNCH, &l, sizeof(l));
	for (unsigned i = 0; rc == 0 && st && i < p->vcpus; i++)
		rc = ctl_send(p->ctl, CTL_VCPU_STATE, &st[i], sizeof(st[i]));
	if (rc < 0)
		return perr(err, rc, "sending launch to vmm: %s", strerror(-rc));
	rc = part_await(p, CTL_READY, NULL, 0, err);
	if (rc < 0)
		return rc;
	p->t_ready_ns = mono_now_ns();
	p->state = (flags & CTL_LAUNCH_PAUSED) ? PART_PAUSED : PART_RUNNING;
	return 0;
}

/* The baseline: what the partition's files and image are before its first
 * instruction, measured from our own view of its memory. */
int part_measure_files(struct partition *p,
			 const struct measure_input_file *files, unsigned n,
			 struct parley_err *err)
{
	uint64_t segs[MEASURE_SEGS_MAX][2];
	for (unsigned i = 0; i < p->nrange; i++) {
		segs[i][0] = p->range[i].gpa;
		segs[i][1] = p->range[i].size;
	}
	return measure_baseline(&p->measure, p->mem, p->ram_size,
				p->mem + p->ram_size, p->cfg_size, files, n,
				(const uint64_t(*)[2])segs, p->nrange, err);
}

static int measure_now(struct partition *p, const struct loaded *l,
		       struct parley_err *err)
{
	struct measure_input_file files[PARLEY_CONFIG_FILES_MAX];
	uint64_t off = 0;
	for (unsigned i = 0; i < l->ncfg; i++) {
		files[i] = (struct measure_input_file){ l->cfg[i].name, off,
							l->cfg[i].size };
		uint64_t span = l->cfg[i].size ? l->cfg[i].size : 1;
		off += (span + PARLEY_PAGE_SIZE - 1) & ~(PARLEY_PAGE_SIZE - 1);
	}
	return part_measure_files(p, files, l->ncfg, err);
}

struct partition *part_new(const char *name, const struct part_opts *o)
{
	struct partition *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->ctl = p->mem_fd = p->pidfd = -1;
	p->opts = *o;
	p->t_created_ns = mono_now_ns();
	return p;
}

int partition_create(const struct part_spec *s, const struct part_opts *o,
		     struct partition **out, struct parley_err *err)
{
	struct partition *p = part_new(s->name, o);
	if (!p)
		return perr(err, -ENOMEM, "out of memory");
	struct loaded l = { 0 };
	int rc = load_inputs(s, o, &l, err);
	if (rc == 0) {
		p->ram_size = s->mem_bytes;
		p->vcpus = s->vcpus;
		p->cfg_size = layout_config_bytes(l.cfg, l.ncfg);
		p->entry = l.elf.entry;
		p->nrange = l.elf.nseg;
		for (unsigned i = 0; i < l.elf.nseg; i++)
			p->range[i] = (struct layout_range){
				l.elf.seg[i].gpa, l.elf.seg[i].mem_size,
				l.elf.seg[i].flags };
		p->image_hi = l.elf.hi;
		rc = lay_out(p, s, &l, err);
	}
	if (rc == 0)
		rc = measure_now(p, &l, err);
	loaded_free(&l);
	if (rc == 0 && o->on_measured)
		rc = o->on_measured(p, o->ctx, err);
	if (rc == 0)
		rc = part_spawn_vmm(p, err);
	if (rc == 0)
		rc = part_launch(p, o->start_paused ? CTL_LAUNCH_PAUSED : 0, NULL, err);
	if (rc < 0) {
		partition_destroy(p);
		return rc;
	}
	*out = p;
	return 0;
}

static void on_console(struct partition *p, const struct ctl_console *c)
{
	if (!p->t_first_console_ns)
		p->t_first_console_ns = mono_now_ns();
	if (p->opts.on_console)
		p->opts.on_console(p, c->buf, c->len, p->opts.ctx);
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

static void dispatch_request(struct partition *p, const struct ctl_msg *m)
{
	if (m->type == CTL_OPEN_REQ && m->u.open_req.vcpu >= p->vcpus) {
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "channel open for "
				"vCPU %u of %u", m->u.open_req.vcpu, p->vcpus);
		return;
	}
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
	case CTL_OPEN_REQ:
	case CTL_CLOSED:
	case CTL_MAPPED:
	case CTL_UNMAPPED:
		dispatch_request(p, m);
		return p->finished;
	case CTL_FINISHED:
		on_finished(p, &m->u.finished);
		return 1;
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
		else
			m->u.ref = d.u.ref;
		rc = on_message(p, m);
	} else {
		rc = ctl_read(p->ctl, CTL_FROM_VMM, m);
		if (rc == 0)
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
	int rc = ctl_send(p->ctl, CTL_PAUSE, NULL, 0);
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
	int rc = ctl_send(p->ctl, CTL_RESUME, NULL, 0);
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
		else if (m->type == CTL_FINISHED && believe_finished)
			p->fin = m->u.finished;
	}
	free(m);
}

int partition_stop(struct partition *p)
{
	if (p->finished || p->pid <= 0)
		return 0;
	vmm_kill(p);
	p->fin = (struct ctl_finished){ .reason = VMX_STOP_KILLED };
	snprintf(p->fin.detail, sizeof(p->fin.detail), "stopped by the agent");
	drain_after_kill(p, true);
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
	if (p->pid > 0) {
		vmm_kill(p);
		if (!partition_reap(p) && p->pidfd >= 0 &&
		    poll_one(p->pidfd, REAP_AFTER_KILL_MS) > 0)
			partition_reap(p);
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
	free(p);
}

int partition_send(struct partition *p, uint32_t type, const void *payload,
		   uint32_t len, const int *fds, unsigned nfds)
{
	if (p->finished)
		return -ESRCH;
	return ctl_send_fds(p->ctl, type, payload, len, fds, nfds);
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
