/* The process engine's vCPU thread: the tracer of one stub child. It
 * attaches, sets the child up, then runs the guest under PTRACE_SYSEMU
 * (every syscall entry stops it, before the kernel runs anything) and
 * dispatches each stop. Only this thread may ptrace its child: pause,
 * stop and window changes reach it as a kick and the run state. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A kick is SIGUSR1 sent to the child while it runs guest code: it stops
 * at once and its tracer looks at the run state. Sent under vm->lock only
 * while running, so a child in its tracer's hands is never disturbed. */
void proc_kick(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	pthread_mutex_lock(&vm->lock);
	if (c->proc.running && c->proc.pid > 0)
		syscall(SYS_tgkill, c->proc.pid, c->proc.pid, SIGUSR1);
	pthread_mutex_unlock(&vm->lock);
}

uint64_t proc_rip(struct vmx_vcpu *c)
{
	return c->proc.regs.rip;
}

/* Mark the child running unless the run state says otherwise (then the
 * gate is asked again). Under vm->lock, so a pause either sees it running
 * and kicks it, or is seen here. */
static bool set_running(struct vmx_vcpu *c, bool on)
{
	struct vmx_vm *vm = c->vm;
	pthread_mutex_lock(&vm->lock);
	bool ok = !on || (atomic_load(&vm->state) == VMX_RUN && !c->halted);
	c->proc.running = on && ok;
	if (!on)
		pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

/* Run the guest until its next stop; false once the partition stopped. */
static bool run_once(struct vmx_vcpu *c)
{
	if (atomic_load(&c->proc.win_gen) != atomic_load(&c->vm->proc.win_gen) &&
	    proc_win_sync(c) < 0)
		return false;
	if (c->proc.regs_dirty &&
	    ptrace(PTRACE_SETREGS, c->proc.pid, 0, &c->proc.regs) < 0) {
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "PTRACE_SETREGS: %s",
			       strerror(errno));
		return false;
	}
	c->proc.regs_dirty = false;
	if (!set_running(c, true))
		return true;
	int st = 0;
	pid_t r = -1;
	if (ptrace(PTRACE_SYSEMU, c->proc.pid, 0, 0) == 0)
		do
			r = waitpid(c->proc.pid, &st, __WALL);
		while (r < 0 && errno == EINTR);
	set_running(c, false);
	if (r < 0) {
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "running the partition's "
			       "process: %s", strerror(errno));
		return false;
	}
	if (WIFSTOPPED(st) &&
	    ptrace(PTRACE_GETREGS, c->proc.pid, 0, &c->proc.regs) < 0) {
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "PTRACE_GETREGS: %s",
			       strerror(errno));
		return false;
	}
	return proc_dispatch(c, st);
}

void *proc_vcpu_thread(void *arg)
{
	struct vmx_vcpu *c = arg;
	struct parley_err err = { 0 };
	if (proc_attach(c, &err) < 0 ||
	    proc_setup(c, &c->vm->proc.launch, &err) < 0) {
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "%s", perr_msg(&err));
	} else {
		while (vmx_vcpu_gate(c) && run_once(c))
			;
	}
	proc_end(c);
	return NULL;
}
