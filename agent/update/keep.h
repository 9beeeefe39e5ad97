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

#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"

#define UPD_CURRENT "current"
#define UPD_PREVIOUS "previous"
#define UPD_PREVIOUS_OLD "previous.old"  /* only between two renames */
#define UPD_CURRENT_TMP "current.tmp"    /* being seeded */

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

/* Before the first hand-over: if STATE/update/current does not exist,
 * make it from what runs now (a copy of self_exe, normally /proc/self/exe,
 * and of vmm, with a manifest giving version), through current.tmp and
 * one rename, so that the update that follows keeps it as previous.
 * Called by the OLD agent before it starts the new one: what it writes
 * describes what runs, whether the hand-over then commits or rolls back.
 * 1 made, 0 already there (or no state_dir), -errno. */
int upd_keep_seed(const char *state_dir, const char *self_exe,
		  const char *vmm, const char *version,
		  struct parley_err *err);

/* A hand-over to a directory named "previous" is an explicit rollback:
 * -ENOENT with "no previous version to roll back to ..." when it holds no
 * manifest, 0 otherwise (and for any other directory). */
int upd_keep_check(const char *stage_dir, struct parley_err *err);

/* Is stage_dir a directory named "previous"? */
bool upd_keep_is_previous(const char *stage_dir);

/* What the running agent does before a hand-over to stage_dir: refuse a
 * rollback with no previous (audited "update_rollback_refused", -ENOENT,
 * err says why), audit an explicit one ("update_rollback_requested"), and
 * seed current (upd_keep_seed; vmm NULL: the default beside us; a failure
 * there is audited "update_keep_failed" and not fatal). 0 or -errno. */
int upd_keep_before(struct audit *audit, const char *state_dir,
		    const char *stage_dir, const char *vmm,
		    const char *version, struct parley_err *err);

/* Remove a leftover previous.old (an agent killed between the renames
 * above). 1 if there was one, 0 if not, -errno. */
int upd_keep_tidy(int update_dirfd);

/* Remove NAME, a directory of plain files under dirfd, never following a
 * symlink. 1 if it was there, 0 if not, -errno. */
int upd_rm_dir(int dirfd, const char *name);

#endif
