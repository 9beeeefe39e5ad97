/*
 * The store (db/): migrations from an empty file and from an older one,
 * reopening, a newer file refused; every API round trip on a real SQLite
 * file; grant changes and policy versions across three hosts; acks; seq
 * deduplication; the audit chain, then tampered with behind the store's
 * back; batches; and a table of hostile arguments with the exact code and
 * message each gets. Crash safety, concurrent writers and the ingest rate
 * are in test_store_crash.c.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include <openssl/evp.h>

#include "db/store.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define STORE_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STORE_TEST_LSAN 1
#endif
#endif
#ifdef STORE_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Look for leaks while the test can still fail (see tests/test_spec.c). */
static void expect_no_leaks(void)
{
#ifdef STORE_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

#define NOCERT ((struct store_blob){ NULL, 0 })
#define SPEC "{\"name\":\"x\",\"image\":\"x.elf\",\"memory\":\"8M\"}"

/* ---- a store in a temporary directory ---- */

struct fx {
	char *dir;
	char path[600];
	struct store *s;
};

static void fx_dir(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->dir = t_tmpdir();
	t_store_uri(f->dir, "parley.db", f->path, sizeof(f->path));
}

static void fx_reopen(struct fx *f)
{
	struct parley_err e = { 0 };
	int rc = store_open(f->path, &f->s, &e);
	cr_assert_eq(rc, 0, "store_open: %d %s", rc, perr_msg(&e));
}

static void fx_open(struct fx *f)
{
	fx_dir(f);
	fx_reopen(f);
}

static void fx_close(struct fx *f)
{
	store_close(f->s);
	f->s = NULL;
	t_store_uri_drop(f->path);
	t_rmtree(f->dir);
	free(f->dir);
}

/* ---- the file behind the store's back ---- */

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static bool on_pg(const char *path)
{
	return strncmp(path, "postgresql:", 11) == 0;
}

static void raw_exec(const char *path, const char *sql)
{
	if (on_pg(path)) {
		t_pg_exec(path, sql);
		return;
	}
	sqlite3 *db = raw_open(path);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(db);
}

static sqlite3_stmt *raw_row(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
		     "%s: %s", sql, sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: no row", sql);
	return st;
}

static int64_t raw_int(const char *path, const char *sql)
{
	if (on_pg(path)) {
		char *v = t_pg_text(path, sql);
		int64_t n = strtoll(v, NULL, 10);
		free(v);
		return n;
	}
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = raw_row(db, sql);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static char *raw_text(const char *path, const char *sql)
{
	if (on_pg(path))
		return t_pg_text(path, sql);
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = raw_row(db, sql);
	char *v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* ---- a small fleet: h1 runs pa and pb, h2 pc (libvirt), h3 pd ---- */

static struct store_part_in part_in(const char *name, const char *host,
				    enum store_part_kind kind)
{
	return (struct store_part_in){
		.name = name, .host = host, .kind = kind, .spec_json = SPEC,
		.spec_len = strlen(SPEC), .state = "defined",
	};
}

static void fleet(struct store *s)
{
	struct parley_err e = { 0 };
	static const char *const hosts[] = { "h1", "h2", "h3" };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(store_host_put(s, hosts[i], "test:///default",
					    NOCERT, &e), 0, "%s", perr_msg(&e));
	struct store_part_in p[] = {
		part_in("pa", "h1", STORE_PART_THIN),
		part_in("pb", "h1", STORE_PART_THIN),
		part_in("pc", "h2", STORE_PART_LIBVIRT),
		part_in("pd", "h3", STORE_PART_THIN),
	};
	for (int i = 0; i < 4; i++)
		cr_assert_eq(store_partition_put(s, &p[i], NULL, &e), 0, "%s",
			     perr_msg(&e));
}

static struct grant mkgrant(const char *ch, const char *a, const char *b)
{
	struct grant g;
	memset(&g, 0, sizeof(g));
	snprintf(g.channel, sizeof(g.channel), "%s", ch);
	snprintf(g.a, sizeof(g.a), "%s", a);
	snprintf(g.b, sizeof(g.b), "%s", b);
	g.dir = GRANT_BOTH;
	g.ring_bytes = 64 * 1024;
	g.require_integrity = true;
	return g;
}

static bool grant_eq(const struct grant *x, const struct grant *y)
{
	return !strcmp(x->channel, y->channel) && !strcmp(x->a, y->a) &&
	       !strcmp(x->b, y->b) && x->dir == y->dir &&
	       x->ring_bytes == y->ring_bytes &&
	       x->require_integrity == y->require_integrity;
}

/* "a,b,c" from a names list. */
static void join(char *out, size_t cap, const struct store_names *l)
{
	out[0] = '\0';
	for (unsigned i = 0; i < l->n; i++)
		snprintf(out + strlen(out), cap - strlen(out), "%s%s",
			 i ? "," : "", l->name[i]);
}

static void expect_affected(struct store *s, uint64_t v, const char *want)
{
	struct store_names l;
	struct parley_err e = { 0 };
	char got[256];
	cr_assert_eq(store_policy_affected(s, v, &l, &e), 0, "%s",
		     perr_msg(&e));
	join(got, sizeof(got), &l);
	cr_expect_str_eq(got, want, "version %llu affected %s, want %s",
			 (unsigned long long)v, got, want);
	store_names_free(&l);
}

static void expect_for_host(struct store *s, const char *host,
			    const char *want)
{
	struct grant_set gs;
	struct parley_err e = { 0 };
	char got[256] = "";
	cr_assert_eq(store_grants_for_host(s, host, &gs, &e), 0, "%s",
		     perr_msg(&e));
	for (unsigned i = 0; i < gs.n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
			 i ? "," : "", gs.g[i].channel);
	cr_expect_str_eq(got, want, "host %s: grants %s, want %s", host, got,
			 want);
	grant_set_free(&gs);
}

/* ---- digests ---- */

/* Input digests with patterned bytes; not to be copied (it points into
 * itself). */
struct dg {
	uint8_t digest[32];
	uint8_t file_sha[STORE_FILES_MAX][32];
	char names[STORE_FILES_MAX][16];
	struct store_file_in file[STORE_FILES_MAX];
	uint8_t seg_sha[STORE_SEGS_MAX][32];
	struct store_blob seg[STORE_SEGS_MAX];
	struct store_digests_in in;
};

static void dg_make(struct dg *d, unsigned nfile, unsigned nseg, uint8_t fill)
{
	memset(d, 0, sizeof(*d));
	memset(d->digest, fill, 32);
	for (unsigned i = 0; i < nfile; i++) {
		snprintf(d->names[i], sizeof(d->names[i]), "file%u.conf", i);
		memset(d->file_sha[i], fill + 1 + i, 32);
		d->file[i] = (struct store_file_in){
			d->names[i], { d->file_sha[i], 32 } };
	}
	for (unsigned i = 0; i < nseg; i++) {
		memset(d->seg_sha[i], fill + 0x80 + i, 32);
		d->seg[i] = (struct store_blob){ d->seg_sha[i], 32 };
	}
	d->in = (struct store_digests_in){
		.digest = { d->digest, 32 }, .file = d->file, .nfile = nfile,
		.seg = d->seg, .nseg = nseg,
	};
}

static void dg_expect(const struct store_digests *got, const struct dg *want)
{
	cr_expect_arr_eq(got->digest, want->digest, 32);
	cr_assert_eq(got->nfile, want->in.nfile);
	cr_assert_eq(got->nseg, want->in.nseg);
	for (unsigned i = 0; i < got->nfile; i++) {
		cr_expect_str_eq(got->file[i].name, want->names[i]);
		cr_expect_arr_eq(got->file[i].sha256, want->file_sha[i], 32);
	}
	for (unsigned i = 0; i < got->nseg; i++)
		cr_expect_arr_eq(got->seg[i], want->seg_sha[i], 32);
}

/* ---- audit events ---- */

static char details[64][32];

/* n (<= 64) agent events with seqs first, first+1, ... */
static void mkevents(struct store_audit_in *ev, unsigned n, uint64_t first)
{
	for (unsigned i = 0; i < n; i++) {
		snprintf(details[i], sizeof(details[i]), "seq %llu",
			 (unsigned long long)(first + i));
		ev[i] = (struct store_audit_in){
			.seq = first + i, .event = "open_denied",
			.partition = "pa", .channel = "ab",
			.reason = "INTEGRITY", .file = "motd",
			.detail = details[i],
		};
	}
}

static void ingest_events(struct store *s, const char *host, uint64_t first,
			  uint64_t last)
{
	struct store_audit_in ev[64];
	struct parley_err e = { 0 };
	unsigned n = (unsigned)(last - first + 1);
	mkevents(ev, n, first);
	cr_assert_eq(store_ingest_audit(s, host, ev, n, NULL, &e), 0, "%s",
		     perr_msg(&e));
}

/* n of the daemon's own events on an empty trail, detail "event <id>". */
static void audit_fill(struct store *s, unsigned n)
{
	struct store_audit_in *ev = calloc(n, sizeof(*ev));
	char (*d)[32] = calloc(n, 32);
	cr_assert(ev && d);
	for (unsigned i = 0; i < n; i++) {
		snprintf(d[i], 32, "event %u", i + 1);
		ev[i] = (struct store_audit_in){
			.host = "h1", .event = "open_denied",
			.partition = "pa", .channel = "ab",
			.reason = "INTEGRITY", .file = "motd",
			.detail = d[i], .time_ms = 1700000000000ll + i,
		};
	}
	struct parley_err e = { 0 };
	uint64_t last;
	int rc = store_audit_append(s, ev, n, &last, &e);
	free(ev);
	free(d);
	cr_assert_eq(rc, 0, "%s", perr_msg(&e));
}

/* ---- open, migrate ---- */

Test(store, migrate_from_empty)
{
	struct fx f;
	fx_open(&f);
	unsigned v;
	struct parley_err e = { 0 };
	cr_assert_eq(store_schema_version(f.s, &v, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(v, store_schema_latest());
	cr_expect_geq(store_schema_latest(), 2);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM schema_version"),
		     store_schema_latest());
	/* 17 with revoked_certs (migration 5) and audit_checkpoints (6);
	 * 21 with segsets, segset_members (7), svc_rules and svc_rule_seq (8);
	 * 25 with update_packages, update_package_parts, host_updates,
	 * host_agents (9); 26 with disk_keys (10); 29 with replicas,
	 * replica_hosts, replica_commands (11); 31 with replica_command_seq
	 * (13) and host_rollbacks (14) */
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM sqlite_master "
			     "WHERE type = 'table'"), 31);
	char *mode = raw_text(f.path, "PRAGMA journal_mode");
	cr_expect_str_eq(mode, "wal");
	free(mode);
	fx_close(&f);
	expect_no_leaks();
}

Test(store, migrate_from_older_file)
{
	struct fx f;
	fx_dir(&f);
	struct parley_err e = { 0 };
	cr_assert_eq(store_open_upto(f.path, 1, &f.s, &e), 0, "%s",
		     perr_msg(&e));
	unsigned v;
	cr_assert_eq(store_schema_version(f.s, &v, &e), 0);
	cr_expect_eq(v, 1);
	cr_expect_eq(store_host_put(f.s, "h1", "test:///default", NOCERT, &e),
		     0, "%s", perr_msg(&e));
	store_close(f.s);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM sqlite_master "
			     "WHERE type = 'index' AND name = "
			     "'grants_by_a'"), 0);
	fx_reopen(&f);
	cr_assert_eq(store_schema_version(f.s, &v, &e), 0);
	cr_expect_eq(v, store_schema_latest());
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM sqlite_master "
			     "WHERE type = 'index' AND name = "
			     "'grants_by_a'"), 1);
	struct store_host h;
	cr_expect_eq(store_host_get(f.s, "h1", &h, &e), 0, "%s", perr_msg(&e));
	fx_close(&f);
}

STORE_TEST(store, reopen_is_idempotent)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	for (int i = 0; i < 3; i++) {
		store_close(f.s);
		fx_reopen(&f);
	}
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM schema_version"),
		     store_schema_latest());
	struct store_partition p;
	struct parley_err e = { 0 };
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_eq(p.version, 1);
	store_partition_free(&p);
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, newer_schema_refused)
{
	struct fx f;
	fx_open(&f);
	store_close(f.s);
	f.s = NULL;
	char ins[128];
	unsigned next = store_schema_latest() + 1;
	snprintf(ins, sizeof(ins), "INSERT INTO schema_version VALUES (%u, 0)",
		 next);
	raw_exec(f.path, ins);
	struct parley_err e = { 0 };
	struct store *s = (void *)1;
	int rc = store_open(f.path, &s, &e);
	cr_expect_eq(rc, -ENOTSUP);
	cr_expect_null(s);
	char want[700];
	/* PostgreSQL's is named by its URI without any password. */
	snprintf(want, sizeof(want), "%s%s has schema version %u; this "
		 "parleyd knows up to %u", t_store_pg ? "/" : "store ",
		 t_store_pg ? strstr(f.path, "dbname=") + strlen("dbname=")
			    : f.path, next, store_schema_latest());
	if (t_store_pg)
		cr_expect(strstr(e.msg, want) &&
			  !strncmp(e.msg, "store postgresql://postgres@/tmp/",
				   33), "%s", e.msg);
	else
		cr_expect_str_eq(e.msg, want);
	fx_close(&f);
}

Test(store, foreign_files_refused)
{
	struct fx f;
	fx_dir(&f);
	raw_exec(f.path, "CREATE TABLE other (x INTEGER)");
	struct parley_err e = { 0 };
	cr_expect_eq(store_open(f.path, &f.s, &e), -EINVAL);
	cr_expect(strstr(e.msg, "not a parley store"), "%s", e.msg);
	FILE *fp = fopen(f.path, "w");
	cr_assert(fp);
	fputs("this is not a database, it is a text file that is long "
	      "enough to have a header, which SQLite reads and rejects\n",
	      fp);
	fclose(fp);
	e = (struct parley_err){ 0 };
	cr_expect_eq(store_open(f.path, &f.s, &e), -EINVAL, "%s", e.msg);
	cr_expect(strstr(e.msg, "not a parley store (not an SQLite "
			 "database)"), "%s", e.msg);
	e = (struct parley_err){ 0 };
	char missing[700];
	snprintf(missing, sizeof(missing), "%s/no/such/dir/x.db", f.dir);
	cr_expect_eq(store_open(missing, &f.s, &e), -ENOENT, "%s", e.msg);
	cr_expect_eq(store_open("", &f.s, &e), -EINVAL);
	fx_close(&f);
}

/* ---- hosts ---- */

STORE_TEST(store, hosts_round_trip)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	uint8_t cert[32];
	memset(cert, 0xc5, sizeof(cert));
	cr_assert_eq(store_host_put(f.s, "h1", "qemu+tls://h1/system",
				    (struct store_blob){ cert, 32 }, &e), 0,
		     "%s", perr_msg(&e));
	struct store_host h;
	cr_assert_eq(store_host_get(f.s, "h1", &h, &e), 0);
	cr_expect_str_eq(h.name, "h1");
	cr_expect_str_eq(h.libvirt_uri, "qemu+tls://h1/system");
	cr_expect(h.has_cert);
	cr_expect_arr_eq(h.cert_sha256, cert, 32);
	cr_expect_eq(h.agent_seq, 0);
	cr_expect_gt(h.created_ms, 1600000000000ll);
	/* An update keeps the seq and drops the pinned cert. */
	ingest_events(f.s, "h1", 1, 3);
	cr_assert_eq(store_host_put(f.s, "h1", "", NOCERT, &e), 0);
	cr_assert_eq(store_host_get(f.s, "h1", &h, &e), 0);
	cr_expect_str_eq(h.libvirt_uri, "");
	cr_expect_not(h.has_cert);
	cr_expect_eq(h.agent_seq, 3);
	cr_expect_eq(store_host_get(f.s, "nope", &h, &e), -ENOENT);
	cr_expect_str_eq(e.msg, "host \"nope\": no such host");
	cr_expect_eq(store_host_delete(f.s, "h1", &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_host_get(f.s, "h1", &h, &e), -ENOENT);
	cr_expect_eq(store_host_delete(f.s, "h1", &e), -ENOENT);
	fx_close(&f);
}

STORE_TEST(store, host_pagination)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	char name[16];
	for (int i = 0; i < 23; i++) {
		snprintf(name, sizeof(name), "host%02d", 22 - i);
		cr_assert_eq(store_host_put(f.s, name, "", NOCERT, &e), 0);
	}
	char after[STORE_NAME_MAX] = "";
	int total = 0, pages = 0, n;
	do {
		struct store_host *h;
		n = store_host_list(f.s, after, 10, &h, &e);
		cr_assert_geq(n, 0, "%s", perr_msg(&e));
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "host%02d", total + i);
			cr_expect_str_eq(h[i].name, name);
		}
		if (n)
			snprintf(after, sizeof(after), "%s", h[n - 1].name);
		total += n;
		pages++;
		free(h);
	} while (n == 10);
	cr_expect_eq(total, 23);
	cr_expect_eq(pages, 3);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- partitions ---- */

STORE_TEST(store, partitions_round_trip)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store_partition p;
	cr_assert_eq(store_partition_get(f.s, "pc", &p, &e), 0);
	cr_expect_str_eq(p.host, "h2");
	cr_expect_eq(p.kind, STORE_PART_LIBVIRT);
	cr_expect_str_eq(p.state, "defined");
	cr_expect_str_eq(p.spec_json, SPEC);
	cr_expect_eq(p.spec_len, strlen(SPEC));
	cr_expect_eq(p.version, 1);
	store_partition_free(&p);

	uint64_t v;
	cr_expect_eq(store_partition_set_state(f.s, "pc", "running", 1, &v,
					       &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(v, 2);
	/* A writer that read version 1 lost the race. */
	cr_expect_eq(store_partition_set_state(f.s, "pc", "stopped", 1, &v,
					       &e), -ESTALE);
	cr_expect_str_eq(e.msg, "partition \"pc\" is at version 2, not 1: "
			 "changed meanwhile");
	cr_expect_eq(store_partition_set_state(f.s, "pc", "stopped", 0, &v,
					       &e), 0);
	cr_expect_eq(v, 3);
	/* put replaces and bumps. */
	struct store_part_in in = part_in("pc", "h2", STORE_PART_THIN);
	in.state = "created";
	cr_expect_eq(store_partition_put(f.s, &in, &v, &e), 0);
	cr_expect_eq(v, 4);
	cr_assert_eq(store_partition_get(f.s, "pc", &p, &e), 0);
	cr_expect_eq(p.kind, STORE_PART_THIN);
	cr_expect_str_eq(p.state, "created");
	store_partition_free(&p);

	cr_expect_eq(store_partition_delete(f.s, "pc", &e), 0);
	cr_expect_eq(store_partition_get(f.s, "pc", &p, &e), -ENOENT);
	cr_expect_eq(store_partition_delete(f.s, "pc", &e), -ENOENT);
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, partition_pagination)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	store_host_put(f.s, "h1", "", NOCERT, &e);
	store_host_put(f.s, "h2", "", NOCERT, &e);
	char name[16];
	for (int i = 0; i < 25; i++) {
		snprintf(name, sizeof(name), "p%02d", i);
		struct store_part_in in = part_in(name, i % 2 ? "h2" : "h1",
						  STORE_PART_THIN);
		cr_assert_eq(store_partition_put(f.s, &in, NULL, &e), 0, "%s",
			     perr_msg(&e));
	}
	static const int want_all[] = { 10, 10, 5 };
	static const int want_h2[] = { 10, 2 };
	const char *hosts[] = { NULL, "h2" };
	const int *want[] = { want_all, want_h2 };
	const int pages[] = { 3, 2 };
	for (int k = 0; k < 2; k++) {
		char after[STORE_NAME_MAX] = "";
		for (int pg = 0; pg < pages[k]; pg++) {
			struct store_partition *p;
			int n = store_partition_list(f.s, hosts[k], after, 10,
						     &p, &e);
			cr_assert_eq(n, want[k][pg], "host %s page %d: %d",
				     hosts[k] ? hosts[k] : "all", pg, n);
			for (int i = 0; i < n; i++)
				if (hosts[k])
					cr_expect_str_eq(p[i].host, hosts[k]);
			snprintf(after, sizeof(after), "%s", p[n - 1].name);
			store_partition_list_free(p, (unsigned)n);
		}
	}
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, partition_files)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	const char *names[] = { "motd", "policy v2", "config.json" };
	cr_assert_eq(store_partition_set_files(f.s, "pa", names, 3, &e), 0,
		     "%s", perr_msg(&e));
	struct store_names l;
	cr_assert_eq(store_partition_files(f.s, "pa", &l, &e), 0);
	cr_assert_eq(l.n, 3);
	for (unsigned i = 0; i < 3; i++)
		cr_expect_str_eq(l.name[i], names[i]);
	store_names_free(&l);
	cr_assert_eq(store_partition_set_files(f.s, "pa", names + 2, 1, &e), 0);
	cr_assert_eq(store_partition_files(f.s, "pa", &l, &e), 0);
	cr_expect_eq(l.n, 1);
	store_names_free(&l);
	cr_expect_eq(store_partition_files(f.s, "pb", &l, &e), 0);
	cr_expect_eq(l.n, 0);
	cr_expect_eq(store_partition_files(f.s, "ghost", &l, &e), -ENOENT);
	/* Deleting the partition takes its list along. */
	cr_expect_eq(store_partition_delete(f.s, "pd", &e), 0);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM partition_files "
			     "WHERE partition = 'pd'"), 0);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- baselines, measurements ---- */

STORE_TEST(store, baselines)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct dg d;
	dg_make(&d, 3, 2, 0x10);
	uint64_t v;
	cr_assert_eq(store_baseline_put(f.s, "pc", &d.in, false, &v, &e), 0,
		     "%s", perr_msg(&e));
	cr_expect_eq(v, 0, "no grant names pc: no bundle changed");
	struct store_baseline b;
	cr_assert_eq(store_baseline_get(f.s, "pc", &b, &e), 0, "%s",
		     perr_msg(&e));
	dg_expect(&b.d, &d);
	cr_expect_not(b.golden);
	cr_expect_str_eq(b.partition, "pc");

	/* Enrolment sets only the first baseline. */
	struct dg d2;
	dg_make(&d2, 1, 0, 0x40);
	cr_expect_eq(store_baseline_put(f.s, "pc", &d2.in, false, &v, &e),
		     -EEXIST);
	cr_expect_str_eq(e.msg, "partition \"pc\" already has an enrolled "
			 "baseline; enrolment only sets the first");
	/* The operator's golden one replaces it. */
	cr_assert_eq(store_baseline_put(f.s, "pc", &d2.in, true, &v, &e), 0);
	cr_assert_eq(store_baseline_get(f.s, "pc", &b, &e), 0);
	dg_expect(&b.d, &d2);
	cr_expect(b.golden);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM baseline_digests"),
		     1);

	cr_expect_eq(store_baseline_get(f.s, "pd", &b, &e), -ENOENT);
	cr_expect_str_eq(e.msg, "partition \"pd\" has no baseline");
	cr_expect_eq(store_baseline_get(f.s, "ghost", &b, &e), -ENOENT);
	cr_expect_str_eq(e.msg, "partition \"ghost\": no such partition");
	cr_expect_eq(store_baseline_delete(f.s, "pc", &v, &e), 0);
	cr_expect_eq(store_baseline_get(f.s, "pc", &b, &e), -ENOENT);
	cr_expect_eq(store_baseline_put(f.s, "pc", &d.in, false, &v, &e), 0);
	fx_close(&f);
}

STORE_TEST(store, baseline_of_granted_partition_versions_policy)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant g = mkgrant("ac", "pa", "pc");
	uint64_t v;
	cr_assert_eq(store_grant_add(f.s, &g, &v, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(v, 1);
	struct dg d;
	dg_make(&d, 1, 1, 0x20);
	cr_assert_eq(store_baseline_put(f.s, "pc", &d.in, true, &v, &e), 0);
	cr_expect_eq(v, 2);
	expect_affected(f.s, 2, "h1,h2");
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, measurements)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct dg d[3];
	for (int i = 0; i < 3; i++)
		dg_make(&d[i], 2, 1, (uint8_t)(0x30 + 0x10 * i));
	struct store_measure_in m[3] = {
		{ .seq = 1, .partition = "pa", .time_ms = 1000, .d = d[0].in },
		{ .seq = 2, .partition = "pb", .time_ms = 1001, .d = d[1].in },
		{ .seq = 5, .partition = "pa", .time_ms = 1002, .d = d[2].in },
	};
	struct store_ingest r;
	cr_assert_eq(store_ingest_measurements(f.s, "h1", m, 3, &r, &e), 0,
		     "%s", perr_msg(&e));
	cr_expect_eq(r.stored, 3);
	cr_expect_eq(r.seq, 5);
	struct store_measurement *l;
	int n = store_measurement_latest(f.s, NULL, &l, &e);
	cr_assert_eq(n, 2, "%d %s", n, perr_msg(&e));
	cr_expect_str_eq(l[0].partition, "pa");
	cr_expect_eq(l[0].seq, 5);
	cr_expect_eq(l[0].time_ms, 1002);
	dg_expect(&l[0].d, &d[2]);
	cr_expect_str_eq(l[1].partition, "pb");
	dg_expect(&l[1].d, &d[1]);
	free(l);
	cr_expect_eq(store_measurement_latest(f.s, "h2", &l, &e), 0);
	free(l);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- grants and policy versions ---- */

STORE_TEST(store, grant_changes_bump_the_version)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	uint64_t v;
	cr_expect_eq(store_policy_version(f.s, &v, &e), 0);
	cr_expect_eq(v, 0);
	struct grant g = mkgrant("ab", "pa", "pb");
	cr_assert_eq(store_grant_add(f.s, &g, &v, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(v, 1);
	g.ring_bytes = 1 << 20;
	g.dir = GRANT_B_TO_A;
	g.require_integrity = false;
	cr_assert_eq(store_grant_update(f.s, &g, &v, &e), 0);
	cr_expect_eq(v, 2);
	/* The same grant again changes nothing: no version. */
	cr_assert_eq(store_grant_update(f.s, &g, &v, &e), 0);
	cr_expect_eq(v, 2);
	struct grant got;
	cr_assert_eq(store_grant_get(f.s, "ab", &got, &e), 0);
	cr_expect(grant_eq(&got, &g));
	cr_assert_eq(store_grant_remove(f.s, "ab", &v, &e), 0);
	cr_expect_eq(v, 3);
	cr_expect_eq(store_grant_get(f.s, "ab", &got, &e), -ENOENT);
	cr_expect_eq(store_policy_version(f.s, &v, &e), 0);
	cr_expect_eq(v, 3);
	for (uint64_t i = 1; i <= 3; i++)
		expect_affected(f.s, i, "h1");
	fx_close(&f);
	expect_no_leaks();
}

/* Three hosts: h1 runs pa and pb, h2 pc, h3 pd. */
STORE_TEST(store, grants_per_host)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant gs[] = {
		mkgrant("ab", "pa", "pb"), mkgrant("ac", "pa", "pc"),
		mkgrant("bd", "pb", "pd"), mkgrant("cd", "pc", "pd"),
	};
	uint64_t v;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(store_grant_add(f.s, &gs[i], &v, &e), 0, "%s",
			     perr_msg(&e));
	cr_expect_eq(v, 4);
	expect_for_host(f.s, "h1", "ab,ac,bd");
	expect_for_host(f.s, "h2", "ac,cd");
	expect_for_host(f.s, "h3", "bd,cd");
	expect_affected(f.s, 1, "h1");
	expect_affected(f.s, 2, "h1,h2");
	expect_affected(f.s, 3, "h1,h3");
	expect_affected(f.s, 4, "h2,h3");
	/* Moving an endpoint affects the old host and the new one. */
	gs[3] = mkgrant("cd", "pc", "pb");
	cr_assert_eq(store_grant_update(f.s, &gs[3], &v, &e), 0);
	expect_affected(f.s, 5, "h1,h2,h3");
	expect_for_host(f.s, "h3", "bd");
	uint64_t hv[3];
	const char *hosts[] = { "h1", "h2", "h3" };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(store_policy_host_version(f.s, hosts[i], &hv[i],
						       &e), 0);
	cr_expect_eq(hv[0], 5);
	cr_expect_eq(hv[1], 5);
	cr_expect_eq(hv[2], 5);
	cr_expect_eq(store_grant_remove(f.s, "ab", &v, &e), 0);
	cr_assert_eq(store_policy_host_version(f.s, "h3", &hv[2], &e), 0);
	cr_expect_eq(hv[2], 5, "removing ab does not touch h3's bundle");
	struct grant_set all;
	cr_assert_eq(store_grant_list(f.s, &all, &e), 0);
	cr_expect_eq(all.n, 3);
	grant_set_free(&all);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- many hosts at once (db/store_push.c) ---- */

#define SET_H1                                                              \
	"{\"name\":\"bus\",\"members\":[\"pa\",\"pb\"],\"segments\":["         \
	"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"pa\","               \
	"\"size\":\"64K\"}]}"

/* Grants, a service rule, a segment set, disk keys (one in a rekey:
 * two versions held) and baselines on the small fleet. */
static void fleet_policy(struct store *s, struct dg *d)
{
	struct parley_err e = { 0 };
	struct grant gs[] = { mkgrant("ab", "pa", "pb"),
			      mkgrant("ac", "pa", "pc"),
			      mkgrant("bd", "pb", "pd") };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(store_grant_add(s, &gs[i], NULL, &e), 0, "%s",
			     perr_msg(&e));
	struct svc_rule r = { .allow = true };
	snprintf(r.source, sizeof(r.source), "pb");
	snprintf(r.target, sizeof(r.target), "pa");
	snprintf(r.service, sizeof(r.service), "auth");
	cr_assert_eq(store_put_svc_rule(s, &r, NULL, NULL, NULL, &e), 0, "%s",
		     perr_msg(&e));
	cr_assert_eq(store_put_segset(s, SET_H1, strlen(SET_H1), NULL, NULL,
				      &e), 0, "%s", perr_msg(&e));
	uint8_t w[STORE_WRAPPED_LEN];
	memset(w, 7, sizeof(w));
	struct store_blob wb = { w, sizeof(w) };
	cr_assert_eq(store_disk_key_add(s, "pb", "data", 1, wb, NULL, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert_eq(store_disk_key_add(s, "pb", "data", 2, wb, NULL, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert_eq(store_disk_key_add(s, "pd", "log", 1, wb, NULL, &e), 0,
		     "%s", perr_msg(&e));
	dg_make(&d[0], 2, 1, 0x10);
	dg_make(&d[1], 0, 0, 0x40);
	cr_assert_eq(store_baseline_put(s, "pa", &d[0].in, true, NULL, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert_eq(store_baseline_put(s, "pd", &d[1].in, false, NULL, &e),
		     0, "%s", perr_msg(&e));
}

/* One host's part equals what the per-host reads give. */
static void expect_host_read(struct store *s, const struct store_policy_host *h)
{
	struct parley_err e = { 0 };
	uint64_t v;
	cr_assert_eq(store_policy_host_version(s, h->host, &v, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect(h->found);
	cr_expect_eq(h->version, v, "%s: version %llu, alone %llu", h->host,
		     (unsigned long long)h->version, (unsigned long long)v);
	struct grant_set gs;
	cr_assert_eq(store_grants_for_host(s, h->host, &gs, &e), 0);
	cr_assert_eq(h->ngrants, gs.n, "%s: %u grants, alone %u", h->host,
		     h->ngrants, gs.n);
	for (unsigned i = 0; i < gs.n; i++)
		cr_expect(grant_eq(&h->grants[i], &gs.g[i]), "%s: grant %u",
			  h->host, i);
	grant_set_free(&gs);
	struct store_svc_rule *r;
	int n = store_list_svc_rules(s, h->host, &r, &e);
	cr_assert_eq((int)h->nrules, n);
	for (int i = 0; i < n; i++)
		cr_expect_eq(memcmp(&h->rules[i], &r[i], sizeof(*r)), 0);
	free(r);
	struct store_segset *l;
	n = store_list_segsets(s, h->host, &l, &e);
	cr_assert_eq((int)h->nsets, n);
	for (int i = 0; i < n; i++) {
		cr_expect_str_eq(h->sets[i].name, l[i].name);
		cr_expect_str_eq(h->sets[i].host, l[i].host);
		cr_expect_eq(h->sets[i].version, l[i].version);
		cr_expect_str_eq(h->sets[i].json, l[i].json);
	}
	store_segsets_free(l, (unsigned)n);
	struct store_disk_key *k;
	n = store_disk_keys_list(s, h->host, NULL, &k, &e);
	cr_assert_eq((int)h->nkeys, n);
	for (int i = 0; i < n; i++)
		cr_expect_eq(memcmp(&h->keys[i], &k[i], sizeof(*k)), 0,
			     "%s: disk key %d", h->host, i);
	free(k);
}

STORE_TEST(store, policy_read_of_many_hosts_is_the_per_host_reads)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct dg d[2];
	fleet_policy(f.s, d);
	struct parley_err e = { 0 };
	struct store_policy_read r;
	/* Any order, a repeat, a host that does not exist. */
	const char *hosts[] = { "h3", "h1", "nohost", "h2", "h1" };
	cr_assert_eq(store_policy_read(f.s, hosts, NULL, 5, &r, &e), 0, "%s",
		     perr_msg(&e));
	cr_assert_eq(r.n, 4);
	cr_expect_str_eq(r.h[0].host, "h1");
	cr_expect_str_eq(r.h[3].host, "nohost");
	cr_expect(!r.h[3].found);
	cr_expect(!r.h[3].read && !r.h[3].ngrants);
	for (unsigned i = 0; i < 3; i++) {
		cr_expect(r.h[i].read);
		expect_host_read(f.s, &r.h[i]);
	}
	const struct store_policy_host *h1 = store_policy_read_find(&r, "h1");
	cr_assert(h1);
	cr_expect_eq(h1->ngrants, 3);
	cr_expect_eq(h1->nrules, 1);
	cr_expect_eq(h1->nsets, 1);
	cr_expect_eq(h1->nkeys, 1);
	cr_expect_eq(h1->keys[0].versions, 2);
	cr_expect_null(store_policy_read_find(&r, "h4"));
	store_policy_read_free(&r);

	/* A host whose agent holds its version: the version, no lists. */
	uint64_t v1;
	cr_assert_eq(store_policy_host_version(f.s, "h1", &v1, &e), 0);
	const char *two[] = { "h1", "h2" };
	uint64_t after[] = { v1, 0 };
	cr_assert_eq(store_policy_read(f.s, two, after, 2, &r, &e), 0);
	cr_expect_eq(r.h[0].version, v1);
	cr_expect(!r.h[0].read);
	cr_expect_eq(r.h[0].ngrants + r.h[0].nrules + r.h[0].nkeys, 0);
	cr_expect(r.h[1].read);
	expect_host_read(f.s, &r.h[1]);
	store_policy_read_free(&r);

	/* Baselines: those that exist, in name order, as one by one. */
	struct store_baseline *b;
	const char *parts[] = { "pd", "pa", "pb", "pa", "nopart" };
	int n = store_baselines_read(f.s, parts, 5, &b, &e);
	cr_assert_eq(n, 2, "%d %s", n, perr_msg(&e));
	cr_expect_str_eq(b[0].partition, "pa");
	cr_expect_str_eq(b[1].partition, "pd");
	for (int i = 0; i < 2; i++) {
		struct store_baseline one;
		cr_assert_eq(store_baseline_get(f.s, b[i].partition, &one, &e),
			     0);
		cr_expect_eq(memcmp(&one, &b[i], sizeof(one)), 0);
		dg_expect(&b[i].d, &d[i]);
	}
	free(b);
	cr_expect_eq(store_baselines_read(f.s, parts, 0, &b, &e), 0);
	cr_expect_null(b);
	fx_close(&f);
	expect_no_leaks();
}

/* More hosts than one statement's list (STORE_IN_MAX): grants in a ring
 * across them, each host's read as by itself. */
STORE_TEST(store, policy_read_across_list_chunks)
{
	enum { N = 2 * STORE_IN_MAX + 7 };
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	static char names[N][16], parts[N][16];
	const char *hosts[N];
	cr_assert_eq(store_begin(f.s, &e), 0);
	for (unsigned i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "host%03u", (i * 37) % N);
		snprintf(parts[i], sizeof(parts[i]), "part%03u", (i * 37) % N);
		hosts[i] = names[i];
		cr_assert_eq(store_host_put(f.s, names[i], "test:///default",
					    NOCERT, &e), 0, "%s", perr_msg(&e));
		struct store_part_in p = part_in(parts[i], names[i],
						 STORE_PART_THIN);
		cr_assert_eq(store_partition_put(f.s, &p, NULL, &e), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		char ch[16];
		snprintf(ch, sizeof(ch), "ch%03u", i);
		struct grant g = mkgrant(ch, parts[i], parts[(i + 1) % N]);
		cr_assert_eq(store_grant_add(f.s, &g, NULL, &e), 0, "%s",
			     perr_msg(&e));
	}
	cr_assert_eq(store_commit(f.s, &e), 0, "%s", perr_msg(&e));
	struct store_policy_read r;
	cr_assert_eq(store_policy_read(f.s, hosts, NULL, N, &r, &e), 0, "%s",
		     perr_msg(&e));
	cr_assert_eq(r.n, N);
	for (unsigned i = 0; i < N; i++) {
		cr_expect_eq(r.h[i].ngrants, 2, "%s", r.h[i].host);
		expect_host_read(f.s, &r.h[i]);
	}
	store_policy_read_free(&r);
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, acks_of_many_hosts_each_as_alone)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant g1 = mkgrant("ac", "pa", "pc");
	struct grant g2 = mkgrant("bd", "pb", "pd");
	cr_assert_eq(store_grant_add(f.s, &g1, NULL, &e), 0);
	cr_assert_eq(store_grant_add(f.s, &g2, NULL, &e), 0);
	/* h1 and h3 are at 2, h2 at 1. */
	cr_assert_eq(store_policy_ack(f.s, "h3", 2, &e), 0);
	const char *hosts[] = { "h1", "h2", "nohost", "h3", "bad name!",
				"h2" };
	uint64_t vs[] = { 2, 2, 1, 1, 1, 1 };
	int rc[6];
	cr_assert_eq(store_policy_ack_many(f.s, hosts, vs, 6, rc, &e), 0,
		     "%s", perr_msg(&e));
	cr_expect_eq(rc[0], 0);
	cr_expect_eq(rc[1], -EINVAL, "a version above h2's bundle");
	cr_expect_eq(rc[2], -ENOENT);
	cr_expect_eq(rc[3], 0, "an older ack is no error, and no step back");
	cr_expect_eq(rc[4], -EINVAL);
	cr_expect_eq(rc[5], 0);
	uint64_t v;
	cr_expect_eq(store_policy_acked(f.s, "h1", &v, &e), 0);
	cr_expect_eq(v, 2);
	cr_expect_eq(store_policy_acked(f.s, "h2", &v, &e), 0);
	cr_expect_eq(v, 1);
	cr_expect_eq(store_policy_acked(f.s, "h3", &v, &e), 0);
	cr_expect_eq(v, 2);
	/* Inside a batch too, and the batch goes on. */
	cr_assert_eq(store_begin(f.s, &e), 0);
	cr_expect_eq(store_policy_ack_many(f.s, hosts + 1, vs + 1, 1, rc, &e),
		     0);
	cr_expect_eq(rc[0], -EINVAL);
	cr_expect_eq(store_policy_ack(f.s, "h2", 1, &e), 0);
	cr_assert_eq(store_commit(f.s, &e), 0, "%s", perr_msg(&e));
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, many_hosts_reads_refuse_hostile_names)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store_policy_read r;
	const char *bad[] = { "h1", "h1' OR '1'='1", NULL };
	cr_expect_eq(store_policy_read(f.s, bad, NULL, 2, &r, &e), -EINVAL);
	cr_expect_eq(r.n, 0);
	cr_expect_eq(store_policy_read(f.s, bad + 1, NULL, 2, &r, &e),
		     -EINVAL);
	cr_expect_eq(store_policy_read(f.s, NULL, NULL, 1, &r, &e), -EINVAL);
	store_policy_read_free(&r);
	struct store_baseline *b;
	cr_expect_eq(store_baselines_read(f.s, bad, 2, &b, &e), -EINVAL);
	cr_expect_null(b);
	cr_expect_eq(store_baselines_read(f.s, NULL, 3, &b, &e), -EINVAL);
	uint64_t vs[] = { 1 };
	cr_expect_eq(store_policy_ack_many(f.s, bad, vs, 1, NULL, &e),
		     -EINVAL);
	/* Nothing read is nothing: no hosts, no rows. */
	cr_expect_eq(store_policy_read(f.s, bad, NULL, 0, &r, &e), 0);
	cr_expect_eq(r.n, 0);
	store_policy_read_free(&r);
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, grant_replace_is_one_version)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant a[] = { mkgrant("ab", "pa", "pb"), mkgrant("cd", "pc",
								 "pd") };
	struct grant_set set = { 2, a };
	uint64_t v;
	cr_assert_eq(store_grant_replace(f.s, &set, &v, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(v, 1);
	expect_affected(f.s, 1, "h1,h2,h3");
	cr_assert_eq(store_grant_replace(f.s, &set, &v, &e), 0);
	cr_expect_eq(v, 1, "the same document again: no version");
	struct grant b[] = { mkgrant("cd", "pc", "pd"), mkgrant("ac", "pa",
								 "pc") };
	set.g = b;
	cr_assert_eq(store_grant_replace(f.s, &set, &v, &e), 0);
	cr_expect_eq(v, 2);
	expect_affected(f.s, 2, "h1,h2");
	struct grant_set all;
	cr_assert_eq(store_grant_list(f.s, &all, &e), 0);
	cr_assert_eq(all.n, 2);
	cr_expect_str_eq(all.g[0].channel, "ac");
	cr_expect_str_eq(all.g[1].channel, "cd");
	grant_set_free(&all);
	set.n = 0;
	cr_assert_eq(store_grant_replace(f.s, &set, &v, &e), 0);
	cr_expect_eq(v, 3);
	cr_assert_eq(store_grant_list(f.s, &all, &e), 0);
	cr_expect_eq(all.n, 0);
	grant_set_free(&all);
	fx_close(&f);
	expect_no_leaks();
}

STORE_TEST(store, acks_and_lagging_hosts)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	uint64_t v;
	struct store_lag *lag;
	cr_expect_eq(store_policy_lagging(f.s, &lag, &e), 0);
	free(lag);
	struct grant g1 = mkgrant("ac", "pa", "pc");
	struct grant g2 = mkgrant("bd", "pb", "pd");
	cr_assert_eq(store_grant_add(f.s, &g1, &v, &e), 0);
	cr_assert_eq(store_grant_add(f.s, &g2, &v, &e), 0);
	/* h1 wants 2, h2 wants 1, h3 wants 2. */
	int n = store_policy_lagging(f.s, &lag, &e);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(lag[0].host, "h1");
	cr_expect_eq(lag[0].want, 2);
	cr_expect_eq(lag[1].want, 1);
	cr_expect_eq(lag[2].acked, 0);
	free(lag);
	cr_expect_eq(store_policy_ack(f.s, "h1", 2, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_policy_ack(f.s, "h2", 1, &e), 0);
	cr_expect_eq(store_policy_ack(f.s, "h3", 1, &e), 0);
	/* Acks only move forward. */
	cr_expect_eq(store_policy_ack(f.s, "h1", 1, &e), 0);
	cr_expect_eq(store_policy_acked(f.s, "h1", &v, &e), 0);
	cr_expect_eq(v, 2);
	cr_expect_eq(store_policy_ack(f.s, "h2", 2, &e), -EINVAL);
	cr_expect_str_eq(e.msg, "host \"h2\" acknowledged policy version 2, "
			 "but its bundle is at version 1");
	n = store_policy_lagging(f.s, &lag, &e);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(lag[0].host, "h3");
	cr_expect_eq(lag[0].acked, 1);
	cr_expect_eq(lag[0].want, 2);
	free(lag);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- exactly-once ingest ---- */

STORE_TEST(store, seq_dedup)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store_ingest r;
	struct store_audit_in ev[4];
	mkevents(ev, 4, 1);
	cr_assert_eq(store_ingest_audit(f.s, "h1", ev, 4, &r, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(r.stored, 4);
	cr_expect_eq(r.skipped, 0);
	cr_expect_eq(r.seq, 4);
	/* The same batch again (the agent did not see our Ack). */
	cr_assert_eq(store_ingest_audit(f.s, "h1", ev, 4, &r, &e), 0);
	cr_expect_eq(r.stored, 0);
	cr_expect_eq(r.skipped, 4);
	cr_expect_eq(r.seq, 4);
	/* Overlapping: 3..6 stores 5 and 6. */
	mkevents(ev, 4, 3);
	cr_assert_eq(store_ingest_audit(f.s, "h1", ev, 4, &r, &e), 0);
	cr_expect_eq(r.stored, 2);
	cr_expect_eq(r.skipped, 2);
	cr_expect_eq(r.seq, 6);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM audit"), 6);
	uint64_t seq;
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 6);
	cr_expect_eq(store_host_seq(f.s, "h2", &seq, &e), 0);
	cr_expect_eq(seq, 0);

	/* One sequence for every kind of record. */
	struct dg d;
	dg_make(&d, 1, 0, 1);
	struct store_measure_in m = { .seq = 6, .partition = "pa", .d = d.in };
	cr_assert_eq(store_ingest_measurements(f.s, "h1", &m, 1, &r, &e), 0);
	cr_expect_eq(r.skipped, 1);
	m.seq = 7;
	cr_assert_eq(store_ingest_measurements(f.s, "h1", &m, 1, &r, &e), 0);
	cr_assert_eq(store_ingest_measurements(f.s, "h1", &m, 1, &r, &e), 0);
	cr_expect_eq(r.skipped, 1);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM measurements"), 1);
	cr_assert_eq(store_ingest_status(f.s, "h1", 8, "pb", "running", &r,
					 &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(r.stored, 1);
	cr_assert_eq(store_ingest_status(f.s, "h1", 8, "pb", "stopped", &r,
					 &e), 0);
	cr_expect_eq(r.skipped, 1);
	struct store_partition p;
	cr_assert_eq(store_partition_get(f.s, "pb", &p, &e), 0);
	cr_expect_str_eq(p.state, "running");
	store_partition_free(&p);
	/* A refused batch stores nothing and leaves the seq alone. */
	mkevents(ev, 2, 9);
	ev[1].partition = "bad name";
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 2, &r, &e), -EINVAL);
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 8);
	/* A status for a partition without a row (a thin one deleted, its
	 * agent reporting the destroy): taken, nothing stored, no row. */
	cr_assert_eq(store_ingest_status(f.s, "h1", 9, "gone", "destroyed",
					 &r, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(r.stored, 0);
	cr_expect_eq(r.seq, 9);
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 9);
	cr_expect_eq(store_partition_get(f.s, "gone", &p, &e), -ENOENT);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- audit ---- */

struct collect {
	unsigned n;
	uint64_t ids[64];
	char detail[64][32];
};

static int collect_cb(const struct store_audit *r, void *ctx)
{
	struct collect *c = ctx;
	c->ids[c->n] = r->id;
	snprintf(c->detail[c->n], sizeof(c->detail[0]), "%s", r->detail);
	c->n++;
	return c->n == 64;
}

/* What runs a thin partition, as its agent reports it with a status: kept
 * when a later status (an older agent) does not say; refused when it is not
 * a name; listed with the partition. */
STORE_TEST(store, status_records_the_vmm_backend)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store_ingest r;
	struct store_partition p;
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.vmm_backend, "");
	store_partition_free(&p);
	struct store_status_in in = { .partition = "pa", .state = "running",
				      .backend = "process" };
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 1, &in, &r, &e), 0,
		     "%s", perr_msg(&e));
	cr_expect_eq(r.stored, 1);
	in.state = "stopped";
	in.backend = "";
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 2, &in, &r, &e), 0);
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.state, "stopped");
	cr_expect_str_eq(p.vmm_backend, "process");
	store_partition_free(&p);
	in.backend = "k vm";
	cr_expect_eq(store_ingest_status_in(f.s, "h1", 3, &in, &r, &e), -EINVAL);
	in.backend = "kvm";
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 3, &in, &r, &e), 0);
	struct store_partition *list;
	int n = store_partition_list(f.s, "h1", NULL, 10, &list, &e);
	cr_assert_eq(n, 2, "%s", perr_msg(&e));
	cr_expect_str_eq(list[0].name, "pa");
	cr_expect_str_eq(list[0].vmm_backend, "kvm");
	cr_expect_str_eq(list[1].vmm_backend, "");
	store_partition_list_free(list, (unsigned)n);
	fx_close(&f);
}

/* Each device's latest state, as the agent's status says: stored with
 * the partition (a line each), replaced by the next status (none: none),
 * refused as a whole when a field is not a name or there are too many. */
STORE_TEST(store, status_records_device_states)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store_ingest r;
	struct store_partition p;
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.devices, "");
	store_partition_free(&p);
	struct store_device d[2] = { { "data", "xts", "running" },
				     { "console", "console", "running" } };
	struct store_status_in in = { .partition = "pa", .state = "running",
				      .devices = d, .ndevices = 2 };
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 1, &in, &r, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.devices, "data xts running\n"
				    "console console running\n");
	store_partition_free(&p);
	d[0].state = "torn down";
	in.state = "stopped";
	cr_expect_eq(store_ingest_status_in(f.s, "h1", 2, &in, &r, &e),
		     -EINVAL);
	cr_expect(strstr(perr_msg(&e), "device state"), "%s", perr_msg(&e));
	d[0].state = "torn-down";
	d[1].plugin = "con\nsole";
	cr_expect_eq(store_ingest_status_in(f.s, "h1", 2, &in, &r, &e),
		     -EINVAL);
	d[1].plugin = "console";
	in.ndevices = STORE_DEVICES_MAX + 1;
	cr_expect_eq(store_ingest_status_in(f.s, "h1", 2, &in, &r, &e),
		     -EINVAL);
	/* Nothing of the refused ones was kept. */
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.state, "running");
	cr_expect_str_eq(p.devices, "data xts running\n"
				    "console console running\n");
	store_partition_free(&p);
	in.ndevices = 1;
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 2, &in, &r, &e), 0,
		     "%s", perr_msg(&e));
	struct store_partition *list;
	int n = store_partition_list(f.s, "h1", NULL, 10, &list, &e);
	cr_assert_eq(n, 2, "%s", perr_msg(&e));
	cr_expect_str_eq(list[0].devices, "data xts torn-down\n");
	cr_expect_str_eq(list[1].devices, "");
	store_partition_list_free(list, (unsigned)n);
	in.ndevices = 0;
	cr_assert_eq(store_ingest_status_in(f.s, "h1", 3, &in, &r, &e), 0);
	cr_assert_eq(store_partition_get(f.s, "pa", &p, &e), 0);
	cr_expect_str_eq(p.devices, "");
	store_partition_free(&p);
	fx_close(&f);
}

STORE_TEST(store, audit_chain_and_list)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	audit_fill(f.s, 50);
	uint64_t bad = 99, rows;
	cr_expect_eq(store_audit_verify(f.s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(bad, 0);
	cr_expect_eq(rows, 50);
	struct collect c = { 0 };
	cr_expect_eq(store_audit_list(f.s, 40, 5, collect_cb, &c, &e), 5);
	cr_assert_eq(c.n, 5);
	cr_expect_eq(c.ids[0], 41);
	cr_expect_eq(c.ids[4], 45);
	cr_expect_str_eq(c.detail[0], "event 41");
	c.n = 0;
	cr_expect_eq(store_audit_list(f.s, 45, 0, collect_cb, &c, &e), 5);
	cr_expect_eq(c.ids[4], 50);
	/* The first row links to zeros; the rows are what was given. */
	c.n = 0;
	cr_expect_eq(store_audit_list(f.s, 0, 1, collect_cb, &c, &e), 1);
	char q[400];
	snprintf(q, sizeof(q), "SELECT COUNT(*) FROM audit WHERE id = 1 "
		 "AND prev_hash = %s AND host = 'h1' "
		 "AND event = 'open_denied' AND partition = 'pa' "
		 "AND channel = 'ab' AND reason = 'INTEGRITY' "
		 "AND file = 'motd'", t_store_pg
		 ? "decode(repeat('00', 32), 'hex')" : "zeroblob(32)");
	cr_expect_eq(raw_int(f.path, q), 1);
	fx_close(&f);
	expect_no_leaks();
}

/* The filtered page: bounds by id and time, newest first; bad arguments
 * refused before any SQL. */
STORE_TEST(store, audit_find_filters_and_refuses)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	audit_fill(f.s, 50);     /* ids 1..50, time 1700000000000 + id - 1 */
	struct collect c = { 0 };
	struct store_audit_filter fl = {
		.after_id = 10, .before_id = 40, .partition = "pa",
		.reason = "INTEGRITY", .since_ms = 1700000000000ll + 19,
		.until_ms = 1700000000000ll + 29, .newest_first = true,
	};
	/* ids 20..30 within the times; newest first, three of them. */
	cr_expect_eq(store_audit_find(f.s, &fl, 3, collect_cb, &c, &e), 3,
		     "%s", perr_msg(&e));
	cr_expect(c.ids[0] == 30 && c.ids[1] == 29 && c.ids[2] == 28);
	c.n = 0;
	fl.newest_first = false;
	cr_expect_eq(store_audit_find(f.s, &fl, 1000, collect_cb, &c, &e), 11);
	cr_expect(c.ids[0] == 20 && c.ids[10] == 30);
	c.n = 0;
	fl.event = "open_allowed";
	cr_expect_eq(store_audit_find(f.s, &fl, 1000, collect_cb, &c, &e), 0);
	struct store_audit_filter bad[] = {
		{ .partition = "a b" }, { .host = "../x" },
		{ .reason = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			    "aaaaaaaaaaaaaaaaaaaa" },
		{ .since_ms = -1 }, { .until_ms = -5 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_expect_eq(store_audit_find(f.s, &bad[i], 10, collect_cb, &c,
					      &e), -EINVAL, "filter %zu", i);
	struct store_audit_filter none = { 0 };
	cr_expect_eq(store_audit_find(f.s, &none, 0, collect_cb, &c, &e),
		     -EINVAL);
	cr_expect_eq(store_audit_find(f.s, &none, STORE_LIST_MAX + 1,
				      collect_cb, &c, &e), -EINVAL);
	fx_close(&f);
}

STORE_TEST(store, audit_empty_verifies)
{
	struct fx f;
	fx_open(&f);
	uint64_t bad = 9, rows = 9;
	struct parley_err e = { 0 };
	cr_expect_eq(store_audit_verify(f.s, &bad, &rows, &e), 0);
	cr_expect_eq(bad, 0);
	cr_expect_eq(rows, 0);
	fx_close(&f);
}

struct tamper {
	const char *name;
	const char *sql;          /* run on the file behind the store */
	uint64_t first_bad;
	const char *why;
};

static const struct tamper tampers[] = {
	{ "edit a detail", "UPDATE audit SET detail = 'nothing happened' "
	  "WHERE id = 17", 17, "its contents do not match its hash" },
	{ "edit a time", "UPDATE audit SET time_ms = time_ms + 1 "
	  "WHERE id = 3", 3, "its contents do not match its hash" },
	{ "delete a middle row", "DELETE FROM audit WHERE id = 23", 23,
	  "missing (a gap in the ids)" },
	{ "delete two", "DELETE FROM audit WHERE id IN (8, 30)", 8,
	  "missing (a gap in the ids)" },
	{ "change a prev_hash", "UPDATE audit SET prev_hash = "
	  "(SELECT hash FROM audit WHERE id = 4) WHERE id = 11", 11,
	  "prev_hash does not link" },
	{ "swap a hash", "UPDATE audit SET hash = "
	  "(SELECT hash FROM audit WHERE id = 2) WHERE id = 9", 9,
	  "its contents do not match its hash" },
	{ "cut the tail", "DELETE FROM audit WHERE id > 45", 46,
	  "missing (the chain's head says it exists)" },
	{ "delete the first", "DELETE FROM audit WHERE id = 1", 1,
	  "missing (a gap in the ids)" },
	{ "renumber", "UPDATE audit SET id = 60 WHERE id = 50", 50,
	  "missing (a gap in the ids)" },
	{ "short hash", "UPDATE audit SET hash = x'00' WHERE id = 12", 12,
	  "not a SHA-256" },
	{ "append behind the store", "INSERT INTO audit SELECT 51, time_ms, "
	  "host, event, partition, channel, reason, file, detail, hash, hash "
	  "FROM audit WHERE id = 50", 51, "its contents do not match" },
	{ "move the head back", "UPDATE audit_head SET last_id = 49", 50,
	  "beyond the chain's head" },
	{ "change the head's hash", "UPDATE audit_head SET last_hash = "
	  "(SELECT hash FROM audit WHERE id = 1)", 50,
	  "does not match the chain's head" },
};

/* On both backends: the same edits through either engine's SQL (one
 * blob literal spelled each engine's way). */
STORE_TEST(store, audit_tamper_detected)
{
	for (size_t i = 0; i < sizeof(tampers) / sizeof(tampers[0]); i++) {
		const struct tamper *t = &tampers[i];
		struct fx f;
		fx_open(&f);
		fleet(f.s);
		audit_fill(f.s, 50);
		store_close(f.s);
		const char *x = strstr(t->sql, "x'00'");
		char sql[300];
		if (t_store_pg && x)
			snprintf(sql, sizeof(sql), "%.*s'\\x00'::bytea%s",
				 (int)(x - t->sql), t->sql, x + 5);
		else
			snprintf(sql, sizeof(sql), "%s", t->sql);
		raw_exec(f.path, sql);
		fx_reopen(&f);
		uint64_t bad = 0;
		struct parley_err e = { 0 };
		int rc = store_audit_verify(f.s, &bad, NULL, &e);
		cr_expect_eq(rc, -EBADMSG, "%s: rc %d", t->name, rc);
		cr_expect_eq(bad, t->first_bad, "%s: first bad %llu, want %llu",
			     t->name, (unsigned long long)bad,
			     (unsigned long long)t->first_bad);
		cr_expect(strstr(e.msg, t->why), "%s: %s", t->name, e.msg);
		fx_close(&f);
	}
}

/* The hash as store.h documents it, computed here independently: row id
 * of the file at path with its detail replaced by `detail` (NULL: kept). */
static void doc_hash(sqlite3 *db, uint64_t id, const char *detail,
		     uint8_t out[32])
{
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT prev_hash, time_ms, host, event, "
		 "partition, channel, reason, file, detail FROM audit "
		 "WHERE id = %llu", (unsigned long long)id);
	sqlite3_stmt *st = raw_row(db, sql);
	uint8_t buf[4096];
	size_t n = 0;
	uint64_t ints[3] = { 1, id, (uint64_t)sqlite3_column_int64(st, 1) };
	int widths[3] = { 4, 8, 8 };
	cr_assert_eq(sqlite3_column_bytes(st, 0), 32);
	memcpy(buf, sqlite3_column_blob(st, 0), 32);
	n = 32;
	for (int i = 0; i < 3; i++)
		for (int b = widths[i] - 1; b >= 0; b--)
			buf[n++] = (uint8_t)(ints[i] >> (8 * b));
	for (int c = 2; c <= 8; c++) {
		const char *v = (const char *)sqlite3_column_text(st, c);
		if (c == 8 && detail)
			v = detail;
		uint32_t len = (uint32_t)strlen(v);
		for (int b = 3; b >= 0; b--)
			buf[n++] = (uint8_t)(len >> (8 * b));
		memcpy(buf + n, v, len);
		n += len;
	}
	sqlite3_finalize(st);
	cr_assert_eq(EVP_Digest(buf, n, out, NULL, EVP_sha256(), NULL), 1);
}

/* Edit row id's detail and write the hash that matches the edit. */
static void forge(const char *path, uint64_t id, const char *detail)
{
	sqlite3 *db = raw_open(path);
	uint8_t h[32];
	doc_hash(db, id, NULL, h);
	char sql[100];
	snprintf(sql, sizeof(sql), "SELECT hash FROM audit WHERE id = %llu",
		 (unsigned long long)id);
	sqlite3_stmt *st = raw_row(db, sql);
	cr_assert_arr_eq(sqlite3_column_blob(st, 0), h, 32,
			 "the store's hash is not the documented one");
	sqlite3_finalize(st);
	doc_hash(db, id, detail, h);
	cr_assert_eq(sqlite3_prepare_v2(db, "UPDATE audit SET detail = ?1, "
					"hash = ?2 WHERE id = ?3", -1, &st,
					NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, h, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)id);
	cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Someone who edits a row and recomputes its hash is caught at the next
 * row, whose prev_hash no longer links; at the last row, by the head. */
Test(store, audit_rehashed_edit_caught_by_the_next_row)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	audit_fill(f.s, 20);
	store_close(f.s);
	forge(f.path, 10, "nothing to see");
	fx_reopen(&f);
	uint64_t bad = 0;
	struct parley_err e = { 0 };
	cr_expect_eq(store_audit_verify(f.s, &bad, NULL, &e), -EBADMSG);
	cr_expect_eq(bad, 11, "%s", e.msg);
	cr_expect(strstr(e.msg, "audit row 11: prev_hash does not link"), "%s",
		  e.msg);
	store_close(f.s);
	forge(f.path, 10, "event 10");
	forge(f.path, 20, "the last one");
	fx_reopen(&f);
	cr_expect_eq(store_audit_verify(f.s, &bad, NULL, &e), -EBADMSG);
	cr_expect_eq(bad, 20, "%s", e.msg);
	cr_expect(strstr(e.msg, "does not match the chain's head"), "%s",
		  e.msg);
	fx_close(&f);
}

/* A row put in the chain's way behind the store's back: the append that
 * meets it fails as a whole -- on PostgreSQL the inserts are pipelined,
 * so the failure of the third comes back later and must still undo the
 * first two, the head and the host's seq -- and a batch it was in goes
 * on. */
STORE_TEST(store, audit_append_failing_midway_leaves_nothing)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	audit_fill(f.s, 10);
	char q[400];
	snprintf(q, sizeof(q), "INSERT INTO audit VALUES (13, 0, 'x', 'x', "
		 "'', '', '', '', '', %s, %s)", t_store_pg ? "'\\x00'" :
		 "X'00'", t_store_pg ? "'\\x00'" : "X'00'");
	raw_exec(f.path, q);
	struct store_audit_in ev[5];
	mkevents(ev, 5, 1);
	struct parley_err e = { 0 };
	uint64_t seq = 9, head = 0;
	uint8_t h[32];
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 5, NULL, &e), -EEXIST,
		     "%s", perr_msg(&e));
	cr_expect(strstr(perr_msg(&e), "append audit"), "%s", perr_msg(&e));
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 0);
	cr_expect_eq(store_audit_head(f.s, &head, h, &e), 0);
	cr_expect_eq(head, 10);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM audit"), 11);
	/* inside a batch: the failed call leaves nothing, the batch goes on */
	cr_assert_eq(store_begin(f.s, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 5, NULL, &e), -EEXIST);
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 2, NULL, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(store_commit(f.s, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_audit_head(f.s, &head, h, &e), 0);
	cr_expect_eq(head, 12);
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 2);
	fx_close(&f);
}

STORE_TEST(store, audit_after_append_continues_chain)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	audit_fill(f.s, 10);
	store_close(f.s);
	fx_reopen(&f);
	struct store_audit_in ev[3];
	mkevents(ev, 3, 1);
	struct parley_err e = { 0 };
	uint64_t last;
	cr_assert_eq(store_audit_append(f.s, ev, 3, &last, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(last, 13);
	uint64_t bad, rows;
	cr_expect_eq(store_audit_verify(f.s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(rows, 13);
	fx_close(&f);
}

/* Rows go several to an INSERT (32, then 4, then 1 at a time): appends
 * of every mix of sizes chain on, row after row, with their own fields. */
struct listed {
	uint64_t next;
	unsigned bad;
};

static int list_check(const struct store_audit *a, void *ctx)
{
	struct listed *l = ctx;
	char want[32];
	snprintf(want, sizeof(want), "event %llu",
		 (unsigned long long)l->next);
	if (a->id != l->next || strcmp(a->detail, want) ||
	    strcmp(a->host, "h1"))
		l->bad++;
	l->next++;
	return 0;
}

STORE_TEST(store, audit_appends_of_every_statement_size_chain)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	static const unsigned sizes[] = { 1, 3, 4, 5, 31, 32, 33, 37, 70,
					  100 };
	struct parley_err e = { 0 };
	uint64_t total = 0, last = 0;
	struct store_audit_in ev[100];
	static char d[100][32];
	for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (unsigned i = 0; i < sizes[k]; i++) {
			snprintf(d[i], sizeof(d[i]), "event %llu",
				 (unsigned long long)(total + i + 1));
			ev[i] = (struct store_audit_in){
				.host = "h1", .event = "open_denied",
				.partition = i % 2 ? "pa" : "", .detail = d[i],
				.time_ms = 1700000000000ll + (int64_t)i,
			};
		}
		cr_assert_eq(store_audit_append(f.s, ev, sizes[k], &last, &e),
			     0, "%u events: %s", sizes[k], perr_msg(&e));
		total += sizes[k];
		cr_expect_eq(last, total);
	}
	uint64_t bad = 0, rows = 0;
	cr_expect_eq(store_audit_verify(f.s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(rows, total);
	struct listed l = { .next = 1 };
	int n = store_audit_list(f.s, 0, 1000, list_check, &l, &e);
	cr_assert_geq(n, 0, "%s", perr_msg(&e));
	cr_expect_eq(l.next, total + 1);
	cr_expect_eq(l.bad, 0, "%u rows not as appended", l.bad);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- batches ---- */

STORE_TEST(store, batches)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	cr_expect_eq(store_commit(f.s, &e), -EINVAL);
	cr_expect_eq(store_rollback(f.s, &e), -EINVAL);
	cr_assert_eq(store_begin(f.s, &e), 0);
	cr_expect_eq(store_begin(f.s, &e), -EBUSY);
	cr_expect(strstr(e.msg, "a batch is already open (batches do not "
			 "nest)"), "%s", e.msg);
	store_host_put(f.s, "h9", "", NOCERT, &e);
	audit_fill(f.s, 5);
	cr_assert_eq(store_rollback(f.s, &e), 0);
	struct store_host h;
	cr_expect_eq(store_host_get(f.s, "h9", &h, &e), -ENOENT);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM audit"), 0);

	/* A failing call inside a batch leaves nothing of its own and the
	 * batch goes on. */
	cr_assert_eq(store_begin(f.s, &e), 0);
	cr_expect_eq(store_host_put(f.s, "h9", "", NOCERT, &e), 0);
	struct grant bad = mkgrant("x", "pa", "ghost");
	cr_expect_eq(store_grant_add(f.s, &bad, NULL, &e), -ENOENT);
	struct dg d;
	dg_make(&d, 1, 0, 3);
	struct store_measure_in m[2] = {
		{ .seq = 1, .partition = "pa", .d = d.in },
		{ .seq = 2, .partition = "pc", .d = d.in },   /* on h2 */
	};
	cr_expect_eq(store_ingest_measurements(f.s, "h1", m, 2, NULL, &e),
		     -EPERM);
	audit_fill(f.s, 5);
	cr_assert_eq(store_commit(f.s, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_host_get(f.s, "h9", &h, &e), 0);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM audit"), 5);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM measurements"), 0);
	cr_expect_eq(raw_int(f.path, "SELECT COUNT(*) FROM policy_versions"),
		     0);
	uint64_t seq;
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, &e), 0);
	cr_expect_eq(seq, 0);
	fx_close(&f);
}

/* A read snapshot: one state of the file for all its reads (another
 * writer's commit shows only after it ends), and no write inside. */
STORE_TEST(store, read_snapshots)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct store *other = NULL;
	struct store_host h;
	cr_assert_eq(store_open(f.path, &other, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(store_read_begin(f.s, &e), 0, "%s", perr_msg(&e));
	cr_expect_eq(store_read_begin(f.s, &e), -EBUSY);
	cr_expect_eq(store_begin(f.s, &e), -EBUSY);
	cr_expect_eq(store_host_put(f.s, "h8", "", NOCERT, &e), -EROFS, "%s",
		     perr_msg(&e));
	cr_expect_eq(store_grant_remove(f.s, "c1", NULL, &e), -EBUSY, "%s",
		     perr_msg(&e));
	cr_expect_eq(store_host_get(f.s, "h1", &h, &e), 0, "%s",
		     perr_msg(&e));
	/* another writer commits meanwhile: not seen inside */
	cr_assert_eq(store_host_put(other, "h9", "", NOCERT, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(store_host_get(f.s, "h9", &h, &e), -ENOENT);
	store_read_end(f.s);
	store_read_end(f.s);        /* a second end is nothing */
	cr_expect_eq(store_host_get(f.s, "h9", &h, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(store_host_get(f.s, "h8", &h, &e), -ENOENT);
	cr_expect_eq(store_host_put(f.s, "h8", "", NOCERT, &e), 0, "%s",
		     perr_msg(&e));
	/* not inside a batch either */
	cr_assert_eq(store_begin(f.s, &e), 0);
	cr_expect_eq(store_read_begin(f.s, &e), -EBUSY);
	cr_expect_eq(store_commit(f.s, &e), 0);
	store_close(other);
	fx_close(&f);
}

STORE_TEST(store, references)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant g = mkgrant("ab", "pa", "pc");
	cr_assert_eq(store_grant_add(f.s, &g, NULL, &e), 0);
	cr_expect_eq(store_host_delete(f.s, "h2", &e), -EBUSY);
	cr_expect_str_eq(e.msg, "host \"h2\" has 1 partition(s); delete them "
			 "first");
	cr_expect_eq(store_partition_delete(f.s, "pc", &e), -EBUSY);
	cr_expect_str_eq(e.msg, "partition \"pc\": 1 grant(s) name it; "
			 "remove them first");
	struct store_part_in in = part_in("pc", "h3", STORE_PART_THIN);
	cr_expect_eq(store_partition_put(f.s, &in, NULL, &e), -EBUSY);
	cr_expect_str_eq(e.msg, "partition \"pc\": 1 grant(s) name it; remove "
			 "them before moving it from host \"h2\" to \"h3\"");
	/* Without grants it may move, and go. */
	cr_assert_eq(store_grant_remove(f.s, "ab", NULL, &e), 0);
	cr_expect_eq(store_partition_put(f.s, &in, NULL, &e), 0);
	cr_expect_eq(store_host_delete(f.s, "h2", &e), 0, "%s", perr_msg(&e));
	fx_close(&f);
}

/* ---- hostile arguments ---- */

#define N63 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
#define N64 N63 "x"

static const uint8_t zeros[64];

/* One call with bad arguments; the table says what it must return. */
typedef int (*hostile_fn)(struct store *s, struct parley_err *e);

#define ONE(id, expr)                                                    \
	static int id(struct store *s, struct parley_err *e)             \
	{                                                                \
		(void)s;                                                 \
		return (expr);                                           \
	}

static struct store_part_in pin(const char *name, const char *spec,
				size_t len)
{
	struct store_part_in in = part_in(name, "h1", STORE_PART_THIN);
	in.spec_json = spec;
	in.spec_len = len;
	return in;
}

static int put_spec(struct store *s, const char *spec, size_t len,
		    struct parley_err *e)
{
	struct store_part_in in = pin("pz", spec, len);
	return store_partition_put(s, &in, NULL, e);
}

ONE(h_host_long, store_host_put(s, N64, "", NOCERT, e))
ONE(h_host_empty, store_host_put(s, "", "", NOCERT, e))
ONE(h_host_null, store_host_put(s, NULL, "", NOCERT, e))
ONE(h_host_slash, store_host_put(s, "h/1", "", NOCERT, e))
ONE(h_host_dash, store_host_put(s, "-h", "", NOCERT, e))
ONE(h_host_escape, store_host_put(s, "h\x1b[31m", "", NOCERT, e))
ONE(h_uri_space, store_host_put(s, "h1", "qemu+tls://h 1/system", NOCERT,
				e))
ONE(h_cert_short, store_host_put(s, "h1", "",
				 (struct store_blob){ zeros, 31 }, e))
ONE(h_cert_null, store_host_put(s, "h1", "",
				(struct store_blob){ NULL, 32 }, e))

static int h_uri_long(struct store *s, struct parley_err *e)
{
	char uri[STORE_URI_MAX + 1];
	memset(uri, 'u', STORE_URI_MAX);
	uri[STORE_URI_MAX] = '\0';
	return store_host_put(s, "h1", uri, NOCERT, e);
}

static int h_part_host(struct store *s, struct parley_err *e)
{
	struct store_part_in in = part_in("pz", "h9", STORE_PART_THIN);
	return store_partition_put(s, &in, NULL, e);
}

static int h_part_kind(struct store *s, struct parley_err *e)
{
	struct store_part_in in = part_in("pz", "h1", (enum store_part_kind)7);
	return store_partition_put(s, &in, NULL, e);
}

static int h_part_state(struct store *s, struct parley_err *e)
{
	struct store_part_in in = part_in("pz", "h1", STORE_PART_THIN);
	in.state = "";
	return store_partition_put(s, &in, NULL, e);
}

static int h_part_long(struct store *s, struct parley_err *e)
{
	struct store_part_in in = part_in(N64, "h1", STORE_PART_THIN);
	return store_partition_put(s, &in, NULL, e);
}

ONE(h_spec_nul, put_spec(s, "{\"a\":1}\0xx", 10, e))
ONE(h_spec_syntax, put_spec(s, "{nope", 5, e))
ONE(h_spec_array, put_spec(s, "[1]", 3, e))
ONE(h_spec_utf8, put_spec(s, "{\"a\":\"\xc0\xaf\"}", 10, e))
ONE(h_spec_null, put_spec(s, NULL, 0, e))

static int h_spec_big(struct store *s, struct parley_err *e)
{
	char *big = malloc(STORE_SPEC_MAX);
	cr_assert(big);
	memset(big, ' ', STORE_SPEC_MAX);
	big[0] = '{';
	big[STORE_SPEC_MAX - 1] = '}';
	int rc = put_spec(s, big, STORE_SPEC_MAX, e);
	free(big);
	return rc;
}

static int h_files_many(struct store *s, struct parley_err *e)
{
	const char *n[STORE_FILES_MAX + 1];
	for (int i = 0; i <= STORE_FILES_MAX; i++)
		n[i] = "f";
	return store_partition_set_files(s, "pa", n, STORE_FILES_MAX + 1, e);
}

static int set_files2(struct store *s, const char *p, const char *a,
		      const char *b, struct parley_err *e)
{
	const char *n[] = { a, b };
	return store_partition_set_files(s, p, n, 2, e);
}

ONE(h_files_slash, set_files2(s, "pa", "motd", "a/b", e))
ONE(h_files_dup, set_files2(s, "pa", "motd", "motd", e))
ONE(h_files_ctl, set_files2(s, "pa", "motd", "a\nb", e))
ONE(h_files_long, set_files2(s, "pa", N64, "motd", e))
ONE(h_files_part, set_files2(s, "ghost", "motd", "x", e))

/* Baselines: d is good; each case spoils one thing. */
static int bl(struct store *s, struct parley_err *e, int spoil)
{
	struct dg *d = malloc(sizeof(*d));
	cr_assert(d);
	dg_make(d, 2, 1, 0x11);
	const char *p = "pb";
	if (spoil == 0)
		d->in.digest.len = 31;
	if (spoil == 1)
		d->file[0].sha256.len = 33;
	if (spoil == 2)
		d->in.nseg = STORE_SEGS_MAX + 1;
	if (spoil == 3)
		d->in.nfile = STORE_FILES_MAX + 1;
	if (spoil == 4)
		p = "ghost";
	if (spoil == 5)
		d->file[1].name = d->file[0].name;
	if (spoil == 6)
		p = "pa";       /* enrolled already */
	if (spoil == 7)
		d->file[0].name = "";
	int rc = store_baseline_put(s, p, spoil == 8 ? NULL : &d->in, false,
				    NULL, e);
	free(d);
	return rc;
}

ONE(h_bl_digest, bl(s, e, 0))
ONE(h_bl_file_digest, bl(s, e, 1))
ONE(h_bl_segs, bl(s, e, 2))
ONE(h_bl_files, bl(s, e, 3))
ONE(h_bl_part, bl(s, e, 4))
ONE(h_bl_dup, bl(s, e, 5))
ONE(h_bl_twice, bl(s, e, 6))
ONE(h_bl_noname, bl(s, e, 7))
ONE(h_bl_null, bl(s, e, 8))

/* Grants: "g" between pa and pc, good; each case spoils one thing. */
static int gr(struct store *s, struct parley_err *e, int spoil)
{
	struct grant g = mkgrant("g", "pa", "pc");
	if (spoil == 0)
		snprintf(g.b, sizeof(g.b), "ghost");
	if (spoil == 1)
		snprintf(g.b, sizeof(g.b), "pa");
	if (spoil == 2)
		g.ring_bytes = 3000;
	if (spoil == 3)
		g.ring_bytes = 32 << 20;
	if (spoil == 4)
		g.ring_bytes = 2048;
	if (spoil == 5)
		memset(g.channel, 'c', sizeof(g.channel));
	if (spoil == 6)
		g.dir = (enum grant_dir)9;
	if (spoil == 7)
		snprintf(g.a, sizeof(g.a), "p a");
	if (spoil == 8)
		memset(g.a, 'a', sizeof(g.a));
	return store_grant_add(s, &g, NULL, e);
}

ONE(h_gr_unknown, gr(s, e, 0))
ONE(h_gr_self, gr(s, e, 1))
ONE(h_gr_ring, gr(s, e, 2))
ONE(h_gr_ring_big, gr(s, e, 3))
ONE(h_gr_ring_small, gr(s, e, 4))
ONE(h_gr_unterminated, gr(s, e, 5))
ONE(h_gr_dir, gr(s, e, 6))
ONE(h_gr_name, gr(s, e, 7))
ONE(h_gr_a_unterminated, gr(s, e, 8))
ONE(h_gr_null, store_grant_add(s, NULL, NULL, e))

static int h_gr_dup(struct store *s, struct parley_err *e)
{
	struct grant g = mkgrant("ab", "pa", "pc");
	return store_grant_add(s, &g, NULL, e);
}

static int h_gr_update_missing(struct store *s, struct parley_err *e)
{
	struct grant g = mkgrant("zz", "pa", "pc");
	return store_grant_update(s, &g, NULL, e);
}

ONE(h_gr_remove_missing, store_grant_remove(s, "zz", NULL, e))
ONE(h_gr_remove_bad, store_grant_remove(s, "z z", NULL, e))

static int rep(struct store *s, struct parley_err *e, int spoil)
{
	struct grant g[2] = { mkgrant("g", "pa", "pc"),
			      mkgrant("h", "pb", "pd") };
	struct grant_set set = { 2, g };
	if (spoil == 0)
		snprintf(g[1].channel, sizeof(g[1].channel), "g");
	if (spoil == 1)
		g[1].ring_bytes = 5;
	if (spoil == 2)
		snprintf(g[1].b, sizeof(g[1].b), "ghost");
	if (spoil == 3)
		set.g = NULL;
	if (spoil == 4)
		set.n = GRANTS_MAX + 1;
	return store_grant_replace(s, &set, NULL, e);
}

ONE(h_rep_dup, rep(s, e, 0))
ONE(h_rep_bad, rep(s, e, 1))
ONE(h_rep_unknown, rep(s, e, 2))
ONE(h_rep_null, rep(s, e, 3))
ONE(h_rep_many, rep(s, e, 4))

/* Audit events from h1: two good ones, then one thing spoilt. */
static int au(struct store *s, struct parley_err *e, int spoil)
{
	struct store_audit_in ev[2];
	const char *host = "h1";
	char big[STORE_DETAIL_MAX + 1];
	mkevents(ev, 2, 5);
	switch (spoil) {
	case 0: host = "h9"; break;
	case 1: ev[0].seq = 0; break;
	case 2: ev[1].seq = 3; break;
	case 3: ev[1].seq = 5; break;
	case 4: ev[1].seq = 1ull << 63; break;
	case 5: ev[0].host = "h2"; break;
	case 6: ev[0].event = NULL; break;
	case 7:
		memset(big, 'd', STORE_DETAIL_MAX);
		big[STORE_DETAIL_MAX] = '\0';
		ev[0].detail = big;
		break;
	case 8: ev[0].detail = "ab\xed\xa0\x80"; break;   /* a surrogate */
	case 9: ev[0].partition = "p a"; break;
	case 10: ev[0].time_ms = -5; break;
	case 11: ev[0].file = "etc/motd"; break;
	case 12: ev[1].reason = N64; break;
	case 13: ev[0].channel = "\xff"; break;
	}
	return store_ingest_audit(s, host, ev, 2, NULL, e);
}

ONE(h_au_host, au(s, e, 0))
ONE(h_au_seq0, au(s, e, 1))
ONE(h_au_seq_down, au(s, e, 2))
ONE(h_au_seq_same, au(s, e, 3))
ONE(h_au_seq_huge, au(s, e, 4))
ONE(h_au_other, au(s, e, 5))
ONE(h_au_event, au(s, e, 6))
ONE(h_au_detail_big, au(s, e, 7))
ONE(h_au_detail_utf8, au(s, e, 8))
ONE(h_au_partition, au(s, e, 9))
ONE(h_au_time, au(s, e, 10))
ONE(h_au_file, au(s, e, 11))
ONE(h_au_reason, au(s, e, 12))
ONE(h_au_channel, au(s, e, 13))
ONE(h_au_null, store_audit_append(s, NULL, 2, NULL, e))
ONE(h_au_ingest_host, store_ingest_audit(s, "", NULL, 0, NULL, e))

static int ms(struct store *s, struct parley_err *e, int spoil)
{
	struct dg *d = malloc(sizeof(*d));
	cr_assert(d);
	dg_make(d, 1, 0, 0x22);
	struct store_measure_in m = { .seq = 1, .partition = "pa",
				      .d = d->in };
	if (spoil == 0)
		m.partition = "pc";
	if (spoil == 1)
		m.partition = "ghost";
	if (spoil == 2)
		m.d.digest.len = 16;
	if (spoil == 3)
		m.d.seg = NULL, m.d.nseg = 1;
	int rc = store_ingest_measurements(s, "h1", &m, 1, NULL, e);
	free(d);
	return rc;
}

ONE(h_ms_other, ms(s, e, 0))
ONE(h_ms_unknown, ms(s, e, 1))
ONE(h_ms_digest, ms(s, e, 2))
ONE(h_ms_segs, ms(s, e, 3))
ONE(h_st_other, store_ingest_status(s, "h1", 1, "pc", "running", NULL, e))
ONE(h_st_state, store_ingest_status(s, "h1", 1, "pa", "run ning", NULL, e))
ONE(h_ack_future, store_policy_ack(s, "h3", 1, e))
ONE(h_ack_host, store_policy_ack(s, "h9", 1, e))
ONE(h_list_0, store_partition_list(s, NULL, NULL, 0, &(struct store_partition
							*){ 0 }, e))
ONE(h_list_big, store_host_list(s, NULL, STORE_LIST_MAX + 1,
				&(struct store_host *){ 0 }, e))
ONE(h_list_host, store_partition_list(s, "h 1", NULL, 5,
				      &(struct store_partition *){ 0 }, e))
ONE(h_stale, store_partition_set_state(s, "pa", "running", 7, NULL, e))
ONE(h_state_bad, store_partition_set_state(s, "pa", "", 0, NULL, e))
ONE(h_state_part, store_partition_set_state(s, "ghost", "x", 0, NULL, e))
ONE(h_affected, store_policy_affected(s, 99, &(struct store_names){ 0 }, e))
ONE(h_for_host, store_grants_for_host(s, "h9", &(struct grant_set){ 0 }, e))
ONE(h_host_busy, store_host_delete(s, "h1", e))
ONE(h_part_busy, store_partition_delete(s, "pb", e))
ONE(h_seq_host, store_host_seq(s, "h9", &(uint64_t){ 0 }, e))
ONE(h_commit, store_commit(s, e))

struct hostile {
	const char *name;
	hostile_fn run;
	int code;
	const char *msg;          /* the message, or (with *) a part of it */
};

static const struct hostile hostile[] = {
	{ "host name too long", h_host_long, -EINVAL,
	  "host name: 64 bytes, at most 63" },
	{ "host name empty", h_host_empty, -EINVAL, "host name: missing" },
	{ "host name NULL", h_host_null, -EINVAL, "host name: missing" },
	{ "host name with /", h_host_slash, -EINVAL,
	  "host name: \"h/1\" is not a valid name (A-Z a-z 0-9 _ . -, not "
	  "starting with . or -)" },
	{ "host name starts with -", h_host_dash, -EINVAL,
	  "*host name: \"-h\" is not a valid name" },
	{ "host name with an escape", h_host_escape, -EINVAL,
	  "*host name: \"h\\x1b[31m\" is not" },
	{ "URI with a space", h_uri_space, -EINVAL,
	  "libvirt URI: \"qemu+tls://h 1/system\" has a byte that is not "
	  "printable ASCII at offset 12" },
	{ "URI too long", h_uri_long, -EINVAL,
	  "libvirt URI: 1024 bytes, at most 1023" },
	{ "fingerprint of 31 bytes", h_cert_short, -EINVAL,
	  "host \"h1\": certificate fingerprint: 31 bytes, a SHA-256 has 32" },
	{ "fingerprint NULL", h_cert_null, -EINVAL,
	  "host \"h1\": certificate fingerprint: missing" },
	{ "partition on an unknown host", h_part_host, -ENOENT,
	  "host \"h9\": no such host" },
	{ "partition kind 7", h_part_kind, -EINVAL,
	  "partition kind 7: not thin or libvirt" },
	{ "partition state empty", h_part_state, -EINVAL,
	  "partition state: missing" },
	{ "partition name too long", h_part_long, -EINVAL,
	  "partition name: 64 bytes, at most 63" },
	{ "spec with a NUL byte", h_spec_nul, -EINVAL,
	  "spec_json: NUL byte at offset 7" },
	{ "spec not JSON", h_spec_syntax, -EINVAL,
	  "*spec_json: invalid JSON at line 1" },
	{ "spec an array", h_spec_array, -EINVAL,
	  "*spec_json: expected an object" },
	{ "spec not UTF-8", h_spec_utf8, -EINVAL,
	  "spec_json: not UTF-8 at offset 6" },
	{ "spec NULL", h_spec_null, -EINVAL, "spec_json: missing" },
	{ "spec too big", h_spec_big, -E2BIG,
	  "spec_json: 65536 bytes, at most 65535" },
	{ "33 key files", h_files_many, -E2BIG,
	  "33 key configuration files, at most 32" },
	{ "key file with /", h_files_slash, -EINVAL,
	  "files[1]: \"a/b\" is not a file name (printable ASCII, no '/')" },
	{ "key file twice", h_files_dup, -EEXIST, "files[1]: \"motd\" twice" },
	{ "key file with a newline", h_files_ctl, -EINVAL,
	  "files[1]: \"a\\x0ab\" is not a file name (printable ASCII, no "
	  "'/')" },
	{ "key file name too long", h_files_long, -EINVAL,
	  "files[0]: 64 bytes, at most 63" },
	{ "key files of an unknown partition", h_files_part, -ENOENT,
	  "partition \"ghost\": no such partition" },
	{ "baseline digest of 31 bytes", h_bl_digest, -EINVAL,
	  "baseline: digest: 31 bytes, a SHA-256 has 32" },
	{ "baseline file digest of 33 bytes", h_bl_file_digest, -EINVAL,
	  "baseline: files[0]: 33 bytes, a SHA-256 has 32" },
	{ "baseline with 17 segments", h_bl_segs, -E2BIG,
	  "baseline: 17 segments, at most 16" },
	{ "baseline with 33 files", h_bl_files, -E2BIG,
	  "baseline: 33 files, at most 32" },
	{ "baseline of an unknown partition", h_bl_part, -ENOENT,
	  "partition \"ghost\": no such partition" },
	{ "baseline naming a file twice", h_bl_dup, -EEXIST,
	  "baseline: files[1]: file \"file0.conf\" twice" },
	{ "second enrolment", h_bl_twice, -EEXIST,
	  "partition \"pa\" already has an enrolled baseline; enrolment only "
	  "sets the first" },
	{ "baseline file without a name", h_bl_noname, -EINVAL,
	  "baseline: files[0]: missing" },
	{ "baseline NULL", h_bl_null, -EINVAL, "baseline: missing" },
	{ "grant to an unknown partition", h_gr_unknown, -ENOENT,
	  "grant \"g\": endpoint_b: partition \"ghost\": no such partition" },
	{ "grant to itself", h_gr_self, -EINVAL,
	  "grant \"g\": endpoint_a and endpoint_b are both \"pa\"" },
	{ "grant ring 3000", h_gr_ring, -EINVAL,
	  "grant \"g\": ring_bytes 3000 is not a power of two in 4K..16M" },
	{ "grant ring 32M", h_gr_ring_big, -EINVAL,
	  "grant \"g\": ring_bytes 33554432 is not a power of two in "
	  "4K..16M" },
	{ "grant ring 2K", h_gr_ring_small, -EINVAL,
	  "grant \"g\": ring_bytes 2048 is not a power of two in 4K..16M" },
	{ "grant channel without NUL", h_gr_unterminated, -EINVAL,
	  "grant channel: not NUL-terminated within 64 bytes" },
	{ "grant endpoint without NUL", h_gr_a_unterminated, -EINVAL,
	  "grant \"g\": endpoint_a: not NUL-terminated within 64 bytes" },
	{ "grant direction 9", h_gr_dir, -EINVAL,
	  "grant \"g\": direction 9" },
	{ "grant endpoint with a space", h_gr_name, -EINVAL,
	  "*grant \"g\": endpoint_a: \"p a\" is not a valid name" },
	{ "grant NULL", h_gr_null, -EINVAL, "grant: missing" },
	{ "grant added twice", h_gr_dup, -EEXIST, "grant \"ab\" exists" },
	{ "update of a missing grant", h_gr_update_missing, -ENOENT,
	  "grant \"zz\": no such grant" },
	{ "removal of a missing grant", h_gr_remove_missing, -ENOENT,
	  "grant \"zz\": no such grant" },
	{ "removal by a bad name", h_gr_remove_bad, -EINVAL,
	  "*grant channel: \"z z\" is not a valid name" },
	{ "policy naming a channel twice", h_rep_dup, -EEXIST,
	  "grants[1]: channel \"g\" twice" },
	{ "policy with a bad grant", h_rep_bad, -EINVAL,
	  "grants[1]: grant \"h\": ring_bytes 5 is not a power of two in "
	  "4K..16M" },
	{ "policy naming an unknown partition", h_rep_unknown, -ENOENT,
	  "grant \"h\": endpoint_b: partition \"ghost\": no such partition" },
	{ "policy NULL grants", h_rep_null, -EINVAL, "grants: missing" },
	{ "policy of 1025 grants", h_rep_many, -E2BIG,
	  "1025 grants, at most 1024" },
	{ "audit from an unknown host", h_au_host, -ENOENT,
	  "host \"h9\": no such host" },
	{ "audit seq 0", h_au_seq0, -EINVAL,
	  "events[0]: seq 0 is not 1..2^63-1" },
	{ "audit seq going down", h_au_seq_down, -EINVAL,
	  "events[1]: seq 3 after 5: not increasing" },
	{ "audit seq repeated", h_au_seq_same, -EINVAL,
	  "events[1]: seq 5 after 5: not increasing" },
	{ "audit seq 2^63", h_au_seq_huge, -EINVAL,
	  "events[1]: seq 9223372036854775808 is not 1..2^63-1" },
	{ "audit naming another host", h_au_other, -EPERM,
	  "events[0].host: \"h2\" in a batch from host \"h1\"" },
	{ "audit without an event", h_au_event, -EINVAL,
	  "events[0].event: missing" },
	{ "audit detail too big", h_au_detail_big, -E2BIG,
	  "events[0].detail: 1024 bytes, at most 1023" },
	{ "audit detail with a surrogate", h_au_detail_utf8, -EINVAL,
	  "events[0].detail: not UTF-8 at offset 2" },
	{ "audit partition with a space", h_au_partition, -EINVAL,
	  "*events[0].partition: \"p a\" is not a valid name" },
	{ "audit time negative", h_au_time, -EINVAL,
	  "events[0].time_ms: -5 is negative" },
	{ "audit file with /", h_au_file, -EINVAL,
	  "*events[0].file: \"etc/motd\" is not a file name" },
	{ "audit reason too long", h_au_reason, -EINVAL,
	  "events[1].reason: 64 bytes, at most 63" },
	{ "audit channel not ASCII", h_au_channel, -EINVAL,
	  "*events[0].channel: \"\\xff\" is not a valid name" },
	{ "audit NULL events", h_au_null, -EINVAL, "events: missing" },
	{ "audit ingest without a host", h_au_ingest_host, -EINVAL,
	  "host name: missing" },
	{ "measurement of another host's partition", h_ms_other, -EPERM,
	  "measurements[0]: host \"h1\" reported partition \"pc\", which is "
	  "on host \"h2\"" },
	{ "measurement of an unknown partition", h_ms_unknown, -ENOENT,
	  "measurements[0]: partition \"ghost\": no such partition" },
	{ "measurement digest of 16 bytes", h_ms_digest, -EINVAL,
	  "measurements[0]: digest: 16 bytes, a SHA-256 has 32" },
	{ "measurement segments NULL", h_ms_segs, -EINVAL,
	  "measurements[0]: segments missing" },
	{ "status of another host's partition", h_st_other, -EPERM,
	  "status from host \"h1\" for partition \"pc\", which is on host "
	  "\"h2\"" },
	{ "status with a bad state", h_st_state, -EINVAL,
	  "*partition state: \"run ning\" is not a valid name" },
	{ "ack of a version never sent", h_ack_future, -EINVAL,
	  "host \"h3\" acknowledged policy version 1, but its bundle is at "
	  "version 0" },
	{ "ack from an unknown host", h_ack_host, -ENOENT,
	  "host \"h9\": no such host" },
	{ "list limit 0", h_list_0, -EINVAL, "limit 0: must be 1..1000" },
	{ "list limit 1001", h_list_big, -EINVAL,
	  "limit 1001: must be 1..1000" },
	{ "list by a bad host", h_list_host, -EINVAL,
	  "*host name: \"h 1\" is not a valid name" },
	{ "state with a stale version", h_stale, -ESTALE,
	  "partition \"pa\" is at version 1, not 7: changed meanwhile" },
	{ "state empty", h_state_bad, -EINVAL, "partition state: missing" },
	{ "state of an unknown partition", h_state_part, -ENOENT,
	  "partition \"ghost\": no such partition" },
	{ "hosts of an unknown version", h_affected, -ENOENT,
	  "no policy version 99" },
	{ "grants of an unknown host", h_for_host, -ENOENT,
	  "host \"h9\": no such host" },
	{ "host still running partitions", h_host_busy, -EBUSY,
	  "host \"h1\" has 2 partition(s); delete them first" },
	{ "partition still granted", h_part_busy, -EBUSY,
	  "partition \"pb\": 1 grant(s) name it; remove them first" },
	{ "seq of an unknown host", h_seq_host, -ENOENT,
	  "host \"h9\": no such host" },
	{ "commit without a batch", h_commit, -EINVAL,
	  "*: commit without a batch" },
};

static void expect_untouched(struct fx *f)
{
	static const char *const q[][2] = {
		{ "SELECT COUNT(*) FROM hosts", "3" },
		{ "SELECT COUNT(*) FROM partitions", "4" },
		{ "SELECT MAX(version) FROM partitions", "1" },
		{ "SELECT COUNT(*) FROM partition_files", "0" },
		{ "SELECT COUNT(*) FROM baselines", "1" },
		{ "SELECT COUNT(*) FROM grants", "1" },
		{ "SELECT COUNT(*) FROM policy_versions", "2" },
		{ "SELECT COUNT(*) FROM audit", "0" },
		{ "SELECT COUNT(*) FROM measurements", "0" },
		{ "SELECT SUM(agent_seq) + SUM(policy_acked) FROM hosts", "0" },
	};
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		char *v = raw_text(f->path, q[i][0]);
		cr_expect_str_eq(v, q[i][1], "%s: %s, want %s", q[i][0], v,
				 q[i][1]);
		free(v);
	}
}

STORE_TEST(store, hostile_arguments)
{
	struct fx f;
	fx_open(&f);
	fleet(f.s);
	struct parley_err e = { 0 };
	struct grant g = mkgrant("ab", "pa", "pb");
	cr_assert_eq(store_grant_add(f.s, &g, NULL, &e), 0);
	struct dg d;
	dg_make(&d, 1, 0, 9);
	cr_assert_eq(store_baseline_put(f.s, "pa", &d.in, false, NULL, &e), 0);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const struct hostile *h = &hostile[i];
		e = (struct parley_err){ 0 };
		int rc = h->run(f.s, &e);
		cr_expect_eq(rc, h->code, "%s: rc %d (%s), want %d", h->name,
			     rc, e.msg, h->code);
		cr_expect_eq(e.code, rc, "%s: err code %d, rc %d", h->name,
			     e.code, rc);
		if (h->msg[0] == '*')
			cr_expect(strstr(e.msg, h->msg + 1), "%s: \"%s\" lacks "
				  "\"%s\"", h->name, e.msg, h->msg + 1);
		else
			cr_expect_str_eq(e.msg, h->msg, "%s: \"%s\", want "
					 "\"%s\"", h->name, e.msg, h->msg);
		/* And nothing with a NULL err either. */
		cr_expect_eq(h->run(f.s, NULL), h->code, "%s (err NULL)",
			     h->name);
		char *v = raw_text(f.path, "SELECT COUNT(*) || ' ' || "
				   "(SELECT COUNT(*) FROM partitions) FROM "
				   "policy_versions");
		cr_expect_str_eq(v, "2 4", "%s left %s", h->name, v);
		free(v);
	}
	store_close(f.s);
	f.s = NULL;
	expect_untouched(&f);
	fx_reopen(&f);
	fx_close(&f);
	expect_no_leaks();
}

/* ---- host certificates: pins and revocation (migration 5) ---- */

static struct store_blob fp_of(uint8_t *buf, uint8_t byte)
{
	memset(buf, byte, STORE_DIGEST);
	return (struct store_blob){ buf, STORE_DIGEST };
}

static bool is_revoked(struct fx *f, struct store_blob fp, char *host)
{
	bool r = true;
	struct parley_err e = { 0 };
	cr_assert_eq(store_cert_revoked(f->s, fp, &r, host, &e), 0, "%s",
		     perr_msg(&e));
	return r;
}

STORE_TEST(store, join_enrols_pins_and_revokes_what_it_replaces)
{
	struct fx f;
	fx_open(&f);
	uint8_t b1[32], b2[32];
	struct store_blob c1 = fp_of(b1, 1), c2 = fp_of(b2, 2);
	struct parley_err e = { 0 };
	bool created = false;
	cr_assert_eq(store_host_enrol(f.s, "h1", c1, &created, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect(created);
	struct store_host h;
	cr_assert_eq(store_host_get(f.s, "h1", &h, NULL), 0);
	cr_expect(h.has_cert && !memcmp(h.cert_sha256, b1, 32));
	/* The same host joins again with a new key: the old one is out. */
	cr_assert_eq(store_host_enrol(f.s, "h1", c2, &created, &e), 0);
	cr_expect_not(created);
	char on[STORE_NAME_MAX];
	cr_expect(is_revoked(&f, c1, on));
	cr_expect_str_eq(on, "h1");
	cr_expect_not(is_revoked(&f, c2, NULL));
	/* A revoked certificate never comes back through a join. */
	cr_expect_eq(store_host_enrol(f.s, "h2", c1, NULL, &e), -EKEYREVOKED);
	cr_expect_eq(store_host_get(f.s, "h2", &h, NULL), -ENOENT);
	fx_close(&f);
}

STORE_TEST(store, deleting_a_host_revokes_its_pinned_certificate)
{
	struct fx f;
	fx_open(&f);
	uint8_t b1[32], b2[32];
	struct store_blob c1 = fp_of(b1, 1), c2 = fp_of(b2, 2);
	struct parley_err e = { 0 };
	bool now = false;
	cr_assert_eq(store_host_put(f.s, "h1", "", NOCERT, &e), 0);
	/* First use pins; a second certificate is refused; the first
	 * again is fine. */
	cr_assert_eq(store_host_pin_first(f.s, "h1", c1, &now, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect(now);
	cr_expect_eq(store_host_pin_first(f.s, "h1", c2, &now, &e), -ESTALE);
	cr_expect_eq(store_host_pin_first(f.s, "h1", c1, &now, &e), 0);
	cr_expect_not(now);
	cr_expect_eq(store_host_pin_first(f.s, "nope", c1, &now, &e), -ENOENT);
	cr_expect_not(is_revoked(&f, c1, NULL));
	/* A delete that fails (a partition is on it) revokes nothing. */
	struct store_part_in in = { .name = "p1", .host = "h1",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(f.s, &in, NULL, &e), 0);
	cr_expect_eq(store_host_delete(f.s, "h1", &e), -EBUSY);
	cr_expect_not(is_revoked(&f, c1, NULL));
	cr_assert_eq(store_partition_delete(f.s, "p1", &e), 0);
	cr_assert_eq(store_host_delete(f.s, "h1", &e), 0, "%s", perr_msg(&e));
	cr_expect(is_revoked(&f, c1, NULL));
	/* Added again without a join: the old certificate cannot pin. */
	cr_assert_eq(store_host_put(f.s, "h1", "", NOCERT, &e), 0);
	cr_expect(is_revoked(&f, c1, NULL));
	/* A host without a pin revokes nothing when deleted. */
	cr_assert_eq(store_host_delete(f.s, "h1", &e), 0);
	fx_close(&f);
}

STORE_TEST(store, hostile_certificate_arguments)
{
	struct fx f;
	fx_open(&f);
	uint8_t b[33] = { 0 };
	struct parley_err e = { 0 };
	bool r;
	struct store_blob short_fp = { b, 31 }, long_fp = { b, 33 },
			  null_fp = { NULL, 32 };
	cr_expect_eq(store_cert_revoked(f.s, short_fp, &r, NULL, &e), -EINVAL);
	cr_expect_eq(store_cert_revoked(f.s, long_fp, &r, NULL, &e), -EINVAL);
	cr_expect_eq(store_cert_revoked(f.s, null_fp, &r, NULL, &e), -EINVAL);
	cr_expect_eq(store_host_enrol(f.s, "h1", short_fp, NULL, &e), -EINVAL);
	cr_expect_eq(store_host_enrol(f.s, "h/1", (struct store_blob){ b, 32 },
				      NULL, &e), -EINVAL);
	cr_expect_eq(store_host_pin_first(f.s, "", (struct store_blob){ b, 32 },
					  NULL, &e), -EINVAL);
	char host[STORE_NAME_MAX];
	cr_expect_eq(store_partition_host(f.s, "../x", host, &e), -EINVAL);
	cr_expect_eq(store_partition_host(f.s, "nope", host, &e), -ENOENT);
	fx_close(&f);
}

/* An agent's audit event may name a partition the store does not know,
 * but not one of another host's: the whole batch is refused. */
STORE_TEST(store, audit_ingest_refuses_another_hosts_partition)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	cr_assert_eq(store_host_put(f.s, "h1", "", NOCERT, &e), 0);
	cr_assert_eq(store_host_put(f.s, "h2", "", NOCERT, &e), 0);
	struct store_part_in in = { .name = "p2", .host = "h2",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(f.s, &in, NULL, &e), 0);
	struct store_audit_in ev[2] = {
		{ .seq = 1, .event = "open_denied", .partition = "local" },
		{ .seq = 2, .event = "open_denied", .partition = "p2" },
	};
	struct store_ingest res;
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 2, &res, &e), -EPERM);
	cr_expect(strstr(e.msg, "of host \"h2\""), "%s", e.msg);
	uint64_t seq = 9;
	cr_expect_eq(store_host_seq(f.s, "h1", &seq, NULL), 0);
	cr_expect_eq(seq, 0);
	cr_expect_eq(store_ingest_audit(f.s, "h1", ev, 1, &res, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(res.stored, 1);
	cr_expect_eq(store_ingest_audit(f.s, "h2", &ev[1], 1, &res, &e), 0,
		     "%s", perr_msg(&e));
	fx_close(&f);
}
