/*
 * The facts parley-vmm and its process-backend stub (parley-vmm-stub) share:
 * where the stub lives, where its one syscall instruction is, and how its
 * first stop hands over what the vmm needs. Both are built from this header;
 * nothing else includes it.
 */
#ifndef PARLEY_STUB_H
#define PARLEY_STUB_H

/* The stub is linked far above 4 GiB, so it never overlaps the partition's
 * guest-physical addresses [0, 4 GiB) that the vmm maps at the same
 * virtual addresses. */
#define STUB_BASE 0x600000000000ull

/* The injection site: a page holding `syscall; int3` and nothing else. The
 * vmm sets rip here to make the stub run one syscall; the int3 after it
 * hands control back. The stub's seccomp filter allows the few injected
 * calls only when they come from here (seccomp_data.instruction_pointer is
 * the address after the syscall instruction: STUB_SITE + 2). */
#define STUB_SITE 0x600000100000ull
#define STUB_SITE_LEN 3

/* The syscall that asks the vmm (the seccomp user-notification listener)
 * to install descriptors in the stub: getppid, which nothing else uses. */
#define STUB_NR_FDS 110 /* __NR_getppid */

/* Descriptors the stub is exec'd with (the vmm's fixed numbers): the guest
 * memory read-write and read-only. Closed by injection once mapped. */
#define STUB_FD_MEM 4
#define STUB_FD_MEM_RO 6

/* At its first stop the stub holds, in rdx, its seccomp listener fd. */

#endif
