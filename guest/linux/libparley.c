/* libparley (libparley.h): the control port and the channel's devices. */
#include "libparley.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The port is non-blocking: virtio-serial blocks a write for as long as
 * the host end is not connected (an agent that closed the port, or is
 * restarting), so a write waits here, up to timeout_ms (< 0: no limit). */
static int write_all(int fd, const void *p, size_t n, int timeout_ms)
{
	int waited = 0;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { fd, POLLOUT, 0 };
			if (poll(&pfd, 1, 10) == 0 || (pfd.revents & POLLHUP)) {
				if (pfd.revents & POLLHUP)
					nanosleep(&(struct timespec){ 0, 10000000 },
						  NULL);
				waited += 10;
			}
			if (timeout_ms >= 0 && waited >= timeout_ms)
				return -ETIMEDOUT;
			continue;
		}
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

/* /sys/class/virtio-ports/vportNpM/name == want: /dev/vportNpM */
int pl_find_port(const char *want, char *out, size_t cap)
{
	char link[300];
	snprintf(link, sizeof(link), "/dev/virtio-ports/%s", want);
	if (access(link, F_OK) == 0) {
		snprintf(out, cap, "%s", link);
		return 0;
	}
	return pl_find_port_in("/sys", want, out, cap);
}

int pl_find_port_in(const char *sysfs, const char *want, char *out,
		    size_t cap)
{
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/class/virtio-ports", sysfs);
	DIR *d = opendir(dir);
	if (!d)
		return -ENOENT;
	struct dirent *e;
	int rc = -ENOENT;
	while (rc && (e = readdir(d))) {
		char p[640], name[64] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s/name", dir, e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		fclose(f);
		if (!strcmp(name, want)) {
			snprintf(out, cap, "/dev/%s", e->d_name);
			rc = 0;
		}
	}
	closedir(d);
	return rc;
}

int pl_ctl_open(struct pl_ctl *c, const char *path)
{
	char found[300];
	c->fd = -1;
	c->seq = 0;
	c->timeout_ms = 5000;
	c->ended_handle = 0;
	c->ended_status = 0;
	c->lost_wakes = 0;
	c->in_len = 0;
	if (!path) {
		int rc = pl_find_port(PARLEY_VMCTL_PORT, found, sizeof(found));
		if (rc)
			return rc;
		path = found;
	}
	c->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	/* Replies meant for an earlier opener that gave up (its agent was
	 * restarting) may still be queued: drop them, or they would answer
	 * our requests. */
	for (;;) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		char junk[512];
		if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLIN) ||
		    read(c->fd, junk, sizeof(junk)) <= 0)
			break;
	}
	/* No agent on the host end yet (one restarting, or taking over from
	 * one that left): wait for one (up to the reply's timeout) before
	 * saying HELLO, rather than write into a port nobody holds. */
	for (int waited = 0; !pl_ctl_connected(c); waited += 10) {
		if (waited >= c->timeout_ms) {
			close(c->fd);
			c->fd = -1;
			return -ENOTCONN;
		}
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	struct parley_vmctl_hello he = { PARLEY_VMCTL_VERSION, 0 }, back;
	int rc = pl_ctl_call(c, PARLEY_VMCTL_HELLO, &he, sizeof(he),
			     PARLEY_VMCTL_HELLO_REPLY, &back, sizeof(back));
	if (rc == 0 && back.version < 1)
		rc = -EPROTO;
	if (rc) {
		close(c->fd);
		c->fd = -1;
	}
	return rc;
}

int pl_ctl_connected(const struct pl_ctl *c)
{
	struct pollfd pfd = { c->fd, POLLOUT, 0 };
	return c->fd >= 0 && poll(&pfd, 1, 0) >= 0 && !(pfd.revents & POLLHUP);
}

void pl_ctl_close(struct pl_ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = 0;
}

/* A WAKE that is not (or no longer) waited for: a channel that ended is
 * remembered, so the next wait or call on its handle says so. */
static void note_wake(struct pl_ctl *c, const struct parley_vmctl_status *st)
{
	if (st->status < 0) {
		c->ended_handle = st->handle;
		c->ended_status = st->status;
	}
}

/* One frame from the agent, whole and checked: magic, version, an
 * agent-to-guest type and exactly its payload length (up to cap bytes
 * into pl). first_ms bounds the wait for its first byte (< 0: none);
 * once it began, the rest comes within c->timeout_ms or the stream is
 * lost (-ETIMEDOUT). While the agent is away (the port's host end
 * closed: POLLHUP) a call waits for it to come back; a wait (hup_ends)
 * returns -ENOTCONN at once, so the caller lets go of its channel before
 * a new agent unplugs the old devices. */
static int read_frame(struct pl_ctl *c, struct parley_vmctl_hdr *h, void *pl,
		      uint32_t cap, int first_ms, int hup_ends)
{
	int waited = 0;
	for (;;) {
		/* A whole frame buffered: check it, hand it out, keep the
		 * rest. A bad header loses the stream (nothing after it can
		 * be trusted to be a frame boundary). */
		if (c->in_len >= sizeof(*h)) {
			memcpy(h, c->in, sizeof(*h));
			if (h->magic != PARLEY_VMCTL_MAGIC ||
			    h->version != PARLEY_VMCTL_VERSION ||
			    h->type < 0x80 || !parley_vmctl_payload_len(h->type) ||
			    h->len != parley_vmctl_payload_len(h->type) ||
			    h->len > cap) {
				c->in_len = 0;
				return -EPROTO;
			}
			uint32_t whole = (uint32_t)sizeof(*h) + h->len;
			if (c->in_len >= whole) {
				memcpy(pl, c->in + sizeof(*h), h->len);
				memmove(c->in, c->in + whole, c->in_len - whole);
				c->in_len -= whole;
				return 0;
			}
		}
		/* The first byte within first_ms (< 0: no limit, looking
		 * every 100 ms); once a frame began, its rest within the
		 * reply time. */
		int limit = c->in_len ? c->timeout_ms : first_ms;
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		int pr = poll(&pfd, 1, limit < 0 ? 100 : 10);
		if (pr < 0 && errno != EINTR)
			return -errno;
		ssize_t r = 0;
		if (pr > 0 && (pfd.revents & POLLIN)) {
			r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
			if (r < 0 && errno != EINTR && errno != EAGAIN)
				return -errno;
		}
		if (r > 0) {
			c->in_len += (uint32_t)r;
			waited = 0;
			continue;
		}
		if (pr > 0 && (pfd.revents & POLLHUP) && hup_ends && !c->in_len)
			return -ENOTCONN;
		if (pr > 0 && (pfd.revents & POLLHUP))
			nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
		waited += limit < 0 ? 0 : 10;
		if (limit >= 0 && waited >= limit)
			return -ETIMEDOUT;
	}
}

int pl_ctl_call(struct pl_ctl *c, uint16_t type, const void *pl, uint32_t len,
		uint16_t want, void *reply, uint32_t want_len)
{
	uint8_t buf[sizeof(struct parley_vmctl_hdr) + PARLEY_VMCTL_PAYLOAD_MAX];
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      type, len, ++c->seq };
	if (len > PARLEY_VMCTL_PAYLOAD_MAX ||
	    want_len != parley_vmctl_payload_len(want))
		return -EINVAL;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), pl, len);
	int rc = write_all(c->fd, buf, sizeof(h) + len, c->timeout_ms);
	if (rc)
		return rc;
	/* The answer; WAKEs (unprompted) may come first. An agent that
	 * leaves meanwhile (the host end hangs up) never answers: no new
	 * agent answers what was asked of the one before (a hand-over's old
	 * agent stops reading a while before it exits), so that ends the
	 * wait now rather than at the timeout. */
	for (;;) {
		struct parley_vmctl_hdr r;
		if ((rc = read_frame(c, &r, buf, sizeof(buf) - sizeof(r),
				     c->timeout_ms, 1)))
			return rc;
		if (r.type == PARLEY_VMCTL_WAKE) {
			struct parley_vmctl_status st;
			memcpy(&st, buf, sizeof(st));
			note_wake(c, &st);
			continue;
		}
		if (r.type != want || r.seq != h.seq)
			return -EPROTO;
		memcpy(reply, buf, want_len);
		return 0;
	}
}

int pl_chan_open(struct pl_ctl *c, const char *name, struct pl_chan *ch)
{
	struct parley_vmctl_open o;
	memset(ch, 0, sizeof(*ch));
	ch->wake_fd = -1;
	memset(&o, 0, sizeof(o));
	if (!*name || strlen(name) >= sizeof(o.name))
		return -EINVAL;
	memcpy(o.name, name, strlen(name));
	int rc = pl_ctl_call(c, PARLEY_VMCTL_OPEN, &o, sizeof(o),
			     PARLEY_VMCTL_OPEN_REPLY, &ch->rep, sizeof(ch->rep));
	if (rc)
		return rc;
	struct parley_vmctl_open_reply *r = &ch->rep;
	r->detail[sizeof(r->detail) - 1] = 0;
	if (r->status > 0 || (r->status == PARLEY_OK &&
			      (r->ndev < 2 || r->ndev > PARLEY_VMCTL_DEVS_MAX - 1 ||
			       r->side > 1)))
		return -EPROTO;
	return PL_STATUS(r->status);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "0000:00:10.0": the only shape of PCI address accepted, so a reply
 * cannot point the mapping anywhere else in sysfs. */
static int pci_ok(const char *s)
{
	static const char shape[] = "hhhh:hh:hh.h";
	if (!memchr(s, 0, PARLEY_VMCTL_PCI_MAX) || strlen(s) != 12)
		return 0;
	for (int i = 0; i < 12; i++) {
		int hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
		if (shape[i] == 'h' ? !hex : s[i] != shape[i])
			return 0;
	}
	return 1;
}

static int map_dev(struct pl_chan *ch, unsigned i, const char *sysfs,
		   int timeout_ms)
{
	const struct parley_vmctl_dev *d = &ch->rep.dev[i];
	char p[256];
	struct stat st;
	if (!pci_ok(d->pci) || !d->section ||
	    d->section >= PARLEY_VMCTL_DEVS_MAX ||
	    d->size < PARLEY_RING_PAGE || d->size > 2 * PARLEY_RING_MAX)
		return -EPROTO;
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource2", sysfs, d->pci);
	/* Hot-plug: the agent has added the devices before it answered, and
	 * the kernel's acpiphp adds them when it has handled QEMU's ACPI
	 * event. Not waiting for that: a PCI rescan finds them at once (and
	 * is the only way for a kernel without ACPI hot-plug,
	 * acpiphp.disable=1); the two are serialised in the kernel, the
	 * second finds the device there. Then look every millisecond. */
	uint64_t t0 = mono_ms();
	for (int scans = 0; stat(p, &st) < 0;) {
		uint64_t t = mono_ms() - t0;
		if (t >= (uint64_t)timeout_ms)
			return -ENODEV;
		if (scans == 0 || (scans == 1 && t >= 500)) {
			char rs[256];
			snprintf(rs, sizeof(rs), "%s/bus/pci/rescan", sysfs);
			int fd = open(rs, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				if (write(fd, "1", 1) < 0)
					(void)0; /* then we time out */
				close(fd);
			}
			scans++;
			continue;
		}
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	if ((uint64_t)st.st_size < d->size)
		return -EPROTO;
	int fd = open(p, (d->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	void *m = mmap(NULL, d->size, PROT_READ | (d->writable ? PROT_WRITE : 0),
		       MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	ch->map[d->section] = m;
	ch->maplen[d->section] = d->size;
	return 0;
}

/* The wake port's name: the prefix, then digits and dots only, so it
 * names nothing else in sysfs. */
static int wake_name_ok(const char *s)
{
	size_t pre = strlen(PARLEY_VMCTL_WAKE_PREFIX);
	if (!memchr(s, 0, PARLEY_VMCTL_WAKE_MAX) || strncmp(s,
	    PARLEY_VMCTL_WAKE_PREFIX, pre) || !s[pre])
		return 0;
	for (s += pre; *s; s++)
		if (!((*s >= '0' && *s <= '9') || *s == '.'))
			return 0;
	return 1;
}

/* Protocol 4: the register page of the device the reply names for
 * ringing (one of the sections this side writes, mapped above: its BAR 0
 * is the ivshmem register block), and the wake port — hot-plugged with
 * the devices, seen by the guest's kernel a moment after the reply. */
static int map_bell(struct pl_chan *ch, const char *sysfs, int timeout_ms)
{
	const struct parley_vmctl_open_reply *r = &ch->rep;
	if (r->reserved)
		return -EPROTO;
	if (r->bell_dev == PARLEY_VMCTL_NO_BELL)
		return 0;
	if (r->bell_dev >= r->ndev || !r->dev[r->bell_dev].writable ||
	    !wake_name_ok(r->wake))
		return -EPROTO;
	char p[300], port[300];
	uint64_t start, end;
	/* BAR 0 is 256 bytes: several share a page, and the mapping starts
	 * at the page, so the register block is at the BAR's offset in it
	 * (the first line of `resource` is BAR 0's start and end). */
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource", sysfs,
		 r->dev[r->bell_dev].pci);
	FILE *f = fopen(p, "re");
	if (!f)
		return -errno;
	int got = fscanf(f, "%" SCNx64 " %" SCNx64, &start, &end);
	fclose(f);
	uint64_t off = start & (PARLEY_RING_PAGE - 1);
	if (got != 2 || end < start + PARLEY_VMCTL_BELL_REG + 3 ||
	    off + PARLEY_VMCTL_BELL_REG + 4 > PARLEY_RING_PAGE)
		return -EPROTO;
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource0", sysfs,
		 r->dev[r->bell_dev].pci);
	int fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	void *m = mmap(NULL, PARLEY_RING_PAGE, PROT_READ | PROT_WRITE,
		       MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	ch->bell_page = m;
	ch->bell = (volatile uint32_t *)((uint8_t *)m + off);
	uint64_t t0 = mono_ms();
	int rc;
	while ((rc = pl_find_port_in(sysfs, r->wake, port, sizeof(port)))) {
		if (mono_ms() - t0 >= (uint64_t)timeout_ms)
			return -ENODEV;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	/* The port's node: devtmpfs makes it with the port, a moment later */
	while ((fd = open(port, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		if (errno != ENOENT || mono_ms() - t0 >= (uint64_t)timeout_ms)
			return -errno;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	ch->wake_fd = fd;
	ch->has_wake = 1;
	return 0;
}

int pl_chan_map(struct pl_chan *ch, const char *sysfs, int timeout_ms)
{
	const struct parley_vmctl_open_reply *r = &ch->rep;
	/* The header (protocol 3: in the reply, a private copy) checked
	 * before anything is mapped: it says how many devices there are. */
	ch->hdr = r->hdr;
	struct parley_chan_hdr *h = &ch->hdr;
	if (h->magic != PARLEY_RING_MAGIC || h->version != PARLEY_RING_VERSION ||
	    h->nqueues < 1 || h->nqueues > PARLEY_RING_QUEUES_MAX ||
	    h->ring_bytes < PARLEY_RING_MIN || h->ring_bytes > PARLEY_RING_MAX ||
	    (h->ring_bytes & (h->ring_bytes - 1)) || r->ndev != 2 * h->nqueues ||
	    r->ndev > PARLEY_VMCTL_DEVS_MAX - 1)
		return -EPROTO;
	int rc = 0;
	for (unsigned i = 0; i < r->ndev && !rc; i++) {
		const struct parley_vmctl_dev *d = &r->dev[i];
		/* The header, a section of no queue, or one twice; a section
		 * mapped as its role says (a producer writes its own, a
		 * consumer its own: mapped read-only, the first send or
		 * wait would fault instead of failing here); one device
		 * each. */
		unsigned q = (d->section - 1) / 2;
		int prod = d->section % 2 == 1;
		if (!d->section || d->section >= PARLEY_VMCTL_DEVS_MAX ||
		    q >= h->nqueues || ch->map[d->section] ||
		    !d->writable != !(prod == (h->q[q].from == r->side)))
			rc = -EPROTO;
		for (unsigned k = 0; k < i && !rc; k++)
			if (!strncmp(r->dev[k].pci, d->pci, sizeof(d->pci)))
				rc = -EPROTO;
		if (!rc)
			rc = map_dev(ch, i, sysfs, timeout_ms);
	}
	if (rc)
		goto fail;
	rc = -EPROTO;
	if (h->nqueues == 2 && h->q[0].from == h->q[1].from)
		goto fail; /* one direction twice */
	for (unsigned q = 0; q < h->nqueues; q++) {
		unsigned ps = 1 + 2 * q, cs = 2 + 2 * q;
		uint32_t from = h->q[q].from;
		if (from > 1 || !ch->map[ps] || !ch->map[cs] ||
		    ch->maplen[ps] < PARLEY_RING_PAGE + h->ring_bytes)
			goto fail;
		struct parley_ring ring = {
			.prod = ch->map[ps],
			.cons = ch->map[cs],
			.data = (uint8_t *)ch->map[ps] + PARLEY_RING_PAGE,
			.size = h->ring_bytes,
		};
		if (from == r->side)
			ch->tx = ring;
		else
			ch->rx = ring;
	}
	if ((rc = map_bell(ch, sysfs, timeout_ms)))
		goto fail;
	return 0;
fail:
	pl_chan_unmap(ch);
	return rc;
}

void pl_chan_unmap(struct pl_chan *ch)
{
	if (ch->bell_page)
		munmap(ch->bell_page, PARLEY_RING_PAGE);
	ch->bell_page = NULL;
	ch->bell = NULL;
	if (ch->has_wake)
		close(ch->wake_fd);
	ch->has_wake = 0;
	ch->wake_fd = -1;
	for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++) {
		if (ch->map[i])
			munmap(ch->map[i], ch->maplen[i]);
		ch->map[i] = NULL;
	}
	memset(&ch->tx, 0, sizeof(ch->tx));
	memset(&ch->rx, 0, sizeof(ch->rx));
}

int pl_chan_send(struct pl_chan *ch, const void *msg, uint32_t len)
{
	if (!ch->tx.size)
		return PARLEY_RING_TOOBIG; /* this side may not send */
	return parley_ring_push(&ch->tx, msg, len);
}

int pl_chan_recv(struct pl_chan *ch, void *buf, uint32_t cap, uint32_t *len)
{
	if (!ch->rx.size)
		return PARLEY_RING_EMPTY;
	return parley_ring_pop(&ch->rx, buf, cap, len);
}

int pl_chan_peer_waiting(const struct pl_chan *ch)
{
	/* The index we just published must be visible before we read the
	 * peer's flag, or both sides can miss each other: x86 lets a load
	 * pass an earlier store, and the peer does the mirror image (sets
	 * its flag, fences, reads our index) before it sleeps. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ch->tx.size &&
	       __atomic_load_n(&ch->tx.cons->waiting, __ATOMIC_ACQUIRE);
}

static int handle_call(struct pl_ctl *c, uint16_t type, const struct pl_chan *ch)
{
	struct parley_vmctl_handle hd = { ch->rep.handle, 0 };
	struct parley_vmctl_status st;
	int rc = pl_ctl_call(c, type, &hd, sizeof(hd), PARLEY_VMCTL_STATUS, &st,
			     sizeof(st));
	if (rc)
		return rc;
	if (st.status > 0 || st.handle != ch->rep.handle)
		return -EPROTO;
	return PL_STATUS(st.status);
}

int pl_chan_notify(struct pl_ctl *c, const struct pl_chan *ch)
{
	/* One frame, no answer (version 2): ringing a channel that ended
	 * does nothing, and the next wait or STATE says it ended. */
	struct {
		struct parley_vmctl_hdr h;
		struct parley_vmctl_handle hd;
	} f = { { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_NOTIFY,
		  sizeof(struct parley_vmctl_handle), ++c->seq },
		{ ch->rep.handle, 0 } };
	if (c->ended_handle == ch->rep.handle && c->ended_status)
		return PL_STATUS(c->ended_status);
	if (ch->bell) {
		/* QEMU (or KVM) rings the peer's doorbell: no frame */
		ch->bell[PARLEY_VMCTL_BELL_REG / 4] = PARLEY_VMCTL_BELL_PEER;
		return 0;
	}
	return write_all(c->fd, &f, sizeof(f), c->timeout_ms);
}

int pl_chan_state(struct pl_ctl *c, const struct pl_chan *ch)
{
	return handle_call(c, PARLEY_VMCTL_STATE, ch);
}

/* A WAKE on the control port within timeout_ms (0: what is there
 * already) — with a wake port, the ends of channels (CLOSED, PEER_DOWN)
 * still come that way; without, every wake-up. 1: it ends this wait
 * (*rc says how; a frame begun and stalled is one), 0: look at the ring
 * again, -ETIMEDOUT: nothing came. */
static int ctl_wake(struct pl_ctl *c, const struct pl_chan *ch,
		    int timeout_ms, int *rc)
{
	struct parley_vmctl_hdr h;
	struct parley_vmctl_status st;
	int r = read_frame(c, &h, &st, sizeof(st), timeout_ms, 1);
	if (r == -ETIMEDOUT && !c->in_len)
		return -ETIMEDOUT; /* nothing came */
	if (r == -ETIMEDOUT)
		c->in_len = 0; /* a frame began and stalled: the stream is lost */
	else if (r == 0 && (h.type != PARLEY_VMCTL_WAKE || st.status > 0))
		r = -EPROTO; /* nothing was asked */
	if (r) {
		*rc = r;
		return 1;
	}
	note_wake(c, &st);
	if (st.handle == ch->rep.handle && st.status != PARLEY_OK) {
		*rc = PL_STATUS(st.status);
		return 1;
	}
	return 0;
}

/* The wake port went or says nothing (the channel closed, or its host end
 * is gone): ask the agent, and do not spin. */
static int wake_port_gone(struct pl_ctl *c, const struct pl_chan *ch)
{
	int rc = pl_chan_state(c, ch);
	if (!rc)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	return rc;
}

/* Protocol 4: the peer's rings come on the wake port (8 bytes each, or
 * fewer reads: QEMU passes on what the doorbell counted). */
static int wait_bell(struct pl_ctl *c, struct pl_chan *ch)
{
	int rc = 0;
	while (!parley_ring_readable(&ch->rx)) {
		if (c->in_len && ctl_wake(c, ch, 0, &rc) == 1)
			return rc;
		struct pollfd p[2] = { { ch->wake_fd, POLLIN, 0 },
				       { c->fd, POLLIN, 0 } };
		int pr = poll(p, 2, 1000);
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr <= 0 && parley_ring_readable(&ch->rx)) {
			/* a message and no ring for a second: late, or
			 * lost if none comes in two more */
			struct pollfd w = { ch->wake_fd, POLLIN, 0 };
			if (poll(&w, 1, 2000) == 0)
				c->lost_wakes++;
			break;
		}
		if (pr <= 0) {
			/* quiet: is the channel still there (the agent
			 * restarted, or its WAKE CLOSED went to an earlier
			 * opener)? */
			if ((rc = pl_chan_state(c, ch)))
				return rc;
			continue;
		}
		if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
			if ((rc = wake_port_gone(c, ch)))
				return rc;
		} else if (p[0].revents & POLLIN) {
			/* one read takes what the port holds (a syscall is
			 * microseconds under TCG: no second one to see it
			 * empty; rings left are a stale wake-up at worst) */
			uint8_t drain[512];
			ssize_t n = read(ch->wake_fd, drain, sizeof(drain));
			if ((n == 0 || (n < 0 && errno != EAGAIN &&
					errno != EINTR)) &&
			    (rc = wake_port_gone(c, ch)))
				return rc;
		}
		if (p[1].revents && ctl_wake(c, ch, 0, &rc) == 1)
			return rc;
	}
	return 0;
}

/* Without a wake port: the agent's WAKE frames, after its NOTIFY from the
 * peer. */
static int wait_agent(struct pl_ctl *c, struct pl_chan *ch)
{
	int rc = 0;
	while (!parley_ring_readable(&ch->rx)) {
		int w = ctl_wake(c, ch, 1000, &rc);
		if (w == 1)
			return rc;
		if (w == 0)
			continue; /* (a stale WAKE only costs a look) */
		if (parley_ring_readable(&ch->rx)) {
			/* A message came and no WAKE for a second: late, or
			 * lost (the flag/doorbell protocol failed). Counted
			 * as lost if none comes in two more; either way the
			 * message is there to read. */
			w = ctl_wake(c, ch, 2000, &rc);
			if (w == 1)
				return rc;
			if (w < 0)
				c->lost_wakes++;
			return 0;
		}
		/* Quiet for a second: is the channel still there (a WAKE
		 * CLOSED may have gone to an earlier opener of the port; a
		 * restarted agent knows no handle)? */
		if ((rc = pl_chan_state(c, ch)))
			return rc;
	}
	return 0;
}

int pl_chan_wait(struct pl_ctl *c, struct pl_chan *ch)
{
	if (!ch->rx.size)
		return PL_STATUS(PARLEY_E_INVAL);
	if (c->ended_handle == ch->rep.handle && c->ended_status)
		return PL_STATUS(c->ended_status);
	/* Message-pending: set our flag, then look at the ring; only an
	 * empty ring lets us sleep. The producer publishes, then reads the
	 * flag (both with full barriers), so one of us sees the other: it
	 * rings and the agent, seeing the flag after the doorbell, WAKEs
	 * us; or we see its message here. */
	__atomic_store_n(&ch->rx.cons->waiting, 1, __ATOMIC_SEQ_CST);
	int rc = 0;
	if (!parley_ring_readable(&ch->rx)) {
		c->sleeps++;
		rc = ch->has_wake ? wait_bell(c, ch) : wait_agent(c, ch);
	}
	__atomic_store_n(&ch->rx.cons->waiting, 0, __ATOMIC_SEQ_CST);
	return rc;
}

int pl_chan_close(struct pl_ctl *c, const struct pl_chan *ch)
{
	int rc = handle_call(c, PARLEY_VMCTL_CLOSE, ch);
	if (rc)
		return rc;
	/* The agent unplugs the channel's devices at CLOSE; the kernel
	 * ejects them a moment later (ACPI). Returning once they are gone
	 * (or after a second) means an open right after this one finds
	 * the old end freed, not half-gone. */
	uint64_t t0 = mono_ms();
	for (unsigned i = 0; i < ch->rep.ndev && i < PARLEY_VMCTL_DEVS_MAX - 1;
	     i++) {
		char p[256];
		struct stat st;
		if (!pci_ok(ch->rep.dev[i].pci))
			continue;
		snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s",
			 ch->rep.dev[i].pci);
		while (stat(p, &st) == 0 && mono_ms() - t0 < 1000)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	return 0;
}

int pl_digest(struct pl_ctl *c, const char *path, const uint8_t sha256[32])
{
	struct parley_vmctl_digest d;
	struct parley_vmctl_status st;
	memset(&d, 0, sizeof(d));
	if (path[0] != '/' || strlen(path) >= sizeof(d.path))
		return -EINVAL;
	memcpy(d.path, path, strlen(path));
	memcpy(d.sha256, sha256, 32);
	int rc = pl_ctl_call(c, PARLEY_VMCTL_DIGEST, &d, sizeof(d),
			     PARLEY_VMCTL_STATUS, &st, sizeof(st));
	if (rc)
		return rc;
	return st.status > 0 ? -EPROTO : PL_STATUS(st.status);
}

const char *pl_status_name(int st)
{
	switch (-st) {
	case PARLEY_OK: return "OK";
	case PARLEY_E_INVAL: return "INVAL";
	case PARLEY_E_NO_GRANT: return "NO_GRANT";
	case PARLEY_E_INTEGRITY: return "INTEGRITY";
	case PARLEY_E_PEER_DOWN: return "PEER_DOWN";
	case PARLEY_E_LIMIT: return "LIMIT";
	case PARLEY_E_BAD_HANDLE: return "BAD_HANDLE";
	case PARLEY_E_CLOSED: return "CLOSED";
	case PARLEY_E_TIMEOUT: return "TIMEOUT";
	case PARLEY_E_QUARANTINED: return "QUARANTINED";
	case PARLEY_E_NOSYS: return "NOSYS";
	case PARLEY_E_IO: return "IO";
	}
	return "?";
}
