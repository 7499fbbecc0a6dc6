/*
 * Content filters on the request path: the hooks that request.c and
 * relay.c call, and the per-request state behind them (req->filters).
 */
#ifndef TOLLGATE_FILTER_REQUEST_H
#define TOLLGATE_FILTER_REQUEST_H

#include <stddef.h>

#include <yajl/yajl_parse.h>

struct tg_reply_tap;
struct tg_request;
struct tg_route;
struct tg_stream_event;
struct tg_filter_log;

/* The step after the request filters. */
typedef void tg_filter_next_fn(struct tg_request *req);

/*
 * Run the request-side filters of req's route, after routing. When they
 * let the request through (masked or not), next is called exactly once: at
 * once, or from the event loop once the moderation calls have replied. When a
 * filter blocks, req gets 400 "content_filter" and next is not
 * called. The caller must not touch req after this call.
 */
void tg_filter_request(struct tg_request *req, tg_filter_next_fn *next);

/*
 * After routing, before the rate limits: reject req, whose body is not
 * JSON (body_opaque in request-t.h), with 415 when a filter of its route
 * would mask or block, because such a filter cannot read the body and it
 * could carry what the filter is there to stop. A filter that only flags
 * lets it pass. Returns 1 when rejected, else 0.
 */
int tg_filter_reject_unreadable(struct tg_request *req);

/* Whether a filter of route would mask or block requests, so that the
 * route rejects a body that is not JSON (tg_filter_reject_unreadable()). */
int tg_filter_reads_json_only(const struct tg_route *route);

/* Filter a whole non-streaming response body (req->response.body) before
 * its head goes out: mask in place, or on a block replace each choice's
 * content with null and finish_reason "content_filter" (an Anthropic
 * message's content with [] and stop_reason "refusal"). The body and its
 * shared parse (tg_relay_response_json) both change. A body that no filter
 * matches is left as it came, without a parse. Returns 0, or -1 when the
 * filters failed, or matched in a body that jansson cannot parse, and the
 * body must not be sent. */
int tg_filter_response_body(struct tg_request *req);

/* How the relay sends one event to the client. */
typedef void tg_filter_send_fn(struct tg_request *req, struct tg_stream_event *ev);

/*
 * Pass one stream event through the response-side filters. Returns 0 when
 * no filter applies (the caller sends ev itself), 1 when the filters took
 * it: what may go out now went through send, in order. When a filter has
 * a hold_timeout, held events may also go through send later, from a
 * timer, so send must not assume that it runs inside a relay call.
 */
int tg_filter_response_event(struct tg_request *req, struct tg_stream_event *ev,
                             tg_filter_send_fn *send);

/*
 * Let the stream filters read the texts of the next event's data (len
 * bytes at data) in the relay's digest pass, once they filter req's
 * stream: fills *tap and returns the handle for tg_reply_digest_tap(), or
 * NULL when they do not read in that pass. After the digest, with rc what
 * it returned (-2 when it did not run), tg_filter_response_tapped()
 * returns the event's "tapped".
 */
yajl_handle *tg_filter_response_tap(struct tg_request *req, const char *data, size_t len,
                                    struct tg_reply_tap *tap);
int tg_filter_response_tapped(struct tg_request *req, int rc);

/* The stream ended without [DONE]: send what the filters hold. Returns as
 * tg_filter_response_event does. */
int tg_filter_response_end(struct tg_request *req, tg_filter_send_fn *send);

/* Drop the stream filtering of the response so far (its held events and
 * timer), keeping the decisions: on failover to another attempt. */
void tg_filter_response_reset(struct tg_request *req);

/* 1 once a filter blocked the streamed response: the relay must stop the
 * upstream and end the response (the end of the stream was sent). */
int tg_filter_response_blocked(const struct tg_request *req);

/* 1 once the response filters read a response of req, whole or as a
 * stream, whatever they decided. */
int tg_filter_response_checked(const struct tg_request *req);

/* Whether a filter of req's route reads the response side, so that a
 * response the filters cannot read must not reach the client. */
int tg_filter_response_screened(const struct tg_request *req);

/* The decisions taken on req, or NULL when its route has no filters. */
const struct tg_filter_log *tg_filter_decisions(const struct tg_request *req);

/* Cancel moderation calls still running and free the state (from
 * tg_request_done). */
void tg_filter_request_done(struct tg_request *req);

#endif
