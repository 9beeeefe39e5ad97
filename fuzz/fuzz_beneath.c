/*
 * libFuzzer target for spec paths (agent/beneath.c): any bytes as the path
 * a spec names, opened beneath a fixed directory tree that holds a file,
 * a subdirectory, a symlink out of the tree, a symlink within it, and a
 * secret beside the tree. The text check must agree with an independent
 * reading of the rule (relative, no ".." component); whatever opens must
 * lie inside the tree and never be the secret; no fd may leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/beneath.h"

#define PATH_IN_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[128];
static struct beneath_dirs dirs;

static void touch(const char *dir, const char *name, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		abort();
}

static char top[] = "/dev/shm/fuzz-beneath-XXXXXX";

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* /dev/shm is memory: leave nothing behind. */
static void cleanup(void)
{
	nftw(top, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	char p[256], q[256];
	if (!mkdtemp(top))
		abort();
	atexit(cleanup);
	snprintf(root, sizeof(root), "%s/root", top);
	snprintf(p, sizeof(p), "%s/root/sub", top);
	snprintf(q, sizeof(q), "%s/outside", top);
	if (mkdir(root, 0700) || mkdir(p, 0700) || mkdir(q, 0700))
		abort();
	touch(root, "a", "a");
	touch(p, "b", "b");
	touch(q, "secret", "secret");
	snprintf(p, sizeof(p), "%s/link_out", root);
	snprintf(q, sizeof(q), "%s/link_in", root);
	if (symlink("../outside", p) || symlink("a", q))
		abort();
	snprintf(p, sizeof(p), "%s/abs_out", root);
	snprintf(q, sizeof(q), "%s/outside/secret", top);
	if (symlink(q, p))
		abort();
	beneath_add(&dirs, root);
}

/* The rule, read independently: relative, no component equal to "..". */
static int rule_allows(const char *s)
{
	if (!s[0] || s[0] == '/')
		return 0;
	for (const char *c = s;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return 0;
		if (!slash)
			return 1;
		c = slash + 1;
	}
}

static void check_inside(int fd)
{
	char link[64], got[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, got, sizeof(got) - 1);
	if (n < 0)
		abort();
	got[n] = 0;
	size_t rl = strlen(root);
	if (strncmp(got, root, rl) || (got[rl] && got[rl] != '/') ||
	    strstr(got, "secret"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!root[0])
		setup();
	if (size > PATH_IN_MAX)
		return 0;
	char path[PATH_IN_MAX + 1];
	memcpy(path, data, size);
	path[size] = 0; /* a NUL inside ends the path, as in C strings */
	struct parley_err err = { 0 };
	int rc = beneath_check(path, "field \"image\"", &err);
	if ((rc == 0) != rule_allows(path) || (rc < 0 && err.code != rc))
		abort();
	memset(&err, 0, sizeof(err));
	int fd = beneath_open(&dirs, path, "field \"image\"", &err);
	if (fd >= 0) {
		if (rc < 0)
			abort();
		check_inside(fd);
		close(fd);
	} else if (err.code != fd || !strstr(err.msg, "field \"image\"")) {
		abort();
	}
	return 0;
}
