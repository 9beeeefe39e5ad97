/*
 * The manifest directory and the plugin directory, checked: every
 * `*.json` file of the manifest directory parsed (manifest.h), and each
 * plugin's file read from the plugin directory (O_NOFOLLOW, a regular
 * file) into a file of our own while it is hashed: 0444 in a fresh 0700
 * directory under $TMPDIR or /tmp (removed by plugin_set_free), kept only
 * through a read-only descriptor. What the vmm loads is that file (bound
 * into its jail, agent/vmm_jail.h): exactly the bytes whose SHA-256 was
 * compared with the manifest, whatever happens to the plugin directory
 * afterwards.
 *
 * A digest that differs from the manifest refuses the whole set (-EPERM,
 * naming the plugin and both digests); so does an unreadable or
 * non-regular file, a duplicate name, or more than PLUGIN_SET_MAX
 * manifests. Files of the manifest directory not ending in ".json", and
 * dot files, are not manifests.
 */
#ifndef PARLEY_AGENT_PLUGIN_PLUGDIR_H
#define PARLEY_AGENT_PLUGIN_PLUGDIR_H

#include "agent/plugin/manifest.h"

#define PLUGIN_SET_MAX 16
#define PLUGIN_FILE_BYTES_MAX (64u << 20)

struct plugin_verified {
	struct plugin_manifest m;
	int fd;                    /* read-only: the private copy */
};

struct plugin_set {
	char copies[256];          /* the private directory of the copies */
	unsigned n;                /* sorted by name */
	struct plugin_verified p[PLUGIN_SET_MAX];
};

/* Read and check both directories into *s (fds owned by s). 0 or -errno
 * with err naming the file or plugin; nothing stays open on failure. */
int plugin_set_load(const char *manifest_dir, const char *plugin_dir,
		    struct plugin_set *s, struct parley_err *err);
/* The one called name, or NULL. */
const struct plugin_verified *plugin_set_find(const struct plugin_set *s,
					      const char *name);
/* Copy dirfd/file to todir/to (made, 0444) while hashing it, as
 * plugin_set_load does: 0 or -errno; *fd read-only. */
int plugin_copy_private(int dirfd, const char *file, int todir,
			const char *to, uint8_t sha256[32], int *fd,
			struct parley_err *err);
void plugin_set_free(struct plugin_set *s);

#endif
