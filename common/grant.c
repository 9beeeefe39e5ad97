#include "common/grant.h"
#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/size.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_MIN 0x1000ull
#define RING_MAX 0x1000000ull

static const char *const top_fields[] = { "grants", "services", "segsets",
					   "capabilities", NULL };
static const char *const cap_fields[] = { "partition", "capability", NULL };
/* What a capability rule may name (a partition's spec asks for them). */
static const char *const cap_names[] = { "update", NULL };
static const char *const svc_fields[] = { "source", "target", "service",
					  "action", NULL };
static const char *const grant_fields[] = {
	"channel", "endpoint_a", "endpoint_b", "direction", "ring_bytes",
	"require_integrity", NULL
};

const char *grant_dir_name(enum grant_dir d)
{
	static const char *const n[] = { "a_to_b", "b_to_a", "both" };
	return d <= GRANT_BOTH ? n[d] : "?";
}

/* "grants[2] (\"telemetry\")" once the channel is known, else "grants[2]". */
struct where {
	char s[GRANT_NAME_MAX + 32];
};

static const char *where_of(struct where *w, int i, const char *channel)
{
	/* i < 0: a single grant (the API), named "grant". */
	if (i < 0 && channel && channel[0])
		snprintf(w->s, sizeof(w->s), "grant (\"%s\")", channel);
	else if (i < 0)
		snprintf(w->s, sizeof(w->s), "grant");
	else if (channel && channel[0])
		snprintf(w->s, sizeof(w->s), "grants[%d] (\"%s\")", i, channel);
	else
		snprintf(w->s, sizeof(w->s), "grants[%d]", i);
	return w->s;
}

static int get_name(json_t *o, const char *key, const char *w, char *out,
		    struct parley_err *err)
{
	json_t *v = json_object_get(o, key);
	char lbl[GRANT_NAME_MAX + 64];
	snprintf(lbl, sizeof(lbl), "%s.%s", w, key);
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	const char *s;
	size_t len;
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc < 0)
		return rc;
	if (!jv_name_valid(s, len, GRANT_NAME_MAX)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a valid name (1-%d of "
			    "A-Z a-z 0-9 _ . -)", lbl, jv_quote(&q, s, len),
			    GRANT_NAME_MAX - 1);
	}
	memcpy(out, s, len + 1);
	return 0;
}

static int get_dir(json_t *o, const char *w, struct grant *g,
		   struct parley_err *err)
{
	json_t *v = json_object_get(o, "direction");
	if (!v)
		return perr(err, -EINVAL, "%s.direction: missing", w);
	const char *s;
	size_t len;
	char lbl[GRANT_NAME_MAX + 64];
	snprintf(lbl, sizeof(lbl), "%s.direction", w);
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc < 0)
		return rc;
	for (int d = GRANT_A_TO_B; d <= GRANT_BOTH; d++)
		if (strcmp(s, grant_dir_name(d)) == 0) {
			g->dir = d;
			return 0;
		}
	struct jv_quoted q;
	return perr(err, -EINVAL, "%s: %s is not a_to_b, b_to_a or both", lbl,
		    jv_quote(&q, s, len));
}

static int get_ring(json_t *o, const char *w, struct grant *g,
		    struct parley_err *err)
{
	json_t *v = json_object_get(o, "ring_bytes");
	char lbl[GRANT_NAME_MAX + 64];
	snprintf(lbl, sizeof(lbl), "%s.ring_bytes", w);
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
	if (n & (n - 1))
		return perr(err, -EINVAL, "%s: %llu is not a power of two", lbl,
			    (unsigned long long)n);
	if (n < RING_MIN || n > RING_MAX)
		return perr(err, -EINVAL, "%s: %llu is outside 4K..16M", lbl,
			    (unsigned long long)n);
	g->ring_bytes = n;
	return 0;
}

static int get_integrity(json_t *o, const char *w, struct grant *g,
			 struct parley_err *err)
{
	json_t *v = json_object_get(o, "require_integrity");
	g->require_integrity = true;
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		char lbl[GRANT_NAME_MAX + 64];
		snprintf(lbl, sizeof(lbl), "%s.require_integrity", w);
		return jv_type_error(v, lbl, "a boolean", err);
	}
	g->require_integrity = json_is_true(v);
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

static int check_endpoints(const struct grant *g, const char *w,
			   const char *const *known, struct parley_err *err)
{
	if (strcmp(g->a, g->b) == 0)
		return perr(err, -EINVAL, "%s: endpoint_a and endpoint_b are "
			    "both \"%s\": a partition cannot have a channel to "
			    "itself", w, g->a);
	if (!known_name(known, g->a))
		return perr(err, -ENOENT, "%s.endpoint_a: unknown partition "
			    "\"%s\"", w, g->a);
	if (!known_name(known, g->b))
		return perr(err, -ENOENT, "%s.endpoint_b: unknown partition "
			    "\"%s\"", w, g->b);
	return 0;
}

static int parse_grant(json_t *o, int i, const char *const *known,
		       struct grant *g, struct parley_err *err)
{
	struct where w;
	if (!json_is_object(o)) {
		where_of(&w, i, NULL);
		return jv_type_error(o, w.s, "an object", err);
	}
	where_of(&w, i, NULL);
	char pre[sizeof(w.s) + 2];
	snprintf(pre, sizeof(pre), "%s: ", w.s);
	int rc = jv_check_known(o, grant_fields, pre, err);
	if (rc == 0)
		rc = get_name(o, "channel", w.s, g->channel, err);
	if (rc < 0)
		return rc;
	where_of(&w, i, g->channel);
	rc = get_name(o, "endpoint_a", w.s, g->a, err);
	if (rc == 0)
		rc = get_name(o, "endpoint_b", w.s, g->b, err);
	if (rc == 0)
		rc = get_dir(o, w.s, g, err);
	if (rc == 0)
		rc = get_ring(o, w.s, g, err);
	if (rc == 0)
		rc = get_integrity(o, w.s, g, err);
	if (rc == 0)
		rc = check_endpoints(g, w.s, known, err);
	return rc;
}

static int check_unique(const struct grant_set *s, struct parley_err *err)
{
	for (unsigned i = 0; i < s->n; i++)
		for (unsigned j = 0; j < i; j++)
			if (strcmp(s->g[i].channel, s->g[j].channel) == 0)
				return perr(err, -EEXIST, "grants[%u]: duplicate "
					    "channel \"%s\" (also grants[%u])",
					    i, s->g[i].channel, j);
	return 0;
}

/* services[i]: every field named in errors, as for grants. */
static int parse_svc(json_t *o, int i, const char *const *known,
		     struct svc_rule *r, struct parley_err *err)
{
	char w[32];
	if (i < 0)
		snprintf(w, sizeof(w), "service");   /* the API's one rule */
	else
		snprintf(w, sizeof(w), "services[%d]", i);
	if (!json_is_object(o))
		return jv_type_error(o, w, "an object", err);
	char pre[sizeof(w) + 2];
	snprintf(pre, sizeof(pre), "%s: ", w);
	int rc = jv_check_known(o, svc_fields, pre, err);
	if (rc == 0)
		rc = get_name(o, "source", w, r->source, err);
	if (rc == 0)
		rc = get_name(o, "target", w, r->target, err);
	if (rc == 0)
		rc = get_name(o, "service", w, r->service, err);
	if (rc < 0)
		return rc;
	json_t *v = json_object_get(o, "action");
	const char *a = json_is_string(v) ? json_string_value(v) : NULL;
	if (!v)
		return perr(err, -EINVAL, "%s.action: missing", w);
	if (!a || (strcmp(a, "allow") && strcmp(a, "deny")))
		return perr(err, -EINVAL, "%s.action: must be \"allow\" or "
			    "\"deny\"", w);
	r->allow = strcmp(a, "allow") == 0;
	if (strcmp(r->source, r->target) == 0)
		return perr(err, -EINVAL, "%s: source and target are both "
			    "\"%s\"", w, r->source);
	if (!known_name(known, r->source))
		return perr(err, -ENOENT, "%s.source: unknown partition "
			    "\"%s\"", w, r->source);
	if (!known_name(known, r->target))
		return perr(err, -ENOENT, "%s.target: unknown partition "
			    "\"%s\"", w, r->target);
	return 0;
}

static int parse_services(json_t *root, const char *const *known,
			  struct grant_set *out, struct parley_err *err)
{
	json_t *arr = json_object_get(root, "services");
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return jv_type_error(arr, "field \"services\"", "an array",
				     err);
	size_t n = json_array_size(arr);
	if (n > SVC_RULES_MAX)
		return perr(err, -E2BIG, "%zu service rules, at most %d", n,
			    SVC_RULES_MAX);
	out->svc = calloc(n ? n : 1, sizeof(*out->svc));
	if (!out->svc)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++, out->nsvc++) {
		int rc = parse_svc(json_array_get(arr, i), (int)i, known,
				   &out->svc[i], err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* capabilities[i]: { "partition": NAME, "capability": "update" }. */
static int parse_cap(json_t *o, int i, const char *const *known,
		     struct cap_rule *r, struct parley_err *err)
{
	char w[32];
	snprintf(w, sizeof(w), "capabilities[%d]", i);
	if (!json_is_object(o))
		return jv_type_error(o, w, "an object", err);
	char pre[sizeof(w) + 2];
	snprintf(pre, sizeof(pre), "%s: ", w);
	int rc = jv_check_known(o, cap_fields, pre, err);
	if (rc == 0)
		rc = get_name(o, "partition", w, r->partition, err);
	if (rc == 0)
		rc = get_name(o, "capability", w, r->capability, err);
	if (rc < 0)
		return rc;
	if (!known_name(cap_names, r->capability))
		return perr(err, -EINVAL, "%s.capability: \"%s\" is not one "
			    "(update)", w, r->capability);
	if (!known_name(known, r->partition))
		return perr(err, -ENOENT, "%s.partition: unknown partition "
			    "\"%s\"", w, r->partition);
	return 0;
}

static int parse_caps(json_t *root, const char *const *known,
		      struct grant_set *out, struct parley_err *err)
{
	json_t *arr = json_object_get(root, "capabilities");
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return jv_type_error(arr, "field \"capabilities\"", "an array",
				     err);
	size_t n = json_array_size(arr);
	if (n > CAP_RULES_MAX)
		return perr(err, -E2BIG, "%zu capability rules, at most %d", n,
			    CAP_RULES_MAX);
	out->has_caps = true;
	out->cap = calloc(n ? n : 1, sizeof(*out->cap));
	if (!out->cap)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++, out->ncap++) {
		int rc = parse_cap(json_array_get(arr, i), (int)i, known,
				   &out->cap[i], err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int parse_root(json_t *root, const char *const *known,
		      struct grant_set *out, struct parley_err *err)
{
	if (!json_is_object(root))
		return jv_type_error(root, "policy", "an object", err);
	int rc = jv_check_known(root, top_fields, "", err);
	if (rc < 0)
		return rc;
	json_t *arr = json_object_get(root, "grants");
	if (!arr)
		return perr(err, -EINVAL, "missing field \"grants\"");
	if (!json_is_array(arr))
		return jv_type_error(arr, "field \"grants\"", "an array", err);
	size_t n = json_array_size(arr);
	if (n > GRANTS_MAX)
		return perr(err, -E2BIG, "%zu grants, at most %d", n, GRANTS_MAX);
	out->g = calloc(n ? n : 1, sizeof(*out->g));
	if (!out->g)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++, out->n++) {
		rc = parse_grant(json_array_get(arr, i), (int)i, known,
				 &out->g[i], err);
		if (rc < 0)
			return rc;
	}
	rc = check_unique(out, err);
	if (rc == 0)
		rc = parse_services(root, known, out, err);
	if (rc == 0)
		rc = parse_caps(root, known, out, err);
	json_t *seg = json_object_get(root, "segsets");
	if (rc == 0 && seg)
		rc = segset_doc_from_json(seg, known, &out->seg, err);
	return rc;
}

int grant_set_parse(const char *json, size_t len, const char *const *known,
		    struct grant_set *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > GRANT_FILE_MAX)
		return perr(err, -EFBIG, "policy of %zu bytes, at most %d", len,
			    GRANT_FILE_MAX);
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES |
					     JSON_ALLOW_NUL, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	int rc = parse_root(root, known, out, err);
	json_decref(root);
	if (rc < 0)
		grant_set_free(out);
	return rc;
}

int grant_from_json(struct json_t *o, struct grant *g,
		    struct parley_err *err)
{
	memset(g, 0, sizeof(*g));
	return parse_grant(o, -1, NULL, g, err);
}

int svc_rule_from_json(struct json_t *o, struct svc_rule *r,
		       struct parley_err *err)
{
	memset(r, 0, sizeof(*r));
	return parse_svc(o, -1, NULL, r, err);
}

int grant_set_load(const char *path, const char *const *known,
		   struct grant_set *out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	memset(out, 0, sizeof(*out));
	int rc = file_read_all(path, GRANT_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = grant_set_parse((const char *)buf, len, known, out, err);
	free(buf);
	return rc < 0 ? (perr_prefix(err, "%s", path), rc) : 0;
}

void grant_set_free(struct grant_set *s)
{
	if (!s)
		return;
	free(s->g);
	s->g = NULL;
	s->n = 0;
	free(s->svc);
	s->svc = NULL;
	s->nsvc = 0;
	free(s->cap);
	s->cap = NULL;
	s->ncap = 0;
	s->has_caps = false;
	segset_doc_free(&s->seg);
}

const struct svc_rule *svc_rule_find(const struct grant_set *s,
				     const char *source, const char *target,
				     const char *service)
{
	for (unsigned i = 0; s && i < s->nsvc; i++) {
		const struct svc_rule *r = &s->svc[i];
		if (!strcmp(r->source, source) && !strcmp(r->target, target) &&
		    !strcmp(r->service, service))
			return r;
	}
	return NULL;
}

bool grant_cap_allows(const struct grant_set *s, const char *partition,
		      const char *capability)
{
	if (!s || !s->has_caps)
		return true;
	for (unsigned i = 0; i < s->ncap; i++)
		if (!strcmp(s->cap[i].partition, partition) &&
		    !strcmp(s->cap[i].capability, capability))
			return true;
	return false;
}

const struct grant *grant_find(const struct grant_set *s, const char *channel,
			       const char *partition)
{
	for (unsigned i = 0; s && i < s->n; i++) {
		const struct grant *g = &s->g[i];
		if (strcmp(g->channel, channel) == 0 &&
		    (strcmp(g->a, partition) == 0 ||
		     strcmp(g->b, partition) == 0))
			return g;
	}
	return NULL;
}

int grant_set_copy(struct grant_set *dst, const struct grant_set *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->g = calloc(src->n ? src->n : 1, sizeof(*dst->g));
	dst->svc = calloc(src->nsvc ? src->nsvc : 1, sizeof(*dst->svc));
	dst->seg.s = calloc(src->seg.n ? src->seg.n : 1, sizeof(*dst->seg.s));
	if (!dst->g || !dst->svc || !dst->seg.s) {
		grant_set_free(dst);
		return -ENOMEM;
	}
	/* memcpy from a NULL of an empty set is undefined: copy only what
	 * there is. */
	if (src->n)
		memcpy(dst->g, src->g, src->n * sizeof(*dst->g));
	if (src->nsvc)
		memcpy(dst->svc, src->svc, src->nsvc * sizeof(*dst->svc));
	if (src->seg.n)
		memcpy(dst->seg.s, src->seg.s,
		       src->seg.n * sizeof(*dst->seg.s));
	dst->n = src->n;
	dst->nsvc = src->nsvc;
	dst->seg.n = src->seg.n;
	return 0;
}
