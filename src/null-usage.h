/*
 * The `"usage": null` member of a stream chunk, found and cut in the
 * chunk's text. A provider adds it to every chunk of a stream whose
 * request set stream_options.include_usage, and a client that did not
 * set it gets the chunks without it, from the relay (metrics-stream.c)
 * and from the cache alike.
 */
#ifndef TOLLGATE_NULL_USAGE_H
#define TOLLGATE_NULL_USAGE_H

#include <stddef.h>

/* The length of the member's key with its quotes, "usage". */
#define TG_USAGE_KEY_LEN 7

/* The end of a `"usage": null` member starting at p (a double quote), up
 * to end, or NULL when p starts something else. Blanks may stand around
 * the colon. */
const char *tg_null_usage_end(const char *p, const char *end);

/*
 * Find the `"usage": null` member in the len bytes of a chunk at data by
 * searching its text: *from gets its start and *to its end. A double quote
 * inside a JSON string is escaped, so the pattern cannot begin inside a
 * string. A chunk has the member at its top level, so when the pattern
 * occurs once, that occurrence is the member. Anything else (another
 * "usage": null nested deeper) is left as the provider sent it: returns 0.
 * Returns 1 when found.
 */
int tg_null_usage_find(const char *data, size_t len, const char **from, const char **to);

/* Widen the member from *from to *to, in the text from data to end, by the
 * comma before it, else by the one after it, so that cutting it leaves
 * valid JSON. */
void tg_null_usage_widen(const char *data, const char *end, const char **from,
                         const char **to);

#endif
