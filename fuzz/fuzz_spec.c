/*
 * libFuzzer target for the partition spec parser: any bytes in, and either
 * a spec that meets every limit in agent/spec.h or an error with a message
 * and nothing left allocated (ASan's leak checker sees the rest). The same
 * bytes also go through parse_size, which specs reach with "memory".
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/beneath.h"
#include "agent/spec.h"
#include "common/err.h"
#include "common/size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_spec(const struct part_spec *s)
{
	size_t n = strnlen(s->name, sizeof(s->name));
	PARLEY_ASSERT(n >= 1 && n < sizeof(s->name));
	PARLEY_ASSERT(s->name[0] != '.' && s->name[0] != '-');
	PARLEY_ASSERT(s->image && s->image[0]);
	/* paths are relative and free of "..", as the agent opens them */
	PARLEY_ASSERT(beneath_check(s->image, "image", NULL) == 0);
	PARLEY_ASSERT(s->base_dir);
	PARLEY_ASSERT(s->mem_bytes >= PARLEY_MEM_MIN &&
		      s->mem_bytes <= PARLEY_MEM_MAX);
	PARLEY_ASSERT(s->mem_bytes % SPEC_MEM_ALIGN == 0);
	PARLEY_ASSERT(s->vcpus >= 1 && s->vcpus <= PARLEY_VCPUS_MAX);
	PARLEY_ASSERT(s->nconfig <= PARLEY_CONFIG_FILES_MAX);
	for (unsigned i = 0; i < s->nconfig; i++) {
		const struct part_config_spec *c = &s->config[i];
		n = strnlen(c->name, sizeof(c->name));
		PARLEY_ASSERT(n >= 1 && n < sizeof(c->name));
		PARLEY_ASSERT(!strchr(c->name, '/'));
		PARLEY_ASSERT(c->path && c->path[0]);
		PARLEY_ASSERT(beneath_check(c->path, "path", NULL) == 0);
		for (unsigned j = 0; j < i; j++)
			PARLEY_ASSERT(strcmp(c->name, s->config[j].name));
	}
	PARLEY_ASSERT(strnlen(s->cmdline, sizeof(s->cmdline)) <
		      sizeof(s->cmdline));
}

static void fuzz_size(const uint8_t *data, size_t size)
{
	char *str = malloc(size + 1);
	if (!str)
		return;
	memcpy(str, data, size);
	str[size] = '\0';
	uint64_t v;
	int rc = parse_size(str, &v);
	PARLEY_ASSERT(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	free(str);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct part_spec s;
	struct parley_err err = { 0 };
	int rc = spec_parse((const char *)data, size, "base", &s, &err);
	if (rc == 0) {
		check_spec(&s);
	} else {
		PARLEY_ASSERT(err.code == rc && err.msg[0]);
		PARLEY_ASSERT(!s.image && !s.base_dir && !s.nconfig);
	}
	spec_free(&s);
	fuzz_size(data, size);
	return 0;
}
