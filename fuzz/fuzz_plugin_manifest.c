/*
 * libFuzzer target for plugin manifests (agent/plugin/manifest.c): any
 * bytes in, and either a manifest every field of which meets manifest.h
 * (names a plugin directory may hold, a known class, this ABI) or a
 * refusal with a printable message and a zeroed result.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "agent/plugin/manifest.h"
#include "common/err.h"
#include "common/jsonv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void printable(const char *s)
{
	for (; *s; s++)
		PARLEY_ASSERT(*s >= 0x20 && *s < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plugin_manifest m;
	struct parley_err err = { 0 };
	int rc = plugin_manifest_parse((const char *)data, size, &m, &err);
	if (rc == 0) {
		size_t n = strnlen(m.name, sizeof(m.name));
		PARLEY_ASSERT(jv_name_valid(m.name, n, sizeof(m.name)));
		n = strnlen(m.file, sizeof(m.file));
		/* a plain file name: no '/', never "." or ".." */
		PARLEY_ASSERT(jv_name_valid(m.file, n, sizeof(m.file)));
		PARLEY_ASSERT(!strchr(m.file, '/') && m.file[0] != '.');
		PARLEY_ASSERT(m.abi == PARLEY_PLUGIN_ABI);
		PARLEY_ASSERT(strcmp(plugin_class_name(m.plugin_class), "?"));
		PARLEY_ASSERT(size <= PLUGIN_MANIFEST_MAX);
	} else {
		PARLEY_ASSERT(rc == -EINVAL || rc == -E2BIG || rc == -ENOTSUP);
		PARLEY_ASSERT(err.code == rc && err.msg[0]);
		printable(err.msg);
		static const struct plugin_manifest zero;
		PARLEY_ASSERT(!memcmp(&m, &zero, sizeof(m)));
	}
	return 0;
}
