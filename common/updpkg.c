/* The one parser and checker of agent update packages (updpkg.h). Every
 * length is checked against what is really there before it is used, and
 * nothing a manifest says is believed before its signature verified. */
#include "common/updpkg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <parley/abi.h>

#include "common/jsonv.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/version.h"

static const char *const refusal_names[UPDPKG_REFUSAL_MAX_] = {
	[UPDPKG_OK] = "ok",
	[UPDPKG_MALFORMED] = "malformed",
	[UPDPKG_TRUNCATED] = "truncated",
	[UPDPKG_UNSIGNED] = "unsigned",
	[UPDPKG_BAD_SIGNATURE] = "bad-signature",
	[UPDPKG_HASH_MISMATCH] = "hash-mismatch",
	[UPDPKG_NOT_NEWER] = "not-newer",
	[UPDPKG_TOO_OLD] = "too-old-to-replace",
	[UPDPKG_ABI] = "abi",
	[UPDPKG_PRODUCT] = "product",
};

const char *updpkg_refusal_name(enum updpkg_refusal r)
{
	return (unsigned)r < UPDPKG_REFUSAL_MAX_ ? refusal_names[r] : "?";
}

/* A refusal: the reason's name leads the message so that a partition's
 * 64-byte detail field still says which one it was. */
static int refuse(enum updpkg_refusal r, enum updpkg_refusal *why,
		  struct parley_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int refuse(enum updpkg_refusal r, enum updpkg_refusal *why,
		  struct parley_err *err, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (why)
		*why = r;
	return perr(err, -EBADMSG, "%s: %s", updpkg_refusal_name(r), msg);
}

int updpkg_version_parse(const char *s, bool prefix, struct updpkg_version *v)
{
	return parley_version_parse(s, prefix, v->v);
}

int updpkg_version_cmp(const struct updpkg_version *a,
		       const struct updpkg_version *b)
{
	return parley_version_cmp(a->v, b->v);
}

void updpkg_running_self(struct updpkg_running *r)
{
	*r = (struct updpkg_running){ .abi_major = PARLEY_ABI_MAJOR,
				      .abi_minor = PARLEY_ABI_MINOR };
	/* CMake's project version is always X.Y.Z; anything else would be a
	 * broken build, and 0.0.0 then refuses nothing newer. */
	if (updpkg_version_parse(parley_version(), true, &r->version) < 0)
		r->version = (struct updpkg_version){ { 0, 0, 0 } };
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int updpkg_parse_header(const uint8_t *buf, size_t len, struct updpkg *out,
			enum updpkg_refusal *why, struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len < UPDPKG_HDR)
		return refuse(len >= 8 && memcmp(buf, UPDPKG_MAGIC, 8)
				      ? UPDPKG_MALFORMED : UPDPKG_TRUNCATED,
			      why, err, "%zu bytes, less than the %u-byte "
			      "header", len, UPDPKG_HDR);
	if (memcmp(buf, UPDPKG_MAGIC, 8))
		return refuse(UPDPKG_MALFORMED, why, err,
			      "not a parley update package (magic)");
	uint32_t fmt = le32(buf + 8), mlen = le32(buf + 12);
	if (fmt != UPDPKG_FORMAT)
		return refuse(UPDPKG_MALFORMED, why, err,
			      "format %u, this agent reads %u", fmt,
			      UPDPKG_FORMAT);
	if (mlen == 0 || mlen > UPDPKG_MANIFEST_MAX)
		return refuse(UPDPKG_MALFORMED, why, err,
			      "manifest length %u not in 1..%u", mlen,
			      UPDPKG_MANIFEST_MAX);
	if (len > UPDPKG_MAX)
		return refuse(UPDPKG_MALFORMED, why, err,
			      "%zu bytes, more than %llu", len,
			      (unsigned long long)UPDPKG_MAX);
	if (len - UPDPKG_HDR < mlen)
		return refuse(UPDPKG_TRUNCATED, why, err,
			      "%zu bytes, the manifest alone needs %u",
			      len, UPDPKG_HDR + mlen);
	out->manifest_len = mlen;
	uint8_t any = 0;
	for (unsigned i = 0; i < SIGN_LEN; i++)
		any |= buf[UPDPKG_SIG_OFF + i];
	out->is_signed = any != 0;
	return 0;
}

/* ---- manifest ----------------------------------------------------------- */

/* err's message again with a prefix (perr must not read what it writes). */
static int prefixed(struct parley_err *err, int rc, const char *prefix)
{
	char msg[sizeof(err->msg)];
	snprintf(msg, sizeof(msg), "%s", perr_msg(err));
	return perr(err, rc, "%s%s", prefix, msg);
}

static int get_str(json_t *o, const char *key, char *dst, size_t cap,
		   struct parley_err *err)
{
	const char *s;
	size_t n;
	int rc = jv_get_string(json_object_get(o, key), key, &s, &n, err);
	if (rc < 0)
		return rc;
	if (n == 0 || n >= cap)
		return perr(err, -EINVAL, "%s: 1..%zu bytes", key, cap - 1);
	memcpy(dst, s, n + 1);
	return 0;
}

static int get_version(json_t *o, const char *key, struct updpkg_version *v,
		       char *copy, struct parley_err *err)
{
	char s[UPDPKG_VERSION_MAX];
	int rc = get_str(o, key, s, sizeof(s), err);
	if (rc < 0)
		return rc;
	if (updpkg_version_parse(s, false, v) < 0) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: \"%s\" is not X.Y.Z", key,
			    jv_quote(&q, s, strlen(s)));
	}
	if (copy)
		memcpy(copy, s, strlen(s) + 1);
	return 0;
}

static int get_abi(json_t *o, const char *key, unsigned v[2],
		   struct parley_err *err)
{
	char s[16];
	int rc = get_str(o, key, s, sizeof(s), err);
	if (rc == 0 && parley_dotted_parse(s, 2, false, v) < 0) {
		struct jv_quoted q;
		rc = perr(err, -EINVAL, "%s: \"%s\" is not MAJOR.MINOR", key,
			  jv_quote(&q, s, strlen(s)));
	}
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int get_file(json_t *e, unsigned i, struct updpkg *p, uint64_t *off,
		    struct parley_err *err)
{
	static const char *const known[] = { "name", "size", "sha256", NULL };
	char where[32];
	snprintf(where, sizeof(where), "files[%u]: ", i);
	if (!json_is_object(e))
		return jv_type_error(e, where, "an object", err);
	int rc = jv_check_known(e, known, where, err);
	if (rc < 0)
		return rc;
	struct updpkg_file *f = &p->file[i];
	rc = get_str(e, "name", f->name, sizeof(f->name), err);
	if (rc < 0)
		return prefixed(err, rc, where);
	if (!jv_name_valid(f->name, strlen(f->name), sizeof(f->name)))
		return perr(err, -EINVAL, "%sname: not a plain file name",
			    where);
	for (unsigned k = 0; k < i; k++)
		if (!strcmp(p->file[k].name, f->name))
			return perr(err, -EINVAL, "%sname \"%s\" twice", where,
				    f->name);
	json_t *sz = json_object_get(e, "size");
	if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
	    (uint64_t)json_integer_value(sz) > UPDPKG_MAX)
		return perr(err, -EINVAL, "%ssize: an integer 0..%llu", where,
			    (unsigned long long)UPDPKG_MAX);
	f->size = (uint64_t)json_integer_value(sz);
	const char *h;
	size_t hn;
	rc = jv_get_string(json_object_get(e, "sha256"), "sha256", &h, &hn,
			   err);
	if (rc < 0)
		return prefixed(err, rc, where);
	if (hn != 64)
		return perr(err, -EINVAL, "%ssha256: 64 lower-case hex digits",
			    where);
	for (unsigned k = 0; k < 32; k++) {
		int hi = hexval(h[2 * k]), lo = hexval(h[2 * k + 1]);
		if (hi < 0 || lo < 0)
			return perr(err, -EINVAL, "%ssha256: 64 lower-case "
				    "hex digits", where);
		f->sha256[k] = (uint8_t)(hi << 4 | lo);
	}
	/* Both bounded by UPDPKG_MAX, so no sum of 16 overflows. */
	f->off = *off;
	*off += f->size;
	return 0;
}

int updpkg_parse_manifest(const uint8_t *m, size_t mlen, struct updpkg *out,
			  struct parley_err *err)
{
	static const char *const known[] = { "product", "version",
		"replaces_min", "abi_min", "abi_max", "files", NULL };
	if (mlen == 0 || mlen > UPDPKG_MANIFEST_MAX)
		return perr(err, -EINVAL, "manifest: 1..%u bytes",
			    UPDPKG_MANIFEST_MAX);
	json_error_t je;
	json_t *o = json_loadb((const char *)m, mlen,
			       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!o)
		return jv_syntax_error(&je, err);
	int rc = 0;
	json_t *files = json_object_get(o, "files");
	if (!json_is_object(o))
		rc = jv_type_error(o, "manifest", "an object", err);
	if (rc == 0)
		rc = jv_check_known(o, known, "", err);
	if (rc == 0)
		rc = get_str(o, "product", out->product, sizeof(out->product),
			     err);
	if (rc == 0)
		rc = get_version(o, "version", &out->version, out->version_s,
				 err);
	if (rc == 0)
		rc = get_version(o, "replaces_min", &out->replaces_min, NULL,
				 err);
	if (rc == 0)
		rc = get_abi(o, "abi_min", out->abi_min, err);
	if (rc == 0)
		rc = get_abi(o, "abi_max", out->abi_max, err);
	if (rc == 0 && (out->abi_min[0] > out->abi_max[0] ||
			(out->abi_min[0] == out->abi_max[0] &&
			 out->abi_min[1] > out->abi_max[1])))
		rc = perr(err, -EINVAL, "abi_min is above abi_max");
	if (rc == 0 && (!json_is_array(files) || json_array_size(files) < 1 ||
			json_array_size(files) > UPDPKG_FILES_MAX))
		rc = perr(err, -EINVAL, "files: an array of 1..%d entries",
			  UPDPKG_FILES_MAX);
	uint64_t off = UPDPKG_HDR + (uint64_t)mlen;
	for (unsigned i = 0; rc == 0 && i < json_array_size(files); i++) {
		rc = get_file(json_array_get(files, i), i, out, &off, err);
		out->nfile = i + 1;
	}
	if (rc == 0 && (!updpkg_find(out, "parley-agent") ||
			!updpkg_find(out, "parley-vmm")))
		rc = perr(err, -EINVAL, "files: parley-agent and parley-vmm "
			  "are required");
	json_decref(o);
	if (rc < 0)
		out->nfile = 0;
	return rc < 0 ? prefixed(err, rc, "manifest: ") : 0;
}

const struct updpkg_file *updpkg_find(const struct updpkg *p,
				      const char *name)
{
	for (unsigned i = 0; i < p->nfile; i++)
		if (!strcmp(p->file[i].name, name))
			return &p->file[i];
	return NULL;
}

/* ---- the checks in order ----------------------------------------------- */

static int check_sig(const uint8_t *buf, const struct updpkg *p,
		     EVP_PKEY *pub, enum updpkg_refusal *why,
		     struct parley_err *err)
{
	if (!p->is_signed)
		return refuse(UPDPKG_UNSIGNED, why, err, "the package carries "
			      "no signature");
	size_t n = UPDPKG_SIGNED_HDR + p->manifest_len;
	uint8_t *msg = malloc(n);
	if (!msg)
		return perr(err, -ENOMEM, "out of memory");
	memcpy(msg, buf, UPDPKG_SIGNED_HDR);
	memcpy(msg + UPDPKG_SIGNED_HDR, buf + UPDPKG_HDR, p->manifest_len);
	int rc = sign_verify(pub, msg, n, buf + UPDPKG_SIG_OFF, SIGN_LEN);
	free(msg);
	if (rc == -EBADMSG) {
		char id[65] = "?";
		sign_key_id(pub, id);
		return refuse(UPDPKG_BAD_SIGNATURE, why, err, "not signed by "
			      "the release key %.16s", id);
	}
	if (rc < 0)
		return perr(err, rc, "release key is not an Ed25519 key");
	return 0;
}

static int check_files(const uint8_t *buf, size_t len, const struct updpkg *p,
		       enum updpkg_refusal *why, struct parley_err *err)
{
	const struct updpkg_file *last = &p->file[p->nfile - 1];
	uint64_t end = last->off + last->size;
	if (len < end)
		return refuse(UPDPKG_TRUNCATED, why, err, "%zu bytes, the "
			      "manifest's files end at %llu", len,
			      (unsigned long long)end);
	if (len > end)
		return refuse(UPDPKG_MALFORMED, why, err, "%llu bytes after "
			      "the last file", (unsigned long long)(len - end));
	for (unsigned i = 0; i < p->nfile; i++) {
		uint8_t md[32];
		SHA256(buf + p->file[i].off, p->file[i].size, md);
		if (memcmp(md, p->file[i].sha256, 32))
			return refuse(UPDPKG_HASH_MISMATCH, why, err,
				      "%s differs from the manifest's SHA-256",
				      p->file[i].name);
	}
	return 0;
}

static int check_fit(const struct updpkg *p, const struct updpkg_running *r,
		     enum updpkg_refusal *why, struct parley_err *err)
{
	const unsigned *rv = r->version.v;
	if (strcmp(p->product, "parley-agent"))
		return refuse(UPDPKG_PRODUCT, why, err, "product \"%s\", not "
			      "parley-agent", p->product);
	if (updpkg_version_cmp(&p->version, &r->version) <= 0)
		return refuse(UPDPKG_NOT_NEWER, why, err, "%s is not newer "
			      "than the running %u.%u.%u", p->version_s,
			      rv[0], rv[1], rv[2]);
	if (updpkg_version_cmp(&r->version, &p->replaces_min) < 0)
		return refuse(UPDPKG_TOO_OLD, why, err, "replaces %u.%u.%u and "
			      "later, this is %u.%u.%u",
			      p->replaces_min.v[0], p->replaces_min.v[1],
			      p->replaces_min.v[2], rv[0], rv[1], rv[2]);
	bool lo = p->abi_min[0] < r->abi_major ||
		  (p->abi_min[0] == r->abi_major &&
		   p->abi_min[1] <= r->abi_minor);
	bool hi = r->abi_major < p->abi_max[0] ||
		  (r->abi_major == p->abi_max[0] &&
		   r->abi_minor <= p->abi_max[1]);
	if (!lo || !hi)
		return refuse(UPDPKG_ABI, why, err, "speaks ABI %u.%u..%u.%u, "
			      "running partitions speak %u.%u",
			      p->abi_min[0], p->abi_min[1], p->abi_max[0],
			      p->abi_max[1], r->abi_major, r->abi_minor);
	return 0;
}

static int parse_all(const uint8_t *buf, size_t len, EVP_PKEY *pub,
		     struct updpkg *out, enum updpkg_refusal *why,
		     struct parley_err *err)
{
	int rc = updpkg_parse_header(buf, len, out, why, err);
	if (rc == 0 && pub)
		rc = check_sig(buf, out, pub, why, err);
	if (rc == 0) {
		rc = updpkg_parse_manifest(buf + UPDPKG_HDR, out->manifest_len,
					   out, err);
		if (rc < 0) {
			*why = UPDPKG_MALFORMED;
			rc = prefixed(err, -EBADMSG, "malformed: ");
		}
	}
	if (rc == 0)
		rc = check_files(buf, len, out, why, err);
	return rc;
}

int updpkg_parse(const uint8_t *buf, size_t len, struct updpkg *out,
		 enum updpkg_refusal *why, struct parley_err *err)
{
	*why = UPDPKG_OK;
	return parse_all(buf, len, NULL, out, why, err);
}

int updpkg_verify(const uint8_t *buf, size_t len, EVP_PKEY *pub,
		  const struct updpkg_running *run, struct updpkg *out,
		  enum updpkg_refusal *why, struct parley_err *err)
{
	*why = UPDPKG_OK;
	if (!pub)
		return perr(err, -EINVAL, "no release key");
	int rc = parse_all(buf, len, pub, out, why, err);
	if (rc == 0)
		rc = check_fit(out, run, why, err);
	return rc;
}

/* ---- making ------------------------------------------------------------- */

static json_t *manifest_of(const char *version, const char *replaces_min,
			   const char *abi_min, const char *abi_max,
			   const struct updpkg_input *files, unsigned n)
{
	json_t *arr = json_array();
	for (unsigned i = 0; arr && i < n; i++) {
		uint8_t md[32];
		char hex[65];
		SHA256(files[i].data, files[i].len, md);
		pki_hex(md, 32, hex);
		json_array_append_new(arr, json_pack("{s:s, s:I, s:s}",
			"name", files[i].name, "size",
			(json_int_t)files[i].len, "sha256", hex));
	}
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "product",
			 "parley-agent", "version", version, "replaces_min",
			 replaces_min, "abi_min", abi_min, "abi_max", abi_max,
			 "files", arr);
}

int updpkg_build(const char *version, const char *replaces_min,
		 const char *abi_min, const char *abi_max,
		 const struct updpkg_input *files, unsigned n, uint8_t **out,
		 size_t *outlen, struct parley_err *err)
{
	json_t *m = manifest_of(version, replaces_min, abi_min, abi_max,
				files, n);
	char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER)
		       : NULL;
	json_decref(m);
	if (!text)
		return perr(err, -ENOMEM, "manifest: out of memory");
	size_t mlen = strlen(text), total = UPDPKG_HDR + mlen;
	for (unsigned i = 0; i < n; i++)
		total += files[i].len;
	uint8_t *buf = calloc(1, total);
	if (!buf) {
		free(text);
		return perr(err, -ENOMEM, "package: out of memory");
	}
	memcpy(buf, UPDPKG_MAGIC, 8);
	put_le32(buf + 8, UPDPKG_FORMAT);
	put_le32(buf + 12, (uint32_t)(mlen > UINT32_MAX ? UINT32_MAX : mlen));
	memcpy(buf + UPDPKG_HDR, text, mlen);
	free(text);
	size_t off = UPDPKG_HDR + mlen;
	for (unsigned i = 0; i < n; i++) {
		if (files[i].len)
			memcpy(buf + off, files[i].data, files[i].len);
		off += files[i].len;
	}
	struct updpkg p;
	enum updpkg_refusal why;
	if (updpkg_parse(buf, total, &p, &why, err) < 0) {
		free(buf);
		return prefixed(err, -EINVAL, "");
	}
	*out = buf;
	*outlen = total;
	return 0;
}

int updpkg_sign(uint8_t *buf, size_t len, EVP_PKEY *key,
		struct parley_err *err)
{
	struct updpkg p;
	enum updpkg_refusal why;
	int rc = updpkg_parse_header(buf, len, &p, &why, err);
	if (rc < 0)
		return rc;
	size_t n = UPDPKG_SIGNED_HDR + p.manifest_len;
	uint8_t *msg = malloc(n);
	if (!msg)
		return perr(err, -ENOMEM, "out of memory");
	memcpy(msg, buf, UPDPKG_SIGNED_HDR);
	memcpy(msg + UPDPKG_SIGNED_HDR, buf + UPDPKG_HDR, p.manifest_len);
	rc = sign_data(key, msg, n, buf + UPDPKG_SIG_OFF);
	free(msg);
	return rc < 0 ? perr(err, rc, "signing: not an Ed25519 private key")
		      : 0;
}
