/*
 * Gateway keys on the request path.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "log.h"
#include "request.h"
#include "route.h"
#include "sha256.h"

#define BEARER "Bearer"

#define CONFLICT_MESSAGE "the request repeats a credential header (Authorization, " \
	"x-api-key or api-key) with different keys; send one key"

/* 1 when an Authorization value carries no credential at all: empty, or
 * the scheme "Bearer" with nothing after it but spaces. Clients send such
 * a header when their key variable is unset, and that is no key, not a
 * wrong one. */
static int
is_empty_authorization(const char *value)
{
	size_t len = sizeof(BEARER) - 1;

	if (strncasecmp(value, BEARER, len) == 0)
		value += len;
	while (*value == ' ')
		value++;
	return *value == '\0';
}

/* The key in an Authorization value: what follows the scheme "Bearer"
 * (case-insensitive, RFC 9110 section 11.1) and the spaces after it, or
 * NULL for another scheme. */
static const char *
bearer_token(const char *value)
{
	size_t len = sizeof(BEARER) - 1;

	if (strncasecmp(value, BEARER, len) != 0 || value[len] != ' ')
		return NULL;
	value += len;
	while (*value == ' ')
		value++;
	return value;
}

/* 1 when value, of the credential header tg_credential_headers[i], carries
 * a credential. */
static int
has_credential(size_t i, const char *value)
{
	return i == 0 ? !is_empty_authorization(value) : value[0] != '\0';
}

/* The part of value, of credential header i, that names a key: the token
 * of a Bearer Authorization, else the whole value. */
static const char *
credential_text(size_t i, const char *value)
{
	const char *token = i == 0 ? bearer_token(value) : NULL;

	return token != NULL ? token : value;
}

/* Set *first to the first value of credential header i that carries a
 * credential, or NULL. Returns 1 when a later value carries another one,
 * because the intended key is then unknown and none may be taken. The
 * same value twice, as a proxy may add it, is no conflict. */
static int
first_credential(const struct tg_headers *headers, size_t i, const char **first)
{
	*first = NULL;
	for (size_t n = 0; n < headers->count; n++) {
		const struct tg_header *h = &headers->items[n];

		if (!tg_header_is(h, tg_credential_headers[i]) || !has_credential(i, h->value))
			continue;
		if (*first == NULL)
			*first = h->value;
		else if (strcmp(credential_text(i, *first), credential_text(i, h->value)) != 0)
			return 1;
	}
	return 0;
}

/* The key the caller presented, or NULL with *presented set to whether a
 * credential header with a value was there at all. A header without a
 * credential counts as absent, so the next one is read. *conflict is set
 * when that header is repeated with different credentials. */
static const char *
presented_key(const struct tg_headers *headers, int *presented, int *conflict)
{
	const char *value;

	for (size_t i = 0; i < TG_N_CREDENTIAL_HEADERS; i++) {
		*conflict = first_credential(headers, i, &value);
		if (value == NULL)
			continue;
		*presented = 1;
		return i == 0 ? bearer_token(value) : value;
	}
	*presented = 0;
	return NULL;
}

enum tg_auth_result
tg_auth_identify(const struct tg_gateway_keys *keys, const struct tg_headers *headers,
                 const struct tg_gateway_key **key)
{
	unsigned char digest[TG_KEY_DIGEST_LEN];
	int presented, conflict;
	const char *secret = presented_key(headers, &presented, &conflict);

	*key = NULL;
	if (!presented)
		return TG_AUTH_ANONYMOUS;
	if (conflict)
		return TG_AUTH_CONFLICT;
	if (secret == NULL || tg_sha256(secret, strlen(secret), digest) != 0)
		return TG_AUTH_UNKNOWN;

	/* Every key is compared, also after a match, so that the time taken
	 * does not tell how far down the list a key is. */
	for (size_t i = 0; i < keys->n; i++) {
		const struct tg_gateway_key *k = &keys->keys[i];

		if (CRYPTO_memcmp(digest, k->digest, TG_KEY_DIGEST_LEN) == 0 && k->name != NULL)
			*key = k;
	}
	return *key != NULL ? TG_AUTH_KEY : TG_AUTH_UNKNOWN;
}

enum tg_error
tg_auth_check_route(const struct tg_route *route, const struct tg_gateway_key *key)
{
	const struct tg_route_auth *auth = route->auth;

	if (auth != NULL && !auth->required)
		return TG_OK;
	if (key == NULL)
		return TG_E_MISSING_API_KEY;
	if (auth == NULL || auth->n_allowed == 0)
		return TG_OK;
	for (size_t i = 0; i < auth->n_allowed; i++) {
		if (auth->allowed[i] == key)
			return TG_OK;
	}
	return TG_E_KEY_NOT_ALLOWED;
}

const char *
tg_auth_challenge(enum tg_error err)
{
	if (err == TG_E_INVALID_API_KEY)
		return "WWW-Authenticate: Bearer realm=\"tollgate\", error=\"invalid_token\"\r\n";
	if (err == TG_E_MISSING_API_KEY)
		return "WWW-Authenticate: Bearer realm=\"tollgate\"\r\n";
	return NULL;
}

/* The access log has the reason of every rejection, so the error log
 * names it only at debug level, where a flood of bad keys cannot fill it. */
void
tg_auth_reject(struct tg_request *req, enum tg_error err, const char *message)
{
	tg_log_request(req, TG_LOG_DEBUG, "rejected: %s", tg_error_info(err)->reason);
	tg_request_fail_with(req, err, tg_auth_challenge(err), message);
}

int
tg_auth_request(struct tg_request *req)
{
	const struct tg_gateway_keys *keys = req->config->gateway_keys;

	assert(keys != NULL);
	switch (tg_auth_identify(keys, &req->headers, &req->key)) {
	case TG_AUTH_KEY:
		return 0;
	case TG_AUTH_UNKNOWN:
		tg_auth_reject(req, TG_E_INVALID_API_KEY, NULL);
		return -1;
	case TG_AUTH_CONFLICT:
		tg_auth_reject(req, TG_E_INVALID_API_KEY, CONFLICT_MESSAGE);
		return -1;
	case TG_AUTH_ANONYMOUS:
		break;
	}
	if (keys->any_open_route)
		return 0;
	tg_auth_reject(req, TG_E_MISSING_API_KEY, NULL);
	return -1;
}

int
tg_auth_request_route(struct tg_request *req)
{
	enum tg_error err = tg_auth_check_route(req->route, req->key);
	char message[256];

	if (err == TG_OK)
		return 0;
	if (err == TG_E_KEY_NOT_ALLOWED) {
		snprintf(message, sizeof(message), "the gateway key \"%s\" may not use the "
		         "route \"%s\"", req->key->name, req->route->name);
		tg_auth_reject(req, err, message);
	} else {
		tg_auth_reject(req, err, NULL);
	}
	return -1;
}

enum tg_error
tg_auth_head_refusal(const struct tg_request *req, int routed, char *message, size_t size,
                     const struct tg_gateway_key **usable)
{
	const struct tg_gateway_keys *keys = req->config->gateway_keys;
	const struct tg_gateway_key *key;
	struct tg_route_query q = {
		.path = req->path, .method = req->method_id, .headers = &req->headers,
	};
	size_t rejecting = 0;

	assert(keys != NULL);
	*usable = NULL;
	switch (tg_auth_identify(keys, &req->headers, &key)) {
	case TG_AUTH_UNKNOWN:
		return TG_E_INVALID_API_KEY;
	case TG_AUTH_CONFLICT:
		snprintf(message, size, "%s", CONFLICT_MESSAGE);
		return TG_E_INVALID_API_KEY;
	case TG_AUTH_ANONYMOUS:
		if (!keys->any_open_route)
			return TG_E_MISSING_API_KEY;
		break;
	case TG_AUTH_KEY:
		break;
	}
	if (!routed)
		return TG_OK;

	/* The body's model picks among these routes: the key is refused only
	 * when each of them refuses it. */
	for (size_t i = 0; i < req->config->n_routes; i++) {
		const struct tg_route *route = &req->config->routes[i];

		if (!tg_route_may_take(route, &q))
			continue;
		if (tg_auth_check_route(route, key) == TG_OK) {
			*usable = key;
			return TG_OK;
		}
		rejecting++;
	}
	if (rejecting == 0)
		return TG_OK;   /* no route: the dispatch responds 404 or 405 */
	if (key == NULL)
		return TG_E_MISSING_API_KEY;
	snprintf(message, size, "the gateway key \"%s\" may use no route that takes %s %.120s",
	         key->name, req->method, req->path);
	return TG_E_KEY_NOT_ALLOWED;
}
