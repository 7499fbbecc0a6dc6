/*
 * Retry policy of OTLP exports.
 */
#include <time.h>

#include "retry-after.h"
#include "trace-retry.h"

/* Retry-After delays above a day are taken as a day: a far date must not
 * overflow, and the export deadline cuts the wait much earlier anyway. */
#define RETRY_AFTER_MAX_S 86400

int
tg_export_status_retryable(int status)
{
	return status == 0 || status == 429 || status == 502 || status == 503 ||
	       status == 504;
}

static uint64_t
backoff_ms(const struct tg_retry_policy_params *policy, unsigned attempt, double random)
{
	uint64_t delay = policy->initial_backoff_ms;

	for (unsigned i = 1; i < attempt && delay < policy->max_backoff_ms; i++)
		delay *= 2;
	if (delay > policy->max_backoff_ms)
		delay = policy->max_backoff_ms;
	return delay / 2 + (uint64_t)((double)(delay - delay / 2) * random);
}

int
tg_export_retry_decide(const struct tg_retry_policy_params *policy,
                       unsigned attempt, const struct tg_export_result *result,
                       uint64_t remaining_ms, time_t now_unix, double random,
                       uint64_t *delay_ms)
{
	uint64_t delay, seconds;

	if (result->timed_out || !tg_export_status_retryable(result->status))
		return 0;
	if (attempt >= policy->max_attempts)
		return 0;

	if (result->retry_after != NULL &&
	    tg_retry_after_parse(result->retry_after, now_unix, RETRY_AFTER_MAX_S,
	                         &seconds) == 0)
		delay = seconds * 1000;
	else
		delay = backoff_ms(policy, attempt, random);

	/* A retry that could not finish before the deadline is not started:
	 * it would only be cut off. */
	if (delay >= remaining_ms)
		return 0;
	*delay_ms = delay;
	return 1;
}
