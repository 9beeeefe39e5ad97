/*
 * The device plugin interface, ABI 1: what a shared object under the
 * plugin directory exports for the vmm to load (agent/plugin/README.md).
 *
 * A plugin exports one symbol, PARLEY_PLUGIN_SYMBOL, a const struct
 * parley_plugin. The vmm loads it from the verified copy the agent made
 * (plugdir.h) before it enters its seccomp filter: init, power_up and
 * load_state may open files or allocate as they like; run, the per-class
 * operations, save_state and power_down run inside the filter and may use
 * only the descriptors they were given and memory already theirs.
 *
 * Every operation returns 0 or a negative errno and, on failure, writes
 * why (printable, NUL-terminated, at most `n` bytes) for the stop reason
 * and the audit event, which name the plugin.
 *
 * Compatibility: `abi` is checked equal to PARLEY_PLUGIN_ABI; `size` lets
 * a later ABI append operations (a plugin built against a shorter struct
 * is refused by this one). Changing any member below is a new ABI.
 */
#ifndef PARLEY_AGENT_PLUGIN_PLUGIN_H
#define PARLEY_AGENT_PLUGIN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define PARLEY_PLUGIN_ABI 1u
#define PARLEY_PLUGIN_SYMBOL "parley_plugin_v1"
#define PARLEY_PLUGIN_NAME_MAX 32 /* with the NUL */

enum parley_plugin_class {
	PARLEY_PLUGIN_BLOCK = 1,     /* a disk's backing store */
	PARLEY_PLUGIN_TRANSFORM = 2, /* a sector transform (encryption) */
	PARLEY_PLUGIN_CONSOLE = 3,   /* where a partition's console goes */
};

/* What a device instance is made from; fields a class does not use are
 * zero. The plugin copies what it keeps (key: and wipes its copy). */
struct parley_plugin_config {
	const char *device;          /* the device's name (a disk's name) */
	int fd;                      /* block: the backing file, else -1 */
	uint64_t bytes;              /* block: its size */
	uint32_t unit;               /* transform: bytes per tweak unit */
	const uint8_t *key;          /* transform: the key */
	size_t key_len;
	/* console: where finished output goes (the vmm's console link) */
	void (*emit)(void *ctx, unsigned vcpu, const char *buf, size_t len);
	void *emit_ctx;
};

/* The lifecycle, driven by the partition's (agent/vmx/plugdev.h). */
struct parley_plugin_ops {
	/* *dev set only on success; a failing init frees what it made */
	int (*init)(const struct parley_plugin_config *c, void **dev,
		    char *why, size_t n);
	int (*power_up)(void *dev, char *why, size_t n);
	/* state as save_state wrote it, with the version it gave */
	int (*load_state)(void *dev, const void *state, size_t len,
			  uint32_t version, char *why, size_t n);
	int (*run)(void *dev, char *why, size_t n);
	/* at most cap bytes into buf; *len and *version say what was put */
	int (*save_state)(void *dev, void *buf, size_t cap, size_t *len,
			  uint32_t *version, char *why, size_t n);
	int (*power_down)(void *dev, char *why, size_t n);
	void (*teardown)(void *dev);  /* frees everything; cannot fail */
};

struct parley_plugin_block_ops {
	int (*read)(void *dev, void *buf, size_t len, uint64_t off);
	int (*write)(void *dev, const void *buf, size_t len, uint64_t off);
	int (*flush)(void *dev);
};

/* len and off multiples of the configured unit; in may equal out. */
struct parley_plugin_transform_ops {
	int (*encrypt)(void *dev, const uint8_t *in, uint8_t *out, size_t len,
		       uint64_t off);
	int (*decrypt)(void *dev, const uint8_t *in, uint8_t *out, size_t len,
		       uint64_t off);
};

struct parley_plugin_console_ops {
	int (*write)(void *dev, unsigned vcpu, const char *buf, size_t len);
};

struct parley_plugin {
	uint32_t abi;                /* PARLEY_PLUGIN_ABI */
	uint32_t size;               /* sizeof(struct parley_plugin) */
	uint32_t plugin_class;       /* enum parley_plugin_class */
	const char *name;            /* as in its manifest */
	struct parley_plugin_ops ops;
	union {
		struct parley_plugin_block_ops block;
		struct parley_plugin_transform_ops transform;
		struct parley_plugin_console_ops console;
	} u;
};

#endif
