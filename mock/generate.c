/*
 * Generated chat, completion, embedding and model-list responses in the
 * shapes the OpenAI API returns.
 *
 * Generated text is a fixed cycle of words. A non-streaming response has
 * words=N of them and a stream has events=N content events of one word
 * each (the first without its leading space), so a stream and a
 * non-streaming response with the same count carry the same text. size=N pads or cuts the
 * text to N bytes (fewer when a UTF-8 sequence would straddle the cut) and
 * a stream then spreads it over its events in nearly equal byte slices.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "generate.h"

#define TOOL_DEFAULT_NAME "get_weather"
#define TOOL_ARGUMENTS "{\"location\":\"Paris\",\"unit\":\"celsius\"}"
#define EMBEDDING_DIMENSIONS 8
#define EMBEDDING_MAX_DIMENSIONS 4096

static const char *const plain_words[] = {
	"Hello", "from", "the", "tollgate", "mock", "server,", "which",
	"writes", "the", "same", "words", "for", "the", "same", "request",
	"options.",
};

/* Two, three and four byte sequences, and a sequence with a modifier. */
static const char *const unicode_words[] = {
	"héllo", "日本", "🙂", "naïve", "café", "語", "👋🏽", "Ωmega", "über",
	"中文", "🚀", "façade",
};

static const char *
word_at(const struct mock_options *o, size_t i)
{
	if (o->unicode)
		return unicode_words[i % (sizeof(unicode_words) / sizeof(char *))];
	return plain_words[i % (sizeof(plain_words) / sizeof(char *))];
}

/* Back off from cut until it does not split a UTF-8 sequence. */
static size_t
utf8_boundary(const char *text, size_t len, size_t cut)
{
	if (cut >= len)
		return len;
	while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
		cut--;
	return cut;
}

/* Build the generated text of units words, padded or cut to size= when set.
 * Returns a malloc'd NUL-terminated string, or NULL when out of memory. */
static char *
build_text(const struct mock_options *o, unsigned units, size_t *out_len)
{
	struct evbuffer *buf;
	size_t i = 0, len;
	char *text = NULL;

	if (o->n_content_pieces > 0) {
		*out_len = o->content_cuts[o->n_content_pieces];
		return strdup(o->content);
	}

	buf = evbuffer_new();
	if (buf == NULL)
		return NULL;

	for (; i < units; i++)
		if (evbuffer_add_printf(buf, "%s%s", i ? " " : "", word_at(o, i)) < 0)
			goto out;
	for (; o->size >= 0 && evbuffer_get_length(buf) < (size_t)o->size; i++)
		if (evbuffer_add_printf(buf, "%s%s", i ? " " : "", word_at(o, i)) < 0)
			goto out;

	len = evbuffer_get_length(buf);
	text = malloc(len + 1);
	if (text == NULL)
		goto out;
	evbuffer_copyout(buf, text, len);
	if (o->size >= 0)
		len = utf8_boundary(text, len, (size_t)o->size);
	text[len] = '\0';
	*out_len = len;

out:
	evbuffer_free(buf);
	return text;
}

/*
 * Fill cuts[0..n] with the offsets where the n stream pieces of text start
 * (cuts[n] is len). Without size= each piece is one word with its leading
 * space; with it the pieces are nearly equal byte slices.
 */
static void
split_text(const struct mock_options *o, const char *text, size_t len,
           size_t n, size_t *cuts)
{
	size_t k = 1;

	cuts[0] = 0;
	cuts[n] = len;
	if (n == 0)
		return;

	if (o->n_content_pieces == n) {
		memcpy(cuts, o->content_cuts, (n + 1) * sizeof(*cuts));
		return;
	}

	if (o->size < 0) {
		for (size_t i = 1; i < len && k < n; i++)
			if (text[i] == ' ')
				cuts[k++] = i;
		return;
	}

	for (; k < n; k++) {
		size_t cut = utf8_boundary(text, len, len * k / n);

		cuts[k] = cut < cuts[k - 1] ? cuts[k - 1] : cut;
	}
}

static json_int_t
count_words(const char *text, size_t len)
{
	json_int_t n = len > 0;

	for (size_t i = 0; i < len; i++)
		n += text[i] == ' ';
	return n;
}

/* Bytes of prompt text in v: strings, arrays of them, and content parts. */
static size_t
text_bytes(json_t *v)
{
	size_t i, n = 0;
	json_t *item;

	if (json_is_string(v))
		return json_string_length(v);
	if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			n += text_bytes(item);
		return n;
	}
	if (json_is_object(v))
		return text_bytes(json_object_get(v, "text"))
		     + text_bytes(json_object_get(v, "content"));
	return 0;
}

/* A rough token estimate: four bytes a token, at least one. */
static json_int_t
estimate_tokens(size_t bytes)
{
	return (json_int_t)(bytes + 3) / 4 + (bytes == 0);
}

static json_t *
usage_object(json_int_t prompt, json_int_t completion)
{
	return json_pack("{s:I, s:I, s:I}", "prompt_tokens", prompt,
	                 "completion_tokens", completion,
	                 "total_tokens", prompt + completion);
}

/* Whether a stream ends with a usage chunk. */
static int
wants_usage(json_t *request, const struct mock_options *o)
{
	if (o->usage != MOCK_USAGE_REQUEST)
		return o->usage == MOCK_USAGE_ON;
	return json_is_true(json_object_get(json_object_get(request,
	                                    "stream_options"), "include_usage"));
}

/* Name of the first function in the request's tools, or a default. */
static const char *
tool_name(json_t *request)
{
	json_t *tool = json_array_get(json_object_get(request, "tools"), 0);
	const char *name = json_string_value(
		json_object_get(json_object_get(tool, "function"), "name"));

	return name != NULL ? name : TOOL_DEFAULT_NAME;
}

static int
answers_with_tool(json_t *request, const struct mock_options *o)
{
	json_t *tools = json_object_get(request, "tools");

	return o->tools || (json_is_array(tools) && json_array_size(tools) > 0);
}

/* Add "id", "object", "created" and "model" ahead of the other fields. */
static json_t *
envelope(const char *id_prefix, const char *object,
         const struct generate_context *ctx)
{
	char id[64];

	snprintf(id, sizeof(id), "%s-mock%llu", id_prefix,
	         (unsigned long long)ctx->seq);
	return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", object,
	                 "created", (json_int_t)ctx->created, "model", ctx->model);
}

/* Set key on obj, taking the reference on value; -1 when value is NULL. */
static int
put(json_t *obj, const char *key, json_t *value)
{
	if (obj == NULL || value == NULL) {
		json_decref(value);
		return -1;
	}
	return json_object_set_new(obj, key, value);
}

/* Take the reference on body, set it as r's JSON, and release it. */
static int
finish_json(struct mock_response *r, json_t *body, int rc)
{
	if (rc == 0 && body != NULL)
		rc = mock_response_json(r, 200, body);
	else
		rc = -1;
	json_decref(body);
	return rc;
}

/* Same for one stream event. */
static int
add_event(struct mock_response *r, json_t *event, const struct mock_options *o)
{
	int rc = event != NULL ? mock_response_add_json_event(r, event, o) : -1;

	json_decref(event);
	return rc;
}

static json_t *
tool_call(const char *name, const char *arguments, uint64_t seq)
{
	char id[64];

	snprintf(id, sizeof(id), "call_mock%llu", (unsigned long long)seq);
	return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function",
	                 "function", "name", name, "arguments", arguments);
}

/* ---- chat completions ------------------------------------------------ */

static int
chat_full(struct mock_response *r, json_t *request, json_int_t prompt,
          const struct generate_context *ctx)
{
	const struct mock_options *o = ctx->options;
	json_t *body = envelope("chatcmpl", "chat.completion", ctx);
	json_t *message, *choice;
	json_int_t completion;
	const char *finish = "stop";

	if (answers_with_tool(request, o)) {
		message = json_pack("{s:s, s:n, s:[o], s:n}", "role", "assistant",
		                    "content", "tool_calls",
		                    tool_call(tool_name(request), TOOL_ARGUMENTS,
		                              ctx->seq), "refusal");
		completion = estimate_tokens(strlen(TOOL_ARGUMENTS));
		finish = "tool_calls";
	} else {
		size_t len;
		char *text = build_text(o, o->words, &len);

		if (text == NULL) {
			json_decref(body);
			return -1;
		}
		message = json_pack("{s:s, s:s%, s:n}", "role", "assistant",
		                    "content", text, len, "refusal");
		completion = count_words(text, len);
		free(text);
	}

	choice = json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "message", message,
	                   "logprobs", "finish_reason", finish);
	int rc = put(body, "choices", json_pack("[o]", choice));
	rc |= put(body, "usage", usage_object(prompt, completion));
	rc |= put(body, "system_fingerprint", json_string("fp_mock"));
	return finish_json(r, body, rc);
}

/* One chat.completion.chunk; takes the reference on delta. A NULL delta
 * with no finish reason makes the usage chunk, whose choices are empty. */
static json_t *
chat_chunk(const struct generate_context *ctx, json_t *delta,
           const char *finish, json_t *usage, int with_usage)
{
	json_t *chunk = envelope("chatcmpl", "chat.completion.chunk", ctx);
	json_t *choices = json_array();
	int rc = 0;

	if (delta != NULL)
		rc |= json_array_append_new(choices,
			json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "delta", delta,
			          "logprobs", "finish_reason", finish));
	rc |= put(chunk, "system_fingerprint", json_string("fp_mock"));
	rc |= put(chunk, "choices", choices);
	if (with_usage)
		rc |= put(chunk, "usage", usage != NULL ? usage : json_null());
	if (rc != 0) {
		json_decref(chunk);
		return NULL;
	}
	return chunk;
}

/* The tool call deltas: name and id first, then the arguments in pieces. */
static int
chat_stream_tool(struct mock_response *r, json_t *request,
                 const struct generate_context *ctx, int with_usage)
{
	const struct mock_options *o = ctx->options;
	size_t len = strlen(TOOL_ARGUMENTS);
	size_t pieces = o->events > 0 ? o->events : 1;
	char id[64];

	if (pieces > len)
		pieces = len;
	snprintf(id, sizeof(id), "call_mock%llu", (unsigned long long)ctx->seq);

	json_t *first = json_pack("{s:s, s:n, s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}",
	                          "role", "assistant", "content", "tool_calls",
	                          "index", 0, "id", id, "type", "function",
	                          "function", "name", tool_name(request),
	                          "arguments", "");
	if (add_event(r, chat_chunk(ctx, first, NULL, NULL, with_usage), o) < 0)
		return -1;

	for (size_t k = 0; k < pieces; k++) {
		size_t from = len * k / pieces, to = len * (k + 1) / pieces;
		json_t *delta = json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls",
		                          "index", 0, "function", "arguments",
		                          TOOL_ARGUMENTS + from, to - from);

		if (add_event(r, chat_chunk(ctx, delta, NULL, NULL, with_usage), o) < 0)
			return -1;
	}
	return 0;
}

static int
chat_stream_text(struct mock_response *r, const struct generate_context *ctx,
                 int with_usage, json_int_t *completion)
{
	const struct mock_options *o = ctx->options;
	size_t len, *cuts;
	char *text = build_text(o, o->events, &len);
	int rc = -1;

	cuts = malloc((o->events + 1) * sizeof(*cuts));
	if (text == NULL || cuts == NULL)
		goto out;
	split_text(o, text, len, o->events, cuts);
	*completion = count_words(text, len);

	json_t *first = json_pack("{s:s, s:s, s:n}", "role", "assistant",
	                          "content", "", "refusal");
	if (add_event(r, chat_chunk(ctx, first, NULL, NULL, with_usage), o) < 0)
		goto out;

	for (size_t k = 0; k < o->events; k++) {
		json_t *delta = json_pack("{s:s%}", "content", text + cuts[k],
		                          cuts[k + 1] - cuts[k]);

		if (add_event(r, chat_chunk(ctx, delta, NULL, NULL, with_usage), o) < 0)
			goto out;
	}
	rc = 0;

out:
	free(cuts);
	free(text);
	return rc;
}

/*
 * stream_error=K: keep the first K events of the stream, then send one
 * error event in the shape the OpenAI API uses inside a stream. The body
 * ends there, without [DONE], and the HTTP response ends normally.
 */
static int
end_with_error(struct mock_response *r, const struct mock_options *o)
{
	size_t keep = (size_t)o->stream_error;
	struct evbuffer *kept;
	json_t *event;

	if (o->stream_error < 0)
		return 0;
	if (keep > r->n_events)
		keep = r->n_events;
	kept = evbuffer_new();
	if (kept == NULL || evbuffer_remove_buffer(r->body, kept,
	        keep == 0 ? 0 : r->event_ends[keep - 1]) < 0) {
		if (kept != NULL)
			evbuffer_free(kept);
		return -1;
	}
	evbuffer_free(r->body);
	r->body = kept;
	r->n_events = keep;

	event = json_pack("{s:{s:s, s:s, s:n}}", "error", "message",
	                  "The mock sent this error event as the x-mock option "
	                  "stream_error requested.", "type", "server_error", "code");
	return add_event(r, event, o);
}

static int
chat_stream(struct mock_response *r, json_t *request, json_int_t prompt,
            const struct generate_context *ctx)
{
	const struct mock_options *o = ctx->options;
	int with_usage = wants_usage(request, o);
	int tool = answers_with_tool(request, o);
	json_int_t completion = estimate_tokens(strlen(TOOL_ARGUMENTS));
	int rc;

	if (mock_response_stream(r) < 0)
		return -1;

	rc = tool ? chat_stream_tool(r, request, ctx, with_usage)
	          : chat_stream_text(r, ctx, with_usage, &completion);
	if (rc < 0)
		return -1;

	if (add_event(r, chat_chunk(ctx, json_object(),
	                            tool ? "tool_calls" : "stop", NULL,
	                            with_usage), o) < 0)
		return -1;
	if (with_usage
	    && add_event(r, chat_chunk(ctx, NULL, NULL,
	                               usage_object(prompt, completion), 1), o) < 0)
		return -1;
	if (mock_response_add_data_event(r, "[DONE]", 6, o) < 0)
		return -1;
	return end_with_error(r, o);
}

int
generate_chat(struct mock_response *r, json_t *request,
              const struct generate_context *ctx)
{
	json_t *messages = json_object_get(request, "messages");
	size_t i, bytes = 0;
	json_t *message;

	if (!json_is_array(messages) || json_array_size(messages) == 0)
		return mock_response_error(r, 400, "invalid_request_error", "messages",
		                           NULL, "'messages' must be a non-empty "
		                           "array of message objects.");

	json_array_foreach(messages, i, message)
		bytes += text_bytes(json_object_get(message, "content"));

	if (json_is_true(json_object_get(request, "stream")))
		return chat_stream(r, request, estimate_tokens(bytes), ctx);
	return chat_full(r, request, estimate_tokens(bytes), ctx);
}

/* ---- text completions ------------------------------------------------ */

static json_t *
completion_choice(const char *text, size_t len, const char *finish)
{
	return json_pack("{s:s%, s:i, s:n, s:s?}", "text", text, len, "index", 0,
	                 "logprobs", "finish_reason", finish);
}

static json_t *
completion_chunk(const struct generate_context *ctx, json_t *choice,
                 json_t *usage)
{
	json_t *chunk = envelope("cmpl", "text_completion", ctx);
	json_t *choices = json_array();
	int rc = 0;

	if (choice != NULL)
		rc |= json_array_append_new(choices, choice);
	rc |= put(chunk, "choices", choices);
	if (usage != NULL)
		rc |= put(chunk, "usage", usage);
	if (rc != 0) {
		json_decref(chunk);
		return NULL;
	}
	return chunk;
}

static int
completion_stream(struct mock_response *r, json_t *request, json_int_t prompt,
                  const struct generate_context *ctx)
{
	const struct mock_options *o = ctx->options;
	size_t len, *cuts;
	char *text = build_text(o, o->events, &len);
	int rc = -1;

	cuts = malloc((o->events + 1) * sizeof(*cuts));
	if (text == NULL || cuts == NULL || mock_response_stream(r) < 0)
		goto out;
	split_text(o, text, len, o->events, cuts);

	for (size_t k = 0; k < o->events; k++) {
		json_t *choice = completion_choice(text + cuts[k],
		                                   cuts[k + 1] - cuts[k], NULL);

		if (add_event(r, completion_chunk(ctx, choice, NULL), o) < 0)
			goto out;
	}
	if (add_event(r, completion_chunk(ctx, completion_choice("", 0, "stop"),
	                                  NULL), o) < 0)
		goto out;
	if (wants_usage(request, o)
	    && add_event(r, completion_chunk(ctx, NULL, usage_object(prompt,
	                 count_words(text, len))), o) < 0)
		goto out;
	rc = mock_response_add_data_event(r, "[DONE]", 6, o);
	if (rc == 0)
		rc = end_with_error(r, o);

out:
	free(cuts);
	free(text);
	return rc;
}

int
generate_completion(struct mock_response *r, json_t *request,
                    const struct generate_context *ctx)
{
	const struct mock_options *o = ctx->options;
	json_t *prompt = json_object_get(request, "prompt");
	json_int_t prompt_tokens = estimate_tokens(text_bytes(prompt));
	json_t *body;
	size_t len;
	char *text;
	int rc;

	if (prompt == NULL)
		return mock_response_error(r, 400, "invalid_request_error", "prompt",
		                           NULL, "Missing required parameter: "
		                           "'prompt'.");

	if (json_is_true(json_object_get(request, "stream")))
		return completion_stream(r, request, prompt_tokens, ctx);

	text = build_text(o, o->words, &len);
	if (text == NULL)
		return -1;
	body = envelope("cmpl", "text_completion", ctx);
	rc = put(body, "choices", json_pack("[o]",
	         completion_choice(text, len, "stop")));
	rc |= put(body, "usage", usage_object(prompt_tokens,
	                                      count_words(text, len)));
	free(text);
	return finish_json(r, body, rc);
}

/* ---- embeddings ------------------------------------------------------ */

static uint64_t
fnv1a(const char *data, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)data[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* splitmix64: spreads one seed over the vector's components. */
static uint64_t
mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The vector of one input: components in [-1, 1] with three decimals,
 * derived from a hash of the input so equal inputs get equal vectors. */
static json_t *
embedding_vector(json_t *input, size_t dims, int base64)
{
	char *text = json_dumps(input, JSON_ENCODE_ANY | JSON_COMPACT);
	uint64_t seed;
	json_t *vec;

	if (text == NULL)
		return NULL;
	seed = fnv1a(text, strlen(text));
	free(text);

	if (base64) {
		unsigned char *raw = malloc(dims * 4);
		char *out = malloc(4 * ((dims * 4 + 2) / 3) + 1);

		vec = NULL;
		if (raw != NULL && out != NULL) {
			for (size_t k = 0; k < dims; k++) {
				float f = (float)((double)(mix(seed + k) % 2001) - 1000.0) / 1000.0f;
				uint32_t bits;

				memcpy(&bits, &f, 4);
				for (int b = 0; b < 4; b++)     /* little-endian, as OpenAI sends */
					raw[k * 4 + (size_t)b] = (unsigned char)(bits >> (8 * b));
			}
			EVP_EncodeBlock((unsigned char *)out, raw, (int)(dims * 4));
			vec = json_string(out);
		}
		free(raw);
		free(out);
		return vec;
	}

	vec = json_array();
	for (size_t k = 0; vec != NULL && k < dims; k++)
		if (json_array_append_new(vec, json_real(
		        ((double)(mix(seed + k) % 2001) - 1000.0) / 1000.0)) < 0) {
			json_decref(vec);
			return NULL;
		}
	return vec;
}

/* Whether every element of array passes test; false for an empty array. */
static int
array_all(json_t *array, int (*test)(const json_t *))
{
	size_t i;
	json_t *item;

	if (!json_is_array(array) || json_array_size(array) == 0)
		return 0;
	json_array_foreach(array, i, item)
		if (!test(item))
			return 0;
	return 1;
}

static int
is_string(const json_t *v)
{
	return json_is_string(v);
}

static int
is_integer(const json_t *v)
{
	return json_is_integer(v);
}

static int
is_token_array(const json_t *v)
{
	return array_all((json_t *)v, is_integer);
}

/* The list of inputs: a string, an array of strings, one array of token
 * ids, or an array of such arrays. A new reference, or NULL if invalid. */
static json_t *
embedding_inputs(json_t *input)
{
	if (json_is_string(input) || array_all(input, is_integer))
		return json_pack("[O]", input);
	if (array_all(input, is_string) || array_all(input, is_token_array))
		return json_incref(input);
	return NULL;
}

/* ---- moderations ---------------------------------------------------- */

/* One result: flagged, with a high "violence" score, when the text holds
 * the marker FLAG-ME. */
static json_t *
moderation_result(const char *text)
{
	int flagged = text != NULL && strstr(text, "FLAG-ME") != NULL;

	return json_pack("{s:b, s:{s:b, s:b, s:b}, s:{s:f, s:f, s:f}}", "flagged", flagged,
	                 "categories", "violence", flagged, "hate", 0, "self-harm", 0,
	                 "category_scores", "violence", flagged ? 0.91 : 0.01,
	                 "hate", 0.02, "self-harm", flagged ? 0.40 : 0.01);
}

int
generate_moderations(struct mock_response *r, json_t *request,
                     const struct generate_context *ctx)
{
	json_t *input = json_object_get(request, "input");
	json_t *body = envelope("modr", "moderation", ctx);
	json_t *results = json_array();
	size_t i;
	json_t *item;

	if (!json_is_string(input) && !json_is_array(input)) {
		json_decref(body);
		json_decref(results);
		return mock_response_error(r, 400, "invalid_request_error", "input", NULL,
		                           "input must be a string or an array of strings");
	}
	if (json_is_string(input))
		json_array_append_new(results, moderation_result(json_string_value(input)));
	json_array_foreach(input, i, item)
		json_array_append_new(results, moderation_result(json_string_value(item)));
	json_object_del(body, "object");
	json_object_del(body, "created");
	return finish_json(r, body, put(body, "results", results));
}

int
generate_embeddings(struct mock_response *r, json_t *request,
                    const struct generate_context *ctx)
{
	json_t *inputs = embedding_inputs(json_object_get(request, "input"));
	json_t *dims_json = json_object_get(request, "dimensions");
	const char *format = json_string_value(json_object_get(request,
	                                       "encoding_format"));
	json_int_t dims = EMBEDDING_DIMENSIONS, tokens;
	json_t *data, *body, *input;
	size_t i;
	int rc = 0;

	if (inputs == NULL)
		return mock_response_error(r, 400, "invalid_request_error", "input",
		                           NULL, "'input' must be a non-empty string, "
		                           "array of strings, array of token ids or "
		                           "array of token id arrays.");
	if (dims_json != NULL) {
		dims = json_integer_value(dims_json);
		if (!json_is_integer(dims_json) || dims < 1
		    || dims > EMBEDDING_MAX_DIMENSIONS) {
			json_decref(inputs);
			return mock_response_error(r, 400, "invalid_request_error",
			                           "dimensions", NULL, "'dimensions' must "
			                           "be an integer from 1 to 4096.");
		}
	}
	if (format != NULL && strcmp(format, "float") != 0
	    && strcmp(format, "base64") != 0) {
		json_decref(inputs);
		return mock_response_error(r, 400, "invalid_request_error",
		                           "encoding_format", NULL, "'encoding_format' "
		                           "must be 'float' or 'base64'.");
	}

	tokens = estimate_tokens(text_bytes(inputs));
	data = json_array();
	json_array_foreach(inputs, i, input) {
		json_t *vec = embedding_vector(input, (size_t)dims,
		                               format != NULL && format[0] == 'b');

		rc |= json_array_append_new(data, json_pack("{s:s, s:I, s:o?}",
		      "object", "embedding", "index", (json_int_t)i, "embedding", vec));
	}
	json_decref(inputs);

	body = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list",
	                 "data", data, "model", ctx->model, "usage",
	                 "prompt_tokens", tokens, "total_tokens", tokens);
	return finish_json(r, body, rc);
}

/* ---- models ---------------------------------------------------------- */

static const char *const model_ids[] = {
	"gpt-4o", "gpt-4o-mini", "gpt-5-nano", "gpt-3.5-turbo-instruct",
	"text-embedding-3-small",
};

static json_t *
model_entry(const char *id, long long created)
{
	return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model",
	                 "created", (json_int_t)created, "owned_by", "tollgate-mock");
}

int
generate_models(struct mock_response *r, const char *id, long long created)
{
	json_t *body, *data;
	int rc = 0;

	if (id != NULL)
		return finish_json(r, model_entry(id, created), 0);

	data = json_array();
	for (size_t i = 0; i < sizeof(model_ids) / sizeof(model_ids[0]); i++)
		rc |= json_array_append_new(data, model_entry(model_ids[i], created));
	body = json_pack("{s:s, s:o}", "object", "list", "data", data);
	return finish_json(r, body, rc);
}
