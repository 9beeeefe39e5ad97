#include "daemon/policy/bundle.h"
#include "common/sign.h"
#include "common/wire.h"
#include "daemon/keys/keyd.h"
#include "daemon/policy/diskkeys.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct body_mem {
	Parley__V1__Grant *grants, **gp;
	Parley__V1__ServiceRule *rules, **rp;
	char *segsets_json;
	Parley__V1__Baseline *bases, **bp;
	Parley__V1__FileDigest *files, **fp;
	ProtobufCBinaryData *segs;
	struct store_baseline *sb;
	struct diskkeys_mem dk;
};

static void body_mem_free(struct body_mem *m)
{
	free(m->grants);
	free(m->gp);
	free(m->rules);
	free(m->rp);
	free(m->segsets_json);
	free(m->bases);
	free(m->bp);
	free(m->files);
	free(m->fp);
	free(m->segs);
	free(m->sb);
	diskkeys_mem_free(&m->dk);
}

static bool seen(char (*names)[STORE_NAME_MAX], unsigned n, const char *x)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(names[i], x))
			return true;
	return false;
}

/* The partitions the bundle names: grant ends, service rule ends, set
 * members, each once. */
struct names {
	unsigned n, cap;
	char (*v)[STORE_NAME_MAX];
};

static int names_add(struct names *l, const char *x)
{
	if (seen(l->v, l->n, x))
		return 0;
	if (l->n == l->cap) {
		unsigned cap = l->cap ? 2 * l->cap : 64;
		void *p = realloc(l->v, cap * sizeof(*l->v));
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	snprintf(l->v[l->n++], STORE_NAME_MAX, "%s", x);
	return 0;
}

static int named(const struct grant_set *g, struct names *l)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < g->n; i++)
		if ((rc = names_add(l, g->g[i].a)) == 0)
			rc = names_add(l, g->g[i].b);
	for (unsigned i = 0; rc == 0 && i < g->nsvc; i++)
		if ((rc = names_add(l, g->svc[i].source)) == 0)
			rc = names_add(l, g->svc[i].target);
	for (unsigned i = 0; rc == 0 && i < g->seg.n; i++)
		for (unsigned k = 0; rc == 0 && k < g->seg.s[i].nmembers; k++)
			rc = names_add(l, g->seg.s[i].member[k]);
	return rc;
}

/* The baselines of every partition the bundle names (those the store
 * has): a channel's, a call's and a set's ends are re-measured against
 * them. */
static const struct store_baseline *base_find(const struct policy_slice *sl,
					      const char *partition);

static int fill_baselines(const struct policy_slice *sl,
			  const struct grant_set *g, Parley__V1__PolicyBody *b,
			  struct body_mem *m, struct parley_err *err)
{
	struct names l = { 0 };
	int nrc = named(g, &l);
	/* A partition with disk keys: the agent checks it against this
	 * baseline before its key is used. */
	for (size_t i = 0; nrc == 0 && i < b->n_disk_keys; i++)
		nrc = names_add(&l, b->disk_keys[i]->partition);
	if (nrc < 0) {
		free(l.v);
		return perr(err, -ENOMEM, "out of memory");
	}
	unsigned max = l.n;
	m->sb = calloc(max ? max : 1, sizeof(*m->sb));
	m->bases = calloc(max ? max : 1, sizeof(*m->bases));
	m->bp = calloc(max ? max : 1, sizeof(*m->bp));
	m->files = calloc((max ? max : 1) * STORE_FILES_MAX, sizeof(*m->files));
	m->fp = calloc((max ? max : 1) * STORE_FILES_MAX, sizeof(*m->fp));
	m->segs = calloc((max ? max : 1) * STORE_SEGS_MAX, sizeof(*m->segs));
	if (!m->sb || !m->bases || !m->bp || !m->files || !m->fp ||
	    !m->segs) {
		free(l.v);
		return perr(err, -ENOMEM, "out of memory");
	}
	unsigned nb = 0;
	for (unsigned i = 0; i < l.n; i++) {
		struct store_baseline *sb = &m->sb[nb];
		const struct store_baseline *have = base_find(sl, l.v[i]);
		if (!have)
			continue;
		*sb = *have;
		Parley__V1__Baseline *w = &m->bases[nb];
		parley__v1__baseline__init(w);
		w->partition = sb->partition;
		wire_bytes(&w->digest, sb->d.digest, STORE_DIGEST);
		w->golden = sb->golden;
		w->files = &m->fp[nb * STORE_FILES_MAX];
		w->n_files = sb->d.nfile;
		for (unsigned f = 0; f < sb->d.nfile; f++) {
			Parley__V1__FileDigest *fd =
				&m->files[nb * STORE_FILES_MAX + f];
			parley__v1__file_digest__init(fd);
			fd->name = sb->d.file[f].name;
			wire_bytes(&fd->sha256, sb->d.file[f].sha256,
				   STORE_DIGEST);
			w->files[f] = fd;
		}
		w->segments = &m->segs[nb * STORE_SEGS_MAX];
		w->n_segments = sb->d.nseg;
		for (unsigned k = 0; k < sb->d.nseg; k++)
			wire_bytes(&w->segments[k], sb->d.seg[k],
				   STORE_DIGEST);
		m->bp[nb] = w;
		nb++;
	}
	free(l.v);
	b->baselines = m->bp;
	b->n_baselines = nb;
	return 0;
}

static int fill_grants(const struct grant_set *g, Parley__V1__PolicyBody *b,
		       struct body_mem *m, struct parley_err *err)
{
	m->grants = calloc(g->n ? g->n : 1, sizeof(*m->grants));
	m->gp = calloc(g->n ? g->n : 1, sizeof(*m->gp));
	if (!m->grants || !m->gp)
		return perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < g->n; i++) {
		wire_grant_from_model(&m->grants[i], &g->g[i]);
		m->gp[i] = &m->grants[i];
	}
	b->grants = m->gp;
	b->n_grants = g->n;
	return 0;
}

/* The host's service rules, into g->svc (for the baselines) and the
 * body. */
static int fill_services(const struct store_policy_host *h,
			 struct grant_set *g, Parley__V1__PolicyBody *b,
			 struct body_mem *m, struct parley_err *err)
{
	_Static_assert(SVC_RULES_MAX <= WIRE_SERVICES_MAX,
		       "a host's rules fit its bundle");
	const struct store_svc_rule *r = h->rules;
	unsigned n = h->nrules;
	g->svc = calloc(n ? n : 1, sizeof(*g->svc));
	m->rules = calloc(n ? n : 1, sizeof(*m->rules));
	m->rp = calloc(n ? n : 1, sizeof(*m->rp));
	if (!g->svc || !m->rules || !m->rp)
		return perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		g->svc[i] = r[i].r;
		wire_svc_from_model(&m->rules[i], &g->svc[i]);
		m->rp[i] = &m->rules[i];
	}
	g->nsvc = n;
	b->services = m->rp;
	b->n_services = n;
	return 0;
}

/* The host's segment sets: the stored entries joined into one "segsets"
 * array (each was checked by common/segset.c when it was stored; the
 * agent checks the whole again), and parsed back into g->seg for the
 * baselines. */
static int segsets_parse(const char *host, const struct store_segset *l,
			 unsigned n, char **json, struct segset_doc *doc,
			 struct parley_err *err)
{
	_Static_assert(STORE_SEGSETS_HOST_JSON_MAX + 2 * SEGSETS_MAX <=
			       WIRE_SEGSETS_JSON_MAX,
		       "a host's sets fit its bundle");
	*json = NULL;
	if (!n)
		return 0;
	size_t len = 3;
	for (unsigned i = 0; i < n; i++)
		len += strlen(l[i].json) + 1;
	char *t = *json = malloc(len);
	int rc = t ? 0 : perr(err, -ENOMEM, "out of memory");
	if (rc == 0) {
		size_t at = 0;
		t[at++] = '[';
		for (unsigned i = 0; i < n; i++) {
			size_t k = strlen(l[i].json);
			if (i)
				t[at++] = ',';
			memcpy(t + at, l[i].json, k);
			at += k;
		}
		t[at++] = ']';
		t[at] = '\0';
		json_t *arr = json_loads(t, JSON_REJECT_DUPLICATES, NULL);
		rc = arr ? segset_doc_from_json(arr, NULL, doc, err)
			 : perr(err, -EBADMSG, "stored segment sets of host "
				"\"%s\" are not JSON", host);
		json_decref(arr);
		if (rc < 0)
			perr_prefix(err, "segment sets of host \"%s\"", host);
	}
	return rc;
}

static int fill_segsets(const struct store_policy_host *h,
			struct grant_set *g, Parley__V1__PolicyBody *b,
			struct body_mem *m, struct parley_err *err)
{
	int rc = segsets_parse(h->host, h->sets, h->nsets, &m->segsets_json,
			       &g->seg, err);
	if (rc == 0 && m->segsets_json)
		b->segsets_json = m->segsets_json;
	return rc;
}

int policy_body_build(struct store *s, const char *host, uint64_t after,
		      uint64_t *version, uint8_t **body, size_t *len,
		      struct parley_err *err)
{
	return policy_body_build_keys(s, NULL, NULL, host, after, version,
				      body, len, err);
}

/* ---- a slice of hosts' inputs, read at once ---- */

static const struct store_baseline *base_find(const struct policy_slice *sl,
					      const char *partition)
{
	unsigned lo = 0, hi = sl->nbase;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(partition, sl->base[mid].partition);
		if (!c)
			return &sl->base[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Every partition any host's bundle may name (a superset: the bundle
 * names only the disk keys it seals), into l. A host whose sets do not
 * parse adds none of theirs: its bundle fails at the same parse. */
static int slice_names(const struct store_policy_read *rd, struct names *l)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < rd->n; i++) {
		const struct store_policy_host *h = &rd->h[i];
		struct grant_set g = { 0 };
		char *json = NULL;
		if (!h->read)
			continue;
		g.g = (struct grant *)h->grants;
		g.n = h->ngrants;
		if (segsets_parse(h->host, h->sets, h->nsets, &json, &g.seg,
				  NULL) < 0)
			segset_doc_free(&g.seg);
		free(json);
		rc = named(&g, l);
		for (unsigned k = 0; rc == 0 && k < h->nrules; k++)
			if ((rc = names_add(l, h->rules[k].r.source)) == 0)
				rc = names_add(l, h->rules[k].r.target);
		for (unsigned k = 0; rc == 0 && k < h->nkeys; k++)
			rc = names_add(l, h->keys[k].partition);
		segset_doc_free(&g.seg);
	}
	return rc;
}

int policy_slice_load(struct store *s, const char *const *hosts,
		      const uint64_t *after, unsigned n,
		      struct policy_slice *out, struct parley_err *err)
{
	struct names l = { 0 };
	memset(out, 0, sizeof(*out));
	int rc = store_policy_read(s, hosts, after, n, &out->rd, err);
	if (rc == 0 && slice_names(&out->rd, &l) < 0)
		rc = perr(err, -ENOMEM, "out of memory");
	const char **v = NULL;
	if (rc == 0 && l.n && !(v = malloc(l.n * sizeof(*v))))
		rc = perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; rc == 0 && i < l.n; i++)
		v[i] = l.v[i];
	if (rc == 0 && l.n) {
		int nb = store_baselines_read(s, v, l.n, &out->base, err);
		if (nb < 0)
			rc = nb;
		else
			out->nbase = (unsigned)nb;
	}
	free(v);
	free(l.v);
	if (rc < 0)
		policy_slice_free(out);
	return rc;
}

void policy_slice_free(struct policy_slice *sl)
{
	store_policy_read_free(&sl->rd);
	free(sl->base);
	sl->base = NULL;
	sl->nbase = 0;
}

bool policy_slice_has_disk_keys(const struct policy_slice *sl,
				const char *host)
{
	const struct store_policy_host *h =
		store_policy_read_find(&sl->rd, host);
	return h && h->nkeys;
}

int policy_slice_body(const struct policy_slice *sl, struct store *s,
		      struct keyd *keys, X509 *host_cert, const char *host,
		      uint64_t after, uint64_t *version, uint8_t **body,
		      size_t *len, struct parley_err *err)
{
	struct grant_set g = { 0 };
	struct body_mem m = { 0 };
	Parley__V1__PolicyBody b;
	parley__v1__policy_body__init(&b);
	*body = NULL;
	*len = 0;
	*version = 0;
	const struct store_policy_host *h =
		store_policy_read_find(&sl->rd, host);
	if (!h || !h->found)
		return perr(err, -ENOENT, "host \"%s\": no such host", host);
	*version = h->version;
	/* Nothing newer than what the agent holds: nothing to build (a
	 * fleet-wide push asks every link; most may be up to date). */
	if (*version <= after)
		return 0;
	if (!h->read)
		return perr(err, -ESTALE, "host \"%s\": read for a version "
			    "above %llu", host, (unsigned long long)after);
	int rc = 0;
	if (h->ngrants && !(g.g = malloc(h->ngrants * sizeof(*g.g))))
		rc = perr(err, -ENOMEM, "out of memory");
	if (rc == 0 && h->ngrants) {
		memcpy(g.g, h->grants, h->ngrants * sizeof(*g.g));
		g.n = h->ngrants;
	}
	if (rc == 0)
		rc = fill_grants(&g, &b, &m, err);
	if (rc == 0)
		rc = fill_services(h, &g, &b, &m, err);
	if (rc == 0)
		rc = fill_segsets(h, &g, &b, &m, err);
	if (rc == 0)
		rc = diskkeys_fill(s, keys, host, host_cert, h->keys, h->nkeys,
				   &b, &m.dk, err);
	if (rc == 0)
		rc = fill_baselines(sl, &g, &b, &m, err);
	b.host = (char *)host;
	b.version = *version;
	/* Refuse our own bad output rather than have the agent refuse it. */
	if (rc == 0)
		rc = wire_check_policy_body(&b, "bundle", err);
	if (rc == 0) {
		b.issued_unix_ms = now_ms();
		*len = parley__v1__policy_body__get_packed_size(&b);
		if (!(*body = malloc(*len ? *len : 1)))
			rc = perr(err, -ENOMEM, "out of memory");
		else
			parley__v1__policy_body__pack(&b, *body);
	}
	body_mem_free(&m);
	grant_set_free(&g);
	return rc;
}

/* One host: a slice of one. */
int policy_body_build_keys(struct store *s, struct keyd *keys,
			   X509 *host_cert, const char *host,
			   uint64_t after, uint64_t *version, uint8_t **body,
			   size_t *len, struct parley_err *err)
{
	struct policy_slice sl;
	*body = NULL;
	*len = 0;
	*version = 0;
	int rc = policy_slice_load(s, &host, &after, 1, &sl, err);
	if (rc == 0)
		rc = policy_slice_body(&sl, s, keys, host_cert, host, after,
				       version, body, len, err);
	policy_slice_free(&sl);
	return rc;
}

int policy_bundle_wrap(uint8_t *body, size_t len, const uint8_t sig[64],
		       const char *key_id, Parley__V1__PolicyBundle *out,
		       struct parley_err *err)
{
	uint8_t *s = malloc(SIGN_LEN);
	char *id = strdup(key_id);
	parley__v1__policy_bundle__init(out);
	if (!s || !id) {
		free(body);
		free(s);
		free(id);
		return perr(err, -ENOMEM, "out of memory");
	}
	memcpy(s, sig, SIGN_LEN);
	wire_bytes(&out->body, body, len);
	wire_bytes(&out->signature, s, SIGN_LEN);
	out->key_id = id;
	return 0;
}

int policy_bundle_build(struct store *s, struct keyd *keys,
			const char *key_id, const char *host, uint64_t after,
			Parley__V1__PolicyBundle *out, uint64_t *version,
			struct parley_err *err)
{
	return policy_bundle_build_keys(s, keys, NULL, key_id, host, after,
					out, version, err);
}

int policy_bundle_build_keys(struct store *s, struct keyd *keys,
			     X509 *host_cert, const char *key_id,
			     const char *host, uint64_t after,
			     Parley__V1__PolicyBundle *out, uint64_t *version,
			     struct parley_err *err)
{
	uint8_t *body, sig[SIGN_LEN];
	size_t len;
	parley__v1__policy_bundle__init(out);
	int rc = policy_body_build_keys(s, keys, host_cert, host, after,
					version, &body, &len, err);
	if (rc < 0 || !body)
		return rc;
	rc = keyd_sign_bundle(keys, host, *version, body, len, sig, err);
	if (rc < 0) {
		free(body);
		return rc;
	}
	return policy_bundle_wrap(body, len, sig, key_id, out, err);
}

void policy_bundle_free(Parley__V1__PolicyBundle *b)
{
	free(b->body.data);
	free(b->signature.data);
	/* an initialized bundle that got nothing points at protobuf-c's
	 * static empty string */
	if (b->key_id != protobuf_c_empty_string)
		free(b->key_id);
	b->body.data = b->signature.data = NULL;
	b->key_id = NULL;
}
