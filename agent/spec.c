/*
 * Partition spec parser. The JSON is parsed by jansson into a tree, then each
 * field is checked by its own small function and copied into struct
 * part_spec; nothing else in the agent ever sees the JSON. Every error names
 * the field ("field \"memory\": ..." at top level, "config[1].name: ..." inside
 * a config entry) and quotes offending text in a sanitised form.
 */
#include "agent/spec.h"
#include "agent/beneath.h"

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/size.h"
#include "agent/disk/disk_spec.h"

/* Room for "config[31].name" or "field \"cmdline\"". */
#define LABEL_MAX 40
/* Top-level fields have index -1; config entries their position. */
#define TOP_LEVEL (-1)

static const char *const top_fields[] = {
	"kind", "name", "image", "memory", "vcpus", "config", "cmdline",
	"capabilities", "disks", NULL
};
static const char *const config_fields[] = { "name", "path", NULL };

static bool is_printable(unsigned char c)
{
	return c >= 0x20 && c < 0x7f;
}

/* "4M" rather than "4194304" where the size is a whole unit. */
static const char *fmt_size(char buf[32], uint64_t v)
{
	static const char units[] = "GMK";
	for (int i = 0; i < 3; i++) {
		unsigned shift = (unsigned)(30 - 10 * i);
		if (v && !(v & ((1ull << shift) - 1))) {
			snprintf(buf, 32, "%llu%c",
				 (unsigned long long)(v >> shift), units[i]);
			return buf;
		}
	}
	snprintf(buf, 32, "%llu", (unsigned long long)v);
	return buf;
}

static const char *label(char buf[LABEL_MAX], int index, const char *key)
{
	if (index == TOP_LEVEL)
		snprintf(buf, LABEL_MAX, "field \"%s\"", key);
	else
		snprintf(buf, LABEL_MAX, "config[%d].%s", index, key);
	return buf;
}

/* "" at top level, "config[3]: " inside an entry. */
static const char *where(char buf[LABEL_MAX], int index)
{
	if (index == TOP_LEVEL)
		buf[0] = '\0';
	else
		snprintf(buf, LABEL_MAX, "config[%d]: ", index);
	return buf;
}

/* A misspelt field must not be ignored silently: "memroy" would otherwise
 * give the default memory without a word. */
static int check_known(json_t *obj, const char *const *known, int index,
		       struct parley_err *err)
{
	char w[LABEL_MAX];
	return jv_check_known(obj, known, where(w, index), err);
}

/* obj[key], or NULL; a missing required key is an error. */
static int get_field(json_t *obj, const char *key, int index, bool required,
		     json_t **v, struct parley_err *err)
{
	*v = json_object_get(obj, key);
	if (!*v && required) {
		char w[LABEL_MAX];
		return perr(err, -EINVAL, "%smissing field \"%s\"",
			    where(w, index), key);
	}
	return 0;
}

/* Strings may hold \u0000 (we parse with JSON_ALLOW_NUL so we can say which
 * field); none of ours may, as they all end up as C strings. */
#define get_string jv_get_string

static int get_path(const json_t *v, const char *lbl, const char **s,
		    struct parley_err *err)
{
	size_t len = 0;
	int rc = get_string(v, lbl, s, &len, err);
	if (rc)
		return rc;
	if (!len)
		return perr(err, -EINVAL, "%s: must not be empty", lbl);
	if (len >= SPEC_PATH_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, at most %d", lbl,
			    len, SPEC_PATH_MAX - 1);
	/* Relative and without "..": the agent opens it beneath its allowed
	 * directories only (agent/beneath.h). */
	return beneath_check(*s, lbl, err);
}

static bool valid_part_name(const char *s, size_t len)
{
	return jv_name_valid(s, len, sizeof(((struct part_spec *)0)->name));
}

static int parse_name(json_t *root, struct part_spec *out,
		      struct parley_err *err)
{
	char lbl[LABEL_MAX];
	struct jv_quoted q;
	const char *s = NULL;
	size_t len = 0;
	json_t *v = NULL;
	int rc = get_field(root, "name", TOP_LEVEL, true, &v, err);
	if (!rc)
		rc = get_string(v, label(lbl, TOP_LEVEL, "name"), &s, &len, err);
	if (rc)
		return rc;
	if (!valid_part_name(s, len))
		return perr(err, -EINVAL,
			    "%s: %s is not a valid name (1..%zu of A-Z a-z 0-9 _ . -, not starting with '.' or '-')",
			    lbl, jv_quote(&q, s, len), sizeof(out->name) - 1);
	memcpy(out->name, s, len);
	out->name[len] = '\0';
	return 0;
}

static int parse_image(json_t *root, struct part_spec *out,
		       struct parley_err *err)
{
	char lbl[LABEL_MAX];
	const char *s = NULL;
	json_t *v = NULL;
	int rc = get_field(root, "image", TOP_LEVEL, true, &v, err);
	if (!rc)
		rc = get_path(v, label(lbl, TOP_LEVEL, "image"), &s, err);
	if (rc)
		return rc;
	out->image = strdup(s);
	if (!out->image)
		return perr(err, -ENOMEM, "%s: out of memory", lbl);
	return 0;
}

static int memory_value(const json_t *v, const char *lbl, uint64_t *mem,
			struct parley_err *err)
{
	char sz[32];
	struct jv_quoted q;
	const char *s = NULL;
	size_t len = 0;

	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);
		if (n <= 0)
			return perr(err, -EINVAL,
				    "%s: %lld is not a positive number of bytes",
				    lbl, (long long)n);
		*mem = (uint64_t)n;
		return 0;
	}
	if (!json_is_string(v))
		return jv_type_error(v, lbl, "a size string or an integer", err);
	int rc = get_string(v, lbl, &s, &len, err);
	if (rc)
		return rc;
	rc = parse_size(s, mem);
	if (rc == -ERANGE)
		return perr(err, -EINVAL, "%s: %s is too large (at most %s)",
			    lbl, jv_quote(&q, s, len), fmt_size(sz, PARLEY_MEM_MAX));
	if (rc)
		return perr(err, -EINVAL,
			    "%s: %s is not a size (use bytes or K/M/G)", lbl,
			    jv_quote(&q, s, len));
	return 0;
}

static int parse_memory(json_t *root, struct part_spec *out,
			struct parley_err *err)
{
	char lbl[LABEL_MAX], a[32], b[32], c[32];
	uint64_t mem = SPEC_MEM_DEFAULT;
	json_t *v = NULL;
	label(lbl, TOP_LEVEL, "memory");
	int rc = get_field(root, "memory", TOP_LEVEL, false, &v, err);
	if (!rc && v)
		rc = memory_value(v, lbl, &mem, err);
	if (rc)
		return rc;
	if (mem < PARLEY_MEM_MIN || mem > PARLEY_MEM_MAX)
		return perr(err, -EINVAL, "%s: %s is out of range (%s..%s)",
			    lbl, fmt_size(a, mem), fmt_size(b, PARLEY_MEM_MIN),
			    fmt_size(c, PARLEY_MEM_MAX));
	if (mem % SPEC_MEM_ALIGN)
		return perr(err, -EINVAL, "%s: %s is not a multiple of %s",
			    lbl, fmt_size(a, mem), fmt_size(b, SPEC_MEM_ALIGN));
	out->mem_bytes = mem;
	return 0;
}

static int parse_vcpus(json_t *root, struct part_spec *out,
		       struct parley_err *err)
{
	char lbl[LABEL_MAX];
	json_t *v = NULL;
	int rc = get_field(root, "vcpus", TOP_LEVEL, false, &v, err);
	if (rc)
		return rc;
	out->vcpus = 1;
	if (!v)
		return 0;
	label(lbl, TOP_LEVEL, "vcpus");
	if (!json_is_integer(v))
		return jv_type_error(v, lbl, "an integer", err);
	json_int_t n = json_integer_value(v);
	if (n < 1 || n > PARLEY_VCPUS_MAX)
		return perr(err, -EINVAL, "%s: %lld is out of range (1..%d)",
			    lbl, (long long)n, PARLEY_VCPUS_MAX);
	out->vcpus = (uint32_t)n;
	return 0;
}

/* The partition finds its files by name in a table of fixed-size, NUL-
 * terminated names; printable ASCII and no '/' keep names unambiguous in
 * logs and free of path meaning. */
static int config_name(const json_t *v, int index, struct part_spec *out,
		       struct parley_err *err)
{
	char lbl[LABEL_MAX];
	struct jv_quoted q;
	const char *s = NULL;
	size_t len = 0;
	int rc = get_string(v, label(lbl, index, "name"), &s, &len, err);
	if (rc)
		return rc;
	if (!len || len >= PARLEY_CONFIG_NAME_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, must be 1..%d", lbl,
			    len, PARLEY_CONFIG_NAME_MAX - 1);
	for (size_t i = 0; i < len; i++) {
		if (!is_printable((unsigned char)s[i]))
			return perr(err, -EINVAL,
				    "%s: byte 0x%02x at offset %zu is not printable ASCII",
				    lbl, (unsigned char)s[i], i);
		if (s[i] == '/')
			return perr(err, -EINVAL, "%s: %s contains '/'", lbl,
				    jv_quote(&q, s, len));
	}
	for (int i = 0; i < index; i++)
		if (!strcmp(out->config[i].name, s))
			return perr(err, -EINVAL, "%s: duplicate %s", lbl,
				    jv_quote(&q, s, len));
	memcpy(out->config[index].name, s, len);
	out->config[index].name[len] = '\0';
	return 0;
}

static int config_path(const json_t *v, int index, struct part_spec *out,
		       struct parley_err *err)
{
	char lbl[LABEL_MAX];
	const char *s = NULL;
	int rc = get_path(v, label(lbl, index, "path"), &s, err);
	if (rc)
		return rc;
	out->config[index].path = strdup(s);
	if (!out->config[index].path)
		return perr(err, -ENOMEM, "%s: out of memory", lbl);
	return 0;
}

static int config_entry(json_t *e, int index, struct part_spec *out,
			struct parley_err *err)
{
	json_t *name = NULL, *path = NULL;
	if (!json_is_object(e))
		return perr(err, -EINVAL, "config[%d]: expected an object, got %s",
			    index, jv_type_name(e));
	int rc = check_known(e, config_fields, index, err);
	if (!rc)
		rc = get_field(e, "name", index, true, &name, err);
	if (!rc)
		rc = get_field(e, "path", index, true, &path, err);
	if (!rc)
		rc = config_name(name, index, out, err);
	if (!rc)
		rc = config_path(path, index, out, err);
	return rc;
}

static int parse_config(json_t *root, struct part_spec *out,
			struct parley_err *err)
{
	char lbl[LABEL_MAX];
	json_t *v = NULL;
	int rc = get_field(root, "config", TOP_LEVEL, false, &v, err);
	if (rc || !v)
		return rc;
	label(lbl, TOP_LEVEL, "config");
	if (!json_is_array(v))
		return jv_type_error(v, lbl, "an array", err);
	size_t n = json_array_size(v);
	if (n > PARLEY_CONFIG_FILES_MAX)
		return perr(err, -EINVAL, "%s: %zu entries, at most %d", lbl, n,
			    PARLEY_CONFIG_FILES_MAX);
	for (size_t i = 0; i < n; i++) {
		rc = config_entry(json_array_get(v, i), (int)i, out, err);
		if (rc)
			return rc;
		out->nconfig++;
	}
	return 0;
}

static int parse_cmdline(json_t *root, struct part_spec *out,
			 struct parley_err *err)
{
	char lbl[LABEL_MAX];
	const char *s = NULL;
	size_t len = 0;
	json_t *v = NULL;
	int rc = get_field(root, "cmdline", TOP_LEVEL, false, &v, err);
	if (rc || !v)
		return rc;
	rc = get_string(v, label(lbl, TOP_LEVEL, "cmdline"), &s, &len, err);
	if (rc)
		return rc;
	if (len >= PARLEY_CMDLINE_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, at most %d", lbl, len,
			    PARLEY_CMDLINE_MAX - 1);
	/* The partition gets it as one line; control bytes have no meaning
	 * there and could forge log lines when it echoes them. */
	for (size_t i = 0; i < len; i++)
		if (!is_printable((unsigned char)s[i]))
			return perr(err, -EINVAL,
				    "%s: byte 0x%02x at offset %zu is not printable ASCII",
				    lbl, (unsigned char)s[i], i);
	memcpy(out->cmdline, s, len);
	out->cmdline[len] = '\0';
	return 0;
}

/* "capabilities": ["update"]: what the partition may ask of the agent
 * beyond channels. Each known at most once; an unknown one is refused
 * (a misspelt capability must not silently mean none). */
static int parse_caps(json_t *root, struct part_spec *out,
		      struct parley_err *err)
{
	static const struct { const char *name; uint32_t bit; } caps[] = {
		{ "update", SPEC_CAP_UPDATE },
	};
	json_t *v = json_object_get(root, "capabilities");
	if (!v)
		return 0;
	if (!json_is_array(v) || json_array_size(v) > 8)
		return perr(err, -EINVAL, "field \"capabilities\": expected an "
			    "array of at most 8 names");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const char *s;
		size_t len;
		char lbl[LABEL_MAX];
		snprintf(lbl, sizeof(lbl), "capabilities[%zu]", i);
		int rc = get_string(json_array_get(v, i), lbl, &s, &len, err);
		if (rc)
			return rc;
		size_t k = 0;
		while (k < sizeof(caps) / sizeof(caps[0]) &&
		       strcmp(caps[k].name, s))
			k++;
		if (k == sizeof(caps) / sizeof(caps[0])) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%s: unknown capability %s",
				    lbl, jv_quote(&q, s, len));
		}
		if (out->caps & caps[k].bit)
			return perr(err, -EINVAL, "%s: \"%s\" twice", lbl, s);
		out->caps |= caps[k].bit;
	}
	return 0;
}

/* "kind": optional, "thin" (a VM's spec, "vm", has its own parser:
 * agent/vm/vmspec.h; `run` sends it there before this one). */
static int parse_kind(json_t *root, struct part_spec *out,
		      struct parley_err *err)
{
	(void)out;
	json_t *v = json_object_get(root, "kind");
	const char *s = NULL;
	size_t len = 0;
	if (!v)
		return 0;
	int rc = get_string(v, "field \"kind\"", &s, &len, err);
	if (rc)
		return rc;
	if (strcmp(s, "thin")) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "field \"kind\": %s is not \"thin\" "
			    "(a VM's spec, \"vm\", is for parley-agent run)",
			    jv_quote(&q, s, len));
	}
	return 0;
}

typedef int (*field_parser)(json_t *root, struct part_spec *out,
			    struct parley_err *err);

/* In the order a person reads a spec, so the first error reported is the
 * first one they see. */
static const field_parser field_parsers[] = {
	parse_kind, parse_name, parse_image, parse_memory, parse_vcpus, parse_config,
	parse_cmdline, parse_caps, spec_parse_disks,
};

static int spec_from_json(json_t *root, const char *base_dir,
			  struct part_spec *out, struct parley_err *err)
{
	if (!json_is_object(root))
		return perr(err, -EINVAL, "spec: expected an object, got %s",
			    jv_type_name(root));
	int rc = check_known(root, top_fields, TOP_LEVEL, err);
	if (rc)
		return rc;
	out->base_dir = strdup(base_dir && *base_dir ? base_dir : ".");
	if (!out->base_dir)
		return perr(err, -ENOMEM, "spec: out of memory");
	for (size_t i = 0; i < sizeof(field_parsers) / sizeof(field_parsers[0]);
	     i++) {
		rc = field_parsers[i](root, out, err);
		if (rc)
			return rc;
	}
	return 0;
}

int spec_parse(const char *json, size_t len, const char *base_dir,
	       struct part_spec *out, struct parley_err *err)
{
	PARLEY_ASSERT(out);
	PARLEY_ASSERT(json || !len);
	memset(out, 0, sizeof(*out));
	if (len > SPEC_FILE_MAX)
		return perr(err, -EFBIG, "spec is %zu bytes, more than the %d allowed",
			    len, SPEC_FILE_MAX);
	json_error_t jerr;
	/* Duplicate keys are refused: which one wins would otherwise depend
	 * on the parser, and a reviewer could read the other. */
	json_t *root = json_loadb(json ? json : "", len,
				  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	int rc = spec_from_json(root, base_dir, out, err);
	json_decref(root);
	if (rc)
		spec_free(out);
	return rc;
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *dir = strdup(dirname(copy));
	free(copy);
	return dir;
}

int spec_load(const char *path, struct part_spec *out, struct parley_err *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	PARLEY_ASSERT(out);
	memset(out, 0, sizeof(*out));
	/* file_read_all's messages already start with the path. */
	int rc = file_read_all(path, SPEC_FILE_MAX, &buf, &len, err);
	if (rc)
		return rc;
	char *dir = dir_of(path);
	if (!dir) {
		free(buf);
		return perr(err, -ENOMEM, "%s: out of memory", path);
	}
	rc = spec_parse((const char *)buf, len, dir, out, err);
	if (rc)
		perr_prefix(err, "%s", path);
	free(dir);
	free(buf);
	return rc;
}

int spec_parse_daemon(const char *json, size_t len, struct part_spec *out,
		      struct parley_err *err)
{
	int rc = spec_parse(json, len, NULL, out, err);
	if (rc == 0) {
		free(out->base_dir);
		out->base_dir = NULL;
	}
	return rc;
}

void spec_free(struct part_spec *s)
{
	if (!s)
		return;
	free(s->image);
	free(s->base_dir);
	/* All slots, not just nconfig: free(NULL) is harmless and this stays
	 * right however far a failed parse got. */
	for (size_t i = 0; i < PARLEY_CONFIG_FILES_MAX; i++)
		free(s->config[i].path);
	for (size_t i = 0; i < PARLEY_DISKS_MAX; i++) {
		free(s->disk[i].path);
		free(s->disk[i].key);
	}
	memset(s, 0, sizeof(*s));
}
