/*
 * Types of the loaded configuration.
 *
 * A struct tg_config is an immutable snapshot: it is built and validated
 * whole by tg_config_load(), then shared by reference between the workers
 * and the requests that started under it. Nothing writes to a snapshot after
 * it is published, so readers need no lock; the reference count is atomic.
 */
#ifndef TOLLGATE_CONFIG_T_H
#define TOLLGATE_CONFIG_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

/* Durations are kept in milliseconds, sizes in bytes. */
typedef uint64_t tg_msec_t;

/*
 * Sections owned by feature modules, which define these structs in their
 * own *-t.h headers and parse and free them as config-parse.h describes.
 * A pointer is NULL when its section is absent from the file and the
 * feature gives it no default.
 */
struct tg_cache_config;
struct tg_filters_config;
struct tg_tracing_config;
struct tg_pricing_config;
struct tg_sessions_config;
struct tg_route_cache_config;
struct tg_route_filters_config;
struct tg_gateway_keys;
struct tg_route_auth;
#include "failover-t.h"

struct tg_listen {
	char *address;          /* "host:port" as written, for messages */
	char *host;             /* numeric or name; "[::1]" is stored as "::1" */
	char *port;
	char *tls_cert;         /* PEM paths; both NULL for plain HTTP */
	char *tls_key;
	SSL_CTX *tls_ctx;       /* made from them at each load (tls-config.h);
	                           NULL for plain HTTP and the admin listener */
};

/* The server checks of an https client, shared by backends and the
 * tracing exporter, which parse them from the same table. */
struct tg_tls_client_config {
	char *ca_file;          /* PEM bundle; NULL uses the system store */
	int verify;             /* verify certificate and name; default 1 */
};

struct tg_backend_timeouts {
	tg_msec_t connect;      /* TCP and TLS handshake */
	tg_msec_t first_byte;   /* request sent to first response byte */
	tg_msec_t idle;         /* longest silence inside a response body */
};

/* The request header that carries a backend's api_key. Whichever it is,
 * the client's own Authorization, x-api-key and api-key headers stay out of
 * the request, so that no client credential reaches the backend. */
enum tg_key_header {
	TG_KEY_AUTHORIZATION,   /* "Authorization: Bearer KEY": OpenAI and most others */
	TG_KEY_X_API_KEY,       /* "x-api-key: KEY": Anthropic */
	TG_KEY_API_KEY,         /* "api-key: KEY": Azure OpenAI */
};

struct tg_backend {
	char *name;
	char *url;              /* as written, without credentials */
	int tls;                /* 1 for https:// */
	char *host;             /* connect target and TLS SNI name */
	char *port;
	int port_number;        /* the same, 1 to 65535, parsed once */
	struct sockaddr_storage addr;   /* host and port, when host is a
	                                   numeric IPv4 or IPv6 address */
	int addr_len;           /* of addr; 0 when host is a name, which each
	                           worker resolves once per TTL (resolve.h) */
	char *host_header;      /* value for the upstream Host header */
	char *base_path;        /* URL path prefix without trailing '/', or "" */
	char *api_key;          /* secret: never logged; NULL keeps the client's */
	enum tg_key_header api_key_header;  /* where api_key goes */
	struct tg_tls_client_config tls_config;  /* "tls", for https:// */
	SSL_CTX *tls_ctx;       /* made from tls_config at each load for
	                           https://, else NULL (tls-config.h) */
	struct tg_backend_timeouts timeouts;
	size_t max_idle;        /* pooled idle connections per worker */
	tg_msec_t idle_keepalive; /* how long a pooled connection may idle */
	int stream_usage;       /* the gateway may add stream_options.include_usage */

	struct tg_health_policy *health;
	struct tg_backend_state *state; /* shared health; set by tg_health_attach */
};

/* The test that a routes[].match.headers entry applies to a request. */
enum tg_header_test {
	TG_HEADER_EQUALS,       /* present, with exactly this value */
	TG_HEADER_PRESENT,      /* present, with any value */
	TG_HEADER_ABSENT,       /* not present at all */
};

struct tg_header_match {
	char *name;             /* a token; compared in any case */
	size_t name_len;
	enum tg_header_test test;
	char *value;            /* TG_HEADER_EQUALS only; else NULL */
};

struct tg_route {
	char *name;
	char *match_path;       /* exact request path; NULL matches any */
	char *match_path_prefix; /* whole leading segments of the path; NULL:
	                            any. Never set together with match_path. */
	size_t match_path_prefix_len;
	uint64_t match_methods; /* bit (1 << enum llhttp_method) for each
	                           method taken; 0 takes any */
	char *match_model;      /* exact or fnmatch(3) glob; NULL matches any */
	size_t n_match_headers;
	struct tg_header_match *match_headers;  /* all must hold */
	size_t n_tiers;
	struct tg_tier *tiers;          /* tried in order */
	size_t n_backends;
	struct tg_backend **backends;   /* every tier's members, in order */

	struct tg_route_cache_config *cache;
	struct tg_route_filters_config *filters;
	struct tg_retry_policy *retry;
	struct tg_route_auth *auth;     /* NULL: a key required when keys exist */
};

struct tg_limits {
	size_t max_body;                /* request body; default 32 MiB */
	size_t max_header;              /* request line plus headers; default 64 KiB */
	size_t max_response_body;       /* buffered non-streaming body; default 64 MiB */
	tg_msec_t client_header_timeout; /* read the request head; default 10s */
	tg_msec_t client_body_timeout;  /* gap between body reads; default 30s */
	tg_msec_t keepalive_timeout;    /* idle client connection; default 75s */
	tg_msec_t send_timeout;         /* no write progress to the client; 60s */
};

/* The "resolver" object: how workers look backend host names up. */
struct tg_resolver_config {
	size_t n_nameservers;
	char **nameservers;     /* "IP" or "IP:port"; none: /etc/resolv.conf */
	tg_msec_t min_ttl;      /* answers are kept at least this long */
	tg_msec_t max_ttl;      /* ...and at most this long */
	tg_msec_t max_stale;    /* a failing refresh keeps the last answer this
	                           long past its expiry */
	tg_msec_t negative_ttl; /* a name without addresses whose query failed
	                           fails connects at once for this long */
};

struct tg_config {
	atomic_int refcount;
	char *path;                     /* file it was loaded from */

	size_t n_listen;
	struct tg_listen *listen;
	struct tg_listen admin;         /* default 127.0.0.1:9090; never TLS */
	size_t admin_max_connections;   /* admin connections open at a time */
	tg_msec_t admin_idle_timeout;   /* an admin connection without traffic */
	int workers;                    /* default: online processors */
	tg_msec_t drain_timeout;        /* SIGTERM grace for requests in flight */
	int log_level;                  /* enum tg_log_level: the least severe
	                                   error-log level written */
	char *access_log;               /* path, "-" for stdout, NULL for off */
	size_t access_log_buffer;       /* a worker writes its lines at this size */
	tg_msec_t access_log_flush;     /* ...or when the oldest is this old */

	size_t n_backends;
	struct tg_backend *backends;
	size_t n_routes;
	struct tg_route *routes;

	struct tg_limits limits;
	struct tg_resolver_config resolver;
	struct tg_gateway_keys *gateway_keys;   /* NULL: callers need no key */

	struct tg_cache_config *cache;
	struct tg_filters_config *filters;
	struct tg_tracing_config *tracing;
	struct tg_pricing_config *pricing;
	struct tg_sessions_config *sessions;

	int routes_read_request_tree;   /* a route has a plugin or moderation
	                                   filter on the request side, which
	                                   read the body's tree */
	int routes_screen_request_texts;        /* a route has a regex filter
	                                           on the request side */
};

#endif
