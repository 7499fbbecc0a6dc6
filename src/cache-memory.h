/*
 * The in-process cache store: bounded by bytes, least recently used entries
 * evicted first, entries expire after their TTL. One store serves every
 * worker thread of the process.
 *
 * This store is the one exception to "nothing on the request path takes a
 * lock": entries written by one worker must be found by the others, and a
 * copy per worker would divide the useful size by the number of workers. To
 * keep contention and lock hold times small, the store is cut into
 * TG_CACHE_MEMORY_SHARDS shards chosen by key, each with its own mutex. A
 * critical section only links, unlinks and counts. Values are allocated
 * before the lock is taken and handed out by reference (no copy), and
 * evicted entries are freed after it is released. No I/O happens under a
 * lock.
 */
#ifndef TOLLGATE_CACHE_MEMORY_H
#define TOLLGATE_CACHE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "cache-t.h"

#define TG_CACHE_MEMORY_SHARDS 16

/* Counters summed over the shards, for metrics and tests. */
struct tg_cache_memory_stats {
	size_t entries;
	size_t bytes;                   /* charged bytes, <= max_bytes */
	uint64_t hits;
	uint64_t misses;
	uint64_t inserts;
	uint64_t evictions;             /* removed to make room */
	uint64_t expirations;           /* found past their TTL */
	uint64_t rejected;              /* larger than one shard's share */
};

/*
 * Create a store of at most max_bytes, counting each entry's value, key and
 * bookkeeping. One entry may take at most max_bytes / TG_CACHE_MEMORY_SHARDS.
 * The store starts with one reference. Returns NULL when out of memory.
 */
struct tg_cache_memory *tg_cache_memory_new(size_t max_bytes);

/*
 * Return the store of the process when its size is max_bytes, with one more
 * reference, or else a new store that becomes the process's store. A
 * configuration reload that keeps the size thus keeps the cached entries.
 * Called when a configuration is loaded, never on the request path.
 */
struct tg_cache_memory *tg_cache_memory_acquire(size_t max_bytes);

struct tg_cache_memory *tg_cache_memory_ref(struct tg_cache_memory *m);
void tg_cache_memory_unref(struct tg_cache_memory *m);

size_t tg_cache_memory_max_bytes(const struct tg_cache_memory *m);

/*
 * Find key. On a hit, return the value with a reference the caller drops
 * with tg_cache_blob_unref(), and mark the entry most recently used.
 * Returns NULL on a miss; an entry whose expiry (now_ms + ttl when stored)
 * is not after now_ms counts as a miss and is removed. now_ms is any
 * monotonic clock in milliseconds, the same for every call.
 */
struct tg_cache_blob *tg_cache_memory_get(struct tg_cache_memory *m,
                                          const unsigned char key[TG_CACHE_KEY_LEN],
                                          uint64_t now_ms);

/*
 * Store value under key for ttl_ms, replacing an entry with the same key and
 * evicting the least recently used entries of the shard until it fits. The
 * store takes a reference to value. Returns 0, or -1 when the entry is
 * larger than one shard's share or memory ran out (nothing is stored).
 */
int tg_cache_memory_put(struct tg_cache_memory *m, const unsigned char key[TG_CACHE_KEY_LEN],
                        struct tg_cache_blob *value, uint64_t ttl_ms, uint64_t now_ms);

void tg_cache_memory_stats(struct tg_cache_memory *m, struct tg_cache_memory_stats *out);

/* Allocate a value of len bytes, copied from data, with one reference.
 * Returns NULL when out of memory. */
struct tg_cache_blob *tg_cache_blob_new(const void *data, size_t len);

struct tg_cache_blob *tg_cache_blob_ref(struct tg_cache_blob *b);
void tg_cache_blob_unref(struct tg_cache_blob *b);

#endif
