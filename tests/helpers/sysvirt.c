/* A private system libvirtd for a test (sysvirt.h). */
#include "tests/helpers/sysvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "tests/helpers/testutil.h"

#define SYSVIRT_CACHE PARLEY_BUILD_DIR "/sysvirt-cache"

static int put(const char *dir, const char *name, const char *text)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "we");
	if (!f)
		return -errno;
	int ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -EIO;
}

/* /usr/sbin/NAME --config DIR/NAME.conf --pid-file DIR/NAME.pid, a
 * child of the caller's that dies with it. */
static pid_t daemon_child(const struct t_sysvirt *s, const char *name)
{
	char exe[64], conf[PATH_MAX + 64], pidf[PATH_MAX + 64];
	pid_t pid = fork();
	if (pid < 0)
		_exit(111);
	if (pid > 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(exe, sizeof(exe), "/usr/sbin/%s", name);
	snprintf(conf, sizeof(conf), "%s/%s.conf", s->dir, name);
	snprintf(pidf, sizeof(pidf), "%s/%s.pid", s->dir, name);
	execl(exe, name, "--config", conf, "--pid-file", pidf, (char *)NULL);
	fprintf(stderr, "sysvirt: %s: %s\n", exe, strerror(errno));
	_exit(111);
}

/* In the child: the namespace, then the daemons. Any failure exits with
 * a line on stderr (the test's log file). */
static void child(const struct t_sysvirt *s, const char *qemu_conf,
		  bool linked)
{
	char ns[PATH_MAX + 8], up[PATH_MAX + 64], wk[PATH_MAX + 64],
		opt[3 * PATH_MAX];
	static const char *const over[] = { "/etc", "/var", "/run" };
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		perror("sysvirt: unshare/mount private");
		_exit(111);
	}
	snprintf(ns, sizeof(ns), "%s/ns", s->dir);
	if (mount("parley-sysvirt", ns, "tmpfs", 0, "mode=0755") < 0) {
		perror("sysvirt: tmpfs");
		_exit(111);
	}
	for (unsigned i = 0; i < 3; i++) {
		snprintf(up, sizeof(up), "%s%s.u", ns, over[i]);
		snprintf(wk, sizeof(wk), "%s%s.w", ns, over[i]);
		snprintf(opt, sizeof(opt), "lowerdir=%s,upperdir=%s,workdir=%s",
			 over[i], up, wk);
		if (mkdir(up, 0755) < 0 || mkdir(wk, 0755) < 0 ||
		    mount("overlay", over[i], "overlay", 0, opt) < 0) {
			fprintf(stderr, "sysvirt: overlay on %s: %s\n", over[i],
				strerror(errno));
			_exit(111);
		}
	}
	/* what the host's /run/libvirt held is not the daemon's */
	if (mkdir("/run/libvirt", 0755) < 0 && errno != EEXIST) {
		perror("sysvirt: /run/libvirt");
		_exit(111);
	}
	if (mount("parley-sysvirt-run", "/run/libvirt", "tmpfs", 0,
		  "mode=0755") < 0) {
		perror("sysvirt: tmpfs /run/libvirt");
		_exit(111);
	}
	/* libvirtd's cache of QEMU's capabilities (checked by libvirt
	 * against QEMU's binary and libvirt's version) kept across tests:
	 * probing QEMU takes most of a minute on a loaded TCG host */
	if ((mkdir("/var/cache/libvirt", 0755) < 0 && errno != EEXIST) ||
	    mount(SYSVIRT_CACHE, "/var/cache/libvirt", NULL, MS_BIND, NULL) < 0) {
		perror("sysvirt: cache");
		_exit(111);
	}
	if (qemu_conf && ((mkdir("/etc/libvirt", 0755) < 0 && errno != EEXIST) ||
			  put("/etc/libvirt", linked ? "real-qemu.conf"
						     : "qemu.conf", qemu_conf) < 0 ||
			  (linked && ((unlink("/etc/libvirt/qemu.conf") < 0 &&
				       errno != ENOENT) ||
				      symlink("/etc/libvirt/real-qemu.conf",
					      "/etc/libvirt/qemu.conf") < 0)))) {
		perror("sysvirt: qemu.conf");
		_exit(111);
	}
	/* Both daemons children of this one, which reaps them: stopped by
	 * their PIDs, neither is left a zombie of the other. When libvirtd
	 * ends, virtlogd is ended too, then this. */
	pid_t lg = daemon_child(s, "virtlogd");
	pid_t lv = daemon_child(s, "libvirtd");
	int left = 2;
	while (left) {
		pid_t w = waitpid(-1, NULL, 0);
		if (w < 0 && errno != EINTR)
			break;
		if (w == lv || w == lg)
			left--;
		if (w == lv && left)
			kill(lg, SIGTERM);
	}
	_exit(0);
}

static bool sock_up(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* libvirtd accepts on its socket before its drivers are up (a qemu.conf
 * its QEMU driver refuses ends it then): up once a connection answers. */
static void quiet(void *ud, virErrorPtr e)
{
	(void)ud;
	(void)e;
}

static bool lv_up(const char *uri)
{
	virSetErrorFunc(NULL, quiet);
	virConnectPtr c = virConnectOpen(uri);
	if (!c)
		return false;
	unsigned long v = 0;
	bool ok = virConnectGetLibVersion(c, &v) == 0 && v > 0;
	virConnectClose(c);
	return ok;
}

static pid_t read_pid(const char *dir, const char *name)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "re");
	long v = 0;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 0;
		fclose(f);
	}
	return (pid_t)v;
}

/* The last lines of a log of the test's directory, into why. */
static void tail_into(const char *dir, const char *name, char *why, size_t cap)
{
	char p[PATH_MAX + 64];
	static char buf[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, end > 3000 ? end - 3000 : 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	size_t l = strlen(why);
	snprintf(why + l, cap - l, "\n--- %s:\n%s", name, buf);
}

int t_sysvirt_start(struct t_sysvirt *s, const char *qemu_conf, char *why,
		    size_t cap)
{
	return t_sysvirt_start_linked(s, qemu_conf, false, why, cap);
}

int t_sysvirt_start_linked(struct t_sysvirt *s, const char *qemu_conf,
			   bool linked, char *why, size_t cap)
{
	memset(s, 0, sizeof(*s));
	why[0] = 0;
	if (access("/usr/sbin/libvirtd", X_OK) || access("/usr/sbin/virtlogd", X_OK)) {
		snprintf(why, cap, "no /usr/sbin/libvirtd or virtlogd "
			 "(./dev deps --test installs libvirt-daemon)");
		return -ENOENT;
	}
	if (mkdir(SYSVIRT_CACHE, 0700) < 0 && errno != EEXIST) {
		snprintf(why, cap, "%s: %s", SYSVIRT_CACHE, strerror(errno));
		return -errno;
	}
	char *d = t_tmpdir();
	snprintf(s->dir, sizeof(s->dir), "%s", d);
	free(d);
	chmod(s->dir, 0711);
	char text[4 * PATH_MAX], ns[PATH_MAX + 8];
	snprintf(ns, sizeof(ns), "%s/ns", s->dir);
	/* root's sockets only, no authentication (the socket's mode is the
	 * access control); logs into the test's directory */
	snprintf(text, sizeof(text),
		 "unix_sock_dir = \"%s\"\n"
		 "unix_sock_group = \"root\"\n"
		 "unix_sock_ro_perms = \"0700\"\n"
		 "unix_sock_rw_perms = \"0700\"\n"
		 "unix_sock_admin_perms = \"0700\"\n"
		 "auth_unix_ro = \"none\"\n"
		 "auth_unix_rw = \"none\"\n"
		 "log_outputs = \"%s:file:%s/libvirtd.log\"\n%s", s->dir,
		 /* PARLEY_SYSVIRT_DEBUG=1: libvirtd's debug log, kept */
		 getenv("PARLEY_SYSVIRT_DEBUG") ? "1" : "3", s->dir,
		 getenv("PARLEY_SYSVIRT_DEBUG") ? "log_level = 1\nlog_filters = "
		 "\"3:rpc 3:event 3:remote 3:object 3:util.json 1:*\"\n" : "");
	int rc;
	if (mkdir(ns, 0755) < 0 || (rc = put(s->dir, "libvirtd.conf", text)))
		return snprintf(why, cap, "%s: %s", s->dir, strerror(errno)), -EIO;
	snprintf(text, sizeof(text),
		 "log_outputs = \"3:file:%s/virtlogd.log\"\n", s->dir);
	if ((rc = put(s->dir, "virtlogd.conf", text)))
		return snprintf(why, cap, "virtlogd.conf: %s", strerror(-rc)), rc;
	snprintf(s->uri, sizeof(s->uri), "qemu+unix:///system?socket=%s/"
		 "libvirt-sock", s->dir);
	/* The daemons' stderr into the test's directory. */
	char errp[PATH_MAX + 64];
	snprintf(errp, sizeof(errp), "%s/daemons.err", s->dir);
	int ef = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return snprintf(why, cap, "fork: %s", strerror(errno)), -errno;
	if (pid == 0) {
		if (ef >= 0) {
			dup2(ef, 1);
			dup2(ef, 2);
		}
		child(s, qemu_conf, linked);
	}
	if (ef >= 0)
		close(ef);
	s->ns = pid;
	char sock[PATH_MAX + 64];
	snprintf(sock, sizeof(sock), "%s/libvirt-sock", s->dir);
	/* libvirtd probes QEMU's capabilities at its start (seconds under
	 * a loaded TCG host): up to 60 s for its socket. */
	for (int t = 0; t < 6000; t++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->ns = s->libvirtd = s->virtlogd = 0;
			snprintf(why, cap, "libvirtd exited (status %#x)", st);
			tail_into(s->dir, "daemons.err", why, cap);
			tail_into(s->dir, "libvirtd.log", why, cap);
			return -ECHILD;
		}
		if (!s->virtlogd)
			s->virtlogd = read_pid(s->dir, "virtlogd.pid");
		if (!s->libvirtd)
			s->libvirtd = read_pid(s->dir, "libvirtd.pid");
		if (s->virtlogd && s->libvirtd && sock_up(sock) &&
		    lv_up(s->uri))
			return 0;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	snprintf(why, cap, "libvirtd's socket %s or virtlogd's pid file not "
		 "there after 60 s", sock);
	tail_into(s->dir, "daemons.err", why, cap);
	tail_into(s->dir, "libvirtd.log", why, cap);
	tail_into(s->dir, "virtlogd.log", why, cap);
	return -ETIMEDOUT;
}

void t_sysvirt_path(const struct t_sysvirt *s, const char *path, char *out,
		    size_t cap)
{
	snprintf(out, cap, "/proc/%d/root%s", (int)s->libvirtd, path);
}

/* Exited: no such process, or a zombie its parent has not reaped yet. */
static bool gone(pid_t pid)
{
	char p[64], st[256];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, st, sizeof(st) - 1);
	close(fd);
	if (n <= 0)
		return true;
	st[n] = 0;
	const char *e = strrchr(st, ')');
	return !e || e[1] != ' ' || e[2] == 'Z' || e[2] == 'X';
}

/* pid is ours (its /proc/PID/exe the daemon we started): SIGTERM, then
 * SIGKILL after 10 s. */
static void stop_one(pid_t pid, const char *exe)
{
	char p[64], link[PATH_MAX];
	snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(p, link, sizeof(link) - 1);
	if (n <= 0)
		return;
	link[n] = 0;
	if (strcmp(link, exe))
		return;
	kill(pid, SIGTERM);
	for (int t = 0; t < 1000; t++) {
		if (gone(pid))
			return;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	kill(pid, SIGKILL);
}

void t_sysvirt_stop(struct t_sysvirt *s)
{
	if (s->libvirtd)
		stop_one(s->libvirtd, "/usr/sbin/libvirtd");
	if (s->virtlogd)
		stop_one(s->virtlogd, "/usr/sbin/virtlogd");
	s->libvirtd = s->virtlogd = 0;
	/* the namespace's first process reaps both, then ends */
	if (s->ns) {
		int t = 0;
		while (waitpid(s->ns, NULL, WNOHANG) == 0 && t++ < 1000)
			nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
		if (t >= 1000) {
			kill(s->ns, SIGKILL);
			waitpid(s->ns, NULL, 0);
		}
	}
	s->ns = 0;
	if (s->dir[0] && !getenv("PARLEY_SYSVIRT_DEBUG"))
		t_rmtree(s->dir);
	s->dir[0] = 0;
}
