/*
 * Argument checks. The store is the last stop before bytes become
 * permanent, and much of what reaches it came from an agent or an API
 * client: every name, digest, text and count is checked here, with a
 * message that names the argument and quotes the bad value safely.
 * Text must be UTF-8 without NUL bytes because PostgreSQL's TEXT will
 * accept nothing else.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <parley/abi.h>
#include "common/jsonv.h"

/* The store must hold whatever an agent may report and a policy may say. */
_Static_assert(STORE_NAME_MAX == GRANT_NAME_MAX, "names as in policies");
_Static_assert(STORE_FILE_NAME_MAX == PARLEY_CONFIG_NAME_MAX &&
	       STORE_FILE_NAME_MAX <= STORE_NAME_MAX,
	       "file names as the ABI has them, and they fit store_names");
_Static_assert(STORE_FILES_MAX >= PARLEY_CONFIG_FILES_MAX,
	       "every key configuration file of a partition");

int db_check_name(const char *what, const char *v, struct parley_err *err)
{
	if (!v || !v[0])
		return perr(err, -EINVAL, "%s: missing", what);
	size_t len = strlen(v);
	if (len >= STORE_NAME_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, at most %d", what,
			    len, STORE_NAME_MAX - 1);
	if (!jv_name_valid(v, len, STORE_NAME_MAX)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a valid name (A-Z "
			    "a-z 0-9 _ . -, not starting with . or -)", what,
			    jv_quote(&q, v, len));
	}
	return 0;
}

int db_check_opt_name(const char *what, const char *v,
		      struct parley_err *err)
{
	return v && v[0] ? db_check_name(what, v, err) : 0;
}

int db_check_name_array(const char *what, const char *v, size_t cap,
			struct parley_err *err)
{
	if (!memchr(v, '\0', cap))
		return perr(err, -EINVAL, "%s: not NUL-terminated within %zu "
			    "bytes", what, cap);
	return db_check_name(what, v, err);
}

int db_check_file_name(const char *what, const char *v,
		       struct parley_err *err)
{
	if (!v || !v[0])
		return perr(err, -EINVAL, "%s: missing", what);
	size_t len = strlen(v);
	struct jv_quoted q;
	if (len >= STORE_FILE_NAME_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, at most %d", what,
			    len, STORE_FILE_NAME_MAX - 1);
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7e || v[i] == '/')
			return perr(err, -EINVAL, "%s: %s is not a file name "
				    "(printable ASCII, no '/')", what,
				    jv_quote(&q, v, len));
	return 0;
}

int db_check_opt_file_name(const char *what, const char *v,
			   struct parley_err *err)
{
	return v && v[0] ? db_check_file_name(what, v, err) : 0;
}

int db_check_digest(const char *what, struct store_blob b,
		    struct parley_err *err)
{
	if (!b.p)
		return perr(err, -EINVAL, "%s: missing", what);
	if (b.len != STORE_DIGEST)
		return perr(err, -EINVAL, "%s: %zu bytes, a SHA-256 has %d",
			    what, b.len, STORE_DIGEST);
	return 0;
}

/* Length of the UTF-8 sequence at p (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	if (p[0] < 0x80)
		return 1;
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	if (p[0] < 0xc2 || p[0] > 0xf4 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

int db_check_text(const char *what, const char *v, size_t len, size_t cap,
		  struct parley_err *err)
{
	if (len >= cap)
		return perr(err, -E2BIG, "%s: %zu bytes, at most %zu", what,
			    len, cap - 1);
	const char *nul = memchr(v, '\0', len);
	if (nul)
		return perr(err, -EINVAL, "%s: NUL byte at offset %zu", what,
			    (size_t)(nul - v));
	const unsigned char *p = (const unsigned char *)v;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(p + i, len - i);
		if (!n)
			return perr(err, -EINVAL, "%s: not UTF-8 at offset %zu",
				    what, i);
		i += n;
	}
	return 0;
}

int db_check_uri(const char *v, struct parley_err *err)
{
	size_t len = v ? strlen(v) : 0;
	struct jv_quoted q;
	if (len >= STORE_URI_MAX)
		return perr(err, -EINVAL, "libvirt URI: %zu bytes, at most %d",
			    len, STORE_URI_MAX - 1);
	for (size_t i = 0; i < len; i++)
		if (v[i] <= 0x20 || v[i] > 0x7e)
			return perr(err, -EINVAL, "libvirt URI: %s has a byte "
				    "that is not printable ASCII at offset %zu",
				    jv_quote(&q, v, len), i);
	return 0;
}

static int check_files(const char *what, const struct store_digests_in *d,
		       struct parley_err *err)
{
	char lbl[160];
	if (d->nfile > STORE_FILES_MAX)
		return perr(err, -E2BIG, "%s: %u files, at most %d", what,
			    d->nfile, STORE_FILES_MAX);
	if (d->nfile && !d->file)
		return perr(err, -EINVAL, "%s: files missing", what);
	for (unsigned i = 0; i < d->nfile; i++) {
		snprintf(lbl, sizeof(lbl), "%s: files[%u]", what, i);
		int rc = db_check_file_name(lbl, d->file[i].name, err);
		if (rc == 0)
			rc = db_check_digest(lbl, d->file[i].sha256, err);
		if (rc < 0)
			return rc;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(d->file[i].name, d->file[j].name) == 0)
				return perr(err, -EEXIST, "%s: file \"%s\" "
					    "twice", lbl, d->file[i].name);
	}
	return 0;
}

int db_check_digests(const char *what, const struct store_digests_in *d,
		     struct parley_err *err)
{
	char lbl[160];
	if (!d)
		return perr(err, -EINVAL, "%s: missing", what);
	snprintf(lbl, sizeof(lbl), "%s: digest", what);
	int rc = db_check_digest(lbl, d->digest, err);
	if (rc == 0)
		rc = check_files(what, d, err);
	if (rc < 0)
		return rc;
	if (d->nseg > STORE_SEGS_MAX)
		return perr(err, -E2BIG, "%s: %u segments, at most %d", what,
			    d->nseg, STORE_SEGS_MAX);
	if (d->nseg && !d->seg)
		return perr(err, -EINVAL, "%s: segments missing", what);
	for (unsigned i = 0; i < d->nseg && rc == 0; i++) {
		snprintf(lbl, sizeof(lbl), "%s: segments[%u]", what, i);
		rc = db_check_digest(lbl, d->seg[i], err);
	}
	return rc;
}

/* As common/grant.c checks a policy file: the store must never hold a
 * grant an agent would refuse. */
int db_check_grant(const struct grant *g, struct parley_err *err)
{
	if (!g)
		return perr(err, -EINVAL, "grant: missing");
	int rc = db_check_name_array("grant channel", g->channel,
				     sizeof(g->channel), err);
	if (rc < 0)
		return rc;
	char lbl[STORE_NAME_MAX + 32];
	snprintf(lbl, sizeof(lbl), "grant \"%s\": endpoint_a", g->channel);
	rc = db_check_name_array(lbl, g->a, sizeof(g->a), err);
	snprintf(lbl, sizeof(lbl), "grant \"%s\": endpoint_b", g->channel);
	if (rc == 0)
		rc = db_check_name_array(lbl, g->b, sizeof(g->b), err);
	if (rc < 0)
		return rc;
	if (strcmp(g->a, g->b) == 0)
		return perr(err, -EINVAL, "grant \"%s\": endpoint_a and "
			    "endpoint_b are both \"%s\"", g->channel, g->a);
	if ((unsigned)g->dir > GRANT_BOTH)
		return perr(err, -EINVAL, "grant \"%s\": direction %d",
			    g->channel, (int)g->dir);
	uint64_t n = g->ring_bytes;
	if ((n & (n - 1)) || n < 0x1000 || n > 0x1000000)
		return perr(err, -EINVAL, "grant \"%s\": ring_bytes %llu is "
			    "not a power of two in 4K..16M", g->channel,
			    (unsigned long long)n);
	return 0;
}

int db_check_limit(unsigned limit, struct parley_err *err)
{
	if (limit < 1 || limit > STORE_LIST_MAX)
		return perr(err, -EINVAL, "limit %u: must be 1..%d", limit,
			    STORE_LIST_MAX);
	return 0;
}

int db_names_push(struct store_names *l, const char *name)
{
	/* Room for 8, then doubled whenever n reaches a power of two. */
	if (l->n == 0 || (l->n >= 8 && !(l->n & (l->n - 1)))) {
		unsigned cap = l->n ? l->n * 2 : 8;
		void *p = realloc(l->name, cap * sizeof(*l->name));
		if (!p)
			return -ENOMEM;
		l->name = p;
	}
	snprintf(l->name[l->n++], STORE_NAME_MAX, "%s", name);
	return 0;
}

void store_names_free(struct store_names *l)
{
	if (!l)
		return;
	free(l->name);
	l->name = NULL;
	l->n = 0;
}

int db_prefix(struct parley_err *err, int rc, const char *fmt, ...)
{
	if (!err)
		return rc;
	char head[PARLEY_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	perr_prefix(err, "%s", head);
	return rc;
}
