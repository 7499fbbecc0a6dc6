/*
 * The one table that maps failure kinds to what the client and the logs see.
 */
#include <assert.h>
#include <stdlib.h>

#include <jansson.h>

#include "errors.h"

/* The Anthropic types follow the status rules of Anthropic's API:
 * authentication_error for 401, permission_error for 403, not_found_error
 * for 404, request_too_large for 413, rate_limit_error for 429,
 * overloaded_error for 503, api_error for the other failures of the gateway
 * or the upstream, and invalid_request_error for the rest, which the client
 * caused. The OpenAI type of a rate limit names the limit, "requests" or
 * "tokens", as OpenAI's own 429 bodies do. */
static const struct tg_error_info error_table[TG_E_COUNT] = {
	[TG_OK] = {200, NULL, NULL, NULL, '-'},

	[TG_E_BAD_REQUEST] = {400, "invalid_request_error", "bad_request",
		"the request is not valid HTTP/1.1", 'G',
		"invalid_request_error", "bad_request_line"},
	[TG_E_BAD_HEADER] = {400, "invalid_request_error", "bad_request",
		"the request is not valid HTTP/1.1", 'G',
		"invalid_request_error", "bad_header"},
	[TG_E_BAD_CHUNKED_BODY] = {400, "invalid_request_error", "bad_request",
		"the request is not valid HTTP/1.1", 'G',
		"invalid_request_error", "bad_chunked_body"},
	[TG_E_PLAIN_HTTP_ON_TLS] = {400, "invalid_request_error", "bad_request",
		"the request came as plain HTTP to a port that takes HTTPS only; send it "
		"over TLS, with an https:// URL", 'G',
		"invalid_request_error", "plain_http_on_tls"},
	[TG_E_INVALID_JSON] = {400, "invalid_request_error", "invalid_json",
		"the request body is not a JSON object", 'G',
		"invalid_request_error", "invalid_json"},
	[TG_E_MISSING_MODEL] = {400, "invalid_request_error", "missing_model",
		"the request body has no string \"model\" field", 'G',
		"invalid_request_error", "missing_model"},
	[TG_E_NO_ROUTE] = {404, "invalid_request_error", "route_not_found",
		"no route matches this path and model", 'G',
		"not_found_error", "route_not_found"},
	[TG_E_MODEL_NOT_FOUND] = {404, "invalid_request_error", "model_not_found",
		"no model of this id is open to this caller; GET /v1/models lists those that are",
		'G', "not_found_error", "model_not_found"},
	[TG_E_METHOD_NOT_ALLOWED] = {405, "invalid_request_error", "method_not_allowed",
		"this method is not allowed on this path", 'G',
		"invalid_request_error", "method_not_allowed"},
	[TG_E_REQUEST_TIMEOUT] = {408, "invalid_request_error", "request_timeout",
		"the client did not send the request in time", 'c',
		"invalid_request_error", "request_timeout"},
	[TG_E_BODY_TOO_LARGE] = {413, "invalid_request_error", "request_too_large",
		"the request body exceeds limits.max_body", 'G',
		"request_too_large", "request_too_large"},
	[TG_E_HEADER_TOO_LARGE] = {431, "invalid_request_error", "request_header_too_large",
		"the request head exceeds limits.max_header", 'G',
		"invalid_request_error", "request_header_too_large"},
	[TG_E_TRANSFER_CODING] = {501, "invalid_request_error", "unsupported_transfer_coding",
		"the request body uses a transfer coding other than chunked", 'G',
		"invalid_request_error", "unsupported_transfer_coding"},
	[TG_E_CONTENT_CODING] = {415, "invalid_request_error", "unsupported_content_encoding",
		"the request body has a Content-Encoding other than identity", 'G',
		"invalid_request_error", "unsupported_content_encoding"},
	[TG_E_UNREADABLE_BODY] = {415, "invalid_request_error", "unsupported_content_type",
		"the request body is not JSON, and a request filter of the route must read it",
		'G', "invalid_request_error", "unsupported_content_type"},
	[TG_E_NOT_IMPLEMENTED] = {501, "invalid_request_error", "method_not_implemented",
		"the gateway does not implement this method", 'G',
		"invalid_request_error", "method_not_implemented"},
	[TG_E_VERSION_NOT_SUPPORTED] = {505, "invalid_request_error",
		"http_version_not_supported", "the gateway accepts HTTP/1.1 and HTTP/1.0 "
		"requests only", 'G', "invalid_request_error", "http_version_not_supported"},
	[TG_E_CONTENT_FILTER] = {400, "invalid_request_error", "content_filter",
		"a content filter rejected the request", 'G',
		"invalid_request_error", "content_filter"},
	[TG_E_NOT_CACHED] = {504, "invalid_request_error", "not_cached",
		"no cached response for this request, and Cache-Control: only-if-cached "
		"forbids asking the backends", 'G',
		"api_error", "not_cached"},
	[TG_E_MISSING_API_KEY] = {401, "invalid_request_error", "missing_api_key",
		"no API key given; send a gateway key as \"Authorization: Bearer KEY\", "
		"x-api-key or api-key", 'G',
		"authentication_error", "missing_api_key"},
	[TG_E_INVALID_API_KEY] = {401, "invalid_request_error", "invalid_api_key",
		"the API key given is not a key of this gateway", 'G',
		"authentication_error", "invalid_api_key"},
	[TG_E_KEY_NOT_ALLOWED] = {403, "invalid_request_error", "key_not_allowed",
		"the gateway key given may not use this route", 'G',
		"permission_error", "key_not_allowed"},
	[TG_E_REQUEST_RATE_LIMIT] = {429, "requests", "rate_limit_exceeded",
		"the gateway key has used its requests_per_minute; retry after the "
		"seconds in Retry-After", 'G',
		"rate_limit_error", "rate_limit_requests"},
	[TG_E_TOKEN_RATE_LIMIT] = {429, "tokens", "rate_limit_exceeded",
		"the gateway key has used its tokens_per_minute; retry after the "
		"seconds in Retry-After", 'G',
		"rate_limit_error", "rate_limit_tokens"},

	[TG_E_SHUTTING_DOWN] = {503, "server_error", "shutting_down",
		"the gateway is shutting down; retry on another instance", 'G',
		"overloaded_error", "shutting_down"},
	[TG_E_NO_BACKEND] = {503, "server_error", "no_backend_available",
		"no backend of the route is available", 'G',
		"overloaded_error", "no_backend_available"},
	[TG_E_INTERNAL] = {500, "server_error", "internal_error",
		"the gateway failed to process the request", 'G',
		"api_error", "internal_error"},
	[TG_E_OVERLOADED] = {503, "server_error", "gateway_overloaded",
		"the gateway has no file descriptor or memory left for an upstream "
		"connection; retry later", 'G',
		"overloaded_error", "gateway_overloaded"},

	[TG_E_UPSTREAM_CONNECT] = {502, "upstream_error", "upstream_failed",
		"could not connect to the upstream", 'S',
		"api_error", "upstream_connect"},
	[TG_E_UPSTREAM_TLS] = {502, "upstream_error", "upstream_failed",
		"the TLS handshake with the upstream failed", 'S',
		"api_error", "upstream_tls"},
	[TG_E_UPSTREAM_RESET] = {502, "upstream_error", "upstream_failed",
		"the upstream closed the connection before the response was complete", 'S',
		"api_error", "upstream_reset"},
	[TG_E_UPSTREAM_INVALID] = {502, "upstream_error", "upstream_failed",
		"the upstream sent an invalid HTTP response", 'S',
		"api_error", "upstream_invalid"},
	[TG_E_UPSTREAM_TOO_LARGE] = {502, "upstream_error", "upstream_failed",
		"the upstream response exceeds limits.max_response_body", 'S',
		"api_error", "upstream_too_large"},
	[TG_E_UPSTREAM_CONNECT_TIMEOUT] = {504, "upstream_error", "upstream_timeout",
		"connecting to the upstream timed out", 's',
		"api_error", "connect_timeout"},
	[TG_E_UPSTREAM_FIRST_BYTE_TIMEOUT] = {504, "upstream_error", "upstream_timeout",
		"the upstream did not start its response in time", 's',
		"api_error", "first_byte_timeout"},
	[TG_E_UPSTREAM_IDLE_TIMEOUT] = {504, "upstream_error", "upstream_timeout",
		"the upstream stopped sending in the middle of its response", 's',
		"api_error", "idle_timeout"},
	[TG_E_UPSTREAM_STREAM_ERROR] = {502, "upstream_error", "upstream_failed",
		"the upstream reported an error in the stream", 'S',
		"api_error", "upstream_stream_error"},
	[TG_E_UPSTREAM_INCOMPLETE] = {502, "upstream_error", "upstream_incomplete",
		"the upstream ended the stream without finishing the response", 'S',
		"api_error", "upstream_incomplete"},
};

const struct tg_error_info *
tg_error_info(enum tg_error err)
{
	assert(err >= 0 && err < TG_E_COUNT);
	return &error_table[err];
}

int
tg_error_is_upstream(enum tg_error err)
{
	return err >= TG_E_UPSTREAM_CONNECT && err < TG_E_COUNT;
}

/* Append body as one line of compact JSON to out, and release body (NULL:
 * json_pack() failed). Returns 0, or -1 when out of memory. */
static int
add_body(struct evbuffer *out, json_t *body)
{
	char *text;
	int rc;

	if (body == NULL)
		return -1;
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		return -1;

	rc = evbuffer_add_printf(out, "%s\n", text) < 0 ? -1 : 0;
	free(text);
	return rc;
}

/* The inner "error" object of the body: the members of both shapes, in the
 * order each API writes them, so that the OpenAI body keeps its bytes.
 * OpenAI's errors carry "param", null when no request field is at fault,
 * and the gateway's errors name no field. */
static json_t *
error_object(enum tg_error_shape shape, enum tg_error err, const char *message)
{
	const struct tg_error_info *info = tg_error_info(err);

	if (message == NULL)
		message = info->message;
	if (shape == TG_ERROR_ANTHROPIC)
		return json_pack("{s:s, s:s, s:s}", "type", info->anthropic_type,
		                 "message", message, "code", info->code);
	return json_pack("{s:s, s:s, s:n, s:s}", "message", message, "type", info->type,
	                 "param", "code", info->code);
}

int
tg_error_shaped_body(struct evbuffer *out, enum tg_error_shape shape, enum tg_error err,
                     const char *message, json_t *extra)
{
	json_t *error;

	if (shape == TG_ERROR_TEXT) {
		json_decref(extra);
		if (message == NULL)
			message = tg_error_info(err)->message;
		return evbuffer_add_printf(out, "%s\n", message) < 0 ? -1 : 0;
	}

	error = error_object(shape, err, message);

	if (error == NULL || (extra != NULL && json_object_update(error, extra) != 0)) {
		json_decref(error);
		json_decref(extra);
		return -1;
	}
	json_decref(extra);

	if (shape == TG_ERROR_ANTHROPIC)
		return add_body(out, json_pack("{s:s, s:o}", "type", "error", "error", error));
	return add_body(out, json_pack("{s:o}", "error", error));
}

const char *
tg_error_content_type(enum tg_error_shape shape)
{
	return shape == TG_ERROR_TEXT ? "text/plain; charset=utf-8" : "application/json";
}

int
tg_error_body(struct evbuffer *out, enum tg_error err, const char *message)
{
	return tg_error_shaped_body(out, TG_ERROR_OPENAI, err, message, NULL);
}

int
tg_error_anthropic_body(struct evbuffer *out, enum tg_error err, const char *message)
{
	return tg_error_shaped_body(out, TG_ERROR_ANTHROPIC, err, message, NULL);
}

int
tg_error_responses_event(struct evbuffer *out, enum tg_error err, const char *message,
                         long long sequence)
{
	const struct tg_error_info *info = tg_error_info(err);
	json_t *event;

	if (message == NULL)
		message = info->message;
	event = json_pack("{s:s, s:s, s:s, s:n, s:I}", "type", "error", "code", info->code,
	                  "message", message, "param", "sequence_number", (json_int_t)sequence);
	if (evbuffer_add(out, "event: error\ndata: ", 19) != 0) {
		json_decref(event);
		return -1;
	}
	if (add_body(out, event) != 0)
		return -1;
	return evbuffer_add(out, "\n", 1);
}

/* The reason phrases of the IANA HTTP Status Code Registry (RFC 9110
 * section 16.2.1). Besides the codes of RFC 9110 section 15, it lists 102,
 * 103, 207, 208, 226, 423-425, 428, 429, 431, 451, 506-508, 510 and 511
 * from other RFCs. 306 and 418 are registered as unused and get no phrase,
 * like every unregistered code. */
static const char *const reasons[600] = {
	[100] = "Continue", [101] = "Switching Protocols", [102] = "Processing",
	[103] = "Early Hints",

	[200] = "OK", [201] = "Created", [202] = "Accepted",
	[203] = "Non-Authoritative Information", [204] = "No Content",
	[205] = "Reset Content", [206] = "Partial Content", [207] = "Multi-Status",
	[208] = "Already Reported", [226] = "IM Used",

	[300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
	[303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
	[307] = "Temporary Redirect", [308] = "Permanent Redirect",

	[400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
	[403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
	[406] = "Not Acceptable", [407] = "Proxy Authentication Required",
	[408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
	[411] = "Length Required", [412] = "Precondition Failed",
	[413] = "Content Too Large", [414] = "URI Too Long",
	[415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
	[417] = "Expectation Failed", [421] = "Misdirected Request",
	[422] = "Unprocessable Content", [423] = "Locked", [424] = "Failed Dependency",
	[425] = "Too Early", [426] = "Upgrade Required", [428] = "Precondition Required",
	[429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
	[451] = "Unavailable For Legal Reasons",

	[500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
	[503] = "Service Unavailable", [504] = "Gateway Timeout",
	[505] = "HTTP Version Not Supported", [506] = "Variant Also Negotiates",
	[507] = "Insufficient Storage", [508] = "Loop Detected",
	[510] = "Not Extended", [511] = "Network Authentication Required",
};

const char *
tg_http_reason(int status)
{
	if (status < 0 || status >= (int)(sizeof(reasons) / sizeof(reasons[0])) ||
	    reasons[status] == NULL)
		return "";
	return reasons[status];
}
