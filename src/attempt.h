/*
 * Upstream attempts of a request: pick a backend from the route's tiers,
 * send, judge the outcome, and move on to the next backend while nothing
 * has reached the client yet. This is the only layer that retries (the
 * upstream layer's resend on a stale pooled connection is not a retry: that
 * request provably never reached the upstream).
 */
#ifndef TOLLGATE_ATTEMPT_H
#define TOLLGATE_ATTEMPT_H

#include "health.h"
#include "request-t.h"

/* Start the first attempt. On failure to start any, the request is
 * answered with an error. */
void tg_attempt_first(struct tg_request *req);

/*
 * End the current attempt with its outcome: update the backend's health,
 * log ejections and recoveries, and record it in the request. label is
 * what x-tollgate-attempts shows for it ("503", "timeout", "connect").
 * For a committed attempt (tg_attempt_committed()), status 0 and label NULL
 * keep what the commit recorded. Calling it again for the same attempt
 * does nothing, so the backend's in-flight count drops once.
 */
void tg_attempt_end(struct tg_request *req, enum tg_outcome outcome,
                    enum tg_error err, int status, const char *label);

/*
 * The current attempt's response head came and is kept: record its status
 * and label for x-tollgate-attempts, and the moment for the latency its
 * health counts, but leave it open until the body ends. How the body ends
 * decides the outcome: tg_attempt_end() with a failure for a reset, a
 * stall or an error event, cancelled when the client leaves. A stream
 * whose content reached the client is never retried after this. A whole
 * body cut short still fails over, because the client has seen none of it.
 * A stream that reached the client before its first content (nothing was
 * held: tg_attempt_stream_may_move()) calls it again at that content,
 * which moves the latency mark there, so the balancers compare backends
 * by their wait for content either way.
 */
void tg_attempt_committed(struct tg_request *req, int status, const char *label);

/*
 * Start another attempt after the current one failed before any byte
 * reached the client, when the retry policy allows: the failure kind is in
 * retry.on, max_attempts and the retry budget leave room, and a backend is
 * available. Returns 1 when an attempt started, 0 when the failure stands.
 */
int tg_attempt_next(struct tg_request *req, unsigned retry_on_kind, int status);

/*
 * 1 when a stream of the current attempt that fails before its first
 * content (an error event, a reset, an idle timeout) could still move to
 * another backend, as far as is known when its head arrives. That needs
 * the route's retry.hold_stream on, such a failure named in retry.on, an
 * attempt left under max_attempts, an untried backend that is not cooling
 * down, and room in the retry budget. The relay holds the stream's
 * content-free start only then; else it has nothing to gain by holding.
 * It takes nothing: no budget, no trial slot.
 */
int tg_attempt_stream_may_move(struct tg_request *req);

/* 1 when the route's policy retries on this upstream HTTP status. */
int tg_attempt_status_retryable(const struct tg_request *req, int status);

/* The retry.on kind of an upstream error (connect, timeout or reset). */
unsigned tg_attempt_error_kind(enum tg_error err);

/* End the current attempt after the failure err, labelled by its kind
 * (timeout, connect, stream_error, reset). A failure of the gateway's own
 * (out of descriptors or memory) ends it as cancelled, so that the
 * backend's health does not count it. */
void tg_attempt_end_failed(struct tg_request *req, enum tg_error err);

/* Respond to the request with err, the failure of its last attempt, in a
 * message that names that attempt's backend and address when the upstream
 * failed: "could not connect to the upstream (backend "a" at host:443)". */
void tg_attempt_fail_request(struct tg_request *req, enum tg_error err);

/* Write "x-tollgate-attempts: a:503,b:timeout\r\n" into buf when the
 * request made more than one attempt or its last one failed; else "". */
void tg_attempt_header(const struct tg_request *req, char *buf, size_t size);

#endif
