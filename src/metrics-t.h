/*
 * Types of the metrics module: the per-request recording state that
 * struct tg_request embeds, and the config sections the module owns
 * (pricing, sessions).
 */
#ifndef TOLLGATE_METRICS_T_H
#define TOLLGATE_METRICS_T_H

#include <stddef.h>
#include <stdint.h>

#include "config-t.h"

struct tg_metrics_table;

/* Token counts of one response, as the provider reported them. */
struct tg_usage {
	uint64_t input;                 /* prompt_tokens, cached ones included */
	uint64_t output;                /* completion_tokens, reasoning included */
	uint64_t cached_input;          /* prompt_tokens_details.cached_tokens */
	uint64_t cache_write_input;     /* Anthropic's cache_creation_input_tokens */
	uint64_t reasoning;             /* completion_tokens_details.reasoning_tokens */
	int reported;                   /* a usage object was seen */
};

/*
 * The metrics state of one request, kept between its hooks. It lives in
 * struct tg_request, is zeroed with it, and is written only by the worker
 * thread that owns the request.
 */
struct tg_metrics_request {
	struct tg_metrics_table *table; /* of the request's config (a ref) */
	int in_flight;                  /* counted in requests_in_flight */
	int stream_open;                /* counted in streams_open */
	int dispatched;                 /* read whole and handed to routing */

	uint64_t read_ns;               /* request read whole; 0 before */
	uint64_t upstream_end_ns;       /* the latest upstream exchange ended */

	/* Stream timing, in CLOCK_MONOTONIC ns; 0 until seen. */
	uint64_t first_token_ns;
	uint64_t last_token_ns;
	uint64_t content_events;
	size_t cell;                    /* series of the stream, fixed at its
	                                   first content event */

	struct tg_usage usage;
	int usage_added;                /* the gateway asked for stream usage in
	                                   req->body, so the usage chunk of a
	                                   backend that got it is not relayed */
};

/* Price of one model, in the pricing table's currency per million tokens. */
struct tg_model_price {
	char *model;
	double input;
	double cached_input;            /* defaults to input */
	double cache_write_input;       /* defaults to input */
	double output;
};

/* "pricing": per-model prices that tollgate_cost_total is computed from. */
struct tg_pricing_config {
	char *currency;                 /* free text for the help line; "USD" */
	size_t n_models;
	struct tg_model_price *models;
};

/* "sessions": the turns-per-conversation histogram. */
struct tg_sessions_config {
	int enabled;
	char *header;                   /* request header carrying the id */
	int user_field;                 /* fall back to the body's "user" */
	tg_msec_t idle_timeout;         /* a session ends after this silence */
	size_t max_sessions;            /* table size; rounded up to a power of 2 */
};

#endif
