/*
 * Failure kinds of a request. Each kind is mapped once, in errors.c, to the
 * HTTP status the client gets, the OpenAI error "type" and "code", a default
 * message, the termination code of the access log, the error "type" of
 * Anthropic's Messages API, and the reason that the access log and
 * tollgate_gateway_errors_total give. A reason is the code, made finer
 * where one code covers several kinds: the client acts on the code, the
 * operator looks for the cause.
 */
#ifndef TOLLGATE_ERRORS_H
#define TOLLGATE_ERRORS_H

#include <event2/buffer.h>
#include <jansson.h>

enum tg_error {
	TG_OK = 0,

	/* The client's request is wrong. */
	TG_E_BAD_REQUEST,               /* the request line; also the default */
	TG_E_BAD_HEADER,                /* a header field, or the framing it sets */
	TG_E_BAD_CHUNKED_BODY,          /* the chunked framing of the body */
	TG_E_PLAIN_HTTP_ON_TLS,         /* plain HTTP sent to a TLS listener */
	TG_E_INVALID_JSON,
	TG_E_MISSING_MODEL,
	TG_E_NO_ROUTE,
	TG_E_MODEL_NOT_FOUND,           /* GET /v1/models/ID of a model not listed */
	TG_E_METHOD_NOT_ALLOWED,
	TG_E_REQUEST_TIMEOUT,
	TG_E_BODY_TOO_LARGE,
	TG_E_HEADER_TOO_LARGE,
	TG_E_TRANSFER_CODING,           /* a transfer coding other than chunked */
	TG_E_CONTENT_CODING,            /* a content coding other than identity */
	TG_E_UNREADABLE_BODY,           /* a body that is not JSON, on a route
	                                   whose request filters must read it */
	TG_E_NOT_IMPLEMENTED,           /* a method the gateway does not serve (CONNECT) */
	TG_E_VERSION_NOT_SUPPORTED,     /* an HTTP version other than 1.0 and 1.1 */
	TG_E_CONTENT_FILTER,            /* a content filter rejected it */
	TG_E_NOT_CACHED,                /* only-if-cached and no entry; for the body
	                                 * only, since req->error stays TG_OK */
	TG_E_MISSING_API_KEY,           /* gateway keys are defined, none was sent */
	TG_E_INVALID_API_KEY,           /* a credential that is no gateway key */
	TG_E_KEY_NOT_ALLOWED,           /* a gateway key the route does not list */
	TG_E_REQUEST_RATE_LIMIT,        /* the key used its requests_per_minute */
	TG_E_TOKEN_RATE_LIMIT,          /* the key used its tokens_per_minute */

	/* The gateway cannot take the request. */
	TG_E_SHUTTING_DOWN,
	TG_E_NO_BACKEND,
	TG_E_INTERNAL,
	TG_E_OVERLOADED,                /* no descriptor or memory for an upstream connection */

	/* The upstream failed. */
	TG_E_UPSTREAM_CONNECT,
	TG_E_UPSTREAM_TLS,
	TG_E_UPSTREAM_RESET,
	TG_E_UPSTREAM_INVALID,
	TG_E_UPSTREAM_TOO_LARGE,
	TG_E_UPSTREAM_CONNECT_TIMEOUT,
	TG_E_UPSTREAM_FIRST_BYTE_TIMEOUT,
	TG_E_UPSTREAM_IDLE_TIMEOUT,
	TG_E_UPSTREAM_STREAM_ERROR,
	TG_E_UPSTREAM_INCOMPLETE,

	TG_E_COUNT
};

struct tg_error_info {
	int status;             /* HTTP status sent to the client */
	const char *type;       /* OpenAI error "type" */
	const char *code;       /* OpenAI error "code", also the metric label */
	const char *message;    /* default human-readable message */
	char who;               /* termination cause: G, c, S or s */
	const char *anthropic_type; /* Anthropic error "type", chosen by the
	                             * status rules of Anthropic's API */
	const char *reason;     /* a token of its own, for the access log and the
	                         * metrics; NULL for TG_OK */
};

/* The error shape the client reads: OpenAI's, that of Anthropic's
 * Messages API, or a line of plain text for the admin listener, whose
 * endpoints all respond in text. */
enum tg_error_shape {
	TG_ERROR_OPENAI,
	TG_ERROR_ANTHROPIC,
	TG_ERROR_TEXT,
};

const struct tg_error_info *tg_error_info(enum tg_error err);

/* 1 for upstream failures, which the failover step may retry elsewhere. */
int tg_error_is_upstream(enum tg_error err);

/* Append the error body of err in shape to out, one line of JSON:
 * OpenAI's {"error": {"message", "type", "code"}}, or Anthropic's
 * {"type": "error", "error": {"type", "message", "code"}}, whose inner
 * "type" is the kind's anthropic_type. Both carry the gateway's "code",
 * which distinguishes a gateway error from the provider's. Anthropic's
 * body has no such member, but its API documents that its error objects
 * may gain members. The text shape is the message and a newline. message
 * may be NULL for the kind's default. The members of extra, a JSON object
 * or NULL, are added to the inner object (not to text); the call takes
 * the reference. Returns 0, or -1 when out of memory. */
int tg_error_shaped_body(struct evbuffer *out, enum tg_error_shape shape, enum tg_error err,
                         const char *message, json_t *extra);

/* The Content-Type of an error body in shape. */
const char *tg_error_content_type(enum tg_error_shape shape);

/* tg_error_shaped_body() in OpenAI's shape without extra members. */
int tg_error_body(struct evbuffer *out, enum tg_error err, const char *message);

/* tg_error_shaped_body() in Anthropic's shape without extra members. */
int tg_error_anthropic_body(struct evbuffer *out, enum tg_error err, const char *message);

/*
 * Append the Responses API's "error" stream event for err to out: the line
 * "event: error", a data line with {"type": "error", "code", "message",
 * "param": null, "sequence_number"}, and the blank line that ends the
 * event. The shape is flat, with no "error" object, as OpenAI sends it.
 * sequence is the number the event takes: one past the last number that
 * the client received. message may be NULL for the kind's
 * default. Returns 0, or -1 when out of memory.
 */
int tg_error_responses_event(struct evbuffer *out, enum tg_error err, const char *message,
                             long long sequence);

/* The registered reason phrase of an HTTP status, or "" for a code that
 * has none: a status line may have an empty reason (RFC 9112 section 4),
 * and a made-up word would read as the registered one. */
const char *tg_http_reason(int status);

#endif
