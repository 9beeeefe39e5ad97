/*
 * The agent's side of an update from a partition: the UPDATE_* hypercalls
 * a vmm forwards (CTL_UPDATE_REQ), the one staging area under the state
 * directory, and the verdict on a complete package (common/updpkg.h)
 * before anything is staged. See agent/update/README.md.
 *
 *   STATE/release.pub          the release key this agent trusts
 *   STATE/update/              0700
 *   STATE/update/incoming.pkg  0600, the package while it streams in
 *   STATE/update/stage.tmp/    being written: a partial stage
 *   STATE/update/stage/        0700: parley-agent, parley-vmm (0755) and
 *                              manifest.json (0644), verified
 *
 * incoming.pkg and stage.tmp are partial by definition: upd_stage_open()
 * discards them (audited), so an agent killed mid-stream never resumes
 * or trusts a half-written package.
 */
#ifndef PARLEY_AGENT_UPDATE_STAGE_H
#define PARLEY_AGENT_UPDATE_STAGE_H

#include <limits.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "agent/ctl/ctl.h"
#include "agent/ipc/audit.h"
#include "common/err.h"
#include "common/updpkg.h"

struct partition;
struct grant_set;

/* Asks for a verified stage to be handed over (agent/update_commit.h).
 * The hand-over runs from the agent's loop once the partition has its
 * answer (a vCPU waiting on a grant manager that is leaving would never
 * get one): 0 = scheduled; the new agent reports COMMITTED, a rollback
 * sets FAILED (upd_stage_failed). */
typedef int (*upd_commit_fn)(void *ctx, const char *stage_dir,
			     struct parley_err *err);

struct upd_stage {
	int dirfd;                 /* STATE/update, or -1: no updates here */
	char dir[PATH_MAX];
	EVP_PKEY *release;         /* STATE/release.pub, or NULL */
	struct updpkg_running run; /* what a package is checked against */
	struct audit *audit;
	/* The policy in force (the grant manager's, updated in place on a
	 * reload), which may narrow the capability specs ask for; NULL:
	 * specs alone decide. */
	const struct grant_set *policy;
	int fd;                    /* incoming.pkg while receiving, else -1 */
	char owner[64];            /* the partition streaming it */
	uint64_t size, received;
	uint32_t state;            /* enum parley_update_state */
	char detail[64];           /* the last refusal or failure */
	upd_commit_fn commit;      /* NULL: stop at a verified stage */
	void *commit_ctx;
	/* The daemon's stream (owner UPD_DAEMON): the offer's digest, and
	 * whether the daemon is still owed the outcome (a rollback after
	 * the link went, or the new agent's "committed"). */
	bool from_daemon;
	uint8_t sha256[32];
	char version[32];
	bool report_due;
};

/* Where the daemon's stream stands, for an UpdateProgress (wire.h's
 * states: receiving, staged, refused, failed, committed, busy). */
struct upd_report {
	const char *state;
	uint64_t received;
	char reason[256];
};

/* The owner of the stage while the daemon streams: not a partition name
 * (no parentheses in names), so neither side takes it for the other. */
#define UPD_DAEMON "(daemon)"

/* An offer from the daemon (serve): starts a stream into the same
 * incoming.pkg a partition's goes to, or goes on with the one held for
 * the same digest and size (a reconnect mid-transfer: r->received says
 * from where). A partition streaming, or a stage being handed over,
 * answers busy; no release key or state directory, failed. */
void upd_daemon_offer(struct upd_stage *s, const uint8_t sha256[32],
		      uint64_t size, const char *version,
		      struct upd_report *r);

/* A chunk of the daemon's stream: only at the offset held (else r says
 * where to go on from); the last one verifies the whole package with the
 * same checks as a partition's COMMIT and, if good, stages it and asks
 * for the hand-over (r: staged, refused or failed with the reason).
 * false: not about the stream held (a stale chunk): no answer. */
bool upd_daemon_chunk(struct upd_stage *s, const uint8_t sha256[32],
		      uint64_t offset, const uint8_t *data, size_t len,
		      struct upd_report *r);

/* The hand-over of a stage failed and the old agent serves on: STATUS
 * answers FAILED with the reason. */
void upd_stage_failed(struct upd_stage *s, const char *why);

/* No updates (no state directory): every request gets NOSYS. */
void upd_stage_none(struct upd_stage *s, struct audit *audit);

/* Make STATE/update (0700) if need be, discard a partial stage left by a
 * killed agent (audited as update_discarded), and load STATE/release.pub
 * if there is one. 0 or -errno with err set. */
int upd_stage_open(struct upd_stage *s, const char *state_dir,
		   struct audit *audit, struct parley_err *err);

void upd_stage_close(struct upd_stage *s);

/* The partition `name` stopped: a stage it was streaming is discarded. */
void upd_stage_gone(struct upd_stage *s, const char *name);

/* One request, checked by ctl_read; the answer goes back to the vmm
 * (CTL_UPDATE_REPLY). Reads WRITE's bytes from p's memory after checking
 * the range itself. */
void upd_on_request(struct upd_stage *s, struct partition *p,
		    const struct ctl_update_req *q);

/* The answer to one request, without sending it: for tests and the
 * above. */
void upd_answer(struct upd_stage *s, struct partition *p,
		const struct ctl_update_req *q, struct ctl_update_reply *r);

#define UPD_DIR "update"
#define UPD_INCOMING "incoming.pkg"
#define UPD_STAGE "stage"
#define UPD_STAGE_TMP "stage.tmp"
#define UPD_RELEASE_PUB "release.pub"

#endif
