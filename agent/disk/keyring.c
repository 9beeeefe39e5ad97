/* Disk keys from the daemon, in locked memory (keyring.h). */
#include "agent/disk/keyring.h"
#include "agent/disk/rekey.h"
#include "common/log.h"
#include "common/seal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <openssl/crypto.h>

#define RING_BYTES (KEYRING_MAX * sizeof(struct keyring_entry))

int disk_keyring_init(struct disk_keyring *r, struct parley_err *err)
{
	_Static_assert(SEAL_KEY_LEN == CTL_DISK_KEY_BYTES, "one key size");
	memset(r, 0, sizeof(*r));
	void *p = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return perr(err, -errno, "disk keys: mmap: %m");
	r->e = p;
	/* Never swapped, never in a core dump, not inherited by a fork (a
	 * vmm is exec'd, but nothing should carry these across). */
	r->locked = mlock(p, RING_BYTES) == 0;
	if (!r->locked)
		log_warn("disk keys: mlock: %m (keys may be swapped out; "
			 "raise RLIMIT_MEMLOCK)");
	madvise(p, RING_BYTES, MADV_DONTDUMP);
	madvise(p, RING_BYTES, MADV_DONTFORK);
	return 0;
}

void disk_keyring_free(struct disk_keyring *r)
{
	if (!r->e)
		return;
	OPENSSL_cleanse(r->e, RING_BYTES);
	if (r->locked)
		munlock(r->e, RING_BYTES);
	munmap(r->e, RING_BYTES);
	memset(r, 0, sizeof(*r));
}

static const struct keyring_entry *find(const struct keyring_entry *e,
					unsigned n, const char *part,
					const char *disk)
{
	const struct keyring_entry *best = NULL;
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(e[i].part, part) && !strcmp(e[i].disk, disk) &&
		    (!best || e[i].version < best->version))
			best = &e[i];
	return best;
}

unsigned disk_keyring_versions(const struct disk_keyring *r, const char *part,
			       const char *disk)
{
	unsigned n = 0;
	for (unsigned i = 0; r->e && i < r->n; i++)
		n += !strcmp(r->e[i].part, part) && !strcmp(r->e[i].disk, disk);
	return n;
}

bool disk_keyring_has(const struct disk_keyring *r, const char *part,
		      const char *disk)
{
	return r->e && find(r->e, r->n, part, disk) != NULL;
}

int disk_keyring_load(struct disk_keyring *r, const Parley__V1__PolicyBody *b,
		      const char *host, EVP_PKEY *priv, keyring_report report,
		      void *ctx)
{
	/* The new set goes beside the old one, in the same locked mapping
	 * (upper half), so that the old one can be compared, then wiped. */
	enum { HALF = KEYRING_MAX / 2 };
	struct keyring_entry *nw = r->e + HALF;
	unsigned nn = 0;
	int refused = 0;
	size_t nk = b ? b->n_disk_keys : 0;
	if (!r->e)
		return 0;
	for (size_t i = 0; i < nk; i++) {
		const Parley__V1__DiskKey *k = b->disk_keys[i];
		struct parley_err err = { 0 };
		struct seal_ctx c = { host, k->partition, k->disk,
				      k->key_version };
		int rc = 0;
		if (nn == HALF)
			rc = perr(&err, -E2BIG, "more than %d disk keys",
				  HALF);
		else if (strlen(k->partition) >= sizeof(nw->part) ||
			 strlen(k->disk) >= sizeof(nw->disk))
			rc = perr(&err, -EINVAL, "a name too long");
		else if (!priv)
			rc = perr(&err, -ENOKEY, "no host key to open it with");
		if (rc == 0)
			rc = seal_open(priv, &c, k->sealed.data, k->sealed.len,
				       nw[nn].key, &err);
		if (rc == 0 && !memcmp(nw[nn].key, nw[nn].key + 32, 32))
			rc = perr(&err, -EINVAL, "its two halves are equal "
				  "(XTS refuses that key)");
		if (rc < 0) {
			OPENSSL_cleanse(nw[nn].key, sizeof(nw[nn].key));
			refused++;
			if (report)
				report(ctx, "disk_key_refused", k->partition,
				       k->disk, perr_msg(&err));
			continue;
		}
		snprintf(nw[nn].part, sizeof(nw[nn].part), "%s", k->partition);
		snprintf(nw[nn].disk, sizeof(nw[nn].disk), "%s", k->disk);
		nw[nn].version = k->key_version;
		nn++;
	}
	for (unsigned i = 0; i < r->n; i++) {
		const struct keyring_entry *o = &r->e[i];
		/* Once per (partition, disk), at its first entry. */
		if (find(r->e, i, o->part, o->disk))
			continue;
		if (!find(nw, nn, o->part, o->disk) && report)
			report(ctx, "disk_key_withdrawn", o->part, o->disk,
			       "not in the new policy bundle");
	}
	OPENSSL_cleanse(r->e, HALF * sizeof(*r->e));
	memcpy(r->e, nw, nn * sizeof(*nw));
	OPENSSL_cleanse(nw, HALF * sizeof(*nw));
	r->n = nn;
	return refused;
}

int disk_keyring_get(void *ctx, const char *part,
		     const struct part_disk_spec *d,
		     uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err)
{
	const struct disk_keyring *r = ctx;
	const struct keyring_entry *e = r && r->e ? find(r->e, r->n, part,
							 d->name) : NULL;
	if (!e)
		return perr(err, -ENOKEY, "no key for disk \"%s\" in the "
			    "daemon's policy bundle (not released to this "
			    "partition, or withheld)", d->name);
	const struct keyring_entry *hi = e;
	for (unsigned i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].part, part) &&
		    !strcmp(r->e[i].disk, d->name) &&
		    r->e[i].version > hi->version)
			hi = &r->e[i];
	if (hi != e) {
		struct beneath_dirs dirs = { 0 };
		if (r->dirs)
			beneath_add_all(&dirs, r->dirs);
		uint64_t in_use = e->version;
		bool done = false;
		int rc = disk_rekey(&dirs, d, e->version, e->key, hi->version,
				    hi->key, &in_use, &done, err);
		if (rc < 0)
			return rc;
		if (r->report) {
			char detail[96];
			snprintf(detail, sizeof(detail), "re-encrypted from key "
				 "version %llu to %llu",
				 (unsigned long long)e->version,
				 (unsigned long long)hi->version);
			r->report(r->report_ctx, "disk_key_rekeyed", part,
				  d->name, detail);
		}
		e = hi;
	}
	memcpy(key, e->key, CTL_DISK_KEY_BYTES);
	return 0;
}
