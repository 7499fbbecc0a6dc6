/*
 * Loading and validation of the JSON configuration file: tollgate's own
 * sections and the snapshot's life cycle.
 *
 * Every setting is declared once, in the tables near the end of this file:
 * key, type, field, default, bounds and one line of help. The same tables
 * drive parsing, defaults, range checks, the list of valid keys in "unknown
 * key" messages and tg_config_print_settings(). Defaults are written as JSON
 * text and go through the same parser as values read from the file. The
 * machinery that reads the tables is in config-parse.c; feature modules hook
 * their own sections into these tables as config-parse.h describes.
 *
 * Errors do not stop the load. Each one is printed when found, parsing goes
 * on with the next value, and tg_config_load() returns NULL at the end if any
 * was printed, so one run lists everything the user has to fix.
 *
 * Secrets: a string value may come from the environment through ${NAME}.
 * Messages quote values as written in the file, never as expanded, and never
 * quote api_key at all, so neither an expanded value nor a key can reach the
 * error output.
 */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/http.h>
#include <event2/util.h>
#include <jansson.h>

#include "accesslog.h"
#include "auth-config.h"
#include "cache-config.h"
#include "config.h"
#include "config-parse.h"
#include "config-overflow.h"
#include "failover-config.h"
#include "filter-config.h"
#include "filter.h"
#include "log.h"
#include "metrics-config.h"
#include "route-config.h"
#include "tls-config.h"
#include "trace-config.h"

#define MAX_WORKERS 256
#define ACCESS_LOG_BUFFER_MAX ((uint64_t)16 << 20)
#define ACCESS_LOG_FLUSH_MAX ((uint64_t)60 * 60 * 1000)

/* --- custom settings ---------------------------------------------------- */

static json_t *default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	return json_integer(n);
}

/* The error-log levels by name, least severe first. */
static const struct {
	const char *name;
	enum tg_log_level level;
} log_levels[] = {
	{"debug", TG_LOG_DEBUG}, {"info", TG_LOG_INFO}, {"warn", TG_LOG_WARN},
	{"error", TG_LOG_ERROR},
};

static void
parse_log_level(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                const struct setting *s)
{
	static const char valid[] = "\"debug\", \"info\", \"warn\" or \"error\"";
	const char *raw;
	char q[QUOTE_LEN];
	char *name = get_string(ctx, path, value, valid, &raw);

	if (name == NULL)
		return;
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (strcmp(name, log_levels[i].name) == 0) {
			*FIELD(base, s, int) = (int)log_levels[i].level;
			free(name);
			return;
		}
	}
	report(ctx, path, "unknown level %s; use %s", quote(raw, q, sizeof(q)), valid);
	free(name);
}

static void parse_access_log(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base, const struct setting *s)
{
	if (json_is_false(value) || json_is_null(value)) {
		*FIELD(base, s, char *) = NULL;
		return;
	}

	char *str = get_string(ctx, path, value,
	                       "a path, \"-\" for standard output, or false", NULL);
	if (str == NULL)
		return;

	if (str[0] == '\0') {
		report(ctx, path, "must not be empty; use false to turn the log off");
		free(str);
		return;
	}
	*FIELD(base, s, char *) = str;
}

/* A nameserver is an IP address, with a port or not: a name would need a
 * resolver to find the resolver. */
static char *parse_nameserver(struct load_ctx *ctx, const char *path, json_t *value)
{
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss);
	const char *raw;
	char q[QUOTE_LEN];
	char *str = get_string(ctx, path, value, "an IP address with an optional port", &raw);

	if (str == NULL)
		return NULL;
	if (evutil_parse_sockaddr_port(str, (struct sockaddr *)&ss, &len) != 0) {
		report(ctx, path, "invalid nameserver %s; expected an IP address with an "
		       "optional port, such as \"127.0.0.1:53\" or \"[::1]:5353\"",
		       quote(raw, q, sizeof(q)));
		free(str);
		return NULL;
	}
	return str;
}

static void parse_nameservers(struct load_ctx *ctx, const char *path,
                              json_t *value, void *base, const struct setting *s)
{
	struct tg_resolver_config *rc = base;
	char child[PATH_LEN];
	json_t *item;
	size_t i;

	(void)s;
	if (!json_is_array(value) || json_array_size(value) == 0) {
		report_type(ctx, path, "a non-empty array of nameserver addresses", value);
		return;
	}
	rc->nameservers = calloc(json_array_size(value), sizeof(*rc->nameservers));
	if (rc->nameservers == NULL) {
		report_oom(ctx, path);
		return;
	}
	json_array_foreach(value, i, item) {
		char *ns = parse_nameserver(ctx, path_index(child, path, i), item);

		if (ns != NULL)
			rc->nameservers[rc->n_nameservers++] = ns;
	}
}

static const struct section listen_section;

/* Fill the host and port of l from its address, once that is checked. */
static void split_listen_address(struct load_ctx *ctx, const char *path, struct tg_listen *l)
{
	if (l->address == NULL)
		return;

	const char *problem = split_address(l->address, &l->host, &l->port);
	if (problem != NULL)
		report(ctx, path, "%s", problem);
}

static const struct setting address_string = {
	.key = "address", .type = T_ADDRESS,
	.offset = offsetof(struct tg_listen, address),
};

static void parse_listen_entry(struct load_ctx *ctx, const char *path,
                               json_t *value, struct tg_listen *l)
{
	if (json_is_string(value))
		parse_value(ctx, path, value, l, &address_string);
	else if (json_is_object(value))
		parse_section(ctx, path, value, l, &listen_section);
	else
		report_type(ctx, path, "\"host:port\" or an object", value);
	split_listen_address(ctx, path, l);
}

/* The admin address takes what a listen address string takes, a host name
 * included, and is bound the same way (tg_listen_resolve()). */
static void parse_admin(struct load_ctx *ctx, const char *path, json_t *value,
                        void *base, const struct setting *s)
{
	struct tg_listen *l = FIELD(base, s, struct tg_listen);

	parse_value(ctx, path, value, l, &address_string);
	split_listen_address(ctx, path, l);
}

static void parse_listen(struct load_ctx *ctx, const char *path, json_t *value,
                         void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	char child[PATH_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of addresses", value);
		return;
	}
	if (n == 0) {
		report(ctx, path, "must list at least one address");
		return;
	}

	cfg->listen = calloc(n, sizeof(*cfg->listen));
	if (cfg->listen == NULL) {
		report_oom(ctx, path);
		return;
	}
	cfg->n_listen = n;

	for (size_t i = 0; i < n; i++) {
		path_index(child, path, i);
		parse_listen_entry(ctx, child, json_array_get(value, i), &cfg->listen[i]);

		for (size_t j = 0; j < i && cfg->listen[i].address != NULL; j++) {
			if (cfg->listen[j].address != NULL &&
			    strcmp(cfg->listen[i].address, cfg->listen[j].address) == 0)
				report(ctx, child, "same address as %s[%zu]", path, j);
		}
	}
}

/*
 * Set b's socket address when its host is a numeric IPv6 or IPv4 address,
 * so that a new connection skips the lookup: under callgrind it cost about
 * 7,800 instructions per connect. libevent 2.1's lookup tests a host with
 * evutil_inet_pton(), IPv6 first, and so does this, so the same hosts count
 * as numeric. Any other host leaves addr_len 0 and is looked up at each
 * connect, as before. That includes an IPv6 address with a zone ("%eth0"),
 * which only the lookup reads.
 */
static void set_numeric_address(struct tg_backend *b)
{
	uint16_t port = htons((uint16_t)b->port_number);
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = port};
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = port};

	b->addr_len = 0;
	if (evutil_inet_pton(AF_INET6, b->host, &in6.sin6_addr) == 1) {
		memcpy(&b->addr, &in6, sizeof(in6));
		b->addr_len = (int)sizeof(in6);
	} else if (evutil_inet_pton(AF_INET, b->host, &in.sin_addr) == 1) {
		memcpy(&b->addr, &in, sizeof(in));
		b->addr_len = (int)sizeof(in);
	}
}

/*
 * Fill the connection fields of b from its URL: scheme, host, port, Host
 * header and path prefix. Credentials in the URL are rejected, because they
 * would be logged with it; the message does not quote such a URL.
 */
static void parse_url(struct load_ctx *ctx, const char *path, json_t *value,
                      void *base, const struct setting *s)
{
	struct tg_backend *b = base;
	const char *raw;
	char q[QUOTE_LEN];
	char *url = get_string(ctx, path, value, "a URL string", &raw);
	struct evhttp_uri *uri = NULL;

	(void)s;
	if (url == NULL)
		return;

	/* A URL without a scheme is as unusable as one that does not parse. */
	uri = evhttp_uri_parse_with_flags(url, 0);
	if (uri == NULL || evhttp_uri_get_scheme(uri) == NULL) {
		if (strchr(raw, '@') != NULL)
			report(ctx, path, "invalid URL; expected http://HOST[:PORT][/PATH] "
			       "or https://..., with a port from 1 to 65535");
		else
			report(ctx, path, "invalid URL %s; expected "
			       "http://HOST[:PORT][/PATH] or https://..., with a port "
			       "from 1 to 65535", quote(raw, q, sizeof(q)));
		goto out;
	}

	if (evhttp_uri_get_userinfo(uri) != NULL) {
		report(ctx, path, "the URL must not contain credentials (user:password@); "
		       "put the key in \"api_key\" instead");
		goto out;
	}

	const char *scheme = evhttp_uri_get_scheme(uri);
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		report(ctx, path, "unsupported URL scheme in %s; use http:// or https://",
		       quote(raw, q, sizeof(q)));
		goto out;
	}

	const char *host = evhttp_uri_get_host(uri);
	if (host == NULL || host[0] == '\0') {
		report(ctx, path, "the URL %s has no host", quote(raw, q, sizeof(q)));
		goto out;
	}

	if (evhttp_uri_get_query(uri) != NULL || evhttp_uri_get_fragment(uri) != NULL) {
		report(ctx, path, "the URL %s must not have a query or fragment",
		       quote(raw, q, sizeof(q)));
		goto out;
	}

	int port = evhttp_uri_get_port(uri);
	if (port == 0 || url_has_empty_port(url)) {
		report(ctx, path, "the URL %s has %s; write a port from 1 to 65535, or no "
		       "\":\" for the default (80 for http://, 443 for https://)",
		       quote(raw, q, sizeof(q)), port == 0 ? "port 0" : "an empty port");
		goto out;
	}

	b->tls = strcasecmp(scheme, "https") == 0;
	int default_port = b->tls ? 443 : 80;
	if (port < 0)
		port = default_port;

	/* libevent keeps the brackets of an IPv6 literal: the Host header
	 * needs them, the resolver and the SNI name do not. */
	size_t host_len = strlen(host);
	if (host[0] == '[')
		b->host = strndup(host + 1, host_len - 2);
	else
		b->host = strdup(host);

	if (port == default_port)
		b->host_header = strdup(host);
	else if (asprintf(&b->host_header, "%s:%d", host, port) < 0)
		b->host_header = NULL;

	b->port_number = port;
	if (asprintf(&b->port, "%d", port) < 0)
		b->port = NULL;

	const char *uri_path = evhttp_uri_get_path(uri);
	size_t path_len = strlen(uri_path);
	while (path_len > 0 && uri_path[path_len - 1] == '/')
		path_len--;
	b->base_path = strndup(uri_path, path_len);
	if (path_len >= 3 && memcmp(uri_path + path_len - 3, "/v1", 3) == 0)
		report_warning(ctx, path, "the URL %s ends in /v1, which each request path "
		               "(/v1/chat/completions) follows, so the upstream gets /v1/v1/...; "
		               "a backend URL leaves out the /v1 that an SDK's base_url has",
		               quote(raw, q, sizeof(q)));

	if (b->host == NULL || b->host_header == NULL || b->port == NULL ||
	    b->base_path == NULL) {
		report_oom(ctx, path);
		goto out;
	}
	set_numeric_address(b);

	b->url = url;
	url = NULL;

out:
	if (uri != NULL)
		evhttp_uri_free(uri);
	free(url);
}

static const struct keyword key_header_words[] = {
	{"authorization", TG_KEY_AUTHORIZATION},
	{"x-api-key", TG_KEY_X_API_KEY},
	{"api-key", TG_KEY_API_KEY},
};

static void parse_key_header(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base, const struct setting *s)
{
	int v;

	if (parse_keyword_any_case(ctx, path, value, key_header_words,
	                           ARRAY_LEN(key_header_words), &v) == 0)
		*FIELD(base, s, enum tg_key_header) = (enum tg_key_header)v;
}

/* The key goes into a header of every upstream request, so a byte that
 * would end that header line is refused here, not sent. */
static void parse_api_key(struct load_ctx *ctx, const char *path, json_t *value,
                          void *base, const struct setting *s)
{
	const char *raw;
	char *key = get_string(ctx, path, value, "a string", &raw);

	if (key == NULL)
		return;
	if (key[0] == '\0')
		report(ctx, path, "must not be empty; remove the key to pass the client's "
		       "credential on");
	else if (header_ows_strip(key) == TG_OWS_EMPTY)
		report(ctx, path, "contains only spaces or tabs, which HTTP strips from a "
		       "header value, so the backend would get an empty key; give the key, or "
		       "remove api_key to pass the client's credential on");
	else if (check_header_value(ctx, path, raw, key)) {
		*FIELD(base, s, char *) = key;
		return;
	}
	explicit_bzero(key, strlen(key));
	free(key);
}

static const struct section backend_section;

/* Checks of one backend that involve several of its keys. */
static void check_backend(struct load_ctx *ctx, const char *path, json_t *obj,
                          const struct tg_backend *b)
{
	char child[PATH_LEN], q[QUOTE_LEN], qu[QUOTE_LEN];

	/* Without api_key the client's credential passes as it came, so a
	 * header for the key would mislead the reader of the file. */
	if (json_object_get(obj, "api_key_header") != NULL &&
	    json_object_get(obj, "api_key") == NULL)
		report(ctx, path_key(child, path, "api_key_header"),
		       "has no effect without \"api_key\"; set api_key or remove this key");

	/* A warning, not an error: the backend works, but the author of tls
	 * most likely meant the connection to be encrypted, and it is not. */
	if (json_object_get(obj, "tls") != NULL && b->url != NULL && b->name != NULL &&
	    !b->tls)
		report_warning(ctx, path_key(child, path, "tls"), "has no effect: backend %s "
		               "has the http:// URL %s, so the gateway connects to it without "
		               "TLS; write https:// for TLS, or remove tls",
		               quote(b->name, q, sizeof(q)),
		               quote(json_string_value(json_object_get(obj, "url")), qu, sizeof(qu)));
}

static void parse_backends(struct load_ctx *ctx, const char *path,
                           json_t *value, void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	const char *name;
	json_t *b;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t i = 0;

	(void)s;
	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of named backends", value);
		return;
	}
	if (json_object_size(value) == 0) {
		report(ctx, path, "must define at least one backend");
		return;
	}

	cfg->backends = calloc(json_object_size(value), sizeof(*cfg->backends));
	if (cfg->backends == NULL) {
		report_oom(ctx, path);
		return;
	}

	/* jansson keeps object keys in file order, so backends keep it too. */
	json_object_foreach(value, name, b) {
		struct tg_backend *backend = &cfg->backends[i++];

		cfg->n_backends = i;
		path_key(child, path, name);

		if (!is_valid_name(name))
			report(ctx, path, "invalid backend name %s; use 1 to %d letters, "
			       "digits, \"_\", \"-\" or \".\"",
			       quote(name, q, sizeof(q)), NAME_MAX_LEN);
		check_unreserved_name(ctx, child, name, "backend", "none",
		                      "requests that reached no backend");

		backend->name = strdup(name);
		if (backend->name == NULL)
			report_oom(ctx, child);

		if (!json_is_object(b)) {
			report_type(ctx, child, "an object", b);
			continue;
		}
		parse_section(ctx, child, b, backend, &backend_section);
		check_backend(ctx, child, b, backend);
	}
}

void report_unknown_backend(struct load_ctx *ctx, const char *path,
                            const char *raw)
{
	const struct tg_config *cfg = ctx->cfg;
	const char *closest = NULL;
	size_t best = 3; /* suggest only names within two edits */
	char q[QUOTE_LEN], qc[QUOTE_LEN];

	for (size_t i = 0; i < cfg->n_backends; i++) {
		const char *name = cfg->backends[i].name;
		size_t d;

		if (name == NULL)
			continue;
		d = edit_distance(raw, name, best - 1);
		if (d < best && d < strlen(name)) {
			best = d;
			closest = name;
		}
	}

	if (closest != NULL)
		report(ctx, path, "unknown backend %s; did you mean %s?",
		       quote(raw, q, sizeof(q)), quote(closest, qc, sizeof(qc)));
	else
		report(ctx, path, "unknown backend %s", quote(raw, q, sizeof(q)));
}

static const struct section route_section;

static void parse_routes(struct load_ctx *ctx, const char *path, json_t *value,
                         void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	char child[PATH_LEN], name_path[PATH_LEN], q[QUOTE_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of routes", value);
		return;
	}
	if (n == 0) {
		report(ctx, path, "must define at least one route");
		return;
	}

	cfg->routes = calloc(n, sizeof(*cfg->routes));
	if (cfg->routes == NULL) {
		report_oom(ctx, path);
		return;
	}
	cfg->n_routes = n;

	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(value, i);
		const char *name;

		path_index(child, path, i);
		if (!json_is_object(r)) {
			report_type(ctx, child, "an object", r);
			continue;
		}
		parse_section(ctx, child, r, &cfg->routes[i], &route_section);

		name = cfg->routes[i].name;
		if (name != NULL)
			check_unreserved_name(ctx, path_key(name_path, child, "name"), name, "route",
			                      "none", "requests that matched no route");
		for (size_t j = 0; j < i && name != NULL; j++) {
			if (cfg->routes[j].name != NULL &&
			    strcmp(cfg->routes[j].name, name) == 0) {
				report(ctx, path_key(name_path, child, "name"),
				       "duplicate route name %s; %s[%zu] has it too",
				       quote(name, q, sizeof(q)), path, j);
				break;
			}
		}
	}
}

/* --- the settings ------------------------------------------------------- */

static const struct setting listen_tls_settings[] = {
	{ .key = "cert", .type = T_FILE, .required = true,
	  .offset = offsetof(struct tg_listen, tls_cert),
	  .help = "PEM certificate chain, read at load time" },
	{ .key = "key", .type = T_FILE, .required = true,
	  .offset = offsetof(struct tg_listen, tls_key),
	  .help = "PEM private key of the certificate" },
};
static const struct section listen_tls_section = SECTION(listen_tls_settings);

static const struct setting listen_settings[] = {
	{ .key = "address", .type = T_ADDRESS, .required = true,
	  .offset = offsetof(struct tg_listen, address),
	  .help = "\"host:port\" to accept clients on; IPv6 as \"[::1]:8080\"" },
	{ .key = "tls", .type = T_SECTION, .section = &listen_tls_section,
	  .help = "serve HTTPS with this certificate; absent means plain HTTP" },
};
static const struct section listen_section = SECTION(listen_settings);

static const struct setting limits_settings[] = {
	/* 0 would reject every body, not lift the limit: the gateway keeps
	 * each body in memory, so none is unbounded. */
	{ .key = "max_body", .type = T_SIZE, .def = "\"32MiB\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_body),
	  .help = "largest request body accepted" },
	{ .key = "max_header", .type = T_SIZE, .def = "\"64KiB\"",
	  .min = 1024, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_header),
	  .help = "largest request line plus headers accepted" },
	{ .key = "max_response_body", .type = T_SIZE, .def = "\"64MiB\"",
	  .min = 1024, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_response_body),
	  .help = "largest non-streaming upstream body held in memory" },
	{ .key = "client_header_timeout", .type = T_DURATION, .def = "\"10s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.client_header_timeout),
	  .help = "time allowed to read the request line and headers" },
	{ .key = "client_body_timeout", .type = T_DURATION, .def = "\"30s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.client_body_timeout),
	  .help = "maximum gap between two reads of the request body" },
	{ .key = "keepalive_timeout", .type = T_DURATION, .def = "\"75s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.keepalive_timeout),
	  .help = "how long an idle client connection is kept open" },
	{ .key = "send_timeout", .type = T_DURATION, .def = "\"60s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.send_timeout),
	  .help = "maximum time a client may take to accept more response bytes" },
};
static const struct section limits_section = SECTION(limits_settings);

static const struct setting resolver_settings[] = {
	{ .key = "nameservers", .type = T_CUSTOM, .parse = parse_nameservers,
	  .doc_type = "array",
	  .help = "\"IP\" or \"IP:port\" of the DNS servers to ask; absent uses /etc/resolv.conf" },
	{ .key = "min_ttl", .type = T_DURATION, .def = "\"5s\"",
	  .min = 1000, .max = NO_MAX,
	  .offset = offsetof(struct tg_resolver_config, min_ttl),
	  .help = "shortest time an answer is kept, and the retry delay after a failed query" },
	{ .key = "max_ttl", .type = T_DURATION, .def = "\"300s\"",
	  .min = 1000, .max = NO_MAX,
	  .offset = offsetof(struct tg_resolver_config, max_ttl),
	  .help = "longest time an answer is kept, whatever its TTL" },
	{ .key = "max_stale", .type = T_DURATION, .def = "\"1h\"",
	  .max = NO_MAX,
	  .offset = offsetof(struct tg_resolver_config, max_stale),
	  .help = "how long past its expiry an answer stays in use while refreshes fail" },
	/* The time covers server failures and unanswered queries too, which
	 * RFC 2308 (sections 7.1 and 7.2) lets a resolver cache for at most
	 * five minutes. */
	{ .key = "negative_ttl", .type = T_DURATION, .def = "\"5s\"",
	  .max = 300000,
	  .offset = offsetof(struct tg_resolver_config, negative_ttl),
	  .help = "how long connects to a name without addresses fail at once after its query "
	          "failed, at most; a shorter SOA time of the answer wins" },
};
static const struct section resolver_section = SECTION(resolver_settings);

static const struct setting timeouts_settings[] = {
	{ .key = "connect", .type = T_DURATION, .def = "\"5s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.connect),
	  .help = "TCP connect plus TLS handshake" },
	/* As long as the OpenAI and Anthropic SDKs wait by default: a reasoning
	 * model may think for minutes before the head of a whole response, or
	 * in silence inside a stream. */
	{ .key = "first_byte", .type = T_DURATION, .def = "\"600s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.first_byte),
	  .help = "from request sent to the first response byte" },
	{ .key = "idle", .type = T_DURATION, .def = "\"600s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.idle),
	  .help = "maximum silence inside a response body" },
};
static const struct section timeouts_section = SECTION(timeouts_settings);

static const struct setting tls_client_settings[] = {
	{ .key = "ca_file", .type = T_FILE,
	  .offset = offsetof(struct tg_tls_client_config, ca_file),
	  .help = "PEM bundle of trusted CAs; absent uses the system store" },
	{ .key = "verify", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_tls_client_config, verify),
	  .help = "verify the server's certificate and host name" },
};
const struct section tg_tls_client_section = SECTION(tls_client_settings);

static const struct setting pool_settings[] = {
	{ .key = "max_idle", .type = T_COUNT, .def = "64", .max = 65536,
	  .offset = offsetof(struct tg_backend, max_idle),
	  .help = "idle connections kept per worker; 0 disables reuse" },
	{ .key = "idle_timeout", .type = T_DURATION, .def = "\"60s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, idle_keepalive),
	  .help = "how long a pooled connection may stay idle" },
};
static const struct section pool_section = SECTION(pool_settings);

static const struct setting backend_settings[] = {
	{ .key = "url", .type = T_CUSTOM, .parse = parse_url, .required = true,
	  .doc_type = "URL",
	  .help = "http:// or https://, host, optional port and path prefix" },
	{ .key = "api_key", .type = T_CUSTOM, .parse = parse_api_key, .doc_type = "string",
	  .offset = offsetof(struct tg_backend, api_key),
	  .help = "credential sent upstream instead of the client's; absent passes the client's on" },
	{ .key = "api_key_header", .type = T_CUSTOM, .parse = parse_key_header,
	  .def = "\"authorization\"", .doc_type = "string",
	  .offset = offsetof(struct tg_backend, api_key_header),
	  .help = "how api_key is sent: authorization (Bearer), x-api-key or api-key" },
	{ .key = "timeouts", .type = T_SECTION, .def = "{}",
	  .section = &timeouts_section, .help = "upstream timeouts" },
	{ .key = "tls", .type = T_SECTION, .def = "{}",
	  .offset = offsetof(struct tg_backend, tls_config),
	  .section = &tg_tls_client_section, .help = "TLS to https:// backends" },
	{ .key = "pool", .type = T_SECTION, .def = "{}",
	  .section = &pool_section, .help = "upstream connection reuse" },
	{ .key = "health", .type = T_FEATURE, .feature = &tg_health_feature, .def = "{}",
	  .offset = offsetof(struct tg_backend, health),
	  .help = "passive ejection after failures, and an optional active probe" },
	{ .key = "stream_usage", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_backend, stream_usage),
	  .help = "add stream_options.include_usage to streamed chat and completion "
	          "requests, to count their tokens; false for a backend that rejects it" },
};
static const struct section backend_section = SECTION(backend_settings);

static const struct setting route_settings[] = {
	{ .key = "name", .type = T_NAME, .required = true,
	  .offset = offsetof(struct tg_route, name),
	  .help = "unique name, used in logs and metric labels" },
	{ .key = "match", .type = T_SECTION, .section = &tg_route_match_section,
	  .help = "conditions a request must meet; absent matches all" },
	{ .key = "backends", .type = T_CUSTOM, .parse = tg_parse_route_backends,
	  .required = true, .doc_type = "array",
	  .help = "tiers, tried in order: backend names, or {\"balance\", \"members\"} groups" },
	{ .key = "retry", .type = T_FEATURE, .feature = &tg_retry_feature, .def = "{}",
	  .offset = offsetof(struct tg_route, retry),
	  .help = "when and how often a request moves to the next backend" },
	{ .key = "filters", .type = T_FEATURE, .feature = &tg_route_filters_feature,
	  .offset = offsetof(struct tg_route, filters),
	  .help = "content filters run on this route's requests and responses, in order" },
	{ .key = "cache", .type = T_FEATURE, .feature = &tg_route_cache_feature,
	  .offset = offsetof(struct tg_route, cache),
	  .help = "true, or {\"ttl\": ...}, to answer repeated requests from the cache" },
	{ .key = "auth", .type = T_FEATURE, .feature = &tg_route_auth_feature,
	  .offset = offsetof(struct tg_route, auth),
	  .help = "which gateway keys may use the route; absent: any, when keys are defined" },
};
static const struct section route_section = SECTION(route_settings);

/* Backends come before routes so that routes can resolve backend names. */
static const struct setting top_settings[] = {
	{ .key = "listen", .type = T_CUSTOM, .parse = parse_listen,
	  .def = "[\"127.0.0.1:8080\"]", .section = &listen_section,
	  .element = "[]", .doc_type = "array",
	  .help = "client addresses: \"host:port\" strings or objects" },
	{ .key = "admin", .type = T_CUSTOM, .parse = parse_admin, .def = "\"127.0.0.1:9090\"",
	  .doc_type = "host:port", .offset = offsetof(struct tg_config, admin),
	  .help = "\"host:port\" of the metrics and health listener" },
	{ .key = "admin_max_connections", .type = T_COUNT, .def = "16", .min = 1, .max = 65536,
	  .offset = offsetof(struct tg_config, admin_max_connections),
	  .help = "admin connections open at a time; a new one past it closes the oldest" },
	{ .key = "admin_idle_timeout", .type = T_DURATION, .def = "\"30s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, admin_idle_timeout),
	  .help = "how long an admin connection may wait for a request or send nothing" },
	{ .key = "workers", .type = T_INT, .def_fn = default_workers,
	  .min = 1, .max = MAX_WORKERS,
	  .offset = offsetof(struct tg_config, workers),
	  .help = "worker threads; default: online processors, at most 256" },
	{ .key = "drain_timeout", .type = T_DURATION, .def = "\"30s\"",
	  .max = NO_MAX, .offset = offsetof(struct tg_config, drain_timeout),
	  .help = "on SIGTERM, how long requests in flight may finish" },
	{ .key = "log_level", .type = T_CUSTOM, .parse = parse_log_level, .def = "\"info\"",
	  .doc_type = "string", .offset = offsetof(struct tg_config, log_level),
	  .help = "lowest level of error-log lines written: debug, info, warn or error" },
	{ .key = "access_log", .type = T_CUSTOM, .parse = parse_access_log,
	  .def = "\"-\"", .doc_type = "string|false",
	  .offset = offsetof(struct tg_config, access_log),
	  .help = "access log path, \"-\" for standard output, false for none" },
	{ .key = "access_log_buffer", .type = T_SIZE, .def = "\"64KiB\"",
	  .max = ACCESS_LOG_BUFFER_MAX,
	  .offset = offsetof(struct tg_config, access_log_buffer),
	  .help = "bytes of lines a worker gathers before one write; 0 writes each line at once" },
	{ .key = "access_log_flush", .type = T_DURATION, .def = "\"1s\"",
	  .min = 1, .max = ACCESS_LOG_FLUSH_MAX,
	  .offset = offsetof(struct tg_config, access_log_flush),
	  .help = "maximum time a line waits in a worker's buffer" },
	{ .key = "limits", .type = T_SECTION, .def = "{}",
	  .section = &limits_section, .help = "client request limits" },
	{ .key = "resolver", .type = T_SECTION, .def = "{}",
	  .offset = offsetof(struct tg_config, resolver),
	  .section = &resolver_section, .help = "how backend host names are resolved and cached" },
	{ .key = "backends", .type = T_CUSTOM, .parse = parse_backends,
	  .required = true, .section = &backend_section, .element = ".NAME",
	  .doc_type = "object", .help = "upstream endpoints by name" },
	{ .key = "filters", .type = T_FEATURE, .feature = &tg_filters_feature,
	  .offset = offsetof(struct tg_config, filters),
	  .help = "content filters by name, for routes to list; before routes" },
	{ .key = "gateway_keys", .type = T_FEATURE, .feature = &tg_gateway_keys_feature,
	  .offset = offsetof(struct tg_config, gateway_keys),
	  .help = "keys that callers must present, by name; before routes" },
	{ .key = "routes", .type = T_CUSTOM, .parse = parse_routes,
	  .required = true, .section = &route_section, .element = "[]",
	  .doc_type = "array", .help = "request routes, matched in order" },
	{ .key = "cache", .type = T_FEATURE, .feature = &tg_cache_feature, .def = "{}",
	  .offset = offsetof(struct tg_config, cache),
	  .help = "response cache store, used by routes that set \"cache\"" },
	{ .key = "pricing", .type = T_FEATURE, .feature = &tg_pricing_feature,
	  .offset = offsetof(struct tg_config, pricing),
	  .help = "prices per million tokens by model, for tollgate_cost_total" },
	{ .key = "sessions", .type = T_FEATURE, .feature = &tg_sessions_feature, .def = "{}",
	  .offset = offsetof(struct tg_config, sessions),
	  .help = "how requests group into sessions, for tollgate_session_turns" },
	{ .key = "tracing", .type = T_FEATURE, .feature = &tg_tracing_feature, .def = "{}",
	  .offset = offsetof(struct tg_config, tracing),
	  .help = "spans of every request, exported over OTLP/HTTP" },
};
static const struct section top_section = SECTION(top_settings);

/* --- loading and freeing ------------------------------------------------ */

/* Checks that involve several top-level settings. */
static void check_consistency(struct load_ctx *ctx, struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen && cfg->admin.address != NULL; i++) {
		if (cfg->listen[i].address != NULL &&
		    strcmp(cfg->listen[i].address, cfg->admin.address) == 0)
			report(ctx, "admin", "same address as listen[%zu]", i);
	}

	if (cfg->resolver.min_ttl > cfg->resolver.max_ttl)
		report(ctx, "resolver.max_ttl", "%llu ms is below resolver.min_ttl (%llu ms); "
		       "max_ttl must be at least min_ttl",
		       (unsigned long long)cfg->resolver.max_ttl,
		       (unsigned long long)cfg->resolver.min_ttl);
}

/*
 * Rules that need the whole config, run in this order once every section is
 * parsed. A feature whose settings refer to another section, such as a route
 * naming a filter that must exist, adds its check_fn here.
 */
static check_fn *const checks[] = {
	check_consistency,
	tg_cache_check_config,
	tg_tls_load_contexts,
};

/* Whether the file f starts with a UTF-8 byte order mark; f is rewound. */
static int starts_with_bom(FILE *f)
{
	unsigned char head[3];
	size_t n = fread(head, 1, sizeof(head), f);

	rewind(f);
	return n == 3 && head[0] == 0xef && head[1] == 0xbb && head[2] == 0xbf;
}

/*
 * Find the line and column of the last character of f that is not JSON
 * whitespace, counted as jansson counts them (columns in characters, from
 * 1). Returns 0, or -1 when the file has no such character. f is rewound.
 */
static int last_token_position(FILE *f, int *line, int *column)
{
	int c, at_line = 1, at_column = 0, found = -1;

	rewind(f);
	while ((c = getc(f)) != EOF) {
		if (c == '\n') {
			at_line++;
			at_column = 0;
			continue;
		}
		if ((c & 0xc0) != 0x80)         /* not inside a UTF-8 sequence */
			at_column++;
		if (c != ' ' && c != '\t' && c != '\r') {
			*line = at_line;
			*column = at_column;
			found = 0;
		}
	}
	rewind(f);
	return found;
}

/* Read the whole of the file f from its start into a buffer that the
 * caller frees, and set *len to its length. Returns NULL when memory ran
 * out. */
static char *read_whole(FILE *f, size_t *len)
{
	char *text = NULL, *grown;
	size_t size = 0, n;

	rewind(f);
	*len = 0;
	do {
		if (*len == size) {
			size = size == 0 ? 4096 : size * 2;
			grown = realloc(text, size);
			if (grown == NULL) {
				free(text);
				return NULL;
			}
			text = grown;
		}
		n = fread(text + *len, 1, size - *len, f);
		*len += n;
	} while (n > 0);
	return text;
}

/* Report jansson's numeric overflow in the file f at its position, with
 * the key path and the text of the number, which jansson does not give.
 * Returns -1 when the number is not found, to fall back on jansson's own
 * text. */
static int report_overflow(struct load_ctx *ctx, const json_error_t *jerr, FILE *f)
{
	struct tg_config_overflow found;
	size_t len;
	char *text = read_whole(f, &len);
	int rc = text != NULL ? tg_config_find_overflow(text, len, &found) : -1;

	free(text);
	if (rc != 0)
		return -1;
	fprintf(ctx->err, "%s:%d:%d: %s%s%s is out of range; %s\n", ctx->file, jerr->line,
	        jerr->column, found.path, found.path[0] != '\0' ? ": " : "", found.number,
	        found.integer ? "a 64-bit integer is from -9223372036854775808 to "
	                        "9223372036854775807, and each setting's own range is in "
	                        "tollgate.json(5)"
	                      : "a number must be below about 1.8e308 in magnitude");
	ctx->n_errors++;
	return 0;
}

/* Report a JSON error jansson found in the file f. jansson's own text names
 * its flags (JSON_ALLOW_NUL) or quotes an invisible token (a byte order
 * mark), so those cases get words of their own. At the end of the input,
 * jansson gives the position of the last byte read. That is column 0 of
 * the line after a final newline, or a point past trailing blank lines, so
 * the error points at the last character that is not whitespace instead.
 * A number out of range also gets the key path that jansson does not give. */
static void report_json_error(struct load_ctx *ctx, const json_error_t *jerr, int bom, FILE *f)
{
	const char *text = jerr->text;
	int line = jerr->line, column = jerr->column;

	if (json_error_code(jerr) == json_error_premature_end_of_input &&
	    last_token_position(f, &line, &column) != 0) {
		report(ctx, "", "the file has no JSON text (it is empty or only whitespace); "
		       "a JSON object is expected");
		return;
	}

	if (json_error_code(jerr) == json_error_numeric_overflow &&
	    report_overflow(ctx, jerr, f) == 0)
		return;

	if (bom && jerr->line == 1)
		text = "the file starts with a UTF-8 byte order mark (bytes EF BB BF), "
		       "which a JSON text must not have (RFC 8259, section 8.1); save the "
		       "file without it";
	else if (json_error_code(jerr) == json_error_null_character)
		text = "a string has the escape \\u0000 (a NUL character), which no "
		       "setting accepts; remove it";
	else if (json_error_code(jerr) == json_error_null_byte_in_key)
		text = "an object key has the escape \\u0000 (a NUL character), which no "
		       "key accepts; remove it";
	fprintf(ctx->err, "%s:%d:%d: %s\n", ctx->file, line, column, text);
	ctx->n_errors++;
}

/* Read and parse the file, reporting I/O and JSON syntax errors. */
static json_t *read_json(struct load_ctx *ctx)
{
	json_error_t jerr;
	json_t *root;
	int read_errno, bom;
	FILE *f = fopen(ctx->file, "r");

	if (f == NULL) {
		report(ctx, "", "cannot open: %s", strerror(errno));
		return NULL;
	}

	bom = starts_with_bom(f);
	errno = 0;
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	read_errno = ferror(f) ? errno : 0;

	/* jansson reports a failed read as an early end of input, which would
	 * send the user looking for a syntax error. A directory opens on Linux
	 * and fails here with EISDIR. */
	if (root == NULL && read_errno != 0) {
		fclose(f);
		report(ctx, "", "cannot read: %s%s", strerror(read_errno),
		       read_errno == EISDIR ? "; give -c the path of the JSON config file" : "");
		return NULL;
	}

	if (root == NULL) {
		report_json_error(ctx, &jerr, bom, f);
		fclose(f);
		return NULL;
	}
	fclose(f);

	if (!json_is_object(root)) {
		report_type(ctx, "", "a JSON object at the top level", root);
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Release what feature modules own first, while everything they were given
 * pointers to still exists. */
static void free_all_features(struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_routes; i++)
		free_features(&cfg->routes[i], &route_section);

	for (size_t i = 0; i < cfg->n_backends; i++)
		free_features(&cfg->backends[i], &backend_section);

	free_features(cfg, &top_section);
}

static void free_config(struct tg_config *cfg)
{
	free_all_features(cfg);
	tg_tls_free_contexts(cfg);

	for (size_t i = 0; i < cfg->n_listen; i++) {
		struct tg_listen *l = &cfg->listen[i];

		free(l->address);
		free(l->host);
		free(l->port);
		free(l->tls_cert);
		free(l->tls_key);
	}
	free(cfg->listen);

	for (size_t i = 0; i < cfg->n_backends; i++) {
		struct tg_backend *b = &cfg->backends[i];

		free(b->name);
		free(b->url);
		free(b->host);
		free(b->port);
		free(b->host_header);
		free(b->base_path);
		if (b->api_key != NULL)
			explicit_bzero(b->api_key, strlen(b->api_key));
		free(b->api_key);
		free(b->tls_config.ca_file);
	}
	free(cfg->backends);

	for (size_t i = 0; i < cfg->n_routes; i++) {
		struct tg_route *r = &cfg->routes[i];

		free(r->name);
		tg_route_match_free(r);
		free(r->backends);
		tg_free_route_tiers(r);
	}
	free(cfg->routes);

	for (size_t i = 0; i < cfg->resolver.n_nameservers; i++)
		free(cfg->resolver.nameservers[i]);
	free(cfg->resolver.nameservers);

	free(cfg->admin.address);
	free(cfg->admin.host);
	free(cfg->admin.port);
	free(cfg->access_log);
	free(cfg->path);
	free(cfg);
}

/* Return 1 when a route has a plugin or moderation filter on the request
 * side: each reads the request body's tree. Regex filters screen the body
 * without one (filter-request.c) and need the tree only for a match, and
 * the cache reads the body's text for its key (cache-key.h). */
static int
routes_read_request_tree(const struct tg_config *cfg)
{
	const unsigned tree_filters = 1u << TG_FILTER_PLUGIN | 1u << TG_FILTER_MODERATION;

	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct tg_route *r = &cfg->routes[i];

		if (r->filters != NULL &&
		    (tg_filter_types(&r->filters->chain, TG_SIDE_REQUEST) & tree_filters) != 0)
			return 1;
	}
	return 0;
}

/* Return 1 when a route has a regex filter on the request side, whose
 * texts the body scan then collects (request-scan.h). */
static int
routes_screen_request_texts(const struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct tg_route *r = &cfg->routes[i];

		if (r->filters != NULL &&
		    (tg_filter_types(&r->filters->chain, TG_SIDE_REQUEST) & 1u << TG_FILTER_REGEX) != 0)
			return 1;
	}
	return 0;
}

/* Report an access log that startup could not open, so that such a path
 * fails the check rather than the start. */
static void check_access_log(struct load_ctx *ctx, struct tg_config *cfg)
{
	int err = tg_accesslog_check(cfg->access_log);
	char q[QUOTE_LEN];

	if (err != 0)
		report(ctx, "access_log", "cannot open %s for appending: %s; give a writable "
		       "file, \"-\" for standard output, or false",
		       quote(cfg->access_log, q, sizeof(q)), strerror(err));
}

/* Load path; with startup_checks, also run the checks of tg_config_check(). */
static struct tg_config *load_config(const char *path, FILE *err, int startup_checks)
{
	struct load_ctx ctx = { .file = path, .err = err };
	struct tg_config *cfg;
	json_t *root;

	assert(path != NULL);
	assert(err != NULL);

	root = read_json(&ctx);
	if (root == NULL)
		return NULL;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		report_oom(&ctx, "");
		free(cfg);
		json_decref(root);
		return NULL;
	}
	atomic_init(&cfg->refcount, 1);
	ctx.cfg = cfg;

	parse_section(&ctx, "", root, cfg, &top_section);
	for (size_t i = 0; i < ARRAY_LEN(checks); i++)
		checks[i](&ctx, cfg);
	if (startup_checks)
		check_access_log(&ctx, cfg);
	json_decref(root);

	if (ctx.n_errors > 0) {
		free_config(cfg);
		return NULL;
	}
	cfg->routes_read_request_tree = routes_read_request_tree(cfg);
	cfg->routes_screen_request_texts = routes_screen_request_texts(cfg);
	return cfg;
}

struct tg_config *tg_config_load(const char *path, FILE *err)
{
	return load_config(path, err, 0);
}

struct tg_config *tg_config_check(const char *path, FILE *err)
{
	return load_config(path, err, 1);
}

struct tg_config *tg_config_ref(struct tg_config *cfg)
{
	int old = atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);

	assert(old > 0);
	(void)old;
	return cfg;
}

void tg_config_unref(struct tg_config *cfg)
{
	if (cfg == NULL)
		return;

	/* Release so that this thread's reads happen before the free; the
	 * thread that drops the last reference then acquires all of them. */
	int old = atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_release);

	assert(old > 0);
	if (old == 1) {
		atomic_thread_fence(memory_order_acquire);
		free_config(cfg);
	}
}

const struct tg_backend *tg_config_backend(const struct tg_config *cfg,
                                           const char *name)
{
	for (size_t i = 0; i < cfg->n_backends; i++) {
		if (cfg->backends[i].name != NULL &&
		    strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	}
	return NULL;
}

/* --- documentation ------------------------------------------------------ */

void tg_config_print_settings(FILE *out)
{
	print_section(out, "", &top_section);
}
