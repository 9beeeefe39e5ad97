/*
 * The agent's own QMP monitor on a VM's QEMU (a second monitor beside
 * libvirt's: -chardev socket in STATE/vm/NAME.mon/, QEMU listening), so a
 * channel's hot-plug is two pipelined batches rather than a libvirt round
 * trip per command (agent/vm/README.md: vm_chan_open_ms).
 *
 * QEMU is not trusted: its answers are read line by line with a size cap
 * and a deadline, events skipped, and a stream that breaks either is
 * closed for good (the caller reconnects or falls back to libvirt).
 * Commands go in order, each with at most one descriptor (SCM_RIGHTS);
 * without out-of-band execution QEMU reads the next command only once the
 * previous one is done, so each descriptor reaches its own command.
 */
#ifndef PARLEY_AGENT_VM_QMP_H
#define PARLEY_AGENT_VM_QMP_H

#include <stddef.h>
#include "common/err.h"

#define QMP_LINE_MAX 4096

struct qmp_cmd {
	const char *json;           /* {"execute": ...} */
	int fd;                     /* passed along, or -1 */
	int rc;                     /* out: 0 ({"return"}), -EIO ({"error"}) */
	char reply[256];            /* out: the answer's start */
};

/* Connect to the monitor socket at path (waiting up to timeout_ms for
 * QEMU to listen), read its greeting and leave capabilities negotiation
 * mode. The fd (O_CLOEXEC), or -errno. */
int qmp_open(const char *path, int timeout_ms, struct parley_err *err);

/* Send n commands at once, then read their n answers (up to timeout_ms
 * in all). 0 when every command was answered (each one's rc says how),
 * or -errno when the stream broke (close fd: it is out of step). */
int qmp_batch(int fd, struct qmp_cmd *c, unsigned n, int timeout_ms,
	      struct parley_err *err);

#endif
