/*
 * The relay between an upstream response and the client.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/util.h>

#include "attempt.h"
#include "cache.h"
#include "client.h"
#include "config-parse.h"
#include "filter-request.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "relay.h"
#include "request.h"
#include "trace.h"
#include "upstream.h"
#include "worker.h"

#define SSE_MAX_EVENT (8 * 1024 * 1024)
#define TOO_LARGE_TO_SCREEN \
	"the upstream sent a stream event too large for the content filters to read"
#define TOO_LARGE_TO_HOLD \
	"the content filters had to hold back more of the upstream stream than " \
	"limits.max_response_body allows"
/* The message when the response filters fail, in a body or a stream alike. */
#define FILTERS_FAILED "the content filters could not check the response"
#define HOLD_MAX_EVENTS TG_MAX_HELD_EVENTS
#define HOLD_MAX_BYTES (64 * 1024)

/* Returned by the event callback to stop parsing. ABANDONED: the stream
 * moved to another attempt, so the rest of this upstream's bytes are
 * dropped. FAILED: an error event came before any content and no backend
 * is left. */
#define STREAM_ABANDONED 1
#define STREAM_FAILED 3

/* Returned by the event callback to stop parsing: a content filter ended
 * the stream, so the upstream is cancelled. */
#define STREAM_BLOCKED 2

/* --- response head ---------------------------------------------------------- */

/* The Connection header that lets the client know whether the connection
 * stays open after this response. */
static const char *
connection_header(const struct tg_request *req)
{
	const struct tg_client *c = req->client;

	if (!req->keepalive || c->close_after_response || req->worker->draining)
		return "Connection: close\r\n";
	return req->http_minor == 0 ? "Connection: keep-alive\r\n" : "";
}

/* 204 and 304 responses carry no Content-Length of their own: a 204 must
 * not send one, and a 304's would describe a body it does not have
 * (RFC 9110 section 8.6). */
static int
no_content_length(int status)
{
	return status == 204 || status == 304;
}

/* Write status, which upstream.c checks is 100-599, as the three digits
 * of an attempt's label. Formatted by hand: snprintf() cost about 600
 * instructions per response here (callgrind). */
static void
status_label(int status, char label[4])
{
	assert(status >= 100);
	assert(status <= 599);
	label[0] = (char)('0' + status / 100);
	label[1] = (char)('0' + status / 10 % 10);
	label[2] = (char)('0' + status % 10);
	label[3] = '\0';
}

/* Append "HTTP/1.1 NNN Reason\r\n" for a status of 100-599, the range the
 * upstream's status is checked against. Formatted by hand, as headers are. */
static void
add_status_line(struct tg_head *head, int status)
{
	const char *reason = tg_http_reason(status);
	char digits[4];

	status_label(status, digits);
	tg_head_add(head, "HTTP/1.1 ", 9);
	tg_head_add(head, digits, 3);
	tg_head_add(head, " ", 1);
	tg_head_add(head, reason, strlen(reason));
	tg_head_add(head, "\r\n", 2);
}

/* Append the Date line of a response of a site (worker.h), the admin
 * listener, in place of the request lines of the gateway's responses. The
 * site is an origin server, which RFC 9110 section 6.6.1 requires to send
 * Date when it has a clock. */
static void
add_date_line(struct tg_head *head)
{
	char date[64];

	if (evutil_date_rfc1123(date, sizeof(date), NULL) > 0)
		TG_HEAD_LINE(head, "Date", date);
}

/* Append the line x-tollgate-attempts, when the request has one, the
 * request id, and the x-ratelimit-* lines of a key with limits. */
static void
add_request_lines(struct tg_head *head, const struct tg_request *req)
{
	char attempts[512], limits[320];
	size_t len;

	TG_HEAD_LINE(head, "X-Request-Id", req->id);
	tg_attempt_header(req, attempts, sizeof(attempts));
	tg_head_add(head, attempts, strlen(attempts));
	len = tg_ratelimit_header_lines(req, limits, sizeof(limits));
	tg_head_add(head, limits, len);
}

/* Append the status line, the kept upstream headers and the gateway's own
 * to out. content_length < 0 means the body length is not known in advance. */
static void
write_head(struct tg_request *req, struct evbuffer *out, long long content_length)
{
	struct tg_response *resp = &req->response;
	size_t before = evbuffer_get_length(out);
	const char *connection;
	struct tg_head head;

	if (content_length < 0 && req->http_minor == 0)
		req->keepalive = 0;    /* HTTP/1.0: the close ends the body */

	tg_head_start(&head, out);
	add_status_line(&head, resp->status);
	for (size_t i = 0; i < resp->headers.count; i++) {
		const struct tg_header *hd = &resp->headers.items[i];

		if (tg_ratelimit_replaces(req, hd))
			continue;
		tg_head_line(&head, hd->name, hd->name_len, hd->value, hd->value_len);
	}
	add_request_lines(&head, req);
	if (content_length >= 0 && !no_content_length(resp->status))
		tg_head_number(&head, "Content-Length", 14, (unsigned long long)content_length);
	else if (resp->chunked)
		TG_HEAD_LINE(&head, "Transfer-Encoding", "chunked");
	connection = connection_header(req);
	tg_head_add(&head, connection, strlen(connection));
	tg_head_add(&head, "\r\n", 2);
	tg_head_end(&head);

	resp->head_sent = 1;
	req->bytes_out += evbuffer_get_length(out) - before;
}

/* Send the response head. A body of content_length bytes follows, or a
 * stream when content_length < 0. */
static void
send_head(struct tg_request *req, long long content_length)
{
	tg_client_cork(req->client);
	write_head(req, tg_client_corked_output(req->client), content_length);
	tg_client_uncork(req->client);
}

void
tg_relay_local_response(struct tg_request *req, int status,
                        const char *extra_headers, struct evbuffer *body)
{
	tg_relay_local_response_typed(req, status, "application/json", extra_headers, body);
}

static void add_chunk_size(struct evbuffer *out, size_t len);

/* Write a complete response of the gateway's own: its body of a known
 * length, or, when streamed is set, a stream framed as send_head() frames
 * a relayed one. */
static void
local_response(struct tg_request *req, int status, const char *content_type,
               const char *extra_headers, struct evbuffer *body, int streamed)
{
	struct tg_client *c = req->client;
	size_t body_len = body ? evbuffer_get_length(body) : 0;
	const char *connection;
	struct evbuffer *out;
	size_t before;
	struct tg_head head;

	if (streamed && req->http_minor == 0)
		req->keepalive = 0;    /* HTTP/1.0: the close ends the body */
	if (streamed)
		req->response.chunked = req->http_minor >= 1;
	connection = connection_header(req);
	tg_client_cork(c);
	out = tg_client_corked_output(c);
	before = evbuffer_get_length(out);
	req->response.status = status;
	tg_head_start(&head, out);
	add_status_line(&head, status);
	TG_HEAD_LINE(&head, "Content-Type", content_type);
	if (streamed && req->response.chunked)
		TG_HEAD_LINE(&head, "Transfer-Encoding", "chunked");
	else if (!streamed)
		tg_head_number(&head, "Content-Length", 14, body_len);
	if (req->worker->site != NULL)
		add_date_line(&head);
	else
		add_request_lines(&head, req);
	if (extra_headers != NULL)
		tg_head_add(&head, extra_headers, strlen(extra_headers));
	tg_head_add(&head, connection, strlen(connection));
	tg_head_add(&head, "\r\n", 2);
	tg_head_end(&head);

	/* The response to HEAD is the head alone, Content-Length included (RFC
	 * 9110 section 9.3.2): a body after it would be read as the start of
	 * the next response on the connection. */
	if (body != NULL && req->method_id == HTTP_HEAD) {
		evbuffer_drain(body, body_len);
	} else if (body != NULL && streamed && req->response.chunked) {
		if (body_len > 0) {
			add_chunk_size(body, body_len);
			evbuffer_add(body, "\r\n", 2);
		}
		evbuffer_add(body, "0\r\n\r\n", 5);
		evbuffer_add_buffer(out, body);
	} else if (body != NULL) {
		evbuffer_add_buffer(out, body);
	}
	req->response.head_sent = 1;
	req->bytes_out += evbuffer_get_length(out) - before;
	tg_client_response_done(c);
	tg_client_uncork(c);
}

void
tg_relay_local_response_typed(struct tg_request *req, int status, const char *content_type,
                              const char *extra_headers, struct evbuffer *body)
{
	local_response(req, status, content_type, extra_headers, body, 0);
}

void
tg_relay_local_stream(struct tg_request *req, const char *content_type,
                      const char *extra_headers, struct evbuffer *body)
{
	local_response(req, 200, content_type, extra_headers, body, 1);
}

/* Keep the upstream's end-to-end headers for the client. Framing is the
 * gateway's own, and the upstream's request id is kept under another name
 * so it does not clash with the gateway's. */
static void
adopt_upstream_headers(struct tg_response *resp, struct tg_headers *upstream)
{
	struct tg_header upstream_id = {0};
	size_t n_kept = 0;

	tg_headers_strip_hop_by_hop(upstream);

	/* One pass drops Content-Length and every X-Request-Id. The text of a
	 * removed header stays in the list's blocks, so the first id is
	 * copied from there. */
	for (size_t i = 0; i < upstream->count; i++) {
		const struct tg_header *hd = &upstream->items[i];

		if (tg_header_named(hd, "Content-Length", 14))
			continue;
		if (tg_header_named(hd, "X-Request-Id", 12)) {
			if (upstream_id.name == NULL)
				upstream_id = *hd;
			continue;
		}
		upstream->items[n_kept++] = *hd;
	}
	upstream->count = n_kept;
	if (upstream_id.name != NULL)
		tg_headers_add(upstream, "X-Upstream-Request-Id", 21, upstream_id.value,
		               upstream_id.value_len);

	tg_headers_free(&resp->headers);
	resp->headers = *upstream;
	tg_headers_init(upstream);
}

static int
is_event_stream(const struct tg_headers *headers)
{
	const char *type = tg_headers_get(headers, "Content-Type");

	return type != NULL && strncasecmp(type, "text/event-stream", 17) == 0;
}

/* --- event classification ----------------------------------------------------- */

/* OpenAI chat and completion chunks: content is text, a refusal, a tool
 * call, reasoning ("reasoning_content" as DeepSeek and vLLM send it,
 * "reasoning" as OpenRouter does) or a finish reason in any choice;
 * "choices": [] is the usage chunk. Reasoning is model output the client
 * shows or waits on, as Anthropic's thinking_delta is. If it were held
 * back, a model that reasons for seconds would send the client nothing,
 * and its SDK's timeout would fire and start the generation again. */
static enum tg_event_kind
classify_openai(const struct tg_reply_digest *d, int *finish)
{
	if (d->n_choices == 0)
		return TG_EVENT_CONTENT;
	*finish = d->finish;
	return d->output || d->reasoning || d->finish ? TG_EVENT_CONTENT : TG_EVENT_EMPTY;
}

/* Anthropic messages stream: the JSON "type" names the event. So it does
 * in a Responses API stream, which has no [DONE]: its last event, the
 * whole response, finishes it. */
static enum tg_event_kind
classify_anthropic(const struct tg_reply_digest *d, int *finish)
{
	switch (d->type) {
	case TG_REPLY_TYPE_RESPONSE_END:
		*finish = 1;
		return TG_EVENT_CONTENT;
	case TG_REPLY_TYPE_MESSAGE_START:
	case TG_REPLY_TYPE_PING:
	case TG_REPLY_TYPE_CONTENT_BLOCK_START:
	case TG_REPLY_TYPE_CONTENT_BLOCK_STOP:
		return TG_EVENT_EMPTY;
	case TG_REPLY_TYPE_MESSAGE_STOP:
		return TG_EVENT_DONE;
	case TG_REPLY_TYPE_MESSAGE_DELTA:
		*finish = d->stop_reason;
		return TG_EVENT_CONTENT;
	default:
		return TG_EVENT_CONTENT;
	}
}

/* tg_relay_classify(), whose digest also feeds tap (NULL: none), with
 * handle as tg_reply_digest_tap() takes it. *read gets what the digest
 * returned, or -2 when it did not run. */
static enum tg_event_kind
classify_tapped(const struct tg_sse_event *sse, struct tg_reply_digest *d,
                struct tg_reply_detail *detail, int *finish,
                const struct tg_reply_tap *tap, yajl_handle *handle, int *read)
{
	*finish = 0;
	*read = -2;
	memset(d, 0, sizeof(*d));
	if (sse->data_len == 6 && memcmp(sse->data, "[DONE]", 6) == 0)
		return TG_EVENT_DONE;

	/* An event named "error" (Anthropic's) is read as well, so that the
	 * stream filters can screen its message rather than fail on it. */
	if (tap != NULL)
		*read = tg_reply_digest_tap(d, detail, sse->data, sse->data_len, tap, handle);
	else if (detail != NULL)
		*read = tg_reply_digest_detail(d, detail, sse->data, sse->data_len);
	else
		*read = tg_reply_digest(d, sse->data, sse->data_len);
	if (sse->type_len == 5 && memcmp(sse->type, "error", 5) == 0)
		return TG_EVENT_ERROR;
	if (!d->object)
		return TG_EVENT_CONTENT;        /* not ours to judge: pass it on */
	if (d->error)
		return TG_EVENT_ERROR;
	if (d->choices)
		return classify_openai(d, finish);
	if (d->type == TG_REPLY_TYPE_ERROR)
		return TG_EVENT_ERROR;
	return classify_anthropic(d, finish);
}

enum tg_event_kind
tg_relay_classify(const struct tg_sse_event *sse, struct tg_reply_digest *d,
                  struct tg_reply_detail *detail, int *finish)
{
	int read;

	return classify_tapped(sse, d, detail, finish, NULL, NULL, &read);
}

json_t *
tg_stream_event_json(struct tg_stream_event *ev)
{
	if (ev->json != NULL || ev->data == NULL)
		return ev->json;
	/* A member given twice would be read by the digest and the filters'
	 * scan, but not kept in a tree, so such a reply has no tree. */
	ev->json = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(ev->json)) {
		json_decref(ev->json);
		ev->json = NULL;
	}
	if (ev->json != NULL && ev->usage_stripped)
		json_object_del(ev->json, "usage");
	ev->data = NULL;
	return ev->json;
}

/* --- stream state -------------------------------------------------------------- */

static void
free_event(struct tg_stream_event *ev)
{
	if (ev->raw != NULL)
		evbuffer_free(ev->raw);
	json_decref(ev->json);
	free(ev->data_copy);
	tg_reply_detail_free(&ev->detail);
	ev->raw = NULL;
	ev->json = NULL;
	ev->data_copy = NULL;
}

void
tg_relay_reset(struct tg_request *req)
{
	struct tg_response *resp = &req->response;

	/* Held events and their timer belong to this response only. */
	tg_filter_response_reset(req);
	if (resp->streaming)
		tg_sse_free(&resp->sse);
	for (size_t i = 0; i < resp->n_held; i++)
		free_event(&resp->held[i]);
	free(resp->held);
	if (resp->pending != NULL)
		evbuffer_free(resp->pending);
	if (resp->spare_raw != NULL)
		evbuffer_free(resp->spare_raw);
	if (resp->stream_error_body != NULL)
		evbuffer_free(resp->stream_error_body);
	resp->stream_error_body = NULL;
	tg_worker_buffer_give(req->worker, resp->body);
	tg_relay_response_json_stale(req);
	tg_headers_free(&resp->headers);

	resp->pending = NULL;
	resp->spare_raw = NULL;
	resp->body = NULL;
	resp->held = NULL;
	resp->n_held = 0;
	resp->cap_held = 0;
	resp->held_bytes = 0;
	resp->streaming = 0;
	resp->chunked = 0;
	resp->content_sent = 0;
	resp->awaiting_content = 0;
	resp->sse_done = 0;
	resp->finish_seen = 0;
	resp->anthropic = 0;
	resp->responses = 0;
	resp->next_sequence = 0;
}

/* --- non-streamed body ---------------------------------------------------------- */

json_t *
tg_relay_response_json(struct tg_request *req)
{
	struct tg_response *resp = &req->response;
	size_t len;

	if (resp->json_parsed || resp->body == NULL)
		return resp->json;
	len = evbuffer_get_length(resp->body);
	if (len > 0)
		resp->json = json_loadb((const char *)evbuffer_pullup(resp->body, -1), len,
		                        JSON_REJECT_DUPLICATES, NULL);
	resp->json_parsed = 1;
	return resp->json;
}

void
tg_relay_response_json_stale(struct tg_request *req)
{
	json_decref(req->response.json);
	req->response.json = NULL;
	req->response.json_parsed = 0;
	tg_reply_detail_free(&req->response.detail);
	memset(&req->response.digest, 0, sizeof(req->response.digest));
	req->response.digest_read = 0;
}

const struct tg_reply_digest *
tg_relay_response_digest(struct tg_request *req)
{
	struct tg_response *resp = &req->response;

	if (resp->digest_read || resp->body == NULL)
		return &resp->digest;
	if (tg_trace_reads_reply_detail(req))
		tg_reply_digest_detail_buffer(&resp->digest, &resp->detail, resp->body);
	else
		tg_reply_digest_buffer(&resp->digest, resp->body);
	resp->digest_read = 1;
	return &resp->digest;
}

int
tg_relay_response_texts(struct tg_request *req, tg_text_fn *fn, void *arg)
{
	struct tg_response *resp = &req->response;
	struct tg_reply_detail *x = tg_trace_reads_reply_detail(req) ? &resp->detail : NULL;
	int rc;

	if (resp->digest_read)
		return tg_text_read_response(resp->body, fn, arg);
	rc = tg_text_read_response_digest(resp->body, fn, arg, &resp->digest, x);
	if (rc == 1)
		return 1;       /* a partial digest: read whole at the next call */
	resp->digest_read = 1;
	if (rc < 0)
		return tg_text_read_response(resp->body, fn, arg);
	return 0;
}

const struct tg_reply_detail *
tg_relay_response_detail(struct tg_request *req)
{
	tg_relay_response_digest(req);
	return req->response.detail.usable ? &req->response.detail : NULL;
}

/* --- stream output ------------------------------------------------------------- */

/* Put the chunk-size line of a chunk of len bytes, hex digits and CRLF,
 * in front of out. Formatted by hand, since evbuffer_add_printf() showed up
 * in profiles of streams with many small events. */
static void
add_chunk_size(struct evbuffer *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char line[2 * sizeof(size_t) + 2];
	size_t at = sizeof(line) - 2;

	line[sizeof(line) - 2] = '\r';
	line[sizeof(line) - 1] = '\n';
	do {
		line[--at] = hex[len & 0xf];
		len >>= 4;
	} while (len != 0);
	evbuffer_prepend(out, line + at, sizeof(line) - at);
}

/* Send the bytes of piece to the client, framed as one chunk when chunked.
 * This leaves piece empty. */
static void
write_piece(struct tg_request *req, struct evbuffer *piece)
{
	size_t len = evbuffer_get_length(piece);

	if (len == 0)
		return;
	if (req->response.chunked) {
		add_chunk_size(piece, len);
		evbuffer_add(piece, "\r\n", 2);
	}
	req->bytes_out += evbuffer_get_length(piece);
	tg_client_send(req->client, piece);

	if (tg_client_output_full(req->client))
		tg_upstream_pause(req->upstream);
}

/* Send the last chunk of a chunked body. */
static void
write_last_chunk(struct tg_request *req)
{
	if (!req->response.chunked)
		return;
	tg_client_send_bytes(req->client, "0\r\n\r\n", 5);
	req->bytes_out += 5;
}

/* Send one event that leaves for the client, as it is or as the content
 * filters rewrote it. */
static void
send_event(struct tg_request *req, struct tg_stream_event *ev)
{
	/* Metrics first: it takes out the "usage": null members its usage
	 * request caused, so the cache records the event as the client gets
	 * it, and also the usage chunk only the gateway asked for, which
	 * later clients that ask for usage get. */
	int gateway_only = tg_metrics_stream_event(req, ev);

	tg_cache_stream_event(req, ev);
	tg_trace_stream_event(req, ev);
	if (gateway_only)
		return;         /* the usage chunk only the gateway asked for */
	if (ev->digest.has_sequence)
		req->response.next_sequence = ev->digest.sequence + 1;
	write_piece(req, ev->raw);
}

/*
 * The one point where stream events leave for the client. Features that
 * look at, change or drop events (metrics, filters, cache) hook in here.
 */
static void
emit_event(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_response *resp = &req->response;

	if (ev->kind == TG_EVENT_DONE)
		resp->sse_done = 1;
	if (ev->finish) {
		resp->finish_seen = 1;
		tg_trace_upstream_finish(req, ev);
	}
	if (ev->kind == TG_EVENT_ERROR && req->error == TG_OK) {
		req->error = TG_E_UPSTREAM_STREAM_ERROR;
		req->cause = TG_CAUSE_UPSTREAM_FAILED;
		tg_log_request(req, TG_LOG_WARN, "upstream sent an error event in the stream");
	}
	if (tg_filter_response_event(req, ev, send_event))
		return;         /* the content filters send it, or hold it */
	send_event(req, ev);
}

/* The first content is here (or holding must end, or there is nothing to
 * gain by holding: relay_on_head()): the request is committed to the
 * attempt, and no other backend may take it now. The head goes
 * out, then the held events. The attempt stays open until the stream ends
 * (end_stream_attempt()). */
static void
release_held(struct tg_request *req)
{
	struct tg_response *resp = &req->response;
	struct tg_stream_event *held = resp->held;
	size_t n_held = resp->n_held;
	char label[4];

	status_label(resp->status, label);
	tg_attempt_committed(req, resp->status, label);
	send_head(req, -1);
	resp->content_sent = 1;

	/* The array leaves the response first, so that nothing an event
	 * causes on its way out can free it under this loop. */
	resp->held = NULL;
	resp->n_held = 0;
	resp->cap_held = 0;
	resp->held_bytes = 0;
	for (size_t i = 0; i < n_held; i++) {
		emit_event(req, &held[i]);
		free_event(&held[i]);
	}
	free(held);
}

/* The first content of a stream that went out at once: move the latency
 * mark of the attempt here (tg_attempt_committed()). */
static void
mark_first_content(struct tg_request *req)
{
	char label[4];

	status_label(req->response.status, label);
	tg_attempt_committed(req, req->response.status, label);
	req->response.awaiting_content = 0;
}

/* Keep ev until the first content; returns -1 when memory ran out, and
 * ev is then the caller's still. Most streams hold one event (the role
 * chunk), so the array grows from two. */
static int
hold_event(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_response *resp = &req->response;
	struct tg_stream_event *held;
	char *copy = NULL;

	/* The data goes with the parser's buffer, so the event keeps a copy,
	 * from which a feature that requests the tree when the event leaves
	 * builds it. Most events leave without a tree, and the copy of a
	 * 300-byte chunk costs about 1% of building its tree (some 60,000
	 * instructions under callgrind). */
	if (ev->data != NULL) {
		copy = malloc(ev->data_len ? ev->data_len : 1);
		if (copy == NULL)
			return -1;
		memcpy(copy, ev->data, ev->data_len);
	}
	if (resp->n_held == resp->cap_held) {
		size_t cap = resp->cap_held ? 2 * resp->cap_held : 2;

		held = realloc(resp->held, cap * sizeof(*held));
		if (held == NULL) {
			free(copy);
			return -1;
		}
		resp->held = held;
		resp->cap_held = cap;
	}
	held = &resp->held[resp->n_held++];
	*held = *ev;
	held->tapped = 0;       /* later events read over what the filters read */
	resp->held_bytes += evbuffer_get_length(ev->raw);
	held->data = copy;
	held->data_copy = copy;
	ev->raw = NULL;
	ev->json = NULL;
	return 0;
}

/*
 * An error event arrived before any content: move to the next attempt
 * when the policy allows. Returns 1 when the stream was abandoned for it.
 */
static int
fail_over_stream(struct tg_request *req)
{
	struct tg_upstream_conn *conn = req->upstream;

	tg_attempt_end(req, TG_OUTCOME_FAILURE, TG_E_UPSTREAM_STREAM_ERROR,
	               req->response.status, "stream_error");
	req->upstream = NULL;
	if (!tg_attempt_next(req, TG_RETRY_STREAM_ERROR, 0)) {
		req->upstream = conn;
		return 0;
	}
	tg_relay_reset(req);
	return 1;
}

/* A buffer for the bytes of the next event: the one the last event left
 * behind, else a new one. NULL when memory ran out. */
static struct evbuffer *
event_buffer(struct tg_response *resp)
{
	struct evbuffer *buf = resp->spare_raw;

	if (buf == NULL)
		return evbuffer_new();
	resp->spare_raw = NULL;
	return buf;
}

/* Take the bytes of the event sse from the front of pending into a buffer
 * of their own, and return that buffer; NULL when memory ran out. */
static struct evbuffer *
take_event_bytes(struct tg_response *resp, const struct tg_sse_event *sse)
{
	struct evbuffer *raw = event_buffer(resp);
	struct evbuffer *all = resp->pending;

	/* pending contains every byte the parser read since the last event. */
	assert(sse->raw_len <= evbuffer_get_length(all));
	if (raw == NULL)
		return NULL;
	if (sse->raw_len < evbuffer_get_length(all)) {
		evbuffer_remove_buffer(all, raw, sse->raw_len);
		return raw;
	}

	/* The event is all of pending, as when each read brings whole events,
	 * so the two buffers trade places. Moving the bytes cost about 200
	 * instructions per event under callgrind. */
	resp->pending = raw;
	return all;
}

/* Keep the buffer of an event that has left for the next event, emptied:
 * creating and freeing one per event cost some 400 instructions under
 * callgrind. */
static void
keep_event_buffer(struct tg_response *resp, struct tg_stream_event *ev)
{
	if (resp->spare_raw != NULL || ev->raw == NULL)
		return;
	evbuffer_drain(ev->raw, evbuffer_get_length(ev->raw));
	resp->spare_raw = ev->raw;
	ev->raw = NULL;
}

static int
on_sse_event(void *arg, const struct tg_sse_event *sse)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;
	struct tg_stream_event ev = {0};
	struct tg_reply_tap tap;
	yajl_handle *handle;
	int read;

	ev.raw = take_event_bytes(resp, sse);
	if (ev.raw == NULL)
		return 0;

	/* The stream filters read the texts in the digest's pass. */
	handle = tg_filter_response_tap(req, sse->data, sse->data_len, &tap);
	ev.kind = classify_tapped(sse, &ev.digest,
	                          tg_trace_reads_reply_detail(req) ? &ev.detail : NULL, &ev.finish,
	                          handle != NULL ? &tap : NULL, handle, &read);
	if (handle != NULL)
		ev.tapped = tg_filter_response_tapped(req, read);
	ev.has_data = sse->data_len > 0;
	ev.data_at = sse->data_at;
	if (ev.digest.type == TG_REPLY_TYPE_RESPONSE_EVENT ||
	    ev.digest.type == TG_REPLY_TYPE_RESPONSE_END)
		resp->responses = 1;
	else if (ev.digest.object && !ev.digest.choices && ev.digest.type != TG_REPLY_TYPE_NONE)
		resp->anthropic = 1;
	if (ev.digest.object) {
		ev.data = sse->data;
		ev.data_len = sse->data_len;
	}

	if (!resp->content_sent) {
		if (ev.kind == TG_EVENT_ERROR) {
			int moved = fail_over_stream(req);

			/* With no backend left, nothing was sent yet: the upstream's
			 * error goes out as an HTTP error instead of a 200 stream. */
			if (!moved)
				resp->stream_error_body = evbuffer_new();
			if (!moved && resp->stream_error_body != NULL)
				evbuffer_add(resp->stream_error_body, sse->data, sse->data_len);
			free_event(&ev);
			return moved ? STREAM_ABANDONED : STREAM_FAILED;
		}
		if (ev.kind == TG_EVENT_EMPTY && resp->n_held < HOLD_MAX_EVENTS &&
		    resp->held_bytes + evbuffer_get_length(ev.raw) <= HOLD_MAX_BYTES &&
		    hold_event(req, &ev) == 0)
			return 0;
		release_held(req);
	}
	if (resp->awaiting_content && ev.kind == TG_EVENT_CONTENT)
		mark_first_content(req);
	emit_event(req, &ev);
	keep_event_buffer(resp, &ev);
	free_event(&ev);
	return tg_filter_response_blocked(req) ? STREAM_BLOCKED : 0;
}

/* A comment line came (": keepalive"). Once the stream is the client's,
 * the comments since the last event go out at once, not with the next
 * event: upstreams send them while they have nothing else to send, to keep
 * the idle timers of clients and load balancers between them from
 * firing. While the start is held they stay in pending, with the event
 * that follows them. */
static void
on_sse_comment(void *arg, const char *text, size_t len)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;
	struct evbuffer *piece;
	size_t n;

	(void)text;
	(void)len;
	if (!resp->content_sent)
		return;

	/* The buffer comes first: bytes the parser counts as taken must
	 * leave pending, or the next event's would be misplaced. Without
	 * one, they go out with the next event. */
	piece = event_buffer(resp);
	if (piece == NULL)
		return;
	n = tg_sse_take_between(&resp->sse);
	assert(n <= evbuffer_get_length(resp->pending));
	if (n > 0) {            /* else inside an event: it goes out with it */
		evbuffer_remove_buffer(resp->pending, piece, n);
		write_piece(req, piece);
	}
	resp->spare_raw = piece;        /* left empty by write_piece() */
}

static void
start_stream(struct tg_request *req)
{
	struct tg_response *resp = &req->response;

	resp->streaming = 1;
	resp->chunked = req->http_minor >= 1;
	resp->pending = evbuffer_new();
	tg_sse_init(&resp->sse, SSE_MAX_EVENT, on_sse_event, on_sse_comment, req);
}

/* Write an error event in the shape of the stream's API, and the last
 * chunk of a chunked body, so that a client cannot take a stream that
 * reached it cut short for a complete response; no [DONE] comes before it.
 * A chat stream gets a data line in the OpenAI error shape. An Anthropic
 * stream gets that API's "error" event, since its clients skip an event
 * without a name. A Responses API stream gets that API's "error" event,
 * numbered after the last event the client received. openai-node yields
 * that event to the caller (as it does OpenAI's own), and its
 * finalResponse() rejects. message replaces the error's default text
 * when not NULL. */
static void
write_stream_error(struct tg_request *req, enum tg_error err, const char *message)
{
	const struct tg_response *resp = &req->response;
	struct evbuffer *event = evbuffer_new();

	if (event != NULL) {
		/* A body ends with a newline, and one more ends the event. */
		if (resp->responses) {
			tg_error_responses_event(event, err, message, resp->next_sequence);
		} else if (resp->anthropic) {
			evbuffer_add(event, "event: error\ndata: ", 19);
			tg_error_anthropic_body(event, err, message);
			evbuffer_add(event, "\n", 1);
		} else {
			evbuffer_add(event, "data: ", 6);
			tg_error_body(event, err, message);
			evbuffer_add(event, "\n", 1);
		}
		write_piece(req, event);
		evbuffer_free(event);
	}
	write_last_chunk(req);
}

/*
 * End a stream that already reached the client with an error event
 * (write_stream_error()). The connection stays open when the client may
 * keep it: the body ends with its last chunk, so the client reads a
 * complete response whose last event is the error. A close after that
 * chunk would tell the client nothing more, and would reset a client that
 * had already sent its next request on the connection. Over HTTP/1.0 the
 * close ends the body (write_head()).
 */
static void
end_stream_with_error(struct tg_request *req, enum tg_error err, const char *message)
{
	write_stream_error(req, err, message);
	tg_client_response_done(req->client);
}

int
tg_relay_cut_stream(struct tg_request *req)
{
	const struct tg_response *resp = &req->response;

	if (!resp->streaming || !resp->head_sent || req->client->response_done)
		return 0;
	req->error = TG_E_SHUTTING_DOWN;
	write_stream_error(req, TG_E_SHUTTING_DOWN, "the gateway shut down before the "
	                   "stream ended (drain_timeout passed, or a second stop signal "
	                   "came); the answer is incomplete, retry the request");
	return 1;
}

/* --- upstream handler ------------------------------------------------------------ */

static enum tg_outcome
outcome_of_status(int status)
{
	if (status == 429)
		return TG_OUTCOME_RATE_LIMITED;
	return status >= 500 ? TG_OUTCOME_FAILURE : TG_OUTCOME_SUCCESS;
}

/* Start the cooldown that ends at until_ns. After a 429 it applies to the
 * model sent upstream, since providers limit each model apart. After an
 * overload (503, or Anthropic's 529), or a 429 for a request that named no
 * model, it applies to the whole backend. Returns that model, or NULL for
 * the whole backend. */
static const char *
start_cooldown(struct tg_request *req, int status, uint64_t until_ns, uint64_t now_ns)
{
	const char *model = req->attempts[req->n_attempts - 1].model;

	if (status != 429 || model == NULL) {
		tg_health_cooldown(req->backend, until_ns);
		return NULL;
	}

	if (tg_health_model_cooldown(req->backend, model, until_ns, now_ns))
		tg_log_request(req, TG_LOG_WARN, "backend %s has %d models cooling down; the "
		               "cooldown that ends first was dropped to make room",
		               req->backend->name, TG_MODEL_COOLDOWNS);
	return model;
}

/* Write "; with an earlier cooldown it stays out for N s" into buf when
 * the cooldown does not end wait_ns after now_ns, or "" when it does. The
 * later end wins, so that happens when a cooldown set before ends later. */
static void
format_kept_end(const struct tg_request *req, const char *model, uint64_t wait_ns,
                uint64_t now_ns, char *buf, size_t size)
{
	uint64_t left = tg_health_cooldown_left(req->backend, model, now_ns);

	buf[0] = '\0';
	if (left != wait_ns)
		snprintf(buf, size, "; with an earlier cooldown it stays out for %.3f s",
		         (double)left / 1e9);
}

/* A 429, 503 or 529 that gives a time to come back cools the backend down
 * until then, for every worker, but no longer than its max_cooldown. The
 * time comes from the upstream, and a client that can provoke a 429 must
 * not take the backend out for long. Anthropic sends 529 where others
 * send 503, so the two are treated alike. The log line gives the length,
 * and also the time left of a cooldown set before when that one ends
 * later. */
static void
apply_cooldown(struct tg_request *req, int status, const struct tg_headers *headers)
{
	uint64_t requested, wait, now;
	char scope[QUOTE_LEN + 16], quoted[QUOTE_LEN], kept[64];
	const char *model;

	assert(status == 429 || status == 503 || status == 529);
	requested = tg_health_retry_after(headers, time(NULL));
	wait = tg_health_cooldown_length(req->backend, requested);
	if (wait == 0)
		return;
	now = tg_now_ns();
	model = start_cooldown(req, status, now + wait, now);
	scope[0] = '\0';
	if (model != NULL)
		snprintf(scope, sizeof(scope), " model %s", quote(model, quoted, sizeof(quoted)));
	format_kept_end(req, model, wait, now, kept, sizeof(kept));
	tg_metrics_backend_cooldown(req, req->backend);
	/* A request past the hour was cut to the hour when read, so the
	 * message adds "or more". */
	if (wait < requested)
		tg_log_request(req, TG_LOG_WARN, "backend %s responded %d; cooling down%s for "
		               "%.3f s (max_cooldown) instead of the %.3f s%s requested%s",
		               req->backend->name, status, scope, (double)wait / 1e9,
		               (double)requested / 1e9,
		               requested >= TG_HEALTH_RETRY_AFTER_MAX_NS ? " or more" : "", kept);
	else
		tg_log_request(req, TG_LOG_WARN, "backend %s responded %d; cooling down%s for %.3f s%s",
		               req->backend->name, status, scope, (double)wait / 1e9, kept);
}

static int
relay_on_head(void *arg, int status, struct tg_headers *headers)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;
	struct tg_upstream_conn *conn = req->upstream;
	char label[4];
	int event_stream;

	status_label(status, label);
	/* The status is tested here so that most responses, which are
	 * neither, skip the call. */
	if (status == 429 || status == 503 || status == 529)
		apply_cooldown(req, status, headers);
	req->upstream_status = status;

	if (tg_attempt_status_retryable(req, status)) {
		tg_attempt_end(req, outcome_of_status(status), TG_OK, status, label);
		req->upstream = NULL;
		if (tg_attempt_next(req, 0, status))
			return 1;       /* this response is dropped with its connection */
		req->upstream = conn;
		tg_log_request(req, TG_LOG_WARN, "backend responded %d and no attempt is left; "
		               "passing it to the client", status);
	}

	req->phase = TG_PHASE_DATA;
	resp->status = status;
	adopt_upstream_headers(resp, headers);
	tg_cache_response_head(req);
	/* A response to HEAD has no body to stream, and is relayed as an
	 * empty one. */
	event_stream = is_event_stream(&resp->headers) && req->method_id != HTTP_HEAD;

	/* A successful stream's start is held until its first content, so a
	 * failure before it can still fail over. When no failover is possible
	 * (no attempt, backend or budget left, or retry.on or retry.hold_stream
	 * rules it out), holding would only keep the head, keepalive comments
	 * and early events from a client whose timeouts run meanwhile, so they
	 * go out at once. */
	if (status == 200 && event_stream) {
		start_stream(req);
		if (resp->pending == NULL)
			return 1;
		if (!tg_attempt_stream_may_move(req)) {
			release_held(req);
			resp->awaiting_content = 1;
		}
		return 0;
	}

	if (event_stream) {
		tg_attempt_end(req, outcome_of_status(status), TG_OK, status, label);
		start_stream(req);
		release_held(req);
		return resp->pending == NULL;
	}

	/* A whole body's attempt ends when the body has come: one cut short
	 * counts against the backend before the next attempt. */
	tg_attempt_committed(req, status, label);
	resp->body = tg_worker_buffer_take(req->worker);
	return resp->body == NULL;
}

/*
 * End the attempt of a stream whose upstream part is over, before the
 * client's response ends (which may end the request). err is how the
 * upstream failed: a reset, a stall, an error event in the stream or a
 * stream cut short count against the backend. TG_OK is a stream that
 * ended well, or that the gateway cut (the filters) with nothing to hold
 * against the backend.
 */
static void
end_stream_attempt(struct tg_request *req, enum tg_error err)
{
	if (err == TG_OK)
		tg_attempt_end(req, TG_OUTCOME_SUCCESS, TG_OK, 0, NULL);
	else
		tg_attempt_end_failed(req, err);
}

/* A content filter ended the stream with its own last events: close the
 * chunked body. When the filters failed instead (tg_filter_response_event
 * set TG_E_INTERNAL), or had to hold back more than the limit
 * (TG_E_UPSTREAM_TOO_LARGE), they sent no last events, and an error event
 * ends the stream, so the client cannot take it for a complete response. */
static void
end_blocked_stream(struct tg_request *req)
{
	end_stream_attempt(req, TG_OK);
	if (req->error == TG_E_INTERNAL) {
		end_stream_with_error(req, TG_E_INTERNAL, FILTERS_FAILED);
		return;
	}
	if (req->error == TG_E_UPSTREAM_TOO_LARGE) {
		end_stream_with_error(req, TG_E_UPSTREAM_TOO_LARGE, TOO_LARGE_TO_HOLD);
		return;
	}
	write_last_chunk(req);
	tg_client_response_done(req->client);
}

/* The only stream left reported an error before any content: respond 502
 * with the upstream's error body when it is JSON, the gateway's otherwise.
 * A route with response filters always gets the gateway's: the upstream's
 * message is text the filters have not screened, and may repeat what they
 * mask (an address the model was about to write). */
static void
answer_stream_error(struct tg_request *req)
{
	struct evbuffer *body = req->response.stream_error_body;
	json_t *parsed = NULL;

	req->response.stream_error_body = NULL;
	if (body != NULL) {
		size_t len = evbuffer_get_length(body);

		parsed = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL);
		if (!tg_reply_tree_has_error(parsed) || tg_filter_response_screened(req)) {
			evbuffer_drain(body, len);
			tg_error_shaped_body(body, tg_request_error_shape(req),
			                     TG_E_UPSTREAM_STREAM_ERROR, NULL, NULL);
		}
		json_decref(parsed);
	}
	tg_log_request(req, TG_LOG_WARN, "upstream stream failed before any content and "
	               "no backend is left; answering 502");
	tg_relay_reset(req);
	req->error = TG_E_UPSTREAM_STREAM_ERROR;
	req->cause = TG_CAUSE_UPSTREAM_FAILED;
	tg_relay_local_response(req, 502, NULL, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* End a stream whose event is too large to parse, because the response
 * filters of the route cannot screen it. The client gets a 502 when it
 * has received nothing yet, else an error event. */
static void
end_unreadable_stream(struct tg_request *req)
{
	tg_log_request(req, TG_LOG_ERROR, "stream event larger than %d bytes, which the "
	               "content filters cannot read; ending the stream with an error",
	               SSE_MAX_EVENT);
	req->cause = TG_CAUSE_UPSTREAM_FAILED;
	if (!req->response.content_sent) {
		tg_relay_reset(req);
		tg_request_fail(req, TG_E_UPSTREAM_INVALID, TOO_LARGE_TO_SCREEN);
		return;
	}
	end_stream_attempt(req, TG_OK);        /* the limit is the gateway's */
	req->error = TG_E_UPSTREAM_INVALID;
	end_stream_with_error(req, TG_E_UPSTREAM_INVALID, TOO_LARGE_TO_SCREEN);
}

static int
relay_stream_body(struct tg_request *req, const char *data, size_t len)
{
	struct tg_response *resp = &req->response;
	int rc;

	evbuffer_add(resp->pending, data, len);
	rc = tg_sse_feed(&resp->sse, data, len);
	if (rc == STREAM_ABANDONED)
		return 1;
	if (rc == STREAM_FAILED) {
		req->upstream = NULL;   /* returning non-zero hands it back */
		answer_stream_error(req);
		return 1;
	}
	if (rc == STREAM_BLOCKED) {
		/* Returning non-zero hands the connection back, which closes it. */
		req->upstream = NULL;
		end_blocked_stream(req);
		return 1;
	}
	if (rc == TG_SSE_ERR_TOO_LARGE && tg_filter_response_screened(req)) {
		req->upstream = NULL;   /* returning non-zero hands it back */
		end_unreadable_stream(req);
		return 1;
	}
	if (rc == TG_SSE_ERR_TOO_LARGE) {
		/* Pass the oversized event on as it is; parsing restarts after it
		 * as if at a stream start, which may misread one event. */
		tg_log_request(req, TG_LOG_WARN, "stream event larger than %d bytes; "
		               "relayed without parsing", SSE_MAX_EVENT);
		if (!resp->content_sent)
			release_held(req);
		write_piece(req, resp->pending);
		tg_sse_free(&resp->sse);
		tg_sse_init(&resp->sse, SSE_MAX_EVENT, on_sse_event, NULL, req);
	}
	return 0;
}

static int
relay_on_body(void *arg, const char *data, size_t len)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;

	if (resp->streaming) {
		struct tg_client *c = req->client;
		int rc;

		/* The events of one read leave in one write. */
		tg_client_cork(c);
		rc = relay_stream_body(req, data, len);
		tg_client_uncork(c);
		if (rc == 0 && tg_client_output_full(c))
			tg_upstream_pause(req->upstream);
		return rc;
	}

	if (evbuffer_get_length(resp->body) + len > req->config->limits.max_response_body) {
		tg_log_request(req, TG_LOG_WARN, "upstream response body exceeds "
		               "limits.max_response_body (%zu bytes)",
		               req->config->limits.max_response_body);
		req->upstream = NULL;  /* returning non-zero hands it back */
		req->cause = TG_CAUSE_UPSTREAM_FAILED;
		tg_request_fail(req, TG_E_UPSTREAM_TOO_LARGE, NULL);
		return 1;
	}
	return evbuffer_add(resp->body, data, len) != 0;
}

static void
finish_stream(struct tg_request *req)
{
	struct tg_response *resp = &req->response;
	int cut_inside_event;

	if (!resp->content_sent)
		release_held(req);
	tg_filter_response_end(req, send_event);
	if (tg_filter_response_blocked(req)) {
		end_blocked_stream(req);
		return;
	}

	/* Bytes after the last event (such as the LF of a final CRLF) go out
	 * as they came, so the body stays byte for byte the upstream's. An
	 * event cut off before its blank line is dropped, as an SSE parser
	 * drops it at the end of a stream. Sent on, it would run into the
	 * error event below and make both unreadable. */
	cut_inside_event = tg_sse_finish(&resp->sse);
	if (cut_inside_event)
		evbuffer_drain(resp->pending, evbuffer_get_length(resp->pending));
	write_piece(req, resp->pending);

	/* The upstream's own error event already informed the client, and
	 * the connection stays open as after end_stream_with_error(). */
	if (req->error == TG_E_UPSTREAM_STREAM_ERROR) {
		end_stream_attempt(req, TG_E_UPSTREAM_STREAM_ERROR);
		write_last_chunk(req);
		tg_client_response_done(req->client);
		return;
	}

	if (cut_inside_event || (!resp->sse_done && !resp->finish_seen)) {
		tg_log_request(req, TG_LOG_WARN, cut_inside_event
		               ? "upstream stream ended inside an event; the event is dropped"
		               : "upstream stream ended without a finish reason or [DONE]");
		req->error = TG_E_UPSTREAM_INCOMPLETE;
		req->cause = TG_CAUSE_UPSTREAM_FAILED;
		end_stream_attempt(req, TG_E_UPSTREAM_INCOMPLETE);
		end_stream_with_error(req, TG_E_UPSTREAM_INCOMPLETE, NULL);
		return;
	}
	end_stream_attempt(req, TG_OK);
	write_last_chunk(req);
	tg_cache_response_complete(req);
	tg_client_response_done(req->client);
}

/*
 * The body ended cleanly with whole lines of an event but no blank line
 * after them, as a stream whose last line is "data: [DONE]\n" does. An SSE
 * parser drops such an event, and clients such as openai-node drop it
 * too, but end the stream without an error, since they need no [DONE].
 * When that event ends the stream ([DONE], message_stop, a finish
 * reason, response.completed), the blank line is added, to the bytes the
 * client gets too, and the event is relayed as if it had come, so the
 * stream ends well. Any other event is dropped (finish_stream()), as is
 * an event cut inside a line, and the stream ends with an error. Returns
 * 0 when the stream is to be finished, or non-zero when the event ended
 * the response another way, as relay_stream_body() returns.
 */
static int
end_last_event(struct tg_request *req)
{
	struct tg_sse_event last;
	struct tg_reply_digest digest;
	const char *line_end = tg_sse_unended_event(&req->response.sse, &last);
	int finish;

	if (line_end == NULL)
		return 0;
	if (tg_relay_classify(&last, &digest, NULL, &finish) != TG_EVENT_DONE && !finish)
		return 0;
	tg_log_request(req, TG_LOG_DEBUG, "upstream stream ended without the blank line "
	               "after its last event; the event is completed and relayed");
	return relay_stream_body(req, line_end, 1);
}

static void
relay_on_complete(void *arg)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;
	size_t len;

	/* A whole body's attempt ends here, before req->upstream is cleared:
	 * its span then stays open for tg_trace_upstream_done() to record
	 * the body. */
	if (!resp->streaming)
		tg_attempt_end(req, outcome_of_status(resp->status), TG_OK, resp->status, NULL);
	req->upstream = NULL;
	tg_metrics_upstream_done(req);
	if (resp->streaming) {
		struct tg_client *c = req->client;

		tg_client_cork(c);
		if (end_last_event(req) == 0) {
			tg_trace_upstream_done(req);
			finish_stream(req);
		}
		tg_client_uncork(c);
		return;
	}

	/* The filters run first and may rewrite the body. The features after
	 * them read the body the client gets: the cache through the tree
	 * (tg_relay_response_json), the metrics and tracing through the one
	 * reply digest they share (tg_relay_response_digest), which builds no
	 * tree. Filters never change usage, so metrics count the upstream's.
	 * A body the filters could not check does not go out. */
	if (tg_filter_response_body(req) != 0) {
		tg_trace_upstream_done(req);
		req->cause = TG_CAUSE_GATEWAY;
		tg_request_fail(req, TG_E_INTERNAL, FILTERS_FAILED);
		return;
	}
	tg_metrics_response_body(req);
	tg_cache_response_body(req);
	tg_trace_upstream_done(req);
	len = evbuffer_get_length(resp->body);
	tg_client_cork(req->client);
	send_head(req, (long long)len);
	tg_client_send(req->client, resp->body);
	req->bytes_out += len;
	tg_cache_response_complete(req);
	tg_client_response_done(req->client);
	tg_client_uncork(req->client);
}

static void
relay_on_error(void *arg, enum tg_error err, const char *detail)
{
	struct tg_request *req = arg;
	const struct tg_error_info *info = tg_error_info(err);
	unsigned kind = tg_attempt_error_kind(err);

	req->upstream = NULL;
	tg_metrics_upstream_done(req);
	tg_log_request(req, TG_LOG_WARN, "%s (%s)", info->message, detail ? detail : "no detail");

	if (!req->response.head_sent) {
		tg_attempt_end_failed(req, err);
		tg_relay_reset(req);
		if (tg_attempt_next(req, kind, 0))
			return;
		tg_attempt_fail_request(req, err);
		return;
	}

	req->error = err;
	req->cause = (enum tg_cause)info->who;
	tg_trace_upstream_done(req);
	end_stream_attempt(req, err);
	end_stream_with_error(req, err, NULL);
}

static void
relay_on_connected(void *arg)
{
	struct tg_request *req = arg;

	req->phase = TG_PHASE_HEAD;
}

/* A head came but could not be relayed: the access log names its status
 * all the same, since its null means that no head came. */
static void
relay_on_head_refused(void *arg, int status)
{
	struct tg_request *req = arg;

	req->upstream_status = status;
}

const struct tg_upstream_handler tg_relay_handler = {
	.on_head = relay_on_head,
	.on_body = relay_on_body,
	.on_complete = relay_on_complete,
	.on_error = relay_on_error,
	.on_connected = relay_on_connected,
	.on_head_refused = relay_on_head_refused,
};

void
tg_relay_client_writable(struct tg_request *req)
{
	if (req->upstream != NULL)
		tg_upstream_resume(req->upstream);
}
