/*
 * Balancers: weighted round robin, least requests, and peak-EWMA with the
 * power of two choices.
 */
#include <stdlib.h>

#include "balancer.h"
#include "health.h"

#define MAX_CANDIDATES 64

struct candidates {
	size_t index[MAX_CANDIDATES];   /* member positions in the tier */
	int trial[MAX_CANDIDATES];
	size_t count;
	int retry;                      /* the request tried a member of the tier */
};

uint64_t
tg_rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Members of tier that this request has not tried and that can take an
 * attempt now. In panic mode, ejection is ignored (cooldowns still hold):
 * sending to a backend that may be unhealthy beats failing for sure. The
 * model's cooldown is read before tg_health_available(), which may take
 * the backend's trial slot. */
static void
collect(const struct tg_tier *tier, const char *model, int panic, tg_tried_fn tried,
        void *arg, uint64_t now_ns, struct candidates *out)
{
	out->count = 0;
	out->retry = 0;
	for (size_t i = 0; i < tier->n_members && out->count < MAX_CANDIDATES; i++) {
		const struct tg_backend *b = tier->members[i].backend;
		int trial = 0;

		if (tried(arg, b)) {
			out->retry = 1;
			continue;
		}
		if (tg_health_model_cooldown_end(b, tg_member_model(&tier->members[i], model),
		                                 now_ns) != 0)
			continue;
		if (panic ? tg_health_cooling_down(b, now_ns)
		          : !tg_health_available(b, now_ns, &trial))
			continue;
		out->index[out->count] = i;
		out->trial[out->count] = trial;
		out->count++;
	}
}

/* Give back the half-open trial slots of candidates not chosen. */
static void
release_trials(const struct tg_tier *tier, const struct candidates *c, size_t chosen)
{
	for (size_t i = 0; i < c->count; i++) {
		if (i != chosen && c->trial[i])
			atomic_store(&tier->members[c->index[i]].backend->state->half_open, 0);
	}
}

static int
is_candidate(const struct candidates *c, size_t member, size_t *slot)
{
	for (size_t i = 0; i < c->count; i++) {
		if (c->index[i] == member) {
			*slot = i;
			return 1;
		}
	}
	return 0;
}

/* Weighted round robin: a shared position walks the weight line, so over
 * total_weight first attempts each member gets exactly its weight. Members
 * that cannot take the attempt are stepped over. A retry reads the
 * position without moving it: moved, it would take the turn of the next
 * request, which then skips a member (with one failing member of two,
 * every request would start on the failing one). */
static size_t
pick_round_robin(struct tg_tier *tier, const struct candidates *c)
{
	uint64_t next = c->retry ? atomic_load(&tier->next) : atomic_fetch_add(&tier->next, 1);
	uint64_t position = next % tier->total_weight;
	size_t member = 0;
	size_t slot;

	while (position >= tier->members[member].weight) {
		position -= tier->members[member].weight;
		member++;
	}
	for (size_t step = 0; step < tier->n_members; step++) {
		if (is_candidate(c, (member + step) % tier->n_members, &slot))
			return slot;
	}
	return 0;
}

static size_t
pick_least_requests(const struct tg_tier *tier, const struct candidates *c,
                    uint64_t *rng)
{
	size_t best = 0;
	double best_load = -1.0;

	/* Start at a random candidate so ties do not all go to the first. */
	size_t offset = (size_t)(tg_rng_next(rng) % c->count);

	for (size_t k = 0; k < c->count; k++) {
		size_t i = (offset + k) % c->count;
		const struct tg_tier_member *m = &tier->members[c->index[i]];
		double load = (double)(atomic_load(&m->backend->state->in_flight) + 1) /
		              (double)m->weight;

		if (best_load < 0 || load < best_load) {
			best = i;
			best_load = load;
		}
	}
	return best;
}

/* Peak-EWMA with two random choices: cheaper than scanning, and it keeps a
 * fast member from being swamped by every worker at once. */
static size_t
pick_ewma(const struct tg_tier *tier, const struct candidates *c, uint64_t *rng,
          uint64_t now_ns)
{
	size_t a, b;
	double cost_a, cost_b;

	if (c->count == 1)
		return 0;
	a = (size_t)(tg_rng_next(rng) % c->count);
	b = (size_t)(tg_rng_next(rng) % (c->count - 1));
	if (b >= a)
		b++;
	cost_a = tg_health_cost(tier->members[c->index[a]].backend, now_ns) /
	         tier->members[c->index[a]].weight;
	cost_b = tg_health_cost(tier->members[c->index[b]].backend, now_ns) /
	         tier->members[c->index[b]].weight;
	return cost_a <= cost_b ? a : b;
}

const struct tg_tier_member *
tg_balancer_pick(const struct tg_route *route, const char *model, tg_tried_fn tried,
                 void *arg, uint64_t *rng, uint64_t now_ns, int *trial)
{
	struct candidates c;

	for (int panic = 0; panic <= 1; panic++) {
		for (size_t t = 0; t < route->n_tiers; t++) {
			struct tg_tier *tier = &route->tiers[t];
			size_t chosen;

			collect(tier, model, panic, tried, arg, now_ns, &c);
			if (c.count == 0)
				continue;

			switch (tier->balance) {
			case TG_BALANCE_LEAST_REQUESTS:
				chosen = pick_least_requests(tier, &c, rng);
				break;
			case TG_BALANCE_EWMA:
				chosen = pick_ewma(tier, &c, rng, now_ns);
				break;
			case TG_BALANCE_ROUND_ROBIN:
			default:
				chosen = pick_round_robin(tier, &c);
				break;
			}
			release_trials(tier, &c, chosen);
			*trial = c.trial[chosen];
			return &tier->members[c.index[chosen]];
		}
	}
	*trial = 0;
	return NULL;
}

int
tg_balancer_any_left(const struct tg_route *route, const char *model, tg_tried_fn tried,
                     void *arg, uint64_t now_ns)
{
	for (size_t t = 0; t < route->n_tiers; t++) {
		const struct tg_tier *tier = &route->tiers[t];

		for (size_t i = 0; i < tier->n_members; i++) {
			const struct tg_tier_member *m = &tier->members[i];

			if (tried(arg, m->backend) || tg_health_cooling_down(m->backend, now_ns))
				continue;
			if (tg_health_model_cooldown_end(m->backend, tg_member_model(m, model),
			                                 now_ns) == 0)
				return 1;
		}
	}
	return 0;
}
