/*
 * store_watch.h: a callback at each commit of the store's connection
 * (SQLite's commit hook; on PostgreSQL, after each COMMIT returns). It
 * writes nothing and reads nothing; it only forwards "a transaction
 * committed" to the caller, who reads what changed through the store API
 * later, outside the commit.
 */
#include "db/store_watch.h"
#include "db/store_int.h"

int store_watch_commits(struct store *s, void (*cb)(void *ctx), void *ctx)
{
	s->hook = cb;
	s->hook_ctx = cb ? ctx : NULL;
	return 0;
}
