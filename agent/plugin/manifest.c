/* One plugin manifest (manifest.h). */
#include "agent/plugin/manifest.h"
#include "common/jsonv.h"

#include <errno.h>
#include <string.h>
#include <jansson.h>

static const char *const classes[] = {
	[PARLEY_PLUGIN_BLOCK] = "block",
	[PARLEY_PLUGIN_TRANSFORM] = "transform",
	[PARLEY_PLUGIN_CONSOLE] = "console",
};

const char *plugin_class_name(uint32_t c)
{
	return c >= 1 && c < sizeof(classes) / sizeof(classes[0]) ? classes[c]
								  : "?";
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int get_name(json_t *root, const char *field, size_t cap, char *out,
		    struct parley_err *err)
{
	const char *s;
	size_t len;
	int rc = jv_get_string(json_object_get(root, field), field, &s, &len,
			       err);
	if (rc < 0)
		return rc;
	if (!jv_name_valid(s, len, cap)) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a name of 1..%zu "
			    "bytes of [A-Za-z0-9_.-] (not starting with '.' or "
			    "'-')", field, jv_quote(&q, s, len), cap - 1);
	}
	memcpy(out, s, len + 1);
	return 0;
}

static int parse(json_t *root, struct plugin_manifest *m,
		 struct parley_err *err)
{
	static const char *const known[] = { "name", "class", "abi", "file",
					     "sha256", NULL };
	if (!json_is_object(root))
		return jv_type_error(root, "manifest", "an object", err);
	int rc = jv_check_known(root, known, "", err);
	if (rc == 0)
		rc = get_name(root, "name", sizeof(m->name), m->name, err);
	if (rc == 0)
		rc = get_name(root, "file", sizeof(m->file), m->file, err);
	if (rc < 0)
		return rc;
	const char *s;
	size_t len;
	struct jv_quoted q;
	rc = jv_get_string(json_object_get(root, "class"), "class", &s, &len,
			   err);
	if (rc < 0)
		return rc;
	for (uint32_t c = 1; c < sizeof(classes) / sizeof(classes[0]); c++)
		if (strlen(classes[c]) == len && !memcmp(classes[c], s, len))
			m->plugin_class = c;
	if (!m->plugin_class)
		return perr(err, -EINVAL, "class: %s is none of block, "
			    "transform, console", jv_quote(&q, s, len));
	json_t *abi = json_object_get(root, "abi");
	if (!json_is_integer(abi))
		return jv_type_error(abi, "abi", "an integer", err);
	if (json_integer_value(abi) != PARLEY_PLUGIN_ABI)
		return perr(err, -ENOTSUP, "abi: plugin \"%s\" is built for "
			    "ABI %lld, this agent loads ABI %u", m->name,
			    (long long)json_integer_value(abi),
			    PARLEY_PLUGIN_ABI);
	m->abi = PARLEY_PLUGIN_ABI;
	rc = jv_get_string(json_object_get(root, "sha256"), "sha256", &s, &len,
			   err);
	if (rc < 0)
		return rc;
	if (len != 64)
		return perr(err, -EINVAL, "sha256: %s is not 64 lower-case hex "
			    "digits", jv_quote(&q, s, len));
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return perr(err, -EINVAL, "sha256: %s is not 64 "
				    "lower-case hex digits",
				    jv_quote(&q, s, len));
		m->sha256[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int plugin_manifest_parse(const char *json, size_t len,
			  struct plugin_manifest *m, struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	if (len > PLUGIN_MANIFEST_MAX)
		return perr(err, -E2BIG, "manifest of %zu bytes (at most %u)",
			    len, PLUGIN_MANIFEST_MAX);
	json_error_t jerr;
	/* Duplicate keys refused: which "sha256" counts must not be a
	 * question. NULs allowed in, so the message can name the field. */
	json_t *root = json_loadb(json ? json : "", len,
				  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
				  &jerr);
	if (!root) {
		jv_syntax_error(&jerr, err);
		return -EINVAL;
	}
	int rc = parse(root, m, err);
	json_decref(root);
	if (rc < 0)
		memset(m, 0, sizeof(*m));
	return rc;
}
