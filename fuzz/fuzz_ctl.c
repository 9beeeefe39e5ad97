/*
 * libFuzzer target for the agent <-> vmm control protocol: any bytes go as
 * one SOCK_SEQPACKET packet to ctl_recv, which must refuse or accept them
 * without reading or writing out of bounds; what it accepts must have the
 * size its type defines, and the packet must be consumed whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/ctl/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sv[2] = { -1, -1 };
static uint8_t *buf; /* exactly CTL_MSG_MAX bytes, so ASan sees overruns */

static void setup(void)
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0)
		abort();
	buf = malloc(CTL_MSG_MAX);
	if (!buf)
		abort();
}

/* An accepted message must be one its type allows. */
static void check_accepted(uint32_t type, int n)
{
	long want = ctl_payload_size(type);
	size_t fixed = offsetof(struct ctl_console, buf);

	if (n < 0 || (size_t)n > CTL_PAYLOAD_MAX)
		abort();
	if (want >= 0) {
		if (n != want)
			abort();
		return;
	}
	if (type != CTL_CONSOLE || (size_t)n < fixed)
		abort();
	uint32_t clen;
	memcpy(&clen, buf + offsetof(struct ctl_console, len), sizeof(clen));
	if (clen > PARLEY_CONSOLE_MAX || fixed + clen != (size_t)n)
		abort();
}

/* Nothing of the packet may be left behind for the next read. */
static void check_drained(void)
{
	uint32_t type;

	if (ctl_recv(sv[1], &type, buf, CTL_MSG_MAX) != -EAGAIN)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t type = 0;
	int n;

	if (sv[0] < 0)
		setup();
	if (send(sv[0], data, size, MSG_DONTWAIT) != (ssize_t)size)
		return 0; /* larger than the socket takes: not a packet */
	n = ctl_recv(sv[1], &type, buf, CTL_MSG_MAX);
	if (n == -EAGAIN)
		abort();
	check_drained();
	if (n < 0)
		return 0;
	check_accepted(type, n);
	/* The same packet with a buffer one byte too small is refused. */
	if (n > 0) {
		if (send(sv[0], data, size, MSG_DONTWAIT) != (ssize_t)size)
			abort();
		if (ctl_recv(sv[1], &type, buf, (size_t)n - 1) != -EPROTO)
			abort();
		check_drained();
	}
	return 0;
}
