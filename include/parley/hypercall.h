/*
 * parley hypercalls: numbers, argument structs, status codes.
 *
 * A partition makes hypercall N by writing the guest-physical address of its
 * argument struct (32 bits: everything callable lives below 4 GiB) with `outl`
 * to port PARLEY_HC_PORT_BASE + N. The agent checks that the whole struct lies
 * 8-byte aligned in memory the partition itself may write — its RAM from
 * PARLEY_IMAGE_MIN up, not a read-only image page; never page 0, the system
 * tables, boot info, the config region or a channel window — before it reads
 * a byte of it, and writes back only the struct's OUT fields. A buffer the
 * agent only reads (CONSOLE_WRITE's) may also lie in the partition's
 * read-only image. A struct or buffer that fails those checks, a port outside
 * the table, a non-zero reserved field or another malformed argument is
 * treated as malice and stops the partition with the reason recorded. Results
 * a partition can act on (no grant, timeout, ...) come back in `ret`.
 *
 * Every field is marked IN (written by the partition, read by the agent) or
 * OUT (written by the agent). Self-contained: only <stdint.h> and abi.h.
 */
#ifndef PARLEY_HYPERCALL_H
#define PARLEY_HYPERCALL_H

#include <stdint.h>
#include "abi.h"

#define PARLEY_HC_PORT_BASE 0x500
/* Ports [BASE, BASE + SPAN) are hypercalls; one of them with a number not
 * in the table is an unknown hypercall, any other port a bad port. */
#define PARLEY_HC_PORT_SPAN 0x100

enum parley_hc_nr {
	PARLEY_HC_CONSOLE_WRITE = 1,
	PARLEY_HC_CLOCK = 2,
	PARLEY_HC_EXIT = 3,
	PARLEY_HC_HALT = 4,        /* park this vCPU until the partition stops */
	PARLEY_HC_CHAN_OPEN = 5,   /* reserved: channels (agent/ipc) */
	PARLEY_HC_CHAN_NOTIFY = 6,
	PARLEY_HC_CHAN_WAIT = 7,
	PARLEY_HC_CHAN_CLOSE = 8,
	PARLEY_HC_SEG_ATTACH = 9,  /* segment sets (agent/ipc/segmgr.c) */
	PARLEY_HC_SEG_DETACH = 10,
	/* 11, 12: reserved for segment sets; unknown hypercalls today. */
	PARLEY_HC_SVC_OFFER = 13,  /* services (agent/ipc/svcmgr.c) */
	PARLEY_HC_SVC_CALL = 14,
	PARLEY_HC_SVC_ACCEPT = 15,
	PARLEY_HC_UPDATE_BEGIN = 16,  /* agent updates (agent/update) */
	PARLEY_HC_UPDATE_WRITE = 17,
	PARLEY_HC_UPDATE_COMMIT = 18,
	PARLEY_HC_UPDATE_STATUS = 19,
	PARLEY_HC_BLK_INFO = 20,   /* block devices (include/parley/blk.h) */
	PARLEY_HC_BLK_READ = 21,
	PARLEY_HC_BLK_WRITE = 22,
	PARLEY_HC_BLK_FLUSH = 23,
	PARLEY_HC_BLK_SUBMIT = 24, /* a batch of requests in one exit */
	PARLEY_HC_MAX = 24,
};

/* Status returned in `ret`; negative, so >= 0 can carry a count. */
enum parley_status {
	PARLEY_OK = 0,
	PARLEY_E_INVAL = -1,       /* an argument the partition can correct */
	PARLEY_E_NO_GRANT = -2,
	PARLEY_E_INTEGRITY = -3,
	PARLEY_E_PEER_DOWN = -4,
	PARLEY_E_LIMIT = -5,
	PARLEY_E_BAD_HANDLE = -6,
	PARLEY_E_CLOSED = -7,
	PARLEY_E_TIMEOUT = -8,
	PARLEY_E_QUARANTINED = -9,
	PARLEY_E_NOSYS = -10,      /* known number, not served by this agent */
	PARLEY_E_IO = -11,         /* the host's storage failed (not the
				    * partition's fault) */
};

/* Longest console write served in one call; a longer one is cut short and
 * `ret` says how much was taken, as write(2) does. */
#define PARLEY_CONSOLE_MAX 4096

struct parley_hc_console_write {
	parley_gpa_t buf; /* IN: bytes to print */
	uint64_t len;     /* IN */
	int64_t ret;      /* OUT: bytes taken, or a parley_status */
};

struct parley_hc_clock {
	uint64_t monotonic_ns; /* OUT: since the partition was created */
	uint64_t realtime_ns;  /* OUT: since the Unix epoch */
	int64_t ret;           /* OUT */
};

struct parley_hc_exit {
	int64_t code; /* IN: the partition's exit code, 0..255 reported */
};

struct parley_hc_halt {
	uint64_t reserved; /* IN: must be 0 */
};

/*
 * Channels. A handle is (generation << 16 | slot): closing or revoking a
 * channel bumps the generation, so an old handle never names another
 * channel. Handles are per partition.
 */
#define PARLEY_CHAN_NAME_MAX 64
#define PARLEY_CHAN_NO_QUEUE 0xffffffffu
#define PARLEY_WAIT_MAX 8

struct parley_hc_chan_open {
	char name[PARLEY_CHAN_NAME_MAX]; /* IN: NUL-terminated */
	uint64_t handle;   /* OUT */
	parley_gpa_t gpa;  /* OUT: the channel window (struct parley_chan_hdr) */
	uint64_t size;     /* OUT: window bytes */
	uint32_t tx;       /* OUT: queue this side produces into, or NO_QUEUE */
	uint32_t rx;       /* OUT: queue this side consumes, or NO_QUEUE */
	int64_t ret;       /* OUT: PARLEY_OK, _E_NO_GRANT, _E_INTEGRITY,
			    *      _E_PEER_DOWN, _E_LIMIT, _E_QUARANTINED */
	char detail[64];   /* OUT: for INTEGRITY, the file that differed */
};

struct parley_hc_chan_notify {
	uint64_t handle;   /* IN */
	int64_t ret;       /* OUT: PARLEY_OK, _E_BAD_HANDLE, _E_CLOSED,
			    *      _E_PEER_DOWN */
};

struct parley_hc_chan_wait {
	uint64_t handles[PARLEY_WAIT_MAX]; /* IN */
	uint32_t n;        /* IN: 0..PARLEY_WAIT_MAX (0: just sleep) */
	uint32_t reserved; /* IN: 0 */
	uint64_t timeout_ns; /* IN: 0 polls; UINT64_MAX waits for ever */
	uint64_t ready;    /* OUT: bit i set: handles[i] has data or is closed */
	int64_t ret;       /* OUT: PARLEY_OK (may be early, with ready 0),
			    *      _E_TIMEOUT, _E_BAD_HANDLE, _E_CLOSED,
			    *      _E_PEER_DOWN (the other end stopped: the
			    *      window stays, what it sent can be read) */
};

struct parley_hc_chan_close {
	uint64_t handle;   /* IN */
	int64_t ret;       /* OUT: PARLEY_OK, _E_BAD_HANDLE */
};

/*
 * Services: a partition offers a named service; another calls it by name
 * and provider ("target"). The agent decides by its service policy
 * (source, target, service: allow or deny, default deny), re-measures
 * both ends, then connects them through an ephemeral two-way channel: the
 * caller gets it from SVC_CALL, the provider from SVC_ACCEPT. Requests
 * and responses on it are framed by include/parley/svc.h. Names are
 * NUL-terminated, 1..63 bytes of A-Z a-z 0-9 _ . -.
 */
#define PARLEY_SVC_NAME_MAX 64

struct parley_hc_svc_offer {
	char name[PARLEY_SVC_NAME_MAX];  /* IN */
	int64_t ret;       /* OUT: PARLEY_OK, _E_INVAL, _E_LIMIT,
			    *      _E_QUARANTINED */
};

/* The channel fields are those of parley_hc_chan_open. */
struct parley_hc_svc_call {
	char name[PARLEY_SVC_NAME_MAX];    /* IN: the service */
	char target[PARLEY_SVC_NAME_MAX];  /* IN: the provider partition */
	uint64_t handle;   /* OUT */
	parley_gpa_t gpa;  /* OUT */
	uint64_t size;     /* OUT */
	uint32_t tx, rx;   /* OUT */
	int64_t ret;       /* OUT: PARLEY_OK, _E_NO_GRANT (no rule or a deny
			    *      rule), _E_PEER_DOWN (not offered, provider
			    *      stopped), _E_INTEGRITY, _E_QUARANTINED,
			    *      _E_LIMIT, _E_INVAL */
	char detail[64];   /* OUT: for INTEGRITY, the file that differed */
};

/* Never sleeps. The signal to ask: when a call's window is mapped into the
 * provider, every vCPU of it sleeping in CHAN_WAIT is woken (ret OK,
 * ready 0), so a provider waits on its callers' handles (or none) and
 * accepts after each wake-up. */
struct parley_hc_svc_accept {
	char name[PARLEY_SVC_NAME_MAX];  /* IN: a service this side offers */
	uint64_t handle;   /* OUT: the new caller's channel */
	parley_gpa_t gpa;  /* OUT */
	uint64_t size;     /* OUT */
	uint32_t tx, rx;   /* OUT */
	int64_t ret;       /* OUT: PARLEY_OK, _E_TIMEOUT (no caller waiting),
			    *      _E_INVAL (not offered) */
	char caller[64];   /* OUT: the calling partition's name */
};

/*
 * Agent updates: a partition whose spec grants it the "update" capability
 * streams an update package (agent/update/README.md) down to the agent:
 * BEGIN(size), then WRITE chunks in order (offset = bytes sent so far),
 * then COMMIT, which verifies the package (signature by the release key
 * the agent trusts, every file's hash, newer than what runs, speaks the
 * running partitions' ABI) and hands it over. A partition without the
 * capability gets NO_GRANT (audited). One stage at a time per agent: a
 * BEGIN while another partition's stage is open gets LIMIT; a BEGIN by
 * the same partition starts over. A refused package is discarded; its
 * reason ("unsigned", "bad-signature", "truncated", "hash-mismatch",
 * "not-newer", "too-old-to-replace", "abi", ...) leads `detail`.
 */
#define PARLEY_UPDATE_CHUNK_MAX (1u << 20)  /* bytes per WRITE */

enum parley_update_state {
	PARLEY_UPDATE_IDLE = 0,       /* no stage */
	PARLEY_UPDATE_RECEIVING = 1,  /* BEGIN done, WRITEs going on */
	PARLEY_UPDATE_STAGED = 2,     /* verified and staged, not committed */
	PARLEY_UPDATE_REFUSED = 3,    /* the last package was refused */
	PARLEY_UPDATE_COMMITTED = 4,  /* handed over to the new agent */
	PARLEY_UPDATE_FAILED = 5,     /* hand-over failed; the old one runs */
};

struct parley_hc_update_begin {
	uint64_t size;     /* IN: the package's bytes */
	int64_t ret;       /* OUT: PARLEY_OK, _E_NO_GRANT, _E_INVAL (size
			    *      out of range), _E_LIMIT (another stage is
			    *      open), _E_NOSYS (agent takes no updates) */
	char detail[64];   /* OUT */
};

struct parley_hc_update_write {
	uint64_t offset;   /* IN: bytes written so far */
	parley_gpa_t buf;  /* IN: the partition's own memory */
	uint64_t len;      /* IN: 1..PARLEY_UPDATE_CHUNK_MAX */
	int64_t ret;       /* OUT: bytes taken, or _E_NO_GRANT, _E_INVAL
			    *      (out of order, past size, no stage) */
};

struct parley_hc_update_commit {
	uint64_t reserved; /* IN: 0 */
	int64_t ret;       /* OUT: PARLEY_OK (state says how far it got),
			    *      _E_INTEGRITY (refused, detail says why),
			    *      _E_INVAL (no complete stage), _E_NO_GRANT */
	uint64_t state;    /* OUT: enum parley_update_state */
	char detail[64];   /* OUT */
};

struct parley_hc_update_status {
	uint64_t state;    /* OUT: enum parley_update_state */
	uint64_t received; /* OUT: bytes of the open stage */
	uint64_t size;     /* OUT: its BEGIN size */
	int64_t ret;       /* OUT: PARLEY_OK, _E_NO_GRANT */
	char detail[64];   /* OUT: the last refusal or failure */
};

/*
 * Segment sets (include/parley/segset.h): a member joins a set by name.
 * The agent checks the member is in the set (else NO_GRANT) and
 * re-measures it as for a channel open (INTEGRITY: refused, and the
 * member quarantined), then maps the set's window at `gpa`: segment 0 (the
 * table, written only by the agent) read-only, every LIVE segment the
 * member may read read-only, the ones it writes read-write, nothing else
 * (an access to the rest stops the partition). Each segment is its own
 * window slot (CTL_WIN_SLOTS per partition, channels included): a view
 * that does not fit is LIMIT.
 *
 * `handle` names segment 0's window: CHAN_WAIT on it returns (ready) when
 * the table changed — a member joined, left or was removed — so a member
 * sleeps on it and reads the table again (its epoch moved). Attaching
 * again while attached re-measures and answers the same window (a member
 * that no longer matches its baseline is then removed from the set). A
 * member removed (it stopped, detached or was quarantined) has its
 * segments revoked for everyone: unmapped from every member, then its
 * memory cut. DETACH takes the member out the same way, by the set name.
 */
struct parley_hc_seg_attach {
	char name[PARLEY_CHAN_NAME_MAX]; /* IN: the set, NUL-terminated */
	uint64_t handle;   /* OUT: segment 0's window (table changes) */
	parley_gpa_t gpa;  /* OUT: the window: segment i at gpa + offset */
	uint64_t size;     /* OUT: window bytes (the table's window_size) */
	uint32_t member;   /* OUT: this partition's member id */
	uint32_t reserved; /* OUT: 0 */
	int64_t ret;       /* OUT: PARLEY_OK, _E_NO_GRANT (no such set, or not
			    *      a member), _E_INTEGRITY, _E_QUARANTINED,
			    *      _E_LIMIT, _E_INVAL (a bad name),
			    *      _E_PEER_DOWN (no dirty report) */
	char detail[64];   /* OUT: for INTEGRITY, the file that differed */
};

struct parley_hc_seg_detach {
	char name[PARLEY_CHAN_NAME_MAX]; /* IN: the set */
	int64_t ret;       /* OUT: PARLEY_OK, _E_BAD_HANDLE (not attached),
			    *      _E_INVAL */
};

/* The doorbell: `outl handle, PARLEY_DOORBELL_PORT` rings the peer of the
 * channel `handle` names without leaving the kernel (KVM ioeventfd), the
 * same as CHAN_NOTIFY but with no result. A value that names no open
 * channel reaches the vmm, which ignores it. */
#define PARLEY_DOORBELL_PORT (PARLEY_HC_PORT_BASE + 0x80)

#endif
