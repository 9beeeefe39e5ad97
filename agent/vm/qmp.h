/*
 * The agent's own QMP monitor on a VM's QEMU (a second monitor beside
 * libvirt's: -chardev socket in STATE/vm/NAME.mon/, QEMU listening), so a
 * channel's hot-plug is two pipelined batches rather than a libvirt round
 * trip per command (agent/vm/README.md: vm_chan_open_ms).
 *
 * QEMU is not trusted: its answers are read line by line with a size cap
 * and a deadline, events skipped, and a stream that breaks either is
 * closed for good (the caller reconnects or falls back to libvirt).
 * Commands go in order, each with at most one descriptor (SCM_RIGHTS)
 * sent with its text in one sendmsg: the kernel hands the descriptor over
 * with that text's first byte and glues nothing after it into the same
 * read, and QEMU (no out-of-band execution negotiated) reads its monitor
 * a byte at a time and not past a command it has not answered, so each
 * descriptor is there for its own command and no other's.
 */
#ifndef PARLEY_AGENT_VM_QMP_H
#define PARLEY_AGENT_VM_QMP_H

#include <stddef.h>
#include "common/err.h"

#define QMP_LINE_MAX 4096

/* How long QEMU may take to answer anything (greeting, a batch): it
 * answers a hot-plug batch in ~15 ms under TCG; past this the agent takes
 * it for a QEMU that stalls its loop on purpose. */
#define QMP_ANSWER_MS 3000

struct qmp_cmd {
	const char *json;           /* {"execute": ...} */
	int fd;                     /* passed along, or -1 */
	int rc;                     /* out: 0 ({"return"}), -EIO ({"error"}) */
	char reply[256];            /* out: the answer's start */
};

/* Connect to the monitor socket at path (waiting up to timeout_ms for
 * QEMU to listen; a listener that does not accept within a second is
 * given up: the connect never blocks), read its greeting and leave capabilities negotiation
 * mode. The fd (O_CLOEXEC), or -errno. */
int qmp_open(const char *path, int timeout_ms, struct parley_err *err);

/* Send n commands at once, then read their n answers (up to timeout_ms
 * in all). 0 when every command was answered (each one's rc says how),
 * or -errno when the stream broke (close fd: it is out of step). */
int qmp_batch(int fd, struct qmp_cmd *c, unsigned n, int timeout_ms,
	      struct parley_err *err);

/* One command whose answer may be long (query-pci, qom-list,
 * query-fdsets): *out gets the whole {"return": ...} line (free it),
 * up to QMP_LONG_MAX bytes; an error answer or a longer line is -EPROTO
 * / -EMSGSIZE (the stream is then out of step: close fd). */
#define QMP_LONG_MAX (256 * 1024)
int qmp_call_long(int fd, const char *json, char **out, int timeout_ms,
		  struct parley_err *err);

/* The number after key (e.g. "\"fd\":") in an answer: a plain decimal
 * below QMP_INT_MAX (descriptor and fdset numbers), else -EPROTO. */
#define QMP_INT_MAX (1 << 24)
int qmp_int(const char *reply, const char *key, int *out);

#endif
