/*
 * The texts of a Responses API stream event (filter-responses.h).
 *
 * The events, by the member that carries their text:
 *
 *   response.output_text.delta  {"output_index", "content_index", "delta"}
 *   response.output_text.done   {"output_index", "content_index", "text"}
 *   (refusal: "refusal" in .done; reasoning_text as output_text;
 *    reasoning_summary_text with "summary_index"; function_call_arguments
 *    and mcp_call_arguments without a part, "arguments" in .done;
 *    custom_tool_call_input without a part, "input" in .done;
 *    code_interpreter_call_code without a part, "code" in .done)
 *   response.content_part.added/.done    {"output_index", "content_index", "part"}
 *   response.reasoning_summary_part.added/.done  {..., "summary_index", "part"}
 *   response.output_item.added/.done     {"output_index", "item"}
 *   response.output_text.annotation.added  {"annotation"}
 *   response.created, .queued, .in_progress, .completed, .incomplete,
 *   .failed                              {"response"}
 *
 * An item, a part or a response is read as a response body's filters read
 * it (tg_text_collect_response()), so that a stream screens the texts a
 * body does. Each string found there is then keyed by where it sits in
 * its item, when it is one a delta streams.
 */
#include <stdlib.h>
#include <string.h>

#include "filter-responses.h"
#include "filter.h"

/* An event whose top-level member is one text, streamed or whole. */
struct text_event {
	const char *type;
	const char *member;
	enum tg_chunk_kind kind;
	const char *part_key;   /* the member that numbers the part; NULL:
	                           one text per item */
	enum tg_responses_role role;
};

static const struct text_event TEXT_EVENTS[] = {
	{"response.output_text.delta", "delta", TG_CHUNK_CONTENT, "content_index",
	 TG_RESPONSES_APPEND},
	{"response.output_text.done", "text", TG_CHUNK_CONTENT, "content_index",
	 TG_RESPONSES_WHOLE},
	{"response.refusal.delta", "delta", TG_CHUNK_REFUSAL, "content_index", TG_RESPONSES_APPEND},
	{"response.refusal.done", "refusal", TG_CHUNK_REFUSAL, "content_index",
	 TG_RESPONSES_WHOLE},
	{"response.function_call_arguments.delta", "delta", TG_CHUNK_ARGUMENTS, NULL,
	 TG_RESPONSES_APPEND},
	{"response.function_call_arguments.done", "arguments", TG_CHUNK_ARGUMENTS, NULL,
	 TG_RESPONSES_WHOLE},
	{"response.mcp_call_arguments.delta", "delta", TG_CHUNK_ARGUMENTS, NULL,
	 TG_RESPONSES_APPEND},
	{"response.mcp_call_arguments.done", "arguments", TG_CHUNK_ARGUMENTS, NULL,
	 TG_RESPONSES_WHOLE},
	{"response.reasoning_summary_text.delta", "delta", TG_CHUNK_REASONING, "summary_index",
	 TG_RESPONSES_APPEND},
	{"response.reasoning_summary_text.done", "text", TG_CHUNK_REASONING, "summary_index",
	 TG_RESPONSES_WHOLE},
	{"response.reasoning_text.delta", "delta", TG_CHUNK_REASONING_CONTENT, "content_index",
	 TG_RESPONSES_APPEND},
	{"response.reasoning_text.done", "text", TG_CHUNK_REASONING_CONTENT, "content_index",
	 TG_RESPONSES_WHOLE},
	/* A custom tool's input and the code a code interpreter runs are free
	 * text, which the model writes as it writes content. */
	{"response.custom_tool_call_input.delta", "delta", TG_CHUNK_CONTENT, NULL,
	 TG_RESPONSES_APPEND},
	{"response.custom_tool_call_input.done", "input", TG_CHUNK_CONTENT, NULL,
	 TG_RESPONSES_WHOLE},
	{"response.code_interpreter_call_code.delta", "delta", TG_CHUNK_CONTENT, NULL,
	 TG_RESPONSES_APPEND},
	{"response.code_interpreter_call_code.done", "code", TG_CHUNK_CONTENT, NULL,
	 TG_RESPONSES_WHOLE},
	/* An error may echo the prompt, as an error body's message and param
	 * may. */
	{"error", "message", TG_CHUNK_VALUE, NULL, TG_RESPONSES_WHOLE},
	{"error", "param", TG_CHUNK_VALUE, NULL, TG_RESPONSES_WHOLE},
};

/* An event that carries a part, an item or a response object. */
enum holder {
	H_CONTENT_PART,         /* "part" of a message or reasoning item */
	H_SUMMARY_PART,         /* "part" of a reasoning item's summary */
	H_ITEM,                 /* "item" */
	H_ANNOTATION,           /* "annotation" of an output_text part */
	H_RESPONSE,             /* "response" */
};

struct holder_event {
	const char *type;
	enum holder holder;
	enum tg_responses_role role;
};

static const struct holder_event HOLDER_EVENTS[] = {
	{"response.content_part.added", H_CONTENT_PART, TG_RESPONSES_APPEND},
	{"response.content_part.done", H_CONTENT_PART, TG_RESPONSES_WHOLE},
	{"response.reasoning_summary_part.added", H_SUMMARY_PART, TG_RESPONSES_APPEND},
	{"response.reasoning_summary_part.done", H_SUMMARY_PART, TG_RESPONSES_WHOLE},
	{"response.output_item.added", H_ITEM, TG_RESPONSES_APPEND},
	{"response.output_item.done", H_ITEM, TG_RESPONSES_WHOLE},
	{"response.output_text.annotation.added", H_ANNOTATION, TG_RESPONSES_WHOLE},
	{"response.created", H_RESPONSE, TG_RESPONSES_APPEND},
	{"response.queued", H_RESPONSE, TG_RESPONSES_APPEND},
	{"response.in_progress", H_RESPONSE, TG_RESPONSES_APPEND},
	{"response.completed", H_RESPONSE, TG_RESPONSES_WHOLE},
	{"response.incomplete", H_RESPONSE, TG_RESPONSES_WHOLE},
	{"response.failed", H_RESPONSE, TG_RESPONSES_WHOLE},
};

/*
 * Top-level strings that an event of another type may have without
 * carrying model text: ids, a status, the random padding OpenAI adds to
 * deltas ("obfuscation"), and an image as base64. "response.audio.delta"
 * is audio as base64, which no regex screens, as in a response body.
 */
static const char *const PLAIN_MEMBERS[] = {
	"type", "item_id", "call_id", "status", "obfuscation", "partial_image_b64",
	"output_format", NULL,
};
static const char *const AUDIO_EVENTS[] = {
	"response.audio.delta", "response.audio.done", NULL,
};

static int
in_list(const char *const *list, const char *name)
{
	for (; *list != NULL; list++) {
		if (strcmp(*list, name) == 0)
			return 1;
	}
	return 0;
}

static int
add_text(struct tg_responses_event *r, json_t *string, enum tg_chunk_kind kind, long item,
         long part, enum tg_responses_role role)
{
	if (r->n_texts == r->cap_texts) {
		size_t cap = r->cap_texts ? r->cap_texts * 2 : 8;
		struct tg_responses_text *p = realloc(r->texts, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		r->texts = p;
		r->cap_texts = cap;
	}
	r->texts[r->n_texts++] = (struct tg_responses_text){string, kind, item, part, role};
	return 0;
}

/* Read member key of event, an index, into *out. A missing or invalid one
 * sets r->bad_index, since the text it keys cannot be placed. */
static void
read_index(struct tg_responses_event *r, json_t *event, const char *key, long *out)
{
	json_t *v = json_object_get(event, key);
	json_int_t n = json_integer_value(v);

	*out = 0;
	if (!json_is_integer(v) || n < 0 || n > TG_CHUNK_MAX_INDEX) {
		r->bad_index = 1;
		return;
	}
	*out = (long)n;
}

/* The kind of the text in member key of part, a content part: reasoning
 * text, output text or a refusal. */
static enum tg_chunk_kind
part_kind(json_t *part, const char *key)
{
	const char *type = json_string_value(json_object_get(part, "type"));

	if (strcmp(key, "refusal") == 0)
		return TG_CHUNK_REFUSAL;
	if (type != NULL && strcmp(type, "reasoning_text") == 0)
		return TG_CHUNK_REASONING_CONTENT;
	return TG_CHUNK_CONTENT;
}

/* The kind and *part of string in part, the part at position index of a
 * "content" array; TG_CHUNK_VALUE when a delta streams no such text. */
static enum tg_chunk_kind
content_key(json_t *part, size_t index, json_t *string, long *out)
{
	static const char *const keys[] = {"text", "refusal"};

	for (size_t k = 0; k < 2; k++) {
		if (json_object_get(part, keys[k]) == string) {
			*out = (long)index;
			return part_kind(part, keys[k]);
		}
	}
	return TG_CHUNK_VALUE;
}

/* The kind and *part of string, a text of item, when a delta streams it;
 * else TG_CHUNK_VALUE. */
static enum tg_chunk_kind
item_key(json_t *item, json_t *string, long *part)
{
	json_t *p;
	size_t j;

	*part = 0;
	if (json_object_get(item, "arguments") == string)
		return TG_CHUNK_ARGUMENTS;
	if (json_object_get(item, "input") == string || json_object_get(item, "code") == string)
		return TG_CHUNK_CONTENT;
	json_array_foreach(json_object_get(item, "content"), j, p) {
		enum tg_chunk_kind kind = content_key(p, j, string, part);

		if (kind != TG_CHUNK_VALUE)
			return kind;
	}
	json_array_foreach(json_object_get(item, "summary"), j, p) {
		if (json_object_get(p, "text") == string) {
			*part = (long)j;
			return TG_CHUNK_REASONING;
		}
	}
	return TG_CHUNK_VALUE;
}

/* Collect the texts of body as a response body's filters read them. A
 * text they read as a key or a number (a tool input's) is no string of
 * the tree, so the event is left unread. */
static int
collect(struct tg_responses_event *r, json_t *body, const char *type, struct tg_text_list *out)
{
	memset(out, 0, sizeof(*out));
	if (tg_text_collect_response(body, out) != 0)
		return -1;
	if (out->n_owned > 0)
		r->unread = type;
	return 0;
}

/* Add the texts of items, output items from position first on, found in
 * body (which contains them). */
static int
add_item_texts(struct tg_responses_event *r, json_t *body, json_t *items, long first,
               enum tg_responses_role role, const char *type)
{
	struct tg_text_list list;
	int rc = collect(r, body, type, &list);

	for (size_t t = 0; rc == 0 && t < list.n; t++) {
		enum tg_chunk_kind kind = TG_CHUNK_VALUE;
		long item = -1, part = 0;
		json_t *it;
		size_t i;

		json_array_foreach(items, i, it) {
			kind = item_key(it, list.items[t], &part);
			if (kind != TG_CHUNK_VALUE) {
				item = first + (long)i;
				break;
			}
		}
		rc = add_text(r, list.items[t], kind, item, part, role);
	}
	tg_text_list_free(&list);
	return rc;
}

/* Add the texts of a part event's "part", at content_index or
 * summary_index of the item at output_index. */
static int
add_part_texts(struct tg_responses_event *r, json_t *event, const struct holder_event *h,
               const char *type)
{
	json_t *part = json_object_get(event, "part");
	int summary = h->holder == H_SUMMARY_PART;
	json_t *body = json_pack("{s:[O]}", "content", part != NULL ? part : json_null());
	struct tg_text_list list;
	long item, index;
	int rc;

	if (body == NULL)
		return -1;
	read_index(r, event, "output_index", &item);
	read_index(r, event, summary ? "summary_index" : "content_index", &index);
	rc = collect(r, body, type, &list);
	for (size_t t = 0; rc == 0 && t < list.n; t++) {
		long unused;
		enum tg_chunk_kind kind = content_key(part, 0, list.items[t], &unused);

		if (summary && kind == TG_CHUNK_CONTENT)
			kind = TG_CHUNK_REASONING;
		rc = add_text(r, list.items[t], kind, kind == TG_CHUNK_VALUE ? -1 : item,
		              kind == TG_CHUNK_VALUE ? 0 : index, h->role);
	}
	tg_text_list_free(&list);
	json_decref(body);
	return rc;
}

static int
read_holder(struct tg_responses_event *r, json_t *event, const struct holder_event *h,
            const char *type)
{
	json_t *body = NULL, *value;
	long item = 0;
	int rc;

	switch (h->holder) {
	case H_CONTENT_PART:
	case H_SUMMARY_PART:
		return add_part_texts(r, event, h, type);
	case H_RESPONSE:
		value = json_object_get(event, "response");
		r->ends_response = h->role == TG_RESPONSES_WHOLE;
		return add_item_texts(r, value, json_object_get(value, "output"), 0, h->role, type);
	case H_ITEM:
		value = json_object_get(event, "item");
		read_index(r, event, "output_index", &item);
		if (h->role == TG_RESPONSES_WHOLE)
			r->ends_item = item;
		body = json_pack("{s:[O]}", "output", value != NULL ? value : json_null());
		break;
	case H_ANNOTATION:
		value = json_object_get(event, "annotation");
		body = json_pack("{s:[{s:[O]}]}", "content", "annotations",
		                 value != NULL ? value : json_null());
		break;
	}
	if (body == NULL)
		return -1;
	rc = add_item_texts(r, body, json_object_get(body, "output"), item, h->role, type);
	json_decref(body);
	return rc;
}

static int
read_text_event(struct tg_responses_event *r, json_t *event, const struct text_event *e,
                const char *type)
{
	json_t *text = json_object_get(event, e->member);
	long item = -1, part = 0;

	if (e->kind != TG_CHUNK_VALUE)
		read_index(r, event, "output_index", &item);
	if (e->part_key != NULL)
		read_index(r, event, e->part_key, &part);
	/* An error's null "param" (or message) is no text; a null delta
	 * is one a client may join as "null". */
	if (text == NULL || (e->kind == TG_CHUNK_VALUE && json_is_null(text)))
		return 0;
	if (!json_is_string(text)) {
		r->unread = type;
		return 0;
	}
	return add_text(r, text, e->kind, item, part, e->role);
}

/* An event of another type carries model text unless each top-level member
 * is a number, a boolean, null, or a string PLAIN_MEMBERS names. */
static void
check_other_event(struct tg_responses_event *r, json_t *event, const char *type)
{
	const char *key;
	json_t *value;

	if (in_list(AUDIO_EVENTS, type))
		return;
	json_object_foreach(event, key, value) {
		if (json_is_object(value) || json_is_array(value) ||
		    (json_is_string(value) && !in_list(PLAIN_MEMBERS, key))) {
			r->unread = type;
			return;
		}
	}
}

int
tg_responses_read(struct tg_responses_event *r, json_t *event)
{
	const char *type = json_string_value(json_object_get(event, "type"));

	r->n_texts = 0;
	r->unread = NULL;
	r->bad_index = r->ends_response = 0;
	r->ends_item = -1;
	if (type == NULL) {
		r->unread = "(no type)";
		return 0;
	}
	/* An event may have more than one text: the entries of its type are
	 * next to each other. */
	for (size_t i = 0; i < sizeof(TEXT_EVENTS) / sizeof(TEXT_EVENTS[0]); i++) {
		if (strcmp(type, TEXT_EVENTS[i].type) != 0)
			continue;
		for (; i < sizeof(TEXT_EVENTS) / sizeof(TEXT_EVENTS[0]) &&
		       strcmp(type, TEXT_EVENTS[i].type) == 0; i++) {
			if (read_text_event(r, event, &TEXT_EVENTS[i], type) != 0)
				return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(HOLDER_EVENTS) / sizeof(HOLDER_EVENTS[0]); i++) {
		if (strcmp(type, HOLDER_EVENTS[i].type) == 0)
			return read_holder(r, event, &HOLDER_EVENTS[i], type);
	}
	check_other_event(r, event, type);
	return 0;
}

void
tg_responses_free(struct tg_responses_event *r)
{
	free(r->texts);
	memset(r, 0, sizeof(*r));
}
