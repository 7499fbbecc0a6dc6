/*
 * Tracing hooks of the request path. Each request with tracing enabled
 * gets a span tree (req->trace): a SERVER span for the whole request, a
 * CLIENT span per upstream attempt, INTERNAL spans for the cache lookup
 * and each filter. The hooks are called on the request's worker thread at
 * the points named below. Each does nothing when the request has no tree,
 * so callers need not check.
 *
 * Span ids come from OpenSSL's RAND_bytes (see trace-context.h).
 */
#ifndef TOLLGATE_TRACE_H
#define TOLLGATE_TRACE_H

#include <stddef.h>

#include <jansson.h>

struct tg_request;
struct tg_stream_event;
struct evbuffer;

/* Dispatch, once the request id is known: continue or start the trace,
 * decide sampling and open the server span. */
void tg_trace_request_start(struct tg_request *req);

/*
 * An upstream attempt begins; req->attempts[req->n_attempts - 1] is
 * filled in. Call before the upstream request is built, since it decides
 * the traceparent the request carries. A second attempt also adds a
 * failover event to the server span.
 */
void tg_trace_attempt_start(struct tg_request *req);

/* The traceparent value for the current attempt's upstream request, or
 * NULL to pass the client's trace headers through untouched (no tree). */
const char *tg_trace_upstream_traceparent(const struct tg_request *req);

/* 1 when the request's attempt spans will record the parameters of its
 * body (request-scan.h): the request is sampled and its path is a gen_ai
 * operation. */
int tg_trace_reads_request_params(const struct tg_request *req);

/* 1 when the request's attempt spans will read the body's tree
 * (tg_request_json()) for gen_ai.input.messages: the request is sampled,
 * its path is a gen_ai operation, and content capture is on. The other
 * request attributes come from the scan of the body (request-scan.h). */
int tg_trace_reads_request_tree(const struct tg_request *req);

/* 1 when the client's tracestate must not go upstream: its traceparent
 * was invalid or absent, so the state belongs to no trace we continue. */
int tg_trace_drop_tracestate(const struct tg_request *req);

/* Whether tracing reads the current attempt's response from the reply
 * detail (reply-digest.h), which the relay then reads with the digest of
 * each event and of the body. */
int tg_trace_reads_reply_detail(const struct tg_request *req);

/* A stream event of the current attempt leaves for the client. Its tree
 * is built only when the request is traced. Call after output filters ran.
 * An event the gateway wrote itself (ev->from_gateway), such as the end of
 * a stream a filter blocked, is not the upstream's and is skipped. */
void tg_trace_stream_event(struct tg_request *req, struct tg_stream_event *ev);

/*
 * The finish reasons of the current attempt's response as the upstream sent
 * them, for its span, before the response filters rewrite them: of a stream
 * event that carries one (ev->finish), which the filters may drop, or of a
 * non-streamed body that a filter is about to block. They need not be
 * read twice, so the event is read only on a route with response filters.
 * A stream event's tree is parsed apart, leaving ev as the filters get it.
 */
void tg_trace_upstream_finish(struct tg_request *req, struct tg_stream_event *ev);
void tg_trace_response_blocking(struct tg_request *req, json_t *body);

/*
 * The current attempt's outcome is recorded in req->attempts[req->n_attempts
 * - 1]. A failed attempt's span ends now. A successful one goes on until
 * its response has been read whole (tg_trace_upstream_done), since the
 * attempt counts as a success once its head or first content arrived.
 */
void tg_trace_attempt_end(struct tg_request *req);

/* The upstream response was read whole, or failed after its head: end
 * the attempt's span. Call it after the output filters ran, so that for
 * a non-streamed response req->response.body is what the client gets. */
void tg_trace_upstream_done(struct tg_request *req);

/* The cache lookup of a route with a cache: start before it, and end
 * when it found no entry. A lookup that found one ends with the request. */
void tg_trace_cache_start(struct tg_request *req);
void tg_trace_cache_end(struct tg_request *req);

/* Add the first-token event of a streamed hit, sent at now_mono, to the
 * cache lookup's span: the span the response came from, as the attempt's
 * span is on a miss. */
void tg_trace_cache_first_token(struct tg_request *req, uint64_t now_mono);

/*
 * The request filters of a route: start before they run, end when they let
 * the request through. Each filter of the request side only then gets an
 * INTERNAL span with its decision ("pass", or the action it took), and
 * each decision an event on the server span. Filters that blocked the
 * request get their spans when the request ends, with status ERROR, as do
 * the filters of the response side, whose one span covers both sides.
 */
void tg_trace_filters_start(struct tg_request *req);
void tg_trace_filters_end(struct tg_request *req);

/* The trace id of the request as 32 hex digits in out (33 bytes). Returns
 * 0, or -1 when the request has no trace. */
int tg_trace_id_of(const struct tg_request *req, char *out);

/* The last byte of the response reached the client (or the request ended
 * otherwise): end the server span at req->done_ns and submit the tree. */
void tg_trace_request_done(struct tg_request *req);

#endif
