/*
 * Offline re-encryption of a disk image from one key version to the next
 * (`parleyctl disk rekey`, issue 13), on the host, by the agent, before
 * the partition's disks are opened: the daemon releases both versions
 * while a rekey is pending, the agent re-encrypts and says so
 * (disk_key_rekeyed), the daemon then drops the old version.
 *
 * Crash safety: the image is never written in place. The new image is
 * written beside it (PATH.rekey) and synced; then PATH.keyver says the
 * new version (written as .keyver.tmp, synced, renamed); then the new
 * image is renamed over the old. At the next start a PATH.keyver naming
 * the new version means the image is under it (a PATH.rekey still there
 * is renamed first: the crash came between the two renames); anything
 * else means the old version (a PATH.rekey without it is a partial copy,
 * removed). AES-256-XTS per 512-byte unit, tweak = the unit's number
 * (aes-xts-plain64, as agent/vmx/blk_xts.c).
 */
#ifndef PARLEY_AGENT_DISK_REKEY_H
#define PARLEY_AGENT_DISK_REKEY_H

#include <stdint.h>
#include "agent/beneath.h"
#include "agent/spec.h"
#include "common/err.h"

/* The image of d (beneath dirs) under key version old_v: re-encrypt it
 * to new_v unless that was done already. *in_use gets the version the
 * image is under afterwards (new_v, or old_v on failure); *done whether
 * this call re-encrypted it. */
int disk_rekey(const struct beneath_dirs *dirs, const struct part_disk_spec *d,
	       uint64_t old_v, const uint8_t old_key[64], uint64_t new_v,
	       const uint8_t new_key[64], uint64_t *in_use, bool *done,
	       struct parley_err *err);

/* One run of AES-256-XTS over len bytes (a multiple of 512) at byte
 * offset off of a disk: enc != 0 encrypts. */
int disk_xts(const uint8_t key[64], int enc, const uint8_t *in, uint8_t *out,
	     size_t len, uint64_t off);

#endif
