/*
 * Disk keys (issue 13, migration 10): each encrypted disk's XTS key,
 * wrapped by the daemon's key process (daemon/keys/), never in plain
 * text. One row per (partition, disk, key_version); the latest version is
 * the one released, an older one is kept until its agent confirms a
 * re-encryption. `withheld` is the partition's release state as the last
 * refresh found it ("" = released), so a bundle's builder only reads it
 * and a change of state is one policy version for the partition's host.
 *
 * Only db_* helpers of store_int.h run statements here; the two column
 * readers below are the only direct calls, kept in one place for the
 * statement-type conversion.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_disk(const char *disk, struct parley_err *err)
{
	int rc = db_check_name("disk name", disk, err);
	if (rc == 0 && strlen(disk) >= STORE_DISK_NAME_MAX)
		rc = perr(err, -EINVAL, "disk name \"%s\": at most %d bytes",
			  disk, STORE_DISK_NAME_MAX - 1);
	return rc;
}

static int latest_version(struct store *s, const char *partition,
			  const char *disk, uint64_t *v,
			  struct parley_err *err)
{
	static const char q[] =
		"SELECT COALESCE(MAX(key_version), 0) FROM disk_keys "
		"WHERE partition = ?1 AND disk = ?2";
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	db_bind_text(st, 2, disk);
	rc = db_int(s, st, "disk key version", &n, err);
	*v = rc < 0 ? 0 : (uint64_t)n;
	return rc;
}

int store_disk_key_version(struct store *s, const char *partition,
			   const char *disk, uint64_t *v,
			   struct parley_err *err)
{
	*v = 0;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = check_disk(disk, err);
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	return db_rd_end(s, latest_version(s, partition, disk, v, err), err);
}

/* A new policy version for the partition's host: its bundle changed. */
static int bump(struct store *s, const char *host, const char *change,
		uint64_t *pv, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_policy_new_version(s, change, &v, err);
	if (rc == 0)
		rc = db_policy_note_host(s, v, host, err);
	if (pv)
		*pv = rc < 0 ? 0 : v;
	return rc;
}

/* The state the partition's keys are in now: "" released, else why not
 * (its latest measurement differs from its baseline). A partition never
 * measured is released: the agent checks it against the baseline the
 * bundle carries before the key is used. */
static int release_state(struct store *s, const char *partition,
			 char *why, size_t cap, struct parley_err *err)
{
	static const char q[] =
		"SELECT b.digest, m.digest, m.seq FROM partitions p "
		"JOIN baselines b ON b.partition = p.name "
		"JOIN measurements m ON m.partition = p.name "
		"AND m.host = p.host "
		"WHERE p.name = ?1 ORDER BY m.seq DESC LIMIT 1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	why[0] = 0;
	rc = db_step(s, st, "disk key release state", err);
	if (rc == 1) {
		uint8_t b[STORE_DIGEST], m[STORE_DIGEST];
		rc = db_col_digest(s, st, 0, b, err);
		if (rc == 0)
			rc = db_col_digest(s, st, 1, m, err);
		if (rc == 0 && memcmp(b, m, STORE_DIGEST))
			snprintf(why, cap, "INTEGRITY: measurement seq %lld "
				 "differs from the baseline",
				 (long long)db_col_i64(st, 2));
	}
	db_reset(st);
	return rc < 0 ? rc : 0;
}

static int set_withheld(struct store *s, const char *partition,
			const char *why, struct parley_err *err)
{
	static const char q[] =
		"UPDATE disk_keys SET withheld = ?2 WHERE partition = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	db_bind_text(st, 2, why);
	return db_run(s, st, "disk key state", err);
}

static int add(struct store *s, const char *partition, const char *disk,
	       uint64_t version, struct store_blob wrapped, uint64_t *pv,
	       struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO disk_keys (partition, disk, key_version, wrapped,"
		" withheld, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
	char host[STORE_NAME_MAX], why[STORE_WITHHELD_MAX];
	uint64_t have = 0;
	int rc = db_need_partition(s, partition, host, err);
	if (rc == 0)
		rc = latest_version(s, partition, disk, &have, err);
	if (rc == 0 && version <= have)
		rc = perr(err, -EEXIST, "disk key %s/%s: version %llu, the "
			  "store has %llu", partition, disk,
			  (unsigned long long)version,
			  (unsigned long long)have);
	if (rc == 0)
		rc = release_state(s, partition, why, sizeof(why), err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	db_bind_text(st, 2, disk);
	db_bind_i64(st, 3, (int64_t)version);
	db_bind_blob(st, 4, wrapped.p, wrapped.len);
	db_bind_text(st, 5, why);
	db_bind_i64(st, 6, db_now_ms());
	rc = db_run(s, st, "add disk key", err);
	char change[160];
	snprintf(change, sizeof(change), "disk key %s/%s version %llu",
		 partition, disk, (unsigned long long)version);
	return rc < 0 ? rc : bump(s, host, change, pv, err);
}

int store_disk_key_add(struct store *s, const char *partition,
		       const char *disk, uint64_t version,
		       struct store_blob wrapped, uint64_t *policy_version,
		       struct parley_err *err)
{
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = check_disk(disk, err);
	if (rc == 0 && (version == 0 || version > INT64_MAX))
		rc = perr(err, -EINVAL, "disk key version %llu",
			  (unsigned long long)version);
	if (rc == 0 && (wrapped.len != STORE_WRAPPED_LEN || !wrapped.p))
		rc = perr(err, -EINVAL, "wrapped disk key: %zu bytes, not %d",
			  wrapped.len, STORE_WRAPPED_LEN);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	return db_op_end(s, add(s, partition, disk, version, wrapped,
				policy_version, err), err);
}

int db_key_row(struct store *s, struct db_stmt *st, void *elem,
	       struct parley_err *err)
{
	struct store_disk_key *k = elem;
	const void *p;
	memset(k, 0, sizeof(*k));
	int rc = db_col_name(s, st, 0, k->partition, sizeof(k->partition),
			     err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, k->host, sizeof(k->host), err);
	if (rc == 0)
		rc = db_col_name(s, st, 2, k->disk, sizeof(k->disk), err);
	if (rc == 0)
		rc = db_col_name(s, st, 5, k->withheld, sizeof(k->withheld),
				 err);
	if (rc == 0 && ((p = db_col_blob(st, 4)) == NULL ||
			db_col_bytes(st, 4) != STORE_WRAPPED_LEN))
		rc = perr(err, -EBADMSG, "store %s: a wrapped disk key of the "
			  "wrong size", s->path);
	if (rc == 0)
		memcpy(k->wrapped, p, STORE_WRAPPED_LEN);
	k->version = (uint64_t)db_col_i64(st, 3);
	k->created_ms = db_col_i64(st, 6);
	k->versions = (unsigned)db_col_i64(st, 7);
	return rc;
}

int store_disk_keys_list(struct store *s, const char *host,
			 const char *partition, struct store_disk_key **out,
			 struct parley_err *err)
{
	static const char q[] =
		"SELECT k.partition, p.host, k.disk, k.key_version, k.wrapped,"
		" k.withheld, k.created_ms,"
		" (SELECT COUNT(*) FROM disk_keys o WHERE o.partition ="
		"  k.partition AND o.disk = k.disk) "
		"FROM disk_keys k JOIN partitions p ON p.name = k.partition "
		"WHERE (?1 = '' OR p.host = ?1) AND (?2 = '' OR k.partition ="
		" ?2) AND k.key_version = (SELECT MAX(x.key_version) FROM"
		" disk_keys x WHERE x.partition = k.partition AND x.disk ="
		" k.disk) ORDER BY k.partition, k.disk";
	*out = NULL;
	int rc = db_check_opt_name("host name", host, err);
	if (rc == 0)
		rc = db_check_opt_name("partition name", partition, err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, host ? host : "");
		db_bind_text(st, 2, partition ? partition : "");
		rc = db_rows(s, st, "disk keys", sizeof(**out), db_key_row, NULL,
			     (void **)out, err);
	}
	return db_rd_end(s, rc, err);
}

int store_disk_key_get(struct store *s, const char *partition,
		       const char *disk, uint64_t version,
		       struct store_disk_key *out, struct parley_err *err)
{
	static const char q[] =
		"SELECT k.partition, p.host, k.disk, k.key_version, k.wrapped,"
		" k.withheld, k.created_ms, 1 "
		"FROM disk_keys k JOIN partitions p ON p.name = k.partition "
		"WHERE k.partition = ?1 AND k.disk = ?2 AND k.key_version = ?3";
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = check_disk(disk, err);
	if (rc == 0 && version > INT64_MAX)
		rc = perr(err, -ENOENT, "no such key version");
	struct db_stmt *st;
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, partition);
		db_bind_text(st, 2, disk);
		db_bind_i64(st, 3, (int64_t)version);
		rc = db_step(s, st, "disk key", err);
		if (rc == 0)
			rc = perr(err, -ENOENT, "disk key %s/%s version %llu: "
				  "none", partition, disk,
				  (unsigned long long)version);
		else if (rc == 1)
			rc = db_key_row(s, st, out, err);
		db_reset(st);
	}
	return db_rd_end(s, rc, err);
}

static int refresh(struct store *s, const char *partition, bool *changed,
		   char *why, size_t cap, uint64_t *pv,
		   struct parley_err *err)
{
	static const char q[] =
		"SELECT withheld FROM disk_keys WHERE partition = ?1 LIMIT 1";
	char host[STORE_NAME_MAX], was[STORE_WITHHELD_MAX] = "";
	struct db_stmt *st;
	int rc = db_need_partition(s, partition, host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	rc = db_step(s, st, "disk key state", err);
	bool any = rc == 1;
	if (rc == 1)
		rc = db_col_name(s, st, 0, was, sizeof(was), err);
	db_reset(st);
	if (rc < 0 || !any)
		return rc < 0 ? rc : 0;   /* no disk keys: nothing to do */
	rc = release_state(s, partition, why, cap, err);
	if (rc < 0 || !strcmp(was, why))
		return rc;
	*changed = true;
	rc = set_withheld(s, partition, why, err);
	char change[160];
	snprintf(change, sizeof(change), "disk keys of %s %s", partition,
		 why[0] ? "withheld" : "released");
	return rc < 0 ? rc : bump(s, host, change, pv, err);
}

int store_disk_keys_refresh(struct store *s, const char *partition,
			    bool *changed, char *why, size_t cap,
			    uint64_t *policy_version, struct parley_err *err)
{
	*changed = false;
	if (cap)
		why[0] = 0;
	if (policy_version)
		*policy_version = 0;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0 && cap < STORE_WITHHELD_MAX)
		rc = perr(err, -EINVAL, "disk key refresh: buffer of %zu", cap);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = refresh(s, partition, changed, why, cap, policy_version, err);
	if (rc < 0)
		*changed = false;
	return db_op_end(s, rc, err);
}

int store_disk_key_retire(struct store *s, const char *partition,
			  const char *disk, uint64_t keep,
			  unsigned *removed, struct parley_err *err)
{
	static const char q[] =
		"DELETE FROM disk_keys WHERE partition = ?1 AND disk = ?2 "
		"AND key_version < ?3";
	static const char qn[] =
		"SELECT COUNT(*) FROM disk_keys WHERE partition = ?1 AND "
		"disk = ?2 AND key_version < ?3";
	*removed = 0;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = check_disk(disk, err);
	if (rc == 0 && (keep == 0 || keep > INT64_MAX))
		rc = perr(err, -EINVAL, "disk key version %llu",
			  (unsigned long long)keep);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	uint64_t have = 0;
	int64_t n = 0;
	struct db_stmt *st;
	rc = latest_version(s, partition, disk, &have, err);
	if (rc == 0 && have != keep)
		rc = perr(err, -ESTALE, "disk key %s/%s: version %llu is not "
			  "the latest (%llu)", partition, disk,
			  (unsigned long long)keep, (unsigned long long)have);
	if (rc == 0 && (rc = db_prep(s, qn, &st, err)) == 0) {
		db_bind_text(st, 1, partition);
		db_bind_text(st, 2, disk);
		db_bind_i64(st, 3, (int64_t)keep);
		rc = db_int(s, st, "old disk keys", &n, err);
	}
	if (rc == 0 && (rc = db_prep(s, q, &st, err)) == 0) {
		db_bind_text(st, 1, partition);
		db_bind_text(st, 2, disk);
		db_bind_i64(st, 3, (int64_t)keep);
		rc = db_run(s, st, "retire disk keys", err);
	}
	char host[STORE_NAME_MAX], change[160];
	snprintf(change, sizeof(change), "disk key %s/%s: versions below %llu "
		 "retired", partition, disk, (unsigned long long)keep);
	/* The host's bundle carried them: it changes. */
	if (rc == 0 && n > 0)
		rc = db_need_partition(s, partition, host, err);
	if (rc == 0 && n > 0)
		rc = bump(s, host, change, NULL, err);
	if (rc == 0)
		*removed = (unsigned)n;
	return db_op_end(s, rc, err);
}

static int withhold(struct store *s, const char *partition, const char *why,
		    bool *changed, struct parley_err *err)
{
	static const char qn[] =
		"SELECT COUNT(*) FROM disk_keys WHERE partition = ?1 AND "
		"withheld = ''";
	static const char q[] =
		"UPDATE disk_keys SET withheld = ?2 WHERE partition = ?1";
	char host[STORE_NAME_MAX];
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_need_partition(s, partition, host, err);
	if (rc == 0 && (rc = db_prep(s, qn, &st, err)) == 0) {
		db_bind_text(st, 1, partition);
		rc = db_int(s, st, "released disk keys", &n, err);
	}
	if (rc < 0 || n == 0)
		return rc;   /* none, or withheld already */
	if ((rc = db_prep(s, q, &st, err)) < 0)
		return rc;
	db_bind_text(st, 1, partition);
	db_bind_text(st, 2, why);
	rc = db_run(s, st, "withhold disk keys", err);
	char change[160];
	snprintf(change, sizeof(change), "disk keys of %s withheld",
		 partition);
	if (rc == 0)
		rc = bump(s, host, change, NULL, err);
	if (rc == 0)
		*changed = true;
	return rc;
}

int store_disk_keys_withhold(struct store *s, const char *partition,
			     const char *why, bool *changed,
			     struct parley_err *err)
{
	*changed = false;
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0 && (!why || !why[0] || strlen(why) >= STORE_WITHHELD_MAX))
		rc = perr(err, -EINVAL, "disk key withhold: a reason of "
			  "1..%d bytes", STORE_WITHHELD_MAX - 1);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = withhold(s, partition, why, changed, err);
	if (rc < 0)
		*changed = false;
	return db_op_end(s, rc, err);
}
