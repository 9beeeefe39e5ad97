/*
 * The main process's side of privilege separation: its options, and the
 * step where it stops being root.
 *
 *   --user NAME               whom the main process becomes when started
 *                             as root (default "parley"; when no such
 *                             user exists, "nobody", with a warning)
 *   --checkpoint-key FILE     default STATE_DIR/checkpoint.key (made at
 *                             the first start)
 *   --checkpoint-interval S   sign the audit head every S seconds when it
 *                             moved (default 60; 0 = only on demand)
 */
#ifndef PARLEY_DAEMON_PRIVSEP_H
#define PARLEY_DAEMON_PRIVSEP_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include "common/err.h"

#define PRIVSEP_DEFAULT_USER "parley"
#define PRIVSEP_FALLBACK_USER "nobody"
#define CKPT_DEFAULT_INTERVAL_S 60

struct privsep_config {
	char user[64];
	bool user_set;
	char ckpt_key[PATH_MAX];        /* "" = the default */
	uint32_t ckpt_interval_s;
};

/* Take the options above out of argv (as join_take_args does). */
int privsep_take_args(int *argc, char **argv, struct privsep_config *pc,
		      struct parley_err *err);

/* Started as root: make the store file (and its -wal, -shm) and its
 * directory the user's -- unless that directory is sticky or world
 * writable, /tmp-like, and so writable already -- then drop to the user
 * for good (groups, gid, uid; regaining root is checked to fail). Not
 * root: nothing to drop, a warning that the key files stay readable to
 * this process. *uid gets the uid we run as afterwards. */
int privsep_drop(const struct privsep_config *pc, const char *store,
		 unsigned *uid, struct parley_err *err);

#endif
