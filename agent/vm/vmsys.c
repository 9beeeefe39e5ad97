/*
 * The agent's VMs under a system libvirtd (vmhost.h: vmhost_system_check):
 * what such a daemon does differently from the embedded driver the agent
 * configures itself, learnt from the daemon at the agent's start.
 */
#include "agent/vm/vmhost.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* The <secmodel> entries of the host's capabilities: <model>NAME</model>. */
static unsigned sec_models(const char *caps)
{
	unsigned m = 0;
	for (const char *p = caps; (p = strstr(p, "<secmodel>")); p++) {
		const char *e = strstr(p, "</secmodel>");
		const char *mo = strstr(p, "<model>");
		if (!e || !mo || mo > e)
			break;
		mo += 7;
		if (!strncmp(mo, "selinux<", 8))
			m |= VMHOST_SEC_SELINUX;
		else if (!strncmp(mo, "apparmor<", 9))
			m |= VMHOST_SEC_APPARMOR;
	}
	return m;
}

int vmhost_system_check(struct vmhost *vh, struct parley_err *err)
{
	char *caps = virConnectGetCapabilities(vh->conn);
	if (!caps) {
		const char *m = virGetLastErrorMessage();
		return perr(err, -EIO, "%s: capabilities: %s", vh->uri,
			    m ? m : "libvirt error");
	}
	vh->unconfine = sec_models(caps);
	free(caps);
	return 0;
}
