/*
 * The partition SDK: what a freestanding partition links against.
 *
 * A partition defines `int main(const struct parley_boot_info *bi)`; the boot
 * stub calls it on vCPU 0 and passes its return value to parley_exit(). Other
 * vCPUs enter `parley_secondary()` (weak; the default parks the vCPU).
 */
#ifndef PARLEY_GUEST_H
#define PARLEY_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <parley/abi.h>
#include <parley/hypercall.h>
#include <parley/ring.h>
#include <parley/svc.h>
#include <parley/segsdk.h>

int main(const struct parley_boot_info *bi);
void parley_secondary(const struct parley_boot_info *bi, uint32_t cpu);

/* Hypercalls. */
void parley_hypercall(enum parley_hc_nr nr, void *arg);
int64_t parley_console_write(const void *buf, size_t len);
__attribute__((noreturn)) void parley_exit(int code);
__attribute__((noreturn)) void parley_halt(void);
uint64_t parley_clock_ns(void);

/* Channels. */
struct parley_chan {
	uint64_t handle;
	const struct parley_chan_hdr *hdr;
	struct parley_ring tx, rx;
	int has_tx, has_rx;
	uint32_t spin;      /* looks at the ring before sleeping (attach sets
			     * PARLEY_CHAN_SPIN; parley_chan_set_spin) */
	uint32_t sleeps;    /* CHAN_WAITs send/recv slept in */
};

/* How many times send/recv look at a full or empty ring (a pause between
 * looks) before they sleep in CHAN_WAIT: a busy peer is then met without
 * an exit; 0 sleeps at once (a partition that would rather give its CPU
 * away than spend it). */
#define PARLEY_CHAN_SPIN 4000u
void parley_chan_set_spin(struct parley_chan *c, uint32_t spins);

/* Open a granted channel; PARLEY_OK or a parley_status. detail (64 bytes,
 * may be NULL) gets the file that differed on PARLEY_E_INTEGRITY.
 * PARLEY_E_LIMIT: the agent's table of channels is full, or this
 * partition asks faster than the agent takes opens (256, then 64 a
 * second; an open refused before any re-measure costs nothing): try
 * again later. */
int64_t parley_chan_open(const char *name, struct parley_chan *c,
			 char *detail);
/* Push one message, sleeping while the ring is full; rings the peer only
 * if it is waiting. PARLEY_OK, PARLEY_E_CLOSED, or PARLEY_E_INVAL for a
 * message that can never fit or a corrupt ring. */
int64_t parley_chan_send(struct parley_chan *c, const void *buf, uint32_t len);
/* Pop one message, sleeping while there is none. */
int64_t parley_chan_recv(struct parley_chan *c, void *buf, uint32_t cap,
			 uint32_t *len);
/* The peer's doorbell, without a result (ioeventfd: no exit to the vmm). */
void parley_chan_doorbell(const struct parley_chan *c);
int64_t parley_chan_notify(uint64_t handle);
int64_t parley_chan_wait(const uint64_t *handles, uint32_t n,
			 uint64_t timeout_ns, uint64_t *ready);
int64_t parley_chan_close(struct parley_chan *c);
/* Take a channel the agent mapped (an open's, a call's or an accept's
 * OUT fields); PARLEY_E_INVAL if the window does not look like one. */
int64_t parley_chan_attach(struct parley_chan *c, uint64_t handle,
			   uint64_t gpa, uint32_t tx, uint32_t rx);
/* Sleep for ns (CHAN_WAIT on no handle, repeated if woken early). */
void parley_sleep_ns(uint64_t ns);

/* Services (parley/svc.h frames them). Not for use from two vCPUs at
 * once: frames pass through one buffer of the SDK's. */
int64_t parley_svc_offer(const char *name);
/* A provider's next caller, without sleeping: PARLEY_OK with *c its
 * channel and caller (64 bytes, may be NULL) its name, or
 * PARLEY_E_TIMEOUT if none waits. */
int64_t parley_svc_accept(const char *name, struct parley_chan *c,
			  char *caller);

struct parley_svc_conn {
	struct parley_chan chan;
	uint32_t next_id;
	struct parley_svc_ids ids;     /* calls in flight */
};

/* Connect to `target`'s service `name` (the agent's policy decides).
 * detail as for parley_chan_open. A call draws on the same bucket as
 * the opens: PARLEY_E_LIMIT past it, try again later. */
int64_t parley_svc_connect(const char *name, const char *target,
			   struct parley_svc_conn *s, char *detail);
/* Send a request; *id gets its call id. PARLEY_E_LIMIT when
 * PARLEY_SVC_INFLIGHT calls await their answers. */
int64_t parley_svc_send(struct parley_svc_conn *s, const void *req,
			uint32_t len, uint32_t *id);
/* The next response (of any call in flight), sleeping until one comes.
 * PARLEY_E_INVAL if the provider sent a malformed frame or an answer to a
 * call not in flight; PARLEY_E_PEER_DOWN if it stopped. */
int64_t parley_svc_recv(struct parley_svc_conn *s, uint32_t *id,
			int32_t *status, void *buf, uint32_t cap,
			uint32_t *len);
/* One call: send, then wait for its answer (no other call in flight). */
int64_t parley_svc_call(struct parley_svc_conn *s, const void *req,
			uint32_t len, int32_t *status, void *buf,
			uint32_t cap, uint32_t *out_len);

/* Provider side, on an accepted channel: the next request without
 * sleeping (PARLEY_E_TIMEOUT: none; PARLEY_E_INVAL: malformed), and the
 * answer to one. */
int64_t parley_svc_try_request(struct parley_chan *c, uint32_t *id,
			       void *buf, uint32_t cap, uint32_t *len);
int64_t parley_svc_reply(struct parley_chan *c, uint32_t id, int32_t status,
			 const void *buf, uint32_t len);
/* Sleep until one of chans has data or timeout_ns passes; the rest as
 * parley_chan_wait (ready bit i: chans[i]). */
int64_t parley_svc_wait(struct parley_chan *const *chans, uint32_t n,
			uint64_t timeout_ns, uint64_t *ready);

/* Segment sets (parley/segsdk.h builds pipes, queues and areas on the
 * window). Attach maps the set: segment i at base + seg[i].offset. */
struct parley_segset {
	uint64_t handle;   /* segment 0's window: woken on table changes */
	uint8_t *base;     /* the window */
	uint64_t size;     /* its bytes */
	uint32_t self;     /* this partition's member id */
};
/* Join set `name`: PARLEY_OK or a parley_status (detail, 64 bytes or NULL,
 * gets the file that differed on PARLEY_E_INTEGRITY). An attach draws on
 * the same bucket as the opens: PARLEY_E_LIMIT past it, try again
 * later. */
int64_t parley_seg_attach(const char *name, struct parley_segset *s,
			  char *detail);
int64_t parley_seg_detach(const char *name);
/* A checked copy of the table, retried while the agent writes it:
 * PARLEY_SEG_OK or _CORRUPT. */
int parley_seg_table(const struct parley_segset *s, struct parley_segtab *t);
/* Sleep until the table changes (a member joined or left), timeout_ns
 * passes or the set is gone: PARLEY_OK (maybe early), PARLEY_E_TIMEOUT,
 * PARLEY_E_CLOSED (this member was removed). */
int64_t parley_seg_wait(const struct parley_segset *s, uint64_t timeout_ns);

/* SHA-256 (for the examples' key files). */
void parley_sha256(const void *data, size_t len, uint8_t out[32]);

/* Console. */
int parley_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int parley_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int parley_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void parley_puts(const char *s);

/* Boot info helpers. */
const struct parley_config_file *parley_config_find(
	const struct parley_boot_info *bi, const char *name);
const char *parley_cmdline_get(const struct parley_boot_info *bi,
			       const char *key, size_t *len);
long parley_cmdline_int(const struct parley_boot_info *bi, const char *key,
			long dflt);
static inline uint64_t parley_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* The few libc pieces partitions need (gcc also emits calls to mem*). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#endif
