/*
 * Backend host names, resolved once per TTL by each worker: see resolve.h.
 *
 * Entries live in a list: a config names a few backend hosts, and the
 * list is walked only when a connection opens to a named host, never for
 * a pooled connection or a numeric one.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "resolve.h"

struct tg_resolver {
	struct evdns_base *dns;         /* queries the nameservers */
	struct evdns_base *hosts;       /* no nameserver: reads the hosts file */
	struct tg_host_entry *entries;
	struct tg_resolver_config bounds;       /* TTL numbers; no nameservers */
};

/* --- the cache state --------------------------------------------------------- */

enum tg_host_use
tg_host_use_at(const struct tg_host_entry *e, uint64_t now_ns)
{
	int usable = e->n_addrs > 0 && (e->from_hosts_file || now_ns < e->usable_until_ns);

	if (!usable && e->pending == 0 && now_ns < e->failed_until_ns)
		return TG_HOST_FAIL;
	if (!usable)
		return e->pending > 0 ? TG_HOST_WAIT : TG_HOST_WAIT_AND_QUERY;
	if (e->from_hosts_file || e->pending > 0 || now_ns < e->fresh_until_ns)
		return TG_HOST_USE;
	return TG_HOST_USE_AND_REFRESH;
}

uint64_t
tg_host_query_begin(struct tg_host_entry *e)
{
	e->pending = 2;
	e->n_new[0] = 0;
	e->n_new[1] = 0;
	e->new_ttl = -1;
	e->new_negative_ttl = -1;
	e->new_error = DNS_ERR_NONE;
	return ++e->query;
}

/* Keep count addresses of family into the half's slots. */
static void
keep_addresses(struct tg_host_entry *e, int family, int count, const void *addrs)
{
	int half = family == AF_INET ? 0 : 1;

	for (int i = 0; i < count && e->n_new[half] < TG_HOST_ADDRS_MAX; i++) {
		struct sockaddr_storage *ss = &e->new_addrs[half][e->n_new[half]++];

		memset(ss, 0, sizeof(*ss));
		if (family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss;

			sin->sin_family = AF_INET;
			sin->sin_addr = ((const struct in_addr *)addrs)[i];
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = ((const struct in6_addr *)addrs)[i];
		}
	}
}

void
tg_host_query_half(struct tg_host_entry *e, int family, int result, int count,
                   int ttl, const void *addrs)
{
	assert(e->pending > 0);
	e->pending--;

	/* libevent reports the TTL of a negative answer's SOA record, and 0
	 * when there is none, as after a timeout. */
	if (result != DNS_ERR_NONE && ttl > 0 &&
	    (e->new_negative_ttl < 0 || ttl < e->new_negative_ttl))
		e->new_negative_ttl = ttl;

	/* NODATA is a name without records of this family: no error. */
	if (result != DNS_ERR_NONE && result != DNS_ERR_NODATA) {
		if (e->new_error == DNS_ERR_NONE || family == AF_INET)
			e->new_error = result;
		return;
	}
	if (result == DNS_ERR_NODATA || count <= 0)
		return;
	keep_addresses(e, family, count, addrs);
	if (e->new_ttl < 0 || ttl < e->new_ttl)
		e->new_ttl = ttl < 0 ? 0 : ttl;
}

/* The answer's TTL within the config's bounds, in nanoseconds. */
static uint64_t
clamped_ttl_ns(int ttl, const struct tg_resolver_config *cfg)
{
	uint64_t ms = (uint64_t)ttl * 1000;

	if (ms < cfg->min_ttl)
		ms = cfg->min_ttl;
	if (ms > cfg->max_ttl)
		ms = cfg->max_ttl;
	return ms * TG_NS_PER_MS;
}

/* Put the gathered answer in place: A addresses first, then AAAA. */
static void
take_new_answer(struct tg_host_entry *e)
{
	unsigned n = 0;

	for (int half = 0; half < 2; half++) {
		for (unsigned i = 0; i < e->n_new[half] && n < TG_HOST_ADDRS_MAX; i++) {
			e->addrs[n] = e->new_addrs[half][i];
			e->addr_lens[n] = half == 0 ? (int)sizeof(struct sockaddr_in)
			                            : (int)sizeof(struct sockaddr_in6);
			n++;
		}
	}
	e->n_addrs = n;
	e->n_preferred = e->n_new[0] > 0 ? e->n_new[0] : n;
	if (e->n_preferred > n)
		e->n_preferred = n;
	e->next_addr = 0;
}

/* How long a failed query of e, which has no address, fails connects:
 * negative_ttl, or the SOA record's time of the answer when shorter. */
static uint64_t
negative_time_ms(const struct tg_host_entry *e, const struct tg_resolver_config *cfg)
{
	uint64_t soa_ms = (uint64_t)e->new_negative_ttl * 1000;

	if (e->new_negative_ttl > 0 && soa_ms < cfg->negative_ttl)
		return soa_ms;
	return cfg->negative_ttl;
}

enum tg_host_change
tg_host_query_end(struct tg_host_entry *e, uint64_t now_ns,
                  const struct tg_resolver_config *cfg)
{
	int was_failing = e->failing;

	assert(e->pending == 0);
	if (e->n_new[0] + e->n_new[1] > 0) {
		take_new_answer(e);
		e->fresh_until_ns = now_ns + clamped_ttl_ns(e->new_ttl, cfg);
		e->expires_ns = e->fresh_until_ns;
		e->usable_until_ns = e->fresh_until_ns + cfg->max_stale * TG_NS_PER_MS;
		e->failed_until_ns = 0;
		e->failing = 0;
		return was_failing ? TG_HOST_RECOVERS : TG_HOST_SAME;
	}

	/* Keep the old addresses until usable_until_ns, and ask again after
	 * min_ttl rather than at every connect. */
	if (e->new_error == DNS_ERR_NONE)
		e->new_error = DNS_ERR_NODATA;
	e->fresh_until_ns = now_ns + cfg->min_ttl * TG_NS_PER_MS;
	if (e->n_addrs == 0)
		e->failed_until_ns = now_ns + negative_time_ms(e, cfg) * TG_NS_PER_MS;
	e->failing = 1;
	return was_failing ? TG_HOST_SAME : TG_HOST_STARTS_FAILING;
}

int
tg_host_is_stale(const struct tg_host_entry *e, uint64_t now_ns)
{
	return !e->from_hosts_file && e->n_addrs > 0 && now_ns >= e->expires_ns;
}

/* Copy address i of e into out with port; return its length. */
static int
copy_address(const struct tg_host_entry *e, unsigned i, int port, struct sockaddr_storage *out)
{
	*out = e->addrs[i];
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
	return e->addr_lens[i];
}

int
tg_host_pick(struct tg_host_entry *e, int port, struct sockaddr_storage *out,
             unsigned *index)
{
	if (e->n_addrs == 0)
		return 0;

	unsigned i = e->next_addr++ % e->n_preferred;

	if (index != NULL)
		*index = i;
	return copy_address(e, i, port, out);
}

int
tg_host_fallback(const struct tg_host_entry *e, unsigned first, unsigned tries, int port,
                 struct sockaddr_storage *out)
{
	unsigned i;

	/* A refresh may have shortened the answer since the first connect. */
	if (tries >= e->n_addrs || first >= e->n_preferred)
		return 0;
	if (tries < e->n_preferred)
		i = (first + tries) % e->n_preferred;
	else
		i = tries;
	return copy_address(e, i, port, out);
}

unsigned
tg_host_left_in_family(const struct tg_host_entry *e, unsigned tries)
{
	if (tries >= e->n_addrs)
		return 0;
	if (tries < e->n_preferred)
		return e->n_preferred - tries;
	return e->n_addrs - tries;
}

/* --- queries ----------------------------------------------------------------- */

static void query_start(struct tg_host_entry *e);

/* Log an entry's change of state: once when its queries start failing,
 * once when they succeed again. */
static void
log_change(const struct tg_host_entry *e, enum tg_host_change change)
{
	const struct tg_resolver_config *b = &e->resolver->bounds;

	if (change == TG_HOST_RECOVERS) {
		tg_info("resolver: %s resolves again", e->host);
	} else if (change == TG_HOST_STARTS_FAILING && e->n_addrs > 0) {
		tg_warn("resolver: cannot resolve %s: %s; the last answer's addresses "
		        "stay in use for up to %llu s more (resolver.max_stale)",
		        e->host, evdns_err_to_string(e->new_error),
		        (unsigned long long)(b->max_stale / 1000));
	} else if (change == TG_HOST_STARTS_FAILING && b->negative_ttl > 0) {
		tg_warn("resolver: cannot resolve %s: %s; connections to it fail at once "
		        "for %llu ms before it is asked again (resolver.negative_ttl)",
		        e->host, evdns_err_to_string(e->new_error),
		        (unsigned long long)negative_time_ms(e, b));
	} else if (change == TG_HOST_STARTS_FAILING) {
		tg_warn("resolver: cannot resolve %s: %s", e->host,
		        evdns_err_to_string(e->new_error));
	}
}

/* Serve the connects that waited for query, and only them: one that
 * starts waiting from inside a callback waits for a later query. */
static void
serve_waits(struct tg_host_entry *e, uint64_t query)
{
	struct tg_resolve_wait *wait;
	const char *error = evdns_err_to_string(e->new_error);

	while ((wait = TAILQ_FIRST(&e->waits)) != NULL && wait->query <= query) {
		struct sockaddr_storage ss;
		int len;

		TAILQ_REMOVE(&e->waits, wait, link);
		wait->entry = NULL;
		len = tg_host_pick(e, wait->port, &ss, &wait->index);
		wait->done(wait, len > 0 ? (struct sockaddr *)&ss : NULL, len,
		           len > 0 ? NULL : error);
	}
}

static void
query_half_done(struct tg_host_entry *e, int family, int result, int count, int ttl,
                void *addresses)
{
	e->requests[family == AF_INET ? 0 : 1] = NULL;
	tg_host_query_half(e, family, result, count, ttl, addresses);
	if (e->pending > 0)
		return;

	log_change(e, tg_host_query_end(e, tg_now_ns(), &e->resolver->bounds));
	if (e->failing)
		tg_metrics_resolver_count(e->counters, TG_RESOLVER_FAILURE);
	serve_waits(e, e->query);
}

static void
answer_a_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	(void)type;
	query_half_done(arg, AF_INET, result, count, ttl, addresses);
}

static void
answer_aaaa_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	(void)type;
	query_half_done(arg, AF_INET6, result, count, ttl, addresses);
}

/* Ask for the A and the AAAA records of e's host at once. A half that
 * cannot be sent counts as failed. */
static void
query_start(struct tg_host_entry *e)
{
	struct evdns_base *dns = e->resolver->dns;

	tg_metrics_resolver_count(e->counters, TG_RESOLVER_QUERY);
	tg_host_query_begin(e);
	e->requests[0] = evdns_base_resolve_ipv4(dns, e->host, 0, answer_a_cb, e);
	if (e->requests[0] == NULL)
		tg_host_query_half(e, AF_INET, DNS_ERR_UNKNOWN, 0, 0, NULL);
	e->requests[1] = evdns_base_resolve_ipv6(dns, e->host, 0, answer_aaaa_cb, e);
	if (e->requests[1] == NULL)
		query_half_done(e, AF_INET6, DNS_ERR_UNKNOWN, 0, 0, NULL);
}

/* --- entries ----------------------------------------------------------------- */

struct hosts_answer {
	struct tg_host_entry *entry;
	int found;
};

static void
hosts_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct hosts_answer *answer = arg;

	/* A cancelled lookup calls back with no answer, maybe after the
	 * caller's frame is gone: arg must not be touched then. */
	if (result != 0)
		return;
	for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		const void *addr = ai->ai_family == AF_INET
		                 ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
		                 : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;

		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			keep_addresses(answer->entry, ai->ai_family, 1, addr);
	}
	evutil_freeaddrinfo(res);
	answer->found = 1;
}

/*
 * Look e's host up in the hosts file. libevent reads the file only for
 * evdns_getaddrinfo(), which reports no TTL, so the lookup goes to a base
 * without nameservers. That base resolves a name of the file before
 * returning, and a lookup that would need a query is cancelled unsent.
 */
static void
look_up_hosts_file(struct tg_resolver *r, struct tg_host_entry *e)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct hosts_answer answer = {.entry = e};
	struct evdns_getaddrinfo_request *req;

	tg_host_query_begin(e);
	req = evdns_getaddrinfo(r->hosts, e->host, NULL, &hints, hosts_cb, &answer);
	if (req != NULL)
		evdns_getaddrinfo_cancel(req);
	e->pending = 0;
	if (!answer.found || e->n_new[0] + e->n_new[1] == 0)
		return;
	take_new_answer(e);
	e->from_hosts_file = 1;
}

static struct tg_host_entry *
find_entry(const struct tg_resolver *r, const char *host)
{
	for (struct tg_host_entry *e = r->entries; e != NULL; e = e->next) {
		if (strcmp(e->host, host) == 0)
			return e;
	}
	return NULL;
}

/* Find host's entry, or make it, or return NULL when out of memory. */
static struct tg_host_entry *
entry_get(struct tg_resolver *r, const char *host)
{
	struct tg_host_entry *e = find_entry(r, host);

	if (e != NULL)
		return e;

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->host = strdup(host);
	if (e->host == NULL) {
		free(e);
		return NULL;
	}
	e->resolver = r;
	TAILQ_INIT(&e->waits);
	look_up_hosts_file(r, e);

	/* A name of the hosts file is never queried: it gets no series. */
	if (!e->from_hosts_file)
		e->counters = tg_metrics_resolver_counters(host);
	e->next = r->entries;
	r->entries = e;
	return e;
}

/* Forget addresses past max_stale, saying so once. */
static void
drop_expired(struct tg_host_entry *e, uint64_t now_ns)
{
	if (e->n_addrs == 0 || e->from_hosts_file || now_ns < e->usable_until_ns)
		return;
	tg_warn("resolver: the addresses of %s are older than resolver.max_stale "
	        "allows; new connections wait for an answer", e->host);
	e->n_addrs = 0;
}

int
tg_resolve(struct tg_resolver *r, const char *host, int port,
           struct sockaddr_storage *out, struct tg_resolve_wait *wait,
           const char **error)
{
	struct tg_host_entry *e = entry_get(r, host);
	uint64_t now_ns = tg_now_ns();

	if (e == NULL) {
		*error = "out of memory for a resolver entry";
		return -1;
	}
	drop_expired(e, now_ns);

	switch (tg_host_use_at(e, now_ns)) {
	case TG_HOST_USE_AND_REFRESH:
		query_start(e);
		/* fall through */
	case TG_HOST_USE:
		if (tg_host_is_stale(e, now_ns))
			tg_metrics_resolver_count(e->counters, TG_RESOLVER_STALE);
		return tg_host_pick(e, port, out, &wait->index);
	case TG_HOST_WAIT_AND_QUERY:
		query_start(e);
		/* fall through */
	case TG_HOST_WAIT:
		break;
	case TG_HOST_FAIL:
		*error = evdns_err_to_string(e->new_error);
		return -1;
	}

	/* A query may have ended at once, with no nameserver to send it to. */
	if (e->pending == 0) {
		int len = tg_host_pick(e, port, out, &wait->index);

		if (len > 0)
			return len;
		*error = evdns_err_to_string(e->new_error);
		return -1;
	}
	wait->entry = e;
	wait->query = e->query;
	wait->port = port;
	TAILQ_INSERT_TAIL(&e->waits, wait, link);
	return 0;
}

int
tg_resolve_fallback(struct tg_resolver *r, const char *host, unsigned first,
                    unsigned tries, int port, struct sockaddr_storage *out)
{
	const struct tg_host_entry *e = find_entry(r, host);

	return e != NULL ? tg_host_fallback(e, first, tries, port, out) : 0;
}

unsigned
tg_resolve_left_in_family(struct tg_resolver *r, const char *host, unsigned tries)
{
	const struct tg_host_entry *e = find_entry(r, host);

	return e != NULL ? tg_host_left_in_family(e, tries) : 0;
}

void
tg_resolve_cancel(struct tg_resolve_wait *wait)
{
	if (wait->entry == NULL)
		return;
	TAILQ_REMOVE(&wait->entry->waits, wait, link);
	wait->entry = NULL;
}

/* --- the resolver ------------------------------------------------------------ */

void
tg_resolver_set_bounds(struct tg_resolver *r, const struct tg_resolver_config *cfg)
{
	r->bounds.min_ttl = cfg->min_ttl;
	r->bounds.max_ttl = cfg->max_ttl;
	r->bounds.max_stale = cfg->max_stale;
	r->bounds.negative_ttl = cfg->negative_ttl;
}

/* The base that sends queries: to the config's nameservers, or to those
 * of /etc/resolv.conf, with its search domains and options. */
static struct evdns_base *
new_query_base(struct event_base *base, const struct tg_resolver_config *cfg)
{
	struct evdns_base *dns;

	/* Without a usable resolv.conf the gateway still starts, as it did
	 * before this cache: names outside the hosts file then fail to resolve. */
	if (cfg->n_nameservers == 0) {
		dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (dns != NULL)
			return dns;
		tg_warn("resolver: cannot use /etc/resolv.conf; only names in the hosts "
		        "file resolve unless resolver.nameservers is set");
		return evdns_base_new(base, 0);
	}

	dns = evdns_base_new(base, 0);
	if (dns == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_nameservers; i++) {
		if (evdns_base_nameserver_ip_add(dns, cfg->nameservers[i]) != 0) {
			tg_error("resolver: cannot use nameserver %s", cfg->nameservers[i]);
			evdns_base_free(dns, 0);
			return NULL;
		}
	}
	return dns;
}

struct tg_resolver *
tg_resolver_new(struct event_base *base, const struct tg_resolver_config *cfg)
{
	struct tg_resolver *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	tg_resolver_set_bounds(r, cfg);
	r->dns = new_query_base(base, cfg);
	r->hosts = evdns_base_new(base, 0);
	if (r->dns == NULL || r->hosts == NULL) {
		tg_resolver_free(r);
		return NULL;
	}

	/* Without the file, names go to the nameservers, as they did. */
	if (evdns_base_load_hosts(r->hosts, NULL) != 0)
		tg_debug("resolver: no hosts file to read");
	return r;
}

void
tg_resolver_free(struct tg_resolver *r)
{
	struct tg_host_entry *e;

	if (r == NULL)
		return;

	/* Dropped queries call nothing back, so entries can go after. */
	if (r->dns != NULL)
		evdns_base_free(r->dns, 0);
	if (r->hosts != NULL)
		evdns_base_free(r->hosts, 0);
	while ((e = r->entries) != NULL) {
		r->entries = e->next;
		free(e->host);
		free(e);
	}
	free(r);
}
