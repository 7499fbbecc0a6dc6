/*
 * Config sections of the metrics module:
 *
 *   "pricing": {"currency": "USD",
 *               "models": {"gpt-4o": {"input": 2.5, "cached_input": 1.25,
 *                                     "output": 10},
 *                          "claude-x": {"input": 3, "cached_input": 0.3,
 *                                       "cache_write_input": 3.75, "output": 15}}}
 *   "sessions": {"header": "x-session-id", "user_field": true,
 *                "idle_timeout": "30m", "max_sessions": 65536}
 *
 * Prices are per million tokens. The models of the pricing table are also
 * label values of the metrics, beside the exact match.model of routes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config-parse.h"
#include "config.h"
#include "metrics-config.h"
#include "metrics-t.h"

#define MODEL_NAME_MAX 256
#define MAX_PRICED_MODELS 4096
#define MAX_SESSIONS ((size_t)1 << 30)

/* --- pricing ------------------------------------------------------------------ */

static void
parse_price(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	double price;

	if (!json_is_number(value)) {
		report_type(ctx, path, "a number of currency units per million tokens", value);
		return;
	}
	price = json_number_value(value);
	if (!(price >= 0) || !isfinite(price)) {
		report(ctx, path, "%g is negative; use a price of 0 or more", price);
		return;
	}
	*FIELD(base, s, double) = price;
}

static const struct setting price_settings[] = {
	{ .key = "input", .type = T_CUSTOM, .parse = parse_price, .required = true,
	  .doc_type = "number", .offset = offsetof(struct tg_model_price, input),
	  .help = "price per million input tokens that were not read from the provider's cache" },
	{ .key = "cached_input", .type = T_CUSTOM, .parse = parse_price,
	  .doc_type = "number", .offset = offsetof(struct tg_model_price, cached_input),
	  .help = "price per million cached input tokens; default: the input price" },
	{ .key = "cache_write_input", .type = T_CUSTOM, .parse = parse_price,
	  .doc_type = "number", .offset = offsetof(struct tg_model_price, cache_write_input),
	  .help = "price per million input tokens written to the provider's cache "
	          "(Anthropic's cache_creation_input_tokens); default: the input price" },
	{ .key = "output", .type = T_CUSTOM, .parse = parse_price, .required = true,
	  .doc_type = "number", .offset = offsetof(struct tg_model_price, output),
	  .help = "price per million output tokens, reasoning tokens included" },
};
static const struct section price_section = SECTION(price_settings);

static int
valid_model_name(struct load_ctx *ctx, const char *path, const char *name)
{
	char q[QUOTE_LEN];

	if (name[0] == '\0' || strlen(name) > MODEL_NAME_MAX) {
		report(ctx, path, "model name %s must be 1 to %d bytes long",
		       quote(name, q, sizeof(q)), MODEL_NAME_MAX);
		return 0;
	}
	return check_unreserved_name(ctx, path, name, "model", "other",
	                             "models the config does not list");
}

static void
parse_price_entry(struct load_ctx *ctx, const char *path, const char *name, json_t *value,
                  struct tg_model_price *price)
{
	struct tg_model_price *parsed;

	if (!valid_model_name(ctx, path, name))
		return;
	parsed = parse_object(ctx, path, value, sizeof(*parsed), &price_section);
	if (parsed == NULL)
		return;
	if (json_object_get(value, "cached_input") == NULL)
		parsed->cached_input = parsed->input;
	if (json_object_get(value, "cache_write_input") == NULL)
		parsed->cache_write_input = parsed->input;
	*price = *parsed;
	free(parsed);
	price->model = strdup(name);
	if (price->model == NULL)
		report_oom(ctx, path);
}

static void
parse_price_models(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                   const struct setting *s)
{
	struct tg_pricing_config *p = base;
	char child[PATH_LEN];
	const char *name;
	json_t *entry;

	(void)s;
	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of prices by model name", value);
		return;
	}
	if (json_object_size(value) > MAX_PRICED_MODELS) {
		report(ctx, path, "%zu models; at most %d can be priced",
		       json_object_size(value), MAX_PRICED_MODELS);
		return;
	}
	p->models = calloc(json_object_size(value) + 1, sizeof(*p->models));
	if (p->models == NULL) {
		report_oom(ctx, path);
		return;
	}
	json_object_foreach(value, name, entry) {
		parse_price_entry(ctx, path_key(child, path, name), name, entry,
		                  &p->models[p->n_models]);
		if (p->models[p->n_models].model != NULL)
			p->n_models++;
	}
}

static const struct setting pricing_settings[] = {
	{ .key = "currency", .type = T_STRING, .def = "\"USD\"",
	  .offset = offsetof(struct tg_pricing_config, currency),
	  .help = "currency of the prices, named in the help text of tollgate_cost_total" },
	{ .key = "models", .type = T_CUSTOM, .parse = parse_price_models,
	  .required = true, .section = &price_section, .element = ".MODEL",
	  .doc_type = "object", .help = "prices by model name, as clients send it" },
};
static const struct section pricing_section = SECTION(pricing_settings);

static void
free_pricing(void *obj)
{
	struct tg_pricing_config *p = obj;

	for (size_t i = 0; i < p->n_models; i++)
		free(p->models[i].model);
	free(p->models);
	free(p->currency);
	free(p);
}

static void
parse_pricing(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	struct tg_pricing_config *p = parse_object(ctx, path, value, sizeof(*p), &pricing_section);

	if (p != NULL)
		*FIELD(base, s, struct tg_pricing_config *) = p;
}

const struct feature tg_pricing_feature = {
	.parse = parse_pricing, .free = free_pricing, .section = &pricing_section,
	.doc_type = "object",
};

/* --- sessions ------------------------------------------------------------------ */

static const struct setting sessions_settings[] = {
	{ .key = "enabled", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_sessions_config, enabled),
	  .help = "count turns per session for tollgate_session_turns" },
	{ .key = "header", .type = T_STRING, .def = "\"x-session-id\"",
	  .offset = offsetof(struct tg_sessions_config, header),
	  .help = "request header that names the session" },
	{ .key = "user_field", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_sessions_config, user_field),
	  .help = "without the header, take the session from the body's \"user\" field" },
	{ .key = "idle_timeout", .type = T_DURATION, .def = "\"30m\"",
	  .min = 1000, .max = 7 * 24 * 3600 * 1000ull,
	  .offset = offsetof(struct tg_sessions_config, idle_timeout),
	  .help = "a session ends, and its turns are observed, after this long without a request" },
	{ .key = "max_sessions", .type = T_COUNT, .def = "65536", .min = 8, .max = MAX_SESSIONS,
	  .offset = offsetof(struct tg_sessions_config, max_sessions),
	  .help = "sessions tracked at once, 8 bytes each; takes effect at start only" },
};
static const struct section sessions_section = SECTION(sessions_settings);

static void
free_sessions(void *obj)
{
	struct tg_sessions_config *sc = obj;

	free(sc->header);
	free(sc);
}

static void
parse_sessions(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	struct tg_sessions_config *sc = parse_object(ctx, path, value, sizeof(*sc),
	                                             &sessions_section);
	char child[PATH_LEN], q[QUOTE_LEN];

	if (sc == NULL)
		return;
	if (sc->header != NULL && !is_header_name(sc->header))
		report(ctx, path_key(child, path, "header"), "%s is not an HTTP header name; "
		       "use letters, digits and !#$%%&'*+-.^_`|~",
		       quote(sc->header, q, sizeof(q)));
	*FIELD(base, s, struct tg_sessions_config *) = sc;
}

const struct feature tg_sessions_feature = {
	.parse = parse_sessions, .free = free_sessions, .section = &sessions_section,
	.doc_type = "object",
};
