/*
 * Tracing hooks: the request context turned into spans.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "cache.h"
#include "cache-t.h"
#include "client.h"
#include "filter-request.h"
#include "filter-t.h"
#include "filter.h"
#include "health.h"
#include "relay.h"
#include "request.h"
#include "trace-genai.h"
#include "trace-semconv.h"
#include "trace-span.h"
#include "trace-tree.h"
#include "trace.h"
#include "worker.h"

static const struct tg_tracing_config *
tracing_of(const struct tg_request *req)
{
	const struct tg_tracing_config *tc = req->config->tracing;

	return tc != NULL && tc->enabled ? tc : NULL;
}

/*
 * Append at most max bytes of s to the name in out, as snprintf with
 * "%.*s" would: out has size bytes, of which len are used, and stays
 * NUL-terminated, cut where it ends. Returns the new length. Span names
 * are built on every request, and snprintf took about 900 instructions
 * for each.
 */
static size_t
name_append(char *out, size_t size, size_t len, const char *s, size_t max)
{
	size_t room = size - 1 - len;
	size_t n = strnlen(s, max < room ? max : room);

	memcpy(out + len, s, n);
	out[len + n] = '\0';
	return len + n;
}

/*
 * Paths the gateway serves that are no GenAI operation, traced by the
 * HTTP conventions: a server span "{method} {http.route}" with
 * http.route, an attempt span "{method} {url.template}" with
 * url.template. The GenAI conventions (v1.41) have no operation for
 * counting tokens, so /v1/messages/count_tokens is one of them.
 */
static const char *const HTTP_ROUTES[] = {
	"/v1/models",
	"/v1/messages/count_tokens",
};

/* The route of path: a GenAI endpoint's path or one of HTTP_ROUTES, as a
 * literal that needs no JSON escape, or NULL for any other path. */
static const char *
route_of(const char *path, const struct tg_genai_endpoint *endpoint)
{
	if (endpoint != NULL)
		return endpoint->path;
	for (size_t i = 0; i < sizeof(HTTP_ROUTES) / sizeof(HTTP_ROUTES[0]); i++) {
		if (strcmp(path, HTTP_ROUTES[i]) == 0)
			return HTTP_ROUTES[i];
	}
	return NULL;
}

/* "POST /v1/chat/completions" for a path with a route, and only the
 * method otherwise, so that arbitrary paths cannot make span names of
 * unbounded variety. */
static void
method_route_name(const char *method, const char *route, char *out, size_t size)
{
	size_t len = name_append(out, size, 0, method, SIZE_MAX);

	if (route != NULL) {
		len = name_append(out, size, len, " ", SIZE_MAX);
		name_append(out, size, len, route, SIZE_MAX);
	}
}

/* "chat gpt-4o": the operation and at most 200 bytes of the model, or
 * the operation alone. Without an operation, the HTTP client span's
 * name: the method and the route, if any. */
static void
attempt_span_name(const char *operation, const char *method, const char *route,
                  const char *model, char *out, size_t size)
{
	size_t len;

	if (operation == NULL) {
		method_route_name(method, route, out, size);
		return;
	}
	len = name_append(out, size, 0, operation, SIZE_MAX);
	if (model != NULL) {
		len = name_append(out, size, len, " ", SIZE_MAX);
		name_append(out, size, len, model, 200);
	}
}

/* Set http.request.method to llhttp's name of the method, which needs no
 * JSON escape (a unit test checks every name). */
static void
set_method(struct tg_span *span, const char *method)
{
	tg_attrs_static_plain(&span->attrs, TG_SC(HTTP_REQUEST_METHOD), method, strlen(method));
}

/* The attributes of the server span known at the request's start. The
 * path of an endpoint is the table's literal, the same bytes as
 * req->path, so that it needs no copy. */
static void
start_server_span(const struct tg_request *req, struct tg_span *server,
                  const struct tg_genai_endpoint *endpoint, const char *route)
{
	set_method(server, req->method);
	if (route != NULL)
		tg_attrs_static_plain(&server->attrs, TG_SC(HTTP_ROUTE), route, strlen(route));
	if (endpoint != NULL)
		tg_attrs_static_plain(&server->attrs, TG_SC(URL_PATH), endpoint->path,
		                      endpoint->path_len);
	else
		tg_attrs_string(&server->attrs, TG_SC(URL_PATH), req->path);
	if (req->client && req->client->tls)
		tg_attrs_literal(&server->attrs, TG_SC(URL_SCHEME), "https");
	else
		tg_attrs_literal(&server->attrs, TG_SC(URL_SCHEME), "http");
	if (req->client != NULL)
		tg_attrs_string(&server->attrs, TG_SC(CLIENT_ADDRESS), req->client->ip);
	tg_attrs_string(&server->attrs, TG_SC(TOLLGATE_REQUEST_ID), req->id);
	if (endpoint != NULL)
		tg_attrs_static_plain(&server->attrs, TG_SC(GEN_AI_OPERATION_NAME),
		                      endpoint->operation, endpoint->operation_len);
}

void
tg_trace_request_start(struct tg_request *req)
{
	const struct tg_tracing_config *tc = tracing_of(req);
	const struct tg_genai_endpoint *endpoint;
	const char *route;
	char name[128];

	if (tc == NULL || req->trace != NULL)
		return;
	endpoint = tg_genai_endpoint(req->path);
	route = route_of(req->path, endpoint);
	method_route_name(req->method, route, name, sizeof(name));
	req->trace = tg_trace_begin(&req->headers, tc->sample_ratio, name, req->start_ns,
	                            req->start_wall_ns, req->worker->span_pool);
	if (req->trace == NULL)
		return;
	req->trace->endpoint = endpoint;
	req->trace->route = route;
	if (req->trace->sampled)
		start_server_span(req, req->trace->server, endpoint, route);
}

/* The attempt before the current one, for the failover event. */
static void
add_failover_event(struct tg_request *req, struct tg_trace *t)
{
	const struct tg_attempt *prev = &req->attempts[req->n_attempts - 2];
	const struct tg_attempt *next = &req->attempts[req->n_attempts - 1];
	struct tg_attrs *attrs;

	attrs = tg_span_add_event(t->server, TG_SC(EVENT_FAILOVER),
	                          tg_trace_time(t, next->start_ns));
	if (attrs == NULL)
		return;
	tg_attrs_string(attrs, TG_SC(TOLLGATE_FAILOVER_FROM), prev->backend->name);
	tg_attrs_string(attrs, TG_SC(TOLLGATE_FAILOVER_REASON),
	                prev->label[0] ? prev->label : "failed");
	tg_attrs_string(attrs, TG_SC(TOLLGATE_BACKEND), next->backend->name);
	tg_attrs_int(attrs, TG_SC(TOLLGATE_ATTEMPT), req->n_attempts);
}

/* The parameters of req's body from its tree, for a body the scan did
 * not read. A tree with every integer as a real (request.h) would record
 * no integer parameter, so the numbers then come from the body's text. */
static void
params_from_tree(struct tg_request *req, struct tg_request_params *params)
{
	tg_request_params_of(tg_request_json(req), params);
	if (req->body_ints_as_reals)
		tg_request_numbers_of_text((const char *)evbuffer_pullup(req->body, -1),
		                           req->body_len, &req->worker->scan_keys, params->number);
}

/* The gen_ai request attributes of an attempt's span. The parameters
 * come from the scan of the body when it read them, since only message
 * content needs the tree. An Anthropic body is read from the tree, for
 * its stop sequences and its content, which are not OpenAI's. */
static void
record_request(struct tg_request *req, struct tg_span *span,
               const struct tg_genai_endpoint *endpoint, const char *model,
               const struct tg_tracing_config *tc)
{
	static const struct tg_request_params none;
	struct tg_request_params from_tree;
	const struct tg_request_params *params = req->scanned.params ? req->scanned.params : &none;

	if (!req->scanned.read_params) {
		params_from_tree(req, &from_tree);
		params = &from_tree;
	}
	tg_genai_request(span, endpoint, model, req->stream, params);
	if (endpoint->shape == TG_GENAI_ANTHROPIC) {
		/* The reply detail reads OpenAI's shape only. */
		req->trace->reads_detail = 0;
		tg_genai_anthropic_request(span, tg_request_json(req), tc->capture_content,
		                           tc->max_content_length);
	} else if (tc->capture_content) {
		tg_genai_input_messages(span, tg_request_json(req), tc->max_content_length);
	}
	if (params == &from_tree)
		tg_request_params_free(&from_tree);
}

void
tg_trace_attempt_start(struct tg_request *req)
{
	const struct tg_tracing_config *tc = tracing_of(req);
	struct tg_trace *t = req->trace;
	const struct tg_attempt *a;
	const struct tg_genai_endpoint *endpoint;
	struct tg_span *span;
	char name[256];

	if (t == NULL || tc == NULL || req->n_attempts == 0)
		return;
	a = &req->attempts[req->n_attempts - 1];
	endpoint = t->endpoint;
	attempt_span_name(endpoint != NULL ? endpoint->operation : NULL, req->method, t->route,
	                  a->model, name, sizeof(name));
	span = tg_trace_attempt_begin(t, name, a->start_ns);
	if (span == NULL || !t->sampled)
		return;
	if (req->n_attempts > 1)
		add_failover_event(req, t);

	set_method(span, req->method);
	tg_attrs_string(&span->attrs, TG_SC(SERVER_ADDRESS), a->backend->host);
	tg_attrs_int(&span->attrs, TG_SC(SERVER_PORT), a->backend->port_number);
	tg_attrs_string(&span->attrs, TG_SC(TOLLGATE_BACKEND), a->backend->name);
	tg_attrs_int(&span->attrs, TG_SC(TOLLGATE_ATTEMPT), req->n_attempts);
	if (tc->capture_content && tg_genai_capture_output(t, tc->max_content_length) != 0)
		t->output = NULL;
	t->reads_detail = t->output == NULL;
	if (endpoint != NULL) {
		record_request(req, span, endpoint, a->model, tc);
		return;
	}
	if (t->route != NULL)
		tg_attrs_static_plain(&span->attrs, TG_SC(URL_TEMPLATE), t->route,
		                      strlen(t->route));
	/* The model the attempt sent, as count_tokens bodies name one, even
	 * though no GenAI operation fits the call. */
	if (a->model != NULL)
		tg_attrs_string(&span->attrs, TG_SC(GEN_AI_REQUEST_MODEL), a->model);
}

const char *
tg_trace_upstream_traceparent(const struct tg_request *req)
{
	if (req->trace == NULL || req->trace->attempt == NULL)
		return NULL;
	return req->trace->upstream_traceparent;
}

int
tg_trace_reads_request_params(const struct tg_request *req)
{
	return req->trace != NULL && req->trace->sampled && tracing_of(req) != NULL &&
	       req->trace->endpoint != NULL;
}

int
tg_trace_reads_request_tree(const struct tg_request *req)
{
	return tg_trace_reads_request_params(req) && tracing_of(req)->capture_content;
}

int
tg_trace_drop_tracestate(const struct tg_request *req)
{
	return req->trace != NULL && req->trace->trace_state == NULL;
}

/* The CLIENT span of the current attempt when it is recorded, else NULL. */
static struct tg_span *
recorded_attempt(const struct tg_request *req)
{
	if (req->trace == NULL || !req->trace->sampled)
		return NULL;
	return req->trace->attempt;
}

/* Output text and Anthropic's shape need the tree. The rest comes from
 * the reply detail, which costs a fraction of a tree, because it is read
 * in the pass that reads the digest for the relay and the metrics.
 * reads_detail is 0 but between the start and the end of a recorded
 * attempt (tg_genai_attempt_reset). */
int
tg_trace_reads_reply_detail(const struct tg_request *req)
{
	const struct tg_trace *t = req->trace;

	return t != NULL && t->reads_detail;
}

/* Whether the trace's endpoint speaks Anthropic's Messages API. */
static int
is_anthropic(const struct tg_trace *t)
{
	return t->endpoint != NULL && t->endpoint->shape == TG_GENAI_ANTHROPIC;
}

/* An event without a usable detail (a text only jansson may read, or one
 * a filter rewrote) goes to the tree, which decides. */
void
tg_trace_stream_event(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_span *span = recorded_attempt(req);
	struct tg_trace *t = req->trace;
	uint64_t now, start;

	if (span == NULL || req->n_attempts == 0 || ev->from_gateway)
		return;
	now = tg_now_ns();
	start = req->attempts[req->n_attempts - 1].start_ns;
	if (t->output == NULL && ev->detail.usable)
		tg_genai_stream_detail(t, span, &ev->digest, &ev->detail, now, start);
	else if (is_anthropic(t))
		tg_genai_anthropic_event(t, span, tg_stream_event_json(ev), now, start);
	else
		tg_genai_stream_event(t, span, tg_stream_event_json(ev), now, start);
}

void
tg_trace_upstream_finish(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_span *span = recorded_attempt(req);
	json_t *tree;

	if (span == NULL || !ev->finish || !tg_filter_response_screened(req))
		return;
	if (ev->detail.usable) {
		tg_genai_upstream_finish_detail(req->trace, &ev->detail);
		return;
	}
	if (ev->json != NULL)
		tree = json_incref(ev->json);
	else if (ev->data != NULL)
		tree = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, NULL);
	else
		tree = NULL;
	tg_genai_upstream_finish(req->trace, tree, 0);
	json_decref(tree);
}

void
tg_trace_response_blocking(struct tg_request *req, json_t *body)
{
	if (recorded_attempt(req) != NULL)
		tg_genai_upstream_finish(req->trace, body, 1);
}

/* The same for a whole response body. */
static void
record_response_body(struct tg_request *req, struct tg_span *span)
{
	struct tg_trace *t = req->trace;
	const struct tg_reply_detail *x = NULL;

	if (tg_trace_reads_reply_detail(req))
		x = tg_relay_response_detail(req);
	/* NOTE: jansson rejects a whole reply for one string with a NUL or
	 * invalid UTF-8. So when the tree reads the reply (content capture),
	 * the span gets no response attribute at all. */
	if (x != NULL)
		tg_genai_response_detail(t, span, tg_relay_response_digest(req), x);
	else if (is_anthropic(t))
		tg_genai_anthropic_response(t, span, tg_relay_response_json(req));
	else
		tg_genai_response(t, span, tg_relay_response_json(req));
}

/* End the current attempt's span with what its response showed. */
static void
end_attempt_span(struct tg_request *req, uint64_t end_mono)
{
	struct tg_trace *t = req->trace;

	tg_genai_attempt_done(t, t->attempt);
	tg_trace_span_end(t, t->attempt, end_mono);
	tg_genai_attempt_reset(t);
	t->attempt = NULL;
}

/*
 * Set error.type to a value of low cardinality, as the conventions ask.
 * A failure of the gateway's own gets its reason (errors.c), such as
 * "upstream_tls" or "first_byte_timeout". Otherwise an error status gets
 * its code as a string, and anything else "_OTHER". tollgate.json(5)
 * lists the values. The reasons are literals that need no JSON escape.
 */
static void
set_error_type(struct tg_span *span, enum tg_error err, int status)
{
	char digits[12];
	const char *reason = tg_error_info(err)->reason;

	if (reason != NULL) {
		tg_attrs_static_plain(&span->attrs, TG_SC(ERROR_TYPE), reason, strlen(reason));
	} else if (status >= 400) {
		snprintf(digits, sizeof(digits), "%d", status);
		tg_attrs_string(&span->attrs, TG_SC(ERROR_TYPE), digits);
	} else {
		tg_attrs_literal(&span->attrs, TG_SC(ERROR_TYPE), "_OTHER");
	}
}

/* The attempt failed with err (TG_OK for an error status). */
static void
mark_attempt_failed(struct tg_span *span, enum tg_error err, int status)
{
	set_error_type(span, err, status);
	tg_span_set_status(span, TG_STATUS_ERROR,
	                   err != TG_OK ? tg_error_info(err)->message : NULL);
}

void
tg_trace_attempt_end(struct tg_request *req)
{
	struct tg_trace *t = req->trace;
	struct tg_span *span = t ? t->attempt : NULL;
	const struct tg_attempt *a;

	if (span == NULL || req->n_attempts == 0)
		return;
	a = &req->attempts[req->n_attempts - 1];
	if (t->sampled && a->status != 0) {
		tg_attrs_int(&span->attrs, TG_SC(HTTP_RESPONSE_STATUS_CODE), a->status);
		t->status_code_set = 1;
	}

	/* HTTP client spans count 4xx as errors too: the call did not do what
	 * was asked. An attempt the client cancelled did not fail, and its
	 * span ends with the request. An attempt that the gateway gave up for
	 * want of a descriptor or memory did fail, although the backend's
	 * health does not count it. */
	if (t->sampled && (a->error != TG_OK || (a->outcome != TG_OUTCOME_CANCELLED &&
	                                         (a->outcome != TG_OUTCOME_SUCCESS ||
	                                          a->status >= 400))))
		mark_attempt_failed(span, a->error, a->status);

	if (a->outcome == TG_OUTCOME_SUCCESS && req->upstream != NULL)
		return;         /* the response is still coming */
	end_attempt_span(req, a->end_ns ? a->end_ns : tg_request_now(req));
}

void
tg_trace_upstream_done(struct tg_request *req)
{
	struct tg_span *span = recorded_attempt(req);

	if (req->trace == NULL || req->trace->attempt == NULL)
		return;
	if (span != NULL && !req->response.streaming)
		record_response_body(req, span);
	if (span != NULL && req->response.status != 0 && !req->trace->status_code_set)
		tg_attrs_int(&span->attrs, TG_SC(HTTP_RESPONSE_STATUS_CODE), req->response.status);
	if (span != NULL && tg_error_is_upstream(req->error))
		mark_attempt_failed(span, req->error, 0);
	end_attempt_span(req, tg_request_now(req));
}

void
tg_trace_cache_start(struct tg_request *req)
{
	if (req->trace == NULL || req->route == NULL || req->route->cache == NULL)
		return;
	req->trace->cache = tg_trace_child(req->trace, TG_SPAN_INTERNAL, "cache lookup",
	                                   tg_now_ns());
}

void
tg_trace_cache_end(struct tg_request *req)
{
	struct tg_span *span = req->trace ? req->trace->cache : NULL;
	const char *result = tg_cache_status(req);
	const struct tg_cache_config *cfg = req->config->cache;

	if (span == NULL)
		return;
	tg_attrs_static_string(&span->attrs, TG_SC(TOLLGATE_CACHE_RESULT),
	                       result ? result : "bypass");
	if (cfg != NULL)
		tg_attrs_static_string(&span->attrs, TG_SC(TOLLGATE_CACHE_STORE),
		                       cfg->store == TG_CACHE_STORE_REDIS ? "redis" : "memory");
	tg_trace_span_end(req->trace, span, tg_request_now(req));
	req->trace->cache = NULL;
}

void
tg_trace_cache_first_token(struct tg_request *req, uint64_t now_mono)
{
	struct tg_span *span = req->trace ? req->trace->cache : NULL;

	if (span != NULL)
		tg_span_add_event(span, TG_SC(EVENT_FIRST_TOKEN), tg_trace_time(req->trace, now_mono));
}

void
tg_trace_filters_start(struct tg_request *req)
{
	if (req->trace == NULL || !req->trace->sampled || req->route == NULL ||
	    req->route->filters == NULL)
		return;
	req->trace->filters_start = tg_now_ns();
	req->trace->filters_running = 1;
}

/* The decision of filter on the sides set in sides: the strongest action
 * it took, the first of equals, or NULL when it took none (a pass). */
static const struct tg_filter_decision *
decision_of(const struct tg_filter_log *log, const char *filter, unsigned sides)
{
	const struct tg_filter_decision *found = NULL;

	for (size_t i = 0; log != NULL && i < log->n; i++) {
		const struct tg_filter_decision *d = &log->items[i];

		if (!(d->side & sides) || strcmp(d->filter, filter) != 0)
			continue;
		if (found == NULL || d->action > found->action)
			found = d;
	}
	return found;
}

/* Set key to a name of filter.c's tables (tg_side_name(),
 * tg_filter_action_name()), which need no JSON escape: a unit test checks
 * every one. */
static void
set_filter_word(struct tg_attrs *attrs, const char *key, const char *word)
{
	tg_attrs_static_plain(attrs, key, word, strlen(word));
}

/* The attributes of decision d taken on side (NULL: a pass) in attrs, a
 * span's or an event's. */
static void
set_decision(struct tg_attrs *attrs, const struct tg_filter_decision *d, enum tg_side side)
{
	set_filter_word(attrs, TG_SC(TOLLGATE_FILTER_STAGE), tg_side_name(side));
	set_filter_word(attrs, TG_SC(TOLLGATE_FILTER_DECISION),
	                d ? tg_filter_action_name(d->action) : "pass");
	if (d != NULL && d->rule != NULL)
		tg_attrs_string(attrs, TG_SC(TOLLGATE_FILTER_RULE), d->rule);
	if (d != NULL && d->unmaskable)
		tg_attrs_bool(attrs, TG_SC(TOLLGATE_FILTER_UNMASKABLE), 1);
}

static void
add_decision_event(struct tg_trace *t, const struct tg_filter_decision *d, uint64_t mono)
{
	struct tg_attrs *event = tg_span_add_event(t->server, TG_SC(EVENT_FILTER_DECISION),
	                                           tg_trace_time(t, mono));

	if (event == NULL)
		return;
	tg_attrs_string(event, TG_SC(TOLLGATE_FILTER_NAME), d->filter);
	set_decision(event, d, d->side);
}

/* The sides a filter's span covers, and the times of their bounds. */
struct filter_stages {
	unsigned sides;                 /* enum tg_side bits */
	uint64_t start, request_end, end;       /* CLOCK_MONOTONIC */
};

/* An event on a filter's span for decision d (NULL: none) of one side,
 * at that side's end. */
static void
add_side_event(struct tg_trace *t, struct tg_span *span, const struct tg_filter_decision *d,
               uint64_t at)
{
	struct tg_attrs *event;

	if (d == NULL)
		return;
	event = tg_span_add_event(span, TG_SC(EVENT_FILTER_DECISION), tg_trace_time(t, at));
	if (event != NULL)
		set_decision(event, d, d->side);
}

/*
 * One span for filter f over the stages it checked, named "filter NAME".
 * Its decision is the strongest it took on any side, and its stage the
 * side of that decision (for a pass, the last side checked). A filter
 * that checked both sides and decided on one has an event per side that
 * it decided on, at that side's end.
 *
 * Both sides share one span, rather than one span each, for two reasons.
 * The response side of a stream runs event by event for the whole relay,
 * so a span of its own would time the relay, not the filter. And a span
 * costs about 2,000 instructions with its export (callgrind), which every
 * request that passes would pay. The shared span, with no event when both
 * sides pass, cost no more than the request side's span alone, within
 * 100 instructions, on bench/post.lua's request with a mask filter on both
 * sides (callgrind, worker and exporter threads).
 */
static void
filter_span(struct tg_request *req, const struct tg_filter *f,
            const struct filter_stages *st)
{
	struct tg_trace *t = req->trace;
	const struct tg_filter_log *log = tg_filter_decisions(req);
	const struct tg_filter_decision *d = decision_of(log, f->name, st->sides);
	enum tg_side last = st->sides & TG_SIDE_RESPONSE ? TG_SIDE_RESPONSE : TG_SIDE_REQUEST;
	struct tg_span *span;
	char name[128];
	size_t len;

	len = name_append(name, sizeof(name), 0, "filter ", SIZE_MAX);
	name_append(name, sizeof(name), len, f->name, 100);
	span = tg_trace_child(t, TG_SPAN_INTERNAL, name, st->start);
	if (span == NULL)
		return;
	tg_attrs_string(&span->attrs, TG_SC(TOLLGATE_FILTER_NAME), f->name);
	set_decision(&span->attrs, d, d ? d->side : last);
	if (d != NULL && d->action == TG_ACTION_BLOCK) {
		set_error_type(span, TG_E_CONTENT_FILTER, 0);
		tg_span_set_status(span, TG_STATUS_ERROR, "blocked by a content filter");
	}

	if (d != NULL && st->sides == (TG_SIDE_REQUEST | TG_SIDE_RESPONSE)) {
		add_side_event(t, span, decision_of(log, f->name, TG_SIDE_REQUEST), st->request_end);
		add_side_event(t, span, decision_of(log, f->name, TG_SIDE_RESPONSE), st->end);
	}
	tg_trace_span_end(t, span, st->end);
}

void
tg_trace_filters_end(struct tg_request *req)
{
	struct tg_trace *t = req->trace;
	const struct tg_filter_chain *chain;
	const struct tg_filter_log *log;
	uint64_t now;

	if (t == NULL || !t->filters_running)
		return;
	now = tg_request_now(req);
	t->filters_running = 0;
	t->filters_end = now;
	chain = &req->route->filters->chain;
	log = tg_filter_decisions(req);

	/* The span of a filter that checks responses too waits for them. */
	for (size_t i = 0; i < chain->n; i++) {
		struct filter_stages st = {TG_SIDE_REQUEST, t->filters_start, now, now};

		if (chain->filters[i]->apply_to == TG_SIDE_REQUEST)
			filter_span(req, chain->filters[i], &st);
	}
	for (size_t i = 0; log != NULL && i < log->n; i++) {
		if (log->items[i].side == TG_SIDE_REQUEST)
			add_decision_event(t, &log->items[i], now);
	}
}

/*
 * The spans of the filters of the response side, once the request is done,
 * since a stream's filters decide until its end. The response side counts
 * when its filters read a response, from when the last attempt got it.
 */
static void
response_filter_spans(struct tg_request *req)
{
	struct tg_trace *t = req->trace;
	const struct tg_filter_chain *chain;
	int checked = tg_filter_response_checked(req);
	uint64_t arrived = req->n_attempts > 0 ? req->attempts[req->n_attempts - 1].end_ns : 0;

	if (req->route == NULL || req->route->filters == NULL)
		return;
	chain = &req->route->filters->chain;
	for (size_t i = 0; i < chain->n; i++) {
		unsigned apply_to = chain->filters[i]->apply_to;
		struct filter_stages st = {0, 0, t->filters_end, req->done_ns};

		if (!(apply_to & TG_SIDE_RESPONSE))
			continue;
		if ((apply_to & TG_SIDE_REQUEST) && t->filters_end != 0) {
			st.sides |= TG_SIDE_REQUEST;
			st.start = t->filters_start;
			st.end = t->filters_end;
		}
		if (checked) {
			st.sides |= TG_SIDE_RESPONSE;
			if (st.start == 0)
				st.start = arrived != 0 ? arrived : req->done_ns;
			st.end = req->done_ns;
		}
		if (st.sides != 0)
			filter_span(req, chain->filters[i], &st);
	}
}

/* Decisions the response filters took, as events of the server span. */
static void
add_response_decisions(struct tg_request *req)
{
	const struct tg_filter_log *log = tg_filter_decisions(req);

	/* Response decisions are complete only now, so they are timed at the
	 * request's end. */
	for (size_t i = 0; log != NULL && i < log->n; i++) {
		if (log->items[i].side == TG_SIDE_RESPONSE)
			add_decision_event(req->trace, &log->items[i], req->done_ns);
	}
}

int
tg_trace_id_of(const struct tg_request *req, char *out)
{
	if (req->trace == NULL)
		return -1;
	tg_trace_id_hex(req->trace, out);
	return 0;
}

/* Failures of the gateway or the upstream, not of the client's request. */
static int
request_failed(const struct tg_request *req)
{
	return req->response.status >= 500 || tg_error_is_upstream(req->error) ||
	       req->cause == TG_CAUSE_UPSTREAM_FAILED ||
	       req->cause == TG_CAUSE_UPSTREAM_TIMEOUT || req->cause == TG_CAUSE_DRAIN;
}

/*
 * Whether a response filter blocked the response, which the client then
 * got with its status (200) but without the upstream's content. That is a
 * failure of the call, unlike a block of the request, which the client
 * caused and got as a 400.
 */
static int
response_blocked(const struct tg_request *req)
{
	const struct tg_filter_log *log = tg_filter_decisions(req);

	if (req->error != TG_E_CONTENT_FILTER)
		return 0;
	for (size_t i = 0; log != NULL && i < log->n; i++) {
		if (log->items[i].side == TG_SIDE_RESPONSE && log->items[i].action == TG_ACTION_BLOCK)
			return 1;
	}
	return 0;
}

static void
finish_server_span(struct tg_request *req, struct tg_span *server)
{
	char termination[3] = {(char)req->cause, (char)req->phase, '\0'};

	if (req->route != NULL)
		tg_attrs_string(&server->attrs, TG_SC(TOLLGATE_ROUTE), req->route->name);
	if (req->key != NULL)
		tg_attrs_string(&server->attrs, TG_SC(TOLLGATE_KEY), req->key->name);
	if (req->model != NULL)
		tg_attrs_string(&server->attrs, TG_SC(GEN_AI_REQUEST_MODEL), req->model);
	if (req->response.status != 0)
		tg_attrs_int(&server->attrs, TG_SC(HTTP_RESPONSE_STATUS_CODE), req->response.status);
	tg_attrs_string(&server->attrs, TG_SC(TOLLGATE_TERMINATION), termination);

	if (response_blocked(req)) {
		set_error_type(server, TG_E_CONTENT_FILTER, 0);
		tg_span_set_status(server, TG_STATUS_ERROR, "the response was blocked by a "
		                   "content filter");
		return;
	}
	/* A 429 of a key's rate limit is the client's doing, so the status
	 * stays unset as for any 4xx of a server span, but error.type names
	 * the limit, for finding the rejected calls. */
	if (req->error == TG_E_REQUEST_RATE_LIMIT || req->error == TG_E_TOKEN_RATE_LIMIT)
		set_error_type(server, req->error, req->response.status);
	if (!request_failed(req))
		return;
	set_error_type(server, req->error, req->response.status);
	tg_span_set_status(server, TG_STATUS_ERROR,
	                   req->error != TG_OK ? tg_error_info(req->error)->message : NULL);
}

void
tg_trace_request_done(struct tg_request *req)
{
	struct tg_trace *t = req->trace;
	struct tg_span *last;

	if (t == NULL)
		return;
	tg_trace_upstream_done(req);
	tg_trace_cache_end(req);        /* a hit: the response came from the cache */
	tg_trace_filters_end(req);      /* a block: the request went no further */
	if (t->sampled) {
		response_filter_spans(req);
		add_response_decisions(req);
	}

	/* An upstream failure found after the attempt's span ended, such as a
	 * stream that stopped without a finish reason, is the last attempt's. */
	last = t->last_attempt;
	if (t->sampled && last != NULL && last->status != TG_STATUS_ERROR &&
	    tg_error_is_upstream(req->error))
		mark_attempt_failed(last, req->error, 0);

	req->trace = NULL;
	if (t->sampled)
		finish_server_span(req, t->server);
	tg_trace_finish(t, req->worker->runtime->tracer, req->done_ns);
}
