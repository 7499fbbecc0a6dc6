/*
 * Metrics: bucket boundaries, fixed label sets, the series tables of a
 * configuration snapshot, and the shards and registry that hold them.
 * Recording is in metrics-record.c, the exposition in metrics-expo.c.
 */
#include <assert.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth-t.h"
#include "config.h"
#include "log.h"
#include "metrics-table.h"
#include "metrics.h"

/* --- bucket boundaries ------------------------------------------------------ */

#define SEC(x) ((uint64_t)((x) * 1e9 + 0.5))

/*
 * The boundaries the OpenTelemetry GenAI semantic conventions (v1.41)
 * recommend, kept in this one place so that a revision of the conventions
 * is one edit. Where tollgate extends them, the comment gives the reason.
 */

/* gen_ai.server.request.duration, plus 1 ms and 5 ms below it: cache hits
 * and the gateway's own error responses take well under 10 ms. */
static const uint64_t duration_bounds[] = {
	SEC(0.001), SEC(0.005), SEC(0.01), SEC(0.02), SEC(0.04), SEC(0.08),
	SEC(0.16), SEC(0.32), SEC(0.64), SEC(1.28), SEC(2.56), SEC(5.12),
	SEC(10.24), SEC(20.48), SEC(40.96), SEC(81.92),
};

/* gen_ai.client.operation.duration, as recommended. */
static const uint64_t upstream_bounds[] = {
	SEC(0.01), SEC(0.02), SEC(0.04), SEC(0.08), SEC(0.16), SEC(0.32),
	SEC(0.64), SEC(1.28), SEC(2.56), SEC(5.12), SEC(10.24), SEC(20.48),
	SEC(40.96), SEC(81.92),
};

/* The gateway's own share: the conventions have no such metric, and it is
 * measured in microseconds, so the buckets start at 10 us. */
static const uint64_t overhead_bounds[] = {
	SEC(0.00001), SEC(0.000025), SEC(0.00005), SEC(0.0001), SEC(0.00025),
	SEC(0.0005), SEC(0.001), SEC(0.0025), SEC(0.005), SEC(0.01), SEC(0.025),
	SEC(0.05), SEC(0.1), SEC(0.25), SEC(0.5), SEC(1),
};

/* gen_ai.server.time_to_first_token, as recommended. */
static const uint64_t ttft_bounds[] = {
	SEC(0.001), SEC(0.005), SEC(0.01), SEC(0.02), SEC(0.04), SEC(0.06),
	SEC(0.08), SEC(0.1), SEC(0.25), SEC(0.5), SEC(0.75), SEC(1.0), SEC(2.5),
	SEC(5.0), SEC(7.5), SEC(10.0),
};

/* gen_ai.server.time_per_output_token, as recommended. */
static const uint64_t tpot_bounds[] = {
	SEC(0.01), SEC(0.025), SEC(0.05), SEC(0.075), SEC(0.1), SEC(0.15),
	SEC(0.2), SEC(0.3), SEC(0.4), SEC(0.5), SEC(0.75), SEC(1.0), SEC(2.5),
};

/* Time between tokens has no recommendation. It takes the per-token
 * boundaries plus three below 10 ms: several events often arrive in one
 * read and leave the gateway microseconds apart. */
static const uint64_t tbt_bounds[] = {
	SEC(0.001), SEC(0.0025), SEC(0.005), SEC(0.01), SEC(0.025), SEC(0.05),
	SEC(0.075), SEC(0.1), SEC(0.15), SEC(0.2), SEC(0.3), SEC(0.4), SEC(0.5),
	SEC(0.75), SEC(1.0), SEC(2.5),
};

/* Requests per session. */
static const uint64_t turns_bounds[] = {
	1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000,
};

#define SPEC(bounds, ticks) { (bounds), sizeof(bounds) / sizeof((bounds)[0]), (ticks) }

const struct tg_bucket_spec tg_bucket_specs[TG_BUCKETS_COUNT] = {
	[TG_BUCKETS_DURATION] = SPEC(duration_bounds, 1e9),
	[TG_BUCKETS_UPSTREAM] = SPEC(upstream_bounds, 1e9),
	[TG_BUCKETS_OVERHEAD] = SPEC(overhead_bounds, 1e9),
	[TG_BUCKETS_TTFT] = SPEC(ttft_bounds, 1e9),
	[TG_BUCKETS_TBT] = SPEC(tbt_bounds, 1e9),
	[TG_BUCKETS_TPOT] = SPEC(tpot_bounds, 1e9),
	[TG_BUCKETS_TURNS] = SPEC(turns_bounds, 1),
};

static size_t
bucket_of(enum tg_buckets kind, uint64_t value)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[kind];
	size_t i = 0;

	while (i < spec->n && value > spec->bounds[i])
		i++;
	return i;       /* spec->n is the +Inf bucket */
}

void
tg_hist_observe(struct tg_hist *h, enum tg_buckets kind, uint64_t value)
{
	tg_counter_add(&h->bucket[bucket_of(kind, value)], 1);
	tg_counter_add(&h->sum, value);
}

void
tg_hist_observe_shared(struct tg_hist *h, enum tg_buckets kind, uint64_t value)
{
	atomic_fetch_add_explicit(&h->bucket[bucket_of(kind, value)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

/* The 8 bytes at p as a big-endian number. One load, and a byte swap on
 * a little-endian host: a loop of shifts took about 70 instructions for
 * a trace id. */
static uint64_t
big_endian_word(const uint8_t *p)
{
	uint64_t word;

	memcpy(&word, p, sizeof(word));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	word = __builtin_bswap64(word);
#endif
	return word;
}

void
tg_exemplar_record(struct tg_exemplars *e, enum tg_buckets kind, uint64_t value,
                   uint64_t wall_ns, const uint8_t *trace_id)
{
	struct tg_exemplar *x = &e->bucket[bucket_of(kind, value)];
	uint64_t seq = atomic_load_explicit(&x->seq, memory_order_relaxed);
	uint64_t hi = big_endian_word(trace_id), lo = big_endian_word(trace_id + 8);

	/* The release fence orders the odd count before the fields, so a
	 * scrape that reads any new field also finds the count moved. */
	atomic_store_explicit(&x->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&x->trace_hi, hi, memory_order_relaxed);
	atomic_store_explicit(&x->trace_lo, lo, memory_order_relaxed);
	atomic_store_explicit(&x->value, value, memory_order_relaxed);
	atomic_store_explicit(&x->time_ms, wall_ns / 1000000, memory_order_relaxed);
	atomic_store_explicit(&x->seq, seq + 2, memory_order_release);
}

/* Copy one exemplar; returns 0 when a write raced the copy. */
static int
exemplar_copy(struct tg_exemplar *x, double ticks_per_unit, struct tg_exemplar_copy *out)
{
	uint64_t seq = atomic_load_explicit(&x->seq, memory_order_acquire);

	if (seq & 1)
		return 0;
	out->trace_hi = atomic_load_explicit(&x->trace_hi, memory_order_relaxed);
	out->trace_lo = atomic_load_explicit(&x->trace_lo, memory_order_relaxed);
	out->value = (double)atomic_load_explicit(&x->value, memory_order_relaxed) / ticks_per_unit;
	out->time = (double)atomic_load_explicit(&x->time_ms, memory_order_relaxed) / 1000;
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&x->seq, memory_order_relaxed) == seq;
}

void
tg_exemplars_copy(struct tg_exemplars *e, enum tg_buckets kind, struct tg_exemplar_copy *out)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[kind];

	for (size_t i = 0; i <= spec->n; i++) {
		int tries = 0;

		/* A worker rewrites one exemplar at most once per request, so a
		 * few tries find it still; past them the bucket shows none. */
		while (!exemplar_copy(&e->bucket[i], spec->ticks_per_unit, &out[i])) {
			if (++tries == 16) {
				memset(&out[i], 0, sizeof(out[i]));
				break;
			}
		}
	}
}

void
tg_counter_add_double(tg_counter *c, double v)
{
	uint64_t bits = tg_counter_get(c);
	double sum;

	memcpy(&sum, &bits, sizeof(sum));
	sum += v;
	memcpy(&bits, &sum, sizeof(bits));
	atomic_store_explicit(c, bits, memory_order_relaxed);
}

double
tg_counter_get_double(tg_counter *c)
{
	uint64_t bits = tg_counter_get(c);
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

/* --- fixed label sets --------------------------------------------------------- */

/* Statuses worth a series of their own: the ones clients and operators act
 * on differently (529 is Anthropic's "overloaded", a 503 by another
 * number). The rest are counted by class, "4xx" and so on. */
static const int kept_codes[] = {
	200, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 431,
	500, 502, 503, 504, 529,
};

#define N_KEPT_CODES (sizeof(kept_codes) / sizeof(kept_codes[0]))
#define CLASS_SLOT(c) (N_KEPT_CODES + (size_t)(c) - 1)  /* c from 1 to 5 */
#define NO_CODE_SLOT (N_KEPT_CODES + 5)

_Static_assert(NO_CODE_SLOT + 1 == TG_CODE_SLOTS, "TG_CODE_SLOTS must match kept_codes");

static const char *const kept_code_labels[] = {
	"200", "400", "401", "403", "404", "405", "408", "409", "413", "422", "429", "431",
	"500", "502", "503", "504", "529",
};

static const char *const class_labels[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

_Static_assert(sizeof(kept_code_labels) / sizeof(kept_code_labels[0]) == N_KEPT_CODES,
               "one label per kept code");

size_t
tg_code_slot(int status)
{
	int class = status / 100;

	if (status == 0)
		return NO_CODE_SLOT;    /* the client got no response */
	for (size_t i = 0; i < N_KEPT_CODES; i++) {
		if (kept_codes[i] == status)
			return i;
	}
	if (class < 1)
		class = 1;
	if (class > 5)
		class = 5;
	return CLASS_SLOT(class);
}

const char *
tg_code_label(size_t slot)
{
	assert(slot < TG_CODE_SLOTS);
	if (slot < N_KEPT_CODES)
		return kept_code_labels[slot];
	if (slot < NO_CODE_SLOT)
		return class_labels[slot - N_KEPT_CODES];
	return "none";
}

const char *const tg_attempt_labels[TG_ATTEMPT_RESULTS] = {
	[TG_ATTEMPT_SUCCESS] = "success",
	[TG_ATTEMPT_CLIENT_ERROR] = "client_error",
	[TG_ATTEMPT_RATE_LIMITED] = "rate_limited",
	[TG_ATTEMPT_SERVER_ERROR] = "server_error",
	[TG_ATTEMPT_CONNECT_ERROR] = "connect_error",
	[TG_ATTEMPT_TIMEOUT] = "timeout",
	[TG_ATTEMPT_RESET] = "reset",
	[TG_ATTEMPT_STREAM_ERROR] = "stream_error",
	[TG_ATTEMPT_CANCELLED] = "cancelled",
	[TG_ATTEMPT_GATEWAY_ERROR] = "gateway_error",
};

const char *const tg_token_labels[TG_TOKEN_TYPES] = {
	[TG_TOKENS_INPUT] = "input",
	[TG_TOKENS_OUTPUT] = "output",
	[TG_TOKENS_CACHED_INPUT] = "cached_input",
	[TG_TOKENS_REASONING] = "reasoning",
	[TG_TOKENS_CACHE_WRITE_INPUT] = "cache_write_input",
};

const char *const tg_cache_labels[TG_CACHE_RESULTS] = {"hit", "miss", "bypass", "error"};

const char *const tg_abandon_labels[TG_ABANDON_PHASES] = {
	[TG_ABANDON_BEFORE_FIRST_TOKEN] = "before_first_token",
	[TG_ABANDON_MID_STREAM] = "mid_stream",
};

/* --- the label space of a config ----------------------------------------------- */

/* The backends a route can send to, in config order of its list. */
static size_t
route_backend_count(const struct tg_route *r)
{
	return r->n_backends;
}

static const struct tg_backend *
route_backend_at(const struct tg_route *r, size_t i)
{
	return r->backends[i];
}

static int
is_glob(const char *pattern)
{
	return strpbrk(pattern, "*?[") != NULL;
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The models route r renames requests to: its members' "model" values,
 * stored from out[0] when out is not NULL. Returns how many there are. */
static size_t
member_models(const struct tg_route *r, const char **out)
{
	size_t n = 0;

	for (size_t t = 0; t < r->n_tiers; t++) {
		for (size_t i = 0; i < r->tiers[t].n_members; i++) {
			const char *m = r->tiers[t].members[i].model;

			if (m != NULL && out != NULL)
				out[n] = m;
			n += m != NULL;
		}
	}
	return n;
}

/* The configured model names: exact match.model values, the models that
 * failover group members send (metrics are labelled by the model sent
 * upstream) and the models of the pricing table, sorted, without
 * duplicates, then NULL for "other". */
static int
collect_models(struct tg_metrics_table *t)
{
	const struct tg_config *cfg = t->config;
	size_t n_prices = cfg->pricing ? cfg->pricing->n_models : 0;
	size_t n = 0, n_members = 0;

	for (size_t i = 0; i < cfg->n_routes; i++)
		n_members += member_models(&cfg->routes[i], NULL);
	t->models = calloc(cfg->n_routes + n_members + n_prices + 1, sizeof(*t->models));
	if (t->models == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const char *m = cfg->routes[i].match_model;

		if (m != NULL && !is_glob(m))
			t->models[n++] = m;
		n += member_models(&cfg->routes[i], &t->models[n]);
	}
	for (size_t i = 0; i < n_prices; i++)
		t->models[n++] = cfg->pricing->models[i].model;

	qsort(t->models, n, sizeof(*t->models), compare_names);
	t->n_models = 0;
	for (size_t i = 0; i < n; i++) {
		if (t->n_models == 0 || strcmp(t->models[t->n_models - 1], t->models[i]) != 0)
			t->models[t->n_models++] = t->models[i];
	}
	t->models[t->n_models++] = NULL;
	return 0;
}

static const struct tg_model_price *
find_price(const struct tg_pricing_config *pricing, const char *model)
{
	if (pricing == NULL || model == NULL)
		return NULL;
	for (size_t i = 0; i < pricing->n_models; i++) {
		if (strcmp(pricing->models[i].model, model) == 0)
			return &pricing->models[i];
	}
	return NULL;
}

/* Whether a member of route r renames requests to model. */
static int
route_renames_to(const struct tg_route *r, const char *model)
{
	for (size_t t = 0; t < r->n_tiers; t++) {
		for (size_t i = 0; i < r->tiers[t].n_members; i++) {
			const char *m = r->tiers[t].members[i].model;

			if (m != NULL && strcmp(m, model) == 0)
				return 1;
		}
	}
	return 0;
}

/* Whether route r can send model upstream: a model its match.model takes,
 * or one a member renames requests to. A NULL r is the "none" route, which
 * takes every model. */
static int
route_takes_model(const struct tg_route *r, const char *model)
{
	if (r == NULL || r->match_model == NULL)
		return 1;
	if (route_renames_to(r, model))
		return 1;
	if (!is_glob(r->match_model))
		return strcmp(r->match_model, model) == 0;
	return fnmatch(r->match_model, model, 0) == 0;
}

static int
layout_backends(struct tg_route_layout *L, const struct tg_config *cfg,
                const struct tg_route *r)
{
	size_t none = cfg->n_backends;
	size_t n = r ? route_backend_count(r) : 0;

	L->backend_slot = malloc((cfg->n_backends + 1) * sizeof(*L->backend_slot));
	L->slot_backend = malloc((n + 1) * sizeof(*L->slot_backend));
	if (L->backend_slot == NULL || L->slot_backend == NULL)
		return -1;

	/* A backend listed twice (in two tiers) gets one slot. */
	L->n_backend_slots = 0;
	for (size_t i = 0; i <= cfg->n_backends; i++)
		L->backend_slot[i] = UINT32_MAX;
	for (size_t i = 0; i < n; i++) {
		size_t b = (size_t)(route_backend_at(r, i) - cfg->backends);

		assert(b < cfg->n_backends);
		if (L->backend_slot[b] != UINT32_MAX)
			continue;
		L->backend_slot[b] = (uint32_t)L->n_backend_slots;
		L->slot_backend[L->n_backend_slots++] = (uint32_t)b;
	}

	/* Backends outside the route, and none at all, share the last slot. */
	for (size_t i = 0; i <= cfg->n_backends; i++) {
		if (L->backend_slot[i] == UINT32_MAX)
			L->backend_slot[i] = (uint32_t)L->n_backend_slots;
	}
	L->slot_backend[L->n_backend_slots++] = (uint32_t)none;
	return 0;
}

static int
layout_models(struct tg_route_layout *L, const struct tg_metrics_table *t,
              const struct tg_route *r)
{
	size_t other = t->n_models - 1;

	L->model_slot = malloc(t->n_models * sizeof(*L->model_slot));
	L->slot_model = malloc(t->n_models * sizeof(*L->slot_model));
	if (L->model_slot == NULL || L->slot_model == NULL)
		return -1;

	L->n_model_slots = 0;
	for (size_t m = 0; m < other; m++) {
		if (!route_takes_model(r, t->models[m])) {
			L->model_slot[m] = UINT32_MAX;
			continue;
		}
		L->model_slot[m] = (uint32_t)L->n_model_slots;
		L->slot_model[L->n_model_slots++] = (uint32_t)m;
	}
	for (size_t m = 0; m < other; m++) {
		if (L->model_slot[m] == UINT32_MAX)
			L->model_slot[m] = (uint32_t)L->n_model_slots;
	}
	L->model_slot[other] = (uint32_t)L->n_model_slots;
	L->slot_model[L->n_model_slots++] = (uint32_t)other;
	return 0;
}

static int
build_layout(struct tg_metrics_table *t)
{
	const struct tg_config *cfg = t->config;

	t->n_routes = cfg->n_routes + 1;
	t->layout = calloc(t->n_routes, sizeof(*t->layout));
	if (t->layout == NULL)
		return -1;

	for (size_t i = 0; i < t->n_routes; i++) {
		const struct tg_route *r = i < cfg->n_routes ? &cfg->routes[i] : NULL;
		struct tg_route_layout *L = &t->layout[i];

		if (layout_backends(L, cfg, r) != 0 || layout_models(L, t, r) != 0)
			return -1;
		L->cell_base = t->n_cells;
		L->route_model_base = t->n_route_models;
		t->n_cells += L->n_backend_slots * L->n_model_slots;
		t->n_route_models += L->n_model_slots;
	}
	return 0;
}

struct tg_metrics_table *
tg_metrics_table_new(struct tg_config *cfg)
{
	struct tg_metrics_table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->config = tg_config_ref(cfg);
	if (collect_models(t) != 0 || build_layout(t) != 0)
		goto fail;

	t->prices = calloc(t->n_models, sizeof(*t->prices));
	t->cells = calloc(t->n_cells, sizeof(*t->cells));
	t->route_models = calloc(t->n_route_models, sizeof(*t->route_models));
	t->routes = calloc(t->n_routes, sizeof(*t->routes));
	t->backends = calloc(cfg->n_backends + 1, sizeof(*t->backends));
	if (t->prices == NULL || t->cells == NULL || t->route_models == NULL ||
	    t->routes == NULL || t->backends == NULL)
		goto fail;
	for (size_t m = 0; m + 1 < t->n_models; m++)
		t->prices[m] = find_price(cfg->pricing, t->models[m]);

	if (cfg->gateway_keys != NULL) {
		t->n_keys = cfg->gateway_keys->n + 1;
		t->keys = calloc(t->n_keys, sizeof(*t->keys));
		if (t->keys == NULL)
			goto fail;
	}
	return t;

fail:
	tg_metrics_table_free(t);
	return NULL;
}

void
tg_metrics_table_free(struct tg_metrics_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; t->layout != NULL && i < t->n_routes; i++) {
		free(t->layout[i].backend_slot);
		free(t->layout[i].slot_backend);
		free(t->layout[i].model_slot);
		free(t->layout[i].slot_model);
	}
	free(t->layout);
	free(t->models);
	free(t->prices);
	free(t->cells);
	free(t->route_models);
	free(t->routes);
	free(t->backends);
	free(t->keys);
	tg_config_unref(t->config);
	free(t);
}

size_t
tg_metrics_model_index(const struct tg_metrics_table *t, const char *model)
{
	size_t lo = 0, hi = t->n_models - 1;   /* the last entry is "other" */

	if (model == NULL)
		return t->n_models - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(model, t->models[mid]);

		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return t->n_models - 1;
}

size_t
tg_metrics_route_index(const struct tg_metrics_table *t, const struct tg_route *route)
{
	if (route == NULL)
		return t->n_routes - 1;
	assert(route >= t->config->routes);
	assert(route < t->config->routes + t->config->n_routes);
	return (size_t)(route - t->config->routes);
}

size_t
tg_metrics_backend_index(const struct tg_metrics_table *t, const struct tg_backend *b)
{
	if (b == NULL)
		return t->config->n_backends;
	assert(b >= t->config->backends);
	assert(b < t->config->backends + t->config->n_backends);
	return (size_t)(b - t->config->backends);
}

size_t
tg_metrics_cell_index(const struct tg_metrics_table *t, size_t route, size_t backend,
                      size_t model)
{
	const struct tg_route_layout *L = &t->layout[route];

	assert(route < t->n_routes);
	assert(backend <= t->config->n_backends);
	assert(model < t->n_models);
	return L->cell_base + L->backend_slot[backend] * L->n_model_slots + L->model_slot[model];
}

const char *
tg_metrics_model_name(const struct tg_metrics_table *t, size_t model)
{
	return model + 1 < t->n_models ? t->models[model] : "other";
}

/* --- shards and the registry ---------------------------------------------------- */

static struct tg_series_set registry_archive[TG_F_COUNT];
static struct tg_resolver_counters registry_resolver[TG_RESOLVER_NAMES_MAX + 1];

struct tg_metrics_registry tg_metrics_registry = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.archive = registry_archive,
	.resolver = registry_resolver,
};

struct tg_metrics_shard *
tg_metrics_shard_new(int worker_id)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_metrics_shard *shard = calloc(1, sizeof(*shard));

	if (shard == NULL)
		return NULL;
	shard->worker_id = worker_id;

	pthread_mutex_lock(&reg->lock);
	shard->next = reg->shards;
	reg->shards = shard;
	pthread_mutex_unlock(&reg->lock);
	return shard;
}

/* Free tables that unlink_all_tables() or unlink_idle_tables() returned,
 * without the registry lock. The last reference to a config runs plugin
 * destroy callbacks and frees models, and scrapes and the other workers
 * should not wait for that. */
static void
free_tables(struct tg_metrics_table *list)
{
	while (list != NULL) {
		struct tg_metrics_table *next = list->next;

		tg_metrics_table_free(list);
		list = next;
	}
}

/* Fold every table of shard into the archive and unlink it (registry lock
 * held). Returns them, chained by next, for free_tables(). */
static struct tg_metrics_table *
unlink_all_tables(struct tg_metrics_shard *shard)
{
	struct tg_metrics_table *retired = shard->tables;

	for (struct tg_metrics_table *t = retired; t != NULL; t = t->next)
		tg_metrics_archive_table(t);
	shard->tables = NULL;
	shard->current = NULL;
	return retired;
}

void
tg_metrics_shard_free(struct tg_metrics_shard *shard)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_metrics_table *retired;
	struct tg_config *live = NULL;
	struct tg_metrics_shard **p;

	if (shard == NULL)
		return;
	pthread_mutex_lock(&reg->lock);
	for (p = &reg->shards; *p != NULL; p = &(*p)->next) {
		if (*p == shard) {
			*p = shard->next;
			break;
		}
	}
	retired = unlink_all_tables(shard);

	/* The last worker is gone: the process is stopping, and nothing is
	 * left to scrape. */
	if (reg->shards == NULL) {
		for (size_t f = 0; f < TG_F_COUNT; f++)
			tg_series_set_free(&reg->archive[f]);
		tg_sessions_free(reg->sessions);
		reg->sessions = NULL;
		live = reg->live_config;
		reg->live_config = NULL;
	}
	pthread_mutex_unlock(&reg->lock);
	free_tables(retired);
	tg_config_unref(live);
	free(shard);
}

/* Archive and unlink the tables of shard that are neither current nor keep
 * and have no users (registry lock held, owning worker only, because it
 * alone changes both). Returns them, chained by next, for free_tables(). */
static struct tg_metrics_table *
unlink_idle_tables(struct tg_metrics_shard *shard, const struct tg_metrics_table *keep)
{
	struct tg_metrics_table **p = &shard->tables, *retired = NULL;

	while (*p != NULL) {
		struct tg_metrics_table *t = *p;

		if (t == shard->current || t == keep ||
		    atomic_load_explicit(&t->users, memory_order_relaxed) > 0) {
			p = &t->next;
			continue;
		}
		*p = t->next;
		tg_metrics_archive_table(t);
		t->next = retired;
		retired = t;
	}
	return retired;
}

void
tg_metrics_retire_idle(struct tg_metrics_shard *shard)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_metrics_table *retired;

	pthread_mutex_lock(&reg->lock);
	retired = unlink_idle_tables(shard, NULL);
	pthread_mutex_unlock(&reg->lock);
	free_tables(retired);
}

struct tg_metrics_table *
tg_metrics_bind(struct tg_metrics_shard *shard, struct tg_config *cfg, int make_current)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_metrics_table *t, *retired;

	pthread_mutex_lock(&reg->lock);
	for (t = shard->tables; t != NULL; t = t->next) {
		if (t->config == cfg)
			break;
	}
	if (t == NULL) {
		t = tg_metrics_table_new(cfg);
		if (t != NULL) {
			t->next = shard->tables;
			shard->tables = t;
		}
	}
	/* A request that started under an older snapshot must not make the
	 * worker's newest table lose its place. */
	if (t != NULL && make_current)
		shard->current = t;

	shard->sessions = reg->sessions;       /* made by tg_metrics_config_loaded() */

	/* The previous current table may have no request left. t has none
	 * yet either, when a request of an older snapshot is about to use it. */
	retired = unlink_idle_tables(shard, t);
	pthread_mutex_unlock(&reg->lock);
	free_tables(retired);
	return t;
}

void
tg_metrics_config_swapped(struct tg_metrics_shard *shard)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_metrics_table *retired;

	if (shard == NULL)
		return;
	pthread_mutex_lock(&reg->lock);
	shard->current = NULL;
	retired = unlink_idle_tables(shard, NULL);
	pthread_mutex_unlock(&reg->lock);
	free_tables(retired);
}

/* Make the session table for sc when there is none (registry lock held).
 * Returns 1 when it tried, whether or not there was memory for it. */
static int
make_sessions(struct tg_metrics_registry *reg, const struct tg_sessions_config *sc)
{
	if (reg->sessions != NULL)
		return 0;
	reg->sessions = tg_sessions_new(sc->max_sessions);
	reg->sessions_max = reg->sessions != NULL ? sc->max_sessions : 0;
	return 1;
}

void
tg_metrics_config_loaded(struct tg_config *cfg)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	const struct tg_sessions_config *sc = cfg->sessions;
	int sessions_on = sc != NULL && sc->enabled;
	struct tg_config *replaced;
	int created = 0;
	size_t running;

	pthread_mutex_lock(&reg->lock);
	replaced = reg->live_config;
	reg->live_config = tg_config_ref(cfg);
	if (sessions_on)
		created = make_sessions(reg, sc);
	running = reg->sessions_max;
	pthread_mutex_unlock(&reg->lock);
	tg_config_unref(replaced);      /* maybe the last reference: not under the lock */

	if (!sessions_on)
		return;
	if (created && running == 0)
		tg_error("cannot make the session table for %zu sessions: out of memory; "
		         "tollgate_session_turns stays empty until a reload makes it",
		         sc->max_sessions);
	else if (!created && running != sc->max_sessions)
		tg_warn("reload: sessions.max_sessions changed from %zu to %zu; it takes "
		        "effect after a restart", running, sc->max_sessions);
}

/* --- backend host names ------------------------------------------------------------ */

struct tg_resolver_counters *
tg_metrics_resolver_counters(const char *name)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	struct tg_resolver_counters *c = &reg->resolver[TG_RESOLVER_NAMES_MAX];

	pthread_mutex_lock(&reg->lock);
	for (size_t i = 0; i < reg->n_resolver; i++) {
		if (strcmp(reg->resolver[i].name, name) == 0) {
			c = &reg->resolver[i];
			goto done;
		}
	}
	if (reg->n_resolver < TG_RESOLVER_NAMES_MAX && strlen(name) < sizeof(c->name)) {
		c = &reg->resolver[reg->n_resolver++];
		memcpy(c->name, name, strlen(name) + 1);
	}

done:
	pthread_mutex_unlock(&reg->lock);
	return c;
}

void
tg_metrics_resolver_count(struct tg_resolver_counters *c, enum tg_resolver_event event)
{
	if (c != NULL)
		atomic_fetch_add_explicit(&c->events[event], 1, memory_order_relaxed);
}
