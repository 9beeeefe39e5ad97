/* Pausing a listener out of descriptors (listen_guard.h). */
#include "daemon/listen_guard.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* libevent's error callback has the listener's own argument (evhttp's, for
 * the API), not ours: the guards are found by their listener. */
#define GUARDS_MAX 8
static struct listen_guard *guards[GUARDS_MAX];


static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct listen_guard *g = arg;
	if (!g->capped)
		evconnlistener_enable(g->l);
}

static void on_error(struct evconnlistener *l, void *arg)
{
	(void)arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct listen_guard *g = NULL;
	for (unsigned i = 0; i < GUARDS_MAX && !g; i++)
		if (guards[i] && guards[i]->l == l)
			g = guards[i];
	if (!g || (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM))
		return;
	evconnlistener_disable(l);
	struct timeval tv = { 0, LISTEN_PAUSE_MS * 1000 };
	event_add(g->resume, &tv);
	g->pauses++;
	uint64_t now = mono_now_ms();
	if (g->said_ms && now - g->said_ms < 10000)
		return;
	log_warn("%s: accept: %s: new connections wait in the backlog (%llu "
		 "pause(s) of %d ms so far)", g->what, strerror(e),
		 (unsigned long long)g->pauses, LISTEN_PAUSE_MS);
	g->said_ms = now;
	g->said_at = g->pauses;
}

int listen_guard_init(struct listen_guard *g, struct event_base *base,
		      struct evconnlistener *l, const char *what)
{
	memset(g, 0, sizeof(*g));
	unsigned slot = GUARDS_MAX;
	for (unsigned i = 0; i < GUARDS_MAX && slot == GUARDS_MAX; i++)
		if (!guards[i])
			slot = i;
	g->resume = slot < GUARDS_MAX ? evtimer_new(base, on_resume, g) : NULL;
	if (!g->resume)
		return -ENOMEM;
	g->l = l;
	g->what = what;
	guards[slot] = g;
	evconnlistener_set_error_cb(l, on_error);
	return 0;
}

void listen_guard_free(struct listen_guard *g)
{
	for (unsigned i = 0; i < GUARDS_MAX; i++)
		if (guards[i] == g)
			guards[i] = NULL;
	if (g->l)
		evconnlistener_set_error_cb(g->l, NULL);
	if (g->resume)
		event_free(g->resume);
	memset(g, 0, sizeof(*g));
}

void listen_guard_cap(struct listen_guard *g, unsigned share,
		      const unsigned *open)
{
	struct rlimit rl;
	rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
	if (n == RLIM_INFINITY || n > 1u << 20)
		n = 1u << 20;
	g->cap = (unsigned)n / (share ? share : 1);
	if (g->cap < 16)
		g->cap = 16;
	g->open = open;
}

void listen_guard_opened(struct listen_guard *g)
{
	if (!g->cap || !g->open || *g->open < g->cap || g->capped)
		return;
	g->capped = true;
	g->capped_times++;
	evconnlistener_disable(g->l);
	uint64_t now = mono_now_ms();
	if (g->capped_said_ms && now - g->capped_said_ms < 10000)
		return;
	log_warn("%s: %u connections open, its limit (a share of the "
		 "descriptors): new ones wait in the backlog (%llu time(s) so "
		 "far)", g->what, g->cap, (unsigned long long)g->capped_times);
	g->capped_said_ms = now;
}

void listen_guard_closed(struct listen_guard *g)
{
	if (!g->capped || !g->open || *g->open >= g->cap)
		return;
	g->capped = false;
	/* (a pause for descriptors runs out on its own: on_resume) */
	if (!evtimer_pending(g->resume, NULL))
		evconnlistener_enable(g->l);
}
