/*
 * Upstream attempts and failover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "attempt.h"
#include "balancer.h"
#include "client.h"
#include "clock.h"
#include "health.h"
#include "json-splice.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "request.h"
#include "trace.h"
#include "upstream.h"
#include "worker.h"

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

static int
already_tried(void *arg, const struct tg_backend *backend)
{
	const struct tg_request *req = arg;

	for (unsigned i = 0; i < req->n_attempts; i++) {
		if (req->attempts[i].backend == backend)
			return 1;
	}
	return 0;
}

/* Write tree, a copy of the tree of body with another model, as the body
 * for a member. That is the bytes of body with the new model's string
 * spliced in (json-splice.h), or a dump of the tree when the body had no
 * "model" string to replace. Returns the text (malloc) and its length in
 * *len, or NULL when memory ran out. */
static char *
write_renamed(struct evbuffer *body, json_t *tree, size_t *len)
{
	const char *raw = (const char *)evbuffer_pullup(body, -1);
	struct tg_json_writer out;
	int rc = raw != NULL ? tg_splice_tree(raw, evbuffer_get_length(body), tree, &out)
	                     : TG_SPLICE_UNPAIRED;
	char *text;

	if (rc == 0) {
		*len = out.len;
		return out.data;
	}
	if (rc != TG_SPLICE_UNPAIRED)
		return NULL;
	text = json_dumps(tree, JSON_COMPACT);
	*len = text != NULL ? strlen(text) : 0;
	return text;
}

/* A backend with stream_usage false gets the client's body, without the
 * usage request the gateway added (tg_metrics_stream_usage()); the others
 * get req->body. *tree gets a new reference to the tree of that body when
 * want_tree is set, or NULL (then also when the request's body is not an
 * object). Returns NULL when memory ran out. */
static struct evbuffer *
source_body(struct tg_request *req, const struct tg_backend *backend, int want_tree,
            json_t **tree)
{
	struct evbuffer *body = req->body_without_usage;
	const char *raw;

	*tree = NULL;
	if (body == NULL || backend->stream_usage) {
		*tree = want_tree ? json_incref(tg_request_json(req)) : NULL;
		return req->body;
	}
	if (!want_tree)
		return body;

	/* The gateway added the usage request to an object that req's tree
	 * holds, so this body reads as one too, the same way. */
	raw = (const char *)evbuffer_pullup(body, -1);
	if (raw != NULL)
		*tree = json_loadb(raw, evbuffer_get_length(body), JSON_REJECT_DUPLICATES |
		                   (req->body_ints_as_reals ? JSON_DECODE_INT_AS_REAL : 0), NULL);
	return *tree != NULL ? body : NULL;
}

/* The body for member: the client's bytes, or the same bytes with the
 * member's model name when it renames the model. *text gets the body, and
 * *owned the same pointer when the caller must free() it (else NULL).
 * Returns 0, or -1 when memory ran out. */
static int
body_for(struct tg_request *req, const struct tg_tier_member *member, const char **text,
         size_t *len, char **owned)
{
	json_t *tree;
	struct evbuffer *body = source_body(req, member->backend, member->model != NULL, &tree);
	json_t *copy;

	*owned = NULL;
	if (body == NULL)
		return -1;      /* out of memory */
	if (tree == NULL && member->model != NULL && req->body_json_pending)
		return -1;      /* out of memory: the model cannot be renamed */
	if (tree == NULL) {
		*len = evbuffer_get_length(body);
		*text = *len == 0 ? "" : (const char *)evbuffer_pullup(body, -1);
		return *text == NULL ? -1 : 0;
	}

	/* jansson replaces the value of a member in its place among the
	 * others, so the copy pairs with the body (tg_splice_tree()). */
	copy = json_copy(tree);
	json_decref(tree);
	if (copy == NULL || json_object_set_new(copy, "model", json_string(member->model)) != 0) {
		json_decref(copy);
		return -1;
	}
	*owned = write_renamed(body, copy, len);
	json_decref(copy);
	if (*owned == NULL)
		return -1;
	*text = *owned;
	return 0;
}

/* Build the request for member: the target under the backend's base path,
 * rewritten headers, and the body. The head is written first, once the
 * body's length is known, so that the body goes in without a buffer of
 * its own. */
static struct evbuffer *
build_request(struct tg_request *req, const struct tg_tier_member *member)
{
	const struct tg_backend *b = member->backend;
	struct tg_upstream_rewrite rw = {
		.target_prefix = b->base_path,
		.host = b->host_header,
		.api_key = b->api_key,
		.key_header = b->api_key_header,
		.drop_credentials = req->config->gateway_keys != NULL,
		.client_ip = req->client ? req->client->ip : "unknown",
		.proto = req->client && req->client->tls ? "https" : "http",
		.request_id = req->id,
		.traceparent = tg_trace_upstream_traceparent(req),
		.drop_tracestate = tg_trace_drop_tracestate(req),
	};
	struct evbuffer *out = tg_worker_buffer_take(req->worker);
	const char *body = NULL;
	char *owned = NULL;
	size_t body_len = 0;
	int rc = -1;

	if (out == NULL || body_for(req, member, &body, &body_len, &owned) != 0)
		goto done;
	rc = tg_headers_write_upstream_request(out, req->method, req->url, &req->headers,
	                                       &rw, body_len);
	if (rc == 0 && body_len > 0)
		rc = evbuffer_add(out, body, body_len);

done:
	free(owned);
	if (rc != 0) {
		tg_worker_buffer_give(req->worker, out);
		out = NULL;
	}
	return out;
}

/* Record the start of an attempt on member at start_ns (tg_now_ns(), read
 * by the caller after anything slow it did) and send it. Returns 0, or -1
 * when it could not even start (the attempt is then ended as failed). */
static int
send_attempt(struct tg_request *req, const struct tg_tier_member *member, int trial,
             uint64_t start_ns)
{
	struct tg_attempt *a = &req->attempts[req->n_attempts++];
	enum tg_error err = TG_OK;

	memset(a, 0, sizeof(*a));
	a->backend = member->backend;
	a->model = tg_member_model(member, req->model);
	a->trial = trial;
	a->start_ns = start_ns;
	a->open = 1;

	/* The access log pairs backend with upstream_status, so a status
	 * from an earlier attempt must not outlive it. */
	req->member = member;
	req->backend = member->backend;
	req->upstream_status = 0;
	req->phase = TG_PHASE_CONNECT;
	tg_health_attempt_start(member->backend);
	tg_trace_attempt_start(req);

	tg_worker_buffer_give(req->worker, req->upstream_request);
	req->upstream_request = build_request(req, member);
	if (req->upstream_request == NULL) {
		tg_attempt_end_failed(req, TG_E_INTERNAL);
		return -1;
	}
	req->upstream = tg_upstream_send(req->worker, member->backend, req->upstream_request,
	                                 &tg_relay_handler, req, &err);
	if (req->upstream == NULL) {
		tg_log_request(req, TG_LOG_WARN, "upstream request not started: %s",
		               tg_error_info(err)->message);
		tg_attempt_end_failed(req, err);
		return -1;
	}
	return 0;
}

/* Retry budget: each request adds to the route's window and each retry
 * draws on it, so an outage multiplies upstream load by at most
 * 1 + budget (plus min_retries per window). */
static uint64_t
window_slot(struct tg_retry_window *w, uint64_t second)
{
	uint64_t slot = second % TG_RETRY_WINDOW_SLOTS;
	uint64_t stamp = atomic_load(&w->second[slot]);

	if (stamp != second &&
	    atomic_compare_exchange_strong(&w->second[slot], &stamp, second)) {
		atomic_store(&w->requests[slot], 0);
		atomic_store(&w->retries[slot], 0);
	}
	return slot;
}

/* Count a request in the route's window of the second of now_ns. */
static void
budget_count_request(const struct tg_route *route, uint64_t now_ns)
{
	uint64_t second = now_ns / NS_PER_S;
	struct tg_retry_window *w = &route->retry->window;

	atomic_fetch_add(&w->requests[window_slot(w, second)], 1);
}

/* 1 when the route's budget has room for one more retry in the window of
 * the second given; *requests and *retries get the window's counts. */
static int
budget_has_room(const struct tg_route *route, uint64_t second, uint64_t *requests,
                uint64_t *retries)
{
	struct tg_retry_window *w = &route->retry->window;

	*requests = 0;
	*retries = 0;
	for (unsigned i = 0; i < TG_RETRY_WINDOW_SLOTS; i++) {
		uint64_t stamp = atomic_load(&w->second[i]);

		if (stamp + TG_RETRY_WINDOW_SLOTS <= second)
			continue;
		*requests += atomic_load(&w->requests[i]);
		*retries += atomic_load(&w->retries[i]);
	}
	return (double)*retries < route->retry->budget * (double)*requests +
	                          route->retry->min_retries;
}

static int
budget_take_retry(struct tg_request *req)
{
	const struct tg_route *route = req->route;
	struct tg_retry_window *w = &route->retry->window;
	uint64_t second = tg_now_ns() / NS_PER_S;
	uint64_t requests, retries;

	if (!budget_has_room(route, second, &requests, &retries)) {
		tg_log_request(req, TG_LOG_WARN, "retry budget of route exhausted "
		               "(%llu retries for %llu requests in %d s); not retrying",
		               (unsigned long long)retries, (unsigned long long)requests,
		               TG_RETRY_WINDOW_SLOTS);
		tg_metrics_retry_budget_exhausted(req);
		return 0;
	}
	atomic_fetch_add(&w->retries[window_slot(w, second)], 1);
	return 1;
}

/* Every backend of the route cools down after a 429, 503 or 529 that said
 * when to come back: 503 with a Retry-After of the earliest end, so
 * clients back off as asked. retry-after-ms gives the same end to the
 * millisecond, as OpenAI does: its SDKs read it first, and would retry
 * up to a second early or late on whole seconds. */
static void
answer_no_backend(struct tg_request *req)
{
	uint64_t now = tg_now_ns();
	uint64_t end = tg_health_cooldown_end(req->route, req->model, now);
	uint64_t wait = end ? end - now : NS_PER_S;
	unsigned long long seconds = (wait + NS_PER_S - 1) / NS_PER_S;
	unsigned long long ms = (wait + NS_PER_MS - 1) / NS_PER_MS;
	char message[256], retry_after[96];
	struct evbuffer *body = evbuffer_new();

	snprintf(message, sizeof(message), "every backend of route \"%s\" is cooling "
	         "down after rate limiting or overload (429, 503 or 529); retry in %llu s",
	         req->route->name, seconds);
	snprintf(retry_after, sizeof(retry_after), "Retry-After: %llu\r\nretry-after-ms: %llu\r\n",
	         seconds, ms);
	tg_log_request(req, TG_LOG_WARN, "%s", message);

	req->error = TG_E_NO_BACKEND;
	req->cause = TG_CAUSE_GATEWAY;
	req->phase = TG_PHASE_LOCAL;
	if (body != NULL)
		tg_error_shaped_body(body, tg_request_error_shape(req), TG_E_NO_BACKEND, message,
		                     NULL);
	tg_relay_local_response(req, 503, retry_after, body);
	if (body != NULL)
		evbuffer_free(body);
}

void
tg_attempt_first(struct tg_request *req)
{
	const struct tg_tier_member *member;
	uint64_t now = tg_now_ns();     /* one reading for the window, the pick and the start */
	int trial;

	budget_count_request(req->route, now);
	member = tg_balancer_pick(req->route, req->model, already_tried, req,
	                          &req->worker->rng, now, &trial);
	if (member == NULL) {
		answer_no_backend(req);
		return;
	}
	if (send_attempt(req, member, trial, now) == 0)
		return;
	if (!tg_attempt_next(req, TG_RETRY_CONNECT, 0))
		tg_attempt_fail_request(req, req->attempts[req->n_attempts - 1].error);
}

void
tg_attempt_end_failed(struct tg_request *req, enum tg_error err)
{
	unsigned kind = tg_attempt_error_kind(err);

	/* A failure of the gateway's own (no descriptor or memory left) is no
	 * evidence about the backend. Its kind is 0, so no retry follows either,
	 * because another backend would meet the same shortage. */
	if (!tg_error_is_upstream(err)) {
		tg_attempt_end(req, TG_OUTCOME_CANCELLED, err, 0,
		               err == TG_E_OVERLOADED ? "local" : "internal");
		return;
	}
	tg_attempt_end(req, TG_OUTCOME_FAILURE, err, 0,
	               kind == TG_RETRY_TIMEOUT ? "timeout"
	               : kind == TG_RETRY_CONNECT ? "connect"
	               : err == TG_E_UPSTREAM_STREAM_ERROR ? "stream_error" : "reset");
}

/* Copy label into a, cut as snprintf() would cut it. */
static void
set_label(struct tg_attempt *a, const char *label)
{
	size_t len = strnlen(label, sizeof(a->label) - 1);

	memcpy(a->label, label, len);
	a->label[len] = '\0';
}

void
tg_attempt_committed(struct tg_request *req, int status, const char *label)
{
	struct tg_attempt *a;

	if (req->n_attempts == 0)
		return;
	a = &req->attempts[req->n_attempts - 1];
	if (!a->open)
		return;
	a->committed_ns = tg_request_now(req);
	a->status = status;
	set_label(a, label);
}

void
tg_attempt_end(struct tg_request *req, enum tg_outcome outcome, enum tg_error err,
               int status, const char *label)
{
	struct tg_attempt *a;
	enum tg_health_change change;
	uint64_t now, latency;

	/* The end of every request calls this too, mostly for an attempt that
	 * already ended: the clock is read only for an open one. */
	if (req->n_attempts == 0)
		return;
	a = &req->attempts[req->n_attempts - 1];
	if (!a->open)
		return;
	now = tg_request_now(req);
	a->open = 0;
	a->end_ns = now;
	a->outcome = outcome;
	a->error = err;
	if (status != 0)
		a->status = status;
	if (label != NULL)
		set_label(a, label);
	tg_trace_attempt_end(req);

	/* The latency of a stream is its wait for the first content: the
	 * balancers compare backends by it, not by the lengths of streams. */
	latency = (a->committed_ns ? a->committed_ns : now) - a->start_ns;
	change = tg_health_attempt_end(a->backend, outcome, a->trial, latency, now);
	if (change == TG_HEALTH_EJECTED) {
		tg_log_request(req, TG_LOG_WARN, "backend %s ejected for %.3f s after failures (last: %s)",
		               a->backend->name,
		               (double)tg_health_ejection_left(a->backend, now) / TG_NS_PER_S, a->label);
		tg_metrics_backend_cooldown(req, a->backend);
	}
	else if (change == TG_HEALTH_RECOVERED)
		tg_log_request(req, TG_LOG_INFO, "backend %s recovered: trial request succeeded",
		               a->backend->name);
}

int
tg_attempt_status_retryable(const struct tg_request *req, int status)
{
	const struct tg_retry_policy *policy = req->route->retry;

	for (size_t i = 0; i < policy->n_statuses; i++) {
		if (policy->statuses[i] == status)
			return 1;
	}
	return 0;
}

unsigned
tg_attempt_error_kind(enum tg_error err)
{
	switch (err) {
	case TG_E_UPSTREAM_CONNECT:
	case TG_E_UPSTREAM_TLS:
		return TG_RETRY_CONNECT;
	case TG_E_UPSTREAM_CONNECT_TIMEOUT:
	case TG_E_UPSTREAM_FIRST_BYTE_TIMEOUT:
	case TG_E_UPSTREAM_IDLE_TIMEOUT:
		return TG_RETRY_TIMEOUT;
	case TG_E_UPSTREAM_RESET:
	case TG_E_UPSTREAM_INVALID:
		return TG_RETRY_RESET;
	default:
		return 0;
	}
}

int
tg_attempt_stream_may_move(struct tg_request *req)
{
	const struct tg_retry_policy *policy = req->route->retry;
	uint64_t now = tg_now_ns();
	uint64_t requests, retries;

	if (!policy->hold_stream)
		return 0;
	if (!(policy->on & (TG_RETRY_STREAM_ERROR | TG_RETRY_RESET | TG_RETRY_TIMEOUT)))
		return 0;
	if (req->n_attempts >= policy->max_attempts || req->n_attempts >= TG_MAX_ATTEMPTS)
		return 0;
	if (!tg_balancer_any_left(req->route, req->model, already_tried, req, now))
		return 0;
	return budget_has_room(req->route, now / NS_PER_S, &requests, &retries);
}

int
tg_attempt_next(struct tg_request *req, unsigned retry_on_kind, int status)
{
	const struct tg_retry_policy *policy = req->route->retry;
	const struct tg_tier_member *member;
	int trial;

	if (status != 0 ? !tg_attempt_status_retryable(req, status)
	                : !(policy->on & retry_on_kind))
		return 0;

	while (req->n_attempts < policy->max_attempts && req->n_attempts < TG_MAX_ATTEMPTS) {
		member = tg_balancer_pick(req->route, req->model, already_tried, req,
		                          &req->worker->rng, tg_now_ns(), &trial);
		if (member == NULL)
			return 0;
		/* A refused connection costs the upstream nothing, so it draws
		 * on no budget: a dead backend must not starve the live ones. */
		if (retry_on_kind != TG_RETRY_CONNECT && !budget_take_retry(req)) {
			if (trial)
				atomic_store(&member->backend->state->half_open, 0);
			return 0;
		}
		tg_log_request(req, TG_LOG_INFO, "failing over from %s (%s) to %s, attempt %u of %u",
		               req->attempts[req->n_attempts - 1].backend->name,
		               req->attempts[req->n_attempts - 1].label,
		               member->backend->name, req->n_attempts + 1, policy->max_attempts);
		/* A fresh reading: the log line above may have waited. */
		if (send_attempt(req, member, trial, tg_now_ns()) == 0)
			return 1;
	}
	return 0;
}

void
tg_attempt_fail_request(struct tg_request *req, enum tg_error err)
{
	const struct tg_backend *b;
	char message[512];
	int v6;                 /* host is an IPv6 address, which takes brackets */

	/* A failure of the gateway's own blames no backend. */
	if (req->n_attempts == 0 || !tg_error_is_upstream(err)) {
		tg_request_fail(req, err, NULL);
		return;
	}
	b = req->attempts[req->n_attempts - 1].backend;
	v6 = strchr(b->host, ':') != NULL;
	snprintf(message, sizeof(message), "%s (backend \"%s\" at %s%s%s:%s)",
	         tg_error_info(err)->message, b->name, v6 ? "[" : "", b->host, v6 ? "]" : "",
	         b->port);
	tg_request_fail(req, err, message);
}

void
tg_attempt_header(const struct tg_request *req, char *buf, size_t size)
{
	size_t used;
	int failed = req->n_attempts > 0 &&
	             req->attempts[req->n_attempts - 1].outcome != TG_OUTCOME_SUCCESS;

	buf[0] = '\0';
	if (req->n_attempts == 0 || (req->n_attempts == 1 && !failed))
		return;
	used = (size_t)snprintf(buf, size, "x-tollgate-attempts: ");
	for (unsigned i = 0; i < req->n_attempts && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s:%s", i ? "," : "",
		                         req->attempts[i].backend->name,
		                         req->attempts[i].label[0] ? req->attempts[i].label : "ok");
	if (used + 3 < size)
		snprintf(buf + used, size - used, "\r\n");
	else
		buf[0] = '\0';
}
