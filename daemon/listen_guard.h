/*
 * A listener that runs out of descriptors (EMFILE, ENFILE, or the kernel's
 * ENOBUFS/ENOMEM). libevent's accept loop meets the error again at once,
 * every turn, for as long as the connections holding the descriptors stay:
 * a busy loop, and a log line per try (1.2 million lines in 6 s, the API
 * not answering, with 120 idle connections past the limit). Guarded, the
 * listener pauses for LISTEN_PAUSE_MS instead -- the waiting connections
 * stay in the kernel's backlog -- and says so at most every 10 s, with the
 * number of pauses. Other accept errors (a connection reset before it was
 * taken) are not the listener's trouble and are passed over.
 */
#ifndef PARLEY_DAEMON_LISTEN_GUARD_H
#define PARLEY_DAEMON_LISTEN_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#define LISTEN_PAUSE_MS 100

struct event;
struct event_base;
struct evconnlistener;

struct listen_guard {
	struct evconnlistener *l;
	struct event *resume;
	const char *what;          /* "api", "agent link", "join" */
	uint64_t pauses;           /* in all */
	uint64_t said_at;          /* pauses when last logged */
	uint64_t said_ms;          /* when */
	unsigned cap;              /* connections at once (listen_guard_cap) */
	const unsigned *open;      /* the owner's count of them */
	bool capped;               /* not accepting: at the cap */
	uint64_t capped_times;     /* in all */
	uint64_t capped_said_ms;
};

/* Guard l (not owned; free the guard before it). 0, or -ENOMEM. */
int listen_guard_init(struct listen_guard *g, struct event_base *base,
		      struct evconnlistener *l, const char *what);
void listen_guard_free(struct listen_guard *g);

/* Connections at once a listener keeps: 1/share of the descriptors
 * (RLIMIT_NOFILE), at least 16, so that a flood at one door leaves the
 * others -- and the store's files -- theirs. `open` is the owner's count,
 * told of each change below. */
void listen_guard_cap(struct listen_guard *g, unsigned share,
		      const unsigned *open);

/* A connection was added to the count: at the cap the listener stops
 * accepting (new ones wait in the kernel's backlog), said at most every
 * 10 s. */
void listen_guard_opened(struct listen_guard *g);

/* One went: below the cap it accepts again. */
void listen_guard_closed(struct listen_guard *g);

#endif
