/*
 * Types of gateway keys: the credentials that callers present to tollgate
 * itself, as opposed to the backends' api_key that tollgate presents
 * upstream.
 */
#ifndef TOLLGATE_AUTH_T_H
#define TOLLGATE_AUTH_T_H

#include <stddef.h>

#include "ratelimit-t.h"

#define TG_KEY_DIGEST_LEN 32    /* SHA-256 */

struct tg_key_limiter;

/* One named key of "gateway_keys". Only the digest of its secret is kept,
 * so the snapshot never contains the secret itself. */
struct tg_gateway_key {
	char *name;             /* logs, spans, metric labels; never the secret */
	unsigned char digest[TG_KEY_DIGEST_LEN];
	struct tg_key_limits limits;
	struct tg_key_limiter *limiter; /* shared counts, set by
	                                   tg_ratelimit_attach(); NULL when
	                                   the key has no limits */
};

/* The top-level "gateway_keys" object; NULL in struct tg_config when the
 * file defines none, and then no route requires a key. */
struct tg_gateway_keys {
	size_t n;
	struct tg_gateway_key *keys;    /* in file order */
	int any_open_route;             /* a route sets auth.required false */
};

/* A route's "auth" object; NULL in struct tg_route when absent, which
 * requires a key, any key, whenever gateway keys are defined. */
struct tg_route_auth {
	int required;                   /* default 1 */
	size_t n_allowed;               /* 0: any key may use the route */
	const struct tg_gateway_key **allowed;  /* into the snapshot's keys */
};

/* The identity of a caller, as tg_auth_identify() found it in its headers. */
enum tg_auth_result {
	TG_AUTH_ANONYMOUS,      /* no credential header, or only empty ones */
	TG_AUTH_KEY,            /* a defined key */
	TG_AUTH_UNKNOWN,        /* a credential that is no defined key */
	TG_AUTH_CONFLICT,       /* one credential header repeated with two keys */
};

#endif
