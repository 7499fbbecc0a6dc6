/*
 * Backend health shared by every worker: cooldowns after rate limiting,
 * passive ejection after failures with exponential back-off and a
 * half-open trial request, in-flight counts and peak-EWMA latency for the
 * balancers. All updates are atomic; nothing here takes a lock.
 */
#ifndef TOLLGATE_HEALTH_H
#define TOLLGATE_HEALTH_H

#include <stdint.h>
#include <time.h>

#include "config-t.h"
#include "failover-t.h"
#include "headers.h"

/* Outcome of an attempt, as health tracking counts it. */
enum tg_outcome {
	TG_OUTCOME_SUCCESS,             /* a response, including client errors */
	TG_OUTCOME_FAILURE,             /* connect, timeout, reset, 5xx, stream error */
	TG_OUTCOME_RATE_LIMITED,        /* 429: a cooldown, not a sign of ill health */
	TG_OUTCOME_CANCELLED,           /* the client left; no evidence about the backend */
};

/* Health change caused by the end of an attempt, for the caller to log. */
enum tg_health_change {
	TG_HEALTH_UNCHANGED,
	TG_HEALTH_EJECTED,
	TG_HEALTH_RECOVERED,
};

/* States by backend name; owned by the main thread, which attaches them to
 * every snapshot it loads, so a backend keeps its health across reloads. */
struct tg_health_registry {
	struct tg_backend_state *states;
};

/* Set up a zeroed state, and release what it holds (not s itself).
 * init returns 0, or -1 when the lock cannot be made. */
int tg_health_state_init(struct tg_backend_state *s);
void tg_health_state_destroy(struct tg_backend_state *s);

/* Point every backend of cfg at its state, creating missing ones, and end
 * the cooldowns of a kept state that run past the backend's max_cooldown
 * from now. Main thread only, before cfg is published. Returns 0, or -1
 * out of memory. */
int tg_health_attach(struct tg_health_registry *reg, struct tg_config *cfg);
void tg_health_registry_free(struct tg_health_registry *reg);

/*
 * Whether b may take an attempt now. An ejected backend whose ejection ran
 * out admits one trial request at a time; *trial is set for it, and the
 * caller must end that attempt with tg_health_attempt_end().
 */
int tg_health_available(const struct tg_backend *b, uint64_t now_ns, int *trial);

/* 1 while b cools down for every model after a 429, 503 or 529 that said when
 * to come back. */
int tg_health_cooling_down(const struct tg_backend *b, uint64_t now_ns);

/* The end of the cooldown of model at b, or 0 when model is NULL or does
 * not cool down there. */
uint64_t tg_health_model_cooldown_end(const struct tg_backend *b, const char *model,
                                      uint64_t now_ns);

/* The earliest moment a member of route comes back from its cooldowns for
 * a request for model (NULL: none named), 0 when no member cools down. */
uint64_t tg_health_cooldown_end(const struct tg_route *route, const char *model,
                                uint64_t now_ns);

void tg_health_attempt_start(const struct tg_backend *b);

/* Return the nanoseconds from now_ns to the end of b's ejection, or 0 when
 * b is not ejected or the ejection has ended. Called with the now_ns of an
 * ejection, it returns that ejection's length, for the log line. */
uint64_t tg_health_ejection_left(const struct tg_backend *b, uint64_t now_ns);

/* Record how an attempt ended; latency_ns feeds the EWMA on success. */
enum tg_health_change tg_health_attempt_end(const struct tg_backend *b,
                                            enum tg_outcome outcome, int trial,
                                            uint64_t latency_ns, uint64_t now_ns);

/* Return how long b cools down for a response that requests requested_ns:
 * at most its max_cooldown (60 s for a backend without a health policy),
 * and 0 when max_cooldown is 0. */
uint64_t tg_health_cooldown_length(const struct tg_backend *b, uint64_t requested_ns);

/* Return the nanoseconds from now_ns to the end of b's cooldown for model,
 * or of the cooldown of the whole backend when model is NULL; 0 when that
 * cooldown has ended or was never set. */
uint64_t tg_health_cooldown_left(const struct tg_backend *b, const char *model,
                                 uint64_t now_ns);

/* Keep b out of rotation until until_ns; a later deadline already set wins. */
void tg_health_cooldown(const struct tg_backend *b, uint64_t until_ns);

/*
 * Keep b out of rotation for requests for model until until_ns; a later
 * deadline already set for model wins. Model names are compared by their
 * first TG_MODEL_KEY_LEN - 1 bytes. When TG_MODEL_COOLDOWNS other models
 * cool down at b, the cooldown that ends first is dropped to make room,
 * and 1 is returned; else 0.
 */
int tg_health_model_cooldown(const struct tg_backend *b, const char *model,
                             uint64_t until_ns, uint64_t now_ns);

/* Record an active probe result: success ends an ejection at once, a
 * failure counts toward one (or renews one that ran out). */
enum tg_health_change tg_health_probe_result(const struct tg_backend *b, int ok,
                                             uint64_t now_ns);

/* Load figure for the balancers: peak-EWMA latency times (in flight + 1). */
double tg_health_cost(const struct tg_backend *b, uint64_t now_ns);

/* The maximum wait tg_health_retry_after() returns: one hour. */
#define TG_HEALTH_RETRY_AFTER_MAX_NS (3600ull * 1000000000ull)

/*
 * Return how long a 429, 503 or 529 requests the client to wait, from
 * retry-after-ms (OpenAI's, milliseconds) or else Retry-After (seconds or
 * an HTTP-date), or OpenAI's x-ratelimit-reset-requests / -tokens
 * ("1s", "6m0s", "20ms") of a limit whose x-ratelimit-remaining is 0. The
 * maximum of them applies, capped at TG_HEALTH_RETRY_AFTER_MAX_NS. Returns
 * nanoseconds, or 0 when no header gives a valid time.
 */
uint64_t tg_health_retry_after(const struct tg_headers *headers, time_t now_wall);

/* Parse a Go-style duration such as "1h2m3.5s" or "20ms" into ns.
 * Returns 0, or -1 when s is not of that form. */
int tg_parse_go_duration(const char *s, uint64_t *ns);

#endif
