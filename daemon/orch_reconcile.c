/*
 * What the orchestrator writes to the store, always with its audit event
 * in the same transaction, and the reconciliation of the store with what
 * libvirt reports: at start-up (orch_init opens a connection for every
 * URI that has libvirt partitions) and whenever a connection is opened
 * again after it was lost. While parleyd was down or disconnected,
 * domains may have stopped, started or gone without a lifecycle event
 * reaching us; libvirt is the truth about domains, so the store follows
 * it, and every correction is a `libvirt_reconciled` audit event.
 */
#include "daemon/orch.h"
#include "daemon/agentvm.h"
#include "common/log.h"

#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int orch_write(struct orch *o, const char *name, const char *state,
	       uint64_t if_version, const struct store_audit_in *ev,
	       bool delete_row, struct parley_err *err)
{
	bool own;
	int rc = store_join_begin(o->store, &own, err);
	if (rc < 0)
		return rc;
	if (delete_row)
		rc = store_partition_delete(o->store, name, err);
	else if (state)
		rc = store_partition_set_state(o->store, name, state,
					       if_version, NULL, err);
	if (rc == 0)
		rc = store_audit_append(o->store, ev, 1, NULL, err);
	return store_join_end(o->store, own, rc, err);
}

/* What a state says about the domain, in libvirt's terms. */
enum dom_class { C_SHUTOFF, C_RUNNING, C_PAUSED, C_CRASHED, C_MISSING,
		 C_UNKNOWN };

static enum dom_class store_class(const char *state)
{
	if (!strcmp(state, ORCH_STATE_DEFINED) ||
	    !strcmp(state, ORCH_STATE_STOPPED))
		return C_SHUTOFF;
	if (!strcmp(state, ORCH_STATE_RUNNING))
		return C_RUNNING;
	if (!strcmp(state, ORCH_STATE_PAUSED))
		return C_PAUSED;
	if (!strcmp(state, ORCH_STATE_CRASHED))
		return C_CRASHED;
	if (!strcmp(state, ORCH_STATE_UNDEFINED))
		return C_MISSING;
	return C_UNKNOWN;
}

static const char *const class_names[] = {
	[C_SHUTOFF] = "shut off", [C_RUNNING] = "running",
	[C_PAUSED] = "paused", [C_CRASHED] = "crashed",
	[C_MISSING] = "missing", [C_UNKNOWN] = "unknown",
};

/* The domain's class per libvirt; C_UNKNOWN for libvirt's "no state". */
static int libvirt_class(struct orch_conn *c, const char *name,
			 enum dom_class *out, struct parley_err *err)
{
	virDomainPtr d = virDomainLookupByName(c->conn, name);
	if (!d) {
		if (virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
			return orch_lv_err(err, "look up", name);
		*out = C_MISSING;
		return 0;
	}
	int st, reason;
	int rc = virDomainGetState(d, &st, &reason, 0);
	virDomainFree(d);
	if (rc < 0)
		return orch_lv_err(err, "state of", name);
	switch (st) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
	case VIR_DOMAIN_SHUTDOWN:         /* still active, going down */
		*out = C_RUNNING;
		break;
	case VIR_DOMAIN_PAUSED:
	case VIR_DOMAIN_PMSUSPENDED:
		*out = C_PAUSED;
		break;
	case VIR_DOMAIN_SHUTOFF:
		*out = C_SHUTOFF;
		break;
	case VIR_DOMAIN_CRASHED:
		*out = C_CRASHED;
		break;
	default:
		*out = C_UNKNOWN;
	}
	return 0;
}

/* The store's state for what libvirt reports, given the state now. */
static const char *state_for(enum dom_class lv, const char *now)
{
	switch (lv) {
	case C_RUNNING:
		return ORCH_STATE_RUNNING;
	case C_PAUSED:
		return ORCH_STATE_PAUSED;
	case C_CRASHED:
		return ORCH_STATE_CRASHED;
	case C_MISSING:
		return ORCH_STATE_UNDEFINED;
	default: /* shut off: never started since it came back, or stopped */
		return !strcmp(now, ORCH_STATE_UNDEFINED) ? ORCH_STATE_DEFINED
							  : ORCH_STATE_STOPPED;
	}
}

int orch_reconcile_one(struct orch_conn *c, const struct store_partition *p,
		       struct parley_err *err)
{
	enum dom_class lv, st = store_class(p->state);
	int rc = libvirt_class(c, p->name, &lv, err);
	if (rc < 0 || lv == C_UNKNOWN)
		return rc;
	/* A crash leaves the domain shut off (reason crashed): no drift. */
	if (lv == st || (st == C_CRASHED && lv == C_SHUTOFF))
		return 0;
	const char *state = state_for(lv, p->state);
	char detail[160];
	snprintf(detail, sizeof(detail), "store %s (%s), libvirt %s", p->state,
		 class_names[st], class_names[lv]);
	struct store_audit_in ev = {
		.host = p->host, .event = ORCH_AUDIT_RECONCILED,
		.partition = p->name, .reason = "STATE_DRIFT",
		.detail = detail,
	};
	/* if_version: a writer that got there first wins; the next
	 * reconciliation looks again. */
	rc = orch_write(c->o, p->name, state, p->version, &ev, false, err);
	if (rc == 0)
		log_info("libvirt partition %s: %s; now %s", p->name, detail,
			 state);
	return rc < 0 ? rc : 1;
}

/* The libvirt partitions of one host, reconciled a page at a time. */
static int reconcile_host(struct orch_conn *c, const char *host,
			  unsigned *fixed, struct parley_err *err)
{
	char after[STORE_NAME_MAX] = "";
	int n, rc = 0;
	do {
		struct store_partition *p = NULL;
		n = store_partition_list(c->o->store, host, after,
					 STORE_LIST_MAX, &p, err);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (p[i].kind != STORE_PART_LIBVIRT ||
			    agentvm_part(&p[i]))
				continue; /* thin, or its agent's VM */
			struct parley_err e1 = { 0 };
			int r = orch_reconcile_one(c, &p[i], &e1);
			if (r > 0)
				(*fixed)++;
			if (r < 0) {     /* the others are still worth a look */
				log_warn("reconcile %s: %s", p[i].name,
					 perr_msg(&e1));
				if (rc == 0 && err)
					*err = e1;
				rc = rc ? rc : r;
			}
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", p[n - 1].name);
		store_partition_list_free(p, (unsigned)n); /* even when 0 */
	} while (n == STORE_LIST_MAX);
	return rc;
}

int orch_reconcile_conn(struct orch_conn *c, struct parley_err *err)
{
	char after[STORE_NAME_MAX] = "";
	unsigned fixed = 0;
	int n, rc = 0;
	do {
		struct store_host *h = NULL;
		n = store_host_list(c->o->store, after, STORE_LIST_MAX, &h,
				    err);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (strcmp(h[i].libvirt_uri, c->uri))
				continue;
			int r = reconcile_host(c, h[i].name, &fixed,
					       rc ? NULL : err);
			rc = rc ? rc : r;
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", h[n - 1].name);
		free(h);
	} while (n == STORE_LIST_MAX);
	if (fixed)
		log_warn("libvirt %s: %u partition state(s) reconciled", c->uri,
			 fixed);
	return rc < 0 ? rc : (int)fixed;
}
