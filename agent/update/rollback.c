/* The daemon's rollback request, agent side (see rollback.h). */
#include "agent/update/rollback.h"
#include "agent/update/keep.h"
#include "agent/update/stage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>

#include "agent/ipc/audit.h"
#include "common/fileio.h"
#include "common/version.h"

const char *upd_rollback_busy(const struct upd_stage *u, bool pending)
{
	if (pending)
		return "a hand-over is under way";
	if (u && u->fd >= 0)
		return u->from_daemon ? "the daemon's update is being received"
				      : "a partition's update is being "
					"received";
	if (u && u->state == PARLEY_UPDATE_STAGED)
		return "an update is staged and being handed over";
	return NULL;
}

int upd_rollback_version(const char *kept_dir, char *out, size_t cap,
			 struct parley_err *err)
{
	char p[PATH_MAX];
	if (path_join(p, sizeof(p), kept_dir, "manifest.json") < 0)
		return perr(err, -ENAMETOOLONG, "%s: path too long", kept_dir);
	json_error_t je;
	json_t *m = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
	const char *v = json_string_value(json_object_get(m, "version"));
	int rc = 0;
	if (!m)
		rc = perr(err, -ENOENT, "%s: %s", p, je.text);
	else if (!v || !v[0] || strlen(v) >= cap)
		rc = perr(err, -EBADMSG, "%s: no version", p);
	else
		snprintf(out, cap, "%s", v);
	json_decref(m);
	return rc;
}

/* The same version: as numbers when both read as X.Y.Z (an agent's
 * "0.4.0 (abc)" is 0.4.0), as text otherwise. */
static bool same_version(const char *a, const char *b)
{
	unsigned x[3], y[3];
	if (parley_version_parse(a, true, x) == 0 &&
	    parley_version_parse(b, true, y) == 0)
		return parley_version_cmp(x, y) == 0;
	return !strcmp(a, b);
}

static void audit_ev(struct audit *audit, const char *event,
		     const char *reason, const char *detail)
{
	if (!audit)
		return;
	struct audit_event e = { .event = event, .reason = reason,
				 .detail = detail };
	audit_emit(audit, &e);
}

static enum upd_rb_do refuse(struct upd_rollback *rb, struct audit *audit,
			     const char *state, const char *why)
{
	snprintf(rb->state, sizeof(rb->state), "%s", state);
	snprintf(rb->reason, sizeof(rb->reason), "%s", why);
	rb->dir[0] = 0;
	audit_ev(audit, "update_rollback_refused",
		 !strcmp(state, "busy") ? "BUSY" : NULL, why);
	return UPD_RB_ANSWER;
}

enum upd_rb_do upd_rollback_take(struct upd_rollback *rb,
				 struct audit *audit, const char *state_dir,
				 const char *expect, uint64_t request,
				 const char *busy)
{
	if (request && request == rb->request)
		return rb->state[0] ? UPD_RB_ANSWER : UPD_RB_NOTHING;
	rb->request = request;
	rb->state[0] = rb->reason[0] = 0;
	rb->report_due = false;
	char d[256];
	snprintf(d, sizeof(d), "request %llu from the daemon%s%s",
		 (unsigned long long)request,
		 expect && expect[0] ? ", previous expected to be " : "",
		 expect ? expect : "");
	audit_ev(audit, "update_rollback_received", NULL, d);
	if (busy)
		return refuse(rb, audit, "busy", busy);
	if (!state_dir)
		return refuse(rb, audit, "refused", "no previous version to "
			      "roll back to: this agent has no --state-dir");
	char dir[PATH_MAX];
	struct parley_err err = { 0 };
	if (path_join(dir, sizeof(dir), state_dir, UPD_DIR) < 0 ||
	    path_join(rb->dir, sizeof(rb->dir), dir, UPD_PREVIOUS) < 0)
		return refuse(rb, audit, "refused", "state directory path "
			      "too long");
	if (upd_keep_check(rb->dir, &err) < 0)
		return refuse(rb, audit, "refused", perr_msg(&err));
	char have[128];
	if (expect && expect[0]) {
		if (upd_rollback_version(rb->dir, have, sizeof(have), &err) < 0)
			return refuse(rb, audit, "refused", perr_msg(&err));
		if (!same_version(have, expect)) {
			char why[256];
			snprintf(why, sizeof(why), "previous holds %s, not %s "
				 "as the daemon expects", have, expect);
			return refuse(rb, audit, "refused", why);
		}
	}
	return UPD_RB_HAND_OVER;
}

void upd_rollback_done(struct upd_rollback *rb, const char *state,
		       const char *reason)
{
	snprintf(rb->state, sizeof(rb->state), "%s", state);
	snprintf(rb->reason, sizeof(rb->reason), "%s", reason);
	rb->dir[0] = 0;
}
