/*
 * The relay between an upstream response and the client.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "client.h"
#include "log.h"
#include "relay.h"
#include "request.h"
#include "upstream.h"
#include "worker.h"

#define SSE_MAX_EVENT (8 * 1024 * 1024)

/* The Connection header that tells the client whether the connection
 * stays open after this response. */
static const char *
connection_header(const struct tg_request *req)
{
	const struct tg_client *c = req->client;

	if (!req->keepalive || c->close_after_response || req->worker->draining)
		return "Connection: close\r\n";
	return req->http_minor == 0 ? "Connection: keep-alive\r\n" : "";
}

/* Write the status line, the kept upstream headers and the gateway's own.
 * content_length < 0 means the body length is not known in advance. */
static void
write_head(struct tg_request *req, struct evbuffer *out, long long content_length)
{
	struct tg_response *resp = &req->response;
	size_t before = evbuffer_get_length(out);

	if (content_length < 0 && req->http_minor == 0)
		req->keepalive = 0;    /* HTTP/1.0: the close ends the body */

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", resp->status,
	                    tg_http_reason(resp->status));
	for (size_t i = 0; i < resp->headers.count; i++)
		evbuffer_add_printf(out, "%s: %s\r\n", resp->headers.items[i].name,
		                    resp->headers.items[i].value);
	evbuffer_add_printf(out, "X-Request-Id: %s\r\n", req->id);
	if (content_length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", content_length);
	else if (resp->chunked)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	evbuffer_add_printf(out, "%s\r\n", connection_header(req));

	resp->head_sent = 1;
	req->bytes_out += evbuffer_get_length(out) - before;
}

void
tg_relay_local_response(struct tg_request *req, int status,
                        const char *extra_headers, struct evbuffer *body)
{
	struct evbuffer *out = tg_client_output(req->client);
	size_t body_len = body ? evbuffer_get_length(body) : 0;
	size_t before = evbuffer_get_length(out);

	req->response.status = status;
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	                    "Content-Type: application/json\r\n"
	                    "Content-Length: %zu\r\n"
	                    "X-Request-Id: %s\r\n"
	                    "%s%s\r\n",
	                    status, tg_http_reason(status), body_len, req->id,
	                    extra_headers ? extra_headers : "", connection_header(req));
	if (body != NULL)
		evbuffer_add_buffer(out, body);
	req->response.head_sent = 1;
	req->bytes_out += evbuffer_get_length(out) - before;
	tg_client_response_done(req->client);
}

/* Keep the upstream's end-to-end headers for the client. Framing is the
 * gateway's own, and the upstream's request id is kept under another name
 * so it does not clash with the gateway's. */
static void
adopt_upstream_headers(struct tg_response *resp, struct tg_headers *upstream)
{
	const char *upstream_id;

	tg_headers_strip_hop_by_hop(upstream);
	tg_headers_remove(upstream, "Content-Length");
	upstream_id = tg_headers_get(upstream, "X-Request-Id");
	if (upstream_id != NULL) {
		char *id = strdup(upstream_id);

		tg_headers_remove(upstream, "X-Request-Id");
		if (id != NULL) {
			tg_headers_add(upstream, "X-Upstream-Request-Id", 21, id, strlen(id));
			free(id);
		}
	}
	resp->headers = *upstream;
	tg_headers_init(upstream);
}

static int
is_event_stream(const struct tg_headers *headers)
{
	const char *type = tg_headers_get(headers, "Content-Type");

	return type != NULL && strncasecmp(type, "text/event-stream", 17) == 0;
}

static int
on_sse_event(void *arg, const struct tg_sse_event *ev)
{
	struct tg_request *req = arg;

	if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
		req->response.sse_done = 1;
	return 0;
}

static int
relay_on_head(void *arg, int status, struct tg_headers *headers)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;

	req->upstream_status = status;
	req->phase = TG_PHASE_DATA;
	resp->status = status;
	resp->streaming = is_event_stream(headers);
	adopt_upstream_headers(resp, headers);

	if (!resp->streaming) {
		resp->body = evbuffer_new();
		return resp->body == NULL;
	}

	/* A stream goes out as it comes: the head now, each piece as read. */
	resp->chunked = req->http_minor >= 1;
	tg_sse_init(&resp->sse, SSE_MAX_EVENT, on_sse_event, NULL, req);
	write_head(req, tg_client_output(req->client), -1);
	return 0;
}

static int
relay_stream_piece(struct tg_request *req, const char *data, size_t len)
{
	struct tg_response *resp = &req->response;
	struct evbuffer *out = tg_client_output(req->client);
	size_t before = evbuffer_get_length(out);

	if (resp->chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (resp->chunked)
		evbuffer_add(out, "\r\n", 2);
	req->bytes_out += evbuffer_get_length(out) - before;

	/* The parser only observes: a malformed stream is still relayed as
	 * the upstream sent it. */
	if (tg_sse_feed(&resp->sse, data, len) == TG_SSE_ERR_TOO_LARGE) {
		tg_log_request(req, TG_LOG_WARN, "stream event larger than %d bytes; "
		               "no longer parsing events of this stream", SSE_MAX_EVENT);
		tg_sse_free(&resp->sse);
		tg_sse_init(&resp->sse, SSE_MAX_EVENT, on_sse_event, NULL, req);
	}

	if (tg_client_output_full(req->client))
		tg_upstream_pause(req->upstream);
	return 0;
}

static int
relay_on_body(void *arg, const char *data, size_t len)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;

	if (resp->streaming)
		return relay_stream_piece(req, data, len);

	if (evbuffer_get_length(resp->body) + len > req->config->limits.max_response_body) {
		tg_log_request(req, TG_LOG_WARN, "upstream response body exceeds "
		               "limits.max_response_body (%zu bytes)",
		               req->config->limits.max_response_body);
		req->upstream = NULL;  /* returning non-zero hands it back */
		tg_request_fail(req, TG_E_UPSTREAM_TOO_LARGE, NULL);
		return 1;
	}
	return evbuffer_add(resp->body, data, len) != 0;
}

static void
relay_on_complete(void *arg)
{
	struct tg_request *req = arg;
	struct tg_response *resp = &req->response;
	struct evbuffer *out = tg_client_output(req->client);

	req->upstream = NULL;
	if (resp->streaming) {
		if (resp->chunked) {
			evbuffer_add(out, "0\r\n\r\n", 5);
			req->bytes_out += 5;
		}
		tg_sse_finish(&resp->sse);
	} else {
		size_t len = evbuffer_get_length(resp->body);

		write_head(req, out, (long long)len);
		evbuffer_add_buffer(out, resp->body);
		req->bytes_out += len;
	}
	tg_client_response_done(req->client);
}

/* End a stream that already reached the client with an error event in the
 * OpenAI error shape, so the client cannot take it for a complete answer;
 * no [DONE] follows. */
static void
end_stream_with_error(struct tg_request *req, enum tg_error err)
{
	struct evbuffer *event = evbuffer_new();
	struct evbuffer *body = evbuffer_new();

	if (event != NULL && body != NULL && tg_error_body(body, err, NULL) == 0) {
		size_t len;

		/* tg_error_body ends with a newline; an SSE event needs two. */
		evbuffer_add(event, "data: ", 6);
		evbuffer_add_buffer(event, body);
		evbuffer_add(event, "\n", 1);
		len = evbuffer_get_length(event);
		relay_stream_piece(req, (const char *)evbuffer_pullup(event, -1), len);
	}
	if (event != NULL)
		evbuffer_free(event);
	if (body != NULL)
		evbuffer_free(body);

	if (req->response.chunked) {
		evbuffer_add(tg_client_output(req->client), "0\r\n\r\n", 5);
		req->bytes_out += 5;
	}

	/* Close too, for clients that read the body but not the events. */
	req->client->close_after_response = 1;
	tg_client_response_done(req->client);
}

static void
relay_on_error(void *arg, enum tg_error err, const char *detail)
{
	struct tg_request *req = arg;

	req->upstream = NULL;
	req->error = err;
	req->cause = (enum tg_cause)tg_error_info(err)->who;
	tg_log_request(req, TG_LOG_WARN, "%s (%s)", tg_error_info(err)->message,
	               detail ? detail : "no detail");

	if (!req->response.head_sent) {
		tg_request_fail(req, err, NULL);
		return;
	}
	end_stream_with_error(req, err);
}

static void
relay_on_connected(void *arg)
{
	struct tg_request *req = arg;

	req->phase = TG_PHASE_HEAD;
}

const struct tg_upstream_handler tg_relay_handler = {
	.on_head = relay_on_head,
	.on_body = relay_on_body,
	.on_complete = relay_on_complete,
	.on_error = relay_on_error,
	.on_connected = relay_on_connected,
};

void
tg_relay_client_writable(struct tg_request *req)
{
	if (req->upstream != NULL)
		tg_upstream_resume(req->upstream);
}
