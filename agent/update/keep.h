/*
 * The versions an agent keeps for an explicit rollback:
 *
 *   STATE/update/current/   the verified stage the running agent came from
 *   STATE/update/previous/  the one before it
 *
 * each with its parley-agent, parley-vmm and manifest.json, as staged
 * (agent/update/stage.h). They move only by renameat in STATE/update,
 * followed by an fsync of that directory, and only by the NEW agent once
 * it serves (after the hand-over's COMMIT): a hand-over that rolls back
 * leaves both as they were.
 *
 * An operator rolls back by handing over to previous/ (`--update-stage
 * STATE/update/previous` + SIGUSR1); the new agent then swaps current and
 * previous (renameat2 RENAME_EXCHANGE, one atomic step), so a second
 * rollback goes forward again.
 */
#ifndef PARLEY_AGENT_UPDATE_KEEP_H
#define PARLEY_AGENT_UPDATE_KEEP_H

#include <stddef.h>
#include "common/err.h"

#define UPD_CURRENT "current"
#define UPD_PREVIOUS "previous"
#define UPD_PREVIOUS_OLD "previous.old"  /* only between two renames */

enum upd_keep_how {
	UPD_KEPT_NONE,      /* we run from elsewhere: nothing moved */
	UPD_KEPT_FORWARD,   /* stage -> current, current -> previous */
	UPD_KEPT_BACK,      /* previous <-> current */
};

/* Called by the agent that took over, once it serves. update_dir is
 * STATE/update; served_dir the directory its own binary was started from
 * (the stage the old agent handed over to). Moves the directories as
 * above; vmm_out (cap bytes) gets the vmm path that stays valid afterwards
 * (current/parley-vmm) when something moved. Returns enum upd_keep_how or
 * -errno with err set (then nothing the running agent needs was lost:
 * the binaries run and the vmm path is only changed on success). */
int upd_keep(const char *update_dir, const char *served_dir, char *vmm_out,
	     size_t cap, struct parley_err *err);

/* The same from what an agent knows: its --state-dir (NULL: nothing kept)
 * and its argv[0], which the old agent set to STAGE/parley-agent. */
int upd_keep_served(const char *state_dir, const char *argv0, char *vmm_out,
		    size_t cap, struct parley_err *err);

/* upd_keep_served, audited ("update_kept", or "update_keep_failed" with
 * the reason: never fatal, the new agent serves either way) and said on
 * stderr; vmm (cap bytes) becomes current/parley-vmm when it moved. */
struct audit;
void upd_keep_audited(struct audit *audit, const char *state_dir,
		      const char *argv0, char *vmm, size_t cap);

/* Remove a leftover previous.old (an agent killed between the renames
 * above). 1 if there was one, 0 if not, -errno. */
int upd_keep_tidy(int update_dirfd);

/* Remove NAME, a directory of plain files under dirfd, never following a
 * symlink. 1 if it was there, 0 if not, -errno. */
int upd_rm_dir(int dirfd, const char *name);

#endif
