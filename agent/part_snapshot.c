/* Saving a partition to a snapshot file and starting one from it: the
 * grant manager's half of save/restore (agent/snapshot.c owns the file). */
#include "agent/partition.h"
#include "agent/partition_int.h"
#include "agent/snapshot.h"
#include "agent/disk/disks.h"
#include "agent/ctl/gmem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>

/* The restored memory as the one door sees it: RAM and the config region
 * of the read-only view; and the boot-info area alone, where the agent laid
 * the config table. */
static void restored_gmem(const struct partition *p, struct gmem *all,
			  struct gmem *boot)
{
	uint8_t *m = (uint8_t *)p->mem; /* gmem hands out what it was given:
					 * the pages are mapped PROT_READ */
	*all = (struct gmem){ 0 };
	*boot = (struct gmem){ 0 };
	gmem_add(all, 0, p->ram_size, m);
	gmem_add(all, PARLEY_CONFIG_BASE, p->cfg_size, m + p->ram_size);
	gmem_add(boot, PARLEY_BOOT_INFO_GPA, PARLEY_BOOT_INFO_SIZE,
		 m + PARLEY_BOOT_INFO_GPA);
}

/* One entry of the config table: a NUL-terminated name and a range that
 * lies in the config region, checked by the accessor. */
static int restored_file(const struct gmem *all,
			 const struct parley_config_file *t, unsigned i,
			 struct measure_input_file *out, struct parley_err *err)
{
	if (!memchr(t->name, 0, sizeof(t->name)) ||
	    t->gpa < PARLEY_CONFIG_BASE || !gmem_ptr(all, t->gpa, t->size, 1))
		return perr(err, -EINVAL, "snapshot: config table entry %u is "
			    "not ours", i);
	*out = (struct measure_input_file){ t->name,
					    t->gpa - PARLEY_CONFIG_BASE,
					    t->size };
	return 0;
}

/* A restored partition is measured from its restored memory, with the file
 * table from its boot info (which only the agent ever wrote: the partition
 * sees that page read-only, and the snapshot's tag covers it). The table is
 * copied out through the checked accessor, then every field is checked:
 * the file is still input from outside. */
static int measure_restored(struct partition *p, struct parley_err *err)
{
	struct gmem all, boot;
	restored_gmem(p, &all, &boot);
	struct parley_boot_info bi;
	const void *src = gmem_ptr(&boot, PARLEY_BOOT_INFO_GPA, sizeof(bi), 8);
	PARLEY_ASSERT(src); /* the area is bigger than the struct */
	memcpy(&bi, src, sizeof(bi));
	if (bi.magic != PARLEY_BOOT_MAGIC || bi.nconfig > PARLEY_CONFIG_FILES_MAX)
		return perr(err, -EINVAL, "snapshot: boot info is not ours");
	struct parley_config_file t[PARLEY_CONFIG_FILES_MAX];
	src = gmem_ptr(&boot, bi.config, bi.nconfig * sizeof(t[0]), 8);
	if (!src)
		return perr(err, -EINVAL, "snapshot: config table at 0x%llx "
			    "is not in the boot info",
			    (unsigned long long)bi.config);
	memcpy(t, src, bi.nconfig * sizeof(t[0]));
	struct measure_input_file files[PARLEY_CONFIG_FILES_MAX];
	for (unsigned i = 0; i < bi.nconfig; i++) {
		int rc = restored_file(&all, &t[i], i, &files[i], err);
		if (rc < 0)
			return rc;
	}
	return part_measure_files(p, files, bi.nconfig, err);
}

static void header_of(const struct partition *p, const char *host,
		      struct snap_header *h)
{
	*h = (struct snap_header){
		.magic = SNAP_MAGIC, .version = SNAP_VERSION,
		.vcpus = p->vcpus, .ram_size = p->ram_size,
		.cfg_size = p->cfg_size, .entry = p->entry,
		.image_hi = p->image_hi, .nrange = p->nrange,
		.abi_major = PARLEY_ABI_MAJOR, .abi_minor = PARLEY_ABI_MINOR,
		.backend = p->backend,
	};
	for (unsigned i = 0; i < p->nrange; i++) {
		h->range[i].gpa = p->range[i].gpa;
		h->range[i].size = p->range[i].size;
		h->range[i].flags = p->range[i].flags;
	}
	snprintf(h->name, sizeof(h->name), "%s", p->name);
	snprintf(h->host, sizeof(h->host), "%s", host);
}

static int get_states(struct partition *p, struct ctl_vcpu_state *st,
		      struct parley_err *err)
{
	int rc = partition_send(p, CTL_GET_STATE, NULL, 0, NULL, 0);
	if (rc < 0)
		return perr(err, rc, "asking %s for its state: %s", p->name,
			    strerror(-rc));
	for (unsigned i = 0; rc >= 0 && i < p->vcpus; i++) {
		rc = part_await(p, CTL_VCPU_STATE, &st[i], sizeof(st[i]), err);
		if (rc >= 0 && st[i].index != i)
			rc = perr(err, -EPROTO, "vmm sent vCPU states out of "
				  "order");
	}
	/* The devices' states come between (CTL_DEVICE_SAVED, collected
	 * into p->saving by part_await); a device that refuses makes the
	 * vmm refuse the request, and we name the device. */
	if (rc >= 0)
		rc = part_await(p, CTL_STATE_DONE, NULL, 0, err);
	for (unsigned i = 0; rc == -ECANCELED && i < p->ndevice; i++)
		if (p->device[i].state == 8 /* failed */ &&
		    p->device[i].why[0])
			rc = perr(err, -EIO, "%s: snapshot refused: %s",
				  p->name, p->device[i].why);
	return rc < 0 ? rc : 0;
}

int partition_save(struct partition *p, const char *path,
		   struct parley_err *err)
{
	if (p->state != PART_PAUSED)
		return perr(err, -EBUSY, "%s is %s: pause it before saving",
			    p->name, part_state_name(p->state));
	if (!p->opts.snap_key)
		return perr(err, -ENOKEY, "%s: no snapshot key", p->name);
	char host[SNAP_HOST_MAX];
	int rc = snap_host(host, err);
	if (rc < 0)
		return rc;
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	p->saving = calloc(CTL_DEVICES_MAX, sizeof(*p->saving));
	if (!p->saving)
		return perr(err, -ENOMEM, "out of memory");
	p->nsaving = 0;
	rc = get_states(p, st, err);
	struct snap_header h;
	header_of(p, host, &h);
	h.ndevice = p->nsaving;
	if (rc == 0)
		rc = snap_write(path, p->opts.snap_key, &h, st, p->saving,
				p->mem, err);
	free(p->saving);
	p->saving = NULL;
	p->nsaving = 0;
	return rc;
}

static void adopt_image(struct partition *p, const struct snap_image *img)
{
	p->mem_fd = img->mem_fd;
	p->ram_size = img->h.ram_size;
	p->cfg_size = img->h.cfg_size;
	p->vcpus = img->h.vcpus;
	p->entry = img->h.entry;
	p->image_hi = img->h.image_hi;
	p->nrange = img->h.nrange;
	for (unsigned i = 0; i < p->nrange; i++)
		p->range[i] = (struct layout_range){
			img->h.range[i].gpa, img->h.range[i].size,
			img->h.range[i].flags };
}

static int read_snapshot(const char *path, const char *name,
			 const struct part_opts *o, struct snap_image *img,
			 struct parley_err *err)
{
	if (!o->snap_key)
		return perr(err, -ENOKEY, "%s: no snapshot key to check it "
			    "with", path);
	char host[SNAP_HOST_MAX];
	int rc = snap_host(host, err);
	if (rc < 0)
		return rc;
	struct snap_expect want = { .host = host, .name = name };
	return snap_read(path, o->snap_key, &want, img, err);
}

/* The disks of the spec it was created from, re-opened as a start opens
 * them: after the restored memory passed its baseline check, the keys
 * through the same key source (never from the snapshot). */
static int restored_disks(struct partition *p, const struct part_opts *o,
			  struct parley_err *err)
{
	const struct part_spec *s = o->restore_spec;
	if (strcmp(s->name, p->name))
		return perr(err, -EINVAL, "the spec given for its disks is "
			    "%s's, not %s's", s->name, p->name);
	return part_disks_open(p, s, o, err);
}

int partition_restore_prepare(const char *path, const char *name,
			      const struct part_opts *o, struct partition **out,
			      struct ctl_vcpu_state *st, struct parley_err *err)
{
	struct snap_image img;
	int rc = read_snapshot(path, name, o, &img, err);
	if (rc < 0)
		return rc;
	struct partition *p = part_new(img.h.name, o);
	if (!p) {
		close(img.mem_fd);
		return perr(err, -ENOMEM, "out of memory");
	}
	adopt_image(p, &img);
	memcpy(st, img.vcpu, p->vcpus * sizeof(*st));
	/* The devices' saved states go to the new vmm with the launch. */
	p->devload = img.dev;
	p->ndevload = img.h.ndevice;
	img.dev = NULL;
	void *ro = mmap(NULL, p->ram_size + p->cfg_size, PROT_READ, MAP_SHARED,
			p->mem_fd, 0);
	if (ro == MAP_FAILED)
		rc = perr(err, -errno, "mapping restored memory: %m");
	else
		p->mem = ro;
	if (rc == 0)
		rc = measure_restored(p, err);
	if (rc == 0)
		part_measure_plugins(p, o);
	if (rc == 0 && o->on_measured) {
		rc = o->on_measured(p, o->ctx, err);
		/* Not admitted: no disk is opened, no key asked for. */
		const struct part_spec *s = o->restore_spec;
		for (unsigned i = 0; rc < 0 && s && o->on_disk_key &&
				     i < s->ndisk; i++)
			if (s->disk[i].encrypted)
				o->on_disk_key(p, s->disk[i].name,
					       "disk_key_refused",
					       perr_msg(err), o->ctx);
	}
	if (rc == 0 && o->restore_spec)
		rc = restored_disks(p, o, err);
	if (rc < 0) {
		perr_prefix(err, "%s", path);
		partition_destroy(p);
		return rc;
	}
	*out = p;
	return 0;
}

int partition_restore(const char *path, const char *name,
		      const struct part_opts *o, struct partition **out,
		      struct parley_err *err)
{
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	struct partition *p = NULL;
	int rc = partition_restore_prepare(path, name, o, &p, st, err);
	if (rc < 0)
		return rc;
	rc = part_spawn_vmm(p, err);
	uint32_t flags = CTL_LAUNCH_RESTORE |
			 (o->start_paused ? CTL_LAUNCH_PAUSED : 0);
	if (rc == 0)
		rc = part_launch(p, flags, st, err);
	if (rc < 0) {
		partition_destroy(p);
		return rc;
	}
	*out = p;
	return 0;
}
