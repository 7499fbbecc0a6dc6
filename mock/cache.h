/*
 * Generated responses kept for reuse, so that a client repeating one
 * request (bench/ sends the same chat completion thousands of times a
 * second) does not pay each time for parsing its body and building the
 * response with jansson.
 *
 * A generated response depends only on the request and the options,
 * except for the response number in ids and the clock in "created". An
 * entry therefore contains the body generated once with marker values in
 * their place, and the offsets of the markers ("slots"). Reusing it copies
 * the body and writes the current number and time into the slots. An
 * entry is added only after a check: filling it with the number and time
 * of the request at hand must give the bytes generated for that request.
 */
#ifndef TOLLGATE_MOCK_CACHE_H
#define TOLLGATE_MOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "options.h"
#include "response.h"

/* Marker values to generate an entry's body with. They have 19 digits
 * each, so a body is unlikely to contain them by chance, and the check
 * before adding an entry rejects a body that does. */
#define RESPONSE_CACHE_SEQ_MARK 8000000000000000017ULL
#define RESPONSE_CACHE_CREATED_MARK 8000000000000000029LL

/*
 * Everything a generated response depends on besides the number and the
 * time: the path (route and Azure deployment), the x-mock header, the
 * instance's default options and the request body. A part that is absent
 * has length 0, which means the same as an empty option list.
 */
enum response_cache_part {
	CACHE_PATH, CACHE_HEADER, CACHE_DEFAULTS, CACHE_BODY, CACHE_PARTS,
};

struct response_cache_key {
	const char *data[CACHE_PARTS];
	size_t len[CACHE_PARTS];
};

struct response_cache;
struct response_cache_entry;

/* Return the entry for key, or NULL. cache may be NULL (nothing kept). */
const struct response_cache_entry *
response_cache_find(const struct response_cache *cache,
                    const struct response_cache_key *key);

/*
 * Make r the entry's response for response number seq at time created,
 * and copy the options the request resolved to into o. Returns 0, or -1
 * when out of memory.
 */
int response_cache_fill(const struct response_cache_entry *e, uint64_t seq,
                        long long created, struct mock_response *r,
                        struct mock_options *o);

/*
 * Keep the response to key for reuse. generated is the response sent for
 * response number seq at time created, and marked is the same response
 * generated with the marker values. Streams, responses whose key or body
 * is too large and responses that fail the check above are not kept. When
 * the cache is full, the new entry replaces the oldest. *cache is created
 * on first use.
 */
void response_cache_add(struct response_cache **cache,
                        const struct response_cache_key *key,
                        const struct mock_options *o,
                        const struct mock_response *generated,
                        const struct mock_response *marked,
                        uint64_t seq, long long created);

void response_cache_free(struct response_cache *cache);

#endif
