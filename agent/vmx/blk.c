/* Block devices: the disks the agent handed over (CTL_DISK, before the
 * sandbox) and the BLK_* hypercalls, served here with pread/pwrite on the
 * disk's descriptor — the data path never reaches the grant manager.
 * Every request passes blk_check (agent/ctl/blkreq.h) first; a refusal
 * stops the partition with the reason it names. The buffer is then taken
 * through gmem_guest_rw (a read fills it) or gmem_guest_r (a write reads
 * it), which also checks it is backed. */
#include "agent/vmx/vmm.h"
#include "agent/vmx/blk_xts.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

/* The disk's devices from the plugins: the block backend "file" and,
 * for an encrypted disk, the transform "xts" (the cipher's name). */
static int plug_disk(struct vmx_vm *vm, struct vmx_disk *k,
		     const struct ctl_disk *d, int fd, struct parley_err *err)
{
	const struct parley_plugin *b = vmx_plugin_find(vm, "file");
	const struct parley_plugin *x = (d->flags & CTL_DISK_XTS)
						? vmx_plugin_find(vm, "xts")
						: NULL;
	if (!b || b->plugin_class != PARLEY_PLUGIN_BLOCK)
		return perr(err, -ENOENT, "disk %s: no block plugin \"file\"",
			    d->name);
	if ((d->flags & CTL_DISK_XTS) &&
	    (!x || x->plugin_class != PARLEY_PLUGIN_TRANSFORM))
		return perr(err, -ENOENT, "disk %s: no transform plugin "
			    "\"xts\"", d->name);
	k->plug = true;
	pthread_mutex_init(&k->lock, NULL);
	struct parley_plugin_config c = {
		.device = d->name, .fd = fd,
		.bytes = d->sectors * d->sector_size };
	int rc = vmx_device_create(vm, &k->blk, b, &c, err);
	if (rc == 0 && x) {
		k->bounce = malloc(PARLEY_BLK_XFER_MAX);
		if (!k->bounce)
			return perr(err, -ENOMEM, "out of memory");
		c = (struct parley_plugin_config){
			.device = d->name, .fd = -1, .unit = 512,
			.key = d->key, .key_len = sizeof(d->key) };
		rc = vmx_device_create(vm, &k->xf, x, &c, err);
	}
	return rc;
}

int vmx_disk_add(struct vmx_vm *vm, struct ctl_disk *d, int fd,
		 struct parley_err *err)
{
	struct vmx_disks *ds = &vm->disks;
	if (d->index != ds->n || ds->n >= PARLEY_DISKS_MAX) {
		OPENSSL_cleanse(d->key, sizeof(d->key));
		close(fd);
		return perr(err, -EPROTO, "disk %u out of order", d->index);
	}
	struct vmx_disk *k = &ds->d[ds->n];
	*k = (struct vmx_disk){ .fd = fd };
	memcpy(k->name, d->name, sizeof(k->name));
	int rc = vm->plugins.n ? plug_disk(vm, k, d, fd, err)
	       : (d->flags & CTL_DISK_XTS)
		       ? xts_new(d->key, PARLEY_BLK_XFER_MAX, &k->xts, err)
		       : 0;
	OPENSSL_cleanse(d->key, sizeof(d->key));
	/* Counted even when a device refused: its teardown is owed. */
	ds->geom[ds->n] = (struct blk_geom){
		.sectors = d->sectors, .sector_size = d->sector_size,
		.read_only = (d->flags & CTL_DISK_READ_ONLY) != 0 };
	ds->n++;
	return rc;
}

void vmx_disks_wipe(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->disks.n; i++) {
		struct vmx_disk *k = &vm->disks.d[i];
		xts_free(k->xts);
		k->xts = NULL;
		if (k->bounce) {
			OPENSSL_cleanse(k->bounce, PARLEY_BLK_XFER_MAX);
			free(k->bounce);
			k->bounce = NULL;
		}
	}
}

bool vmx_hc_blk_info(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_blk_info *a = arg;
	const struct vmx_disks *ds = &c->vm->disks;
	if (a->dev >= ds->n) {
		a->ret = PARLEY_E_BAD_HANDLE;
		return true;
	}
	a->sectors = ds->geom[a->dev].sectors;
	a->sector_size = ds->geom[a->dev].sector_size;
	a->flags = (ds->geom[a->dev].read_only ? PARLEY_BLK_F_READ_ONLY : 0) |
		   (ds->d[a->dev].xts || ds->d[a->dev].xf.p
			    ? PARLEY_BLK_F_ENCRYPTED : 0);
	memcpy(a->name, ds->d[a->dev].name, sizeof(a->name));
	a->ret = PARLEY_OK;
	return true;
}

static int full_io(int fd, bool write, uint8_t *p, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write ? pwrite(fd, p + done, len - done,
					   (off_t)(off + done))
				  : pread(fd, p + done, len - done,
					  (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* A request through the disk's plugins. The backend's failure is the
 * host's I/O error (PARLEY_E_IO, as without plugins); the transform's
 * stops the partition naming the plugin: its data would be wrong. */
static int64_t plug_io(struct vmx_vcpu *c, struct vmx_disk *k, bool wr,
		       uint8_t *buf, uint64_t len, uint64_t off, bool *stop)
{
	const struct parley_plugin *b = k->blk.p, *x = k->xf.p;
	int rc = 0, xrc = 0;
	if (wr && x) {
		/* Encrypted into our bounce buffer: the partition's memory
		 * never holds ciphertext, and a change to it mid-request
		 * cannot reach the file unencrypted. */
		pthread_mutex_lock(&k->lock);
		vmx_plugin_enter(x->name, "encrypt");
		xrc = x->u.transform.encrypt(k->xf.dev, buf, k->bounce, len,
					     off);
		vmx_plugin_enter(b->name, "write");
		if (xrc == 0)
			rc = b->u.block.write(k->blk.dev, k->bounce, len, off);
		vmx_plugin_leave();
		pthread_mutex_unlock(&k->lock);
	} else if (wr) {
		vmx_plugin_enter(b->name, "write");
		rc = b->u.block.write(k->blk.dev, buf, len, off);
		vmx_plugin_leave();
	} else {
		vmx_plugin_enter(b->name, "read");
		rc = b->u.block.read(k->blk.dev, buf, len, off);
		if (rc == 0 && x) {
			vmx_plugin_enter(x->name, "decrypt");
			xrc = x->u.transform.decrypt(k->xf.dev, buf, buf, len,
						     off);
		}
		vmx_plugin_leave();
	}
	if (xrc) {
		vmx_vcpu_fault(c, VMX_STOP_PLUGIN, 0, "plugin %s failed to %s "
			       "%llu bytes of disk %s: %s", x->name,
			       wr ? "encrypt" : "decrypt",
			       (unsigned long long)len, k->name,
			       strerror(xrc < 0 ? -xrc : EIO));
		*stop = true;
		return 0;
	}
	return rc < 0 ? PARLEY_E_IO : (int64_t)len;
}

/* Run one checked request; its status (bytes or PARLEY_E_IO), or 1 with
 * the partition stopped (a buffer not backed). */
static int64_t run(struct vmx_vcpu *c, const struct blk_plan *p, bool *stop)
{
	struct vmx_disk *k = &c->vm->disks.d[p->dev];
	*stop = false;
	if (p->op == PARLEY_BLK_OP_FLUSH && k->plug) {
		vmx_plugin_enter(k->blk.p->name, "flush");
		int rc = k->blk.p->u.block.flush(k->blk.dev);
		vmx_plugin_leave();
		return rc < 0 ? PARLEY_E_IO : PARLEY_OK;
	}
	if (p->op == PARLEY_BLK_OP_FLUSH)
		return fdatasync(k->fd) < 0 ? PARLEY_E_IO : PARLEY_OK;
	bool wr = p->op == PARLEY_BLK_OP_WRITE;
	enum gmem_refusal why;
	uint8_t *buf = wr ? (uint8_t *)gmem_guest_r(&c->vm->gm, p->buf,
						    p->bytes, 1, &why)
			  : gmem_guest_rw(&c->vm->gm, p->buf, p->bytes, 1,
					  &why);
	if (!buf) {
		vmx_vcpu_fault(c, VMX_STOP_BLK_BUFFER, p->buf,
			       "block buffer 0x%llx + %llu bytes is %s",
			       (unsigned long long)p->buf,
			       (unsigned long long)p->bytes,
			       gmem_refusal_str(why));
		*stop = true;
		return 0;
	}
	int rc;
	if (k->plug)
		return plug_io(c, k, wr, buf, p->bytes, p->off, stop);
	if (k->xts)
		rc = wr ? xts_pwrite(k->xts, k->fd, buf, p->bytes, p->off)
			: xts_pread(k->xts, k->fd, buf, p->bytes, p->off);
	else
		rc = full_io(k->fd, wr, buf, p->bytes, p->off);
	return rc < 0 ? PARLEY_E_IO : (int64_t)p->bytes;
}

static bool refuse(struct vmx_vcpu *c, unsigned reason, uint64_t addr,
		   const char *what, const char *why)
{
	vmx_vcpu_fault(c, reason, addr, "%s: %s", what, why);
	return false;
}

static bool one(struct vmx_vcpu *c, const struct parley_blk_desc *d,
		int64_t *ret, const char *what)
{
	struct blk_plan p;
	char why[160];
	unsigned r = blk_check(c->vm->disks.geom, c->vm->disks.n, &c->vm->gm,
			       d, &p, why, sizeof(why));
	if (r)
		return refuse(c, r, d->buf, what, why);
	bool stop;
	*ret = run(c, &p, &stop);
	return !stop;
}

static bool io(struct vmx_vcpu *c, struct parley_hc_blk_io *a, uint32_t op)
{
	/* count is 64-bit here, 32-bit in a descriptor: anything that does
	 * not fit is over PARLEY_BLK_XFER_MAX anyway. */
	struct parley_blk_desc d = {
		.dev = a->dev, .op = op, .sector = a->sector,
		.count = a->count > UINT32_MAX ? UINT32_MAX : (uint32_t)a->count,
		.buf = a->buf };
	return one(c, &d, &a->ret, op == PARLEY_BLK_OP_READ ? "block read"
							      : "block write");
}

bool vmx_hc_blk_read(struct vmx_vcpu *c, void *arg)
{
	return io(c, arg, PARLEY_BLK_OP_READ);
}

bool vmx_hc_blk_write(struct vmx_vcpu *c, void *arg)
{
	return io(c, arg, PARLEY_BLK_OP_WRITE);
}

bool vmx_hc_blk_flush(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_blk_flush *a = arg;
	struct parley_blk_desc d = { .dev = a->dev,
				     .op = PARLEY_BLK_OP_FLUSH };
	return one(c, &d, &a->ret, "block flush");
}

bool vmx_hc_blk_submit(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_blk_submit *a = arg;
	char why[200];
	if (a->n < 1 || a->n > PARLEY_BLK_BATCH_MAX) {
		snprintf(why, sizeof(why), "batch of %u (1..%u)", a->n,
			 PARLEY_BLK_BATCH_MAX);
		return refuse(c, VMX_STOP_BLK_REQUEST, a->descs, "block submit",
			      why);
	}
	size_t len = a->n * sizeof(struct parley_blk_desc);
	enum gmem_refusal gr;
	uint8_t *g = gmem_guest_rw(&c->vm->gm, a->descs, len, 8, &gr);
	if (!g) {
		snprintf(why, sizeof(why), "descriptors at 0x%llx (%zu bytes) "
			 "are %s", (unsigned long long)a->descs, len,
			 gr == GMEM_UNALIGNED ? "not 8-byte aligned"
					      : gmem_refusal_str(gr));
		return refuse(c, VMX_STOP_BLK_BUFFER, a->descs, "block submit",
			      why);
	}
	/* Copied once: what was checked is what runs, whatever the
	 * partition's other vCPUs write meanwhile. */
	struct parley_blk_desc d[PARLEY_BLK_BATCH_MAX];
	struct blk_plan p[PARLEY_BLK_BATCH_MAX];
	memcpy(d, g, len);
	unsigned r = blk_check_batch(c->vm->disks.geom, c->vm->disks.n,
				     &c->vm->gm, d, a->n, p, why, sizeof(why));
	if (r)
		return refuse(c, r, a->descs, "block submit", why);
	int64_t ok = 0;
	for (uint32_t i = 0; i < a->n; i++) {
		bool stop;
		int64_t st = run(c, &p[i], &stop);
		if (stop)
			return false;
		ok += st >= 0;
		memcpy(g + i * sizeof(*d) +
			       offsetof(struct parley_blk_desc, status),
		       &st, sizeof(st));
	}
	a->ret = ok;
	return true;
}
