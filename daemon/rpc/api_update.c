/*
 * POST /v1/hosts/{host}/update: an agent package for one host (issue 12).
 * The body is the package itself as application/octet-stream (the one
 * exception to the JSON-only gate, API.md). The package is checked as the
 * agent will check it -- signature against this daemon's own
 * STATE/release.pub, every hash, product, not newer than the version the
 * host's agent said hello with, replaces_min -- before anything is
 * stored; it is stored once (by SHA-256), the host's update row becomes
 * pending, `update_requested` is audited with the change, and after the
 * commit the host's agent, if connected, is offered it.
 */
#include "daemon/rpc/api_int.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "db/store_updates.h"

#include <errno.h>
#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool octets(struct api_req *q)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(q->r);
	const char *v = evhttp_find_header(h, "Content-Type");
	return v && !strcasecmp(v, "application/octet-stream");
}

static EVP_PKEY *release_key(struct api_req *q)
{
	char path[4200];
	EVP_PKEY *k = NULL;
	if (!q->a->state_dir ||
	    snprintf(path, sizeof(path), "%s/release.pub", q->a->state_dir) >=
		    (int)sizeof(path) ||
	    sign_read_pub(path, &k, NULL) < 0)
		return NULL;
	return k;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

void api_hosts_update(struct api_req *q)
{
	const char *host = q->arg;
	if (!api_name_ok(q, "host name", host))
		return;
	if (!octets(q)) {
		api_error(q, 415, "UNSUPPORTED_MEDIA_TYPE", "send the package "
			  "itself as Content-Type: application/octet-stream");
		return;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
	size_t len = evbuffer_get_length(in);
	if (len > API_UPDATE_BODY_MAX) { /* the gate's cap, again */
		api_error(q, 413, "TOO_LARGE", "package of %zu bytes: at most "
			  "%u", len, API_UPDATE_BODY_MAX);
		return;
	}
	if (len < UPDPKG_HDR) {
		api_error(q, 400, "BAD_PACKAGE", "truncated: %zu bytes is not "
			  "a package", len);
		return;
	}
	struct parley_err err = { 0 };
	struct store_host sh;
	int rc = store_host_get(q->a->store, host, &sh, &err);
	if (rc == -ENOENT) {
		api_error(q, 404, "UNKNOWN_HOST", "no such host \"%s\"", host);
		return;
	}
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	char running[STORE_AGENT_VERSION_MAX];
	struct updpkg_running run;
	updpkg_running_self(&run); /* the ABI: the agent checks its own */
	rc = store_host_agent_get(q->a->store, host, running, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	if (updpkg_version_parse(running, true, &run.version) < 0) {
		api_error(q, 409, "AGENT_VERSION_UNKNOWN", "host \"%s\": its "
			  "agent has not said which version it runs (\"%s\"); "
			  "it must connect first", host, running);
		return;
	}
	/* A rollback waiting for its answer would take the updated agent's
	 * hello for its own outcome (link_rollback.c): one at a time. */
	struct store_rollback rb;
	rc = store_rollback_get(q->a->store, host, &rb, &err);
	if (rc < 0 && rc != -ENOENT) {
		api_fail(q, rc, &err);
		return;
	}
	if (rc == 0 && !strcmp(rb.state, "requested")) {
		api_error(q, 409, "ROLLBACK_IN_PROGRESS", "host \"%s\": a "
			  "rollback (request %llu) waits for its agent's "
			  "answer; update once it is over", host,
			  (unsigned long long)rb.request);
		return;
	}
	EVP_PKEY *pub = release_key(q);
	if (!pub) {
		api_error(q, 409, "NO_RELEASE_KEY", "this daemon has no "
			  "readable release.pub in its state directory "
			  "(parley-pki release-key)");
		return;
	}
	const uint8_t *buf = evbuffer_pullup(in, -1);
	struct updpkg pk;
	enum updpkg_refusal why = UPDPKG_OK;
	rc = buf ? updpkg_verify(buf, len, pub, &run, &pk, &why, &err)
		 : perr(&err, -ENOMEM, "out of memory");
	EVP_PKEY_free(pub);
	if (rc < 0 && why) {
		api_error(q, 422, "PACKAGE_REFUSED", "%s", perr_msg(&err));
		return;
	}
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	uint8_t sha[32];
	unsigned sl = 0;
	if (!EVP_Digest(buf, len, sha, &sl, EVP_sha256(), NULL)) {
		api_error(q, 500, "INTERNAL", "SHA-256 failed");
		return;
	}
	struct store_blob d = { sha, sizeof(sha) };
	rc = store_update_put_package(q->a->store, d, pk.version_s, buf, len,
				      &err);
	if (rc == 0)
		rc = store_update_request(q->a->store, host, d, &err);
	char hx[65], detail[256];
	hex(sha, sizeof(sha), hx);
	snprintf(detail, sizeof(detail), "version %s over %s, %zu bytes, "
		 "sha256 %s", pk.version_s, running, len, hx);
	struct store_audit_in ev = { .host = host, .event = "update_requested",
				     .detail = detail };
	if (rc == 0)
		rc = store_audit_append(q->a->store, &ev, 1, NULL, &err);
	if (rc < 0) {
		api_fail(q, rc, &err);
		return;
	}
	api_subject(q, host, NULL, NULL);
	api_after_update(q, host);
	api_reply(q, 202, json_pack("{s:s,s:s,s:s,s:I,s:s}", "host", host,
				    "version", pk.version_s, "sha256", hx,
				    "size", (json_int_t)len, "state",
				    "pending"));
}
