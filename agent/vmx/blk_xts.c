/* AES-256-XTS per 512-byte unit (blk_xts.h). */
#include "agent/vmx/blk_xts.h"
#include "agent/vmx/blk_xts_vaes.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* XTS over AES-256-ECB, the way fast XTS code runs: every unit's first
 * tweak from one ECB call with key 2, the tweak stream for the whole
 * request expanded in GF(2^128), then one ECB call with key 1 over all of
 * the request's data between two XORs. One EVP call per request instead
 * of a re-initialised XTS context per 512 bytes (which costs more than
 * the AES itself); checked against OpenSSL's own XTS in tests/test_disk.c
 * and against dm-crypt where the kernel has it.
 *
 * Where the CPU has VAES (blk_xts_vaes.c) that runs instead: four blocks
 * per AES instruction, the tweaks made in vector registers, one pass over
 * the data; its round keys live in the same mlock'd page as the key. */
struct blk_xts {
	pthread_mutex_t lock;
	uint8_t *key;             /* one mlock'd page: the key, then rk */
	uint8_t *rk;              /* VAES round keys in that page, or NULL */
	EVP_CIPHER_CTX *enc, *dec;   /* AES-256-ECB, key 1 */
	EVP_CIPHER_CTX *tweak;       /* AES-256-ECB encrypt, key 2 */
	uint8_t *bounce;
	uint8_t *tw;              /* tweak stream, bounce_bytes */
	uint8_t *tin;             /* first tweaks, 16 per unit */
	size_t bounce_bytes;
};

int xts_new(const uint8_t *key, size_t bounce_bytes, struct blk_xts **out,
	    struct parley_err *err)
{
	return xts_new_with(key, bounce_bytes, xts_vaes_usable(), out, err);
}

int xts_new_with(const uint8_t *key, size_t bounce_bytes, bool vaes,
		 struct blk_xts **out, struct parley_err *err)
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
		if (vaes) {
			x->rk = x->key + XTS_KEY_BYTES;
			xts_vaes_schedule(x->key, x->rk);
		}
		x->bounce_bytes = bounce_bytes;
		x->bounce = malloc(bounce_bytes);
		x->tw = malloc(bounce_bytes);
		x->tin = malloc(bounce_bytes / XTS_UNIT * 16);
		x->enc = EVP_CIPHER_CTX_new();
		x->dec = EVP_CIPHER_CTX_new();
		x->tweak = EVP_CIPHER_CTX_new();
		if (!x->bounce || !x->tw || !x->tin || !x->enc || !x->dec ||
		    !x->tweak)
			rc = perr(err, -ENOMEM, "out of memory");
	}
	if (rc == 0 &&
	    (EVP_EncryptInit_ex(x->enc, EVP_aes_256_ecb(), NULL, x->key,
				NULL) != 1 ||
	     EVP_DecryptInit_ex(x->dec, EVP_aes_256_ecb(), NULL, x->key,
				NULL) != 1 ||
	     EVP_EncryptInit_ex(x->tweak, EVP_aes_256_ecb(), NULL,
				x->key + 32, NULL) != 1 ||
	     EVP_CIPHER_CTX_set_padding(x->enc, 0) != 1 ||
	     EVP_CIPHER_CTX_set_padding(x->dec, 0) != 1 ||
	     EVP_CIPHER_CTX_set_padding(x->tweak, 0) != 1))
		rc = perr(err, -EINVAL, "OpenSSL refused the XTS key");
	if (rc < 0) {
		xts_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

static int ecb(EVP_CIPHER_CTX *c, uint8_t *out, const uint8_t *in,
	       size_t len)
{
	int n = 0;
	return EVP_CipherUpdate(c, out, &n, in, (int)len) == 1 &&
	       (size_t)n == len ? 0 : -EIO;
}

/* tw[0..len): the tweak of every 16-byte block of units off/512 on, and
 * the data XORed with it into out. */
static int whiten(struct blk_xts *x, const uint8_t *in, uint8_t *out,
		  size_t len, uint64_t off)
{
	size_t units = len / XTS_UNIT;
	uint64_t first = off / XTS_UNIT;
	/* dm-crypt plain64: the unit number, little-endian, zero-padded. */
	memset(x->tin, 0, units * 16);
	for (size_t u = 0; u < units; u++)
		for (int i = 0; i < 8; i++)
			x->tin[u * 16 + i] = (uint8_t)((first + u) >> (8 * i));
	if (ecb(x->tweak, x->tin, x->tin, units * 16) < 0)
		return -EIO;
	/* One pass: each block's tweak kept for the second XOR and applied
	 * to the data now. */
	for (size_t u = 0; u < units; u++) {
		uint64_t lo, hi;
		memcpy(&lo, x->tin + u * 16, 8);
		memcpy(&hi, x->tin + u * 16 + 8, 8);
		size_t base = u * XTS_UNIT;
		for (unsigned b = 0; b < XTS_UNIT; b += 16) {
			uint64_t d0, d1;
			memcpy(x->tw + base + b, &lo, 8);
			memcpy(x->tw + base + b + 8, &hi, 8);
			memcpy(&d0, in + base + b, 8);
			memcpy(&d1, in + base + b + 8, 8);
			d0 ^= lo;
			d1 ^= hi;
			memcpy(out + base + b, &d0, 8);
			memcpy(out + base + b + 8, &d1, 8);
			/* times x in GF(2^128), little-endian (IEEE 1619). */
			uint64_t carry = hi >> 63;
			hi = (hi << 1) | (lo >> 63);
			lo = (lo << 1) ^ (carry * 0x87);
		}
	}
	return 0;
}

int xts_crypt(struct blk_xts *x, int enc, const uint8_t *in, uint8_t *out,
	      size_t len, uint64_t off)
{
	if (len % XTS_UNIT || off % XTS_UNIT || len > x->bounce_bytes)
		return -EINVAL;
	if (x->rk) {
		xts_vaes_crypt(x->rk, enc, in, out, len, off / XTS_UNIT);
		return 0;
	}
	if (whiten(x, in, out, len, off) < 0 ||
	    ecb(enc ? x->enc : x->dec, out, out, len) < 0)
		return -EIO;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t a, b;
		memcpy(&a, out + i, 8);
		memcpy(&b, x->tw + i, 8);
		a ^= b;
		memcpy(out + i, &a, 8);
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
	EVP_CIPHER_CTX_free(x->tweak);
	if (x->tw) {
		OPENSSL_cleanse(x->tw, x->bounce_bytes);
		free(x->tw);
	}
	if (x->tin) {
		OPENSSL_cleanse(x->tin, x->bounce_bytes / XTS_UNIT * 16);
		free(x->tin);
	}
	if (x->key != MAP_FAILED && x->key) {
		OPENSSL_cleanse(x->key, XTS_KEY_BYTES + XTS_VAES_RK_BYTES);
		munmap(x->key, 4096);
	}
	if (x->bounce) {
		OPENSSL_cleanse(x->bounce, x->bounce_bytes);
		free(x->bounce);
	}
	pthread_mutex_destroy(&x->lock);
	free(x);
}
