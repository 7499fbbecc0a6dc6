/*
 * The response cache on the request path: lookup before the upstream is
 * called, recording while the response is relayed, storing at the end.
 *
 * A request uses the cache when its route sets "cache" and its body is a
 * JSON object sent with POST. Everything else passes through untouched,
 * without an x-tollgate-cache header.
 */
#ifndef TOLLGATE_CACHE_H
#define TOLLGATE_CACHE_H

#include <stddef.h>

struct tg_request;
struct tg_stream_event;
struct tg_cache_worker;

/* The step that follows a lookup that found nothing usable. */
typedef void tg_cache_next_fn(struct tg_request *req);

/*
 * Look req up, after routing and before any upstream attempt. On a hit the
 * response is sent from the cache and next is never called. Otherwise next
 * is called exactly once. The call happens at once for the memory store, a
 * bypass, or when Redis cannot be asked. When Redis is asked, it happens
 * from the event loop within cache.timeout. The caller must not touch req
 * after this call.
 */
void tg_cache_lookup(struct tg_request *req, tg_cache_next_fn *next);

/* The relay adopted the upstream's response head: add x-tollgate-cache. */
void tg_cache_response_head(struct tg_request *req);

/* A stream event is leaving for the client (relay.c, emit_event): record
 * it. Call it before a hook that may drop the event, so that a usage
 * chunk the gateway asked for is kept in the entry. */
void tg_cache_stream_event(struct tg_request *req, struct tg_stream_event *ev);

/* The whole non-streaming upstream body arrived, and the filters ran on
 * it: encode it for storing, checked through its shared parse
 * (tg_relay_response_json). */
void tg_cache_response_body(struct tg_request *req);

/* The request ends (tg_request_done): cancel a lookup still waiting, count
 * the outcome, release state. */
void tg_cache_request_done(struct tg_request *req);

/* The whole response is queued for the client: store it now when it
 * qualifies, before the client has its last byte, so a repeat sent at once
 * (on another connection, maybe to another worker) finds the entry. */
void tg_cache_response_complete(struct tg_request *req);

/* "hit", "miss", "bypass" or "error", as x-tollgate-cache sends it, for a
 * request that reached the cache of its route, else NULL; for the access
 * log, metrics and traces. */
const char *tg_cache_status(const struct tg_request *req);

/* Release a worker's cache state (its Redis connection). Call it on the
 * worker's thread, or after the thread ended, before its event base is
 * freed. */
void tg_cache_worker_free(struct tg_cache_worker *cw);

#endif
