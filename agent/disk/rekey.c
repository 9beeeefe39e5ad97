/* Offline re-encryption of a disk image (rekey.h). */
#include "agent/disk/rekey.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define UNIT 512
#define CHUNK (1u << 20)

int disk_xts(const uint8_t key[64], int enc, const uint8_t *in, uint8_t *out,
	     size_t len, uint64_t off)
{
	if (len % UNIT || off % UNIT)
		return -EINVAL;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int rc = c && EVP_CipherInit_ex(c, EVP_aes_256_xts(), NULL, key, NULL,
					enc) == 1 ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < len; i += UNIT) {
		uint8_t iv[16] = { 0 };
		uint64_t n = (off + i) / UNIT;
		for (int b = 0; b < 8; b++)
			iv[b] = (uint8_t)(n >> (8 * b));
		int ol = 0;
		if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) != 1 ||
		    EVP_CipherUpdate(c, out + i, &ol, in + i, UNIT) != 1 ||
		    ol != UNIT)
			rc = -EIO;
	}
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* The image's real path (from its descriptor, opened beneath the
 * directories): the copy, the marker and the renames go beside it. */
static int real_path(int fd, char *out, size_t cap)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, out, cap - 16);
	if (n <= 0 || (size_t)n >= cap - 16)
		return -ENAMETOOLONG;
	out[n] = 0;
	return 0;
}

static uint64_t read_marker(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *end;
	unsigned long long v = strtoull(buf, &end, 10);
	return end != buf && *end == '\n' ? (uint64_t)v : 0;
}

static int sync_dir(const char *file)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", file);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return -EINVAL;
	*slash = slash == dir ? '/' : 0;
	if (slash == dir)
		slash[1] = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int write_marker(const char *path, uint64_t v)
{
	char tmp[PATH_MAX + 8], buf[32];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)v);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			   O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Every byte of img, decrypted with old and encrypted with new, into a
 * new file tmp, synced. */
static int copy_rekeyed(int img, const char *tmp, uint64_t size,
			const uint8_t old_key[64], const uint8_t new_key[64])
{
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			    O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	uint8_t *buf = malloc(CHUNK);
	int rc = buf ? 0 : -ENOMEM;
	for (uint64_t off = 0; rc == 0 && off < size; off += CHUNK) {
		size_t len = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		if (pread(img, buf, len, (off_t)off) != (ssize_t)len)
			rc = -EIO;
		if (rc == 0)
			rc = disk_xts(old_key, 0, buf, buf, len, off);
		if (rc == 0)
			rc = disk_xts(new_key, 1, buf, buf, len, off);
		if (rc == 0 && pwrite(out, buf, len, (off_t)off) !=
				       (ssize_t)len)
			rc = -EIO;
	}
	if (buf) {
		OPENSSL_cleanse(buf, CHUNK);
		free(buf);
	}
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(out);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int disk_rekey(const struct beneath_dirs *dirs, const struct part_disk_spec *d,
	       uint64_t old_v, const uint8_t old_key[64], uint64_t new_v,
	       const uint8_t new_key[64], uint64_t *in_use, bool *done,
	       struct parley_err *err)
{
	*in_use = old_v;
	*done = false;
	char field[48];
	snprintf(field, sizeof(field), "disk \"%s\"", d->name);
	int img = beneath_open(dirs, d->path, field, err);
	if (img < 0)
		return img;
	char path[PATH_MAX], tmp[PATH_MAX + 16], marker[PATH_MAX + 16];
	struct stat st;
	int rc = real_path(img, path, sizeof(path));
	if (rc == 0 && fstat(img, &st) < 0)
		rc = -errno;
	if (rc == 0 && (!S_ISREG(st.st_mode) || st.st_size % UNIT))
		rc = -EINVAL;
	if (rc < 0) {
		close(img);
		return perr(err, rc, "%s: rekey: %s", field, strerror(-rc));
	}
	snprintf(tmp, sizeof(tmp), "%s.rekey", path);
	snprintf(marker, sizeof(marker), "%s.keyver", path);
	if (read_marker(marker) == new_v) {
		/* Done before; a copy still beside it was not renamed yet. */
		close(img);
		if (access(tmp, F_OK) == 0 && (rename(tmp, path) < 0 ||
					       sync_dir(path) < 0))
			return perr(err, -errno, "%s: rekey: finishing: %m",
				    field);
		*in_use = new_v;
		return 0;
	}
	unlink(tmp);                    /* a partial copy of a crash */
	rc = copy_rekeyed(img, tmp, (uint64_t)st.st_size, old_key, new_key);
	close(img);
	if (rc == 0)
		rc = write_marker(marker, new_v);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(path);
	if (rc < 0) {
		unlink(tmp);
		return perr(err, rc, "%s: rekey from version %llu to %llu: %s",
			    field, (unsigned long long)old_v,
			    (unsigned long long)new_v, strerror(-rc));
	}
	*in_use = new_v;
	*done = true;
	return 0;
}
