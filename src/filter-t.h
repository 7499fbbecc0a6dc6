/*
 * Types of the content filters.
 *
 * A struct tg_filter is built once at config load (patterns compiled,
 * plugins loaded, classifier backends resolved) and is then read-only, part
 * of the immutable config snapshot, so every worker uses it without a lock.
 * What a request learns (the decisions) lives in the request's
 * struct tg_filter_log.
 */
#ifndef TOLLGATE_FILTER_T_H
#define TOLLGATE_FILTER_T_H

#include <stddef.h>
#include <stdint.h>

#include "config-t.h"

enum tg_filter_type {
	TG_FILTER_REGEX,
	TG_FILTER_MODERATION,
	TG_FILTER_PLUGIN,
};

/* What happens when a filter matches. */
enum tg_filter_action {
	TG_ACTION_FLAG,         /* record the decision, change nothing */
	TG_ACTION_MASK,         /* replace the matched text (regex filters) */
	TG_ACTION_BLOCK,        /* reject the request or end the response */
};

/* Which side a filter checks; apply_to is a mask of these. */
enum tg_side {
	TG_SIDE_REQUEST = 1,
	TG_SIDE_RESPONSE = 2,
};

struct tg_filter_rule;

/* A check run on each match before it counts, such as the Luhn checksum of
 * a card number. text is the matched normalised text. Returns 1 to keep. */
typedef int tg_rule_validate_fn(const char *text, size_t len);

struct tg_filter_rule {
	char *name;
	char *pattern;                  /* as written, for messages */
	int caseless;                   /* match the case-folded text */
	void *code;                     /* pcre2_code_8, compiled with JIT */
	tg_rule_validate_fn *validate;  /* NULL: every match counts */
	uint32_t lookbehind;            /* code points of context it may need */
	int required;                   /* a byte every match contains, or -1:
	                                   PCRE2's last literal code unit, else
	                                   its first; a letter in either case */
	uint32_t min_length;            /* code points of the shortest match */
};

/* The two classifier protocols a moderation filter speaks. */
enum tg_moderation_api {
	TG_MODERATION_OPENAI,   /* POST /v1/moderations: flagged, category_scores */
	TG_MODERATION_CHAT,     /* a guard model over chat completions, whose
	                           answer is read with verdict_pattern */
};

/* A per-category score threshold; the category counts when its score is at
 * or above the threshold. */
struct tg_threshold {
	char *name;
	double score;
};

struct tg_moderation {
	enum tg_moderation_api api;
	char *backend_name;
	const struct tg_backend *backend;       /* resolved at load */
	tg_msec_t timeout;
	size_t n_thresholds;
	struct tg_threshold *thresholds;        /* empty: use "flagged" */
	char *verdict_pattern;          /* TG_MODERATION_CHAT, as written */
	void *verdict_code;             /* pcre2_code_8; a match means unsafe */
	struct tg_log_limit *failure_log;       /* of failed calls, shared by the
	                                           workers; apart, because the
	                                           filter is read-only once loaded */
};

struct tg_plugin_instance;
struct tg_log_limit;

struct tg_filter {
	char *name;
	char *config_json;              /* its config object as compact JSON
	                                   with sorted keys, for cache keys */
	enum tg_filter_type type;
	enum tg_filter_action action;
	unsigned apply_to;              /* enum tg_side bits */
	char *replacement;              /* "{rule}" is replaced by the rule name */
	size_t hold;                    /* max bytes of a stream held back */
	tg_msec_t hold_timeout;         /* max time text of a stream is held
	                                   back; 0: until it is decided */
	int on_error_block;             /* a classifier failed: 1 blocks, 0
	                                   lets the text pass */

	size_t n_rules;                 /* TG_FILTER_REGEX */
	struct tg_filter_rule *rules;
	uint32_t lookbehind;            /* max over rules */

	struct tg_moderation moderation;        /* TG_FILTER_MODERATION */

	/* Moderation: the "model" sent to the classifier (NULL: none).
	 * Plugin: the model file given to the plugin's init. */
	char *model;

	char *plugin_path;              /* TG_FILTER_PLUGIN, as resolved */
	struct tg_plugin_instance *plugin;
	size_t n_labels;
	struct tg_threshold *labels;    /* labels that trigger, with min score */
};

/* The filters of a route, in the order they run. */
struct tg_filter_chain {
	size_t n;
	const struct tg_filter **filters;
};

/* The top-level "filters" section: every filter, by name. */
struct tg_filters_config {
	size_t n;
	struct tg_filter *filters;
};

/* A route's "filters": the names resolved into a chain. */
struct tg_route_filters_config {
	struct tg_filter_chain chain;
};

/* One decision: a filter matched (or failed) on one side of a request. The
 * strings point into the config snapshot the request holds a reference to,
 * so they never contain request text. */
struct tg_filter_decision {
	const char *filter;
	const char *rule;               /* rule, category or label */
	enum tg_filter_action action;
	enum tg_side side;
	int error;                      /* the classifier failed; action is
	                                   what on_error chose */
	int unmaskable;                 /* a mask filter blocked, because its
	                                   match lay where no mask may rewrite
	                                   (tg_filter_log_unmaskable()) */
};

/* Decisions of one request, in the order they were taken. Repeats of the
 * same decision (every member alike) are counted, not stored again. */
struct tg_filter_log {
	size_t n, cap;
	struct tg_filter_decision *items;
	unsigned *counts;
};

#endif
