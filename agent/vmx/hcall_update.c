/* The update hypercalls as the vmm process serves them: each needs the
 * grant manager (capability, the stage, the verdict), so the vCPU asks
 * and waits, as for a channel open. WRITE's buffer is checked here first
 * with the guest-pointer door (gmem_guest_r: the partition's own RAM or
 * read-only image, nothing else); a buffer that is not the partition's is
 * malice and stops it. The bytes themselves are read by the grant manager
 * through its own view after its own check (agent/ctl/ctl.h). */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <string.h>

/* Ask; false (nothing written back) if the partition stopped meanwhile. */
static bool ask(struct vmx_vcpu *c, uint32_t op, uint64_t arg, uint64_t gpa,
		uint64_t len, struct ctl_open_reply *r)
{
	struct ctl_update_req req = { .vcpu = c->index, .op = op, .arg = arg,
				      .gpa = gpa, .len = len };
	return vmx_ask_agent(c, CTL_UPDATE_REQ, &req, sizeof(req), r);
}

bool vmx_hc_update_begin(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_update_begin *a = arg;
	struct ctl_open_reply r;
	if (!ask(c, CTL_UPD_BEGIN, a->size, 0, 0, &r))
		return false;
	a->ret = r.status;
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}

bool vmx_hc_update_write(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_update_write *a = arg;
	if (a->len == 0 || a->len > PARLEY_UPDATE_CHUNK_MAX) {
		a->ret = PARLEY_E_INVAL;
		return true;
	}
	enum gmem_refusal why;
	if (!gmem_guest_r(&c->vm->gm, a->buf, a->len, 1, &why)) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, a->buf,
			       "update write: buffer 0x%llx + %llu bytes is %s",
			       (unsigned long long)a->buf,
			       (unsigned long long)a->len,
			       gmem_refusal_str(why));
		return false;
	}
	struct ctl_open_reply r;
	if (!ask(c, CTL_UPD_WRITE, a->offset, a->buf, a->len, &r))
		return false;
	a->ret = r.status;
	return true;
}

bool vmx_hc_update_commit(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_update_commit *a = arg;
	struct ctl_open_reply r;
	if (!ask(c, CTL_UPD_COMMIT, 0, 0, 0, &r))
		return false;
	a->ret = r.status;
	a->state = r.tx;
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}

bool vmx_hc_update_status(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_update_status *a = arg;
	struct ctl_open_reply r;
	if (!ask(c, CTL_UPD_STATUS, 0, 0, 0, &r))
		return false;
	a->ret = r.status;
	a->state = r.tx;
	a->received = r.gpa;
	a->size = r.size;
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}
