/*
 * libFuzzer target for the Linux guest library's side of the VM control
 * protocol (guest/linux/libparley.c): the bytes the agent writes into the
 * VM's port, as libparley reads them — the guest trusts the agent no more
 * than it must. The input is what the port holds (then the host end shuts
 * its writing); the library is asked STATE, then OPEN, then STATE again
 * until it gives up. Every call must return (no crash, no over-read), an
 * OPEN it accepts must keep vmctl.h's rules, and mapping that reply's
 * devices in a sysfs with none of them must fail cleanly.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest/linux/libparley.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	/* the port's two ends; more than the send buffer takes is cut */
	if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       sv) < 0)
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);   /* nothing more: calls end, never wait */
	static struct pl_ctl c;
	memset(&c, 0, sizeof(c));
	c.fd = sv[0];
	c.timeout_ms = 0;
	struct parley_vmctl_handle q = { 1, 0 };
	struct parley_vmctl_status st;
	(void)pl_ctl_call(&c, PARLEY_VMCTL_STATE, &q, sizeof(q),
			  PARLEY_VMCTL_STATUS, &st, sizeof(st));
	static struct pl_chan ch;
	int rc = pl_chan_open(&c, "fuzz", &ch);
	if (rc == 0) {
		const struct parley_vmctl_open_reply *r = &ch.rep;
		if (r->status != 0 || r->ndev < 2 ||
		    r->ndev > PARLEY_VMCTL_DEVS_MAX - 1 || r->side > 1)
			abort();
		if (pl_chan_map(&ch, "/nonexistent-sysfs", 0) == 0)
			abort();   /* no device exists: nothing can map */
		for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++)
			if (ch.map[i])
				abort();
	} else if (rc > 0 && !memchr(ch.rep.detail, 0, sizeof(ch.rep.detail))) {
		abort();   /* a status handed back with an unterminated detail */
	}
	for (int k = 0; k < 64; k++)
		if (pl_ctl_call(&c, PARLEY_VMCTL_STATE, &q, sizeof(q),
				PARLEY_VMCTL_STATUS, &st, sizeof(st)))
			break;
	close(sv[0]);
	close(sv[1]);
	return 0;
}
