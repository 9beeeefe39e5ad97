/*
 * An endpoint's integrity, re-measured (chanmgr_int.h: cm_integrity): at
 * every open, service call and segment-set attach, and in the background
 * (chanmgr_full_check), where a page that changed but was never reported
 * means the vmm lied. A Linux VM measures its own way (cm_ext_ops.verify).
 */
#include "agent/ipc/chanmgr.h"
#include "agent/ipc/chanmgr_int.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *file_name(const struct partition *p, uint64_t page)
{
	int fi = measure_file_of_page(&p->measure, page);
	return fi >= 0 ? p->measure.file[fi].name : "(padding)";
}

/* The vmm's report left out a page that changed: it lied. */
static void vmm_lied(struct chanmgr *cm, struct cm_part *cp, uint64_t page)
{
	struct partition *p = cp->p;
	const char *file = file_name(p, page);
	char detail[160];
	snprintf(detail, sizeof(detail), "config page %llu (%s) changed but "
		 "the vmm process never reported it", (unsigned long long)page,
		 file);
	cm_emit(cm, "fault", p->name, NULL, "COMPROMISED",
	     file[0] == '(' ? NULL : file, detail);
	chanmgr_quarantine(cm, p, file[0] == '(' ? NULL : file);
	partition_fault(p, VMX_STOP_COMPROMISED, "%s", detail);
}

/* A small region, whole: every page hashed before the vmm is asked, so a
 * page that differed while we hashed was written before the question and
 * an honest report includes it. -EBADMSG with *page if a page differs
 * (after vmm_lied if it was not reported), -EIO if no report came. */
static int verify_whole(struct chanmgr *cm, struct cm_part *cp,
			int64_t *page, char *why, size_t cap)
{
	struct partition *p = cp->p;
	struct parley_err err = { 0 };
	uint64_t *differ = measure_rehash_all(&p->measure, p->mem + p->ram_size);
	if (!differ)
		return snprintf(why, cap, "(out of memory)"), -EIO;
	int rc = partition_fetch_dirty(p, &err);
	if (rc < 0) {
		snprintf(why, cap, "(no dirty report: %s)", perr_msg(&err));
		free(differ);
		return -EIO;
	}
	int64_t hidden = measure_unreported(&p->measure, differ);
	*page = hidden >= 0 ? hidden : measure_reported_differs(&p->measure,
								differ);
	free(differ);
	if (hidden >= 0)
		vmm_lied(cm, cp, (uint64_t)hidden);
	return *page >= 0 ? -EBADMSG : 0;
}

/* Re-measure one endpoint. Regions up to MEASURE_FULL_REHASH_MAX are
 * re-hashed whole; larger ones re-hash the pages the vmm reports written
 * (and the background re-hash checks the report). */
static int cm_verify(struct chanmgr *cm, struct cm_part *cp, char *file,
		  size_t cap)
{
	struct partition *p = cp->p;
	int64_t page = -1;
	int rc;
	if (cp->ext)
		return cp->ext->verify(cp->ext_ctx, file, cap);
	if (p->cfg_size <= MEASURE_FULL_REHASH_MAX) {
		rc = verify_whole(cm, cp, &page, file, cap);
		if (rc == -EBADMSG)
			snprintf(file, cap, "%s", file_name(p, (uint64_t)page));
		return rc;
	}
	struct parley_err err = { 0 };
	if (partition_fetch_dirty(p, &err) < 0) {
		snprintf(file, cap, "(no dirty report: %s)", perr_msg(&err));
		return -EIO;
	}
	int fi;
	if (measure_verify(&p->measure, p->mem + p->ram_size, &fi) == 0)
		return 0;
	snprintf(file, cap, "%s", fi >= 0 ? p->measure.file[fi].name
					  : "(padding)");
	return -EBADMSG;
}

int cm_integrity(struct chanmgr *cm, struct cm_part *who,
		 struct cm_verdict *v)
{
	int rc = cm_verify(cm, who, v->file, sizeof(v->file));
	if (rc == 0)
		return 0;
	if ((size_t)snprintf(v->detail, sizeof(v->detail), "%s/%s",
			     who->p->name, v->file) >= sizeof(v->detail))
		v->detail[sizeof(v->detail) - 1] = 0;
	if (rc == -EBADMSG) {
		chanmgr_quarantine(cm, who->p, v->file);
		return PARLEY_E_INTEGRITY;
	}
	/* A vmm that cannot report its dirty pages is as good as down. */
	return PARLEY_E_PEER_DOWN;
}

/* ---- background cross-check -------------------------------------------- */

/* The whole region against the vmm's report: a page that changed and was
 * never reported means the vmm lied (stopped as compromised); one that was
 * reported and still differs is the partition's own tampering, which the
 * dirty report alone would let pass until its next open: quarantined. */
static void full_check_one(struct chanmgr *cm, struct cm_part *cp)
{
	struct partition *p = cp->p;
	int64_t page = -1;
	char why[PARLEY_CONFIG_NAME_MAX + 80];
	int rc = verify_whole(cm, cp, &page, why, sizeof(why));
	cp->last_full_ns = mono_now_ns();
	if (rc != -EBADMSG || p->finished)
		return; /* clean, no report (its vmm was stopped), or lied */
	const char *file = file_name(p, (uint64_t)page);
	chanmgr_quarantine(cm, p, file[0] == '(' ? NULL : file);
}

bool chanmgr_full_check(struct chanmgr *cm, bool force)
{
	uint64_t now = mono_now_ns();
	bool ran = false;
	struct cm_part *oldest = NULL;
	for (unsigned i = 0; i < cm->nparts; i++) {
		struct cm_part *cp = &cm->parts[i];
		if (!cp->p || cp->p->finished || cp->ext)
			continue; /* an external endpoint is checked at opens */
		if (force) {
			full_check_one(cm, cp);
			ran = true;
		} else if (cm->rehash_interval_ns &&
			   now - cp->last_full_ns >= cm->rehash_interval_ns &&
			   (!oldest || cp->last_full_ns < oldest->last_full_ns)) {
			oldest = cp;
		}
	}
	if (oldest) {
		full_check_one(cm, oldest);
		ran = true;
	}
	return ran;
}
