#include "agent/partition.h"
#include "agent/partition_int.h"
#include "agent/backend.h"
#include "agent/elf.h"
#include "agent/vmm_jail.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"
#include "common/fileio.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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
	/* In CTL_FD_SOCK, CTL_FD_MEM, CTL_FD_BACKEND, CTL_FD_MEM_RO order. */
	struct vmm_jail_req jr = { .vmm_path = vmm, .name = p->name,
				   .fds = { sv[1], p->mem_fd, bfd, rofd } };
	rc = vmm_jail_spawn(&jr, &p->pid, &p->vmm_uid, err);
	close(sv[1]);
	close(bfd);
	close(rofd);
	if (rc < 0) {
		close(sv[0]);
		p->pid = 0;
		return perr_prefix(err, "starting %s", vmm), rc;
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
 * floods us with them is broken. */
static int defer(struct partition *p, uint32_t type, const void *buf, int n)
{
	if (p->ndefer == PART_DEFER_MAX ||
	    (size_t)n > sizeof(p->defer[0].payload))
		return -EPROTO;
	p->defer[p->ndefer].type = type;
	memcpy(p->defer[p->ndefer].payload, buf, (size_t)n);
	p->ndefer++;
	return 0;
}

bool partition_has_deferred(const struct partition *p)
{
	return p->ndefer > 0 && !p->finished;
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
	p->ctl = p->mem_fd = -1;
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

static void reap(struct partition *p, bool block)
{
	if (p->pid <= 0)
		return;
	int st;
	pid_t r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
	if (r == p->pid) {
		p->wait_status = st;
		p->pid = 0;
	}
}

/* The vmm process broke the link or the protocol: it is not trusted to
 * report or to end by itself, so it is killed before we wait for it. */
static void finish_unreported(struct partition *p)
{
	if (p->pid > 0)
		kill(p->pid, SIGKILL);
	reap(p, true);
	p->finished = true;
	p->state = PART_STOPPED;
	p->fin = (struct ctl_finished){ .reason = VMX_STOP_VMM_DIED };
	int st = p->wait_status;
	if (WIFSIGNALED(st))
		snprintf(p->fin.detail, sizeof(p->fin.detail),
			 "vmm process killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(p->fin.detail, sizeof(p->fin.detail),
			 "vmm process ended (status %d) without a report",
			 WEXITSTATUS(st));
}

static int on_message(struct partition *p, uint32_t type, const void *buf,
		      int len)
{
	switch (type) {
	case CTL_CONSOLE: {
		const struct ctl_console *c = buf;
		if (!p->t_first_console_ns)
			p->t_first_console_ns = mono_now_ns();
		if (p->opts.on_console)
			p->opts.on_console(p, c->buf, c->len, p->opts.ctx);
		return 0;
	}
	case CTL_OPEN_REQ:
	case CTL_CLOSED:
	case CTL_MAPPED:
	case CTL_UNMAPPED:
		if (p->opts.on_request)
			p->opts.on_request(p, type, buf, p->opts.ctx);
		return 0;
	case CTL_FINISHED:
		p->fin = *(const struct ctl_finished *)buf;
		p->fin.detail[sizeof(p->fin.detail) - 1] = 0;
		if (p->fin.reason >= VMX_STOP_MAX_)
			p->fin.reason = VMX_STOP_INTERNAL;
		p->finished = true;
		p->state = PART_STOPPED;
		reap(p, true);
		return 1;
	default:
		(void)len;
		return 0;
	}
}

int partition_handle(struct partition *p)
{
	if (p->finished)
		return 1;
	if (p->ndefer) {
		struct part_deferred d = p->defer[0];
		memmove(p->defer, p->defer + 1,
			--p->ndefer * sizeof(p->defer[0]));
		return on_message(p, d.type, d.payload, 0);
	}
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type;
	int n;
	do
		n = ctl_recv(p->ctl, &type, buf, sizeof(buf));
	while (n == -EINTR);
	if (n == -EAGAIN)
		return -EAGAIN;
	if (n < 0) {
		/* End of stream or a malformed message: either way the vmm
		 * process is no longer one we can trust to report. */
		finish_unreported(p);
		return 1;
	}
	return on_message(p, type, buf, n);
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

int part_await(struct partition *p, uint32_t want, void *out, size_t cap,
		 struct parley_err *err)
{
	uint64_t deadline = mono_now_ns() + (uint64_t)timeout_of(p) * 1000000;
	while (!p->finished) {
		if (poll_one(p->ctl, remaining(deadline)) <= 0)
			break;
		_Alignas(8) char buf[CTL_MSG_MAX];
		uint32_t type;
		int n = ctl_recv(p->ctl, &type, buf, sizeof(buf));
		if (n >= 0 && type == want) {
			if (out)
				memcpy(out, buf, (size_t)n < cap ? (size_t)n : cap);
			return n;
		}
		if (n >= 0 && type == CTL_REFUSED)
			return perr(err, ((struct ctl_refused *)buf)->code,
				    "vmm refused the request");
		if (n < 0) {
			finish_unreported(p);
			break;
		}
		if (is_deferred_kind(type)) {
			if (defer(p, type, buf, n) < 0) {
				finish_unreported(p);
				break;
			}
			continue;
		}
		on_message(p, type, buf, n);
	}
	if (p->finished)
		return perr(err, -ESRCH, "partition %s stopped: %s (%s)",
			    p->name, vmx_stop_name(p->fin.reason),
			    p->fin.detail);
	/* A vmm process that does not answer in time is not trusted again. */
	partition_stop(p);
	return perr(err, -ETIMEDOUT, "vmm of %s did not answer in time",
		    p->name);
}

int partition_wait(struct partition *p, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
				: mono_now_ns() + (uint64_t)timeout_ms * 1000000;
	while (!p->finished) {
		int t = timeout_ms < 0 ? -1 : remaining(deadline);
		int n = poll_one(p->ctl, t);
		if (n > 0)
			partition_handle(p);
		else if (n == 0 && timeout_ms >= 0 && !remaining(deadline))
			return -ETIMEDOUT;
	}
	return 0;
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

int partition_stop(struct partition *p)
{
	if (p->finished || p->pid <= 0)
		return 0;
	ctl_send(p->ctl, CTL_STOP, NULL, 0);
	if (partition_wait(p, timeout_of(p)) < 0) {
		kill(p->pid, SIGKILL);
		finish_unreported(p);
		p->fin.reason = VMX_STOP_KILLED;
	}
	return 0;
}

void partition_destroy(struct partition *p)
{
	if (!p)
		return;
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		reap(p, true);
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

int partition_fetch_dirty(struct partition *p, struct parley_err *err)
{
	int rc = partition_send(p, CTL_DIRTY_REQ, NULL, 0, NULL, 0);
	if (rc < 0)
		return perr(err, rc, "asking %s for its dirty pages: %s",
			    p->name, strerror(-rc));
	for (;;) {
		static struct ctl_dirty d;
		rc = part_await(p, CTL_DIRTY, &d, sizeof(d), err);
		if (rc < 0)
			return rc;
		/* The report is the vmm's word: checked against the region. */
		if (measure_mark_dirty(&p->measure, d.first_page, d.npages,
				       d.bits) < 0) {
			finish_unreported(p);
			return perr(err, -EPROTO, "%s: dirty report outside the "
				    "config region", p->name);
		}
		if (d.last)
			return 0;
	}
}

int partition_unmap(struct partition *p, uint32_t chan,
		    struct parley_err *err)
{
	struct ctl_chan_ref ref = { .chan = chan };
	int rc = partition_send(p, CTL_UNMAP, &ref, sizeof(ref), NULL, 0);
	while (rc == 0) {
		struct ctl_chan_ref got;
		rc = part_await(p, CTL_UNMAPPED, &got, sizeof(got), err);
		if (rc >= 0 && got.chan == chan)
			return 0;
	}
	return rc;
}
