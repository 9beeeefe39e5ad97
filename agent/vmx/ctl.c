#include "agent/vmx/ctl.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

long ctl_payload_size(uint32_t type)
{
	switch (type) {
	case CTL_LAUNCH:
		return sizeof(struct ctl_launch);
	case CTL_VCPU_STATE:
		return sizeof(struct ctl_vcpu_state);
	case CTL_FINISHED:
		return sizeof(struct ctl_finished);
	case CTL_REFUSED:
		return sizeof(struct ctl_refused);
	case CTL_PAUSE:
	case CTL_RESUME:
	case CTL_GET_STATE:
	case CTL_STOP:
	case CTL_READY:
	case CTL_PAUSED:
	case CTL_RESUMED:
	case CTL_STATE_DONE:
		return 0;
	case CTL_CONSOLE:
		return -2;
	default:
		return -1;
	}
}

int ctl_send(int sock, uint32_t type, const void *payload, uint32_t len)
{
	struct ctl_hdr h = { .type = type, .len = len };
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	for (;;) {
		ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		return (size_t)n == sizeof(h) + len ? 0 : -EIO;
	}
}

static int ctl_check(const struct ctl_hdr *h, size_t got)
{
	if (got < sizeof(*h) || got - sizeof(*h) != h->len)
		return -EPROTO;
	long want = ctl_payload_size(h->type);
	if (want == -1)
		return -EPROTO;
	if (want == -2) {
		size_t fixed = offsetof(struct ctl_console, buf);
		uint32_t clen = 0;
		if (h->len >= fixed)
			memcpy(&clen, (const char *)h + sizeof(*h) +
					      offsetof(struct ctl_console, len),
			       sizeof(clen));
		if (h->len < fixed || clen > PARLEY_CONSOLE_MAX ||
		    h->len != fixed + clen)
			return -EPROTO;
		return 0;
	}
	return h->len == (uint32_t)want ? 0 : -EPROTO;
}

int ctl_recv(int sock, uint32_t *type, void *buf, size_t cap)
{
	_Alignas(8) char raw[CTL_MSG_MAX + 1];
	ssize_t n;
	do
		n = recv(sock, raw, sizeof(raw), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EPIPE;
	if ((size_t)n > CTL_MSG_MAX)
		return -EPROTO; /* truncated: longer than any message */
	const struct ctl_hdr *h = (const void *)raw;
	int rc = ctl_check(h, (size_t)n);
	if (rc < 0)
		return rc;
	if (h->len > cap)
		return -EPROTO;
	memcpy(buf, raw + sizeof(*h), h->len);
	*type = h->type;
	return (int)h->len;
}
