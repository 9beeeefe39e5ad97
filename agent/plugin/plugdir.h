/*
 * The manifest directory and the plugin directory, checked: every
 * `*.json` file of the manifest directory parsed (manifest.h), and each
 * plugin's file read from the plugin directory (O_NOFOLLOW, a regular
 * file) into a sealed memfd while it is hashed. What the vmm loads is that
 * memfd (dlopen of /proc/self/fd/N): exactly the bytes whose SHA-256 was
 * compared with the manifest, whatever happens to the file afterwards.
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
	int fd;                    /* sealed memfd with the file's bytes */
};

struct plugin_set {
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
/* Hash a file as plugin_set_load would, into a sealed memfd: 0 or
 * -errno. For one plugin (re-checked at enrolment and by the baseline). */
int plugin_copy_sealed(int dirfd, const char *file, uint8_t sha256[32],
		       int *memfd, struct parley_err *err);
void plugin_set_free(struct plugin_set *s);

#endif
