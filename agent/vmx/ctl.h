/*
 * The control link between the grant manager (agent) and one vmm process:
 * a SOCK_SEQPACKET socket, one message per packet, each a ctl_hdr followed
 * by exactly the payload its type defines. The reader checks the size of
 * every message against its type before looking inside; an unknown type or
 * a wrong size is a protocol error that ends the link. Both sides treat the
 * other as a separate trust domain: the vmm process runs next to guest code.
 */
#ifndef PARLEY_VMX_CTL_H
#define PARLEY_VMX_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <parley/hypercall.h>

/* Fixed descriptors a vmm process is exec'd with. */
#define CTL_FD_SOCK 3
#define CTL_FD_MEM  4

enum ctl_type {
	/* agent -> vmm */
	CTL_LAUNCH = 1,
	CTL_VCPU_STATE,    /* also vmm -> agent, in reply to CTL_GET_STATE */
	CTL_PAUSE,
	CTL_RESUME,
	CTL_GET_STATE,     /* only while paused */
	CTL_STOP,
	/* vmm -> agent */
	CTL_READY = 32,    /* set up, sandboxed, vCPUs released */
	CTL_CONSOLE,
	CTL_PAUSED,
	CTL_RESUMED,
	CTL_STATE_DONE,
	CTL_FINISHED,      /* the last message: why the partition stopped */
	CTL_REFUSED,       /* a request that cannot be served now */
};

struct ctl_hdr {
	uint32_t type;
	uint32_t len;      /* payload bytes after this header */
};

#define CTL_LAUNCH_RESTORE 0x1  /* vCPU states follow; do not reset them */
#define CTL_LAUNCH_PAUSED  0x2  /* stay paused until CTL_RESUME */

struct ctl_launch {
	uint64_t ram_size;
	uint64_t cfg_size;
	uint64_t entry;
	uint64_t boot_info;
	uint32_t vcpus;
	uint32_t flags;
};

struct ctl_vcpu_state {
	uint32_t index;
	uint32_t halted;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave; /* x87, SSE and what else the CPU saves */
};

struct ctl_console {
	uint32_t vcpu;
	uint32_t len;
	char buf[PARLEY_CONSOLE_MAX];  /* only len bytes are sent */
};

struct ctl_finished {
	uint32_t reason;   /* enum vmx_stop */
	uint32_t vcpu;
	int64_t code;      /* exit code for VMX_STOP_EXIT */
	uint64_t rip;
	uint64_t addr;     /* faulting address where there is one */
	char detail[160];  /* NUL-terminated */
};

struct ctl_refused {
	uint32_t type;     /* the request refused */
	int32_t code;      /* negative errno */
};

#define CTL_PAYLOAD_MAX                                        \
	(sizeof(struct ctl_vcpu_state) > sizeof(struct ctl_console) \
		 ? sizeof(struct ctl_vcpu_state)                    \
		 : sizeof(struct ctl_console))
#define CTL_MSG_MAX (sizeof(struct ctl_hdr) + CTL_PAYLOAD_MAX)

/* Send one message as one packet. 0 or -errno. */
int ctl_send(int sock, uint32_t type, const void *payload, uint32_t len);

/* Receive one message into buf (CTL_MSG_MAX bytes). Returns the payload
 * length and sets *type, -EPIPE at end of stream, -EPROTO for a message
 * whose size does not match its type (the caller closes the link), or
 * -EAGAIN on a non-blocking socket with nothing to read. */
int ctl_recv(int sock, uint32_t *type, void *buf, size_t cap);

/* Exact payload size of a fixed-size type, or -1 for variable (console)
 * or unknown (0 payload types return 0). */
long ctl_payload_size(uint32_t type);

#endif
