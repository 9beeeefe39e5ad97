/* The vmm process's seccomp allowlist, applied to a forked helper: each
 * forbidden call must kill it with SIGSYS, for the KVM filter and for the
 * process backend's, and the calls a running vmm makes must still work. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/vmx/vmm.h"

/* What the helper's calls aim at: its own stub-like child (allowed on the
 * process backend), and a process that is not its child (never allowed). */
static pid_t own_child, stranger;

static pid_t sleeper(void)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Gone with whoever made it, whatever happens to the test
		 * (also if that was before this line). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		for (;;)
			pause();
	}
	return pid;
}

/* The vm a filter is made for: none (KVM, no descriptors), or a process
 * backend vm whose one vCPU is own_child. */
static const struct vmx_vm *filter_vm(bool proc)
{
	static struct vmx_vm vm;
	if (!proc)
		return NULL;
	memset(&vm, 0, sizeof(vm));
	vm.eng = &vmx_proc_engine;
	vm.nvcpu = 1;
	vm.vm_fd = -1;
	vm.vcpu[0].fd = -1;
	vm.vcpu[0].proc.pid = own_child;
	vm.vcpu[0].proc.listener = vm.vcpu[0].proc.uffd = -1;
	return &vm;
}

/* Enter the sandbox in a helper, signal "entered" on a pipe, run `call`,
 * and report how the helper ended. */
static int child_status(bool proc, void (*call)(void), char *entered)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		if (proc)
			own_child = sleeper();
		if (vmx_sandbox_enter(filter_vm(proc), NULL) < 0)
			_exit(3);
		char ok = 'y';
		if (write(pfd[1], &ok, 1) != 1) /* write is allowed */
			_exit(4);
		call();
		if (proc)
			kill(own_child, SIGKILL); /* allowed: its own child */
		_exit(0);
	}
	close(pfd[1]);
	*entered = 0;
	if (read(pfd[0], entered, 1) != 1)
		*entered = 0;
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	return st;
}

static void do_open(void)
{
	syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
}

static void do_socket(void)
{
	syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}

static void do_execve(void)
{
	char *argv[] = { "/bin/true", NULL };
	syscall(SYS_execve, "/bin/true", argv, NULL);
}

static void do_fork(void)
{
	syscall(SYS_fork);
}

static void do_ioctl_other(void)
{
	syscall(SYS_ioctl, 0, 0x5401 /* TCGETS */, 0);
}

static void do_ioctl_set_regs(void)
{
	struct kvm_regs r;
	syscall(SYS_ioctl, 5, KVM_SET_REGS, &r);
}

static void do_tgkill_other(void)
{
	syscall(SYS_tgkill, stranger, stranger, SIGUSR1);
}

static void do_kill_other(void)
{
	syscall(SYS_kill, stranger, SIGKILL);
}

static void do_mmap_exec(void)
{
	syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void do_mprotect_exec(void)
{
	static char page[4096] __attribute__((aligned(4096)));
	syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC);
}

static void do_write_stdout(void)
{
	syscall(SYS_write, 1, "x", 1);
}

static void do_sendmsg_other(void)
{
	struct msghdr m = { 0 };
	syscall(SYS_sendmsg, 1, &m, 0);
}

static void do_ptrace_other(void)
{
	syscall(SYS_ptrace, PTRACE_ATTACH, stranger, 0, 0);
}

static void do_ptrace_poke(void)
{
	syscall(SYS_ptrace, PTRACE_POKEDATA, own_child, 0, 0);
}

static void do_wait_other(void)
{
	int st;
	syscall(SYS_wait4, stranger, &st, WNOHANG, NULL);
}

static void do_nothing_forbidden(void)
{
	syscall(SYS_getpid);
}

static void do_tgkill_own_child(void)
{
	syscall(SYS_tgkill, own_child, own_child, SIGUSR1);
}

static void do_wait_own_child(void)
{
	int st;
	syscall(SYS_wait4, own_child, &st, WNOHANG, NULL);
}

static void (*const forbidden_both[])(void) = {
	do_open, do_socket, do_execve, do_fork, do_ioctl_other,
	do_ioctl_set_regs, do_tgkill_other, do_kill_other, do_mmap_exec,
	do_mprotect_exec, do_write_stdout, do_sendmsg_other, do_ptrace_other,
	do_wait_other,
};

static void expect_fatal(bool proc, void (*const *calls)(void), size_t n)
{
	stranger = sleeper();
	for (size_t i = 0; i < n; i++) {
		char entered;
		int st = child_status(proc, calls[i], &entered);
		cr_assert_eq(entered, 'y', "call %zu: sandbox not entered", i);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
			  "%s filter, call %zu: not killed by SIGSYS (status "
			  "0x%x)", proc ? "process" : "kvm", i, st);
	}
	cr_assert_eq(kill(stranger, 0), 0, "the stranger was hit");
	kill(stranger, SIGKILL);
	waitpid(stranger, NULL, 0);
}

Test(sandbox, forbidden_syscalls_kill_the_process)
{
	expect_fatal(false, forbidden_both,
		     sizeof(forbidden_both) / sizeof(*forbidden_both));
}

Test(sandbox, process_backend_forbidden_syscalls_kill_the_process)
{
	expect_fatal(true, forbidden_both,
		     sizeof(forbidden_both) / sizeof(*forbidden_both));
	void (*const proc_only[])(void) = { do_ptrace_poke };
	expect_fatal(true, proc_only, 1);
}

Test(sandbox, allowed_syscalls_still_work)
{
	char entered;
	int st = child_status(false, do_nothing_forbidden, &entered);
	cr_assert_eq(entered, 'y');
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	void (*const ok[])(void) = { do_nothing_forbidden, do_tgkill_own_child,
				     do_wait_own_child };
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		st = child_status(true, ok[i], &entered);
		cr_assert_eq(entered, 'y');
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "process filter, call %zu: status 0x%x", i, st);
	}
}
