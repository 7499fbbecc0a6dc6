/*
 * The config object of per-key rate limits, gateway_keys.NAME.limits
 * (ratelimit-config.c).
 */
#ifndef TOLLGATE_RATELIMIT_CONFIG_H
#define TOLLGATE_RATELIMIT_CONFIG_H

#include "config-parse.h"

extern const struct section tg_key_limits_section;

/* The parse_fn of "limits": fills the struct tg_key_limits at the
 * setting's offset, and reports an object that sets no limit. */
parse_fn tg_parse_key_limits;

#endif
