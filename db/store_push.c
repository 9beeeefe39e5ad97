/*
 * What the policy bundles of many hosts are built from, read for all of
 * them at once (store.h, "what many hosts' bundles are built from"), and
 * their acknowledgements written in one go. Host by host, a fleet-wide
 * push reads some 20 statements per host and an ack takes 4: on SQLite
 * each is a function call, on PostgreSQL each is a round trip to the
 * server, and two replicas pushing to 5,000 agents each spent seconds
 * waiting on them. Here every table is read with one statement per
 * STORE_IN_MAX (256) hosts, the names bound as one JSON array (below),
 * the rows of all the hosts coming back in (host, ...) order. The rows are the ones the
 * per-host reads give, read by the same row readers (db_grant_row & co.).
 */
#include "db/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The names go to the engine as one parameter, a JSON array, where a
 * template has '@': the backend's `name_list` (SQLite: IN (SELECT value
 * FROM json_each(?1)); PostgreSQL: = ANY (ARRAY(SELECT
 * jsonb_array_elements_text(...)))), STORE_IN_MAX names a statement.
 * Measured on PostgreSQL 15, 10,000 hosts (20,000 partitions, 10,000
 * grants), the grants statement: with the array, index lookups, 3.3 ms
 * for 256 hosts and 0.3 ms for one, planned once. A list of parameters
 * instead (`IN (?1, ..., ?k)`) is planned by the values: 128 names as
 * sequential scans with hash joins, each row compared with every name,
 * 15-38 ms; 16 names as index lookups (0.2-0.6 ms), but then a push slice
 * is ~100 round trips, and on a machine whose CPUs are taken by others
 * each round trip waits to be scheduled (one such run: 17 s for the
 * fleet's push); a list padded with unused places was planned as the
 * 128-name one even for one host (12-22 ms, an agent's hello). Names
 * are checked (A-Z a-z 0-9 _ . -): the JSON needs no escapes. */
enum { Q_VERSIONS, Q_GRANTS, Q_RULES, Q_SETS, Q_KEYS, Q_BASES,
       Q_BASE_DIGESTS, NQ };

/* Each statement's host column comes last, after the columns its area's
 * row reader reads. */
static const char *const templates[NQ] = {
[Q_VERSIONS] =
	"SELECT h.name, (SELECT COALESCE(MAX(p.version), 0) "
	"FROM policy_hosts p WHERE p.host = h.name) "
	"FROM hosts h WHERE h.name@",
/* As store_grants_for_host: two indexed joins, not an OR over both ends;
 * a grant with both ends on one host is one row for it (UNION). */
[Q_GRANTS] =
	"SELECT g.channel, g.endpoint_a, g.endpoint_b, g.direction, "
	"g.ring_bytes, g.require_integrity, pa.host FROM grants g "
	"JOIN partitions pa ON pa.name = g.endpoint_a "
	"WHERE pa.host@ "
	"UNION "
	"SELECT g.channel, g.endpoint_a, g.endpoint_b, g.direction, "
	"g.ring_bytes, g.require_integrity, pb.host FROM grants g "
	"JOIN partitions pb ON pb.name = g.endpoint_b "
	"WHERE pb.host@ ORDER BY 7, 1",
[Q_RULES] =
	"SELECT r.id, r.source, r.target, r.service, r.action, r.version, "
	"p.host FROM svc_rules r JOIN partitions p ON p.name = r.source "
	"WHERE p.host@ ORDER BY p.host, r.id",
[Q_SETS] =
	"SELECT name, host, version, set_json, host FROM segsets "
	"WHERE host@ ORDER BY host, name",
[Q_KEYS] =
	"SELECT k.partition, p.host, k.disk, k.key_version, k.wrapped,"
	" k.withheld, k.created_ms,"
	" (SELECT COUNT(*) FROM disk_keys o WHERE o.partition ="
	"  k.partition AND o.disk = k.disk), p.host "
	"FROM disk_keys k JOIN partitions p ON p.name = k.partition "
	"WHERE p.host@ AND k.key_version = (SELECT "
	"MAX(x.key_version) FROM disk_keys x WHERE x.partition = "
	"k.partition AND x.disk = k.disk) ORDER BY p.host, k.partition, "
	"k.disk",
[Q_BASES] =
	"SELECT digest, golden, time_ms, partition FROM baselines "
	"WHERE partition@",
[Q_BASE_DIGESTS] =
	"SELECT kind, name, sha256, partition FROM baseline_digests "
	"WHERE partition@ ORDER BY partition, kind, pos",
};

/* The statements in each engine's spelling, made once per process. */
static char *built[NQ][2];
static pthread_once_t built_once = PTHREAD_ONCE_INIT;

/* templates[q] with each '@' replaced by `list`. */
static char *build(const char *tpl, const char *list)
{
	size_t ats = 0;
	for (const char *p = tpl; *p; p++)
		ats += *p == '@';
	size_t cap = strlen(tpl) + ats * (strlen(list) + 1) + 1;
	char *q = malloc(cap), *o = q;
	if (!q)
		return NULL;
	for (const char *p = tpl; *p; p++) {
		if (*p != '@') {
			*o++ = *p;
			continue;
		}
		*o++ = ' ';
		o = stpcpy(o, list);
	}
	*o = 0;
	return q;
}

static void build_all(void)
{
	for (int q = 0; q < NQ; q++) {
		built[q][DB_SQLITE] = build(templates[q],
					    db_sqlite_ops.name_list);
		built[q][DB_PG] = build(templates[q], db_pg_ops.name_list);
	}
}

/* The statement of kind q with its one parameter: the JSON array of the
 * next names (up to STORE_IN_MAX of the n left; *k gets how many) in
 * *json (malloc'd; freed by the caller after the statement ran). */
static int prep_list(struct store *s, int q, const char *const *names,
		     unsigned n, unsigned *k, char **json,
		     struct db_stmt **st, struct parley_err *err)
{
	*k = n < STORE_IN_MAX ? n : STORE_IN_MAX;
	*json = NULL;
	pthread_once(&built_once, build_all);
	if (!built[q][s->kind])
		return perr(err, -ENOMEM, "store: out of memory");
	size_t len = 3;
	for (unsigned i = 0; i < *k; i++)
		len += strlen(names[i]) + 3;
	char *j = *json = malloc(len), *o = j;
	if (!j)
		return perr(err, -ENOMEM, "store: out of memory");
	*o++ = '[';
	for (unsigned i = 0; i < *k; i++)
		o += sprintf(o, "%s\"%s\"", i ? "," : "", names[i]);
	*o++ = ']';
	*o = 0;
	int rc = db_prep(s, built[q][s->kind], st, err);
	if (rc == 0)
		db_bind_text(*st, 1, j);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* names sorted, each once: a malloc'd array of pointers into the
 * caller's strings; *m its length. */
static int unique(const char *const *names, unsigned n, const char ***out,
		  unsigned *m, struct parley_err *err)
{
	const char **v = malloc((n ? n : 1) * sizeof(*v));
	*out = NULL;
	*m = 0;
	if (!v)
		return perr(err, -ENOMEM, "store: out of memory");
	memcpy(v, names, n * sizeof(*v));
	qsort(v, n, sizeof(*v), by_name);
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		if (!k || strcmp(v[k - 1], v[i]))
			v[k++] = v[i];
	*out = v;
	*m = k;
	return 0;
}

static int host_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct store_policy_host *)elem)->host);
}

static struct store_policy_host *find(const struct store_policy_read *r,
				      const char *host)
{
	return r->n ? bsearch(host, r->h, r->n, sizeof(*r->h), host_cmp)
		    : NULL;
}

const struct store_policy_host *
store_policy_read_find(const struct store_policy_read *r, const char *host)
{
	return host ? find(r, host) : NULL;
}

/* Rows of one kind for all the hosts: the array, and which host each
 * row is of (rows come in host order: each host's are contiguous). */
struct flat {
	char *v;
	unsigned *of;
	unsigned n, cap;
	size_t elem;
};

static int flat_rows(struct store *s, struct db_stmt *st, const char *what,
		     struct flat *f, db_row_fn row, int host_col,
		     const struct store_policy_read *r, struct parley_err *err)
{
	int rc;
	while ((rc = db_step(s, st, what, err)) == 1) {
		const struct store_policy_host *h =
			find(r, db_col_str(st, host_col));
		/* A row of a host not asked for cannot come back; if the
		 * engine's comparison differs from strcmp, say so. */
		if (!h) {
			rc = perr(err, -EBADMSG, "store %s: %s: a row of host "
				  "\"%.64s\", which was not asked for",
				  s->path, what, db_col_str(st, host_col));
			break;
		}
		if (f->n == f->cap) {
			unsigned cap = f->cap ? 2 * f->cap : 64;
			void *p = realloc(f->v, cap * f->elem);
			if (!p) {
				rc = perr(err, -ENOMEM, "store: out of memory");
				break;
			}
			f->v = p;
			p = realloc(f->of, cap * sizeof(*f->of));
			if (!p) {
				rc = perr(err, -ENOMEM, "store: out of memory");
				break;
			}
			f->of = p;
			f->cap = cap;
		}
		if ((rc = row(s, st, f->v + f->n * f->elem, err)) < 0)
			break;
		f->of[f->n++] = (unsigned)(h - r->h);
	}
	db_reset(st);
	return rc < 0 ? rc : 0;
}

static int grant_row(struct store *s, struct db_stmt *st, void *elem,
		     struct parley_err *err)
{
	return db_grant_row(s, st, elem, err);
}

/* Each host's rows in f: where they start and how many (f is in host
 * order: each host's rows are contiguous). */
static void spans(const struct flat *f, unsigned *from, unsigned *count)
{
	for (unsigned k = 0; k < f->n; k++) {
		if (!count[f->of[k]])
			from[f->of[k]] = k;
		count[f->of[k]]++;
	}
}

/* Run statement kind q over the names in lists, its rows into f. */
static int chunks(struct store *s, int q, const char *what,
		  const char *const *names, unsigned n, struct flat *f,
		  db_row_fn row, int host_col,
		  const struct store_policy_read *r, struct parley_err *err)
{
	int rc = 0;
	for (unsigned at = 0, k = 0; rc == 0 && at < n; at += k) {
		struct db_stmt *st;
		char *json;
		rc = prep_list(s, q, names + at, n - at, &k, &json, &st, err);
		if (rc == 0)
			rc = flat_rows(s, st, what, f, row, host_col, r, err);
		free(json);
	}
	return rc;
}

static int versions(struct store *s, const char *const *names, unsigned n,
		    struct store_policy_read *r, struct parley_err *err)
{
	int rc = 0;
	for (unsigned at = 0, k = 0; rc == 0 && at < n; at += k) {
		struct db_stmt *st;
		char *json;
		rc = prep_list(s, Q_VERSIONS, names + at, n - at, &k, &json,
			       &st, err);
		if (rc < 0) {
			free(json);
			break;
		}
		while ((rc = db_step(s, st, "host versions", err)) == 1) {
			struct store_policy_host *h =
				find(r, db_col_str(st, 0));
			if (h) {
				h->found = true;
				h->version = (uint64_t)db_col_i64(st, 1);
			}
		}
		db_reset(st);
		free(json);
	}
	return rc < 0 ? rc : 0;
}

static int read_all(struct store *s, const uint64_t *after_u,
		    struct store_policy_read *r, struct flat fl[4],
		    struct parley_err *err)
{
	const char **names = malloc((r->n ? r->n : 1) * sizeof(*names));
	if (!names)
		return perr(err, -ENOMEM, "store: out of memory");
	for (unsigned i = 0; i < r->n; i++)
		names[i] = r->h[i].host;
	int rc = versions(s, names, r->n, r, err);
	/* The lists only of the hosts whose bundle moved past what their
	 * agent holds (names stays in name order). */
	unsigned w = 0;
	for (unsigned i = 0; rc == 0 && i < r->n; i++)
		if (r->h[i].found && r->h[i].version > after_u[i]) {
			r->h[i].read = true;
			names[w++] = r->h[i].host;
		}
	if (rc == 0)
		rc = chunks(s, Q_GRANTS, "grants of hosts", names, w, &fl[0],
			    grant_row, 6, r, err);
	if (rc == 0)
		rc = chunks(s, Q_RULES, "service rules of hosts", names, w,
			    &fl[1], db_rule_row, 6, r, err);
	if (rc == 0)
		rc = chunks(s, Q_SETS, "segment sets of hosts", names, w,
			    &fl[2], db_set_row, 4, r, err);
	if (rc == 0)
		rc = chunks(s, Q_KEYS, "disk keys of hosts", names, w, &fl[3],
			    db_key_row, 8, r, err);
	free(names);
	return rc;
}

int store_policy_read(struct store *s, const char *const *hosts,
		      const uint64_t *after, unsigned n,
		      struct store_policy_read *out, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (n && !hosts)
		return perr(err, -EINVAL, "hosts: missing");
	for (unsigned i = 0; i < n; i++) {
		int rc = db_check_name("host name", hosts[i], err);
		if (rc < 0)
			return rc;
	}
	const char **u;
	unsigned m;
	int rc = unique(hosts, n, &u, &m, err);
	if (rc < 0)
		return rc;
	out->h = calloc(m ? m : 1, sizeof(*out->h));
	uint64_t *after_u = calloc(m ? m : 1, sizeof(*after_u));
	if (!out->h || !after_u) {
		free(u);
		free(after_u);
		return perr(err, -ENOMEM, "store: out of memory");
	}
	out->n = m;
	for (unsigned i = 0; i < m; i++) {
		snprintf(out->h[i].host, sizeof(out->h[i].host), "%s", u[i]);
		after_u[i] = UINT64_MAX;
	}
	free(u);
	for (unsigned i = 0; i < n; i++) {
		struct store_policy_host *h = find(out, hosts[i]);
		uint64_t a = after ? after[i] : 0;
		if (a < after_u[h - out->h])
			after_u[h - out->h] = a;
	}
	struct flat fl[4] = { { .elem = sizeof(struct grant) },
			      { .elem = sizeof(struct store_svc_rule) },
			      { .elem = sizeof(struct store_segset) },
			      { .elem = sizeof(struct store_disk_key) } };
	rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = db_rd_end(s, read_all(s, after_u, out, fl, err), err);
	free(after_u);
	out->grants = (struct grant *)fl[0].v;
	out->rules = (struct store_svc_rule *)fl[1].v;
	out->sets = (struct store_segset *)fl[2].v;
	out->nsets = fl[2].n;
	out->keys = (struct store_disk_key *)fl[3].v;
	unsigned *from = calloc(4 * (size_t)(m ? m : 1), sizeof(*from));
	unsigned *count = calloc(4 * (size_t)(m ? m : 1), sizeof(*count));
	if (rc == 0 && (!from || !count))
		rc = perr(err, -ENOMEM, "store: out of memory");
	for (int k = 0; rc == 0 && k < 4; k++)
		spans(&fl[k], from + k * m, count + k * m);
	for (unsigned i = 0; rc == 0 && i < m; i++) {
		struct store_policy_host *h = &out->h[i];
		h->grants = out->grants + from[i];
		h->ngrants = count[i];
		h->rules = out->rules + from[m + i];
		h->nrules = count[m + i];
		h->sets = out->sets + from[2 * m + i];
		h->nsets = count[2 * m + i];
		h->keys = out->keys + from[3 * m + i];
		h->nkeys = count[3 * m + i];
	}
	free(from);
	free(count);
	for (int k = 0; k < 4; k++)
		free(fl[k].of);
	if (rc < 0)
		store_policy_read_free(out);
	return rc;
}

void store_policy_read_free(struct store_policy_read *r)
{
	if (!r)
		return;
	free(r->h);
	free(r->grants);
	free(r->rules);
	store_segsets_free(r->sets, r->nsets);
	free(r->keys);
	memset(r, 0, sizeof(*r));
}

/* ---- baselines ---- */

static int base_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct store_baseline *)elem)->partition);
}

static int base_sort(const void *a, const void *b)
{
	return strcmp(((const struct store_baseline *)a)->partition,
		      ((const struct store_baseline *)b)->partition);
}

static int bases(struct store *s, const char *const *u, unsigned m,
		 struct store_baseline **out, unsigned *nb,
		 struct parley_err *err)
{
	unsigned cap = 0;
	int rc = 0;
	for (unsigned at = 0, k = 0; rc == 0 && at < m; at += k) {
		struct db_stmt *st;
		char *json;
		rc = prep_list(s, Q_BASES, u + at, m - at, &k, &json, &st, err);
		if (rc < 0) {
			free(json);
			break;
		}
		while ((rc = db_step(s, st, "baselines", err)) == 1) {
			if (*nb == cap) {
				cap = cap ? 2 * cap : 16;
				void *p = realloc(*out, cap * sizeof(**out));
				if (!p) {
					rc = perr(err, -ENOMEM,
						  "store: out of memory");
					break;
				}
				*out = p;
			}
			struct store_baseline *b = &(*out)[*nb];
			memset(b, 0, sizeof(*b));
			b->golden = db_col_int(st, 1) != 0;
			b->time_ms = db_col_i64(st, 2);
			rc = db_col_digest(s, st, 0, b->d.digest, err);
			if (rc == 0)
				rc = db_col_name(s, st, 3, b->partition,
						 sizeof(b->partition), err);
			if (rc < 0)
				break;
			(*nb)++;
		}
		db_reset(st);
		free(json);
	}
	if (rc < 0)
		return rc;
	if (*nb)
		qsort(*out, *nb, sizeof(**out), base_sort);
	/* Their file and segment digests, into the baseline each is of. */
	for (unsigned at = 0, k = 0; rc == 0 && *nb && at < m; at += k) {
		struct db_stmt *st;
		char *json;
		rc = prep_list(s, Q_BASE_DIGESTS, u + at, m - at, &k, &json,
			       &st, err);
		if (rc < 0) {
			free(json);
			break;
		}
		while ((rc = db_step(s, st, "baseline digests", err)) == 1) {
			struct store_baseline *b =
				bsearch(db_col_str(st, 3), *out, *nb,
					sizeof(**out), base_cmp);
			/* digests of a baseline not read: the rows are of
			 * one snapshot, so there are none */
			if (!b) {
				rc = perr(err, -EBADMSG, "store %s: digests of "
					  "partition \"%.64s\" without its "
					  "baseline", s->path,
					  db_col_str(st, 3));
				break;
			}
			if ((rc = db_digest_take(s, st, &b->d, err)) < 0)
				break;
		}
		db_reset(st);
		free(json);
	}
	return rc < 0 ? rc : 0;
}

int store_baselines_read(struct store *s, const char *const *names,
			 unsigned n, struct store_baseline **out,
			 struct parley_err *err)
{
	*out = NULL;
	if (n && !names)
		return perr(err, -EINVAL, "partitions: missing");
	for (unsigned i = 0; i < n; i++) {
		int rc = db_check_name("partition name", names[i], err);
		if (rc < 0)
			return rc;
	}
	const char **u;
	unsigned m, nb = 0;
	int rc = unique(names, n, &u, &m, err);
	if (rc < 0)
		return rc;
	rc = db_rd_begin(s, err);
	if (rc == 0)
		rc = db_rd_end(s, bases(s, u, m, out, &nb, err), err);
	free(u);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		return rc;
	}
	return (int)nb;
}
