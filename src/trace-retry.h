/*
 * When an OTLP export is sent again. The OTLP/HTTP specification makes
 * 429, 502, 503 and 504 retryable, and connection failures too; every other
 * status is final, 200 included when it reports a partial success.
 *
 * The delay before attempt n + 1 is the Retry-After of the response when it
 * has one, else an exponential back-off, initial * 2^(n - 1) capped at max,
 * with "equal jitter": a random point in its upper half, so that gateways
 * that failed together do not retry together. No retry starts after the
 * export's deadline, and no more than max_attempts attempts are made. An
 * attempt that timed out has used the export's time, so it is not retried.
 */
#ifndef TOLLGATE_TRACE_RETRY_H
#define TOLLGATE_TRACE_RETRY_H

#include <stdint.h>
#include <time.h>

/* Outcome of one export attempt. */
struct tg_export_result {
	int status;                     /* HTTP status; 0 when no response came */
	int timed_out;                  /* no response within the deadline */
	const char *retry_after;        /* the header's value, or NULL */
};

struct tg_retry_policy_params {
	unsigned max_attempts;          /* first attempt included */
	uint64_t initial_backoff_ms;
	uint64_t max_backoff_ms;
};

/* 1 when status (0 for a connection failure) may be retried. */
int tg_export_status_retryable(int status);

/*
 * Decide whether to send again after attempt number attempt (1 for the
 * first) ended with result. remaining_ms is the time left before the
 * export's deadline, random a uniform value in [0, 1) for the jitter.
 * Returns 1 and sets *delay_ms to retry, 0 to give up.
 */
int tg_export_retry_decide(const struct tg_retry_policy_params *policy,
                           unsigned attempt, const struct tg_export_result *result,
                           uint64_t remaining_ms, time_t now_unix, double random,
                           uint64_t *delay_ms);

#endif
