/* A JSON Schema (2020-12) validator for the subset the API's OpenAPI
 * document uses: type (one or a list), enum, const, pattern (POSIX ERE),
 * minimum, maximum, required, properties, additionalProperties (false or
 * a schema), items, oneOf, and $ref to "#/...". Anything else in a
 * schema is refused (so the document cannot quietly use a keyword this
 * does not check). */
#include "tests/helpers/jschema.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool fail(char *why, size_t cap, const char *at, const char *fmt, ...)
{
	char m[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	snprintf(why, cap, "%s: %s", at[0] ? at : "(top)", m);
	return false;
}

static bool type_is(const json_t *v, const char *t)
{
	if (!strcmp(t, "object")) return json_is_object(v);
	if (!strcmp(t, "array")) return json_is_array(v);
	if (!strcmp(t, "string")) return json_is_string(v);
	if (!strcmp(t, "integer")) return json_is_integer(v);
	if (!strcmp(t, "number")) return json_is_number(v);
	if (!strcmp(t, "boolean")) return json_is_boolean(v);
	if (!strcmp(t, "null")) return json_is_null(v);
	return false;
}

static const json_t *resolve(const json_t *root, const char *ref)
{
	if (strncmp(ref, "#/", 2))
		return NULL;
	const json_t *n = root;
	char part[128];
	for (const char *p = ref + 2; *p && n;) {
		size_t k = strcspn(p, "/");
		snprintf(part, sizeof(part), "%.*s", (int)k, p);
		n = json_object_get(n, part);
		p += k + (p[k] == '/');
	}
	return n;
}

static const char *const known_kw[] = {
	"type", "enum", "const", "pattern", "minimum", "maximum", "required",
	"properties", "additionalProperties", "items", "oneOf", "$ref",
	"description", "default", "title", NULL,
};

bool js_valid(const json_t *root, const json_t *s, const json_t *v,
	      const char *at, char *why, size_t cap)
{
	if (!json_is_object(s))
		return fail(why, cap, at, "schema is not an object");
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)s, k, x) {
		bool ok = false;
		for (unsigned i = 0; known_kw[i]; i++)
			ok |= !strcmp(k, known_kw[i]);
		if (!ok && strncmp(k, "x-", 2))
			return fail(why, cap, at, "schema keyword %s not "
				    "checked by this validator", k);
	}
	if ((x = json_object_get(s, "$ref"))) {
		const json_t *t = resolve(root, json_string_value(x));
		if (!t)
			return fail(why, cap, at, "bad $ref");
		return js_valid(root, t, v, at, why, cap);
	}
	if ((x = json_object_get(s, "type"))) {
		bool ok = false;
		if (json_is_string(x))
			ok = type_is(v, json_string_value(x));
		size_t i;
		json_t *t;
		json_array_foreach(x, i, t)
			ok |= type_is(v, json_string_value(t));
		if (!ok)
			return fail(why, cap, at, "not of the type");
	}
	if ((x = json_object_get(s, "const")) && !json_equal(x, v))
		return fail(why, cap, at, "not the constant");
	if ((x = json_object_get(s, "enum"))) {
		bool ok = false;
		size_t i;
		json_t *t;
		json_array_foreach(x, i, t)
			ok |= json_equal(t, (json_t *)v);
		if (!ok)
			return fail(why, cap, at, "not one of the enum");
	}
	if ((x = json_object_get(s, "pattern")) && json_is_string(v)) {
		regex_t re;
		if (regcomp(&re, json_string_value(x), REG_EXTENDED | REG_NOSUB))
			return fail(why, cap, at, "bad pattern");
		int r = regexec(&re, json_string_value(v), 0, NULL, 0);
		regfree(&re);
		if (r)
			return fail(why, cap, at, "\"%s\" does not match %s",
				    json_string_value(v), json_string_value(x));
	}
	if ((x = json_object_get(s, "minimum")) && json_is_number(v) &&
	    json_number_value(v) < json_number_value(x))
		return fail(why, cap, at, "below the minimum");
	if ((x = json_object_get(s, "maximum")) && json_is_number(v) &&
	    json_number_value(v) > json_number_value(x))
		return fail(why, cap, at, "above the maximum");
	char sub[256];
	if (json_is_object(v)) {
		size_t i;
		json_t *t;
		json_array_foreach(json_object_get(s, "required"), i, t)
			if (!json_object_get(v, json_string_value(t)))
				return fail(why, cap, at, "%s missing",
					    json_string_value(t));
		const json_t *props = json_object_get(s, "properties");
		const json_t *addl = json_object_get(s, "additionalProperties");
		json_object_foreach((json_t *)v, k, t) {
			snprintf(sub, sizeof(sub), "%s.%s", at, k);
			const json_t *ps = json_object_get(props, k);
			if (ps) {
				if (!js_valid(root, ps, t, sub, why, cap))
					return false;
			} else if (json_is_false(addl)) {
				return fail(why, cap, sub, "not documented");
			} else if (json_is_object(addl) &&
				   !js_valid(root, addl, t, sub, why, cap)) {
				return false;
			}
		}
	}
	if (json_is_array(v) && (x = json_object_get(s, "items"))) {
		size_t i;
		json_t *t;
		json_array_foreach(v, i, t) {
			snprintf(sub, sizeof(sub), "%s[%zu]", at, i);
			if (!js_valid(root, x, t, sub, why, cap))
				return false;
		}
	}
	if ((x = json_object_get(s, "oneOf"))) {
		unsigned n = 0;
		size_t i;
		json_t *t;
		char w[256];
		json_array_foreach(x, i, t)
			n += js_valid(root, t, v, at, w, sizeof(w));
		if (n != 1)
			return fail(why, cap, at, "matches %u of oneOf", n);
	}
	return true;
}
