/*
 * Each VM's QEMU its own uid (vmhost.h: vmhost_set_uid_range,
 * vmhost_vm_uid): the range the operator gives (checked against the host's
 * users and the vmm jail's range), and the uid a VM keeps across restarts
 * and agents — a file per VM in STATE/vm/uids, written atomically, the
 * free uid picked under a lock (VMs start off the agent's loop).
 */
#include "agent/vm/vmhost.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/vmm_jail.h"
#include "common/jsonv.h"
#include "common/log.h"

static pthread_mutex_t uid_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t uid_first = VMHOST_UID_FIRST, uid_last = VMHOST_UID_LAST;

/* Digits only (strtoul alone takes signs and blanks), below 2^32-1. */
static int parse_num(const char *s, const char **end, uint32_t *v)
{
	const char *p = s;
	unsigned long long x = 0;
	while (*p >= '0' && *p <= '9' && p - s < 11)
		x = x * 10 + (unsigned)(*p++ - '0');
	if (p == s || (*p >= '0' && *p <= '9') || x >= UINT32_MAX)
		return -EINVAL;
	*v = (uint32_t)x;
	*end = p;
	return 0;
}

int vmhost_parse_uid_range(const char *s, uint32_t *first, uint32_t *last)
{
	const char *e;
	if (parse_num(s, &e, first) < 0 || *e != '-' ||
	    parse_num(e + 1, &e, last) < 0 || *e)
		return -EINVAL;
	return 0;
}

/* A range each VM's QEMU may take a uid of: not root, nobody the host
 * knows (a uid QEMU shared with a user could be ptraced by it, and own
 * its files), not the vmm processes'. */
static int range_check(uint32_t first, uint32_t last, struct parley_err *err)
{
	if (first == 0 || first > last || last >= UINT32_MAX)
		return perr(err, -EINVAL, "QEMU uid range %u-%u: FIRST-LAST "
			    "with 0 < FIRST <= LAST < 4294967295 (root is "
			    "never QEMU's)", first, last);
	uint32_t vf, vl;
	vmm_jail_uid_range(&vf, &vl);
	if (first <= vl && vf <= last)
		return perr(err, -EINVAL, "QEMU uid range %u-%u overlaps the "
			    "vmm processes' uid range %u-%u", first, last, vf,
			    vl);
	struct passwd pw, *r;
	char buf[4096];
	int rc = 0;
	setpwent();
	while (!rc && getpwent_r(&pw, buf, sizeof(buf), &r) == 0 && r)
		if (pw.pw_uid >= first && pw.pw_uid <= last)
			rc = perr(err, -EEXIST, "QEMU uid range %u-%u holds the "
				  "host's user %s (uid %u): each VM's QEMU "
				  "needs a uid nothing else on the host has",
				  first, last, pw.pw_name, (unsigned)pw.pw_uid);
	endpwent();
	return rc;
}

int vmhost_set_uid_range(uint32_t first, uint32_t last,
			 struct parley_err *err)
{
	pthread_mutex_lock(&uid_mu);
	int rc = range_check(first, last, err);
	if (!rc) {
		uid_first = first;
		uid_last = last;
	}
	pthread_mutex_unlock(&uid_mu);
	return rc;
}

/* STATE/vm/uids/NAME: the uid in decimal and a newline, nothing else. */
static int uid_read(int dfd, const char *name, uint32_t *uid)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char b[16];
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n < 2 || b[n - 1] != '\n')
		return -EBADMSG;
	b[n - 1] = 0;
	const char *e;
	return parse_num(b, &e, uid) < 0 || *e ? -EBADMSG : 0;
}

static int uid_write(int dfd, const char *name, uint32_t uid)
{
	char tmp[64], b[16];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	int n = snprintf(b, sizeof(b), "%u\n", uid);
	unlinkat(dfd, tmp, 0);
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
			O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, b, (size_t)n) == n && fsync(fd) == 0 ? 0 : -EIO;
	close(fd);
	if (!rc && renameat(dfd, tmp, dfd, name) < 0)
		rc = -errno;
	if (rc)
		unlinkat(dfd, tmp, 0);
	return rc;
}

/* The name of the host's user with uid u into name (cap bytes), or false
 * when the host knows none (getpwuid_r: the agent has threads). */
static bool host_user(uint32_t u, char *name, size_t cap)
{
	struct passwd pw, *r = NULL;
	char buf[4096];
	if (getpwuid_r((uid_t)u, &pw, buf, sizeof(buf), &r) != 0 || !r)
		return false;
	snprintf(name, cap, "%s", pw.pw_name);
	return true;
}

/* The lowest uid of vh's range that no record holds and no host user
 * has. Called with uid_mu held. */
static int uid_pick(const struct vmhost *vh, int dfd, uint32_t *uid)
{
	uint32_t *used = NULL, nused = 0, cap = 0;
	int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dup < 0 ? NULL : fdopendir(dup);
	if (!d) {
		if (dup >= 0)
			close(dup);
		return -errno;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		uint32_t u;
		if (e->d_name[0] == '.' || uid_read(dfd, e->d_name, &u) < 0)
			continue;
		if (nused == cap) {
			cap = cap ? cap * 2 : 64;
			uint32_t *n = realloc(used, cap * sizeof(*n));
			if (!n) {
				free(used);
				closedir(d);
				return -ENOMEM;
			}
			used = n;
		}
		used[nused++] = u;
	}
	closedir(d);
	int rc = -EAGAIN;
	char who[64];
	for (uint64_t u = vh->uid_first; rc && u <= vh->uid_last; u++) {
		bool taken = false;
		for (uint32_t i = 0; i < nused && !taken; i++)
			taken = used[i] == u;
		if (!taken && !host_user((uint32_t)u, who, sizeof(who))) {
			*uid = (uint32_t)u;
			rc = 0;
		}
	}
	free(used);
	return rc;
}

int vmhost_vm_uid(struct vmhost *vh, const char *name, bool alloc, uid_t *uid,
		  struct parley_err *err)
{
	if (vh->qemu_gid == (gid_t)-1)
		return perr(err, -ENOTSUP, "QEMU runs as the agent's user");
	if (!jv_name_valid(name, strlen(name), 48))
		return perr(err, -EINVAL, "VM name '%s' not allowed", name);
	char dir[PATH_MAX + 16], who[64];
	snprintf(dir, sizeof(dir), "%s/uids", vh->dir);
	pthread_mutex_lock(&uid_mu);
	int rc = 0, dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			       O_CLOEXEC);
	uint32_t u = 0;
	if (dfd < 0) {
		rc = perr(err, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	rc = uid_read(dfd, name, &u);
	/* A record of a range no longer in force is given up at the next
	 * start (its QEMU is not running then). */
	if (!rc && alloc && (u < vh->uid_first || u > vh->uid_last))
		rc = -ERANGE;
	if (rc == -ENOENT && !alloc) {
		rc = perr(err, rc, "VM %s: no uid recorded in %s", name, dir);
		goto out;
	}
	if (rc && rc != -ENOENT && rc != -ERANGE && rc != -EBADMSG) {
		rc = perr(err, rc, "%s/%s: %s", dir, name, strerror(-rc));
		goto out;
	}
	if (rc) {
		if (!alloc) {
			rc = perr(err, rc, "%s/%s: not a uid", dir, name);
			goto out;
		}
		if ((rc = uid_pick(vh, dfd, &u))) {
			rc = perr(err, rc, "VM %s: no free uid in QEMU's range "
				  "%u-%u: %s", name, vh->uid_first,
				  vh->uid_last, strerror(-rc));
			goto out;
		}
		if ((rc = uid_write(dfd, name, u))) {
			rc = perr(err, rc, "%s/%s: %s", dir, name,
				  strerror(-rc));
			goto out;
		}
		log_info("VM %s: its QEMU runs as uid %u", name, u);
	} else if (alloc && host_user(u, who, sizeof(who))) {
		/* the host gave a user this uid since: it is not QEMU's */
		rc = perr(err, -EEXIST, "VM %s: its QEMU's uid %u (%s/%s) is "
			  "now the host's user %s", name, u, dir, name, who);
		goto out;
	}
	*uid = (uid_t)u;
out:
	if (dfd >= 0)
		close(dfd);
	pthread_mutex_unlock(&uid_mu);
	return rc;
}

int vmuid_range_take(uint32_t *first, uint32_t *last, struct parley_err *err)
{
	pthread_mutex_lock(&uid_mu);
	*first = uid_first;
	*last = uid_last;
	int rc = range_check(*first, *last, err);
	pthread_mutex_unlock(&uid_mu);
	return rc;
}
