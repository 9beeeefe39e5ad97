/*
 * The hand-over message: what a running agent passes to the new binary it
 * starts beside itself (agent/update_commit.c → agent/update_adopt.c), so
 * that the new one serves every running partition without stopping any.
 *
 * Bytes (little-endian), then descriptors passed apart (SCM_RIGHTS) in the
 * order the message implies: per partition ctl, pidfd, guest memory; per
 * channel its two doorbells, then each section's writable memfd, then each
 * section's read-only re-open. The message names no descriptor number: the
 * receiver counts what it needs and refuses a message whose count differs
 * from what it received.
 *
 *   "PLYHOVR\0" u32 version (1) u32 flags (0)
 *   str old_version, str old_exe, str vmm_path, str vmm_version
 *   u64 pause_ns (CLOCK_MONOTONIC: when the old agent stopped serving)
 *   u32 next_chan_id, u32 policy_len, policy bytes
 *   u32 npart, parts; u32 nchan, chans; u32 noffer, offers;
 *   u32 npending, pending; u32 nfds
 *
 * (str: u16 length, then that many bytes, no NUL among them.)
 *
 * handover_parse is the one parser: untrusted bytes (a new binary trusts
 * its predecessor no more than a file), every count capped, every index and
 * cross-reference checked, nothing trailing.
 */
#ifndef PARLEY_AGENT_HANDOVER_H
#define PARLEY_AGENT_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "agent/ipc/chanmgr.h"
#include "agent/ipc/measure.h"
#include "agent/layout.h"
#include "common/err.h"
#include "common/grant.h"

#define HO_MAGIC "PLYHOVR"          /* 8 bytes with its NUL */
#define HO_VERSION 1u
#define HO_BYTES_MAX (64u << 20)    /* the whole message */
#define HO_STR_MAX 1024             /* a path or version string */
#define HO_CFG_PAGES_MAX (1u << 18) /* 1 GiB config region */
#define HO_RANGES_MAX 16
#define HO_FDS_PER_PART 3
#define HO_FDS_MAX (CM_PARTS_MAX * HO_FDS_PER_PART + \
		    CM_CHANS_MAX * (2 + 2 * CM_SECTIONS_MAX))

struct ho_part {
	char name[64];
	uint32_t state;             /* PART_RUNNING or PART_PAUSED */
	int32_t pid;                /* the vmm, in the agents' PID namespace */
	uint32_t vmm_uid;
	uint32_t vcpus, backend;
	uint32_t caps;              /* SPEC_CAP_*: what its spec asked for */
	uint64_t ram_size, cfg_size, entry, image_hi;
	uint32_t open_pending;      /* vCPUs whose CHAN_OPEN is unanswered */
	unsigned nrange;
	struct layout_range range[HO_RANGES_MAX];
	char vmm_version[64];
	/* the grant manager's */
	bool quarantined;
	uint16_t gen[CTL_WIN_SLOTS];
	uint64_t win_cursor;
	char blame[160];
	struct measure measure;     /* page[] and dirty[] owned */
	unsigned fd;                /* index of its ctl; pidfd, mem follow */
};

struct ho_end {
	int32_t part;               /* index into part[], -1: not yet known */
	bool mapped, unmapping;
	uint32_t slot;
	uint64_t handle, gpa;
};

struct ho_chan {
	uint32_t id;
	struct grant g;
	bool svc, revoking, peer_gone;
	uint32_t revoke_left_ms;    /* of its unmap deadline */
	struct ho_end end[2];
	unsigned nsec;              /* follows from g.dir */
	unsigned fd;                /* index of bell[0]; see above */
};

struct ho_offer {
	uint32_t part;
	char name[PARLEY_SVC_NAME_MAX];
};

struct handover {
	char old_version[64];
	char old_exe[HO_STR_MAX];
	char vmm_path[HO_STR_MAX];  /* what new partitions start with */
	char vmm_version[64];
	uint64_t pause_ns;
	uint32_t next_chan_id;
	uint8_t *policy;
	uint32_t policy_len;
	unsigned npart, nchan, noffer, npending;
	struct ho_part *part;
	struct ho_chan *chan;
	struct ho_offer *offer;
	uint32_t *pending;          /* indices into chan[] */
	unsigned nfds;
};

/* Sections of a channel with this direction: the header, then a producer's
 * and a consumer's per queue (agent/ipc/chanmem.c). */
unsigned ho_sections(enum grant_dir dir);

/* Parse and check; nfds is how many descriptors came with it. On success
 * *h is owned by the caller (handover_free). */
int handover_parse(const uint8_t *buf, size_t len, unsigned nfds,
		   struct handover *h, struct parley_err *err);

/* The bytes of *h (which must be valid: what handover_parse accepts);
 * *out malloc'd. */
int handover_encode(const struct handover *h, uint8_t **out, size_t *len,
		    struct parley_err *err);

void handover_free(struct handover *h);

#endif
