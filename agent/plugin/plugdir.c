/* The manifest and plugin directories, checked (plugdir.h). */
#include "agent/plugin/plugdir.h"

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

static void hex(const uint8_t *d, char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int plugin_copy_private(int dirfd, const char *file, int todir,
			const char *to, uint8_t sha256[32], int *out,
			struct parley_err *err)
{
	*out = -1;
	int fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
					     O_NONBLOCK);
	if (fd < 0)
		return perr(err, -errno, "plugin file \"%s\": %m", file);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = perr(err, -errno, "plugin file \"%s\": %m", file);
	else if (!S_ISREG(st.st_mode))
		rc = perr(err, -EINVAL, "plugin file \"%s\" is not a regular "
			  "file", file);
	else if ((uint64_t)st.st_size > PLUGIN_FILE_BYTES_MAX)
		rc = perr(err, -EFBIG, "plugin file \"%s\" is over %u MiB",
			  file, PLUGIN_FILE_BYTES_MAX >> 20);
	int mfd = -1;
	if (rc == 0) {
		/* In our own 0700 directory (the kernel binds only files
		 * with a name into the vmm's jail); 0444, as the vmm reads
		 * it under its own uid through that bind. */
		mfd = openat(todir, to, O_WRONLY | O_CREAT | O_EXCL |
					      O_NOFOLLOW | O_CLOEXEC, 0444);
		if (mfd < 0)
			rc = perr(err, -errno, "a private copy: %m");
	}
	EVP_MD_CTX *md = rc == 0 ? EVP_MD_CTX_new() : NULL;
	if (rc == 0 && (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1))
		rc = perr(err, -ENOMEM, "SHA-256: out of memory");
	uint8_t *buf = rc == 0 ? malloc(65536) : NULL;
	if (rc == 0 && !buf)
		rc = perr(err, -ENOMEM, "out of memory");
	uint64_t total = 0;
	while (rc == 0) {
		ssize_t n = read(fd, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = perr(err, -errno, "plugin file \"%s\": %m", file);
			break;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		/* A file growing while we read is refused, not truncated. */
		if (total > PLUGIN_FILE_BYTES_MAX)
			rc = perr(err, -EFBIG, "plugin file \"%s\" is over %u "
				  "MiB", file, PLUGIN_FILE_BYTES_MAX >> 20);
		else if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
			rc = perr(err, -EIO, "SHA-256 failed");
		else if (write_all(mfd, buf, (size_t)n) < 0)
			rc = perr(err, -EIO, "a private copy: %m");
	}
	unsigned dl = 0;
	if (rc == 0 && EVP_DigestFinal_ex(md, sha256, &dl) != 1)
		rc = perr(err, -EIO, "SHA-256 failed");
	/* Kept read-only only: the writable descriptor goes, and with it
	 * any way for us or the vmm to change what was hashed. */
	if (mfd >= 0)
		close(mfd);
	mfd = -1;
	if (rc == 0) {
		mfd = openat(todir, to, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (mfd < 0)
			rc = perr(err, -errno, "re-opening the copy of \"%s\": "
				  "%m", file);
	}
	EVP_MD_CTX_free(md);
	free(buf);
	close(fd);
	if (rc < 0) {
		if (mfd >= 0)
			close(mfd);
		unlinkat(todir, to, 0);
		return rc;
	}
	*out = mfd;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct plugin_verified *)a)->m.name,
		      ((const struct plugin_verified *)b)->m.name);
}

static bool is_manifest(const char *n)
{
	size_t len = strlen(n);
	return n[0] != '.' && len > 5 && !strcmp(n + len - 5, ".json");
}

/* Every manifest of the directory into s->p[].m (fds -1). */
static int read_manifests(int dfd, const char *dir, struct plugin_set *s,
			  struct parley_err *err)
{
	int d2 = dup(dfd);
	DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
	if (!d) {
		if (d2 >= 0)
			close(d2);
		return perr(err, -errno, "manifest directory %s: %m", dir);
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (!is_manifest(e->d_name))
			continue;
		if (s->n == PLUGIN_SET_MAX) {
			rc = perr(err, -E2BIG, "manifest directory %s: more "
				  "than %u manifests", dir, PLUGIN_SET_MAX);
			break;
		}
		static char text[PLUGIN_MANIFEST_MAX + 1];
		int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW |
						   O_CLOEXEC | O_NONBLOCK);
		struct stat st;
		ssize_t n = -1;
		if (fd < 0 || fstat(fd, &st) < 0)
			rc = perr(err, -errno, "manifest %s: %m", e->d_name);
		else if (!S_ISREG(st.st_mode))
			rc = perr(err, -EINVAL, "manifest %s is not a regular "
				  "file", e->d_name);
		else if ((n = read(fd, text, sizeof(text))) < 0)
			rc = perr(err, -errno, "manifest %s: %m", e->d_name);
		if (fd >= 0)
			close(fd);
		struct plugin_verified *v = &s->p[s->n];
		v->fd = -1;
		if (rc == 0) {
			rc = plugin_manifest_parse(text, (size_t)n, &v->m,
						   err);
			if (rc < 0)
				perr_prefix(err, "manifest %s", e->d_name);
		}
		for (unsigned i = 0; rc == 0 && i < s->n; i++)
			if (!strcmp(s->p[i].m.name, v->m.name))
				rc = perr(err, -EINVAL, "manifest %s: plugin "
					  "\"%s\" is named twice", e->d_name,
					  v->m.name);
		if (rc == 0)
			s->n++;
	}
	closedir(d);
	return rc;
}

/* Copies left by agents that died without plugin_set_free (kill -9, a
 * crash): "parley-plugins.PID.XXXXXX" of a PID no longer alive, owned by
 * us, emptied and removed. Nothing is followed: a name that is not our
 * own real directory is left alone, and unlinkat removes links, never
 * what they point to. A reused PID only means a stale copy stays. */
static void sweep_dead_copies(const char *tmp)
{
	int t = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = t >= 0 ? fdopendir(t) : NULL;
	if (!d) {
		if (t >= 0)
			close(t);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		long pid;
		char tail[16];
		if (sscanf(e->d_name, "parley-plugins.%ld.%15s", &pid,
			   tail) != 2 || pid <= 1 || pid > INT_MAX ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		int c = openat(t, e->d_name, O_RDONLY | O_DIRECTORY |
			       O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (c < 0)
			continue;
		DIR *cd = fstat(c, &st) == 0 && st.st_uid == geteuid()
				  ? fdopendir(c) : NULL;
		if (!cd) {
			close(c);
			continue;
		}
		struct dirent *f;
		while ((f = readdir(cd)))
			if (strcmp(f->d_name, ".") && strcmp(f->d_name, ".."))
				unlinkat(c, f->d_name, 0);
		closedir(cd);
		unlinkat(t, e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

int plugin_set_load(const char *manifest_dir, const char *plugin_dir,
		    struct plugin_set *s, struct parley_err *err)
{
	memset(s, 0, sizeof(*s));
	int mdir = open(manifest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mdir < 0)
		return perr(err, -errno, "manifest directory %s: %m",
			    manifest_dir);
	int rc = read_manifests(mdir, manifest_dir, s, err);
	close(mdir);
	int pdir = -1, cdir = -1;
	if (rc == 0) {
		pdir = open(plugin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pdir < 0)
			rc = perr(err, -errno, "plugin directory %s: %m",
				  plugin_dir);
	}
	if (rc == 0) {
		const char *tmp = getenv("TMPDIR");
		if (!tmp || tmp[0] != '/')
			tmp = "/tmp";
		sweep_dead_copies(tmp);
		snprintf(s->copies, sizeof(s->copies),
			 "%s/parley-plugins.%d.XXXXXX", tmp, (int)getpid());
		if (!mkdtemp(s->copies)) {
			rc = perr(err, -errno, "%s: %m", s->copies);
			s->copies[0] = 0;
		} else if ((cdir = open(s->copies, O_RDONLY | O_DIRECTORY |
						      O_CLOEXEC)) < 0) {
			rc = perr(err, -errno, "%s: %m", s->copies);
		}
	}
	if (rc == 0)
		qsort(s->p, s->n, sizeof(s->p[0]), by_name);
	for (unsigned i = 0; rc == 0 && i < s->n; i++) {
		struct plugin_verified *v = &s->p[i];
		uint8_t got[32];
		char to[PARLEY_PLUGIN_NAME_MAX + 4];
		snprintf(to, sizeof(to), "%s.so", v->m.name);
		rc = plugin_copy_private(pdir, v->m.file, cdir, to, got,
					 &v->fd, err);
		if (rc < 0) {
			perr_prefix(err, "plugin %s", v->m.name);
			break;
		}
		if (CRYPTO_memcmp(got, v->m.sha256, 32)) {
			char a[65], b[65];
			hex(got, a);
			hex(v->m.sha256, b);
			rc = perr(err, -EPERM, "plugin %s: %s has SHA-256 %s, "
				  "its manifest says %s", v->m.name, v->m.file,
				  a, b);
		}
	}
	if (pdir >= 0)
		close(pdir);
	if (cdir >= 0)
		close(cdir);
	if (rc < 0)
		plugin_set_free(s);
	return rc;
}

const struct plugin_verified *plugin_set_find(const struct plugin_set *s,
					      const char *name)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->p[i].m.name, name))
			return &s->p[i];
	return NULL;
}

void plugin_set_free(struct plugin_set *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->p[i].fd >= 0)
			close(s->p[i].fd);
	if (s->copies[0]) {
		/* A vmm that loaded a copy keeps its mapping (and its
		 * bind, which keeps the file). */
		for (unsigned i = 0; i < s->n; i++) {
			char path[PATH_MAX];
			snprintf(path, sizeof(path), "%s/%s.so", s->copies,
				 s->p[i].m.name);
			unlink(path);
		}
		rmdir(s->copies);
	}
	memset(s, 0, sizeof(*s));
}
