/*
 * The relay: the upstream handler that turns an upstream response into the
 * client's response.
 *
 * Non-streaming bodies are buffered whole, bounded, then sent. Streams
 * (text/event-stream) are parsed into events as they arrive, and each event
 * goes to the client whole, with its bytes unchanged, as soon as its last
 * byte arrived. Until the first event with content, events without content
 * (the role-only first chunk, empty deltas, comments) are held, and the
 * response head with them, so an error the upstream reports before any
 * content can still move the request to another backend.
 */
#ifndef TOLLGATE_RELAY_H
#define TOLLGATE_RELAY_H

#include <jansson.h>

#include "filter.h"
#include "reply-digest.h"
#include "sse.h"
#include "upstream.h"

struct tg_request;
struct evbuffer;

/* Kind of a stream event, as the relay classifies it. */
enum tg_event_kind {
	TG_EVENT_EMPTY,         /* no content: role-only, empty delta, ping */
	TG_EVENT_CONTENT,       /* text, refusal, tool call, finish, usage */
	TG_EVENT_ERROR,         /* the upstream reports an error in-stream */
	TG_EVENT_DONE,          /* "[DONE]" or Anthropic's message_stop */
};

/*
 * A stream event on its way to the client, as features see it at the
 * single point where events leave (relay.c, emit_event). raw contains the
 * exact bytes of one event, which are what the client gets. digest is what
 * the relay read of its data on the way in (reply-digest.h), which is all
 * the relay and the metrics need. The whole data as a jansson tree is
 * built only when a feature requests it, by tg_stream_event_json(), and
 * then kept, so features share one parse. A feature that changes raw
 * changes the digest and the tree to match, and the other way round.
 * detail is read with the digest when tracing reads it; a feature that
 * changes raw builds a new event without it.
 */
struct tg_stream_event {
	enum tg_event_kind kind;
	struct evbuffer *raw;
	json_t *json;           /* the tree, once built; NULL when not JSON */
	int finish;             /* carries a finish_reason or stop_reason */
	struct tg_reply_digest digest;
	struct tg_reply_detail detail;  /* empty unless tracing reads it */
	const char *data;       /* the data, while the tree is yet to be built */
	size_t data_len;
	char *data_copy;        /* data's own copy in a held event, or NULL */
	int has_data;           /* the event carried data, JSON or not */
	size_t data_at;         /* offset of the data in raw while raw holds the
	                           upstream's bytes and the data came in one
	                           line (tg_sse_event's data_at), else 0 */
	int usage_stripped;     /* "usage": null was taken out of raw */
	int tapped;             /* the stream filters read the data in the
	                           digest's pass (tg_filter_response_tap) */
	int from_gateway;       /* written by the gateway, not the upstream:
	                           the end of a stream a filter blocked */
};

extern const struct tg_upstream_handler tg_relay_handler;

/* Write a complete response of the gateway's own: status, extra header
 * lines (each ending in CRLF, may be NULL), and a JSON body. */
void tg_relay_local_response(struct tg_request *req, int status,
                             const char *extra_headers, struct evbuffer *body);

/* The same with another Content-Type, for a body of the gateway's own
 * that is not JSON. */
void tg_relay_local_response_typed(struct tg_request *req, int status,
                                   const char *content_type,
                                   const char *extra_headers, struct evbuffer *body);

/* Write a complete 200 stream of the gateway's own (a cached one), all of
 * whose events are in body, framed as a relayed stream is: chunked for
 * HTTP/1.1, and ended by the close for HTTP/1.0, without Content-Length. */
void tg_relay_local_stream(struct tg_request *req, const char *content_type,
                           const char *extra_headers, struct evbuffer *body);

/* The client's output drained below its low mark: resume the upstream. */
void tg_relay_client_writable(struct tg_request *req);

/*
 * Write the end of req's stream for a connection that the shutdown closes
 * at once, at the drain deadline: the error event of a stream that failed
 * after it reached the client, with TG_E_SHUTTING_DOWN, which becomes
 * req's error. The bytes go to
 * the client's output; the caller flushes them before it closes. Returns
 * 1 when written, or 0 when req has no stream in progress (a response not
 * streamed, a head not sent yet, or a stream already ended).
 */
int tg_relay_cut_stream(struct tg_request *req);

/* Release the relay's state of req's response (on failover and at the end). */
void tg_relay_reset(struct tg_request *req);

/*
 * The whole non-streamed response body (req->response.body) as JSON, or
 * NULL when it is not JSON; call it only once the body arrived whole (or
 * the response ended). The body is parsed at the first call and the
 * result kept until tg_relay_reset(), so metrics, filters, the cache and
 * tracing share one parse. The response owns the value, so a caller that
 * keeps it past the response takes a reference. A caller that changes the
 * value must write the body again from it, so that both stay the same
 * response. A caller that cannot do so calls tg_relay_response_json_stale().
 */
json_t *tg_relay_response_json(struct tg_request *req);

/*
 * The reply digest of the whole non-streamed body, zeroed when there is
 * no body. It is read at the first call and kept until tg_relay_reset(),
 * so that metrics and tracing share one read. Call it once the body is
 * final: arrived whole and through the filters. When tracing reads the
 * response (tg_trace_reads_reply_detail), the same read takes the detail,
 * which tg_relay_response_detail() returns if it is usable, else NULL.
 */
const struct tg_reply_digest *tg_relay_response_digest(struct tg_request *req);
const struct tg_reply_detail *tg_relay_response_detail(struct tg_request *req);

/*
 * Read the texts of the non-streamed body for the response filters, with
 * the result of tg_text_read_response(). The metrics read the digest of
 * every body, so the read also takes the digest when it is not read yet,
 * and yajl parses the body once. When fn does not stop the read, the body
 * goes out unchanged and the digest is kept. When fn stops it, the
 * filters may rewrite the body, and tg_relay_response_digest() reads the
 * body after them. A body that the digest finds not JSON is read again
 * for its texts alone, as tg_text_read_response_digest() requires.
 */
int tg_relay_response_texts(struct tg_request *req, tg_text_fn *fn, void *arg);

/* Drop the value tg_relay_response_json() returned, and the digest,
 * because the body no longer matches them (a rewrite failed half way).
 * The next calls read the body again. */
void tg_relay_response_json_stale(struct tg_request *req);

/* Read one event's data into *digest, and into *detail unless it is NULL,
 * and classify it; *finish is set when it carries a finish_reason or
 * stop_reason. The data of "[DONE]" and of "error" events is not read. */
enum tg_event_kind tg_relay_classify(const struct tg_sse_event *sse,
                                     struct tg_reply_digest *digest,
                                     struct tg_reply_detail *detail, int *finish);

/*
 * The event's data as a jansson tree, or NULL when it is not a JSON
 * object. Built at the first call from ev->data, which the relay sets only
 * while it reads the event, or while it keeps the event with a copy of the
 * data. The event owns the tree.
 */
json_t *tg_stream_event_json(struct tg_stream_event *ev);

#endif
