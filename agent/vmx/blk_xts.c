/* AES-256-XTS per 512-byte unit (blk_xts.h). */
#include "agent/vmx/blk_xts.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

struct blk_xts {
	pthread_mutex_t lock;
	uint8_t *key;             /* one mlock'd page, XTS_KEY_BYTES used */
	EVP_CIPHER_CTX *enc, *dec;
	uint8_t *bounce;
	size_t bounce_bytes;
};

int xts_new(const uint8_t *key, size_t bounce_bytes, struct blk_xts **out,
	    struct parley_err *err)
{
	if (!memcmp(key, key + 32, 32))
		return perr(err, -EINVAL, "XTS key halves are equal");
	struct blk_xts *x = calloc(1, sizeof(*x));
	if (!x)
		return perr(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&x->lock, NULL);
	x->key = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->key == MAP_FAILED) {
		free(x);
		return perr(err, -ENOMEM, "key page: %m");
	}
	/* Never swapped, never in a core dump. */
	int rc = 0;
	if (mlock(x->key, 4096) < 0)
		rc = perr(err, -errno, "mlock of the key page: %m");
	else
		madvise(x->key, 4096, MADV_DONTDUMP);
	if (rc == 0) {
		memcpy(x->key, key, XTS_KEY_BYTES);
		x->bounce_bytes = bounce_bytes;
		x->bounce = malloc(bounce_bytes);
		x->enc = EVP_CIPHER_CTX_new();
		x->dec = EVP_CIPHER_CTX_new();
		if (!x->bounce || !x->enc || !x->dec)
			rc = perr(err, -ENOMEM, "out of memory");
	}
	if (rc == 0 &&
	    (EVP_EncryptInit_ex(x->enc, EVP_aes_256_xts(), NULL, x->key,
				NULL) != 1 ||
	     EVP_DecryptInit_ex(x->dec, EVP_aes_256_xts(), NULL, x->key,
				NULL) != 1))
		rc = perr(err, -EINVAL, "OpenSSL refused the XTS key");
	if (rc < 0) {
		xts_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* dm-crypt plain64: the unit number, little-endian, zero-padded to 16. */
static void tweak(uint8_t iv[16], uint64_t unit)
{
	memset(iv, 0, 16);
	for (int i = 0; i < 8; i++)
		iv[i] = (uint8_t)(unit >> (8 * i));
}

int xts_crypt(struct blk_xts *x, int enc, const uint8_t *in, uint8_t *out,
	      size_t len, uint64_t off)
{
	if (len % XTS_UNIT || off % XTS_UNIT)
		return -EINVAL;
	EVP_CIPHER_CTX *c = enc ? x->enc : x->dec;
	for (size_t done = 0; done < len; done += XTS_UNIT) {
		uint8_t iv[16];
		int n = 0;
		tweak(iv, (off + done) / XTS_UNIT);
		if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) != 1 ||
		    EVP_CipherUpdate(c, out + done, &n, in + done,
				     XTS_UNIT) != 1 || n != XTS_UNIT)
			return -EIO;
	}
	return 0;
}

int xts_pwrite(struct blk_xts *x, int fd, const uint8_t *in, size_t len,
	       uint64_t off)
{
	if (len > x->bounce_bytes)
		return -EINVAL;
	pthread_mutex_lock(&x->lock);
	/* Encrypted into our own buffer: the partition's memory never holds
	 * ciphertext, and a change to it mid-request cannot reach the file
	 * unencrypted. */
	int rc = xts_crypt(x, 1, in, x->bounce, len, off);
	for (size_t done = 0; rc == 0 && done < len;) {
		ssize_t n = pwrite(fd, x->bounce + done, len - done,
				   (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int xts_pread(struct blk_xts *x, int fd, uint8_t *out, size_t len,
	      uint64_t off)
{
	int rc = 0;
	for (size_t done = 0; rc == 0 && done < len;) {
		ssize_t n = pread(fd, out + done, len - done,
				  (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	if (rc == 0) {
		pthread_mutex_lock(&x->lock);
		rc = xts_crypt(x, 0, out, out, len, off);
		pthread_mutex_unlock(&x->lock);
	}
	return rc;
}

void xts_free(struct blk_xts *x)
{
	if (!x)
		return;
	EVP_CIPHER_CTX_free(x->enc);  /* cleanses the key schedule */
	EVP_CIPHER_CTX_free(x->dec);
	if (x->key != MAP_FAILED && x->key) {
		OPENSSL_cleanse(x->key, XTS_KEY_BYTES);
		munmap(x->key, 4096);
	}
	if (x->bounce) {
		OPENSSL_cleanse(x->bounce, x->bounce_bytes);
		free(x->bounce);
	}
	pthread_mutex_destroy(&x->lock);
	free(x);
}
