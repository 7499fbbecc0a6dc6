/*
 * A seeded random sequence for the unit tests that compare an encoder
 * with a reference over many inputs. It is splitmix64, so every run on
 * every platform gets the same inputs and a failure can be replayed.
 */
#ifndef TOLLGATE_T_RANDOM_HELPERS_H
#define TOLLGATE_T_RANDOM_HELPERS_H

#include <stddef.h>
#include <stdint.h>

struct random_seq {
	uint64_t state;         /* the seed, then the generator's state */
};

static inline uint64_t
random_next(struct random_seq *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Return a number in [0, n); n > 0. */
static inline size_t
random_below(struct random_seq *r, size_t n)
{
	return (size_t)(random_next(r) % n);
}

#endif
