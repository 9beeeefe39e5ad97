/*
 * The control protocol between a Linux VM (guest/linux/: libparley and
 * parley-chan) and the agent, over the VM's virtio-serial port
 * PARLEY_VMCTL_PORT (guest: /dev/virtio-ports/org.parley.ctl.0 or
 * /dev/vportNpM; host: a unix socket the agent owns).
 *
 * A byte stream of frames: a fixed 16-byte header, then exactly the payload
 * length the message type fixes (every type has one size; a frame of any
 * other length is a protocol violation, never truncated or padded). Strings
 * are NUL-terminated inside their field. Little-endian, as both ends are
 * x86-64.
 *
 * The agent treats every byte as hostile (agent/vm/vmctl.c decodes, checks
 * and stops at the first violation: the port is closed and the VM's control
 * path is gone until the VM is restarted — a stream cannot be trusted to
 * re-synchronise). The guest checks the agent's replies as strictly.
 *
 * Freestanding: only <stdint.h> (and <parley/ring.h>, itself freestanding).
 */
#ifndef PARLEY_VMCTL_H
#define PARLEY_VMCTL_H

#include <stdint.h>
#include <parley/ring.h>

#define PARLEY_VMCTL_PORT    "org.parley.ctl.0"
#define PARLEY_VMCTL_MAGIC   0x31435650u /* "PVC1" */
/* 2: WAIT is gone (a guest says it waits through its ring's
 * message-pending flag and the agent sends WAKE unprompted), NOTIFY has no
 * answer, STATE asks what NOTIFY's answer used to say.
 * 3: the channel's header (section 0, written once by the agent and never
 * again) comes in OPEN_REPLY, not as a device: one hot-plugged device
 * fewer per channel (each costs the agent three monitor commands and the
 * guest's kernel a PCI device's set-up).
 * 4: the doorbells skip the agent (OPEN_REPLY's bell_dev and wake): the
 * guest rings its peer through a register of one of its own section
 * devices, and is woken through a virtio-serial port of the channel's. */
#define PARLEY_VMCTL_VERSION 4
#define PARLEY_VMCTL_NAME_MAX 64         /* channel names, with the NUL */
#define PARLEY_VMCTL_PATH_MAX 128        /* guest-reported file paths */
#define PARLEY_VMCTL_DEVS_MAX 5          /* section numbers: the header (0,
					  * in the reply) + 2 queues x 2 */
#define PARLEY_VMCTL_PCI_MAX 16          /* "0000:00:1f.0" + NUL */
#define PARLEY_VMCTL_WAKE_MAX 48         /* a wake port's name, with the NUL */
#define PARLEY_VMCTL_WAKE_PREFIX "org.parley.wake."
#define PARLEY_VMCTL_NO_BELL 0xffffffffu /* bell_dev: ring through NOTIFY */
/* The doorbell register of an ivshmem-doorbell device (BAR 0) and the
 * value that rings the channel's peer (peer id 1, vector 0). */
#define PARLEY_VMCTL_BELL_REG 12
#define PARLEY_VMCTL_BELL_PEER (1u << 16)

struct parley_vmctl_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len;   /* payload bytes after this header */
	uint32_t seq;   /* the guest's number; a reply carries the request's */
};

enum parley_vmctl_type {
	/* guest -> agent */
	PARLEY_VMCTL_HELLO = 1,   /* struct parley_vmctl_hello */
	PARLEY_VMCTL_OPEN = 2,    /* struct parley_vmctl_open */
	PARLEY_VMCTL_NOTIFY = 3,  /* struct parley_vmctl_handle: ring the peer;
				   * no answer (one crossing) */
	/* 4 was version 1's WAIT: refused */
	PARLEY_VMCTL_CLOSE = 5,   /* struct parley_vmctl_handle */
	PARLEY_VMCTL_DIGEST = 6,  /* struct parley_vmctl_digest (guest-reported) */
	PARLEY_VMCTL_STATE = 7,   /* struct parley_vmctl_handle: the channel's
				   * state, answered STATUS */
	/* agent -> guest */
	PARLEY_VMCTL_HELLO_REPLY = 0x81, /* struct parley_vmctl_hello */
	PARLEY_VMCTL_OPEN_REPLY = 0x82,  /* struct parley_vmctl_open_reply */
	PARLEY_VMCTL_STATUS = 0x83,      /* struct parley_vmctl_status: the
					  * answer to STATE, CLOSE, DIGEST */
	PARLEY_VMCTL_WAKE = 0x84,        /* struct parley_vmctl_status, seq 0,
					  * unprompted: OK when the VM's
					  * doorbell rang while its consumer
					  * page's `waiting` flag was set;
					  * CLOSED or PEER_DOWN when the
					  * channel ends. May arrive between
					  * a request and its answer, and
					  * may be stale (the guest looks at
					  * its ring again). */
};

/* Waiting (version 2): the guest sets `waiting` in its consumer page of
 * the queue it reads (include/parley/ring.h, the message-pending flag),
 * looks at the ring again, and only then reads the port. A producer that
 * published a message and then sees the flag rings the VM's doorbell; the
 * agent, on that doorbell, reads the flag from the section's file and
 * sends WAKE if it is set (version 2 and 3; in version 4 without a bell).
 * Version 4, with a bell: the peer's ring goes to QEMU, which hands it to
 * the guest through the channel's wake port, and the guest's ring goes
 * from QEMU (or KVM) straight to the peer's doorbell — a sleeping round
 * trip crosses no agent, as a bare virtio-serial echo crosses none. */

struct parley_vmctl_hello {
	uint32_t version;   /* the highest the sender speaks */
	uint32_t reserved;  /* 0 */
};

struct parley_vmctl_open {
	char name[PARLEY_VMCTL_NAME_MAX];
};

struct parley_vmctl_handle {
	uint32_t handle;
	uint32_t reserved;  /* 0 */
};

struct parley_vmctl_digest {
	char path[PARLEY_VMCTL_PATH_MAX];
	uint8_t sha256[32];
};

struct parley_vmctl_status {
	int32_t status;     /* enum parley_status (parley/hypercall.h) */
	uint32_t handle;
};

/* One section of the channel as a PCI device in the guest: map its BAR 2
 * (/sys/bus/pci/devices/PCI/resource2), size bytes, writable only where
 * `writable` says (the others are read-only memory backends on the host:
 * a write is dropped). `section` is ring.h's: 1 + 2q the producer's
 * section of queue q, 2 + 2q its consumer's (0, the header, is never a
 * device: OPEN_REPLY carries it). */
struct parley_vmctl_dev {
	char pci[PARLEY_VMCTL_PCI_MAX];
	uint64_t size;
	uint32_t section;
	uint32_t writable;
};

struct parley_vmctl_open_reply {
	int32_t status;     /* PARLEY_OK or enum parley_status */
	uint32_t handle;
	uint32_t side;      /* 0: endpoint a, 1: endpoint b */
	uint32_t ndev;      /* 2 x the header's nqueues when OK */
	struct parley_vmctl_dev dev[PARLEY_VMCTL_DEVS_MAX - 1];
	struct parley_chan_hdr hdr; /* the channel's page 0, as the agent
				     * wrote it (read-only to both ends) */
	char detail[96];    /* e.g. the file INTEGRITY names */
	/* Version 4: the doorbells without the agent, when OK and bell_dev
	 * is not PARLEY_VMCTL_NO_BELL. Notify: write PARLEY_VMCTL_BELL_PEER
	 * to the register PARLEY_VMCTL_BELL_REG of dev[bell_dev]'s BAR 0 (a
	 * section the guest writes: an ivshmem-doorbell device, whose ring
	 * QEMU turns into a write of the peer's doorbell, or KVM does, with
	 * no exit). Wait: read the virtio-serial port named `wake` (it starts
	 * with PARLEY_VMCTL_WAKE_PREFIX), which carries the VM's doorbell:
	 * 8 bytes each time the peer rang (their value means nothing).
	 * CLOSED and PEER_DOWN still come as WAKE on the control port; a
	 * guest waits on both. */
	uint32_t bell_dev;
	uint32_t reserved;  /* 0 */
	char wake[PARLEY_VMCTL_WAKE_MAX];
};

/* The one payload size of each type, or 0 for an unknown type. */
static inline uint32_t parley_vmctl_payload_len(uint16_t type)
{
	switch (type) {
	case PARLEY_VMCTL_HELLO:
	case PARLEY_VMCTL_HELLO_REPLY:
		return sizeof(struct parley_vmctl_hello);
	case PARLEY_VMCTL_OPEN:
		return sizeof(struct parley_vmctl_open);
	case PARLEY_VMCTL_NOTIFY:
	case PARLEY_VMCTL_CLOSE:
	case PARLEY_VMCTL_STATE:
		return sizeof(struct parley_vmctl_handle);
	case PARLEY_VMCTL_DIGEST:
		return sizeof(struct parley_vmctl_digest);
	case PARLEY_VMCTL_OPEN_REPLY:
		return sizeof(struct parley_vmctl_open_reply);
	case PARLEY_VMCTL_STATUS:
	case PARLEY_VMCTL_WAKE:
		return sizeof(struct parley_vmctl_status);
	default:
		return 0;
	}
}

/* The largest payload of any type: a receiver's buffer. */
#define PARLEY_VMCTL_PAYLOAD_MAX sizeof(struct parley_vmctl_open_reply)

#endif
