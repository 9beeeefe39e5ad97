/*
 * libvirt partitions: the operations behind the API's partition routes,
 * and the cache of libvirt connections (one per URI, opened on first use
 * or at start-up, kept until orch_free; a connection libvirt reports
 * closed is opened again from the loop, and reconciled). See orch.h for
 * the contract.
 */
#include "daemon/orch.h"
#include "daemon/agentvm.h"
#include "common/jsonv.h"
#include "common/log.h"

#include <event2/event.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libvirt's event implementation is process-wide: one orchestrator. */
static bool orch_alive;

/* libvirt prints every error to stderr unless told otherwise; ours go
 * into struct parley_err instead. */
static void lv_quiet(void *ctx, virErrorPtr e)
{
	(void)ctx, (void)e;
}

int orch_lv_err(struct parley_err *err, const char *what, const char *name)
{
	const char *msg = virGetLastErrorMessage();
	return perr(err, ORCH_ELIBVIRT, "%s %s: %s", what, name,
		    msg ? msg : "unknown libvirt error");
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg);
static void open_at_start(struct orch *o);

int orch_init(struct orch **out, struct event_base *base, struct store *s,
	      struct parley_err *err)
{
	*out = NULL;
	if (orch_alive)
		return perr(err, -EBUSY, "an orchestrator exists already "
			    "(libvirt's event loop is process-wide)");
	struct orch *o = calloc(1, sizeof(*o));
	if (!o)
		return perr(err, -ENOMEM, "orchestrator: out of memory");
	int rc = orch_ev_attach(base, err);
	if (rc < 0) {
		free(o);
		return rc;
	}
	virSetErrorFunc(NULL, lv_quiet);
	o->base = base;
	o->store = s;
	o->reconnect = evtimer_new(base, on_reconnect, o);
	if (!o->reconnect) {
		orch_ev_detach();
		free(o);
		return perr(err, -ENOMEM, "orchestrator: out of memory");
	}
	orch_alive = true;
	*out = o;
	open_at_start(o);
	return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque);

static void close_cb_off(struct orch_conn *c)
{
	if (c->close_cb)
		virConnectUnregisterCloseCallback(c->conn, on_close);
	c->close_cb = false;
}

static void conn_close(struct orch_conn *c)
{
	orch_ev_unwatch(c);
	close_cb_off(c);
	if (virConnectClose(c->conn) > 0)
		log_warn("libvirt connection %s still referenced", c->uri);
	free(c->uri);
	free(c);
}

void orch_free(struct orch *o)
{
	if (!o)
		return;
	event_free(o->reconnect);
	while (o->conns) {
		struct orch_conn *c = o->conns;
		o->conns = c->next;
		conn_close(c);
	}
	orch_ev_detach();
	orch_alive = false;
	free(o);
}

static int conn_open(struct orch *o, const char *uri, struct orch_conn **out,
		     struct parley_err *err)
{
	struct orch_conn *c = calloc(1, sizeof(*c));
	if (!c || !(c->uri = strdup(uri))) {
		free(c);
		return perr(err, -ENOMEM, "connection: out of memory");
	}
	c->o = o;
	c->cb_id = -1;
	c->conn = virConnectOpen(uri);
	if (!c->conn) {
		int rc = orch_lv_err(err, "cannot connect to", uri);
		free(c->uri);
		free(c);
		return rc;
	}
	int rc = orch_ev_watch(c, err);
	if (rc < 0) {
		conn_close(c);
		return rc;
	}
	/* Not every driver tells (the test driver never closes): fine. */
	c->close_cb = virConnectRegisterCloseCallback(c->conn, on_close, c,
						      NULL) == 0;
	c->next = o->conns;
	o->conns = c;
	*out = c;
	struct parley_err e = { 0 };
	if (orch_reconcile_conn(c, &e) < 0)
		log_warn("reconciling libvirt %s: %s", uri, perr_msg(&e));
	return 0;
}

/* ---- lost connections ---------------------------------------------------- */

/* libvirt calls this from inside its own event handling: only note it,
 * and let the loop open the connection again. */
static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	(void)conn;
	struct orch_conn *c = opaque;
	if (c->lost)
		return;
	c->lost = true;
	log_warn("libvirt connection %s lost (reason %d); opening it again",
		 c->uri, reason);
	event_active(c->o->reconnect, EV_TIMEOUT, 0);
}

/* A fresh connection in c's place, its events followed again and the
 * store reconciled with it. */
static int reopen(struct orch_conn *c, struct parley_err *err)
{
	virConnectPtr conn = virConnectOpen(c->uri);
	if (!conn)
		return orch_lv_err(err, "cannot connect again to", c->uri);
	orch_ev_unwatch(c);
	close_cb_off(c);
	virConnectClose(c->conn);
	c->conn = conn;
	c->lost = false;
	int rc = orch_ev_watch(c, err);
	if (rc < 0) {
		c->lost = true;       /* no events: try once more later */
		return rc;
	}
	c->close_cb = virConnectRegisterCloseCallback(c->conn, on_close, c,
						      NULL) == 0;
	log_info("libvirt connection %s open again", c->uri);
	struct parley_err e = { 0 };
	if (orch_reconcile_conn(c, &e) < 0)
		log_warn("reconciling libvirt %s: %s", c->uri, perr_msg(&e));
	return 0;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct orch *o = arg;
	bool again = false;
	for (struct orch_conn *c = o->conns; c; c = c->next) {
		struct parley_err err = { 0 };
		if (c->lost && reopen(c, &err) < 0) {
			log_warn("%s; next try in %d s", perr_msg(&err),
				 ORCH_RECONNECT_S);
			again = true;
		}
	}
	struct timeval tv = { .tv_sec = ORCH_RECONNECT_S };
	if (again)
		evtimer_add(o->reconnect, &tv);
}

/* The connection to `host`'s libvirt, opened if need be. */
static int conn_get(struct orch *o, const char *host, struct orch_conn **out,
		    struct parley_err *err)
{
	struct store_host h;
	int rc = store_host_get(o->store, host, &h, err);
	if (rc < 0)
		return rc;
	if (!h.libvirt_uri[0])
		return perr(err, -EINVAL, "host %s has no libvirt URI", host);
	for (struct orch_conn *c = o->conns; c; c = c->next) {
		if (!strcmp(c->uri, h.libvirt_uri)) {
			if (c->lost && (rc = reopen(c, err)) < 0)
				return rc;
			*out = c;
			return 0;
		}
	}
	return conn_open(o, h.libvirt_uri, out, err);
}

/* At start-up: a connection (so a reconciliation) for every host with a
 * libvirt URI and partitions. An unreachable one waits for first use. */
static void open_at_start(struct orch *o)
{
	char after[STORE_NAME_MAX] = "";
	int n;
	do {
		struct store_host *h = NULL;
		struct parley_err err = { 0 };
		n = store_host_list(o->store, after, STORE_LIST_MAX, &h, &err);
		if (n < 0)
			log_warn("libvirt hosts: %s", perr_msg(&err));
		for (int i = 0; i < n; i++) {
			struct store_partition *p = NULL;
			struct orch_conn *c;
			int np = h[i].libvirt_uri[0]
				? store_partition_list(o->store, h[i].name,
						       NULL, 1, &p, NULL) : 0;
			if (np >= 0) /* allocated even when empty */
				store_partition_list_free(p, (unsigned)np);
			if (np > 0 && conn_get(o, h[i].name, &c, &err) < 0)
				log_warn("host %s: %s", h[i].name,
					 perr_msg(&err));
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", h[n - 1].name);
		free(h);
	} while (n == STORE_LIST_MAX);
}

virConnectPtr orch_conn_for_test(struct orch *o, const char *host)
{
	struct orch_conn *c;
	return conn_get(o, host, &c, NULL) < 0 ? NULL : c->conn;
}

int orch_lose_conn_for_test(struct orch *o, const char *host)
{
	struct store_host h;
	if (store_host_get(o->store, host, &h, NULL) < 0)
		return -ENOENT;
	for (struct orch_conn *c = o->conns; c; c = c->next)
		if (!strcmp(c->uri, h.libvirt_uri)) {
			orch_ev_unwatch(c);
			on_close(c->conn, VIR_CONNECT_CLOSE_REASON_EOF, c);
			return 0;
		}
	return -ENOENT;
}

/* ---- define ------------------------------------------------------------- */

/* A name the store holds may be redefined only as the same host's libvirt
 * partition (say, after an outside undefine); libvirt then decides. */
static int check_existing(struct orch *o, const char *host, const char *name,
			  struct parley_err *err)
{
	struct store_partition p;
	int rc = store_partition_get(o->store, name, &p, err);
	if (rc == -ENOENT) {
		if (err)
			*err = (struct parley_err){ 0 };
		return 0;
	}
	if (rc < 0)
		return rc;
	if (p.kind != STORE_PART_LIBVIRT || strcmp(p.host, host))
		rc = perr(err, -EEXIST, "partition %s exists already (%s, on "
			  "host %s)", name, store_part_kind_name(p.kind), p.host);
	store_partition_free(&p);
	return rc;
}

static int store_defined(struct orch *o, const char *host, const char *name,
			 const char *spec_json, const struct orch_spec *s,
			 struct parley_err *err)
{
	const char *names[STORE_FILES_MAX];
	for (unsigned i = 0; i < s->nfile; i++)
		names[i] = s->file[i].name;
	struct store_part_in in = {
		.name = name, .host = host, .kind = STORE_PART_LIBVIRT,
		.spec_json = spec_json, .spec_len = strlen(spec_json),
		.state = ORCH_STATE_DEFINED,
	};
	bool own;
	int rc = store_join_begin(o->store, &own, err);
	if (rc < 0)
		return rc;
	struct store_audit_in ev = {
		.host = host, .event = ORCH_AUDIT_DEFINED, .partition = name,
		.detail = ORCH_STATE_DEFINED,
	};
	rc = store_partition_put(o->store, &in, NULL, err);
	if (rc == 0)
		rc = store_partition_set_files(o->store, name, names,
					       s->nfile, err);
	if (rc == 0)
		rc = store_audit_append(o->store, &ev, 1, NULL, err);
	return store_join_end(o->store, own, rc, err);
}

static int define_xml(struct orch_conn *c, const char *name,
		      const struct orch_spec *s, virDomainPtr *dom,
		      struct parley_err *err)
{
	const char *type = virConnectGetType(c->conn);
	if (!type)
		return orch_lv_err(err, "type of connection", c->uri);
	char *xml;
	int rc = orch_xml_domain(name, s, type, &xml, err);
	if (rc < 0)
		return rc;
	*dom = virDomainDefineXML(c->conn, xml);
	free(xml);
	return *dom ? 0 : orch_lv_err(err, "define", name);
}

static int parse_for(const char *name, const char *spec_json,
		     struct orch_spec *s, struct parley_err *err)
{
	if (!jv_name_valid(name, strlen(name), STORE_NAME_MAX))
		return perr(err, -EINVAL, "not a valid partition name");
	int rc = orch_spec_parse(spec_json, s, err);
	if (rc < 0)
		return perr_prefix(err, "spec of %s: ", name), rc;
	if (s->name[0] && strcmp(s->name, name)) {
		rc = perr(err, -EINVAL, "spec names partition %s, not %s",
			  s->name, name);
		orch_spec_free(s);
	}
	return rc;
}

int orch_define(struct orch *o, const char *host, const char *name,
		const char *spec_json, struct parley_err *err)
{
	struct orch_spec s;
	int rc = parse_for(name, spec_json, &s, err);
	if (rc < 0)
		return rc;
	struct orch_conn *c;
	virDomainPtr dom = NULL;
	rc = check_existing(o, host, name, err);
	if (rc == 0)
		rc = conn_get(o, host, &c, err);
	if (rc == 0)
		rc = define_xml(c, name, &s, &dom, err);
	if (rc == 0)
		rc = store_defined(o, host, name, spec_json, &s, err);
	if (rc < 0 && dom)
		virDomainUndefine(dom);   /* the store refused: take it back */
	if (dom)
		virDomainFree(dom);
	orch_spec_free(&s);
	return rc;
}

/* ---- start, stop, destroy ------------------------------------------------ */

/* The domain of libvirt partition `name` and its connection; *p filled
 * (free it). */
static int part_domain(struct orch *o, const char *name,
		       struct store_partition *p, struct orch_conn **c,
		       virDomainPtr *dom, struct parley_err *err)
{
	*dom = NULL;
	int rc = store_partition_get(o->store, name, p, err);
	if (rc < 0)
		return rc;
	if (p->kind != STORE_PART_LIBVIRT)
		rc = perr(err, -EINVAL, "partition %s is a %s partition, not "
			  "a libvirt one", name, store_part_kind_name(p->kind));
	if (rc == 0)
		rc = conn_get(o, p->host, c, err);
	if (rc == 0 && !(*dom = virDomainLookupByName((*c)->conn, name)))
		rc = orch_lv_err(err, "look up", name);
	if (rc < 0)
		store_partition_free(p);
	return rc;
}

struct step {
	int (*op)(virDomainPtr dom);
	bool want_active;          /* the domain must be running before */
	const char *what, *state, *event;
};

static const struct step start_step = {
	virDomainCreate, false, "start", ORCH_STATE_RUNNING,
	ORCH_AUDIT_STARTED,
};
static const struct step stop_step = {
	virDomainDestroy, true, "stop", ORCH_STATE_STOPPED,
	ORCH_AUDIT_STOPPED,
};

/* A conflict (the domain is where it was asked to go already) is told
 * before libvirt is asked: its own refusal would be a 502. The store,
 * if it disagreed, learns the truth on the way (audited). */
static int lifecycle(struct orch *o, const char *name, const struct step *st,
		     struct parley_err *err)
{
	struct store_partition p;
	struct orch_conn *c;
	virDomainPtr dom;
	int rc = part_domain(o, name, &p, &c, &dom, err);
	if (rc < 0)
		return rc;
	int active = virDomainIsActive(dom);
	if (active < 0) {
		rc = orch_lv_err(err, "state of", name);
	} else if (!!active != st->want_active) {
		struct parley_err e = { 0 };
		if (orch_reconcile_one(c, &p, &e) < 0)
			log_warn("reconcile %s: %s", name, perr_msg(&e));
		rc = perr(err, ORCH_ECONFLICT, "partition %s %s", name,
			  active ? "is running already" : "is not running");
	} else if (st->op(dom) < 0) {
		rc = orch_lv_err(err, st->what, name);
	} else {
		struct store_audit_in ev = {
			.host = p.host, .event = st->event, .partition = name,
			.detail = st->state,
		};
		rc = orch_write(o, name, st->state, 0, &ev, false, err);
	}
	virDomainFree(dom);
	store_partition_free(&p);
	return rc;
}

int orch_start(struct orch *o, const char *name, struct parley_err *err)
{
	return lifecycle(o, name, &start_step, err);
}

int orch_stop(struct orch *o, const char *name, struct parley_err *err)
{
	return lifecycle(o, name, &stop_step, err);
}

static int check_no_grant(struct orch *o, const char *name,
			  struct parley_err *err)
{
	return agentvm_no_grant(o->store, name, err);
}

/* Stop and undefine; a domain libvirt does not have is gone already. */
static int undefine(struct orch *o, const char *name, struct parley_err *err)
{
	struct store_partition p;
	struct orch_conn *c;
	virDomainPtr dom;
	int rc = part_domain(o, name, &p, &c, &dom, err);
	if (rc == ORCH_ELIBVIRT && virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
		*err = (struct parley_err){ 0 };
		return 0;
	}
	if (rc < 0)
		return rc;
	if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
		rc = orch_lv_err(err, "stop", name);
	if (rc == 0 && virDomainUndefineFlags(dom,
			VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
			VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0)
		rc = orch_lv_err(err, "undefine", name);
	virDomainFree(dom);
	store_partition_free(&p);
	return rc;
}

int orch_destroy(struct orch *o, const char *name, struct parley_err *err)
{
	struct parley_err local;
	if (!err)
		err = &local;
	struct store_partition p;
	int rc = store_partition_get(o->store, name, &p, err);
	if (rc < 0)
		return rc;
	struct store_audit_in ev = {
		.host = p.host, .event = ORCH_AUDIT_DESTROYED,
		.partition = name, .detail = p.state,
	};
	rc = check_no_grant(o, name, err);
	if (rc == 0)
		rc = undefine(o, name, err);
	if (rc == 0)
		rc = orch_write(o, name, NULL, 0, &ev, true, err);
	store_partition_free(&p);
	return rc;
}
