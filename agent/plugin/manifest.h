/*
 * One plugin manifest: a JSON file of the manifest directory naming one
 * plugin (agent/plugin/README.md):
 *
 *   {"name": "xts", "class": "transform", "abi": 1,
 *    "file": "parley-plugin-xts.so", "sha256": "<64 lower-case hex>"}
 *
 * Every field required, no other field; name a plugin name
 * ([A-Za-z0-9_.-], not starting with '.' or '-', < 32 bytes), class one of
 * "block", "transform", "console", abi this agent's PARLEY_PLUGIN_ABI,
 * file a plain file name in the plugin directory (same characters, < 128
 * bytes), sha256 the file's digest. Messages quote hostile text safely.
 */
#ifndef PARLEY_AGENT_PLUGIN_MANIFEST_H
#define PARLEY_AGENT_PLUGIN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "agent/plugin/plugin.h"
#include "common/err.h"

#define PLUGIN_MANIFEST_MAX 4096   /* bytes of one manifest file */
#define PLUGIN_FILE_MAX 128        /* with the NUL */

struct plugin_manifest {
	char name[PARLEY_PLUGIN_NAME_MAX];
	uint32_t plugin_class;     /* enum parley_plugin_class */
	uint32_t abi;
	char file[PLUGIN_FILE_MAX];
	uint8_t sha256[32];
};

/* Parse len bytes of JSON into *m: 0, or -EINVAL (-E2BIG over
 * PLUGIN_MANIFEST_MAX, -ENOTSUP for another ABI) with err saying why;
 * *m is zeroed on failure. */
int plugin_manifest_parse(const char *json, size_t len,
			  struct plugin_manifest *m, struct parley_err *err);
/* "block", "transform", "console", or "?" */
const char *plugin_class_name(uint32_t plugin_class);

#endif
