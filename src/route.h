/*
 * Route selection: the first route in config order whose conditions
 * (routes[].match) all hold for a request.
 */
#ifndef TOLLGATE_ROUTE_H
#define TOLLGATE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "config-t.h"

struct tg_headers;

/* The parts of a request that route conditions test. */
struct tg_route_query {
	const char *path;               /* without the query string */
	int method;                     /* enum llhttp_method */
	const char *model;              /* NULL when the body names none */
	const struct tg_headers *headers;       /* hop-by-hop ones removed */
};

/* Return the first route whose conditions all hold for q, or NULL. A
 * query without a model (GET /v1/models) only matches routes without a
 * model pattern. */
const struct tg_route *tg_route_match(const struct tg_config *cfg,
                                      const struct tg_route_query *q);

/* For a query that no route takes: the methods of the routes whose other
 * conditions all hold, as a mask like tg_route.match_methods. A mask other
 * than 0 means that only the method kept the request from a route, so the
 * caller responds with 405 and these methods in Allow, rather than 404. */
uint64_t tg_route_other_methods(const struct tg_config *cfg,
                                const struct tg_route_query *q);

/* 1 when route would take q with some model: every condition but
 * match.model holds. For a request whose body, and so its model, is not
 * read yet. */
int tg_route_may_take(const struct tg_route *route, const struct tg_route_query *q);

/* 1 when every match.headers condition of route holds for headers. */
int tg_route_headers_hold(const struct tg_route *route, const struct tg_headers *headers);

/* The bit of method (enum llhttp_method) in a methods mask; 0 for a
 * number the mask has no bit for. */
static inline uint64_t
tg_route_method_bit(int method)
{
	return method >= 0 && method < 64 ? UINT64_C(1) << method : 0;
}

/* The mask of every method llhttp parses in HTTP requests. */
uint64_t tg_route_http_methods(void);

/* The enum llhttp_method of the method spelled name, as llhttp spells it:
 * in capitals, compared case-sensitively as RFC 9110 section 9.1 requires.
 * Returns -1 for a name llhttp does not parse. */
int tg_route_method_id(const char *name);

/* Write the names of the methods in mask into buf, in llhttp's order and
 * separated by ", ", as the value of an Allow header. Returns buf, cut to
 * size bytes; "" for an empty mask. */
char *tg_route_method_list(uint64_t mask, char *buf, size_t size);

/* Check pattern as a match.model glob. fnmatch() reads a "[" that no "]"
 * closes as a plain character, and a final backslash as one that never
 * matches, so such a pattern would silently match nothing its author
 * meant. Returns 0 when the pattern is valid, or -1 with what is wrong
 * and how to write it in message. */
int tg_route_model_glob_check(const char *pattern, char *message, size_t size);

#endif
