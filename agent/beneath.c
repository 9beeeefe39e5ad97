#include "agent/beneath.h"
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int beneath_add(struct beneath_dirs *d, const char *dir)
{
	if (!dir)
		return 0;
	if (d->n == BENEATH_DIRS_MAX)
		return -ENOSPC;
	d->dir[d->n++] = dir;
	return 0;
}

int beneath_add_all(struct beneath_dirs *d, const char *const *dirs)
{
	for (; dirs && *dirs; dirs++)
		if (beneath_add(d, *dirs) < 0)
			return -ENOSPC;
	return 0;
}

/* A ".." component anywhere: "..", "../x", "x/..", "x/../y". */
static int has_dotdot(const char *p)
{
	for (const char *c = p; *c; c = strchr(c, '/') ? strchr(c, '/') + 1
						       : c + strlen(c))
		if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || !c[2]))
			return 1;
	return 0;
}

int beneath_check(const char *path, const char *field,
		  struct parley_err *err)
{
	if (!path[0])
		return perr(err, -EINVAL, "%s: empty path", field);
	if (path[0] == '/')
		return perr(err, -EINVAL, "%s: \"%s\" is an absolute path; "
			    "files are named relative to the spec's directory "
			    "or the configured directories", field, path);
	if (has_dotdot(path))
		return perr(err, -EINVAL, "%s: \"%s\" has a \"..\" component; "
			    "files must lie beneath the allowed directories",
			    field, path);
	return 0;
}

static int openat2_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK),
		.mode = (flags & O_CREAT) ? 0600 : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	long fd;
	do
		fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN);
	return fd < 0 ? -errno : (int)fd;
}

/* One directory: the fd, -ENOENT to try the next, or a refusal. */
static int open_in(const char *dir, const char *path, const char *field,
		   int flags, struct parley_err *err)
{
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -ENOENT; /* a configured directory that is not there */
	int fd = openat2_beneath(dfd, path, flags);
	close(dfd);
	if (fd >= 0 || fd == -ENOENT || fd == -ENOTDIR)
		return fd == -ENOTDIR ? -ENOENT : fd;
	if (fd == -ELOOP)
		return perr(err, -EPERM, "%s: \"%s\" in %s goes through a "
			    "symbolic link, refused", field, path, dir);
	if (fd == -EXDEV)
		return perr(err, -EPERM, "%s: \"%s\" leaves %s, refused",
			    field, path, dir);
	if (fd == -ENOSYS)
		return perr(err, -ENOSYS, "%s: openat2 is not available "
			    "(Linux 5.6 or later is needed)", field);
	return perr(err, fd, "%s: %s/%s: %s", field, dir, path,
		    strerror(-fd));
}

int beneath_open(const struct beneath_dirs *d, const char *path,
		 const char *field, struct parley_err *err)
{
	int rc = beneath_check(path, field, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < d->n; i++) {
		int fd = open_in(d->dir[i], path, field, O_RDONLY, err);
		if (fd != -ENOENT)
			return fd;
	}
	return perr(err, -ENOENT, "%s: \"%s\" not found in %u allowed "
		    "director%s", field, path, d->n, d->n == 1 ? "y" : "ies");
}

int beneath_open_rw(const struct beneath_dirs *d, const char *path,
		    const char *field, bool write, bool create, bool *created,
		    struct parley_err *err)
{
	*created = false;
	int rc = beneath_check(path, field, err);
	if (rc < 0)
		return rc;
	int flags = write ? O_RDWR : O_RDONLY;
	for (unsigned i = 0; i < d->n; i++) {
		int fd = open_in(d->dir[i], path, field, flags, err);
		if (fd != -ENOENT)
			return fd;
	}
	if (!create || d->n == 0)
		return perr(err, -ENOENT, "%s: \"%s\" not found in %u allowed "
			    "director%s", field, path, d->n,
			    d->n == 1 ? "y" : "ies");
	/* O_EXCL: a file that appeared meanwhile is not taken over. */
	int fd = open_in(d->dir[0], path, field, O_RDWR | O_CREAT | O_EXCL,
			 err);
	if (fd == -ENOENT)
		return perr(err, -ENOENT, "%s: cannot create \"%s\" in %s "
			    "(missing directory)", field, path, d->dir[0]);
	*created = fd >= 0;
	return fd;
}

int beneath_read(const struct beneath_dirs *d, const char *path,
		 const char *field, size_t max, uint8_t **buf, size_t *len,
		 struct parley_err *err)
{
	int fd = beneath_open(d, path, field, err);
	if (fd < 0)
		return fd;
	char what[128];
	snprintf(what, sizeof(what), "%s \"%.80s\"", field, path);
	int rc = fd_read_all(fd, what, max, buf, len, err);
	close(fd);
	return rc;
}
