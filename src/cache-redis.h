/*
 * The Redis cache store: one connection per worker, driven by hiredis' async
 * API on the worker's event base.
 *
 * hiredis 0.14 has no timeouts in its async API, so this module keeps them:
 * a connect timer per connection attempt, and one timer for the oldest
 * command waiting for its reply (Redis replies in order, so the oldest one
 * is always the first to become late). A late reply means Redis is stopped
 * or overloaded: the connection is closed, every waiting command fails at
 * once, and a new connection is tried after a back-off that doubles from
 * 100 ms to 2 s. While there is no connection, commands fail immediately,
 * so a request never waits longer than one timeout for the cache. Errors
 * are counted, and logged as warnings at most once per 5 s per worker with
 * the number of those left out.
 *
 * A new connection sends AUTH and SELECT when the settings need them, and
 * holds back GET and SET until both succeed, so that Redis never runs one
 * as the wrong user or in the wrong database. When either fails, the held
 * commands fail, and the connection is closed and retried with the same
 * back-off. That failure is logged once, and again only when its message
 * changes.
 */
#ifndef TOLLGATE_CACHE_REDIS_H
#define TOLLGATE_CACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "cache-t.h"
#include "metrics.h"

struct event_base;
struct tg_cache_redis;
struct tg_cache_redis_cmd;

enum tg_cache_redis_status {
	TG_CACHE_REDIS_FOUND,
	TG_CACHE_REDIS_NOT_FOUND,
	TG_CACHE_REDIS_FAILED,          /* error reply, timeout or no connection */
};

/* Called once per started GET, on the worker thread. data is valid only
 * during the call. */
typedef void tg_cache_redis_get_cb(void *arg, enum tg_cache_redis_status status,
                                   const char *data, size_t len);

/* Create the client of one worker and start connecting to the Redis that
 * cfg names. The settings are copied. Returns NULL when out of memory. */
struct tg_cache_redis *tg_cache_redis_new(struct event_base *base,
                                          const struct tg_cache_config *cfg);

/* Close the connection (waiting commands fail, their callbacks run) and free
 * r. Must not be called from a tg_cache_redis_get_cb. */
void tg_cache_redis_free(struct tg_cache_redis *r);

/* 1 when r talks to the Redis that cfg names, with the same credentials,
 * database and timeouts. */
int tg_cache_redis_matches(const struct tg_cache_redis *r, const struct tg_cache_config *cfg);

/*
 * Start GET of the entry for key. Returns a handle for
 * tg_cache_redis_cancel(), or NULL when the command could not be sent (no
 * connection now, AUTH or SELECT failed on it, or out of memory): cb is
 * then never called. Otherwise cb is called exactly once, within the
 * command timeout, unless cancelled.
 */
struct tg_cache_redis_cmd *tg_cache_redis_get(struct tg_cache_redis *r,
                                              const unsigned char key[TG_CACHE_KEY_LEN],
                                              tg_cache_redis_get_cb *cb, void *arg);

/* The requester is gone: cb will not be called. The reply, when it comes,
 * is dropped. */
void tg_cache_redis_cancel(struct tg_cache_redis_cmd *cmd);

/* Send SET key value PX ttl_ms without waiting for it; failures are only
 * counted and logged. */
void tg_cache_redis_set(struct tg_cache_redis *r, const unsigned char key[TG_CACHE_KEY_LEN],
                        const char *value, size_t len, uint64_t ttl_ms);

/* Append the counters of every worker's client to a /metrics scrape:
 * errors, timeouts among them, and connections made. Any thread. */
int tg_cache_redis_write_metrics(struct evbuffer *out, enum tg_metrics_format format);

/* The Redis key of a cache key: "tollgate:cache:" and 64 hex digits. */
#define TG_CACHE_REDIS_PREFIX "tollgate:cache:"
#define TG_CACHE_REDIS_KEY_LEN (sizeof(TG_CACHE_REDIS_PREFIX) - 1 + TG_CACHE_KEY_HEX_LEN)

#endif
