/* A partition's disks on the agent's side (disks.h). */
#include "agent/disk/disks.h"
#include "agent/disk/keys.h"
#include "agent/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

void part_disks_drop(struct partition *p)
{
	for (unsigned i = 0; i < p->ndisk; i++) {
		if (p->disk[i].fd >= 0)
			close(p->disk[i].fd);
		OPENSSL_cleanse(&p->disk[i].msg, sizeof(p->disk[i].msg));
	}
	p->ndisk = 0;
}

static void report(struct partition *p, const struct part_opts *o,
		   const char *disk, const char *event, const char *detail)
{
	if (o->on_disk_key)
		o->on_disk_key(p, disk, event, detail, o->ctx);
}

/* The backing file: opened (or made) beneath the directories, checked to
 * be a regular file of exactly the spec's size. */
static int open_file(const struct beneath_dirs *dirs,
		     const struct part_disk_spec *d, struct parley_err *err)
{
	char field[48];
	snprintf(field, sizeof(field), "disk \"%s\"", d->name);
	bool created;
	int fd = beneath_open_rw(dirs, d->path, field, !d->read_only,
				 !d->read_only, &created, err);
	if (fd < 0)
		return fd;
	struct stat st;
	int rc = 0;
	if (created && ftruncate(fd, (off_t)d->size) < 0)
		rc = perr(err, -errno, "%s: sizing \"%s\": %m", field, d->path);
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = perr(err, -errno, "%s: %m", field);
	if (rc == 0 && !S_ISREG(st.st_mode))
		rc = perr(err, -EINVAL, "%s: \"%s\" is not a regular file",
			  field, d->path);
	if (rc == 0 && (uint64_t)st.st_size != d->size)
		rc = perr(err, -EINVAL, "%s: \"%s\" is %lld bytes, the spec "
			  "says %llu", field, d->path, (long long)st.st_size,
			  (unsigned long long)d->size);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	/* Non-blocking came with the open (a FIFO must not hang us); a
	 * regular file ignores it, but the vmm gets a plain descriptor. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int part_disks_open(struct partition *p, const struct part_spec *s,
		    const struct part_opts *o, struct parley_err *err)
{
	struct beneath_dirs dirs = { 0 };
	if (o->disk_dirs)
		beneath_add_all(&dirs, o->disk_dirs);
	else if (s->base_dir)
		beneath_add(&dirs, s->base_dir);
	struct disk_key_source file = { disk_key_file, &dirs };
	const struct disk_key_source *keys = o->keys ? o->keys : &file;
	p->ndisk = 0;
	p->nkeyed = 0;
	for (unsigned i = 0; i < s->ndisk; i++) {
		const struct part_disk_spec *d = &s->disk[i];
		struct part_disk *k = &p->disk[p->ndisk];
		*k = (struct part_disk){ .fd = -1 };
		int rc = 0;
		if (d->encrypted) {
			rc = keys->get(keys->ctx, p->name, d, k->msg.key, err);
			if (rc < 0)
				report(p, o, d->name, "disk_key_refused",
				       perr_msg(err));
		}
		if (rc == 0)
			rc = open_file(&dirs, d, err);
		if (rc < 0) {
			OPENSSL_cleanse(k->msg.key, sizeof(k->msg.key));
			part_disks_drop(p);
			return perr_prefix(err, "disk %s", d->name), rc;
		}
		k->fd = rc;
		k->msg.index = i;
		k->msg.flags = (d->read_only ? CTL_DISK_READ_ONLY : 0) |
			       (d->encrypted ? CTL_DISK_XTS : 0);
		k->msg.sectors = d->size / d->sector_size;
		k->msg.sector_size = d->sector_size;
		memcpy(k->msg.name, d->name, sizeof(k->msg.name));
		p->ndisk++;
	}
	return 0;
}

int part_disks_send(struct partition *p)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < p->ndisk; i++) {
		rc = partition_send(p, CTL_DISK, &p->disk[i].msg,
				    sizeof(p->disk[i].msg), &p->disk[i].fd, 1);
		/* Released once it is the vmm's, not before. */
		if (rc == 0 && (p->disk[i].msg.flags & CTL_DISK_XTS)) {
			p->nkeyed++;
			report(p, &p->opts, p->disk[i].msg.name,
			       "disk_key_released", NULL);
		}
	}
	part_disks_drop(p);
	return rc;
}
