/*
 * Per-key rate limits: requests and tokens per minute for each gateway
 * key that sets gateway_keys.NAME.limits.
 *
 * Each limited key has one token bucket per kind (ratelimit-bucket.h),
 * shared by every worker thread behind a mutex that is held only for the
 * arithmetic. The counts are per process: instances behind a load balancer
 * each allow the full limit.
 *
 * A request is counted when it is admitted, after routing, the key check
 * and the 415 of a body that the route's filters cannot read, and before
 * the filters, the cache and any upstream call. Its
 * tokens, prompt plus completion as the response's usage reports them,
 * are charged when it ends. A cache hit costs a request and no tokens.
 */
#ifndef TOLLGATE_RATELIMIT_H
#define TOLLGATE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "config-t.h"
#include "headers.h"

struct tg_gateway_key;
struct tg_request;

/* Limiter states by key name, owned by the main thread. It attaches them
 * to every snapshot it loads, so that a key keeps its counts across
 * reloads. */
struct tg_ratelimit_registry {
	struct tg_key_limiter *limiters;
};

/* Point every limited key of cfg at its state, creating missing ones, and
 * apply the key's limits (tg_bucket_set_limit() documents what is kept). Main
 * thread only, before cfg is published. Returns 0, or -1 out of memory. */
int tg_ratelimit_attach(struct tg_ratelimit_registry *reg, struct tg_config *cfg);
void tg_ratelimit_registry_free(struct tg_ratelimit_registry *reg);

/* After routing and tg_auth_request_route(): count req against its key's
 * limits. Responds 429 with Retry-After and returns -1 when a limit is
 * used up, else returns 0. A request without a limited key passes. */
int tg_ratelimit_admit(struct tg_request *req);

/*
 * For a request whose body is not read yet, and whose caller presented
 * key, a key that a route taking the request lets through: the 429 error
 * that a used-up limit of key gives whatever the body holds, or TG_OK.
 * Nothing is counted, because the request is counted at admission
 * (tg_ratelimit_admit()) when it goes on. On a rejection, req->key and
 * req->ratelimit are set for the x-ratelimit-* lines and the access log,
 * and message gets the client's message.
 */
enum tg_error tg_ratelimit_head_refusal(struct tg_request *req,
                                        const struct tg_gateway_key *key,
                                        char *message, size_t size);

/* Room for the lines tg_ratelimit_retry_after() writes. */
#define TG_RATELIMIT_RETRY_LINES 96

/* Write the Retry-After line of req, rejected by a limit, into buf: the
 * wait in whole seconds (RFC 9110 section 10.2.3), rounded up, and CRLF;
 * then the same wait in milliseconds as retry-after-ms, which OpenAI's
 * SDKs read first. Returns buf. */
const char *tg_ratelimit_retry_after(const struct tg_request *req, char *buf, size_t size);

/* At the end of req: charge the tokens its upstream response reported. */
void tg_ratelimit_charge(struct tg_request *req);

/* Write the x-ratelimit-* header lines of req into buf, each ending in
 * CRLF, or "" when its key has no limits. Returns the length. */
size_t tg_ratelimit_header_lines(const struct tg_request *req, char *buf, size_t size);

/* Whether hd, an upstream response header, is one that the gateway's own
 * x-ratelimit-* lines of req replace: those of each kind its key limits. */
int tg_ratelimit_replaces(const struct tg_request *req, const struct tg_header *hd);

/* Write ms into buf as a duration in the style of the x-ratelimit-reset-*
 * values that OpenAI's API sends, which is Go's Duration.String(): "0s",
 * "350ms", "20s", "1.5s", "1m0s", "1h0m59.987s". Returns buf. */
const char *tg_ratelimit_format_reset(uint64_t ms, char *buf, size_t size);

#endif
