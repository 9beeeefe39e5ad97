/*
 * GET /v1/events: the audit trail as Server-Sent Events (API.md, "Event
 * stream"). Every row committed to the trail goes to every stream client
 * as `id: N / event: audit / data: {row}`; a client may resume after an
 * id (`?after=N` or the `Last-Event-ID` header EventSource sends) if it
 * is at most STREAM_REPLAY_MAX rows behind. Rows are found through the
 * store's commit hook (db/store_watch.h), read once per loop turn and
 * formatted once for all clients.
 *
 * The store is each client's queue: a client is written rows while what
 * its connection holds unwritten is below STREAM_QUEUE_LOW (the socket's
 * own buffer is made small, so the kernel does not hold megabytes for
 * it), and is given more as it drains, at its own pace. A client that
 * is full and more than STREAM_LAG_MAX rows behind when a row is
 * committed is sent `event: dropped` with the reason and its connection
 * ended: a slow reader costs bounded memory and never holds back the
 * others or the loop.
 */
#ifndef PARLEY_DAEMON_API_STREAM_H
#define PARLEY_DAEMON_API_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct api_server;
struct evhttp_request;

/* A client is written more only while it has fewer bytes than this
 * unwritten (it may then hold this plus one page, STREAM_PAGE_BYTES). */
#define STREAM_QUEUE_LOW (128 * 1024)
#define STREAM_PAGE_BYTES (64 * 1024)
/* What a chunk costs beyond its bytes while it waits (api_stream.c). */
#define STREAM_CHUNK_COST 1280
/* Rows behind the head at which a full client is dropped. */
#define STREAM_LAG_MAX 10000
/* The socket send buffer asked for on a stream connection. */
#define STREAM_SNDBUF (32 * 1024)
/* Rows a client may ask to be replayed on connecting (409 beyond). */
#define STREAM_REPLAY_MAX STREAM_LAG_MAX
/* Stream clients at once (503 beyond). */
#define STREAM_CLIENTS_MAX 512
/* A comment line this often: proxies keep the stream open, a dead peer is
 * found, and rows written by another process are looked for. */
#define STREAM_BEAT_MS 15000

/* api_start/api_stop: the hub and its commit watch. */
int api_stream_start(struct api_server *a);
void api_stream_stop(struct api_server *a);

/* Clients connected now (the handler's limit check; 0 without a hub). */
unsigned api_stream_clients(const struct api_server *a);

/* on_request, for a request the handler accepted (api_req.stream): the
 * response head and the held first bytes are sent, rows after `after`
 * up to `head` (the trail's head the handler saw) are replayed as the
 * client reads them (then `event: ready`), and the
 * request stays open. `id` is the request id. -ENOMEM before anything
 * was sent: the caller answers. */
int api_stream_attach(struct api_server *a, struct evhttp_request *r,
		      uint64_t after, uint64_t head, const char *id,
		      const char *first, size_t first_len);

#endif
