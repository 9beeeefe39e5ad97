/*
 * Checking JSON documents field by field (jansson trees): the pieces every
 * parser of a JSON file or request shares, so that all of them quote hostile
 * text the same safe way and refuse unknown fields the same way.
 */
#ifndef PARLEY_COMMON_JSONV_H
#define PARLEY_COMMON_JSONV_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "common/err.h"

/* Bytes of document text quoted in a message before it is cut. */
#define JV_QUOTE_MAX 40

/* Document text quoted into a message: printable ASCII as is, anything else
 * as \xNN, cut after JV_QUOTE_MAX bytes, so a hostile document can put
 * neither terminal escapes nor megabytes into a log line. */
struct jv_quoted {
	char s[4 * JV_QUOTE_MAX + 8];
};
const char *jv_quote(struct jv_quoted *q, const char *s, size_t len);

/* "a string", "an integer", ... for messages; "nothing" for NULL (a field
 * that is absent), so callers may pass json_object_get's result as is. */
const char *jv_type_name(const json_t *v);

/* "<lbl>: expected <want>, got <type>" as -EINVAL. */
int jv_type_error(const json_t *v, const char *lbl, const char *want,
		  struct parley_err *err);

/* Refuse any key of obj not in the NULL-terminated `known`: a misspelt
 * field must not be ignored silently. `where` prefixes the message ("" at
 * top level, "config[3]: " inside an entry). */
int jv_check_known(json_t *obj, const char *const *known, const char *where,
		   struct parley_err *err);

/* A string without NUL bytes (documents are parsed with JSON_ALLOW_NUL so
 * the message can name the field that held one). */
int jv_get_string(const json_t *v, const char *lbl, const char **s,
		  size_t *len, struct parley_err *err);

/* Names of partitions, channels and hosts appear in file names, logs and
 * the API: 1..cap-1 bytes of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool jv_name_valid(const char *s, size_t len, size_t cap);

/* jansson's syntax error as "invalid JSON at line L, column C: ...". */
int jv_syntax_error(const json_error_t *jerr, struct parley_err *err);

#endif
