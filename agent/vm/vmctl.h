/*
 * The agent's side of the VM control protocol (include/parley/vmctl.h):
 * a decoder for the bytes a guest writes into its control port, every one
 * of them hostile, and the encoder of the agent's replies.
 *
 * The decoder reassembles frames from any chunking (a byte at a time or
 * many frames at once) and checks each completely before handing it out:
 * magic, version, a guest-to-agent type, the one payload length of that
 * type, reserved fields zero, strings NUL-terminated with only the bytes
 * their kind allows. The first violation breaks the stream for good
 * (vmctl_dec.broken, the reason in the error): a byte stream that broke
 * its framing cannot be re-synchronised safely.
 */
#ifndef PARLEY_AGENT_VM_VMCTL_H
#define PARLEY_AGENT_VM_VMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/vmctl.h>
#include "common/err.h"

struct vmctl_msg {
	struct parley_vmctl_hdr h;
	union {
		struct parley_vmctl_hello hello;
		struct parley_vmctl_open open;
		struct parley_vmctl_handle handle;
		struct parley_vmctl_digest digest;
	} u;
};

struct vmctl_dec {
	uint8_t buf[sizeof(struct parley_vmctl_hdr) + PARLEY_VMCTL_PAYLOAD_MAX];
	size_t have;        /* bytes of the frame being read */
	bool broken;        /* a violation was seen: nothing more is decoded */
};

void vmctl_dec_init(struct vmctl_dec *d);

/*
 * Take bytes from in[0..n): stops after one complete frame. *used gets the
 * bytes taken. Returns 1 with *out filled when a frame is complete and
 * valid, 0 when all of `in` was taken and no frame is complete yet, or
 * -EPROTO (err names the violation; the decoder is broken from then on).
 */
int vmctl_dec_feed(struct vmctl_dec *d, const void *in, size_t n,
		   size_t *used, struct vmctl_msg *out, struct parley_err *err);

/* One frame of type (agent -> guest) with its payload into out (cap
 * bytes). Returns its length, or -EINVAL for an unknown type or a size
 * that does not match the type's. */
int vmctl_encode(uint16_t type, uint32_t seq, const void *payload,
		 size_t len, void *out, size_t cap);

/* A guest-reported path: absolute, printable ASCII, no "..". */
bool vmctl_path_valid(const char *s, size_t cap);

#endif
