/*
 * Cache keys: SHA-256 over a canonical JSON form of everything that can
 * change a response.
 *
 * The canonical form is an object {"v", "path", "route", "tenant",
 * "request"}, plus "filters" for a route with filters on the response
 * side, "headers" for the headers below and "query" for a request target
 * with a query, written as jansson's compact
 * dump with sorted keys would write it, so key order and whitespace in the
 * client's JSON do not matter. "request" is the
 * request body without the fields that cannot change the output ("stream",
 * "stream_options", "user" and the configured ignore_fields), and with
 * numbers normalised. A fractional number whose value is an integer of
 * magnitude up to 2^53 becomes that integer, so 1, 1.0 and 1e0 give one key.
 * Other reals keep their binary value, printed with 17 significant digits,
 * so 0.5 and 5e-1 give one key too. Every other field counts, known
 * or not, so an unknown sampling parameter never makes two different
 * requests share an entry.
 *
 * The query counts as sent, with its parameters in their order and
 * encoding: the gateway forwards it unchanged, and a server may read a
 * repeated parameter by position or decode two spellings differently, so
 * sorting could make two requests that get different answers share an
 * entry. A client that reorders its parameters only gets an extra miss.
 */
#ifndef TOLLGATE_CACHE_KEY_H
#define TOLLGATE_CACHE_KEY_H

#include "cache-t.h"
#include "headers.h"

/* Version of the canonical form and of the entry format (cache-entry.h).
 * A change makes every old entry a miss, and instances of two versions
 * that share a Redis during an upgrade never read each other's entries. */
#define TG_CACHE_KEY_VERSION 2

/*
 * Write the tenant of a request into tenant (65 bytes): the hex SHA-256 of
 * the caller's identity together with the configured tenant header's value
 * when the request carries it. The identity is gateway_key, the name of the
 * gateway key the caller presented (auth.h), whichever header carried it.
 * Without one, it is the caller's credential (Authorization, else
 * x-api-key, else api-key). Header names go into that hash, so a
 * credential sent under two headers gives two tenants. The tenant header
 * only splits the entries of one identity, so a caller cannot reach
 * another's entries by naming its tenant. Anonymous callers without the
 * header share the tenant "". Returns 0, or -1 when hashing failed (out of
 * memory), and the request must then not use the cache.
 */
int tg_cache_tenant(const struct tg_headers *headers, const char *tenant_header,
                    const char *gateway_key, char tenant[TG_CACHE_KEY_HEX_LEN + 1]);

/* The inputs of a key other than the request body. */
struct tg_cache_key_scope {
	const char *path;
	const char *query;              /* after the '?', as sent; NULL or "":
	                                   none */
	const char *route;
	const char *tenant;             /* tg_cache_tenant() */
	const char *filters;            /* the route's response-side filter
	                                   config (tg_route_cache_config), or NULL */
	char *const *ignore_fields;     /* body fields left out */
	size_t n_ignore_fields;
	const struct tg_headers *headers;       /* of the request, for the
	                                           headers that change a
	                                           response; NULL: none */
};

/*
 * Return the canonical text of a request (see above) whose body is the len
 * bytes at body, to be freed with free(). Returns NULL when the body has no
 * key (tg_cache_key()) or memory ran out.
 */
char *tg_cache_canonical(const char *body, size_t len, const struct tg_cache_key_scope *scope);

/* tg_cache_key() result: the path, the query or a varying header is not
 * UTF-8. */
#define TG_CACHE_KEY_NOT_UTF8 (-2)

/* tg_cache_key() result: the body has no key. */
#define TG_CACHE_KEY_UNKEYED (-3)

/*
 * Compute the key of a request whose body is the len bytes at body: the
 * SHA-256 of its canonical text. Returns 0, TG_CACHE_KEY_NOT_UTF8,
 * TG_CACHE_KEY_UNKEYED, or -1 when out of memory.
 *
 * The body is read from its text, but the key is the one a jansson tree
 * of it (JSON_REJECT_DUPLICATES) gave before, so that instances of both
 * versions that share a Redis agree on keys. These bodies have no key:
 * one that jansson rejects (the gateway rejects it before the cache), one
 * that is not an object, and one with an integer beyond 64 bits. jansson
 * reads the last only with every integer as a real, which could make two
 * requests that differ share a key.
 */
int tg_cache_key(const char *body, size_t len, const struct tg_cache_key_scope *scope,
                 unsigned char key[TG_CACHE_KEY_LEN]);

/* Write key as 64 lower-case hex digits and a NUL. */
void tg_cache_key_hex(const unsigned char key[TG_CACHE_KEY_LEN],
                      char hex[TG_CACHE_KEY_HEX_LEN + 1]);

#endif
