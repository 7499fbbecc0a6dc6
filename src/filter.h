/*
 * Content filters: the decision log, masking, and the synchronous checks
 * (regex rules and in-process plugins) over the texts of a JSON body.
 *
 * Streamed responses use filter-stream.h, classifier services
 * filter-moderation.h, and the request path ties them together in
 * filter-request.h.
 */
#ifndef TOLLGATE_FILTER_H
#define TOLLGATE_FILTER_H

#include <stddef.h>

#include <jansson.h>

#include "filter-rule.h"
#include "filter-t.h"

struct evbuffer;

/* The default "replacement": the rule name goes where "{rule}" is. */
#define TG_FILTER_REPLACEMENT "[REDACTED:{rule}]"

/* The default "hold": bytes of a streamed text held back at most. */
#define TG_FILTER_HOLD 1024

const char *tg_filter_action_name(enum tg_filter_action action);
const char *tg_side_name(enum tg_side side);

/* Release what a filter owns (rules, plugin state) but not f itself. */
void tg_filter_free(struct tg_filter *f);

/* --- decisions ---------------------------------------------------------- */

void tg_filter_log_free(struct tg_filter_log *log);

/* Record a decision; rule must outlive log (it points into the config).
 * Returns 0, or -1 when out of memory. */
int tg_filter_log_add(struct tg_filter_log *log, const struct tg_filter *f,
                      const char *rule, enum tg_filter_action action,
                      enum tg_side side, int error);

/* --- masking ------------------------------------------------------------ */

/*
 * Return a copy of len bytes of text with each of the n matches (sorted, not
 * overlapping, original offsets) replaced by f's replacement for its rule;
 * *out_len gets its length. NULL when out of memory.
 */
char *tg_filter_mask(const struct tg_filter *f, const char *text, size_t len,
                     const struct tg_match *matches, size_t n, size_t *out_len);

/* --- texts of a body ---------------------------------------------------- */

/* JSON string values that the filters read and may rewrite in place. */
struct tg_text_list {
	size_t n, cap;
	json_t **items;
};

void tg_text_list_free(struct tg_text_list *list);

/*
 * Collect every piece of prompt text of a request body: "messages" content
 * as a string or as text parts (any role: system, developer, user,
 * assistant, tool), refusals, tool call and function call arguments,
 * "prompt" and "input" (a string or an array of strings; token arrays are
 * not text). Returns 0, or -1 when out of memory.
 */
int tg_text_collect_request(json_t *body, struct tg_text_list *out);

/* The same for a non-streaming response: each choice's message content,
 * refusal, tool call and function call arguments, and "text" of a
 * completion. */
int tg_text_collect_response(json_t *body, struct tg_text_list *out);

/* Outcome of checking a body. */
struct tg_filter_result {
	int changed;                    /* some text was masked */
	const struct tg_filter *blocked;        /* the filter that blocked */
	const char *blocked_rule;       /* its rule, category or label */
};

/*
 * Run the regex and plugin filters of chain that apply to side over texts,
 * in chain order: record each decision in log, mask in place, and stop at
 * the first block. Moderation filters are skipped here (they run through
 * filter-moderation.h); when need_moderation is not NULL it is set to 1 if
 * one applies. sc is scratch space. Returns 0, or -1 when out of memory or
 * a match failed inside PCRE2.
 */
int tg_filter_texts(const struct tg_filter_chain *chain, enum tg_side side,
                    struct tg_text_list *texts, struct tg_filter_log *log,
                    struct tg_scan *sc, struct tg_filter_result *res,
                    int *need_moderation);

/*
 * Classify len bytes of text with plugin filter f and return the first
 * configured label whose score reaches its threshold, or NULL. *failed is
 * set when the plugin returned an error.
 */
const char *tg_filter_plugin_check(const struct tg_filter *f, const char *text,
                                   size_t len, int *failed);

/*
 * Write the body of a request rejected by f: the OpenAI error shape with
 * "type": "invalid_request_error", "code": "content_filter", and a message
 * naming the filter and the rule (never the matched text).
 */
int tg_filter_error_body(struct evbuffer *out, const struct tg_filter *f,
                         const char *rule);

#endif
