/*
 * The jail's root (see vmm_jail.h): a mount namespace built once per vmm
 * binary by a helper process, holding only that binary's ELF interpreter
 * and shared libraries, read-only, and no /proc. Each jailed vmm copies
 * it; an unprivileged agent's vmm builds it itself in its own user
 * namespace (vmm_root_enter, async-signal-safe).
 */
#ifndef PARLEY_AGENT_VMM_ROOT_H
#define PARLEY_AGENT_VMM_ROOT_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include "common/err.h"

/* Where the helper builds a jail root: a tmpfs mounted over this directory
 * inside the helper's own mount namespace (the host's /tmp is untouched). */
#define STAGE_DIR "/tmp"
#define JAIL_LIBS_MAX 32

/* What one vmm binary needs in its root: its ELF interpreter and shared
 * libraries (none for a static binary), as the host's loader finds them. */
struct jail_libs {
	unsigned n;
	char *path[JAIL_LIBS_MAX];
	char *dst[JAIL_LIBS_MAX];  /* STAGE_DIR + path, for the helper */
	char ld_path[1024]; /* LD_LIBRARY_PATH: their directories */
};

struct jail_root {
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	int ns_fd;                 /* the prepared root; -1 unprivileged */
	dev_t root_dev;            /* that root as its template saw it after */
	ino_t root_ino;            /* its pivot_root: where a vmm must land */
	struct jail_libs libs;     /* unprivileged: each vmm builds its root */
	char ld_path[1024];
};

/* An agent that is not root cannot switch uids or make namespaces of the
 * host's user namespace: each vmm then gets a user namespace of its own
 * (its range uid inside, the agent's uid outside), in which it builds its
 * root itself and makes its own PID, mount, IPC, UTS and network
 * namespaces. Weaker than the root agent's jail (the vmm shares the
 * agent's host uid), still without /proc, capabilities or other fds. */
static inline bool vmm_jail_unprivileged(void)
{
	return geteuid() != 0;
}

/* The root for this vmm binary, built on first use; the caller serialises
 * calls (vmm_jail.c's lock). */
int vmm_root_get(int vmm_fd, const char *vmm, const struct jail_root **out,
		 struct parley_err *err);

/* The empty network namespace every vmm of this agent joins, made with the
 * first root (-1 before that, and for an unprivileged agent). */
int vmm_root_net_ns(void);

/* In a jail child (raw system calls only): mount the staged libraries as
 * the read-only root and pivot into it. */
int vmm_root_enter(const struct jail_libs *l);

#endif
