/*
 * Agent updates from the daemon (issue 12), migration 9: packages stored
 * once by their SHA-256, one update row per host (the package it was last
 * asked to take and where that stands), and the agent version each host
 * last said hello with. The daemon checks a package (common/updpkg.h)
 * before it gets here; the store checks only what it stores.
 */
#ifndef PARLEY_DB_STORE_UPDATES_H
#define PARLEY_DB_STORE_UPDATES_H

#include "db/store.h"

#define STORE_UPD_VERSION_MAX 32     /* "X.Y.Z" */
/* Package bytes are stored in parts of this size (the last shorter). */
#define STORE_UPD_PART (256u * 1024)
#define STORE_UPD_STATE_MAX 16
#define STORE_UPD_REASON_MAX 256
#define STORE_AGENT_VERSION_MAX 65   /* Hello.agent_version, 64 bytes */

/* States of a host's update row:
 *   pending    asked for; not offered to the agent yet (or it was away)
 *   receiving  the agent takes chunks; `received` is how far it is
 *   staged     the agent verified and staged it; the hand-over runs
 *   committed  the host came back running it
 *   failed     staging or the hand-over failed; the old agent serves
 *   refused    the agent refused the package (reason says why) */
struct store_update {
	char host[STORE_NAME_MAX];
	uint8_t sha256[STORE_DIGEST];
	char version[STORE_UPD_VERSION_MAX];
	uint64_t size, received;
	char state[STORE_UPD_STATE_MAX];
	char reason[STORE_UPD_REASON_MAX];
	int64_t requested_ms, updated_ms;
};

/* Store package bytes under their SHA-256 (computed by the caller over
 * exactly these bytes) unless already there. version "X.Y.Z". */
int store_update_put_package(struct store *s, struct store_blob sha256,
			     const char *version, const void *data,
			     size_t len, struct parley_err *err);

/* Ask host for the package (which must be stored): its row becomes
 * pending at 0 bytes with no reason, replacing any earlier one. -ENOENT:
 * no such host or package. */
int store_update_request(struct store *s, const char *host,
			 struct store_blob sha256, struct parley_err *err);

/* The host's update row. -ENOENT when it has none. */
int store_update_get(struct store *s, const char *host,
		     struct store_update *out, struct parley_err *err);

/* Move the host's row for that package: state one of the above,
 * received <= size, reason text (may be ""). -ENOENT if the host's row
 * is for another package (a newer request replaced it) or absent. */
int store_update_set(struct store *s, const char *host,
		     struct store_blob sha256, const char *state,
		     uint64_t received, const char *reason,
		     struct parley_err *err);

/* Up to cap bytes of the package from offset into buf; *got the count
 * (less than cap only at the end; 0 at or past it). Reads only the parts
 * that hold them. -ENOENT: no such package. */
int store_update_read(struct store *s, struct store_blob sha256,
		      uint64_t offset, void *buf, size_t cap, size_t *got,
		      struct parley_err *err);

/* The agent version `host` said hello with (text, < 65 bytes). */
int store_host_agent_set(struct store *s, const char *host,
			 const char *version, struct parley_err *err);
/* "" when it never said. */
int store_host_agent_get(struct store *s, const char *host,
			 char out[STORE_AGENT_VERSION_MAX],
			 struct parley_err *err);

/* An operator's rollback through the daemon (migration 14,
 * db/store_rollbacks.c): one row per host, the rollback last asked of it.
 *   requested  waiting for the agent's answer (sent at each hello of an
 *              agent still running from_version, and when asked)
 *   committed  the agent that took over runs `version`
 *   refused    the agent would not (reason: no previous, another version)
 *   failed     the hand-over to previous rolled back (reason) */
#define STORE_RB_STATE_MAX 16
struct store_rollback {
	char host[STORE_NAME_MAX];
	uint64_t request;                         /* >= 1 */
	char state[STORE_RB_STATE_MAX];
	char expect_version[STORE_AGENT_VERSION_MAX]; /* "" any */
	char from_version[STORE_AGENT_VERSION_MAX];   /* when asked */
	char version[STORE_AGENT_VERSION_MAX];        /* committed */
	char reason[STORE_UPD_REASON_MAX];
	int64_t requested_ms, updated_ms;
};

/* Ask host for a rollback: its row becomes requested with the next
 * request id (*request; 1 for the first), replacing any earlier one.
 * expect_version and from_version: text (< 65 bytes, may be ""). -ENOENT:
 * no such host. */
int store_rollback_request(struct store *s, const char *host,
			   const char *expect_version,
			   const char *from_version, uint64_t *request,
			   struct parley_err *err);
/* The host's rollback row. -ENOENT when it has none. */
int store_rollback_get(struct store *s, const char *host,
		       struct store_rollback *out, struct parley_err *err);
/* The agent's answer to `request`: state committed (version the one now
 * running), refused or failed (reason). -ENOENT unless the host's row is
 * still requested for that very request. */
int store_rollback_set(struct store *s, const char *host, uint64_t request,
		       const char *state, const char *version,
		       const char *reason, struct parley_err *err);

#endif
