/*
 * The hand-over of a verified update (issue 12): the old grant manager
 * passes its state to the new agent in stage_dir and exits once that one
 * serves, or resumes serving itself (rollback).
 *
 * stage_dir holds a verified parley-agent, parley-vmm (0755) and
 * manifest.json (0644) in a 0700 directory, all owned by the agent
 * (agent/update/stage.h). 0 once the new agent serves; otherwise a
 * negative errno with err saying why, and the old agent still serving.
 *
 * Defined by the hand-over's branch; the update path (agent/update/)
 * calls it only behind a verified stage, and only where it is linked in
 * (agent/main.c refers to it weakly until then).
 */
#ifndef PARLEY_AGENT_UPDATE_COMMIT_H
#define PARLEY_AGENT_UPDATE_COMMIT_H

#include "common/err.h"

struct agent;

int update_commit(struct agent *a, const char *stage_dir,
		  struct parley_err *err);

#endif
