/*
 * store_watch.h: SQLite's commit hook on the store's connection. It writes
 * nothing and reads nothing; it only forwards "a transaction is
 * committing" to the caller, who reads what changed through the store API
 * later, outside the commit.
 */
#include "db/store_watch.h"
#include "db/store_int.h"

#include <errno.h>
#include <stdlib.h>

struct watch {
	void (*cb)(void *ctx);
	void *ctx;
};

static int on_commit(void *arg)
{
	struct watch *w = arg;
	w->cb(w->ctx);
	return 0; /* never veto the commit */
}

int store_watch_commits(struct store *s, void (*cb)(void *ctx), void *ctx)
{
	struct watch *w = NULL;
	if (cb) {
		w = malloc(sizeof(*w));
		if (!w)
			return -ENOMEM;
		*w = (struct watch){ cb, ctx };
	}
	/* The hook is only ever set here, so the previous argument is a
	 * watch of ours (or NULL). */
	free(sqlite3_commit_hook(s->db, w ? on_commit : NULL, w));
	return 0;
}
