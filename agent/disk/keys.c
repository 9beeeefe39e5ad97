/* The key file source (keys.h). */
#include "agent/disk/keys.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

int disk_key_file(void *ctx, const char *part, const struct part_disk_spec *d,
		  uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err)
{
	(void)part;
	const struct beneath_dirs *dirs = ctx;
	if (!d->key)
		return perr(err, -ENOKEY, "disk \"%s\": no key file "
			    "(encryption.key); its key comes from a daemon "
			    "only under parley-agent serve", d->name);
	int fd = beneath_open(dirs, d->key, "disk key", err);
	if (fd < 0)
		return fd;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = perr(err, -errno, "disk key \"%s\": %m", d->key);
	else if (!S_ISREG(st.st_mode))
		rc = perr(err, -EPERM, "disk key \"%s\": not a regular file",
			  d->key);
	else if (st.st_uid != geteuid())
		rc = perr(err, -EPERM, "disk key \"%s\": owned by uid %u, not "
			  "by the agent (%u)", d->key, (unsigned)st.st_uid,
			  (unsigned)geteuid());
	else if (st.st_mode & 077)
		rc = perr(err, -EPERM, "disk key \"%s\": mode %04o, group or "
			  "others may use it (0600 wanted)", d->key,
			  (unsigned)(st.st_mode & 07777));
	else if (st.st_size != CTL_DISK_KEY_BYTES)
		rc = perr(err, -EINVAL, "disk key \"%s\": %lld bytes, not %d",
			  d->key, (long long)st.st_size, CTL_DISK_KEY_BYTES);
	ssize_t n = 0;
	if (rc == 0) {
		do
			n = pread(fd, key, CTL_DISK_KEY_BYTES, 0);
		while (n < 0 && errno == EINTR);
		if (n != CTL_DISK_KEY_BYTES)
			rc = perr(err, -EIO, "disk key \"%s\": short read",
				  d->key);
	}
	close(fd);
	if (rc == 0 && !memcmp(key, key + 32, 32))
		rc = perr(err, -EINVAL, "disk key \"%s\": its two halves are "
			  "equal (XTS refuses that key)", d->key);
	if (rc < 0)
		OPENSSL_cleanse(key, CTL_DISK_KEY_BYTES);
	return rc;
}
