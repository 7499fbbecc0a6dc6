/*
 * Gateway keys on the request path: who the caller is, and whether it may
 * use the route it asked for.
 *
 * A config without "gateway_keys" skips all of it, and the client's
 * credential headers reach a backend without api_key as before. With keys,
 * every credential header a client sends (Authorization, x-api-key,
 * api-key) is taken for a gateway key and never forwarded.
 */
#ifndef TOLLGATE_AUTH_H
#define TOLLGATE_AUTH_H

#include <stddef.h>

#include "auth-t.h"
#include "config-t.h"
#include "errors.h"
#include "headers.h"

struct tg_request;

/*
 * Find the gateway key among keys that the caller presented in headers:
 * the first of "Authorization: Bearer KEY", "x-api-key: KEY" and "api-key:
 * KEY" present. The digest of the presented key is compared with every
 * key's in constant time, so neither the match nor its position shows in
 * the timing. Sets *key for TG_AUTH_KEY, else NULL. An Authorization of
 * another scheme than Bearer is TG_AUTH_UNKNOWN. A header without a
 * credential (empty, or "Bearer" alone) counts as absent.
 */
enum tg_auth_result tg_auth_identify(const struct tg_gateway_keys *keys,
                                     const struct tg_headers *headers,
                                     const struct tg_gateway_key **key);

/* Whether the caller with key (NULL: none) may use route of a config
 * with gateway keys: TG_OK, TG_E_MISSING_API_KEY or TG_E_KEY_NOT_ALLOWED. */
enum tg_error tg_auth_check_route(const struct tg_route *route,
                                  const struct tg_gateway_key *key);

/* Before routing: set req->key from the request's headers. Responds 401
 * and returns -1 to a caller whose credential is no defined key, and to
 * one without a credential when no route is open. Returns 0 to go on.
 * Call only when req->config->gateway_keys is set. */
int tg_auth_request(struct tg_request *req);

/*
 * For a request whose body is not read yet: the 401 or 403 that it gets
 * whatever its body holds, or TG_OK when the body may decide otherwise. A
 * credential that is no key, or none where no route is open, is refused
 * at once. When routed is 1 (a request that a route serves, unlike GET
 * /v1/models), so is a caller whom every route that may take the request
 * refuses, whichever model the body names. A message for the client, when
 * the error has one beyond its default, goes into message ("" otherwise).
 * *usable is set to the caller's key when the result is TG_OK, routed is
 * 1 and a route that may take the request lets that key use it, else to
 * NULL. Call only when gateway keys are set.
 */
enum tg_error tg_auth_head_refusal(const struct tg_request *req, int routed, char *message,
                                   size_t size, const struct tg_gateway_key **usable);

/* The header line that a 401 of err carries (RFC 6750 section 3), with the
 * error code for a key that was presented but is wrong; NULL for another
 * error. */
const char *tg_auth_challenge(enum tg_error err);

/* Respond to req with err, an error of gateway keys, and the challenge
 * of a 401 (WWW-Authenticate). message NULL: the error's own. */
void tg_auth_reject(struct tg_request *req, enum tg_error err, const char *message);

/* After routing: responds 401 or 403 and returns -1 when req->key may not
 * use req->route, else returns 0. Call only when gateway keys are set. */
int tg_auth_request_route(struct tg_request *req);

#endif
