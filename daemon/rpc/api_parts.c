/*
 * API routes: partitions. Thin partitions live in the store and reach
 * their host's agent as PartitionCommands (hooks.thin_*, sent after the
 * change committed); libvirt ones go through the orchestration hooks
 * (501 until main.c provides them), inside the change's transaction --
 * except a libvirt one whose spec says "kind": "vm" (daemon/agentvm.h):
 * its host's agent runs it, so it goes the thin way, and its DELETE asks
 * the agent first (202, "destroy-requested"; the row goes with the
 * agent's "destroyed").
 */
#include "daemon/rpc/api_int.h"
#include "daemon/rpc/api_json.h"
#include "daemon/policy/diskkeys.h"
#include "daemon/agentvm.h"
#include "common/jsonv.h"
#include "db/store.h"
#include "parley.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* libvirt's own refusals (ORCH_ELIBVIRT) are 502 with libvirt's message;
 * a partition already in the state asked for (ORCH_ECONFLICT, and the
 * same for thin ones) is 409; the rest (no such host, bad spec, busy) map
 * as store errors do. */
static int libvirt_rc(int rc)
{
	return rc == -EREMOTEIO ? -EPROTO : rc;
}

/* The answers every partition route shares. */
static void part_fail(struct api_req *q, int rc, const struct parley_err *err)
{
	if (rc == -ENOSYS)
		api_error(q, 501, "NOT_IMPLEMENTED", "libvirt partitions are "
			  "not available in this parleyd");
	else if (rc == -EPROTO)
		api_error(q, 502, "LIBVIRT", "%s", perr_msg(err));
	else if (rc == -EALREADY)
		api_error(q, 409, "CONFLICT", "%s", perr_msg(err));
	else
		api_fail(q, rc, err);
}

/* The fields of a partition spec (agent/spec.h); the agent checks the
 * values again when it creates the partition. */
static const char *const spec_fields[] = {
	"name", "image", "memory", "vcpus", "config", "cmdline", "disks",
	NULL
};
/* An agent VM's (agent/vm/vmspec.h); its paths are checked by the agent,
 * beneath its --image-dir and --config-dir only. */
static const char *const vm_fields[] = {
	"kind", "name", "kernel", "initramfs", "memory", "vcpus", "config",
	"cmdline", "accel", NULL
};

/* Its devices' latest states as its agent reported them, from the
 * store's "device plugin state" lines: {"device","plugin","state"} each.
 * A line that is not three fields (edited behind parleyd's back) is
 * left out. */
static void devices_write(struct api_jbuf *b, const char *text)
{
	bool first = true;
	for (const char *l = text ? text : ""; *l;) {
		const char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);
		char line[3 * STORE_NAME_MAX + 4], f[3][STORE_NAME_MAX];
		snprintf(line, sizeof(line), "%.*s", (int)n, l);
		char extra;
		if (n < sizeof(line) &&
		    sscanf(line, "%63s %63s %63s %c", f[0], f[1], f[2],
			   &extra) == 3) {
			api_jb_lit(b, first ? "{\"device\":"
					    : ",{\"device\":");
			api_jb_str(b, f[0]);
			api_jb_lit(b, ",\"plugin\":");
			api_jb_str(b, f[1]);
			api_jb_lit(b, ",\"state\":");
			api_jb_str(b, f[2]);
			api_jb_lit(b, "}");
			first = false;
		}
		l += n + (e != NULL);
	}
}

/* A partition as JSON, written straight into b (api_json.h): this is most
 * of what GET /v1/partitions does, so no jansson tree is built. The keys
 * and their order are those of the tree this replaced. A spec the store
 * holds that is not one JSON object (a file edited behind parleyd's back)
 * is shown as {}. vmm_backend: what runs a thin partition in its vmm, as
 * its agent last reported; null until then (and for libvirt ones). */
static void part_write(struct api_jbuf *b, const struct store_partition *p)
{
	api_jb_lit(b, "{\"name\":");
	api_jb_str(b, p->name);
	api_jb_lit(b, ",\"host\":");
	api_jb_str(b, p->host);
	api_jb_lit(b, ",\"backend\":");
	api_jb_str(b, store_part_kind_name(p->kind));
	api_jb_lit(b, ",\"state\":");
	api_jb_str(b, p->state);
	api_jb_lit(b, ",\"vmm_backend\":");
	api_jb_str_or_null(b, p->vmm_backend);
	api_jb_lit(b, ",\"devices\":[");
	devices_write(b, p->devices);
	api_jb_lit(b, "],\"spec\":");
	if (!p->spec_json || !api_jb_object(b, p->spec_json, p->spec_len))
		api_jb_lit(b, "{}");
	api_jb_lit(b, "}");
}

void api_parts_list(struct api_req *q)
{
	unsigned limit;
	const char *after = api_query(q, "after"), *host = api_query(q, "host");
	if (!api_limit(q, &limit) ||
	    (after && !api_name_ok(q, "after", after)) ||
	    (host && !api_name_ok(q, "host", host)))
		return;
	struct store_partition *p = NULL;
	struct parley_err err = { 0 };
	int n = store_partition_list(q->a->store, host, after, limit, &p, &err);
	if (n < 0) {
		api_fail(q, n, &err);
		return;
	}
	struct api_jbuf b = { 0 };
	api_jb_lit(&b, "{\"items\":[");
	for (int i = 0; i < n; i++) {
		if (i)
			api_jb_lit(&b, ",");
		part_write(&b, &p[i]);
	}
	api_jb_lit(&b, "],\"next\":");
	api_jb_str_or_null(&b, (unsigned)n == limit ? p[n - 1].name : NULL);
	api_jb_lit(&b, "}");
	api_reply_jbuf(q, 200, &b);
	store_partition_list_free(p, (unsigned)n); /* allocated even when 0 */
}

/* Answer with the partition as it is now in the store. */
static void reply_part(struct api_req *q, int status, const char *name)
{
	struct store_partition p = { 0 };
	struct parley_err err = { 0 };
	int rc = store_partition_get(q->a->store, name, &p, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
	} else {
		struct api_jbuf b = { 0 };
		part_write(&b, &p);
		api_reply_jbuf(q, status, &b);
	}
	store_partition_free(&p);
}

void api_parts_get(struct api_req *q)
{
	if (api_name_ok(q, "partition name", q->arg))
		reply_part(q, 200, q->arg);
}

/* The body's fields, checked; false after answering 400. */
static bool part_args(struct api_req *q, json_t *b, const char **host,
		      enum store_part_kind *kind, json_t **spec,
		      const char **name)
{
	json_t *jb = json_object_get(b, "backend");
	const char *backend = json_string_value(jb);
	struct parley_err err = { 0 };
	*host = json_string_value(json_object_get(b, "host"));
	*spec = json_object_get(b, "spec");
	if (!backend || (strcmp(backend, "thin") && strcmp(backend, "libvirt"))) {
		api_error(q, 400, "BAD_REQUEST", "backend: expected \"thin\" "
			  "or \"libvirt\"");
		return false;
	}
	*kind = !strcmp(backend, "thin") ? STORE_PART_THIN : STORE_PART_LIBVIRT;
	if (!api_name_ok(q, "host", *host))
		return false;
	if (!json_is_object(*spec)) {
		api_error(q, 400, "BAD_REQUEST", "spec: expected an object, "
			  "got %s", *spec ? jv_type_name(*spec) : "nothing");
		return false;
	}
	json_t *jk = json_object_get(*spec, "kind");
	const char *kind_s = json_string_value(jk);
	if (jk && (!kind_s || strcmp(kind_s, "vm") ||
		   *kind != STORE_PART_LIBVIRT)) {
		api_error(q, 400, "BAD_REQUEST", "spec.kind: only \"vm\" (a "
			  "Linux VM its host's agent runs), with backend "
			  "\"libvirt\"");
		return false;
	}
	if (jv_check_known(*spec, jk ? vm_fields : spec_fields, "spec: ",
			   &err) < 0) {
		api_error(q, 400, "BAD_REQUEST", "%s", perr_msg(&err));
		return false;
	}
	*name = json_string_value(json_object_get(*spec, "name"));
	if (!api_name_ok(q, "spec.name", *name))
		return false;
	/* A VM's name is its domain's and a file's on its host: shorter
	 * (agent/vm/vmhost.h, struct vm_spec). */
	if (jk && strlen(*name) >= AGENTVM_NAME_MAX) {
		api_error(q, 400, "BAD_REQUEST", "spec.name: a VM's name is at "
			  "most %d characters", AGENTVM_NAME_MAX - 1);
		return false;
	}
	return true;
}

static int part_define(struct api_server *a, const char *host,
		       const char *name, enum store_part_kind kind,
		       const char *spec, struct parley_err *err)
{
	struct store_partition p = { 0 };
	if (store_partition_get(a->store, name, &p, NULL) == 0) {
		store_partition_free(&p);
		return perr(err, -EEXIST, "partition \"%s\" exists", name);
	}
	bool vm = kind == STORE_PART_LIBVIRT &&
		  agentvm_spec(spec, strlen(spec));
	if (kind == STORE_PART_LIBVIRT && !vm)
		/* The orchestrator stores the row with the domain, and
		 * neither without the other. */
		return libvirt_rc(a->hooks.orch_define(a->hooks.ctx, host, name,
						       spec, err));
	struct store_part_in in = { .name = name, .host = host, .kind = kind,
				    .spec_json = spec, .spec_len = strlen(spec),
				    .state = "defined" };
	int rc = store_partition_put(a->store, &in, NULL, err);
	/* Its encrypted disks' keys, made with the row (same transaction). */
	if (rc == 0 && !vm)
		rc = diskkeys_define(a->store, a->keys, host, name, spec, err);
	return rc;
}

void api_parts_add(struct api_req *q)
{
	static const char *const known[] = { "host", "backend", "spec", NULL };
	json_t *b = api_body(q, known), *spec;
	const char *host, *name;
	enum store_part_kind kind;
	if (!b || !part_args(q, b, &host, &kind, &spec, &name)) {
		json_decref(b);
		return;
	}
	struct api_hooks *h = &q->a->hooks;
	api_subject(q, host, name, NULL);
	char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
	struct parley_err err = { 0 };
	bool vm = kind == STORE_PART_LIBVIRT &&
		  agentvm_spec(text, strlen(text));
	int rc = kind == STORE_PART_LIBVIRT && !vm && !h->orch_define
		? -ENOSYS : part_define(q->a, host, name, kind, text, &err);
	if (rc < 0)
		part_fail(q, rc, &err);
	else
		reply_part(q, 201, name);
	/* Its agent creates a thin one or a VM, or measures a libvirt
	 * one's key configuration files -- once the row is committed. */
	if (rc == 0)
		api_after_changed(q, host);
	free(text);
	json_decref(b);
}

typedef int (*orch_fn)(void *ctx, const char *name, struct parley_err *err);

/* A thin partition already where the step would take it: `busy` names the
 * two states (reported and requested) that conflict. */
static int thin_conflict(const struct store_partition *p,
			 const char *const busy[2], struct parley_err *err)
{
	for (int i = 0; i < 2; i++)
		if (!strcmp(p->state, busy[i]))
			return perr(err, -EALREADY, "partition %s is %s "
				    "already", p->name, p->state);
	return 0;
}

/* One lifecycle step: libvirt through its hook, thin as a command to the
 * agent; the store's state says what was asked for until the agent or
 * libvirt reports what happened. */
static void part_action(struct api_req *q, int action, orch_fn fn,
			const char *state, const char *const busy[2])
{
	struct store_partition p = { 0 };
	struct parley_err err = { 0 };
	struct api_hooks *h = &q->a->hooks;
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	int rc = store_partition_get(q->a->store, q->arg, &p, &err);
	/* An agent's VM is commanded as a thin partition is. */
	bool libvirt = rc == 0 && p.kind == STORE_PART_LIBVIRT &&
		       !agentvm_part(&p);
	if (rc == 0)
		api_subject(q, p.host, p.name, NULL);
	if (rc == 0 && !strcmp(p.state, AGENTVM_DESTROY_REQUESTED))
		rc = perr(&err, -EALREADY, "partition %s is being destroyed",
			  p.name);
	else if (libvirt) /* the orchestrator records what libvirt reports */
		rc = !fn ? -ENOSYS : libvirt_rc(fn(h->ctx, p.name, &err));
	else if (rc == 0)
		rc = thin_conflict(&p, busy, &err);
	if (rc == 0 && !libvirt)
		rc = store_partition_set_state(q->a->store, p.name, state, 0,
					       NULL, &err);
	/* Stored with the change: sent until its agent confirms it, through
	 * whichever replica it is connected to (link_route_command). */
	if (rc == 0 && !libvirt)
		rc = store_replica_cmd_put(q->a->store, p.host, p.name, action,
					   &err);
	if (rc == 0 && !libvirt)
		api_after_command(q, p.host, p.name, action);
	if (rc < 0)
		part_fail(q, rc, &err);
	else
		reply_part(q, 200, p.name);
	store_partition_free(&p);
}

void api_parts_start(struct api_req *q)
{
	static const char *const busy[2] = { "running", "start-requested" };
	part_action(q, PARLEY__V1__PARTITION_COMMAND__ACTION__START,
		    q->a->hooks.orch_start, "start-requested", busy);
}

void api_parts_stop(struct api_req *q)
{
	static const char *const busy[2] = { "stopped", "stop-requested" };
	part_action(q, PARLEY__V1__PARTITION_COMMAND__ACTION__STOP,
		    q->a->hooks.orch_stop, "stop-requested", busy);
}

/* An agent's VM: refused while a grant names it, else its agent is asked
 * to destroy it (again, if asked already: the command may have found no
 * agent) and the row kept, "destroy-requested", until the agent says
 * "destroyed" -- so that a VM is never left running without a row that
 * says so. 202 with the partition. */
static void vm_delete(struct api_req *q, const struct store_partition *p)
{
	struct parley_err err = { 0 };
	api_subject(q, p->host, p->name, NULL);
	int rc = agentvm_no_grant(q->a->store, p->name, &err);
	if (rc == 0 && strcmp(p->state, AGENTVM_DESTROY_REQUESTED))
		rc = store_partition_set_state(q->a->store, p->name,
					       AGENTVM_DESTROY_REQUESTED, 0,
					       NULL, &err);
	/* Sent until its agent confirms it, as any partition command. */
	if (rc == 0)
		rc = store_replica_cmd_put(q->a->store, p->host, p->name,
					   PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY,
					   &err);
	if (rc < 0) {
		part_fail(q, rc, &err);
		return;
	}
	api_after_command(q, p->host, p->name,
			  PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY);
	reply_part(q, 202, p->name);
}

/* The row goes first for thin partitions (it refuses while grants name the
 * partition), then the running thing; the orchestrator does both for
 * libvirt ones. */
void api_parts_delete(struct api_req *q)
{
	struct store_partition p = { 0 };
	struct parley_err err = { 0 };
	struct api_hooks *h = &q->a->hooks;
	if (!api_name_ok(q, "partition name", q->arg))
		return;
	int rc = store_partition_get(q->a->store, q->arg, &p, &err);
	if (rc == 0 && agentvm_part(&p)) {
		vm_delete(q, &p);
		store_partition_free(&p);
		return;
	}
	bool libvirt = rc == 0 && p.kind == STORE_PART_LIBVIRT;
	if (rc == 0)
		api_subject(q, p.host, p.name, NULL);
	if (libvirt && !h->orch_destroy)
		rc = -ENOSYS;
	else if (libvirt) /* refuses while grants name it, then undefines
			   * the domain and deletes the row */
		rc = libvirt_rc(h->orch_destroy(h->ctx, p.name, &err));
	else if (rc == 0)
		rc = store_partition_delete(q->a->store, p.name, &err);
	if (rc == 0 && !libvirt)
		rc = store_replica_cmd_put(q->a->store, p.host, p.name,
					   PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY,
					   &err);
	if (rc == 0 && !libvirt)
		api_after_command(q, p.host, p.name,
				  PARLEY__V1__PARTITION_COMMAND__ACTION__DESTROY);
	if (rc < 0)
		part_fail(q, rc, &err);
	else
		api_reply(q, 204, NULL);
	store_partition_free(&p);
}
