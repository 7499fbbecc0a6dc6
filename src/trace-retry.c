/*
 * Retry policy of OTLP exports.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static int
parse_delta_seconds(const char *value, uint64_t *seconds)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)value[0]))
		return -1;
	errno = 0;
	v = strtoull(value, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != '\0')
		return -1;
	*seconds = errno == ERANGE || v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
	return 0;
}

/* The IMF-fixdate form of RFC 9110; the obsolete RFC 850 and asctime
 * forms are not accepted, and the delay then falls back to the back-off. */
static int
parse_http_date(const char *value, time_t *t)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL)
		return -1;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != '\0')
		return -1;
	*t = timegm(&tm);
	return *t == (time_t)-1 ? -1 : 0;
}

int
tg_retry_after_parse(const char *value, time_t now_unix, uint64_t *delay_ms)
{
	uint64_t seconds;
	time_t at;

	while (*value == ' ' || *value == '\t')
		value++;
	if (parse_delta_seconds(value, &seconds) == 0) {
		*delay_ms = seconds * 1000;
		return 0;
	}
	if (parse_http_date(value, &at) != 0)
		return -1;
	if (at <= now_unix)
		seconds = 0;
	else if (at - now_unix > RETRY_AFTER_MAX_S)
		seconds = RETRY_AFTER_MAX_S;
	else
		seconds = (uint64_t)(at - now_unix);
	*delay_ms = seconds * 1000;
	return 0;
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
	uint64_t delay;

	if (result->timed_out || !tg_export_status_retryable(result->status))
		return 0;
	if (attempt >= policy->max_attempts)
		return 0;

	if (result->retry_after == NULL ||
	    tg_retry_after_parse(result->retry_after, now_unix, &delay) != 0)
		delay = backoff_ms(policy, attempt, random);

	/* A retry that could not finish before the deadline is not started:
	 * it would only be cut off. */
	if (delay >= remaining_ms)
		return 0;
	*delay_ms = delay;
	return 1;
}
