/*
 * libFuzzer target for the agent's reader of libvirt's XML
 * (agent/vm/vmxml.h): a domain's metadata element and the host's
 * capabilities. Any bytes in: a metadata element read only with a name
 * (not empty) that fits, the outputs empty otherwise; security-model bits among those
 * vmhost.h defines; no crash, no leak, no time beyond linear.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/vm/vmhost.h"
#include "agent/vm/vmxml.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *t = malloc(size + 1);
	if (!t)
		return 0;
	memcpy(t, data, size);
	t[size] = 0;
	char name[48] = "", agent[64] = "";
	int rc = vmxml_md_attrs(t, name, sizeof(name), agent, sizeof(agent));
	PARLEY_ASSERT(rc == 0 || rc == -EPROTO || rc == -EFBIG);
	PARLEY_ASSERT(strnlen(name, sizeof(name)) < sizeof(name));
	PARLEY_ASSERT(strnlen(agent, sizeof(agent)) < sizeof(agent));
	if (rc)
		PARLEY_ASSERT(!name[0] && !agent[0]);
	else
		PARLEY_ASSERT(name[0]);
	unsigned m = vmxml_sec_models(t);
	PARLEY_ASSERT(!(m & ~(unsigned)(VMHOST_SEC_SELINUX | VMHOST_SEC_APPARMOR)));
	unsigned u, g;
	(void)vmxml_kvm_label(t, &u, &g);
	free(t);
	return 0;
}
