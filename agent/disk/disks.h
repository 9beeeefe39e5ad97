/*
 * A partition's disks on the agent's side: each backing file opened
 * beneath the disk directories (made at its size if missing; an existing
 * one must have that size), read-only disks O_RDONLY, and for an encrypted
 * disk its key from the key source — all only after the partition's
 * admission. The descriptors and keys go to the vmm with the launch
 * (CTL_DISK) and are closed and wiped here at once.
 */
#ifndef PARLEY_AGENT_DISK_DISKS_H
#define PARLEY_AGENT_DISK_DISKS_H

#include "agent/partition.h"
#include "agent/spec.h"

/* Open every disk of s for p (p->disk[]); on failure nothing stays open
 * and err names the disk. Calls o->on_disk_key for each key refused. */
int part_disks_open(struct partition *p, const struct part_spec *s,
		    const struct part_opts *o, struct parley_err *err);
/* Send p->disk[] (after CTL_LAUNCH), then close and wipe them; each key
 * sent is reported released (p->opts.on_disk_key). */
int part_disks_send(struct partition *p);
/* Close and wipe what is still held (failed starts). */
void part_disks_drop(struct partition *p);

#endif
