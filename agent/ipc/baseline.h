/*
 * Baselines in standalone mode: a local JSON file of expected digests per
 * partition, read before a partition starts.
 *
 *   { "partitions": { "ping": { "digest": "<hex>",
 *                               "files": { "motd": "<hex>" },
 *                               "segments": [ "<hex>", ... ],
 *                               "plugins": { "xts": "<hex>" } } } }
 *
 * "plugins" (the device plugins the vmm loads, agent/plugin/): recorded
 * at enrolment when there are any; when listed, the partition's must be
 * exactly those files (a plugin swapped, added or dropped since is a
 * mismatch naming it); an entry without it does not check them.
 *
 * Guest-reported digests (Linux VMs, agent/vm/: a file inside the guest
 * as the guest's own tool hashed it — the guest's word, weaker than a
 * measurement the agent makes) sit apart, per partition and path:
 *
 *   { "guest_reported": { "guest": { "/etc/app.conf": "<hex>" } } }
 *
 * enrolled at a path's first report (enroll mode) and compared after.
 *
 * `enroll`: a partition with no entry gets its first measurement recorded;
 * one with an entry must match it. `golden`: the operator wrote the entries;
 * a partition must have one and match it. A mismatch names the file.
 */
#ifndef PARLEY_IPC_BASELINE_H
#define PARLEY_IPC_BASELINE_H

#include <jansson.h>
#include "agent/ipc/measure.h"
#include "common/err.h"

enum baseline_mode { BASELINE_ENROLL, BASELINE_GOLDEN };

struct baseline_db {
	json_t *root;          /* validated: shape as above */
	enum baseline_mode mode;
	char *path;
	bool changed;
};

#define BASELINE_FILE_MAX (4 * 1024 * 1024)
#define BASELINE_GUEST_FILES_MAX 64   /* guest-reported paths per partition */
#define BASELINE_GUEST_PATH_MAX 128   /* with the NUL (PARLEY_VMCTL_PATH_MAX) */

/* Load and validate (a missing file is an empty db in enroll mode). */
int baseline_load(struct baseline_db *db, const char *path,
		  enum baseline_mode mode, struct parley_err *err);
/* Parse a document (exported for tests and fuzzing). */
int baseline_parse(struct baseline_db *db, const char *json, size_t len,
		   struct parley_err *err);

/* Check a new measurement of partition `name`; in enroll mode record it
 * when there is no entry. 0 when the partition may start; -EBADMSG with a
 * message naming the file that differs; -ENOENT (golden) for no entry. */
int baseline_admit(struct baseline_db *db, const char *name,
		   const struct measure *m, struct parley_err *err);

/* A guest-reported digest of `path` in partition `name`: 0 when it
 * matches the baseline, or (enroll mode) was enrolled as it (*enrolled);
 * -EBADMSG naming the path when it differs, or golden mode has none;
 * -ENOSPC past BASELINE_GUEST_FILES_MAX; -EINVAL for a bad name/path. */
int baseline_guest_report(struct baseline_db *db, const char *name,
			  const char *path, const uint8_t digest[MEASURE_DIGEST],
			  bool *enrolled, struct parley_err *err);

/* An empty enroll-mode db kept in memory only (no file: baseline_save
 * does nothing). */
int baseline_memory(struct baseline_db *db);

/* Write the db back if enrolment changed it (atomically). */
int baseline_save(struct baseline_db *db, struct parley_err *err);
void baseline_free(struct baseline_db *db);

#endif
