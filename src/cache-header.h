/*
 * The header line of a cache entry (see cache-entry.h for the whole
 * envelope): written with the JSON writer, read back with yajl.
 *
 * A hit reads one header per request. jansson took about 13,000
 * instructions (callgrind) to build and free a tree for its 50 bytes, a
 * fifth of the hit. The reader here keeps only the members of this
 * version and takes about 4,300, a third of that.
 *
 * Contract of tg_cache_header_read(): the text is valid exactly when
 * jansson's json_loadb() of it gives an object whose "v" is the integer
 * TG_CACHE_ENTRY_VERSION, "created_ms" an integer, "kind" a string,
 * "bytes" an array of non-negative integers and, for a "stream", "usage"
 * a boolean and "usage_event" an integer. A member given twice counts
 * with its last value, as in jansson's tree, and unknown members are
 * skipped, so a later version may add some. "headers", when it is an
 * object, gives the response headers to replay, as names and string
 * values. Any other member in it, a name that tg_cache_header_keeps() does
 * not keep, and a value with a control character other than HTAB are
 * skipped likewise, and "headers" never makes a header invalid. Instances built before it skip it whole. yajl takes a few strings
 * that jansson refuses (a "\u0000", a lone surrogate escape); in a
 * header they can only name an unknown member or kind, which changes
 * nothing or fails the header, or be a header value, which is skipped
 * for its NUL.
 */
#ifndef TOLLGATE_CACHE_HEADER_H
#define TOLLGATE_CACHE_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "headers.h"
#include "json-writer.h"

/* The version of the envelope, the first member of the header. */
#define TG_CACHE_ENTRY_VERSION 2

enum tg_cache_kind {
	TG_CACHE_KIND_OTHER = 0,        /* none, or one this version does not know */
	TG_CACHE_KIND_JSON,             /* one response body */
	TG_CACHE_KIND_STREAM,           /* the data of OpenAI stream events */
	TG_CACHE_KIND_EVENTS,           /* named Anthropic Messages stream events */
};

struct tg_cache_header {
	int64_t created_ms;
	enum tg_cache_kind kind;
	int has_usage;                  /* stream: some event carries usage */
	long long usage_event;          /* stream: the usage-only chunk, or -1 */
	size_t *bytes;                  /* the length of each part of the payload */
	size_t n_parts;
	const struct tg_headers *headers;  /* write: the response's headers, of
	                                      which those kept are written */
	struct tg_headers kept;         /* read: the headers of "headers" */
};

/*
 * 1 when the response header name (len bytes, any case) is kept with an
 * entry and replayed on its hits: Content-Type, Cache-Control, and the
 * provider's ids and facts about the stored response (x-request-id, as
 * the gateway relays it, Anthropic's request-id, openai-processing-ms,
 * openai-version, the organization and project). Rate-limit headers are
 * not kept, because they describe the provider's state when the response
 * was made, not now, and a hit costs no provider quota.
 */
int tg_cache_header_keeps(const char *name, size_t len);

/* Append h as one line of compact JSON, without the line feed. w->failed
 * is set when memory ran out. */
void tg_cache_header_write(struct tg_json_writer *w, const struct tg_cache_header *h);

/* Read the len bytes at text (the header line without its line feed) into
 * h. Returns 0, or -1 when they are not a valid header of this version
 * (contract above) or memory ran out. On success, free h's lengths and
 * kept headers with tg_cache_header_free(). */
int tg_cache_header_read(const char *text, size_t len, struct tg_cache_header *h);

void tg_cache_header_free(struct tg_cache_header *h);

#endif
