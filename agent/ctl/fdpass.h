/*
 * Bytes and descriptors over a unix socket in one sendmsg (SCM_RIGHTS):
 * the one place that builds the control message, for the agent's control
 * protocol (ctl.c), the hand-over (update_wire.c) and QEMU's monitor and
 * ivshmem sockets (agent/vm).
 */
#ifndef PARLEY_AGENT_CTL_FDPASS_H
#define PARLEY_AGENT_CTL_FDPASS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* The most descriptors one message carries (the kernel's SCM_MAX_FD is
 * 253). */
#define FDPASS_MAX 253

/* sendmsg of iov[0..niov) with nfds descriptors (none: nfds 0), flags
 * ORed with MSG_NOSIGNAL, retried on EINTR: the bytes sent, or -errno
 * (-EINVAL for more than FDPASS_MAX). A short send is the caller's to
 * judge. */
ssize_t fdpass_send(int sock, const struct iovec *iov, unsigned niov,
		    const int *fds, unsigned nfds, int flags);

#endif
