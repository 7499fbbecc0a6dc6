/*
 * The request context: one per client request, from the first byte of the
 * request line to the access-log line. Every later stage (failover, cache,
 * filters, metrics, tracing) reads and records here.
 */
#ifndef TOLLGATE_REQUEST_T_H
#define TOLLGATE_REQUEST_T_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth-t.h"
#include "config-t.h"
#include "errors.h"
#include "failover-t.h"
#include "headers.h"
#include "metrics-t.h"
#include "ratelimit-t.h"
#include "relay.h"
#include "request-head.h"
#include "request-scan.h"
#include "sse.h"

struct tg_client;
struct tg_worker;
struct tg_upstream_conn;
struct tg_filter_state;
struct tg_cache_request;
struct tg_trace;
struct evbuffer;

/* Request phase: the second character of the termination code. */
enum tg_phase {
	TG_PHASE_REQUEST = 'R',         /* reading the client's request */
	TG_PHASE_CONNECT = 'C',         /* connecting to the upstream */
	TG_PHASE_HEAD = 'H',            /* waiting for the upstream response head */
	TG_PHASE_DATA = 'D',            /* relaying the response body */
	TG_PHASE_LOCAL = 'L',           /* sending a response of the gateway's own */
	TG_PHASE_DONE = '-',
};

/* Termination cause: the first character of the termination code. */
enum tg_cause {
	TG_CAUSE_NONE = '-',            /* it completed */
	TG_CAUSE_CLIENT_CLOSED = 'C',
	TG_CAUSE_CLIENT_TIMEOUT = 'c',
	TG_CAUSE_UPSTREAM_FAILED = 'S',
	TG_CAUSE_UPSTREAM_TIMEOUT = 's',
	TG_CAUSE_GATEWAY = 'G',         /* rejected by the gateway */
	TG_CAUSE_DRAIN = 'D',           /* shutdown deadline */
};

#define TG_MAX_HELD_EVENTS 32

/* The response as it goes back to the client. */
struct tg_response {
	int status;                     /* sent, or to be sent, to the client */
	int head_sent;
	int streaming;                  /* text/event-stream relayed by event */
	int chunked;                    /* body framed with chunked encoding */
	struct tg_headers headers;      /* upstream headers kept for the client */
	struct evbuffer *body;          /* non-streaming body, buffered whole */
	json_t *json;                   /* body as parsed by tg_relay_response_json() */
	int json_parsed;                /* set once parsed; a NULL json is then not JSON */
	struct tg_reply_digest digest;  /* of the body, by tg_relay_response_digest() */
	struct tg_reply_detail detail;  /* read with it when tracing reads it */
	int digest_read;

	struct tg_sse_parser sse;       /* events of a streaming body */
	struct evbuffer *pending;       /* stream bytes not yet part of an event */
	struct evbuffer *spare_raw;     /* an empty buffer for the next event, or NULL */
	struct tg_stream_event *held;   /* before first content; grown on demand */
	size_t n_held, cap_held;
	size_t held_bytes;
	int content_sent;               /* the head went out with the first
	                                   content, or at once when nothing
	                                   was held: the stream is the client's */
	int awaiting_content;           /* it went out at once, and the
	                                   attempt's latency mark waits for
	                                   the first content */
	int sse_done;                   /* "[DONE]" was seen */
	int finish_seen;                /* a finish reason was seen */
	int anthropic;                  /* the events are Anthropic's Messages
	                                   stream, read from their "type" */
	int responses;                  /* the events are the Responses API's,
	                                   whose types start with "response." */
	long long next_sequence;        /* one past the last "sequence_number"
	                                   the client received (Responses API) */
	struct evbuffer *stream_error_body; /* an error event before content */
};

#define TG_MAX_ATTEMPTS 16

/* One upstream attempt of a request. */
struct tg_attempt {
	const struct tg_backend *backend;
	const char *model;              /* model name sent upstream */
	uint64_t start_ns, end_ns;
	uint64_t committed_ns;           /* its stream reached the client; 0 before */
	int status;                     /* upstream HTTP status; 0 when none */
	enum tg_error error;
	int outcome;                    /* enum tg_outcome, once ended */
	int trial;                      /* the half-open trial of its backend */
	int open;                       /* not ended yet */
	char label[16];                 /* for x-tollgate-attempts: "503", "timeout" */
};

struct tg_request {
	struct tg_client *client;       /* NULL once the client is gone */
	struct tg_worker *worker;
	struct tg_config *config;       /* the snapshot it started under (a ref) */

	char id[129];                   /* X-Request-Id */
	char client_addr[64];           /* "ip:port", for logs */
	uint64_t start_ns;              /* CLOCK_MONOTONIC at the first byte */
	uint64_t start_wall_ns;         /* CLOCK_REALTIME read with start_ns */
	uint64_t done_ns;               /* CLOCK_MONOTONIC at tg_request_done(): the
	                                 * one end the access log, the metrics and
	                                 * the trace record */
	char time[32];                  /* wall-clock start, for the access log */

	/* As received. */
	const char *method;             /* static string from llhttp, or
	                                   method_shown */
	int method_id;                  /* enum llhttp_method */
	char method_shown[TG_REQUEST_METHOD_SHOWN + 1];  /* the start of a method
	                                   the gateway does not implement */
	char *url;                      /* request target, with the query */
	char *path;                     /* target without the query */
	struct tg_headers headers;      /* hop-by-hop headers already removed */
	int http_minor;                 /* 0 for HTTP/1.0 clients */
	int keepalive;                  /* the client connection may be reused */
	struct evbuffer *body;
	size_t body_len;
	struct evbuffer *body_without_usage; /* the client's body, kept when the
	                                   gateway asked for stream usage in
	                                   body and a backend of the route
	                                   takes no stream_options; else NULL */

	/* Routing decisions derived from the request. */
	json_t *body_json;              /* the body's tree: read it only
	                                   through tg_request_json() */
	int body_json_pending;          /* the body is an object that jansson
	                                   reads, but body_json is not built */
	int body_ints_as_reals;         /* body_json has every integer as a
	                                   real: one was beyond 64 bits */
	struct tg_request_facts scanned;    /* the scan's copies */
	const char *model;              /* into scanned or body_json */
	const char *user;               /* "user" when a string: the same */
	int stream;                     /* "stream": true */
	enum tg_stream_options stream_options;  /* as the client sent them */
	int body_has_members;           /* the body's object is not {} */
	int body_opaque;                /* a body under a Content-Type that is
	                                   not JSON: forwarded unread, so it has
	                                   no model and no tree */
	const struct tg_route *route;
	const struct tg_backend *backend;
	const struct tg_gateway_key *key;       /* the caller's gateway key, in
	                                           config; NULL: none presented */
	struct tg_ratelimit_request ratelimit;  /* under the key's limits */

	/* Upstream attempts; the last one is the current one. */
	struct tg_attempt attempts[TG_MAX_ATTEMPTS];
	unsigned n_attempts;
	const struct tg_tier_member *member;    /* of the current attempt */
	struct tg_upstream_conn *upstream;
	struct evbuffer *upstream_request;  /* head and body of the current attempt */
	int upstream_status;

	struct tg_response response;
	struct tg_filter_state *filters;        /* NULL when the route has none */
	struct tg_cache_request *cache;   /* response cache; NULL when unused */
	struct tg_trace *trace;         /* spans of the request; NULL when off */

	/* Outcome. */
	uint64_t bytes_in;
	uint64_t bytes_out;
	enum tg_error error;
	enum tg_phase phase;
	enum tg_cause cause;

	struct tg_metrics_request metrics;
};

#endif
