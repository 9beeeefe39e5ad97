/*
 * libvirt partitions: the operations behind the API's partition routes,
 * and the cache of libvirt connections (one per URI, opened on first use,
 * kept until orch_free). See orch.h for the contract.
 */
#include "daemon/orch.h"
#include "common/jsonv.h"
#include "common/log.h"

#include <libvirt/virterror.h>
#include <stdbool.h>
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
	orch_alive = true;
	*out = o;
	return 0;
}

static void conn_close(struct orch_conn *c)
{
	orch_ev_unwatch(c);
	if (virConnectClose(c->conn) > 0)
		log_warn("libvirt connection %s still referenced", c->uri);
	free(c->uri);
	free(c);
}

void orch_free(struct orch *o)
{
	if (!o)
		return;
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
	c->next = o->conns;
	o->conns = c;
	*out = c;
	return 0;
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
			*out = c;
			return 0;
		}
	}
	return conn_open(o, h.libvirt_uri, out, err);
}

virConnectPtr orch_conn_for_test(struct orch *o, const char *host)
{
	struct orch_conn *c;
	return conn_get(o, host, &c, NULL) < 0 ? NULL : c->conn;
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
	/* Inside the API's batch (one per change, with its audit event)
	 * the row joins that; the API commits or rolls back. */
	bool own = !store_in_batch(o->store);
	int rc = own ? store_begin(o->store, err) : 0;
	if (rc < 0)
		return rc;
	rc = store_partition_put(o->store, &in, NULL, err);
	if (rc == 0)
		rc = store_partition_set_files(o->store, name, names,
					       s->nfile, err);
	if (!own)
		return rc;
	if (rc == 0)
		return store_commit(o->store, err);
	store_rollback(o->store, NULL);
	return rc;
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

/* The domain of libvirt partition `name`; *p filled (free it). */
static int part_domain(struct orch *o, const char *name,
		       struct store_partition *p, virDomainPtr *dom,
		       struct parley_err *err)
{
	*dom = NULL;
	int rc = store_partition_get(o->store, name, p, err);
	if (rc < 0)
		return rc;
	struct orch_conn *c;
	if (p->kind != STORE_PART_LIBVIRT)
		rc = perr(err, -EINVAL, "partition %s is a %s partition, not "
			  "a libvirt one", name, store_part_kind_name(p->kind));
	if (rc == 0)
		rc = conn_get(o, p->host, &c, err);
	if (rc == 0 && !(*dom = virDomainLookupByName(c->conn, name)))
		rc = orch_lv_err(err, "look up", name);
	if (rc < 0)
		store_partition_free(p);
	return rc;
}

typedef int (*dom_op)(virDomainPtr dom);

static int lifecycle(struct orch *o, const char *name, dom_op op,
		     const char *what, const char *state,
		     struct parley_err *err)
{
	struct store_partition p;
	virDomainPtr dom;
	int rc = part_domain(o, name, &p, &dom, err);
	if (rc < 0)
		return rc;
	if (op(dom) < 0)
		rc = orch_lv_err(err, what, name);
	else
		rc = store_partition_set_state(o->store, name, state, 0, NULL,
					       err);
	virDomainFree(dom);
	store_partition_free(&p);
	return rc;
}

int orch_start(struct orch *o, const char *name, struct parley_err *err)
{
	return lifecycle(o, name, virDomainCreate, "start", ORCH_STATE_RUNNING,
			 err);
}

int orch_stop(struct orch *o, const char *name, struct parley_err *err)
{
	return lifecycle(o, name, virDomainDestroy, "stop", ORCH_STATE_STOPPED,
			 err);
}

static int check_no_grant(struct orch *o, const char *name,
			  struct parley_err *err)
{
	struct grant_set gs;
	int rc = store_grant_list(o->store, &gs, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < gs.n && rc == 0; i++)
		if (!strcmp(gs.g[i].a, name) || !strcmp(gs.g[i].b, name))
			rc = perr(err, -EBUSY, "partition %s: grant %s names "
				  "it", name, gs.g[i].channel);
	grant_set_free(&gs);
	return rc;
}

/* Stop and undefine; a domain libvirt does not have is gone already. */
static int undefine(struct orch *o, const char *name, struct parley_err *err)
{
	struct store_partition p;
	virDomainPtr dom;
	int rc = part_domain(o, name, &p, &dom, err);
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
	int rc = check_no_grant(o, name, err);
	if (rc == 0)
		rc = undefine(o, name, err);
	if (rc == 0)
		rc = store_partition_delete(o->store, name, err);
	return rc;
}
