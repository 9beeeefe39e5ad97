/*
 * The jail every parley-vmm process starts in (DESIGN.md §2, "What the
 * kernel enforces"): its own unprivileged uid/gid from a configured range,
 * fresh PID, mount, IPC, UTS and network namespaces, a root that holds
 * nothing but the vmm's own loader and libraries (read-only; nothing at
 * all for a static vmm) and no /proc, no capabilities in any set,
 * no_new_privs, its end when its control socket's last holder (the
 * agent, or the one it handed it over to) is gone, and exactly the fds it is
 * handed (CTL_FD_SOCK..CTL_FD_MEM_RO, stdin/stdout on /dev/null, the
 * agent's stderr). The vmm binary is opened by the agent and exec'd by fd,
 * since the jail's root does not hold it.
 *
 * What can be prepared once is prepared once per agent (and per vmm
 * binary): the jail's root as a mount namespace of its own, which each vmm
 * copies (one small tree) instead of copying the host's.
 */
#ifndef PARLEY_AGENT_VMM_JAIL_H
#define PARLEY_AGENT_VMM_JAIL_H

#include <stdint.h>
#include <sys/types.h>
#include "common/err.h"

/* Default uids (and gids, the same numbers) for vmm processes: above the
 * 16-bit range where /etc/passwd users, system users and systemd's dynamic
 * users (61184-65519) live, and well clear of the first /etc/subuid blocks
 * (100000 + 65536 per user), so no vmm shares an id with anything that owns
 * files or processes on the host; 65536 of them, one per live partition. */
#define VMM_JAIL_UID_FIRST 6000000u
#define VMM_JAIL_UID_LAST 6065535u

/* "FIRST-LAST" (decimal, FIRST <= LAST, FIRST > 65535 and LAST below
 * 2^32-1, which is (uid_t)-1): fills the range or returns -EINVAL. */
int vmm_jail_parse_range(const char *s, uint32_t *first, uint32_t *last);

/* The uids vmm processes of this agent take, one per live vmm. Call before
 * the first vmm_jail_spawn (later calls fail with -EBUSY while a vmm of
 * the old range is alive). Default: VMM_JAIL_UID_FIRST..LAST. */
int vmm_jail_set_uid_range(uint32_t first, uint32_t last,
			   struct parley_err *err);

/* The range in force (QEMU's per-VM uids, agent/vm/vmhost.h, must stay
 * clear of it). */
void vmm_jail_uid_range(uint32_t *first, uint32_t *last);

/* What to start: the vmm at vmm_path with argv { vmm_path, name }, and the
 * four fds it receives as CTL_FD_SOCK, CTL_FD_MEM, CTL_FD_BACKEND,
 * CTL_FD_MEM_RO (the caller keeps and closes its own). */
struct vmm_jail_req {
	const char *vmm_path;
	const char *name;
	int fds[4];
	/* Device plugins' verified copies (agent/plugin/plugdir.h), read-only
	 * fds of files on a real mount: each is bound, read-only, at
	 * VMM_JAIL_PLUGIN_DIR "/<i>" in the vmm's root, the only way a vmm
	 * without /proc can dlopen it. Not for an unprivileged agent. */
	const int *plugin_fds;
	unsigned nplugin;
};

#define VMM_JAIL_PLUGIN_DIR "/plugins"
#define VMM_JAIL_PLUGINS_MAX 16

/* Start the vmm in a new jail. On success *pid is its pid (in our PID
 * namespace; the caller waits for it), and *uid the uid it runs as, owned
 * by it until it is gone (then reused). Returns 0 or a negative errno with
 * err naming the step that failed. */
int vmm_jail_spawn(const struct vmm_jail_req *r, pid_t *pid, uint32_t *uid,
		   struct parley_err *err);

/* A vmm taken over from the agent before us (agent/update_adopt.c): its
 * uid is held until its pidfd says it is gone, as for one we started.
 * -ERANGE outside the range, -EEXIST if another vmm holds it. */
int vmm_jail_adopt_uid(uint32_t uid, int pidfd, struct parley_err *err);

#endif
