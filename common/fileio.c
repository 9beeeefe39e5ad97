#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
		  struct parley_err *err)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; the
	 * regular-file check below refuses it. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	struct stat st;
	int rc = 0;
	uint8_t *b = NULL;
	if (fstat(fd, &st) < 0) {
		rc = perr(err, -errno, "%s: %m", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = perr(err, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = perr(err, -EFBIG, "%s: %lld bytes, more than the %zu allowed",
			  path, (long long)st.st_size, max);
		goto out;
	}
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		rc = perr(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	rc = fd_read_exact(fd, b, (size_t)st.st_size);
	if (rc < 0) {
		perr(err, rc, "%s: short read (file changed while read?)", path);
		free(b);
		b = NULL;
		goto out;
	}
	b[st.st_size] = 0;
	*buf = b;
	*len = (size_t)st.st_size;
out:
	close(fd);
	return rc;
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
