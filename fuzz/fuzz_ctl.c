/*
 * libFuzzer target for the agent <-> vmm control protocol: any bytes go as
 * one SOCK_SEQPACKET packet to ctl_recv, which must refuse or accept them
 * without reading or writing out of bounds; what it accepts must have the
 * size its type defines, and the packet must be consumed whole. The same
 * packet then goes to the typed reader ctl_read, as from the vmm and as
 * from the agent: what it accepts must be of that side and keep the field
 * rules ctl.h lists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/ctl/ctl.h"
#include "agent/ctl/stop.h"

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

static bool nul_in(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

/* The rules ctl_read promises for what it accepted. */
static void check_typed(const struct ctl_msg *m, enum ctl_from from)
{
	if (m->nfds || (m->type != CTL_VCPU_STATE &&
			(from == CTL_FROM_VMM) != (m->type >= CTL_READY)))
		abort();
	switch (m->type) {
	case CTL_FINISHED:
		if (m->u.finished.reason >= VMX_STOP_MAX_ ||
		    !nul_in(m->u.finished.detail, sizeof(m->u.finished.detail)))
			abort();
		break;
	case CTL_OPEN_REQ:
		if (!m->u.open_req.name[0] ||
		    !nul_in(m->u.open_req.name, sizeof(m->u.open_req.name)) ||
		    !nul_in(m->u.open_req.target,
			    sizeof(m->u.open_req.target)) ||
		    m->u.open_req.op > CTL_OP_MAX_ ||
		    (m->u.open_req.target[0] != 0) !=
			    (m->u.open_req.op == CTL_OP_SVC_CALL))
			abort();
		break;
	case CTL_DIRTY:
		if (m->u.dirty.npages > 8ull * CTL_DIRTY_BYTES ||
		    m->u.dirty.last > 1)
			abort();
		break;
	case CTL_REFUSED:
		if (m->u.refused.code >= 0)
			abort();
		break;
	default:
		break;
	}
}

static void typed(const uint8_t *data, size_t size)
{
	static struct ctl_msg m;
	const enum ctl_from side[2] = { CTL_FROM_VMM, CTL_FROM_AGENT };
	for (int i = 0; i < 2; i++) {
		if (send(sv[0], data, size, MSG_DONTWAIT) != (ssize_t)size)
			abort();
		if (ctl_read(sv[1], side[i], &m) == 0)
			check_typed(&m, side[i]);
		check_drained();
	}
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
	typed(data, size);
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
