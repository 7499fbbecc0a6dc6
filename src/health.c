/*
 * Backend health.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer.h"
#include "clock.h"
#include "health.h"
#include "retry-after.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define EWMA_DECAY_NS (10 * NS_PER_S)   /* the EWMA forgets over ~10 s */
#define DEFAULT_COST_NS (1 * NS_PER_MS) /* cost of a backend never measured */
#define RETRY_AFTER_MAX_NS TG_HEALTH_RETRY_AFTER_MAX_NS
#define RETRY_AFTER_MAX_S (RETRY_AFTER_MAX_NS / NS_PER_S)

/* --- registry (main thread) ----------------------------------------------- */

int
tg_health_state_init(struct tg_backend_state *s)
{
	atomic_store(&s->probe_ok, 1);
	return pthread_mutex_init(&s->model_lock, NULL) == 0 ? 0 : -1;
}

void
tg_health_state_destroy(struct tg_backend_state *s)
{
	pthread_mutex_destroy(&s->model_lock);
}

static struct tg_backend_state *
state_find_or_create(struct tg_health_registry *reg, const char *name)
{
	struct tg_backend_state *s;

	for (s = reg->states; s != NULL; s = s->next) {
		if (strcmp(s->name, name) == 0)
			return s;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->name = strdup(name);
	if (s->name == NULL || tg_health_state_init(s) != 0) {
		free(s->name);
		free(s);
		return NULL;
	}
	s->next = reg->states;
	reg->states = s;
	return s;
}

/* Lower *until to limit when it is later. Workers may raise it meanwhile. */
static void
lower_to(atomic_uint_fast64_t *until, uint64_t limit)
{
	uint64_t current = atomic_load(until);

	while (current > limit && !atomic_compare_exchange_weak(until, &current, limit))
		;
}

/*
 * End the cooldowns of b that run past now plus its max_cooldown. A state
 * kept across a reload contains cooldowns set under the old bound. An
 * operator lowers max_cooldown to bring back a backend that an upstream's
 * Retry-After took out for an hour, so the new bound applies to them too.
 */
static void
limit_cooldowns(const struct tg_backend *b, uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	uint64_t limit = now_ns + tg_health_cooldown_length(b, UINT64_MAX - now_ns);

	lower_to(&s->cooldown_until, limit);
	pthread_mutex_lock(&s->model_lock);
	for (size_t i = 0; i < TG_MODEL_COOLDOWNS; i++) {
		if (s->model_cooldowns[i].until > limit)
			s->model_cooldowns[i].until = limit;
	}
	pthread_mutex_unlock(&s->model_lock);
}

/* The maximum ejection that policy p sets, in nanoseconds. */
static uint64_t
max_ejection_ns(const struct tg_health_policy *p)
{
	return (p->max_ejection ? p->max_ejection : 300000) * NS_PER_MS;
}

/* End an ejection of b that runs past now plus its max_ejection, as
 * limit_cooldowns() does for cooldowns. A backend left without a health
 * policy is ejected no more, so its ejection ends. An ended ejection (0)
 * stays ended. */
static void
limit_ejection(const struct tg_backend *b, uint64_t now_ns)
{
	lower_to(&b->state->ejected_until, b->health ? now_ns + max_ejection_ns(b->health) : 0);
}

int
tg_health_attach(struct tg_health_registry *reg, struct tg_config *cfg)
{
	uint64_t now_ns = tg_now_ns();

	for (size_t i = 0; i < cfg->n_backends; i++) {
		cfg->backends[i].state = state_find_or_create(reg, cfg->backends[i].name);
		if (cfg->backends[i].state == NULL)
			return -1;
		limit_cooldowns(&cfg->backends[i], now_ns);
		limit_ejection(&cfg->backends[i], now_ns);
	}
	return 0;
}

void
tg_health_registry_free(struct tg_health_registry *reg)
{
	struct tg_backend_state *s = reg->states;

	while (s != NULL) {
		struct tg_backend_state *next = s->next;

		tg_health_state_destroy(s);
		free(s->name);
		free(s);
		s = next;
	}
	reg->states = NULL;
}

/* --- availability ------------------------------------------------------------ */

int
tg_health_available(const struct tg_backend *b, uint64_t now_ns, int *trial)
{
	struct tg_backend_state *s = b->state;
	uint64_t ejected_until;
	int expected = 0;

	*trial = 0;
	if (s == NULL)
		return 1;
	if (now_ns < atomic_load(&s->cooldown_until))
		return 0;

	ejected_until = atomic_load(&s->ejected_until);
	if (ejected_until == 0)
		return 1;
	if (now_ns < ejected_until)
		return 0;

	/* The ejection ran out: one trial request decides. */
	if (!atomic_compare_exchange_strong(&s->half_open, &expected, 1))
		return 0;
	*trial = 1;
	return 1;
}

uint64_t
tg_health_ejection_left(const struct tg_backend *b, uint64_t now_ns)
{
	uint64_t end = b->state != NULL ? atomic_load(&b->state->ejected_until) : 0;

	return end > now_ns ? end - now_ns : 0;
}

int
tg_health_cooling_down(const struct tg_backend *b, uint64_t now_ns)
{
	return b->state != NULL && now_ns < atomic_load(&b->state->cooldown_until);
}

/* The end of the cooldown that keeps member m from a request for model:
 * its backend's, or the later one of the model it sends upstream. */
static uint64_t
member_cooldown_end(const struct tg_tier_member *m, const char *model, uint64_t now_ns)
{
	const struct tg_backend_state *s = m->backend->state;
	uint64_t backend_until = s ? atomic_load(&s->cooldown_until) : 0;
	uint64_t model_until = tg_health_model_cooldown_end(m->backend,
	                                                    tg_member_model(m, model), now_ns);

	return model_until > backend_until ? model_until : backend_until;
}

uint64_t
tg_health_cooldown_end(const struct tg_route *route, const char *model, uint64_t now_ns)
{
	uint64_t earliest = 0;

	for (size_t t = 0; t < route->n_tiers; t++) {
		const struct tg_tier *tier = &route->tiers[t];

		for (size_t i = 0; i < tier->n_members; i++) {
			uint64_t until = member_cooldown_end(&tier->members[i], model, now_ns);

			if (until > now_ns && (earliest == 0 || until < earliest))
				earliest = until;
		}
	}
	return earliest;
}

void
tg_health_attempt_start(const struct tg_backend *b)
{
	if (b->state != NULL)
		atomic_fetch_add(&b->state->in_flight, 1);
}

/* Fold one latency sample into the peak-EWMA: a slower sample is taken at
 * once, a faster one blends in with a weight that decays with time. */
static void
ewma_update(struct tg_backend_state *s, uint64_t latency_ns, uint64_t now_ns)
{
	uint64_t old = atomic_load(&s->ewma_ns);
	uint64_t stamp = atomic_exchange(&s->ewma_stamp, now_ns);
	double elapsed = stamp && now_ns > stamp ? (double)(now_ns - stamp) : 0.0;
	double w = exp(-elapsed / (double)EWMA_DECAY_NS);
	uint64_t next;

	if (old == 0 || latency_ns > old)
		next = latency_ns;
	else
		next = (uint64_t)((double)old * w + (double)latency_ns * (1.0 - w));
	atomic_store(&s->ewma_ns, next);
}

/* Count the attempt in the error-ratio window: two half-windows, the
 * older dropped when time moves past it. Returns the ratio over both. */
static double
window_record(struct tg_backend_state *s, const struct tg_health_policy *p,
              int failed, uint64_t now_ns, unsigned *requests)
{
	uint64_t half = (p->window ? p->window : 10000) * NS_PER_MS / 2;
	uint64_t start = atomic_load(&s->window_start);
	unsigned total, failures;

	if (start == 0 || now_ns - start >= 2 * half) {
		atomic_store(&s->window_start, now_ns);
		atomic_store(&s->window_requests[0], 0);
		atomic_store(&s->window_failures[0], 0);
		atomic_store(&s->window_requests[1], 0);
		atomic_store(&s->window_failures[1], 0);
		start = now_ns;
	} else if (now_ns - start >= half) {
		atomic_store(&s->window_requests[0], atomic_load(&s->window_requests[1]));
		atomic_store(&s->window_failures[0], atomic_load(&s->window_failures[1]));
		atomic_store(&s->window_requests[1], 0);
		atomic_store(&s->window_failures[1], 0);
		atomic_store(&s->window_start, start + half);
	}

	atomic_fetch_add(&s->window_requests[1], 1);
	if (failed)
		atomic_fetch_add(&s->window_failures[1], 1);
	total = atomic_load(&s->window_requests[0]) + atomic_load(&s->window_requests[1]);
	failures = atomic_load(&s->window_failures[0]) + atomic_load(&s->window_failures[1]);
	*requests = total;
	return total ? (double)failures / (double)total : 0.0;
}

static void
eject(struct tg_backend_state *s, const struct tg_health_policy *p, uint64_t now_ns)
{
	unsigned n = atomic_fetch_add(&s->ejections, 1);
	uint64_t duration = (p->base_ejection ? p->base_ejection : 5000) * NS_PER_MS;
	uint64_t max = max_ejection_ns(p);

	while (n-- > 0 && duration < max)
		duration *= 2;
	if (duration > max)
		duration = max;
	atomic_store(&s->ejected_until, now_ns + duration);
	atomic_store(&s->consecutive_failures, 0);
	atomic_store(&s->half_open, 0);
}

static int
should_eject(struct tg_backend_state *s, const struct tg_health_policy *p,
             unsigned failures_in_row, double ratio, unsigned requests)
{
	(void)s;
	if (p == NULL)
		return 0;
	if (p->consecutive_failures > 0 && failures_in_row >= p->consecutive_failures)
		return 1;
	return p->error_ratio > 0 && requests >= (p->min_requests ? p->min_requests : 1) &&
	       ratio > p->error_ratio;
}

enum tg_health_change
tg_health_attempt_end(const struct tg_backend *b, enum tg_outcome outcome, int trial,
                      uint64_t latency_ns, uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	const struct tg_health_policy *p = b->health;
	unsigned requests = 0;
	double ratio;

	if (s == NULL)
		return TG_HEALTH_UNCHANGED;
	atomic_fetch_sub(&s->in_flight, 1);

	if (outcome == TG_OUTCOME_CANCELLED || outcome == TG_OUTCOME_RATE_LIMITED) {
		if (trial)
			atomic_store(&s->half_open, 0);   /* let another trial through */
		return TG_HEALTH_UNCHANGED;
	}

	ratio = window_record(s, p, outcome == TG_OUTCOME_FAILURE, now_ns, &requests);
	if (outcome == TG_OUTCOME_SUCCESS) {
		ewma_update(s, latency_ns, now_ns);
		atomic_store(&s->consecutive_failures, 0);
		if (trial) {
			atomic_store(&s->ejections, 0);
			atomic_store(&s->ejected_until, 0);
			atomic_store(&s->half_open, 0);
			return TG_HEALTH_RECOVERED;
		}
		return TG_HEALTH_UNCHANGED;
	}

	/* A failure: a failed trial ejects again, for longer. */
	if (trial || should_eject(s, p, atomic_fetch_add(&s->consecutive_failures, 1) + 1,
	                          ratio, requests)) {
		if (p == NULL)
			return TG_HEALTH_UNCHANGED;
		eject(s, p, now_ns);
		return TG_HEALTH_EJECTED;
	}
	return TG_HEALTH_UNCHANGED;
}

uint64_t
tg_health_cooldown_length(const struct tg_backend *b, uint64_t requested_ns)
{
	uint64_t max_ms = b->health ? b->health->max_cooldown : TG_DEFAULT_MAX_COOLDOWN_MS;
	uint64_t max_ns = max_ms * NS_PER_MS;

	return requested_ns < max_ns ? requested_ns : max_ns;
}

uint64_t
tg_health_cooldown_left(const struct tg_backend *b, const char *model, uint64_t now_ns)
{
	uint64_t end;

	if (model != NULL)
		end = tg_health_model_cooldown_end(b, model, now_ns);
	else
		end = b->state != NULL ? atomic_load(&b->state->cooldown_until) : 0;
	return end > now_ns ? end - now_ns : 0;
}

void
tg_health_cooldown(const struct tg_backend *b, uint64_t until_ns)
{
	struct tg_backend_state *s = b->state;
	uint64_t current;

	if (s == NULL)
		return;
	current = atomic_load(&s->cooldown_until);
	while (until_ns > current &&
	       !atomic_compare_exchange_weak(&s->cooldown_until, &current, until_ns))
		;
}

/* --- model cooldowns -------------------------------------------------------- */

/* Copy model into key, cut to TG_MODEL_KEY_LEN - 1 bytes. */
static void
model_key(char key[TG_MODEL_KEY_LEN], const char *model)
{
	size_t len = strnlen(model, TG_MODEL_KEY_LEN - 1);

	memcpy(key, model, len);
	key[len] = '\0';
}

uint64_t
tg_health_model_cooldown_end(const struct tg_backend *b, const char *model, uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	char key[TG_MODEL_KEY_LEN];
	uint64_t until = 0;

	/* Most of the time no model cools down, and no lock is taken. */
	if (s == NULL || model == NULL || now_ns >= atomic_load(&s->model_cooldowns_end))
		return 0;

	model_key(key, model);
	pthread_mutex_lock(&s->model_lock);
	for (size_t i = 0; i < TG_MODEL_COOLDOWNS; i++) {
		const struct tg_model_cooldown *c = &s->model_cooldowns[i];

		if (c->until > now_ns && strcmp(c->model, key) == 0) {
			until = c->until;
			break;
		}
	}
	pthread_mutex_unlock(&s->model_lock);
	return until;
}

/* The slot of s for key: its own while it cools down, else the one whose
 * cooldown ends first, which is a free one when any is. The lock is held. */
static struct tg_model_cooldown *
model_slot(struct tg_backend_state *s, const char *key, uint64_t now_ns)
{
	struct tg_model_cooldown *soonest = &s->model_cooldowns[0];

	for (size_t i = 0; i < TG_MODEL_COOLDOWNS; i++) {
		struct tg_model_cooldown *c = &s->model_cooldowns[i];

		if (c->until > now_ns && strcmp(c->model, key) == 0)
			return c;
		if (c->until < soonest->until)
			soonest = c;
	}
	return soonest;
}

int
tg_health_model_cooldown(const struct tg_backend *b, const char *model, uint64_t until_ns,
                         uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	struct tg_model_cooldown *c;
	char key[TG_MODEL_KEY_LEN];
	uint64_t end;
	int dropped = 0;

	if (s == NULL)
		return 0;

	model_key(key, model);
	pthread_mutex_lock(&s->model_lock);
	c = model_slot(s, key, now_ns);
	if (c->until > now_ns && strcmp(c->model, key) != 0)
		dropped = 1;
	if (strcmp(c->model, key) != 0 || c->until < until_ns) {
		memcpy(c->model, key, sizeof(key));
		c->until = until_ns;
	}

	/* Written under the lock, so it only grows. */
	end = atomic_load(&s->model_cooldowns_end);
	if (until_ns > end)
		atomic_store(&s->model_cooldowns_end, until_ns);
	pthread_mutex_unlock(&s->model_lock);
	return dropped;
}

enum tg_health_change
tg_health_probe_result(const struct tg_backend *b, int ok, uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	int was_ejected;

	if (s == NULL)
		return TG_HEALTH_UNCHANGED;
	atomic_store(&s->probe_ok, ok);
	was_ejected = atomic_load(&s->ejected_until) != 0;
	if (ok) {
		atomic_store(&s->consecutive_failures, 0);
		if (!was_ejected)
			return TG_HEALTH_UNCHANGED;
		atomic_store(&s->ejections, 0);
		atomic_store(&s->ejected_until, 0);
		atomic_store(&s->half_open, 0);
		return TG_HEALTH_RECOVERED;
	}

	/* A failed probe counts like a failed request; it also ejects again
	 * a backend whose ejection ran out. */
	if (b->health == NULL)
		return TG_HEALTH_UNCHANGED;
	if (was_ejected ||
	    should_eject(s, b->health, atomic_fetch_add(&s->consecutive_failures, 1) + 1, 0, 0)) {
		eject(s, b->health, now_ns);
		return was_ejected ? TG_HEALTH_UNCHANGED : TG_HEALTH_EJECTED;
	}
	return TG_HEALTH_UNCHANGED;
}

double
tg_health_cost(const struct tg_backend *b, uint64_t now_ns)
{
	struct tg_backend_state *s = b->state;
	uint64_t ewma;

	(void)now_ns;
	if (s == NULL)
		return 0.0;
	ewma = atomic_load(&s->ewma_ns);
	if (ewma == 0)
		ewma = DEFAULT_COST_NS;
	return (double)ewma * (double)(atomic_load(&s->in_flight) + 1);
}

/* --- Retry-After ------------------------------------------------------------ */

int
tg_parse_go_duration(const char *s, uint64_t *ns)
{
	static const struct { const char *unit; double scale; } units[] = {
		{"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
		{"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
	};
	double total = 0.0;

	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		char *end;
		double value = strtod(s, &end);
		size_t best = 0, best_len = 0;

		if (end == s || value < 0)
			return -1;
		s = end;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t len = strlen(units[i].unit);

			if (strncmp(s, units[i].unit, len) == 0 && len > best_len) {
				best = i;
				best_len = len;
			}
		}
		if (best_len == 0)
			return -1;
		total += value * units[best].scale;
		s += best_len;
	}
	if (total > (double)RETRY_AFTER_MAX_NS * 24)
		return -1;
	*ns = (uint64_t)total;
	return 0;
}

/* Return the wait a Retry-After value requests, at most RETRY_AFTER_MAX_NS,
 * or 0 when the value is invalid. */
static uint64_t
parse_retry_after(const char *value, time_t now_wall)
{
	uint64_t seconds;

	if (tg_retry_after_parse(value, now_wall, RETRY_AFTER_MAX_S, &seconds) != 0)
		return 0;
	return seconds * NS_PER_S;
}

/* OpenAI's reset header of a limit counts only when that limit is spent,
 * since both are sent on every response: a 429 for requests says nothing
 * about when the token budget refills. */
static uint64_t
ratelimit_reset(const struct tg_headers *headers, const char *kind)
{
	char name[64];
	const char *remaining, *reset;
	uint64_t ns;

	snprintf(name, sizeof(name), "x-ratelimit-remaining-%s", kind);
	remaining = tg_headers_get(headers, name);
	if (remaining != NULL && strcmp(remaining, "0") != 0)
		return 0;
	snprintf(name, sizeof(name), "x-ratelimit-reset-%s", kind);
	reset = tg_headers_get(headers, name);
	if (reset == NULL || tg_parse_go_duration(reset, &ns) != 0)
		return 0;
	return ns;
}

/* Return the wait of retry-after-ms when it is present and valid, else
 * of Retry-After. OpenAI sends both, and its SDKs wait for retry-after-ms,
 * which is finer than whole seconds. A cooldown shorter than their wait
 * would give their retry tollgate's own 503. */
static uint64_t
requested_wait(const struct tg_headers *headers, time_t now_wall)
{
	const char *ms = tg_headers_get(headers, "retry-after-ms");
	const char *value = tg_headers_get(headers, "Retry-After");
	uint64_t wait;

	if (ms != NULL && tg_retry_after_ms_parse(ms, RETRY_AFTER_MAX_NS, &wait) == 0)
		return wait;
	return value ? parse_retry_after(value, now_wall) : 0;
}

uint64_t
tg_health_retry_after(const struct tg_headers *headers, time_t now_wall)
{
	uint64_t wait = requested_wait(headers, now_wall);
	uint64_t requests = ratelimit_reset(headers, "requests");
	uint64_t tokens = ratelimit_reset(headers, "tokens");

	if (requests > wait)
		wait = requests;
	if (tokens > wait)
		wait = tokens;
	return wait > RETRY_AFTER_MAX_NS ? RETRY_AFTER_MAX_NS : wait;
}
