/*
 * Types of the per-key rate limits: gateway_keys.NAME.limits in the
 * config, and what one request saw of them.
 */
#ifndef TOLLGATE_RATELIMIT_T_H
#define TOLLGATE_RATELIMIT_T_H

#include <stddef.h>
#include <stdint.h>

/* gateway_keys.NAME.limits; 0 leaves that kind unlimited. */
struct tg_key_limits {
	size_t requests_per_minute;
	size_t tokens_per_minute;
};

/* One limit of the caller's key as the request found it, for the
 * x-ratelimit-* headers. */
struct tg_ratelimit_view {
	uint64_t limit;                 /* per minute; 0: the key has none */
	uint64_t remaining;             /* whole units left after admission */
	uint64_t reset_ms;              /* until the bucket is full again */
};

/* The rate limiting of one request. */
struct tg_ratelimit_request {
	int checked;                    /* its key has limits: send the headers */
	int admitted;                   /* counted, so its tokens are charged */
	uint64_t wait_us;               /* rejected: until its limit admits one */
	struct tg_ratelimit_view requests;
	struct tg_ratelimit_view tokens;
};

#endif
