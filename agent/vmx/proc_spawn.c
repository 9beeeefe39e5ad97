/* The process engine's children: one stub process per vCPU, forked by the
 * vmm's main thread before any thread or sandbox exists, exec'd from the
 * stub executable the agent handed over, and stopped by the stub itself
 * once its own filter is in. */
#include "agent/vmx/vmm.h"
#include "agent/stub/stub.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

/* In the forked child: only async-signal-safe calls. Keep the memory fds
 * at the stub's numbers, nothing else, and become the stub. */
__attribute__((noreturn)) static void child(int stub_fd, int mem_fd,
					    int mem_ro_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Until the vCPU thread attaches (EXITKILL from then on), die with
	 * the thread that forked us: the vmm's main thread. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int a = fcntl(mem_fd, F_DUPFD, 100);
	int b = fcntl(mem_ro_fd, F_DUPFD, 100);
	int s = fcntl(stub_fd, F_DUPFD_CLOEXEC, 100);
	if (a < 0 || b < 0 || s < 0 || dup2(a, STUB_FD_MEM) < 0 ||
	    dup2(b, STUB_FD_MEM_RO) < 0)
		_exit(126);
	syscall(SYS_close_range, 0, STUB_FD_MEM - 1, 0);
	syscall(SYS_close_range, STUB_FD_MEM + 1, STUB_FD_MEM_RO - 1, 0);
	syscall(SYS_close_range, STUB_FD_MEM_RO + 1, ~0u,
		CLOSE_RANGE_CLOEXEC);
	char *argv[] = { "parley-vmm-stub", NULL };
	char *envp[] = { NULL };
	syscall(SYS_execveat, s, "", argv, envp, AT_EMPTY_PATH);
	_exit(127);
}

pid_t proc_spawn(int stub_fd, int mem_fd, int mem_ro_fd)
{
	pid_t pid = fork();
	if (pid == 0)
		child(stub_fd, mem_fd, mem_ro_fd);
	return pid;
}

/* A tracer and its stub never run at the same time (each waits for the
 * other), and a wake-up across CPUs costs several times one on the same
 * CPU on the nested machines parley runs on (measured: a hypercall 58 us
 * with the pair apart, 14-16 us together, a bare ptrace stop 12-14 us).
 * So each pair is kept on one CPU: the agent's choice for this partition
 * (ctl_launch.home_cpu, moved along by the vCPU index so that partitions
 * and the vCPUs of one partition spread out), taken among the CPUs this
 * process may use. */
static void colocate(struct vmx_vcpu *c)
{
	cpu_set_t allowed, one;
	uint32_t home = c->vm->proc.launch.home_cpu;
	if (home == CTL_NO_CPU ||
	    sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return;
	int n = CPU_COUNT(&allowed);
	if (n <= 0)
		return;
	int want = (int)((home + c->index) % (uint32_t)n), cpu = -1;
	for (int i = 0; i < CPU_SETSIZE && want >= 0; i++)
		if (CPU_ISSET(i, &allowed) && want-- == 0)
			cpu = i;
	if (cpu < 0)
		return;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	/* Best effort: a pair that stays apart is slower, not wrong. */
	if (sched_setaffinity(0, sizeof(one), &one) == 0)
		sched_setaffinity(c->proc.pid, sizeof(one), &one);
}

/* Attach from the calling (vCPU) thread once the stub has stopped itself:
 * this thread is the tracer from here on. The child dies with us
 * (EXITKILL); syscall stops are told apart from SIGTRAP (TRACESYSGOOD). */
int proc_attach(struct vmx_vcpu *c, struct parley_err *err)
{
	int st;
	pid_t pid = c->proc.pid;
	if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st))
		return perr(err, -ECHILD, "vCPU %u: the stub did not start "
			    "(status 0x%x)", c->index, st);
	if (ptrace(PTRACE_SEIZE, pid, 0,
		   PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD) < 0)
		return perr(err, -errno, "vCPU %u: PTRACE_SEIZE: %m", c->index);
	c->proc.attached = true;
	colocate(c);
	if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st))
		return perr(err, -ECHILD, "vCPU %u: no stop after attach",
			    c->index);
	if (ptrace(PTRACE_GETREGS, pid, 0, &c->proc.regs) < 0)
		return perr(err, -errno, "vCPU %u: PTRACE_GETREGS: %m",
			    c->index);
	/* The stub stopped at the site with its listener fd in rdx. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return perr(err, -errno, "pidfd_open: %m");
	c->proc.pidfd = pidfd;
	c->proc.listener = (int)syscall(SYS_pidfd_getfd, pidfd,
					(int)c->proc.regs.rdx, 0);
	if (c->proc.listener < 0)
		return perr(err, -errno, "vCPU %u: the stub's listener: %m",
			    c->index);
	return 0;
}

/* End the child, whatever state it is in, and reap it. */
void proc_end(struct vmx_vcpu *c)
{
	if (c->proc.pid <= 0)
		return;
	kill(c->proc.pid, SIGKILL);
	int st;
	while (waitpid(c->proc.pid, &st, __WALL) < 0 && errno == EINTR)
		;
	c->proc.pid = 0;
}

/* The TSC frequency for boot info, without KVM to ask: CPUID leaf 0x15
 * (crystal clock and ratio) where the CPU reports it, else measured against
 * CLOCK_MONOTONIC_RAW over 2 ms (the rate the kernel's own clock runs at;
 * error well under 0.1 %). Guests only use it to turn rdtsc into time. */
uint64_t proc_tsc_khz(void)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
			 : "a"(0));
	if (a >= 0x15) {
		__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
				 : "a"(0x15), "c"(0));
		if (a && b && c)
			return (uint64_t)c * b / a / 1000;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC_RAW, &t0);
	uint64_t c0 = __builtin_ia32_rdtsc();
	uint64_t ns;
	do {
		clock_gettime(CLOCK_MONOTONIC_RAW, &t1);
		ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000ull +
		     (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
	} while (ns < 2000000);
	uint64_t c1 = __builtin_ia32_rdtsc();
	return (c1 - c0) * 1000000ull / ns;
}
