/*
 * Partitions: where each runs, what kind it is, its spec, its state (with
 * a row version for compare-and-set), and its key configuration files.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "common/jsonv.h"

/* Written by put; read back with what only a status sets. */
#define PART_COLS "name, host, kind, spec_json, state, version, updated_ms"
#define PART_COLS_READ PART_COLS ", vmm_backend, devices"

const char *store_part_kind_name(enum store_part_kind k)
{
	switch (k) {
	case STORE_PART_THIN:
		return "thin";
	case STORE_PART_LIBVIRT:
		return "libvirt";
	}
	return "?";
}

int db_need_partition(struct store *s, const char *name, char *host_out,
		      struct parley_err *err)
{
	static const char q[] = "SELECT host FROM partitions WHERE name = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_step(s, st, "find partition", err);
	if (rc == 0)
		rc = perr(err, -ENOENT, "partition \"%s\": no such partition",
			  name);
	else if (rc == 1 && host_out)
		rc = db_col_name(s, st, 0, host_out, STORE_NAME_MAX, err);
	db_reset(st);
	return rc < 0 ? rc : 0;
}

/* Segment sets and service rules hold their partitions on one host
 * (db/store_segsets.c, db/store_services.c). */
static int refs_busy(struct store *s, const char *name, const char *when,
		     struct parley_err *err)
{
	int64_t sets, rules;
	int rc = db_policy_refs(s, name, &sets, &rules, err);
	if (rc == 0 && sets > 0)
		rc = perr(err, -EBUSY, "partition \"%s\" is a member of %lld "
			  "segment set(s); remove them %s", name,
			  (long long)sets, when);
	if (rc == 0 && rules > 0)
		rc = perr(err, -EBUSY, "partition \"%s\": %lld service "
			  "rule(s) name it; remove them %s", name,
			  (long long)rules, when);
	return rc;
}

/* ---- put ---- */

static int check_spec(const char *json, size_t len, struct parley_err *err)
{
	if (!json)
		return perr(err, -EINVAL, "spec_json: missing");
	int rc = db_check_text("spec_json", json, len, STORE_SPEC_MAX, err);
	if (rc < 0)
		return rc;
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr);
	if (!root) {
		rc = jv_syntax_error(&jerr, err);
		return db_prefix(err, rc, "spec_json");
	}
	if (!json_is_object(root))
		rc = jv_type_error(root, "spec_json", "an object", err);
	json_decref(root);
	return rc;
}

static int check_part_in(const struct store_part_in *in,
			 struct parley_err *err)
{
	if (!in)
		return perr(err, -EINVAL, "partition: missing");
	int rc = db_check_name("partition name", in->name, err);
	if (rc == 0)
		rc = db_check_name("partition host", in->host, err);
	if (rc == 0)
		rc = db_check_name("partition state", in->state, err);
	if (rc == 0 && (unsigned)in->kind > STORE_PART_LIBVIRT)
		rc = perr(err, -EINVAL, "partition kind %d: not thin or "
			  "libvirt", (int)in->kind);
	if (rc == 0)
		rc = check_spec(in->spec_json, in->spec_len, err);
	return rc;
}

/* A partition that grants name may not change host: the bundles of the
 * old and the new host would change with no policy version. */
static int check_move(struct store *s, const struct store_part_in *in,
		      struct parley_err *err)
{
	char host[STORE_NAME_MAX];
	int64_t n;
	struct parley_err e = { 0 };
	int rc = db_need_partition(s, in->name, host, &e);
	if (rc == -ENOENT)
		return 0;               /* a new partition */
	if (rc < 0) {
		if (err)
			*err = e;
		return rc;
	}
	if (strcmp(host, in->host) == 0)
		return 0;
	rc = db_grants_naming(s, in->name, &n, err);
	if (rc == 0 && n > 0)
		rc = perr(err, -EBUSY, "partition \"%s\": %lld grant(s) name "
			  "it; remove them before moving it from host \"%s\" "
			  "to \"%s\"", in->name, (long long)n, host, in->host);
	if (rc == 0)
		rc = refs_busy(s, in->name, "before moving it", err);
	return rc;
}

static int part_version(struct store *s, const char *name, uint64_t *v,
			struct parley_err *err)
{
	static const char q[] =
		"SELECT version FROM partitions WHERE name = ?1";
	struct db_stmt *st;
	int64_t n;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_int(s, st, "partition version", &n, err);
	*v = (uint64_t)n;
	return rc;
}

static int part_put(struct store *s, const struct store_part_in *in,
		    uint64_t *version, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO partitions (" PART_COLS ") "
		"VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6) "
		"ON CONFLICT (name) DO UPDATE SET host = excluded.host, "
		"kind = excluded.kind, spec_json = excluded.spec_json, "
		"state = excluded.state, version = partitions.version + 1, "
		"updated_ms = excluded.updated_ms";
	struct db_stmt *st;
	int rc = db_need_host(s, in->host, err);
	if (rc == 0)
		rc = check_move(s, in, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, in->name);
	db_bind_text(st, 2, in->host);
	db_bind_text(st, 3, store_part_kind_name(in->kind));
	db_bind_textn(st, 4, in->spec_json, in->spec_len);
	db_bind_text(st, 5, in->state);
	db_bind_i64(st, 6, db_now_ms());
	rc = db_run(s, st, "put partition", err);
	return rc < 0 ? rc : part_version(s, in->name, version, err);
}

int store_partition_put(struct store *s, const struct store_part_in *in,
			uint64_t *version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = check_part_in(in, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, part_put(s, in, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

/* ---- get, list ---- */

static int parse_kind(const char *k, enum store_part_kind *out)
{
	for (int i = STORE_PART_THIN; i <= STORE_PART_LIBVIRT; i++)
		if (strcmp(k, store_part_kind_name(i)) == 0) {
			*out = i;
			return 0;
		}
	return -EBADMSG;
}

static int part_row(struct store *s, struct db_stmt *st,
		    struct store_partition *p, struct parley_err *err)
{
	memset(p, 0, sizeof(*p));
	int rc = db_col_name(s, st, 0, p->name, sizeof(p->name), err);
	if (rc == 0)
		rc = db_col_name(s, st, 1, p->host, sizeof(p->host), err);
	if (rc == 0 && parse_kind(db_col_str(st, 2), &p->kind) < 0)
		rc = perr(err, -EBADMSG, "store %s: partition \"%s\" has kind "
			  "\"%.16s\"", s->path, p->name, db_col_str(st, 2));
	if (rc == 0)
		rc = db_col_name(s, st, 4, p->state, sizeof(p->state), err);
	if (rc == 0)
		rc = db_col_name(s, st, 7, p->vmm_backend,
				 sizeof(p->vmm_backend), err);
	if (rc < 0)
		return rc;
	p->spec_len = (size_t)db_col_bytes(st, 3);
	p->spec_json = strndup(db_col_str(st, 3), p->spec_len);
	p->devices = strndup(db_col_str(st, 8), (size_t)db_col_bytes(st, 8));
	if (!p->devices) {
		free(p->spec_json);
		p->spec_json = NULL;
	}
	p->version = (uint64_t)db_col_i64(st, 5);
	p->updated_ms = db_col_i64(st, 6);
	return p->spec_json ? 0 : perr(err, -ENOMEM, "store: out of memory");
}

int store_partition_get(struct store *s, const char *name,
			struct store_partition *out, struct parley_err *err)
{
	static const char q[] = "SELECT " PART_COLS_READ " FROM partitions "
				"WHERE name = ?1";
	struct db_stmt *st;
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("partition name", name, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	rc = db_step(s, st, "get partition", err);
	if (rc == 1)
		rc = part_row(s, st, out, err);
	else if (rc == 0)
		rc = perr(err, -ENOENT, "partition \"%s\": no such partition",
			  name);
	db_reset(st);
	if (rc < 0)
		store_partition_free(out);
	return rc;
}

int store_partition_host(struct store *s, const char *name, char *host_out,
			 struct parley_err *err)
{
	host_out[0] = '\0';
	int rc = db_check_name("partition name", name, err);
	return rc < 0 ? rc : db_need_partition(s, name, host_out, err);
}

void store_partition_free(struct store_partition *p)
{
	if (!p)
		return;
	free(p->spec_json);
	p->spec_json = NULL;
	p->spec_len = 0;
	free(p->devices);
	p->devices = NULL;
}

void store_partition_list_free(struct store_partition *p, unsigned n)
{
	for (unsigned i = 0; p && i < n; i++)
		store_partition_free(&p[i]);
	free(p);
}

static int part_list(struct store *s, struct db_stmt *st, unsigned limit,
		     struct store_partition *p, struct parley_err *err)
{
	unsigned n = 0;
	int rc = 0;
	while (n < limit && (rc = db_step(s, st, "list partitions", err)) == 1)
		if ((rc = part_row(s, st, &p[n++], err)) < 0)
			break;
	db_reset(st);
	if (rc < 0) {
		for (unsigned i = 0; i < n; i++)
			store_partition_free(&p[i]);
		return rc;
	}
	return (int)n;
}

int store_partition_list(struct store *s, const char *host, const char *after,
			 unsigned limit, struct store_partition **out,
			 struct parley_err *err)
{
	/* Two statements: "?2 = '' OR host = ?2" keeps SQLite off the
	 * partitions_by_host index (1 ms a call at 10,000 hosts). */
	static const char q_all[] = "SELECT " PART_COLS_READ " FROM partitions "
				    "WHERE name > ?1 AND ?2 = '' "
				    "ORDER BY name LIMIT ?3";
	static const char q_host[] = "SELECT " PART_COLS_READ " FROM partitions "
				     "WHERE host = ?2 AND name > ?1 "
				     "ORDER BY name LIMIT ?3";
	const char *q = host && host[0] ? q_host : q_all;
	struct db_stmt *st;
	*out = NULL;
	int rc = db_check_limit(limit, err);
	if (rc == 0)
		rc = db_check_opt_name("host name", host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	struct store_partition *p = calloc(limit, sizeof(*p));
	if (!p)
		return perr(err, -ENOMEM, "store: out of memory");
	db_bind_text(st, 1, after);
	db_bind_text(st, 2, host);
	db_bind_i64(st, 3, limit);
	rc = part_list(s, st, limit, p, err);
	if (rc < 0)
		free(p);
	else
		*out = p;
	return rc;
}

/* ---- state ---- */

/* The compare-and-set: UPDATE ... WHERE version = the one read. */
static int set_state(struct store *s, const char *name, const char *state,
		     uint64_t if_version, uint64_t *version,
		     struct parley_err *err)
{
	static const char q[] = "UPDATE partitions SET state = ?2, "
				"version = version + 1, updated_ms = ?3 "
				"WHERE name = ?1 AND version = ?4";
	uint64_t v = 0;
	struct db_stmt *st;
	int rc = db_need_partition(s, name, NULL, err);
	if (rc == 0)
		rc = part_version(s, name, &v, err);
	if (rc == 0 && if_version && v != if_version)
		rc = perr(err, -ESTALE, "partition \"%s\" is at version %llu, "
			  "not %llu: changed meanwhile", name,
			  (unsigned long long)v,
			  (unsigned long long)if_version);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, state);
	db_bind_i64(st, 3, db_now_ms());
	db_bind_i64(st, 4, (int64_t)v);
	rc = db_run(s, st, "set state", err);
	if (rc == 0 && db_changes(s) != 1)
		rc = perr(err, -ESTALE, "partition \"%s\" changed meanwhile",
			  name);
	*version = v + 1;
	return rc;
}

int store_partition_set_state(struct store *s, const char *name,
			      const char *state, uint64_t if_version,
			      uint64_t *version, struct parley_err *err)
{
	uint64_t v = 0;
	int rc = db_check_name("partition name", name, err);
	if (rc == 0)
		rc = db_check_name("partition state", state, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, set_state(s, name, state, if_version, &v, err), err);
	if (version)
		*version = rc < 0 ? 0 : v;
	return rc;
}

/* The devices' states as one text, a "device plugin state" line each
 * (every field a name: no space or newline can shift them). */
static int devices_text(const struct store_status_in *in, char *out,
			size_t cap, struct parley_err *err)
{
	size_t n = 0;
	out[0] = 0;
	if (in->ndevices > STORE_DEVICES_MAX)
		return perr(err, -EINVAL, "status: %u devices, at most %d",
			    in->ndevices, STORE_DEVICES_MAX);
	for (unsigned i = 0; i < in->ndevices; i++) {
		const struct store_device *d = &in->devices[i];
		int rc = db_check_name("device name", d->device, err);
		if (rc == 0)
			rc = db_check_name("device plugin", d->plugin, err);
		if (rc == 0)
			rc = db_check_name("device state", d->state, err);
		if (rc < 0)
			return rc;
		int k = snprintf(out + n, cap - n, "%s %s %s\n", d->device,
				 d->plugin, d->state);
		if (k < 0 || (size_t)k >= cap - n)
			return perr(err, -EINVAL, "status: devices too long");
		n += (size_t)k;
	}
	return 0;
}

static int set_devices(struct store *s, const char *name, const char *text,
		       struct parley_err *err)
{
	static const char q[] = "UPDATE partitions SET devices = ?2 "
				"WHERE name = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, text);
	return db_run(s, st, "set devices", err);
}

/* Only when the agent named one: an older agent's status keeps it. */
static int set_backend(struct store *s, const char *name, const char *backend,
		       struct parley_err *err)
{
	static const char q[] = "UPDATE partitions SET vmm_backend = ?2 "
				"WHERE name = ?1";
	struct db_stmt *st;
	if (!backend || !backend[0])
		return 0;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, backend);
	return db_run(s, st, "set backend", err);
}

static int status(struct store *s, const char *host, uint64_t seq,
		  const struct store_status_in *in, struct store_ingest *res,
		  struct parley_err *err)
{
	char on[STORE_NAME_MAX];
	uint64_t v = 0;
	int rc = db_seq_load(s, host, &res->seq, err);
	if (rc < 0 || seq <= res->seq) {
		res->skipped = rc < 0 ? 0 : 1;
		return rc;
	}
	rc = db_need_partition(s, in->partition, on, err);
	if (rc == -ENOENT) {
		/* No row: a thin partition's goes before its DESTROY reaches
		 * the agent, which then reports it stopped and destroyed. Not
		 * a bad record: taken (the seq raised), nothing stored, so
		 * that the agent is not refused for ever over it. */
		rc = db_seq_raise(s, host, seq, err);
		if (rc == 0)
			res->seq = seq;
		return rc;
	}
	if (rc == 0 && strcmp(on, host) != 0)
		rc = perr(err, -EPERM, "status from host \"%s\" for partition "
			  "\"%s\", which is on host \"%s\"", host, in->partition,
			  on);
	if (rc == 0)
		rc = set_state(s, in->partition, in->state, 0, &v, err);
	if (rc == 0)
		rc = set_backend(s, in->partition, in->backend, err);
	char text[STORE_DEVICES_MAX * 3 * STORE_NAME_MAX];
	if (rc == 0)
		rc = devices_text(in, text, sizeof(text), err);
	if (rc == 0)
		rc = set_devices(s, in->partition, text, err);
	if (rc == 0)
		rc = db_seq_raise(s, host, seq, err);
	if (rc == 0) {
		res->stored = 1;
		res->seq = seq;
	}
	return rc;
}

int store_ingest_status(struct store *s, const char *host, uint64_t seq,
			const char *partition, const char *state,
			struct store_ingest *res, struct parley_err *err)
{
	struct store_status_in in = { .partition = partition, .state = state };
	return store_ingest_status_in(s, host, seq, &in, res, err);
}

int store_ingest_status_in(struct store *s, const char *host, uint64_t seq,
			   const struct store_status_in *in,
			   struct store_ingest *res, struct parley_err *err)
{
	struct store_ingest r = { 0 };
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_seq_check_order("status", 0, seq, 0, err);
	if (rc == 0)
		rc = db_check_name("partition name", in->partition, err);
	if (rc == 0)
		rc = db_check_name("partition state", in->state, err);
	if (rc == 0 && in->backend && in->backend[0])
		rc = db_check_name("partition backend", in->backend, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, status(s, host, seq, in, &r, err), err);
	if (res)
		*res = rc < 0 ? (struct store_ingest){ 0 } : r;
	return rc;
}

/* ---- delete ---- */

static int part_delete(struct store *s, const char *name,
		       struct parley_err *err)
{
	static const char q[] = "DELETE FROM partitions WHERE name = ?1";
	struct db_stmt *st;
	int64_t n;
	int rc = db_need_partition(s, name, NULL, err);
	if (rc == 0)
		rc = db_grants_naming(s, name, &n, err);
	if (rc == 0 && n > 0)
		rc = perr(err, -EBUSY, "partition \"%s\": %lld grant(s) name "
			  "it; remove them first", name, (long long)n);
	if (rc == 0)
		rc = refs_busy(s, name, "first", err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	return db_run(s, st, "delete partition", err);
}

int store_partition_delete(struct store *s, const char *name,
			   struct parley_err *err)
{
	int rc = db_check_name("partition name", name, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	return db_op_end(s, part_delete(s, name, err), err);
}

/* ---- key configuration files ---- */

static int check_files(const char *const *names, unsigned n,
		       struct parley_err *err)
{
	char lbl[32];
	if (n > STORE_FILES_MAX)
		return perr(err, -E2BIG, "%u key configuration files, at most "
			    "%d", n, STORE_FILES_MAX);
	if (n && !names)
		return perr(err, -EINVAL, "files: missing");
	for (unsigned i = 0; i < n; i++) {
		snprintf(lbl, sizeof(lbl), "files[%u]", i);
		int rc = db_check_file_name(lbl, names[i], err);
		if (rc < 0)
			return rc;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return perr(err, -EEXIST, "%s: \"%s\" twice",
					    lbl, names[i]);
	}
	return 0;
}

static int set_files(struct store *s, const char *partition,
		     const char *const *names, unsigned n,
		     struct parley_err *err)
{
	static const char q_del[] =
		"DELETE FROM partition_files WHERE partition = ?1";
	static const char q_ins[] =
		"INSERT INTO partition_files (partition, pos, name) "
		"VALUES (?1, ?2, ?3)";
	struct db_stmt *st;
	int rc = db_need_partition(s, partition, NULL, err);
	if (rc == 0)
		rc = db_prep(s, q_del, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	rc = db_run(s, st, "clear files", err);
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		rc = db_prep(s, q_ins, &st, err);
		if (rc < 0)
			break;
		db_bind_text(st, 1, partition);
		db_bind_i64(st, 2, i);
		db_bind_text(st, 3, names[i]);
		rc = db_run(s, st, "add file", err);
	}
	return rc;
}

int store_partition_set_files(struct store *s, const char *partition,
			      const char *const *names, unsigned n,
			      struct parley_err *err)
{
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = check_files(names, n, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	return db_op_end(s, set_files(s, partition, names, n, err), err);
}

static int get_files(struct store *s, const char *partition,
		     struct store_names *out, struct parley_err *err)
{
	static const char q[] = "SELECT name FROM partition_files "
				"WHERE partition = ?1 ORDER BY pos";
	struct db_stmt *st;
	int rc = db_need_partition(s, partition, NULL, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, partition);
	while ((rc = db_step(s, st, "list files", err)) == 1)
		if (db_names_push(out, db_col_str(st, 0)) < 0) {
			rc = perr(err, -ENOMEM, "store: out of memory");
			break;
		}
	db_reset(st);
	return rc;
}

int store_partition_files(struct store *s, const char *partition,
			  struct store_names *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = db_check_name("partition name", partition, err);
	if (rc == 0)
		rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_rd_end(s, get_files(s, partition, out, err), err);
	if (rc < 0)
		store_names_free(out);
	return rc;
}
