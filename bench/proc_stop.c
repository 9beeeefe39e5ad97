/* The process backend's baseline: the cheapest trap of a user-mode
 * `out dx,eax` a tracer can serve. A child of this process runs an endless
 * `out` to the CLOCK hypercall port; each `out` faults (#GP, no I/O
 * permission) into a SIGSEGV stop; the tracer reads the registers, steps
 * over the one-byte opcode and resumes with PTRACE_SYSEMU, as the vmm's
 * tracer does, and nothing else. proc_hypercall_vs_ptrace_stop divides the
 * real hypercall round trip by this. */
#include "bench/bench_vmx.h"
#include "agent/ctl/clock.h"
#include <parley/hypercall.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

struct proc_stop {
	pid_t pid;
};

static __attribute__((noreturn)) void child_loop(void)
{
	if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
		_exit(1);
	raise(SIGSTOP);
	for (;;)
		__asm__ volatile("outl %%eax, %%dx"
				 : : "a"(0), "d"(PARLEY_HC_PORT_BASE +
						 PARLEY_HC_CLOCK));
}

static int serve_one(pid_t pid, struct parley_err *err)
{
	int st;
	if (ptrace(PTRACE_SYSEMU, pid, 0, 0) < 0)
		return perr(err, -errno, "PTRACE_SYSEMU: %m");
	if (waitpid(pid, &st, __WALL) < 0)
		return perr(err, -errno, "waitpid: %m");
	if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGSEGV)
		return perr(err, -EPROTO, "child stopped with status 0x%x", st);
	struct user_regs_struct r;
	if (ptrace(PTRACE_GETREGS, pid, 0, &r) < 0)
		return perr(err, -errno, "PTRACE_GETREGS: %m");
	r.rip += 1;
	if (ptrace(PTRACE_SETREGS, pid, 0, &r) < 0)
		return perr(err, -errno, "PTRACE_SETREGS: %m");
	return 0;
}

int proc_stop_open(struct proc_stop **out, struct parley_err *err)
{
	struct proc_stop *x = calloc(1, sizeof(*x));
	if (!x)
		return perr(err, -ENOMEM, "out of memory");
	x->pid = fork();
	if (x->pid < 0) {
		free(x);
		return perr(err, -errno, "fork: %m");
	}
	if (x->pid == 0)
		child_loop();
	int st;
	if (waitpid(x->pid, &st, __WALL) < 0 || !WIFSTOPPED(st)) {
		proc_stop_close(x);
		return perr(err, -EPROTO, "child did not stop for its tracer");
	}
	*out = x;
	for (unsigned i = 0; i < 200; i++) { /* untimed warm-up */
		int rc = serve_one(x->pid, err);
		if (rc < 0) {
			proc_stop_close(x);
			*out = NULL;
			return rc;
		}
	}
	return 0;
}

int proc_stop_batch(struct proc_stop *x, unsigned n, double *ns_per_stop,
		    struct parley_err *err)
{
	uint64_t t0 = mono_now_ns();
	for (unsigned i = 0; i < n; i++) {
		int rc = serve_one(x->pid, err);
		if (rc < 0)
			return rc;
	}
	*ns_per_stop = (double)(mono_now_ns() - t0) / n;
	return 0;
}

void proc_stop_close(struct proc_stop *x)
{
	if (!x)
		return;
	if (x->pid > 0) {
		kill(x->pid, SIGKILL);
		waitpid(x->pid, NULL, __WALL);
	}
	free(x);
}
