/*
 * The store: everything parleyd keeps -- hosts, partitions and their key
 * configuration file lists, baselines, measurements, grants and policy
 * versions, per-host policy acknowledgements and agent sequence numbers,
 * and the hash-chained audit trail -- in one SQLite file (DESIGN.md
 * section 7). db/ is the only code that speaks SQL; this API names
 * operations, not tables.
 *
 * Durability: WAL with synchronous=FULL. A write that returned 0 outside a
 * batch (store_begin) is on disk; inside a batch, once store_commit
 * returned 0. So the daemon acknowledges to an agent only after that.
 *
 * Nothing here assumes it is the only writer (several parleyd replicas may
 * share one database later): every write is one transaction that rereads
 * what it depends on; policy versions and audit ids are taken by
 * compare-and-set, and partition state changes may name the row version
 * they expect.
 *
 * Threads: a struct store belongs to one thread at a time (the daemon's
 * event loop); other threads open their own.
 *
 * Errors: 0 (or a count) on success, else a negative errno, and `err` (may
 * be NULL) names the argument or row. The codes mean the same everywhere:
 *   -EINVAL   malformed argument (a name too long or with a bad byte, a
 *             digest of the wrong length, text with a NUL byte or not
 *             UTF-8, a spec that is not a JSON object, a seq that does not
 *             increase, ...); also a file that is not a parley store
 *   -E2BIG    too many items (files, segments, grants), or a spec or
 *             detail too large
 *   -ENOENT   the named host, partition, grant or baseline does not exist
 *   -EEXIST   it exists already (grant channel, enrolled baseline, a file
 *             named twice)
 *   -EBUSY    still referenced (host with partitions, partition with
 *             grants), or a batch is already open
 *   -ESTALE   compare-and-set lost: the row changed since the version given
 *   -EPERM    an agent's record concerns a partition on another host, or
 *             names another host
 *   -EKEYREVOKED  a certificate that was revoked (store_host_enrol)
 *   -ENOTSUP  the file's schema is newer than this binary knows
 *   -EBADMSG  the file's contents are inconsistent (audit chain, a row of
 *             the wrong shape): someone wrote to it behind the store's back
 *   -EAGAIN   another writer held the lock past the busy timeout, or took
 *             the same policy version / audit id first: retry
 *   -EIO, -ENOSPC, -EROFS, -ENOMEM, -EACCES: from SQLite / the file system
 */
#ifndef PARLEY_DB_STORE_H
#define PARLEY_DB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "common/grant.h"

/* Hosts, partitions, channels, states, audit event and reason names:
 * 1..63 bytes of [A-Za-z0-9_.-], not starting with '.' or '-'
 * (jv_name_valid; the same rule as specs and policies). */
#define STORE_NAME_MAX 64
/* Key configuration file names: 1..63 printable ASCII bytes, no '/'
 * (as include/parley/abi.h PARLEY_CONFIG_NAME_MAX). */
#define STORE_FILE_NAME_MAX 64
#define STORE_FILES_MAX 32       /* per partition, as PARLEY_CONFIG_FILES_MAX */
#define STORE_SEGS_MAX 16        /* image segments, as MEASURE_SEGS_MAX */
#define STORE_DIGEST 32          /* SHA-256 */
#define STORE_URI_MAX 1024       /* libvirt URI: printable ASCII, no spaces */
#define STORE_SPEC_MAX (64 * 1024) /* spec_json: a JSON object */
#define STORE_DETAIL_MAX 1024    /* audit detail: UTF-8 text */
#define STORE_LIST_MAX 1000      /* largest page a list call returns */

struct store;

/* Borrowed bytes as they came off a wire (protobuf-c's ProtobufCBinaryData
 * maps onto it), so that a digest of the wrong length is refused here. */
struct store_blob {
	const void *p;
	size_t len;
};

/* A list of names (hosts, key configuration files); free with
 * store_names_free. */
struct store_names {
	unsigned n;
	char (*name)[STORE_NAME_MAX];
};
void store_names_free(struct store_names *l);

/* ---- opening, batches ---------------------------------------------- */

/* Open the store `uri` names -- `sqlite:PATH` or a bare PATH (created if
 * absent), or `postgresql://...` / `postgres://...` / `postgresql:` + a
 * libpq keyword string (db/store_uri.c; libpq reads sslmode, service
 * files...) -- apply the migrations it lacks (each in its own
 * transaction) and prepare it for use. A store whose schema is newer than
 * this binary is refused with -ENOTSUP ("store X has schema version 7;
 * this parleyd knows up to 2"); one that is not a parley store with
 * -EINVAL; a database that cannot be reached with -ECONNREFUSED. *out is
 * the caller's until store_close. */
int store_open(const char *uri, struct store **out, struct parley_err *err);
/* Which backend an open store is on: "sqlite" or "postgresql". */
const char *store_backend(const struct store *s);
/* The store for messages and logs: the file, or the database as
 * postgresql://user@host:port/db -- never a password. */
const char *store_name(const struct store *s);
/* The file a --store value names, for those that own or look at it
 * before opening (privilege separation, `parleyd audit`): 1 with *path
 * (SQLite), 0 for a database server (nothing here on disk), or the
 * negative errno store_open would refuse the value with. */
int store_uri_file(const char *uri, char *path, size_t cap,
		   struct parley_err *err);

/* Copy every row of `from` into `to` (`parleyd store migrate`): `to` must
 * be empty (-ENOTEMPTY), both at one schema version; one read snapshot of
 * `from`, one transaction of `to`. On arrival `to`'s audit chain is
 * verified from row 1 and must end at `from`'s head (-EBADMSG). */
struct store_copy_stats {
	unsigned tables;
	uint64_t rows;        /* all tables */
	uint64_t audit_rows;  /* verified */
};
int store_copy(struct store *from, struct store *to,
	       struct store_copy_stats *st, struct parley_err *err);
/* Finalize, roll back an open batch, close. NULL is fine. */
void store_close(struct store *s);

/* The highest schema version this binary knows (= migrations 1..N). */
unsigned store_schema_latest(void);
/* The schema version of the open file. */
int store_schema_version(struct store *s, unsigned *version,
			 struct parley_err *err);
/* Tests and tools only: like store_open, but migrate no further than
 * `upto` (0 = none), to exercise migrating an older file. The API past
 * those migrations may fail on such a store. */
int store_open_upto(const char *path, unsigned upto, struct store **out,
		    struct parley_err *err);

/* A batch: writes between store_begin and store_commit form one
 * transaction (one fsync). A call that fails inside a batch leaves nothing
 * of its own behind and the batch open; the caller commits what succeeded
 * or rolls back. Batches do not nest: store_begin inside one is -EBUSY.
 * store_commit/store_rollback without one are -EINVAL. If SQLite itself
 * abandoned the transaction (disk full, I/O error), store_commit says so
 * (-EIO) and the batch is over. */
int store_begin(struct store *s, struct parley_err *err);
/* A number that moves whenever anything was committed to the store, by
 * this handle or any other connection: a poll that finds it where it was
 * has nothing to look at. Cheap (SQLite: PRAGMA data_version, no page
 * read); -ENOTSUP where the backend cannot tell (PostgreSQL: listen for
 * notifications, and poll). */
int store_mark(struct store *s, uint64_t *mark, struct parley_err *err);
/* How many transactions this handle committed (part of store_mark): a
 * caller that takes a mark, then writes itself, adds its own commits to
 * the mark it keeps -- and still sees what others committed meanwhile. */
uint64_t store_own_commits(const struct store *s);
/* store_begin that never waits for another writer: -EBUSY at once while
 * one holds the store's write lock (the event loop's periodic writes). */
int store_try_begin(struct store *s, struct parley_err *err);
int store_commit(struct store *s, struct parley_err *err);
int store_rollback(struct store *s, struct parley_err *err);
/* A writer that must commit with its caller when the caller has a batch
 * open (the API's: a change and its audit event together), and alone
 * otherwise: store_join_begin opens a batch only if none is open (*own
 * says whether it did); store_join_end commits it if rc is 0, else rolls
 * it back -- and leaves a joined batch to its owner. Returns rc, or the
 * commit's error. */
int store_join_begin(struct store *s, bool *own, struct parley_err *err);
int store_join_end(struct store *s, bool own, int rc, struct parley_err *err);
/* A read snapshot: the reads between store_read_begin and store_read_end
 * see one state of the file and share one read transaction, so SQLite
 * takes and drops its WAL read lock once rather than once a statement
 * (daemon/rpc/link_push.c reads for hundreds of hosts in a row). No
 * batch or second snapshot may start inside one (-EBUSY), and every write
 * inside fails (-EBUSY, or -EROFS for one-statement writes). Like a batch,
 * never keep one open across loop callbacks. */
int store_read_begin(struct store *s, struct parley_err *err);
void store_read_end(struct store *s);

/* ---- hosts ----------------------------------------------------------- */

struct store_host {
	char name[STORE_NAME_MAX];
	char libvirt_uri[STORE_URI_MAX];     /* "" when none */
	bool has_cert;                       /* a pinned client certificate */
	uint8_t cert_sha256[STORE_DIGEST];   /* SHA-256 of its DER */
	uint64_t agent_seq;                  /* see store_host_seq */
	uint64_t policy_acked;               /* see store_policy_ack */
	int64_t created_ms, updated_ms;      /* Unix ms */
};

/* Create or update host `name`. `cert_sha256` is the pinned certificate
 * fingerprint ({NULL, 0}: none). Updating keeps the host's sequence
 * number and acknowledged version. */
int store_host_put(struct store *s, const char *name, const char *libvirt_uri,
		   struct store_blob cert_sha256, struct parley_err *err);
int store_host_get(struct store *s, const char *name, struct store_host *out,
		   struct parley_err *err);
/* Hosts in name order after `after` (NULL or "" = from the start), at most
 * `limit` (1..STORE_LIST_MAX). *out is calloc'd; the caller frees it.
 * Returns the count (0..limit); fewer than `limit` means the end. */
int store_host_list(struct store *s, const char *after, unsigned limit,
		    struct store_host **out, struct parley_err *err);
/* -EBUSY while partitions are on it. Its pinned certificate, if any, is
 * revoked in the same transaction (store_cert_revoked). */
int store_host_delete(struct store *s, const char *name,
		      struct parley_err *err);

/* ---- host certificates ----------------------------------------------- */

/* A join: pin `cert_sha256` (the SHA-256 of the new certificate's DER)
 * as host `name`'s certificate, creating the host if it does not exist
 * (*created, may be NULL, says so). A different certificate pinned
 * before is revoked (a re-join replaces the key). -EKEYREVOKED if this
 * fingerprint is revoked. */
int store_host_enrol(struct store *s, const char *name,
		     struct store_blob cert_sha256, bool *created,
		     struct parley_err *err);
/* First use, for a host an operator created without a join: pin
 * `cert_sha256` unless the host has a pin. 0 when it is pinned now
 * (*pinned_now true) or was already this one; -ESTALE when another is
 * pinned; -ENOENT when there is no such host. */
int store_host_pin_first(struct store *s, const char *name,
			 struct store_blob cert_sha256, bool *pinned_now,
			 struct parley_err *err);
/* Whether this certificate fingerprint is revoked; host_out
 * (STORE_NAME_MAX bytes, may be NULL) gets the host it belonged to. */
int store_cert_revoked(struct store *s, struct store_blob cert_sha256,
		       bool *revoked, char *host_out, struct parley_err *err);

/* ---- partitions ------------------------------------------------------ */

enum store_part_kind { STORE_PART_THIN, STORE_PART_LIBVIRT };
const char *store_part_kind_name(enum store_part_kind k); /* "thin", ... */

struct store_part_in {
	const char *name, *host;          /* the host must exist */
	enum store_part_kind kind;
	const char *spec_json;            /* a JSON object, no NUL byte */
	size_t spec_len;                  /* at most STORE_SPEC_MAX */
	const char *state;                /* a name: "defined", "running" ... */
};

struct store_partition {
	char name[STORE_NAME_MAX], host[STORE_NAME_MAX];
	enum store_part_kind kind;
	char state[STORE_NAME_MAX];
	char vmm_backend[STORE_NAME_MAX]; /* thin: "kvm", "process"; "" not
					   * reported (yet) */
	char *spec_json;                  /* NUL-terminated, malloc'd */
	size_t spec_len;
	char *devices;                    /* its devices' latest states, a
					   * "device plugin state\n" line each
					   * ("" none); malloc'd */
	uint64_t version;                 /* bumped by every change */
	int64_t updated_ms;
};

/* Create or replace a partition; *version (may be NULL) gets its new row
 * version. Moving it to another host while grants name it is -EBUSY (the
 * bundles of both hosts would change without a policy version). */
int store_partition_put(struct store *s, const struct store_part_in *in,
			uint64_t *version, struct parley_err *err);
/* *out owns spec_json until store_partition_free. */
int store_partition_get(struct store *s, const char *name,
			struct store_partition *out, struct parley_err *err);
void store_partition_free(struct store_partition *p);
/* Only the host of partition `name`, into host_out (STORE_NAME_MAX
 * bytes): what the agent link asks of every partition a message names. */
int store_partition_host(struct store *s, const char *name, char *host_out,
			 struct parley_err *err);
/* Partitions in name order after `after`, at most `limit`
 * (1..STORE_LIST_MAX), only those on `host` unless it is NULL. Returns the
 * count; free with store_partition_list_free(*out, count). */
int store_partition_list(struct store *s, const char *host, const char *after,
			 unsigned limit, struct store_partition **out,
			 struct parley_err *err);
void store_partition_list_free(struct store_partition *p, unsigned n);
/* Set the state; if `if_version` is not 0 and the row's version differs,
 * -ESTALE (someone else changed it). *version gets the new version. */
int store_partition_set_state(struct store *s, const char *name,
			      const char *state, uint64_t if_version,
			      uint64_t *version, struct parley_err *err);
/* Removes its file list, baseline and measurements too; -EBUSY while a
 * grant names it. */
int store_partition_delete(struct store *s, const char *name,
			   struct parley_err *err);

/* The key configuration files of a partition, replaced as a whole (order
 * kept), and read back. */
int store_partition_set_files(struct store *s, const char *partition,
			      const char *const *names, unsigned n,
			      struct parley_err *err);
int store_partition_files(struct store *s, const char *partition,
			  struct store_names *out, struct parley_err *err);

/* ---- baselines and measurements ------------------------------------ */

/* Digests as an agent reports them (borrowed). */
struct store_file_in {
	const char *name;                 /* a key configuration file name */
	struct store_blob sha256;         /* STORE_DIGEST bytes */
};
struct store_digests_in {
	struct store_blob digest;         /* the partition digest */
	const struct store_file_in *file;
	unsigned nfile;                   /* 0..STORE_FILES_MAX */
	const struct store_blob *seg;     /* image segment digests */
	unsigned nseg;                    /* 0..STORE_SEGS_MAX */
};

struct store_file_digest {
	char name[STORE_FILE_NAME_MAX];
	uint8_t sha256[STORE_DIGEST];
};
struct store_digests {
	uint8_t digest[STORE_DIGEST];
	unsigned nfile;
	struct store_file_digest file[STORE_FILES_MAX];
	unsigned nseg;
	uint8_t seg[STORE_SEGS_MAX][STORE_DIGEST];
};

struct store_baseline {
	char partition[STORE_NAME_MAX];
	bool golden;                      /* operator-supplied, else enrolled */
	int64_t time_ms;
	struct store_digests d;
};

/* Record the baseline of `partition`. Enrolment (golden false) only ever
 * sets a first baseline: -EEXIST if there is one, so a partition cannot
 * re-baseline itself. golden true (the operator) replaces any. A baseline
 * is part of the bundles of the hosts whose grants name the partition, so
 * if there are such grants this creates a policy version; *policy_version
 * (may be NULL) gets it, or 0 when no bundle changed. */
int store_baseline_put(struct store *s, const char *partition,
		       const struct store_digests_in *d, bool golden,
		       uint64_t *policy_version, struct parley_err *err);
int store_baseline_get(struct store *s, const char *partition,
		       struct store_baseline *out, struct parley_err *err);
/* The operator's way to re-enrol; -ENOENT if none. Versions as _put. */
int store_baseline_delete(struct store *s, const char *partition,
			  uint64_t *policy_version, struct parley_err *err);

/* One measurement from an agent. */
struct store_measure_in {
	uint64_t seq;                     /* the agent's sequence number, > 0 */
	const char *partition;            /* must be on the reporting host */
	int64_t time_ms;                  /* the agent's clock; 0 = now */
	struct store_digests_in d;
};

struct store_measurement {
	char host[STORE_NAME_MAX], partition[STORE_NAME_MAX];
	uint64_t seq;
	int64_t time_ms;
	struct store_digests d;
};

/* What an ingest call did. */
struct store_ingest {
	unsigned stored;                  /* records new to the store */
	unsigned skipped;                 /* already held: seq <= the host's */
	uint64_t seq;                     /* the host's seq now: Ack this */
};

/*
 * Exactly-once ingest of an agent's records. Each record carries the
 * host's sequence number; records at or below the host's stored number
 * are skipped, the rest stored, and the host's number raised to the
 * highest -- in one transaction, so a crash can never keep the one
 * without the other. A batch whose seqs do not increase, or with any bad
 * record, is refused as a whole (-EINVAL, -EPERM, ...; err names the
 * index). `res` may be NULL.
 */
int store_ingest_measurements(struct store *s, const char *host,
			      const struct store_measure_in *m, unsigned n,
			      struct store_ingest *res, struct parley_err *err);
/* A partition's state as its agent reports it (PartitionStatus). One
 * the store has no row for (a thin partition's row is deleted before its
 * agent hears the DESTROY and reports it stopped, destroyed) is taken and
 * not stored: the seq raised, res->stored 0, no error. */
int store_ingest_status(struct store *s, const char *host, uint64_t seq,
			const char *partition, const char *state,
			struct store_ingest *res, struct parley_err *err);
/* The same with what the agent said runs it: backend NULL or "" leaves
 * the stored one (an agent that does not say). */
struct store_device {
	const char *device, *plugin, *state;   /* names */
};
#define STORE_DEVICES_MAX 17
struct store_status_in {
	const char *partition, *state, *backend;
	/* Each device's latest lifecycle state: replaces what is stored
	 * (none: a partition without device plugins, or an older agent). */
	const struct store_device *devices;
	unsigned ndevices;
};
int store_ingest_status_in(struct store *s, const char *host, uint64_t seq,
			   const struct store_status_in *in,
			   struct store_ingest *res, struct parley_err *err);
/* The highest seq stored from `host` (0: none yet). */
int store_host_seq(struct store *s, const char *host, uint64_t *seq,
		   struct parley_err *err);

/* The latest measurement of each partition (on `host`, or all if NULL) in
 * partition order. Returns the count; *out is calloc'd, caller frees. */
int store_measurement_latest(struct store *s, const char *host,
			     struct store_measurement **out,
			     struct parley_err *err);

/* ---- grants and policy versions ------------------------------------ */

/*
 * Every change to the grants creates a policy version (1, 2, ...) and
 * records which hosts it affects: the hosts of both endpoints, before and
 * after the change. *version (may be NULL) gets the new version. A grant
 * is validated as common/grant.c does (names, a != b, ring_bytes a power
 * of two in 4K..16M) and its endpoints must be partitions in the store.
 * A change that changes nothing creates no version (*version = current).
 */
int store_grant_add(struct store *s, const struct grant *g, uint64_t *version,
		    struct parley_err *err);
int store_grant_update(struct store *s, const struct grant *g,
		       uint64_t *version, struct parley_err *err);
int store_grant_remove(struct store *s, const char *channel,
		       uint64_t *version, struct parley_err *err);
/* Make the grants exactly `set` (a policy document), as one version. */
int store_grant_replace(struct store *s, const struct grant_set *set,
			uint64_t *version, struct parley_err *err);
int store_grant_get(struct store *s, const char *channel, struct grant *out,
		    struct parley_err *err);
/* All grants, in channel order (grant_set_free frees *out). */
int store_grant_list(struct store *s, struct grant_set *out,
		     struct parley_err *err);
/* The grants that involve `host`: either endpoint is on it. What that
 * host's bundle holds. */
int store_grants_for_host(struct store *s, const char *host,
			  struct grant_set *out, struct parley_err *err);

/* The latest policy version (0: none yet). */
int store_policy_version(struct store *s, uint64_t *version,
			 struct parley_err *err);
/* The latest version that affected `host`: the version its bundle carries
 * (0: no grant has ever involved it). */
int store_policy_host_version(struct store *s, const char *host,
			      uint64_t *version, struct parley_err *err);
/* The hosts a version affected, in name order. */
int store_policy_affected(struct store *s, uint64_t version,
			  struct store_names *out, struct parley_err *err);

/* `host` acknowledged bundle `version`. Acknowledgements only move
 * forward (an older one is ignored); a version the host was never given
 * (above its store_policy_host_version) is -EINVAL. */
int store_policy_ack(struct store *s, const char *host, uint64_t version,
		     struct parley_err *err);
int store_policy_acked(struct store *s, const char *host, uint64_t *version,
		       struct parley_err *err);

struct store_lag {
	char host[STORE_NAME_MAX];
	uint64_t acked, want;             /* want = store_policy_host_version */
};
/* Hosts whose acknowledged version is below their bundle's version: the
 * ones to push to. Returns the count; *out calloc'd, caller frees. */
int store_policy_lagging(struct store *s, struct store_lag **out,
			 struct parley_err *err);

/* ---- what many hosts' bundles are built from (db/store_push.c) ------- */

/*
 * A fleet-wide change has the daemon build a bundle for every connected
 * host. Read host by host that is some 20 statements each (its version,
 * grants, service rules, segment sets, disk keys, a baseline per
 * partition named), each a round trip on PostgreSQL. These read the same
 * rows for many hosts at once, one statement per kind per STORE_IN_MAX
 * hosts (the names bound as one JSON array; store_push.c says why), in
 * one snapshot.
 */
#define STORE_IN_MAX 256

/* One host's part: what store_policy_host_version, store_grants_for_host,
 * store_list_svc_rules, store_list_segsets and store_disk_keys_list give
 * for it, in their orders. The lists point into the store_policy_read. */
struct store_policy_host {
	char host[STORE_NAME_MAX];
	bool found;                       /* false: no such host */
	uint64_t version;                 /* as store_policy_host_version */
	bool read;                        /* version above `after`: the
					   * lists below were read */
	const struct grant *grants;
	unsigned ngrants;
	const struct store_svc_rule *rules;
	unsigned nrules;
	const struct store_segset *sets;
	unsigned nsets;
	const struct store_disk_key *keys;
	unsigned nkeys;
};

struct store_policy_read {
	unsigned n;
	struct store_policy_host *h;      /* each host once, in name order */
	/* What the hosts' lists point into (owned). */
	struct grant *grants;
	struct store_svc_rule *rules;
	struct store_segset *sets;
	unsigned nsets;
	struct store_disk_key *keys;
};

/* The versions of `hosts` (n of them, any order, repeats allowed), and the
 * lists of each whose version is above its after[i] (after NULL: of
 * all; a host named twice: the lower after). A name that is not a name
 * fails the whole call (-EINVAL); a host that does not exist is
 * found = false. Free with store_policy_read_free (also after a
 * failure). */
int store_policy_read(struct store *s, const char *const *hosts,
		      const uint64_t *after, unsigned n,
		      struct store_policy_read *out, struct parley_err *err);
/* `host`'s part of r, or NULL if r does not hold it. */
const struct store_policy_host *
store_policy_read_find(const struct store_policy_read *r, const char *host);
void store_policy_read_free(struct store_policy_read *r);

/* The baselines of the partitions `names` (n, any order, repeats
 * allowed) that have one, as store_baseline_get gives each, in name
 * order (byte order): the count, *out malloc'd (NULL for none). */
int store_baselines_read(struct store *s, const char *const *names,
			 unsigned n, struct store_baseline **out,
			 struct parley_err *err);

/* Acknowledgements of many hosts in one go (the daemon's loop turn), each
 * as store_policy_ack: rc[i] gets 0 or its error (-ENOENT no such host,
 * -EINVAL a version above the host's bundle; nothing written for it), and
 * the others are written. Returns 0, or an error that wrote nothing (the
 * rc[] then mean nothing). */
int store_policy_ack_many(struct store *s, const char *const *hosts,
			  const uint64_t *versions, unsigned n, int *rc,
			  struct parley_err *err);

/* ---- segment sets (migration 7) -------------------------------------- */

/*
 * Segment sets (issue 14): one entry of the data set (common/segset.h),
 * checked by its own parser, kept as compacted JSON. A set's members must
 * be partitions in the store, all on one host (a segment is one host's
 * memory: -EINVAL naming the member otherwise); the set goes into that
 * host's bundle. Every change creates a policy version noting the host;
 * partitions in a set cannot be deleted or moved to another host (-EBUSY).
 */
#define STORE_SEGSET_JSON_MAX (64 * 1024)      /* one set's JSON */
/* All of a host's sets' JSON (they travel in its bundle; at most
 * SEGSETS_MAX sets per host). */
#define STORE_SEGSETS_HOST_JSON_MAX (256 * 1024)

struct store_segset {
	char name[STORE_NAME_MAX];
	char host[STORE_NAME_MAX];        /* where all its members are */
	uint64_t version;                 /* the policy version that added it */
	char *json;                       /* the set's entry, compact JSON */
};

/* Add one set (its JSON object as in the data set's "segsets" array).
 * Errors name the field ("segset (\"bus\").segments[1].writer: ...");
 * -EEXIST only if the name is taken (remove it first): a name twice
 * within the set is -EINVAL. name (may be NULL,
 * else STORE_NAME_MAX bytes) gets the set's name, *version the new
 * policy version. */
int store_put_segset(struct store *s, const char *set_json, size_t len,
		     char *name, uint64_t *version, struct parley_err *err);
/* out->json is malloc'd: store_segset_clear. -ENOENT if none. */
int store_get_segset(struct store *s, const char *name,
		     struct store_segset *out, struct parley_err *err);
void store_segset_clear(struct store_segset *one);
/* The sets on `host` (NULL: all), in name order. Returns the count; free
 * *out with store_segsets_free. */
int store_list_segsets(struct store *s, const char *host,
		       struct store_segset **out, struct parley_err *err);
void store_segsets_free(struct store_segset *l, unsigned n);
int store_del_segset(struct store *s, const char *name, uint64_t *version,
		     struct parley_err *err);

/* ---- service rules (migration 8) ------------------------------------- */

/*
 * Service rules (issue 14): a call of `service` from partition `source`
 * to partition `target` is allowed or denied; none = denied. One rule per
 * (source, target, service). Both partitions must exist and be on one
 * host (that host's agent connects the call: -EINVAL otherwise); the rule
 * goes into that host's bundle. Every change creates a policy version;
 * partitions a rule names cannot be deleted or moved (-EBUSY).
 */
struct store_svc_rule {
	uint64_t id;                      /* assigned by the store, >= 1 */
	struct svc_rule r;
	uint64_t version;                 /* the version that last changed it */
};

/* Create the rule for (source, target, service), or change its action
 * (*created false; no new version when it already had it). *id gets its
 * id; any out pointer may be NULL. A host holds at most SVC_RULES_MAX
 * rules (-E2BIG): its bundle carries them all. */
int store_put_svc_rule(struct store *s, const struct svc_rule *r,
		       uint64_t *id, bool *created, uint64_t *version,
		       struct parley_err *err);
int store_get_svc_rule(struct store *s, uint64_t id,
		       struct store_svc_rule *out, struct parley_err *err);
/* Rules of partitions on `host` (NULL: all), in id order. Returns the
 * count; *out malloc'd (free()). */
int store_list_svc_rules(struct store *s, const char *host,
			 struct store_svc_rule **out, struct parley_err *err);
/* By id, or by (source, target, service); -ENOENT if no such rule. */
int store_del_svc_rule(struct store *s, uint64_t id, uint64_t *version,
		       struct parley_err *err);
int store_del_svc_rule_named(struct store *s, const struct svc_rule *r,
			     uint64_t *version, struct parley_err *err);

/* ---- audit ----------------------------------------------------------- */

/*
 * The audit trail is append-only and hash-chained: row i carries
 * prev_hash = hash of row i-1 (32 zero bytes for row 1) and
 *   hash = SHA-256(prev_hash || u32 1 || u64 id || i64 time_ms ||
 *                  for host, event, partition, channel, reason, file,
 *                  detail: u32 length || bytes)
 * (big-endian integers, no NULs). Ids are 1, 2, 3 ... without gaps, taken
 * by compare-and-set on the chain's head, so an edited, deleted or
 * reordered row is found by store_audit_verify. There is no way to change
 * or delete a row through this API.
 */
struct store_audit_in {
	uint64_t seq;          /* the agent's seq (ingest); unused by append */
	int64_t time_ms;       /* 0 = now */
	const char *host;      /* append: the host concerned, or NULL/"";
				* ingest: NULL or the ingesting host */
	const char *event;     /* a name: open_allowed, open_denied, ... */
	const char *partition; /* a name, or NULL/"" (stored as "") */
	const char *channel;   /* likewise */
	const char *reason;    /* likewise: NO_GRANT, INTEGRITY, ... */
	const char *file;      /* a key configuration file name, or NULL/"" */
	const char *detail;    /* UTF-8, at most STORE_DETAIL_MAX-1 bytes */
};

struct store_audit {
	uint64_t id;
	int64_t time_ms;
	const char *host, *event, *partition, *channel, *reason, *file,
		*detail;       /* never NULL; valid during the callback only */
	uint8_t prev_hash[STORE_DIGEST], hash[STORE_DIGEST];
};

/* The daemon's own events, in one transaction. *last_id (may be NULL) gets
 * the id of the last one. */
int store_audit_append(struct store *s, const struct store_audit_in *ev,
		       unsigned n, uint64_t *last_id, struct parley_err *err);
/* An agent's events, exactly once (see store_ingest_measurements). */
int store_ingest_audit(struct store *s, const char *host,
		       const struct store_audit_in *ev, unsigned n,
		       struct store_ingest *res, struct parley_err *err);

/* Rows with id > after_id in id order, at most `limit` (0 = no limit),
 * each passed to cb; cb returning non-zero stops the walk. cb must not
 * call the store. Returns the number of rows passed. */
typedef int (*store_audit_cb)(const struct store_audit *row, void *ctx);
int store_audit_list(struct store *s, uint64_t after_id, unsigned limit,
		     store_audit_cb cb, void *ctx, struct parley_err *err);

/* Which rows store_audit_find passes: every field set must match exactly
 * (NULL or "": any), ids strictly between after_id and before_id (0: no
 * bound), times within since_ms..until_ms inclusive (0: no bound). */
struct store_audit_filter {
	uint64_t after_id, before_id;
	const char *host, *partition, *event, *reason;
	int64_t since_ms, until_ms;
	bool newest_first;     /* id order descending, else ascending */
};

/* At most `limit` (1..STORE_LIST_MAX) rows matching f, in f's order, each
 * passed to cb (as store_audit_list). The filter is applied by the query,
 * so a page is full whenever that many rows match. Returns the number of
 * rows passed; -EINVAL for a bad limit, name or negative time. */
int store_audit_find(struct store *s, const struct store_audit_filter *f,
		     unsigned limit, store_audit_cb cb, void *ctx,
		     struct parley_err *err);

/* Recompute the whole chain. 0 if every row's hash matches its contents,
 * links to its predecessor, ids run 1..N without gaps and the head agrees
 * (*first_bad = 0); -EBADMSG naming the first bad id otherwise (a deleted
 * row is named by its missing id). *rows (may be NULL) gets the number of
 * rows checked. */
int store_audit_verify(struct store *s, uint64_t *first_bad, uint64_t *rows,
		       struct parley_err *err);

/* The chain's head: the id of the last row (0 when empty) and its hash
 * (zeros when empty), as the head row says. */
int store_audit_head(struct store *s, uint64_t *id,
		     uint8_t hash[STORE_DIGEST], struct parley_err *err);
/* Verify the chain from row 1 up to row `id` (rows after it are not
 * looked at) and that row `id`'s hash is `hash`: what a signed checkpoint
 * says the chain was. 0, or -EBADMSG naming the first bad id (a rewritten
 * and rechained history shows as row `id` with another hash). */
int store_audit_verify_to(struct store *s, uint64_t id,
			  const uint8_t hash[STORE_DIGEST],
			  uint64_t *first_bad, struct parley_err *err);

/* ---- audit checkpoints (migration 6) ---------------------------------- */

/*
 * Signed checkpoints of the chain's head (common/checkpoint.h says what is
 * signed). The store keeps them so they can be exported; it checks their
 * shape, not their signature: a copy of the file proves nothing by
 * itself, the exported document and the public key do.
 */
struct store_checkpoint {
	uint64_t id;                       /* assigned by the store */
	uint64_t seq;                      /* the last audit id it covers */
	uint8_t hash[STORE_DIGEST];        /* that row's hash */
	int64_t time_ms;
	char key_id[65];                   /* sign_key_id of the key */
	uint8_t sig[64];                   /* Ed25519 */
};

/* Add one; *id (may be NULL) gets its id. -EINVAL for seq 0 or a key_id
 * that is not 64 lower-case hex digits. */
int store_checkpoint_add(struct store *s, const struct store_checkpoint *c,
			 uint64_t *id, struct parley_err *err);
/* Newest first: checkpoints with id < before (0 = from the newest), at
 * most `limit` (1..STORE_LIST_MAX). Returns how many were put in out[]. */
int store_checkpoint_list(struct store *s, uint64_t before, unsigned limit,
			  struct store_checkpoint *out,
			  struct parley_err *err);

/* ---- tokens ---------------------------------------------------------- */

/*
 * API bearer tokens and one-time host join tokens. Only the SHA-256 of a
 * token's secret is stored (STORE_DIGEST bytes, passed as a blob so a
 * digest of the wrong length is -EINVAL); the secret itself is shown once
 * by whoever made it and never reaches the store.
 */
enum store_scope { STORE_SCOPE_READ, STORE_SCOPE_ADMIN };
const char *store_scope_name(enum store_scope s);   /* "read", "admin" */

/* Add an API token: `name` a name (jv_name_valid), -EEXIST if the digest
 * is already there. */
int store_token_add(struct store *s, const char *name, enum store_scope scope,
		    struct store_blob sha256, struct parley_err *err);
/* The scope of the token with this digest; -ENOENT if none. */
/* As store_token_scope, and the token's name into `name` (STORE_NAME_MAX
 * bytes; may be NULL) -- the API records who made a change. */
int store_token_find(struct store *s, struct store_blob sha256,
		     enum store_scope *scope, char name[STORE_NAME_MAX],
		     struct parley_err *err);
int store_token_scope(struct store *s, struct store_blob sha256,
		      enum store_scope *scope, struct parley_err *err);
/* Number of API tokens (the daemon bootstraps an admin token at 0). */
int store_token_count(struct store *s, uint64_t *n, struct parley_err *err);

/* A join token for `host` (a name; the host need not exist yet), valid
 * until expires_ms (Unix ms). -EEXIST if the digest is already there. */
int store_join_token_add(struct store *s, const char *host,
			 struct store_blob sha256, int64_t expires_ms,
			 struct parley_err *err);
/* Spend a join token, once: marks it used at now_ms and copies its host
 * into host_out (STORE_NAME_MAX bytes) -- atomically, so two agents
 * racing with one token cannot both join. -ENOENT unknown, -EEXIST
 * already used, -ETIMEDOUT expired (now_ms >= expires_ms). */
int store_join_token_use(struct store *s, struct store_blob sha256,
			 int64_t now_ms, char *host_out,
			 struct parley_err *err);

/* ---- replicas (db/store_replicas.c) --------------------------------- */

/* Several parleyd processes may serve one store. Each has a name (a
 * store name), the address agents reach its link on ("HOST:PORT", or ""),
 * and says it is alive every few seconds. */
#define STORE_REPLICA_LINK_MAX 128
struct store_replica {
	char name[STORE_NAME_MAX];
	char link[STORE_REPLICA_LINK_MAX];
	int64_t started_ms, seen_ms;         /* Unix ms */
	uint64_t hosts;                      /* agents it holds */
};
/* Change notifications: other replicas' commits that changed policy or
 * stored commands, as they happen (PostgreSQL LISTEN/NOTIFY on a second
 * connection of this handle). store_listen gives the socket to watch for
 * reading (-ENOTSUP on SQLite: poll instead); when it is readable,
 * store_listen_take says 1 (something changed: look), 0 (nothing yet) or
 * -ECONNRESET (the listener's connection is lost: stop watching the
 * socket, store_unlisten, store_listen again later). A change is only a
 * hint: the reader compares versions as its poll does. store_listen never
 * blocks: while its connection is being made it is -EINPROGRESS (call it
 * again soon; each call takes the steps the socket allows). */
int store_listen(struct store *s, int *fd, struct parley_err *err);
int store_listen_take(struct store *s, struct parley_err *err);
void store_unlisten(struct store *s);

/* Insert or refresh this replica's row (seen_ms = now). Never waits for
 * another writer: -EBUSY at once while one holds the store's write lock
 * (the caller beats again later). */
int store_replica_beat(struct store *s, const char *name, const char *link,
		       int64_t started_ms, struct parley_err *err);
/* Every replica that ever beat, by name; count, *out malloc'd. */
int store_replica_list(struct store *s, struct store_replica **out,
		       struct parley_err *err);
/* Host `host`'s agent is now held by `replica` (whoever held it before).
 * -ENOENT if the host does not exist. */
int store_replica_hold(struct store *s, const char *host, const char *replica,
		       struct parley_err *err);
/* `replica` no longer holds `host` -- only if it was the holder. */
int store_replica_release(struct store *s, const char *host,
			  const char *replica, struct parley_err *err);
/* How many hosts `replica` holds. */
int store_replica_count(struct store *s, const char *replica, uint64_t *n,
			struct parley_err *err);
/* `replica` holds no host any more (it starts: what it held before a
 * crash is void). */
int store_replica_forget(struct store *s, const char *replica,
			 struct parley_err *err);
/* Replicas other than `self` that last beat before `before_ms` (Unix ms)
 * are dead: their rows and their claims on hosts are deleted, and they
 * are returned (count, *dead malloc'd, each with the hosts it held), so
 * that the caller audits each once -- in the same batch: a second
 * replica doing the same after the commit finds none. A write (joins a
 * batch). */
int store_replica_reap(struct store *s, const char *self, int64_t before_ms,
		       struct store_replica **dead, struct parley_err *err);
/* The replica holding `host`, and when that replica last beat (*seen_ms,
 * Unix ms; 0 if it has no row; seen_ms may be NULL); -ENOENT when none. */
int store_replica_holder(struct store *s, const char *host,
			 char replica[STORE_NAME_MAX], int64_t *seen_ms,
			 struct parley_err *err);

/* A partition command stored for the host's agent, whichever replica it
 * is connected to: one of the wire's PartitionCommand actions
 * (0..STORE_REPLICA_CMD_ACTION_MAX) for `partition`, kept until the
 * agent says it carried it out (store_replica_cmd_done; agents too old
 * to say so: deleted once delivered); or CHANGED (partition NULL or ""):
 * "send the host the commands its defined thin partitions need", as on
 * its hello; or UPDATE or ROLLBACK (partition NULL or ""), deleted once
 * delivered. Ids come from a counter that only grows (migration 13), in
 * commit order: an agent skips one at or below the last it carried out. */
#define STORE_REPLICA_CMD_CHANGED (-1)
/* "Offer the host its pending agent update" (partition NULL or ""). */
#define STORE_REPLICA_CMD_UPDATE (-2)
/* "Send the host its requested rollback" (partition NULL or ""). */
#define STORE_REPLICA_CMD_ROLLBACK (-3)
#define STORE_REPLICA_CMD_MIN STORE_REPLICA_CMD_ROLLBACK
#define STORE_REPLICA_CMD_ACTION_MAX 15
struct store_replica_cmd {
	int64_t id;
	char host[STORE_NAME_MAX];
	char partition[STORE_NAME_MAX];      /* "" for CHANGED */
	int action;
};
int store_replica_cmd_put(struct store *s, const char *host,
			  const char *partition, int action,
			  struct parley_err *err);
/* Commands for the hosts `replica` holds, oldest first, at most 1000;
 * count, *out malloc'd. Delete each once delivered. */
int store_replica_cmd_list(struct store *s, const char *replica,
			   struct store_replica_cmd **out,
			   struct parley_err *err);
/* Host `host`'s commands with an id above `after`, oldest first, at most
 * 1000 (what its agent has not confirmed; sent again after a reconnect
 * to any replica); count, *out malloc'd. */
int store_replica_cmd_pending(struct store *s, const char *host,
			      int64_t after, struct store_replica_cmd **out,
			      struct parley_err *err);
/* Host `host`'s agent carried out command `id`: it is deleted -- only if
 * it is that host's (0 otherwise, nothing deleted); a write (joins a
 * batch). -EINVAL for an id <= 0. */
int store_replica_cmd_done(struct store *s, const char *host, int64_t id,
			   struct parley_err *err);
/* Never waits for another writer: -EBUSY at once while one holds the
 * store (the caller deletes it later, without delivering it again). */
int store_replica_cmd_delete(struct store *s, int64_t id,
			     struct parley_err *err);

/* ---- disk keys (migration 10; db/store_diskkeys.c) ------------------- */

#define STORE_WRAPPED_LEN 92     /* nonce | 64-byte key | tag (keyd.h) */
#define STORE_DISK_NAME_MAX 32   /* a disk's name: 1..31 bytes */
#define STORE_WITHHELD_MAX 128

/* The latest version of one disk's key, as the store holds it: wrapped
 * by the key process, never plain. */
struct store_disk_key {
	char partition[STORE_NAME_MAX], host[STORE_NAME_MAX];
	char disk[STORE_DISK_NAME_MAX];
	uint64_t version;                    /* 1, 2, ... (rekey) */
	uint8_t wrapped[STORE_WRAPPED_LEN];
	char withheld[STORE_WITHHELD_MAX];   /* "" released, else why not */
	int64_t created_ms;
	unsigned versions;                   /* rows held (> 1: an old one
					      * awaits its agent's rekey) */
};

/* Add version `version` (above any held: else -EEXIST) of a disk's
 * wrapped key; the partition must exist. Its host's bundle changes: a
 * policy version (*policy_version, may be NULL). */
int store_disk_key_add(struct store *s, const char *partition,
		       const char *disk, uint64_t version,
		       struct store_blob wrapped, uint64_t *policy_version,
		       struct parley_err *err);
/* The latest version held (0: none). */
int store_disk_key_version(struct store *s, const char *partition,
			   const char *disk, uint64_t *v,
			   struct parley_err *err);
/* The latest key of each disk, of partitions on `host` and/or of
 * `partition` (NULL or "": any), in (partition, disk) order. Returns the
 * count; *out malloc'd (NULL for none), the caller frees. */
int store_disk_keys_list(struct store *s, const char *host,
			 const char *partition, struct store_disk_key **out,
			 struct parley_err *err);
/* One version (-ENOENT if not held). */
int store_disk_key_get(struct store *s, const char *partition,
		       const char *disk, uint64_t version,
		       struct store_disk_key *out, struct parley_err *err);
/* Recompute whether a partition's keys are released: withheld (why[] says
 * why, cap >= STORE_WITHHELD_MAX) when its latest measurement differs
 * from its baseline. *changed when that differs from the last refresh:
 * then its host's bundle changed (a policy version). A partition without
 * disk keys is left alone (*changed false). */
int store_disk_keys_refresh(struct store *s, const char *partition,
			    bool *changed, char *why, size_t cap,
			    uint64_t *policy_version, struct parley_err *err);
/* Withhold a partition's released keys now, for `why` (its agent
 * quarantined it): a policy version for its host, *changed. Already
 * withheld, or no keys: nothing. The next refresh (a measurement that
 * matches the baseline) may release them again. */
int store_disk_keys_withhold(struct store *s, const char *partition,
			     const char *why, bool *changed,
			     struct parley_err *err);
/* Drop the versions of a disk's key below `keep`, which must be the
 * latest (-ESTALE otherwise): its agent re-encrypted the disk. Dropping
 * any is a policy version for the partition's host. */
int store_disk_key_retire(struct store *s, const char *partition,
			  const char *disk, uint64_t keep,
			  unsigned *removed, struct parley_err *err);

#endif
