/* Reading whole files with a cap, so a huge or endless file cannot make us
 * allocate without bound. */
#ifndef PARLEY_COMMON_FILEIO_H
#define PARLEY_COMMON_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

/* Read all of `path` (at most `max` bytes, else -EFBIG) into a new buffer
 * that the caller frees. A NUL is appended (not counted in *len) so text
 * parsers can use the buffer as a string. */
int file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
		  struct parley_err *err);

/* The same through an open fd (a regular file; `what` names it in errors). */
int fd_read_all(int fd, const char *what, size_t max, uint8_t **buf,
		size_t *len, struct parley_err *err);

/* Write all of `len` bytes, retrying short writes and EINTR. */
int fd_write_all(int fd, const void *buf, size_t len);
/* Replace `path` with `len` bytes as a whole (mode 0600): written to
 * path.tmp (not through a symbolic link), fsync'ed, renamed over it -- a
 * crash leaves the old file or the new one, never a part. The directory
 * is not synced. */
int file_replace(const char *path, const void *buf, size_t len,
		 struct parley_err *err);
/* Read exactly `len` bytes; -EIO on early end of file. */
int fd_read_exact(int fd, void *buf, size_t len);


/* out = dir + "/" + name; -ENAMETOOLONG rather than a truncated path, which
 * could name a different file. */
int path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
