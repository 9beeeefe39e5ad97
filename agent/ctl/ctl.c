#include "agent/ctl/ctl.h"
#include "agent/ctl/fdpass.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
	case CTL_OPEN_REQ:
		return sizeof(struct ctl_open_req);
	case CTL_OPEN_REPLY:
		return sizeof(struct ctl_open_reply);
	case CTL_UPDATE_REQ:
		return sizeof(struct ctl_update_req);
	case CTL_UPDATE_REPLY:
		return sizeof(struct ctl_update_reply);
	case CTL_MAP:
		return sizeof(struct ctl_map);
	case CTL_DISK:
		return sizeof(struct ctl_disk);
	case CTL_PLUGIN:
		return sizeof(struct ctl_plugin);
	case CTL_DEVICE_STATE:
		return sizeof(struct ctl_device_state);
	case CTL_DEVICE_SAVED:
	case CTL_DEVICE_LOAD:
		return sizeof(struct ctl_device_blob);
	case CTL_UNMAP:
	case CTL_PEER_GONE:
	case CTL_MAPPED:
	case CTL_UNMAPPED:
	case CTL_CLOSED:
		return sizeof(struct ctl_chan_ref);
	case CTL_DIRTY:
		return sizeof(struct ctl_dirty);
	case CTL_PING:
	case CTL_PONG:
		return sizeof(struct ctl_ping);
	case CTL_DIRTY_REQ:
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

/* Descriptors a message must carry: CTL_MAP two doorbells and the memory
 * fds its payload counts (payload size already checked); -1 if the count
 * itself is out of range. */
static int fds_of(const struct ctl_hdr *h)
{
	if (h->type == CTL_DISK || h->type == CTL_PLUGIN)
		return 1;
	if (h->type != CTL_MAP)
		return 0;
	struct ctl_map m;
	memcpy(&m, h + 1, sizeof(m));
	if (m.nmem < 1 || m.nmem > CTL_MAP_MEMS_MAX)
		return -1;
	return 2 + (int)m.nmem;
}

int ctl_send(int sock, uint32_t type, const void *payload, uint32_t len)
{
	return ctl_send_fds(sock, type, payload, len, NULL, 0);
}

static int send_fds(int sock, uint32_t type, const void *payload,
		    uint32_t len, const int *fds, unsigned nfds, int flags);

int ctl_send_fds(int sock, uint32_t type, const void *payload, uint32_t len,
		 const int *fds, unsigned nfds)
{
	return send_fds(sock, type, payload, len, fds, nfds, 0);
}

int ctl_post_fds(int sock, uint32_t type, const void *payload, uint32_t len,
		 const int *fds, unsigned nfds)
{
	return send_fds(sock, type, payload, len, fds, nfds, MSG_DONTWAIT);
}

static int send_fds(int sock, uint32_t type, const void *payload,
		    uint32_t len, const int *fds, unsigned nfds, int flags)
{
	struct ctl_hdr h = { .type = type, .len = len };
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	if (nfds > CTL_FDS_MAX)
		return -EINVAL;
	ssize_t n = fdpass_send(sock, iov, len ? 2 : 1, fds, nfds, flags);
	if (n < 0)
		return (int)n;
	return (size_t)n == sizeof(h) + len ? 0 : -EIO;
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

/* A read of 0 bytes is either the end of the stream or an empty record a
 * live peer sent (SOCK_SEQPACKET allows those); only the first is an end. */
static int peer_gone(int sock)
{
	struct pollfd pf = { .fd = sock, .events = POLLIN | POLLRDHUP };
	return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLRDHUP));
}

/* Take the descriptors out of a received message; returns how many. */
static unsigned take_fds(struct msghdr *m, int *fds)
{
	unsigned n = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (n < CTL_FDS_MAX)
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

int ctl_recv_fds(int sock, uint32_t *type, void *buf, size_t cap, int *fds,
		 unsigned *nfds)
{
	_Alignas(8) char raw[CTL_MSG_MAX + 1];
	_Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * CTL_FDS_MAX)];
	struct iovec iov = { .iov_base = raw, .iov_len = sizeof(raw) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	int got[CTL_FDS_MAX];
	ssize_t n;
	int resets = 0;
	/* ECONNRESET: the peer closed with our messages unread. The error is
	 * reported once, ahead of what the peer had sent before it closed
	 * (its last words, CTL_FINISHED among them): read on. */
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && (errno == EINTR || (errno == ECONNRESET && !resets++)));
	if (n < 0)
		return -errno;
	unsigned ngot = take_fds(&m, got);
	int rc = 0;
	if (n == 0)
		rc = peer_gone(sock) ? -EPIPE : -EPROTO;
	else if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n > CTL_MSG_MAX)
		rc = -EPROTO; /* longer than any message */
	const struct ctl_hdr *h = (const void *)raw;
	if (rc == 0)
		rc = ctl_check(h, (size_t)n);
	if (rc == 0 && (h->len > cap || (int)ngot != fds_of(h) ||
			(ngot && !fds)))
		rc = -EPROTO;
	if (rc < 0) {
		close_fds(got, ngot);
		return rc;
	}
	memcpy(buf, raw + sizeof(*h), h->len);
	*type = h->type;
	if (nfds)
		*nfds = ngot;
	if (ngot)
		memcpy(fds, got, ngot * sizeof(int));
	return (int)h->len;
}

int ctl_recv(int sock, uint32_t *type, void *buf, size_t cap)
{
	return ctl_recv_fds(sock, type, buf, cap, NULL, NULL);
}

/* ---- typed reading ------------------------------------------------------ */

const char *ctl_type_name(uint32_t type)
{
	static const char *const agent[] = {
		NULL, "CTL_LAUNCH", "CTL_VCPU_STATE", "CTL_PAUSE", "CTL_RESUME",
		"CTL_GET_STATE", "CTL_STOP", "CTL_OPEN_REPLY", "CTL_MAP",
		"CTL_UNMAP", "CTL_DIRTY_REQ", "CTL_PEER_GONE",
		[CTL_DISK] = "CTL_DISK",
		[CTL_PLUGIN] = "CTL_PLUGIN",
		[CTL_DEVICE_LOAD] = "CTL_DEVICE_LOAD",
		[CTL_UPDATE_REPLY] = "CTL_UPDATE_REPLY",
	};
	static const char *const vmm[] = {
		"CTL_READY", "CTL_CONSOLE", "CTL_PAUSED", "CTL_RESUMED",
		"CTL_STATE_DONE", "CTL_FINISHED", "CTL_REFUSED", "CTL_OPEN_REQ",
		"CTL_DIRTY", "CTL_MAPPED", "CTL_UNMAPPED", "CTL_CLOSED",
		[CTL_DEVICE_STATE - CTL_READY] = "CTL_DEVICE_STATE",
		[CTL_DEVICE_SAVED - CTL_READY] = "CTL_DEVICE_SAVED",
		[CTL_UPDATE_REQ - CTL_READY] = "CTL_UPDATE_REQ",
	};
	if (type < sizeof(agent) / sizeof(agent[0]) && agent[type])
		return agent[type];
	if (type == CTL_PING)
		return "CTL_PING";
	if (type == CTL_PONG)
		return "CTL_PONG";
	if (type >= CTL_READY && type - CTL_READY < sizeof(vmm) / sizeof(vmm[0]) &&
	    vmm[type - CTL_READY])
		return vmm[type - CTL_READY];
	return "?";
}

static bool sent_by(uint32_t type, enum ctl_from from)
{
	if (type == CTL_VCPU_STATE)
		return true;
	return from == CTL_FROM_VMM ? type >= CTL_READY : type < CTL_READY;
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

static bool map_ok(const struct ctl_map *m)
{
	if (m->nseg < 1 || m->nseg > CTL_MAP_SEGS_MAX || m->nmem < 1 ||
	    m->nmem > CTL_MAP_MEMS_MAX || m->reserved)
		return false;
	for (uint32_t i = 0; i < m->nseg; i++)
		if (m->seg[i].mem >= m->nmem || m->seg[i].readonly > 1)
			return false;
	return true;
}

static bool update_req_ok(const struct ctl_update_req *u)
{
	if (u->op > CTL_UPD_STATUS)
		return false;
	if (u->op == CTL_UPD_WRITE)
		return u->len >= 1 && u->len <= PARLEY_UPDATE_CHUNK_MAX &&
		       u->gpa + u->len > u->gpa;
	return u->gpa == 0 && u->len == 0 &&
	       (u->op == CTL_UPD_BEGIN || u->arg == 0);
}

static bool disk_ok(const struct ctl_disk *d)
{
	uint8_t any = 0;
	for (size_t i = 0; i < sizeof(d->key); i++)
		any |= d->key[i];
	return d->index < PARLEY_DISKS_MAX &&
	       !(d->flags & ~(CTL_DISK_READ_ONLY | CTL_DISK_XTS)) &&
	       (d->sector_size == 512 || d->sector_size == 4096) &&
	       d->sectors >= 1 && d->sectors <= (1ull << 63) / d->sector_size &&
	       d->name[0] && memchr(d->name, 0, sizeof(d->name)) &&
	       d->reserved == 0 && ((d->flags & CTL_DISK_XTS) || any == 0);
}

/* The per-type rules ctl.h lists; the size is already right. */
static bool fields_ok(const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_FINISHED:
		return m->u.finished.reason < VMX_STOP_MAX_ &&
		       terminated(m->u.finished.detail,
				  sizeof(m->u.finished.detail));
	case CTL_REFUSED:
		return m->u.refused.type < CTL_READY && m->u.refused.code < 0;
	case CTL_OPEN_REQ:
		return m->u.open_req.op <= CTL_OP_MAX_ &&
		       m->u.open_req.name[0] &&
		       terminated(m->u.open_req.name,
				  sizeof(m->u.open_req.name)) &&
		       terminated(m->u.open_req.target,
				  sizeof(m->u.open_req.target)) &&
		       (m->u.open_req.target[0] != 0) ==
			       (m->u.open_req.op == CTL_OP_SVC_CALL);
	case CTL_DIRTY:
		return m->u.dirty.npages <= 8ull * CTL_DIRTY_BYTES &&
		       m->u.dirty.last <= 1 && m->u.dirty.reserved == 0;
	case CTL_MAP:
		return map_ok(&m->u.map);
	case CTL_DISK:
		return m->nfds == 1 && disk_ok(&m->u.disk);
	case CTL_PLUGIN:
		return m->nfds == 1 && m->u.plugin.index < CTL_PLUGINS_MAX &&
		       m->u.plugin.plugin_class >= 1 &&
		       m->u.plugin.plugin_class <= 3 && m->u.plugin.name[0] &&
		       terminated(m->u.plugin.name, sizeof(m->u.plugin.name));
	case CTL_DEVICE_SAVED:
	case CTL_DEVICE_LOAD: {
		const struct ctl_device_blob *b = &m->u.device_blob;
		return b->device[0] && terminated(b->device, sizeof(b->device)) &&
		       b->plugin[0] && terminated(b->plugin, sizeof(b->plugin)) &&
		       b->len <= CTL_DEVICE_STATE_MAX;
	}
	case CTL_DEVICE_STATE: {
		const struct ctl_device_state *d = &m->u.device_state;
		return d->device[0] && terminated(d->device, sizeof(d->device)) &&
		       d->plugin[0] && terminated(d->plugin, sizeof(d->plugin)) &&
		       d->state >= 1 && d->state <= 8 && d->reserved == 0 &&
		       terminated(d->detail, sizeof(d->detail));
	}
	case CTL_OPEN_REPLY:
		return terminated(m->u.open_reply.detail,
				  sizeof(m->u.open_reply.detail));
	case CTL_UPDATE_REQ:
		return update_req_ok(&m->u.update_req);
	case CTL_UPDATE_REPLY:
		return m->u.update_reply.state <= PARLEY_UPDATE_FAILED &&
		       m->u.update_reply.reserved == 0 &&
		       terminated(m->u.update_reply.detail,
				  sizeof(m->u.update_reply.detail));
	case CTL_PING:
	case CTL_PONG:
		return m->u.ping.reserved == 0;
	default:
		return true;
	}
}

/* Free text a vmm sends (why it stopped, a device's state) reaches the
 * agent's log, a terminal and the audit: anything but printable ASCII
 * becomes '?' here, at the one door, so that no reader of it can be
 * handed an escape sequence or a forged line. */
static void clean_text(char *s, size_t cap)
{
	for (size_t i = 0; i < cap && s[i]; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			s[i] = '?';
}

static void clean_fields(struct ctl_msg *m)
{
	if (m->type == CTL_FINISHED)
		clean_text(m->u.finished.detail, sizeof(m->u.finished.detail));
	else if (m->type == CTL_DEVICE_STATE)
		clean_text(m->u.device_state.detail,
			   sizeof(m->u.device_state.detail));
}

int ctl_read(int sock, enum ctl_from from, struct ctl_msg *m)
{
	m->nfds = 0;
	int n = ctl_recv_fds(sock, &m->type, m->u.raw, sizeof(m->u), m->fds,
			     &m->nfds);
	if (n < 0)
		return n;
	m->len = (uint32_t)n;
	/* Zero what the payload did not fill (console), so that no stale
	 * byte of an earlier message is ever read as this one's. */
	memset(m->u.raw + n, 0, sizeof(m->u) - (size_t)n);
	if (sent_by(m->type, from) && fields_ok(m)) {
		clean_fields(m);
		return 0;
	}
	close_fds(m->fds, m->nfds);
	m->nfds = 0;
	return -EPROTO;
}
