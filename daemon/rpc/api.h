/*
 * The HTTP/JSON API (daemon/rpc/API.md is the contract): evhttp on the
 * daemon's event loop, a route table, bearer tokens with read/admin
 * scopes, JSON errors, /healthz and /metrics. Handlers run on the loop
 * and answer synchronously; nothing here blocks but the store and the
 * libvirt hooks. Every answer, evhttp's refusals included (api_gate.h),
 * is JSON and carries an X-Request-Id; a change and its api_change audit
 * event commit together before the answer is sent.
 */
#ifndef PARLEY_DAEMON_API_H
#define PARLEY_DAEMON_API_H

#include <openssl/ssl.h>

#include <event2/event.h>
#include <stdint.h>
#include "common/err.h"
#include "daemon/rpc/metrics.h"
#include "db/store.h"
#include "daemon/listen_guard.h"

struct link_server;
struct keyd;
struct evhttp;
struct evhttp_bound_socket;
struct stream_hub;

/* Bodies larger than this are refused with 413 TOO_LARGE. */
#define API_BODY_MAX (64 * 1024)
/* The one exception: a package for `POST /v1/hosts/{host}/update`, sent
 * as application/octet-stream (API.md says why not base64 in JSON). */
#define API_UPDATE_BODY_MAX (64u << 20)
/* Request line + headers larger than this are refused with 431. */
#define API_HEADERS_MAX (16 * 1024)
/* Token secrets: 32 random bytes shown as PREFIX + 64 hex digits. */
#define API_TOKEN_BYTES 32
#define API_TOKEN_TEXT (4 + 2 * API_TOKEN_BYTES + 1)
/* One-time host join tokens live this long. */
#define API_JOIN_TTL_MS (3600 * 1000)

/*
 * What the API cannot do itself, filled in by main.c. Every member may be
 * NULL: an orch_* hook missing answers 501 NOT_IMPLEMENTED for libvirt
 * partitions; thin_* missing just means agents learn at their next hello.
 * orch_* return 0 or -errno with err set to libvirt's message (502).
 */
struct api_hooks {
	void *ctx;
	int (*orch_define)(void *ctx, const char *host, const char *name,
			   const char *spec_json, struct parley_err *err);
	int (*orch_start)(void *ctx, const char *name, struct parley_err *err);
	int (*orch_stop)(void *ctx, const char *name, struct parley_err *err);
	int (*orch_destroy)(void *ctx, const char *name,
			    struct parley_err *err);
	/* A partition of `host` was defined (committed): send its agent
	 * its commands (create a thin one, measure a libvirt one's files). */
	void (*thin_changed)(void *ctx, const char *host);
	/* Send one command (PARLEY__V1__PARTITION_COMMAND__ACTION__*) for a
	 * thin partition to its host, if connected. */
	void (*thin_command)(void *ctx, const char *host, const char *name,
			     int action);
};

/* The API's connections at once: a quarter of the descriptors (the
 * agents' link another; the store, the join port and the logs keep the
 * rest). */
#define API_CONN_SHARE 4

struct api_server {
	struct listen_guard guard;  /* the listener out of descriptors */
	unsigned conns;             /* open now (the gate counts them) */
	/* IN, set before api_start; not owned. link may be NULL. */
	struct event_base *base;
	struct store *store;
	struct link_server *link;
	struct keyd *keys;          /* the key process: disk keys (may be
				     * NULL: a spec with encrypted disks is
				     * then refused) */
	const char *state_dir;
	struct api_hooks hooks;
	struct ckpt *ckpt;          /* audit checkpoints (daemon/checkpoint.h) */
	SSL_CTX *tls;               /* HTTPS when set (not owned) */
	const char *ui_dir;         /* the console's files, or NULL: /ui/
				     * answers 404 (api_ui.c) */
	int ui_fd;                  /* when ui_dir: that directory, opened
				     * before privileges are dropped (the
				     * parley user may not search the path
				     * to it); files are opened beneath it */
	/* OUT */
	int port;                   /* bound (for --api-listen :0) */
	struct api_metrics metrics;
	/* private */
	struct evhttp *http;
	char gate_path[48];         /* api_gate.h: "/.gate-<random>" */
	uint32_t id_boot;           /* request ids: boot random, sequence */
	uint64_t id_seq;
	struct stream_hub *stream;  /* GET /v1/events (api_stream.h) */
};

/* Bind host:port (an IP address), and create the bootstrap admin token if
 * the store has none: written only to state_dir/admin.token (0600), the
 * log says where; a token that cannot be written is not created. */
int api_start(struct api_server *a, const char *host, int port,
	      struct parley_err *err);
void api_stop(struct api_server *a);

/*
 * A token as text (prefix "prl_" for API tokens, "prj_" for join tokens,
 * then 64 lowercase hex digits) to the digest the store keeps: SHA-256 of
 * the whole text. -EINVAL if the text is not of that form. The join
 * protocol hashes what an agent presents with this before
 * store_join_token_use.
 */
int api_token_digest(const char *text, const char *prefix,
		     uint8_t out[STORE_DIGEST]);
/* A fresh random token: text (API_TOKEN_TEXT bytes) and its digest. */
int api_token_new(const char *prefix, char *text, uint8_t out[STORE_DIGEST]);

#endif
