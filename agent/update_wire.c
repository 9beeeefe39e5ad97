/*
 * The hand-over socket's framing (agent/update_commit.h): a type byte and
 * a small payload per SEQPACKET message, descriptors alongside.
 */
#include "agent/update_commit.h"
#include "agent/ctl/fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int upd_send(int sock, uint8_t type, const void *payload, size_t len,
	     const int *fds, unsigned nfds)
{
	uint8_t buf[1 + UPD_MSG_MAX];
	if (len > UPD_MSG_MAX || nfds > UPD_FDS_PER_MSG)
		return -EMSGSIZE;
	buf[0] = type;
	if (len)
		memcpy(buf + 1, payload, len);
	struct iovec iov = { buf, 1 + len };
	ssize_t n = fdpass_send(sock, &iov, 1, fds, nfds, 0);
	return n < 0 ? (int)n : 0;
}

int upd_recv(int sock, uint8_t *type, void *buf, size_t cap, int *fds,
	     unsigned maxfds, unsigned *nfds)
{
	uint8_t raw[1 + UPD_MSG_MAX + 1];
	_Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) *
						      UPD_FDS_PER_MSG)];
	struct iovec iov = { raw, sizeof(raw) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	ssize_t n;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	unsigned got = 0;
	int rc = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (got < maxfds)
				fds[got++] = fd;
			else {
				close(fd);
				rc = -EPROTO;
			}
		}
	}
	if (n == 0) {
		*type = 0;
	} else if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
		   (size_t)n - 1 > cap) {
		rc = -EPROTO;
	} else {
		*type = raw[0];
		memcpy(buf, raw + 1, (size_t)n - 1);
	}
	if (rc < 0) {
		for (unsigned i = 0; i < got; i++)
			close(fds[i]);
		return rc;
	}
	*nfds = got;
	return n == 0 ? 0 : (int)(n - 1);
}
