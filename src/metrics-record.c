/*
 * Recording on the request path. Every function here runs on the worker
 * thread that owns the request, writes only that worker's shard, and does
 * index arithmetic and relaxed atomic stores: no lock, no allocation, no
 * formatting. The one exception is the first request a worker starts under
 * a new configuration snapshot, which builds that snapshot's table.
 */
#include <assert.h>
#include <string.h>
#include <strings.h>

#include "auth-t.h"
#include "cache.h"
#include "config.h"
#include "filter-request.h"
#include "filter.h"
#include "health.h"
#include "metrics-table.h"
#include "metrics.h"
#include "request.h"
#include "trace-t.h"
#include "worker.h"

#define UNSET SIZE_MAX

/* The trace id of req when its spans are recorded, for exemplars; else
 * NULL, since an exemplar should lead to a trace that exists. */
static const uint8_t *
sampled_trace_id(const struct tg_request *req)
{
	return req->trace != NULL && req->trace->sampled ? req->trace->trace_id : NULL;
}

/* Return the wall time of now_ns (CLOCK_MONOTONIC) from the two clock
 * readings the request started with. The request's trace maps its times
 * the same way, so an exemplar's time matches the span it names. */
static uint64_t
request_wall_ns(const struct tg_request *req, uint64_t now_ns)
{
	return req->start_wall_ns + (now_ns - req->start_ns);
}

static void
gauge_add(_Atomic int64_t *g, int64_t n)
{
	atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

/* Table users are counted, and tables retired, by the owning worker only.
 * Returns the new count. */
static uint32_t
users_add(struct tg_metrics_table *t, int n)
{
	uint32_t users = atomic_load_explicit(&t->users, memory_order_relaxed) + (uint32_t)n;

	atomic_store_explicit(&t->users, users, memory_order_relaxed);
	return users;
}

void
tg_metrics_request_start(struct tg_request *req)
{
	struct tg_metrics_shard *shard = req->worker->metrics;
	struct tg_metrics_table *t;

	if (shard == NULL)
		return;
	t = shard->current;
	if (t == NULL || t->config != req->config) {
		t = tg_metrics_bind(shard, req->config, req->config == req->worker->config);
		if (t == NULL)
			return;         /* out of memory: the request goes unrecorded */
	}
	users_add(t, 1);
	req->metrics.table = t;
	req->metrics.cell = UNSET;
	req->metrics.in_flight = 1;
	gauge_add(&shard->in_flight, 1);
}

void
tg_metrics_request_read(struct tg_request *req)
{
	req->metrics.dispatched = 1;
	req->metrics.read_ns = tg_now_ns();
}

/* --- upstream attempts -------------------------------------------------------- */

static enum tg_attempt_result
attempt_result(const struct tg_attempt *a)
{
	if (a->error != TG_OK && !tg_error_is_upstream(a->error))
		return TG_ATTEMPT_GATEWAY_ERROR;
	if (a->outcome == TG_OUTCOME_CANCELLED)
		return TG_ATTEMPT_CANCELLED;

	switch (a->error) {
	case TG_OK:
		break;
	case TG_E_UPSTREAM_CONNECT:
	case TG_E_UPSTREAM_TLS:
		return TG_ATTEMPT_CONNECT_ERROR;
	case TG_E_UPSTREAM_CONNECT_TIMEOUT:
	case TG_E_UPSTREAM_FIRST_BYTE_TIMEOUT:
	case TG_E_UPSTREAM_IDLE_TIMEOUT:
		return TG_ATTEMPT_TIMEOUT;
	case TG_E_UPSTREAM_STREAM_ERROR:
		return TG_ATTEMPT_STREAM_ERROR;
	default:
		return TG_ATTEMPT_RESET;
	}

	if (a->status == 429)
		return TG_ATTEMPT_RATE_LIMITED;
	if (a->status >= 500)
		return TG_ATTEMPT_SERVER_ERROR;
	if (a->status >= 400)
		return TG_ATTEMPT_CLIENT_ERROR;
	return TG_ATTEMPT_SUCCESS;
}

void
tg_metrics_upstream_done(struct tg_request *req)
{
	req->metrics.upstream_end_ns = tg_now_ns();
}

void
tg_metrics_backend_cooldown(struct tg_request *req, const struct tg_backend *backend)
{
	struct tg_metrics_table *t = req->metrics.table;

	if (t != NULL)
		tg_counter_add(&t->backends[tg_metrics_backend_index(t, backend)].cooldowns, 1);
}

void
tg_metrics_retry_budget_exhausted(struct tg_request *req)
{
	struct tg_metrics_table *t = req->metrics.table;
	size_t route;

	if (t == NULL)
		return;
	route = tg_metrics_route_index(t, req->route);
	tg_counter_add(&t->routes[route].retry_budget_exhausted, 1);
}

/* --- route features ------------------------------------------------------------ */

static void
record_cache(struct tg_route_values *r, const struct tg_request *req)
{
	const char *status = tg_cache_status(req);

	for (size_t k = 0; status != NULL && k < TG_CACHE_RESULTS; k++) {
		if (strcmp(status, tg_cache_labels[k]) == 0) {
			tg_counter_add(&r->cache[k], 1);
			return;
		}
	}
}

/* The filter series are keyed by the addresses of their label values,
 * names from the config and string literals, so a lookup hashes four words
 * and compares pointers. */
static size_t
filter_hash(const char *filter, const char *rule, const char *action, const char *side)
{
	uint64_t h = (uint64_t)(uintptr_t)filter * 0x9e3779b97f4a7c15u;

	h ^= (uint64_t)(uintptr_t)rule * 0xc2b2ae3d27d4eb4fu;
	h ^= (uint64_t)(uintptr_t)action * 0x165667b19e3779f9u;
	h ^= (uint64_t)(uintptr_t)side * 0x27d4eb2f165667c5u;
	h ^= h >> 29;
	return (size_t)(h % TG_FILTER_SERIES_MAX);
}

/* Count n decisions of one series. The label values must live as long as
 * t's config. */
void
tg_metrics_filter_decision(struct tg_metrics_table *t, const char *filter, const char *rule,
                           const char *action, const char *side, uint64_t n)
{
	size_t start = filter_hash(filter, rule, action, side);

	if (filter == NULL || rule == NULL || action == NULL || side == NULL)
		return;
	for (size_t i = 0; i < TG_FILTER_SERIES_MAX; i++) {
		struct tg_filter_series *s = &t->filters[(start + i) % TG_FILTER_SERIES_MAX];

		/* Only this worker writes the slots, so a relaxed look suffices
		 * here; the scrape pairs its acquire with the release below. */
		if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
			s->filter = filter;
			s->rule = rule;
			s->action = action;
			s->side = side;
			atomic_store_explicit(&s->used, 1, memory_order_release);
		}
		if (s->filter == filter && s->rule == rule && s->action == action &&
		    s->side == side) {
			tg_counter_add(&s->count, n);
			return;
		}
	}
	tg_counter_add(&t->filters_dropped, n);
}

/* The decisions the filters took on req, counted by filter, rule, action
 * and side; the names point into req's config, which is the table's. A
 * classifier that failed decided without a rule: its rule is "error". */
static void
record_filters(struct tg_metrics_table *t, const struct tg_request *req)
{
	const struct tg_filter_log *log = tg_filter_decisions(req);

	for (size_t i = 0; log != NULL && i < log->n; i++) {
		const struct tg_filter_decision *d = &log->items[i];
		const char *rule = d->rule;

		if (rule == NULL)
			rule = d->error ? "error" : "none";

		tg_metrics_filter_decision(t, d->filter, rule, tg_filter_action_name(d->action),
		                           tg_side_name(d->side), log->counts[i]);
	}
}

/* --- stream figures ------------------------------------------------------------- */

/* The series of the request's route, current backend and the model that
 * backend was sent. */
static size_t
request_cell(const struct tg_request *req)
{
	const struct tg_metrics_table *t = req->metrics.table;

	return tg_metrics_cell_index(t, tg_metrics_route_index(t, req->route),
	                             tg_metrics_backend_index(t, req->backend),
	                             tg_metrics_model_index(t, tg_request_sent_model(req)));
}

/* Record the first token of req at now, in the series c. */
static void
observe_first_token(struct tg_request *req, struct tg_cell *c, uint64_t now)
{
	const uint8_t *trace_id = sampled_trace_id(req);

	req->metrics.first_token_ns = now;
	tg_hist_observe(&c->ttft, TG_BUCKETS_TTFT, now - req->start_ns);
	if (trace_id != NULL)
		tg_exemplar_record(&c->ttft_exemplars, TG_BUCKETS_TTFT, now - req->start_ns,
		                   request_wall_ns(req, now), trace_id);
}

void
tg_metrics_content_event(struct tg_request *req, uint64_t now)
{
	struct tg_metrics_request *m = &req->metrics;
	struct tg_metrics_table *t = m->table;
	struct tg_cell *c;

	/* No failover can follow content, so the backend is final here. */
	if (m->cell == UNSET)
		m->cell = request_cell(req);
	c = &t->cells[m->cell];

	if (m->first_token_ns == 0)
		observe_first_token(req, c, now);
	else
		tg_hist_observe(&c->tbt, TG_BUCKETS_TBT, now - m->last_token_ns);
	m->last_token_ns = now;
	m->content_events++;
}

/* No content event is counted, because content events stand for output
 * tokens in tollgate_estimated_tokens_total, and a hit costs none. */
void
tg_metrics_cached_stream(struct tg_request *req, uint64_t now)
{
	struct tg_metrics_request *m = &req->metrics;

	if (m->table == NULL || m->first_token_ns != 0)
		return;
	m->cell = request_cell(req);
	observe_first_token(req, &m->table->cells[m->cell], now);
	m->last_token_ns = now;
}

void
tg_metrics_stream_opened(struct tg_request *req)
{
	struct tg_metrics_shard *shard = req->worker->metrics;

	if (req->metrics.stream_open || shard == NULL)
		return;
	req->metrics.stream_open = 1;
	gauge_add(&shard->streams_open, 1);
}

/* --- the end of a request ------------------------------------------------------- */

static void
record_duration(struct tg_metrics_table *t, const struct tg_request *req, size_t route,
                size_t model, uint64_t now)
{
	const struct tg_route_layout *L = &t->layout[route];
	struct tg_route_model *rm = &t->route_models[L->route_model_base + L->model_slot[model]];
	const uint8_t *trace_id = sampled_trace_id(req);

	tg_hist_observe(&rm->duration, TG_BUCKETS_DURATION, now - req->start_ns);
	if (trace_id != NULL)
		tg_exemplar_record(&rm->duration_exemplars, TG_BUCKETS_DURATION, now - req->start_ns,
		                   request_wall_ns(req, now), trace_id);
}

/* The cost of u's tokens at price, per million. Cache reads and writes
 * are parts of the input, so neither count may pass what input leaves. */
static double
cost_of(const struct tg_usage *u, const struct tg_model_price *price)
{
	uint64_t cached = u->cached_input < u->input ? u->cached_input : u->input;
	uint64_t rest = u->input - cached;
	uint64_t written = u->cache_write_input < rest ? u->cache_write_input : rest;

	return (double)(rest - written) * price->input +
	       (double)cached * price->cached_input +
	       (double)written * price->cache_write_input +
	       (double)u->output * price->output;
}

static void
record_tokens(struct tg_metrics_table *t, struct tg_cell *c, size_t model,
              const struct tg_metrics_request *m)
{
	const struct tg_usage *u = &m->usage;
	const struct tg_model_price *price = t->prices[model];

	if (!u->reported) {
		/* No usage from the provider: a stream's content events stand in
		 * for output tokens, in a series of their own. */
		tg_counter_add(&c->estimated_output, m->content_events);
		return;
	}
	tg_counter_add(&c->tokens[TG_TOKENS_INPUT], u->input);
	tg_counter_add(&c->tokens[TG_TOKENS_OUTPUT], u->output);
	tg_counter_add(&c->tokens[TG_TOKENS_CACHED_INPUT], u->cached_input);
	tg_counter_add(&c->tokens[TG_TOKENS_REASONING], u->reasoning);
	tg_counter_add(&c->tokens[TG_TOKENS_CACHE_WRITE_INPUT], u->cache_write_input);

	if (price != NULL)
		tg_counter_add_double(&c->cost, cost_of(u, price) / 1e6);
}

/* Time per output token: the stream's span over the gaps between its
 * tokens, by the provider's count when it gave one. */
static void
record_tpot(struct tg_cell *c, const struct tg_metrics_request *m)
{
	uint64_t tokens = m->usage.reported ? m->usage.output : m->content_events;

	if (m->first_token_ns == 0 || tokens < 2)
		return;
	tg_hist_observe(&c->tpot, TG_BUCKETS_TPOT,
	                (m->last_token_ns - m->first_token_ns) / (tokens - 1));
}

/* When an attempt's upstream exchange ended. A failed attempt ends when
 * it is judged; the last one when its response was received whole, or at
 * now when the client left first. */
static uint64_t
attempt_end_ns(const struct tg_request *req, unsigned i, uint64_t now)
{
	const struct tg_attempt *a = &req->attempts[i];
	uint64_t done = req->metrics.upstream_end_ns;

	if (i + 1 < req->n_attempts)
		return a->end_ns;
	return done >= a->start_ns ? done : now;
}

/*
 * Count the request's attempts by backend and outcome, with their upstream
 * time, its failovers, and the gateway's own time: the spans outside the
 * upstream exchanges, from the request being read whole. The time after
 * the last exchange (sending the rest to the client) is the client's and
 * is left out. A request that made no attempt is all own time.
 */
static void
record_attempts(struct tg_metrics_table *t, struct tg_route_values *r,
                const struct tg_request *req, uint64_t now)
{
	uint64_t mark = req->metrics.read_ns;
	uint64_t own = 0;

	for (unsigned i = 0; i < req->n_attempts; i++) {
		const struct tg_attempt *a = &req->attempts[i];
		struct tg_backend_values *b = &t->backends[tg_metrics_backend_index(t, a->backend)];
		uint64_t end = attempt_end_ns(req, i, now);

		tg_counter_add(&b->attempts[attempt_result(a)], 1);
		tg_hist_observe(&b->upstream, TG_BUCKETS_UPSTREAM,
		                end > a->start_ns ? end - a->start_ns : 0);
		if (mark != 0 && a->start_ns > mark)
			own += a->start_ns - mark;
		mark = end;
	}
	if (req->n_attempts > 1)
		tg_counter_add(&r->failovers, req->n_attempts - 1);

	if (!req->metrics.dispatched)
		return;
	if (req->n_attempts == 0)
		own = now - req->metrics.read_ns;
	tg_hist_observe(&r->overhead, TG_BUCKETS_OVERHEAD, own);
}

static void
record_abandonment(const struct tg_request *req, struct tg_route_values *r)
{
	const struct tg_metrics_request *m = &req->metrics;

	if (!m->dispatched)
		return;
	if (req->cause != TG_CAUSE_CLIENT_CLOSED && req->cause != TG_CAUSE_CLIENT_TIMEOUT)
		return;
	tg_counter_add(&r->abandoned[m->first_token_ns ? TG_ABANDON_MID_STREAM
	                                               : TG_ABANDON_BEFORE_FIRST_TOKEN], 1);
}

/* A turn of the session named by the configured header, or by the body's
 * "user" field. */
static void
record_session(const struct tg_request *req, struct tg_sessions *sessions, uint64_t now)
{
	const struct tg_sessions_config *sc = req->config->sessions;
	const char *key = NULL;

	if (sessions == NULL || sc == NULL || !sc->enabled || !req->metrics.dispatched)
		return;
	if (sc->header != NULL)
		key = tg_headers_get(&req->headers, sc->header);
	if ((key == NULL || key[0] == '\0') && sc->user_field)
		key = req->user;
	if (key == NULL || key[0] == '\0')
		return;
	tg_sessions_touch(sessions, key, strlen(key), now, sc->idle_timeout);
}

/* Count the request under the caller's gateway key, when the config has
 * keys: the request counters that have the key as a label. */
static void
record_key(struct tg_metrics_table *t, const struct tg_request *req, size_t code)
{
	size_t k;

	if (t->keys == NULL)
		return;
	k = req->key != NULL ? (size_t)(req->key - t->config->gateway_keys->keys) : t->n_keys - 1;
	assert(k < t->n_keys);
	tg_counter_add(&t->keys[k].requests[code], 1);
	if (req->error == TG_E_REQUEST_RATE_LIMIT)
		tg_counter_add(&t->keys[k].rate_limited[TG_RATE_LIMIT_REQUESTS], 1);
	else if (req->error == TG_E_TOKEN_RATE_LIMIT)
		tg_counter_add(&t->keys[k].rate_limited[TG_RATE_LIMIT_TOKENS], 1);
}

void
tg_metrics_request_end(struct tg_request *req)
{
	struct tg_metrics_request *m = &req->metrics;
	struct tg_metrics_table *t = m->table;
	struct tg_metrics_shard *shard = req->worker->metrics;
	uint64_t now = req->done_ns;
	size_t route, model, cell, code;
	struct tg_cell *c;

	if (t == NULL)
		return;
	/* The cell from the route and model found here, as request_cell()
	 * would find them again: a model's index is a binary search. */
	route = tg_metrics_route_index(t, req->route);
	model = tg_metrics_model_index(t, tg_request_sent_model(req));
	cell = m->cell != UNSET ? m->cell
	       : tg_metrics_cell_index(t, route, tg_metrics_backend_index(t, req->backend), model);
	c = &t->cells[cell];

	code = tg_code_slot(req->response.head_sent ? req->response.status : 0);
	tg_counter_add(&c->requests[code], 1);
	record_key(t, req, code);
	record_duration(t, req, route, model, now);
	record_attempts(t, &t->routes[route], req, now);
	record_tokens(t, c, model, m);
	record_tpot(c, m);
	record_cache(&t->routes[route], req);
	record_filters(t, req);
	record_abandonment(req, &t->routes[route]);
	if (req->error != TG_OK)
		tg_counter_add(&t->routes[route].gateway_errors[req->error], 1);
	record_session(req, shard->sessions, now);

	if (m->in_flight)
		gauge_add(&shard->in_flight, -1);
	if (m->stream_open)
		gauge_add(&shard->streams_open, -1);
	m->table = NULL;

	/* The last request of a replaced snapshot: its table, and with it the
	 * table's hold on the old config, can go now. */
	if (users_add(t, -1) == 0 && t != shard->current)
		tg_metrics_retire_idle(shard);
}
