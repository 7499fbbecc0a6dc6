/*
 * From tables to series: the metric families, the series sets a scrape
 * merges into, and the walk that turns a table's counters into series named
 * by label values. Equal series (from several workers, or from the tables
 * of successive configs) are summed by tg_series_set_merge().
 *
 * Retired tables, those of replaced configs that no request uses any more,
 * are folded into the registry's archive here, so later scrapes still count
 * what they recorded.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "auth-t.h"
#include "config.h"
#include "metrics-table.h"
#include "metrics.h"
#include "request.h"

/* The names are a public interface: dashboards and alerts use them. */
const struct tg_family_def tg_families[TG_F_COUNT] = {
	[TG_F_REQUESTS] = {"tollgate_requests_total", TG_COUNTER, 0, 0,
		"Requests by route, backend, model and the status code sent to the client "
		"(none when the client got no response)."},
	[TG_F_KEY_REQUESTS] = {"tollgate_key_requests_total", TG_COUNTER, 0, 0,
		"Requests by the caller's gateway key (none for a caller without one) and the "
		"status code sent to the client."},
	[TG_F_KEY_RATE_LIMITED] = {"tollgate_key_rate_limited_total", TG_COUNTER, 0, 0,
		"Requests rejected with 429 because the caller's gateway key used its "
		"requests_per_minute (limit=\"requests\") or tokens_per_minute "
		"(limit=\"tokens\"); only the limits a key sets have a series."},
	[TG_F_IN_FLIGHT] = {"tollgate_requests_in_flight", TG_GAUGE, 0, 0,
		"Requests being read, routed or answered."},
	[TG_F_STREAMS_OPEN] = {"tollgate_streams_open", TG_GAUGE, 0, 0,
		"Streamed responses being relayed to clients."},
	[TG_F_GATEWAY_ERRORS] = {"tollgate_gateway_errors_total", TG_COUNTER, 0, 0,
		"Requests the gateway answered or ended with an error of its own, by route "
		"and reason; an error status a backend sent is not counted."},
	[TG_F_REQUEST_DURATION] = {"tollgate_request_duration_seconds", TG_HISTOGRAM,
		TG_BUCKETS_DURATION, 0,
		"Time from the first byte of a request to the end of its response."},
	[TG_F_UPSTREAM_DURATION] = {"tollgate_upstream_duration_seconds", TG_HISTOGRAM,
		TG_BUCKETS_UPSTREAM, 0,
		"Time of one upstream attempt, from its start to its response or failure."},
	[TG_F_OVERHEAD] = {"tollgate_gateway_overhead_seconds", TG_HISTOGRAM,
		TG_BUCKETS_OVERHEAD, 0,
		"Time tollgate spent on a request itself, outside upstream attempts."},
	[TG_F_TTFT] = {"tollgate_time_to_first_token_seconds", TG_HISTOGRAM, TG_BUCKETS_TTFT, 0,
		"Time from the first byte of a streaming request to the first event "
		"with content sent to the client."},
	[TG_F_TBT] = {"tollgate_time_between_tokens_seconds", TG_HISTOGRAM, TG_BUCKETS_TBT, 0,
		"Time between consecutive events with content sent to a streaming client."},
	[TG_F_TPOT] = {"tollgate_time_per_output_token_seconds", TG_HISTOGRAM, TG_BUCKETS_TPOT, 0,
		"Per stream: time from the first to the last event with content, "
		"divided by the output tokens minus one."},
	[TG_F_TOKENS] = {"tollgate_tokens_total", TG_COUNTER, 0, 0,
		"Tokens from the provider's usage: input (cached included), output "
		"(reasoning included), cached_input, cache_write_input and reasoning."},
	[TG_F_ESTIMATED_TOKENS] = {"tollgate_estimated_tokens_total", TG_COUNTER, 0, 0,
		"Output tokens estimated as one per content event, for streams whose "
		"provider reported no usage."},
	[TG_F_COST] = {"tollgate_cost_total", TG_COUNTER, 0, 0,
		"Cost of the provider-reported tokens at the prices of the pricing table."},
	[TG_F_ATTEMPTS] = {"tollgate_upstream_attempts_total", TG_COUNTER, 0, 0,
		"Upstream attempts by backend and outcome."},
	[TG_F_FAILOVERS] = {"tollgate_failovers_total", TG_COUNTER, 0, 0,
		"Attempts that moved a request to another try after a failure."},
	[TG_F_RETRY_BUDGET_EXHAUSTED] = {"tollgate_retry_budget_exhausted_total", TG_COUNTER,
		0, 0,
		"Failed attempts not retried because the route's retry budget was exhausted."},
	[TG_F_BACKEND_UP] = {"tollgate_backend_up", TG_GAUGE, 0, 1,
		"1 when the backend takes new requests, 0 while it is cooled down for "
		"every model or ejected."},
	[TG_F_COOLDOWNS] = {"tollgate_backend_cooldowns_total", TG_COUNTER, 0, 0,
		"Times a backend, or one model at it, was taken out of rotation: "
		"rate-limit cooldowns and ejections."},
	[TG_F_CACHE] = {"tollgate_cache_lookups_total", TG_COUNTER, 0, 0,
		"Response cache lookups by route and result."},
	[TG_F_FILTER] = {"tollgate_filter_decisions_total", TG_COUNTER, 0, 0,
		"Content filter decisions by filter, rule, action and side."},
	[TG_F_FILTER_DROPPED] = {"tollgate_filter_series_dropped_total", TG_COUNTER, 0, 0,
		"Filter decisions left uncounted because a worker's filter series were full."},
	[TG_F_ABANDONED] = {"tollgate_requests_abandoned_total", TG_COUNTER, 0, 0,
		"Requests whose client left before the first token or in the middle of the stream."},
	[TG_F_SESSION_TURNS] = {"tollgate_session_turns", TG_HISTOGRAM, TG_BUCKETS_TURNS, 0,
		"Requests per session, observed once the session has been idle for "
		"sessions.idle_timeout."},
	[TG_F_SESSIONS_ACTIVE] = {"tollgate_sessions_active", TG_GAUGE, 0, 0,
		"Sessions in the session table, as of the last scrape."},
	[TG_F_SESSIONS_EVICTED] = {"tollgate_sessions_evicted_total", TG_COUNTER, 0, 0,
		"Sessions ended before their idle timeout because the session table was full."},
	[TG_F_RESOLVER_QUERIES] = {"tollgate_resolver_queries_total", TG_COUNTER, 0, 0,
		"DNS queries for a backend host name, the A and AAAA records together, "
		"by every worker."},
	[TG_F_RESOLVER_FAILURES] = {"tollgate_resolver_failures_total", TG_COUNTER, 0, 0,
		"DNS queries for a backend host name that found no address: no such name, "
		"no record, a nameserver error or no answer."},
	[TG_F_RESOLVER_STALE] = {"tollgate_resolver_stale_answers_total", TG_COUNTER, 0, 0,
		"Connections to a backend host name that used an answer past its TTL, "
		"while a refresh was under way or failing."},
};

size_t
tg_family_values(enum tg_family f)
{
	if (tg_families[f].type != TG_HISTOGRAM)
		return 1;
	return tg_bucket_specs[tg_families[f].buckets].n + 2;     /* +Inf and sum */
}

/* --- series sets ---------------------------------------------------------------- */

int
tg_series_add(struct tg_series_set *set, enum tg_family f, const char *labels,
              const double *values)
{
	size_t n = tg_family_values(f);
	struct tg_series *s;

	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 16;
		struct tg_series *items = realloc(set->items, cap * sizeof(*items));

		if (items == NULL)
			return -1;
		set->items = items;
		set->cap = cap;
	}
	s = &set->items[set->n];
	s->exemplars = NULL;
	s->labels = strdup(labels);
	s->values = malloc(n * sizeof(*s->values));
	if (s->labels == NULL || s->values == NULL) {
		free(s->labels);
		free(s->values);
		return -1;
	}
	memcpy(s->values, values, n * sizeof(*values));
	set->n++;
	return 0;
}

int
tg_series_add_exemplars(struct tg_series_set *set, enum tg_family f,
                        const struct tg_exemplar_copy *exemplars)
{
	size_t n = tg_family_values(f) - 1;     /* the buckets, +Inf included */
	struct tg_series *s = &set->items[set->n - 1];

	s->exemplars = malloc(n * sizeof(*s->exemplars));
	if (s->exemplars == NULL)
		return -1;
	memcpy(s->exemplars, exemplars, n * sizeof(*exemplars));
	return 0;
}

/* Keep the newer exemplar of each bucket of two equal series. */
static void
merge_exemplars(struct tg_series *keep, struct tg_series *s, size_t n)
{
	if (s->exemplars == NULL)
		return;
	if (keep->exemplars == NULL) {
		keep->exemplars = s->exemplars;
		s->exemplars = NULL;
		return;
	}
	for (size_t k = 0; k < n; k++) {
		if (s->exemplars[k].time > keep->exemplars[k].time)
			keep->exemplars[k] = s->exemplars[k];
	}
}

static int
compare_series(const void *a, const void *b)
{
	return strcmp(((const struct tg_series *)a)->labels, ((const struct tg_series *)b)->labels);
}

void
tg_series_set_merge(struct tg_series_set *set, enum tg_family f)
{
	size_t n = tg_family_values(f);
	size_t out = 0;

	if (set->n == 0)
		return;
	qsort(set->items, set->n, sizeof(*set->items), compare_series);
	for (size_t i = 1; i < set->n; i++) {
		struct tg_series *keep = &set->items[out], *s = &set->items[i];

		if (strcmp(keep->labels, s->labels) != 0) {
			set->items[++out] = *s;
			continue;
		}
		for (size_t k = 0; k < n; k++) {
			if (tg_families[f].merge_max)
				keep->values[k] = fmax(keep->values[k], s->values[k]);
			else
				keep->values[k] += s->values[k];
		}
		merge_exemplars(keep, s, n - 1);
		free(s->labels);
		free(s->values);
		free(s->exemplars);
	}
	set->n = out + 1;
}

void
tg_series_set_free(struct tg_series_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->items[i].labels);
		free(set->items[i].values);
		free(set->items[i].exemplars);
	}
	free(set->items);
	memset(set, 0, sizeof(*set));
}

/* --- label strings ----------------------------------------------------------------- */

/* A label string under construction; failed is set once memory ran out. */
struct labels {
	char *s;
	size_t len, cap;
	int failed;
};

static void
labels_put(struct labels *l, const char *text, size_t n)
{
	if (l->failed)
		return;
	if (l->len + n + 1 > l->cap) {
		size_t cap = (l->len + n + 1) * 2;
		char *s = realloc(l->s, cap);

		if (s == NULL) {
			l->failed = 1;
			return;
		}
		l->s = s;
		l->cap = cap;
	}
	memcpy(l->s + l->len, text, n);
	l->len += n;
	l->s[l->len] = '\0';
}

/* Append name="value", escaping backslash, double quote and newline as
 * both formats require. */
static void
labels_add(struct labels *l, const char *name, const char *value)
{
	if (l->len > 0)
		labels_put(l, ",", 1);
	labels_put(l, name, strlen(name));
	labels_put(l, "=\"", 2);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\\')
			labels_put(l, "\\\\", 2);
		else if (*p == '"')
			labels_put(l, "\\\"", 2);
		else if (*p == '\n')
			labels_put(l, "\\n", 2);
		else
			labels_put(l, p, 1);
	}
	labels_put(l, "\"", 1);
}

/* Cut back to an earlier length, to add other labels after a common part. */
static void
labels_cut(struct labels *l, size_t len)
{
	if (!l->failed && l->s != NULL) {
		l->len = len;
		l->s[len] = '\0';
	}
}

static const char *
labels_text(const struct labels *l)
{
	return l->s != NULL ? l->s : "";
}

/* --- tables into series -------------------------------------------------------------- */

/* Histogram h as series values; returns its count. */
static uint64_t
hist_values(struct tg_hist *h, enum tg_buckets kind, double *values)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[kind];
	uint64_t count = 0;

	for (size_t i = 0; i <= spec->n; i++) {
		uint64_t v = tg_counter_get(&h->bucket[i]);

		values[i] = (double)v;
		count += v;
	}
	values[spec->n + 1] = (double)tg_counter_get(&h->sum) / spec->ticks_per_unit;
	return count;
}

struct collector {
	struct tg_series_set *sets;
	struct labels l;
	int failed;
};

static void
add_counter(struct collector *c, enum tg_family f, tg_counter *counter)
{
	double v = (double)tg_counter_get(counter);

	if (v > 0 && tg_series_add(&c->sets[f], f, labels_text(&c->l), &v) != 0)
		c->failed = 1;
}

static void
add_labelled_counter(struct collector *c, enum tg_family f, const char *name,
                     const char *value, tg_counter *counter)
{
	size_t len = c->l.len;

	if (tg_counter_get(counter) == 0)
		return;
	labels_add(&c->l, name, value);
	add_counter(c, f, counter);
	labels_cut(&c->l, len);
}

/* A labelled counter, written even at 0. */
static void
add_zero_or_counter(struct collector *c, enum tg_family f, const char *name,
                    const char *value, tg_counter *counter)
{
	size_t len = c->l.len;
	double v = (double)tg_counter_get(counter);

	labels_add(&c->l, name, value);
	if (tg_series_add(&c->sets[f], f, labels_text(&c->l), &v) != 0)
		c->failed = 1;
	labels_cut(&c->l, len);
}

/* A histogram series, with the exemplars of its buckets when e is given. */
static void
add_hist(struct collector *c, enum tg_family f, struct tg_hist *h, struct tg_exemplars *e)
{
	enum tg_buckets kind = tg_families[f].buckets;
	double values[TG_HIST_MAX_BOUNDS + 2];
	struct tg_exemplar_copy copies[TG_HIST_MAX_BOUNDS + 1];

	if (hist_values(h, kind, values) == 0)
		return;
	if (tg_series_add(&c->sets[f], f, labels_text(&c->l), values) != 0) {
		c->failed = 1;
		return;
	}
	if (e == NULL)
		return;
	tg_exemplars_copy(e, kind, copies);
	for (size_t i = 0; i <= tg_bucket_specs[kind].n; i++) {
		if (copies[i].trace_hi != 0 || copies[i].trace_lo != 0) {
			if (tg_series_add_exemplars(&c->sets[f], f, copies) != 0)
				c->failed = 1;
			return;
		}
	}
}

static const char *
backend_name(const struct tg_metrics_table *t, size_t b)
{
	return b < t->config->n_backends ? t->config->backends[b].name : "none";
}

static const char *
route_name(const struct tg_metrics_table *t, size_t r)
{
	return r < t->config->n_routes ? t->config->routes[r].name : "none";
}

static void
collect_cell(struct collector *c, struct tg_cell *cell)
{
	double cost = tg_counter_get_double(&cell->cost);
	int any_tokens = 0;

	for (size_t k = 0; k < TG_CODE_SLOTS; k++)
		add_labelled_counter(c, TG_F_REQUESTS, "code", tg_code_label(k), &cell->requests[k]);
	/* Every token type once one has a count, so that ratios such as
	 * cached over input read 0 rather than nothing. */
	for (size_t k = 0; k < TG_TOKEN_TYPES; k++)
		any_tokens |= tg_counter_get(&cell->tokens[k]) > 0;
	for (size_t k = 0; any_tokens && k < TG_TOKEN_TYPES; k++)
		add_zero_or_counter(c, TG_F_TOKENS, "type", tg_token_labels[k], &cell->tokens[k]);
	add_labelled_counter(c, TG_F_ESTIMATED_TOKENS, "type", "output", &cell->estimated_output);
	if (cost > 0 && tg_series_add(&c->sets[TG_F_COST], TG_F_COST, labels_text(&c->l), &cost) != 0)
		c->failed = 1;
	add_hist(c, TG_F_TTFT, &cell->ttft, &cell->ttft_exemplars);
	add_hist(c, TG_F_TBT, &cell->tbt, NULL);
	add_hist(c, TG_F_TPOT, &cell->tpot, NULL);
}

static void
collect_route(struct collector *c, struct tg_metrics_table *t, size_t r)
{
	const struct tg_route_layout *L = &t->layout[r];
	struct tg_route_values *rv = &t->routes[r];

	labels_cut(&c->l, 0);
	labels_add(&c->l, "route", route_name(t, r));
	add_counter(c, TG_F_FAILOVERS, &rv->failovers);
	add_counter(c, TG_F_RETRY_BUDGET_EXHAUSTED, &rv->retry_budget_exhausted);
	for (size_t k = 0; k < TG_CACHE_RESULTS; k++)
		add_labelled_counter(c, TG_F_CACHE, "result", tg_cache_labels[k], &rv->cache[k]);
	for (size_t k = 0; k < TG_ABANDON_PHASES; k++)
		add_labelled_counter(c, TG_F_ABANDONED, "phase", tg_abandon_labels[k], &rv->abandoned[k]);
	for (size_t k = TG_E_BAD_REQUEST; k < TG_E_COUNT; k++)
		add_labelled_counter(c, TG_F_GATEWAY_ERRORS, "reason",
		                     tg_error_info((enum tg_error)k)->reason, &rv->gateway_errors[k]);
	add_hist(c, TG_F_OVERHEAD, &rv->overhead, NULL);

	for (size_t m = 0; m < L->n_model_slots; m++) {
		struct tg_route_model *rm = &t->route_models[L->route_model_base + m];
		size_t len = c->l.len;

		labels_add(&c->l, "model", tg_metrics_model_name(t, L->slot_model[m]));
		add_hist(c, TG_F_REQUEST_DURATION, &rm->duration, &rm->duration_exemplars);
		labels_cut(&c->l, len);
	}

	for (size_t b = 0; b < L->n_backend_slots; b++) {
		for (size_t m = 0; m < L->n_model_slots; m++) {
			labels_cut(&c->l, 0);
			labels_add(&c->l, "route", route_name(t, r));
			labels_add(&c->l, "backend", backend_name(t, L->slot_backend[b]));
			labels_add(&c->l, "model", tg_metrics_model_name(t, L->slot_model[m]));
			collect_cell(c, &t->cells[L->cell_base + b * L->n_model_slots + m]);
		}
	}
}

/* 1 while backend b takes new requests: not cooled down for every model
 * and not ejected (an ejection that ran out waits for its trial request).
 * A cooldown of one model leaves it up, as the other models are served. */
static int
backend_is_up(const struct tg_backend *b, uint64_t now_ns)
{
	const struct tg_backend_state *s = b->state;

	if (s == NULL)
		return 1;
	return now_ns >= atomic_load(&s->cooldown_until) && atomic_load(&s->ejected_until) == 0;
}

static void
collect_backends(struct collector *c, struct tg_metrics_table *t)
{
	for (size_t b = 0; b <= t->config->n_backends; b++) {
		struct tg_backend_values *bv = &t->backends[b];

		labels_cut(&c->l, 0);
		labels_add(&c->l, "backend", backend_name(t, b));
		add_counter(c, TG_F_COOLDOWNS, &bv->cooldowns);
		add_hist(c, TG_F_UPSTREAM_DURATION, &bv->upstream, NULL);
		for (size_t k = 0; k < TG_ATTEMPT_RESULTS; k++)
			add_labelled_counter(c, TG_F_ATTEMPTS, "outcome", tg_attempt_labels[k],
			                     &bv->attempts[k]);
	}
}

int
tg_metrics_collect_backend_up(struct tg_series_set *sets, const struct tg_config *cfg)
{
	struct collector c = {.sets = sets};
	uint64_t now_ns = tg_now_ns();

	for (size_t b = 0; b < cfg->n_backends; b++) {
		double up = backend_is_up(&cfg->backends[b], now_ns);

		labels_cut(&c.l, 0);
		labels_add(&c.l, "backend", cfg->backends[b].name);
		if (!c.l.failed && tg_series_add(&sets[TG_F_BACKEND_UP], TG_F_BACKEND_UP,
		                                 labels_text(&c.l), &up) != 0)
			c.failed = 1;
	}
	free(c.l.s);
	return c.failed || c.l.failed ? -1 : 0;
}

static void
collect_filters(struct collector *c, struct tg_metrics_table *t)
{
	for (size_t i = 0; i < TG_FILTER_SERIES_MAX; i++) {
		struct tg_filter_series *s = &t->filters[i];

		if (!atomic_load_explicit(&s->used, memory_order_acquire))
			continue;
		labels_cut(&c->l, 0);
		labels_add(&c->l, "filter", s->filter);
		labels_add(&c->l, "rule", s->rule);
		labels_add(&c->l, "action", s->action);
		labels_add(&c->l, "side", s->side);
		add_counter(c, TG_F_FILTER, &s->count);
	}
	labels_cut(&c->l, 0);
	add_counter(c, TG_F_FILTER_DROPPED, &t->filters_dropped);
}

/* The rejections of key k under each limit it sets, written even at 0, so
 * that a rate over them starts from the first rejection. */
static void
collect_key_limits(struct collector *c, struct tg_metrics_table *t, size_t k)
{
	const struct tg_key_limits *limits = &t->config->gateway_keys->keys[k].limits;

	if (limits->requests_per_minute != 0)
		add_zero_or_counter(c, TG_F_KEY_RATE_LIMITED, "limit", "requests",
		                     &t->keys[k].rate_limited[TG_RATE_LIMIT_REQUESTS]);
	if (limits->tokens_per_minute != 0)
		add_zero_or_counter(c, TG_F_KEY_RATE_LIMITED, "limit", "tokens",
		                     &t->keys[k].rate_limited[TG_RATE_LIMIT_TOKENS]);
}

/* The requests of each gateway key, and of callers without one. */
static void
collect_keys(struct collector *c, struct tg_metrics_table *t)
{
	for (size_t k = 0; k < t->n_keys; k++) {
		labels_cut(&c->l, 0);
		labels_add(&c->l, "key", k + 1 < t->n_keys ? t->config->gateway_keys->keys[k].name
		                                          : "none");
		for (size_t code = 0; code < TG_CODE_SLOTS; code++)
			add_labelled_counter(c, TG_F_KEY_REQUESTS, "code", tg_code_label(code),
			                     &t->keys[k].requests[code]);
		if (k + 1 < t->n_keys)
			collect_key_limits(c, t, k);
	}
}

int
tg_metrics_collect_table(struct tg_series_set *sets, struct tg_metrics_table *t)
{
	struct collector c = {.sets = sets};

	for (size_t r = 0; r < t->n_routes; r++)
		collect_route(&c, t, r);
	collect_backends(&c, t);
	collect_filters(&c, t);
	collect_keys(&c, t);
	free(c.l.s);
	return c.failed || c.l.failed ? -1 : 0;
}

/* The resolver's families, in the order of enum tg_resolver_event. */
static const enum tg_family resolver_families[TG_RESOLVER_EVENTS] = {
	[TG_RESOLVER_QUERY] = TG_F_RESOLVER_QUERIES,
	[TG_RESOLVER_FAILURE] = TG_F_RESOLVER_FAILURES,
	[TG_RESOLVER_STALE] = TG_F_RESOLVER_STALE,
};

/* Add the series of one name's counters; "other" only once it counted. */
static int
collect_resolver_name(struct tg_series_set *sets, struct tg_resolver_counters *counters,
                      const char *name, int skip_zero)
{
	struct labels l = {0};
	double values[TG_RESOLVER_EVENTS];
	double total = 0;
	int rc = 0;

	for (int ev = 0; ev < TG_RESOLVER_EVENTS; ev++) {
		values[ev] = (double)atomic_load_explicit(&counters->events[ev],
		                                          memory_order_relaxed);
		total += values[ev];
	}
	if (skip_zero && total == 0)
		return 0;

	labels_add(&l, "name", name);
	for (int ev = 0; ev < TG_RESOLVER_EVENTS && !l.failed && rc == 0; ev++)
		rc = tg_series_add(&sets[resolver_families[ev]], resolver_families[ev],
		                   labels_text(&l), &values[ev]);
	free(l.s);
	return l.failed || rc != 0 ? -1 : 0;
}

int
tg_metrics_collect_resolver(struct tg_series_set *sets, const struct tg_metrics_registry *reg)
{
	int rc = 0;

	if (reg->resolver == NULL)
		return 0;
	for (size_t i = 0; i < reg->n_resolver && rc == 0; i++)
		rc = collect_resolver_name(sets, &reg->resolver[i], reg->resolver[i].name, 0);
	if (rc == 0)
		rc = collect_resolver_name(sets, &reg->resolver[TG_RESOLVER_NAMES_MAX], "other", 1);
	return rc;
}

/* Fold a table no request uses any more into the archive (lock held). */
void
tg_metrics_archive_table(struct tg_metrics_table *t)
{
	struct tg_series_set *archive = tg_metrics_registry.archive;

	/* NOTE: out of memory here loses the table's counts; there is no
	 * other place to keep them. */
	tg_metrics_collect_table(archive, t);
	for (size_t f = 0; f < TG_F_COUNT; f++)
		tg_series_set_merge(&archive[f], (enum tg_family)f);
}
