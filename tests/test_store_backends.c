/*
 * The store's backends (db/store_uri.c, db/store_copy.c, db/store_pg.c):
 *  - store_uri: hostile --store values, each refused with its code and a
 *    message that names the problem; a password never shows.
 *  - store_pg: `parleyd store migrate` round-trips a store (SQLite ->
 *    PostgreSQL -> SQLite, every table equal, the chain verified on each
 *    arrival), refuses a non-empty target and a source whose chain does
 *    not verify; several processes racing for one join token on
 *    PostgreSQL: exactly one wins; several processes appending audit
 *    events one at a time on PostgreSQL: one chain, ids without gaps;
 *    a real parleyd on a PostgreSQL store serving agents.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/store.h"
#include "db/store_updates.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

/* ---- hostile --store values ---- */

struct bad_uri {
	const char *uri;
	int code;
	const char *msg;     /* a substring of the message */
};

Test(store_uri, hostile_values_refused)
{
	static char longv[5000];
	memset(longv, 'a', sizeof(longv) - 1);
	const struct bad_uri bad[] = {
		{ "", -EINVAL, "empty path" },
		{ "sqlite:", -EINVAL, "empty path" },
		{ "postgresql:", -EINVAL, "no connection string" },
		{ longv, -ENAMETOOLONG, "longer than 4096" },
		{ "sqlite:/tmp/a\nb", -EINVAL, "control character at byte 13" },
		{ "postgresql://h/db\x1b[2J", -EINVAL, "control character" },
		{ "mysql://h/db", -EINVAL, "unknown kind of store" },
		{ "file:///tmp/x.db", -EINVAL, "unknown kind of store" },
		{ "postgresql://[::1/db", -EINVAL, "bad PostgreSQL connection" },
		{ "postgresql:host=a bogus_keyword=1", -EINVAL,
		  "bad PostgreSQL connection" },
		{ "postgresql:host='a", -EINVAL, "bad PostgreSQL connection" },
		{ "postgresql://h/db?sslmode=sometimes&x=1", -EINVAL,
		  "bad PostgreSQL connection" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parley_err e = { 0 };
		struct store *s = (void *)1;
		int rc = store_open(bad[i].uri, &s, &e);
		cr_expect_eq(rc, bad[i].code, "[%zu] %.40s: %d (%s)", i,
			     bad[i].uri, rc, perr_msg(&e));
		cr_expect_null(s, "[%zu]", i);
		cr_expect(strstr(perr_msg(&e), bad[i].msg), "[%zu] %s", i,
			  perr_msg(&e));
		char path[64];
		cr_expect_eq(store_uri_file(bad[i].uri, path, sizeof(path),
					    NULL), bad[i].code, "[%zu]", i);
	}
}

Test(store_uri, kinds_and_no_password_shown)
{
	char path[64];
	cr_expect_eq(store_uri_file("sqlite:/x/p.db", path, sizeof(path),
				    NULL), 1);
	cr_expect_str_eq(path, "/x/p.db");
	cr_expect_eq(store_uri_file("rel/p.db", path, sizeof(path), NULL), 1);
	cr_expect_str_eq(path, "rel/p.db");
	cr_expect_eq(store_uri_file("postgresql://u@h/db", path, sizeof(path),
				    NULL), 0);
	cr_expect_eq(store_uri_file("postgres://h:5433/db?sslmode=verify-full",
				    path, sizeof(path), NULL), 0);
	cr_expect_eq(store_uri_file("postgresql:service=parley", path,
				    sizeof(path), NULL), 0);
	/* a path longer than the caller's buffer */
	char small[4];
	cr_expect_eq(store_uri_file("/abcdef", small, sizeof(small), NULL),
		     -ENAMETOOLONG);
	/* Nothing listens in an empty directory: refused, and the message
	 * names the store without the password. */
	char *dir = t_tmpdir(), uri[600];
	snprintf(uri, sizeof(uri), "postgresql://parley:s3cret-pw@/db?host=%s"
		 "&connect_timeout=2", dir);
	struct parley_err e = { 0 };
	struct store *s = (void *)1;
	cr_expect_eq(store_open(uri, &s, &e), -ECONNREFUSED, "%s",
		     perr_msg(&e));
	cr_expect_null(s);
	cr_expect(strstr(perr_msg(&e), "postgresql://parley@"), "%s",
		  perr_msg(&e));
	cr_expect_null(strstr(perr_msg(&e), "s3cret"), "%s", perr_msg(&e));
	t_rmtree(dir);
	free(dir);
}

/* parleyd refuses a bad --store before it does anything, and takes a
 * database's URI as it is (not as a path under --state-dir). */
Test(store_uri, parleyd_refuses_a_bad_store_at_once)
{
	char *dir = t_tmpdir();
	char *argv[] = { T_BIN("parleyd"), "--state-dir", dir, "--store",
			 "mysql://h/db", NULL };
	char *out = NULL;
	cr_expect_eq(t_run(argv, &out, 30), 2, "%s", out);
	cr_expect(strstr(out, "store") && strstr(out, "unknown kind of store"),
		  "%s", out);
	free(out);
	char *mig[] = { T_BIN("parleyd"), "store", "migrate", "--from",
			"/nonexistent/a.db", "--to", "sqlite:", NULL };
	cr_expect_eq(t_run(mig, &out, 30), 1, "%s", out);
	cr_expect(strstr(out, "/nonexistent/a.db"), "%s", out);
	free(out);
	char *use[] = { T_BIN("parleyd"), "store", "migrate", "--from", "a",
			NULL };
	cr_expect_eq(t_run(use, &out, 30), 2, "%s", out);
	cr_expect(strstr(out, "usage: parleyd store migrate"), "%s", out);
	free(out);
	t_rmtree(dir);
	free(dir);
}

/* ---- store migrate ---- */

#define NOCERT ((struct store_blob){ NULL, 0 })
#define SPEC "{\"name\":\"x\",\"image\":\"x.elf\",\"memory\":\"8M\"}"

static struct store *open_ok(const char *uri)
{
	struct store *s = NULL;
	struct parley_err e = { 0 };
	cr_assert_eq(store_open(uri, &s, &e), 0, "%s: %s", uri, perr_msg(&e));
	return s;
}

/* Something in every kind of table: hosts (one with a pinned
 * certificate), partitions and their files, a baseline, grants and their
 * versions, 120 audit events, a checkpoint, API and join tokens (one
 * used), a revoked certificate, an update package of two parts. */
static void populate(struct store *s)
{
	struct parley_err e = { 0 };
	uint8_t fp[32], fp2[32];
	memset(fp, 0xab, sizeof(fp));
	memset(fp2, 0xcd, sizeof(fp2));
	cr_assert_eq(store_host_enrol(s, "h1", (struct store_blob){ fp, 32 },
				      NULL, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(store_host_enrol(s, "h1", (struct store_blob){ fp2, 32 },
				      NULL, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(store_host_put(s, "h2", "test:///default", NOCERT, &e), 0);
	const char *parts[][2] = { { "pa", "h1" }, { "pb", "h1" },
				   { "pc", "h2" } };
	for (int i = 0; i < 3; i++) {
		struct store_part_in in = {
			.name = parts[i][0], .host = parts[i][1],
			.kind = STORE_PART_THIN, .spec_json = SPEC,
			.spec_len = strlen(SPEC), .state = "defined",
		};
		cr_assert_eq(store_partition_put(s, &in, NULL, &e), 0, "%s",
			     perr_msg(&e));
	}
	struct grant g = { .dir = GRANT_BOTH, .ring_bytes = 65536,
			   .require_integrity = true };
	snprintf(g.channel, sizeof(g.channel), "ab");
	snprintf(g.a, sizeof(g.a), "pa");
	snprintf(g.b, sizeof(g.b), "pb");
	cr_assert_eq(store_grant_add(s, &g, NULL, &e), 0, "%s", perr_msg(&e));
	struct store_audit_in ev[120];
	char det[120][32];
	for (int i = 0; i < 120; i++) {
		snprintf(det[i], sizeof(det[i]), "event %d", i);
		ev[i] = (struct store_audit_in){
			.seq = (uint64_t)i + 1, .event = "open_denied",
			.partition = "pa", .channel = "ab",
			.reason = "INTEGRITY", .file = "motd",
			.detail = det[i],
		};
	}
	cr_assert_eq(store_ingest_audit(s, "h1", ev, 120, NULL, &e), 0, "%s",
		     perr_msg(&e));
	struct store_checkpoint c = { .seq = 100, .time_ms = 1234 };
	memset(c.key_id, 'e', 64);
	memset(c.hash, 3, sizeof(c.hash));
	memset(c.sig, 4, sizeof(c.sig));
	cr_assert_eq(store_checkpoint_add(s, &c, NULL, &e), 0, "%s",
		     perr_msg(&e));
	uint8_t t1[32], t2[32];
	memset(t1, 1, 32);
	memset(t2, 2, 32);
	cr_assert_eq(store_token_add(s, "admin", STORE_SCOPE_ADMIN,
				     (struct store_blob){ t1, 32 }, &e), 0);
	cr_assert_eq(store_join_token_add(s, "h3", (struct store_blob){ t1, 32 },
					  INT64_MAX, &e), 0);
	cr_assert_eq(store_join_token_add(s, "h4", (struct store_blob){ t2, 32 },
					  INT64_MAX, &e), 0);
	char host[STORE_NAME_MAX];
	cr_assert_eq(store_join_token_use(s, (struct store_blob){ t2, 32 }, 5,
					  host, &e), 0, "%s", perr_msg(&e));
	static uint8_t pkg[300 * 1024];
	for (size_t i = 0; i < sizeof(pkg); i++)
		pkg[i] = (uint8_t)(i * 7);
	uint8_t sha[32];
	memset(sha, 9, 32);
	cr_assert_eq(store_update_put_package(s, (struct store_blob){ sha, 32 },
					      "1.2.3", pkg, sizeof(pkg), &e),
		     0, "%s", perr_msg(&e));
	cr_assert_eq(store_update_request(s, "h2", (struct store_blob){ sha, 32 },
					  &e), 0, "%s", perr_msg(&e));
}

static int parleyd_migrate(const char *from, const char *to, char **out)
{
	char *argv[] = { T_BIN("parleyd"), "store", "migrate", "--from",
			 (char *)from, "--to", (char *)to, NULL };
	return t_run(argv, out, 60);
}

/* Every table of b holds exactly a's rows. */
static void expect_same_files(const char *a, const char *b)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(a, &db), SQLITE_OK);
	char sql[1200];
	snprintf(sql, sizeof(sql), "ATTACH '%s' AS b", b);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_stmt *t;
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT name FROM main.sqlite_master "
					"WHERE type = 'table' ORDER BY name",
					-1, &t, NULL), SQLITE_OK);
	int tables = 0;
	while (sqlite3_step(t) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(t, 0);
		if (!strcmp(name, "schema_version"))
			continue;   /* when each migration ran: not data */
		snprintf(sql, sizeof(sql),
			 "SELECT (SELECT COUNT(*) FROM main.%s), "
			 "(SELECT COUNT(*) FROM b.%s), (SELECT COUNT(*) FROM "
			 "(SELECT * FROM main.%s EXCEPT SELECT * FROM b.%s))",
			 name, name, name, name);
		sqlite3_stmt *q;
		cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL),
			     SQLITE_OK, "%s", sqlite3_errmsg(db));
		cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
		cr_expect_eq(sqlite3_column_int64(q, 0),
			     sqlite3_column_int64(q, 1), "%s: row counts",
			     name);
		cr_expect_eq(sqlite3_column_int64(q, 2), 0, "%s: rows differ",
			     name);
		sqlite3_finalize(q);
		tables++;
	}
	sqlite3_finalize(t);
	sqlite3_close(db);
	cr_expect_geq(tables, 23);
}

Test(store_pg, migrate_round_trips_a_store, .timeout = 120)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), a[600], c[600], pg[600], from[700];
	snprintf(a, sizeof(a), "%s/a.db", dir);
	snprintf(c, sizeof(c), "%s/c.db", dir);
	t_store_uri(dir, "b", pg, sizeof(pg));
	struct store *s = open_ok(a);
	populate(s);
	store_close(s);

	snprintf(from, sizeof(from), "sqlite:%s", a);
	char *out = NULL;
	int rc = parleyd_migrate(from, pg, &out);
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "audit chain verified: 120 rows"), "%s", out);
	free(out);
	/* On PostgreSQL: the store API sees what SQLite held. */
	s = open_ok(pg);
	cr_expect_str_eq(store_backend(s), "postgresql");
	uint64_t bad, rows, v;
	struct parley_err e = { 0 };
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(rows, 120);
	cr_expect_eq(store_policy_version(s, &v, &e), 0);
	cr_expect_geq(v, 1);
	struct grant_set gs;
	cr_assert_eq(store_grant_list(s, &gs, &e), 0);
	cr_expect_eq(gs.n, 1);
	grant_set_free(&gs);
	uint8_t sha[32];
	memset(sha, 9, 32);
	static uint8_t buf[300 * 1024];
	size_t got = 0;
	cr_expect_eq(store_update_read(s, (struct store_blob){ sha, 32 },
				       200 * 1024, buf, sizeof(buf), &got, &e),
		     0, "%s", perr_msg(&e));
	cr_expect_eq(got, 100 * 1024);
	cr_expect_eq(buf[0], (uint8_t)(200 * 1024 * 7));
	store_close(s);

	/* A second copy into it is refused: it is not empty. */
	rc = parleyd_migrate(from, pg, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "is not empty"), "%s", out);
	free(out);

	/* And back into a new SQLite file: every table as it was. */
	rc = parleyd_migrate(pg, c, &out);
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "audit chain verified: 120 rows"), "%s", out);
	free(out);
	expect_same_files(a, c);
	/* On PostgreSQL the next event chains on from the copied head. */
	s = open_ok(pg);
	struct store_audit_in ev = { .host = "h1", .event = "test",
				     .detail = "after the move" };
	uint64_t last = 0;
	cr_expect_eq(store_audit_append(s, &ev, 1, &last, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(last, 121);
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	store_close(s);
	t_store_uri_drop(pg);
	t_rmtree(dir);
	free(dir);
}

Test(store_pg, migrate_refuses_a_broken_chain, .timeout = 60)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), a[600], pg[600];
	snprintf(a, sizeof(a), "%s/a.db", dir);
	t_store_uri(dir, "b", pg, sizeof(pg));
	struct store *s = open_ok(a);
	populate(s);
	store_close(s);
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(a, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "UPDATE audit SET detail = 'nothing' "
				  "WHERE id = 7", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	char *out = NULL;
	int rc = parleyd_migrate(a, pg, &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "does not verify") && strstr(out, "7"), "%s",
		  out);
	free(out);
	/* nothing was left behind but the schema: a fixed copy may go in */
	s = open_ok(pg);
	uint64_t bad, rows = 1, hosts = 1;
	cr_expect_eq(store_audit_verify(s, &bad, &rows, NULL), 0);
	cr_expect_eq(rows, 0);
	struct store_host *hl = NULL;
	int n = store_host_list(s, "", 10, &hl, NULL);
	hosts = (uint64_t)n;
	cr_expect_eq(hosts, 0);
	free(hl);
	store_close(s);
	t_store_uri_drop(pg);
	t_rmtree(dir);
	free(dir);
}

/* ---- several writers on PostgreSQL ---- */

#define RACERS 6

Test(store_pg, one_join_token_one_winner, .timeout = 60)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), pg[600];
	t_store_uri(dir, "b", pg, sizeof(pg));
	struct store *s = open_ok(pg);
	uint8_t t[32];
	memset(t, 5, 32);
	cr_assert_eq(store_join_token_add(s, "h9", (struct store_blob){ t, 32 },
					  INT64_MAX, NULL), 0);
	store_close(s);
	int go[2];
	cr_assert_eq(pipe(go), 0);
	pid_t pid[RACERS];
	for (int k = 0; k < RACERS; k++) {
		pid[k] = fork();
		cr_assert_geq(pid[k], 0);
		if (pid[k] == 0) {
			close(go[1]);
			struct store *c = NULL;
			if (store_open(pg, &c, NULL) < 0)
				_exit(10);
			char b;
			/* all connected; all start at once */
			if (read(go[0], &b, 1) != 0)
				_exit(11);
			char host[STORE_NAME_MAX];
			int rc = store_join_token_use(c, (struct store_blob){
							t, 32 }, 1, host, NULL);
			store_close(c);
			_exit(rc == 0 && !strcmp(host, "h9") ? 0
			      : rc == -EEXIST ? 1 : 20 + (-rc & 0x3f));
		}
	}
	close(go[0]);
	usleep(300 * 1000);
	close(go[1]);
	int won = 0, lost = 0;
	for (int k = 0; k < RACERS; k++) {
		int st;
		cr_assert_eq(waitpid(pid[k], &st, 0), pid[k]);
		cr_assert(WIFEXITED(st), "racer %d: status %d", k, st);
		won += WEXITSTATUS(st) == 0;
		lost += WEXITSTATUS(st) == 1;
		cr_expect_leq(WEXITSTATUS(st), 1, "racer %d: exit %d", k,
			      WEXITSTATUS(st));
	}
	cr_expect_eq(won, 1);
	cr_expect_eq(lost, RACERS - 1);
	t_store_uri_drop(pg);
	t_rmtree(dir);
	free(dir);
}

#define APPENDERS 4
#define APPENDS 60

/* One event per transaction from each of several connections: the
 * appends interleave as finely as they can, and the chain stays one. */
Test(store_pg, interleaved_audit_appends_keep_one_chain, .timeout = 90)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), pg[600];
	t_store_uri(dir, "b", pg, sizeof(pg));
	store_close(open_ok(pg));
	pid_t pid[APPENDERS];
	for (int k = 0; k < APPENDERS; k++) {
		pid[k] = fork();
		cr_assert_geq(pid[k], 0);
		if (pid[k] == 0) {
			struct store *c = NULL;
			if (store_open(pg, &c, NULL) < 0)
				_exit(10);
			for (int i = 0; i < APPENDS; i++) {
				char d[32];
				snprintf(d, sizeof(d), "writer %d event %d", k,
					 i);
				struct store_audit_in ev = {
					.host = "h1", .event = "test",
					.detail = d };
				if (store_audit_append(c, &ev, 1, NULL,
						       NULL) < 0)
					_exit(11);
			}
			store_close(c);
			_exit(0);
		}
	}
	for (int k = 0; k < APPENDERS; k++) {
		int st;
		cr_assert_eq(waitpid(pid[k], &st, 0), pid[k]);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "writer %d: status %d", k, st);
	}
	struct store *s = open_ok(pg);
	uint64_t bad = 0, rows = 0, head = 0;
	uint8_t h[32];
	struct parley_err e = { 0 };
	cr_expect_eq(store_audit_verify(s, &bad, &rows, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(rows, APPENDERS * APPENDS);
	cr_expect_eq(store_audit_head(s, &head, h, &e), 0);
	cr_expect_eq(head, APPENDERS * APPENDS);
	store_close(s);
	char *n = t_pg_text(pg, "SELECT COUNT(DISTINCT detail) FROM audit");
	cr_expect_str_eq(n, "240");
	free(n);
	t_store_uri_drop(pg);
	t_rmtree(dir);
	free(dir);
}

/* ---- parleyd on PostgreSQL ---- */

/* The daemon with --store postgresql:...: bundles reach the agents and
 * their acknowledgements reach the database; the log names the store
 * without a password. */
Test(store_pg, daemon_serves_agents_from_postgresql, .timeout = 90)
{
	t_store_pg = true;
	struct fleetd f;
	fd_init(&f);
	t_store_uri(f.dir, "parley.db", f.store, sizeof(f.store));
	struct store *s = fd_store(&f);
	cr_expect_str_eq(store_backend(s), "postgresql");
	const char *hosts[] = { "host-a", "host-b" };
	for (int i = 0; i < 2; i++)
		cr_assert_eq(store_host_put(s, hosts[i], "", NOCERT, NULL), 0);
	const char *parts[][2] = { { "p1", "host-a" }, { "p2", "host-a" },
				   { "q1", "host-b" }, { "q2", "host-b" } };
	for (int i = 0; i < 4; i++) {
		struct store_part_in in = {
			.name = parts[i][0], .host = parts[i][1],
			.kind = STORE_PART_THIN, .spec_json = "{}",
			.spec_len = 2, .state = "defined" };
		cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	}
	uint64_t v[2];
	for (int i = 0; i < 2; i++) {
		struct grant g = { .dir = GRANT_BOTH, .ring_bytes = 65536 };
		snprintf(g.channel, sizeof(g.channel), "g%d", i);
		snprintf(g.a, sizeof(g.a), "%s", parts[2 * i][0]);
		snprintf(g.b, sizeof(g.b), "%s", parts[2 * i + 1][0]);
		cr_assert_eq(store_grant_add(s, &g, &v[i], NULL), 0);
	}
	store_close(s);
	fd_start_daemon(&f);
	for (int i = 0; i < 2; i++)
		fd_start_agent(&f, fd_host(&f, hosts[i], NULL), NULL);
	struct fd_ack wa = { "host-a", v[0] }, wb = { "host-b", v[1] };
	cr_expect(fd_wait(fd_acked, &f, &wa, 20000), "host-a never acked");
	cr_expect(fd_wait(fd_acked, &f, &wb, 20000), "host-b never acked");
	fd_stop(&f);
	t_store_uri_drop(f.store);
}

/* ---- schema on PostgreSQL ---- */

/* A database at migration 1 is brought to the latest on open, each
 * migration's DDL in PostgreSQL's types (BIGINT, BYTEA, TEXT COLLATE
 * "C"). */
Test(store_pg, migrate_from_an_older_database, .timeout = 60)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), pg[600];
	t_store_uri(dir, "b", pg, sizeof(pg));
	struct store *s = NULL;
	struct parley_err e = { 0 };
	cr_assert_eq(store_open_upto(pg, 1, &s, &e), 0, "%s", perr_msg(&e));
	unsigned v = 0;
	cr_assert_eq(store_schema_version(s, &v, &e), 0);
	cr_expect_eq(v, 1);
	cr_expect_eq(store_host_put(s, "h1", "", NOCERT, &e), 0, "%s",
		     perr_msg(&e));
	store_close(s);
	char *n = t_pg_text(pg, "SELECT COUNT(*) FROM pg_indexes WHERE "
			    "indexname = 'grants_by_a'");
	cr_expect_str_eq(n, "0");
	free(n);
	s = open_ok(pg);
	cr_assert_eq(store_schema_version(s, &v, &e), 0);
	cr_expect_eq(v, store_schema_latest());
	struct store_host h;
	cr_expect_eq(store_host_get(s, "h1", &h, &e), 0, "%s", perr_msg(&e));
	store_close(s);
	n = t_pg_text(pg, "SELECT COUNT(*) FROM pg_indexes WHERE "
		      "indexname = 'grants_by_a'");
	cr_expect_str_eq(n, "1");
	free(n);
	/* the translated types, and names in byte order */
	n = t_pg_text(pg, "SELECT data_type || ',' || COALESCE(collation_name,"
		      " '') FROM information_schema.columns WHERE table_name"
		      " = 'audit' AND column_name = 'detail'");
	cr_expect_str_eq(n, "text,C");
	free(n);
	n = t_pg_text(pg, "SELECT string_agg(data_type, ',' ORDER BY "
		      "column_name) FROM information_schema.columns WHERE "
		      "table_name = 'audit' AND column_name IN ('id', 'hash')");
	cr_expect_str_eq(n, "bytea,bigint");
	free(n);
	t_store_uri_drop(pg);
	t_rmtree(dir);
	free(dir);
}

/* A database holding anything else -- even a table called
 * schema_version -- is not taken for a store. */
Test(store_pg, foreign_databases_refused, .timeout = 60)
{
	t_store_pg = true;
	char *dir = t_tmpdir(), pg[600];
	const char *other[] = {
		"CREATE TABLE other (x INTEGER)",
		"CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
		"applied_ms INTEGER NOT NULL)",
	};
	for (int i = 0; i < 2; i++) {
		t_store_uri(dir, "b", pg, sizeof(pg));
		t_pg_exec(pg, other[i]);
		struct parley_err e = { 0 };
		struct store *s = (void *)1;
		cr_expect_eq(store_open(pg, &s, &e), -EINVAL, "[%d] %s", i,
			     perr_msg(&e));
		cr_expect_null(s);
		cr_expect(strstr(perr_msg(&e), "not a parley store"), "%s",
			  perr_msg(&e));
		t_store_uri_drop(pg);
	}
	t_rmtree(dir);
	free(dir);
}
