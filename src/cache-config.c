/*
 * Config sections of the response cache:
 *
 *   "cache": {"store": "memory", "max_bytes": "256MiB", "ttl": "1h"}
 *   "cache": {"store": "redis", "redis": "redis://127.0.0.1:6379/0",
 *             "ttl": "1h", "timeout": "50ms", "max_entry_bytes": "4MiB"}
 *   "routes": [{..., "cache": true}, {..., "cache": {"ttl": "10m"}}]
 *
 * The top-level section always exists (its defaults describe the memory
 * store), but a route caches only when its own "cache" is true or an
 * object.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "cache-config.h"
#include "cache-memory.h"
#include "cache-t.h"
#include "filter-t.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 65535

/* Smallest store: each of its shards must hold a few kilobytes. */
#define MIN_MAX_BYTES (TG_CACHE_MEMORY_SHARDS * 4 * 1024)

/* Bounds of a Redis entry: below 1 KiB hardly a response fits, and Redis
 * rejects a bulk string above its proto-max-bulk-len, 512 MB by default. */
#define MIN_ENTRY_BYTES 1024
#define MAX_ENTRY_BYTES ((uint64_t)512 << 20)

static void
parse_store(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char *name = get_string(ctx, path, value, "\"memory\" or \"redis\"", &raw);

	if (name == NULL)
		return;
	if (strcmp(name, "memory") == 0)
		*FIELD(base, s, int) = TG_CACHE_STORE_MEMORY;
	else if (strcmp(name, "redis") == 0)
		*FIELD(base, s, int) = TG_CACHE_STORE_REDIS;
	else
		report(ctx, path, "unknown store %s; use \"memory\" or \"redis\"",
		       quote(raw, q, sizeof(q)));
	free(name);
}

/* Take user and password from the "user:password" part of a Redis URL,
 * percent-decoded. A part without ':' is the password alone, since Redis
 * before 6 has no users. Returns 0, or -1 when out of memory. */
static int
split_userinfo(struct tg_cache_config *c, const char *userinfo)
{
	const char *colon = strchr(userinfo, ':');
	char *user;
	int rc;

	if (colon == NULL) {
		c->redis_password = evhttp_uridecode(userinfo, 0, NULL);
		return c->redis_password != NULL ? 0 : -1;
	}

	user = strndup(userinfo, (size_t)(colon - userinfo));
	if (user == NULL)
		return -1;
	if (user[0] != '\0')
		c->redis_user = evhttp_uridecode(user, 0, NULL);
	c->redis_password = evhttp_uridecode(colon + 1, 0, NULL);
	rc = (user[0] != '\0' && c->redis_user == NULL) || c->redis_password == NULL ? -1 : 0;
	free(user);
	return rc;
}

/* The database number from the URL path: "", "/" or "/N". */
static int
parse_db(const char *db_path, int *db)
{
	char *end;
	long n;

	if (db_path == NULL || db_path[0] == '\0' || strcmp(db_path, "/") == 0) {
		*db = 0;
		return 0;
	}
	n = strtol(db_path + 1, &end, 10);
	if (db_path[0] != '/' || end == db_path + 1 || *end != '\0' || n < 0 || n > REDIS_MAX_DB)
		return -1;
	*db = (int)n;
	return 0;
}

/* 1 when c may stand unencoded in the user information of a URL: an
 * unreserved or sub-delims character of RFC 3986 section 3.2.1, or ':'. */
static int
userinfo_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("-._~!$&'()*+,;=:", c) != NULL);
}

/* Return what is wrong with part, the user or the password (what) of a
 * Redis URL, in words that quote none of it, or NULL when it is valid.
 * libevent rejects such a URL without saying why, and the message may not
 * show the credentials. */
static const char *
userinfo_part_problem(const char *part, size_t len, const char *what, char *buf,
                      size_t size)
{
	for (size_t i = 0; i < len; i++) {
		if (part[i] == '%') {
			if (i + 2 >= len || !isxdigit((unsigned char)part[i + 1]) ||
			    !isxdigit((unsigned char)part[i + 2])) {
				snprintf(buf, size, "the %s has a \"%%\" that two hexadecimal "
				         "digits do not follow; write a \"%%\" itself as %%25", what);
				return buf;
			}
			i += 2;
		} else if (!userinfo_char(part[i])) {
			snprintf(buf, size, "the %s has a character that a URL does not allow "
			         "there, such as \"@\", \"/\", \"?\", \"#\" or a space; "
			         "percent-encode it, as %%40 for \"@\"", what);
			return buf;
		}
	}
	return NULL;
}

/* Return where the credentials of raw start: after "://", or at its
 * start. They end at the last "@" of raw, at, since a password may hold
 * an "@" that its author did not encode. */
static const char *
credentials_start(const char *raw, const char *at)
{
	const char *scheme_end = strstr(raw, "://");

	return scheme_end != NULL && scheme_end < at ? scheme_end + 3 : raw;
}

/* Return what is wrong with the "user:password" of the Redis URL raw, or
 * NULL when it is valid or absent. */
static const char *
userinfo_problem(const char *raw, char *buf, size_t size)
{
	const char *at = strrchr(raw, '@');
	const char *start, *colon;

	if (at == NULL)
		return NULL;
	start = credentials_start(raw, at);

	colon = memchr(start, ':', (size_t)(at - start));
	if (colon == NULL)
		return userinfo_part_problem(start, (size_t)(at - start), "password", buf, size);
	if (userinfo_part_problem(start, (size_t)(colon - start), "user", buf, size) != NULL)
		return buf;
	return userinfo_part_problem(colon + 1, (size_t)(at - colon - 1), "password", buf, size);
}

/* Write raw to shown, quoted, with its credentials replaced by "***". */
static void
show_url(const char *raw, char *shown, size_t size)
{
	const char *at = strrchr(raw, '@');
	char *masked;

	if (at == NULL) {
		quote(raw, shown, size);
		return;
	}

	if (asprintf(&masked, "%.*s***%s", (int)(credentials_start(raw, at) - raw), raw,
	             at) < 0) {
		snprintf(shown, size, "(credentials not shown)");
		return;
	}
	quote(masked, shown, size);
	free(masked);
}

/*
 * "redis://[[user]:password@]host[:port][/db]". Messages show the URL with
 * its credentials masked, and name what is wrong with them without quoting
 * them, so that a password never reaches the output. The URL kept for logs
 * is rebuilt without them.
 */
static void
parse_redis_url(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                const struct setting *s)
{
	struct tg_cache_config *c = base;
	const char *raw, *host, *scheme, *problem;
	char shown[QUOTE_LEN], why[200];
	char *url = get_string(ctx, path, value, "a redis:// URL", &raw);
	struct evhttp_uri *uri = NULL;
	int port;

	(void)s;
	if (url == NULL)
		return;
	show_url(raw, shown, sizeof(shown));

	uri = evhttp_uri_parse_with_flags(url, 0);
	scheme = uri != NULL ? evhttp_uri_get_scheme(uri) : NULL;
	host = uri != NULL ? evhttp_uri_get_host(uri) : NULL;
	if (scheme == NULL || strcasecmp(scheme, "redis") != 0 || host == NULL || host[0] == '\0' ||
	    evhttp_uri_get_query(uri) != NULL || evhttp_uri_get_fragment(uri) != NULL) {
		if ((problem = userinfo_problem(url, why, sizeof(why))) != NULL)
			report(ctx, path, "invalid Redis URL %s: %s", shown, problem);
		else
			report(ctx, path, "invalid Redis URL %s; expected "
			       "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]", shown);
		goto out;
	}

	port = evhttp_uri_get_port(uri);
	if (port == 0 || url_has_empty_port(url)) {
		report(ctx, path, "the URL %s has %s; write a port from 1 to 65535, or no "
		       "\":\" for the default, %d", shown, port == 0 ? "port 0" : "an empty port",
		       REDIS_DEFAULT_PORT);
		goto out;
	}
	c->redis_port = port < 0 ? REDIS_DEFAULT_PORT : port;

	if (parse_db(evhttp_uri_get_path(uri), &c->redis_db) != 0) {
		report(ctx, path, "invalid database in %s; the path is a number from 0 to %d, "
		       "as in redis://127.0.0.1:6379/0", shown, REDIS_MAX_DB);
		goto out;
	}

	/* libevent keeps the brackets of an IPv6 literal; hiredis wants none. */
	if (host[0] == '[')
		c->redis_host = strndup(host + 1, strlen(host) - 2);
	else
		c->redis_host = strdup(host);
	if (asprintf(&c->redis_url, "redis://%s:%d/%d", host, c->redis_port, c->redis_db) < 0)
		c->redis_url = NULL;

	if (c->redis_host == NULL || c->redis_url == NULL ||
	    (evhttp_uri_get_userinfo(uri) != NULL &&
	     split_userinfo(c, evhttp_uri_get_userinfo(uri)) != 0))
		report_oom(ctx, path);

out:
	if (uri != NULL)
		evhttp_uri_free(uri);
	if (strchr(raw, '@') != NULL)
		explicit_bzero(url, strlen(url));
	free(url);
}

static void
parse_tenant_header(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                    const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char *name = get_string(ctx, path, value, "a header name", &raw);

	if (name == NULL)
		return;
	if (!is_header_name(name)) {
		report(ctx, path, "invalid header name %s; use letters, digits and "
		       "!#$%%&'*+-.^_`|~, as in \"X-Tenant-Id\"", quote(raw, q, sizeof(q)));
		free(name);
		return;
	}
	*FIELD(base, s, char *) = name;
}

static void
parse_ignore_fields(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                    const struct setting *s)
{
	struct tg_cache_config *c = base;
	char child[PATH_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of request field names", value);
		return;
	}
	if (n == 0)
		return;
	c->ignore_fields = calloc(n, sizeof(*c->ignore_fields));
	if (c->ignore_fields == NULL) {
		report_oom(ctx, path);
		return;
	}

	for (size_t i = 0; i < n; i++) {
		char *field;

		path_index(child, path, i);
		field = get_string(ctx, child, json_array_get(value, i), "a field name", NULL);
		if (field == NULL)
			continue;
		if (field[0] == '\0') {
			report(ctx, child, "empty field name; name a top-level request field "
			       "such as \"metadata\"");
			free(field);
			continue;
		}
		c->ignore_fields[c->n_ignore_fields++] = field;
	}
}

static const struct setting cache_settings[] = {
	{ .key = "store", .type = T_CUSTOM, .parse = parse_store, .def = "\"memory\"",
	  .doc_type = "string", .offset = offsetof(struct tg_cache_config, store),
	  .help = "\"memory\" (in this process) or \"redis\" (shared by instances)" },
	{ .key = "max_bytes", .type = T_SIZE, .def = "\"256MiB\"",
	  .min = MIN_MAX_BYTES, .max = NO_MAX,
	  .offset = offsetof(struct tg_cache_config, max_bytes),
	  .help = "memory store size, bookkeeping included; one entry gets at most 1/16" },
	{ .key = "ttl", .type = T_DURATION, .def = "\"1h\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_cache_config, ttl),
	  .help = "how long an entry is served; routes may override it" },
	{ .key = "redis", .type = T_CUSTOM, .parse = parse_redis_url, .doc_type = "URL",
	  .help = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] of the redis store" },
	{ .key = "timeout", .type = T_DURATION, .def = "\"50ms\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_cache_config, timeout),
	  .help = "maximum wait for a Redis reply, after which the request goes on as a miss" },
	{ .key = "max_entry_bytes", .type = T_SIZE, .def = "\"4MiB\"",
	  .min = MIN_ENTRY_BYTES, .max = MAX_ENTRY_BYTES,
	  .offset = offsetof(struct tg_cache_config, max_entry_bytes),
	  .help = "largest entry written to Redis; larger responses are not stored" },
	{ .key = "connect_timeout", .type = T_DURATION, .def = "\"1s\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_cache_config, connect_timeout),
	  .help = "maximum wait for a Redis connection" },
	{ .key = "tenant_header", .type = T_CUSTOM, .parse = parse_tenant_header,
	  .doc_type = "string", .offset = offsetof(struct tg_cache_config, tenant_header),
	  .help = "request header that splits the entries of one credential by tenant" },
	{ .key = "ignore_fields", .type = T_CUSTOM, .parse = parse_ignore_fields,
	  .doc_type = "array",
	  .help = "top-level request fields left out of the key, such as \"metadata\"" },
};
static const struct section cache_section = SECTION(cache_settings);

/* Keys that only one store uses; naming one for the other store is likely
 * a mistake, so it is reported. */
static void
check_store_keys(struct load_ctx *ctx, const char *path, const json_t *value,
                 const struct tg_cache_config *c)
{
	static const char *const redis_only[] = {"redis", "timeout", "max_entry_bytes",
	                                         "connect_timeout"};
	char child[PATH_LEN];

	if (c->store == TG_CACHE_STORE_REDIS) {
		if (json_object_get(value, "max_bytes") != NULL)
			report(ctx, path_key(child, path, "max_bytes"), "applies to the memory "
			       "store only; Redis bounds its memory with its own maxmemory");
		if (json_object_get(value, "redis") == NULL)
			report(ctx, path, "store \"redis\" needs \"redis\": \"redis://HOST:PORT/DB\"");
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(redis_only); i++) {
		if (json_object_get(value, redis_only[i]) != NULL)
			report(ctx, path_key(child, path, redis_only[i]), "applies to the redis "
			       "store only; set \"store\": \"redis\" or remove it");
	}
}

static void
parse_cache(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	struct tg_cache_config *c = parse_object(ctx, path, value, sizeof(*c), &cache_section);

	if (c == NULL)
		return;
	check_store_keys(ctx, path, value, c);
	*FIELD(base, s, struct tg_cache_config *) = c;
}

static void
free_cache(void *obj)
{
	struct tg_cache_config *c = obj;

	free(c->redis_url);
	free(c->redis_host);
	free(c->redis_user);
	if (c->redis_password != NULL) {
		explicit_bzero(c->redis_password, strlen(c->redis_password));
		free(c->redis_password);
	}
	free(c->tenant_header);
	for (size_t i = 0; i < c->n_ignore_fields; i++)
		free(c->ignore_fields[i]);
	free(c->ignore_fields);
	tg_cache_memory_unref(c->memory);
	free(c);
}

const struct feature tg_cache_feature = {
	.parse = parse_cache,
	.free = free_cache,
	.section = &cache_section,
	.doc_type = "object",
};

/* --- routes[].cache ---------------------------------------------------------- */

static const struct setting route_cache_settings[] = {
	{ .key = "ttl", .type = T_DURATION, .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_route_cache_config, ttl),
	  .help = "how long this route's entries are served; absent: cache.ttl" },
};
static const struct section route_cache_section = SECTION(route_cache_settings);

static void
parse_route_cache(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                  const struct setting *s)
{
	struct tg_route_cache_config *rc;

	if (json_is_false(value))
		return;
	if (json_is_true(value)) {
		rc = calloc(1, sizeof(*rc));
		if (rc == NULL)
			report_oom(ctx, path);
	} else if (json_is_object(value)) {
		rc = parse_object(ctx, path, value, sizeof(*rc), &route_cache_section);
	} else {
		report_type(ctx, path, "true, false or an object such as {\"ttl\": \"10m\"}", value);
		return;
	}
	*FIELD(base, s, struct tg_route_cache_config *) = rc;
}

static void
free_route_cache(void *obj)
{
	struct tg_route_cache_config *rc = obj;

	free(rc->filters);
	free(rc);
}

const struct feature tg_route_cache_feature = {
	.parse = parse_route_cache,
	.free = free_route_cache,
	.section = &route_cache_section,
	.doc_type = "boolean|object",
};

/* Set route_cache->filters to the config of the response-side filters
 * of chain. A filter without its config text failed to load, which was
 * reported. Returns 0, or -1 when out of memory. */
static int
describe_response_filters(struct tg_route_cache_config *route_cache,
                          const struct tg_filter_chain *chain)
{
	json_t *configs = json_array();
	int failed = configs == NULL;

	for (size_t i = 0; !failed && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if ((f->apply_to & TG_SIDE_RESPONSE) && f->config_json != NULL)
			failed = json_array_append_new(configs, json_string(f->config_json)) != 0;
	}
	if (!failed && json_array_size(configs) > 0) {
		route_cache->filters = json_dumps(configs, JSON_COMPACT);
		failed = route_cache->filters == NULL;
	}
	json_decref(configs);
	return failed ? -1 : 0;
}

void
tg_cache_check_config(struct load_ctx *ctx, struct tg_config *cfg)
{
	int caching = 0;

	/* The filters on the response side change what a route stores. So
	 * their config goes into the route's keys: once a reload changes a
	 * rule, the entries stored before it, unscreened by that rule, are
	 * misses rather than hits that bypass it. */
	for (size_t i = 0; i < cfg->n_routes; i++) {
		struct tg_route *r = &cfg->routes[i];

		if (r->cache != NULL && r->filters != NULL &&
		    describe_response_filters(r->cache, &r->filters->chain) != 0)
			report_oom(ctx, "routes");
	}

	for (size_t i = 0; i < cfg->n_routes; i++)
		caching |= cfg->routes[i].cache != NULL;
	if (!caching || cfg->cache == NULL || cfg->cache->store != TG_CACHE_STORE_MEMORY)
		return;

	cfg->cache->memory = tg_cache_memory_acquire(cfg->cache->max_bytes);
	if (cfg->cache->memory == NULL)
		report_oom(ctx, "cache");
}
