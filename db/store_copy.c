/*
 * store_copy: every row of one store into another, empty one -- `parleyd
 * store migrate --from sqlite:A --to postgresql://B`. Table by table in
 * the order the foreign keys need, from one read snapshot of the source
 * into one transaction of the target, each value as what it is (integer,
 * text, bytes, NULL); then the target's audit chain is verified from row
 * 1 and its head must be the source's, so a copy that lost, reordered or
 * altered a row is refused after the fact as well as prevented.
 *
 * The list of tables is the schema's (db/README.md); a store with a table
 * it does not name (a later migration not added here) is refused rather
 * than copied in part.
 */
#include "db/store_int.h"

#include <errno.h>
#include <string.h>

struct copy_table {
	const char *name;
	const char *types;   /* per column: I integer, T text, B bytes */
	bool single;         /* one row the schema seeds: updated, not added */
	const char *q_sel, *q_put, *q_count;
};

/* Parents before children. */
static const struct copy_table tables[] = {
	{ "hosts", "TTBIIII", false,
	  "SELECT name, libvirt_uri, cert_sha256, agent_seq, "
	  "policy_acked, created_ms, updated_ms FROM hosts ORDER BY "
	  "name",
	  "INSERT INTO hosts (name, libvirt_uri, cert_sha256, "
	  "agent_seq, policy_acked, created_ms, updated_ms) VALUES "
	  "(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	  "SELECT COUNT(*) FROM hosts" },
	{ "partitions", "TTTTTIITT", false,
	  "SELECT name, host, kind, spec_json, state, version, "
	  "updated_ms, vmm_backend, devices FROM partitions ORDER BY name",
	  "INSERT INTO partitions (name, host, kind, spec_json, "
	  "state, version, updated_ms, vmm_backend, devices) VALUES (?1, "
	  "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	  "SELECT COUNT(*) FROM partitions" },
	{ "partition_files", "TIT", false,
	  "SELECT partition, pos, name FROM partition_files ORDER BY "
	  "partition",
	  "INSERT INTO partition_files (partition, pos, name) VALUES "
	  "(?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM partition_files" },
	{ "baselines", "TBII", false,
	  "SELECT partition, digest, golden, time_ms FROM baselines "
	  "ORDER BY partition",
	  "INSERT INTO baselines (partition, digest, golden, time_ms) "
	  "VALUES (?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM baselines" },
	{ "baseline_digests", "TTITB", false,
	  "SELECT partition, kind, pos, name, sha256 FROM "
	  "baseline_digests ORDER BY partition",
	  "INSERT INTO baseline_digests (partition, kind, pos, name, "
	  "sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
	  "SELECT COUNT(*) FROM baseline_digests" },
	{ "measurements", "TITIB", false,
	  "SELECT host, seq, partition, time_ms, digest FROM "
	  "measurements ORDER BY host",
	  "INSERT INTO measurements (host, seq, partition, time_ms, "
	  "digest) VALUES (?1, ?2, ?3, ?4, ?5)",
	  "SELECT COUNT(*) FROM measurements" },
	{ "measurement_digests", "TITITB", false,
	  "SELECT host, seq, kind, pos, name, sha256 FROM "
	  "measurement_digests ORDER BY host",
	  "INSERT INTO measurement_digests (host, seq, kind, pos, "
	  "name, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	  "SELECT COUNT(*) FROM measurement_digests" },
	{ "policy_versions", "IIT", false,
	  "SELECT version, time_ms, change FROM policy_versions ORDER "
	  "BY version",
	  "INSERT INTO policy_versions (version, time_ms, change) "
	  "VALUES (?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM policy_versions" },
	{ "policy_hosts", "IT", false,
	  "SELECT version, host FROM policy_hosts ORDER BY version",
	  "INSERT INTO policy_hosts (version, host) VALUES (?1, ?2)",
	  "SELECT COUNT(*) FROM policy_hosts" },
	{ "grants", "TTTTIII", false,
	  "SELECT channel, endpoint_a, endpoint_b, direction, "
	  "ring_bytes, require_integrity, version FROM grants ORDER "
	  "BY channel",
	  "INSERT INTO grants (channel, endpoint_a, endpoint_b, "
	  "direction, ring_bytes, require_integrity, version) VALUES "
	  "(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	  "SELECT COUNT(*) FROM grants" },
	{ "audit", "IITTTTTTTBB", false,
	  "SELECT id, time_ms, host, event, partition, channel, "
	  "reason, file, detail, prev_hash, hash FROM audit ORDER BY "
	  "id",
	  "INSERT INTO audit (id, time_ms, host, event, partition, "
	  "channel, reason, file, detail, prev_hash, hash) VALUES "
	  "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	  "SELECT COUNT(*) FROM audit" },
	{ "audit_head", "IB", true,
	  "SELECT last_id, last_hash FROM audit_head",
	  "UPDATE audit_head SET last_id = ?1, last_hash = ?2",
	  "SELECT COUNT(*) FROM audit_head WHERE last_id <> 0" },
	{ "api_tokens", "ITTBI", false,
	  "SELECT id, name, scope, sha256, created_ms FROM api_tokens "
	  "ORDER BY id",
	  "INSERT INTO api_tokens (id, name, scope, sha256, "
	  "created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
	  "SELECT COUNT(*) FROM api_tokens" },
	{ "join_tokens", "TBII", false,
	  "SELECT host, sha256, expires_ms, used_ms FROM join_tokens "
	  "ORDER BY host",
	  "INSERT INTO join_tokens (host, sha256, expires_ms, "
	  "used_ms) VALUES (?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM join_tokens" },
	{ "revoked_certs", "BTIT", false,
	  "SELECT sha256, host, revoked_ms, why FROM revoked_certs "
	  "ORDER BY sha256",
	  "INSERT INTO revoked_certs (sha256, host, revoked_ms, why) "
	  "VALUES (?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM revoked_certs" },
	{ "audit_checkpoints", "IIBITB", false,
	  "SELECT id, seq, hash, time_ms, key_id, signature FROM "
	  "audit_checkpoints ORDER BY id",
	  "INSERT INTO audit_checkpoints (id, seq, hash, time_ms, "
	  "key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	  "SELECT COUNT(*) FROM audit_checkpoints" },
	{ "segsets", "TTTI", false,
	  "SELECT name, host, set_json, version FROM segsets ORDER BY "
	  "name",
	  "INSERT INTO segsets (name, host, set_json, version) VALUES "
	  "(?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM segsets" },
	{ "segset_members", "TIT", false,
	  "SELECT segset, pos, partition FROM segset_members ORDER BY "
	  "segset",
	  "INSERT INTO segset_members (segset, pos, partition) VALUES "
	  "(?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM segset_members" },
	{ "svc_rules", "ITTTTI", false,
	  "SELECT id, source, target, service, action, version FROM "
	  "svc_rules ORDER BY id",
	  "INSERT INTO svc_rules (id, source, target, service, "
	  "action, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	  "SELECT COUNT(*) FROM svc_rules" },
	{ "svc_rule_seq", "I", true,
	  "SELECT last FROM svc_rule_seq",
	  "UPDATE svc_rule_seq SET last = ?1",
	  "SELECT COUNT(*) FROM svc_rule_seq WHERE last <> 0" },
	{ "update_packages", "BTII", false,
	  "SELECT sha256, version, size, created_ms FROM "
	  "update_packages ORDER BY sha256",
	  "INSERT INTO update_packages (sha256, version, size, "
	  "created_ms) VALUES (?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM update_packages" },
	{ "update_package_parts", "BIB", false,
	  "SELECT sha256, idx, data FROM update_package_parts ORDER "
	  "BY sha256",
	  "INSERT INTO update_package_parts (sha256, idx, data) "
	  "VALUES (?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM update_package_parts" },
	{ "host_updates", "TBTITII", false,
	  "SELECT host, sha256, state, received, reason, "
	  "requested_ms, updated_ms FROM host_updates ORDER BY host",
	  "INSERT INTO host_updates (host, sha256, state, received, "
	  "reason, requested_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, "
	  "?5, ?6, ?7)",
	  "SELECT COUNT(*) FROM host_updates" },
	{ "host_agents", "TTI", false,
	  "SELECT host, agent_version, seen_ms FROM host_agents ORDER "
	  "BY host",
	  "INSERT INTO host_agents (host, agent_version, seen_ms) "
	  "VALUES (?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM host_agents" },
	{ "host_rollbacks", "TITTTTTII", false,
	  "SELECT host, request, state, expect_version, from_version, "
	  "version, reason, requested_ms, updated_ms FROM host_rollbacks "
	  "ORDER BY host",
	  "INSERT INTO host_rollbacks (host, request, state, "
	  "expect_version, from_version, version, reason, requested_ms, "
	  "updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	  "SELECT COUNT(*) FROM host_rollbacks" },
	{ "disk_keys", "TTIBTI", false,
	  "SELECT partition, disk, key_version, wrapped, withheld, "
	  "created_ms FROM disk_keys ORDER BY partition, disk, key_version",
	  "INSERT INTO disk_keys (partition, disk, key_version, wrapped, "
	  "withheld, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	  "SELECT COUNT(*) FROM disk_keys" },
	{ "replicas", "TTII", false,
	  "SELECT name, link, started_ms, seen_ms FROM replicas ORDER BY "
	  "name",
	  "INSERT INTO replicas (name, link, started_ms, seen_ms) VALUES "
	  "(?1, ?2, ?3, ?4)",
	  "SELECT COUNT(*) FROM replicas" },
	{ "replica_hosts", "TTI", false,
	  "SELECT host, replica, since_ms FROM replica_hosts ORDER BY host",
	  "INSERT INTO replica_hosts (host, replica, since_ms) VALUES "
	  "(?1, ?2, ?3)",
	  "SELECT COUNT(*) FROM replica_hosts" },
	{ "replica_commands", "ITTII", false,
	  "SELECT id, host, partition, action, created_ms FROM "
	  "replica_commands ORDER BY id",
	  "INSERT INTO replica_commands (id, host, partition, action, "
	  "created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
	  "SELECT COUNT(*) FROM replica_commands" },
	{ "replica_command_seq", "I", true,
	  "SELECT last FROM replica_command_seq",
	  "UPDATE replica_command_seq SET last = ?1",
	  "SELECT COUNT(*) FROM replica_command_seq WHERE last <> 0" },
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

/* Each value of the source's current row into the target's statement. */
static void bind_row(const struct copy_table *t, struct db_stmt *from,
		     struct db_stmt *to)
{
	for (int i = 0; t->types[i]; i++) {
		if (db_col_isnull(from, i)) {
			db_bind_null(to, i + 1);
			continue;
		}
		switch (t->types[i]) {
		case 'I':
			db_bind_i64(to, i + 1, db_col_i64(from, i));
			break;
		case 'T':
			db_bind_textn(to, i + 1, db_col_str(from, i),
				      db_col_bytes(from, i));
			break;
		default: {
			const void *p = db_col_blob(from, i);
			/* an empty value is bytes still, not NULL */
			db_bind_blob(to, i + 1, p ? p : "",
				     db_col_bytes(from, i));
		}
		}
	}
}

static int copy_table(struct store *from, struct store *to,
		      const struct copy_table *t, uint64_t *rows,
		      struct parley_err *err)
{
	struct db_stmt *sel, *put;
	int rc = db_prep(from, t->q_sel, &sel, err);
	if (rc == 0)
		rc = db_prep(to, t->q_put, &put, err);
	if (rc < 0)
		return db_prefix(err, rc, "copy %s", t->name);
	uint64_t n = 0;
	while ((rc = db_step(from, sel, t->name, err)) == 1) {
		bind_row(t, sel, put);
		if ((rc = db_run(to, put, t->name, err)) < 0)
			break;
		n++;
	}
	db_reset(sel);
	if (rc < 0)
		return db_prefix(err, rc, "copy %s row %llu", t->name,
				 (unsigned long long)n + 1);
	*rows += n;
	return 0;
}

/* Only schema_version and the seeded rows at their start. */
static int need_empty(struct store *to, struct parley_err *err)
{
	for (size_t i = 0; i < NTABLES; i++) {
		struct db_stmt *st;
		int64_t n = 0;
		int rc = db_prep(to, tables[i].q_count, &st, err);
		if (rc == 0)
			rc = db_int(to, st, tables[i].name, &n, err);
		if (rc < 0)
			return rc;
		if (n)
			return perr(err, -ENOTEMPTY, "store %s is not empty "
				    "(%s has rows): a copy goes into a new "
				    "store only", to->path, tables[i].name);
	}
	return 0;
}

/* Every table of the source is one this copies (+ schema_version). */
static int need_known(struct store *from, struct parley_err *err)
{
	struct db_stmt *st;
	int64_t n = 0;
	int rc = db_prep(from, from->ops->q_tables, &st, err);
	if (rc == 0)
		rc = db_int(from, st, "tables", &n, err);
	if (rc == 0 && n != (int64_t)NTABLES + 1)
		rc = perr(err, -ENOTSUP, "store %s has %lld tables; this "
			  "parleyd copies %zu", from->path, (long long)n,
			  NTABLES + 1);
	return rc;
}

static int copy_all(struct store *from, struct store *to,
		    struct store_copy_stats *cs, struct parley_err *err)
{
	int rc = need_empty(to, err);
	for (size_t i = 0; rc == 0 && i < NTABLES; i++)
		rc = copy_table(from, to, &tables[i], &cs->rows, err);
	if (rc == 0)
		cs->tables = (unsigned)NTABLES;
	return rc;
}

/* On arrival, before the commit (a copy that does not verify leaves the
 * target as empty as it was): the chain from row 1, ending at the
 * source's head. */
static int verify(struct store *to, uint64_t head, const uint8_t *want,
		  uint64_t *rows, struct parley_err *err)
{
	uint64_t bad = 0;
	int rc = store_audit_verify(to, &bad, rows, err);
	if (rc == 0 && head)
		rc = store_audit_verify_to(to, head, want, &bad, err);
	if (rc == 0 && *rows != head)
		rc = perr(err, -EBADMSG, "store %s: %llu audit rows arrived, "
			  "the source's head is %llu", to->path,
			  (unsigned long long)*rows, (unsigned long long)head);
	if (rc < 0)
		return db_prefix(err, rc, "the copy in %s does not verify",
				 to->path);
	return 0;
}

int store_copy(struct store *from, struct store *to,
	       struct store_copy_stats *cs, struct parley_err *err)
{
	memset(cs, 0, sizeof(*cs));
	unsigned vf = 0, vt = 0;
	int rc = store_schema_version(from, &vf, err);
	if (rc == 0)
		rc = store_schema_version(to, &vt, err);
	if (rc < 0)
		return rc;
	if (vf != vt)
		return perr(err, -ENOTSUP, "store %s has schema version %u, "
			    "%s %u: open both with one parleyd first",
			    from->path, vf, to->path, vt);
	if ((rc = need_known(from, err)) < 0)
		return rc;
	if ((rc = store_read_begin(from, err)) < 0)
		return rc;
	uint8_t want[STORE_DIGEST] = { 0 };
	uint64_t head = 0;
	rc = store_audit_head(from, &head, want, err);
	if (rc == 0 && (rc = store_begin(to, err)) == 0) {
		rc = copy_all(from, to, cs, err);
		if (rc == 0)
			rc = verify(to, head, want, &cs->audit_rows, err);
		if (rc == 0)
			rc = store_commit(to, err);
		else
			store_rollback(to, NULL);
	}
	store_read_end(from);
	return rc;
}
