/*
 * Content filters: names, the decision log, masking, and error bodies.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <event2/buffer.h>
#include <pcre2.h>

#include "filter-plugin.h"
#include "filter.h"

const char *
tg_filter_action_name(enum tg_filter_action action)
{
	switch (action) {
	case TG_ACTION_FLAG:
		return "flag";
	case TG_ACTION_MASK:
		return "mask";
	case TG_ACTION_BLOCK:
		return "block";
	}
	return "unknown";
}

const char *
tg_side_name(enum tg_side side)
{
	return side == TG_SIDE_REQUEST ? "request" : "response";
}

static void
free_thresholds(struct tg_threshold *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

void
tg_filter_free(struct tg_filter *f)
{
	struct tg_moderation *m = &f->moderation;

	free(f->config_json);
	for (size_t i = 0; i < f->n_rules; i++)
		tg_rule_free(&f->rules[i]);
	free(f->rules);

	free(m->backend_name);
	free_thresholds(m->thresholds, m->n_thresholds);
	free(m->verdict_pattern);
	pcre2_code_free(m->verdict_code);
	free(m->failure_log);

	if (f->plugin != NULL)
		tg_plugin_unload(f->plugin);
	free(f->plugin_path);
	free(f->model);
	free_thresholds(f->labels, f->n_labels);

	free(f->name);
	free(f->replacement);
	memset(f, 0, sizeof(*f));
}

/* --- decisions ---------------------------------------------------------- */

void
tg_filter_log_free(struct tg_filter_log *log)
{
	free(log->items);
	free(log->counts);
	memset(log, 0, sizeof(*log));
}

/* Count d in log, or append it when log has no decision alike. */
static int
log_decision(struct tg_filter_log *log, const struct tg_filter_decision *d)
{
	for (size_t i = 0; i < log->n; i++) {
		const struct tg_filter_decision *x = &log->items[i];

		if (x->filter == d->filter && x->rule == d->rule && x->action == d->action &&
		    x->side == d->side && x->error == d->error && x->unmaskable == d->unmaskable) {
			log->counts[i]++;
			return 0;
		}
	}

	if (log->n == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 4;
		struct tg_filter_decision *items = realloc(log->items, cap * sizeof(*items));
		unsigned *counts;

		if (items == NULL)
			return -1;
		log->items = items;
		counts = realloc(log->counts, cap * sizeof(*counts));
		if (counts == NULL)
			return -1;
		log->counts = counts;
		log->cap = cap;
	}
	log->items[log->n] = *d;
	log->counts[log->n] = 1;
	log->n++;
	return 0;
}

int
tg_filter_log_add(struct tg_filter_log *log, const struct tg_filter *f, const char *rule,
                  enum tg_filter_action action, enum tg_side side, int error)
{
	struct tg_filter_decision d = {f->name, rule, action, side, error, 0};

	return log_decision(log, &d);
}

int
tg_filter_log_unmaskable(struct tg_filter_log *log, const struct tg_filter *f,
                         const char *rule, enum tg_side side)
{
	struct tg_filter_decision d = {f->name, rule, TG_ACTION_BLOCK, side, 0, 1};

	assert(f->action == TG_ACTION_MASK);
	return log_decision(log, &d);
}

/* --- masking ------------------------------------------------------------ */

/* Append f's replacement for rule to out. */
static int
add_replacement(struct evbuffer *out, const struct tg_filter *f, const char *rule)
{
	const char *tpl = f->replacement ? f->replacement : TG_FILTER_REPLACEMENT;
	const char *p;

	while ((p = strstr(tpl, "{rule}")) != NULL) {
		if (evbuffer_add(out, tpl, (size_t)(p - tpl)) != 0 ||
		    evbuffer_add(out, rule, strlen(rule)) != 0)
			return -1;
		tpl = p + 6;
	}
	return evbuffer_add(out, tpl, strlen(tpl));
}

char *
tg_filter_mask(const struct tg_filter *f, const char *text, size_t len,
               const struct tg_match *matches, size_t n, size_t *out_len)
{
	struct evbuffer *out = evbuffer_new();
	size_t pos = 0;
	char *result = NULL;
	int rc = out == NULL ? -1 : 0;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = evbuffer_add(out, text + pos, matches[i].start - pos);
		if (rc == 0)
			rc = add_replacement(out, f, matches[i].rule->name);
		pos = matches[i].end;
	}
	if (rc == 0)
		rc = evbuffer_add(out, text + pos, len - pos);

	if (rc == 0) {
		*out_len = evbuffer_get_length(out);
		result = malloc(*out_len + 1);
		if (result != NULL) {
			evbuffer_remove(out, result, *out_len);
			result[*out_len] = '\0';
		}
	}
	if (out != NULL)
		evbuffer_free(out);
	return result;
}

void
tg_filter_drop_logprobs(json_t *body)
{
	json_t *choices = json_object_get(body, "choices");
	json_t *choice;
	size_t i;

	json_array_foreach(choices, i, choice) {
		if (json_object_get(choice, "logprobs") != NULL)
			json_object_set_new(choice, "logprobs", json_null());
	}
}

/* --- errors ------------------------------------------------------------- */

int
tg_filter_error_body(struct evbuffer *out, enum tg_error_shape shape,
                     const struct tg_filter *f, const char *rule)
{
	char message[512];
	json_t *extra;

	if (rule != NULL)
		snprintf(message, sizeof(message),
		         "the request was rejected by content filter \"%s\" (rule \"%s\")",
		         f->name, rule);
	else
		snprintf(message, sizeof(message),
		         "the request was rejected because content filter \"%s\" could not check "
		         "it: its classifier failed, and the filter's on_error setting rejects "
		         "what it cannot check", f->name);

	/* OpenAI's shape has "param", Anthropic's does not. */
	if (shape == TG_ERROR_ANTHROPIC)
		extra = json_pack("{s:s, s:s?}", "filter", f->name, "rule", rule);
	else
		extra = json_pack("{s:n, s:s, s:s?}", "param", "filter", f->name, "rule", rule);
	if (extra == NULL)
		return -1;
	return tg_error_shaped_body(out, shape, TG_E_CONTENT_FILTER, message, extra);
}
