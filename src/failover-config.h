/*
 * Config sections of routing policy; see failover-config.c for the format.
 */
#ifndef TOLLGATE_FAILOVER_CONFIG_H
#define TOLLGATE_FAILOVER_CONFIG_H

#include "config-parse.h"

/* Attempts a retry policy may allow; the request keeps this many records. */
#define TG_MAX_ATTEMPTS_CONFIG 16

extern const struct feature tg_retry_feature;   /* routes[].retry */
extern const struct feature tg_health_feature;  /* backends.NAME.health */

/* routes[].backends: names and balanced groups, as tiers. */
parse_fn tg_parse_route_backends;

/* Free what tg_parse_route_backends built in r. */
void tg_free_route_tiers(struct tg_route *r);

#endif
