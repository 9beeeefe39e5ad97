/*
 * libFuzzer target for the VM spec parser (agent/vm/vmspec.h): any bytes
 * in, and either a spec within every limit vmspec.h writes down or an
 * error with a message and the output zeroed. Files are looked for
 * beneath "base" only (the fuzzer's directory normally has none of them,
 * so most inputs end at the first path; the fields before it are what
 * this reaches).
 */
#include <stdint.h>
#include <string.h>

#include "agent/vm/vmspec.h"
#include "common/err.h"
#include "common/jsonv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct vm_spec *s)
{
	PARLEY_ASSERT(jv_name_valid(s->name, strlen(s->name), sizeof(s->name)));
	PARLEY_ASSERT(s->kernel[0] == '/' && s->initrd[0] == '/');
	PARLEY_ASSERT(s->mem_mib >= VMSPEC_MEM_MIN_MIB &&
		      s->mem_mib <= VMSPEC_MEM_MAX_MIB);
	PARLEY_ASSERT(s->vcpus >= 1 && s->vcpus <= VMSPEC_VCPUS_MAX);
	PARLEY_ASSERT(s->ncfg >= 1 && s->ncfg <= VMHOST_CFG_MAX);
	PARLEY_ASSERT(!strcmp(s->cfg[0].name, "run"));
	for (unsigned i = 0; i < s->ncfg; i++) {
		PARLEY_ASSERT(s->cfg[i].path[0] == '/');
		for (unsigned j = 0; j < i; j++)
			PARLEY_ASSERT(strcmp(s->cfg[i].name, s->cfg[j].name));
	}
	PARLEY_ASSERT(!strpbrk(s->cmdline_extra, "<>&'\""));
	PARLEY_ASSERT(s->accel <= VM_ACCEL_TCG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_spec s;
	struct parley_err err = { 0 };
	int rc = vmspec_parse((const char *)data, size, "base", NULL, NULL,
			      VM_ACCEL_AUTO, &s, &err);
	if (rc == 0) {
		check(&s);
	} else {
		PARLEY_ASSERT(err.code == rc && err.msg[0]);
		PARLEY_ASSERT(!s.name[0] && !s.ncfg);
	}
	err.msg[0] = 0;
	rc = vmspec_is_vm((const char *)data, size, &err);
	PARLEY_ASSERT(rc == 0 || rc == 1 || (rc < 0 && err.msg[0]));
	return 0;
}
