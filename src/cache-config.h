/*
 * Config sections of the response cache; see cache-config.c for the format.
 */
#ifndef TOLLGATE_CACHE_CONFIG_H
#define TOLLGATE_CACHE_CONFIG_H

#include "config-parse.h"

extern const struct feature tg_cache_feature;        /* cache */
extern const struct feature tg_route_cache_feature;  /* routes[].cache */

/* Attach the memory store when some route caches with store "memory"; a
 * config without caching routes allocates none. */
check_fn tg_cache_check_config;

#endif
