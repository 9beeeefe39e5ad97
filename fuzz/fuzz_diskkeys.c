/*
 * libFuzzer target for the disk keys a policy bundle carries (PolicyBody
 * field 8, issue 13), as the agent takes them: the body's checks
 * (wire_body_decode: names, version, sealed length, one entry per
 * partition/disk/version), then the ring (agent/disk/keyring.c) opening
 * each entry with a host key the target holds. The bytes are the body.
 * When the input's last byte is odd, the target also replaces each
 * entry's sealed key by one it seals itself -- for that entry when the
 * entry's version is odd, for another partition when even -- as a daemon
 * with the host's certificate could: the ring's success path.
 *
 * Oracle: a body refused has a printable message; an accepted one obeys
 * every rule above. The ring takes exactly the entries sealed by the
 * target for themselves (nothing random opens: AES-GCM), refuses all
 * others with a printable reason, and hands out for (partition, disk)
 * exactly the key sealed for its lowest version taken.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/disk/keyring.h"
#include "common/err.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "common/seal.h"
#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST "host-a"

static EVP_PKEY *key;
static struct disk_keyring ring;

static void cleanup(void)
{
	disk_keyring_free(&ring);
	EVP_PKEY_free(key);
}

static void setup(void)
{
	struct parley_err err = { 0 };
	PARLEY_ASSERT(pki_key_new(&key, &err) == 0);
	PARLEY_ASSERT(disk_keyring_init(&ring, &err) == 0);
	atexit(cleanup);
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

struct tally {
	unsigned refused;
};

static void report(void *ctx, const char *event, const char *part,
		   const char *disk, const char *detail)
{
	struct tally *t = ctx;
	(void)part, (void)disk;
	PARLEY_ASSERT(printable(detail));
	if (!strcmp(event, "disk_key_refused"))
		t->refused++;
}

/* The key the target seals for entry i: derived from i, halves differ. */
static void key_for(size_t i, uint8_t k[64])
{
	for (int b = 0; b < 64; b++)
		k[b] = (uint8_t)(i * 7 + (size_t)b * 3 + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!key)
		setup();
	bool seal_own = size > 0 && (data[size - 1] & 1);
	ProtobufCBinaryData body = { size, (uint8_t *)data };
	Parley__V1__PolicyBody *b = NULL;
	struct parley_err err = { 0 };
	if (wire_body_decode(&body, &b, &err) < 0) {
		PARLEY_ASSERT(printable(perr_msg(&err)));
		PARLEY_ASSERT(!b);
		return 0;
	}
	size_t n = b->n_disk_keys;
	PARLEY_ASSERT(n <= WIRE_DISK_KEYS_MAX);
	for (size_t i = 0; i < n; i++) {
		const Parley__V1__DiskKey *k = b->disk_keys[i];
		PARLEY_ASSERT(jv_name_valid(k->partition, strlen(k->partition),
					    WIRE_NAME_MAX));
		PARLEY_ASSERT(jv_name_valid(k->disk, strlen(k->disk),
					    WIRE_NAME_MAX));
		PARLEY_ASSERT(strlen(k->disk) <= WIRE_DISK_NAME_MAX);
		PARLEY_ASSERT(k->key_version >= 1);
		PARLEY_ASSERT(k->sealed.len == SEAL_LEN);
		for (size_t j = 0; j < i; j++)
			PARLEY_ASSERT(strcmp(b->disk_keys[j]->partition,
					     k->partition) ||
				      strcmp(b->disk_keys[j]->disk, k->disk) ||
				      b->disk_keys[j]->key_version !=
					      k->key_version);
	}
	/* The target's own seals (the buffers are the unpacked body's). */
	bool good[WIRE_DISK_KEYS_MAX] = { false };
	for (size_t i = 0; seal_own && i < n; i++) {
		Parley__V1__DiskKey *k = b->disk_keys[i];
		uint8_t kk[64];
		key_for(i, kk);
		good[i] = k->key_version & 1;
		struct seal_ctx c = { HOST, good[i] ? k->partition : "",
				      k->disk, k->key_version };
		PARLEY_ASSERT(seal_key(key, &c, kk, k->sealed.data, &err) ==
			      0);
	}
	struct tally t = { 0 };
	int refused = disk_keyring_load(&ring, b, HOST, key, report, &t);
	unsigned want_taken = 0;
	for (size_t i = 0; i < n; i++)
		want_taken += good[i];
	/* More than the ring's half would be refused as too many. */
	if (want_taken <= KEYRING_MAX / 2) {
		PARLEY_ASSERT((size_t)refused + want_taken == n);
		PARLEY_ASSERT(ring.n == want_taken);
	}
	PARLEY_ASSERT((unsigned)refused == t.refused);
	for (size_t i = 0; i < n && want_taken <= KEYRING_MAX / 2; i++) {
		const Parley__V1__DiskKey *k = b->disk_keys[i];
		struct part_disk_spec d = { 0 };
		snprintf(d.name, sizeof(d.name), "%s", k->disk);
		uint8_t got[64], kk[64];
		/* The lowest version taken for this disk is what comes out,
		 * unless two are taken (a rekey: the source would re-encrypt
		 * a file, which this target does not have). */
		size_t lo = n;
		unsigned taken = 0;
		for (size_t j = 0; j < n; j++)
			if (good[j] && !strcmp(b->disk_keys[j]->partition,
					       k->partition) &&
			    !strcmp(b->disk_keys[j]->disk, k->disk)) {
				taken++;
				if (lo == n || b->disk_keys[j]->key_version <
						       b->disk_keys[lo]->key_version)
					lo = j;
			}
		PARLEY_ASSERT(disk_keyring_versions(&ring, k->partition,
						    k->disk) == taken);
		if (taken > 1)
			continue;
		int rc = disk_keyring_get(&ring, k->partition, &d, got, &err);
		if (!taken) {
			PARLEY_ASSERT(rc == -ENOKEY);
			continue;
		}
		PARLEY_ASSERT(rc == 0);
		key_for(lo, kk);
		PARLEY_ASSERT(!memcmp(got, kk, 64));
	}
	parley__v1__policy_body__free_unpacked(b, NULL);
	return 0;
}
