#include "common/segset.h"
#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/size.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const top_fields[] = { "segsets", NULL };
static const char *const set_fields[] = { "name", "members", "segments",
					  NULL };
static const char *const seg_fields[] = { "name", "kind", "queue", "writer",
					  "size", "readers", NULL };

/* Labels name the entry by index and, once known, by name. */
#define LBL_MAX 256

const char *segset_kind_name(uint32_t kind)
{
	switch (kind) {
	case PARLEY_SEG_TABLE: return "table";
	case PARLEY_SEG_PIPE: return "pipe";
	case PARLEY_SEG_QUEUE: return "queue";
	case PARLEY_SEG_AREA: return "area";
	case PARLEY_SEG_POS: return "pos";
	}
	return "?";
}

/* A name field: present, a string, valid as jv_name_valid says. */
static int get_name(json_t *o, const char *key, const char *w, size_t cap,
		    char *out, struct parley_err *err)
{
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.%s", w, key);
	json_t *v = json_object_get(o, key);
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	const char *s;
	size_t len;
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc < 0)
		return rc;
	if (!jv_name_valid(s, len, cap)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a valid name (1-%zu "
			    "of A-Z a-z 0-9 _ . -)", lbl, jv_quote(&q, s, len),
			    cap - 1);
	}
	memcpy(out, s, len + 1);
	return 0;
}

static bool known_name(const char *const *known, const char *n)
{
	if (!known)
		return true;
	for (; *known; known++)
		if (strcmp(*known, n) == 0)
			return true;
	return false;
}

static int parse_members(json_t *o, const char *w, const char *const *known,
			 struct segset_def *s, struct parley_err *err)
{
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.members", w);
	json_t *arr = json_object_get(o, "members");
	if (!arr)
		return perr(err, -EINVAL, "%s: missing", lbl);
	if (!json_is_array(arr))
		return jv_type_error(arr, lbl, "an array", err);
	size_t n = json_array_size(arr);
	if (n < PARLEY_SEGSET_MEMBERS_MIN || n > PARLEY_SEGSET_MEMBERS_MAX)
		return perr(err, -EINVAL, "%s: %zu members, a set has %d..%d",
			    lbl, n, PARLEY_SEGSET_MEMBERS_MIN,
			    PARLEY_SEGSET_MEMBERS_MAX);
	for (size_t i = 0; i < n; i++) {
		char el[LBL_MAX + 48];
		snprintf(el, sizeof(el), "%s[%zu]", lbl, i);
		const char *m;
		size_t len;
		int rc = jv_get_string(json_array_get(arr, i), el, &m, &len,
				       err);
		if (rc < 0)
			return rc;
		if (!jv_name_valid(m, len, PARLEY_SEGSET_NAME_MAX)) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%s: %s is not a valid "
				    "partition name", el, jv_quote(&q, m, len));
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->member[j], m) == 0)
				return perr(err, -EEXIST, "%s: \"%s\" is "
					    "listed twice", el, m);
		if (!known_name(known, m))
			return perr(err, -ENOENT, "%s: unknown partition "
				    "\"%s\"", el, m);
		memcpy(s->member[i], m, len + 1);
		s->nmembers = (unsigned)i + 1;
	}
	return 0;
}

int segset_member(const struct segset_def *s, const char *partition)
{
	for (unsigned i = 0; i < s->nmembers; i++)
		if (strcmp(s->member[i], partition) == 0)
			return (int)i;
	return -1;
}

static int get_kind(json_t *o, const char *w, struct segset_seg_def *g,
		    struct parley_err *err)
{
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.kind", w);
	json_t *v = json_object_get(o, "kind");
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	const char *s;
	size_t len;
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc < 0)
		return rc;
	static const uint32_t kinds[] = { PARLEY_SEG_PIPE, PARLEY_SEG_QUEUE,
					  PARLEY_SEG_AREA };
	for (unsigned i = 0; i < 3; i++)
		if (strcmp(s, segset_kind_name(kinds[i])) == 0) {
			g->kind = kinds[i];
			return 0;
		}
	struct jv_quoted q;
	return perr(err, -EINVAL, "%s: %s is not pipe, queue or area", lbl,
		    jv_quote(&q, s, len));
}

static int get_size(json_t *o, const char *w, struct segset_seg_def *g,
		    struct parley_err *err)
{
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.size", w);
	json_t *v = json_object_get(o, "size");
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	uint64_t n;
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		n = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s;
		size_t len;
		int rc = jv_get_string(v, lbl, &s, &len, err);
		if (rc < 0)
			return rc;
		if (parse_size(s, &n) < 0) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%s: %s is not a size", lbl,
				    jv_quote(&q, s, len));
		}
	} else {
		return jv_type_error(v, lbl, "a positive integer or a size "
				     "string", err);
	}
	if (g->kind == PARLEY_SEG_AREA) {
		if (n == 0 || n % PARLEY_SEGSET_PAGE || n > PARLEY_SEG_AREA_MAX)
			return perr(err, -EINVAL, "%s: %llu is not a whole "
				    "number of 4K pages up to 64M", lbl,
				    (unsigned long long)n);
	} else if ((n & (n - 1)) || n < PARLEY_SEG_RING_MIN ||
		   n > PARLEY_SEG_RING_MAX) {
		return perr(err, -EINVAL, "%s: %llu is not a power of two in "
			    "4K..16M", lbl, (unsigned long long)n);
	}
	g->size = n;
	return 0;
}

/* A member of the set by name: its id, or an error naming lbl. */
static int member_id(const struct segset_def *s, json_t *v, const char *lbl,
		     bool agent_ok, uint32_t *id, struct parley_err *err)
{
	const char *m;
	size_t len;
	int rc = jv_get_string(v, lbl, &m, &len, err);
	if (rc < 0)
		return rc;
	if (agent_ok && strcmp(m, "agent") == 0) {
		*id = PARLEY_SEG_WRITER_AGENT;
		return 0;
	}
	int i = strlen(m) == len ? segset_member(s, m) : -1;
	if (i < 0) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a member of the set",
			    lbl, jv_quote(&q, m, len));
	}
	*id = (uint32_t)i;
	return 0;
}

static int get_readers(json_t *o, const char *w, const struct segset_def *s,
		       struct segset_seg_def *g, struct parley_err *err)
{
	json_t *arr = json_object_get(o, "readers");
	uint64_t all = s->nmembers == 64 ? ~0ull : (1ull << s->nmembers) - 1;
	if (!arr) {
		g->readers = all;
		if (g->writer != PARLEY_SEG_WRITER_AGENT)
			g->readers &= ~(1ull << g->writer);
		return 0;
	}
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.readers", w);
	if (!json_is_array(arr))
		return jv_type_error(arr, lbl, "an array", err);
	if (json_array_size(arr) == 0)
		return perr(err, -EINVAL, "%s: empty (leave it out for every "
			    "member but the writer)", lbl);
	if (json_array_size(arr) > s->nmembers)
		return perr(err, -EINVAL, "%s: more readers than members",
			    lbl);
	g->readers = 0;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char el[LBL_MAX + 48];
		snprintf(el, sizeof(el), "%s[%zu]", lbl, i);
		uint32_t id;
		int rc = member_id(s, json_array_get(arr, i), el, false, &id,
				   err);
		if (rc < 0)
			return rc;
		if (id == g->writer)
			return perr(err, -EINVAL, "%s: \"%s\" is the writer",
				    el, s->member[id]);
		if (g->readers & (1ull << id))
			return perr(err, -EEXIST, "%s: \"%s\" is listed twice",
				    el, s->member[id]);
		g->readers |= 1ull << id;
	}
	return 0;
}

static int get_queue(json_t *o, const char *w, struct segset_seg_def *g,
		     struct parley_err *err)
{
	json_t *v = json_object_get(o, "queue");
	if (g->kind != PARLEY_SEG_QUEUE) {
		if (v)
			return perr(err, -EINVAL, "%s.queue: only a queue "
				    "segment names a queue", w);
		return 0;
	}
	return get_name(o, "queue", w, PARLEY_SEG_NAME_MAX, g->queue, err);
}

static int parse_seg(json_t *o, const char *sw, size_t i,
		     struct segset_def *s, struct parley_err *err)
{
	struct segset_seg_def *g = &s->seg[i];
	char w[LBL_MAX];
	snprintf(w, sizeof(w), "%s.segments[%zu]", sw, i);
	if (!json_is_object(o))
		return jv_type_error(o, w, "an object", err);
	char pre[LBL_MAX + 4];
	snprintf(pre, sizeof(pre), "%s: ", w);
	int rc = jv_check_known(o, seg_fields, pre, err);
	if (rc == 0)
		rc = get_name(o, "name", w, PARLEY_SEG_NAME_MAX, g->name, err);
	if (rc < 0)
		return rc;
	snprintf(w, sizeof(w), "%s.segments[%zu] (\"%s\")", sw, i, g->name);
	for (size_t j = 0; j < i; j++)
		if (strcmp(s->seg[j].name, g->name) == 0)
			return perr(err, -EEXIST, "%s.name: duplicate segment "
				    "(also segments[%zu])", w, j);
	rc = get_kind(o, w, g, err);
	if (rc == 0)
		rc = get_queue(o, w, g, err);
	if (rc == 0)
		rc = get_size(o, w, g, err);
	if (rc < 0)
		return rc;
	json_t *v = json_object_get(o, "writer");
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.writer", w);
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	rc = member_id(s, v, lbl, true, &g->writer, err);
	if (rc == 0)
		rc = get_readers(o, w, s, g, err);
	if (rc < 0)
		return rc;
	if (g->kind == PARLEY_SEG_QUEUE) {
		if (g->writer == PARLEY_SEG_WRITER_AGENT)
			return perr(err, -EINVAL, "%s: a queue segment's writer "
				    "is a member", lbl);
		for (size_t j = 0; j < i; j++)
			if (s->seg[j].kind == PARLEY_SEG_QUEUE &&
			    strcmp(s->seg[j].queue, g->queue) == 0 &&
			    s->seg[j].writer == g->writer)
				return perr(err, -EEXIST, "%s: queue \"%s\" "
					    "already has a segment written by "
					    "\"%s\" (segments[%zu])", lbl,
					    g->queue, s->member[g->writer], j);
	}
	if (g->kind != PARLEY_SEG_AREA && g->readers == 0)
		return perr(err, -EINVAL, "%s.readers: a %s nobody reads", w,
			    segset_kind_name(g->kind));
	return 0;
}

/* Bytes of the whole window: the table, the declared segments (rings with
 * their header page), one position page per member. */
static uint64_t window_bytes(const struct segset_def *s)
{
	uint64_t t = PARLEY_SEGSET_TABLE_BYTES(s->nmembers,
					       1 + s->ndecl + s->nmembers);
	for (unsigned i = 0; i < s->ndecl; i++)
		t += s->seg[i].size +
		     (s->seg[i].kind == PARLEY_SEG_AREA ? 0 : PARLEY_SEGSET_PAGE);
	return t + s->nmembers * PARLEY_SEGSET_PAGE;
}

static int parse_set(json_t *o, size_t i, const char *const *known,
		     struct segset_def *s, struct parley_err *err)
{
	char w[LBL_MAX];
	snprintf(w, sizeof(w), "segsets[%zu]", i);
	if (!json_is_object(o))
		return jv_type_error(o, w, "an object", err);
	char pre[LBL_MAX + 4];
	snprintf(pre, sizeof(pre), "%s: ", w);
	int rc = jv_check_known(o, set_fields, pre, err);
	if (rc == 0)
		rc = get_name(o, "name", w, PARLEY_SEGSET_NAME_MAX, s->name,
			      err);
	if (rc < 0)
		return rc;
	snprintf(w, sizeof(w), "segsets[%zu] (\"%s\")", i, s->name);
	rc = parse_members(o, w, known, s, err);
	if (rc < 0)
		return rc;
	char lbl[LBL_MAX + 32];
	snprintf(lbl, sizeof(lbl), "%s.segments", w);
	json_t *arr = json_object_get(o, "segments");
	if (!arr)
		return perr(err, -EINVAL, "%s: missing", lbl);
	if (!json_is_array(arr))
		return jv_type_error(arr, lbl, "an array", err);
	size_t n = json_array_size(arr);
	if (n < 1 || n > PARLEY_SEGSET_DECL_MAX)
		return perr(err, -EINVAL, "%s: %zu segments, a set has 1..%d",
			    lbl, n, PARLEY_SEGSET_DECL_MAX);
	for (size_t j = 0; j < n; j++) {
		rc = parse_seg(json_array_get(arr, j), w, j, s, err);
		if (rc < 0)
			return rc;
		s->ndecl = (unsigned)j + 1;
	}
	uint64_t total = window_bytes(s);
	if (total > PARLEY_SEGSET_WINDOW_MAX)
		return perr(err, -EFBIG, "%s: %llu bytes in all, at most %llu",
			    lbl, (unsigned long long)total,
			    (unsigned long long)PARLEY_SEGSET_WINDOW_MAX);
	return 0;
}

int segset_doc_from_json(struct json_t *arr, const char *const *known,
			 struct segset_doc *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_array(arr))
		return jv_type_error(arr, "field \"segsets\"", "an array", err);
	size_t n = json_array_size(arr);
	if (n > SEGSETS_MAX)
		return perr(err, -E2BIG, "%zu segment sets, at most %d", n,
			    SEGSETS_MAX);
	out->s = calloc(n ? n : 1, sizeof(*out->s));
	if (!out->s)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++, out->n++) {
		int rc = parse_set(json_array_get(arr, i), i, known,
				   &out->s[i], err);
		if (rc < 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->s[j].name, out->s[i].name) == 0)
				return perr(err, -EEXIST, "segsets[%zu] "
					    "(\"%s\").name: duplicate set (also "
					    "segsets[%zu])", i, out->s[i].name,
					    j);
	}
	return 0;
}

static int parse_root(json_t *root, const char *const *known,
		      struct segset_doc *out, struct parley_err *err)
{
	if (!json_is_object(root))
		return jv_type_error(root, "data set", "an object", err);
	int rc = jv_check_known(root, top_fields, "", err);
	if (rc < 0)
		return rc;
	json_t *arr = json_object_get(root, "segsets");
	if (!arr)
		return perr(err, -EINVAL, "missing field \"segsets\"");
	return segset_doc_from_json(arr, known, out, err);
}

int segset_doc_parse(const char *json, size_t len, const char *const *known,
		     struct segset_doc *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > SEGSET_FILE_MAX)
		return perr(err, -EFBIG, "data set of %zu bytes, at most %d",
			    len, SEGSET_FILE_MAX);
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES |
					     JSON_ALLOW_NUL, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	int rc = parse_root(root, known, out, err);
	json_decref(root);
	if (rc < 0)
		segset_doc_free(out);
	return rc;
}

int segset_doc_load(const char *path, const char *const *known,
		    struct segset_doc *out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	memset(out, 0, sizeof(*out));
	int rc = file_read_all(path, SEGSET_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = segset_doc_parse((const char *)buf, len, known, out, err);
	free(buf);
	return rc < 0 ? (perr_prefix(err, "%s", path), rc) : 0;
}

void segset_doc_free(struct segset_doc *d)
{
	if (!d)
		return;
	free(d->s);
	d->s = NULL;
	d->n = 0;
}

const struct segset_def *segset_find(const struct segset_doc *d,
				     const char *name)
{
	for (unsigned i = 0; d && i < d->n; i++)
		if (strcmp(d->s[i].name, name) == 0)
			return &d->s[i];
	return NULL;
}

char segset_access(const struct parley_segset_seg *seg, uint32_t id)
{
	if (seg->writer == id)
		return 'w';
	if (id < 64 && (seg->readers >> id) & 1)
		return 'r';
	return 0;
}

int segset_compile(const struct segset_def *s, uint8_t **table, size_t *len,
		   struct parley_err *err)
{
	*table = NULL;
	*len = 0;
	uint64_t total = window_bytes(s);
	if (total > PARLEY_SEGSET_WINDOW_MAX)
		return perr(err, -EFBIG, "segment set \"%s\": %llu bytes, at "
			    "most %llu", s->name, (unsigned long long)total,
			    (unsigned long long)PARLEY_SEGSET_WINDOW_MAX);
	uint32_t nsegs = 1 + s->ndecl + s->nmembers;
	uint64_t tsize = PARLEY_SEGSET_TABLE_BYTES(s->nmembers, nsegs);
	uint8_t *t = calloc(1, tsize);
	if (!t)
		return perr(err, -ENOMEM, "out of memory");
	struct parley_segset_hdr *h = (void *)t;
	h->magic = PARLEY_SEGSET_MAGIC;
	h->version = PARLEY_SEGSET_VERSION;
	h->hdr_size = sizeof(*h);
	h->table_size = tsize;
	h->window_size = total;
	h->nmembers = s->nmembers;
	h->nsegs = nsegs;
	h->ndecl = s->ndecl;
	h->member_off = sizeof(*h);
	h->seg_off = (uint32_t)(sizeof(*h) +
				s->nmembers * sizeof(struct parley_segset_member));
	snprintf(h->name, sizeof(h->name), "%s", s->name);
	struct parley_segset_member *m = (void *)(t + h->member_off);
	struct parley_segset_seg *g = (void *)(t + h->seg_off);
	uint64_t all = s->nmembers == 64 ? ~0ull : (1ull << s->nmembers) - 1;
	uint64_t off = 0;
	/* Segment 0: the table, the agent's, everyone reads it. */
	snprintf(g[0].name, sizeof(g[0].name), "table");
	g[0].kind = PARLEY_SEG_TABLE;
	g[0].size = tsize;
	g[0].writer = PARLEY_SEG_WRITER_AGENT;
	g[0].readers = all;
	off = tsize;
	for (unsigned i = 0; i < s->ndecl; i++) {
		const struct segset_seg_def *d = &s->seg[i];
		struct parley_segset_seg *x = &g[1 + i];
		memcpy(x->name, d->name, sizeof(x->name));
		memcpy(x->queue, d->queue, sizeof(x->queue));
		x->kind = d->kind;
		x->size = d->size +
			  (d->kind == PARLEY_SEG_AREA ? 0 : PARLEY_SEGSET_PAGE);
		x->writer = d->writer;
		x->readers = d->readers;
		x->offset = off;
		off += x->size;
	}
	for (unsigned i = 0; i < s->nmembers; i++) {
		memcpy(m[i].name, s->member[i], sizeof(m[i].name));
		m[i].id = i;
		m[i].state = PARLEY_MEMBER_ABSENT;
		m[i].pos_seg = 1 + s->ndecl + i;
		struct parley_segset_seg *x = &g[m[i].pos_seg];
		snprintf(x->name, sizeof(x->name), "pos.%u", i);
		x->kind = PARLEY_SEG_POS;
		x->size = PARLEY_SEGSET_PAGE;
		x->writer = i;
		x->readers = all & ~(1ull << i);
		x->offset = off;
		off += x->size;
	}
	for (uint32_t i = 0; i < nsegs; i++) {
		g[i].number = i;
		g[i].state = PARLEY_SEG_LIVE;
	}
	*table = t;
	*len = tsize;
	return 0;
}
