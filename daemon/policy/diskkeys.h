/*
 * Disk keys on the daemon's side (issue 13; README "### Disks"):
 *
 *   define   a thin partition whose spec has encrypted disks gets a key
 *            per such disk, made and wrapped by the key process
 *            (keyd_disk_key_new) and stored wrapped (migration 10);
 *   release  its host's bundle carries each key sealed to the host's
 *            certificate key by the key process (keyd_disk_key_seal):
 *            this process sees only wrapped and sealed bytes;
 *   withhold a partition whose latest measurement differs from its
 *            baseline gets none in its host's next bundle (audited
 *            disk_key_withheld with the reason); the agent stops it;
 *   rekey    a new version for a stopped partition; both travel until the
 *            agent re-encrypted the disk and said so (disk_key_rekeyed),
 *            then the old one is dropped.
 */
#ifndef PARLEY_DAEMON_DISKKEYS_H
#define PARLEY_DAEMON_DISKKEYS_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include "common/err.h"
#include "db/store.h"
#include "parley.pb-c.h"

struct keyd;

/* Keys for every encrypted disk of spec_json ("disks": [{"name",
 * "encryption": {...}}]) that has none yet; each audited
 * disk_key_created. Call inside the change's transaction. */
/* k NULL: -ENOKEY if a key is needed. */
int diskkeys_define(struct store *s, struct keyd *k, const char *host,
		    const char *partition, const char *spec_json,
		    struct parley_err *err);

/* A new key version for one disk of a partition that is not running
 * (-EBUSY otherwise); audited disk_key_rekey. *version gets it. */
int diskkeys_rekey(struct store *s, struct keyd *k, const char *partition,
		   const char *disk, uint64_t *version,
		   struct parley_err *err);

/* After measurements or a baseline change of `partition`: recompute its
 * keys' release state; a change is audited (disk_key_withheld with the
 * reason, or disk_key_released) and is a new policy version. Inside the
 * caller's transaction. */
int diskkeys_refresh(struct store *s, const char *partition,
		     struct parley_err *err);

/* An agent's disk_key_rekeyed event (detail "disk D: re-encrypted from
 * key version A to B"): the disk is under B now, so the versions below B
 * are dropped (audited disk_key_retired). A detail that does not parse,
 * or B not the latest version, changes nothing (logged). */
int diskkeys_rekeyed(struct store *s, const char *host, const char *partition,
		     const char *detail, struct parley_err *err);

/* An agent's quarantine event for `partition` (reason, file as it
 * reported them): its keys are withheld from the next bundle, audited
 * disk_key_withheld with reason QUARANTINE. */
int diskkeys_quarantined(struct store *s, const char *host,
			 const char *partition, const char *reason,
			 const char *file, struct parley_err *err);

/* What a body's disk keys point into. */
struct diskkeys_mem {
	Parley__V1__DiskKey *keys, **kp;
	uint8_t (*sealed)[160];
	unsigned n;
	struct store_disk_key *rows;   /* the names point into them */
};

/* The released keys of `host`'s partitions (each version held: a rekey
 * in progress sends both), sealed to host_cert's key, into b->disk_keys (the
 * bundle carries the baselines of the partitions named, for the agent's
 * own check). With host_cert NULL: -ENOKEY if there are keys
 * (a bundle without them would withdraw them). */
/* rows: the host's keys as store_disk_keys_list gives them (copied). */
int diskkeys_fill(struct store *s, struct keyd *k, const char *host,
		  X509 *host_cert, const struct store_disk_key *rows,
		  unsigned nrows, Parley__V1__PolicyBody *b,
		  struct diskkeys_mem *m, struct parley_err *err);
void diskkeys_mem_free(struct diskkeys_mem *m);

/* Whether `host` has any disk keys (the push drains its signing window
 * before it asks the key process to seal). */
bool diskkeys_host_has(struct store *s, const char *host);

#endif
