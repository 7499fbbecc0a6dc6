/*
 * The texts of one OpenAI Responses API stream event, read from its tree
 * for the stream filters (filter-stream.c).
 *
 * A text is keyed as a chat choice's text is: the output item
 * ("output_index", or the item's position in a response's "output"), its
 * kind, and its part ("content_index", or "summary_index" for a reasoning
 * summary). The deltas of output_text, refusal, function call and MCP
 * call arguments, reasoning summary text and reasoning text append to the
 * text of their key, and so does the text an .added event starts a part or
 * an item with. The .done events, response.content_part.done,
 * response.output_item.done and the end of the response
 * (response.completed, .incomplete, .failed) repeat whole texts. Every
 * other text that a response body's filters read (tg_text_collect_response())
 * is a complete text of its own (TG_CHUNK_VALUE): an annotation's title,
 * the texts of other tool calls, the joined "output_text" some servers
 * add, an error's message.
 */
#ifndef TOLLGATE_FILTER_RESPONSES_H
#define TOLLGATE_FILTER_RESPONSES_H

#include <stddef.h>

#include <jansson.h>

#include "filter-chunk.h"

/* The way a text joins the text of its key. */
enum tg_responses_role {
	TG_RESPONSES_APPEND,    /* a delta, or the start of a part or item */
	TG_RESPONSES_WHOLE,     /* the whole text, which ends it */
};

struct tg_responses_text {
	json_t *string;         /* the JSON string in the event's tree, borrowed */
	enum tg_chunk_kind kind;        /* TG_CHUNK_VALUE: a text of its own */
	long item;              /* the output item; -1 for the response's own
	                           texts ("output_text", "error") */
	long part;              /* content_index or summary_index; 0 when the
	                           kind has one text per item (arguments) */
	enum tg_responses_role role;
};

/* The result of a read, reused from event to event. Zeroed is empty. */
struct tg_responses_event {
	struct tg_responses_text *texts;
	size_t n_texts, cap_texts;
	const char *unread;     /* an event type that carries model text the
	                           read does not follow (a static string), or
	                           NULL */
	int bad_index;          /* an index is missing, or not an integer from
	                           0 to TG_CHUNK_MAX_INDEX */
	int ends_response;      /* response.completed, .incomplete or .failed */
	long ends_item;         /* output_index of response.output_item.done,
	                           which ends every text of the item; else -1 */
};

/*
 * Read the texts of event, a Responses API stream event ("type" starts
 * with "response.", or is "error"), into r. Returns 0, or -1 when out of memory. An event
 * type that may carry model text outside the texts read sets r->unread,
 * and the caller must not pass the event unscreened.
 */
int tg_responses_read(struct tg_responses_event *r, json_t *event);

/* Free what r owns; r is then empty. */
void tg_responses_free(struct tg_responses_event *r);

#endif
