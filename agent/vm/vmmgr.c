/* The agent's Linux VM partitions (vmmgr.h). */
#include "agent/vm/vmmgr.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <parley/hypercall.h>

#include "common/log.h"

static void emit(struct vmmgr *m, const char *event, const char *part,
		 const char *chan, const char *reason, const char *file,
		 const char *detail)
{
	struct audit_event e = { event, part, chan, reason, file, detail };
	if (m->audit)
		audit_emit(m->audit, &e);
}

static int file_sha256(const char *path, uint8_t out[32])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int rc = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) ? 0 : -ENOMEM;
	uint8_t buf[65536];
	ssize_t n;
	while (!rc && (n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0)
			rc = -errno;
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

int vmmgr_init(struct vmmgr *m, const char *state_dir, const char *uri,
	       const struct grant_set *grants, struct audit *audit,
	       struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	m->grants = grants;
	m->audit = audit;
	return vmhost_open(&m->host, state_dir, uri, err);
}

void vmmgr_free(struct vmmgr *m)
{
	for (unsigned i = 0; i < m->nvm; i++)
		if (m->vm[i].ctl >= 0)
			close(m->vm[i].ctl);
	vmhost_close(&m->host);
}

struct vm_part *vmmgr_find(struct vmmgr *m, const char *name)
{
	for (unsigned i = 0; i < m->nvm; i++)
		if (!strcmp(m->vm[i].spec.name, name))
			return &m->vm[i];
	return NULL;
}

int vmmgr_add(struct vmmgr *m, const struct vm_spec *s, struct parley_err *err)
{
	if (m->nvm == VMMGR_MAX)
		return perr(err, -ENOSPC, "more than %d VMs", VMMGR_MAX);
	if (vmmgr_find(m, s->name))
		return perr(err, -EEXIST, "VM %s twice", s->name);
	struct vm_part *v = &m->vm[m->nvm];
	memset(v, 0, sizeof(*v));
	v->spec = *s;
	v->ctl = -1;
	vmctl_dec_init(&v->dec);
	for (unsigned i = 0; i < s->ncfg; i++) {
		int rc = file_sha256(s->cfg[i].path, v->cfg_digest[i]);
		if (rc)
			return perr(err, rc, "VM %s: config file %s: %s", s->name,
				    s->cfg[i].path, strerror(-rc));
	}
	int r = vmhost_running(&m->host, s->name);
	if (r < 0)
		return perr(err, r, "VM %s: cannot ask libvirt", s->name);
	if (r) {
		v->adopted = true;
		emit(m, "vm_adopted", s->name, NULL, NULL, NULL, NULL);
	} else {
		int rc = vmhost_start(&m->host, s, err);
		if (rc)
			return rc;
		emit(m, "vm_started", s->name, NULL, NULL, NULL, NULL);
	}
	v->ctl = vmhost_ctl_connect(&m->host, s->name, 5000, err);
	if (v->ctl < 0)
		return v->ctl;
	m->nvm++;
	return 0;
}

static bool keep(const char *name, void *ctx)
{
	return vmmgr_find(ctx, name) != NULL;
}

int vmmgr_reconcile(struct vmmgr *m, unsigned *adopted, unsigned *destroyed,
		    struct parley_err *err)
{
	int rc = vmhost_reconcile(&m->host, keep, m, adopted, destroyed, err);
	if (*destroyed) {
		char d[64];
		snprintf(d, sizeof(d), "%u VM(s) without a spec", *destroyed);
		emit(m, "vm_destroyed", NULL, NULL, "NO_SPEC", NULL, d);
	}
	return rc;
}

static const char *status_name(int st)
{
	switch (st) {
	case PARLEY_OK: return "OK";
	case PARLEY_E_NO_GRANT: return "NO_GRANT";
	case PARLEY_E_INTEGRITY: return "INTEGRITY";
	case PARLEY_E_QUARANTINED: return "QUARANTINED";
	case PARLEY_E_NOSYS: return "NOSYS";
	case PARLEY_E_BAD_HANDLE: return "BAD_HANDLE";
	}
	return "INVAL";
}

static int send_frame(struct vm_part *v, uint16_t type, uint32_t seq,
		      const void *pl, size_t len)
{
	int n = vmctl_encode(type, seq, pl, len, v->out, sizeof(v->out));
	if (n < 0)
		return n;
	/* The guest's end may be slow to drain; a reply is small, and a
	 * blocking send keeps replies whole and in order. */
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = send(v->ctl, v->out + off, (size_t)n - off,
				 MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EPIPE;
		off += (size_t)w;
	}
	return 0;
}

/* Re-measure the config files on the host: 0, or the index of the first
 * that changed (or cannot be read) + 1. */
static int changed_file(struct vm_part *v)
{
	for (unsigned i = 0; i < v->spec.ncfg; i++) {
		uint8_t d[32];
		if (file_sha256(v->spec.cfg[i].path, d) ||
		    memcmp(d, v->cfg_digest[i], 32))
			return (int)i + 1;
	}
	return 0;
}

static void on_open(struct vmmgr *m, struct vm_part *v,
		    const struct vmctl_msg *msg)
{
	struct parley_vmctl_open_reply r;
	const char *chan = msg->u.open.name, *file = NULL;
	memset(&r, 0, sizeof(r));
	if (v->quarantined) {
		r.status = PARLEY_E_QUARANTINED;
	} else if (!grant_find(m->grants, chan, v->spec.name)) {
		r.status = PARLEY_E_NO_GRANT;
	} else {
		int f = changed_file(v);
		if (f) {
			file = v->spec.cfg[f - 1].path;
			r.status = PARLEY_E_INTEGRITY;
			snprintf(r.detail, sizeof(r.detail), "%s", file);
			v->quarantined = true;
		} else {
			r.status = PARLEY_E_NOSYS;
			snprintf(r.detail, sizeof(r.detail), "channel memory "
				 "for VMs is not built yet");
		}
	}
	emit(m, "open_denied", v->spec.name, chan, status_name(r.status), file,
	     r.status == PARLEY_E_NOSYS ? r.detail : NULL);
	if (r.status == PARLEY_E_INTEGRITY)
		emit(m, "quarantine", v->spec.name, NULL, "INTEGRITY", file, NULL);
	send_frame(v, PARLEY_VMCTL_OPEN_REPLY, msg->h.seq, &r, sizeof(r));
}

static void on_msg(struct vmmgr *m, struct vm_part *v,
		   const struct vmctl_msg *msg)
{
	struct parley_vmctl_status st = { PARLEY_E_BAD_HANDLE, 0 };
	switch (msg->h.type) {
	case PARLEY_VMCTL_HELLO: {
		struct parley_vmctl_hello he = { PARLEY_VMCTL_VERSION, 0 };
		send_frame(v, PARLEY_VMCTL_HELLO_REPLY, msg->h.seq, &he,
			   sizeof(he));
		return;
	}
	case PARLEY_VMCTL_OPEN:
		on_open(m, v, msg);
		return;
	case PARLEY_VMCTL_DIGEST: {
		/* The guest's word only: audited as guest-reported. */
		char hex[65];
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", msg->u.digest.sha256[i]);
		emit(m, "guest_reported_digest", v->spec.name, NULL,
		     "guest-reported", msg->u.digest.path, hex);
		st.status = PARLEY_OK;
		break;
	}
	default:
		/* No handle is ever given out before channel memory exists. */
		st.handle = msg->u.handle.handle;
		break;
	}
	send_frame(v, msg->h.type == PARLEY_VMCTL_WAIT ? PARLEY_VMCTL_WAKE
						       : PARLEY_VMCTL_STATUS,
		   msg->h.seq, &st, sizeof(st));
}

int vmmgr_serve(struct vmmgr *m, unsigned i)
{
	struct vm_part *v = &m->vm[i];
	uint8_t buf[4096];
	if (v->ctl < 0)
		return -EPIPE;
	ssize_t n = recv(v->ctl, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -EPIPE;
	if (n == 0)
		return -EPIPE;
	for (size_t off = 0; off < (size_t)n;) {
		struct vmctl_msg msg;
		struct parley_err err = { 0 };
		size_t used;
		int rc = vmctl_dec_feed(&v->dec, buf + off, (size_t)n - off,
					&used, &msg, &err);
		off += used;
		if (rc < 0) {
			emit(m, "vm_ctl_violation", v->spec.name, NULL, "EPROTO",
			     NULL, err.msg);
			close(v->ctl);
			v->ctl = -1;
			return -EPROTO;
		}
		if (rc == 1)
			on_msg(m, v, &msg);
	}
	return 0;
}
