/* A JSON Schema validator for the subset of keywords the API's OpenAPI
 * document (daemon/rpc/openapi.json) uses; any other keyword in a schema
 * is a failure, so the document cannot outgrow the check. */
#ifndef PARLEY_TEST_JSCHEMA_H
#define PARLEY_TEST_JSCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Whether v is valid against schema s ($ref resolved in root); else why
 * (with the path in v, `at` being v's own). */
bool js_valid(const json_t *root, const json_t *s, const json_t *v,
	      const char *at, char *why, size_t cap);

#endif
