/* The process engine: a partition whose vCPUs are ptrace'd stub processes
 * sharing guest memory through its memfds (DESIGN.md §4, Backends). Here:
 * creating the children, the engine table, and channel windows, which each
 * vCPU thread brings into its own child before it next runs it. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int proc_create(struct vmx_vm *vm, int stub_fd, int mem_fd,
		       int mem_ro_fd, const struct ctl_launch *l,
		       struct parley_err *err)
{
	vm->kvm_fd = stub_fd;
	vm->proc.launch = *l;
	vm->tsc_khz = proc_tsc_khz();
	int rc = proc_dirty_init(vm);
	if (rc < 0)
		return perr(err, rc, "dirty tracking: %s", strerror(-rc));
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		vm->vcpu[i].proc.pid = proc_spawn(stub_fd, mem_fd, mem_ro_fd);
		if (vm->vcpu[i].proc.pid < 0) {
			vm->vcpu[i].proc.pid = 0;
			return perr(err, -errno, "fork: %m");
		}
	}
	/* The children have exec'd it; nothing else needs the stub. */
	close(stub_fd);
	vm->kvm_fd = -1;
	return 0;
}

static void win_fds_close(struct proc_win *pw)
{
	for (unsigned j = 0; j < CTL_MAP_MEMS_MAX; j++) {
		if (pw->mem[j] >= 0)
			close(pw->mem[j]);
		pw->mem[j] = -1;
	}
	pw->handle = 0;
}

static void proc_destroy(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->proc.pid > 0) { /* never attached: not ours to reap */
			kill(c->proc.pid, SIGKILL);
			c->proc.pid = 0;
		}
		if (c->proc.pidfd >= 0)
			close(c->proc.pidfd);
		if (c->proc.listener >= 0)
			close(c->proc.listener);
		c->proc.pidfd = c->proc.listener = -1;
	}
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		win_fds_close(&vm->proc.win[i]);
	proc_dirty_fini(vm);
}

/* Keep the window's memory fds (our copies) for the children to map. */
static int proc_win_map(struct vmx_vm *vm, unsigned slot, struct vmx_window *w,
			const struct ctl_map *m, const int *mem)
{
	struct proc_win *pw = &vm->proc.win[slot];
	win_fds_close(pw);
	for (unsigned j = 0; j < m->nmem; j++) {
		pw->mem[j] = fcntl(mem[j], F_DUPFD_CLOEXEC, 0);
		if (pw->mem[j] < 0) {
			int rc = -errno;
			win_fds_close(pw);
			return rc;
		}
	}
	pw->map = *m;
	pw->handle = m->handle;
	w->gpa = m->gpa;
	w->size = m->size;
	w->nseg = m->nseg;
	for (unsigned i = 0; i < m->nseg; i++)
		w->ro[i] = m->seg[i].readonly;
	atomic_fetch_add(&vm->proc.win_gen, 1);
	return 0;
}

static void proc_win_unmap(struct vmx_vm *vm, unsigned slot,
			   struct vmx_window *w)
{
	win_fds_close(&vm->proc.win[slot]);
	w->nseg = 0;
	atomic_fetch_add(&vm->proc.win_gen, 1);
}

static bool lagging(struct vmx_vm *vm, uint64_t gen)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->started && c->proc.running &&
		    atomic_load(&c->proc.win_gen) < gen)
			return true;
	}
	return false;
}

/* Wait until no child runs guest code with a window that went: each one
 * running is kicked, and its tracer brings it up to date before it runs
 * again. A child stopped in its tracer's hands cannot touch memory. */
static void proc_win_settle(struct vmx_vm *vm)
{
	uint64_t gen = atomic_load(&vm->proc.win_gen);
	for (unsigned i = 0; i < vm->nvcpu; i++)
		if (vm->vcpu[i].started)
			proc_kick(&vm->vcpu[i]);
	pthread_mutex_lock(&vm->lock);
	while (lagging(vm, gen))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

/* No ioeventfd: the doorbell port is served by the vCPU thread
 * (vmx_doorbell_slow rings the peer). */
static int proc_doorbell(struct vmx_vm *vm, const struct vmx_window *w,
			 uint64_t handle, bool assign)
{
	(void)vm, (void)w, (void)handle, (void)assign;
	return 0;
}

const struct vmx_engine vmx_proc_engine = {
	.name = "process",
	.create = proc_create,
	.destroy = proc_destroy,
	.vcpu_restore = proc_vcpu_restore,
	.vcpu_save = proc_vcpu_save,
	.vcpu_thread = proc_vcpu_thread,
	.kick = proc_kick,
	.settle = proc_vcpu_settle,
	.win_map = proc_win_map,
	.win_unmap = proc_win_unmap,
	.win_settle = proc_win_settle,
	.doorbell = proc_doorbell,
	.dirty = proc_dirty,
	.rip = proc_rip,
};
