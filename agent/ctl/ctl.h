/*
 * The control link between the grant manager (agent) and one vmm process:
 * a SOCK_SEQPACKET socket, one message per packet, each a ctl_hdr followed
 * by exactly the payload its type defines. The reader checks the size of
 * every message against its type before looking inside; an unknown type or
 * a wrong size is a protocol error that ends the link. Both sides treat the
 * other as a separate trust domain: the vmm process runs next to guest code.
 */
#ifndef PARLEY_CTL_CTL_H
#define PARLEY_CTL_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <parley/blk.h>
#include <parley/hypercall.h>

/* Fixed descriptors a vmm process is exec'd with; nothing else crosses
 * the exec. CTL_FD_BACKEND is /dev/kvm (kvm) or the stub executable
 * (process), opened by the agent: the vmm itself opens no path. */
#define CTL_FD_SOCK    3
#define CTL_FD_MEM     4
#define CTL_FD_BACKEND 5
#define CTL_FD_MEM_RO  6   /* the guest memory again, opened read-only */

enum ctl_type {
	/* agent -> vmm */
	CTL_LAUNCH = 1,
	CTL_VCPU_STATE,    /* also vmm -> agent, in reply to CTL_GET_STATE */
	CTL_PAUSE,
	CTL_RESUME,
	CTL_GET_STATE,     /* only while paused */
	CTL_STOP,
	CTL_OPEN_REPLY,    /* answer to CTL_OPEN_REQ */
	CTL_MAP,           /* + descriptors: own doorbell, peer's, then
			    * ctl_map.nmem memory sections */
	CTL_UNMAP,
	CTL_DIRTY_REQ,     /* which config pages were written since last time */
	CTL_PEER_GONE,     /* the channel's other end stopped: the window stays
			    * (what was sent can be read), waits and notifies
			    * answer PEER_DOWN; no reply */
	CTL_DISK = 16,     /* + 1 descriptor: disk `index` of the launch's
			    * ndisk, sent after CTL_LAUNCH (and the vCPU
			    * states), before the vmm's sandbox (16..23 are
			    * the disks') */
	CTL_PLUGIN = 18,   /* + 1 descriptor: verified device plugin `index`
			    * of the launch's nplugin (the agent's private
			    * copy, bound into the jail), sent before the
			    * disks */
	CTL_DEVICE_LOAD = 19, /* restore: one device's saved state
			       * (ctl_device_blob), ndevload of them after
			       * the disks */
	CTL_UPDATE_REPLY = 24, /* answer to CTL_UPDATE_REQ (24..27 are the
				* update's) */
	/* 25..27 free; 28..31 the hand-over's (agent/update_*.c) */
	CTL_PING = 28,     /* u64 nonce: answer CTL_PONG with it, nothing
			    * else (an agent taking over checks the link) */
	/* vmm -> agent */
	CTL_READY = 32,    /* set up, sandboxed, vCPUs released */
	CTL_CONSOLE,
	CTL_PAUSED,
	CTL_RESUMED,
	CTL_STATE_DONE,
	CTL_FINISHED,      /* the last message: why the partition stopped */
	CTL_REFUSED,       /* a request that cannot be served now */
	CTL_OPEN_REQ,      /* a vCPU asks for a channel, and waits */
	CTL_DIRTY,         /* one chunk of the dirty bitmap */
	CTL_MAPPED,
	CTL_UNMAPPED,
	CTL_CLOSED,        /* the partition closed a handle */
	CTL_DEVICE_STATE = 48, /* a device entered a lifecycle state
				* (agent/vmx/plugdev.h); no reply */
	CTL_DEVICE_SAVED = 49, /* in reply to CTL_GET_STATE, after the vCPU
				* states: one device's state
				* (ctl_device_blob) */
	CTL_UPDATE_REQ = 56, /* a vCPU's update hypercall, and it waits
			      * (56..59 are the update's) */
	/* 57..59 free; 60..63 the hand-over's */
	CTL_PONG = 60,     /* the nonce of the CTL_PING it answers */
};

/* Requests from a vmm that need the grant manager's decision: never
 * handled while the agent is waiting for another reply (see partition.c). */
static inline int ctl_is_request(uint32_t type)
{
	return type == CTL_OPEN_REQ || type == CTL_CLOSED ||
	       type == CTL_UPDATE_REQ;
}

struct ctl_hdr {
	uint32_t type;
	uint32_t len;      /* payload bytes after this header */
};

#define CTL_LAUNCH_RESTORE 0x1  /* vCPU states follow; do not reset them */
#define CTL_LAUNCH_PAUSED  0x2  /* stay paused until CTL_RESUME */

/* Which engine runs the partition inside the vmm process. */
enum ctl_backend {
	CTL_BACKEND_KVM = 1,      /* a KVM VM; CTL_FD_BACKEND is /dev/kvm */
	CTL_BACKEND_PROCESS = 2,  /* ptrace'd stub processes; CTL_FD_BACKEND
				   * is the stub executable */
};

#define CTL_RO_RANGES_MAX 16

struct ctl_launch {
	uint64_t ram_size;
	uint64_t cfg_size;
	uint64_t entry;
	uint64_t boot_info;
	uint32_t vcpus;
	uint32_t flags;
	uint32_t backend;  /* enum ctl_backend */
	uint32_t nro;      /* entries of ro[] in use */
	/* Image ranges the partition may read or execute but never write
	 * (ELF segments without PF_W), page-aligned. Guest pointers into them
	 * are refused like pointers into the system area. */
	struct {
		uint64_t gpa, size;
		uint32_t exec, reserved;
	} ro[CTL_RO_RANGES_MAX];
	/* Process backend: vCPU i's tracer thread and stub share the i-th
	 * allowed CPU after home_cpu (the agent spreads partitions out);
	 * CTL_NO_CPU: wherever the scheduler puts them. */
	uint32_t home_cpu;
	uint32_t ndisk;    /* CTL_DISK messages that follow, 0..DISKS_MAX */
	uint32_t nplugin;  /* CTL_PLUGIN messages before them, 0..
			    * CTL_PLUGINS_MAX; 0: the built-in devices */
	uint32_t ndevload; /* restore: CTL_DEVICE_LOAD messages after the
			    * disks, 0..CTL_DEVICES_MAX */
	uint32_t reserved2;
};


#define CTL_PLUGINS_MAX 16
#define CTL_PLUGIN_NAME_MAX 32

/* One verified plugin (agent/plugin/plugdir.h), its private copy attached.
 * The vmm checks its symbol against name and class (plugdev.c). */
struct ctl_plugin {
	uint32_t index;       /* 0..nplugin-1, in order */
	uint32_t plugin_class; /* enum parley_plugin_class */
	char name[CTL_PLUGIN_NAME_MAX]; /* NUL-terminated, non-empty */
};

/* A device's new lifecycle state: state an enum plugdev_state, detail
 * the refusal's reason when it is `failed`. */
struct ctl_device_state {
	char device[CTL_PLUGIN_NAME_MAX];  /* NUL-terminated, non-empty */
	char plugin[CTL_PLUGIN_NAME_MAX];  /* NUL-terminated, non-empty */
	uint32_t state;
	uint32_t reserved;
	char detail[160];                  /* NUL-terminated */
};

#define CTL_DEVICES_MAX 33       /* the console, two per disk */
#define CTL_DEVICE_STATE_MAX 1024

/* One device's saved state, as its plugin wrote it (save_state) with the
 * version it gave; into the snapshot and back (agent/snapshot.h). */
struct ctl_device_blob {
	char device[CTL_PLUGIN_NAME_MAX];  /* NUL-terminated, non-empty */
	char plugin[CTL_PLUGIN_NAME_MAX];  /* NUL-terminated, non-empty */
	uint32_t version;
	uint32_t len;                      /* <= CTL_DEVICE_STATE_MAX */
	uint8_t data[CTL_DEVICE_STATE_MAX];
};

#define CTL_NO_CPU 0xffffffffu

#define CTL_DISK_READ_ONLY 0x1u  /* the descriptor is O_RDONLY too */
#define CTL_DISK_XTS       0x2u  /* aes-xts-plain64, key[] holds it */
#define CTL_DISK_KEY_BYTES 64    /* AES-256-XTS: two 256-bit keys */

/* One disk (include/parley/blk.h), with its backing file's descriptor. A
 * key crosses only here, only after the partition's admission, and only
 * for CTL_DISK_XTS (else all zero). */
struct ctl_disk {
	uint32_t index;    /* 0..ndisk-1, in order */
	uint32_t flags;    /* CTL_DISK_* */
	uint64_t sectors;  /* >= 1; the file holds sectors * sector_size */
	uint32_t sector_size; /* 512 or 4096 */
	uint32_t reserved;
	char name[PARLEY_DISK_NAME_MAX]; /* NUL-terminated, non-empty */
	uint8_t key[CTL_DISK_KEY_BYTES];
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

/* A vCPU's question to the grant manager. Services ride on the channel
 * open's request and reply (the vCPU waits the same way, one question at
 * a time): op says which; the reply is a CTL_OPEN_REPLY in every case,
 * for SVC_ACCEPT with the caller's name in detail. */
enum ctl_op {
	CTL_OP_CHAN_OPEN = 0,
	CTL_OP_SVC_OFFER = 1,
	CTL_OP_SVC_CALL = 2,
	CTL_OP_SVC_ACCEPT = 3,
	/* Segment sets: name is the set. ATTACH's reply names segment 0's
	 * window (handle, gpa, size: the whole window) and tx the member id;
	 * the segments themselves come as CTL_MAPs before it, one window of
	 * one segment each. */
	CTL_OP_SEG_ATTACH = 4,
	CTL_OP_SEG_DETACH = 5,
	CTL_OP_MAX_ = CTL_OP_SEG_DETACH,
};

struct ctl_open_req {
	uint32_t vcpu;
	uint32_t op;       /* enum ctl_op */
	char name[PARLEY_CHAN_NAME_MAX]; /* NUL-terminated (checked by vmm) */
	char target[PARLEY_SVC_NAME_MAX]; /* SVC_CALL's provider, else "" */
};

struct ctl_open_reply {
	uint32_t vcpu;
	int32_t status;    /* enum parley_status */
	uint64_t handle;
	uint64_t gpa, size;
	uint32_t tx, rx;
	char detail[64];
};

/* An update hypercall (include/parley/hypercall.h), forwarded: op says
 * which; arg is BEGIN's size or WRITE's offset. WRITE names the bytes by
 * guest address only (the vmm checked them with gmem_guest_r): the grant
 * manager reads them through its own read-only view of the partition's
 * memory after checking the range again, so package bytes never cross
 * the socket and a lying vmm can name nothing but its partition's memory.
 * The answer is a CTL_UPDATE_REPLY. */
enum ctl_update_op {
	CTL_UPD_BEGIN = 0,
	CTL_UPD_WRITE = 1,
	CTL_UPD_COMMIT = 2,
	CTL_UPD_STATUS = 3,
};

struct ctl_update_req {
	uint32_t vcpu;
	uint32_t op;       /* enum ctl_update_op */
	uint64_t arg;
	uint64_t gpa, len; /* WRITE only, else 0 */
};

struct ctl_update_reply {
	uint32_t vcpu;
	int32_t status;    /* enum parley_status, or bytes taken (WRITE) */
	uint32_t state;    /* enum parley_update_state */
	uint32_t reserved;
	uint64_t received, size;
	char detail[64];
};

/* Channel windows (handle slots) one partition may hold at once. */
#define CTL_WIN_SLOTS 32

#define CTL_MAP_SEGS_MAX 7
/* Memory fds of one window: the header, and per queue the producer's
 * section (index page + data) and the consumer's (index page). */
#define CTL_MAP_MEMS_MAX 5

/* Map a channel window: segment i is bytes [file_off, file_off + len) of
 * memory fd mem at gpa + off. A segment this partition may only read comes
 * from a read-only fd (readonly = 1): the kernel, not the vmm, refuses a
 * writable mapping of it. */
struct ctl_map {
	uint32_t chan;     /* the agent's channel id, echoed in replies */
	uint32_t nseg;
	uint64_t gpa, size;
	uint32_t tx, rx;   /* queues, as in ctl_open_reply */
	uint64_t slot;     /* handle slot chosen by the agent */
	uint64_t handle;   /* the handle the partition will get */
	uint32_t nmem;     /* memory fds after the two doorbells, 1..MEMS_MAX */
	uint32_t reserved;
	struct {
		uint64_t off, len;   /* in the window */
		uint64_t file_off;   /* in memory fd `mem` */
		uint32_t mem;        /* index among the memory fds */
		uint32_t readonly;
	} seg[CTL_MAP_SEGS_MAX];
};

struct ctl_chan_ref {
	uint32_t chan;
	int32_t status;
	uint64_t handle;
};

/* CTL_PING and CTL_PONG. reserved is zero. */
struct ctl_ping {
	uint64_t nonce;
	uint64_t reserved;
};

#define CTL_DIRTY_BYTES 4096

struct ctl_dirty {
	uint64_t first_page;  /* page index in the config region */
	uint64_t npages;      /* bits that follow (<= 8 * CTL_DIRTY_BYTES) */
	uint32_t last;        /* 1 on the final chunk */
	uint32_t reserved;
	uint8_t bits[CTL_DIRTY_BYTES];
};

#define CTL_FDS_MAX (2 + CTL_MAP_MEMS_MAX)

struct ctl_refused {
	uint32_t type;     /* the request refused */
	int32_t code;      /* negative errno */
};

#define CTL_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define CTL_PAYLOAD_MAX                                                    \
	CTL_MAX_(CTL_MAX_(sizeof(struct ctl_vcpu_state),                   \
			  sizeof(struct ctl_console)),                     \
		 sizeof(struct ctl_dirty))
#define CTL_MSG_MAX (sizeof(struct ctl_hdr) + CTL_PAYLOAD_MAX)

/* Send one message as one packet. 0 or -errno. */
int ctl_send(int sock, uint32_t type, const void *payload, uint32_t len);
/* The same with descriptors attached (SCM_RIGHTS). */
int ctl_send_fds(int sock, uint32_t type, const void *payload, uint32_t len,
		 const int *fds, unsigned nfds);
/* The same without ever blocking: -EAGAIN when the peer's queue is full
 * (the grant manager sends this way: a vmm that stops reading must not
 * stop it). */
int ctl_post_fds(int sock, uint32_t type, const void *payload, uint32_t len,
		 const int *fds, unsigned nfds);
/* Receive with descriptors: a message type that carries descriptors must
 * carry exactly its number; any other message with descriptors is refused
 * (-EPROTO) and the descriptors closed. *nfds gets the count. */
int ctl_recv_fds(int sock, uint32_t *type, void *buf, size_t cap, int *fds,
		 unsigned *nfds);

/* Receive one message into buf (CTL_MSG_MAX bytes). Returns the payload
 * length and sets *type, -EPIPE at end of stream, -EPROTO for a message
 * whose size does not match its type or an empty record (the caller closes
 * the link), or
 * -EAGAIN on a non-blocking socket with nothing to read. */
int ctl_recv(int sock, uint32_t *type, void *buf, size_t cap);

/* Exact payload size of a fixed-size type (0 for types with no payload),
 * -2 for the one variable-size type (console), -1 for an unknown type. */
long ctl_payload_size(uint32_t type);

/* ---- typed reading --------------------------------------------------- */

/* Who sent a message: each side may send only its own types (CTL_VCPU_STATE
 * goes both ways); a type from the wrong side is a protocol error. */
enum ctl_from {
	CTL_FROM_AGENT = 1,
	CTL_FROM_VMM = 2,
};

/* One message as a reader gets it: type, size and every field whose value
 * the protocol restricts already checked (below), then copied out. Only the
 * member `type` names is valid; fds[] holds exactly the descriptors the type
 * carries (CTL_MAP: two doorbells, then map.nmem memory fds), owned by the
 * caller. */
struct ctl_msg {
	uint32_t type;
	uint32_t len;              /* payload bytes */
	unsigned nfds;
	int fds[CTL_FDS_MAX];
	union {
		/* agent -> vmm */
		struct ctl_launch launch;
		struct ctl_open_reply open_reply;
		struct ctl_update_reply update_reply;
		struct ctl_map map;
		struct ctl_disk disk;
		struct ctl_plugin plugin;
		/* both ways */
		struct ctl_vcpu_state vcpu_state;
		/* vmm -> agent */
		struct ctl_console console;
		struct ctl_finished finished;
		struct ctl_refused refused;
		struct ctl_open_req open_req;
		struct ctl_update_req update_req;
		struct ctl_dirty dirty;
		struct ctl_chan_ref ref;   /* MAP/UNMAP replies, UNMAP, CLOSED */
		struct ctl_ping ping;      /* PING, PONG */
		struct ctl_device_state device_state;
		struct ctl_device_blob device_blob; /* SAVED, LOAD */
		_Alignas(8) char raw[CTL_PAYLOAD_MAX];
	} u;
};

/* What each typed reader checks beyond the size, so that no caller has to:
 *   console   len <= PARLEY_CONSOLE_MAX (the size follows from it)
 *   finished  reason a known enum vmx_stop; detail NUL-terminated, and
 *             anything in it but printable ASCII made '?' (as the detail
 *             of device_state)
 *   refused   type a request type; code a negative errno
 *   open_req  name NUL-terminated and non-empty; op a known enum ctl_op;
 *             target NUL-terminated, non-empty exactly for SVC_CALL
 *   dirty     npages <= 8 * CTL_DIRTY_BYTES; last 0 or 1; reserved zero
 *   map       nseg 1..CTL_MAP_SEGS_MAX, nmem 1..CTL_MAP_MEMS_MAX, every
 *             segment's mem < nmem and readonly 0 or 1; reserved zero
 *   open_reply detail NUL-terminated
 *   update_req op a known enum ctl_update_op; WRITE: len
 *             1..PARLEY_UPDATE_CHUNK_MAX, gpa + len without wrapping;
 *             others: gpa and len 0, and arg 0 but for BEGIN
 *   update_reply state a known enum parley_update_state; reserved zero;
 *             detail NUL-terminated
 *   ping, pong reserved zero
 *   disk      one descriptor; index < PARLEY_DISKS_MAX; flags known;
 *             sector_size 512 or 4096; sectors >= 1 and its bytes below
 *             2^63; name NUL-terminated, non-empty; reserved zero; key
 *             all zero unless CTL_DISK_XTS
 *   plugin    one descriptor; index < CTL_PLUGINS_MAX; class 1..3; name
 *             NUL-terminated, non-empty
 *   device_state device and plugin NUL-terminated, non-empty; state a
 *             known one (1..8); reserved zero; detail NUL-terminated
 *   device_blob (SAVED, LOAD) device and plugin NUL-terminated,
 *             non-empty; len <= CTL_DEVICE_STATE_MAX
 * Bounds that need the reader's state (a dirty chunk against the config
 * region, a vCPU index against the partition) stay with the caller. */

/* Read one message sent by `from` into *m. Returns 0, -EAGAIN (nothing
 * waiting on a non-blocking socket), -EPIPE (end of stream), or -EPROTO
 * (anything malformed, oversized, of an unknown type, of the other side's
 * type, with the wrong descriptors, or with a field out of range; every
 * received descriptor is then closed). The link is to be dropped after
 * -EPROTO. */
int ctl_read(int sock, enum ctl_from from, struct ctl_msg *m);

/* The name of a message type, for diagnostics ("CTL_DIRTY"), or "?". */
const char *ctl_type_name(uint32_t type);

#endif
