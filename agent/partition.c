#include "agent/partition.h"
#include "agent/plugin/plugdir.h"
#include "agent/disk/disks.h"
#include "common/version.h"
#include "agent/partition_int.h"
#include "agent/backend.h"
#include "agent/beneath.h"
#include "agent/elf.h"
#include "agent/vmm_jail.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"
#include "common/fileio.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define IMAGE_FILE_MAX (64u << 20)

const char *part_state_name(enum part_state s)
{
	static const char *const n[] = { "created", "running", "paused",
					 "stopped" };
	return s <= PART_STOPPED ? n[s] : "?";
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

/* Where a spec's image (or config files) may come from: the spec's own
 * directory when it has one (a local spec), then the configured ones. */
static void dirs_of(const struct part_spec *s, const char *const *configured,
		    struct beneath_dirs *d)
{
	*d = (struct beneath_dirs){ 0 };
	beneath_add(d, s->base_dir);
	beneath_add_all(d, configured); /* past BENEATH_DIRS_MAX: not tried */
}

static int read_image(const struct part_spec *s, const struct part_opts *o,
		      struct loaded *l, struct parley_err *err)
{
	struct beneath_dirs d;
	dirs_of(s, o->image_dirs, &d);
	int rc = beneath_read(&d, s->image, "field \"image\"", IMAGE_FILE_MAX,
			      &l->image, &l->image_len, err);
	if (rc != -ENOENT)
		return rc;
	const char *where = s->base_dir ? (o->image_dirs
		? "beside the spec or in the image directories"
		: "beside the spec")
		: "in the image directories";
	return perr(err, -ENOENT, "image \"%s\" not found %s", s->image,
		    where);
}

static int read_config(const struct part_spec *s, const struct part_opts *o,
		       unsigned i, struct loaded *l, size_t *len,
		       struct parley_err *err)
{
	struct beneath_dirs d;
	char field[40];
	dirs_of(s, o->config_dirs, &d);
	snprintf(field, sizeof(field), "config[%u].path", i);
	return beneath_read(&d, s->config[i].path, field, PARLEY_CONFIG_MAX,
			    &l->cfg_buf[i], len, err);
}

int part_default_vmm(char *out, size_t cap)
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

static int load_inputs(const struct part_spec *s, const struct part_opts *o,
		       struct loaded *l, struct parley_err *err)
{
	int rc = read_image(s, o, l, err);
	if (rc < 0)
		return rc;
	uint64_t max = layout_stack_floor(s->mem_bytes, s->vcpus);
	if (max > LAYOUT_IMAGE_MAX)
		max = LAYOUT_IMAGE_MAX;
	rc = elf_parse(l->image, l->image_len, PARLEY_IMAGE_MIN, max, &l->elf,
		       err);
	if (rc < 0)
		return perr_prefix(err, "%s", s->image), rc;
	for (unsigned i = 0; i < s->nconfig; i++) {
		size_t len;
		rc = read_config(s, o, i, l, &len, err);
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
	} else if (part_default_vmm(vmm, sizeof(vmm)) < 0)
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
	int pfd[PLUGIN_SET_MAX];
	const struct plugin_set *ps = p->opts.plugins;
	for (unsigned i = 0; ps && i < ps->n; i++)
		pfd[i] = ps->p[i].fd;
	jr.plugin_fds = pfd;
	jr.nplugin = ps ? ps->n : 0;
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


int part_launch(struct partition *p, uint32_t flags,
		  const struct ctl_vcpu_state *st, struct parley_err *err)
{
	struct ctl_launch l = {
		.ram_size = p->ram_size, .cfg_size = p->cfg_size,
		.entry = p->entry, .boot_info = PARLEY_BOOT_INFO_GPA,
		.vcpus = p->vcpus, .flags = flags, .backend = p->backend,
		.ndisk = p->ndisk,
		.nplugin = p->opts.plugins ? p->opts.plugins->n : 0,
		.ndevload = (flags & CTL_LAUNCH_RESTORE) ? p->ndevload : 0,
	};
	/* Each process-backend partition gets CPUs of its own, in turn, for
	 * its tracer/stub pairs (see ctl_launch.home_cpu). */
	static uint32_t next_cpu;
	l.home_cpu = CTL_NO_CPU;
	if (p->backend == CTL_BACKEND_PROCESS) {
		l.home_cpu = next_cpu;
		next_cpu += p->vcpus;
	}
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
	part_watch(p);
	int rc = partition_send(p, CTL_LAUNCH, &l, sizeof(l), NULL, 0);
	for (unsigned i = 0; rc == 0 && st && i < p->vcpus; i++)
		rc = partition_send(p, CTL_VCPU_STATE, &st[i], sizeof(st[i]),
				    NULL, 0);
	/* The verified copies (sealed memfds): the vmm loads exactly what
	 * was hashed against the manifests. */
	for (unsigned i = 0; rc == 0 && i < l.nplugin; i++) {
		const struct plugin_verified *v = &p->opts.plugins->p[i];
		struct ctl_plugin m = { .index = i,
					.plugin_class = v->m.plugin_class };
		snprintf(m.name, sizeof(m.name), "%s", v->m.name);
		int fd = v->fd;
		rc = partition_send(p, CTL_PLUGIN, &m, sizeof(m), &fd, 1);
	}
	if (rc == 0)
		rc = part_disks_send(p);
	for (unsigned i = 0; rc == 0 && i < l.ndevload; i++)
		rc = partition_send(p, CTL_DEVICE_LOAD, &p->devload[i],
				    sizeof(p->devload[i]), NULL, 0);
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

void part_measure_plugins(struct partition *p, const struct part_opts *o)
{
	/* The plugins its vmm will load are part of what it is. */
	p->measure.nplugin = 0;
	for (unsigned i = 0; o->plugins && i < o->plugins->n &&
			     i < MEASURE_PLUGINS_MAX; i++) {
		struct measure_plugin *mp = &p->measure.plugin[i];
		snprintf(mp->name, sizeof(mp->name), "%s",
			 o->plugins->p[i].m.name);
		memcpy(mp->digest, o->plugins->p[i].m.sha256,
		       sizeof(mp->digest));
		p->measure.nplugin = i + 1;
	}
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
	/* The vmm is this build's (the one beside this agent, or --vmm). */
	snprintf(p->vmm_version, sizeof(p->vmm_version), "%s",
		 parley_version());
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
		p->caps = s->caps;
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
	if (rc == 0)
		part_measure_plugins(p, o);
	loaded_free(&l);
	if (rc == 0 && o->on_measured) {
		rc = o->on_measured(p, o->ctx, err);
		/* Not admitted: no disk is opened, no key asked for. */
		for (unsigned i = 0; rc < 0 && o->on_disk_key && i < s->ndisk;
		     i++)
			if (s->disk[i].encrypted)
				o->on_disk_key(p, s->disk[i].name,
					       "disk_key_refused",
					       perr_msg(err), o->ctx);
	}
	if (rc == 0)
		rc = part_disks_open(p, s, o, err);
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

