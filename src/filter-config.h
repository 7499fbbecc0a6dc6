/*
 * Config sections of the content filters (filter-config.c).
 */
#ifndef TOLLGATE_FILTER_CONFIG_H
#define TOLLGATE_FILTER_CONFIG_H

#include "filter-t.h"

struct feature;

/* The top-level "filters" object and a route's "filters" list. */
extern const struct feature tg_filters_feature;
extern const struct feature tg_route_filters_feature;

/* The filter called name, or NULL. */
const struct tg_filter *tg_filters_find(const struct tg_filters_config *fc,
                                        const char *name);

#endif
