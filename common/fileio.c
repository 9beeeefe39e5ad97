#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fd_read_all(int fd, const char *what, size_t max, uint8_t **buf,
		size_t *len, struct parley_err *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return perr(err, -errno, "%s: %m", what);
	if (!S_ISREG(st.st_mode))
		return perr(err, -EINVAL, "%s: not a regular file", what);
	if ((uint64_t)st.st_size > max)
		return perr(err, -EFBIG, "%s: %lld bytes, more than the %zu "
			    "allowed", what, (long long)st.st_size, max);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	if (!b)
		return perr(err, -ENOMEM, "%s: out of memory", what);
	int rc = fd_read_exact(fd, b, (size_t)st.st_size);
	if (rc < 0) {
		free(b);
		return perr(err, rc, "%s: short read (file changed while "
			    "read?)", what);
	}
	b[st.st_size] = 0;
	*buf = b;
	*len = (size_t)st.st_size;
	return 0;
}

int file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
		  struct parley_err *err)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; the
	 * regular-file check in fd_read_all refuses it. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	int rc = fd_read_all(fd, path, max, buf, len, err);
	close(fd);
	return rc;
}

int file_replace(const char *path, const void *buf, size_t len,
		 struct parley_err *err)
{
	char tmp[4300];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return perr(err, -ENAMETOOLONG, "%s: too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
			   O_NOFOLLOW, 0600);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", tmp);
	int rc = fd_write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return perr(err, rc, "%s: %s", path, strerror(-rc));
	}
	return 0;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fd_read_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
