/*
 * Config sections of gateway keys: the top-level "gateway_keys" and each
 * route's "auth" (auth-config.c).
 */
#ifndef TOLLGATE_AUTH_CONFIG_H
#define TOLLGATE_AUTH_CONFIG_H

#include "config-parse.h"

extern const struct feature tg_gateway_keys_feature;
extern const struct feature tg_route_auth_feature;

#endif
