/*
 * Which engine runs a partition inside its vmm process (DESIGN.md §4,
 * Backends): kvm where /dev/kvm is usable, process (ptrace'd stub
 * processes) everywhere else. The choice is made here, once per partition,
 * and travels to the vmm in CTL_LAUNCH with the fd it needs.
 */
#ifndef PARLEY_AGENT_BACKEND_H
#define PARLEY_AGENT_BACKEND_H

#include <stdint.h>
#include "agent/ctl/ctl.h"
#include "common/err.h"

#define BACKEND_AUTO 0u   /* kvm if usable, else process */

/* "kvm", "process", "auto" -> enum ctl_backend or BACKEND_AUTO. */
int backend_parse(const char *s, uint32_t *out);
const char *backend_name(uint32_t b);

/* NULL if /dev/kvm can run partitions here, else why not (static text). */
const char *backend_kvm_missing(void);

/* What `want` comes to on this host and why, for the log, e.g.
 * "backend: process (auto: /dev/kvm does not exist)". */
void backend_describe(uint32_t want, char *out, size_t cap);

/* Resolve `want` (BACKEND_AUTO or a backend) to the one to use: auto
 * picks kvm when it is usable. An explicit kvm without a usable /dev/kvm
 * is an error naming why. */
int backend_resolve(uint32_t want, uint32_t *out, struct parley_err *err);

/* Open what the vmm needs for this backend (/dev/kvm, or the stub
 * executable found beside vmm_path), O_CLOEXEC. Returns the fd. */
int backend_open_fd(uint32_t b, const char *vmm_path, struct parley_err *err);

#endif
