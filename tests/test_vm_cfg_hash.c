/*
 * A VM's config files as the agent re-measures them before every open
 * (agent/vm/vmext.c: vm_file_sha256): the digest of a regular file, and
 * a clear refusal — never a wait — for what an operator's directory may
 * come to hold in its place (a FIFO would hold the agent's loop in open()
 * for good), a link, a directory, a device, a file over the limit.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/vm/vmmgr_int.h"

static char dir[] = "/tmp/parley-cfghash-XXXXXX";
static bool made;

static void up(void)
{
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	made = true;
}

static void down(void)
{
	if (!made)
		return;
	const char *names[] = { "app.conf", "fifo", "link", "sub", "big" };
	char p[128];
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if (unlink(p) < 0)
			rmdir(p);
	}
	rmdir(dir);
}

static void path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

Test(vm_cfg_hash, a_regular_file_hashed_as_sha256, .init = up, .fini = down)
{
	char p[128];
	path(p, sizeof(p), "app.conf");
	static const char text[] = "mode=production\nlisten=8080\n";
	FILE *f = fopen(p, "w");
	cr_assert(f);
	fputs(text, f);
	cr_assert(fclose(f) == 0);
	uint8_t want[32], got[32];
	unsigned n = 0;
	cr_assert(EVP_Digest(text, strlen(text), want, &n, EVP_sha256(), NULL));
	cr_assert_eq(vm_file_sha256(p, got), 0);
	cr_assert(!memcmp(want, got, 32));
}

Test(vm_cfg_hash, what_is_not_a_regular_file_refused_at_once, .init = up,
     .fini = down, .timeout = 10)
{
	char p[128], t[128];
	uint8_t d[32];
	/* nobody writes the FIFO: a blocking open would never return */
	path(p, sizeof(p), "fifo");
	cr_assert(mkfifo(p, 0600) == 0, "mkfifo: %s", strerror(errno));
	cr_assert_eq(vm_file_sha256(p, d), -EINVAL);
	path(p, sizeof(p), "sub");
	cr_assert(mkdir(p, 0700) == 0);
	cr_assert_eq(vm_file_sha256(p, d), -EINVAL);
	cr_assert_eq(vm_file_sha256("/dev/null", d), -EINVAL);
	cr_assert_eq(vm_file_sha256("/dev/zero", d), -EINVAL);
	/* a link to a regular file is not the file the spec named */
	path(t, sizeof(t), "app.conf");
	FILE *f = fopen(t, "w");
	cr_assert(f && fclose(f) == 0);
	path(p, sizeof(p), "link");
	cr_assert(symlink(t, p) == 0);
	cr_assert_eq(vm_file_sha256(p, d), -ELOOP);
	path(p, sizeof(p), "missing");
	cr_assert_eq(vm_file_sha256(p, d), -ENOENT);
}

Test(vm_cfg_hash, a_file_over_the_limit_refused_unread, .init = up,
     .fini = down, .timeout = 10)
{
	char p[128];
	uint8_t d[32];
	path(p, sizeof(p), "big");
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert(fd >= 0);
	/* sparse: refused by its size, before a byte of it is read */
	cr_assert(ftruncate(fd, (off_t)VM_CFG_BYTES_MAX + 1) == 0);
	close(fd);
	cr_assert_eq(vm_file_sha256(p, d), -EFBIG);
}
