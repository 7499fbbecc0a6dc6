/*
 * Clocks and time conversions shared by the gateway's modules.
 */
#ifndef TOLLGATE_CLOCK_H
#define TOLLGATE_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#define TG_NS_PER_MS 1000000ull
#define TG_NS_PER_S 1000000000ull

/* Nanoseconds of CLOCK_MONOTONIC: for durations and deadlines. */
static inline uint64_t
tg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * TG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Milliseconds of CLOCK_MONOTONIC. */
static inline uint64_t
tg_now_ms(void)
{
	return tg_now_ns() / TG_NS_PER_MS;
}

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME): for timestamps that
 * leave the process. */
static inline uint64_t
tg_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * TG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* A duration in milliseconds as the struct timeval libevent timers take. */
static inline struct timeval
tg_timeval_ms(uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	return tv;
}

#endif
