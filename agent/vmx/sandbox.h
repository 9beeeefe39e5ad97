/* The vmm process's seccomp allowlist, loaded after set-up and before any
 * guest instruction runs. */
#ifndef PARLEY_VMX_SANDBOX_H
#define PARLEY_VMX_SANDBOX_H

#include "common/err.h"

/* Confine the calling process (all its threads) to what a running vmm
 * needs. Anything else kills the process with SIGSYS. */
int vmx_sandbox_enter(struct parley_err *err);

#endif
