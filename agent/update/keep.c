/* Keeping the running version and the previous one (see keep.h). */
#include "agent/update/keep.h"
#include "agent/update/stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "agent/ipc/audit.h"
#include "agent/partition.h"
#include "common/fileio.h"

int upd_rm_dir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					     O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(fd, e->d_name, 0);
	closedir(d);
	return unlinkat(dirfd, name, AT_REMOVEDIR) < 0 ? -errno : 1;
}

int upd_keep_tidy(int update_dirfd)
{
	return upd_rm_dir(update_dirfd, UPD_PREVIOUS_OLD);
}

/* Is NAME under dirfd the directory `served` (same device and inode)?
 * Compared by identity, not by spelling: the stage may be given as a
 * relative path, through a symlink or with a trailing slash. */
static int is_dir(int dirfd, const char *name, const struct stat *served)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return S_ISDIR(st.st_mode) && st.st_dev == served->st_dev &&
	       st.st_ino == served->st_ino;
}

static int exists(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* stage -> current, current -> previous, the old previous dropped. Each
 * step is one rename; previous.old lives only between the first and the
 * last (upd_keep_tidy drops a leftover at the next start). A crash in
 * between leaves either the old pair or, at worst, current missing with
 * stage still whole: never a half-written version. */
static int forward(int dfd, struct parley_err *err)
{
	int rc = upd_keep_tidy(dfd);
	if (rc < 0)
		return perr(err, rc, "removing %s: %s", UPD_PREVIOUS_OLD,
			    strerror(-rc));
	if ((rc = exists(dfd, UPD_PREVIOUS)) > 0 &&
	    renameat(dfd, UPD_PREVIOUS, dfd, UPD_PREVIOUS_OLD) < 0)
		rc = -errno;
	if (rc >= 0 && (rc = exists(dfd, UPD_CURRENT)) > 0 &&
	    renameat(dfd, UPD_CURRENT, dfd, UPD_PREVIOUS) < 0)
		rc = -errno;
	if (rc >= 0 && renameat(dfd, UPD_STAGE, dfd, UPD_CURRENT) < 0) {
		rc = -errno;
		/* current stays current: put it back where it was */
		renameat(dfd, UPD_PREVIOUS, dfd, UPD_CURRENT);
	}
	if (rc < 0) {
		/* previous.old would be dropped at the next start: put it
		 * back unless previous has been taken meanwhile */
		if (exists(dfd, UPD_PREVIOUS) == 0)
			renameat(dfd, UPD_PREVIOUS_OLD, dfd, UPD_PREVIOUS);
		return perr(err, rc, "keeping the versions: %s",
			    strerror(-rc));
	}
	if (fsync(dfd) < 0)
		return perr(err, -errno, "fsync: %s", strerror(errno));
	upd_keep_tidy(dfd);
	return UPD_KEPT_FORWARD;
}

/* An explicit rollback: previous becomes current and current previous,
 * in one atomic exchange. */
static int back(int dfd, struct parley_err *err)
{
	int rc = exists(dfd, UPD_CURRENT);
	if (rc > 0 && renameat2(dfd, UPD_PREVIOUS, dfd, UPD_CURRENT,
				RENAME_EXCHANGE) < 0)
		rc = -errno;
	else if (rc == 0 && renameat(dfd, UPD_PREVIOUS, dfd,
				     UPD_CURRENT) < 0)
		rc = -errno;
	if (rc < 0)
		return perr(err, rc, "swapping %s and %s: %s", UPD_CURRENT,
			    UPD_PREVIOUS, strerror(-rc));
	if (fsync(dfd) < 0)
		return perr(err, -errno, "fsync: %s", strerror(errno));
	return UPD_KEPT_BACK;
}

int upd_keep(const char *update_dir, const char *served_dir, char *vmm_out,
	     size_t cap, struct parley_err *err)
{
	struct stat served;
	if (stat(served_dir, &served) < 0)
		return perr(err, -errno, "%s: %s", served_dir, strerror(errno));
	int dfd = open(update_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					   O_CLOEXEC);
	if (dfd < 0)
		return perr(err, -errno, "%s: %s", update_dir, strerror(errno));
	int rc, from_stage = 0, from_prev = 0;
	if ((rc = is_dir(dfd, UPD_STAGE, &served)) >= 0) {
		from_stage = rc;
		rc = is_dir(dfd, UPD_PREVIOUS, &served);
		from_prev = rc > 0;
	}
	if (rc < 0)
		rc = perr(err, rc, "%s: %s", update_dir, strerror(-rc));
	else if (from_stage)
		rc = forward(dfd, err);
	else if (from_prev)
		rc = back(dfd, err);
	else
		rc = UPD_KEPT_NONE;
	/* Whatever failed above: once our directory is current, new
	 * partitions start its vmm from there. */
	if ((from_stage || from_prev) && is_dir(dfd, UPD_CURRENT, &served) > 0 &&
	    snprintf(vmm_out, cap, "%s/%s/parley-vmm", update_dir,
		     UPD_CURRENT) >= (int)cap && rc >= 0)
		rc = perr(err, -ENAMETOOLONG, "%s: path too long", update_dir);
	close(dfd);
	return rc;
}

int upd_keep_served(const char *state_dir, const char *argv0, char *vmm_out,
		    size_t cap, struct parley_err *err)
{
	char dir[PATH_MAX], served[PATH_MAX];
	if (!state_dir)
		return UPD_KEPT_NONE;
	if (path_join(dir, sizeof(dir), state_dir, UPD_DIR) < 0 ||
	    snprintf(served, sizeof(served), "%s", argv0) >= (int)sizeof(served))
		return perr(err, -ENAMETOOLONG, "path too long");
	char *slash = strrchr(served, '/');
	if (!slash)
		snprintf(served, sizeof(served), ".");
	else if (slash == served)
		served[1] = 0;
	else
		*slash = 0;
	return upd_keep(dir, served, vmm_out, cap, err);
}

/* We serve now: the stage we came from becomes current, current previous
 * (agent/update/keep.h), audited; a failure is reported, never fatal. */
void upd_keep_audited(struct audit *audit, const char *state_dir,
		   const char *argv0, char *vmm, size_t cap)
{
	struct parley_err err = { 0 };
	char kept[1024] = "";
	int rc = upd_keep_served(state_dir, argv0, kept, sizeof(kept), &err);
	if (kept[0] && strlen(kept) < cap)
		snprintf(vmm, cap, "%s", kept);
	if (rc == UPD_KEPT_NONE)
		return;
	char detail[512];
	snprintf(detail, sizeof(detail), "%s", rc < 0 ? perr_msg(&err)
		 : rc == UPD_KEPT_BACK ? "rolled back: previous is current, "
					 "current previous"
				       : "stage is current, current previous");
	struct audit_event e = { .event = rc < 0 ? "update_keep_failed"
						 : "update_kept",
				 .detail = detail };
	audit_emit(audit, &e);
	fprintf(stderr, "parley-agent: versions kept: %s\n", detail);
}

/* Copy the file at src to NAME under dfd (mode 0755), fsynced. */
static int copy_into(int dfd, const char *name, const char *src,
		     struct parley_err *err)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return perr(err, -errno, "%s: %s", src, strerror(errno));
	int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
					    O_NOFOLLOW, 0755);
	int rc = 0;
	if (out < 0)
		rc = perr(err, -errno, "%s: %s", name, strerror(errno));
	char buf[65536];
	ssize_t n;
	while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || fd_write_all(out, buf, (size_t)n) < 0)
			rc = perr(err, -EIO, "copying %s: %s", src,
				  strerror(errno));
	}
	if (rc == 0 && fsync(out) < 0)
		rc = perr(err, -errno, "fsync %s: %s", name, strerror(errno));
	if (out >= 0)
		close(out);
	close(in);
	return rc;
}

int upd_keep_seed(const char *state_dir, const char *self_exe,
		  const char *vmm, const char *version,
		  struct parley_err *err)
{
	char dir[PATH_MAX];
	if (!state_dir)
		return 0;
	if (path_join(dir, sizeof(dir), state_dir, UPD_DIR) < 0)
		return perr(err, -ENAMETOOLONG, "%s: path too long", state_dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return perr(err, -errno, "%s: %s", dir, strerror(errno));
	int rc = exists(dfd, UPD_CURRENT);
	if (rc != 0) {
		close(dfd);
		return rc < 0 ? perr(err, rc, "%s: %s", dir, strerror(-rc)) : 0;
	}
	json_t *m = json_pack("{s:s}", "version", version);
	char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	rc = upd_rm_dir(dfd, UPD_CURRENT_TMP);
	if (rc >= 0 && mkdirat(dfd, UPD_CURRENT_TMP, 0700) < 0)
		rc = -errno;
	if (rc < 0) {
		rc = perr(err, rc, "%s/%s: %s", dir, UPD_CURRENT_TMP,
			  strerror(-rc));
		goto out;
	}
	int cfd = openat(dfd, UPD_CURRENT_TMP, O_RDONLY | O_DIRECTORY |
						       O_NOFOLLOW | O_CLOEXEC);
	rc = cfd < 0 ? perr(err, -errno, "%s: %s", UPD_CURRENT_TMP,
			    strerror(errno)) : 0;
	if (rc == 0)
		rc = copy_into(cfd, "parley-agent", self_exe, err);
	if (rc == 0)
		rc = copy_into(cfd, "parley-vmm", vmm, err);
	int mfd = rc == 0 ? openat(cfd, "manifest.json", O_WRONLY | O_CREAT |
				   O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
	if (rc == 0 && (mfd < 0 || !text ||
			fd_write_all(mfd, text, strlen(text)) < 0 ||
			fsync(mfd) < 0))
		rc = perr(err, -EIO, "writing the manifest");
	if (mfd >= 0)
		close(mfd);
	if (rc == 0 && fsync(cfd) < 0)
		rc = perr(err, -errno, "fsync: %s", strerror(errno));
	if (cfd >= 0)
		close(cfd);
	if (rc == 0 && renameat(dfd, UPD_CURRENT_TMP, dfd, UPD_CURRENT) < 0)
		rc = perr(err, -errno, "rename: %s", strerror(errno));
	if (rc == 0 && fsync(dfd) < 0)
		rc = perr(err, -errno, "fsync: %s", strerror(errno));
	if (rc < 0)
		upd_rm_dir(dfd, UPD_CURRENT_TMP);
	else
		rc = 1;
out:
	free(text);
	close(dfd);
	return rc;
}

bool upd_keep_is_previous(const char *stage_dir)
{
	size_t n = strlen(stage_dir);
	while (n > 1 && stage_dir[n - 1] == '/')
		n--;
	size_t k = strlen(UPD_PREVIOUS);
	return n >= k && !strncmp(stage_dir + n - k, UPD_PREVIOUS, k) &&
	       (n == k || stage_dir[n - k - 1] == '/');
}

int upd_keep_check(const char *stage_dir, struct parley_err *err)
{
	if (!upd_keep_is_previous(stage_dir))
		return 0;
	char manifest[PATH_MAX];
	if (path_join(manifest, sizeof(manifest), stage_dir,
		      "manifest.json") < 0)
		return perr(err, -ENAMETOOLONG, "stage path too long");
	if (access(manifest, R_OK) < 0)
		return perr(err, -ENOENT, "no previous version to roll back "
			    "to (%s holds none: one is kept from the first "
			    "update on)", stage_dir);
	return 0;
}

int upd_keep_before(struct audit *audit, const char *state_dir,
		    const char *stage_dir, const char *vmm,
		    const char *version, struct parley_err *err)
{
	int rc = upd_keep_check(stage_dir, err);
	if (rc < 0) {
		struct audit_event e = { .event = "update_rollback_refused",
					 .detail = perr_msg(err) };
		audit_emit(audit, &e);
		return rc;
	}
	if (upd_keep_is_previous(stage_dir)) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s asks to hand over to %s",
			 version, stage_dir);
		struct audit_event e = { .event = "update_rollback_requested",
					 .detail = detail };
		audit_emit(audit, &e);
	}
	char dflt[PATH_MAX];
	if (!vmm && part_default_vmm(dflt, sizeof(dflt)) == 0)
		vmm = dflt;
	struct parley_err serr = { 0 };
	if (vmm && upd_keep_seed(state_dir, "/proc/self/exe", vmm, version,
				 &serr) < 0) {
		/* Not fatal: the update goes on, only without a previous. */
		struct audit_event e = { .event = "update_keep_failed",
					 .detail = perr_msg(&serr) };
		audit_emit(audit, &e);
	}
	return 0;
}
