/*
 * Route selection: the first route in config order whose conditions all hold.
 */
#include <assert.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include <llhttp.h>

#include "headers.h"
#include "route.h"

/* The methods llhttp parses in HTTP requests, from its own list, so that
 * a config may name any method a request can carry. */
#define METHOD_ENTRY(num, name, string) HTTP_##name,
static const int http_methods[] = { HTTP_METHOD_MAP(METHOD_ENTRY) };
#define N_HTTP_METHODS (sizeof(http_methods) / sizeof(http_methods[0]))

uint64_t
tg_route_http_methods(void)
{
	uint64_t mask = 0;

	for (size_t i = 0; i < N_HTTP_METHODS; i++)
		mask |= tg_route_method_bit(http_methods[i]);
	return mask;
}

int
tg_route_method_id(const char *name)
{
	for (size_t i = 0; i < N_HTTP_METHODS; i++) {
		if (strcmp(llhttp_method_name((llhttp_method_t)http_methods[i]), name) == 0)
			return http_methods[i];
	}
	return -1;
}

char *
tg_route_method_list(uint64_t mask, char *buf, size_t size)
{
	size_t len = 0;

	assert(size > 0);
	buf[0] = '\0';
	for (size_t i = 0; i < N_HTTP_METHODS && len < size; i++) {
		if (!(mask & tg_route_method_bit(http_methods[i])))
			continue;
		len += (size_t)snprintf(buf + len, size - len, "%s%s", len > 0 ? ", " : "",
		                        llhttp_method_name((llhttp_method_t)http_methods[i]));
	}
	return buf;
}

/* Return the ']' that closes the set opened by the '[' at open, or NULL
 * when none does. The rules are those glibc's fnmatch() applies without
 * flags: a '!' or '^' first negates, a ']' first (after either) is a
 * member, a backslash escapes the next character, and a "]" inside
 * "[:class:]", "[=c=]" or "[.c.]" does not close the set. */
static const char *
set_end(const char *open)
{
	const char *p = open + 1;

	if (*p == '!' || *p == '^')
		p++;
	if (*p == ']')
		p++;

	for (; *p != '\0'; p++) {
		if (*p == ']')
			return p;
		if (*p == '\\' && p[1] != '\0') {
			p++;
		} else if (*p == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
			char close[3] = {p[1], ']', '\0'};
			const char *end = strstr(p + 2, close);

			/* Without its closing pair, the "[" is a member. */
			if (end != NULL)
				p = end + 1;
		}
	}
	return NULL;
}

int
tg_route_model_glob_check(const char *pattern, char *message, size_t size)
{
	for (const char *p = pattern; *p != '\0'; p++) {
		size_t at = (size_t)(p - pattern) + 1;

		if (*p == '\\' && p[1] == '\0') {
			snprintf(message, size, "the backslash at character %zu escapes nothing; "
			         "put another before it to match a backslash itself", at);
			return -1;
		}
		if (*p == '\\') {
			p++;
		} else if (*p == '[' && (p = set_end(p)) == NULL) {
			snprintf(message, size, "the \"[\" at character %zu opens a set that no "
			         "\"]\" closes; close it, as in \"gpt-[45]*\", or put a backslash "
			         "before it to match a \"[\" itself", at);
			return -1;
		}
	}
	return 0;
}

/* 1 when path starts with the route's prefix at a segment boundary, so
 * "/v1/audio" takes "/v1/audio" and "/v1/audio/speech", not
 * "/v1/audiobooks". A prefix that ends in "/" takes whatever follows. */
static int
path_has_prefix(const struct tg_route *route, const char *path)
{
	size_t len = route->match_path_prefix_len;

	if (strncmp(path, route->match_path_prefix, len) != 0)
		return 0;
	return path[len] == '\0' || path[len] == '/' || route->match_path_prefix[len - 1] == '/';
}

static int
header_holds(const struct tg_header_match *m, const struct tg_headers *headers)
{
	switch (m->test) {
	case TG_HEADER_EQUALS:
		return tg_headers_value_is(headers, m->name, m->name_len, m->value);
	case TG_HEADER_PRESENT:
		return tg_headers_find(headers, m->name, m->name_len) != NULL;
	case TG_HEADER_ABSENT:
		return tg_headers_find(headers, m->name, m->name_len) == NULL;
	}
	return 0;
}

int
tg_route_headers_hold(const struct tg_route *route, const struct tg_headers *headers)
{
	for (size_t i = 0; i < route->n_match_headers; i++) {
		if (!header_holds(&route->match_headers[i], headers))
			return 0;
	}
	return 1;
}

static int
model_matches(const struct tg_route *route, const char *model)
{
	if (route->match_model == NULL)
		return 1;

	/* A request without a model cannot satisfy a model pattern, not even
	 * "*", so GET /v1/models is never sent to a per-model route. */
	if (model == NULL)
		return 0;

	/* No FNM_PATHNAME: model names such as "org/model-7b" may contain
	 * '/', and "*" should match across it. */
	return fnmatch(route->match_model, model, 0) == 0;
}

/* 1 when every condition of route holds for q, its methods only when
 * weigh_method is 1 and its model only when weigh_model is 1. The path
 * comes first, because most routes differ in it. Inline, because as a
 * call it cost a path-only route about 30 instructions per request
 * (callgrind). */
static inline int
route_takes(const struct tg_route *route, const struct tg_route_query *q, int weigh_method,
            int weigh_model)
{
	if (route->match_path != NULL && strcmp(route->match_path, q->path) != 0)
		return 0;
	if (weigh_method && route->match_methods != 0 &&
	    !(route->match_methods & tg_route_method_bit(q->method)))
		return 0;
	if (route->match_path_prefix != NULL && !path_has_prefix(route, q->path))
		return 0;
	if (weigh_model && !model_matches(route, q->model))
		return 0;
	return route->n_match_headers == 0 || tg_route_headers_hold(route, q->headers);
}

int
tg_route_may_take(const struct tg_route *route, const struct tg_route_query *q)
{
	return route_takes(route, q, 1, 0);
}

const struct tg_route *
tg_route_match(const struct tg_config *cfg, const struct tg_route_query *q)
{
	assert(cfg != NULL);
	assert(q->path != NULL);

	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct tg_route *route = &cfg->routes[i];

		if (route_takes(route, q, 1, 1))
			return route;
	}
	return NULL;
}

uint64_t
tg_route_other_methods(const struct tg_config *cfg, const struct tg_route_query *q)
{
	uint64_t methods = 0;

	for (size_t i = 0; i < cfg->n_routes; i++) {
		if (route_takes(&cfg->routes[i], q, 0, 1))
			methods |= cfg->routes[i].match_methods;
	}
	return methods;
}
