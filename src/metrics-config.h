/*
 * Config sections of the metrics module; see metrics-config.c for the
 * format.
 */
#ifndef TOLLGATE_METRICS_CONFIG_H
#define TOLLGATE_METRICS_CONFIG_H

#include "config-parse.h"

extern const struct feature tg_pricing_feature;         /* pricing */
extern const struct feature tg_sessions_feature;        /* sessions */

#endif
