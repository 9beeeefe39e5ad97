#include "tests/helpers/testutil.h"
#include "agent/snapshot.h"
#include "agent/backend.h"
#include "common/fileio.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *t_kvm_missing(void)
{
	static char why[128];
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, sizeof(why), "/dev/kvm: %s", strerror(errno));
		return why;
	}
	close(fd);
	return NULL;
}

bool t_required(const char *cap)
{
	const char *r = getenv("PARLEY_REQUIRE");
	size_t n = strlen(cap);
	for (const char *p = r; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, cap, n))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

uint32_t t_backend;

const char *t_backend_name(void)
{
	return backend_name(t_backend);
}

unsigned t_backends(uint32_t out[T_BACKENDS_MAX])
{
	unsigned n = 0;
	if (!backend_kvm_missing())
		out[n++] = CTL_BACKEND_KVM;
	out[n++] = CTL_BACKEND_PROCESS;
	return n;
}

void t_child_dies_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) /* it died before we asked */
		_exit(127);
}

int t_children_of(pid_t parent, pid_t *out, int cap)
{
	int n = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) && n < cap) {
		char path[64], buf[512];
		int pid = atoi(e->d_name);
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		/* the name may hold ") ": the state and ppid follow the last */
		const char *rp = strrchr(buf, ')');
		int ppid = 0;
		if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent)
			out[n++] = pid;
	}
	if (d)
		closedir(d);
	return n;
}

void t_kill_children(void)
{
	/* (a kill can make new orphans, reparented to us: look again) */
	for (int round = 0; round < 4; round++) {
		pid_t kids[256];
		int n = t_children_of(getpid(), kids, 256);
		for (int i = 0; i < n; i++) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
		if (!n)
			break;
	}
}

char *t_tmpdir(void)
{
	char *d = strdup("/tmp/parley-test-XXXXXX");
	cr_assert(d && mkdtemp(d), "mkdtemp");
	return d;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void t_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *t_write(const char *dir, const char *name, const void *data, size_t len)
{
	char *path;
	cr_assert(asprintf(&path, "%s/%s", dir, name) > 0);
	FILE *f = fopen(path, "wb");
	cr_assert(f, "open %s", path);
	cr_assert(fwrite(data, 1, len, f) == len);
	fclose(f);
	return path;
}

void t_console_cb(struct partition *p, const char *buf, size_t len, void *ctx)
{
	(void)p;
	struct t_console *c = ctx;
	if (c->len + len + 1 > c->cap) {
		c->cap = (c->len + len + 1) * 2;
		c->buf = realloc(c->buf, c->cap);
		cr_assert(c->buf);
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	c->buf[c->len] = 0;
}

void t_console_free(struct t_console *c)
{
	free(c->buf);
	*c = (struct t_console){ 0 };
}

const struct snap_key *t_snap_key(void)
{
	static struct snap_key k;
	for (unsigned i = 0; i < sizeof(k.k); i++)
		k.k[i] = (uint8_t)(0xa5 ^ i);
	return &k;
}

struct part_opts t_opts(struct t_console *out)
{
	static const char *const dirs[] = { PARLEY_BUILD_DIR "/guest", NULL };
	return (struct part_opts){
		.vmm_path = T_VMM, .image_dirs = dirs,
		.on_console = t_console_cb, .ctx = out, .timeout_ms = 10000,
		.backend = t_backend,
		.snap_key = t_snap_key(),
	};
}

void t_spec(struct part_spec *s, const char *name, const char *image,
	    const char *cmdline, const char *memory)
{
	char json[2048];
	snprintf(json, sizeof(json),
		 "{\"name\":\"%s\",\"image\":\"%s\",\"memory\":\"%s\","
		 "\"cmdline\":\"%s\"}", name, image, memory ? memory : "8M",
		 cmdline ? cmdline : "");
	struct parley_err err = { 0 };
	int rc = spec_parse(json, strlen(json), PARLEY_BUILD_DIR "/guest", s,
			    &err);
	cr_assert_eq(rc, 0, "spec: %s", perr_msg(&err));
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int t_run(char *const argv[], char **out, int timeout_s)
{
	int pfd[2];
	cr_assert(pipe2(pfd, O_CLOEXEC) == 0);
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	uint64_t deadline = now_ms() + (uint64_t)timeout_s * 1000;
	for (;;) {
		struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
		int64_t left = (int64_t)(deadline - now_ms());
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (len + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(pfd[0], buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(pfd[0]);
	buf[len] = 0;
	int st;
	waitpid(pid, &st, 0);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int t_count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);
	for (const char *l = text; l && *l;) {
		if (strncmp(l, prefix, pl) == 0)
			n++;
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	return n;
}

static char *slurp_fd(int fd)
{
	struct stat st;
	cr_assert(fstat(fd, &st) == 0);
	char *buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	ssize_t n = pread(fd, buf, (size_t)st.st_size, 0);
	cr_assert_eq(n, st.st_size);
	buf[n] = 0;
	close(fd);
	return buf;
}

int t_exec(char *const argv[], const char *in, char **out, char **err)
{
	int fi = memfd_create("t_in", MFD_CLOEXEC);
	int fo = memfd_create("t_out", MFD_CLOEXEC);
	int fe = memfd_create("t_err", MFD_CLOEXEC);
	cr_assert(fi >= 0 && fo >= 0 && fe >= 0, "memfd_create");
	size_t len = in ? strlen(in) : 0;
	cr_assert_eq(pwrite(fi, in ? in : "", len, 0), (ssize_t)len);
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
		if (dup2(fi, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fi);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	*out = slurp_fd(fo);
	*err = slurp_fd(fe);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *t_slurp(const char *path)
{
	uint8_t *buf;
	size_t len;
	struct parley_err err = { 0 };
	if (file_read_all(path, 64 << 20, &buf, &len, &err) < 0)
		return strdup("");
	char *s = realloc(buf, len + 1);
	s[len] = 0;
	return s;
}

int t_count(const char *text, const char *needle)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

void t_asan_small_quarantine(void)
{
	const char *o = getenv("ASAN_OPTIONS");
	if (!o)
		return;
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s%squarantine_size_mb=4", o,
		 *o ? ":" : "");
	setenv("ASAN_OPTIONS", buf, 1);
}

long t_rss_kib(pid_t pid)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}
