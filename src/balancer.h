/*
 * Choosing the backend of the next attempt from a route's tiers.
 */
#ifndef TOLLGATE_BALANCER_H
#define TOLLGATE_BALANCER_H

#include <stdint.h>

#include "config-t.h"
#include "failover-t.h"

/* Returns 1 when the member was already tried by this request. */
typedef int (*tg_tried_fn)(void *arg, const struct tg_backend *backend);

/*
 * Pick a member for the next attempt, never one this request tried. Tiers
 * are taken in order: a lower tier is used only when no member of the
 * tiers above is available and untried. When every untried member is
 * ejected, the walk is repeated ignoring ejections (panic mode), so a route
 * whose backends all failed recently still tries them; members cooling
 * down after a 429, 503 or 529 stay out, as do members whose upstream model
 * cools down (model is the request's, NULL when it named none). Returns
 * NULL when none is left.
 * *trial is set when the pick is the half-open trial of an ejected backend.
 * rng is the caller's generator state (xorshift64, never 0).
 */
const struct tg_tier_member *tg_balancer_pick(const struct tg_route *route,
                                              const char *model,
                                              tg_tried_fn tried, void *arg,
                                              uint64_t *rng, uint64_t now_ns,
                                              int *trial);

/*
 * 1 when tg_balancer_pick() would find a member now, without picking one:
 * some member this request has not tried is neither cooling down nor
 * cooling down for its upstream model. Ejected members count, as the
 * pick's panic mode takes them. It changes nothing (no trial slot, no
 * round-robin turn), so it may be asked before any failure.
 */
int tg_balancer_any_left(const struct tg_route *route, const char *model,
                         tg_tried_fn tried, void *arg, uint64_t now_ns);

/* The model name m sends upstream for a request for model. */
static inline const char *
tg_member_model(const struct tg_tier_member *m, const char *model)
{
	return m->model != NULL ? m->model : model;
}

/* The next value of an xorshift64 generator. */
uint64_t tg_rng_next(uint64_t *state);

#endif
