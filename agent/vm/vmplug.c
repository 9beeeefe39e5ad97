/* A channel end's devices in a VM's QEMU: hot-plug and unplug through
 * the agent's own monitor (vmmgr_int.h, vmmgr.h's open and revocation). */
#include "agent/vm/vmmgr_int.h"
#include "agent/ctl/fdpass.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* The bus of the domain's virtio-serial controller (vmhost.c's domain
 * XML has one, index 0: libvirt calls it virtio-serial0). */
#define VMPLUG_SERIAL_BUS "virtio-serial0.0"

/* The monitor's names for channel c's section i: this agent's random mark
 * (nonce) in them, so an agent that adopts a VM never collides with what
 * its predecessor left plugged. */
void vmplug_qid(char *out, size_t cap, char kind, const struct vm_part *v,
		const struct vm_chan *c, unsigned i)
{
	snprintf(out, cap, "pl%c%dh%us%u", kind, v->m->nonce, c->handle, i);
}

/* The devices are gone: their slots, sockets and doorbells go; the record
 * stays as a tombstone (gone) for the guest's handle. */
void vmplug_unplugged(struct vm_part *v, struct vm_chan *c)
{
	for (unsigned i = 0; i < c->nsec; i++) {
		if (c->devs & (1u << i))
			v->slots_used &= ~(1u << (c->slot[i] - VMMGR_SLOT0));
		if (c->srv[i] >= 0)
			close(c->srv[i]);
		c->srv[i] = -1;
	}
	c->nsec = 0;
	c->devs = 0;
	if (c->bell_mine >= 0)
		close(c->bell_mine);
	if (c->bell_peer >= 0)
		close(c->bell_peer);
	if (c->flag_fd >= 0)
		close(c->flag_fd);
	c->bell_mine = c->bell_peer = c->flag_fd = -1;
	c->bell_dev = PARLEY_VMCTL_NO_BELL;
	c->wake_port = c->wake_chr = false;
	c->unplugging = false;
	c->closed = c->gone = true;
}

void vmplug_release(struct vm_part *v, struct vm_chan *c)
{
	vmplug_unplugged(v, c);
	memset(c, 0, sizeof(*c));
}

/* The wake port's device_del (first in a batch at cmd[*n]) and its
 * answer: gone, or still to delete (vmplug_backends_gone asks again). */
static void wake_port_del(struct vm_part *v, struct vm_chan *c, char *json,
			  size_t cap, struct qmp_cmd *cmd, unsigned *n)
{
	char port[48];
	if (!c->wake_port)
		return;
	vmplug_qid(port, sizeof(port), 'p', v, c, 0);
	vm_json_id(json, cap, "device_del", port);
	cmd[(*n)++] = (struct qmp_cmd){ json, -1, 0, "" };
}

static void wake_port_answer(struct vm_part *v, struct vm_chan *c,
			     const struct qmp_cmd *cmd)
{
	if (cmd->rc && !strstr(cmd->reply, "DeviceNotFound"))
		log_warn("VM %s: wake port: %s", v->spec.name, cmd->reply);
	else
		c->wake_port = false;
}

/* device_del for the wake port and every section still plugged (one
 * batch); the backends go once QEMU has let go of the devices
 * (vmmgr_serve retries). The wake port goes at once (a virtio-serial port
 * needs no eject); the peer's doorbell goes with the section device that
 * holds it, when the guest has ejected it — not with ivshmem's "peer
 * gone" message: QEMU 7.2 frees that peer's table then and again when
 * the device goes (its heap corrupted: found by vm_agent's example, QEMU
 * aborting at the VM's next close). Until the eject (chanmgr's deadline
 * at most) a ring reaches a doorbell of a channel that ended — a spurious
 * wake-up of its former peer at worst. */
void vmplug_del(struct vm_part *v, struct vm_chan *c)
{
	if (c->unplugging)
		return;
	c->unplugging = true;
	c->bell_dev = PARLEY_VMCTL_NO_BELL;
	char json[PARLEY_VMCTL_DEVS_MAX + 1][128];
	struct qmp_cmd cmd[PARLEY_VMCTL_DEVS_MAX + 1];
	unsigned n = 0;
	wake_port_del(v, c, json[0], sizeof(json[0]), cmd, &n);
	unsigned first = n;
	for (unsigned i = 0; i < c->nsec; i++) {
		char id[48];
		if (!(c->devs & (1u << i)))
			continue;
		vmplug_qid(id, sizeof(id), 'd', v, c, i);
		vm_json_id(json[n], sizeof(json[n]), "device_del", id);
		cmd[n] = (struct qmp_cmd){ json[n], -1, 0, "" };
		n++;
	}
	struct parley_err err = { 0 };
	if (n && vm_mon_run(v, cmd, n, &err)) {
		log_warn("%s", err.msg);
		return;
	}
	if (first)
		wake_port_answer(v, c, &cmd[0]);
	for (unsigned i = first; i < n; i++)
		if (cmd[i].rc)
			log_warn("VM %s: device_del: %s", v->spec.name,
				 cmd[i].reply);
}

/* Try to delete the backends of an unplugging channel: true once all are
 * gone (QEMU holds the memfds no more). A backend in use by its device
 * (the guest has not ejected it yet) refuses to go. */
bool vmplug_backends_gone(struct vm_part *v, struct vm_chan *c)
{
	enum { N = PARLEY_VMCTL_DEVS_MAX + 1 };
	char json[N + 1][160], fdj[N + 1][96];
	struct qmp_cmd cmd[N + 1], fdc[N + 1];
	unsigned n = 0, nf = 0, sec[N + 1];
	/* a wake port whose delete failed before: again, ahead of its
	 * chardev */
	wake_port_del(v, c, json[0], sizeof(json[0]), cmd, &n);
	unsigned first = n;
	struct parley_err err = { 0 };
	/* One pipelined batch for every backend left, then one for the
	 * descriptors of those that went (each a monitor round trip). */
	for (unsigned i = 0; i < c->nsec; i++) {
		if (c->obj_gone[i])
			continue;
		char id[48];
		bool rw = c->srv[i] >= 0;
		vmplug_qid(id, sizeof(id), rw ? 'c' : 'm', v, c, i);
		vm_json_id(json[n], sizeof(json[n]),
			   rw ? "chardev-remove" : "object-del", id);
		cmd[n] = (struct qmp_cmd){ json[n], -1, 0, "" };
		sec[n++] = i;
	}
	if (c->wake_chr) {
		/* the wake port's (vmbell.c), after its port */
		char id[48];
		vmplug_qid(id, sizeof(id), 'w', v, c, 0);
		vm_json_id(json[n], sizeof(json[n]), "chardev-remove", id);
		cmd[n] = (struct qmp_cmd){ json[n], -1, 0, "" };
		sec[n++] = N;
	}
	if (n && vm_mon_run(v, cmd, n, &err))
		return false;
	if (first)
		wake_port_answer(v, c, &cmd[0]);
	bool all = !c->wake_port;
	if (c->wake_fdset >= 0) {
		/* the wake port's descriptor, if its remove-fd failed */
		vm_json_remove_fd(fdj[nf], sizeof(fdj[nf]), c->wake_fdset);
		fdc[nf] = (struct qmp_cmd){ fdj[nf], -1, 0, "" };
		nf++;
		c->wake_fdset = -1;
	}
	for (unsigned k = first; k < n; k++) {
		unsigned i = sec[k];
		if (cmd[k].rc) {
			all = false;
			continue;
		}
		if (i == N) {
			c->wake_chr = false;
			continue;
		}
		c->obj_gone[i] = true;
		if (c->srv[i] >= 0) {
			close(c->srv[i]);
			c->srv[i] = -1;
		} else if (c->fdset[i] >= 0) {
			/* the descriptor add-fd gave QEMU for the backend */
			vm_json_remove_fd(fdj[nf], sizeof(fdj[nf]), c->fdset[i]);
			fdc[nf] = (struct qmp_cmd){ fdj[nf], -1, 0, "" };
			nf++;
			c->fdset[i] = -1;
		}
	}
	if (nf && vm_mon_run(v, fdc, nf, &err))
		log_warn("%s", err.msg);
	for (unsigned k = 0; k < nf; k++)
		if (fdc[k].rc)
			log_warn("VM %s: remove-fd: %s", v->spec.name,
				 fdc[k].reply);
	return all;
}

/* ivshmem's server protocol (QEMU's docs/specs/ivshmem-spec): little-
 * endian int64 messages — the protocol version (0), the VM's peer id,
 * then -1 with the shared memory's descriptor. QEMU reads them when the
 * device is realized (device_add): they wait in the socket. */
static int ivshmem_serve(int sock, int memfd)
{
	int64_t msg[3] = { 0, 0, -1 };
	for (int k = 0; k < 3; k++) {
		struct iovec iov = { &msg[k], sizeof(msg[k]) };
		ssize_t n = fdpass_send(sock, &iov, 1, &memfd, k == 2, 0);
		if (n != (ssize_t)sizeof(msg[k]))
			return n < 0 ? (int)n : -EIO;
	}
	return 0;
}

/* The hot-plug of channel c's sections, as two pipelined batches:
 *
 * 1. the descriptors: a section the VM writes — the agent's end of a
 *    socketpair (getfd), a chardev on it (chardev-add), and the writable
 *    memfd sent through the socket as ivshmem's server would (QEMU maps
 *    it itself: no path to open); a section it may only read — the
 *    read-only re-open (add-fd, into a fdset of its own), its memfd's
 *    mode letting QEMU's group read it and nobody but the agent write;
 *    — and the VM's doorbell for its wake port (vmbell.c), into a fdset;
 * 2. the read-only sections' memory-backend-file (readonly=on) on QEMU's
 *    own /proc/self/fd/N, then every device back to back (ivshmem-
 *    doorbell on the chardev, ivshmem-plain on the backend), so the
 *    guest's ACPI hot-plug finds them in one scan; then the wake port (a
 *    pipe chardev on that fdset, the fdset removed, a virtserialport). */
int vmplug_add(struct vm_part *v, struct vm_chan *c, struct cm_chan *ch,
		int side, struct parley_err *err)
{
	enum { N = PARLEY_VMCTL_DEVS_MAX, W = 2 * N + 3 };
	static char json[W][400];
	struct qmp_cmd a[W], b[W];
	int sv[N][2], qfd[N], wake_fdset = -1;
	unsigned na = 0, nb = 0, ia[W], ib[W], wa = W, wb = W;
	gid_t g = v->m->host.qemu_gid;
	int rc = 0;
	for (unsigned i = 0; i < c->nsec; i++) {
		sv[i][0] = sv[i][1] = -1;
		c->obj_gone[i] = true;  /* nothing to delete yet */
	}
	/* Section 0, the header, is never plugged: the OPEN reply carries
	 * its copy (it is written once, before any end maps it). */
	for (unsigned i = 1; i < c->nsec; i++) {
		char fdn[48], chr[48];
		if (ch->sec_writer[i] == side) {
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       sv[i]) < 0) {
				rc = perr(err, -errno, "socketpair: %s",
					  strerror(errno));
				break;
			}
			vmplug_qid(fdn, sizeof(fdn), 'f', v, c, i);
			vmplug_qid(chr, sizeof(chr), 'c', v, c, i);
			snprintf(json[na], sizeof(json[na]), "{\"execute\":"
				 "\"getfd\",\"arguments\":{\"fdname\":\"%s\"}}",
				 fdn);
			ia[na] = i;
			a[na] = (struct qmp_cmd){ json[na], sv[i][1], 0, "" };
			na++;
			snprintf(json[na], sizeof(json[na]), "{\"execute\":"
				 "\"chardev-add\",\"arguments\":{\"id\":\"%s\","
				 "\"backend\":{\"type\":\"socket\",\"data\":"
				 "{\"addr\":{\"type\":\"fd\",\"data\":{\"str\":"
				 "\"%s\"}},\"server\":false}}}}", chr, fdn);
			ia[na] = i;
			a[na] = (struct qmp_cmd){ json[na], -1, 0, "" };
			na++;
		} else {
			int ro = ch->mem_ro[i];
			if (g != (gid_t)-1 && (fchown(ro, (uid_t)-1, g) < 0 ||
					       fchmod(ro, 0440) < 0)) {
				rc = perr(err, -errno, "section for QEMU: %s",
					  strerror(errno));
				break;
			}
			/* opaque: the name an adopting agent finds it by */
			vmplug_qid(fdn, sizeof(fdn), 'f', v, c, i);
			snprintf(json[na], sizeof(json[na]), "{\"execute\":"
				 "\"add-fd\",\"arguments\":{\"opaque\":\"%s\"}}",
				 fdn);
			ia[na] = i;
			a[na] = (struct qmp_cmd){ json[na], ro, 0, "" };
			na++;
		}
	}
	/* the wake port's descriptor: the VM's doorbell (vmbell.c) */
	if (!rc && c->bell_mine >= 0) {
		char fdn[48];
		vmplug_qid(fdn, sizeof(fdn), 'f', v, c, 0);
		snprintf(json[na], sizeof(json[na]), "{\"execute\":\"add-fd\","
			 "\"arguments\":{\"opaque\":\"%s\"}}", fdn);
		wa = na;
		a[na] = (struct qmp_cmd){ json[na], c->bell_mine, 0, "" };
		na++;
	}
	uint64_t t0 = vm_now_ns();
	bool sent = false;
	if (!rc)
		sent = (rc = vm_mon_run(v, a, na, err)) == 0;
	if (sent && wa < W && (a[wa].rc || qmp_int(a[wa].reply, "\"fdset-id\":",
						      &wake_fdset)))
		wake_fdset = -1; /* no wake port: NOTIFY and WAKE */
	c->wake_fdset = wake_fdset;
	for (unsigned i = 0; i < c->nsec; i++)
		if (sv[i][1] >= 0)
			close(sv[i][1]);
	/* What QEMU now holds, for the clean-up whatever happens next. */
	for (unsigned k = 0; sent && k < na; k++) {
		if (k == wa)
			continue;
		unsigned i = ia[k];
		bool rw = sv[i][0] >= 0 || c->srv[i] >= 0;
		if (a[k].rc) {
			if (!rc)
				rc = perr(err, a[k].rc, "VM %s: %.60s: %s",
					  v->spec.name, a[k].json, a[k].reply);
		} else if (rw && strstr(a[k].json, "chardev-add")) {
			c->srv[i] = sv[i][0];
			sv[i][0] = -1;
			c->obj_gone[i] = false;
		} else if (!rw && (qmp_int(a[k].reply, "\"fd\":", &qfd[i]) ||
				   qmp_int(a[k].reply, "\"fdset-id\":",
					    &c->fdset[i]))) {
			if (!rc)
				rc = perr(err, -EPROTO, "VM %s: add-fd answered "
					  "%.100s", v->spec.name, a[k].reply);
		}
	}
	for (unsigned i = 0; i < c->nsec; i++) {
		if (sv[i][0] >= 0 && sent) {
			/* getfd without its chardev: QEMU keeps the name */
			char fdn[48], cmd[160];
			vmplug_qid(fdn, sizeof(fdn), 'f', v, c, i);
			snprintf(cmd, sizeof(cmd), "{\"execute\":\"closefd\","
				 "\"arguments\":{\"fdname\":\"%s\"}}", fdn);
			vm_mon_one(v, cmd, &(struct parley_err){ 0 });
		}
		if (sv[i][0] >= 0)
			close(sv[i][0]);
	}
	v->m->plug_backends_ns_last = vm_now_ns() - t0;
	for (unsigned i = 0; i < c->nsec && !rc; i++)
		if (c->srv[i] >= 0 && (rc = ivshmem_serve(c->srv[i], ch->mem[i])))
			perr(err, rc, "ivshmem socket: %s", strerror(-rc));
	if (rc)
		return rc;
	for (unsigned i = 1; i < c->nsec; i++) {
		char mem[48];
		if (c->srv[i] >= 0)
			continue;
		vmplug_qid(mem, sizeof(mem), 'm', v, c, i);
		snprintf(json[nb], sizeof(json[nb]), "{\"execute\":\"object-add\","
			 "\"arguments\":{\"qom-type\":\"memory-backend-file\","
			 "\"id\":\"%s\",\"mem-path\":\"/proc/self/fd/%d\","
			 "\"size\":%llu,\"share\":true,\"readonly\":true}}", mem,
			 qfd[i], (unsigned long long)ch->sec_size[i]);
		ib[nb] = i;
		b[nb] = (struct qmp_cmd){ json[nb], -1, 0, "" };
		nb++;
	}
	for (unsigned i = 1; i < c->nsec; i++) {
		char id[48], be[48];
		bool rw = c->srv[i] >= 0;
		vmplug_qid(id, sizeof(id), 'd', v, c, i);
		vmplug_qid(be, sizeof(be), rw ? 'c' : 'm', v, c, i);
		snprintf(json[nb], sizeof(json[nb]), "{\"execute\":\"device_add\","
			 "\"arguments\":{\"driver\":\"%s\",\"id\":\"%s\",\"%s\":"
			 "\"%s\",\"bus\":\"pci.0\",\"addr\":\"0x%x\"}}",
			 rw ? "ivshmem-doorbell" : "ivshmem-plain", id,
			 rw ? "chardev" : "memdev", be, c->slot[i]);
		ib[nb] = N + i;
		b[nb] = (struct qmp_cmd){ json[nb], -1, 0, "" };
		nb++;
	}
	if (wake_fdset >= 0) {
		/* the wake port: a pipe chardev on the fdset (its own copy:
		 * the fdset goes at once), a virtio-serial port on it */
		char chr[48], port[48];
		vmplug_qid(chr, sizeof(chr), 'w', v, c, 0);
		vmplug_qid(port, sizeof(port), 'p', v, c, 0);
		snprintf(c->wake, sizeof(c->wake), PARLEY_VMCTL_WAKE_PREFIX
			 "%d.%u", v->m->nonce, c->handle);
		wb = nb;
		snprintf(json[nb], sizeof(json[nb]), "{\"execute\":\"chardev-add\","
			 "\"arguments\":{\"id\":\"%s\",\"backend\":{\"type\":"
			 "\"pipe\",\"data\":{\"device\":\"/dev/fdset/%d\"}}}}",
			 chr, wake_fdset);
		b[nb] = (struct qmp_cmd){ json[nb], -1, 0, "" };
		nb++;
		vm_json_remove_fd(json[nb], sizeof(json[nb]), wake_fdset);
		b[nb] = (struct qmp_cmd){ json[nb], -1, 0, "" };
		nb++;
		snprintf(json[nb], sizeof(json[nb]), "{\"execute\":\"device_add\","
			 "\"arguments\":{\"driver\":\"virtserialport\",\"id\":"
			 "\"%s\",\"bus\":\"" VMPLUG_SERIAL_BUS "\",\"chardev\":"
			 "\"%s\",\"name\":\"%s\"}}", port, chr, c->wake);
		b[nb] = (struct qmp_cmd){ json[nb], -1, 0, "" };
		nb++;
	}
	if ((rc = vm_mon_run(v, b, nb, err)))
		return rc;
	if (wb < W) {
		if (b[wb + 1].rc == 0)
			c->wake_fdset = -1;
		c->wake_chr = b[wb].rc == 0;
		c->wake_port = b[wb + 2].rc == 0;
		if (!c->wake_port)
			log_warn("VM %s: wake port: %s", v->spec.name,
				 b[wb].rc ? b[wb].reply : b[wb + 2].reply);
		nb = wb; /* not section devices */
	}
	for (unsigned k = 0; k < nb; k++) {
		unsigned i = ib[k] % N;
		if (!b[k].rc && ib[k] < N)
			c->obj_gone[i] = false;     /* a backend to delete */
		else if (!b[k].rc)
			c->devs |= 1u << i;
		else if (!rc)
			rc = perr(err, b[k].rc, "VM %s: %.60s: %s", v->spec.name,
				  b[k].json, b[k].reply);
	}
	return rc;
}

/* A failed plug: the descriptors QEMU got into fdsets for backends that
 * were never made (vmplug_backends_gone removes the others with their backend). */
void vmplug_undo(struct vm_part *v, struct vm_chan *c)
{
	if (c->wake_fdset >= 0) {
		char cmd[128];
		vm_json_remove_fd(cmd, sizeof(cmd), c->wake_fdset);
		vm_mon_one(v, cmd, &(struct parley_err){ 0 });
		c->wake_fdset = -1;
	}
	for (unsigned i = 0; i < c->nsec; i++) {
		char cmd[128];
		if (c->srv[i] >= 0 || c->fdset[i] < 0 || !c->obj_gone[i])
			continue;
		vm_json_remove_fd(cmd, sizeof(cmd), c->fdset[i]);
		vm_mon_one(v, cmd, &(struct parley_err){ 0 });
		c->fdset[i] = -1;
	}
}
