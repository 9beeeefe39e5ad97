/* Disk keys on the daemon's side (diskkeys.h). */
#include "daemon/policy/diskkeys.h"
#include "daemon/keys/keyd.h"
#include "common/log.h"
#include "common/seal.h"
#include "common/wire.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int audit(struct store *s, const char *host, const char *event,
		 const char *partition, const char *reason, const char *detail,
		 struct parley_err *err)
{
	struct store_audit_in ev = { .host = host, .event = event,
				     .partition = partition, .reason = reason,
				     .detail = detail };
	return store_audit_append(s, &ev, 1, NULL, err);
}

static int make_key(struct store *s, struct keyd *k, const char *host,
		    const char *partition, const char *disk, uint64_t version,
		    const char *event, struct parley_err *err)
{
	uint8_t wrapped[STORE_WRAPPED_LEN];
	if (!k)
		return perr(err, -ENOKEY, "no key process for disk keys");
	int rc = keyd_disk_key_new(k, partition, disk, version, wrapped, err);
	if (rc == 0)
		rc = store_disk_key_add(s, partition, disk, version,
					(struct store_blob){ wrapped,
							     sizeof(wrapped) },
					NULL, err);
	if (rc < 0)
		return rc;
	char detail[96];
	snprintf(detail, sizeof(detail), "disk %s key version %llu", disk,
		 (unsigned long long)version);
	return audit(s, host, event, partition, NULL, detail, err);
}

int diskkeys_define(struct store *s, struct keyd *k, const char *host,
		    const char *partition, const char *spec_json,
		    struct parley_err *err)
{
	json_t *spec = json_loads(spec_json, 0, NULL);
	json_t *disks = json_object_get(spec, "disks");
	int rc = 0;
	size_t i;
	json_t *d;
	json_array_foreach(disks, i, d) {
		const char *name = json_string_value(json_object_get(d, "name"));
		if (!json_object_get(d, "encryption"))
			continue;
		if (!name || !name[0] || strlen(name) >= STORE_DISK_NAME_MAX) {
			rc = perr(err, -EINVAL, "spec.disks[%zu].name: a disk "
				  "name of 1..%d bytes", i,
				  STORE_DISK_NAME_MAX - 1);
			break;
		}
		uint64_t have = 0;
		rc = store_disk_key_version(s, partition, name, &have, err);
		if (rc == 0 && have == 0 && !k)
			rc = perr(err, -ENOKEY, "disk %s: no key process to "
				  "make its key", name);
		if (rc == 0 && have == 0)
			rc = make_key(s, k, host, partition, name, 1,
				      "disk_key_created", err);
		if (rc < 0)
			break;
	}
	json_decref(spec);
	return rc;
}

int diskkeys_rekey(struct store *s, struct keyd *k, const char *partition,
		   const char *disk, uint64_t *version,
		   struct parley_err *err)
{
	struct store_partition p = { 0 };
	uint64_t have = 0;
	*version = 0;
	int rc = store_partition_get(s, partition, &p, err);
	if (rc == 0 && (!strcmp(p.state, "running") ||
			!strcmp(p.state, "start-requested") ||
			!strcmp(p.state, "paused")))
		rc = perr(err, -EBUSY, "partition %s is %s: stop it first "
			  "(its disk is re-encrypted offline)", partition,
			  p.state);
	if (rc == 0)
		rc = store_disk_key_version(s, partition, disk, &have, err);
	if (rc == 0 && have == 0)
		rc = perr(err, -ENOENT, "partition %s has no key for disk "
			  "\"%s\"", partition, disk);
	if (rc == 0)
		rc = make_key(s, k, p.host, partition, disk, have + 1,
			      "disk_key_rekey", err);
	if (rc == 0)
		*version = have + 1;
	store_partition_free(&p);
	return rc;
}

int diskkeys_refresh(struct store *s, const char *partition,
		     struct parley_err *err)
{
	char why[STORE_WITHHELD_MAX], host[STORE_NAME_MAX];
	bool changed = false;
	int rc = store_disk_keys_refresh(s, partition, &changed, why,
					 sizeof(why), NULL, err);
	if (rc < 0 || !changed)
		return rc;
	rc = store_partition_host(s, partition, host, err);
	if (rc < 0)
		return rc;
	log_info("disk keys of %s: %s%s", partition,
		 why[0] ? "withheld: " : "released", why);
	return audit(s, host, why[0] ? "disk_key_withheld" : "disk_key_released",
		     partition, why[0] ? "INTEGRITY" : NULL,
		     why[0] ? why : "matches its baseline again", err);
}

int diskkeys_rekeyed(struct store *s, const char *host, const char *partition,
		     const char *detail, struct parley_err *err)
{
	char disk[STORE_DISK_NAME_MAX];
	unsigned long long from = 0, to = 0;
	if (!partition || !detail ||
	    sscanf(detail, "disk %31[A-Za-z0-9_.-]: re-encrypted from key "
			   "version %llu to %llu", disk, &from, &to) != 3) {
		log_warn("disk_key_rekeyed from %s: detail not understood",
			 host);
		return 0;
	}
	unsigned removed = 0;
	struct parley_err e2 = { 0 };
	int rc = store_disk_key_retire(s, partition, disk, to, &removed, &e2);
	if (rc == -ESTALE || rc == -EINVAL || rc == -ENOENT) {
		log_warn("disk_key_rekeyed from %s: %s", host, perr_msg(&e2));
		return 0;
	}
	if (rc < 0) {
		*err = e2;
		return rc;
	}
	if (!removed)
		return 0;
	char d[160];
	snprintf(d, sizeof(d), "disk %s: key versions below %llu dropped "
		 "(%u), the agent re-encrypted from %llu", disk, to, removed,
		 from);
	return audit(s, host, "disk_key_retired", partition, "REKEY", d, err);
}

int diskkeys_quarantined(struct store *s, const char *host,
			 const char *partition, const char *reason,
			 const char *file, struct parley_err *err)
{
	char why[STORE_WITHHELD_MAX];
	snprintf(why, sizeof(why), "QUARANTINE: its agent quarantined it "
		 "(%.24s%s%.40s)", reason && reason[0] ? reason : "-",
		 file && file[0] ? ", " : "", file ? file : "");
	bool changed = false;
	if (!partition || !partition[0])
		return 0;
	struct parley_err e2 = { 0 };
	int rc = store_disk_keys_withhold(s, partition, why, &changed, &e2);
	if (rc == -ENOENT)   /* not (or no more) in the store: no keys */
		return 0;
	if (rc < 0)
		*err = e2;
	if (rc < 0 || !changed)
		return rc;
	log_info("disk keys of %s: withheld: %s", partition, why);
	return audit(s, host, "disk_key_withheld", partition, "QUARANTINE",
		     why, err);
}

void diskkeys_mem_free(struct diskkeys_mem *m)
{
	if (m->sealed)
		memset(m->sealed, 0, m->n * sizeof(*m->sealed));
	free(m->keys);
	free(m->kp);
	free(m->sealed);
	free(m->rows);
	*m = (struct diskkeys_mem){ 0 };
}

bool diskkeys_host_has(struct store *s, const char *host)
{
	struct store_disk_key *l = NULL;
	int n = store_disk_keys_list(s, host, NULL, &l, NULL);
	free(l);
	return n > 0;
}

/* One version of one disk's key, sealed to the host. */
static int seal_one(struct store *s, struct keyd *k, const char *host,
		    X509 *cert, const struct store_disk_key *l,
		    uint64_t version, struct diskkeys_mem *m,
		    struct parley_err *err)
{
	struct store_disk_key old;
	const struct store_disk_key *use = l;
	int rc = 0;
	if (version != l->version) {
		rc = store_disk_key_get(s, l->partition, l->disk, version,
					&old, err);
		use = &old;
	}
	size_t len = 0;
	if (rc == 0)
		rc = keyd_disk_key_seal(k, host, l->partition, l->disk,
					version, use->wrapped, cert,
					m->sealed[m->n], sizeof(m->sealed[0]),
					&len, err);
	if (rc == 0 && len != SEAL_LEN)
		rc = perr(err, -EBADMSG, "key process: a sealed key of %zu "
			  "bytes", len);
	if (rc < 0)
		return rc;
	Parley__V1__DiskKey *w = &m->keys[m->n];
	parley__v1__disk_key__init(w);
	w->partition = (char *)l->partition;
	w->disk = (char *)l->disk;
	w->key_version = version;
	wire_bytes(&w->sealed, m->sealed[m->n], len);
	m->kp[m->n] = w;
	m->n++;
	return 0;
}

int diskkeys_fill(struct store *s, struct keyd *k, const char *host,
		  X509 *host_cert, const struct store_disk_key *rows,
		  unsigned nrows, Parley__V1__PolicyBody *b,
		  struct diskkeys_mem *m, struct parley_err *err)
{
	*m = (struct diskkeys_mem){ 0 };
	if (!nrows)
		return 0;
	int n = (int)nrows;
	struct store_disk_key *l = malloc(nrows * sizeof(*l));
	if (!l)
		return perr(err, -ENOMEM, "out of memory");
	memcpy(l, rows, nrows * sizeof(*l));
	unsigned total = 0;
	for (int i = 0; i < n; i++)
		if (!l[i].withheld[0])
			total += l[i].versions ? l[i].versions : 1;
	int rc = 0;
	if (total && !host_cert)
		rc = perr(err, -ENOKEY, "host %s: no key to seal its disk "
			  "keys to", host);
	/* Keys are sealed to Ed25519 host keys only (common/seal.h): a host
	 * with another certificate gets its bundle without them (and so
	 * never a key) rather than no bundle at all. */
	if (rc == 0 && total && EVP_PKEY_get_base_id(
					X509_get0_pubkey(host_cert)) !=
					EVP_PKEY_ED25519) {
		log_warn("host %s: its certificate key is not Ed25519; its "
			 "%u disk keys are not released to it", host, total);
		free(l);
		return 0;
	}
	if (rc == 0 && total > WIRE_DISK_KEYS_MAX)
		rc = perr(err, -E2BIG, "host %s: %u disk keys, at most %d",
			  host, total, WIRE_DISK_KEYS_MAX);
	if (rc == 0 && total) {
		m->keys = calloc(total, sizeof(*m->keys));
		m->kp = calloc(total, sizeof(*m->kp));
		m->sealed = calloc(total, sizeof(*m->sealed));
		if (!m->keys || !m->kp || !m->sealed)
			rc = perr(err, -ENOMEM, "out of memory");
	}
	/* The names point into l: kept with the body (m owns it). */
	for (int i = 0; rc == 0 && i < n; i++) {
		if (l[i].withheld[0])
			continue;
		unsigned nv = l[i].versions ? l[i].versions : 1;
		for (unsigned v = 0; rc == 0 && v < nv; v++)
			rc = seal_one(s, k, host, host_cert, &l[i],
				      l[i].version - (nv - 1) + v, m, err);
	}
	if (rc < 0) {
		free(l);
		diskkeys_mem_free(m);
		return rc;
	}
	m->rows = l;
	b->disk_keys = m->kp;
	b->n_disk_keys = m->n;
	return 0;
}
