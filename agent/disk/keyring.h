/*
 * Disk keys from the daemon (issue 13): the keys a signed bundle carries
 * (PolicyBody.disk_keys, each sealed to this host's key: common/seal.h),
 * opened with the host's private key and held only here, in memory that
 * is locked (mlock: never swapped), left out of core dumps
 * (MADV_DONTDUMP) and wiped whenever an entry goes or the ring is freed.
 * The ring is a struct disk_key_source (keys.h): the agent asks it only
 * after the partition's admission, and the key goes straight to the vmm.
 *
 * A key that was in the last bundle and is not in the new one is
 * withdrawn: disk_keyring_load says which partitions lost one, so that
 * the agent stops them (their vmm holds the key; stopping it wipes it).
 */
#ifndef PARLEY_AGENT_DISK_KEYRING_H
#define PARLEY_AGENT_DISK_KEYRING_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "agent/disk/keys.h"
#include "common/err.h"
#include "parley.pb-c.h"

#define KEYRING_MAX 512   /* two halves of 256: the held set and the next */

struct keyring_entry {
	char part[64];
	char disk[32];
	uint64_t version;
	uint8_t key[CTL_DISK_KEY_BYTES];
};

/* Reports: a key that did not open (event "disk_key_refused", detail
 * why), one withdrawn ("disk_key_withdrawn"), a disk re-encrypted to a
 * newer version ("disk_key_rekeyed", detail "re-encrypted from key
 * version A to B": the daemon then drops A). */
typedef void (*keyring_report)(void *ctx, const char *event,
			       const char *partition, const char *disk,
			       const char *detail);

struct disk_keyring {
	struct keyring_entry *e;       /* KEYRING_MAX, mmap'd and locked */
	unsigned n;
	bool locked;                   /* mlock succeeded (else logged) */
	/* For a rekey (agent/disk/rekey.h) at the next open: where disks
	 * are (NULL-terminated), and who hears of it. */
	const char *const *dirs;
	keyring_report report;
	void *report_ctx;
};

int disk_keyring_init(struct disk_keyring *r, struct parley_err *err);
/* Wipe, unlock, unmap. */
void disk_keyring_free(struct disk_keyring *r);

/* Replace the ring by the body's keys for `host`, each opened with priv.
 * An entry that does not open is refused (reported, left out: its disk
 * will not open), the others are taken. Every (partition, disk) held
 * before and absent now is reported withdrawn. Returns the number of
 * entries refused. */
int disk_keyring_load(struct disk_keyring *r, const Parley__V1__PolicyBody *b,
		      const char *host, EVP_PKEY *priv, keyring_report report,
		      void *ctx);

/* How many versions of this disk's key the ring holds (2+: a rekey). */
unsigned disk_keyring_versions(const struct disk_keyring *r, const char *part,
			       const char *disk);

/* Whether the ring holds a key for this disk. */
bool disk_keyring_has(const struct disk_keyring *r, const char *part,
		      const char *disk);

/* The disk_key_source call (ctx: the ring): the key held for
 * (part, d->name); with two versions (a rekey pending) the image is first
 * re-encrypted from the lower to the higher (rekey.h; reported
 * disk_key_rekeyed) and the higher is handed out. -ENOKEY when the
 * bundle carries none (never released to this partition, or withheld by
 * the daemon). */
int disk_keyring_get(void *ctx, const char *part,
		     const struct part_disk_spec *d,
		     uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err);

#endif
