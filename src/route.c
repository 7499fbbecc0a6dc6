/*
 * Route selection: the first route in config order whose conditions all hold.
 */
#include <assert.h>
#include <fnmatch.h>
#include <string.h>

#include "config.h"

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
