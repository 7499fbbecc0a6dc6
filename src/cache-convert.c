/*
 * Conversions between a completion body and the chunks of its stream, for
 * chat completions ("chat.completion" and "chat.completion.chunk") and
 * legacy text completions ("text_completion" for both).
 *
 * A body becomes two chunks per choice, then the usage-only chunk. The
 * first chunk carries the whole message, since a delta may have role,
 * content and tool calls at once and clients join deltas by choice index.
 * The second carries the finish_reason, as OpenAI ends each choice.
 * Chunks become a body by joining each choice's deltas: strings
 * concatenate, tool calls merge by their index, arrays (logprobs,
 * annotations) extend, and other values keep the last one sent.
 */
#include <stdlib.h>
#include <string.h>

#include "cache-entry.h"

/* Top-level fields a chunk shares with its body, in the order OpenAI sends
 * them; "object" and "choices" differ and "usage" moves. */
static const char *const shared_fields[] = {
	"id", "object", "created", "model", "service_tier", "system_fingerprint",
};

enum completion_kind {
	KIND_OTHER,
	KIND_CHAT,
	KIND_TEXT,
};

static enum completion_kind
kind_of(const json_t *object_field, const char *chat_name)
{
	const char *name = json_string_value(object_field);

	if (name == NULL)
		return KIND_OTHER;
	if (strcmp(name, chat_name) == 0)
		return KIND_CHAT;
	if (strcmp(name, "text_completion") == 0)
		return KIND_TEXT;
	return KIND_OTHER;
}

/* --- body to chunks ---------------------------------------------------------- */

/* A chunk with the body's shared fields and the given choices (stolen). */
static json_t *
new_chunk(const json_t *body, enum completion_kind kind, json_t *choices)
{
	json_t *chunk = json_object();

	for (size_t i = 0; chunk != NULL && i < sizeof(shared_fields) / sizeof(shared_fields[0]); i++) {
		json_t *value = json_object_get(body, shared_fields[i]);

		if (strcmp(shared_fields[i], "object") == 0)
			value = json_string(kind == KIND_CHAT ? "chat.completion.chunk"
			                                      : "text_completion");
		else if (value != NULL)
			json_incref(value);
		else
			continue;
		if (json_object_set_new(chunk, shared_fields[i], value) != 0) {
			json_decref(chunk);
			chunk = NULL;
		}
	}
	if (chunk == NULL) {
		json_decref(choices);
		return NULL;
	}
	if (json_object_set_new(chunk, "choices", choices) != 0) {
		json_decref(chunk);
		return NULL;
	}
	return chunk;
}

/* The message as one delta: tool calls get the "index" that stream deltas
 * carry. */
static json_t *
message_to_delta(const json_t *message)
{
	json_t *delta = json_deep_copy(message);
	json_t *calls = json_object_get(delta, "tool_calls");
	json_t *call;
	size_t i;

	if (!json_is_object(delta)) {
		json_decref(delta);
		return NULL;
	}
	json_array_foreach(calls, i, call) {
		json_t *indexed = json_pack("{s:I}", "index", (json_int_t)i);

		if (indexed == NULL || json_object_update(indexed, call) != 0 ||
		    json_array_set_new(calls, i, indexed) != 0) {
			json_decref(indexed);
			json_decref(delta);
			return NULL;
		}
	}
	return delta;
}

/* The two chunks of one choice: content, then finish_reason. */
static int
append_choice_chunks(json_t *chunks, const json_t *body, enum completion_kind kind,
                     const json_t *choice, size_t position)
{
	json_t *index = json_object_get(choice, "index");
	json_int_t i = json_is_integer(index) ? json_integer_value(index) : (json_int_t)position;
	json_t *logprobs = json_object_get(choice, "logprobs");
	json_t *finish = json_object_get(choice, "finish_reason");
	json_t *content, *end;

	if (logprobs == NULL)
		logprobs = json_null();
	if (finish == NULL)
		finish = json_null();

	if (kind == KIND_CHAT) {
		json_t *delta = message_to_delta(json_object_get(choice, "message"));

		if (delta == NULL)
			return -1;
		content = json_pack("[{s:I, s:o, s:O, s:n}]", "index", i, "delta", delta,
		                    "logprobs", logprobs, "finish_reason");
		end = json_pack("[{s:I, s:{}, s:n, s:O}]", "index", i, "delta", "logprobs",
		                "finish_reason", finish);
	} else {
		json_t *text = json_object_get(choice, "text");

		if (!json_is_string(text))
			return -1;
		content = json_pack("[{s:O, s:I, s:O, s:n}]", "text", text, "index", i,
		                    "logprobs", logprobs, "finish_reason");
		end = json_pack("[{s:s, s:I, s:n, s:O}]", "text", "", "index", i, "logprobs",
		                "finish_reason", finish);
	}

	if (content == NULL || end == NULL) {
		json_decref(content);
		json_decref(end);
		return -1;
	}
	if (json_array_append_new(chunks, new_chunk(body, kind, content)) != 0 ||
	    json_array_append_new(chunks, new_chunk(body, kind, end)) != 0)
		return -1;
	return 0;
}

json_t *
tg_cache_body_to_chunks(const json_t *body, int want_usage)
{
	enum completion_kind kind = kind_of(json_object_get(body, "object"), "chat.completion");
	json_t *choices = json_object_get(body, "choices");
	json_t *usage = json_object_get(body, "usage");
	json_t *chunks, *choice, *last;
	size_t i;

	if (kind == KIND_OTHER || !json_is_array(choices))
		return NULL;
	if (want_usage && !json_is_object(usage))
		return NULL;

	chunks = json_array();
	if (chunks == NULL)
		return NULL;
	json_array_foreach(choices, i, choice) {
		if (append_choice_chunks(chunks, body, kind, choice, i) != 0)
			goto fail;
	}

	if (want_usage) {
		last = new_chunk(body, kind, json_array());
		if (last == NULL || json_object_set(last, "usage", usage) != 0 ||
		    json_array_append_new(chunks, last) != 0)
			goto fail;
	}
	return chunks;

fail:
	json_decref(chunks);
	return NULL;
}

/* --- chunks to body ---------------------------------------------------------- */

/* Per-choice state while joining deltas. */
struct choice_acc {
	json_t *message;                /* chat: joined deltas */
	json_t *tool_calls;             /* chat: merged calls by index, in order */
	json_t *text;                   /* text completion: joined text */
	json_t *logprobs;               /* joined, or NULL */
	json_t *finish_reason;
	int seen;
};

/* Append a string value onto the string at key, or set it. Lengths, not
 * NULs, delimit the pieces, since JSON strings may contain U+0000. */
static int
join_string(json_t *object, const char *key, json_t *piece)
{
	json_t *have = json_object_get(object, key);
	size_t have_len, piece_len;
	char *joined;
	int rc;

	if (!json_is_string(have))
		return json_object_set(object, key, piece);
	have_len = json_string_length(have);
	piece_len = json_string_length(piece);
	joined = malloc(have_len + piece_len + 1);
	if (joined == NULL)
		return -1;
	memcpy(joined, json_string_value(have), have_len);
	memcpy(joined + have_len, json_string_value(piece), piece_len);
	rc = json_object_set_new(object, key, json_stringn_nocheck(joined, have_len + piece_len));
	free(joined);
	return rc;
}

/*
 * Merge value into object[key]. Strings concatenate, except "role" and
 * "name", which some servers repeat in every delta. Arrays extend, a null
 * does not replace a value already there, and anything else replaces.
 */
static int
merge_value(json_t *object, const char *key, json_t *value)
{
	json_t *have = json_object_get(object, key);

	if (json_is_string(value) && strcmp(key, "role") != 0 && strcmp(key, "name") != 0)
		return join_string(object, key, value);
	if (json_is_array(value) && json_is_array(have))
		return json_array_extend(have, value);
	if (json_is_null(value) && have != NULL)
		return 0;
	return json_object_set(object, key, value);
}

/* Merge a stream tool-call delta into the call with the same index. */
static int
merge_tool_call(json_t *calls, const json_t *delta)
{
	json_t *index = json_object_get(delta, "index");
	json_t *function = json_object_get(delta, "function");
	json_t *call, *value;
	const char *key;
	size_t i;

	if (!json_is_integer(index))
		return -1;
	call = NULL;
	for (i = 0; i < json_array_size(calls); i++) {
		json_t *c = json_array_get(calls, i);

		if (json_integer_value(json_object_get(c, "index")) == json_integer_value(index))
			call = c;
	}
	if (call == NULL) {
		call = json_object();
		if (call == NULL || json_array_append_new(calls, call) != 0)
			return -1;
	}

	json_object_foreach((json_t *)delta, key, value) {
		if (strcmp(key, "function") == 0)
			continue;
		if (json_object_set(call, key, value) != 0)
			return -1;
	}
	if (json_is_object(function)) {
		json_t *merged = json_object_get(call, "function");

		if (merged == NULL) {
			merged = json_object();
			if (json_object_set_new(call, "function", merged) != 0)
				return -1;
		}
		json_object_foreach(function, key, value) {
			if (merge_value(merged, key, value) != 0)
				return -1;
		}
	}
	return 0;
}

static int
merge_delta(struct choice_acc *acc, json_t *delta)
{
	const char *key;
	json_t *value, *call;
	size_t i;

	json_object_foreach(delta, key, value) {
		if (strcmp(key, "tool_calls") != 0) {
			if (merge_value(acc->message, key, value) != 0)
				return -1;
			continue;
		}
		json_array_foreach(value, i, call) {
			if (merge_tool_call(acc->tool_calls, call) != 0)
				return -1;
		}
	}
	return 0;
}

/* Logprobs join per field: chat has {"content": [...], "refusal": [...]},
 * text completions {"tokens": [...], "token_logprobs": [...], ...}. */
static int
merge_logprobs(struct choice_acc *acc, json_t *logprobs)
{
	const char *key;
	json_t *value;

	if (!json_is_object(logprobs))
		return 0;
	if (acc->logprobs == NULL) {
		acc->logprobs = json_deep_copy(logprobs);
		return acc->logprobs != NULL ? 0 : -1;
	}
	json_object_foreach(logprobs, key, value) {
		if (merge_value(acc->logprobs, key, value) != 0)
			return -1;
	}
	return 0;
}

static int
merge_choice(struct choice_acc *accs, enum completion_kind kind, json_t *choice,
             size_t position)
{
	json_t *index = json_object_get(choice, "index");
	json_int_t i = json_is_integer(index) ? json_integer_value(index) : (json_int_t)position;
	json_t *finish = json_object_get(choice, "finish_reason");
	struct choice_acc *acc;

	if (i < 0 || i >= TG_CACHE_MAX_CHOICES)
		return -1;
	acc = &accs[i];
	if (!acc->seen) {
		acc->seen = 1;
		acc->message = json_object();
		acc->tool_calls = json_array();
		acc->text = json_object();
		if (acc->message == NULL || acc->tool_calls == NULL || acc->text == NULL)
			return -1;
	}

	if (kind == KIND_CHAT) {
		json_t *delta = json_object_get(choice, "delta");

		if (json_is_object(delta) && merge_delta(acc, delta) != 0)
			return -1;
	} else {
		json_t *text = json_object_get(choice, "text");

		if (json_is_string(text) && merge_value(acc->text, "text", text) != 0)
			return -1;
	}

	if (json_is_string(finish)) {
		json_decref(acc->finish_reason);
		acc->finish_reason = json_incref(finish);
	}
	return merge_logprobs(acc, json_object_get(choice, "logprobs"));
}

/* Take the shared fields from the first chunk that has each of them. */
static int
merge_shared(json_t *body, const json_t *chunk)
{
	for (size_t i = 0; i < sizeof(shared_fields) / sizeof(shared_fields[0]); i++) {
		json_t *value = json_object_get(chunk, shared_fields[i]);
		json_t *have = json_object_get(body, shared_fields[i]);

		if (value == NULL || (have != NULL && !json_is_null(have)))
			continue;
		if (json_object_set(body, shared_fields[i], value) != 0)
			return -1;
	}
	return 0;
}

/* 1 when message's content is the empty string: a stream may send
 * "content": "" beside its tool calls, where a whole response has null. */
static int
has_no_text(const json_t *message)
{
	const json_t *content = json_object_get(message, "content");

	return json_is_string(content) && json_string_length(content) == 0;
}

/* The finished choice of a chat completion: message with role first and
 * without the stream-only "index" of its tool calls, and with a null
 * content beside them when the stream sent no text, as a whole response
 * has it. */
static json_t *
finish_chat_message(struct choice_acc *acc)
{
	json_t *message = json_pack("{s:s, s:n}", "role", "assistant", "content");
	json_t *call;
	size_t i;

	if (message == NULL || json_object_update(message, acc->message) != 0)
		goto fail;
	json_array_foreach(acc->tool_calls, i, call)
		json_object_del(call, "index");
	if (json_array_size(acc->tool_calls) > 0 &&
	    json_object_set(message, "tool_calls", acc->tool_calls) != 0)
		goto fail;
	if (json_array_size(acc->tool_calls) > 0 && has_no_text(message) &&
	    json_object_set_new(message, "content", json_null()) != 0)
		goto fail;
	return message;

fail:
	json_decref(message);
	return NULL;
}

static json_t *
finish_choice(struct choice_acc *acc, enum completion_kind kind, json_int_t index)
{
	json_t *logprobs = acc->logprobs != NULL ? json_incref(acc->logprobs) : json_null();
	json_t *finish = acc->finish_reason != NULL ? json_incref(acc->finish_reason) : json_null();
	json_t *text;

	if (kind == KIND_CHAT)
		return json_pack("{s:I, s:o, s:o, s:o}", "index", index,
		                 "message", finish_chat_message(acc),
		                 "logprobs", logprobs, "finish_reason", finish);

	text = json_object_get(acc->text, "text");
	text = text != NULL ? json_incref(text) : json_string("");
	return json_pack("{s:o, s:I, s:o, s:o}", "text", text, "index", index,
	                 "logprobs", logprobs, "finish_reason", finish);
}

static void
free_accs(struct choice_acc *accs)
{
	for (size_t i = 0; i < TG_CACHE_MAX_CHOICES; i++) {
		json_decref(accs[i].message);
		json_decref(accs[i].tool_calls);
		json_decref(accs[i].text);
		json_decref(accs[i].logprobs);
		json_decref(accs[i].finish_reason);
	}
	free(accs);
}

/* Join one chunk into body and accs; the first chunk sets *kind. */
static int
merge_chunk(json_t *body, struct choice_acc *accs, enum completion_kind *kind,
            const json_t *chunk)
{
	enum completion_kind this = kind_of(json_object_get(chunk, "object"),
	                                    "chat.completion.chunk");
	json_t *choices = json_object_get(chunk, "choices");
	json_t *usage = json_object_get(chunk, "usage");
	json_t *choice;
	size_t i;

	if (this == KIND_OTHER || (*kind != KIND_OTHER && this != *kind))
		return -1;
	*kind = this;
	if (merge_shared(body, chunk) != 0)
		return -1;
	json_array_foreach(choices, i, choice) {
		if (merge_choice(accs, this, choice, i) != 0)
			return -1;
	}
	if (json_is_object(usage) && json_object_set(body, "usage", usage) != 0)
		return -1;
	return 0;
}

/* Put the joined choices into body, in index order, with the fields in the
 * order a non-streaming response has them. */
static int
finish_body(json_t *body, struct choice_acc *accs, enum completion_kind kind)
{
	json_t *choices = json_array();
	json_t *usage = json_incref(json_object_get(body, "usage"));
	json_t *fingerprint = json_incref(json_object_get(body, "system_fingerprint"));
	int rc = choices == NULL;

	for (json_int_t i = 0; rc == 0 && i < TG_CACHE_MAX_CHOICES; i++) {
		if (accs[i].seen)
			rc = json_array_append_new(choices, finish_choice(&accs[i], kind, i));
	}

	/* Re-adding moves usage and system_fingerprint after choices. */
	json_object_del(body, "usage");
	json_object_del(body, "system_fingerprint");
	rc |= json_object_set_new(body, "object", json_string(kind == KIND_CHAT ? "chat.completion"
	                                                                        : "text_completion"));
	rc |= json_object_set_new(body, "choices", choices);
	if (usage != NULL)
		rc |= json_object_set_new(body, "usage", usage);
	if (fingerprint != NULL)
		rc |= json_object_set_new(body, "system_fingerprint", fingerprint);
	return rc == 0 ? 0 : -1;
}

json_t *
tg_cache_chunks_to_body(const struct tg_cache_part *events, size_t n)
{
	enum completion_kind kind = KIND_OTHER;
	struct choice_acc *accs = calloc(TG_CACHE_MAX_CHOICES, sizeof(*accs));
	json_t *body = json_object();

	if (accs == NULL || body == NULL)
		goto fail;

	for (size_t i = 0; i < n; i++) {
		json_error_t error;
		json_t *chunk = json_loadb(events[i].data, events[i].len, 0, &error);
		int rc = json_is_object(chunk) ? merge_chunk(body, accs, &kind, chunk) : -1;

		json_decref(chunk);
		if (rc != 0)
			goto fail;
	}
	if (kind == KIND_OTHER || finish_body(body, accs, kind) != 0)
		goto fail;
	free_accs(accs);
	return body;

fail:
	if (accs != NULL)
		free_accs(accs);
	json_decref(body);
	return NULL;
}
