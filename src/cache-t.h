/*
 * Types of the response cache: its settings in a configuration snapshot,
 * the key, and the stored value.
 */
#ifndef TOLLGATE_CACHE_T_H
#define TOLLGATE_CACHE_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config-t.h"

#define TG_CACHE_KEY_LEN 32             /* SHA-256 */
#define TG_CACHE_KEY_HEX_LEN 64

enum tg_cache_store_kind {
	TG_CACHE_STORE_MEMORY,          /* in this process, shared by its workers */
	TG_CACHE_STORE_REDIS,           /* one Redis shared by many instances */
};

struct tg_cache_memory;

/* The top-level "cache" section. Immutable once the snapshot is published. */
struct tg_cache_config {
	int store;                      /* enum tg_cache_store_kind */
	size_t max_bytes;               /* memory store bound, bookkeeping included */
	tg_msec_t ttl;                  /* default entry lifetime */

	char *redis_url;                /* as written, without the password */
	char *redis_host;               /* numeric address or a name */
	int redis_port;
	int redis_db;                   /* SELECT after connecting; 0 skips it */
	char *redis_user;               /* AUTH user (Redis 6 ACL); NULL for none */
	char *redis_password;           /* secret: never logged; NULL for no AUTH */
	tg_msec_t timeout;              /* one Redis command, sent to reply */
	size_t max_entry_bytes;         /* largest encoded entry sent to Redis */
	tg_msec_t connect_timeout;      /* TCP connect to Redis */

	char *tenant_header;            /* splits a credential's tenant; NULL: none */
	char **ignore_fields;           /* top-level request fields left out of the key */
	size_t n_ignore_fields;

	struct tg_cache_memory *memory; /* the store, a reference; NULL for redis */
};

/* A route's "cache": true, or an object that overrides the ttl. A route
 * whose "cache" is absent or false has no such struct and caches nothing. */
struct tg_route_cache_config {
	tg_msec_t ttl;                  /* 0: the top-level ttl */
	char *filters;                  /* the config of the route's filters on
	                                   the response side, as a JSON array
	                                   text; NULL when it has none */
};

/*
 * A stored value: an entry as cache-entry.c encodes it. Immutable and
 * reference-counted, so a reader of the memory store keeps using it after
 * the store has evicted it, and no copy is made under the shard lock.
 */
struct tg_cache_blob {
	atomic_size_t refs;
	size_t len;
	char data[];                    /* len bytes, then a NUL */
};

#endif
