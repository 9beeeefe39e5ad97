/*
 * Plugin "file" (class block): a disk backed by a regular file the agent
 * opened beneath its disk directories and handed over as a descriptor.
 * Requests are pread/pwrite at the disk's byte offset, flush fdatasync —
 * calls the vmm's seccomp filter already allows. Its saved state
 * (version 1) is the disk's size, so a restore against a file of another
 * size is refused rather than read past.
 */
#include "agent/plugin/plugin.h"
#include "agent/plugins/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dev {
	int fd;
	uint64_t bytes;
};

static int init(const struct parley_plugin_config *c, void **out, char *why,
		size_t n)
{
	struct stat st;
	if (c->fd < 0 || fstat(c->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return plug_why(why, n, "no regular file to back the disk");
	if ((uint64_t)st.st_size < c->bytes)
		return plug_why(why, n, "the file is %lld bytes, the disk %llu",
				(long long)st.st_size,
				(unsigned long long)c->bytes);
	struct dev *d = calloc(1, sizeof(*d));
	if (!d)
		return plug_why(why, n, "out of memory");
	d->fd = c->fd;
	d->bytes = c->bytes;
	*out = d;
	return 0;
}

static int load_state(void *dev, const void *state, size_t len,
		      uint32_t version, char *why, size_t n)
{
	struct dev *d = dev;
	uint64_t bytes = 0;
	if (plug_load_u64(&bytes, state, len, version, why, n))
		return -1;
	if (bytes != d->bytes)
		return plug_why(why, n, "saved with a %llu-byte disk, now %llu",
				(unsigned long long)bytes,
				(unsigned long long)d->bytes);
	return 0;
}

static int save_state(void *dev, void *buf, size_t cap, size_t *len,
		      uint32_t *version, char *why, size_t n)
{
	return plug_save_u64(((struct dev *)dev)->bytes, buf, cap, len,
			     version, why, n);
}

static int power_down(void *dev, char *why, size_t n)
{
	struct dev *d = dev;
	if (fdatasync(d->fd) < 0)
		return plug_why(why, n, "fdatasync: %s", strerror(errno));
	return 0;
}

/* The descriptor is the vmm's: it closes it. */
static void teardown(void *dev)
{
	free(dev);
}

static int io(struct dev *d, bool wr, uint8_t *p, size_t len, uint64_t off)
{
	if (off > d->bytes || len > d->bytes - off)
		return -ERANGE;
	for (size_t done = 0; done < len;) {
		ssize_t r = wr ? pwrite(d->fd, p + done, len - done,
					(off_t)(off + done))
			       : pread(d->fd, p + done, len - done,
				       (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

static int bread(void *dev, void *buf, size_t len, uint64_t off)
{
	return io(dev, false, buf, len, off);
}

static int bwrite(void *dev, const void *buf, size_t len, uint64_t off)
{
	return io(dev, true, (uint8_t *)buf, len, off);
}

static int flush(void *dev)
{
	return fdatasync(((struct dev *)dev)->fd) < 0 ? -errno : 0;
}

__attribute__((visibility("default")))
const struct parley_plugin parley_plugin_v1 = {
	.abi = PARLEY_PLUGIN_ABI,
	.size = sizeof(struct parley_plugin),
	.plugin_class = PARLEY_PLUGIN_BLOCK,
	.name = "file",
	.ops = { .init = init, .power_up = plug_nothing,
		 .load_state = load_state, .run = plug_nothing,
		 .save_state = save_state, .power_down = power_down,
		 .teardown = teardown },
	.u.block = { .read = bread, .write = bwrite, .flush = flush },
};
