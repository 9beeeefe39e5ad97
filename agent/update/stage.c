/* Staging an update a partition streams down (stage.h). The partition is
 * untrusted and so is its vmm: sizes and offsets are checked against the
 * stage, the bytes are read through the agent's own read-only view of the
 * partition's memory after the guest-pointer check, and nothing of the
 * package is believed before updpkg_verify() passed on the complete file. */
#include "agent/update/stage.h"
#include "agent/update/keep.h"
#include "agent/ctl/gmem.h"
#include "agent/ctl/stop.h"
#include "agent/partition.h"
#include "agent/spec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/grant.h"
#include "common/sign.h"

static void emit(struct upd_stage *s, const char *event, const char *part,
		 const char *reason, const char *detail)
{
	struct audit_event e = { .event = event, .partition = part,
				 .reason = reason, .detail = detail };
	if (s->audit)
		audit_emit(s->audit, &e);
}

void upd_stage_none(struct upd_stage *s, struct audit *audit)
{
	*s = (struct upd_stage){ .dirfd = -1, .fd = -1, .audit = audit };
	updpkg_running_self(&s->run);
}

static int discard_partial(struct upd_stage *s)
{
	int n = 0;
	if (unlinkat(s->dirfd, UPD_INCOMING, 0) == 0)
		n++;
	else if (errno != ENOENT)
		return -errno;
	int rc = upd_rm_dir(s->dirfd, UPD_STAGE_TMP);
	if (rc < 0)
		return rc;
	n += rc;
	/* previous.old is "previous" between two renames (update/keep.c):
	 * current and previous are whole by then, so it is dropped. */
	rc = upd_keep_tidy(s->dirfd);
	if (rc < 0)
		return rc;
	n += rc;
	rc = upd_rm_dir(s->dirfd, UPD_CURRENT_TMP);
	return rc < 0 ? rc : n + rc;
}

int upd_stage_open(struct upd_stage *s, const char *state_dir,
		   struct audit *audit, struct parley_err *err)
{
	upd_stage_none(s, audit);
	char pub[PATH_MAX];
	if (path_join(s->dir, sizeof(s->dir), state_dir, UPD_DIR) < 0 ||
	    path_join(pub, sizeof(pub), state_dir, UPD_RELEASE_PUB) < 0)
		return perr(err, -ENAMETOOLONG, "%s: path too long", state_dir);
	if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %m", s->dir);
	s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					O_CLOEXEC);
	if (s->dirfd < 0)
		return perr(err, -errno, "%s: %m", s->dir);
	struct stat st;
	/* It will hold what the next agent runs: ours, and ours alone. */
	if (fstat(s->dirfd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 077)) {
		int rc = perr(err, -EPERM, "%s: must be a directory of uid %u "
			      "with mode 0700", s->dir, (unsigned)geteuid());
		upd_stage_close(s);
		return rc;
	}
	int n = discard_partial(s);
	if (n < 0) {
		int rc = perr(err, n, "%s: discarding a partial stage: %s",
			      s->dir, strerror(-n));
		upd_stage_close(s);
		return rc;
	}
	if (n > 0)
		emit(s, "update_discarded", NULL, "PARTIAL",
		     "a partial stage left by an earlier run was discarded");
	if (access(pub, F_OK) == 0) {
		int rc = sign_read_pub(pub, &s->release, err);
		if (rc < 0) {
			upd_stage_close(s);
			return rc;
		}
	}
	return 0;
}

void upd_stage_close(struct upd_stage *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	EVP_PKEY_free(s->release);
	s->release = NULL;
	s->fd = s->dirfd = -1;
}

static void drop_incoming(struct upd_stage *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
		unlinkat(s->dirfd, UPD_INCOMING, 0);
	}
	s->owner[0] = 0;
	s->size = s->received = 0;
	s->from_daemon = false;
}

void upd_stage_gone(struct upd_stage *s, const char *name)
{
	if (s->fd < 0 || strcmp(s->owner, name))
		return;
	drop_incoming(s);
	s->state = PARLEY_UPDATE_IDLE;
	emit(s, "update_discarded", name, "PARTITION_STOPPED",
	     "the partition streaming an update stopped");
}

static void set_detail(struct upd_stage *s, const char *msg)
{
	snprintf(s->detail, sizeof(s->detail), "%s", msg);
}

/* A fresh incoming.pkg of `size` bytes (space reserved) for `owner`,
 * dropping whatever stream was held: 0 or a positive errno. */
static int start_incoming(struct upd_stage *s, const char *owner,
			  uint64_t size)
{
	drop_incoming(s);
	s->fd = openat(s->dirfd, UPD_INCOMING, O_RDWR | O_CREAT | O_TRUNC |
				  O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = s->fd < 0 ? errno : posix_fallocate(s->fd, 0, (off_t)size);
	if (rc != 0) {
		drop_incoming(s);
		return rc;
	}
	snprintf(s->owner, sizeof(s->owner), "%s", owner);
	s->size = size;
	s->received = 0;
	s->state = PARLEY_UPDATE_RECEIVING;
	s->detail[0] = 0;
	return 0;
}

static void begin(struct upd_stage *s, struct partition *p, uint64_t size,
		  struct ctl_update_reply *r)
{
	if (!s->release) {
		r->status = PARLEY_E_NOSYS;
		snprintf(r->detail, sizeof(r->detail), "no %s: this agent "
			 "trusts no release key", UPD_RELEASE_PUB);
		return;
	}
	if (size < UPDPKG_HDR || size > UPDPKG_MAX) {
		r->status = PARLEY_E_INVAL;
		snprintf(r->detail, sizeof(r->detail), "size %llu not in "
			 "%u..%llu", (unsigned long long)size, UPDPKG_HDR,
			 (unsigned long long)UPDPKG_MAX);
		return;
	}
	if (s->fd >= 0 && strcmp(s->owner, p->name)) {
		r->status = PARLEY_E_LIMIT;
		snprintf(r->detail, sizeof(r->detail), "%s is staging an "
			 "update", s->from_daemon ? "the daemon" : s->owner);
		return;
	}
	int rc = start_incoming(s, p->name, size);
	if (rc != 0) {
		r->status = PARLEY_E_LIMIT;
		snprintf(r->detail, sizeof(r->detail), "staging: %s",
			 strerror(rc));
		return;
	}
	r->status = PARLEY_OK;
	char d[64];
	snprintf(d, sizeof(d), "%llu bytes", (unsigned long long)size);
	emit(s, "update_begin", p->name, NULL, d);
}

/* The bytes [gpa, gpa + len): the partition's own RAM or read-only image,
 * as the vmm should have checked already; a vmm that names anything else
 * lied, and the partition is stopped. */
static const void *guest_bytes(struct partition *p, uint64_t gpa,
			       uint64_t len)
{
	struct gmem g = { 0 };
	enum gmem_refusal why = GMEM_OUTSIDE;
	const void *src = NULL;
	if (gmem_add(&g, 0, p->ram_size, (uint8_t *)p->mem) == 0 &&
	    gmem_guest_init(&g, p->ram_size) == 0)
		src = gmem_guest_r(&g, gpa, len, 1, &why);
	if (!src)
		partition_fault(p, VMX_STOP_VMM_PROTOCOL, "update write of "
				"0x%llx + %llu bytes: %s",
				(unsigned long long)gpa,
				(unsigned long long)len, gmem_refusal_str(why));
	return src;
}

static void write_chunk(struct upd_stage *s, struct partition *p,
			const struct ctl_update_req *q,
			struct ctl_update_reply *r)
{
	if (s->fd < 0 || strcmp(s->owner, p->name)) {
		r->status = PARLEY_E_INVAL;
		return;
	}
	/* In order, within the size BEGIN gave: a partition retrying a chunk
	 * asks STATUS where to go on from. */
	if (q->arg != s->received || q->len > s->size - s->received) {
		r->status = PARLEY_E_INVAL;
		return;
	}
	const void *src = guest_bytes(p, q->gpa, q->len);
	if (!src)
		return;
	if (pwrite(s->fd, src, q->len, (off_t)q->arg) != (ssize_t)q->len) {
		r->status = PARLEY_E_LIMIT;
		snprintf(r->detail, sizeof(r->detail), "staging: %m");
		return;
	}
	s->received += q->len;
	r->status = (int32_t)q->len;
}

/* One file of the verified package into stage.tmp, with its mode. */
static int put_file(int dfd, const char *name, const uint8_t *b, size_t n,
		    mode_t mode)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
					   O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int rc = fd_write_all(fd, b, n);
	if (rc == 0 && fchmod(fd, mode) < 0) /* whatever the umask */
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* stage.tmp with the two programs and the manifest, then renamed to stage
 * over an older one: a stage is either whole or absent. */
static int write_stage(struct upd_stage *s, const uint8_t *buf,
		       const struct updpkg *pk, struct parley_err *err)
{
	int rc = upd_rm_dir(s->dirfd, UPD_STAGE_TMP);
	if (rc >= 0 && mkdirat(s->dirfd, UPD_STAGE_TMP, 0700) < 0)
		rc = -errno;
	int dfd = rc < 0 ? -1 : openat(s->dirfd, UPD_STAGE_TMP, O_RDONLY |
				       O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rc >= 0 && dfd < 0)
		rc = -errno;
	static const char *const progs[] = { "parley-agent", "parley-vmm" };
	for (int i = 0; rc >= 0 && i < 2; i++) {
		const struct updpkg_file *f = updpkg_find(pk, progs[i]);
		rc = put_file(dfd, progs[i], buf + f->off, f->size, 0755);
	}
	if (rc >= 0)
		rc = put_file(dfd, "manifest.json", buf + UPDPKG_HDR,
			      pk->manifest_len, 0644);
	if (rc >= 0 && fchmod(dfd, 0700) < 0)
		rc = -errno;
	if (rc >= 0 && fsync(dfd) < 0)
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
	if (rc >= 0)
		rc = upd_rm_dir(s->dirfd, UPD_STAGE);
	if (rc >= 0 && renameat(s->dirfd, UPD_STAGE_TMP, s->dirfd,
				UPD_STAGE) < 0)
		rc = -errno;
	if (rc >= 0 && fsync(s->dirfd) < 0)
		rc = -errno;
	if (rc < 0) {
		upd_rm_dir(s->dirfd, UPD_STAGE_TMP);
		return perr(err, rc, "writing the stage: %s", strerror(-rc));
	}
	return 0;
}

/* Verify the complete incoming.pkg, stage it, hand it over if we can:
 * 0, or negative with *whyp the refusal (UPDPKG_OK: a failure); the
 * state, the detail and the audit records say which. `who` is the
 * partition, or NULL for the daemon. */
static int finish(struct upd_stage *s, const char *who,
		  enum updpkg_refusal *whyp)
{
	struct parley_err err = { 0 };
	enum updpkg_refusal why = UPDPKG_OK;
	struct updpkg pk;
	int rc;
	void *map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, s->fd, 0);
	if (map == MAP_FAILED) {
		rc = perr(&err, -errno, "reading the stage: %m");
	} else {
		rc = updpkg_verify(map, s->size, s->release, &s->run, &pk,
				   &why, &err);
		if (rc == 0)
			rc = write_stage(s, map, &pk, &err);
		munmap(map, s->size);
	}
	*whyp = why;
	bool daemon = s->from_daemon;
	drop_incoming(s);
	s->from_daemon = daemon; /* the outcome is still the daemon's */
	set_detail(s, perr_msg(&err));
	if (rc < 0) {
		s->state = why ? PARLEY_UPDATE_REFUSED : PARLEY_UPDATE_FAILED;
		emit(s, why ? "update_refused" : "update_failed", who,
		     why ? updpkg_refusal_name(why) : "STAGING",
		     perr_msg(&err));
		return rc;
	}
	s->state = PARLEY_UPDATE_STAGED;
	snprintf(s->detail, sizeof(s->detail), "staged %s", pk.version_s);
	emit(s, "update_staged", who, NULL, s->detail);
	if (!s->commit)
		return 0;
	char dir[PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/%s", s->dir, UPD_STAGE);
	err = (struct parley_err){ 0 };
	if (s->commit(s->commit_ctx, dir, &err) == 0) {
		snprintf(s->detail, sizeof(s->detail), "handing over to %s",
			 pk.version_s);
		emit(s, "update_handover", who, NULL, pk.version_s);
		return 0;
	}
	s->state = PARLEY_UPDATE_FAILED;
	set_detail(s, perr_msg(&err));
	emit(s, "update_failed", who, "HANDOVER", perr_msg(&err));
	return -EIO;
}

/* A partition's COMMIT. */
static void commit(struct upd_stage *s, struct partition *p,
		   struct ctl_update_reply *r)
{
	if (s->fd < 0 || strcmp(s->owner, p->name) ||
	    s->received != s->size) {
		r->status = PARLEY_E_INVAL;
		snprintf(r->detail, sizeof(r->detail), s->fd < 0 ? "no stage"
			 : "stage incomplete");
		return;
	}
	char who[64];
	snprintf(who, sizeof(who), "%s", s->owner);
	enum updpkg_refusal why = UPDPKG_OK;
	int rc = finish(s, who, &why);
	r->status = rc == 0 ? PARLEY_OK : why ? PARLEY_E_INTEGRITY
					      : PARLEY_E_LIMIT;
}

/* ---- the daemon's stream (serve) ---------------------------------------- */

static void report(const struct upd_stage *s, const char *state,
		   struct upd_report *r)
{
	r->state = state;
	r->received = s->received;
	snprintf(r->reason, sizeof(r->reason), "%s",
		 strcmp(state, "receiving") ? s->detail : "");
}

void upd_daemon_offer(struct upd_stage *s, const uint8_t sha256[32],
		      uint64_t size, const char *version,
		      struct upd_report *r)
{
	*r = (struct upd_report){ .state = "failed" };
	if (s->dirfd < 0) {
		snprintf(r->reason, sizeof(r->reason), "this agent has no "
			 "state directory");
		return;
	}
	if (!s->release) {
		snprintf(r->reason, sizeof(r->reason), "no %s: this agent "
			 "trusts no release key", UPD_RELEASE_PUB);
		return;
	}
	if (size < UPDPKG_HDR || size > UPDPKG_MAX) {
		snprintf(r->reason, sizeof(r->reason), "size %llu not in "
			 "%u..%llu", (unsigned long long)size, UPDPKG_HDR,
			 (unsigned long long)UPDPKG_MAX);
		return;
	}
	if (s->fd >= 0 && !s->from_daemon) {
		r->state = "busy";
		snprintf(r->reason, sizeof(r->reason), "partition %s is "
			 "staging an update", s->owner);
		return;
	}
	if (s->state == PARLEY_UPDATE_STAGED) {
		r->state = "busy";
		snprintf(r->reason, sizeof(r->reason), "a stage is being "
			 "handed over");
		return;
	}
	if (s->fd >= 0 && s->size == size && !memcmp(s->sha256, sha256, 32)) {
		report(s, "receiving", r); /* a reconnect: go on */
		return;
	}
	int rc = start_incoming(s, UPD_DAEMON, size);
	if (rc != 0) {
		snprintf(r->reason, sizeof(r->reason), "staging: %s",
			 strerror(rc));
		return;
	}
	s->from_daemon = true;
	memcpy(s->sha256, sha256, 32);
	snprintf(s->version, sizeof(s->version), "%s", version);
	s->report_due = false;
	char d[96];
	snprintf(d, sizeof(d), "%llu bytes of %s from the daemon",
		 (unsigned long long)size, version);
	emit(s, "update_begin", NULL, NULL, d);
	report(s, "receiving", r);
}

bool upd_daemon_chunk(struct upd_stage *s, const uint8_t sha256[32],
		      uint64_t offset, const uint8_t *data, size_t len,
		      struct upd_report *r)
{
	if (s->fd < 0 || !s->from_daemon || memcmp(s->sha256, sha256, 32))
		return false;
	if (offset != s->received) {
		report(s, "receiving", r); /* go on from what we hold */
		return true;
	}
	if (len > s->size - s->received) {
		drop_incoming(s);
		s->state = PARLEY_UPDATE_FAILED;
		set_detail(s, "a chunk beyond the offered size");
		s->received = 0;
		report(s, "failed", r);
		return true;
	}
	if (pwrite(s->fd, data, len, (off_t)offset) != (ssize_t)len) {
		char m[64];
		snprintf(m, sizeof(m), "staging: %s", strerror(errno));
		drop_incoming(s);
		s->state = PARLEY_UPDATE_FAILED;
		set_detail(s, m);
		report(s, "failed", r);
		return true;
	}
	s->received += len;
	if (s->received < s->size) {
		report(s, "receiving", r);
		return true;
	}
	uint64_t got = s->received;
	enum updpkg_refusal why = UPDPKG_OK;
	int rc = finish(s, NULL, &why);
	report(s, rc == 0 ? "staged" : why ? "refused" : "failed", r);
	r->received = got;
	if (rc == 0)
		r->reason[0] = 0;
	return true;
}

void upd_stage_failed(struct upd_stage *s, const char *why)
{
	s->state = PARLEY_UPDATE_FAILED;
	set_detail(s, why);
}

void upd_answer(struct upd_stage *s, struct partition *p,
		const struct ctl_update_req *q, struct ctl_update_reply *r)
{
	static const char *const ops[] = { "begin", "write", "commit",
					   "status" };
	*r = (struct ctl_update_reply){ .vcpu = q->vcpu };
	bool asked = p->caps & SPEC_CAP_UPDATE;
	if (!asked || !grant_cap_allows(s->policy, p->name, "update")) {
		r->status = PARLEY_E_NO_GRANT;
		snprintf(r->detail, sizeof(r->detail), asked
			 ? "update not granted by policy"
			 : "no update capability");
		emit(s, "update_denied", p->name, "NO_GRANT", ops[q->op & 3]);
		return; /* and nothing of the stage */
	} else if (s->dirfd < 0) {
		r->status = PARLEY_E_NOSYS;
		snprintf(r->detail, sizeof(r->detail), "this agent has no "
			 "state directory");
	} else if (q->op == CTL_UPD_BEGIN) {
		begin(s, p, q->arg, r);
	} else if (q->op == CTL_UPD_WRITE) {
		write_chunk(s, p, q, r);
	} else if (q->op == CTL_UPD_COMMIT) {
		commit(s, p, r);
	} else {
		r->status = PARLEY_OK;
	}
	r->state = s->state;
	r->received = s->received;
	r->size = s->size;
	if (!r->detail[0] && q->op != CTL_UPD_WRITE)
		snprintf(r->detail, sizeof(r->detail), "%s", s->detail);
}

void upd_on_request(struct upd_stage *s, struct partition *p,
		    const struct ctl_update_req *q)
{
	struct ctl_update_reply r;
	upd_answer(s, p, q, &r);
	if (!p->finished)
		partition_send(p, CTL_UPDATE_REPLY, &r, sizeof(r), NULL, 0);
}
