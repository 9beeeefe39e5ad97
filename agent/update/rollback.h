/*
 * The daemon asks for a rollback (UpdateRollback, issue 12): the agent
 * hands over to the version it keeps as STATE/update/previous exactly as
 * SIGUSR1 with `--update-stage STATE/update/previous` does (keep.h:
 * upd_keep_before, then update_commit), and says how it went in an
 * UpdateProgress with no sha256:
 *
 *   refused  it keeps no previous, or previous holds another version than
 *            the daemon expects (nothing was started)
 *   busy     an update is being received, staged or handed over
 *   failed   the hand-over rolled back: this agent serves on
 *   (committed comes from the agent that took over, as after an update)
 *
 * Each request carries the daemon's id; a request this agent already
 * handled (the daemon sends it again after a reconnect until it hears an
 * answer) is answered with the same outcome, never handed over twice.
 * Audited here: update_rollback_received, update_rollback_refused (and by
 * upd_keep_before: update_rollback_requested / _refused; by
 * update_commit: update_rollback when the hand-over fails).
 */
#ifndef PARLEY_AGENT_UPDATE_ROLLBACK_H
#define PARLEY_AGENT_UPDATE_ROLLBACK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

struct audit;
struct upd_stage;

struct upd_rollback {
	uint64_t request;       /* the last request taken; 0 none */
	char state[16];         /* its outcome: refused, failed, busy; ""
				 * while it is being handed over */
	char reason[256];
	bool report_due;        /* the outcome is not told yet */
	char dir[PATH_MAX];     /* set: hand over to it between dispatches */
};

enum upd_rb_do {
	UPD_RB_NOTHING,         /* the same request, being handled now */
	UPD_RB_ANSWER,          /* tell rb's outcome to the daemon */
	UPD_RB_HAND_OVER,       /* hand over to rb->dir */
};

/* Why the agent cannot roll back now (a stream, a stage, a hand-over
 * under way), or NULL. pending: a hand-over is already asked for. */
const char *upd_rollback_busy(const struct upd_stage *u, bool pending);

/* The daemon's request: what to do with it. state_dir NULL: the agent
 * keeps no versions (refused). expect "" any; busy from
 * upd_rollback_busy. */
enum upd_rb_do upd_rollback_take(struct upd_rollback *rb,
				 struct audit *audit, const char *state_dir,
				 const char *expect, uint64_t request,
				 const char *busy);

/* The hand-over ended here (refused before it started, or rolled back):
 * the outcome to tell; rb->dir cleared. */
void upd_rollback_done(struct upd_rollback *rb, const char *state,
		       const char *reason);

/* (serve.c tells the daemon rb's outcome: an UpdateProgress without
 * sha256 if the link is up, else report_due and at the next welcome. Not
 * here: this file stays free of the link, for tests and fuzzing.) */

/* The version a kept directory's manifest.json names, into out. */
int upd_rollback_version(const char *kept_dir, char *out, size_t cap,
			 struct parley_err *err);

#endif
