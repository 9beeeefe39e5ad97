/* The vmm process's seccomp allowlist, applied to a forked child. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/vmx/vmm.h"

/* Enter the sandbox in a child, signal "entered" on a pipe, run `forbidden`,
 * and report how the child ended. */
static int child_status(void (*forbidden)(void), char *entered)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		if (vmx_sandbox_enter(NULL, NULL) < 0)
			_exit(3);
		char ok = 'y';
		if (write(pfd[1], &ok, 1) != 1) /* write is allowed */
			_exit(4);
		forbidden();
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

static void do_nothing_forbidden(void)
{
	syscall(SYS_getpid);
}

Test(sandbox, forbidden_syscalls_kill_the_process)
{
	void (*calls[])(void) = { do_open, do_socket, do_execve, do_fork,
				  do_ioctl_other };
	for (size_t i = 0; i < sizeof(calls) / sizeof(*calls); i++) {
		char entered;
		int st = child_status(calls[i], &entered);
		cr_assert_eq(entered, 'y', "call %zu: sandbox not entered", i);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
			  "call %zu: child not killed by SIGSYS (status 0x%x)",
			  i, st);
	}
}

Test(sandbox, allowed_syscalls_still_work)
{
	char entered;
	int st = child_status(do_nothing_forbidden, &entered);
	cr_assert_eq(entered, 'y');
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
}
