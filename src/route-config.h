/*
 * The routes[].match section: the conditions a request must meet.
 */
#ifndef TOLLGATE_ROUTE_CONFIG_H
#define TOLLGATE_ROUTE_CONFIG_H

#include "config-parse.h"

/* The keys of routes[].match, which fill the match_ fields of a struct
 * tg_route. */
extern const struct section tg_route_match_section;

/* Free the match_ fields of r, which may be partly filled. */
void tg_route_match_free(struct tg_route *r);

#endif
