/* Descriptors over a unix socket (fdpass.h). */
#include "agent/ctl/fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

ssize_t fdpass_send(int sock, const struct iovec *iov, unsigned niov,
		    const int *fds, unsigned nfds, int flags)
{
	_Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * FDPASS_MAX)];
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = niov };
	if (nfds > FDPASS_MAX)
		return -EINVAL;
	if (nfds) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &m, MSG_NOSIGNAL | flags);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}
