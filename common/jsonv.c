#include "common/jsonv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *jv_quote(struct jv_quoted *q, const char *s, size_t len)
{
	size_t n = 0, i;

	q->s[n++] = '"';
	for (i = 0; i < len && i < JV_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			q->s[n++] = (char)c;
		else
			n += (size_t)snprintf(q->s + n, sizeof(q->s) - n,
					      "\\x%02x", c);
	}
	if (i < len) {
		memcpy(q->s + n, "...", 3);
		n += 3;
	}
	q->s[n++] = '"';
	q->s[n] = '\0';
	return q->s;
}

const char *jv_type_name(const json_t *v)
{
	/* A field that is absent: json_object_get's NULL, which
	 * json_typeof would dereference. */
	if (!v)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown type";
}

int jv_type_error(const json_t *v, const char *lbl, const char *want,
		  struct parley_err *err)
{
	return perr(err, -EINVAL, "%s: expected %s, got %s", lbl, want,
		    jv_type_name(v));
}

int jv_check_known(json_t *obj, const char *const *known, const char *where,
		   struct parley_err *err)
{
	for (void *it = json_object_iter(obj); it;
	     it = json_object_iter_next(obj, it)) {
		const char *key = json_object_iter_key(it);
		size_t i;
		for (i = 0; known[i] && strcmp(key, known[i]); i++)
			;
		if (!known[i]) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%sunknown field %s", where,
				    jv_quote(&q, key, strlen(key)));
		}
	}
	return 0;
}

int jv_get_string(const json_t *v, const char *lbl, const char **s,
		  size_t *len, struct parley_err *err)
{
	if (!json_is_string(v))
		return jv_type_error(v, lbl, "a string", err);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (memchr(*s, '\0', *len))
		return perr(err, -EINVAL, "%s: contains a NUL byte", lbl);
	return 0;
}

bool jv_name_valid(const char *s, size_t len, size_t cap)
{
	if (!len || len >= cap)
		return false;
	if (s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= '0' && c <= '9') && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

int jv_syntax_error(const json_error_t *jerr, struct parley_err *err)
{
	/* jansson quotes the text near the error, which may hold any byte. */
	struct jv_quoted q;
	return perr(err, -EINVAL, "invalid JSON at line %d, column %d: %s",
		    jerr->line, jerr->column,
		    jv_quote(&q, jerr->text, strlen(jerr->text)));
}
