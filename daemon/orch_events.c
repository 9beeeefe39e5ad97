/*
 * libvirt's event loop on the daemon's libevent base, and what the domain
 * lifecycle events do to the store.
 *
 * libvirt asks for file-descriptor watches and timers through the six
 * callbacks of virEventRegisterImpl; each becomes one libevent event. The
 * registration is process-wide and cannot be undone, so the table below
 * is too; its base is the one the living orchestrator gave.
 *
 * A removed watch's free callback (ff) must not run inside the remove call
 * (libvirt may hold a lock there): removed entries wait on a list that a
 * zero-timeout "reaper" event empties on the next loop iteration, or
 * orch_ev_detach at the latest.
 *
 * Threads: the daemon calls libvirt only from the loop's thread, so
 * libvirt calls these from that thread too; nothing here locks.
 */
#include "daemon/orch.h"
#include "daemon/agentvm.h"
#include "common/log.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ev_entry {
	struct ev_entry *next;
	int id;
	bool timer;
	struct event *ev;
	int fd;                           /* watches */
	virEventHandleCallback hcb;
	virEventTimeoutCallback tcb;      /* timers */
	void *opaque;
	virFreeCallback ff;
};

static struct {
	bool registered;
	struct event_base *base;
	struct event *reaper;
	struct ev_entry *live, *dead;
	int next_id;
} evs;

static struct ev_entry *entry_find(int id)
{
	for (struct ev_entry *e = evs.live; e; e = e->next)
		if (e->id == id)
			return e;
	return NULL;
}

static void reap(void)
{
	while (evs.dead) {
		struct ev_entry *e = evs.dead;
		evs.dead = e->next;
		if (e->ff)
			e->ff(e->opaque);     /* may remove more: they queue */
		free(e);
	}
}

static void on_reaper(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	reap();
}

static int entry_remove(int id)
{
	struct ev_entry **pp = &evs.live;
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	struct ev_entry *e = *pp;
	if (!e)
		return -1;
	*pp = e->next;
	event_free(e->ev);
	e->ev = NULL;
	e->next = evs.dead;
	evs.dead = e;
	if (evs.reaper)
		event_active(evs.reaper, EV_TIMEOUT, 0);
	return 0;
}

static struct ev_entry *entry_new(bool timer, void *opaque, virFreeCallback ff)
{
	if (!evs.base)
		return NULL;
	struct ev_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->timer = timer;
	e->opaque = opaque;
	e->ff = ff;
	e->id = ++evs.next_id;
	return e;
}

static void entry_link(struct ev_entry *e)
{
	e->next = evs.live;
	evs.live = e;
}

/* ---- watches ---------------------------------------------------------- */

static short to_libevent(int vir)
{
	short what = 0;
	if (vir & VIR_EVENT_HANDLE_READABLE)
		what |= EV_READ;
	if (vir & VIR_EVENT_HANDLE_WRITABLE)
		what |= EV_WRITE;
	return what;
}

static void on_handle(evutil_socket_t fd, short what, void *arg)
{
	struct ev_entry *e = arg;
	int vir = 0;
	if (what & EV_READ)
		vir |= VIR_EVENT_HANDLE_READABLE;
	if (what & EV_WRITE)
		vir |= VIR_EVENT_HANDLE_WRITABLE;
	e->hcb(e->id, fd, vir, e->opaque);    /* may remove e: not used after */
}

static void handle_arm(struct ev_entry *e, int vir)
{
	short what = to_libevent(vir);
	event_del(e->ev);
	event_assign(e->ev, evs.base, e->fd, what | EV_PERSIST, on_handle, e);
	if (what)
		event_add(e->ev, NULL);
}

static int add_handle(int fd, int vir, virEventHandleCallback cb,
		      void *opaque, virFreeCallback ff)
{
	struct ev_entry *e = entry_new(false, opaque, ff);
	if (!e)
		return -1;
	e->fd = fd;
	e->hcb = cb;
	e->ev = event_new(evs.base, fd, EV_PERSIST, on_handle, e);
	if (!e->ev) {
		free(e);
		return -1;
	}
	entry_link(e);
	handle_arm(e, vir);
	return e->id;
}

static void update_handle(int id, int vir)
{
	struct ev_entry *e = entry_find(id);
	if (e && !e->timer)
		handle_arm(e, vir);
}

static int remove_handle(int id)
{
	struct ev_entry *e = entry_find(id);
	return e && !e->timer ? entry_remove(id) : -1;
}

/* ---- timers ----------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct ev_entry *e = arg;
	e->tcb(e->id, e->opaque);
}

/* ms < 0: disabled; 0: on every loop iteration; else every ms. */
static void timer_arm(struct ev_entry *e, int ms)
{
	event_del(e->ev);
	if (ms < 0)
		return;
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };
	event_add(e->ev, &tv);
}

static int add_timeout(int ms, virEventTimeoutCallback cb, void *opaque,
		       virFreeCallback ff)
{
	struct ev_entry *e = entry_new(true, opaque, ff);
	if (!e)
		return -1;
	e->tcb = cb;
	e->ev = event_new(evs.base, -1, EV_PERSIST, on_timer, e);
	if (!e->ev) {
		free(e);
		return -1;
	}
	entry_link(e);
	timer_arm(e, ms);
	return e->id;
}

static void update_timeout(int id, int ms)
{
	struct ev_entry *e = entry_find(id);
	if (e && e->timer)
		timer_arm(e, ms);
}

static int remove_timeout(int id)
{
	struct ev_entry *e = entry_find(id);
	return e && e->timer ? entry_remove(id) : -1;
}

/* ---- attaching to a base ------------------------------------------------ */

int orch_ev_attach(struct event_base *base, struct parley_err *err)
{
	if (evs.live && evs.base != base)
		return perr(err, -EBUSY, "libvirt still has %s on another "
			    "event loop", "watches or timers");
	evs.reaper = event_new(base, -1, 0, on_reaper, NULL);
	if (!evs.reaper)
		return perr(err, -ENOMEM, "libvirt events: out of memory");
	evs.base = base;
	if (!evs.registered) {
		virEventRegisterImpl(add_handle, update_handle, remove_handle,
				     add_timeout, update_timeout,
				     remove_timeout);
		evs.registered = true;
	}
	return 0;
}

void orch_ev_detach(void)
{
	reap();
	event_free(evs.reaper);
	evs.reaper = NULL;
	if (evs.live)
		log_warn("libvirt keeps watches or timers after its last "
			 "connection closed");
	else
		evs.base = NULL;
}

/* ---- lifecycle events into the store ------------------------------------ */

static const char *const event_names[] = {
	[VIR_DOMAIN_EVENT_DEFINED] = "defined",
	[VIR_DOMAIN_EVENT_UNDEFINED] = "undefined",
	[VIR_DOMAIN_EVENT_STARTED] = "started",
	[VIR_DOMAIN_EVENT_SUSPENDED] = "suspended",
	[VIR_DOMAIN_EVENT_RESUMED] = "resumed",
	[VIR_DOMAIN_EVENT_STOPPED] = "stopped",
	[VIR_DOMAIN_EVENT_SHUTDOWN] = "shutdown",
	[VIR_DOMAIN_EVENT_PMSUSPENDED] = "pmsuspended",
	[VIR_DOMAIN_EVENT_CRASHED] = "crashed",
};

static const char *const stopped_details[] = {
	[VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN] = "shutdown",
	[VIR_DOMAIN_EVENT_STOPPED_DESTROYED] = "destroyed",
	[VIR_DOMAIN_EVENT_STOPPED_CRASHED] = "crashed",
	[VIR_DOMAIN_EVENT_STOPPED_MIGRATED] = "migrated",
	[VIR_DOMAIN_EVENT_STOPPED_SAVED] = "saved",
	[VIR_DOMAIN_EVENT_STOPPED_FAILED] = "failed",
	[VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT] = "from_snapshot",
};

static const char *const started_details[] = {
	[VIR_DOMAIN_EVENT_STARTED_BOOTED] = "booted",
	[VIR_DOMAIN_EVENT_STARTED_MIGRATED] = "migrated",
	[VIR_DOMAIN_EVENT_STARTED_RESTORED] = "restored",
	[VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT] = "from_snapshot",
	[VIR_DOMAIN_EVENT_STARTED_WAKEUP] = "wakeup",
};

static const char *const suspended_details[] = {
	[VIR_DOMAIN_EVENT_SUSPENDED_PAUSED] = "paused",
	[VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED] = "migrated",
	[VIR_DOMAIN_EVENT_SUSPENDED_IOERROR] = "ioerror",
	[VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG] = "watchdog",
	[VIR_DOMAIN_EVENT_SUSPENDED_RESTORED] = "restored",
	[VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT] = "from_snapshot",
	[VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR] = "api_error",
};

#define NAME_OF(tab, i)                                                  \
	((i) >= 0 && (size_t)(i) < sizeof(tab) / sizeof((tab)[0]) &&     \
	 (tab)[i] ? (tab)[i] : NULL)

/* "stopped (destroyed)", or with the number when the name is unknown. */
static void describe(int event, int detail, char *out, size_t cap)
{
	const char *ev = NAME_OF(event_names, event), *d = NULL;
	if (event == VIR_DOMAIN_EVENT_STOPPED)
		d = NAME_OF(stopped_details, detail);
	else if (event == VIR_DOMAIN_EVENT_STARTED)
		d = NAME_OF(started_details, detail);
	else if (event == VIR_DOMAIN_EVENT_SUSPENDED)
		d = NAME_OF(suspended_details, detail);
	char evn[16], dn[16];
	snprintf(evn, sizeof(evn), "event%d", event);
	snprintf(dn, sizeof(dn), "detail%d", detail);
	snprintf(out, cap, "%s (%s)", ev ? ev : evn, d ? d : dn);
}

/* The state an event puts the partition in; NULL: unchanged. */
static const char *state_after(int event, const char *now)
{
	switch (event) {
	case VIR_DOMAIN_EVENT_STARTED:
	case VIR_DOMAIN_EVENT_RESUMED:
		return ORCH_STATE_RUNNING;
	case VIR_DOMAIN_EVENT_SUSPENDED:
	case VIR_DOMAIN_EVENT_PMSUSPENDED:
		return ORCH_STATE_PAUSED;
	case VIR_DOMAIN_EVENT_STOPPED:
		return ORCH_STATE_STOPPED;
	case VIR_DOMAIN_EVENT_CRASHED:
		return ORCH_STATE_CRASHED;
	case VIR_DOMAIN_EVENT_UNDEFINED:
		return ORCH_STATE_UNDEFINED;
	case VIR_DOMAIN_EVENT_DEFINED:    /* back after an outside undefine */
		return strcmp(now, ORCH_STATE_UNDEFINED) ? NULL
							 : ORCH_STATE_DEFINED;
	default:
		return NULL;
	}
}

/* Is `p` a libvirt partition whose host uses c's URI? */
static bool ours(struct orch_conn *c, const struct store_partition *p)
{
	struct store_host h;
	if (p->kind != STORE_PART_LIBVIRT || agentvm_part(p) ||
	    store_host_get(c->o->store, p->host, &h, NULL) < 0)
		return false;
	return !strcmp(h.libvirt_uri, c->uri);
}

/* The event's audit row and the state it implies, in one transaction. */
static void record(struct orch_conn *c, const struct store_partition *p,
		   int event, int detail)
{
	struct parley_err err = { 0 };
	const char *state = state_after(event, p->state);
	if (state && !strcmp(state, p->state))
		state = NULL;
	char detail_s[64];
	describe(event, detail, detail_s, sizeof(detail_s));
	struct store_audit_in ev = {
		.host = p->host, .event = ORCH_AUDIT_EVENT,
		.partition = p->name, .detail = detail_s,
	};
	int rc = orch_write(c->o, p->name, state, p->version, &ev, false, &err);
	if (rc == -ESTALE) /* another writer moved it: the event still counts */
		rc = orch_write(c->o, p->name, NULL, 0, &ev, false, &err);
	if (rc < 0)
		log_warn("libvirt event for %s: %s", p->name, perr_msg(&err));
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event,
			int detail, void *opaque)
{
	(void)conn;
	struct orch_conn *c = opaque;
	const char *name = virDomainGetName(dom);
	struct store_partition p;
	if (!name || store_partition_get(c->o->store, name, &p, NULL) < 0)
		return 0;                  /* not ours, or destroyed by us */
	if (ours(c, &p))
		record(c, &p, event, detail);
	store_partition_free(&p);
	return 0;
}

int orch_ev_watch(struct orch_conn *c, struct parley_err *err)
{
	c->cb_id = virConnectDomainEventRegisterAny(c->conn, NULL,
		VIR_DOMAIN_EVENT_ID_LIFECYCLE,
		VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), c, NULL);
	if (c->cb_id < 0)
		return orch_lv_err(err, "lifecycle events of", c->uri);
	return 0;
}

void orch_ev_unwatch(struct orch_conn *c)
{
	if (c->cb_id >= 0)
		virConnectDomainEventDeregisterAny(c->conn, c->cb_id);
	c->cb_id = -1;
}
