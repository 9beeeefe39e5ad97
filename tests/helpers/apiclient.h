/* A real parleyd with its HTTP API on a free loopback port, and a tiny
 * blocking HTTP/1.1 client (socket, send, read to EOF) for the API tests. */
#ifndef PARLEY_TEST_APICLIENT_H
#define PARLEY_TEST_APICLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "tests/helpers/fleetd.h"

struct api_client {
	struct fleetd f;
	int port;                 /* the API's */
	char admin[128];          /* the bootstrap token from admin.token */
	bool tls;                 /* the API over HTTPS (ac_start_tls) */
	bool join;                /* the join listener too (ac_start_join) */
	const char *const *extra; /* more parleyd arguments (ac_start_args;
				   * the caller keeps them), kept for restarts */
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
/* As ac_start, the API over HTTPS with parleyd's certificate; ac_raw_tls
 * sends as ac_raw does, over TLS verified against the test CA. */
void ac_start_tls(struct api_client *c);
/* As ac_start, with the join listener (its port in DIR/parleyd.join-port). */
void ac_start_join(struct api_client *c);
void ac_raw_tls(const struct api_client *c, const void *req, size_t len,
		struct ac_resp *r);
/* As ac_raw_tls, the client's end told after the request: 1 a TLS
 * close_notify, 2 a TCP half-close without one (0: none). */
void ac_raw_tls_end(const struct api_client *c, const void *req, size_t len,
		    int end, struct ac_resp *r);
/* kill -9 parleyd (and reap it); then, for ac_kill_restart, start it again
 * on the same state and store, the API on a new port, the agent link on
 * the same port as before (c->f.port), so that agents find it again. */
void ac_kill(struct api_client *c);
void ac_kill_restart(struct api_client *c);

/* A TCP connection to 127.0.0.1:port with a 10 s receive timeout, or -1
 * (no assertion: forked writers use it too). */
int ac_connect(int port);
/* One request (body may be NULL) on a fresh connection with Connection:
 * close; the status, or 0 when no answer came (the daemon gone, a signal).
 * No assertion: forked writers use it. */
int ac_request(int port, const char *token, const char *method,
	       const char *path, const char *body);
/* Send `len` bytes as they are and read the answer to EOF. */
void ac_raw(int port, const void *req, size_t len, struct ac_resp *r);
/* One request with Connection: close; token and body may be NULL. */
void ac_call(struct api_client *c, const char *method, const char *path,
	     const char *token, const char *body, struct ac_resp *r);
void ac_free(struct ac_resp *r);
/* ac_call with the admin token, asserting the status is `want`; the
 * answer kept in *keep (ac_free it) or freed (keep NULL). */
void ac_call_ok(struct api_client *c, const char *method, const char *path,
		const char *body, int want, struct ac_resp *keep);
/* r's error.code and error.message (or "" when absent). */
const char *ac_code(const struct ac_resp *r);
const char *ac_msg(const struct ac_resp *r);

#endif
