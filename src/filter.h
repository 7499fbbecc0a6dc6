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

#include "errors.h"
#include "filter-rule.h"
#include "filter-t.h"

struct evbuffer;
struct tg_reply_detail;
struct tg_reply_digest;
struct tg_reply_tap;

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

/* Record the block of mask filter f, whose match of rule lay where no mask
 * may rewrite: a verbatim text (TG_TEXT_VERBATIM), a value of arguments
 * whose place is unknown, or a string that only shows the match decoded.
 * The decision is a block, since the request or response was blocked, and
 * is marked unmaskable, since the filter's action is mask. Returns as
 * tg_filter_log_add() does. */
int tg_filter_log_unmaskable(struct tg_filter_log *log, const struct tg_filter *f,
                             const char *rule, enum tg_side side);

/* --- masking ------------------------------------------------------------ */

/*
 * Return a copy of len bytes of text with each of the n matches (sorted, not
 * overlapping, original offsets) replaced by f's replacement for its rule;
 * *out_len gets its length. NULL when out of memory.
 */
char *tg_filter_mask(const struct tg_filter *f, const char *text, size_t len,
                     const struct tg_match *matches, size_t n, size_t *out_len);

/*
 * Set the "logprobs" of each choice of body (a response or a stream chunk)
 * that has one to null. Call it on a body whose texts a filter masked or
 * blocked, because logprobs repeat the completion token by token ("token",
 * "bytes"), so a client that requested them would read the removed text.
 * The API sends null when the request did not ask for logprobs.
 */
void tg_filter_drop_logprobs(json_t *body);

/* --- texts of a body ---------------------------------------------------- */

/* The way the regex filters read one text of struct tg_text_list. */
enum tg_text_kind {
	TG_TEXT_PLAIN,          /* read whole; a mask rewrites it in place */
	TG_TEXT_ARGUMENTS,      /* a JSON text inside the string
	                           (filter-args.h), whose values are read one
	                           by one */
	TG_TEXT_VERBATIM,       /* read whole, never rewritten: a mask that
	                           matches it blocks instead, because the
	                           value is a name or a choice that the
	                           client's code relies on */
	TG_TEXT_KEY,            /* an object's key, read as TG_TEXT_VERBATIM
	                           is: the item is a copy of the key that the
	                           list owns, since a key is no json_t, so
	                           nothing written to it reaches the body */
	TG_TEXT_NUMBER,         /* a number of a tree, read by its value
	                           (filter-number.h): the item is a string
	                           the list owns, and a mask puts it, masked,
	                           in the number's place (slots) */
};

/* The place of a TG_TEXT_NUMBER text: a member of an object, or an item of
 * an array when key is NULL. verbatim: it is data a mask never rewrites
 * (TG_TEXT_VERBATIM), such as a schema's "default". */
struct tg_text_slot {
	json_t *parent;
	const char *key;
	size_t index;
	int verbatim;
};

/* JSON string values that the filters read and may rewrite in place, and
 * copies of keys (TG_TEXT_KEY), which they read only. */
struct tg_text_list {
	size_t n, cap;
	json_t **items;
	unsigned char *kinds;           /* per item: its enum tg_text_kind */
	struct tg_text_slot *slots;     /* per item, once a number came */
	size_t n_owned;                 /* items the list owns: keys, numbers */
};

void tg_text_list_free(struct tg_text_list *list);

/* Add value to list as a TG_TEXT_PLAIN text. Returns 0, or -1 when out
 * of memory. */
int tg_text_list_add(struct tg_text_list *list, json_t *value);

/*
 * Collect every piece of prompt text of a request body: "messages" content
 * as a string or as text parts (any role: system, developer, user,
 * assistant, tool), a message's "name" (verbatim), refusals, tool call and
 * function call arguments, "prompt", "suffix" and "input" (a string or an
 * array of strings, since token arrays are not text), the items of a
 * Responses API "input" and the variables of its prompt template, and
 * "prediction" content. It collects the descriptions of tools and of
 * structured output formats too, with the texts of their JSON Schemas.
 * The data of "enum", "const", "default" and "required" is collected
 * verbatim, and so are the names of tools, formats, tool calls and
 * "tool_choice"; the names of properties and definitions are collected
 * as keys. Of Anthropic's
 * Messages shape it collects "system" (a string or text blocks) and
 * members of a message's content blocks. These are the text of text and
 * thinking blocks, every string, number and key inside a tool_use block's
 * "input" (and tool call arguments given as an object),
 * a tool_result block's "content" (a string or blocks), and the text of
 * documents and search results. Returns 0, or -1 when out of memory.
 */
int tg_text_collect_request(json_t *body, struct tg_text_list *out);

/* The same for a non-streaming response: each choice's message content,
 * refusal, reasoning, audio transcript, annotation titles, tool call and
 * function call arguments, and "text" of a completion; or the blocks of
 * an Anthropic message's "content", read as in a request; or the items of
 * a Responses API "output"; and an error's message and param. */
int tg_text_collect_response(json_t *body, struct tg_text_list *out);

/* Remove from choice, a choice of a response a block filter stopped, every
 * text that tg_text_collect_response() reads there: its message's members
 * (content becomes null) and a completion's "text" (becomes ""). */
void tg_text_clear_choice(json_t *choice);

/* What the readers below call for each text: len bytes, decoded from
 * JSON, valid only during the call. Return 0 to read on, or nonzero to
 * stop reading. */
typedef int tg_text_fn(void *arg, const char *text, size_t len);

/*
 * Read the texts of a non-streaming response body, the same members that
 * tg_text_collect_response() collects, with yajl's event parser, building
 * no tree, and call fn on each in the order of the text. A member given
 * twice is read twice, where a tree keeps only the last. Of a tool call's
 * arguments, fn gets the texts that tg_filter_texts() scans: each value
 * when they are JSON, or else the arguments whole and their escaped
 * strings decoded. Returns 0 when
 * the whole body was read, 1 when fn stopped the read, or -1 when the body
 * is not JSON to yajl, memory ran out, or the reader leaves the body to
 * the tree. It does so where one pass cannot tell the texts: a JSON
 * Schema nested deeper than it follows, or a document source's "data"
 * before the "type" that shows whether the data is text.
 *
 * NOTE: yajl (2.1) reads a few texts that jansson (2.14) rejects (see
 * reply-digest.h), so a body read here may have no tree.
 */
int tg_text_read_response(struct evbuffer *body, tg_text_fn *fn, void *arg);

/*
 * Read the texts of a request body, the same members that
 * tg_text_collect_request() collects, as tg_text_read_response() reads
 * those of a response. The body's texts are the tree's only when a scan
 * of the body (request-scan.h) found it read alike by jansson and yajl:
 * in a body with a member given twice, this reads both values.
 */
int tg_text_read_request(struct evbuffer *body, tg_text_fn *fn, void *arg);

/* Room for the state of a text reader that another yajl pass feeds
 * (tg_text_tap_request()). Its contents are private to filter-text.c. */
struct tg_text_tap_room {
	union {
		max_align_t align;
		unsigned char bytes[160];
	} u;
};

/*
 * Make *tap a reader of the texts of a request body, the same as
 * tg_text_read_request() reads, for another pass to feed with the yajl
 * events of the body: each goes to tap->callbacks, unless that is NULL,
 * with tap->ctx. The reader calls fn on each text and keeps its state in
 * *room, which must outlive the pass. Callbacks return 0 when fn stopped
 * the read, or when the reader leaves the body to the tree, as
 * tg_text_read_response() describes.
 */
void tg_text_tap_request(struct tg_text_tap_room *room, tg_text_fn *fn, void *arg,
                         struct tg_reply_tap *tap);

/* One text of a body kept by offset and length: into the body for a text
 * without escapes, which yajl passes in place, or into the copies of
 * struct tg_text_spans for one that yajl decoded. */
struct tg_text_span {
	size_t at, len;
	int copied;
};

/* Texts of a body kept without a tree, to be screened later. Zeroed is
 * empty. */
struct tg_text_spans {
	size_t n, cap;
	struct tg_text_span *items;
	char *copies;           /* decoded texts, back to back */
	size_t copies_len, copies_cap;
};

/* Keep text, len bytes that a yajl read of body (body_len bytes) passed.
 * Returns 0, or -1 when out of memory. */
int tg_text_spans_add(struct tg_text_spans *spans, const char *body, size_t body_len,
                      const char *text, size_t len);

/* The bytes of span i of spans, kept from body. */
const char *tg_text_span_bytes(const struct tg_text_spans *spans, size_t i, const char *body);

void tg_text_spans_free(struct tg_text_spans *spans);

/*
 * Read the texts of a non-streaming response body as
 * tg_text_read_response() does, in the pass that reads its reply digest
 * into d, and its detail into x unless x is NULL (reply-digest.h), so
 * that yajl parses the body once. Returns 0 when the whole body was read:
 * fn saw every text, and d and x are what tg_reply_digest_detail_buffer()
 * gives. Returns 1 when fn stopped the read, or the reader left the body
 * to the tree (tg_text_read_response()): d is zeroed and x empty, not
 * the body's digest. Returns -1 when the digest finds the body not JSON,
 * and d is zeroed, which is its digest. Then fn may have missed texts
 * that tg_text_read_response() reads in a body nested deeper than
 * jansson reads, so a caller that needs them all reads the body again.
 */
int tg_text_read_response_digest(struct evbuffer *body, tg_text_fn *fn, void *arg,
                                 struct tg_reply_digest *d, struct tg_reply_detail *x);

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
 * Run regex filter f over len bytes of text decoded from a JSON text
 * inside a string (filter-args.h), and record its decisions in log. A
 * match there has no place in the string for a mask, so a mask filter
 * blocks as a block filter does, a decision marked unmaskable, and a flag
 * filter flags. Returns 1 when
 * f blocks, with *blocked_rule set to the rule, 0 when it does not, -1
 * when the scan failed.
 */
int tg_filter_decoded_text(const struct tg_filter *f, enum tg_side side,
                           struct tg_filter_log *log, struct tg_scan *sc, const char *text,
                           size_t len, const char **blocked_rule);

/*
 * Whether a regex filter of chain that applies to side matches in len
 * bytes of text: returns 1 at the first match, 0 when none matches, or -1
 * when the scan failed, as tg_filter_texts() does. It records no decision
 * and changes nothing, so a caller that gets 1 runs tg_filter_texts() for
 * the decisions. sc is scratch space.
 */
int tg_filter_text_matches(const struct tg_filter_chain *chain, enum tg_side side,
                           const char *text, size_t len, struct tg_scan *sc);

/*
 * Whether the bytes of body, a JSON text, show that no filter of chain
 * that applies to side can match any text that the readers above take
 * from it, so that they need not run. Returns 1 when every such filter is
 * a regex filter and each of its rules requires a byte (struct
 * tg_filter_rule) that no such text can contain. That holds when body is
 * ASCII, has no "\u" and no required byte in either case, and, if it has
 * escapes, no rule requires a byte they decode to. Returns 0 when the
 * texts must be read to tell, which implies nothing about a match. A scan
 * that 1 spares would have run no rule (tg_scan_run() skips a rule whose
 * byte an ASCII text lacks), so it could neither match nor fail.
 */
int tg_filter_body_unmatched(const struct tg_filter_chain *chain, enum tg_side side,
                             struct evbuffer *body);

/* The types of the filters of chain that apply to side: bit
 * (1u << enum tg_filter_type) is set for each. */
unsigned tg_filter_types(const struct tg_filter_chain *chain, enum tg_side side);

/*
 * Classify len bytes of text with plugin filter f and return the first
 * configured label whose score reaches its threshold, or NULL. *failed is
 * set when the plugin returned an error.
 */
const char *tg_filter_plugin_check(const struct tg_filter *f, const char *text,
                                   size_t len, int *failed);

/*
 * Write the body of a request rejected by f: the error of
 * TG_E_CONTENT_FILTER in shape (errors.h), with a message naming the filter
 * and the rule (never the matched text) and members "filter" and "rule",
 * plus "param": null in OpenAI's shape. rule is NULL when f's classifier
 * failed and its on_error blocks. The message then states that, so that a
 * client does not take an outage for a verdict on its text. Returns 0, or -1 when
 * out of memory.
 */
int tg_filter_error_body(struct evbuffer *out, enum tg_error_shape shape,
                         const struct tg_filter *f, const char *rule);

#endif
