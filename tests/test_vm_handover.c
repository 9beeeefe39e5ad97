/*
 * A live update of the agent (hand-over: agent/update_commit.h) with a
 * Linux VM running, through the real `parley-agent run`: a thin partition
 * ping streams checksummed messages to the VM's `parley-chan pong -w -r`,
 * and two thin partitions ta -> tb exchange messages on a channel of
 * their own. A hand-over that rolls back leaves the old agent serving the
 * VM; one that commits leaves the same QEMU running, adopted by the new
 * agent from libvirt, the guest re-joins its channel and the stream goes
 * on, checksummed, from where it was. Real VM under TCG unless
 * PARLEY_VM_ACCEL says otherwise (as vm_agent's other tests).
 *
 * The test process is a child subreaper: the new agent (started by the
 * old one, which exits), the vmm processes and QEMU (daemonized by
 * libvirt) become its children.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm/vmhost.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

#define VM_DIR PARLEY_BUILD_DIR "/vm"

static char *cur_dir;

/* No VM outlives its test, even one an assertion ended early. */
/* A test an assertion ended: the agents (ours, as children or, after the
 * hand-over, reparented to us, the subreaper) and their vmms killed by
 * pid, the VM destroyed, the state directory removed. */
static void fini(void)
{
	struct vmhost vh;
	struct parley_err err = { 0 };
	if (!cur_dir)
		return;
	t_kill_children();
	if (vmhost_open(&vh, cur_dir, NULL, &err) == 0) {
		vmhost_destroy(&vh, "guest", &err);
		vmhost_close(&vh);
	}
	t_kill_children(); /* (QEMU too, if libvirt's destroy left it ours) */
	t_rmtree(cur_dir);
	cur_dir = NULL;
}



/* Wait up to secs for `needle` n times in the file after byte `from`;
 * the text then (caller frees), or the test fails showing it. */
static char *await_in(const char *path, size_t from, const char *needle,
		      int n, int secs)
{
	for (int i = 0; i < secs * 10; i++) {
		char *s = t_slurp(path);
		if (strlen(s) >= from && t_count(s + from, needle) >= n)
			return s;
		free(s);
		usleep(100000);
	}
	char *s = t_slurp(path);
	cr_assert_fail("no %d x \"%s\" in %s after byte %zu within %d s:\n%s",
		       n, needle, path, from, secs, s);
	return s;
}

static void put(const char *dir, const char *name, const char *text)
{
	free(t_write(dir, name, text, strlen(text)));
}

/* The stage's parley-agent: `agent` (a symlink), replaced. */
static void stage_agent(const char *dir, const char *agent)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/stage/parley-agent", dir);
	unlink(p);
	cr_assert_eq(symlink(agent, p), 0);
}

static int qemu_pid(const char *dir)
{
	char pp[600];
	snprintf(pp, sizeof(pp), "%s/libvirt/run/qemu/" VMHOST_PREFIX
		 "guest.pid", dir);
	FILE *f = fopen(pp, "r");
	int pid = 0;
	if (f && fscanf(f, "%d", &pid) != 1)
		pid = 0;
	if (f)
		fclose(f);
	return pid;
}

/* One line from the monitor (QMP answers are single lines). */
static char *qmp_line(FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	for (;;) {
		if (getline(&line, &cap, f) < 0) {
			if (errno == EINTR && !feof(f)) {
				clearerr(f); /* a child of ours ended */
				continue;
			}
			free(line);
			return NULL;
		}
		if (!strstr(line, "\"event\""))
			return line; /* events skipped */
	}
}

/* The section devices plugged into the VM (query-pci through the agents'
 * own QMP monitor, STATE/vm/guest.mon/qmp, free once the agent holding it
 * is gone; no libvirt in this process: ids pld<agent pid>h<handle>
 * s<section>): how many an agent with pid `pid` plugged, and how many in
 * all. */
/* The channel devices in the VM (query-pci): how many, and of how many
 * agents (the number after "pld" in an id is its agent's mark: random,
 * vmmgr's nonce). */
/* query-pci's answer through a fresh monitor connection, or NULL (QEMU
 * closed it: the previous connection of this test, or of the agent it
 * killed, not yet seen to end). */
static char *query_pci(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0,
		     "%s: %s", path, strerror(errno));
	FILE *f = fdopen(fd, "r+");
	cr_assert(f);
	char *l = qmp_line(f); /* the greeting */
	free(l);
	fputs("{\"execute\":\"qmp_capabilities\"}\n", f);
	fflush(f);
	l = qmp_line(f);
	bool ok = l && strstr(l, "\"return\"");
	free(l);
	l = NULL;
	if (ok) {
		fputs("{\"execute\":\"query-pci\"}\n", f);
		fflush(f);
		l = qmp_line(f);
	}
	fclose(f);
	return l;
}

static void devices(const char *dir, int *agents, int *all)
{
	int marks[16], nm = 0;
	char path[700];
	snprintf(path, sizeof(path), "%s/vm/guest.mon/qmp", dir);
	*agents = *all = 0;
	char *l = NULL;
	for (int t = 0; t < 20 && !(l = query_pci(path)); t++)
		usleep(100000);
	cr_assert(l && strstr(l, "\"return\""), "%s", l ? l : "(none)");
	json_t *j = json_loads(l, 0, NULL), *bus, *d;
	free(l);
	size_t bi, di;
	json_array_foreach(json_object_get(j, "return"), bi, bus)
		json_array_foreach(json_object_get(bus, "devices"), di, d) {
			const char *id = json_string_value(
				json_object_get(d, "qdev_id"));
			int p;
			if (!id || sscanf(id, "pld%dh", &p) != 1)
				continue;
			(*all)++;
			bool seen = false;
			for (int k = 0; k < nm; k++)
				seen = seen || marks[k] == p;
			if (!seen && nm < 16)
				marks[nm++] = p;
		}
	json_decref(j);
	*agents = nm;
}

Test(vm_agent, hand_over_with_a_vm_running, .timeout = 480, .fini = fini)
{
	cr_assert(access(VM_DIR "/initramfs.gz", R_OK) == 0 &&
		  access(VM_DIR "/vmlinuz", R_OK) == 0,
		  "no VM kernel/initramfs in " VM_DIR " (./dev deps, then build)");
	setenv("PARLEY_VM_ACCEL", getenv("PARLEY_VM_ACCEL") ?
	       getenv("PARLEY_VM_ACCEL") : "tcg", 1);
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	char *dir = t_tmpdir();
	cur_dir = dir;
	char p[700];
	snprintf(p, sizeof(p), "%s/stage", dir);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/stage/parley-vmm", dir);
	cr_assert_eq(symlink(T_VMM, p), 0);
	snprintf(p, sizeof(p), "%s/stage", dir);
	put(p, "manifest.json", "{\"version\":\"9.9.9-test\"}");
	/* First a new binary that refuses to adopt a partition: the old
	 * agent stops serving, passes its state, and rolls back. */
	char wrap[1200];
	snprintf(wrap, sizeof(wrap), "#!/bin/sh\nPARLEY_TEST_HANDOVER_FAULT="
		 "adopt exec %s \"$@\"\n", T_BIN("parley-agent-next"));
	put(dir, "adopt-fault.sh", wrap);
	snprintf(p, sizeof(p), "%s/adopt-fault.sh", dir);
	cr_assert_eq(chmod(p, 0755), 0);
	stage_agent(dir, p);
	put(dir, "run.sh", "parley-chan open pingpong || exit 1\n"
			   "parley-chan pong pingpong 2000000000 -w -r\n"
			   "echo SCRIPT-END\n");
	put(dir, "app.conf", "mode=calm\n");
	put(dir, "guest.json",
	    "{\"kind\":\"vm\",\"name\":\"guest\",\"kernel\":\"vmlinuz\","
	    "\"initramfs\":\"initramfs.gz\",\"memory\":\"128M\","
	    "\"config\":[{\"name\":\"app.conf\",\"path\":\"app.conf\"},"
	    "{\"name\":\"run\",\"path\":\"run.sh\"}]}");
	put(dir, "ping.json", "{\"name\":\"ping\",\"image\":\"ping.elf\","
	    "\"memory\":\"8M\",\"cmdline\":\"count=2000000000 report=200\"}");
	/* ta sends tb one message every 3 s for about 150 s (no spinning
	 * pair: the VM's TCG needs the CPUs; the VM may take 90 s to boot on
	 * a loaded machine); each one checked by tb. */
	char steps[1100] = "open:tt";
	for (int i = 0; i < 50; i++)
		strcat(steps, ",send:0:1,sleep:3000");
	char spec[1300];
	snprintf(spec, sizeof(spec), "{\"name\":\"ta\",\"image\":"
		 "\"chantest.elf\",\"memory\":\"8M\",\"cmdline\":\"steps=%s\"}",
		 steps);
	put(dir, "ta.json", spec);
	snprintf(steps, sizeof(steps), "open:tt");
	for (int i = 0; i < 50; i++)
		strcat(steps, ",recv:0:1");
	snprintf(spec, sizeof(spec), "{\"name\":\"tb\",\"image\":"
		 "\"chantest.elf\",\"memory\":\"8M\",\"cmdline\":\"steps=%s\"}",
		 steps);
	put(dir, "tb.json", spec);
	put(dir, "policy.json",
	    "{\"grants\":[{\"channel\":\"pingpong\",\"endpoint_a\":\"ping\","
	    "\"endpoint_b\":\"guest\",\"direction\":\"both\",\"ring_bytes\":"
	    "\"64K\",\"require_integrity\":true},{\"channel\":\"tt\","
	    "\"endpoint_a\":\"ta\",\"endpoint_b\":\"tb\",\"direction\":"
	    "\"both\",\"ring_bytes\":\"64K\"}]}");
	char out[600], audit[600], console[600];
	snprintf(out, sizeof(out), "%s/run.out", dir);
	snprintf(audit, sizeof(audit), "%s/audit.jsonl", dir);
	snprintf(console, sizeof(console), "%s/vm/guest.console", dir);
	pid_t self = getpid();
	pid_t old = fork();
	cr_assert_geq(old, 0);
	if (old == 0) {
		t_child_dies_with_parent(self);
		if (chdir(dir) < 0)
			_exit(127);
		int fd = open("run.out", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(T_AGENT, T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
		      PARLEY_BUILD_DIR "/guest", "--image-dir", VM_DIR,
		      "--state-dir", dir, "--policy", "policy.json", "--audit",
		      "audit.jsonl", "--update-stage", "stage",
		      "--update-timeout", "60", "ping.json", "ta.json",
		      "tb.json", "guest.json", (char *)NULL);
		_exit(127);
	}
	/* The VM answers ping. */
	char *s = await_in(out, 0, "ping| ping: ", 1, 300);
	free(s);
	int qpid = qemu_pid(dir);
	cr_assert_gt(qpid, 0);

	/* The hand-over that rolls back: the old agent serves on, the VM's
	 * stream with it. */
	kill(old, SIGUSR1);
	s = await_in(out, 0, "update rolled back", 1, 120);
	cr_assert(strstr(s, "refused"), "%s", s);
	size_t at = strlen(s);
	free(s);
	s = await_in(out, at, "ping| ping: ", 3, 120);
	free(s);
	cr_assert_eq(waitpid(old, NULL, WNOHANG), 0, "the old agent ended");

	/* The hand-over that commits. */
	stage_agent(dir, T_BIN("parley-agent-next"));
	s = t_slurp(out);
	at = strlen(s);
	free(s);
	kill(old, SIGUSR1);
	s = await_in(out, at, "handed over to pid ", 1, 120);
	const char *h = strstr(s + at, "handed over to pid ");
	pid_t np = (pid_t)atoi(h + strlen("handed over to pid "));
	cr_assert(strstr(s + at, "1 VM(s) left running for pid"), "%s", s);
	free(s);
	int st = 0;
	cr_assert_eq(waitpid(old, &st, 0), old);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old: %#x", st);
	s = await_in(out, at, "+next took over from", 1, 60);
	cr_assert(strstr(s + at, "1 adopted from libvirt"), "%s", s);
	at = strstr(s + at, "+next took over from") - s;
	fprintf(stderr, "RECORD %.*s\n", (int)strcspn(s + at, "\n"), s + at);
	free(s);
	/* The guest re-joins its channel under the new agent; ping's
	 * counter rises on (it checks every reply's sequence and checksum,
	 * pong every message's: either stops at a damaged one). */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *c = await_in(console, 0, "REOPENED pingpong", 1, 120);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* For the record (not asserted): how long the guest's stream waited
	 * after the new agent said it took over, and the guest's own times
	 * (from losing its agent: found the new one, opened, mapped). */
	const char *rl = strstr(c, "REOPENED pingpong");
	fprintf(stderr, "RECORD guest re-opened %.1f s after the new agent "
		"took over: %.*s\n", (double)(t1.tv_sec - t0.tv_sec) +
		(double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
		(int)strcspn(rl, "\r\n"), rl);
	free(c);
	s = await_in(out, at, "ping| ping: ", 5, 180);
	cr_expect_null(strstr(s, "damaged"), "%s", s);
	cr_expect_null(strstr(s, "stopped:"), "%s", s);
	free(s);
	/* The thin pair went on beneath both hand-overs. */
	s = await_in(out, at, "tb| received 1", 1, 120);
	cr_expect_null(strstr(s, "ta| send "), "%s", s);
	cr_expect_null(strstr(s, "tb| recv "), "%s", s);
	free(s);
	c = t_slurp(console);
	cr_expect_null(strstr(c, "ERROR"), "%s", c);
	cr_expect_null(strstr(c, "SCRIPT-END"), "%s", c);
	free(c);
	/* The same QEMU. */
	cr_assert_eq(qemu_pid(dir), qpid);
	cr_assert_eq(kill(qpid, 0), 0, "QEMU %d gone", qpid);
	/* The old agent's devices: unplugged at the guest's HELLO. */
	s = await_in(audit, 0, "\"event\":\"vm_unplugged\",\"partition\":"
		     "\"guest\",\"reason\":\"ADOPTED\"", 1, 60);
	cr_expect_eq(t_count(s, "\"event\":\"vm_adopted\",\"partition\":"
				 "\"guest\""), 1, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"update_rollback\""), 1, "%s", s);
	cr_expect_eq(t_count(s, "\"event\":\"update_committed\""), 1, "%s", s);
	cr_expect(strstr(s, "1 adopted from libvirt"), "%s", s);
	cr_expect_null(strstr(s, "\"event\":\"vm_stopped\""), "%s", s);
	free(s);
	/* The new agent goes (kill -9: the VM stays up to be looked at):
	 * no device of the old agent left in it, the new one's there. */
	kill(np, SIGKILL);
	cr_assert_eq(waitpid(np, NULL, 0), np);
	int agents = 0, all = 0;
	for (int i = 0; i < 100; i++) {
		devices(dir, &agents, &all);
		if (agents <= 1)
			break;
		usleep(100000); /* an unplug the guest has not finished */
	}
	cr_expect_eq(agents, 1, "devices of more than one agent in the VM "
		     "(the old agent's left)");
	cr_expect_eq(all, 4, "the channel's 4 ring sections, plugged by the "
		     "new agent (the header is no device: protocol 3)");
	/* QEMU is ours (libvirt daemonizes it; we are the subreaper): it
	 * goes with the test's directory, libvirt's record of it too. */
	kill(qpid, SIGKILL);
	waitpid(qpid, NULL, 0);
	t_kill_children();
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	while (d && (e = readdir(d)))
		cr_expect(!strstr(e->d_name, "parley"), "/dev/shm/%s left",
			  e->d_name);
	if (d)
		closedir(d);
	cur_dir = NULL;
	t_rmtree(dir);
	free(dir);
}
