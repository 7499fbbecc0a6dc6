/*
 * Per-key rate limits on the request path (ratelimit.h).
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "ratelimit-bucket.h"
#include "ratelimit.h"
#include "request.h"

#define NS_PER_US 1000ull

/* The shared state of one key: it outlives snapshots, found again by the
 * key's name on reload. */
struct tg_key_limiter {
	char *name;
	struct tg_key_limiter *next;    /* registry list; written at load only */
	pthread_mutex_t lock;           /* guards both buckets */
	struct tg_bucket requests;
	struct tg_bucket tokens;
};

/* --- registry (main thread) ------------------------------------------------- */

static struct tg_key_limiter *
limiter_find_or_create(struct tg_ratelimit_registry *reg, const char *name)
{
	struct tg_key_limiter *limiter;

	for (limiter = reg->limiters; limiter != NULL; limiter = limiter->next) {
		if (strcmp(limiter->name, name) == 0)
			return limiter;
	}
	limiter = calloc(1, sizeof(*limiter));
	if (limiter == NULL)
		return NULL;
	limiter->name = strdup(name);
	if (limiter->name == NULL || pthread_mutex_init(&limiter->lock, NULL) != 0) {
		free(limiter->name);
		free(limiter);
		return NULL;
	}
	limiter->next = reg->limiters;
	reg->limiters = limiter;
	return limiter;
}

int
tg_ratelimit_attach(struct tg_ratelimit_registry *reg, struct tg_config *cfg)
{
	struct tg_gateway_keys *keys = cfg->gateway_keys;
	uint64_t now_us = tg_now_ns() / NS_PER_US;

	for (size_t i = 0; keys != NULL && i < keys->n; i++) {
		struct tg_gateway_key *k = &keys->keys[i];
		struct tg_key_limiter *limiter;

		if (k->limits.requests_per_minute == 0 && k->limits.tokens_per_minute == 0)
			continue;
		limiter = limiter_find_or_create(reg, k->name);
		if (limiter == NULL)
			return -1;

		/* Requests of the previous snapshot may be charging meanwhile. */
		pthread_mutex_lock(&limiter->lock);
		tg_bucket_set_limit(&limiter->requests, k->limits.requests_per_minute, now_us);
		tg_bucket_set_limit(&limiter->tokens, k->limits.tokens_per_minute, now_us);
		pthread_mutex_unlock(&limiter->lock);
		k->limiter = limiter;
	}
	return 0;
}

void
tg_ratelimit_registry_free(struct tg_ratelimit_registry *reg)
{
	struct tg_key_limiter *limiter = reg->limiters;

	while (limiter != NULL) {
		struct tg_key_limiter *next = limiter->next;

		pthread_mutex_destroy(&limiter->lock);
		free(limiter->name);
		free(limiter);
		limiter = next;
	}
	reg->limiters = NULL;
}

/* --- admission -------------------------------------------------------------- */

static void
view_of(const struct tg_bucket *b, struct tg_ratelimit_view *v)
{
	v->limit = b->limit;
	v->remaining = tg_bucket_remaining(b);
	v->reset_ms = (tg_bucket_full_us(b) + 999) / 1000;
}

/* The error of the limit that rejects a request now, or TG_OK, with the
 * microseconds until it would admit one in *wait_us. Requests are checked
 * first. */
static enum tg_error
exhausted_limit(const struct tg_key_limiter *limiter, uint64_t *wait_us)
{
	if (limiter->requests.limit != 0 && !tg_bucket_admits(&limiter->requests)) {
		*wait_us = tg_bucket_wait_us(&limiter->requests);
		return TG_E_REQUEST_RATE_LIMIT;
	}
	if (limiter->tokens.limit != 0 && !tg_bucket_admits(&limiter->tokens)) {
		*wait_us = tg_bucket_wait_us(&limiter->tokens);
		return TG_E_TOKEN_RATE_LIMIT;
	}
	return TG_OK;
}

/* The word for n of a unit: one when n is 1, else many. */
static const char *
plural(unsigned long long n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* Write the client's message of a 429 of err, a limit of req's key, into
 * message. */
static void
format_message(const struct tg_request *req, enum tg_error err, char *message, size_t size)
{
	unsigned long long seconds = (req->ratelimit.wait_us + 999999) / 1000000;
	int tokens = err == TG_E_TOKEN_RATE_LIMIT;
	unsigned long long limit = tokens ? req->ratelimit.tokens.limit
	                                  : req->ratelimit.requests.limit;

	snprintf(message, size, "the gateway key \"%s\" reached its limit of %llu "
	         "%s per minute; retry after %llu %s", req->key->name, limit,
	         tokens ? plural(limit, "token", "tokens") : plural(limit, "request", "requests"),
	         seconds, plural(seconds, "second", "seconds"));
}

const char *
tg_ratelimit_retry_after(const struct tg_request *req, char *buf, size_t size)
{
	snprintf(buf, size, "Retry-After: %llu\r\nretry-after-ms: %llu\r\n",
	         (unsigned long long)((req->ratelimit.wait_us + 999999) / 1000000),
	         (unsigned long long)((req->ratelimit.wait_us + 999) / 1000));
	return buf;
}

/* Respond 429 to req, rejected by err. The access log has the reason of
 * every rejection, so the error log names it only at debug level, where a
 * flood of rejected requests cannot fill it. */
static void
reject(struct tg_request *req, enum tg_error err)
{
	char retry[TG_RATELIMIT_RETRY_LINES], message[256];

	format_message(req, err, message, sizeof(message));
	tg_log_request(req, TG_LOG_DEBUG, "rejected: %s", tg_error_info(err)->reason);
	tg_request_fail_with(req, err, tg_ratelimit_retry_after(req, retry, sizeof(retry)),
	                     message);
}

/* Refill the buckets of limiter and return the error of the limit that
 * rejects a request now, or TG_OK. When none does and take is 1, one
 * request is taken. What the request saw goes into seen, which is marked
 * checked. */
static enum tg_error
check_limits(struct tg_key_limiter *limiter, int take, struct tg_ratelimit_request *seen)
{
	enum tg_error err;
	uint64_t now_us;

	seen->wait_us = 0;
	pthread_mutex_lock(&limiter->lock);
	now_us = tg_now_ns() / NS_PER_US;
	tg_bucket_refill(&limiter->requests, now_us);
	tg_bucket_refill(&limiter->tokens, now_us);
	err = exhausted_limit(limiter, &seen->wait_us);
	if (err == TG_OK && take && limiter->requests.limit != 0)
		tg_bucket_take(&limiter->requests, 1);
	view_of(&limiter->requests, &seen->requests);
	view_of(&limiter->tokens, &seen->tokens);
	pthread_mutex_unlock(&limiter->lock);

	seen->checked = 1;
	return err;
}

int
tg_ratelimit_admit(struct tg_request *req)
{
	struct tg_key_limiter *limiter = req->key != NULL ? req->key->limiter : NULL;
	enum tg_error err;

	if (limiter == NULL)
		return 0;

	err = check_limits(limiter, 1, &req->ratelimit);
	if (err == TG_OK) {
		req->ratelimit.admitted = 1;
		return 0;
	}
	reject(req, err);
	return -1;
}

enum tg_error
tg_ratelimit_head_refusal(struct tg_request *req, const struct tg_gateway_key *key,
                          char *message, size_t size)
{
	struct tg_ratelimit_request seen = {0};
	enum tg_error err;

	if (key->limiter == NULL)
		return TG_OK;

	/* Only a rejection keeps what was seen: a request that goes on is
	 * checked again at admission, and its other errors before that carry
	 * no x-ratelimit-* lines. */
	err = check_limits(key->limiter, 0, &seen);
	if (err == TG_OK)
		return TG_OK;
	req->key = key;
	req->ratelimit = seen;
	format_message(req, err, message, size);
	return err;
}

void
tg_ratelimit_charge(struct tg_request *req)
{
	const struct tg_usage *usage = &req->metrics.usage;
	struct tg_key_limiter *limiter;
	uint64_t tokens;

	/* A cache hit made no attempt: it costs no tokens. */
	if (!req->ratelimit.admitted || req->n_attempts == 0 || !usage->reported)
		return;
	limiter = req->key->limiter;
	tokens = usage->input + usage->output;
	if (tokens < usage->input)
		tokens = UINT64_MAX;

	pthread_mutex_lock(&limiter->lock);
	if (limiter->tokens.limit != 0) {
		tg_bucket_refill(&limiter->tokens, tg_now_ns() / NS_PER_US);
		tg_bucket_take(&limiter->tokens, tokens);
	}
	pthread_mutex_unlock(&limiter->lock);
}

/* --- headers ------------------------------------------------------------------ */

const char *
tg_ratelimit_format_reset(uint64_t ms, char *buf, size_t size)
{
	unsigned long long hours = ms / 3600000, minutes = ms / 60000 % 60;
	unsigned long long seconds = ms / 1000 % 60, frac = ms % 1000;
	size_t len = 0;

	/* Go's Duration.String(), which OpenAI's values follow, writes zero
	 * as "0s", not "0ms". */
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return buf;
	}
	if (ms < 1000) {
		snprintf(buf, size, "%llums", (unsigned long long)ms);
		return buf;
	}
	if (hours > 0)
		len = (size_t)snprintf(buf, size, "%lluh%llum", hours, minutes);
	else if (minutes > 0)
		len = (size_t)snprintf(buf, size, "%llum", minutes);
	if (len < size && frac == 0)
		snprintf(buf + len, size - len, "%llus", seconds);
	else if (len < size && frac % 100 == 0)
		snprintf(buf + len, size - len, "%llu.%llus", seconds, frac / 100);
	else if (len < size && frac % 10 == 0)
		snprintf(buf + len, size - len, "%llu.%02llus", seconds, frac / 10);
	else if (len < size)
		snprintf(buf + len, size - len, "%llu.%03llus", seconds, frac);
	return buf;
}

/* Append the three lines of one limit kind to buf at *len. */
static void
add_kind(char *buf, size_t size, size_t *len, const char *kind,
         const struct tg_ratelimit_view *v)
{
	char reset[32];
	int n;

	if (v->limit == 0 || *len >= size)
		return;
	n = snprintf(buf + *len, size - *len, "x-ratelimit-limit-%s: %llu\r\n"
	             "x-ratelimit-remaining-%s: %llu\r\n"
	             "x-ratelimit-reset-%s: %s\r\n",
	             kind, (unsigned long long)v->limit, kind,
	             (unsigned long long)v->remaining, kind,
	             tg_ratelimit_format_reset(v->reset_ms, reset, sizeof(reset)));
	if (n < 0 || (size_t)n >= size - *len) {
		buf[*len] = '\0';       /* no cut line: leave the kind out */
		return;
	}
	*len += (size_t)n;
}

size_t
tg_ratelimit_header_lines(const struct tg_request *req, char *buf, size_t size)
{
	size_t len = 0;

	assert(size > 0);
	buf[0] = '\0';
	if (!req->ratelimit.checked)
		return 0;
	add_kind(buf, size, &len, "requests", &req->ratelimit.requests);
	add_kind(buf, size, &len, "tokens", &req->ratelimit.tokens);
	return len;
}

/* Whether the name of hd ends with suffix, in any case. */
static int
name_ends_with(const struct tg_header *hd, const char *suffix)
{
	size_t n = strlen(suffix);

	return hd->name_len >= n && strncasecmp(hd->name + hd->name_len - n, suffix, n) == 0;
}

int
tg_ratelimit_replaces(const struct tg_request *req, const struct tg_header *hd)
{
	static const char prefix[] = "x-ratelimit-";
	size_t len = sizeof(prefix) - 1;

	if (!req->ratelimit.checked || hd->name_len <= len ||
	    strncasecmp(hd->name, prefix, len) != 0)
		return 0;
	if (req->ratelimit.requests.limit != 0 && name_ends_with(hd, "-requests"))
		return 1;
	return req->ratelimit.tokens.limit != 0 && name_ends_with(hd, "-tokens");
}
