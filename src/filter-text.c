/*
 * The texts of OpenAI-shaped JSON bodies, and the synchronous filters over
 * them: regex rules (flag, mask, block) and in-process plugins.
 */
#include <stdlib.h>
#include <string.h>

#include <tollgate/plugin.h>

#include "filter-plugin.h"
#include "filter.h"

/* Labels read from one plugin call; a classifier with more has them cut. */
#define MAX_PLUGIN_LABELS 32

void
tg_text_list_free(struct tg_text_list *list)
{
	free(list->items);
	memset(list, 0, sizeof(*list));
}

static int
add_text(struct tg_text_list *list, json_t *value)
{
	if (!json_is_string(value))
		return 0;
	if (list->n == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		json_t **items = realloc(list->items, cap * sizeof(*items));

		if (items == NULL)
			return -1;
		list->items = items;
		list->cap = cap;
	}
	list->items[list->n++] = value;
	return 0;
}

/* A string, or an array whose string elements are texts ("prompt" and
 * "input"; nested token arrays are skipped). */
static int
add_string_or_strings(struct tg_text_list *list, json_t *value)
{
	size_t i;
	json_t *item;

	if (!json_is_array(value))
		return add_text(list, value);
	json_array_foreach(value, i, item) {
		if (add_text(list, item) != 0)
			return -1;
	}
	return 0;
}

/* "content" as a string, or an array of parts of which the text parts
 * count ({"type": "text", "text": ...}; also "input_text" and
 * "output_text" of the Responses API shape). */
static int
add_content(struct tg_text_list *list, json_t *content)
{
	size_t i;
	json_t *part;

	if (!json_is_array(content))
		return add_text(list, content);
	json_array_foreach(content, i, part) {
		if (add_text(list, json_object_get(part, "text")) != 0 ||
		    add_text(list, json_object_get(part, "refusal")) != 0)
			return -1;
	}
	return 0;
}

/* Arguments of "tool_calls" and of the older "function_call". They are
 * JSON text, checked as plain text.
 * NOTE: a match on a bare JSON number there (a card number not in quotes)
 * is masked with a replacement that leaves the arguments invalid JSON. */
static int
add_calls(struct tg_text_list *list, json_t *message)
{
	json_t *calls = json_object_get(message, "tool_calls");
	size_t i;
	json_t *call;

	json_array_foreach(calls, i, call) {
		if (add_text(list, json_object_get(json_object_get(call, "function"),
		                                   "arguments")) != 0)
			return -1;
	}
	return add_text(list, json_object_get(json_object_get(message, "function_call"),
	                                      "arguments"));
}

static int
add_message(struct tg_text_list *list, json_t *message)
{
	if (add_content(list, json_object_get(message, "content")) != 0 ||
	    add_text(list, json_object_get(message, "refusal")) != 0)
		return -1;
	return add_calls(list, message);
}

int
tg_text_collect_request(json_t *body, struct tg_text_list *out)
{
	json_t *messages = json_object_get(body, "messages");
	size_t i;
	json_t *message;

	json_array_foreach(messages, i, message) {
		if (add_message(out, message) != 0)
			return -1;
	}
	if (add_string_or_strings(out, json_object_get(body, "prompt")) != 0 ||
	    add_string_or_strings(out, json_object_get(body, "input")) != 0)
		return -1;
	return 0;
}

int
tg_text_collect_response(json_t *body, struct tg_text_list *out)
{
	json_t *choices = json_object_get(body, "choices");
	size_t i;
	json_t *choice;

	json_array_foreach(choices, i, choice) {
		json_t *message = json_object_get(choice, "message");

		if (message != NULL && add_message(out, message) != 0)
			return -1;
		if (add_text(out, json_object_get(choice, "text")) != 0)
			return -1;
	}
	return 0;
}

/* --- running filters ---------------------------------------------------- */

/* Mask the matches of one text in place. */
static int
mask_text(const struct tg_filter *f, json_t *value, const struct tg_scan *sc)
{
	size_t len;
	char *masked = tg_filter_mask(f, json_string_value(value), json_string_length(value),
	                              sc->matches, sc->n_matches, &len);
	int rc;

	if (masked == NULL)
		return -1;
	rc = json_string_setn_nocheck(value, masked, len);
	free(masked);
	return rc;
}

static int
run_regex(const struct tg_filter *f, enum tg_side side, struct tg_text_list *texts,
          struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	for (size_t i = 0; i < texts->n; i++) {
		json_t *value = texts->items[i];

		if (tg_scan_run(sc, f, json_string_value(value), json_string_length(value),
		                0, 0) != 0)
			return -1;
		for (size_t j = 0; j < sc->n_matches; j++) {
			if (tg_filter_log_add(log, f, sc->matches[j].rule->name, f->action,
			                      side, 0) != 0)
				return -1;
		}
		if (sc->n_matches == 0)
			continue;

		if (f->action == TG_ACTION_BLOCK) {
			res->blocked = f;
			res->blocked_rule = sc->matches[0].rule->name;
			return 0;
		}
		if (f->action == TG_ACTION_MASK) {
			if (mask_text(f, value, sc) != 0)
				return -1;
			res->changed = 1;
		}
	}
	return 0;
}

const char *
tg_filter_plugin_check(const struct tg_filter *f, const char *text, size_t len, int *failed)
{
	struct tollgate_label labels[MAX_PLUGIN_LABELS];
	int n = tg_plugin_classify(f->plugin, text, len, labels, MAX_PLUGIN_LABELS);

	*failed = n < 0;
	for (int i = 0; i < n; i++) {
		for (size_t j = 0; j < f->n_labels; j++) {
			if (labels[i].name != NULL && strcmp(labels[i].name, f->labels[j].name) == 0 &&
			    labels[i].score >= f->labels[j].score)
				return f->labels[j].name;
		}
	}
	return NULL;
}

static int
run_plugin(const struct tg_filter *f, enum tg_side side, struct tg_text_list *texts,
           struct tg_filter_log *log, struct tg_filter_result *res)
{
	for (size_t i = 0; i < texts->n; i++) {
		json_t *value = texts->items[i];
		int failed;
		const char *label = tg_filter_plugin_check(f, json_string_value(value),
		                                           json_string_length(value), &failed);
		enum tg_filter_action action = f->action;

		if (failed) {
			action = f->on_error_block ? TG_ACTION_BLOCK : TG_ACTION_FLAG;
			if (tg_filter_log_add(log, f, NULL, action, side, 1) != 0)
				return -1;
		} else if (label != NULL) {
			if (tg_filter_log_add(log, f, label, action, side, 0) != 0)
				return -1;
		} else {
			continue;
		}

		if (action == TG_ACTION_BLOCK) {
			res->blocked = f;
			res->blocked_rule = label;
			return 0;
		}
	}
	return 0;
}

int
tg_filter_texts(const struct tg_filter_chain *chain, enum tg_side side,
                struct tg_text_list *texts, struct tg_filter_log *log,
                struct tg_scan *sc, struct tg_filter_result *res, int *need_moderation)
{
	if (need_moderation != NULL)
		*need_moderation = 0;

	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];
		int rc = 0;

		if (!(f->apply_to & side))
			continue;
		if (f->type == TG_FILTER_REGEX)
			rc = run_regex(f, side, texts, log, sc, res);
		else if (f->type == TG_FILTER_PLUGIN)
			rc = run_plugin(f, side, texts, log, res);
		else if (need_moderation != NULL)
			*need_moderation = 1;
		if (rc != 0)
			return -1;
		if (res->blocked != NULL)
			return 0;
	}
	return 0;
}
