#include "tests/helpers/audit_rewrite.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <string.h>

static size_t put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return n;
}

/* db/store.h's definition of a row's hash, written out again as an
 * attacker would from the documentation. */
static void row_hash(const uint8_t prev[32], uint64_t id, int64_t t,
		     const char *const f[7], uint8_t out[32])
{
	static uint8_t buf[1 << 16];
	size_t n = 0;
	memcpy(buf, prev, 32);
	n += 32;
	n += put_be(buf + n, 1, 4);
	n += put_be(buf + n, id, 8);
	n += put_be(buf + n, (uint64_t)t, 8);
	for (int i = 0; i < 7; i++) {
		size_t len = strlen(f[i]);
		cr_assert_lt(n + 4 + len, sizeof(buf));
		n += put_be(buf + n, len, 4);
		memcpy(buf + n, f[i], len);
		n += len;
	}
	unsigned ol;
	cr_assert_eq(EVP_Digest(buf, n, out, &ol, EVP_sha256(), NULL), 1);
}

void t_audit_rewrite(const char *store_path, uint64_t id, const char *detail)
{
	sqlite3 *db;
	sqlite3_stmt *sel, *upd;
	cr_assert_eq(sqlite3_open(store_path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
	char q[128];
	snprintf(q, sizeof(q), "UPDATE audit SET detail = '%s' WHERE id = %llu",
		 detail, (unsigned long long)id);
	cr_assert_eq(sqlite3_exec(db, q, 0, 0, 0), SQLITE_OK, "%s",
		     sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_changes(db), 1, "no audit row %llu",
		     (unsigned long long)id);
	cr_assert_eq(sqlite3_prepare_v2(db,
		"SELECT id, time_ms, host, event, partition, channel, reason, "
		"file, detail, prev_hash FROM audit WHERE id >= ?1 ORDER BY id",
		-1, &sel, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db,
		"UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3", -1,
		&upd, NULL), SQLITE_OK);
	sqlite3_bind_int64(sel, 1, (sqlite3_int64)id);
	uint8_t prev[32], h[32];
	bool first = true;
	while (sqlite3_step(sel) == SQLITE_ROW) {
		if (first) {
			cr_assert_eq(sqlite3_column_bytes(sel, 9), 32);
			memcpy(prev, sqlite3_column_blob(sel, 9), 32);
			first = false;
		}
		const char *f[7];
		for (int i = 0; i < 7; i++)
			f[i] = (const char *)sqlite3_column_text(sel, 2 + i);
		uint64_t rid = (uint64_t)sqlite3_column_int64(sel, 0);
		row_hash(prev, rid, sqlite3_column_int64(sel, 1), f, h);
		sqlite3_bind_blob(upd, 1, prev, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(upd, 2, h, 32, SQLITE_TRANSIENT);
		sqlite3_bind_int64(upd, 3, (sqlite3_int64)rid);
		cr_assert_eq(sqlite3_step(upd), SQLITE_DONE);
		sqlite3_reset(upd);
		memcpy(prev, h, 32);
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	sqlite3_stmt *head;
	cr_assert_eq(sqlite3_prepare_v2(db, "UPDATE audit_head SET last_hash "
					"= ?1 WHERE one = 1", -1, &head, NULL),
		     SQLITE_OK);
	sqlite3_bind_blob(head, 1, prev, 32, SQLITE_TRANSIENT);
	cr_assert_eq(sqlite3_step(head), SQLITE_DONE);
	sqlite3_finalize(head);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
}
