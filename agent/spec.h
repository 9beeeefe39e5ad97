/*
 * Partition specs: the JSON file given to `parley-agent run SPEC...` that
 * says what to run (image), with how much memory and how many vCPUs, which
 * key configuration files to lay into the config region, and the command
 * line. A spec is untrusted input: everything is checked here, once, so the
 * rest of the agent can rely on the limits written beside each field.
 *
 * Paths ("image", config "path") are relative and have no ".." component
 * (refused here, naming the field); the agent opens them beneath its
 * allowed directories only (agent/beneath.h): for a spec file, the file's
 * own directory, then --image-dir (images) or --config-dir (config files);
 * for a spec the daemon sent, only --image-dir and --config-dir.
 *
 *   {
 *     "name": "hello",                  required
 *     "image": "hello.elf",             required
 *     "memory": "16M",                  size string or integer bytes
 *     "vcpus": 1,
 *     "config": [ {"name": "motd", "path": "motd.txt"} ],
 *     "cmdline": "exit=0",
 *     "capabilities": ["update"]        optional: may stream agent
 *                                       updates (agent/update)
 *     "disks": [ {"name": "data",       optional: block devices
 *                 "path": "data.img",   beneath --disk-dir (made at size
 *                 "size": "64M",        if missing), or the spec's dir
 *                 "sector_size": 512,   512 (default) or 4096
 *                 "read_only": false,
 *                 "encryption": {"cipher": "aes-xts-plain64",
 *                                "key": "data.key"}} ]   a key file
 *                                (run; under serve the daemon's
 *                                bundle has the key: no "key")
 *   }
 */
#ifndef PARLEY_AGENT_SPEC_H
#define PARLEY_AGENT_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/abi.h>
#include <parley/blk.h>
#include "common/err.h"

/* Specs are a few hundred bytes; the cap keeps a hostile file from making the
 * parser allocate without bound. */
#define SPEC_FILE_MAX    (64 * 1024)
/* Longest image or config path accepted (PATH_MAX, NUL included). */
#define SPEC_PATH_MAX    4096
#define SPEC_MEM_DEFAULT (16ull << 20)
/* Guest RAM is mapped with 2 MiB pages, so sizes come in whole pages. */
#define SPEC_MEM_ALIGN   (2ull << 20)

/* Capabilities a spec may grant its partition. */
#define SPEC_CAP_UPDATE 0x1u      /* the UPDATE_* hypercalls */

struct part_config_spec {
	char name[PARLEY_CONFIG_NAME_MAX]; /* as the partition sees it */
	char *path;                        /* as written: relative, no ".." */
};

/* Largest disk: 1 TiB. */
#define SPEC_DISK_SIZE_MAX (1ull << 40)

struct part_disk_spec {
	char name[PARLEY_DISK_NAME_MAX];  /* as the partition sees it */
	char *path;               /* relative, no "..": the backing file */
	uint64_t size;            /* bytes, a multiple of sector_size */
	uint32_t sector_size;     /* 512 or 4096 */
	bool read_only;
	bool encrypted;           /* aes-xts-plain64 */
	char *key;                /* encrypted: the key file, relative;
				   * NULL: the key comes from the daemon */
};

struct part_spec {
	char name[64];            /* 1..63 chars of [A-Za-z0-9_.-], not starting with '.' or '-' */
	char *image;              /* as written: relative, no ".." */
	char *base_dir;           /* directory of the spec file ("." for spec_parse callers passing NULL);
				   * NULL for a spec from the daemon, which has none */
	uint64_t mem_bytes;       /* PARLEY_MEM_MIN..PARLEY_MEM_MAX, multiple of 2 MiB */
	uint32_t vcpus;           /* 1..PARLEY_VCPUS_MAX, default 1 */
	unsigned nconfig;         /* 0..PARLEY_CONFIG_FILES_MAX */
	struct part_config_spec config[PARLEY_CONFIG_FILES_MAX];
	char cmdline[PARLEY_CMDLINE_MAX]; /* default "" */
	uint32_t caps;            /* SPEC_CAP_*, default none */
	unsigned ndisk;           /* 0..PARLEY_DISKS_MAX */
	struct part_disk_spec disk[PARLEY_DISKS_MAX];
};

/*
 * Parse and validate a spec from json[0..len) (need not be NUL-terminated).
 * base_dir may be NULL (= "."): where the spec's files are looked for first.
 * On success *out owns its strings until spec_free(). On error *out is all
 * zeroes (nothing allocated, spec_free() harmless) and err names the field.
 * Returns 0, -EFBIG (more than SPEC_FILE_MAX bytes), -ENOMEM, or -EINVAL for
 * anything else wrong with the spec.
 */
int spec_parse(const char *json, size_t len, const char *base_dir,
	       struct part_spec *out, struct parley_err *err);

/*
 * Read a spec file (at most SPEC_FILE_MAX bytes) and parse it with base_dir
 * = the file's directory (as written in `path`, not made absolute). Errors
 * carry the path; file errors return the negative errno of the failed call.
 */
int spec_load(const char *path, struct part_spec *out, struct parley_err *err);

/* A spec the daemon sent: as spec_parse, with no directory of its own
 * (base_dir NULL), so its files come only from the configured dirs. */
int spec_parse_daemon(const char *json, size_t len, struct part_spec *out,
		      struct parley_err *err);

/* Free what spec_parse()/spec_load() allocated and zero *s; safe on a zeroed
 * or already freed spec and on NULL. */
void spec_free(struct part_spec *s);

#endif
