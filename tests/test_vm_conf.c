/* A system libvirtd's qemu.conf as the agent reads it (agent/vm/vmsys.c,
 * vmhost_conf_int): the daemon's file, hostile bytes as far as the agent
 * is concerned. Only a setting written as libvirt writes it counts, the
 * last one wins, and nothing else of the file can pass for it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/vm/vmhost.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

#define KEY "seccomp_sandbox"

Test(vm_conf, settings_as_libvirt_writes_them)
{
	cr_assert_eq(vmhost_conf_int("", KEY, 1), 1);
	cr_assert_eq(vmhost_conf_int(KEY " = 0\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int("  " KEY "\t=\t0  # off\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int(KEY "=0", KEY, 1), 0);   /* no newline */
	cr_assert_eq(vmhost_conf_int(KEY " = 0\r\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int(KEY " = 0\n" KEY " = 1\n", KEY, 5), 1);
	cr_assert_eq(vmhost_conf_int(KEY " = -1\n", KEY, 1), -1);
}

Test(vm_conf, nothing_else_passes_for_a_setting)
{
	static const char *not_it[] = {
		"# " KEY " = 0\n",               /* a comment */
		KEY "_x = 0\n",                  /* a longer key */
		"x" KEY " = 0\n",                /* a key that ends with it */
		KEY " 0\n",                      /* no = */
		KEY " = \n",                     /* no number */
		KEY " = 0x0\n",                  /* not decimal */
		KEY " = 0abc\n",                 /* junk after it */
		KEY " = \"0\"\n",                /* a string */
		"x = 1 " KEY " = 0\n",           /* not at the line's start */
	};
	for (size_t i = 0; i < sizeof(not_it) / sizeof(not_it[0]); i++)
		cr_assert_eq(vmhost_conf_int(not_it[i], KEY, 7), 7, "%s",
			     not_it[i]);
	/* a NUL ends the text: what follows it is not read */
	static const char nul[] = KEY " = 1\n\0" KEY " = 0\n";
	cr_assert_eq(vmhost_conf_int(nul, KEY, 7), 1);
	/* a huge number does not wrap to something else silently: strtol
	 * saturates, and a saturated value is not 0 */
	cr_assert_neq(vmhost_conf_int(KEY " = 99999999999999999999999\n",
				      KEY, 7), 0);
	/* a long file of junk lines and one real setting at its end */
	static char big[1 << 16];
	memset(big, 'x', sizeof(big) - 64);
	for (size_t i = 80; i < sizeof(big) - 64; i += 81)
		big[i] = '\n';
	strcpy(big + sizeof(big) - 64, "\n" KEY " = 0\n");
	cr_assert_eq(vmhost_conf_int(big, KEY, 7), 0);
}

/* The daemon behind a socket, asked as vmhost_system_check asks it: a
 * listener this test starts (root: its qemu.conf read where it sees it,
 * the same root here); one that listens as another uid (refused before
 * anything is read); and one whose listening process is gone, its socket
 * kept by a child (refused: its pid may be another process's by now —
 * before, /proc/PID/root/... of a gone pid read as "no qemu.conf"). */
/* A process listening on path as uid; gone: the one that listened has
 * exited, a child of its keeps the socket. The pid of the one left (the
 * test's to kill). */
static pid_t listener(const char *path, uid_t uid, bool gone)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    (uid && setresuid(uid, uid, uid) < 0) || listen(s, 8) < 0)
			_exit(1);
		if (gone && fork() != 0)
			_exit(0); /* the child keeps the socket */
		/* ended by the test; by the alarm (the survivor's own: fork
		 * does not pass it on) if an assertion ended the test first —
		 * no death signal, the grandchild's parent exits on purpose */
		alarm(60);
		pid_t me = getpid();
		if (write(p[1], &me, sizeof(me)) != sizeof(me))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	pid_t left;
	cr_assert_eq(read(p[0], &left, sizeof(left)), sizeof(left),
		     "the listener did not start");
	close(p[0]);
	if (gone)
		waitpid(pid, NULL, 0); /* its pid is free from here on */
	return left;
}

static void stop_listener(pid_t pid, bool child)
{
	kill(pid, SIGKILL);
	if (child) /* ours: reaped here (a grandchild is init's) */
		waitpid(pid, NULL, 0);
}

Test(vm_conf, the_daemon_behind_the_socket)
{
	/* A capability of the runner (PARLEY_REQUIRE=root: a failure). */
	if (geteuid() != 0 && t_required("root"))
		cr_assert_fail("PARLEY_REQUIRE=root, but not run as root");
	if (geteuid() != 0)
		cr_skip_test("needs root (a root listener; one as uid 65534)");
	char *dir = t_tmpdir(), sock[PATH_MAX];
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	pid_t lp = listener(sock, 0, false);
	pid_t pid = 0;
	char *conf = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(vmhost_daemon_conf(sock, &pid, &conf, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(pid, lp);
	cr_assert(conf);
	uint8_t *want = NULL;
	size_t wl = 0;
	if (file_read_all("/etc/libvirt/qemu.conf", 1 << 20, &want, &wl,
			  &err) == 0)
		cr_assert_str_eq(conf, (char *)want);
	else
		cr_assert_str_eq(conf, "");
	free(want);
	free(conf);
	stop_listener(lp, true);
	unlink(sock);
	/* not root */
	lp = listener(sock, 65534, false);
	err = (struct parley_err){ 0 };
	cr_assert_eq(vmhost_daemon_conf(sock, &pid, &conf, &err), -EPERM);
	cr_assert(strstr(err.msg, "uid 65534"), "%s", err.msg);
	cr_assert_null(conf);
	stop_listener(lp, true);
	unlink(sock);
	/* the process that listened is gone */
	lp = listener(sock, 0, true);
	err = (struct parley_err){ 0 };
	int rc = vmhost_daemon_conf(sock, &pid, &conf, &err);
	cr_assert(rc == -ESRCH || rc == -ENOENT, "%d %s", rc, err.msg);
	cr_assert_null(conf);
	stop_listener(lp, false);
	t_rmtree(dir);
	free(dir);
}
