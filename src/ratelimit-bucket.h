/*
 * Token bucket arithmetic of the per-key rate limits, apart from clocks
 * and locks so that unit tests drive it with a fake clock.
 *
 * A bucket of limit L per minute contains at most L units and gains L
 * units per minute, continuously: a full bucket allows a burst of L, and a steady
 * L per minute after that. Levels are integers scaled by
 * TG_BUCKET_SCALE, so that the refill of L scaled units per microsecond
 * is exact and nothing is lost to rounding between two refills.
 *
 * A level may go below zero: tokens are charged after the response that
 * used them, when the bucket may no longer hold that many. The debt is
 * repaid by the refill before the key is admitted again.
 */
#ifndef TOLLGATE_RATELIMIT_BUCKET_H
#define TOLLGATE_RATELIMIT_BUCKET_H

#include <stdint.h>

/* Scaled units per request or token: the microseconds of a minute. */
#define TG_BUCKET_SCALE 60000000LL

/* The largest limit per minute; its scaled capacity, times the debt
 * bound below, stays within int64_t. */
#define TG_BUCKET_LIMIT_MAX 1000000000ULL

/* The deepest debt, in minutes of refill: a response that reports far
 * more tokens than the limit shuts its key out for about an hour, and no
 * longer. */
#define TG_BUCKET_DEBT_MINUTES 60

struct tg_bucket {
	uint64_t limit;                 /* per minute; 0: no limit */
	int64_t level;                  /* scaled units */
	uint64_t updated_us;            /* when level was last refilled */
};

/* Set b to limit (0: none), full, as of now_us. */
void tg_bucket_init(struct tg_bucket *b, uint64_t limit, uint64_t now_us);

/* Change the limit of b, keeping what it has spent: a bucket 2 short of
 * its old limit is 2 short of the new one. A new limit below what was
 * spent leaves the bucket empty, or in the debt it had, down to the debt
 * floor. A limit set where there was none starts full. */
void tg_bucket_set_limit(struct tg_bucket *b, uint64_t limit, uint64_t now_us);

/* Add the refill since the last call, up to the limit. A clock reading
 * earlier than the last one adds nothing. */
void tg_bucket_refill(struct tg_bucket *b, uint64_t now_us);

/* Whether b, refilled, contains at least one whole unit. */
int tg_bucket_admits(const struct tg_bucket *b);

/* Take n units (requests or tokens) from b, down to the debt floor. */
void tg_bucket_take(struct tg_bucket *b, uint64_t n);

/* The whole units in b, 0 when in debt. */
uint64_t tg_bucket_remaining(const struct tg_bucket *b);

/* Microseconds until b contains one whole unit, 0 when it does. */
uint64_t tg_bucket_wait_us(const struct tg_bucket *b);

/* Microseconds until b is full again, 0 when it is. */
uint64_t tg_bucket_full_us(const struct tg_bucket *b);

#endif
