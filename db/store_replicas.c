/*
 * Replicas (migration 11): several parleyd processes on one store. Each
 * says it is alive (its row's seen_ms), records which hosts' agents it
 * holds, and delivers the partition commands other replicas' APIs stored
 * for those hosts. Only db_* helpers: nothing here is SQLite's own.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_link(const char *link, struct parley_err *err)
{
	if (!link)
		return perr(err, -EINVAL, "replica link address: missing");
	int rc = db_check_text("replica link address", link, strlen(link),
			       STORE_REPLICA_LINK_MAX, err);
	for (const char *p = link; rc == 0 && *p; p++)
		if (*p <= 0x20 || *p > 0x7e)
			rc = perr(err, -EINVAL, "replica link address: byte "
				  "0x%02x", (unsigned char)*p);
	return rc;
}

static int beat(struct store *s, const char *name, const char *link,
		int64_t started_ms, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO replicas (name, link, started_ms, seen_ms) "
		"VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET "
		"link = excluded.link, started_ms = excluded.started_ms, "
		"seen_ms = excluded.seen_ms";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_text(st, 2, link);
	db_bind_i64(st, 3, started_ms);
	db_bind_i64(st, 4, db_now_ms());
	return db_run(s, st, "replica beat", err);
}

int store_replica_beat(struct store *s, const char *name, const char *link,
		       int64_t started_ms, struct parley_err *err)
{
	int rc = db_check_name("replica name", name, err);
	if (rc == 0)
		rc = check_link(link, err);
	if (rc < 0)
		return rc;
	/* The event loop calls this every second: it must not wait behind
	 * another writer (an API batch, a checkpoint, another replica). */
	rc = db_op_try_begin(s, err);
	return rc < 0 ? rc
		      : db_op_end(s, beat(s, name, link, started_ms, err), err);
}

static int replica_row(struct store *s, struct db_stmt *st, void *elem,
		       struct parley_err *err)
{
	struct store_replica *r = elem;
	int rc = db_col_name(s, st, 0, r->name, sizeof(r->name), err);
	if (rc < 0)
		return rc;
	const char *link = db_col_str(st, 1);
	if (strlen(link) >= sizeof(r->link))
		return perr(err, -EBADMSG, "replica %s: link address too long",
			    r->name);
	snprintf(r->link, sizeof(r->link), "%s", link);
	r->started_ms = db_col_i64(st, 2);
	r->seen_ms = db_col_i64(st, 3);
	int64_t n = db_col_i64(st, 4);
	r->hosts = n < 0 ? 0 : (uint64_t)n;
	return 0;
}

int store_replica_list(struct store *s, struct store_replica **out,
		       struct parley_err *err)
{
	static const char q[] =
		"SELECT r.name, r.link, r.started_ms, r.seen_ms, "
		"(SELECT COUNT(*) FROM replica_hosts h WHERE h.replica = r.name) "
		"FROM replicas r ORDER BY r.name";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_rd_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0)
		rc = db_rows(s, st, "list replicas", sizeof(**out),
			     replica_row, NULL, (void **)out, err);
	return db_rd_end(s, rc, err);
}

static int hold(struct store *s, const char *host, const char *replica,
		struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO replica_hosts (host, replica, since_ms) "
		"VALUES (?1, ?2, ?3) ON CONFLICT (host) DO UPDATE SET "
		"replica = excluded.replica, since_ms = excluded.since_ms";
	struct db_stmt *st;
	int rc = db_need_host(s, host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_text(st, 2, replica);
	db_bind_i64(st, 3, db_now_ms());
	return db_run(s, st, "hold host", err);
}

static int check_pair(const char *host, const char *replica,
		      struct parley_err *err)
{
	int rc = db_check_name("host name", host, err);
	return rc < 0 ? rc : db_check_name("replica name", replica, err);
}

int store_replica_hold(struct store *s, const char *host, const char *replica,
		       struct parley_err *err)
{
	int rc = check_pair(host, replica, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	return rc < 0 ? rc : db_op_end(s, hold(s, host, replica, err), err);
}

int store_replica_release(struct store *s, const char *host,
			  const char *replica, struct parley_err *err)
{
	/* Only this replica's claim: the agent may already be held by
	 * another, which a late release must not undo. */
	static const char q[] =
		"DELETE FROM replica_hosts WHERE host = ?1 AND replica = ?2";
	struct db_stmt *st;
	int rc = check_pair(host, replica, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, host);
		db_bind_text(st, 2, replica);
		rc = db_run(s, st, "release host", err);
	}
	return db_op_end(s, rc, err);
}

int store_replica_count(struct store *s, const char *replica, uint64_t *n,
			struct parley_err *err)
{
	static const char q[] =
		"SELECT COUNT(*) FROM replica_hosts WHERE replica = ?1";
	struct db_stmt *st;
	int64_t v = 0;
	*n = 0;
	int rc = db_check_name("replica name", replica, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, replica);
	rc = db_int(s, st, "count held hosts", &v, err);
	*n = v < 0 ? 0 : (uint64_t)v;
	return rc;
}

int store_replica_forget(struct store *s, const char *replica,
			 struct parley_err *err)
{
	static const char q[] = "DELETE FROM replica_hosts WHERE replica = ?1";
	struct db_stmt *st;
	int rc = db_check_name("replica name", replica, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_text(st, 1, replica);
		rc = db_run(s, st, "forget replica's hosts", err);
	}
	return db_op_end(s, rc, err);
}

static int reap_list(struct store *s, const char *self, int64_t before_ms,
		     struct store_replica **dead, struct parley_err *err)
{
	static const char q[] =
		"SELECT r.name, r.link, r.started_ms, r.seen_ms, "
		"(SELECT COUNT(*) FROM replica_hosts h WHERE h.replica = r.name) "
		"FROM replicas r WHERE r.seen_ms < ?1 AND r.name <> ?2 "
		"ORDER BY r.name LIMIT 64";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, before_ms);
	db_bind_text(st, 2, self);
	return db_rows(s, st, "dead replicas", sizeof(**dead), replica_row,
		       NULL, (void **)dead, err);
}

static int reap_one(struct store *s, const char *name, struct parley_err *err)
{
	static const char qh[] = "DELETE FROM replica_hosts WHERE replica = ?1";
	static const char qr[] = "DELETE FROM replicas WHERE name = ?1";
	const char *const qs[] = { qh, qr };
	for (int i = 0; i < 2; i++) {
		struct db_stmt *st;
		int rc = db_prep(s, qs[i], &st, err);
		if (rc < 0)
			return rc;
		db_bind_text(st, 1, name);
		if ((rc = db_run(s, st, "reap replica", err)) < 0)
			return rc;
	}
	return 0;
}

int store_replica_reap(struct store *s, const char *self, int64_t before_ms,
		       struct store_replica **dead, struct parley_err *err)
{
	*dead = NULL;
	int rc = db_check_name("replica name", self, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	/* Read and deleted under the write lock: two replicas reaping at
	 * once find the dead one once between them. */
	int n = reap_list(s, self, before_ms, dead, err);
	for (int i = 0; n > 0 && i < n; i++)
		if ((rc = reap_one(s, (*dead)[i].name, err)) < 0)
			n = rc;
	rc = db_op_end(s, n < 0 ? n : 0, err);
	if (rc < 0) {
		free(*dead);
		*dead = NULL;
		return rc;
	}
	return n;
}

int store_replica_holder(struct store *s, const char *host,
			 char replica[STORE_NAME_MAX], int64_t *seen_ms,
			 struct parley_err *err)
{
	static const char q[] =
		"SELECT h.replica, COALESCE(r.seen_ms, 0) FROM replica_hosts h "
		"LEFT JOIN replicas r ON r.name = h.replica WHERE h.host = ?1";
	struct db_stmt *st;
	replica[0] = 0;
	if (seen_ms)
		*seen_ms = 0;
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	rc = db_step(s, st, "find holder", err);
	if (rc == 1) {
		rc = db_col_name(s, st, 0, replica, STORE_NAME_MAX, err);
		if (seen_ms)
			*seen_ms = db_col_i64(st, 1);
	} else if (rc == 0) {
		rc = perr(err, -ENOENT, "host \"%s\": held by no replica",
			  host);
	}
	db_reset(st);
	return rc;
}

/* Command ids from replica_command_seq (migration 13): they only grow,
 * also after every command was deleted -- an agent skips an id at or
 * below the last one it carried out. Taken inside the write lock, so
 * ids are in commit order. */
static int cmd_next_id(struct store *s, int64_t *id, struct parley_err *err)
{
	static const char q[] = "SELECT last FROM replica_command_seq";
	int rc = db_exec(s, "UPDATE replica_command_seq SET last = last + 1",
			 err);
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	return rc < 0 ? rc : db_int(s, st, "command id", id, err);
}

static int cmd_put(struct store *s, const char *host, const char *partition,
		   int action, struct parley_err *err)
{
	static const char q[] =
		"INSERT INTO replica_commands "
		"(id, host, partition, action, created_ms) "
		"VALUES (?1, ?2, ?3, ?4, ?5)";
	struct db_stmt *st;
	int64_t id = 0;
	int rc = db_need_host(s, host, err);
	if (rc == 0)
		rc = cmd_next_id(s, &id, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_i64(st, 1, id);
	db_bind_text(st, 2, host);
	db_bind_text(st, 3, partition);
	db_bind_i64(st, 4, action);
	db_bind_i64(st, 5, db_now_ms());
	rc = db_run(s, st, "store command", err);
	return rc < 0 ? rc : db_note_changed(s, err);
}

int store_replica_cmd_put(struct store *s, const char *host,
			  const char *partition, int action,
			  struct parley_err *err)
{
	bool whole = action == STORE_REPLICA_CMD_CHANGED ||
		     action == STORE_REPLICA_CMD_UPDATE ||
		     action == STORE_REPLICA_CMD_ROLLBACK;
	int rc = db_check_name("host name", host, err);
	if (rc == 0 && whole && partition && partition[0])
		rc = perr(err, -EINVAL, "a CHANGED, UPDATE or ROLLBACK command "
			  "names no partition");
	else if (rc == 0 && !whole)
		rc = db_check_name("partition name", partition, err);
	if (rc == 0 && (action < STORE_REPLICA_CMD_MIN ||
			action > STORE_REPLICA_CMD_ACTION_MAX))
		rc = perr(err, -EINVAL, "command action %d unknown", action);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = cmd_put(s, host, partition ? partition : "", action, err);
	return db_op_end(s, rc, err);
}

static int cmd_row(struct store *s, struct db_stmt *st, void *elem,
		   struct parley_err *err)
{
	struct store_replica_cmd *c = elem;
	c->id = db_col_i64(st, 0);
	int rc = db_col_name(s, st, 1, c->host, sizeof(c->host), err);
	const char *p = db_col_str(st, 2);
	c->partition[0] = 0;
	if (rc == 0 && p[0])
		rc = db_col_name(s, st, 2, c->partition, sizeof(c->partition),
				 err);
	int64_t a = db_col_i64(st, 3);
	if (rc == 0 && (a < STORE_REPLICA_CMD_MIN ||
			a > STORE_REPLICA_CMD_ACTION_MAX))
		rc = perr(err, -EBADMSG, "command %lld: action %lld",
			  (long long)c->id, (long long)a);
	c->action = (int)a;
	return rc;
}

int store_replica_cmd_list(struct store *s, const char *replica,
			   struct store_replica_cmd **out,
			   struct parley_err *err)
{
	/* The poll runs this every few hundred ms on every replica: an
	 * index lookup on replica_hosts and one on replica_commands, and
	 * nothing at all to return almost always. */
	static const char q[] =
		"SELECT c.id, c.host, c.partition, c.action "
		"FROM replica_hosts h JOIN replica_commands c ON c.host = h.host "
		"WHERE h.replica = ?1 ORDER BY c.id LIMIT 1000";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_check_name("replica name", replica, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, replica);
	return db_rows(s, st, "list commands", sizeof(**out), cmd_row, NULL,
		       (void **)out, err);
}

int store_replica_cmd_pending(struct store *s, const char *host,
			      int64_t after, struct store_replica_cmd **out,
			      struct parley_err *err)
{
	static const char q[] =
		"SELECT id, host, partition, action FROM replica_commands "
		"WHERE host = ?1 AND id > ?2 AND action >= 0 "
		"ORDER BY id LIMIT 1000";
	struct db_stmt *st;
	*out = NULL;
	int rc = db_check_name("host name", host, err);
	if (rc == 0)
		rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, after);
	return db_rows(s, st, "pending commands", sizeof(**out), cmd_row, NULL,
		       (void **)out, err);
}

int store_replica_cmd_done(struct store *s, const char *host, int64_t id,
			   struct parley_err *err)
{
	/* The host's own command only: an agent's word about another
	 * host's command (or a made-up id) deletes nothing. */
	static const char q[] =
		"DELETE FROM replica_commands WHERE id = ?1 AND host = ?2";
	struct db_stmt *st;
	int rc = db_check_name("host name", host, err);
	if (rc == 0 && id <= 0)
		rc = perr(err, -EINVAL, "command id %lld", (long long)id);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_i64(st, 1, id);
		db_bind_text(st, 2, host);
		rc = db_run(s, st, "command done", err);
	}
	return db_op_end(s, rc, err);
}

int store_replica_cmd_delete(struct store *s, int64_t id,
			     struct parley_err *err)
{
	static const char q[] = "DELETE FROM replica_commands WHERE id = ?1";
	struct db_stmt *st;
	/* Run from the daemon's poll, like the heartbeat: never waits. */
	int rc = db_op_try_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_prep(s, q, &st, err);
	if (rc == 0) {
		db_bind_i64(st, 1, id);
		rc = db_run(s, st, "delete command", err);
	}
	return db_op_end(s, rc, err);
}
