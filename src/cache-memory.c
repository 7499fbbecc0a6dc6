/*
 * The in-process cache store: sharded hash tables with an LRU list each.
 * See cache-memory.h for why it takes a lock and how the critical sections
 * are kept short.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cache-memory.h"

#define CACHE_LINE 64

/* Buckets per shard: one per this many bytes of the shard's share, so
 * chains stay short for entries of a kilobyte or more (a chat completion
 * with its envelope rarely takes less). */
#define BYTES_PER_BUCKET 1024
#define MIN_BUCKETS 16
#define MAX_BUCKETS (1u << 20)

/* Expired entries a put removes from the LRU end, besides those it must
 * evict for room: enough to reclaim space steadily, few enough to keep the
 * critical section short. */
#define EXPIRED_SWEEP 8

struct mem_entry {
	struct mem_entry *chain;        /* next in the bucket, or in a free list */
	TAILQ_ENTRY(mem_entry) lru;
	unsigned char key[TG_CACHE_KEY_LEN];
	uint64_t expires_ms;
	size_t charge;                  /* bytes counted against the bound */
	struct tg_cache_blob *value;
};

TAILQ_HEAD(mem_lru, mem_entry);

struct shard {
	_Alignas(CACHE_LINE) pthread_mutex_t lock;
	struct mem_entry **buckets;
	size_t bucket_mask;
	struct mem_lru lru;             /* most recently used first */
	size_t max_bytes;
	size_t bytes;
	size_t entries;
	uint64_t hits, misses, inserts, evictions, expirations, rejected;
};

struct tg_cache_memory {
	int refs;                       /* guarded by registry_lock */
	size_t max_bytes;
	struct shard *shards;           /* TG_CACHE_MEMORY_SHARDS of them */
};

/* The store of the process, so that a reload can keep it. Both it and every
 * store's refs are only touched under registry_lock, at configuration load
 * and release time. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tg_cache_memory *registry;

/* --- values --------------------------------------------------------------- */

struct tg_cache_blob *
tg_cache_blob_new(const void *data, size_t len)
{
	struct tg_cache_blob *b = malloc(sizeof(*b) + len + 1);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	memcpy(b->data, data, len);
	b->data[len] = '\0';
	return b;
}

struct tg_cache_blob *
tg_cache_blob_ref(struct tg_cache_blob *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void
tg_cache_blob_unref(struct tg_cache_blob *b)
{
	if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

/* --- shards --------------------------------------------------------------- */

static size_t
buckets_for(size_t shard_bytes)
{
	size_t n = MIN_BUCKETS;

	while (n < MAX_BUCKETS && n * BYTES_PER_BUCKET < shard_bytes)
		n <<= 1;
	return n;
}

/* The key is a SHA-256, so any of its bytes are evenly spread: the first
 * picks the shard and the next eight the bucket. */
static struct shard *
shard_of(struct tg_cache_memory *m, const unsigned char *key)
{
	return &m->shards[key[0] % TG_CACHE_MEMORY_SHARDS];
}

static size_t
bucket_of(const struct shard *s, const unsigned char *key)
{
	uint64_t h;

	memcpy(&h, key + 1, sizeof(h));
	return (size_t)h & s->bucket_mask;
}

static struct mem_entry *
shard_find(struct shard *s, const unsigned char *key)
{
	struct mem_entry *e = s->buckets[bucket_of(s, key)];

	while (e != NULL && memcmp(e->key, key, TG_CACHE_KEY_LEN) != 0)
		e = e->chain;
	return e;
}

/* Take e out of its bucket and the LRU list; the caller frees it after
 * releasing the lock. */
static void
shard_unlink(struct shard *s, struct mem_entry *e)
{
	struct mem_entry **link = &s->buckets[bucket_of(s, e->key)];

	while (*link != e)
		link = &(*link)->chain;
	*link = e->chain;
	e->chain = NULL;
	TAILQ_REMOVE(&s->lru, e, lru);
	s->bytes -= e->charge;
	s->entries--;
}

static void
shard_link(struct shard *s, struct mem_entry *e)
{
	struct mem_entry **head = &s->buckets[bucket_of(s, e->key)];

	e->chain = *head;
	*head = e;
	TAILQ_INSERT_HEAD(&s->lru, e, lru);
	s->bytes += e->charge;
	s->entries++;
}

/* Free a list of entries linked through chain; called without the lock. */
static void
free_entries(struct mem_entry *list)
{
	while (list != NULL) {
		struct mem_entry *next = list->chain;

		tg_cache_blob_unref(list->value);
		free(list);
		list = next;
	}
}

static int
shard_init(struct shard *s, size_t max_bytes)
{
	size_t n = buckets_for(max_bytes);

	s->buckets = calloc(n, sizeof(*s->buckets));
	if (s->buckets == NULL)
		return -1;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s->buckets);
		s->buckets = NULL;
		return -1;
	}
	s->bucket_mask = n - 1;
	s->max_bytes = max_bytes;
	TAILQ_INIT(&s->lru);
	return 0;
}

static void
shard_destroy(struct shard *s)
{
	struct mem_entry *e;

	if (s->buckets == NULL)
		return;
	while ((e = TAILQ_FIRST(&s->lru)) != NULL) {
		shard_unlink(s, e);
		free_entries(e);
	}
	free(s->buckets);
	pthread_mutex_destroy(&s->lock);
}

/* --- the store ------------------------------------------------------------ */

static void
memory_free(struct tg_cache_memory *m)
{
	for (size_t i = 0; i < TG_CACHE_MEMORY_SHARDS; i++)
		shard_destroy(&m->shards[i]);
	free(m->shards);
	free(m);
}

struct tg_cache_memory *
tg_cache_memory_new(size_t max_bytes)
{
	struct tg_cache_memory *m = calloc(1, sizeof(*m));
	void *shards = NULL;

	if (m == NULL)
		return NULL;
	m->refs = 1;
	m->max_bytes = max_bytes;

	/* Each shard on its own cache lines, so that two workers busy on two
	 * shards do not slow each other down through false sharing. */
	if (posix_memalign(&shards, CACHE_LINE,
	                   TG_CACHE_MEMORY_SHARDS * sizeof(struct shard)) != 0) {
		free(m);
		return NULL;
	}
	memset(shards, 0, TG_CACHE_MEMORY_SHARDS * sizeof(struct shard));
	m->shards = shards;

	for (size_t i = 0; i < TG_CACHE_MEMORY_SHARDS; i++) {
		if (shard_init(&m->shards[i], max_bytes / TG_CACHE_MEMORY_SHARDS) != 0) {
			memory_free(m);
			return NULL;
		}
	}
	return m;
}

struct tg_cache_memory *
tg_cache_memory_acquire(size_t max_bytes)
{
	struct tg_cache_memory *m;

	pthread_mutex_lock(&registry_lock);
	if (registry != NULL && registry->max_bytes == max_bytes) {
		m = registry;
		m->refs++;
	} else {
		m = tg_cache_memory_new(max_bytes);
		if (m != NULL)
			registry = m;
	}
	pthread_mutex_unlock(&registry_lock);
	return m;
}

struct tg_cache_memory *
tg_cache_memory_ref(struct tg_cache_memory *m)
{
	pthread_mutex_lock(&registry_lock);
	m->refs++;
	pthread_mutex_unlock(&registry_lock);
	return m;
}

/* The count drops under registry_lock, so tg_cache_memory_acquire() cannot
 * hand out a store that is being freed. */
void
tg_cache_memory_unref(struct tg_cache_memory *m)
{
	int last;

	if (m == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	assert(m->refs > 0);
	last = --m->refs == 0;
	if (last && registry == m)
		registry = NULL;
	pthread_mutex_unlock(&registry_lock);
	if (last)
		memory_free(m);
}

size_t
tg_cache_memory_max_bytes(const struct tg_cache_memory *m)
{
	return m->max_bytes;
}

struct tg_cache_blob *
tg_cache_memory_get(struct tg_cache_memory *m, const unsigned char key[TG_CACHE_KEY_LEN],
                    uint64_t now_ms)
{
	struct shard *s = shard_of(m, key);
	struct tg_cache_blob *value = NULL;
	struct mem_entry *expired = NULL;
	struct mem_entry *e;

	pthread_mutex_lock(&s->lock);
	e = shard_find(s, key);
	if (e != NULL && e->expires_ms <= now_ms) {
		shard_unlink(s, e);
		s->expirations++;
		expired = e;
		e = NULL;
	}
	if (e != NULL) {
		TAILQ_REMOVE(&s->lru, e, lru);
		TAILQ_INSERT_HEAD(&s->lru, e, lru);
		value = tg_cache_blob_ref(e->value);
		s->hits++;
	} else {
		s->misses++;
	}
	pthread_mutex_unlock(&s->lock);

	free_entries(expired);
	return value;
}

/* Unlink up to EXPIRED_SWEEP expired entries from the LRU end, then the
 * least recently used ones while the shard is over its bound. Returns the
 * unlinked entries, for freeing after the lock is released. */
static struct mem_entry *
shard_make_room(struct shard *s, uint64_t now_ms)
{
	struct mem_entry *removed = NULL;
	struct mem_entry *e;

	for (int i = 0; i < EXPIRED_SWEEP; i++) {
		e = TAILQ_LAST(&s->lru, mem_lru);
		if (e == NULL || e->expires_ms > now_ms)
			break;
		shard_unlink(s, e);
		s->expirations++;
		e->chain = removed;
		removed = e;
	}

	while (s->bytes > s->max_bytes) {
		e = TAILQ_LAST(&s->lru, mem_lru);
		assert(e != NULL);
		shard_unlink(s, e);
		s->evictions++;
		e->chain = removed;
		removed = e;
	}
	return removed;
}

int
tg_cache_memory_put(struct tg_cache_memory *m, const unsigned char key[TG_CACHE_KEY_LEN],
                    struct tg_cache_blob *value, uint64_t ttl_ms, uint64_t now_ms)
{
	struct shard *s = shard_of(m, key);
	size_t charge = sizeof(struct mem_entry) + sizeof(*value) + value->len + 1;
	struct mem_entry *removed, *old, *e;

	if (charge > s->max_bytes) {
		pthread_mutex_lock(&s->lock);
		s->rejected++;
		pthread_mutex_unlock(&s->lock);
		return -1;
	}

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -1;
	memcpy(e->key, key, TG_CACHE_KEY_LEN);
	e->expires_ms = now_ms + ttl_ms;
	e->charge = charge;
	e->value = tg_cache_blob_ref(value);

	pthread_mutex_lock(&s->lock);
	old = shard_find(s, key);
	if (old != NULL)
		shard_unlink(s, old);
	shard_link(s, e);
	s->inserts++;
	removed = shard_make_room(s, now_ms);
	pthread_mutex_unlock(&s->lock);

	free_entries(old);
	free_entries(removed);
	return 0;
}

void
tg_cache_memory_stats(struct tg_cache_memory *m, struct tg_cache_memory_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < TG_CACHE_MEMORY_SHARDS; i++) {
		struct shard *s = &m->shards[i];

		pthread_mutex_lock(&s->lock);
		out->entries += s->entries;
		out->bytes += s->bytes;
		out->hits += s->hits;
		out->misses += s->misses;
		out->inserts += s->inserts;
		out->evictions += s->evictions;
		out->expirations += s->expirations;
		out->rejected += s->rejected;
		pthread_mutex_unlock(&s->lock);
	}
}
