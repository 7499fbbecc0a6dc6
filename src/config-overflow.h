/*
 * The key path of a number that jansson cannot read.
 *
 * jansson stops at an integer beyond 64 bits or a real beyond double
 * ("too big integer", "real number overflow") with a position and the
 * number's text, but without the key it belongs to. A yajl parse of the
 * same text walks it again and tracks the key path up to that number, so
 * that the error can name the setting as the config's other errors do.
 */
#ifndef TOLLGATE_CONFIG_OVERFLOW_H
#define TOLLGATE_CONFIG_OVERFLOW_H

#include <stdbool.h>
#include <stddef.h>

#include "config-parse.h"

/* The first number of a JSON text that jansson cannot read. */
struct tg_config_overflow {
	char path[PATH_LEN];            /* "routes[1].retry.attempts", cut with "..." */
	char number[48];                /* its text as written, cut with "..." */
	bool integer;                   /* no fraction or exponent: beyond 64 bits */
};

/*
 * Find in the len bytes at text the first number that jansson 2.14 fails
 * to read: an integer (no ".", "e" or "E") that strtoll() cannot hold, or
 * a real whose magnitude strtod() overflows. Returns 0 with *found set,
 * or -1 when the text has no such number before it ends or stops being
 * JSON, or memory ran out.
 */
int tg_config_find_overflow(const char *text, size_t len, struct tg_config_overflow *found);

#endif
