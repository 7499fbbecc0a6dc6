/*
 * Backend host names, resolved once per TTL by each worker.
 *
 * A worker keeps one entry per host name that a backend URL gives. An
 * entry contains the addresses of the last good answer, A records first, and
 * is fresh for the answer's TTL, clamped to the config's resolver.min_ttl
 * and resolver.max_ttl. A connect that finds the entry expired starts one
 * background refresh and goes on with the old addresses. A refresh that
 * fails keeps them up to resolver.max_stale past their expiry, retries
 * after min_ttl, and is logged once when it starts failing and once when it
 * recovers. A connect that finds no usable address waits for the one query
 * in flight, which it starts if there is none. When a query for the name
 * failed less than resolver.negative_ttl ago, it fails at once with that
 * query's error instead, so a name that does not resolve is not queried
 * for every request.
 *
 * Each worker keeps its own cache, so N workers send up to N queries per
 * TTL. A shared cache would put a lock, or messages between workers, on the
 * connect path, and would have to wake waiters on other workers' event
 * loops, to save a few queries per TTL.
 *
 * Names in the hosts file (/etc/hosts) are answered from it, as libevent's
 * getaddrinfo does, and never expire: the file is read once per worker, as
 * it was before this cache.
 *
 * A entries go first, and connects rotate over them; AAAA entries serve
 * only when the answer has no A record, or after every A address failed a
 * connect (tg_resolve_fallback). A container that resolves AAAA records
 * often has no IPv6 route, and an IPv4 connect works wherever the name has
 * an A record.
 *
 * Each name counts its queries, failed queries and connects that used an
 * expired answer in the counters of /metrics (metrics.h), which every
 * worker shares.
 *
 * Everything here runs on the worker's thread and takes no lock, but for
 * the registry lock once per name and worker, to find its counters.
 */
#ifndef TOLLGATE_RESOLVE_H
#define TOLLGATE_RESOLVE_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "config-t.h"

struct event_base;
struct evdns_base;
struct evdns_request;
struct tg_resolver;
struct tg_resolver_counters;

/* Addresses kept per host; an answer with more keeps its first ones. */
#define TG_HOST_ADDRS_MAX 16

struct tg_resolve_wait;

/* Called once for a wait that tg_resolve() left pending: with an address
 * (port set) and error NULL, or with addr NULL and the resolver's error
 * text, such as "name does not exist". The wait is no longer
 * linked, and the callback may free it or wait again. */
typedef void tg_resolve_done_fn(struct tg_resolve_wait *wait, const struct sockaddr *addr,
                                int addr_len, const char *error);

/* A connect waiting for an answer; the caller embeds it, zeroed. */
struct tg_resolve_wait {
	TAILQ_ENTRY(tg_resolve_wait) link;
	struct tg_host_entry *entry;    /* waited on; NULL when not waiting */
	uint64_t query;                 /* the query it waits for */
	int port;                       /* set in the address it gets */
	unsigned index;                 /* of that address in the answer, for
	                                   tg_resolve_fallback() */
	tg_resolve_done_fn *done;
};

TAILQ_HEAD(tg_resolve_waits, tg_resolve_wait);

/* One host's cache entry. The fields below "answer" are the pure cache
 * state that the tg_host_* functions keep; unit tests drive them with
 * their own clock. */
struct tg_host_entry {
	struct tg_host_entry *next;
	struct tg_resolver *resolver;
	char *host;
	int from_hosts_file;            /* static: never refreshed */
	struct tg_resolver_counters *counters;  /* for /metrics; NULL for none */

	/* The answer in use. */
	struct sockaddr_storage addrs[TG_HOST_ADDRS_MAX];       /* port 0 */
	int addr_lens[TG_HOST_ADDRS_MAX];
	unsigned n_addrs;
	unsigned n_preferred;           /* the first ones, rotated over */
	unsigned next_addr;
	uint64_t expires_ns;            /* the answer's TTL ends */
	uint64_t fresh_until_ns;        /* a lookup after it refreshes */
	uint64_t usable_until_ns;       /* the addresses serve until then */
	uint64_t failed_until_ns;       /* without addresses, connects fail at
	                                   once until then (negative_ttl) */
	int failing;                    /* the last query failed (logged) */

	/* The query in flight, gathered from its A and AAAA halves. */
	uint64_t query;                 /* number of the last query started */
	int pending;                    /* halves still to answer, 0 to 2 */
	struct evdns_request *requests[2];
	struct sockaddr_storage new_addrs[2][TG_HOST_ADDRS_MAX];
	unsigned n_new[2];              /* [0] A, [1] AAAA */
	int new_ttl;                    /* seconds; lowest of the halves */
	int new_negative_ttl;           /* seconds a failed half may be kept
	                                   (its SOA record), or -1 */
	int new_error;                  /* DNS_ERR_ of a failed half */

	struct tg_resolve_waits waits;
};

/* --- the cache state, without I/O ------------------------------------------ */

/* The action a connect takes with an entry at a given time. */
enum tg_host_use {
	TG_HOST_USE,                    /* take an address now */
	TG_HOST_USE_AND_REFRESH,        /* take one, and start a query */
	TG_HOST_WAIT,                   /* wait for the query in flight */
	TG_HOST_WAIT_AND_QUERY,         /* start a query and wait for it */
	TG_HOST_FAIL,                   /* fail with the last query's error */
};

enum tg_host_use tg_host_use_at(const struct tg_host_entry *e, uint64_t now_ns);

/* Begin gathering a new answer; returns its query number. */
uint64_t tg_host_query_begin(struct tg_host_entry *e);

/* Record one half of the answer: family AF_INET or AF_INET6, result a
 * DNS_ERR_ code, addrs count in_addr or in6_addr values. */
void tg_host_query_half(struct tg_host_entry *e, int family, int result, int count,
                        int ttl, const void *addrs);

/* The change in an entry when a query ended. */
enum tg_host_change {
	TG_HOST_SAME,
	TG_HOST_STARTS_FAILING,         /* first failure after a good answer or none */
	TG_HOST_RECOVERS,               /* first good answer after failures */
};

/* End the query. A good answer (one address or more) replaces the
 * addresses. A failure keeps them, within max_stale, and sets the retry
 * after min_ttl, or, when there are none, fails connects for negative_ttl,
 * or for the shorter time of the answer's SOA record (RFC 2308). */
enum tg_host_change tg_host_query_end(struct tg_host_entry *e, uint64_t now_ns,
                                      const struct tg_resolver_config *cfg);

/* Return 1 when a connect at now_ns that uses e's addresses uses them past
 * their TTL (while a refresh is under way, or failing within max_stale),
 * else 0. */
int tg_host_is_stale(const struct tg_host_entry *e, uint64_t now_ns);

/* Copy the next address of the rotation into out, with port, and return
 * its length; 0 when the entry has none. *index, when not NULL, receives
 * the address's place in the answer. */
int tg_host_pick(struct tg_host_entry *e, int port, struct sockaddr_storage *out,
                 unsigned *index);

/* Copy the address to try after `tries` connects failed, the first at
 * address first: the other A addresses in turn, then the AAAA ones.
 * Returns its length, or 0 when every address was tried. */
int tg_host_fallback(const struct tg_host_entry *e, unsigned first, unsigned tries, int port,
                     struct sockaddr_storage *out);

/* Count the addresses left to try after `tries` failed connects, the next
 * one included, within the family being tried: the A addresses (or the
 * only family) while tries is below their count, then the others. A
 * connect shares the time it has left among them. Returns 0 when every
 * address was tried. */
unsigned tg_host_left_in_family(const struct tg_host_entry *e, unsigned tries);

/* --- the worker's resolver ------------------------------------------------- */

/* Create the resolver of a worker. It queries the config's nameservers, or
 * those of /etc/resolv.conf when the config names none. Returns NULL after
 * logging why. */
struct tg_resolver *tg_resolver_new(struct event_base *base,
                                    const struct tg_resolver_config *cfg);

/* Free r and its entries; pending waits are dropped without a call. */
void tg_resolver_free(struct tg_resolver *r);

/* Let later queries use cfg's TTL bounds and negative_ttl (a reload); r
 * keeps a copy of the numbers, not the pointer. The nameservers stay those
 * r was made with. */
void tg_resolver_set_bounds(struct tg_resolver *r, const struct tg_resolver_config *cfg);

/*
 * Find an address of host for a connect. Returns its length, with *out
 * filled, port set and wait->index its place; or 0 when wait was linked
 * and its done callback will follow; or -1 with *error set to the
 * resolver's error text, a static string.
 */
int tg_resolve(struct tg_resolver *r, const char *host, int port,
               struct sockaddr_storage *out, struct tg_resolve_wait *wait,
               const char **error);

/* tg_host_fallback() on host's entry: the next address after a failed
 * connect, or 0 when there is none left to try. */
int tg_resolve_fallback(struct tg_resolver *r, const char *host, unsigned first,
                        unsigned tries, int port, struct sockaddr_storage *out);

/* Return tg_host_left_in_family() of host's entry, or 0 when host has none. */
unsigned tg_resolve_left_in_family(struct tg_resolver *r, const char *host, unsigned tries);

/* Unlink wait if it waits; its callback will not be called. */
void tg_resolve_cancel(struct tg_resolve_wait *wait);

#endif
