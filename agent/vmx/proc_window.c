/* Channel windows inside a process-backend child: brought up to date by
 * its own tracer (the only thread that may inject) whenever the window
 * generation moved, before the child runs again. Windows that went are
 * unmapped first, then new ones mapped segment by segment from their own
 * memory fds -- read-only sections PROT_READ from read-only fds, so the
 * kernel refuses a write whatever the vmm does -- and the fds closed in the
 * child at once. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static int drop_gone(struct vmx_vcpu *c)
{
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++) {
		struct proc_mapped *m = &c->proc.mapped[i];
		if (!m->handle || m->handle == c->vm->proc.win[i].handle)
			continue;
		int rc = proc_unmap_at(c, m->gpa, m->size);
		if (rc < 0)
			return rc;
		m->handle = 0;
	}
	return 0;
}

static int map_one(struct vmx_vcpu *c, unsigned slot)
{
	const struct proc_win *pw = &c->vm->proc.win[slot];
	const struct ctl_map *m = &pw->map;
	int fds[CTL_MAP_MEMS_MAX];
	int rc = proc_give_fds(c, pw->mem, m->nmem, fds);
	for (unsigned i = 0; rc == 0 && i < m->nseg; i++) {
		int prot = PROT_READ | (m->seg[i].readonly ? 0 : PROT_WRITE);
		rc = proc_map_at(c, m->gpa + m->seg[i].off, m->seg[i].len, prot,
				 fds[m->seg[i].mem], m->seg[i].file_off);
	}
	int rc2 = proc_close_all(c); /* the child keeps no descriptor */
	if (rc < 0 || rc2 < 0) {
		proc_unmap_at(c, m->gpa, m->size);
		return rc < 0 ? rc : rc2;
	}
	c->proc.mapped[slot] = (struct proc_mapped){ pw->handle, m->gpa,
						     m->size };
	return 0;
}

int proc_win_sync(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	pthread_mutex_lock(&vm->win_lock);
	uint64_t gen = atomic_load(&vm->proc.win_gen);
	int rc = drop_gone(c);
	for (unsigned i = 0; rc == 0 && i < CTL_WIN_SLOTS; i++)
		if (vm->proc.win[i].handle &&
		    c->proc.mapped[i].handle != vm->proc.win[i].handle)
			rc = map_one(c, i);
	if (rc == 0)
		atomic_store(&c->proc.win_gen, gen);
	pthread_mutex_unlock(&vm->win_lock);
	if (rc < 0)
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "bringing channel "
			       "windows into the partition's process: %s",
			       strerror(-rc));
	return rc;
}
