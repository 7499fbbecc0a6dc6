/*
 * The response cache on the request path. See cache.h for the contract and
 * tollgate.json(5), section CACHE, for the behaviour users see.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "cache.h"
#include "cache-entry.h"
#include "cache-header.h"
#include "cache-key.h"
#include "cache-memory.h"
#include "cache-redis.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "request.h"
#include "trace.h"
#include "worker.h"

enum cache_status {
	CACHE_BYPASS,                   /* not looked up */
	CACHE_MISS,
	CACHE_HIT,
	CACHE_ERROR,                    /* the store failed; on as a miss */
};

static const char *const status_names[] = {"bypass", "miss", "hit", "error"};

/* Per worker: the Redis connection, and counters for metrics. */
struct tg_cache_worker {
	struct tg_cache_redis *redis;
	int in_callback;                /* inside a Redis reply of ours */
	uint64_t hits, misses, bypasses, stores;
};

/* Per request. */
struct tg_cache_request {
	enum cache_status status;
	int store;                      /* store the response if it qualifies */
	int only_if_cached;             /* Cache-Control: only-if-cached */
	int want_usage;                 /* stream_options.include_usage was set */
	unsigned char key[TG_CACHE_KEY_LEN];
	uint64_t ttl_ms;

	tg_cache_next_fn *next;         /* while a Redis lookup is waiting */
	struct tg_cache_redis_cmd *pending;

	int recording;                  /* parser and record are set up */
	struct tg_sse_parser parser;    /* re-reads the events the client gets */
	const json_t *event_json;       /* the relay's parse of the event being read */
	int event_parsed;               /* set while event_json is the parse; NULL is not JSON */
	struct tg_cache_record record;
	char *entry;                    /* encoded non-streaming entry */
	size_t entry_len;
};

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
monotonic_ms(void)
{
	return tg_now_ns() / 1000000;
}

static struct tg_cache_worker *
worker_state(struct tg_worker *w)
{
	if (w->cache == NULL)
		w->cache = calloc(1, sizeof(*w->cache));
	return w->cache;
}

void
tg_cache_worker_free(struct tg_cache_worker *cw)
{
	if (cw == NULL)
		return;
	tg_cache_redis_free(cw->redis);
	free(cw);
}

const char *
tg_cache_status(const struct tg_request *req)
{
	return req->cache != NULL ? status_names[req->cache->status] : NULL;
}

/* --- request headers ---------------------------------------------------------- */

/* 1 when a Cache-Control header of the request lists directive. */
static int
cache_control_has(const struct tg_request *req, const char *directive)
{
	for (size_t i = 0; i < req->headers.count; i++) {
		const struct tg_header *h = &req->headers.items[i];

		if (tg_header_is(h, "Cache-Control") &&
		    tg_header_list_has(h->value, directive))
			return 1;
	}
	return 0;
}

/* The client asked for the usage chunk of a stream. */
static int
wants_usage(const struct tg_request *req)
{
	return req->stream && req->stream_options == TG_STREAM_OPTIONS_USAGE;
}

/* --- serving a hit ----------------------------------------------------------- */

/* Record the first token of a streamed hit in the metrics and the trace,
 * since all its events leave in one write now. The access log reads the
 * time the metrics keep. Call it before the response goes out, because
 * sending it may end req. */
static void
record_first_token(struct tg_request *req)
{
	uint64_t now = tg_now_ns();

	tg_metrics_cached_stream(req, now);
	tg_trace_cache_first_token(req, now);
}

/*
 * Write into lines the header lines of a hit on e, each ending in CRLF:
 * the cache's own, then the stored response headers, and into *type the
 * Content-Type. The stored Content-Type and Cache-Control describe the
 * stored kind of response, so a converted one gets the gateway's type,
 * and a stream the no-cache that streams are sent with. Returns 0, or -1
 * when out of memory.
 */
static int
hit_headers(const struct tg_request *req, const struct tg_cache_entry *e,
            struct evbuffer *lines, const char **type)
{
	int as_stored = tg_cache_entry_kind_serves(e, req->stream);
	int64_t age = (wall_ms() - e->created_ms) / 1000;
	int cache_control = 0;
	int rc = 0;

	*type = req->stream ? TG_CACHE_TYPE_STREAM : TG_CACHE_TYPE_JSON;
	rc |= evbuffer_add_printf(lines, "x-tollgate-cache: hit\r\nAge: %lld\r\n",
	                          (long long)(age > 0 ? age : 0)) < 0;
	for (size_t i = 0; i < e->headers.count; i++) {
		const struct tg_header *hd = &e->headers.items[i];

		if (tg_header_named(hd, "Content-Type", 12)) {
			if (as_stored)
				*type = hd->value;
			continue;
		}
		if (tg_header_named(hd, "Cache-Control", 13)) {
			if (!as_stored)
				continue;
			cache_control = 1;
		}
		rc |= evbuffer_add_printf(lines, "%s: %s\r\n", hd->name, hd->value) < 0;
	}
	if (req->stream && !cache_control)
		rc |= evbuffer_add(lines, "Cache-Control: no-cache\r\n", 25);
	rc |= evbuffer_add(lines, "", 1);       /* the NUL that ends the lines */
	return rc == 0 ? 0 : -1;
}

/* Send the rendered body of a hit on e, with its headers, as a stream or
 * as one JSON body. Returns 0, or -1 when out of memory. */
static int
send_hit(struct tg_request *req, const struct tg_cache_entry *e, struct evbuffer *body)
{
	struct tg_cache_request *st = req->cache;
	struct evbuffer *lines = evbuffer_new();
	const char *type;
	const char *text;

	if (lines == NULL || hit_headers(req, e, lines, &type) != 0) {
		if (lines != NULL)
			evbuffer_free(lines);
		return -1;
	}
	text = (const char *)evbuffer_pullup(lines, -1);
	st->status = CACHE_HIT;
	st->store = 0;
	if (req->stream) {
		record_first_token(req);
		tg_relay_local_stream(req, type, text, body);
	} else {
		tg_relay_local_response_typed(req, 200, type, text, body);
	}
	evbuffer_free(lines);
	return 0;
}

/*
 * Send req's response from an encoded entry. Returns 0 when the response
 * went out, or -1 when the entry is invalid or cannot serve this request
 * (a miss).
 */
static int
serve_entry(struct tg_request *req, const char *data, size_t len)
{
	struct tg_cache_request *st = req->cache;
	struct tg_cache_entry entry;
	struct evbuffer *body;
	int rc;

	if (tg_cache_entry_decode(data, len, &entry) != 0) {
		tg_log_request(req, TG_LOG_WARN, "cache: stored entry is invalid; treated as a miss");
		return -1;
	}
	body = evbuffer_new();
	rc = body != NULL ? tg_cache_entry_render(&entry, req->stream, st->want_usage, body) : -1;
	if (rc == 0)
		rc = send_hit(req, &entry, body);
	if (body != NULL)
		evbuffer_free(body);
	tg_cache_entry_free(&entry);
	return rc;
}

static void
count_outcome(struct tg_request *req)
{
	struct tg_cache_worker *cw = req->worker->cache;

	if (cw == NULL)
		return;
	if (req->cache->status == CACHE_HIT)
		cw->hits++;
	else if (req->cache->status == CACHE_MISS || req->cache->status == CACHE_ERROR)
		cw->misses++;
	else
		cw->bypasses++;
}

/*
 * Reply 504 to a request with Cache-Control: only-if-cached that missed,
 * or that the cache does not take, without calling the backends, as RFC
 * 9111 section 5.2.1.7 recommends for a cache. The body has the error shape
 * of the request's API, like every error of the gateway. req->error stays
 * TG_OK, so that the logs and metrics count no failure.
 */
static void
answer_not_cached(struct tg_request *req)
{
	struct evbuffer *body = evbuffer_new();
	char header[48];

	/* The status is a miss after a lookup and a bypass for a request the
	 * cache does not take, and the header matches the access log. */
	snprintf(header, sizeof(header), "x-tollgate-cache: %s\r\n", tg_cache_status(req));
	req->cause = TG_CAUSE_GATEWAY;
	req->phase = TG_PHASE_LOCAL;
	if (body != NULL)
		tg_error_shaped_body(body, tg_request_error_shape(req), TG_E_NOT_CACHED, NULL,
		                     NULL);
	tg_relay_local_response(req, 504, header, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* Nothing usable was found: on to the backends, unless forbidden. */
static void
miss(struct tg_request *req, tg_cache_next_fn *next)
{
	if (req->cache->only_if_cached)
		answer_not_cached(req);
	else
		next(req);
}

static void
lookup_memory(struct tg_request *req, tg_cache_next_fn *next)
{
	struct tg_cache_request *st = req->cache;
	struct tg_cache_blob *blob = tg_cache_memory_get(req->config->cache->memory, st->key,
	                                                 monotonic_ms());
	int served = blob != NULL && serve_entry(req, blob->data, blob->len) == 0;

	tg_cache_blob_unref(blob);
	if (!served)
		miss(req, next);
}

static void
on_redis_reply(void *arg, enum tg_cache_redis_status status, const char *data, size_t len)
{
	struct tg_request *req = arg;
	struct tg_cache_request *st = req->cache;
	struct tg_cache_worker *cw = req->worker->cache;
	tg_cache_next_fn *next = st->next;

	st->pending = NULL;
	st->next = NULL;

	/* The response may end the request, and the client's next request may
	 * then be dispatched from inside this callback. The counter keeps that
	 * request's lookup from freeing the connection that calls us. */
	cw->in_callback++;
	if (status == TG_CACHE_REDIS_FAILED)
		st->status = CACHE_ERROR;
	if (status != TG_CACHE_REDIS_FOUND || serve_entry(req, data, len) != 0)
		miss(req, next);
	cw->in_callback--;
}

/* The worker's Redis client for the request's config: created on first
 * use, replaced when a reload changed the Redis settings. NULL when none
 * can be had now. */
static struct tg_cache_redis *
worker_redis(struct tg_request *req, struct tg_cache_worker *cw)
{
	const struct tg_cache_config *cfg = req->config->cache;

	if (cw->redis != NULL && !tg_cache_redis_matches(cw->redis, cfg)) {
		/* Replacing it fails its waiting lookups through their
		 * callbacks; that must not happen inside one of them. */
		if (cw->in_callback > 0)
			return NULL;
		tg_cache_redis_free(cw->redis);
		cw->redis = NULL;
	}
	if (cw->redis == NULL)
		cw->redis = tg_cache_redis_new(req->worker->base, cfg);
	return cw->redis;
}

static void
lookup_redis(struct tg_request *req, tg_cache_next_fn *next)
{
	struct tg_cache_request *st = req->cache;
	struct tg_cache_worker *cw = worker_state(req->worker);
	struct tg_cache_redis *redis = cw != NULL ? worker_redis(req, cw) : NULL;

	st->next = next;
	st->pending = redis != NULL ? tg_cache_redis_get(redis, st->key, on_redis_reply, req)
	                            : NULL;
	if (st->pending == NULL) {
		st->next = NULL;
		st->status = CACHE_ERROR;       /* no connection to Redis now */
		miss(req, next);
	}
}

/* --- lookup ------------------------------------------------------------------ */

/* Set up the request's cache state: key, TTL, and what Cache-Control
 * allows. Returns 0, or -1 when the request cannot use the cache. */
static int
prepare(struct tg_request *req)
{
	const struct tg_cache_config *cfg = req->config->cache;
	struct tg_cache_request *st = req->cache;
	char tenant[TG_CACHE_KEY_HEX_LEN + 1];
	const char *query = strchr(req->url, '?');
	struct tg_cache_key_scope scope = {
		.path = req->path, .query = query != NULL ? query + 1 : NULL,
		.route = req->route->name, .tenant = tenant,
		.filters = req->route->cache->filters,
		.ignore_fields = cfg->ignore_fields, .n_ignore_fields = cfg->n_ignore_fields,
		.headers = &req->headers,
	};
	int rc = 0;

	/* no-store alone skips the lookup too. With only-if-cached the client
	 * asks for a stored response or none (RFC 9111 section 5.2.1.7), so the
	 * lookup goes on, and only-if-cached already stores nothing. */
	if (cache_control_has(req, "no-store") && !cache_control_has(req, "only-if-cached"))
		return -1;
	if (tg_cache_tenant(&req->headers, cfg->tenant_header,
	                    req->key != NULL ? req->key->name : NULL, tenant) != 0 ||
	    (rc = tg_cache_key((const char *)evbuffer_pullup(req->body, -1), req->body_len,
	                       &scope, st->key)) == -1) {
		tg_log_request(req, TG_LOG_WARN, "cache: out of memory computing the key; "
		               "the request bypasses the cache");
		return -1;
	}
	if (rc == TG_CACHE_KEY_UNKEYED) {
		/* The dispatch passes no such body here (tg_cache_lookup()). */
		tg_log_request(req, TG_LOG_WARN, "cache: the request body has no cache key (it is "
		               "not a JSON object that the gateway reads with 64-bit integers); "
		               "the request bypasses the cache");
		return -1;
	}
	if (rc == TG_CACHE_KEY_NOT_UTF8) {
		tg_log_request(req, TG_LOG_INFO, "cache: the path, the query or an "
		               "anthropic-version, anthropic-beta or openai-beta header is not "
		               "UTF-8; the request bypasses the cache");
		return -1;
	}

	st->only_if_cached = cache_control_has(req, "only-if-cached");
	st->store = !st->only_if_cached;
	st->want_usage = wants_usage(req);
	st->ttl_ms = req->route->cache->ttl != 0 ? req->route->cache->ttl : cfg->ttl;
	return 0;
}

/* Pass on a request that the cache does not take: another method, a body
 * that is not a JSON object (an upload), Cache-Control: no-store, or a key
 * that cannot be computed. It still gets a bypass header, and
 * only-if-cached still keeps it from the backends. */
static void
bypass(struct tg_request *req, tg_cache_next_fn *next)
{
	if (cache_control_has(req, "only-if-cached"))
		answer_not_cached(req);
	else
		next(req);
}

void
tg_cache_lookup(struct tg_request *req, tg_cache_next_fn *next)
{
	const struct tg_cache_config *cfg = req->config->cache;

	assert(req->cache == NULL);
	/* A body with an integer beyond 64 bits is read with its integers as
	 * reals (tg_request_json()): two such bodies may differ in digits that
	 * a double drops, so they would share a key. The key reads the body's
	 * text, which jansson has read or the scan vouched for, so the tree
	 * is not built for it. */
	if (req->route == NULL || req->route->cache == NULL || cfg == NULL) {
		next(req);
		return;
	}
	req->cache = calloc(1, sizeof(*req->cache));
	if (req->cache == NULL) {
		next(req);
		return;
	}
	req->cache->status = CACHE_BYPASS;

	if (req->method_id != HTTP_POST || !tg_request_body_is_object(req) ||
	    req->body_ints_as_reals || prepare(req) != 0) {
		bypass(req, next);
		return;
	}
	if (cache_control_has(req, "no-cache")) {
		miss(req, next);
		return;
	}

	req->cache->status = CACHE_MISS;
	if (cfg->store == TG_CACHE_STORE_MEMORY)
		lookup_memory(req, next);
	else
		lookup_redis(req, next);
}

/* --- recording the response --------------------------------------------------- */

void
tg_cache_response_head(struct tg_request *req)
{
	const char *status = tg_cache_status(req);

	if (status != NULL)
		tg_headers_add(&req->response.headers, "x-tollgate-cache", 16, status,
		               strlen(status));
}

/* Return the largest entry the store takes, and name in *setting (when
 * not NULL) the setting that bounds it. The memory store gives an entry at
 * most a shard. Redis takes cache.max_entry_bytes, because the SET of a
 * larger value could outlast cache.timeout and fail the lookups queued
 * behind it on the connection. */
static size_t
entry_bound(const struct tg_request *req, const char **setting)
{
	const struct tg_cache_config *cfg = req->config->cache;
	size_t max = req->config->limits.max_response_body;
	const char *name = "limits.max_response_body";

	if (cfg->store == TG_CACHE_STORE_MEMORY && cfg->max_bytes / TG_CACHE_MEMORY_SHARDS < max) {
		max = cfg->max_bytes / TG_CACHE_MEMORY_SHARDS;
		name = "a sixteenth of cache.max_bytes";
	} else if (cfg->store == TG_CACHE_STORE_REDIS && cfg->max_entry_bytes < max) {
		max = cfg->max_entry_bytes;
		name = "cache.max_entry_bytes";
	}
	if (setting != NULL)
		*setting = name;
	return max;
}

static size_t
max_entry_bytes(const struct tg_request *req)
{
	return entry_bound(req, NULL);
}

/* Log a response that was not stored for its size: len bytes, or 0 for a
 * stream whose recording stopped at the bound. Unlike the other reasons,
 * the operator can change this one, so it is logged at info. That is one
 * line per response larger than the bound, whose transfer alone takes far
 * longer than writing the line. */
static void
log_too_large(struct tg_request *req, size_t len)
{
	const char *setting;
	size_t max = entry_bound(req, &setting);

	if (len == 0)
		tg_log_request(req, TG_LOG_INFO, "cache: response not stored: the stream is "
		               "larger than the %zu bytes one entry may take (%s)", max, setting);
	else
		tg_log_request(req, TG_LOG_INFO, "cache: response not stored: %zu bytes, more "
		               "than the %zu bytes one entry may take (%s)", len, max, setting);
}

/* The parser found the event in the bytes of one relayed event, whose
 * data the relay parsed already. Should those bytes ever hold a second
 * event, its data is parsed here. */
static int
on_recorded_event(void *arg, const struct tg_sse_event *ev)
{
	struct tg_cache_request *st = arg;
	json_t *own = NULL;
	const json_t *chunk = st->event_json;

	if (!st->event_parsed)
		chunk = own = json_loadb(ev->data, ev->data_len, 0, NULL);
	st->event_parsed = 0;
	tg_cache_record_event(&st->record, ev->type, ev->type_len, ev->data, ev->data_len, chunk);
	json_decref(own);
	return 0;
}

void
tg_cache_stream_event(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_cache_request *st = req->cache;
	size_t len;

	if (st == NULL || !st->store || req->response.status != 200)
		return;
	if (!st->recording) {
		st->recording = 1;
		tg_cache_record_init(&st->record, max_entry_bytes(req));
		tg_sse_init(&st->parser, 0, on_recorded_event, NULL, st);
	}
	if (st->record.unstorable != NULL)
		return;

	/* The relay hands out whole events as the client gets them; a parser
	 * of our own turns their bytes back into fields. The event's JSON is
	 * the relay's parse, which relay.h keeps the same as the bytes. */
	len = evbuffer_get_length(ev->raw);
	st->event_json = tg_stream_event_json(ev);
	st->event_parsed = 1;
	if (tg_sse_feed(&st->parser, (const char *)evbuffer_pullup(ev->raw, -1), len) != 0)
		st->record.unstorable = "an event is larger than the parser's limit";
	st->event_parsed = 0;
}

void
tg_cache_response_body(struct tg_request *req)
{
	struct tg_cache_request *st = req->cache;
	struct evbuffer *body = req->response.body;
	const char *reason = NULL;
	size_t len;

	if (st == NULL || !st->store || req->response.status != 200 || st->entry != NULL ||
	    body == NULL)
		return;
	len = evbuffer_get_length(body);
	if (len > max_entry_bytes(req)) {
		log_too_large(req, len);
		return;
	}
	st->entry = tg_cache_entry_from_body((const char *)evbuffer_pullup(body, -1), len,
	                                     tg_relay_response_json(req), &req->response.headers,
	                                     wall_ms(), &st->entry_len, &reason);
	if (st->entry == NULL)
		tg_log_request(req, TG_LOG_DEBUG, "cache: response not stored: %s", reason);
}

/* --- storing ------------------------------------------------------------------- */

/* The encoded entry of a complete, successful response, or NULL. */
static char *
entry_to_store(struct tg_request *req, size_t *len)
{
	struct tg_cache_request *st = req->cache;
	const char *reason = "no response was recorded";
	char *entry;

	if (req->error != TG_OK || req->cause != TG_CAUSE_NONE || req->response.status != 200)
		return NULL;
	if (st->entry != NULL) {
		entry = st->entry;
		*len = st->entry_len;
		st->entry = NULL;
		return entry;
	}
	if (st->recording) {
		entry = tg_cache_entry_from_record(&st->record, &req->response.headers, wall_ms(),
		                                   len, &reason);
		if (entry != NULL)
			return entry;
		if (st->record.too_large) {
			log_too_large(req, 0);
			return NULL;
		}
	}
	tg_log_request(req, TG_LOG_DEBUG, "cache: response not stored: %s", reason);
	return NULL;
}

/* Whether the encoded entry fits the store. The recorder bounds the
 * response's own bytes, and the envelope adds its header to them. */
static int
entry_fits(struct tg_request *req, size_t len)
{
	if (len <= max_entry_bytes(req))
		return 1;
	log_too_large(req, len);
	return 0;
}

static void
store_entry(struct tg_request *req, const char *entry, size_t len)
{
	struct tg_cache_request *st = req->cache;
	const struct tg_cache_config *cfg = req->config->cache;
	struct tg_cache_worker *cw = worker_state(req->worker);
	struct tg_cache_blob *blob;

	if (cfg->store == TG_CACHE_STORE_REDIS) {
		struct tg_cache_redis *redis = cw != NULL ? worker_redis(req, cw) : NULL;

		if (redis != NULL)
			tg_cache_redis_set(redis, st->key, entry, len, st->ttl_ms);
	} else {
		blob = tg_cache_blob_new(entry, len);
		if (blob != NULL)
			tg_cache_memory_put(cfg->memory, st->key, blob, st->ttl_ms, monotonic_ms());
		tg_cache_blob_unref(blob);
	}
	if (cw != NULL)
		cw->stores++;
}

void
tg_cache_response_complete(struct tg_request *req)
{
	struct tg_cache_request *st = req->cache;
	size_t len = 0;
	char *entry;

	if (st == NULL || !st->store || st->status == CACHE_HIT)
		return;
	st->store = 0;
	entry = entry_to_store(req, &len);
	if (entry != NULL && entry_fits(req, len))
		store_entry(req, entry, len);
	free(entry);
}

void
tg_cache_request_done(struct tg_request *req)
{
	struct tg_cache_request *st = req->cache;

	if (st == NULL)
		return;
	if (st->pending != NULL)
		tg_cache_redis_cancel(st->pending);
	count_outcome(req);

	if (st->recording) {
		tg_sse_free(&st->parser);
		tg_cache_record_free(&st->record);
	}
	free(st->entry);
	free(st);
	req->cache = NULL;
}
