/*
 * The segment-set data set (issue 14): which partitions share which
 * segments, each with one writer. One checked parser for parley-smcp, the
 * agent and (later) the daemon; the compiler that turns one set into the
 * definition/allocation table of include/parley/segset.h, and the access
 * every member is granted.
 *
 *   {
 *     "segsets": [
 *       { "name": "bus", "members": ["a", "b", "c", "d"],
 *         "segments": [
 *           { "name": "cmd", "kind": "pipe", "writer": "a", "size": "64K" },
 *           { "name": "ev.b", "kind": "queue", "queue": "events",
 *             "writer": "b", "size": "16K", "readers": ["a"] },
 *           { "name": "status", "kind": "area", "writer": "agent",
 *             "size": "4K" } ] } ]
 *   }
 *
 * kind: pipe | queue | area. writer: a member or "agent". size: a pipe's or
 * queue's ring (a power of two, 4K..16M; the segment is one page more), an
 * area's bytes (whole pages, up to 64M). readers (optional): the members
 * that may read it; by default every member but the writer. A queue has
 * at most one segment per writer.
 */
#ifndef PARLEY_COMMON_SEGSET_H
#define PARLEY_COMMON_SEGSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/segset.h>
#include "common/err.h"

#define SEGSETS_MAX 256
#define SEGSET_FILE_MAX (1024 * 1024)

struct segset_seg_def {
	char name[PARLEY_SEG_NAME_MAX];
	char queue[PARLEY_SEG_NAME_MAX];  /* QUEUE only */
	uint32_t kind;                    /* PIPE, QUEUE or AREA */
	uint64_t size;                    /* ring or area bytes */
	uint32_t writer;                  /* member id or WRITER_AGENT */
	uint64_t readers;                 /* member mask, never the writer */
};

struct segset_def {
	char name[PARLEY_SEGSET_NAME_MAX];
	unsigned nmembers;
	char member[PARLEY_SEGSET_MEMBERS_MAX][PARLEY_SEGSET_NAME_MAX];
	unsigned ndecl;
	struct segset_seg_def seg[PARLEY_SEGSET_DECL_MAX];
};

struct segset_doc {
	unsigned n;
	struct segset_def *s;
};

/* Parse and validate a data set. `known` (NULL-terminated, or NULL to skip
 * the check) lists the partitions that exist: a member not in it is
 * refused (-ENOENT). Errors name the entry and the field:
 * "segsets[0] (\"bus\").segments[1] (\"ev.b\").writer: \"zed\" is not a
 * member of the set". */
int segset_doc_parse(const char *json, size_t len, const char *const *known,
		     struct segset_doc *out, struct parley_err *err);
int segset_doc_load(const char *path, const char *const *known,
		    struct segset_doc *out, struct parley_err *err);
void segset_doc_free(struct segset_doc *d);

/* The same checks on a parsed "segsets" array (a policy document's or a
 * bundle's). On error `out` may hold the sets parsed so far: free it. */
struct json_t;
int segset_doc_from_json(struct json_t *arr, const char *const *known,
			 struct segset_doc *out, struct parley_err *err);

const struct segset_def *segset_find(const struct segset_doc *d,
				     const char *name);
/* The member id of `partition` in the set, or -1. */
int segset_member(const struct segset_def *s, const char *partition);

/* The table of one set (segment 0's bytes, PARLEY_SEGSET_TABLE_BYTES of
 * it, every member ABSENT, every segment LIVE, epoch 0) in a new buffer the
 * caller frees. 0 or -ENOMEM / -EFBIG (window too big). */
int segset_compile(const struct segset_def *s, uint8_t **table, size_t *len,
		   struct parley_err *err);

/* Which access member `id` has to segment `seg` of a compiled table:
 * 'w' (writer), 'r' (reader) or 0 (none). */
char segset_access(const struct parley_segset_seg *seg, uint32_t id);

const char *segset_kind_name(uint32_t kind);

#endif
