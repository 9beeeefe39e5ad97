/*
 * Files a partition spec names (its image and its key configuration
 * files), opened only beneath directories the operator configured: the
 * spec file's own directory (local specs only), --image-dir for images and
 * --config-dir for config files. A spec is untrusted — from a local file,
 * or from the daemon, which an API admin writes — so a path in it is
 * checked twice: as text (relative, no ".." component: refused with an
 * error naming the spec field), then by the kernel, openat2() from the
 * directory's fd with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS. The file is read through the fd that was opened;
 * its path is never looked up a second time.
 */
#ifndef PARLEY_AGENT_BENEATH_H
#define PARLEY_AGENT_BENEATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

#define BENEATH_DIRS_MAX 17   /* the spec's directory + 16 configured */

/* The directories one kind of file may come from, in the order tried. */
struct beneath_dirs {
	unsigned n;
	const char *dir[BENEATH_DIRS_MAX];
};

/* Add dir (ignored when NULL or when full: -ENOSPC). */
int beneath_add(struct beneath_dirs *d, const char *dir);
/* Add every entry of a NULL-terminated list. */
int beneath_add_all(struct beneath_dirs *d, const char *const *dirs);

/* The text check: path is relative and has no ".." component. -EINVAL
 * with a message naming field (e.g. `field "image"`, `config[0].path`). */
int beneath_check(const char *path, const char *field,
		  struct parley_err *err);

/* Open path read-only beneath the first directory of d that has it.
 * Returns the fd (O_CLOEXEC), -ENOENT when none has it, -EINVAL when the
 * text check refuses it, -EPERM when the kernel does (a symlink on the
 * way, an escape), or another negative errno; err names field and path. */
int beneath_open(const struct beneath_dirs *d, const char *path,
		 const char *field, struct parley_err *err);

/* The same for a file the agent hands on for reading and writing (write)
 * or reading only: a disk's backing file. Missing everywhere and create:
 * made (O_EXCL, mode 0600) beneath the first directory, *created set. */
int beneath_open_rw(const struct beneath_dirs *d, const char *path,
		    const char *field, bool write, bool create, bool *created,
		    struct parley_err *err);

/* beneath_open, then read the whole regular file (at most max bytes)
 * through that fd into a new buffer the caller frees (NUL appended). */
int beneath_read(const struct beneath_dirs *d, const char *path,
		 const char *field, size_t max, uint8_t **buf, size_t *len,
		 struct parley_err *err);

#endif
