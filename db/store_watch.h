/*
 * Being told that this process committed a write, so that a reader on the
 * daemon's loop (the API's event stream) can look for new audit rows at
 * once instead of polling. Only commits through this store handle are
 * seen; rows another process writes show at this handle's next commit
 * (or whenever the reader looks for itself).
 */
#ifndef PARLEY_DB_STORE_WATCH_H
#define PARLEY_DB_STORE_WATCH_H

#include "db/store.h"

/* cb(ctx) runs inside each commit of s (a batch's, or a lone write's),
 * before it is durable: it must not call the store, only note that it
 * should look later (e.g. event_active). A rolled-back transaction may
 * have called it too, so the later look must find out what is there.
 * One watcher per store (a new one replaces it); cb NULL removes it, and
 * store_close does not: remove it first. 0 or -ENOMEM. */
int store_watch_commits(struct store *s, void (*cb)(void *ctx), void *ctx);

#endif
