/*
 * An agent's records -- measurements, audit events, partition status --
 * each stored exactly once (by the host's sequence number) together with
 * the audit events the daemon writes about them, in one store
 * transaction, and acknowledged only once that transaction committed.
 * After a crash the rows and the audit trail agree: both or neither.
 */
#include "daemon/rpc/link_int.h"
#include "daemon/agentvm.h"
#include "common/wire.h"
#include "common/log.h"
#include "daemon/policy/diskkeys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commit the open batch if rc is 0, else roll it back; then Ack or refuse
 * with `code`. */
static void finish(struct link_conn *c, int rc, struct parley_err *err,
		   const char *code, uint64_t rid, uint64_t seq)
{
	struct store *s = c->ls->store;
	if (rc == 0)
		rc = store_commit(s, err);
	else
		store_rollback(s, NULL);
	if (rc < 0)
		link_refuse(c, code, perr_msg(err), NULL);
	else
		link_send_ack(c, rid, seq);
}

static void digests_in(struct store_digests_in *d, struct store_file_in *f,
		       struct store_blob *s, const ProtobufCBinaryData *digest,
		       Parley__V1__FileDigest **files, size_t nf,
		       const ProtobufCBinaryData *segs, size_t ns)
{
	for (size_t i = 0; i < nf; i++)
		f[i] = (struct store_file_in){ files[i]->name,
			{ files[i]->sha256.data, files[i]->sha256.len } };
	for (size_t i = 0; i < ns; i++)
		s[i] = (struct store_blob){ segs[i].data, segs[i].len };
	*d = (struct store_digests_in){ { digest->data, digest->len }, f,
					(unsigned)nf, s, (unsigned)ns };
}

/* A measurement new to the store whose partition has no baseline yet
 * becomes its baseline (enrolment), audited as baseline_enrolled. */
static int enrol(struct link_conn *c, const struct store_measure_in *m,
		 struct parley_err *err)
{
	struct store *s = c->ls->store;
	uint64_t pv = 0;
	int rc = store_baseline_put(s, m->partition, &m->d, false, &pv, err);
	if (rc == -EEXIST) { /* enrolled already, or golden */
		*err = (struct parley_err){ 0 };
		return 0;
	}
	if (rc < 0)
		return rc;
	char detail[96];
	snprintf(detail, sizeof(detail), "from measurement seq %llu%s",
		 (unsigned long long)m->seq, pv ? "; new policy version" : "");
	struct store_audit_in ev = { .host = c->host,
				     .event = "baseline_enrolled",
				     .partition = m->partition,
				     .detail = detail };
	return store_audit_append(s, &ev, 1, NULL, err);
}

static int ingest_measurements(struct link_conn *c,
			       struct store_measure_in *m, size_t n,
			       struct store_ingest *res,
			       struct parley_err *err)
{
	struct store *s = c->ls->store;
	uint64_t held = 0;
	int rc = store_host_seq(s, c->host, &held, err);
	if (rc == 0)
		rc = store_ingest_measurements(s, c->host, m, (unsigned)n, res,
					       err);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (m[i].seq > held)
			rc = enrol(c, &m[i], err);
	/* A partition that stopped (or started again) matching its
	 * baseline: its disk keys are withheld (released) in the host's
	 * next bundle, in this transaction. */
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (m[i].seq > held)
			rc = diskkeys_refresh(s, m[i].partition, err);
	return rc;
}

void link_on_measurements(struct link_conn *c, const Parley__V1__Envelope *e)
{
	const Parley__V1__MeasurementReport *r = e->measurements;
	size_t n = r->n_measurements;
	struct store_measure_in *m = calloc(n ? n : 1, sizeof(*m));
	struct store_file_in (*f)[STORE_FILES_MAX] = calloc(n ? n : 1,
							   sizeof(*f));
	struct store_blob (*sg)[STORE_SEGS_MAX] = calloc(n ? n : 1,
							sizeof(*sg));
	struct parley_err err = { 0 };
	struct store_ingest res = { 0 };
	int rc = !m || !f || !sg ? perr(&err, -ENOMEM, "out of memory") : 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const Parley__V1__Measurement *x = r->measurements[i];
		/* More than the store takes: refused there with its name,
		 * but not copied past the arrays here. */
		if (x->n_files > STORE_FILES_MAX || x->n_segments > STORE_SEGS_MAX) {
			rc = perr(&err, -E2BIG, "measurements[%zu]: %zu files, "
				  "%zu segments (at most %d, %d)", i,
				  x->n_files, x->n_segments, STORE_FILES_MAX,
				  STORE_SEGS_MAX);
			break;
		}
		m[i].seq = x->seq;
		m[i].partition = x->partition;
		m[i].time_ms = (int64_t)x->time_unix_ms;
		digests_in(&m[i].d, f[i], sg[i], &x->digest, x->files,
			   x->n_files, x->segments, x->n_segments);
	}
	if (rc == 0)
		rc = store_begin(c->ls->store, &err);
	if (rc == 0) {
		rc = ingest_measurements(c, m, n, &res, &err);
		finish(c, rc, &err, "BAD_MEASUREMENT", e->request_id, res.seq);
	} else {
		link_refuse(c, "BAD_MEASUREMENT", perr_msg(&err), NULL);
	}
	free(m);
	free(f);
	free(sg);
}

void link_on_audit(struct link_conn *c, const Parley__V1__Envelope *e)
{
	const Parley__V1__AuditBatch *b = e->audit;
	struct store_audit_in *ev = calloc(b->n_events ? b->n_events : 1,
					   sizeof(*ev));
	if (!ev) {
		link_refuse(c, "INTERNAL", "out of memory", NULL);
		return;
	}
	for (size_t i = 0; i < b->n_events; i++) {
		const Parley__V1__AuditEvent *x = b->events[i];
		ev[i] = (struct store_audit_in){
			.seq = x->seq, .time_ms = (int64_t)x->time_unix_ms,
			.host = c->host, .event = x->event,
			.partition = x->partition, .channel = x->channel,
			.reason = x->reason, .file = x->file,
			.detail = x->detail,
		};
	}
	struct store_ingest res = { 0 };
	struct parley_err err = { 0 };
	struct store *s = c->ls->store;
	/* One transaction: the events are the audit rows, with what the
	 * daemon does about them (a disk re-encrypted: its old key goes). */
	uint64_t held = 0;
	int rc = store_begin(s, &err);
	if (rc < 0) {
		free(ev);
		link_refuse(c, "BAD_AUDIT", perr_msg(&err), NULL);
		return;
	}
	rc = store_host_seq(s, c->host, &held, &err);
	if (rc == 0)
		rc = store_ingest_audit(s, c->host, ev, (unsigned)b->n_events,
					&res, &err);
	for (size_t i = 0; rc == 0 && i < b->n_events; i++) {
		if (ev[i].seq <= held)
			continue;
		if (!strcmp(ev[i].event, "disk_key_rekeyed"))
			rc = diskkeys_rekeyed(s, c->host, ev[i].partition,
					      ev[i].detail, &err);
		else if (!strcmp(ev[i].event, "quarantine"))
			rc = diskkeys_quarantined(s, c->host, ev[i].partition,
						  ev[i].reason, ev[i].file,
						  &err);
	}
	free(ev);
	finish(c, rc, &err, "BAD_AUDIT", e->request_id, res.seq);
}

/* The state the agent reports, and a partition_state event when it
 * differs from the stored one. */
static int ingest_status(struct link_conn *c,
			 const Parley__V1__PartitionStatus *st,
			 struct store_ingest *res, struct parley_err *err)
{
	struct store *s = c->ls->store;
	struct store_partition p;
	char was[STORE_NAME_MAX] = "";
	bool vm = false;
	if (store_partition_get(s, st->partition, &p, NULL) == 0) {
		snprintf(was, sizeof(was), "%s", p.state);
		vm = agentvm_part(&p);
		store_partition_free(&p);
	}
	/* The devices (checked by wire_check: names, known states, at most
	 * WIRE_DEVICES_MAX) are stored with the partition. */
	struct store_device dev[STORE_DEVICES_MAX];
	unsigned ndev = 0;
	for (size_t i = 0; i < st->n_devices && ndev < STORE_DEVICES_MAX; i++)
		dev[ndev++] = (struct store_device){ st->devices[i]->device,
						     st->devices[i]->plugin,
						     st->devices[i]->state };
	struct store_status_in in = { .partition = st->partition,
				      .state = st->state,
				      .backend = st->backend,
				      .devices = dev, .ndevices = ndev };
	int rc = store_ingest_status_in(s, c->host, st->seq, &in, res, err);
	if (rc < 0 || res->stored == 0 || !strcmp(was, st->state))
		return rc;
	char detail[2 * STORE_NAME_MAX + WIRE_REASON_MAX + 64];
	const char *why = st->reason && st->reason[0] ? st->reason : NULL;
	/* The exit code means something once it stopped. */
	if (!strcmp(st->state, "stopped") || st->exit_code)
		snprintf(detail, sizeof(detail), "%s -> %s (exit %lld%s%s)",
			 was, st->state, (long long)st->exit_code,
			 why ? ", " : "", why ? why : "");
	else
		snprintf(detail, sizeof(detail), "%s -> %s%s%s%s", was,
			 st->state, why ? " (" : "", why ? why : "",
			 why ? ")" : "");
	/* An agent's VM destroyed (its agent destroys one only on our
	 * DESTROY): its row goes now, in this transaction; a grant added
	 * since keeps it, "destroyed". Until then a destroy asked for stays
	 * asked for, whatever else the agent reports meanwhile (a VM that
	 * stopped on its own, the agent's start-up): each hello sends the
	 * DESTROY again. */
	if (vm && !strcmp(st->state, "destroyed")) {
		struct parley_err e2 = { 0 };
		rc = store_partition_delete(s, st->partition, &e2);
		if (rc == -EBUSY)
			log_warn("%s", perr_msg(&e2));
		else if (rc < 0)
			return *err = e2, rc;
		rc = 0;
	} else if (vm && !strcmp(was, AGENTVM_DESTROY_REQUESTED)) {
		rc = store_partition_set_state(s, st->partition,
					       AGENTVM_DESTROY_REQUESTED, 0,
					       NULL, err);
		if (rc < 0)
			return rc;
	}
	struct store_audit_in ev = { .host = c->host,
				     .event = "partition_state",
				     .partition = st->partition,
				     .detail = detail };
	return store_audit_append(s, &ev, 1, NULL, err);
}

void link_on_status(struct link_conn *c, const Parley__V1__Envelope *e)
{
	struct store_ingest res = { 0 };
	struct parley_err err = { 0 };
	int rc = store_begin(c->ls->store, &err);
	if (rc < 0) {
		link_refuse(c, "BAD_STATUS", perr_msg(&err), NULL);
		return;
	}
	rc = ingest_status(c, e->status, &res, &err);
	finish(c, rc, &err, "BAD_STATUS", e->request_id, res.seq);
}
