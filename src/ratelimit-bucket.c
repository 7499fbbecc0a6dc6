/*
 * Token bucket arithmetic (ratelimit-bucket.h).
 */
#include <assert.h>

#include "ratelimit-bucket.h"

static int64_t
capacity(const struct tg_bucket *b)
{
	return (int64_t)b->limit * TG_BUCKET_SCALE;
}

static int64_t
debt_floor(const struct tg_bucket *b)
{
	return -TG_BUCKET_DEBT_MINUTES * capacity(b);
}

void
tg_bucket_init(struct tg_bucket *b, uint64_t limit, uint64_t now_us)
{
	assert(limit <= TG_BUCKET_LIMIT_MAX);
	b->limit = limit;
	b->level = capacity(b);
	b->updated_us = now_us;
}

void
tg_bucket_set_limit(struct tg_bucket *b, uint64_t limit, uint64_t now_us)
{
	int64_t spent, low;

	assert(limit <= TG_BUCKET_LIMIT_MAX);
	if (b->limit == 0 || limit == 0) {
		tg_bucket_init(b, limit, now_us);
		return;
	}

	tg_bucket_refill(b, now_us);
	spent = capacity(b) - b->level;
	low = b->level < 0 ? b->level : 0;
	b->limit = limit;
	b->level = capacity(b) - spent;
	if (b->level < low)
		b->level = low;
	if (b->level < debt_floor(b))
		b->level = debt_floor(b);
}

void
tg_bucket_refill(struct tg_bucket *b, uint64_t now_us)
{
	uint64_t elapsed, missing;

	if (b->limit == 0 || now_us <= b->updated_us)
		return;
	elapsed = now_us - b->updated_us;
	b->updated_us = now_us;

	/* Compare in time rather than in units: elapsed * limit may not fit
	 * 64 bits after a long idle spell, but the units missing always do. */
	missing = (uint64_t)(capacity(b) - b->level);
	if (elapsed >= (missing + b->limit - 1) / b->limit)
		b->level = capacity(b);
	else
		b->level += (int64_t)(elapsed * b->limit);
}

int
tg_bucket_admits(const struct tg_bucket *b)
{
	return b->level >= TG_BUCKET_SCALE;
}

void
tg_bucket_take(struct tg_bucket *b, uint64_t n)
{
	uint64_t room = (uint64_t)(b->level - debt_floor(b)) / TG_BUCKET_SCALE;

	if (n > room) {
		b->level = debt_floor(b);
		return;
	}
	b->level -= (int64_t)n * TG_BUCKET_SCALE;
}

uint64_t
tg_bucket_remaining(const struct tg_bucket *b)
{
	return b->level > 0 ? (uint64_t)(b->level / TG_BUCKET_SCALE) : 0;
}

/* Microseconds until b's level reaches target, rounded up. */
static uint64_t
wait_for(const struct tg_bucket *b, int64_t target)
{
	if (b->limit == 0 || b->level >= target)
		return 0;
	return ((uint64_t)(target - b->level) + b->limit - 1) / b->limit;
}

uint64_t
tg_bucket_wait_us(const struct tg_bucket *b)
{
	return wait_for(b, TG_BUCKET_SCALE);
}

uint64_t
tg_bucket_full_us(const struct tg_bucket *b)
{
	return wait_for(b, capacity(b));
}
