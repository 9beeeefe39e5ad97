/* A VM's channel ends as chanmgr drives them (vmmgr_int.h: vmext_ops):
 * map (the hot-plug), unmap (punch, then unplug), the peer gone, a
 * fault, and the re-measure of the VM's config files before an open. */
#include "agent/vm/vmmgr.h"
#include "agent/vm/vmmgr_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <parley/abi.h>
#include <parley/hypercall.h>

#include "agent/ctl/stop.h"
#include "common/log.h"

/* One of the host's config files of a VM, hashed as it is now. A regular
 * file only, opened without following a link and without waiting: a FIFO
 * or a device put in its place would hold the agent's loop in open() or
 * read() for good. At most VM_CFG_BYTES_MAX (a file that grows while it
 * is read is refused, not hashed in part). */
int vm_file_sha256(const char *path, uint8_t out[32])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
		      O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL
		 : (uint64_t)st.st_size > VM_CFG_BYTES_MAX ? -EFBIG : 0;
	EVP_MD_CTX *c = rc ? NULL : EVP_MD_CTX_new();
	if (!rc && (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)))
		rc = -ENOMEM;
	uint8_t buf[65536];
	uint64_t total = 0;
	for (ssize_t n; !rc && (n = read(fd, buf, sizeof(buf))) != 0;) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if ((total += (uint64_t)n) > VM_CFG_BYTES_MAX)
			rc = -EFBIG;
		else if (!EVP_DigestUpdate(c, buf, (size_t)n))
			rc = -EIO;
	}
	unsigned len = 0;
	if (!rc && (!EVP_DigestFinal_ex(c, out, &len) || len != 32))
		rc = -EIO;
	EVP_MD_CTX_free(c);
	close(fd);
	return rc;
}

static int ext_map(void *ctx, struct cm_chan *ch, int side, struct cm_end *e)
{
	struct vm_part *v = ctx;
	struct vm_chan *c = NULL;
	for (unsigned i = 0; i < VMMGR_CHANS && !c; i++)
		if (!v->ch[i].used)
			c = &v->ch[i];
	for (unsigned i = 0; i < VMMGR_CHANS && !c; i++)
		if (v->ch[i].gone)
			c = &v->ch[i]; /* a tombstone the guest never closed */
	if (!c || ch->nsec > PARLEY_VMCTL_DEVS_MAX)
		return -ENOSPC;
	uint64_t t0 = vm_now_ns();
	memset(c, 0, sizeof(*c));
	c->used = true;
	c->chan = ch->id;
	c->side = side;
	c->handle = ++v->next_handle;
	c->bell_mine = dup(ch->bell[side]);
	c->bell_peer = dup(ch->bell[1 - side]);
	c->flag_fd = -1;
	c->bell_dev = PARLEY_VMCTL_NO_BELL;
	c->wake_fdset = -1;
	int rc = c->bell_mine < 0 || c->bell_peer < 0 ? -errno : 0;
	/* The queue this VM reads: its consumer section holds the flag the
	 * guest sets before it sleeps (the header is the agent's own copy,
	 * not the guest's word). */
	for (unsigned q = 0; q < ch->hdr.nqueues && !rc; q++) {
		unsigned cs = 2 + 2 * q;
		if (ch->hdr.q[q].from != (uint32_t)side && cs < ch->nsec &&
		    c->flag_fd < 0 && (c->flag_fd = dup(ch->mem[cs])) < 0)
			rc = -errno;
	}
	/* The slots, free ones on pci.0 from VMMGR_SLOT0, for every section
	 * but the header (section 0: its copy goes in the OPEN reply) */
	uint32_t slots = v->slots_used;
	c->srv[0] = c->fdset[0] = -1;
	for (unsigned i = 1; i < ch->nsec && !rc; i++) {
		unsigned n = 0;
		while (n < 16 && (slots & (1u << n)))
			n++;
		if (n == 16) {
			rc = -ENOSPC;
			break;
		}
		slots |= 1u << n;
		c->slot[i] = (uint8_t)(VMMGR_SLOT0 + n);
		c->srv[i] = c->fdset[i] = -1;
		struct parley_vmctl_dev *d = &c->dev[c->ndev++];
		snprintf(d->pci, sizeof(d->pci), "0000:00:%02x.0", c->slot[i]);
		d->size = ch->sec_size[i];
		d->section = i;
		d->writable = ch->sec_writer[i] == side;
	}
	struct parley_err err = { 0 };
	if (!rc) {
		c->nsec = ch->nsec;
		if ((rc = vmplug_add(v, c, ch, side, &err)) ||
		    (rc = vmbell_add(v, c, &err)))
			log_warn("%s", err.msg);
	}
	for (unsigned i = 0; i < c->nsec; i++)
		if (c->devs & (1u << i))
			v->slots_used |= 1u << (c->slot[i] - VMMGR_SLOT0);
	if (rc) {
		vmplug_undo(v, c);
		vmplug_del(v, c);
		c->closed = true;  /* backends go on later serves */
		return rc;
	}
	v->m->plug_ns_last = vm_now_ns() - t0;
	e->handle = c->handle;
	return 0;
}

/* Unprompted (version 2): the guest may be waiting or not; a WAKE it did
 * not need only makes it look at its ring again. */
void vm_wake(struct vm_part *v, struct vm_chan *c, int status)
{
	vm_send_status(v, PARLEY_VMCTL_WAKE, 0, status, c->handle);
}

/* The guest's message-pending flag, as the section's file holds it now
 * (0 once punched or truncated: a revoked channel is woken CLOSED
 * instead). The guest writes it: its only power is to get a WAKE it asked
 * for, one per doorbell. */
bool vm_guest_waiting(const struct vm_chan *c)
{
	uint32_t w = 0;
	if (c->flag_fd < 0)
		return false;
	return pread(c->flag_fd, &w, sizeof(w),
		     offsetof(struct parley_ring_cons, waiting)) ==
	       (ssize_t)sizeof(w) && w != 0;
}

static void ext_unmap(void *ctx, struct cm_chan *ch, int side)
{
	struct vm_part *v = ctx;
	(void)side;
	struct vm_chan *c = vm_chan_by_id(v, ch->id);
	if (!c) {
		chanmgr_ext_unmapped(v->m->cm, &v->shell, ch->id);
		return;
	}
	/* At once: the data is punched out (the guest reads zeros, QEMU
	 * survives), whatever the guest does with the devices. */
	for (unsigned i = 0; i < ch->nsec; i++)
		if (fallocate(ch->mem[i], FALLOC_FL_PUNCH_HOLE |
			      FALLOC_FL_KEEP_SIZE, 0, (off_t)ch->sec_size[i]) < 0)
			log_warn("VM %s: punching channel %s: %s", v->spec.name,
				 ch->g.channel, strerror(errno));
	vm_emit(v->m, "vm_revoke_punched", v->spec.name, ch->g.channel, NULL, NULL,
	     "sections punched; devices being unplugged");
	c->closed = true;
	vm_wake(v, c, PARLEY_E_CLOSED);
	vmplug_del(v, c);
}

static void ext_peer_gone(void *ctx, struct cm_chan *ch, int side)
{
	struct vm_part *v = ctx;
	(void)side;
	struct vm_chan *c = vm_chan_by_id(v, ch->id);
	if (!c)
		return;
	c->peer_gone = true;
	vm_wake(v, c, PARLEY_E_PEER_DOWN);
}

static void ext_fault(void *ctx, uint32_t reason, const char *detail)
{
	struct vm_part *v = ctx;
	if (reason == VMX_STOP_VMM_TIMEOUT) {
		/* The guest kept the device past the deadline: chanmgr now
		 * truncates the memory, so its next access stops the VM
		 * (SIGBUS in QEMU); until then it runs. */
		vm_emit(v->m, "vm_unplug_late", v->spec.name, detail, "UNMAP_TIMEOUT",
		     NULL, "memory truncated: the VM's next access stops it");
		v->late = true;
		return;
	}
	vm_fault(v, reason, detail);
}

static int ext_verify(void *ctx, char *file, size_t cap)
{
	struct vm_part *v = ctx;
	for (unsigned i = 0; i < v->spec.ncfg; i++) {
		uint8_t d[32];
		if (vm_file_sha256(v->spec.cfg[i].path, d) ||
		    memcmp(d, v->cfg_digest[i], 32)) {
			snprintf(file, cap, "%s", v->spec.cfg[i].name);
			return -EBADMSG;
		}
	}
	/* The host's own measurements first; then what the guest said of
	 * its files, marked as the guest's word. */
	if (v->guest_bad[0]) {
		snprintf(file, cap, "guest-reported:%s", v->guest_bad);
		return -EBADMSG;
	}
	return 0;
}

const struct cm_ext_ops vmext_ops = {
	.map = ext_map, .unmap = ext_unmap, .peer_gone = ext_peer_gone,
	.fault = ext_fault, .verify = ext_verify,
};

