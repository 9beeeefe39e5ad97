#include "agent/snapshot.h"
#include "common/fileio.h"
#include "common/jsonv.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keeps a tag for this file format from ever meaning anything elsewhere
 * the same key might be used. */
static const char snap_tag_context[] = "parley snapshot v2";

/* ---- the key ---- */

void snap_key_wipe(struct snap_key *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

static int key_create(const char *path, struct snap_key *k,
		      struct parley_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				    O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno; /* EEXIST: someone made it first; load that */
	int rc = 0;
	if (getrandom(k->k, sizeof(k->k), 0) != (ssize_t)sizeof(k->k))
		rc = perr(err, -EIO, "%s: no random bytes for a key", path);
	if (rc == 0 && (fd_write_all(fd, k->k, sizeof(k->k)) < 0 ||
			fsync(fd) < 0))
		rc = perr(err, -EIO, "%s: writing the key: %m", path);
	close(fd);
	if (rc < 0) {
		unlink(path);
		snap_key_wipe(k);
	}
	return rc;
}

static int key_read(const char *path, struct snap_key *k,
		    struct parley_err *err)
{
	/* O_NONBLOCK: a FIFO in its place must not hang the agent. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "snapshot key %s: %m", path);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = perr(err, -errno, "snapshot key %s: %m", path);
	else if (!S_ISREG(st.st_mode))
		rc = perr(err, -EINVAL, "snapshot key %s is not a regular "
			  "file", path);
	else if (st.st_uid != geteuid() || (st.st_mode & 077))
		rc = perr(err, -EPERM, "snapshot key %s must be owned by uid "
			  "%u and mode 0600 (is uid %u, mode 0%o)", path,
			  (unsigned)geteuid(), (unsigned)st.st_uid,
			  (unsigned)(st.st_mode & 0777));
	else if (st.st_size != SNAP_KEY_LEN)
		rc = perr(err, -EINVAL, "snapshot key %s is %lld bytes, not "
			  "%d", path, (long long)st.st_size, SNAP_KEY_LEN);
	else if (fd_read_exact(fd, k->k, sizeof(k->k)) < 0)
		rc = perr(err, -EIO, "snapshot key %s: short read", path);
	close(fd);
	if (rc < 0)
		snap_key_wipe(k);
	return rc;
}

int snap_key_load(const char *path, bool create, struct snap_key *k,
		  struct parley_err *err)
{
	if (create) {
		int rc = key_create(path, k, err);
		if (rc == 0 || rc != -EEXIST) {
			if (rc < 0 && (!err || !err->code))
				perr(err, rc, "snapshot key %s: %s", path,
				     strerror(-rc));
			return rc;
		}
	}
	return key_read(path, k, err);
}

int snap_host(char out[SNAP_HOST_MAX], struct parley_err *err)
{
	memset(out, 0, SNAP_HOST_MAX);
	if (gethostname(out, SNAP_HOST_MAX - 1) < 0)
		return perr(err, -errno, "gethostname: %m");
	return 0;
}

/* ---- the tag ---- */

static EVP_MAC_CTX *tag_begin(const struct snap_key *k)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac);
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if (c && (!EVP_MAC_init(c, k->k, sizeof(k->k), p) ||
		  !EVP_MAC_update(c, (const uint8_t *)snap_tag_context,
				  sizeof(snap_tag_context)))) {
		EVP_MAC_CTX_free(c);
		c = NULL;
	}
	return c;
}

static int tag_end(EVP_MAC_CTX *c, uint8_t tag[SNAP_TAG_LEN])
{
	size_t n = 0;
	int ok = EVP_MAC_final(c, tag, &n, SNAP_TAG_LEN) && n == SNAP_TAG_LEN;
	EVP_MAC_CTX_free(c);
	return ok ? 0 : -EIO;
}

/* ---- writing ---- */

static int tagged_write(int fd, EVP_MAC_CTX *c, const void *buf, size_t len)
{
	if (!EVP_MAC_update(c, buf, len))
		return -EIO;
	return fd_write_all(fd, buf, len);
}

static int write_body(int fd, const struct snap_key *k,
		      const struct snap_header *hdr,
		      const struct ctl_vcpu_state *st,
		      const struct ctl_device_blob *dev, const uint8_t *mem)
{
	EVP_MAC_CTX *c = tag_begin(k);
	if (!c)
		return -EIO;
	int rc = tagged_write(fd, c, hdr, sizeof(*hdr));
	if (rc == 0)
		rc = tagged_write(fd, c, st, hdr->vcpus * sizeof(*st));
	if (rc == 0 && hdr->ndevice)
		rc = tagged_write(fd, c, dev, hdr->ndevice * sizeof(*dev));
	if (rc == 0)
		rc = tagged_write(fd, c, mem, hdr->ram_size + hdr->cfg_size);
	uint8_t tag[SNAP_TAG_LEN];
	int trc = tag_end(c, tag);
	if (rc == 0)
		rc = trc;
	if (rc == 0)
		rc = fd_write_all(fd, tag, sizeof(tag));
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	return rc;
}

int snap_write(const char *path, const struct snap_key *k,
	       const struct snap_header *hdr, const struct ctl_vcpu_state *st,
	       const struct ctl_device_blob *dev, const uint8_t *mem,
	       struct parley_err *err)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return perr(err, -ENAMETOOLONG, "snapshot path too long");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
				   O_CLOEXEC, 0600);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", tmp);
	int rc = write_body(fd, k, hdr, st, dev, mem);
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return perr(err, rc, "writing snapshot %s: %s", path,
			    strerror(-rc));
	}
	return 0;
}

/* ---- reading ---- */

static int check_version(const struct snap_header *h, struct parley_err *err)
{
	if (h->version < SNAP_VERSION_MIN)
		return perr(err, -EINVAL, "snapshot version %u, expected %u: "
			    "written by an older parley with no key to check "
			    "it by; take a new snapshot", h->version,
			    SNAP_VERSION);
	if (h->version > SNAP_VERSION)
		return perr(err, -EINVAL, "snapshot version %u, expected %u",
			    h->version, SNAP_VERSION);
	return 0;
}

static int check_ranges(const struct snap_header *h, struct parley_err *err)
{
	for (unsigned i = 0; i < h->nrange; i++) {
		uint64_t end;
		if (__builtin_add_overflow(h->range[i].gpa, h->range[i].size,
					   &end) ||
		    h->range[i].gpa < PARLEY_IMAGE_MIN || end > h->image_hi)
			return perr(err, -EINVAL, "snapshot image range %u "
				    "outside the image", i);
	}
	return 0;
}

int snap_check_header(const struct snap_header *h, struct parley_err *err)
{
	if (memcmp(h->magic, SNAP_MAGIC, 8))
		return perr(err, -EINVAL, "not a parley snapshot (bad magic)");
	int rc = check_version(h, err);
	if (rc < 0)
		return rc;
	if (h->vcpus < 1 || h->vcpus > PARLEY_VCPUS_MAX)
		return perr(err, -EINVAL, "snapshot has %u vCPUs", h->vcpus);
	if (h->ram_size < PARLEY_MEM_MIN || h->ram_size > PARLEY_MEM_MAX ||
	    h->ram_size % 0x200000)
		return perr(err, -EINVAL, "snapshot RAM size 0x%llx",
			    (unsigned long long)h->ram_size);
	if (h->cfg_size > PARLEY_CONFIG_MAX || h->cfg_size % PARLEY_PAGE_SIZE)
		return perr(err, -EINVAL, "snapshot config size 0x%llx",
			    (unsigned long long)h->cfg_size);
	if (h->nrange > SNAP_RANGES_MAX)
		return perr(err, -EINVAL, "snapshot has %u image ranges",
			    h->nrange);
	if (h->ndevice > (h->version >= 3 ? CTL_DEVICES_MAX : 0))
		return perr(err, -EINVAL, "snapshot has %u device states",
			    h->ndevice);
	if (h->image_hi > LAYOUT_IMAGE_MAX || h->image_hi < PARLEY_IMAGE_MIN)
		return perr(err, -EINVAL, "snapshot image end 0x%llx",
			    (unsigned long long)h->image_hi);
	if (h->entry < PARLEY_IMAGE_MIN || h->entry >= h->image_hi)
		return perr(err, -EINVAL, "snapshot entry 0x%llx",
			    (unsigned long long)h->entry);
	rc = check_ranges(h, err);
	if (rc < 0)
		return rc;
	/* The name a spec may give (spec.c), so that audit, grants and logs
	 * see nothing a spec could not have named. */
	const char *nul = memchr(h->name, 0, sizeof(h->name));
	if (!nul || !jv_name_valid(h->name, (size_t)(nul - h->name),
				   sizeof(h->name)))
		return perr(err, -EINVAL, "snapshot partition name invalid");
	if (!memchr(h->host, 0, sizeof(h->host)) || !h->host[0])
		return perr(err, -EINVAL, "snapshot host name invalid");
	if (h->backend != CTL_BACKEND_KVM && h->backend != CTL_BACKEND_PROCESS)
		return perr(err, -EINVAL, "snapshot backend %u unknown",
			    h->backend);
	return 0;
}

/* What the tag vouches for, against what this agent requires. */
static int check_bound(const struct snap_header *h,
		       const struct snap_expect *want, struct parley_err *err)
{
	if (strcmp(h->host, want->host))
		return perr(err, -EPERM, "snapshot was taken on host \"%s\", "
			    "this is \"%s\"", h->host, want->host);
	if (want->name && strcmp(h->name, want->name))
		return perr(err, -EPERM, "snapshot is of partition \"%s\", "
			    "not \"%s\"", h->name, want->name);
	if (h->abi_major != PARLEY_ABI_MAJOR || h->abi_minor > PARLEY_ABI_MINOR)
		return perr(err, -EPROTO, "snapshot ABI %u.%u, this agent "
			    "runs %u.%u", h->abi_major, h->abi_minor,
			    PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR);
	return 0;
}

static int tagged_read(int fd, EVP_MAC_CTX *c, void *buf, size_t len)
{
	int rc = fd_read_exact(fd, buf, len);
	if (rc == 0 && !EVP_MAC_update(c, buf, len))
		rc = -EIO;
	return rc;
}

/* States and memory, read into a new sealed memfd. */
static int read_body(int fd, EVP_MAC_CTX *c, struct snap_image *img,
		     struct parley_err *err)
{
	const struct snap_header *h = &img->h;
	int rc = tagged_read(fd, c, img->vcpu, h->vcpus * sizeof(img->vcpu[0]));
	if (rc < 0)
		return perr(err, -EINVAL, "snapshot truncated in vCPU state");
	if (h->ndevice) {
		img->dev = calloc(h->ndevice, sizeof(*img->dev));
		if (!img->dev)
			return perr(err, -ENOMEM, "out of memory");
		if (tagged_read(fd, c, img->dev, h->ndevice *
						     sizeof(*img->dev)) < 0)
			return perr(err, -EINVAL, "snapshot truncated in "
				    "device state");
		/* Untrusted until the tag is checked, and shaped now. */
		for (uint32_t i = 0; i < h->ndevice; i++) {
			const struct ctl_device_blob *b = &img->dev[i];
			if (!b->device[0] || !b->plugin[0] ||
			    !memchr(b->device, 0, sizeof(b->device)) ||
			    !memchr(b->plugin, 0, sizeof(b->plugin)) ||
			    b->len > CTL_DEVICE_STATE_MAX)
				return perr(err, -EINVAL, "snapshot device "
					    "state %u malformed", i);
		}
	}
	uint64_t total = h->ram_size + h->cfg_size;
	img->mem_fd = memfd_create("parley:restore", MFD_CLOEXEC |
					     MFD_ALLOW_SEALING);
	if (img->mem_fd < 0 || ftruncate(img->mem_fd, (off_t)total) < 0 ||
	    fcntl(img->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
						    F_SEAL_SEAL) < 0)
		return perr(err, -errno, "guest memory for restore: %m");
	uint8_t *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED,
			    img->mem_fd, 0);
	if (mem == MAP_FAILED)
		return perr(err, -errno, "mapping memory for restore: %m");
	rc = tagged_read(fd, c, mem, total);
	munmap(mem, total);
	if (rc < 0)
		return perr(err, -EINVAL, "snapshot truncated in memory");
	return 0;
}

static int check_tag(int fd, EVP_MAC_CTX *c, struct parley_err *err)
{
	uint8_t want[SNAP_TAG_LEN], got[SNAP_TAG_LEN];
	if (tag_end(c, got) < 0)
		return perr(err, -EIO, "computing the snapshot tag failed");
	if (fd_read_exact(fd, want, sizeof(want)) < 0)
		return perr(err, -EINVAL, "snapshot truncated in its tag");
	if (CRYPTO_memcmp(want, got, sizeof(got)))
		return perr(err, -EBADMSG, "snapshot tag mismatch: the file "
			    "was altered, or not written with this agent's "
			    "snapshot key");
	return 0;
}

/* The system tables are ours, not the file's: lay them again. */
static int relay_system(struct snap_image *img, struct parley_err *err)
{
	const struct snap_header *h = &img->h;
	uint8_t *mem = mmap(NULL, h->ram_size, PROT_READ | PROT_WRITE,
			    MAP_SHARED, img->mem_fd, 0);
	if (mem == MAP_FAILED)
		return perr(err, -errno, "mapping memory for restore: %m");
	struct layout_range r[SNAP_RANGES_MAX];
	for (unsigned i = 0; i < h->nrange; i++)
		r[i] = (struct layout_range){ h->range[i].gpa, h->range[i].size,
					      h->range[i].flags };
	struct layout_params lp = { .ram_size = h->ram_size, .vcpus = h->vcpus,
				    .image_hi = h->image_hi,
				    .nrange = h->nrange, .ranges = r };
	int rc = layout_system(mem, &lp, err);
	munmap(mem, h->ram_size);
	return rc;
}

/* The file's size must be exactly what its header says. */
static int check_size(int fd, const struct snap_header *h,
		      struct parley_err *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return perr(err, -errno, "fstat: %m");
	uint64_t want = sizeof(*h) + h->vcpus * sizeof(struct ctl_vcpu_state) +
			h->ndevice * sizeof(struct ctl_device_blob) +
			h->ram_size + h->cfg_size + SNAP_TAG_LEN;
	if ((uint64_t)st.st_size != want)
		return perr(err, -EINVAL, "snapshot is %lld bytes, its header "
			    "says %llu", (long long)st.st_size,
			    (unsigned long long)want);
	return 0;
}

static int read_checked(int fd, const struct snap_key *k,
			const struct snap_expect *want, struct snap_image *img,
			struct parley_err *err)
{
	EVP_MAC_CTX *c = tag_begin(k);
	if (!c)
		return perr(err, -EIO, "HMAC-SHA256 unavailable");
	int rc = 0;
	if (tagged_read(fd, c, &img->h, sizeof(img->h)) < 0)
		rc = perr(err, -EINVAL, "snapshot shorter than its header");
	if (rc == 0)
		rc = snap_check_header(&img->h, err);
	if (rc == 0)
		rc = check_size(fd, &img->h, err);
	if (rc == 0)
		rc = read_body(fd, c, img, err);
	if (rc < 0) {
		EVP_MAC_CTX_free(c);
		return rc;
	}
	rc = check_tag(fd, c, err); /* frees c */
	if (rc == 0)
		rc = check_bound(&img->h, want, err);
	if (rc == 0)
		rc = relay_system(img, err);
	return rc;
}

int snap_read(const char *path, const struct snap_key *k,
	      const struct snap_expect *want, struct snap_image *img,
	      struct parley_err *err)
{
	memset(img, 0, sizeof(*img));
	img->mem_fd = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	int rc = read_checked(fd, k, want, img, err);
	close(fd);
	if (rc < 0) {
		if (img->mem_fd >= 0)
			close(img->mem_fd);
		img->mem_fd = -1;
		snap_image_free(img);
		perr_prefix(err, "%s", path);
	}
	return rc;
}

void snap_image_free(struct snap_image *img)
{
	free(img->dev);
	img->dev = NULL;
}
