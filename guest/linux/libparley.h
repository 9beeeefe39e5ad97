/*
 * libparley: parley channels for Linux userspace inside a VM. The control
 * path is the VM's virtio-serial port PARLEY_VMCTL_PORT (include/parley/
 * vmctl.h); the channel's memory is ivshmem PCI devices the agent
 * hot-plugs, one per ring section, mapped through sysfs (resource2), with
 * the rings of include/parley/ring.h on top (the channel's header comes
 * in the OPEN reply: protocol 3). Every reply and every shared
 * index is checked before it is used: the agent is trusted no more than
 * it has to be, the peer not at all.
 */
#ifndef PARLEY_LINUX_LIBPARLEY_H
#define PARLEY_LINUX_LIBPARLEY_H

#include <stddef.h>
#include <stdint.h>
#include <parley/hypercall.h>
#include <parley/ring.h>
#include <parley/vmctl.h>

struct pl_ctl {
	int fd;
	uint32_t seq;
	int timeout_ms;   /* for a reply (pl_ctl_open: 5 s) */
	uint32_t ended_handle;  /* the last channel a WAKE said ended ... */
	int32_t ended_status;   /* ... and how (CLOSED, PEER_DOWN); 0: none */
	unsigned lost_wakes;    /* waits that found a message in the ring
				 * and no WAKE for it within 3 s (should
				 * stay 0: the tests say so) */
	unsigned sleeps;        /* waits that found the ring empty with
				 * their flag set, and slept on the port */
	/* What the port gave beyond the frame being read: one read takes
	 * what is there, so a frame costs a poll and a read (each a guest
	 * syscall, slow under TCG), not a read per header and payload. */
	uint32_t in_len;
	uint8_t in[2 * (sizeof(struct parley_vmctl_hdr) +
			PARLEY_VMCTL_PAYLOAD_MAX)];
};

struct pl_chan {
	struct parley_vmctl_open_reply rep;
	void *map[PARLEY_VMCTL_DEVS_MAX];
	uint64_t maplen[PARLEY_VMCTL_DEVS_MAX];
	struct parley_chan_hdr hdr;      /* a checked private copy */
	struct parley_ring tx, rx;       /* tx.size 0: this side cannot send */
	/* Protocol 4's doorbells (when the reply offers them): the register
	 * page of the device that rings the peer, the wake port's fd. */
	void *bell_page;                 /* the page mapped (BAR 0's) */
	volatile uint32_t *bell;         /* BAR 0's registers in it */
	int wake_fd;
	int has_wake;
};

/* Open the control port: path, or (NULL) the port named PARLEY_VMCTL_PORT
 * found through /dev/virtio-ports or /sys/class/virtio-ports. Says HELLO.
 * 0 or -errno. */
int pl_ctl_open(struct pl_ctl *c, const char *path);
void pl_ctl_close(struct pl_ctl *c);

/* Is an agent at the port's host end now? (0 while it is away: killed or
 * restarting. A new agent knows none of the old handles — STATE says
 * BAD_HANDLE — and unplugs the old devices once the guest says HELLO
 * again: let go of the channel, pl_ctl_open, open it again.) */
int pl_ctl_connected(const struct pl_ctl *c);

/* The device of the virtio-serial port named `want`. 0 or -ENOENT. */
int pl_find_port(const char *want, char *out, size_t cap);
/* The same under a sysfs root (the port's node is /dev/NAME whatever the
 * root). */
int pl_find_port_in(const char *sysfs, const char *want, char *out,
		    size_t cap);

/* One request and its reply (type want, exactly want_len payload bytes,
 * the request's seq); WAKEs that come first are noted (an ended channel
 * in c->ended_*), anything else from the agent is -EPROTO. */
int pl_ctl_call(struct pl_ctl *c, uint16_t type, const void *pl, uint32_t len,
		uint16_t want, void *reply, uint32_t want_len);

/* Results of the calls that ask the agent: -errno when the control path
 * failed, else the agent's answer as PL_STATUS(enum parley_status), so 0
 * is PARLEY_OK and errno values never pass for a status. */
#define PL_STATUS(s) (-(s))

/* OPEN name. The agent's status as PL_STATUS (rep->detail says more), or
 * -errno. On 0, ch->rep holds the devices; map them with pl_chan_map.
 * PL_STATUS(PARLEY_E_LIMIT): the agent takes a VM's OPENs at a bounded
 * rate (or the VM has all the channels its PCI slots hold) — try later. */
int pl_chan_open(struct pl_ctl *c, const char *name, struct pl_chan *ch);

/* Map the devices of ch->rep (waiting up to timeout_ms for hot-plug to
 * show them) and set up the rings; sysfs: the sysfs root ("/sys"). 0 or
 * -errno. */
int pl_chan_map(struct pl_chan *ch, const char *sysfs, int timeout_ms);
void pl_chan_unmap(struct pl_chan *ch);

/* Ring operations: a parley_ring_result. */
int pl_chan_send(struct pl_chan *ch, const void *msg, uint32_t len);
int pl_chan_recv(struct pl_chan *ch, void *buf, uint32_t cap, uint32_t *len);

/* The peer sleeps waiting for a message (its message-pending flag); call
 * after a send (a full fence first: see libparley.c), NOTIFY if so. */
int pl_chan_peer_waiting(const struct pl_chan *ch);

/* NOTIFY: one frame to the agent, no answer (0, -errno, or the end a
 * WAKE already reported). */
int pl_chan_notify(struct pl_ctl *c, const struct pl_chan *ch);
/* Sleep until a message is readable: sets the ring's message-pending
 * flag and reads the port for the agent's unprompted WAKE (protocol 2: no
 * request). Asks STATE after each quiet second. 0 (look at the ring),
 * PL_STATUS(CLOSED, PEER_DOWN, BAD_HANDLE: an agent that restarted),
 * -ENOTCONN (the agent went away: see pl_ctl_connected), or -errno. */
int pl_chan_wait(struct pl_ctl *c, struct pl_chan *ch);
/* STATE: what the agent says of the channel now (PL_STATUS or -errno). */
int pl_chan_state(struct pl_ctl *c, const struct pl_chan *ch);
int pl_chan_close(struct pl_ctl *c, const struct pl_chan *ch);

/* DIGEST: report the SHA-256 of the guest's file `path` (absolute). The
 * agent enrols it as the baseline of that path at its first report and
 * compares later ones (PL_STATUS(INTEGRITY) when it differs: every open
 * after is refused INTEGRITY naming the path, marked guest-reported). */
int pl_digest(struct pl_ctl *c, const char *path, const uint8_t sha256[32]);

/* A PL_STATUS as its name ("OK", "NO_GRANT", ...). */
const char *pl_status_name(int status);

#endif
