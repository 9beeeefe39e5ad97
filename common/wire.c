#include "common/wire.h"
#include "common/hostport.h"
#include "common/seal.h"
#include "common/version.h"
#include "common/jsonv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_MIN 0x1000ull
#define RING_MAX 0x1000000ull

/* Room for "policy.body.baselines[1023].files[31]" and a prefix. */
#define WHERE_MAX 160
/* Joining (daemon/join.c, agent/join.c): a token is "prj_" and 64
 * lower-case hex digits (32 random bytes); PEM documents are capped as
 * common/pki.h caps them (PKI_PEM_MAX). */
#define JOIN_TOKEN_PREFIX "prj_"
#define JOIN_TOKEN_HEX 64
#define JOIN_PEM_MAX (16 * 1024)

/* "starting": an agent's VM whose domain is being started (its agent
 * answers meanwhile: agent/vm/vmserve.h). */
static const char *const part_states[] = {
	"created", "starting", "running", "paused", "stopped", "destroyed",
	NULL
};

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

static const char *sstr(const char *s)
{
	return s ? s : "";
}

/* ---- strings ---------------------------------------------------------- */

/*
 * Length of the UTF-8 sequence at s (n bytes left) with its code point in
 * *cp, or 0 when it is not one: overlong forms, surrogates and code points
 * above U+10FFFF are refused as jansson refuses them.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned c = s[0];
	size_t len;
	uint32_t min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, *cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, *cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, *cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = *cp << 6 | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

/* Free text: at most `max` bytes of UTF-8 without C0 or C1 controls (no
 * terminal escapes, no line breaks in a log line). */
static int chk_text(const char *w, const char *f, const char *s, size_t max,
		    bool required, struct parley_err *err)
{
	const unsigned char *u = (const unsigned char *)sstr(s);
	size_t len = slen(s);
	if (!len && required)
		return perr(err, -EINVAL, "%s.%s: missing", w, f);
	if (len > max)
		return perr(err, -EINVAL, "%s.%s: %zu bytes, at most %zu", w, f,
			    len, max);
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = utf8_seq(u + i, len - i, &cp);
		if (!k)
			return perr(err, -EINVAL, "%s.%s: invalid UTF-8 at "
				    "offset %zu", w, f, i);
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return perr(err, -EINVAL, "%s.%s: control character "
				    "U+%04X at offset %zu", w, f, (unsigned)cp,
				    i);
		i += k;
	}
	return 0;
}

/* A partition, channel or host name; "" allowed when optional. */
static int chk_name(const char *w, const char *f, const char *s,
		    bool optional, struct parley_err *err)
{
	size_t len = slen(s);
	if (!len && optional)
		return 0;
	if (!len)
		return perr(err, -EINVAL, "%s.%s: missing", w, f);
	if (!jv_name_valid(s, len, WIRE_NAME_MAX)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s.%s: %s is not a valid name (1-%d "
			    "of A-Z a-z 0-9 _ . -)", w, f, jv_quote(&q, s, len),
			    WIRE_NAME_MAX - 1);
	}
	return 0;
}

/* A machine-readable word (event, error code): name characters, 1..max. */
static int chk_token(const char *w, const char *f, const char *s, size_t max,
		     struct parley_err *err)
{
	size_t len = slen(s);
	if (!len)
		return perr(err, -EINVAL, "%s.%s: missing", w, f);
	if (!jv_name_valid(s, len, max + 1)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s.%s: %s is not a token (1-%zu of "
			    "A-Z a-z 0-9 _ . -)", w, f, jv_quote(&q, s, len),
			    max);
	}
	return 0;
}

/* A key configuration file name, as agent/spec.c admits them. */
static int chk_file_name(const char *w, const char *f, const char *s,
			 bool optional, struct parley_err *err)
{
	size_t len = slen(s);
	struct jv_quoted q;
	if (!len && optional)
		return 0;
	if (!len || len >= WIRE_FILE_NAME_MAX)
		return perr(err, -EINVAL, "%s.%s: %zu bytes, must be 1..%d", w,
			    f, len, WIRE_FILE_NAME_MAX - 1);
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '/')
			return perr(err, -EINVAL, "%s.%s: %s is not a file name "
				    "(printable ASCII, no '/')", w, f,
				    jv_quote(&q, s, len));
	return 0;
}

static int chk_bytes(const char *w, const char *f,
		     const ProtobufCBinaryData *b, size_t want,
		     struct parley_err *err)
{
	if (b->len != want || (want && !b->data))
		return perr(err, -EINVAL, "%s.%s: %zu bytes, want %zu", w, f,
			    b->len, want);
	return 0;
}

static int chk_count(const char *w, const char *f, size_t n, size_t max,
		     struct parley_err *err)
{
	if (n > max)
		return perr(err, -E2BIG, "%s.%s: %zu entries, at most %zu", w, f,
			    n, max);
	return 0;
}

/* Within a batch every record has its own, higher seq than the last. */
static int chk_seq(const char *w, uint64_t seq, uint64_t *prev,
		   struct parley_err *err)
{
	if (!seq)
		return perr(err, -EINVAL, "%s.seq: 0 (seqs start at 1)", w);
	if (seq <= *prev)
		return perr(err, -EINVAL, "%s.seq: %llu after %llu (seqs must "
			    "increase within a batch)", w,
			    (unsigned long long)seq, (unsigned long long)*prev);
	*prev = seq;
	return 0;
}

/* ---- uniqueness ------------------------------------------------------- */

struct keyed {
	const char *s;
	size_t i;
};

static int keyed_cmp(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->s, y->s);
	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Refuse two equal keys[i].s: "<w>.<f>[j]: duplicate \"x\" (also [i])"
 * with i < j. Sorting keeps 4096 grants cheap; keys is reordered.
 */
static int chk_unique(struct keyed *keys, size_t n, const char *w,
		      const char *f, struct parley_err *err)
{
	qsort(keys, n, sizeof(*keys), keyed_cmp);
	for (size_t k = 1; k < n; k++) {
		if (strcmp(keys[k - 1].s, keys[k].s))
			continue;
		struct jv_quoted q;
		return perr(err, -EEXIST, "%s.%s[%zu]: duplicate %s (also "
			    "[%zu])", w, f, keys[k].i,
			    jv_quote(&q, keys[k].s, strlen(keys[k].s)),
			    keys[k - 1].i);
	}
	return 0;
}

/* ---- digests: files and segments, shared by Measurement and Baseline -- */

static int chk_files(const char *w, Parley__V1__FileDigest *const *files,
		     size_t n, struct parley_err *err)
{
	int rc = chk_count(w, "files", n, WIRE_FILES_MAX, err);
	if (rc < 0)
		return rc;
	struct keyed keys[WIRE_FILES_MAX];
	char iw[WHERE_MAX];
	for (size_t i = 0; i < n; i++) {
		snprintf(iw, sizeof(iw), "%s.files[%zu]", w, i);
		if (!files[i])
			return perr(err, -EINVAL, "%s: missing", iw);
		rc = chk_file_name(iw, "name", files[i]->name, false, err);
		if (rc == 0)
			rc = chk_bytes(iw, "sha256", &files[i]->sha256,
				       WIRE_DIGEST_LEN, err);
		if (rc < 0)
			return rc;
		keys[i] = (struct keyed){ files[i]->name, i };
	}
	return chk_unique(keys, n, w, "files", err);
}

static int chk_segments(const char *w, const ProtobufCBinaryData *segs,
			size_t n, struct parley_err *err)
{
	int rc = chk_count(w, "segments", n, WIRE_SEGMENTS_MAX, err);
	char f[32];
	for (size_t i = 0; rc == 0 && i < n; i++) {
		snprintf(f, sizeof(f), "segments[%zu]", i);
		rc = chk_bytes(w, f, &segs[i], WIRE_DIGEST_LEN, err);
	}
	return rc;
}

/* ---- unknown fields ---------------------------------------------------- */

/* Largest field number protobuf allows (2^29 - 1). */
#define FIELD_NUMBER_MAX 536870911u
/* Envelope > MeasurementReport > Measurement > FileDigest is the deepest. */
#define NESTING_MAX 8

static int chk_unknown(const ProtobufCMessage *m, unsigned depth,
		       struct parley_err *err);

/* The submessages of field f of m, if it holds any. */
static int chk_unknown_field(const ProtobufCMessage *m,
			     const ProtobufCFieldDescriptor *f, unsigned depth,
			     struct parley_err *err)
{
	const char *base = (const char *)m;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = *(const size_t *)(base + f->quantifier_offset);
		ProtobufCMessage *const *v =
			*(ProtobufCMessage *const *const *)(base + f->offset);
		for (size_t k = 0; k < n; k++) {
			int rc = v[k] ? chk_unknown(v[k], depth + 1, err) : 0;
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	/* A oneof's members share one pointer: only the chosen one is. */
	if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
		return 0;
	const ProtobufCMessage *sub =
		*(ProtobufCMessage *const *)(base + f->offset);
	return sub ? chk_unknown(sub, depth + 1, err) : 0;
}

/*
 * protobuf-c keeps unknown fields (and re-encodes them), and it takes the
 * overlong tag 0x80 0x00 for a field number 0 where it refuses 0x00:
 * refuse field numbers no encoder may write, so that every message let
 * through re-encodes to bytes that decode again.
 */
static int chk_unknown(const ProtobufCMessage *m, unsigned depth,
		       struct parley_err *err)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (depth > NESTING_MAX)
		return perr(err, -EBADMSG, "%s: nested too deep",
			    d->short_name);
	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		uint32_t tag = m->unknown_fields[i].tag;
		if (tag == 0 || tag > FIELD_NUMBER_MAX)
			return perr(err, -EBADMSG, "%s: field number %u is not "
				    "a field number", d->short_name, tag);
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		if (d->fields[i].type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		int rc = chk_unknown_field(m, &d->fields[i], depth, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- grants and the policy body --------------------------------------- */

static int chk_grant(const Parley__V1__Grant *g, const char *w,
		     struct parley_err *err)
{
	int rc = chk_name(w, "channel", g->channel, false, err);
	if (rc == 0)
		rc = chk_name(w, "endpoint_a", g->endpoint_a, false, err);
	if (rc == 0)
		rc = chk_name(w, "endpoint_b", g->endpoint_b, false, err);
	if (rc < 0)
		return rc;
	if (strcmp(g->endpoint_a, g->endpoint_b) == 0)
		return perr(err, -EINVAL, "%s: endpoint_a and endpoint_b are "
			    "both \"%s\"", w, g->endpoint_a);
	if ((unsigned)g->direction > PARLEY__V1__DIRECTION__BOTH)
		return perr(err, -EINVAL, "%s.direction: %d is not A_TO_B, "
			    "B_TO_A or BOTH", w, (int)g->direction);
	uint64_t n = g->ring_bytes;
	if (n < RING_MIN || n > RING_MAX || (n & (n - 1)))
		return perr(err, -EINVAL, "%s.ring_bytes: %llu is not a power "
			    "of two in 4K..16M", w, (unsigned long long)n);
	return 0;
}

static int chk_grants(const Parley__V1__PolicyBody *b, const char *w,
		      struct parley_err *err)
{
	int rc = chk_count(w, "grants", b->n_grants, WIRE_GRANTS_MAX, err);
	if (rc < 0 || !b->n_grants)
		return rc;
	struct keyed *keys = calloc(b->n_grants, sizeof(*keys));
	if (!keys)
		return perr(err, -ENOMEM, "%s.grants: out of memory", w);
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < b->n_grants; i++) {
		snprintf(iw, sizeof(iw), "%s.grants[%zu]", w, i);
		if (!b->grants[i])
			rc = perr(err, -EINVAL, "%s: missing", iw);
		else
			rc = chk_grant(b->grants[i], iw, err);
		if (rc == 0)
			keys[i] = (struct keyed){ b->grants[i]->channel, i };
	}
	if (rc == 0)
		rc = chk_unique(keys, b->n_grants, w, "grants", err);
	free(keys);
	return rc;
}

static int chk_baseline(const Parley__V1__Baseline *bl, const char *w,
			struct parley_err *err)
{
	int rc = chk_name(w, "partition", bl->partition, false, err);
	if (rc == 0)
		rc = chk_bytes(w, "digest", &bl->digest, WIRE_DIGEST_LEN, err);
	if (rc == 0)
		rc = chk_files(w, bl->files, bl->n_files, err);
	if (rc == 0)
		rc = chk_segments(w, bl->segments, bl->n_segments, err);
	return rc;
}

static int chk_baselines(const Parley__V1__PolicyBody *b, const char *w,
			 struct parley_err *err)
{
	int rc = chk_count(w, "baselines", b->n_baselines, WIRE_BASELINES_MAX,
			   err);
	if (rc < 0 || !b->n_baselines)
		return rc;
	struct keyed *keys = calloc(b->n_baselines, sizeof(*keys));
	if (!keys)
		return perr(err, -ENOMEM, "%s.baselines: out of memory", w);
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < b->n_baselines; i++) {
		snprintf(iw, sizeof(iw), "%s.baselines[%zu]", w, i);
		if (!b->baselines[i])
			rc = perr(err, -EINVAL, "%s: missing", iw);
		else
			rc = chk_baseline(b->baselines[i], iw, err);
		if (rc == 0)
			keys[i] = (struct keyed){ b->baselines[i]->partition,
						  i };
	}
	if (rc == 0)
		rc = chk_unique(keys, b->n_baselines, w, "baselines", err);
	free(keys);
	return rc;
}

/* disk_keys[i]: partition a name, disk a disk name (1..31 bytes),
 * key_version >= 1, sealed exactly SEAL_LEN bytes; (partition, disk,
 * key_version) once (a rekey in progress sends two versions). Whether it opens is the agent's to find (agent/disk/). */
static int chk_disk_keys(const Parley__V1__PolicyBody *b, const char *w,
			 struct parley_err *err)
{
	int rc = chk_count(w, "disk_keys", b->n_disk_keys, WIRE_DISK_KEYS_MAX,
			   err);
	if (rc < 0 || !b->n_disk_keys)
		return rc;
	struct keyed *keys = calloc(b->n_disk_keys, sizeof(*keys));
	char (*pair)[2 * WIRE_NAME_MAX + 24] = calloc(b->n_disk_keys,
						      sizeof(*pair));
	if (!keys || !pair)
		rc = perr(err, -ENOMEM, "%s.disk_keys: out of memory", w);
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < b->n_disk_keys; i++) {
		const Parley__V1__DiskKey *k = b->disk_keys[i];
		snprintf(iw, sizeof(iw), "%s.disk_keys[%zu]", w, i);
		if (!k) {
			rc = perr(err, -EINVAL, "%s: missing", iw);
			break;
		}
		rc = chk_name(iw, "partition", k->partition, false, err);
		if (rc == 0)
			rc = chk_name(iw, "disk", k->disk, false, err);
		if (rc == 0 && slen(k->disk) > WIRE_DISK_NAME_MAX)
			rc = perr(err, -EINVAL, "%s.disk: %zu bytes, at most "
				  "%d", iw, slen(k->disk), WIRE_DISK_NAME_MAX);
		if (rc == 0 && !k->key_version)
			rc = perr(err, -EINVAL, "%s.key_version: 0 (versions "
				  "start at 1)", iw);
		if (rc == 0 && k->sealed.len != SEAL_LEN)
			rc = perr(err, -EINVAL, "%s.sealed: %zu bytes, not %d",
				  iw, k->sealed.len, SEAL_LEN);
		if (rc < 0)
			break;
		snprintf(pair[i], sizeof(pair[i]), "%s/%s v%llu",
			 k->partition, k->disk,
			 (unsigned long long)k->key_version);
		keys[i] = (struct keyed){ pair[i], i };
	}
	if (rc == 0)
		rc = chk_unique(keys, b->n_disk_keys, w, "disk_keys", err);
	free(keys);
	free(pair);
	return rc;
}

/* services[i]: names, source != target; (source, target, service)
 * unique, since an agent takes the first rule naming a call. */
static int chk_svc(const Parley__V1__ServiceRule *r, const char *w,
		   struct parley_err *err)
{
	int rc = chk_name(w, "source", r->source, false, err);
	if (rc == 0)
		rc = chk_name(w, "target", r->target, false, err);
	if (rc == 0)
		rc = chk_name(w, "service", r->service, false, err);
	if (rc == 0 && strcmp(r->source, r->target) == 0)
		rc = perr(err, -EINVAL, "%s: source and target are both "
			  "\"%s\"", w, r->source);
	return rc;
}

static int chk_services(const Parley__V1__PolicyBody *b, const char *w,
			struct parley_err *err)
{
	int rc = chk_count(w, "services", b->n_services, WIRE_SERVICES_MAX,
			   err);
	if (rc < 0 || !b->n_services)
		return rc;
	struct keyed *keys = calloc(b->n_services, sizeof(*keys));
	char (*triple)[3 * WIRE_NAME_MAX] = calloc(b->n_services,
						   sizeof(*triple));
	if (!keys || !triple)
		rc = perr(err, -ENOMEM, "%s.services: out of memory", w);
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < b->n_services; i++) {
		const Parley__V1__ServiceRule *r = b->services[i];
		snprintf(iw, sizeof(iw), "%s.services[%zu]", w, i);
		if (!r)
			rc = perr(err, -EINVAL, "%s: missing", iw);
		else
			rc = chk_svc(r, iw, err);
		if (rc < 0)
			break;
		/* '/' is not a name character: the key is unambiguous. */
		snprintf(triple[i], sizeof(triple[i]), "%s/%s/%s", r->source,
			 r->target, r->service);
		keys[i] = (struct keyed){ triple[i], i };
	}
	if (rc == 0)
		rc = chk_unique(keys, b->n_services, w, "services", err);
	free(keys);
	free(triple);
	return rc;
}

int wire_check_policy_body(const Parley__V1__PolicyBody *b, const char *where,
			   struct parley_err *err)
{
	const char *w = where ? where : "body";
	int rc = chk_unknown(&b->base, 0, err);
	if (rc == 0)
		rc = chk_name(w, "host", b->host, false, err);
	if (rc < 0)
		return rc;
	if (!b->version)
		return perr(err, -EINVAL, "%s.version: 0 (versions start at 1)",
			    w);
	rc = chk_grants(b, w, err);
	if (rc == 0)
		rc = chk_baselines(b, w, err);
	if (rc == 0)
		rc = chk_services(b, w, err);
	if (rc == 0)
		rc = chk_disk_keys(b, w, err);
	if (rc == 0 && slen(b->segsets_json) > WIRE_SEGSETS_JSON_MAX)
		rc = perr(err, -EINVAL, "%s.segsets_json: %zu bytes, at most "
			  "%u", w, slen(b->segsets_json),
			  WIRE_SEGSETS_JSON_MAX);
	return rc;
}

int wire_body_decode(const ProtobufCBinaryData *body,
		     Parley__V1__PolicyBody **out, struct parley_err *err)
{
	*out = NULL;
	if (body->len > WIRE_POLICY_BODY_MAX)
		return perr(err, -EMSGSIZE, "policy.body: %zu bytes, at most "
			    "%u", body->len, WIRE_POLICY_BODY_MAX);
	Parley__V1__PolicyBody *b =
		parley__v1__policy_body__unpack(NULL, body->len, body->data);
	if (!b)
		return perr(err, -EBADMSG, "policy.body: not a PolicyBody");
	int rc = wire_check_policy_body(b, "policy.body", err);
	if (rc < 0) {
		parley__v1__policy_body__free_unpacked(b, NULL);
		return rc;
	}
	*out = b;
	return 0;
}

/* ---- bodies, one reader each ------------------------------------------ */

static int chk_hello(const Parley__V1__Hello *h, struct parley_err *err)
{
	int rc = chk_name("hello", "host", h->host, false, err);
	if (rc == 0)
		rc = chk_text("hello", "agent_version", h->agent_version,
			      WIRE_AGENT_VERSION_MAX, false, err);
	if (rc == 0 && !h->next_seq)
		rc = perr(err, -EINVAL, "hello.next_seq: 0 (seqs start at 1)");
	if (rc == 0 && h->n_partitions > WIRE_HELLO_PARTS_MAX)
		rc = perr(err, -E2BIG, "hello.partitions: %zu, at most %d",
			  h->n_partitions, WIRE_HELLO_PARTS_MAX);
	if (rc == 0 && h->n_partitions && !h->partitions_listed)
		rc = perr(err, -EINVAL, "hello.partitions without "
			  "partitions_listed");
	for (size_t i = 0; rc == 0 && i < h->n_partitions; i++)
		rc = chk_name("hello", "partitions", h->partitions[i], false,
			      err);
	return rc;
}

static int chk_welcome(const Parley__V1__Welcome *wl, struct parley_err *err)
{
	int rc = chk_name("welcome", "host", wl->host, false, err);
	if (rc < 0)
		return rc;
	if (wl->heartbeat_ms < WIRE_HEARTBEAT_MIN_MS ||
	    wl->heartbeat_ms > WIRE_HEARTBEAT_MAX_MS)
		return perr(err, -EINVAL, "welcome.heartbeat_ms: %u is outside "
			    "%d..%d", wl->heartbeat_ms, WIRE_HEARTBEAT_MIN_MS,
			    WIRE_HEARTBEAT_MAX_MS);
	return 0;
}

static int chk_key_id(const char *s, struct parley_err *err)
{
	size_t len = slen(s);
	if (len != WIRE_KEY_ID_LEN)
		return perr(err, -EINVAL, "policy.key_id: %zu characters, want "
			    "%d hex digits", len, WIRE_KEY_ID_LEN);
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return perr(err, -EINVAL, "policy.key_id: byte %zu is "
				    "not a lower-case hex digit", i);
	return 0;
}

static int chk_bundle(const Parley__V1__PolicyBundle *p,
		      struct parley_err *err)
{
	if (!p->body.len || !p->body.data)
		return perr(err, -EINVAL, "policy.body: missing");
	if (p->body.len > WIRE_POLICY_BODY_MAX)
		return perr(err, -EINVAL, "policy.body: %zu bytes, at most %u",
			    p->body.len, WIRE_POLICY_BODY_MAX);
	int rc = chk_bytes("policy", "signature", &p->signature, WIRE_SIG_LEN,
			   err);
	if (rc == 0)
		rc = chk_key_id(p->key_id, err);
	return rc;
}

static int chk_policy_ack(const Parley__V1__PolicyAck *a,
			  struct parley_err *err)
{
	int rc = chk_text("policy_ack", "error", a->error, WIRE_ERRMSG_MAX,
			  !a->ok, err);
	if (rc < 0)
		return rc;
	if (a->ok && !a->version)
		return perr(err, -EINVAL, "policy_ack.version: 0 in an ok ack");
	if (a->ok && slen(a->error))
		return perr(err, -EINVAL, "policy_ack.error: set in an ok ack");
	return 0;
}

static int chk_measurement(const Parley__V1__Measurement *m, const char *w,
			   uint64_t *prev, struct parley_err *err)
{
	int rc = chk_seq(w, m->seq, prev, err);
	if (rc == 0)
		rc = chk_name(w, "partition", m->partition, false, err);
	if (rc == 0)
		rc = chk_bytes(w, "digest", &m->digest, WIRE_DIGEST_LEN, err);
	if (rc == 0)
		rc = chk_files(w, m->files, m->n_files, err);
	if (rc == 0)
		rc = chk_segments(w, m->segments, m->n_segments, err);
	return rc;
}

static int chk_measurements(const Parley__V1__MeasurementReport *r,
			    struct parley_err *err)
{
	const char *w = "measurements";
	if (!r->n_measurements)
		return perr(err, -EINVAL, "%s.measurements: empty batch", w);
	int rc = chk_count(w, "measurements", r->n_measurements,
			   WIRE_BATCH_MAX, err);
	uint64_t prev = 0;
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < r->n_measurements; i++) {
		snprintf(iw, sizeof(iw), "%s.measurements[%zu]", w, i);
		if (!r->measurements[i])
			return perr(err, -EINVAL, "%s: missing", iw);
		rc = chk_measurement(r->measurements[i], iw, &prev, err);
	}
	return rc;
}

static int chk_audit_event(const Parley__V1__AuditEvent *a, const char *w,
			   uint64_t *prev, struct parley_err *err)
{
	int rc = chk_seq(w, a->seq, prev, err);
	if (rc == 0)
		rc = chk_token(w, "event", a->event, WIRE_EVENT_MAX, err);
	if (rc == 0)
		rc = chk_name(w, "partition", a->partition, true, err);
	if (rc == 0)
		rc = chk_name(w, "channel", a->channel, true, err);
	if (rc == 0)
		rc = chk_text(w, "reason", a->reason, WIRE_REASON_MAX, false,
			      err);
	if (rc == 0)
		rc = chk_file_name(w, "file", a->file, true, err);
	if (rc == 0)
		rc = chk_text(w, "detail", a->detail, WIRE_DETAIL_MAX, false,
			      err);
	return rc;
}

static int chk_audit(const Parley__V1__AuditBatch *b, struct parley_err *err)
{
	if (!b->n_events)
		return perr(err, -EINVAL, "audit.events: empty batch");
	int rc = chk_count("audit", "events", b->n_events, WIRE_BATCH_MAX, err);
	uint64_t prev = 0;
	char iw[WHERE_MAX];
	for (size_t i = 0; rc == 0 && i < b->n_events; i++) {
		snprintf(iw, sizeof(iw), "audit.events[%zu]", i);
		if (!b->events[i])
			return perr(err, -EINVAL, "%s: missing", iw);
		rc = chk_audit_event(b->events[i], iw, &prev, err);
	}
	return rc;
}

#define ACTION(a) PARLEY__V1__PARTITION_COMMAND__ACTION__##a

static int chk_command(const Parley__V1__PartitionCommand *c,
		       struct parley_err *err)
{
	int rc = chk_name("command", "partition", c->partition, false, err);
	if (rc < 0)
		return rc;
	if ((unsigned)c->action > ACTION(MEASURE))
		return perr(err, -EINVAL, "command.action: %d is not CREATE, "
			    "START, STOP, DESTROY or MEASURE", (int)c->action);
	size_t len = slen(c->spec_json);
	bool create = c->action == ACTION(CREATE) ||
		      c->action == ACTION(MEASURE);
	if (create && !len)
		return perr(err, -EINVAL, "command.spec_json: missing for "
			    "CREATE or MEASURE");
	if (!create && len)
		return perr(err, -EINVAL, "command.spec_json: only CREATE "
			    "and MEASURE take a spec");
	if (len > WIRE_SPEC_MAX)
		return perr(err, -EINVAL, "command.spec_json: %zu bytes, at "
			    "most %d", len, WIRE_SPEC_MAX);
	if (c->vm && c->action == ACTION(MEASURE))
		return perr(err, -EINVAL, "command.vm: a libvirt partition "
			    "the daemon runs is measured, never a VM its "
			    "agent runs");
	return 0;
}

static int chk_state(const char *s, struct parley_err *err)
{
	for (const char *const *p = part_states; *p; p++)
		if (strcmp(sstr(s), *p) == 0)
			return 0;
	struct jv_quoted q;
	return perr(err, -EINVAL, "status.state: %s is not created, "
		    "starting, running, paused, stopped or destroyed",
		    jv_quote(&q, sstr(s), slen(s)));
}

/* The device lifecycle states (agent/vmx/plugdev.h's names, "none"
 * excepted: a device reported has entered one). */
static const char *const device_states[] = {
	"initialising", "powering-up", "loading-state", "running",
	"saving-state", "powering-down", "torn-down", "failed", NULL
};

static int chk_devices(const Parley__V1__PartitionStatus *s,
		       struct parley_err *err)
{
	if (s->n_devices > WIRE_DEVICES_MAX)
		return perr(err, -EINVAL, "status.devices: %zu, at most %d",
			    s->n_devices, WIRE_DEVICES_MAX);
	for (size_t i = 0; i < s->n_devices; i++) {
		const Parley__V1__DeviceState *d = s->devices[i];
		char w[32];
		snprintf(w, sizeof(w), "status.devices[%zu]", i);
		int rc = chk_name(w, "device", d->device, false, err);
		if (rc == 0)
			rc = chk_name(w, "plugin", d->plugin, false, err);
		if (rc < 0)
			return rc;
		const char *const *k = device_states;
		while (*k && strcmp(sstr(d->state), *k))
			k++;
		if (!*k) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%s.state: %s is not a "
				    "device state", w,
				    jv_quote(&q, sstr(d->state),
					     slen(d->state)));
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(s->devices[j]->device, d->device) &&
			    !strcmp(s->devices[j]->plugin, d->plugin))
				return perr(err, -EINVAL, "%s: device %s "
					    "(plugin %s) twice", w, d->device,
					    d->plugin);
	}
	return 0;
}

static int chk_status(const Parley__V1__PartitionStatus *s,
		      struct parley_err *err)
{
	uint64_t prev = 0;
	int rc = chk_seq("status", s->seq, &prev, err);
	if (rc == 0)
		rc = chk_name("status", "partition", s->partition, false, err);
	if (rc == 0)
		rc = chk_state(s->state, err);
	if (rc == 0)
		rc = chk_text("status", "reason", s->reason, WIRE_REASON_MAX,
			      false, err);
	if (rc == 0)
		rc = chk_devices(s, err);
	return rc;
}

static int chk_error(const Parley__V1__Error *e, struct parley_err *err)
{
	int rc = chk_token("error", "code", e->code, WIRE_CODE_MAX, err);
	if (rc == 0)
		rc = chk_text("error", "message", e->message, WIRE_ERRMSG_MAX,
			      false, err);
	return rc;
}

/* Not echoed in messages: a token is a secret. */
static int chk_join_token(const char *s, struct parley_err *err)
{
	size_t len = slen(s), plen = strlen(JOIN_TOKEN_PREFIX);
	if (!len)
		return perr(err, -EINVAL, "join_request.token: missing");
	if (len != plen + JOIN_TOKEN_HEX || strncmp(s, JOIN_TOKEN_PREFIX, plen))
		return perr(err, -EINVAL, "join_request.token: not %s and %d "
			    "hex digits", JOIN_TOKEN_PREFIX, JOIN_TOKEN_HEX);
	for (size_t i = plen; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return perr(err, -EINVAL, "join_request.token: not "
				    "lower-case hex at offset %zu", i);
	return 0;
}

/* A PEM document: 1..JOIN_PEM_MAX bytes of printable ASCII and line
 * breaks (whether it parses is for the PEM reader). */
static int chk_pem(const char *w, const char *f, const char *s,
		   struct parley_err *err)
{
	size_t len = slen(s);
	if (!len)
		return perr(err, -EINVAL, "%s.%s: missing", w, f);
	if (len > JOIN_PEM_MAX)
		return perr(err, -EINVAL, "%s.%s: %zu bytes, at most %d", w, f,
			    len, JOIN_PEM_MAX);
	for (size_t i = 0; i < len; i++)
		if ((s[i] < 0x20 || s[i] > 0x7e) && s[i] != '\n' &&
		    s[i] != '\r')
			return perr(err, -EINVAL, "%s.%s: byte 0x%02x at offset "
				    "%zu is not PEM text", w, f,
				    (unsigned char)s[i], i);
	return 0;
}

static int chk_join_request(const Parley__V1__JoinRequest *r,
			    struct parley_err *err)
{
	int rc = chk_join_token(r->token, err);
	if (rc == 0)
		rc = chk_pem("join_request", "csr_pem", r->csr_pem, err);
	return rc;
}

/* Daemon replicas' link addresses: at most WIRE_JOIN_SERVERS_MAX, each
 * HOST:PORT of printable text without blanks. */
static int chk_servers(const char *w, char *const *servers, size_t n,
		       struct parley_err *err)
{
	int rc = 0;
	if (n > WIRE_JOIN_SERVERS_MAX)
		rc = perr(err, -E2BIG, "%s.servers: %zu, at most %d", w, n,
			  WIRE_JOIN_SERVERS_MAX);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char host[128];
		int port;
		rc = chk_text(w, "servers", servers[i], 127, true, err);
		if (rc == 0 && strpbrk(servers[i], " \t"))
			rc = perr(err, -EINVAL, "%s.servers[%zu]: a blank", w,
				  i);
		if (rc == 0 && (hostport_split(servers[i], host, sizeof(host),
					       &port) < 0 ||
				port <= 0))
			rc = perr(err, -EINVAL, "%s.servers[%zu]: not "
				  "HOST:PORT", w, i);
	}
	return rc;
}

static int chk_join_response(const Parley__V1__JoinResponse *r,
			     struct parley_err *err)
{
	int rc = chk_name("join_response", "host", r->host, false, err);
	if (rc == 0)
		rc = chk_pem("join_response", "cert_pem", r->cert_pem, err);
	if (rc == 0)
		rc = chk_pem("join_response", "ca_pem", r->ca_pem, err);
	if (rc == 0)
		rc = chk_pem("join_response", "policy_pub_pem",
			     r->policy_pub_pem, err);
	if (rc == 0)
		rc = chk_servers("join_response", r->servers, r->n_servers,
				 err);
	return rc;
}

/* X.Y.Z as digits and dots only; the numbers are updpkg's to parse. */
static int chk_update_version(const char *s, struct parley_err *err)
{
	size_t len = slen(s), dots = 0;
	if (!len || len >= 32)
		return perr(err, -EINVAL, "update_offer.version: %zu bytes, "
			    "1..31", len);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] < '0' || s[i] > '9')
			return perr(err, -EINVAL, "update_offer.version: not "
				    "X.Y.Z at offset %zu", i);
	}
	if (dots != 2)
		return perr(err, -EINVAL, "update_offer.version: not X.Y.Z");
	return 0;
}

static int chk_update_offer(const Parley__V1__UpdateOffer *o,
			    struct parley_err *err)
{
	int rc = chk_update_version(o->version, err);
	if (rc == 0 && (o->size < WIRE_UPDATE_MIN || o->size > WIRE_UPDATE_MAX))
		rc = perr(err, -EINVAL, "update_offer.size: %llu not in "
			  "%u..%llu", (unsigned long long)o->size,
			  WIRE_UPDATE_MIN, (unsigned long long)WIRE_UPDATE_MAX);
	if (rc == 0)
		rc = chk_bytes("update_offer", "sha256", &o->sha256,
			       WIRE_DIGEST_LEN, err);
	return rc;
}

static int chk_update_chunk(const Parley__V1__UpdateChunk *c,
			    struct parley_err *err)
{
	int rc = chk_bytes("update_chunk", "sha256", &c->sha256,
			   WIRE_DIGEST_LEN, err);
	if (rc == 0 && (!c->data.len || c->data.len > WIRE_UPDATE_CHUNK_MAX))
		rc = perr(err, -EINVAL, "update_chunk.data: %zu bytes, 1..%u",
			  c->data.len, WIRE_UPDATE_CHUNK_MAX);
	if (rc == 0 && (c->offset > WIRE_UPDATE_MAX ||
			c->data.len > WIRE_UPDATE_MAX - c->offset))
		rc = perr(err, -EINVAL, "update_chunk.offset: %llu + %zu "
			  "beyond %llu", (unsigned long long)c->offset,
			  c->data.len, (unsigned long long)WIRE_UPDATE_MAX);
	return rc;
}

static const char *const update_states[] = { "receiving", "staged",
					      "refused", "failed",
					      "committed", "busy", NULL };

static int chk_update_progress(const Parley__V1__UpdateProgress *p,
			       struct parley_err *err)
{
	int rc = 0;
	if (p->sha256.len)
		rc = chk_bytes("update_progress", "sha256", &p->sha256,
			       WIRE_DIGEST_LEN, err);
	bool known = false;
	for (const char *const *k = update_states; *k; k++)
		known = known || !strcmp(sstr(p->state), *k);
	if (rc == 0 && !known) {
		struct jv_quoted q;
		rc = perr(err, -EINVAL, "update_progress.state: %s is not "
			  "receiving, staged, refused, failed, committed or "
			  "busy", jv_quote(&q, sstr(p->state),
					   slen(p->state)));
	}
	if (rc == 0 && p->received > WIRE_UPDATE_MAX)
		rc = perr(err, -EINVAL, "update_progress.received: %llu "
			  "beyond %llu", (unsigned long long)p->received,
			  (unsigned long long)WIRE_UPDATE_MAX);
	if (rc == 0)
		rc = chk_text("update_progress", "reason", p->reason,
			      WIRE_DETAIL_MAX, false, err);
	if (rc == 0)
		rc = chk_text("update_progress", "version", p->version,
			      WIRE_AGENT_VERSION_MAX, false, err);
	return rc;
}

/* An operator's rollback (issue 12): the version previous should hold is
 * an agent's version text ("0.4.0 (abc)", "0.5.0") or empty; the request
 * an id the daemon took, never 0. */
static int chk_update_rollback(const Parley__V1__UpdateRollback *r,
			       struct parley_err *err)
{
	int rc = chk_text("update_rollback", "expect_version",
			  r->expect_version, WIRE_AGENT_VERSION_MAX, false, err);
	unsigned v[3];
	if (rc == 0 && slen(r->expect_version) &&
	    parley_version_parse(r->expect_version, true, v) < 0)
		rc = perr(err, -EINVAL, "update_rollback.expect_version: not "
			  "X.Y.Z (with an optional \" (...)\" after it)");
	if (rc == 0 && !r->request)
		rc = perr(err, -EINVAL, "update_rollback.request: 0");
	return rc;
}

/* A stored command's id: 1 .. INT64_MAX (the store's INTEGER). */
static int chk_command_done(const Parley__V1__Ack *a, struct parley_err *err)
{
	int rc = chk_unknown(&a->base, 0, err);
	if (rc == 0 && (a->seq == 0 || a->seq > (uint64_t)INT64_MAX))
		rc = perr(err, -EINVAL, "command_done.seq: %llu is no "
			  "command id", (unsigned long long)a->seq);
	return rc;
}

static bool body_known(Parley__V1__Envelope__BodyCase c)
{
	return (c >= PARLEY__V1__ENVELOPE__BODY_HELLO &&
		c <= PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK) ||
	       c == PARLEY__V1__ENVELOPE__BODY_SERVERS ||
	       c == PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE;
}

int wire_check(const Parley__V1__Envelope *e, struct parley_err *err)
{
	int rc = chk_unknown(&e->base, 0, err);
	if (rc < 0)
		return rc;
	if (e->body_case == PARLEY__V1__ENVELOPE__BODY__NOT_SET)
		return perr(err, -EPROTO, "envelope: no body (or one this side "
			    "does not know)");
	if (!body_known(e->body_case))
		return perr(err, -EPROTO, "envelope: body case %d is not known",
			    (int)e->body_case);
	if (!e->hello) /* every member of the union is a pointer */
		return perr(err, -EPROTO, "envelope.%s: set but missing",
			    wire_body_name(e->body_case));
	switch (e->body_case) {
	case PARLEY__V1__ENVELOPE__BODY_HELLO:
		return chk_hello(e->hello, err);
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		return chk_welcome(e->welcome, err);
	case PARLEY__V1__ENVELOPE__BODY_POLICY:
		return chk_bundle(e->policy, err);
	case PARLEY__V1__ENVELOPE__BODY_POLICY_ACK:
		return chk_policy_ack(e->policy_ack, err);
	case PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS:
		return chk_measurements(e->measurements, err);
	case PARLEY__V1__ENVELOPE__BODY_AUDIT:
		return chk_audit(e->audit, err);
	case PARLEY__V1__ENVELOPE__BODY_COMMAND:
		return chk_command(e->command, err);
	case PARLEY__V1__ENVELOPE__BODY_STATUS:
		return chk_status(e->status, err);
	case PARLEY__V1__ENVELOPE__BODY_ERROR:
		return chk_error(e->error, err);
	case PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST:
		return chk_join_request(e->join_request, err);
	case PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE:
		return chk_join_response(e->join_response, err);
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER:
		return chk_update_offer(e->update_offer, err);
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK:
		return chk_update_chunk(e->update_chunk, err);
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS:
		return chk_update_progress(e->update_progress, err);
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK:
		return chk_update_rollback(e->update_rollback, err);
	case PARLEY__V1__ENVELOPE__BODY_SERVERS:
		return chk_servers("servers", e->servers->servers,
				   e->servers->n_servers, err);
	case PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE:
		return chk_command_done(e->command_done, err);
	case PARLEY__V1__ENVELOPE__BODY_ACK:       /* any seq */
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT: /* any time */
		return 0;
	default:
		PARLEY_ASSERT(!"body_known() knows a case wire_check does not");
	}
}

/* ---- constructors ----------------------------------------------------- */

void wire_init_envelope(Parley__V1__Envelope *e, uint64_t request_id)
{
	parley__v1__envelope__init(e);
	e->request_id = request_id;
}

void wire_bytes(ProtobufCBinaryData *b, const void *p, size_t len)
{
	b->data = (uint8_t *)p;
	b->len = len;
}

const char *wire_body_name(Parley__V1__Envelope__BodyCase c)
{
	switch (c) {
	case PARLEY__V1__ENVELOPE__BODY__NOT_SET: return "none";
	case PARLEY__V1__ENVELOPE__BODY_HELLO: return "hello";
	case PARLEY__V1__ENVELOPE__BODY_WELCOME: return "welcome";
	case PARLEY__V1__ENVELOPE__BODY_POLICY: return "policy";
	case PARLEY__V1__ENVELOPE__BODY_POLICY_ACK: return "policy_ack";
	case PARLEY__V1__ENVELOPE__BODY_MEASUREMENTS: return "measurements";
	case PARLEY__V1__ENVELOPE__BODY_AUDIT: return "audit";
	case PARLEY__V1__ENVELOPE__BODY_ACK: return "ack";
	case PARLEY__V1__ENVELOPE__BODY_COMMAND: return "command";
	case PARLEY__V1__ENVELOPE__BODY_STATUS: return "status";
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
	case PARLEY__V1__ENVELOPE__BODY_ERROR: return "error";
	case PARLEY__V1__ENVELOPE__BODY_JOIN_REQUEST: return "join_request";
	case PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE: return "join_response";
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER: return "update_offer";
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK: return "update_chunk";
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_PROGRESS:
		return "update_progress";
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK:
		return "update_rollback";
	case PARLEY__V1__ENVELOPE__BODY_SERVERS: return "servers";
	case PARLEY__V1__ENVELOPE__BODY_COMMAND_DONE: return "command_done";
	default: return "unknown";
	}
}

void wire_grant_from_model(Parley__V1__Grant *w, const struct grant *g)
{
	parley__v1__grant__init(w);
	w->channel = (char *)g->channel;
	w->endpoint_a = (char *)g->a;
	w->endpoint_b = (char *)g->b;
	switch (g->dir) {
	case GRANT_A_TO_B:
		w->direction = PARLEY__V1__DIRECTION__A_TO_B;
		break;
	case GRANT_B_TO_A:
		w->direction = PARLEY__V1__DIRECTION__B_TO_A;
		break;
	case GRANT_BOTH:
		w->direction = PARLEY__V1__DIRECTION__BOTH;
		break;
	}
	w->ring_bytes = g->ring_bytes;
	w->skip_integrity = !g->require_integrity;
}

int wire_grant_to_model(const Parley__V1__Grant *w, const char *where,
			struct grant *g, struct parley_err *err)
{
	memset(g, 0, sizeof(*g));
	int rc = chk_grant(w, where ? where : "grant", err);
	if (rc < 0)
		return rc;
	/* chk_grant bounded every name below GRANT_NAME_MAX bytes. */
	_Static_assert(WIRE_NAME_MAX <= GRANT_NAME_MAX, "names fit a grant");
	snprintf(g->channel, sizeof(g->channel), "%s", w->channel);
	snprintf(g->a, sizeof(g->a), "%s", w->endpoint_a);
	snprintf(g->b, sizeof(g->b), "%s", w->endpoint_b);
	switch (w->direction) {
	case PARLEY__V1__DIRECTION__B_TO_A:
		g->dir = GRANT_B_TO_A;
		break;
	case PARLEY__V1__DIRECTION__BOTH:
		g->dir = GRANT_BOTH;
		break;
	default:
		g->dir = GRANT_A_TO_B;
		break;
	}
	g->ring_bytes = w->ring_bytes;
	g->require_integrity = !w->skip_integrity;
	return 0;
}

void wire_svc_from_model(Parley__V1__ServiceRule *w, const struct svc_rule *r)
{
	parley__v1__service_rule__init(w);
	w->source = (char *)r->source;
	w->target = (char *)r->target;
	w->service = (char *)r->service;
	w->allow = r->allow;
}

int wire_svc_to_model(const Parley__V1__ServiceRule *w, const char *where,
		      struct svc_rule *r, struct parley_err *err)
{
	memset(r, 0, sizeof(*r));
	int rc = chk_svc(w, where ? where : "service", err);
	if (rc < 0)
		return rc;
	_Static_assert(WIRE_NAME_MAX <= GRANT_NAME_MAX, "names fit a rule");
	snprintf(r->source, sizeof(r->source), "%s", w->source);
	snprintf(r->target, sizeof(r->target), "%s", w->target);
	snprintf(r->service, sizeof(r->service), "%s", w->service);
	r->allow = w->allow;
	return 0;
}
