/*
 * Types of distributed tracing: spans with their attributes and events, the
 * span tree of one request, and the "tracing" configuration section.
 *
 * A span is built and ended on the worker thread that owns its request.
 * Once ended and submitted it is immutable: the exporter thread encodes it
 * and the admin thread reads it, and only the exporter thread frees it.
 */
#ifndef TOLLGATE_TRACE_T_H
#define TOLLGATE_TRACE_T_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config-t.h"
#include "trace-arena.h"
#include "trace-semconv.h"

#define TG_TRACE_ID_SIZE 16
#define TG_SPAN_ID_SIZE 8

/* Limits per span, as the OpenTelemetry SDK defaults them
 * (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT); what goes
 * over is counted in droppedAttributesCount and droppedEventsCount. */
#define TG_SPAN_MAX_ATTRS 128
#define TG_SPAN_MAX_EVENTS 128

/* Values are those of the OTLP SpanKind enum. */
enum tg_span_kind {
	TG_SPAN_INTERNAL = 1,
	TG_SPAN_SERVER = 2,
	TG_SPAN_CLIENT = 3,
};

/* Values are those of the OTLP Status.StatusCode enum. */
enum tg_span_status {
	TG_STATUS_UNSET = 0,
	TG_STATUS_OK = 1,
	TG_STATUS_ERROR = 2,
};

enum tg_attr_type {
	TG_ATTR_STRING,
	TG_ATTR_INT,
	TG_ATTR_DOUBLE,
	TG_ATTR_BOOL,
	TG_ATTR_STRINGS,        /* array of strings */
};

struct tg_attr {
	const char *key;        /* static storage: a semconv name or a literal */
	enum tg_attr_type type;
	uint32_t key_len;       /* strlen(key), set by the setters, for lookups and the encoder */
	uint32_t value_len;     /* strlen(v.s) of a TG_ATTR_STRING, for the encoder */
	int value_plain;        /* no byte of that v.s, or of any item of a
	                           TG_ATTR_STRINGS, needs a JSON escape */
	union {
		char *s;
		int64_t i;
		double d;
		int b;
		struct {
			char **items;
			size_t n;
		} list;
	} v;
};

struct tg_attrs {
	struct tg_attr *items;
	size_t count, capacity;
	uint32_t dropped;       /* set over TG_SPAN_MAX_ATTRS */
	uint64_t key_lengths;   /* bit len % 64 set for each key of len bytes */
	uint64_t literal_lengths;       /* the same for keys that are not semconv names */
	uint64_t semconv_keys[(TG_SC_COUNT + 63) / 64];  /* a bit per semconv entry among the keys */
	struct tg_span_arena *arena;    /* the span's, for items and values */
};

struct tg_span_pool;
struct tg_genai_endpoint;

struct tg_span_event {
	const char *name;       /* static storage */
	uint64_t time_ns;       /* Unix epoch nanoseconds */
	struct tg_attrs attrs;
};

struct tg_span {
	uint8_t trace_id[TG_TRACE_ID_SIZE];
	uint8_t span_id[TG_SPAN_ID_SIZE];
	uint8_t parent_id[TG_SPAN_ID_SIZE];     /* all zero for a root span */
	char *trace_state;      /* W3C tracestate of the trace; NULL for none */
	uint32_t flags;         /* OTLP SpanFlags: W3C flags and remote parent bits */
	char *name;
	size_t name_len;        /* strlen(name), for the encoder */
	int name_plain;         /* no byte of name needs a JSON escape */
	enum tg_span_kind kind;
	uint64_t start_ns;      /* Unix epoch nanoseconds */
	uint64_t end_ns;        /* 0 while the span runs */
	enum tg_span_status status;
	char *status_message;   /* NULL for none; only with TG_STATUS_ERROR */
	struct tg_attrs attrs;
	struct tg_span_event *events;   /* in the arena */
	size_t n_events, events_capacity;
	uint32_t dropped_events;
	struct tg_span_arena arena;     /* the name, attributes and events */

	/* Exporter thread only, after submission. */
	struct tg_span *next;   /* the exporter's list of spans to send; a
	                           pool's list once the span is freed */
	unsigned refs;          /* export list and recent-traces ring */

	struct tg_span_pool *pool;      /* where tg_span_free() returns it, or NULL */
};

/*
 * The span tree of one request: the SERVER span that covers it, and the
 * children started under it. The request owns the tree until
 * tg_trace_request_done() submits it.
 */
struct tg_trace {
	uint8_t trace_id[TG_TRACE_ID_SIZE];
	uint8_t remote_parent[TG_SPAN_ID_SIZE]; /* from traceparent; zero if none */
	int sampled;            /* spans are recorded and exported */
	const struct tg_genai_endpoint *endpoint;       /* of the path, or NULL */
	const char *route;      /* the path's route in span names (trace.c), or NULL */
	char *trace_state;      /* incoming tracestate headers joined by ',' */

	/* Span times are Unix time, derived from CLOCK_MONOTONIC through this
	 * pair, so that a child never seems to start before its parent when
	 * the wall clock steps. */
	uint64_t wall_base_ns;
	uint64_t mono_base_ns;

	struct tg_span_pool *pool;      /* the spans' memory; NULL: malloc */

	struct tg_span **spans; /* every span of the tree; [0] is the server span */
	size_t n_spans, spans_capacity;
	/* The array that spans uses up to 4 spans: a chat completion makes 3,
	 * and an allocated array cost about 200 instructions per request. */
	struct tg_span *first_spans[4];
	struct tg_span *server;
	struct tg_span *attempt;        /* the upstream attempt in progress */
	struct tg_span *last_attempt;   /* the latest attempt, running or ended */
	struct tg_span *cache;          /* the cache lookup in progress */
	uint64_t filters_start;         /* CLOCK_MONOTONIC; the request filters began */
	uint64_t filters_end;           /* and ended; 0 until then */
	int filters_running;

	/* Progress of the current attempt's response. */
	int first_chunk_seen;
	int first_token_seen;
	/* Whether the response is read from the reply detail
	 * (tg_reply_digest_detail): the attempt is recorded, captures no
	 * output text, and has OpenAI's shape. Set when the attempt starts,
	 * because the relay checks it for every event. */
	int reads_detail;
	/* Attributes of the attempt's span that are set once. These flags
	 * replace a tg_attrs_find() before each, which callgrind counts at
	 * about 60 instructions for an absent key and 150 for a present one. */
	int response_id_set;            /* gen_ai.response.id: the first id */
	int response_model_set;         /* gen_ai.response.model: the first model */
	int status_code_set;            /* http.response.status_code */
	char **finish_reasons;          /* one per choice index, NULL when unknown */
	size_t n_finish_reasons;
	char *first_finish_reasons[4];  /* the array finish_reasons uses up to 4 choices */
	int finish_kept;                /* finish_reasons are the upstream's of a body a
	                                   filter blocked (tg_genai_upstream_finish) */
	struct tg_content_capture *output;      /* captured output text; NULL if off */

	/* The traceparent value sent upstream by the current attempt. */
	char upstream_traceparent[56];

	struct tg_trace *spare_next;    /* the pool's list, once the trace is freed */
};

/* "tracing.otlp.headers": one request header sent with every export. */
struct tg_otlp_header {
	char *name;
	char *value;            /* may be a secret: never logged */
};

/* "tracing.otlp.protocol": how an export body is encoded. */
enum tg_otlp_protocol {
	TG_OTLP_HTTP_PROTOBUF,  /* application/x-protobuf, the default */
	TG_OTLP_HTTP_JSON,      /* application/json */
};

/* The "tracing" section of the configuration. */
struct tg_tracing_config {
	int enabled;
	double sample_ratio;            /* for traces started here, 0 to 1 */
	char *service_name;
	size_t recent_traces;           /* traces kept for GET /api/traces */
	int capture_content;            /* gen_ai.input/output.messages */
	size_t max_content_length;      /* bytes of message text per span */

	/* "otlp": where and how spans are exported. */
	char *endpoint;                 /* http(s)://host:port/path; NULL: no export */
	int endpoint_tls;               /* 1 for https:// */
	char *endpoint_host;
	char *endpoint_port;
	char *endpoint_path;            /* with the query, if any */
	enum tg_otlp_protocol protocol;
	struct tg_otlp_header *headers;
	size_t n_headers;
	tg_msec_t export_timeout;       /* one export, retries included */
	tg_msec_t shutdown_timeout;     /* the last export on SIGTERM */
	struct tg_tls_client_config tls;        /* "otlp.tls", for https:// */
	SSL_CTX *tls_ctx;               /* made at load for https://, else NULL */

	/* "batch": the batch span processor. */
	size_t max_queue_size;          /* spans waiting; more are dropped */
	size_t max_export_batch_size;
	tg_msec_t schedule_delay;       /* between two exports */

	/* "retry": exports that failed with a retryable outcome. */
	size_t max_attempts;            /* first attempt included */
	tg_msec_t initial_backoff;
	tg_msec_t max_backoff;
};

#endif
