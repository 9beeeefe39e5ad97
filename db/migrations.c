/*
 * The schema, as numbered migrations. Migration N turns a version N-1
 * file into a version N file; each runs in its own transaction together
 * with the row that records it in schema_version, so a crash leaves the
 * file at N-1 or N, never between. Released migrations are never edited:
 * a change is a new one at the end (db/README.md).
 *
 * The SQL stays portable (PostgreSQL has all of it): INTEGER, TEXT and
 * BLOB columns, explicit keys, ON CONFLICT ... DO UPDATE rather than
 * INSERT OR REPLACE, no rowid. Each backend turns the text into its own
 * types (db_ops.ddl: PostgreSQL's BIGINT, BYTEA, TEXT COLLATE "C") and
 * identifies its stores its own way (db_ops.q_app, q_any, app_set).
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdlib.h>

/* "Prly": a parley store, not some other database (SQLite keeps it in
 * the file's header; store_pg.c answers it when schema_version exists). */
#define STORE_APPLICATION_ID 0x50726c79

/* 1: every table. */
static const char m1_tables[] =
	"CREATE TABLE schema_version ("
	" version INTEGER PRIMARY KEY,"
	" applied_ms INTEGER NOT NULL);"

	"CREATE TABLE hosts ("
	" name TEXT PRIMARY KEY,"
	" libvirt_uri TEXT NOT NULL,"
	" cert_sha256 BLOB,"                      /* NULL: none pinned */
	" agent_seq INTEGER NOT NULL DEFAULT 0,"
	" policy_acked INTEGER NOT NULL DEFAULT 0,"
	" created_ms INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL);"

	"CREATE TABLE partitions ("
	" name TEXT PRIMARY KEY,"
	" host TEXT NOT NULL REFERENCES hosts (name),"
	" kind TEXT NOT NULL CHECK (kind IN ('thin', 'libvirt')),"
	" spec_json TEXT NOT NULL,"
	" state TEXT NOT NULL,"
	" version INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL);"

	"CREATE TABLE partition_files ("
	" partition TEXT NOT NULL"
	"  REFERENCES partitions (name) ON DELETE CASCADE,"
	" pos INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" PRIMARY KEY (partition, pos),"
	" UNIQUE (partition, name));"

	"CREATE TABLE baselines ("
	" partition TEXT PRIMARY KEY"
	"  REFERENCES partitions (name) ON DELETE CASCADE,"
	" digest BLOB NOT NULL,"
	" golden INTEGER NOT NULL CHECK (golden IN (0, 1)),"
	" time_ms INTEGER NOT NULL);"

	/* kind 'file' (name = the file) or 'segment' (name = ''). */
	"CREATE TABLE baseline_digests ("
	" partition TEXT NOT NULL"
	"  REFERENCES baselines (partition) ON DELETE CASCADE,"
	" kind TEXT NOT NULL CHECK (kind IN ('file', 'segment')),"
	" pos INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" sha256 BLOB NOT NULL,"
	" PRIMARY KEY (partition, kind, pos));"

	/* Keyed by what the agent numbered it: (host, seq) is unique. */
	"CREATE TABLE measurements ("
	" host TEXT NOT NULL REFERENCES hosts (name) ON DELETE CASCADE,"
	" seq INTEGER NOT NULL,"
	" partition TEXT NOT NULL"
	"  REFERENCES partitions (name) ON DELETE CASCADE,"
	" time_ms INTEGER NOT NULL,"
	" digest BLOB NOT NULL,"
	" PRIMARY KEY (host, seq));"

	"CREATE TABLE measurement_digests ("
	" host TEXT NOT NULL,"
	" seq INTEGER NOT NULL,"
	" kind TEXT NOT NULL CHECK (kind IN ('file', 'segment')),"
	" pos INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" sha256 BLOB NOT NULL,"
	" PRIMARY KEY (host, seq, kind, pos),"
	" FOREIGN KEY (host, seq) REFERENCES measurements (host, seq)"
	"  ON DELETE CASCADE);"

	"CREATE TABLE policy_versions ("
	" version INTEGER PRIMARY KEY,"
	" time_ms INTEGER NOT NULL,"
	" change TEXT NOT NULL);"

	/* The hosts whose bundle a version changed. */
	"CREATE TABLE policy_hosts ("
	" version INTEGER NOT NULL REFERENCES policy_versions (version),"
	" host TEXT NOT NULL REFERENCES hosts (name) ON DELETE CASCADE,"
	" PRIMARY KEY (version, host));"

	"CREATE TABLE grants ("
	" channel TEXT PRIMARY KEY,"
	" endpoint_a TEXT NOT NULL REFERENCES partitions (name),"
	" endpoint_b TEXT NOT NULL REFERENCES partitions (name),"
	" direction TEXT NOT NULL"
	"  CHECK (direction IN ('a_to_b', 'b_to_a', 'both')),"
	" ring_bytes INTEGER NOT NULL,"
	" require_integrity INTEGER NOT NULL"
	"  CHECK (require_integrity IN (0, 1)),"
	" version INTEGER NOT NULL REFERENCES policy_versions (version),"
	" CHECK (endpoint_a <> endpoint_b));"

	/* Ids are assigned by the store (head + 1), never by the engine. */
	"CREATE TABLE audit ("
	" id INTEGER PRIMARY KEY,"
	" time_ms INTEGER NOT NULL,"
	" host TEXT NOT NULL,"
	" event TEXT NOT NULL,"
	" partition TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" reason TEXT NOT NULL,"
	" file TEXT NOT NULL,"
	" detail TEXT NOT NULL,"
	" prev_hash BLOB NOT NULL,"
	" hash BLOB NOT NULL);"

	/* The chain's end, one row: appends compare-and-set it, so two
	 * writers can never both extend the same row; a truncated tail
	 * disagrees with it. last_hash is NULL while the chain is empty. */
	"CREATE TABLE audit_head ("
	" one INTEGER PRIMARY KEY CHECK (one = 1),"
	" last_id INTEGER NOT NULL,"
	" last_hash BLOB);"
	"INSERT INTO audit_head (one, last_id, last_hash) VALUES (1, 0, NULL);";

/* 2: indexes for the per-host and per-partition questions the daemon asks
 * on every bundle, measurement and delete. */
static const char m2_indexes[] =
	"CREATE INDEX partitions_by_host ON partitions (host, name);"
	"CREATE INDEX measurements_by_partition"
	" ON measurements (partition, host, seq);"
	"CREATE INDEX grants_by_a ON grants (endpoint_a);"
	"CREATE INDEX grants_by_b ON grants (endpoint_b);"
	"CREATE INDEX policy_hosts_by_host ON policy_hosts (host, version);";

/* 3: API bearer tokens and one-time host join tokens, both kept only as
 * the SHA-256 of the secret, so a copy of the file grants nothing. ids are
 * assigned by the store (max + 1), never by rowid. */
static const char m3_tokens[] =
	"CREATE TABLE api_tokens ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" scope TEXT NOT NULL,"
	" sha256 BLOB NOT NULL UNIQUE,"
	" created_ms INTEGER NOT NULL);"

	"CREATE TABLE join_tokens ("
	" host TEXT NOT NULL,"
	" sha256 BLOB NOT NULL UNIQUE,"
	" expires_ms INTEGER NOT NULL,"
	" used_ms INTEGER);";                   /* NULL: not used yet */

/* 4: what runs a thin partition inside its vmm (its agent's
 * PartitionStatus.backend: "kvm", "process"); '' until an agent that says
 * reports it. Not `kind` (thin or libvirt), which the API calls backend. */
static const char m4_backend[] =
	"ALTER TABLE partitions ADD COLUMN vmm_backend TEXT NOT NULL "
	"DEFAULT '';";

/* 5: certificates revoked when their host was deleted or re-joined
 * (SHA-256 of the DER, as hosts.cert_sha256): refused at the handshake,
 * so a re-added host needs a new join. Kept for ever; a row is 80 bytes. */
static const char m5_revoked[] =
	"CREATE TABLE revoked_certs ("
	" sha256 BLOB PRIMARY KEY,"
	" host TEXT NOT NULL,"
	" revoked_ms INTEGER NOT NULL,"
	" why TEXT NOT NULL);";

/* 6: signed checkpoints of the audit chain's head (db/store_checkpoint.c):
 * the id and hash of the last row then, when, the key that signed, the
 * Ed25519 signature over common/checkpoint.h's message. ids by the store
 * (max + 1). Nothing in a checkpoint is trusted by verification: the
 * exported document and the public key are. */
static const char m6_checkpoints[] =
	"CREATE TABLE audit_checkpoints ("
	" id INTEGER PRIMARY KEY,"
	" seq INTEGER NOT NULL,"
	" hash BLOB NOT NULL,"
	" time_ms INTEGER NOT NULL,"
	" key_id TEXT NOT NULL,"
	" signature BLOB NOT NULL);";

/* 7: segment sets (issue 14; db/store_segsets.c). A set is kept as the
 * checked, compacted JSON of its data-set entry (common/segset.h is its
 * one parser; the bundle carries the text as is), with its host -- every
 * member is on that one host, since a segment is one host's memory -- and
 * its members by name, so that a partition in a set cannot be deleted or
 * moved away from under it. */
static const char m7_segsets[] =
	"CREATE TABLE segsets ("
	" name TEXT PRIMARY KEY,"
	" host TEXT NOT NULL REFERENCES hosts (name),"
	" set_json TEXT NOT NULL,"
	" version INTEGER NOT NULL REFERENCES policy_versions (version));"

	"CREATE TABLE segset_members ("
	" segset TEXT NOT NULL REFERENCES segsets (name) ON DELETE CASCADE,"
	" pos INTEGER NOT NULL,"
	" partition TEXT NOT NULL REFERENCES partitions (name),"
	" PRIMARY KEY (segset, pos),"
	" UNIQUE (segset, partition));"
	"CREATE INDEX segsets_by_host ON segsets (host, name);"
	"CREATE INDEX segset_members_by_partition"
	" ON segset_members (partition);";

/* 8: service rules (issue 14; db/store_services.c): who may call which
 * partition's named service. ids from svc_rule_seq, never reused (a
 * client holding the id of a deleted rule must not delete another); one
 * rule per
 * (source, target, service), since an agent takes the first that names a
 * call. */
static const char m8_services[] =
	"CREATE TABLE svc_rules ("
	" id INTEGER PRIMARY KEY,"
	" source TEXT NOT NULL REFERENCES partitions (name),"
	" target TEXT NOT NULL REFERENCES partitions (name),"
	" service TEXT NOT NULL,"
	" action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),"
	" version INTEGER NOT NULL REFERENCES policy_versions (version),"
	" UNIQUE (source, target, service),"
	" CHECK (source <> target));"
	"CREATE INDEX svc_rules_by_target ON svc_rules (target);"
	"CREATE TABLE svc_rule_seq (last INTEGER NOT NULL);"
	"INSERT INTO svc_rule_seq (last) VALUES (0);";

/* 9: agent updates from the daemon (issue 12; db/store_updates.c): each
 * package stored once by its SHA-256; one row per host for the update it
 * was last asked to take, with where it stands; the agent version each
 * host last said hello with. The bytes are kept in parts (below). */
static const char m9_updates[] =
	"CREATE TABLE update_packages ("
	" sha256 BLOB PRIMARY KEY,"
	" version TEXT NOT NULL,"
	" size INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL);"

	/* The bytes in parts of STORE_UPD_PART: a chunk for the link reads
	 * one or two parts, never the whole package (SQLite hands a
	 * function like substr the whole blob). */
	"CREATE TABLE update_package_parts ("
	" sha256 BLOB NOT NULL REFERENCES update_packages (sha256),"
	" idx INTEGER NOT NULL,"
	" data BLOB NOT NULL,"
	" PRIMARY KEY (sha256, idx));"

	"CREATE TABLE host_updates ("
	" host TEXT PRIMARY KEY REFERENCES hosts (name) ON DELETE CASCADE,"
	" sha256 BLOB NOT NULL REFERENCES update_packages (sha256),"
	" state TEXT NOT NULL CHECK (state IN ('pending', 'receiving',"
	"  'staged', 'committed', 'failed', 'refused')),"
	" received INTEGER NOT NULL,"
	" reason TEXT NOT NULL,"
	" requested_ms INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL);"

	"CREATE TABLE host_agents ("
	" host TEXT PRIMARY KEY REFERENCES hosts (name) ON DELETE CASCADE,"
	" agent_version TEXT NOT NULL,"
	" seen_ms INTEGER NOT NULL);";

/* 10: disk keys (issue 13; db/store_diskkeys.c): each encrypted disk's
 * XTS key wrapped by the key process (AES-256-GCM under its
 * disk-wrap.key, bound to partition, disk and version), one row per
 * version; `withheld` is why the partition gets no key ("" = released). */
static const char m10_disk_keys[] =
	"CREATE TABLE disk_keys ("
	" partition TEXT NOT NULL REFERENCES partitions (name)"
	"  ON DELETE CASCADE,"
	" disk TEXT NOT NULL,"
	" key_version INTEGER NOT NULL CHECK (key_version >= 1),"
	" wrapped BLOB NOT NULL,"
	" withheld TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL,"
	" PRIMARY KEY (partition, disk, key_version));";

/* 11: several parleyd replicas on one store (issue 15; db/store_replicas.c):
 * each replica's name, where agents reach it and when it last said it is
 * alive; which replica holds each host's agent connection; partition
 * commands an API on one replica stored for a host held by another,
 * which the holding replica delivers and deletes. */
static const char m11_replicas[] =
	"CREATE TABLE replicas ("
	" name TEXT PRIMARY KEY,"
	" link TEXT NOT NULL,"                    /* HOST:PORT or '' */
	" started_ms INTEGER NOT NULL,"
	" seen_ms INTEGER NOT NULL);"

	"CREATE TABLE replica_hosts ("
	" host TEXT PRIMARY KEY REFERENCES hosts (name) ON DELETE CASCADE,"
	" replica TEXT NOT NULL,"
	" since_ms INTEGER NOT NULL);"
	"CREATE INDEX replica_hosts_by_replica ON replica_hosts (replica);"

	"CREATE TABLE replica_commands ("
	" id INTEGER PRIMARY KEY,"
	" host TEXT NOT NULL REFERENCES hosts (name) ON DELETE CASCADE,"
	" partition TEXT NOT NULL,"               /* '' for CHANGED */
	" action INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL);"
	"CREATE INDEX replica_commands_by_host ON replica_commands (host);";

/* 12: each
 * device's latest lifecycle state as the agent's PartitionStatus.devices
 * says, one "device plugin state" line each (names only: checked on the
 * way in); '' none reported. Not in spec_json: that is the operator's
 * spec, which agents get back and parse strictly. */
static const char m12_devices[] =
	"ALTER TABLE partitions ADD COLUMN devices TEXT NOT NULL "
	"DEFAULT '';";

/* 13: partition commands delivered at least once (issue 15): a command
 * stays in replica_commands until its agent says it was carried out, and
 * the agent skips an id it has carried out already -- so ids must only
 * grow, also after every row was deleted (MAX(id) + 1 would give an id
 * again). The counter starts where the commands stored so far end. */
static const char m13_command_seq[] =
	"CREATE TABLE replica_command_seq (last INTEGER NOT NULL);"
	"INSERT INTO replica_command_seq (last) "
	"SELECT COALESCE(MAX(id), 0) FROM replica_commands;";

/* 14: an operator's rollback of a host's agent through the daemon (issue
 * 12; db/store_updates.c, store_rollback_*): one row per host for the
 * rollback last asked of it -- the request id the agent answers to, the
 * version previous should hold ('' any), the agent version when it was
 * asked (a hello with another version means it happened), where it stands
 * and why. */
static const char m14_rollbacks[] =
	"CREATE TABLE host_rollbacks ("
	" host TEXT PRIMARY KEY REFERENCES hosts (name) ON DELETE CASCADE,"
	" request INTEGER NOT NULL CHECK (request >= 1),"
	" state TEXT NOT NULL CHECK (state IN ('requested', 'committed',"
	"  'refused', 'failed')),"
	" expect_version TEXT NOT NULL,"
	" from_version TEXT NOT NULL,"
	" version TEXT NOT NULL,"
	" reason TEXT NOT NULL,"
	" requested_ms INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL);";

static const char *const migrations[] = { m1_tables, m2_indexes, m3_tokens,
					  m4_backend, m5_revoked,
					  m6_checkpoints, m7_segsets,
					  m8_services, m9_updates,
					  m10_disk_keys, m11_replicas,
					  m12_devices, m13_command_seq,
					  m14_rollbacks };
#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

unsigned store_schema_latest(void)
{
	return NMIGRATIONS;
}

static int count(struct store *s, const char *sql, int64_t *v,
		 struct parley_err *err)
{
	struct db_stmt *st;
	int rc = db_prep(s, sql, &st, err);
	return rc < 0 ? rc : db_int(s, st, "identify", v, err);
}

/* Which file is this: a fresh one (version 0), a parley store (its
 * version), or something else (refused). */
static int file_version(struct store *s, unsigned *v, struct parley_err *err)
{
	const char *q_app = s->ops->q_app, *q_any = s->ops->q_any;
	static const char q_ver[] = "SELECT MAX(version) FROM schema_version";
	int64_t app, any, ver;
	int rc = count(s, q_app, &app, err);
	if (rc == 0)
		rc = count(s, q_any, &any, err);
	if (rc < 0)
		return rc;
	*v = 0;
	if (app == 0 && any == 0)
		return 0;
	if (app != STORE_APPLICATION_ID)
		return perr(err, -EINVAL, "store %s: not a parley store "
			    "(application id 0x%llx)", s->path,
			    (unsigned long long)app);
	rc = count(s, q_ver, &ver, err);
	if (rc == 0 && (ver < 0 || ver > 1000000))
		rc = perr(err, -EBADMSG, "store %s: schema version %lld",
			  s->path, (long long)ver);
	*v = rc == 0 ? (unsigned)ver : 0;
	return rc;
}

static int apply(struct store *s, unsigned v, struct parley_err *err)
{
	static const char q_rec[] =
		"INSERT INTO schema_version (version, applied_ms) "
		"VALUES (?1, ?2)";
	char *ddl = s->ops->ddl(migrations[v - 1]);
	if (!ddl)
		return perr(err, -ENOMEM, "store: out of memory");
	int rc = db_exec(s, ddl, err);
	free(ddl);
	if (rc == 0 && v == 1 && s->ops->app_set)
		rc = db_exec(s, s->ops->app_set, err);
	if (rc < 0)
		return db_prefix(err, rc, "migration %u", v);
	struct db_stmt *st;
	rc = db_prep(s, q_rec, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, v);
	db_bind_i64(st, 2, db_now_ms());
	return db_run(s, st, "record migration", err);
}

/* One step: under the write lock, reread the version (another process
 * may have migrated meanwhile) and apply the next migration if needed. */
static int migrate_step(struct store *s, unsigned upto, bool *done,
			struct parley_err *err)
{
	unsigned v;
	int rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = file_version(s, &v, err);
	if (rc == 0 && v > NMIGRATIONS)
		rc = perr(err, -ENOTSUP, "store %s has schema version %u; "
			  "this parleyd knows up to %u", s->path, v,
			  (unsigned)NMIGRATIONS);
	if (rc == 0 && v >= upto)
		*done = true;
	else if (rc == 0)
		rc = apply(s, v + 1, err);
	return db_op_end(s, rc, err);
}

int db_migrate(struct store *s, unsigned upto, struct parley_err *err)
{
	_Static_assert(STORE_APPLICATION_ID == 1349676153,
		       "db_ops.app_set and q_app spell the id in decimal");
	bool done = false;
	int rc = 0;
	if (upto > NMIGRATIONS)
		upto = NMIGRATIONS;
	/* Versions only go up, so a file already at `upto` (or beyond, which
	 * migrate_step refuses) needs no write lock to say so: an open must
	 * not queue for the lock behind a busy writer (a daemon ingesting
	 * without pause could starve it past the busy timeout). */
	unsigned v = 0;
	if (store_schema_version(s, &v, NULL) == 0 && v == upto && v > 0)
		return 0;
	while (rc == 0 && !done)
		rc = migrate_step(s, upto, &done, err);
	return rc;
}

int store_schema_version(struct store *s, unsigned *version,
			 struct parley_err *err)
{
	int rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = file_version(s, version, err);
	return db_rd_end(s, rc, err);
}
