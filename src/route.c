/*
 * Route selection: the first route in config order whose conditions all hold.
 */
#include <assert.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

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

static int route_matches(const struct tg_route *route, const char *path,
                         const char *model)
{
	if (route->match_path != NULL && strcmp(route->match_path, path) != 0)
		return 0;

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

const struct tg_route *tg_route_match(const struct tg_config *cfg,
                                      const char *path, const char *model)
{
	assert(cfg != NULL);
	assert(path != NULL);

	for (size_t i = 0; i < cfg->n_routes; i++) {
		if (route_matches(&cfg->routes[i], path, model))
			return &cfg->routes[i];
	}

	return NULL;
}
