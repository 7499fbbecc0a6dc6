/*
 * GenAI attributes from OpenAI-shaped and Anthropic Messages bodies.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "trace-genai.h"
#include "trace-semconv.h"
#include "trace-span.h"
#include "trace-tree.h"

/* Choices tracked per response; indexes above are ignored. */
#define MAX_CHOICES 128

#define ENDPOINT(path, operation, provider, shape) \
	{path, sizeof(path) - 1, operation, sizeof(operation) - 1, \
	 provider, sizeof(provider) - 1, shape}

/* The chat completion, the request of the hot path, comes first. */
static const struct tg_genai_endpoint ENDPOINTS[] = {
	ENDPOINT("/v1/chat/completions", "chat", "openai", TG_GENAI_OPENAI),
	ENDPOINT("/v1/completions", "text_completion", "openai", TG_GENAI_OPENAI),
	ENDPOINT("/v1/embeddings", "embeddings", "openai", TG_GENAI_OPENAI),
	ENDPOINT("/v1/messages", "chat", "anthropic", TG_GENAI_ANTHROPIC),
};

#undef ENDPOINT

/* Every request looks its path up. GCC at -O2 unrolls the loop for 3
 * entries but not for 4, and the loop took a chat completion 24
 * instructions where the unrolled one takes 13 (callgrind). */
const struct tg_genai_endpoint *
tg_genai_endpoint(const char *path)
{
#pragma GCC unroll 8
	for (size_t i = 0; i < sizeof(ENDPOINTS) / sizeof(ENDPOINTS[0]); i++) {
		if (strcmp(path, ENDPOINTS[i].path) == 0)
			return &ENDPOINTS[i];
	}
	return NULL;
}

/* --- request ------------------------------------------------------------- */

/* An integer member; any other value sets nothing. */
static void
set_int_param(struct tg_span *span, const char *key, const struct tg_body_number *value)
{
	if (value->kind == TG_NUMBER_INTEGER)
		tg_attrs_int(&span->attrs, key, value->integer);
}

/* A number member, an integer or a real. */
static void
set_number_param(struct tg_span *span, const char *key, const struct tg_body_number *value)
{
	if (value->kind != TG_NUMBER_NONE)
		tg_attrs_double(&span->attrs, key, value->value);
}

/*
 * The gen_ai.output.type of a requested format's "type": OpenAI's
 * "response_format" ("text", "json_object", "json_schema") or Anthropic's
 * output format ("json_schema"). NULL for any other type, which maps to
 * none of the output types the conventions list (text, json, image,
 * speech). The values are literals that need no JSON escape.
 */
static const char *
output_type_of(const char *format)
{
	if (format == NULL)
		return NULL;
	if (strcmp(format, "text") == 0)
		return "text";
	if (strcmp(format, "json_object") == 0 || strcmp(format, "json_schema") == 0)
		return "json";
	return NULL;
}

/* Record type, one of output_type_of()'s literals, unless it is NULL. */
static void
set_output_type(struct tg_span *span, const char *type)
{
	if (type != NULL)
		tg_attrs_static_plain(&span->attrs, TG_SC(GEN_AI_OUTPUT_TYPE), type, strlen(type));
}

/*
 * The gen_ai.output.type of an OpenAI request. The conventions (v1.41)
 * define it as the requested output modality, not its format, so audio
 * in "modalities" gives speech even beside a text transcript, and image
 * gives image. Otherwise "response_format" decides, then a "modalities"
 * of text. NULL when the request names no output type.
 */
static const char *
request_output_type(const struct tg_request_params *params)
{
	const char *type;

	if (params->modalities & TG_MODALITY_AUDIO)
		return "speech";
	if (params->modalities & TG_MODALITY_IMAGE)
		return "image";
	type = output_type_of(params->response_format);
	if (type == NULL && (params->modalities & TG_MODALITY_TEXT))
		type = "text";
	return type;
}

/* The longest prefix of s, at most max bytes, that does not cut a UTF-8
 * sequence. */
static size_t
utf8_prefix(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

/* A text part of a message, with its text cut to what *budget allows. */
static json_t *
text_part(const char *text, size_t len, size_t *budget)
{
	size_t keep = utf8_prefix(text, len, *budget);

	*budget -= keep;
	return json_pack("{s:s, s:s%}", "type", "text", "content", text, keep);
}

/* A tool_call part: id and name when they are strings, arguments when
 * not NULL. */
static json_t *
tool_call_part(json_t *id, json_t *name, json_t *arguments)
{
	json_t *part = json_pack("{s:s}", "type", "tool_call");

	if (part == NULL)
		return NULL;
	if (json_is_string(id))
		json_object_set(part, "id", id);
	if (json_is_string(name))
		json_object_set(part, "name", name);
	if (arguments != NULL)
		json_object_set(part, "arguments", arguments);
	return part;
}

/* An OpenAI tool call, whose arguments are a string of JSON. */
static json_t *
openai_tool_call_part(json_t *call)
{
	json_t *function = json_object_get(call, "function");
	json_t *arguments = json_object_get(function, "arguments");

	return tool_call_part(json_object_get(call, "id"), json_object_get(function, "name"),
	                      json_is_string(arguments) ? arguments : NULL);
}

/* The text of an Anthropic tool_result's content: the string, or the
 * first text block's text. NULL for none. */
static json_t *
tool_result_text(json_t *content)
{
	if (json_is_string(content))
		return content;
	for (size_t i = 0; i < json_array_size(content); i++) {
		json_t *text = json_object_get(json_array_get(content, i), "text");

		if (json_is_string(text))
			return text;
	}
	return NULL;
}

/* A tool's result as a tool_call_response part: id is that of the call,
 * and a string response is cut to what *budget allows. */
static json_t *
tool_response_part(json_t *id, json_t *response, size_t *budget)
{
	json_t *part = json_pack("{s:s}", "type", "tool_call_response");

	if (part == NULL)
		return NULL;
	if (json_is_string(id))
		json_object_set(part, "id", id);
	if (json_is_string(response)) {
		size_t keep = utf8_prefix(json_string_value(response),
		                          json_string_length(response), *budget);

		*budget -= keep;
		json_object_set_new(part, "response",
		                    json_stringn(json_string_value(response), keep));
	}
	return part;
}

/* An Anthropic tool_use block, whose input (any JSON value) is the
 * call's arguments. */
static json_t *
tool_use_part(json_t *block)
{
	return tool_call_part(json_object_get(block, "id"), json_object_get(block, "name"),
	                      json_object_get(block, "input"));
}

/* The parts of one message's content: a string, or an array of typed
 * parts (OpenAI's) or blocks (Anthropic's). Text carries content, and so
 * do Anthropic's tool_use and tool_result blocks; of any other item only
 * the type is kept. */
static void
content_parts(json_t *parts, json_t *content, size_t *budget)
{
	if (json_is_string(content)) {
		json_array_append_new(parts, text_part(json_string_value(content),
		                                       json_string_length(content), budget));
		return;
	}
	for (size_t i = 0; i < json_array_size(content); i++) {
		json_t *item = json_array_get(content, i);
		json_t *text = json_object_get(item, "text");
		json_t *type = json_object_get(item, "type");
		const char *name = json_string_value(type);

		if (json_is_string(text))
			json_array_append_new(parts, text_part(json_string_value(text),
			                                       json_string_length(text), budget));
		else if (name != NULL && strcmp(name, "tool_use") == 0)
			json_array_append_new(parts, tool_use_part(item));
		else if (name != NULL && strcmp(name, "tool_result") == 0)
			json_array_append_new(parts, tool_response_part(
				json_object_get(item, "tool_use_id"),
				tool_result_text(json_object_get(item, "content")), budget));
		else if (name != NULL)
			json_array_append_new(parts, json_pack("{s:O}", "type", type));
	}
}

/* One OpenAI chat message in the GenAI "input messages" shape. */
static json_t *
input_message(json_t *message, size_t *budget)
{
	json_t *role = json_object_get(message, "role");
	json_t *parts = json_array();
	json_t *calls = json_object_get(message, "tool_calls");

	if (parts == NULL)
		return NULL;
	if (json_is_string(json_object_get(message, "tool_call_id"))) {
		json_array_append_new(parts, tool_response_part(
			json_object_get(message, "tool_call_id"),
			json_object_get(message, "content"), budget));
	} else {
		content_parts(parts, json_object_get(message, "content"), budget);
	}
	for (size_t i = 0; i < json_array_size(calls); i++)
		json_array_append_new(parts, openai_tool_call_part(json_array_get(calls, i)));

	return json_pack("{s:s, s:o}", "role", json_is_string(role) ? json_string_value(role)
	                 : "user", "parts", parts);
}

/* Set key to list as compact JSON, unless it is empty, and free list. */
static void
set_json_list(struct tg_span *span, const char *key, json_t *list)
{
	char *text = json_array_size(list) > 0 ? json_dumps(list, JSON_COMPACT) : NULL;

	if (text != NULL)
		tg_attrs_string(&span->attrs, key, text);
	free(text);
	json_decref(list);
}

void
tg_genai_input_messages(struct tg_span *span, json_t *body, size_t max_content)
{
	json_t *messages = json_object_get(body, "messages");
	json_t *prompt = json_object_get(body, "prompt");
	json_t *list = json_array();
	size_t budget = max_content;

	if (span == NULL || list == NULL || !json_is_object(body)) {
		json_decref(list);
		return;
	}
	for (size_t i = 0; i < json_array_size(messages); i++)
		json_array_append_new(list, input_message(json_array_get(messages, i), &budget));
	if (json_is_string(prompt)) {
		json_t *parts = json_array();

		json_array_append_new(parts, text_part(json_string_value(prompt),
		                                       json_string_length(prompt), &budget));
		json_array_append_new(list, json_pack("{s:s, s:o}", "role", "user",
		                                      "parts", parts));
	}
	set_json_list(span, TG_SC(GEN_AI_INPUT_MESSAGES), list);
}

void
tg_genai_request(struct tg_span *span, const struct tg_genai_endpoint *endpoint,
                 const char *model, int stream, const struct tg_request_params *params)
{
	const struct tg_body_number *p = params->number;
	const struct tg_body_number *max_tokens;

	if (span == NULL)
		return;
	tg_attrs_static_plain(&span->attrs, TG_SC(GEN_AI_OPERATION_NAME), endpoint->operation,
	                      endpoint->operation_len);
	tg_attrs_static_plain(&span->attrs, TG_SC(GEN_AI_PROVIDER_NAME), endpoint->provider,
	                      endpoint->provider_len);
	if (model != NULL)
		tg_attrs_string(&span->attrs, TG_SC(GEN_AI_REQUEST_MODEL), model);
	tg_attrs_bool(&span->attrs, TG_SC(GEN_AI_REQUEST_STREAM), stream);

	/* max_completion_tokens replaced max_tokens for chat models. */
	max_tokens = &p[TG_PARAM_MAX_COMPLETION_TOKENS];
	if (max_tokens->kind != TG_NUMBER_INTEGER)
		max_tokens = &p[TG_PARAM_MAX_TOKENS];
	set_int_param(span, TG_SC(GEN_AI_REQUEST_MAX_TOKENS), max_tokens);
	set_number_param(span, TG_SC(GEN_AI_REQUEST_TEMPERATURE), &p[TG_PARAM_TEMPERATURE]);
	set_number_param(span, TG_SC(GEN_AI_REQUEST_TOP_P), &p[TG_PARAM_TOP_P]);
	/* A double in the conventions (v1.41), as top_p is. */
	set_number_param(span, TG_SC(GEN_AI_REQUEST_TOP_K), &p[TG_PARAM_TOP_K]);
	set_int_param(span, TG_SC(GEN_AI_REQUEST_SEED), &p[TG_PARAM_SEED]);
	set_number_param(span, TG_SC(GEN_AI_REQUEST_FREQUENCY_PENALTY),
	                 &p[TG_PARAM_FREQUENCY_PENALTY]);
	set_number_param(span, TG_SC(GEN_AI_REQUEST_PRESENCE_PENALTY),
	                 &p[TG_PARAM_PRESENCE_PENALTY]);
	if (params->has_stop)
		tg_attrs_strings(&span->attrs, TG_SC(GEN_AI_REQUEST_STOP_SEQUENCES),
		                 (const char *const *)params->stop, params->n_stop);

	set_output_type(span, request_output_type(params));
	set_int_param(span, TG_SC(GEN_AI_EMBEDDINGS_DIMENSION_COUNT), &p[TG_PARAM_DIMENSIONS]);
	if (params->encoding_format != NULL)
		tg_attrs_strings(&span->attrs, TG_SC(GEN_AI_REQUEST_ENCODING_FORMATS),
		                 (const char *const *)&params->encoding_format, 1);

	/* The conventions ask for the count only when it is not 1. */
	if (p[TG_PARAM_N].kind == TG_NUMBER_INTEGER && p[TG_PARAM_N].integer != 1)
		set_int_param(span, TG_SC(GEN_AI_REQUEST_CHOICE_COUNT), &p[TG_PARAM_N]);
}

/* "stop_sequences": its first TG_MAX_STOP strings, as the scan keeps
 * OpenAI's "stop". */
static void
set_stop_sequences(struct tg_span *span, json_t *stop)
{
	const char *items[TG_MAX_STOP];
	size_t n = 0;

	if (!json_is_array(stop))
		return;
	for (size_t i = 0; i < json_array_size(stop) && n < TG_MAX_STOP; i++) {
		const char *item = json_string_value(json_array_get(stop, i));

		if (item != NULL)
			items[n++] = item;
	}
	tg_attrs_strings(&span->attrs, TG_SC(GEN_AI_REQUEST_STOP_SEQUENCES), items, n);
}

/* Set gen_ai.output.type from the format of "output_config", or of
 * "output_format", where Anthropic's structured outputs began. */
static void
set_anthropic_output_type(struct tg_span *span, json_t *body)
{
	json_t *format = json_object_get(json_object_get(body, "output_config"), "format");

	if (format == NULL)
		format = json_object_get(body, "output_format");
	set_output_type(span, output_type_of(json_string_value(json_object_get(format, "type"))));
}

void
tg_genai_anthropic_request(struct tg_span *span, json_t *body, int capture,
                           size_t max_content)
{
	json_t *system = json_object_get(body, "system");
	size_t budget = max_content;

	if (span == NULL || !json_is_object(body))
		return;
	set_stop_sequences(span, json_object_get(body, "stop_sequences"));
	set_anthropic_output_type(span, body);
	if (!capture)
		return;

	tg_genai_input_messages(span, body, max_content);
	if (system != NULL) {
		json_t *parts = json_array();

		if (parts == NULL)
			return;
		content_parts(parts, system, &budget);
		set_json_list(span, TG_SC(GEN_AI_SYSTEM_INSTRUCTIONS), parts);
	}
}

/* --- response ------------------------------------------------------------ */

int
tg_genai_capture_output(struct tg_trace *t, size_t max_content)
{
	t->output = calloc(1, sizeof(*t->output));
	if (t->output == NULL)
		return -1;
	t->output->budget = max_content;
	return 0;
}

/* Grow the per-choice arrays so that index fits; 0 or -1. */
static int
reserve_choice(char ***items, size_t **lengths, size_t *n, size_t index)
{
	size_t count = index + 1;
	char **grown;

	if (index >= MAX_CHOICES)
		return -1;
	if (count <= *n)
		return 0;
	grown = realloc(*items, count * sizeof(*grown));
	if (grown == NULL)
		return -1;
	memset(grown + *n, 0, (count - *n) * sizeof(*grown));
	*items = grown;
	if (lengths != NULL) {
		size_t *grown_lengths = realloc(*lengths, count * sizeof(*grown_lengths));

		if (grown_lengths == NULL)
			return -1;
		memset(grown_lengths + *n, 0, (count - *n) * sizeof(*grown_lengths));
		*lengths = grown_lengths;
	}
	*n = count;
	return 0;
}

/* Free a finish reason unless it is a tg_known_finish_reason(). */
static void
free_reason(char *reason)
{
	if (reason != NULL && !tg_is_known_finish_reason(reason))
		free(reason);
}

/* Grow t->finish_reasons so that index fits; 0 or -1. The first few are
 * the trace's own array, which a response with one choice never leaves. */
static int
reserve_reason(struct tg_trace *t, size_t index)
{
	const size_t first = sizeof(t->first_finish_reasons) / sizeof(t->first_finish_reasons[0]);
	size_t count = index + 1, n = t->n_finish_reasons;
	char **grown;

	if (index >= MAX_CHOICES)
		return -1;
	if (count <= n)
		return 0;
	if (count <= first) {
		grown = t->first_finish_reasons;
	} else if (t->finish_reasons == t->first_finish_reasons) {
		grown = malloc(count * sizeof(*grown));
		if (grown != NULL)
			memcpy(grown, t->first_finish_reasons, n * sizeof(*grown));
	} else {
		grown = realloc(t->finish_reasons, count * sizeof(*grown));
	}
	if (grown == NULL)
		return -1;
	memset(grown + n, 0, (count - n) * sizeof(*grown));
	t->finish_reasons = grown;
	t->n_finish_reasons = count;
	return 0;
}

static void
record_finish_reason(struct tg_trace *t, size_t index, const char *reason)
{
	char *copy;

	if (t->finish_kept || reserve_reason(t, index) != 0)
		return;
	/* A known reason is kept as the table's string: a copy and its
	 * free() cost about 270 instructions per response. A reply detail
	 * keeps a known reason as that string already, so it is looked up by
	 * its address before its text. */
	if (tg_is_known_finish_reason(reason))
		copy = (char *)reason;
	else
		copy = (char *)tg_known_finish_reason(reason, strlen(reason));
	if (copy == NULL)
		copy = strdup(reason);
	if (copy == NULL)
		return;
	free_reason(t->finish_reasons[index]);
	t->finish_reasons[index] = copy;
}

/* Append text of choice index to the captured output, within budget. */
static void
capture_text(struct tg_trace *t, size_t index, const char *text, size_t len)
{
	struct tg_content_capture *c = t->output;
	size_t keep;
	char *grown;

	if (c == NULL || len == 0)
		return;
	if (reserve_choice(&c->texts, &c->lengths, &c->n_choices, index) != 0)
		return;
	keep = utf8_prefix(text, len, c->budget);
	c->truncated |= keep < len;
	if (keep == 0)
		return;
	grown = realloc(c->texts[index], c->lengths[index] + keep + 1);
	if (grown == NULL)
		return;
	memcpy(grown + c->lengths[index], text, keep);
	c->lengths[index] += keep;
	grown[c->lengths[index]] = '\0';
	c->texts[index] = grown;
	c->budget -= keep;
}

/* The index of a choice at position i with "index" value index: its
 * value when that is an integer of 0 or more, else its position. */
static size_t
choice_index(json_t *index, size_t i)
{
	return json_is_integer(index) && json_integer_value(index) >= 0
	       ? (size_t)json_integer_value(index) : i;
}

/* choices[].finish_reason and the text of message or delta (or "text"
 * for completions). Returns 1 when any choice carried content. */
static int
read_choices(struct tg_trace *t, json_t *choices, const char *message_key)
{
	int content = 0;

	for (size_t i = 0; i < json_array_size(choices); i++) {
		json_t *choice = json_array_get(choices, i);
		json_t *index = json_object_get(choice, "index");
		json_t *reason = json_object_get(choice, "finish_reason");
		json_t *message = json_object_get(choice, message_key);
		json_t *text = json_object_get(message, "content");
		size_t at = choice_index(index, i);

		if (!json_is_string(text))
			text = json_object_get(choice, "text");
		if (json_is_string(reason))
			record_finish_reason(t, at, json_string_value(reason));
		if (json_is_string(text) && json_string_length(text) > 0) {
			content = 1;
			capture_text(t, at, json_string_value(text), json_string_length(text));
		}
		if (json_array_size(json_object_get(message, "tool_calls")) > 0)
			content = 1;
	}
	return content;
}

/* A token count is an integer of 0 or more; the metrics do not take
 * another value as a count either (tollgate.json(5), METRICS). */
static void
set_count(struct tg_span *span, const char *key, json_t *value)
{
	if (json_is_integer(value) && json_integer_value(value) >= 0)
		tg_attrs_int(&span->attrs, key, json_integer_value(value));
}

static void
set_usage(struct tg_span *span, json_t *usage)
{
	if (!json_is_object(usage))
		return;
	set_count(span, TG_SC(GEN_AI_USAGE_INPUT_TOKENS),
	          json_object_get(usage, "prompt_tokens"));
	set_count(span, TG_SC(GEN_AI_USAGE_OUTPUT_TOKENS),
	          json_object_get(usage, "completion_tokens"));
	set_count(span, TG_SC(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
	          json_object_get(json_object_get(usage, "prompt_tokens_details"),
	                          "cached_tokens"));
	set_count(span, TG_SC(GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
	          json_object_get(json_object_get(usage, "completion_tokens_details"),
	                          "reasoning_tokens"));
}

/* The first id and model the response gave; NULL for none. */
static void
set_response_ids(struct tg_trace *t, struct tg_span *span, const char *id, const char *model)
{
	if (id != NULL && !t->response_id_set) {
		tg_attrs_string(&span->attrs, TG_SC(GEN_AI_RESPONSE_ID), id);
		t->response_id_set = 1;
	}
	if (model != NULL && !t->response_model_set) {
		tg_attrs_string(&span->attrs, TG_SC(GEN_AI_RESPONSE_MODEL), model);
		t->response_model_set = 1;
	}
}

static void
set_tree_ids(struct tg_trace *t, struct tg_span *span, json_t *body)
{
	set_response_ids(t, span, json_string_value(json_object_get(body, "id")),
	                 json_string_value(json_object_get(body, "model")));
}

/* The first event of a stream sets the time to it. */
static void
note_chunk(struct tg_trace *t, struct tg_span *span, uint64_t now_mono, uint64_t start_mono)
{
	if (t->first_chunk_seen)
		return;
	t->first_chunk_seen = 1;
	tg_attrs_double(&span->attrs, TG_SC(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
	                (double)(now_mono - start_mono) / 1e9);
}

/* The first event with content adds the first-token event. */
static void
note_content(struct tg_trace *t, struct tg_span *span, uint64_t now_mono)
{
	if (t->first_token_seen)
		return;
	t->first_token_seen = 1;
	tg_span_add_event(span, TG_SC(EVENT_FIRST_TOKEN), tg_trace_time(t, now_mono));
}

void
tg_genai_response(struct tg_trace *t, struct tg_span *span, json_t *body)
{
	if (span == NULL || !json_is_object(body))
		return;
	set_tree_ids(t, span, body);
	read_choices(t, json_object_get(body, "choices"), "message");
	set_usage(span, json_object_get(body, "usage"));
}

void
tg_genai_stream_event(struct tg_trace *t, struct tg_span *span, json_t *chunk,
                      uint64_t now_mono, uint64_t start_mono)
{
	if (span == NULL)
		return;
	note_chunk(t, span, now_mono, start_mono);
	if (!json_is_object(chunk))
		return;         /* "[DONE]" and anything else that is not JSON */

	set_tree_ids(t, span, chunk);
	if (read_choices(t, json_object_get(chunk, "choices"), "delta"))
		note_content(t, span, now_mono);
	set_usage(span, json_object_get(chunk, "usage"));
}

/* --- response, Anthropic's Messages API ---------------------------------- */

/* The count's value when it is one, else 0. */
static json_int_t
count_or_zero(json_t *value)
{
	return json_is_integer(value) && json_integer_value(value) >= 0
	       ? json_integer_value(value) : 0;
}

/* Anthropic's usage: input_tokens leaves out the cache reads and writes,
 * which the conventions count as input. A message_delta's counts are
 * cumulative, so a later one replaces an earlier one. */
static void
set_anthropic_usage(struct tg_span *span, json_t *usage)
{
	json_t *input = json_object_get(usage, "input_tokens");
	json_t *read = json_object_get(usage, "cache_read_input_tokens");
	json_t *created = json_object_get(usage, "cache_creation_input_tokens");

	if (!json_is_object(usage))
		return;
	if (json_is_integer(input) && json_integer_value(input) >= 0)
		tg_attrs_int(&span->attrs, TG_SC(GEN_AI_USAGE_INPUT_TOKENS),
		             json_integer_value(input) + count_or_zero(read) +
		             count_or_zero(created));
	set_count(span, TG_SC(GEN_AI_USAGE_OUTPUT_TOKENS),
	          json_object_get(usage, "output_tokens"));
	set_count(span, TG_SC(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS), read);
	set_count(span, TG_SC(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS), created);
}

/* A message's stop_reason is the finish reason of its one "choice". */
static void
record_stop_reason(struct tg_trace *t, json_t *reason)
{
	if (json_is_string(reason))
		record_finish_reason(t, 0, json_string_value(reason));
}

/* A content block, or a content_block_delta's delta: its text is output
 * (captured as choice 0), and so are a tool call and its streamed input.
 * Returns 1 when the block carries output. Thinking is not output, as a
 * chat chunk's reasoning is not. */
static int
read_anthropic_block(struct tg_trace *t, json_t *block)
{
	json_t *text = json_object_get(block, "text");
	json_t *input = json_object_get(block, "partial_json");
	const char *type = json_string_value(json_object_get(block, "type"));

	if (json_is_string(text) && json_string_length(text) > 0) {
		capture_text(t, 0, json_string_value(text), json_string_length(text));
		return 1;
	}
	if (json_is_string(input) && json_string_length(input) > 0)
		return 1;
	return type != NULL && strcmp(type, "tool_use") == 0;
}

void
tg_genai_upstream_finish(struct tg_trace *t, json_t *body, int keep)
{
	json_t *choices = json_object_get(body, "choices");

	for (size_t i = 0; i < json_array_size(choices); i++) {
		json_t *choice = json_array_get(choices, i);
		json_t *reason = json_object_get(choice, "finish_reason");

		if (json_is_string(reason))
			record_finish_reason(t, choice_index(json_object_get(choice, "index"), i),
			                     json_string_value(reason));
	}
	record_stop_reason(t, json_object_get(body, "stop_reason"));
	record_stop_reason(t, json_object_get(json_object_get(body, "delta"), "stop_reason"));
	t->finish_kept = keep;
}

void
tg_genai_anthropic_response(struct tg_trace *t, struct tg_span *span, json_t *body)
{
	json_t *content = json_object_get(body, "content");

	if (span == NULL || !json_is_object(body))
		return;
	set_tree_ids(t, span, body);
	record_stop_reason(t, json_object_get(body, "stop_reason"));
	for (size_t i = 0; i < json_array_size(content); i++)
		read_anthropic_block(t, json_array_get(content, i));
	set_anthropic_usage(span, json_object_get(body, "usage"));
}

/* The events by their "type": message_start gives the id, the model and
 * the input counts, content blocks the output, message_delta the stop
 * reason and the output count. ping, content_block_stop, message_stop and
 * error carry none of these. */
void
tg_genai_anthropic_event(struct tg_trace *t, struct tg_span *span, json_t *event,
                         uint64_t now_mono, uint64_t start_mono)
{
	const char *type = json_string_value(json_object_get(event, "type"));
	json_t *message = json_object_get(event, "message");
	int content = 0;

	if (span == NULL)
		return;
	note_chunk(t, span, now_mono, start_mono);
	if (type == NULL)
		return;

	if (strcmp(type, "message_start") == 0) {
		set_tree_ids(t, span, message);
		set_anthropic_usage(span, json_object_get(message, "usage"));
	} else if (strcmp(type, "content_block_start") == 0) {
		content = read_anthropic_block(t, json_object_get(event, "content_block"));
	} else if (strcmp(type, "content_block_delta") == 0) {
		content = read_anthropic_block(t, json_object_get(event, "delta"));
	} else if (strcmp(type, "message_delta") == 0) {
		record_stop_reason(t, json_object_get(json_object_get(event, "delta"),
		                                      "stop_reason"));
		set_anthropic_usage(span, json_object_get(event, "usage"));
	}
	if (content)
		note_content(t, span, now_mono);
}

/* --- response, from the reply digest ------------------------------------- */

/* The counts set_usage() reads, in its order. */
static const struct {
	enum tg_usage_count count;
	enum tg_semconv key;
} USAGE_ATTRS[] = {
	{TG_USAGE_PROMPT_TOKENS, TG_SC_GEN_AI_USAGE_INPUT_TOKENS},
	{TG_USAGE_COMPLETION_TOKENS, TG_SC_GEN_AI_USAGE_OUTPUT_TOKENS},
	{TG_USAGE_CACHED_TOKENS, TG_SC_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS},
	{TG_USAGE_REASONING_TOKENS, TG_SC_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS},
};

static void
set_detail_usage(struct tg_span *span, const struct tg_reply_detail *x)
{
	for (size_t i = 0; i < sizeof(USAGE_ATTRS) / sizeof(USAGE_ATTRS[0]); i++) {
		enum tg_usage_count c = USAGE_ATTRS[i].count;

		if (((x->usage_integer >> c) & 1u) && x->usage[c] >= 0)
			tg_attrs_int(&span->attrs, tg_semconv_names[USAGE_ATTRS[i].key], x->usage[c]);
	}
}

/* The finish reasons of x's choices, as read_choices() records them.
 * Returns 1 when a choice's delta carried content: text (or, when the
 * delta has no string "content", the choice's "text") or tool calls. */
static int
read_detail_choices(struct tg_trace *t, const struct tg_reply_detail *x)
{
	int content = 0;

	for (size_t i = 0; i < x->n_choices; i++) {
		const struct tg_reply_choice *c = &x->choices[i];
		size_t at = c->index >= 0 ? (size_t)c->index : c->position;
		unsigned text = c->content != TG_REPLY_TEXT_NONE ? c->content : c->text;

		if (c->finish_reason != NULL)
			record_finish_reason(t, at, c->finish_reason);
		if (text == TG_REPLY_TEXT_SOME || c->tool_calls)
			content = 1;
	}
	return content;
}

void
tg_genai_upstream_finish_detail(struct tg_trace *t, const struct tg_reply_detail *x)
{
	read_detail_choices(t, x);
}

void
tg_genai_response_detail(struct tg_trace *t, struct tg_span *span,
                         const struct tg_reply_digest *d, const struct tg_reply_detail *x)
{
	assert(t->output == NULL);
	assert(x->usable);

	if (span == NULL || !d->object)
		return;
	set_response_ids(t, span, x->id, x->model);
	read_detail_choices(t, x);
	set_detail_usage(span, x);
}

void
tg_genai_stream_detail(struct tg_trace *t, struct tg_span *span,
                       const struct tg_reply_digest *d, const struct tg_reply_detail *x,
                       uint64_t now_mono, uint64_t start_mono)
{
	assert(t->output == NULL);
	assert(x->usable);

	if (span == NULL)
		return;
	note_chunk(t, span, now_mono, start_mono);
	if (!d->object)
		return;

	set_response_ids(t, span, x->id, x->model);
	if (read_detail_choices(t, x))
		note_content(t, span, now_mono);
	set_detail_usage(span, x);
}

static void
set_output_messages(struct tg_trace *t, struct tg_span *span)
{
	struct tg_content_capture *c = t->output;
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < c->n_choices; i++) {
		const char *reason = i < t->n_finish_reasons ? t->finish_reasons[i] : NULL;
		json_t *parts = json_array();

		if (c->texts[i] != NULL)
			json_array_append_new(parts, json_pack("{s:s, s:s}", "type", "text",
			                                       "content", c->texts[i]));
		json_array_append_new(list, json_pack("{s:s, s:o, s:s?}", "role", "assistant",
		                                      "parts", parts,
		                                      "finish_reason", reason));
	}
	set_json_list(span, TG_SC(GEN_AI_OUTPUT_MESSAGES), list);
}

void
tg_genai_attempt_done(struct tg_trace *t, struct tg_span *span)
{
	const char *reasons[MAX_CHOICES];
	size_t n = 0;
	int all_known = 1;

	if (span == NULL)
		return;
	for (size_t i = 0; i < t->n_finish_reasons; i++) {
		if (t->finish_reasons[i] != NULL) {
			reasons[n++] = t->finish_reasons[i];
			all_known &= tg_is_known_finish_reason(t->finish_reasons[i]);
		}
	}

	/* Known reasons are the table's literals, which the span may keep.
	 * Any other reason is freed when the attempt is reset, so the span
	 * gets a copy. */
	if (n > 0 && all_known)
		tg_attrs_static_strings(&span->attrs, TG_SC(GEN_AI_RESPONSE_FINISH_REASONS),
		                        reasons, n);
	else if (n > 0)
		tg_attrs_strings(&span->attrs, TG_SC(GEN_AI_RESPONSE_FINISH_REASONS), reasons, n);
	if (t->output != NULL)
		set_output_messages(t, span);
}

void
tg_genai_attempt_reset(struct tg_trace *t)
{
	for (size_t i = 0; i < t->n_finish_reasons; i++)
		free_reason(t->finish_reasons[i]);
	if (t->finish_reasons != t->first_finish_reasons)
		free(t->finish_reasons);
	t->finish_reasons = NULL;
	t->n_finish_reasons = 0;
	t->finish_kept = 0;
	if (t->output != NULL) {
		for (size_t i = 0; i < t->output->n_choices; i++)
			free(t->output->texts[i]);
		free(t->output->texts);
		free(t->output->lengths);
		free(t->output);
		t->output = NULL;
	}
	t->first_chunk_seen = 0;
	t->first_token_seen = 0;
	t->reads_detail = 0;
	t->response_id_set = 0;
	t->response_model_set = 0;
	t->status_code_set = 0;
}
