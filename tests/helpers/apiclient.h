/* A real parleyd with its HTTP API on a free loopback port, and a tiny
 * blocking HTTP/1.1 client (socket, send, read to EOF) for the API tests. */
#ifndef PARLEY_TEST_APICLIENT_H
#define PARLEY_TEST_APICLIENT_H

#include <jansson.h>
#include <stddef.h>
#include "tests/helpers/fleetd.h"

struct api_client {
	struct fleetd f;
	int port;                 /* the API's */
	char admin[128];          /* the bootstrap token from admin.token */
};

struct ac_resp {
	int status;               /* 0: no parseable answer */
	char *raw;                /* the whole response, NUL-terminated */
	const char *body;         /* into raw */
	json_t *json;             /* the body parsed, or NULL */
};

/* fd_init, then parleyd with --api-listen 127.0.0.1:0; waits for
 * parleyd.api-port and admin.token. */
void ac_start(struct api_client *c);
/* The same with more parleyd options (NULL-terminated). */
void ac_start_args(struct api_client *c, const char *const *extra);
void ac_stop(struct api_client *c);

/* Send `len` bytes as they are and read the answer to EOF. */
void ac_raw(int port, const void *req, size_t len, struct ac_resp *r);
/* One request with Connection: close; token and body may be NULL. */
void ac_call(struct api_client *c, const char *method, const char *path,
	     const char *token, const char *body, struct ac_resp *r);
void ac_free(struct ac_resp *r);
/* r's error.code and error.message (or "" when absent). */
const char *ac_code(const struct ac_resp *r);
const char *ac_msg(const struct ac_resp *r);

#endif
