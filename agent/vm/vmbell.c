/* A VM channel end's doorbells without the agent (vmctl protocol 4;
 * vmmgr_int.h): the agent plumbs them at the open and cuts them at the
 * close or revocation, and is on neither path after that.
 *
 * - The guest rings its peer through the doorbell register of one of its
 *   own ivshmem-doorbell section devices: the agent, as that device's
 *   ivshmem server, hands QEMU the peer's doorbell (an eventfd) as peer
 *   1's only vector, so a ring is QEMU's (or, with ioeventfd under KVM,
 *   the kernel's) write of it.
 * - The peer rings the VM's doorbell, an eventfd QEMU reads through a
 *   `pipe` chardev on a descriptor the agent gave it (a fdset: QEMU never
 *   opens anything of the agent's by path) behind a virtio-serial port of
 *   the channel's, so the guest reads its wake-ups from that port.
 *
 * What QEMU could do with them, hostile: ring its own channel's peer (a
 * spurious wake-up, which any end can cause), swallow its own wake-ups,
 * or keep ringing a channel it lost — its peer's doorbell of a closed
 * channel, which no one waits on any more. */
#include "agent/vm/vmmgr_int.h"
#include "agent/ctl/fdpass.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* ivshmem's server protocol: an int64, with or without one descriptor. */
static int ivshmem_msg(int sock, int64_t msg, int fd)
{
	struct iovec iov = { &msg, sizeof(msg) };
	ssize_t n = fdpass_send(sock, &iov, 1, &fd, fd >= 0, 0);
	if (n != (ssize_t)sizeof(msg))
		return n < 0 ? (int)n : -EIO;
	return 0;
}

/* The section device that carries the ring: the first the VM writes. */
static int bell_section(const struct vm_chan *c)
{
	for (unsigned i = 1; i < c->nsec; i++)
		if (c->srv[i] >= 0 && (c->devs & (1u << i)))
			return (int)i;
	return -1;
}

int vmbell_add(struct vm_part *v, struct vm_chan *c, struct parley_err *err)
{
	c->bell_dev = PARLEY_VMCTL_NO_BELL;
	int sec = bell_section(c);
	if (!c->wake_port)
		return 0; /* no wake port (vmplug_add plugs it): NOTIFY, WAKE */
	/* A wake port without a bell device would leave two readers of the
	 * VM's doorbell, QEMU's chardev and the agent (NOTIFY/WAKE): the
	 * open fails instead (every end writes one section at least, its
	 * consumer's indices if nothing else, so this is a failed plug). */
	if (sec < 0)
		return perr(err, -EIO, "VM %s: a wake port but no section "
			    "device the VM writes", v->spec.name);
	int rc = ivshmem_msg(c->srv[sec], 1, c->bell_peer);
	if (rc)
		return perr(err, rc, "VM %s: the peer's doorbell to QEMU: %s",
			    v->spec.name, strerror(-rc));
	for (unsigned k = 0; k < c->ndev; k++)
		if (c->dev[k].section == (uint32_t)sec)
			c->bell_dev = k;
	return 0;
}
