/*
 * Config sections of the content filters: the top-level "filters" object
 * of named filters, and a route's "filters" list of names.
 *
 *   "filters": {
 *     "pii":   {"type": "regex", "apply_to": ["request", "response"],
 *               "action": "mask", "presets": ["email", "credit_card"],
 *               "rules": [{"name": "ticket", "pattern": "TCK-[0-9]{6}"}]},
 *     "guard": {"type": "moderation", "backend": "moderator",
 *               "timeout": "500ms", "on_error": "allow"},
 *     "clf":   {"type": "plugin", "path": "fasttext.so", "model": "m.ftz",
 *               "labels": {"__label__injection": 0.8}}
 *   },
 *   "routes": [{"name": "chat", ..., "filters": ["pii", "guard"]}]
 *
 * Patterns compile and plugins load here, once per loaded configuration,
 * so a bad pattern or plugin is a config error and requests find them
 * ready.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config-parse.h"
#include "config.h"
#include "filter-config.h"
#include "filter-plugin.h"
#include "filter-rule.h"
#include "filter.h"
#include "log.h"

#ifndef TG_PLUGIN_DIR
#define TG_PLUGIN_DIR "/usr/local/lib/tollgate"
#endif

#define MAX_FILTERS 256
#define MAX_RULES 256

/* Held text that waits an hour is as good as lost to a streaming client, so
 * a longer hold_timeout is a mistake in the config. */
#define HOLD_TIMEOUT_MAX ((uint64_t)60 * 60 * 1000)

/* What the guard model's reply must match to count as unsafe. Llama Guard
 * replies "safe", or "unsafe" and a line of category codes. */
#define DEFAULT_VERDICT_PATTERN "^\\s*unsafe"

/* --- enumerations ------------------------------------------------------- */

static const struct keyword type_words[] = {
	{"regex", TG_FILTER_REGEX},
	{"moderation", TG_FILTER_MODERATION},
	{"plugin", TG_FILTER_PLUGIN},
};

static const struct keyword action_words[] = {
	{"block", TG_ACTION_BLOCK},
	{"mask", TG_ACTION_MASK},
	{"flag", TG_ACTION_FLAG},
};

static const struct keyword side_words[] = {
	{"request", TG_SIDE_REQUEST},
	{"response", TG_SIDE_RESPONSE},
};

static const struct keyword api_words[] = {
	{"openai", TG_MODERATION_OPENAI},
	{"chat", TG_MODERATION_CHAT},
};

static const struct keyword on_error_words[] = {
	{"allow", 0},
	{"block", 1},
};

static void
parse_type(struct load_ctx *ctx, const char *path, json_t *value, void *base,
           const struct setting *s)
{
	int v;

	if (parse_keyword(ctx, path, value, type_words, ARRAY_LEN(type_words), &v) == 0)
		*FIELD(base, s, enum tg_filter_type) = (enum tg_filter_type)v;
}

static void
parse_action(struct load_ctx *ctx, const char *path, json_t *value, void *base,
             const struct setting *s)
{
	int v;

	if (parse_keyword(ctx, path, value, action_words, ARRAY_LEN(action_words), &v) == 0)
		*FIELD(base, s, enum tg_filter_action) = (enum tg_filter_action)v;
}

static void
parse_api(struct load_ctx *ctx, const char *path, json_t *value, void *base,
          const struct setting *s)
{
	int v;

	if (parse_keyword(ctx, path, value, api_words, ARRAY_LEN(api_words), &v) == 0)
		*FIELD(base, s, enum tg_moderation_api) = (enum tg_moderation_api)v;
}

static void
parse_on_error(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	int v;

	if (parse_keyword(ctx, path, value, on_error_words, ARRAY_LEN(on_error_words), &v) == 0)
		*FIELD(base, s, int) = v;
}

static void
parse_apply_to(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	char child[PATH_LEN];
	unsigned sides = 0;
	size_t i;
	json_t *item;

	if (!json_is_array(value) || json_array_size(value) == 0) {
		report_type(ctx, path, "a non-empty array of \"request\" and \"response\"", value);
		return;
	}
	json_array_foreach(value, i, item) {
		int side;

		if (parse_keyword(ctx, path_index(child, path, i), item, side_words,
		                  ARRAY_LEN(side_words), &side) == 0)
			sides |= (unsigned)side;
	}
	*FIELD(base, s, unsigned) = sides;
}

/* --- rules -------------------------------------------------------------- */

/* Check name, of a rule, label or category at path, against the rule
 * labels that the metrics give decisions of no rule. Returns true when
 * name is free. */
static bool
check_rule_label(struct load_ctx *ctx, const char *path, const char *name)
{
	return check_unreserved_name(ctx, path, name, "rule", "none",
	                             "filter decisions without a rule") &&
	       check_unreserved_name(ctx, path, name, "rule", "error",
	                             "decisions of a classifier that failed");
}

/* Add rule to f, unless f has a rule of its name already: decisions, logs
 * and metrics name a rule only by its name. Returns 0, or -1 after
 * reporting and freeing rule. */
static int
add_rule(struct load_ctx *ctx, const char *path, struct tg_filter *f,
         struct tg_filter_rule *rule)
{
	struct tg_filter_rule *rules;
	char q[QUOTE_LEN];

	for (size_t i = 0; i < f->n_rules; i++) {
		if (strcmp(f->rules[i].name, rule->name) == 0) {
			report(ctx, path, "duplicate rule name %s in this filter; decisions, "
			       "logs and metrics name a rule by its name, so rename one",
			       quote(rule->name, q, sizeof(q)));
			tg_rule_free(rule);
			return -1;
		}
	}
	if (f->n_rules == MAX_RULES) {
		report(ctx, path, "too many rules; a filter may have at most %d", MAX_RULES);
		tg_rule_free(rule);
		return -1;
	}
	rules = realloc(f->rules, (f->n_rules + 1) * sizeof(*rules));
	if (rules == NULL) {
		report_oom(ctx, path);
		tg_rule_free(rule);
		return -1;
	}
	f->rules = rules;
	f->rules[f->n_rules++] = *rule;
	if (rule->lookbehind > f->lookbehind)
		f->lookbehind = rule->lookbehind;
	return 0;
}

static void
parse_presets(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	struct tg_filter *f = base;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t i;
	json_t *item;

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of preset names", value);
		return;
	}
	json_array_foreach(value, i, item) {
		struct tg_filter_rule rule;

		path_index(child, path, i);
		if (!json_is_string(item)) {
			report_type(ctx, child, "a preset name", item);
			continue;
		}
		if (tg_rule_preset(&rule, json_string_value(item)) != 0) {
			report(ctx, child, "unknown preset %s; use email, phone, credit_card, "
			       "api_key, ipv4 or ipv6", quote(json_string_value(item), q, sizeof(q)));
			continue;
		}
		add_rule(ctx, child, f, &rule);
	}
}

/* A rule as written, before it is compiled. */
struct rule_spec {
	char *name;
	char *pattern;
	int caseless;
};

/* Patterns are taken as written: "${" in a regex is not an environment
 * variable. */
static void
parse_pattern(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	if (!json_is_string(value) || json_string_length(value) == 0) {
		report(ctx, path, "expected a non-empty string, a PCRE2 pattern");
		return;
	}
	*FIELD(base, s, char *) = strdup(json_string_value(value));
}

static const struct setting rule_settings[] = {
	{ .key = "name", .type = T_NAME, .required = true,
	  .offset = offsetof(struct rule_spec, name),
	  .help = "rule name, shown in decisions, errors and the replacement" },
	{ .key = "pattern", .type = T_CUSTOM, .parse = parse_pattern, .required = true,
	  .doc_type = "string", .offset = offsetof(struct rule_spec, pattern),
	  .help = "PCRE2 pattern (UTF-8, Unicode properties), matched after NFKC normalisation" },
	{ .key = "caseless", .type = T_BOOL, .def = "false",
	  .offset = offsetof(struct rule_spec, caseless),
	  .help = "match the case-folded text, ignoring case" },
};
static const struct section rule_section = SECTION(rule_settings);

static void
parse_rules(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	struct tg_filter *f = base;
	char child[PATH_LEN], name_path[PATH_LEN], err[256], q[QUOTE_LEN];
	size_t i;
	json_t *item;

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of rule objects", value);
		return;
	}
	json_array_foreach(value, i, item) {
		struct rule_spec spec = {0};
		struct tg_filter_rule rule;

		path_index(child, path, i);
		if (!json_is_object(item)) {
			report_type(ctx, child, "a rule object", item);
			continue;
		}
		parse_section(ctx, child, item, &spec, &rule_section);
		if (spec.name != NULL && !check_rule_label(ctx, path_key(name_path, child, "name"),
		                                           spec.name)) {
			free(spec.name);
			spec.name = NULL;
		}
		if (spec.name != NULL && spec.pattern != NULL) {
			if (tg_rule_compile(&rule, spec.name, spec.pattern, spec.caseless,
			                    err, sizeof(err)) == 0)
				add_rule(ctx, child, f, &rule);
			else
				report(ctx, child, "rule %s: %s", quote(spec.name, q, sizeof(q)), err);
		}
		free(spec.name);
		free(spec.pattern);
	}
}

/* --- classifier settings ------------------------------------------------ */

/* An object of names to scores from 0 to 1. */
static void
parse_scores(struct load_ctx *ctx, const char *path, json_t *value,
             struct tg_threshold **out, size_t *n_out)
{
	char child[PATH_LEN];
	const char *key;
	json_t *score;
	struct tg_threshold *t;
	size_t n = 0;

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of names and scores from 0 to 1", value);
		return;
	}
	t = calloc(json_object_size(value) + 1, sizeof(*t));
	if (t == NULL) {
		report_oom(ctx, path);
		return;
	}
	json_object_foreach(value, key, score) {
		path_key(child, path, key);
		if (!json_is_number(score) || json_number_value(score) < 0.0 ||
		    json_number_value(score) > 1.0) {
			report(ctx, child, "expected a score from 0 to 1");
			continue;
		}
		if (!check_rule_label(ctx, child, key))
			continue;
		t[n].name = strdup(key);
		t[n].score = json_number_value(score);
		if (t[n].name == NULL) {
			report_oom(ctx, child);
			continue;
		}
		n++;
	}
	*out = t;
	*n_out = n;
}

static void
parse_thresholds(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                 const struct setting *s)
{
	struct tg_filter *f = base;

	(void)s;
	parse_scores(ctx, path, value, &f->moderation.thresholds, &f->moderation.n_thresholds);
}

static void
parse_labels(struct load_ctx *ctx, const char *path, json_t *value, void *base,
             const struct setting *s)
{
	struct tg_filter *f = base;

	(void)s;
	parse_scores(ctx, path, value, &f->labels, &f->n_labels);
}

/* A bare file name is looked up in the plugin directory; a path with a
 * '/' is taken as written. */
static void
parse_plugin_path(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                  const struct setting *s)
{
	const char *name;
	char *full;

	if (!json_is_string(value) || json_string_length(value) == 0) {
		report(ctx, path, "expected a non-empty string, the plugin's shared object");
		return;
	}
	name = json_string_value(value);
	if (strchr(name, '/') != NULL)
		full = strdup(name);
	else if (asprintf(&full, "%s/%s", TG_PLUGIN_DIR, name) < 0)
		full = NULL;
	if (full == NULL) {
		report_oom(ctx, path);
		return;
	}
	*FIELD(base, s, char *) = full;
}

/* --- one filter --------------------------------------------------------- */

static const struct setting filter_settings[] = {
	{ .key = "type", .type = T_CUSTOM, .parse = parse_type, .required = true,
	  .doc_type = "string", .offset = offsetof(struct tg_filter, type),
	  .help = "regex, moderation (a classifier service) or plugin (in-process)" },
	{ .key = "apply_to", .type = T_CUSTOM, .parse = parse_apply_to, .def = "[\"request\"]",
	  .doc_type = "array", .offset = offsetof(struct tg_filter, apply_to),
	  .help = "sides checked: \"request\" (prompt text), \"response\" (completions)" },
	{ .key = "action", .type = T_CUSTOM, .parse = parse_action, .def = "\"block\"",
	  .doc_type = "string", .offset = offsetof(struct tg_filter, action),
	  .help = "block, mask (regex only: replace the match) or flag (record only)" },
	{ .key = "presets", .type = T_CUSTOM, .parse = parse_presets, .doc_type = "array",
	  .help = "built-in rules: email, phone, credit_card, api_key, ipv4, ipv6" },
	{ .key = "rules", .type = T_CUSTOM, .parse = parse_rules, .doc_type = "array",
	  .section = &rule_section, .element = "[]",
	  .help = "regex rules of the filter: {\"name\", \"pattern\", \"caseless\"}" },
	{ .key = "replacement", .type = T_STRING, .def = "\"" TG_FILTER_REPLACEMENT "\"",
	  .offset = offsetof(struct tg_filter, replacement),
	  .help = "text that replaces a masked match; {rule} becomes the rule name" },
	{ .key = "hold", .type = T_SIZE, .def = "\"1KiB\"", .min = 16, .max = 1024 * 1024,
	  .offset = offsetof(struct tg_filter, hold),
	  .help = "max bytes of streamed text held back while it may still become a match" },
	{ .key = "hold_timeout", .type = T_DURATION, .min = 1, .max = HOLD_TIMEOUT_MAX,
	  .offset = offsetof(struct tg_filter, hold_timeout),
	  .help = "max time streamed text is held back; absent: until the next event decides" },
	{ .key = "backend", .type = T_NAME,
	  .offset = offsetof(struct tg_filter, moderation.backend_name),
	  .help = "moderation: the backend that serves the classifier" },
	{ .key = "api", .type = T_CUSTOM, .parse = parse_api, .def = "\"openai\"",
	  .doc_type = "string", .offset = offsetof(struct tg_filter, moderation.api),
	  .help = "moderation: openai (/v1/moderations) or chat (a guard model)" },
	{ .key = "model", .type = T_STRING, .offset = offsetof(struct tg_filter, model),
	  .help = "moderation: model name sent; plugin: model file for its init" },
	{ .key = "timeout", .type = T_DURATION, .def = "\"1s\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_filter, moderation.timeout),
	  .help = "moderation: how long a classifier call may take" },
	{ .key = "on_error", .type = T_CUSTOM, .parse = parse_on_error, .def = "\"block\"",
	  .doc_type = "string", .offset = offsetof(struct tg_filter, on_error_block),
	  .help = "classifier failed or timed out: allow (fail open) or block (fail closed)" },
	{ .key = "thresholds", .type = T_CUSTOM, .parse = parse_thresholds, .doc_type = "object",
	  .help = "moderation, openai: category score limits; absent uses \"flagged\"" },
	{ .key = "verdict_pattern", .type = T_CUSTOM, .parse = parse_pattern,
	  .doc_type = "string", .offset = offsetof(struct tg_filter, moderation.verdict_pattern),
	  .help = "moderation, chat: PCRE2 pattern that an unsafe reply matches; default ^\\s*unsafe" },
	{ .key = "path", .type = T_CUSTOM, .parse = parse_plugin_path, .doc_type = "string",
	  .offset = offsetof(struct tg_filter, plugin_path),
	  .help = "plugin: shared object; a bare name is looked up in " TG_PLUGIN_DIR },
	{ .key = "labels", .type = T_CUSTOM, .parse = parse_labels, .doc_type = "object",
	  .help = "plugin: labels that trigger the action, with their minimum scores" },
};
static const struct section filter_section = SECTION(filter_settings);

/* Keys that only some types take. */
static const struct {
	const char *key;
	unsigned types;         /* bits of 1 << enum tg_filter_type */
} typed_keys[] = {
	{"presets", 1u << TG_FILTER_REGEX},
	{"rules", 1u << TG_FILTER_REGEX},
	{"replacement", 1u << TG_FILTER_REGEX},
	{"hold", 1u << TG_FILTER_REGEX},
	{"hold_timeout", 1u << TG_FILTER_REGEX},
	{"backend", 1u << TG_FILTER_MODERATION},
	{"api", 1u << TG_FILTER_MODERATION},
	{"timeout", 1u << TG_FILTER_MODERATION},
	{"thresholds", 1u << TG_FILTER_MODERATION},
	{"verdict_pattern", 1u << TG_FILTER_MODERATION},
	{"model", 1u << TG_FILTER_MODERATION | 1u << TG_FILTER_PLUGIN},
	{"on_error", 1u << TG_FILTER_MODERATION | 1u << TG_FILTER_PLUGIN},
	{"path", 1u << TG_FILTER_PLUGIN},
	{"labels", 1u << TG_FILTER_PLUGIN},
};

static void
check_typed_keys(struct load_ctx *ctx, const char *path, json_t *value,
                 const struct tg_filter *f)
{
	char child[PATH_LEN];

	for (size_t i = 0; i < ARRAY_LEN(typed_keys); i++) {
		if (json_object_get(value, typed_keys[i].key) == NULL ||
		    (typed_keys[i].types & (1u << f->type)))
			continue;
		report(ctx, path_key(child, path, typed_keys[i].key),
		       "not used by %s filters; remove it or change \"type\"",
		       type_words[f->type].name);
	}
}

#define PLACEHOLDER_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

/* Warn of each "{word}" in replacement, at path, other than "{rule}".
 * It reaches clients as written, which may be meant, because braces have
 * no escape. */
static void
check_replacement(struct load_ctx *ctx, const char *path, const char *replacement)
{
	char q[QUOTE_LEN];

	for (const char *p = strchr(replacement, '{'); p != NULL; p = strchr(p + 1, '{')) {
		size_t len = strspn(p + 1, PLACEHOLDER_CHARS);

		if (len == 0 || p[1 + len] != '}' || (len == 4 && strncmp(p + 1, "rule", 4) == 0))
			continue;
		report_warning(ctx, path, "\"%.*s\" in %s is no placeholder and is sent as "
		               "written; the only placeholder is {rule}, the name of the rule "
		               "that matched", len > 40 ? 42 : (int)len + 2, p,
		               quote(replacement, q, sizeof(q)));
	}
}

/* 1 when value, a key's value or NULL, is there and is no empty array. */
static int
has_entries(const json_t *value)
{
	return value != NULL && !(json_is_array(value) && json_array_size(value) == 0);
}

static void
check_regex(struct load_ctx *ctx, const char *path, json_t *value, struct tg_filter *f)
{
	char child[PATH_LEN];

	if (f->replacement != NULL)
		check_replacement(ctx, path_key(child, path, "replacement"), f->replacement);

	/* An empty list matches nothing, as a missing one does. A list with
	 * entries that gave no rule had its own error. */
	if (f->n_rules == 0 && !has_entries(json_object_get(value, "presets")) &&
	    !has_entries(json_object_get(value, "rules")))
		report(ctx, path, "a regex filter needs \"presets\", \"rules\" or both, "
		       "with at least one entry");

	/* Only streamed responses are held, so on a request-only filter the
	 * key would be accepted and do nothing. */
	if (json_object_get(value, "hold_timeout") != NULL && !(f->apply_to & TG_SIDE_RESPONSE))
		report(ctx, path_key(child, path, "hold_timeout"), "has no effect because the "
		       "filter checks requests only; it bounds how long streamed response text "
		       "is held, so add \"response\" to \"apply_to\" or remove it");
}

static void
check_moderation(struct load_ctx *ctx, const char *path, struct tg_filter *f)
{
	struct tg_moderation *m = &f->moderation;
	const char *pattern = m->verdict_pattern ? m->verdict_pattern : DEFAULT_VERDICT_PATTERN;
	char child[PATH_LEN], q[QUOTE_LEN];
	PCRE2_UCHAR message[256];
	PCRE2_SIZE offset;
	int code;

	if (f->apply_to & TG_SIDE_RESPONSE)
		report(ctx, path_key(child, path, "apply_to"), "moderation filters check requests "
		       "only; remove \"response\" or use a regex or plugin filter");
	m->failure_log = calloc(1, sizeof(*m->failure_log));
	if (m->failure_log == NULL)
		report(ctx, path, "out of memory");
	if (m->backend_name == NULL) {
		report(ctx, path, "a moderation filter needs \"backend\", the classifier service");
	} else {
		m->backend = tg_config_backend(ctx->cfg, m->backend_name);
		if (m->backend == NULL)
			report_unknown_backend(ctx, path_key(child, path, "backend"), m->backend_name);
	}

	if (m->api != TG_MODERATION_CHAT)
		return;
	m->verdict_code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
	                                PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code,
	                                &offset, NULL);
	if (m->verdict_code == NULL) {
		pcre2_get_error_message(code, message, sizeof(message));
		report(ctx, path_key(child, path, "verdict_pattern"),
		       "invalid pattern %s: %s at offset %zu", quote(pattern, q, sizeof(q)),
		       (const char *)message, (size_t)offset);
	}
}

static void
check_plugin(struct load_ctx *ctx, const char *path, json_t *value, struct tg_filter *f)
{
	char child[PATH_LEN], err[512];
	char *config_json;

	if (f->plugin_path == NULL) {
		if (json_object_get(value, "path") == NULL)
			report(ctx, path, "a plugin filter needs \"path\", its shared object");
		return;
	}
	if (f->n_labels == 0 && json_object_get(value, "labels") == NULL) {
		report(ctx, path, "a plugin filter needs \"labels\": the labels that trigger "
		       "its action, with their minimum scores");
		return;
	}

	config_json = json_dumps(value, JSON_COMPACT);
	if (config_json == NULL) {
		report_oom(ctx, path);
		return;
	}
	f->plugin = tg_plugin_load(f->plugin_path, f->name, f->model, config_json,
	                           err, sizeof(err));
	free(config_json);
	if (f->plugin == NULL)
		report(ctx, path_key(child, path, "path"), "%s", err);
}

/* Parse one named filter into f and check what the table cannot. */
static void
parse_filter(struct load_ctx *ctx, const char *path, const char *name, json_t *value,
             struct tg_filter *f)
{
	char q[QUOTE_LEN];

	if (!json_is_object(value)) {
		report_type(ctx, path, "a filter object", value);
		return;
	}
	if (!is_valid_name(name))
		report(ctx, path, "invalid filter name %s; use 1 to %d letters, digits, "
		       "'_', '-' or '.'", quote(name, q, sizeof(q)), NAME_MAX_LEN);
	f->name = strdup(name);
	f->config_json = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
	if (f->name == NULL || f->config_json == NULL) {
		report_oom(ctx, path);
		return;
	}

	parse_section(ctx, path, value, f, &filter_section);
	if (json_object_get(value, "type") == NULL)
		return;
	check_typed_keys(ctx, path, value, f);

	if (f->action == TG_ACTION_MASK && f->type != TG_FILTER_REGEX) {
		char child[PATH_LEN];

		report(ctx, path_key(child, path, "action"), "mask needs a regex filter, since "
		       "a classifier finds no span to replace; use block or flag");
	}

	switch (f->type) {
	case TG_FILTER_REGEX:
		check_regex(ctx, path, value, f);
		break;
	case TG_FILTER_MODERATION:
		check_moderation(ctx, path, f);
		break;
	case TG_FILTER_PLUGIN:
		check_plugin(ctx, path, value, f);
		break;
	}
}

/* --- sections ----------------------------------------------------------- */

static void
parse_filters(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	struct tg_filters_config *fc;
	char child[PATH_LEN];
	const char *name;
	json_t *item;

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of filters by name", value);
		return;
	}
	if (json_object_size(value) > MAX_FILTERS) {
		report(ctx, path, "%zu filters; at most %d are allowed",
		       json_object_size(value), MAX_FILTERS);
		return;
	}
	fc = calloc(1, sizeof(*fc));
	if (fc != NULL)
		fc->filters = calloc(json_object_size(value) + 1, sizeof(*fc->filters));
	if (fc == NULL || fc->filters == NULL) {
		free(fc);
		report_oom(ctx, path);
		return;
	}
	*FIELD(base, s, struct tg_filters_config *) = fc;

	json_object_foreach(value, name, item) {
		parse_filter(ctx, path_key(child, path, name), name, item, &fc->filters[fc->n]);
		fc->n++;
	}
}

static void
free_filters(void *obj)
{
	struct tg_filters_config *fc = obj;

	for (size_t i = 0; i < fc->n; i++)
		tg_filter_free(&fc->filters[i]);
	free(fc->filters);
	free(fc);
}

const struct feature tg_filters_feature = {
	.parse = parse_filters, .free = free_filters, .section = &filter_section,
	.element = ".NAME", .doc_type = "object",
};

const struct tg_filter *
tg_filters_find(const struct tg_filters_config *fc, const char *name)
{
	for (size_t i = 0; fc != NULL && i < fc->n; i++) {
		if (fc->filters[i].name != NULL && strcmp(fc->filters[i].name, name) == 0)
			return &fc->filters[i];
	}
	return NULL;
}

/* A route's filters resolve against the top-level section, which the top
 * table parses before "routes". */
static void
parse_route_filters(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                    const struct setting *s)
{
	const struct tg_filters_config *fc = ctx->cfg->filters;
	struct tg_route_filters_config *rf;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t i;
	json_t *item;

	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of filter names", value);
		return;
	}
	rf = calloc(1, sizeof(*rf));
	if (rf != NULL)
		rf->chain.filters = calloc(json_array_size(value) + 1, sizeof(*rf->chain.filters));
	if (rf == NULL || rf->chain.filters == NULL) {
		free(rf);
		report_oom(ctx, path);
		return;
	}
	*FIELD(base, s, struct tg_route_filters_config *) = rf;

	json_array_foreach(value, i, item) {
		const struct tg_filter *f;

		path_index(child, path, i);
		if (!json_is_string(item)) {
			report_type(ctx, child, "a filter name", item);
			continue;
		}
		f = tg_filters_find(fc, json_string_value(item));
		if (f == NULL) {
			report(ctx, child, "no filter called %s in the top-level \"filters\" section",
			       quote(json_string_value(item), q, sizeof(q)));
			continue;
		}
		for (size_t j = 0; j < rf->chain.n; j++) {
			if (rf->chain.filters[j] == f)
				report(ctx, child, "filter %s is listed twice",
				       quote(f->name, q, sizeof(q)));
		}
		rf->chain.filters[rf->chain.n++] = f;
	}
}

static void
free_route_filters(void *obj)
{
	struct tg_route_filters_config *rf = obj;

	free(rf->chain.filters);
	free(rf);
}

const struct feature tg_route_filters_feature = {
	.parse = parse_route_filters, .free = free_route_filters, .doc_type = "array",
};
