/*
 * Internals of the metrics module, shared by its source files only:
 * histogram buckets, the series tables of a shard, the process-wide
 * registry that scrapes walk, the session table and the series sets a
 * scrape merges into.
 *
 * Threads: a table's values are written by the worker that owns its shard,
 * with relaxed atomic loads and stores (single writer), and read by the
 * admin thread with relaxed loads. The session table is the exception:
 * every worker updates it with compare-and-swap. Lists of shards and tables
 * change only under the registry lock, which the request path takes only
 * when a worker starts a request under a snapshot it has no table for yet.
 */
#ifndef TOLLGATE_METRICS_TABLE_H
#define TOLLGATE_METRICS_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "metrics-t.h"
#include "metrics.h"

struct evbuffer;
struct tg_request;

typedef _Atomic uint64_t tg_counter;

/* --- histograms ------------------------------------------------------------ */

enum tg_buckets {
	TG_BUCKETS_DURATION,            /* whole request */
	TG_BUCKETS_UPSTREAM,            /* one upstream attempt */
	TG_BUCKETS_OVERHEAD,            /* the gateway's own time */
	TG_BUCKETS_TTFT,
	TG_BUCKETS_TBT,
	TG_BUCKETS_TPOT,
	TG_BUCKETS_TURNS,               /* requests per session */
	TG_BUCKETS_COUNT
};

#define TG_HIST_MAX_BOUNDS 20

/* Upper bounds of one histogram's buckets, in ticks: nanoseconds for
 * durations, plain counts for turns. */
struct tg_bucket_spec {
	const uint64_t *bounds;
	size_t n;
	double ticks_per_unit;          /* 1e9 for seconds; 1 for counts */
};

extern const struct tg_bucket_spec tg_bucket_specs[TG_BUCKETS_COUNT];

/* Per-bucket (not cumulative) counts, the last one for +Inf, and the sum
 * of the observed values in ticks. The count is the sum of the buckets, so
 * it always equals the +Inf bucket of a scrape. */
struct tg_hist {
	tg_counter bucket[TG_HIST_MAX_BOUNDS + 1];
	tg_counter sum;
};

/*
 * The latest observation of one bucket that belongs to a sampled trace,
 * shown as an OpenMetrics exemplar. The owning worker writes it under a
 * sequence count, odd while it writes; the scrape copies it and retries
 * when the count moved. Every field is atomic, so the copy races nothing.
 */
struct tg_exemplar {
	_Atomic uint64_t seq;
	_Atomic uint64_t trace_hi;      /* trace id, big-endian halves; */
	_Atomic uint64_t trace_lo;      /* both 0 before the first one */
	_Atomic uint64_t value;         /* ticks */
	_Atomic uint64_t time_ms;       /* wall clock, ms since the epoch */
};

struct tg_exemplars {
	struct tg_exemplar bucket[TG_HIST_MAX_BOUNDS + 1];
};

/* An exemplar as a scrape copied it; trace_hi and trace_lo 0 for none. */
struct tg_exemplar_copy {
	uint64_t trace_hi, trace_lo;
	double value;                   /* in the family's unit */
	double time;                    /* seconds since the epoch */
};

/* Record value (ticks) of the trace trace_id (16 bytes), observed at
 * wall_ns (nanoseconds since the epoch), as the exemplar of its bucket.
 * Single writer: the worker that owns e. */
void tg_exemplar_record(struct tg_exemplars *e, enum tg_buckets kind, uint64_t value,
                        uint64_t wall_ns, const uint8_t *trace_id);

/* Copy every bucket's exemplar of e into out (bucket count + 1 entries). */
void tg_exemplars_copy(struct tg_exemplars *e, enum tg_buckets kind,
                       struct tg_exemplar_copy *out);

/* --- single-writer updates ---------------------------------------------- */

/* Add n to a counter that only the calling thread writes. A plain load and
 * store, not a read-modify-write: readers on other threads see the old or
 * the new value, never a torn one. */
static inline void
tg_counter_add(tg_counter *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

static inline uint64_t
tg_counter_get(tg_counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* A double kept as its bits in a counter, for the cost sums. */
void tg_counter_add_double(tg_counter *c, double v);
double tg_counter_get_double(tg_counter *c);

/* Record value (in ticks) into h, a single-writer histogram. */
void tg_hist_observe(struct tg_hist *h, enum tg_buckets kind, uint64_t value);

/* The same for a histogram several threads write (the session turns). */
void tg_hist_observe_shared(struct tg_hist *h, enum tg_buckets kind, uint64_t value);

/* --- label values with a fixed set ----------------------------------------- */

/* Response status codes kept apart; others fall into their class. */
enum { TG_CODE_SLOTS = 23 };
size_t tg_code_slot(int status);
const char *tg_code_label(size_t slot);

/* The limits of a gateway key that reject requests: the "limit" label. */
enum tg_rate_limit_kind {
	TG_RATE_LIMIT_REQUESTS,
	TG_RATE_LIMIT_TOKENS,
	TG_RATE_LIMITS
};

enum tg_token_type {
	TG_TOKENS_INPUT,
	TG_TOKENS_OUTPUT,
	TG_TOKENS_CACHED_INPUT,
	TG_TOKENS_REASONING,
	TG_TOKENS_CACHE_WRITE_INPUT,
	TG_TOKEN_TYPES
};

enum tg_attempt_result {
	TG_ATTEMPT_SUCCESS,             /* a response below 400 */
	TG_ATTEMPT_CLIENT_ERROR,        /* 4xx other than 429 */
	TG_ATTEMPT_RATE_LIMITED,        /* 429 */
	TG_ATTEMPT_SERVER_ERROR,        /* 5xx */
	TG_ATTEMPT_CONNECT_ERROR,       /* TCP or TLS */
	TG_ATTEMPT_TIMEOUT,
	TG_ATTEMPT_RESET,               /* closed, invalid or cut short */
	TG_ATTEMPT_STREAM_ERROR,        /* an error event in the stream */
	TG_ATTEMPT_CANCELLED,           /* the client left */
	TG_ATTEMPT_GATEWAY_ERROR,       /* the gateway had no descriptor or memory */
	TG_ATTEMPT_RESULTS
};

extern const char *const tg_attempt_labels[TG_ATTEMPT_RESULTS];
extern const char *const tg_token_labels[TG_TOKEN_TYPES];
/* Cache lookup results, as tg_cache_status() names them, and "error". */
#define TG_CACHE_RESULTS 4
extern const char *const tg_cache_labels[TG_CACHE_RESULTS];

enum tg_abandon_phase {
	TG_ABANDON_BEFORE_FIRST_TOKEN,
	TG_ABANDON_MID_STREAM,
	TG_ABANDON_PHASES
};

extern const char *const tg_abandon_labels[TG_ABANDON_PHASES];

/* --- series tables --------------------------------------------------------- */

/* The series of one route, backend and model. */
struct tg_cell {
	tg_counter requests[TG_CODE_SLOTS];
	tg_counter tokens[TG_TOKEN_TYPES];
	tg_counter estimated_output;    /* content events of streams without usage */
	tg_counter cost;                /* a double */
	struct tg_hist ttft, tbt, tpot;
	struct tg_exemplars ttft_exemplars;
};

/* The series of one route and model. */
struct tg_route_model {
	struct tg_hist duration;
	struct tg_exemplars duration_exemplars;
};

struct tg_route_values {
	tg_counter failovers;
	tg_counter retry_budget_exhausted;      /* failures left unretried */
	tg_counter cache[TG_CACHE_RESULTS];
	tg_counter abandoned[TG_ABANDON_PHASES];
	tg_counter gateway_errors[TG_E_COUNT];  /* by req->error; TG_OK unused */
	struct tg_hist overhead;
};

/* The series of one gateway key, or of the callers without one. */
struct tg_key_values {
	tg_counter requests[TG_CODE_SLOTS];
	tg_counter rate_limited[TG_RATE_LIMITS];        /* 429s by limit kind */
};

struct tg_backend_values {
	tg_counter attempts[TG_ATTEMPT_RESULTS];
	tg_counter cooldowns;
	struct tg_hist upstream;
};

/*
 * A route's view of the label space. Slots are the positions inside the
 * route's block of cells. The last backend slot is "none", for requests
 * that made no attempt, and the last model slot is "other".
 */
struct tg_route_layout {
	size_t n_backend_slots;
	uint32_t *backend_slot;         /* by config backend index */
	uint32_t *slot_backend;         /* by slot: config backend index, or
	                                   the backend count for "none" */
	size_t n_model_slots;
	uint32_t *model_slot;           /* by table model index */
	uint32_t *slot_model;           /* by slot: table model index */
	size_t cell_base;               /* first cell of the route */
	size_t route_model_base;        /* first route-model entry */
};

#define TG_FILTER_SERIES_MAX 512

/* One filter decision series; the names point into the table's config or
 * are string literals. The worker fills the key, then publishes it with a
 * release store of used. */
struct tg_filter_series {
	const char *filter;
	const char *rule;
	const char *action;
	const char *side;
	_Atomic int used;
	tg_counter count;
};

struct tg_metrics_table {
	struct tg_config *config;       /* a ref: every name points into it */
	struct tg_metrics_table *next;  /* in the shard, under the registry lock */
	_Atomic uint32_t users;         /* requests bound to it; single writer */

	/* Label space. Route index n_routes - 1 is "none" (no route matched),
	 * backend index config->n_backends is "none", model index n_models - 1
	 * is "other". */
	size_t n_routes;
	size_t n_models;
	const char **models;            /* sorted; models[n_models - 1] is NULL */
	const struct tg_model_price **prices;   /* by model index; NULL: none */
	struct tg_route_layout *layout; /* by route index */

	size_t n_cells;
	struct tg_cell *cells;
	size_t n_route_models;
	struct tg_route_model *route_models;
	struct tg_route_values *routes;         /* by route index */
	struct tg_backend_values *backends;     /* by backend index, "none" last */
	size_t n_keys;                  /* gateway keys and "none"; 0 without keys */
	struct tg_key_values *keys;     /* by key index, "none" last; NULL
	                                   when the config has no gateway keys */
	struct tg_filter_series filters[TG_FILTER_SERIES_MAX];
	tg_counter filters_dropped;     /* decisions past TG_FILTER_SERIES_MAX */
};

/* Build the table of cfg, holding a reference to it. NULL when out of
 * memory. */
struct tg_metrics_table *tg_metrics_table_new(struct tg_config *cfg);
void tg_metrics_table_free(struct tg_metrics_table *t);

/* Table index of a model name; the "other" index for NULL or a name the
 * config does not list. */
size_t tg_metrics_model_index(const struct tg_metrics_table *t, const char *model);

/* Route index of a route of t's config, or the "none" index for NULL. */
size_t tg_metrics_route_index(const struct tg_metrics_table *t, const struct tg_route *route);

/* Backend index of a backend of t's config, or "none" for NULL. */
size_t tg_metrics_backend_index(const struct tg_metrics_table *t, const struct tg_backend *b);

/* The cell of a route, backend and model index. */
size_t tg_metrics_cell_index(const struct tg_metrics_table *t, size_t route,
                             size_t backend, size_t model);

/* Label value of a model index: the configured name or "other". */
const char *tg_metrics_model_name(const struct tg_metrics_table *t, size_t model);

/* --- shards and the registry ------------------------------------------------ */

struct tg_sessions;

struct tg_metrics_shard {
	int worker_id;
	struct tg_metrics_shard *next;  /* in the registry, under its lock */
	struct tg_metrics_table *tables;    /* under the lock */
	struct tg_metrics_table *current;   /* for the worker's newest config,
	                                       NULL until its first request
	                                       under it; written under the lock */
	struct tg_sessions *sessions;   /* the registry's, once created */
	_Atomic int64_t in_flight;      /* single writer: the worker */
	_Atomic int64_t streams_open;
};

/* Host names with counters of their own; the others share "other". */
#define TG_RESOLVER_NAMES_MAX 64

/* The counters of one backend host name. Every worker adds to them with
 * atomic read-modify-writes. The name is set, under the registry lock,
 * before the slot is counted in n_resolver, and never changes after. */
struct tg_resolver_counters {
	char name[256];                 /* a DNS name has at most 253 */
	_Atomic uint64_t events[TG_RESOLVER_EVENTS];
};

/* The process-wide list of shards that scrapes walk, and what outlives the
 * tables: the archive of retired series, the session table and the
 * resolver's counters. */
struct tg_metrics_registry {
	pthread_mutex_t lock;
	struct tg_metrics_shard *shards;
	struct tg_series_set *archive;  /* TG_F_COUNT sets, merged */
	struct tg_sessions *sessions;   /* made for the first config loaded
	                                   that enables sessions */
	size_t sessions_max;            /* its sessions.max_sessions */
	struct tg_config *live_config;  /* the latest loaded (a ref): the
	                                   backends of tollgate_backend_up and
	                                   the pricing currency */
	struct tg_resolver_counters *resolver;  /* TG_RESOLVER_NAMES_MAX + 1,
	                                           "other" last */
	size_t n_resolver;              /* named slots in use */
};

extern struct tg_metrics_registry tg_metrics_registry;

/* Find or create the table of cfg in shard, and make it current when
 * make_current (cfg is the worker's own config). Retires the tables left
 * idle. Takes the registry lock. NULL when out of memory. */
struct tg_metrics_table *tg_metrics_bind(struct tg_metrics_shard *shard,
                                         struct tg_config *cfg, int make_current);

/* Archive and free the tables of shard that are not current and that no
 * request uses. Owning worker only; takes the registry lock. */
void tg_metrics_retire_idle(struct tg_metrics_shard *shard);

/* --- recording helpers shared with metrics-stream.c ------------------------ */

/* A stream event with content leaves for the client at now: time to first
 * token for the first, one time-between-tokens sample for each later one. */
void tg_metrics_content_event(struct tg_request *req, uint64_t now);

/* The first event of a stream leaves: count it in streams_open. */
void tg_metrics_stream_opened(struct tg_request *req);

/* Count n filter decisions of one series into t. The label values must be
 * names from t's config or string literals: series are keyed by address. */
void tg_metrics_filter_decision(struct tg_metrics_table *t, const char *filter,
                                const char *rule, const char *action, const char *side,
                                uint64_t n);

/* --- series sets (scrape side) ------------------------------------------------ */

enum tg_family {
	TG_F_REQUESTS,
	TG_F_IN_FLIGHT,
	TG_F_STREAMS_OPEN,
	TG_F_GATEWAY_ERRORS,
	TG_F_KEY_REQUESTS,
	TG_F_KEY_RATE_LIMITED,
	TG_F_REQUEST_DURATION,
	TG_F_UPSTREAM_DURATION,
	TG_F_OVERHEAD,
	TG_F_TTFT,
	TG_F_TBT,
	TG_F_TPOT,
	TG_F_TOKENS,
	TG_F_ESTIMATED_TOKENS,
	TG_F_COST,
	TG_F_ATTEMPTS,
	TG_F_FAILOVERS,
	TG_F_RETRY_BUDGET_EXHAUSTED,
	TG_F_BACKEND_UP,
	TG_F_COOLDOWNS,
	TG_F_CACHE,
	TG_F_FILTER,
	TG_F_FILTER_DROPPED,
	TG_F_ABANDONED,
	TG_F_SESSION_TURNS,
	TG_F_SESSIONS_ACTIVE,
	TG_F_SESSIONS_EVICTED,
	TG_F_RESOLVER_QUERIES,
	TG_F_RESOLVER_FAILURES,
	TG_F_RESOLVER_STALE,
	TG_F_COUNT
};

/* One series while a scrape merges. labels are escaped and joined, as in
 * `route="chat",model="gpt-4o"`, or "" for none. A counter or gauge has one
 * value. A histogram has its per-bucket counts (+Inf last), then its sum in
 * the family's unit. */
struct tg_series {
	char *labels;
	double *values;
	struct tg_exemplar_copy *exemplars;     /* one per bucket, or NULL */
};

struct tg_series_set {
	struct tg_series *items;
	size_t n, cap;
};

enum tg_family_type { TG_COUNTER, TG_GAUGE, TG_HISTOGRAM };

struct tg_family_def {
	const char *name;               /* sample name; counters end in _total */
	enum tg_family_type type;
	enum tg_buckets buckets;        /* histograms */
	int merge_max;                  /* several sources report one state */
	const char *help;
};

extern const struct tg_family_def tg_families[TG_F_COUNT];

/* Number of values of a series of family f. */
size_t tg_family_values(enum tg_family f);

/* Add a series with a copy of labels; a series with equal labels is
 * summed in by tg_series_set_merge(). Returns 0, or -1 out of memory. */
int tg_series_add(struct tg_series_set *set, enum tg_family f, const char *labels,
                  const double *values);

/* Give the series added last a copy of exemplars, one per bucket of its
 * family. Returns 0, or -1 out of memory. */
int tg_series_add_exemplars(struct tg_series_set *set, enum tg_family f,
                            const struct tg_exemplar_copy *exemplars);

/* Sort by labels and combine the series with equal labels (sum, or max for
 * the families that take it; the newer exemplar of each bucket). */
void tg_series_set_merge(struct tg_series_set *set, enum tg_family f);
void tg_series_set_free(struct tg_series_set *set);

/* Add every non-empty series of t to sets[TG_F_COUNT]. Returns 0, or -1
 * out of memory. */
int tg_metrics_collect_table(struct tg_series_set *sets, struct tg_metrics_table *t);

/* Add the tollgate_backend_up series of every backend of cfg. Returns 0, or
 * -1 out of memory. */
int tg_metrics_collect_backend_up(struct tg_series_set *sets, const struct tg_config *cfg);

/* Add the resolver's series of every host name in use, and of "other"
 * once it counted something (registry lock held). Returns 0, or -1 out
 * of memory. */
int tg_metrics_collect_resolver(struct tg_series_set *sets,
                                const struct tg_metrics_registry *reg);

/* Fold the series of t, which no request uses any more, into the
 * registry's archive (registry lock held). */
void tg_metrics_archive_table(struct tg_metrics_table *t);

/* --- sessions ----------------------------------------------------------------- */

/* Create the session table with room for max_sessions (rounded up to a
 * power of two). NULL when out of memory. */
struct tg_sessions *tg_sessions_new(size_t max_sessions);
void tg_sessions_free(struct tg_sessions *s);

/* Count one turn of the session with this key, at now_ns, with the idle
 * timeout of the request's config. Lock-free; any thread. */
void tg_sessions_touch(struct tg_sessions *s, const char *key, size_t len,
                       uint64_t now_ns, tg_msec_t idle_timeout);

/* End every session idle for the latest idle timeout seen, observing its
 * turns. Called by the scrape. */
void tg_sessions_sweep(struct tg_sessions *s, uint64_t now_ns);

/* Add the session families to sets. */
int tg_sessions_collect(struct tg_series_set *sets, struct tg_sessions *s);

/* --- writing (metrics-expo.c) ----------------------------------------------------- */

/* "# HELP" and "# TYPE" lines of a family; type is "counter", "gauge",
 * "histogram" or "info". Returns 0, or -1 out of memory. */
int tg_metrics_write_header(struct evbuffer *out, const char *name, const char *type,
                            const char *help, enum tg_metrics_format format);

/* One sample line; labels as in struct tg_series ("" for none). */
int tg_metrics_write_sample(struct evbuffer *out, const char *name, const char *labels,
                            double v);

/* --- process metrics ---------------------------------------------------------- */

/* Append the process_* families and tollgate_build_info in format. Values
 * that /proc cannot give are left out. Returns 0, or -1 out of memory. */
int tg_metrics_write_process(struct evbuffer *out, enum tg_metrics_format format);

#endif
