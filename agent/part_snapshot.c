/* Saving a partition to a snapshot file and starting one from it: the
 * grant manager's half of save/restore (agent/snapshot.c owns the file). */
#include "agent/partition.h"
#include "agent/partition_int.h"
#include "agent/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A restored partition is measured from its restored memory, with the file
 * table from its boot info (which only the agent ever wrote: the partition
 * sees that page read-only, and the snapshot's checksum covers it). Every
 * field is checked as the snapshot is still a file from outside. */
static int measure_restored(struct partition *p, struct parley_err *err)
{
	const struct parley_boot_info *bi =
		(const void *)(p->mem + PARLEY_BOOT_INFO_GPA);
	struct measure_input_file files[PARLEY_CONFIG_FILES_MAX];
	if (bi->magic != PARLEY_BOOT_MAGIC || bi->nconfig > PARLEY_CONFIG_FILES_MAX ||
	    bi->config < PARLEY_BOOT_INFO_GPA ||
	    bi->config + PARLEY_CONFIG_FILES_MAX * sizeof(struct parley_config_file) >
		    PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE)
		return perr(err, -EINVAL, "snapshot: boot info is not ours");
	const struct parley_config_file *t = (const void *)(p->mem + bi->config);
	for (unsigned i = 0; i < bi->nconfig; i++) {
		uint64_t off = t[i].gpa - PARLEY_CONFIG_BASE;
		if (!memchr(t[i].name, 0, sizeof(t[i].name)) ||
		    t[i].gpa < PARLEY_CONFIG_BASE || off > p->cfg_size ||
		    t[i].size > p->cfg_size - off)
			return perr(err, -EINVAL, "snapshot: config table entry "
				    "%u is not ours", i);
		files[i] = (struct measure_input_file){ t[i].name, off,
							t[i].size };
	}
	return part_measure_files(p, files, bi->nconfig, err);
}

int partition_save(struct partition *p, const char *path,
		   struct parley_err *err)
{
	if (p->state != PART_PAUSED)
		return perr(err, -EBUSY, "%s is %s: pause it before saving",
			    p->name, part_state_name(p->state));
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	int rc = ctl_send(p->ctl, CTL_GET_STATE, NULL, 0);
	for (unsigned i = 0; rc >= 0 && i < p->vcpus; i++) {
		rc = part_await(p, CTL_VCPU_STATE, &st[i], sizeof(st[i]), err);
		if (rc >= 0 && st[i].index != i)
			rc = perr(err, -EPROTO, "vmm sent vCPU states out of "
				  "order");
	}
	if (rc >= 0)
		rc = part_await(p, CTL_STATE_DONE, NULL, 0, err);
	if (rc < 0)
		return rc;
	struct snap_header h = {
		.magic = SNAP_MAGIC, .version = SNAP_VERSION,
		.vcpus = p->vcpus, .ram_size = p->ram_size,
		.cfg_size = p->cfg_size, .entry = p->entry,
		.image_hi = p->image_hi, .nrange = p->nrange,
	};
	for (unsigned i = 0; i < p->nrange; i++) {
		h.range[i].gpa = p->range[i].gpa;
		h.range[i].size = p->range[i].size;
		h.range[i].flags = p->range[i].flags;
	}
	snprintf(h.name, sizeof(h.name), "%s", p->name);
	return snap_write(path, &h, st, p->mem, err);
}

int partition_restore(const char *path, const struct part_opts *o,
		      struct partition **out, struct parley_err *err)
{
	struct snap_image img;
	int rc = snap_read(path, &img, err);
	if (rc < 0)
		return rc;
	struct partition *p = part_new(img.h.name, o);
	if (!p) {
		close(img.mem_fd);
		return perr(err, -ENOMEM, "out of memory");
	}
	p->mem_fd = img.mem_fd;
	p->ram_size = img.h.ram_size;
	p->cfg_size = img.h.cfg_size;
	p->vcpus = img.h.vcpus;
	p->entry = img.h.entry;
	p->image_hi = img.h.image_hi;
	p->nrange = img.h.nrange;
	for (unsigned i = 0; i < p->nrange; i++)
		p->range[i] = (struct layout_range){
			img.h.range[i].gpa, img.h.range[i].size,
			img.h.range[i].flags };
	void *ro = mmap(NULL, p->ram_size + p->cfg_size, PROT_READ, MAP_SHARED,
			p->mem_fd, 0);
	if (ro == MAP_FAILED)
		rc = perr(err, -errno, "mapping restored memory: %m");
	else
		p->mem = ro;
	if (rc == 0)
		rc = measure_restored(p, err);
	if (rc == 0 && o->on_measured)
		rc = o->on_measured(p, o->ctx, err);
	if (rc == 0)
		rc = part_spawn_vmm(p, err);
	uint32_t flags = CTL_LAUNCH_RESTORE |
			 (o->start_paused ? CTL_LAUNCH_PAUSED : 0);
	if (rc == 0)
		rc = part_launch(p, flags, img.vcpu, err);
	if (rc < 0) {
		partition_destroy(p);
		return rc;
	}
	*out = p;
	return 0;
}

