/*
 * Prometheus metrics.
 *
 * Each worker records into its own shard (struct tg_metrics_shard) without
 * a lock. Counters and histogram buckets are relaxed C11 atomics that only
 * the owning worker writes, so the admin thread can read them while they
 * change. A scrape, on the admin (main) thread, sums the shards.
 *
 * Label values come only from the configuration. They are route, backend,
 * filter and rule names, and configured model names: the exact
 * match.model values of routes and the models of the pricing table. Any
 * other model is counted as "other". A shard keeps one table of series per
 * configuration snapshot, laid out by config position, so recording is
 * index arithmetic and one binary search for the model name, with no
 * allocation and no formatting. Only the first request a worker serves
 * under a new snapshot allocates, to build that snapshot's table.
 *
 * Reload: requests keep recording into the table of the snapshot they
 * started under. Once a replaced table has no request left, its worker
 * folds its series, by label values, into an archive that scrapes add in,
 * and frees it. So counters never go back across a reload, and the series
 * of a route, backend or model that a reload removed stay (frozen) until a
 * restart. The freed table's reference no longer keeps the old config (its
 * plugins, models and regexes) alive, whether or not anyone scrapes.
 *
 * The request-path calls below take the request and do nothing unless
 * tg_metrics_request_start() bound it to a table.
 */
#ifndef TOLLGATE_METRICS_H
#define TOLLGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics-t.h"

struct evbuffer;
struct tg_request;
struct tg_stream_event;
struct tg_worker;

/* --- worker side ------------------------------------------------------------ */

/* Create the shard of a worker and register it for scrapes. NULL when out
 * of memory. */
struct tg_metrics_shard *tg_metrics_shard_new(int worker_id);

/* Unregister and free a shard whose worker stopped, keeping its counts for
 * later scrapes. No request may still refer to it. */
void tg_metrics_shard_free(struct tg_metrics_shard *shard);

/* The worker that owns shard took a new configuration. Retire the tables
 * of older snapshots that no request uses, and the others as their last
 * request ends, not at the worker's next request. The table of the new
 * snapshot is built by the worker's first request under it, so a worker
 * that takes no traffic builds none. A shard of NULL is ignored. */
void tg_metrics_config_swapped(struct tg_metrics_shard *shard);

/*
 * Main thread, for each config loaded, at start and at each reload, before
 * the workers get it. Take cfg as the config whose backends
 * tollgate_backend_up shows, and whose pricing names the currency. Make the
 * session table when cfg enables sessions and there is none yet: the first
 * config that enables them sizes it. When there is one, log a warning if
 * cfg sets another sessions.max_sessions, which takes effect after a
 * restart.
 */
void tg_metrics_config_loaded(struct tg_config *cfg);

/* --- backend host names (worker threads) ------------------------------------------- */

/* Events of a worker's resolver for a backend host name (resolve.h). */
enum tg_resolver_event {
	TG_RESOLVER_QUERY,              /* a query for the A and AAAA records */
	TG_RESOLVER_FAILURE,            /* a query that found no address */
	TG_RESOLVER_STALE,              /* a connect that used an expired answer */
	TG_RESOLVER_EVENTS
};

/* The counters of one host name, summed over every worker. */
struct tg_resolver_counters;

/* Return the counters of a host name, made on its first use. Takes the
 * registry lock, so a worker calls it once per name, not per connect.
 * Past TG_RESOLVER_NAMES_MAX names, every further name shares the
 * counters labelled "other", which keeps the label values bounded. Never
 * NULL. */
struct tg_resolver_counters *tg_metrics_resolver_counters(const char *name);

/* Count one event of a host name, from any thread. A NULL c counts nothing. */
void tg_metrics_resolver_count(struct tg_resolver_counters *c, enum tg_resolver_event event);

/* --- request path (worker thread) ----------------------------------------------- */

/* A request context was created (tg_request_new): bind it to the table of
 * its config and count it in flight. */
void tg_metrics_request_start(struct tg_request *req);

/* The request was read whole and goes to routing: the gateway's own time
 * starts here. */
void tg_metrics_request_read(struct tg_request *req);

/*
 * Before the first upstream attempt of a streaming chat or completions
 * request: when the client did not ask for stream usage, add
 * "stream_options": {"include_usage": true} to the body, so the provider
 * reports token counts, and remember to drop the usage chunk it adds.
 * Rewrites req->body and the request tree (tg_request_json()). Returns
 * 0, or -1 when out of memory (the body is then left as it was).
 */
int tg_metrics_stream_usage(struct tg_request *req);

/* Record the first token of a streamed response from the cache, whose
 * events all leave in one write at now. The client sees that token, so its
 * time is observed. The gaps between its tokens are not the model's, so no
 * time between tokens is. */
void tg_metrics_cached_stream(struct tg_request *req, uint64_t now);

/* The upstream exchange of the current attempt ended: its response was
 * received whole, or it failed. Attempts themselves are read from
 * req->attempts when the request ends. */
void tg_metrics_upstream_done(struct tg_request *req);

/* backend, or one model at it, was taken out of rotation: a 429, 503 or 529
 * cooldown, or an ejection. */
void tg_metrics_backend_cooldown(struct tg_request *req, const struct tg_backend *backend);

/* Count a failed attempt of req that was not retried because its route's
 * retry budget was exhausted. */
void tg_metrics_retry_budget_exhausted(struct tg_request *req);

/*
 * A stream event is about to leave for the client. Counts time to first
 * token, the gap since the previous content event and the provider's usage.
 * When tg_metrics_stream_usage() asked for usage, takes the `"usage": null`
 * member the provider then adds out of ev's bytes, digest and tree, and returns 1
 * for the usage chunk itself, which must not be sent. Returns 0 otherwise.
 */
int tg_metrics_stream_event(struct tg_request *req, struct tg_stream_event *ev);

/* A whole non-streaming response body from the upstream arrived: take its
 * usage. It is read with the reply digest, so a response that no filter,
 * cache or trace reads is never built as a tree. */
void tg_metrics_response_body(struct tg_request *req);

/* The request ends (tg_request_done), after its last attempt was ended:
 * count it, its attempts, durations, tokens, cost, cache lookup, filter
 * decisions, abandonment and session turn, and release its table. The
 * durations end at req->done_ns. */
void tg_metrics_request_end(struct tg_request *req);

/* --- scrape (main thread) ----------------------------------------------------------- */

enum tg_metrics_format {
	TG_METRICS_TEXT,                /* Prometheus text format 0.0.4 */
	TG_METRICS_OPENMETRICS,         /* OpenMetrics 1.0.0 */
};

/* The format that a scraper's Accept header (may be NULL) prefers. */
enum tg_metrics_format tg_metrics_negotiate(const char *accept);

/* The Content-Type header value of a format. */
const char *tg_metrics_content_type(enum tg_metrics_format format);

/* Sum every shard and append the families to out. Families of other
 * modules may follow; tg_metrics_scrape_end() closes the exposition.
 * Returns 0, or -1 when out of memory (out may then hold part of it). */
int tg_metrics_scrape(struct evbuffer *out, enum tg_metrics_format format);

/* Append one counter family of another module, without labels, after
 * tg_metrics_scrape(); name ends in _total. Returns 0, or -1 when out of
 * memory. */
int tg_metrics_write_counter(struct evbuffer *out, enum tg_metrics_format format,
                             const char *name, const char *help, uint64_t value);

/* Append one gauge family of another module, without labels, as above. */
int tg_metrics_write_gauge(struct evbuffer *out, enum tg_metrics_format format,
                           const char *name, const char *help, uint64_t value);

/* Close an exposition: OpenMetrics ends with "# EOF", the text format with
 * the last family. Returns 0, or -1 when out of memory. */
int tg_metrics_scrape_end(struct evbuffer *out, enum tg_metrics_format format);

#endif
