/*
 * The "tracing" configuration section.
 */
#ifndef TOLLGATE_TRACE_CONFIG_H
#define TOLLGATE_TRACE_CONFIG_H

#include "config-parse.h"

/* The feature entry for top_settings in config.c. */
extern const struct feature tg_tracing_feature;

#endif
