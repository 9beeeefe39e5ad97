#include "agent/snapshot.h"
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_HASH_LEN 32

static int hashed_write(int fd, EVP_MD_CTX *md, const void *buf, size_t len)
{
	EVP_DigestUpdate(md, buf, len);
	return fd_write_all(fd, buf, len);
}

int snap_write(const char *path, const struct snap_header *hdr,
	       const struct ctl_vcpu_state *st, const uint8_t *mem,
	       struct parley_err *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", tmp);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	int rc = hashed_write(fd, md, hdr, sizeof(*hdr));
	if (rc == 0)
		rc = hashed_write(fd, md, st, hdr->vcpus * sizeof(*st));
	if (rc == 0)
		rc = hashed_write(fd, md, mem, hdr->ram_size + hdr->cfg_size);
	unsigned char sum[SNAP_HASH_LEN];
	EVP_DigestFinal_ex(md, sum, NULL);
	EVP_MD_CTX_free(md);
	if (rc == 0)
		rc = fd_write_all(fd, sum, sizeof(sum));
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
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

int snap_check_header(const struct snap_header *h, struct parley_err *err)
{
	if (memcmp(h->magic, SNAP_MAGIC, 8))
		return perr(err, -EINVAL, "not a parley snapshot (bad magic)");
	if (h->version != SNAP_VERSION)
		return perr(err, -EINVAL, "snapshot version %u, expected %u",
			    h->version, SNAP_VERSION);
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
	if (h->image_hi > LAYOUT_IMAGE_MAX || h->image_hi < PARLEY_IMAGE_MIN)
		return perr(err, -EINVAL, "snapshot image end 0x%llx",
			    (unsigned long long)h->image_hi);
	if (h->entry < PARLEY_IMAGE_MIN || h->entry >= h->image_hi)
		return perr(err, -EINVAL, "snapshot entry 0x%llx",
			    (unsigned long long)h->entry);
	for (unsigned i = 0; i < h->nrange; i++) {
		uint64_t end;
		if (__builtin_add_overflow(h->range[i].gpa, h->range[i].size,
					   &end) ||
		    h->range[i].gpa < PARLEY_IMAGE_MIN || end > h->image_hi)
			return perr(err, -EINVAL, "snapshot image range %u "
				    "outside the image", i);
	}
	if (!memchr(h->name, 0, sizeof(h->name)) || !h->name[0])
		return perr(err, -EINVAL, "snapshot partition name invalid");
	return 0;
}

static int hashed_read(int fd, EVP_MD_CTX *md, void *buf, size_t len)
{
	int rc = fd_read_exact(fd, buf, len);
	if (rc == 0)
		EVP_DigestUpdate(md, buf, len);
	return rc;
}

static int read_body(int fd, EVP_MD_CTX *md, struct snap_image *img,
		     struct parley_err *err)
{
	const struct snap_header *h = &img->h;
	int rc = hashed_read(fd, md, img->vcpu, h->vcpus * sizeof(img->vcpu[0]));
	if (rc < 0)
		return perr(err, rc, "snapshot truncated in vCPU state");
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
	rc = hashed_read(fd, md, mem, total);
	if (rc < 0) {
		munmap(mem, total);
		return perr(err, rc, "snapshot truncated in memory");
	}
	/* The system tables are ours, not the file's: lay them again. */
	struct layout_range r[SNAP_RANGES_MAX];
	for (unsigned i = 0; i < h->nrange; i++)
		r[i] = (struct layout_range){ h->range[i].gpa, h->range[i].size,
					      h->range[i].flags };
	struct layout_params lp = { .ram_size = h->ram_size, .vcpus = h->vcpus,
				    .image_hi = h->image_hi,
				    .nrange = h->nrange, .ranges = r };
	rc = layout_system(mem, &lp, err);
	munmap(mem, total);
	return rc;
}

static int check_sum(int fd, EVP_MD_CTX *md, struct parley_err *err)
{
	unsigned char want[SNAP_HASH_LEN], got[SNAP_HASH_LEN];
	if (fd_read_exact(fd, want, sizeof(want)) < 0)
		return perr(err, -EINVAL, "snapshot truncated in checksum");
	EVP_DigestFinal_ex(md, got, NULL);
	if (memcmp(want, got, sizeof(got)))
		return perr(err, -EBADMSG, "snapshot checksum mismatch: the "
			    "file is corrupt or was altered");
	return 0;
}

int snap_read(const char *path, struct snap_image *img,
	      struct parley_err *err)
{
	memset(img, 0, sizeof(*img));
	img->mem_fd = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	struct stat st;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	int rc = fstat(fd, &st) < 0 ? perr(err, -errno, "fstat: %m") : 0;
	if (rc == 0 && hashed_read(fd, md, &img->h, sizeof(img->h)) < 0)
		rc = perr(err, -EINVAL, "snapshot shorter than its header");
	if (rc == 0)
		rc = snap_check_header(&img->h, err);
	uint64_t want = sizeof(img->h) +
			img->h.vcpus * sizeof(struct ctl_vcpu_state) +
			img->h.ram_size + img->h.cfg_size + SNAP_HASH_LEN;
	if (rc == 0 && (uint64_t)st.st_size != want)
		rc = perr(err, -EINVAL, "snapshot is %lld bytes, its header "
			  "says %llu", (long long)st.st_size,
			  (unsigned long long)want);
	if (rc == 0)
		rc = read_body(fd, md, img, err);
	if (rc == 0)
		rc = check_sum(fd, md, err);
	EVP_MD_CTX_free(md);
	close(fd);
	if (rc < 0) {
		if (img->mem_fd >= 0)
			close(img->mem_fd);
		img->mem_fd = -1;
		perr_prefix(err, "%s", path);
		return rc;
	}
	return 0;
}
