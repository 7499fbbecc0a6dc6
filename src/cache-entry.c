/*
 * Cache entries: recording a stream, encoding and decoding the envelope,
 * replaying an entry.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cache-entry.h"
#include "cache-header.h"
#include "null-usage.h"
#include "reply-digest.h"

enum choice_state {
	CHOICE_UNSEEN = 0,
	CHOICE_OPEN,                    /* seen, no finish_reason yet */
	CHOICE_FINISHED,
};

/* --- recording ------------------------------------------------------------- */

void
tg_cache_record_init(struct tg_cache_record *r, size_t max_bytes)
{
	memset(r, 0, sizeof(*r));
	r->max_bytes = max_bytes;
	r->usage_event = -1;
	r->events = json_array();
	if (r->events == NULL)
		r->unstorable = "out of memory";
}

void
tg_cache_record_free(struct tg_cache_record *r)
{
	json_decref(r->events);
	r->events = NULL;
}

/* Stop recording: nothing of this stream will be stored, so its events
 * need not be kept either. */
static void
record_reject(struct tg_cache_record *r, const char *reason)
{
	if (r->unstorable == NULL)
		r->unstorable = reason;
	json_array_clear(r->events);
}

/* Note the index and finish_reason of one choice of a chunk.
 * Returns the reason the stream cannot be stored, or NULL. */
static const char *
record_choice(struct tg_cache_record *r, const json_t *choice, size_t position)
{
	json_t *index = json_object_get(choice, "index");
	json_t *finish = json_object_get(choice, "finish_reason");
	json_int_t i = json_is_integer(index) ? json_integer_value(index) : (json_int_t)position;

	if (!json_is_object(choice))
		return "a choice is not an object";
	if (i < 0 || i >= TG_CACHE_MAX_CHOICES)
		return "a choice index is out of range";

	if (json_is_string(finish)) {
		if (strcmp(json_string_value(finish), "content_filter") == 0)
			return "stopped by a content filter";
		r->choices[i] = CHOICE_FINISHED;
	} else if (r->choices[i] == CHOICE_UNSEEN) {
		r->choices[i] = CHOICE_OPEN;
	}
	return NULL;
}

/* Check one parsed chunk and note its choices and usage. Returns the reason
 * it cannot be stored, or NULL. */
static const char *
record_chunk(struct tg_cache_record *r, const json_t *chunk)
{
	json_t *choices = json_object_get(chunk, "choices");
	json_t *usage = json_object_get(chunk, "usage");
	json_t *choice;
	size_t i;

	if (!json_is_object(chunk))
		return "an event is not a JSON object";
	if (tg_reply_tree_has_error(chunk))
		return "the stream carries an error";
	if (!json_is_array(choices))
		return "a chunk has no choices";

	json_array_foreach(choices, i, choice) {
		const char *reason = record_choice(r, choice, i);

		if (reason != NULL)
			return reason;
	}

	if (json_is_object(usage)) {
		r->has_usage = 1;
		if (json_array_size(choices) == 0)
			r->usage_event = (long)json_array_size(r->events);
	}
	return NULL;
}

/* Whether the event name type (type_len bytes) is name. */
static int
type_is(const char *type, size_t type_len, const char *name)
{
	return type_len == strlen(name) && memcmp(type, name, type_len) == 0;
}

/* Return whether stop_reason, an Anthropic message's, is "refusal". Like a
 * content_filter finish, a refusal is not a response to keep. */
static int
is_refusal(const json_t *stop_reason)
{
	return json_is_string(stop_reason) && strcmp(json_string_value(stop_reason), "refusal") == 0;
}

static const char UNFINISHED_RESPONSE[] = "the Responses API response has no \"status\": \"completed\"";

/* Check one event of a Responses API stream and note its end: a
 * response.completed event whose response has "status": "completed". A
 * failed or incomplete response ended short of its output. Returns the
 * reason the stream cannot be stored, or NULL. */
static const char *
check_responses_event(struct tg_cache_record *r, const char *type, size_t type_len,
                      const json_t *event)
{
	const char *status;

	if (type_is(type, type_len, "response.failed") || type_is(type, type_len, "response.incomplete"))
		return UNFINISHED_RESPONSE;
	if (!type_is(type, type_len, "response.completed"))
		return NULL;

	status = json_string_value(json_object_get(json_object_get(event, "response"), "status"));
	if (status == NULL || strcmp(status, "completed") != 0)
		return UNFINISHED_RESPONSE;
	r->done = 1;
	r->stopped = 1;
	return NULL;
}

/* Check one event of a named stream and note its end and stop reason.
 * Returns the reason the stream cannot be stored, or NULL. */
static const char *
check_named_event(struct tg_cache_record *r, const char *type, size_t type_len,
                  const json_t *event)
{
	json_t *stop_reason;

	if (type_is(type, type_len, "error"))
		return "the stream carries an error";
	if (!json_is_object(event))
		return "an event is not a JSON object";
	if (tg_reply_tree_has_error(event))
		return "the stream carries an error";
	if (r->responses)
		return check_responses_event(r, type, type_len, event);

	if (type_is(type, type_len, "message_stop")) {
		r->done = 1;
	} else if (type_is(type, type_len, "message_delta")) {
		stop_reason = json_object_get(json_object_get(event, "delta"), "stop_reason");
		if (is_refusal(stop_reason))
			return "stopped by a refusal";
		r->stopped |= json_is_string(stop_reason);
	}
	return NULL;
}

/* Record one event of a named stream as "NAME\nDATA". Anthropic's pings
 * are left out: they carry nothing, and a replay has no pause to fill. */
static void
record_named_event(struct tg_cache_record *r, const char *type, size_t type_len,
                   const char *data, size_t data_len, const json_t *event)
{
	const char *reason;
	size_t len = type_len + 1 + data_len;
	char *part;

	if (type_is(type, type_len, "ping"))
		return;
	if (r->bytes + len > r->max_bytes) {
		r->too_large = 1;
		record_reject(r, "the stream is larger than the entry size limit");
		return;
	}
	reason = check_named_event(r, type, type_len, event);
	if (reason != NULL) {
		record_reject(r, reason);
		return;
	}

	part = malloc(len);
	if (part != NULL) {
		memcpy(part, type, type_len);
		part[type_len] = '\n';
		memcpy(part + type_len + 1, data, data_len);
	}
	if (part == NULL || json_array_append_new(r->events, json_stringn(part, len)) != 0) {
		free(part);
		record_reject(r, "out of memory");
		return;
	}
	free(part);
	r->bytes += len;
}

void
tg_cache_record_event(struct tg_cache_record *r, const char *type, size_t type_len,
                      const char *data, size_t data_len, const json_t *chunk)
{
	const char *reason;

	if (r->unstorable != NULL)
		return;
	if (r->done) {
		record_reject(r, r->responses ? "an event follows response.completed" :
		              r->named ? "an event follows message_stop" : "an event follows [DONE]");
		return;
	}
	if (!r->named && json_array_size(r->events) == 0) {
		r->responses = type_is(type, type_len, "response.created");
		r->named = r->responses || type_is(type, type_len, "message_start");
	}
	if (r->named) {
		record_named_event(r, type, type_len, data, data_len, chunk);
		return;
	}
	if (type_len != 0 && !type_is(type, type_len, "message")) {
		record_reject(r, "the stream has named events");
		return;
	}
	if (data_len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		r->done = 1;
		return;
	}
	if (r->bytes + data_len > r->max_bytes) {
		r->too_large = 1;
		record_reject(r, "the stream is larger than the entry size limit");
		return;
	}

	reason = chunk != NULL ? record_chunk(r, chunk) : "an event is not JSON";
	if (reason != NULL) {
		record_reject(r, reason);
		return;
	}

	if (json_array_append_new(r->events, json_stringn(data, data_len)) != 0) {
		record_reject(r, "out of memory");
		return;
	}
	r->bytes += data_len;
}

const char *
tg_cache_record_incomplete(const struct tg_cache_record *r)
{
	int seen = 0;

	if (r->unstorable != NULL)
		return r->unstorable;
	if (r->responses && !r->done)
		return "the stream ended without response.completed";
	if (r->named && !r->done)
		return "the stream ended without message_stop";
	if (r->named)
		return r->stopped ? NULL : "the message has no stop_reason";
	if (!r->done)
		return "the stream ended without [DONE]";
	for (size_t i = 0; i < TG_CACHE_MAX_CHOICES; i++) {
		if (r->choices[i] == CHOICE_OPEN)
			return "a choice has no finish_reason";
		seen |= r->choices[i] == CHOICE_FINISHED;
	}
	if (!seen)
		return "the stream has no choices";
	return NULL;
}

/* --- encoding -------------------------------------------------------------- */

/* Write the envelope: h's header line, whose lengths are those of the
 * h->n_parts parts, then a line feed and the parts. Returns the text
 * (free() it) and its length in *len, or NULL with *reason set when
 * memory ran out. */
static char *
write_envelope(const struct tg_cache_header *h, const char *const *parts, size_t *len,
               const char **reason)
{
	struct tg_json_writer head = {0};
	char *text = NULL;
	size_t total = 0;

	tg_cache_header_write(&head, h);
	for (size_t i = 0; i < h->n_parts; i++)
		total += h->bytes[i];
	if (!head.failed)
		text = malloc(head.len + 1 + total + 1);
	if (text == NULL) {
		tg_json_writer_free(&head);
		*reason = "out of memory";
		return NULL;
	}

	memcpy(text, head.data, head.len);
	text[head.len] = '\n';
	*len = head.len + 1;
	for (size_t i = 0; i < h->n_parts; i++) {
		memcpy(text + *len, parts[i], h->bytes[i]);
		*len += h->bytes[i];
	}
	text[*len] = '\0';         /* not part of the entry: for readers of strings */
	tg_json_writer_free(&head);
	return text;
}

char *
tg_cache_entry_from_record(const struct tg_cache_record *r, const struct tg_headers *headers,
                           int64_t created_ms, size_t *len, const char **reason)
{
	size_t n = json_array_size(r->events);
	const char **parts;
	struct tg_cache_header h = {
		.created_ms = created_ms,
		/* NOTE: while instances built before the "events" kind share a
		 * Redis with newer ones, they find such an entry invalid. They log
		 * a warning for it and relay the request as on a miss. */
		.kind = r->named ? TG_CACHE_KIND_EVENTS : TG_CACHE_KIND_STREAM,
		.has_usage = r->has_usage,
		.usage_event = r->usage_event,
		.n_parts = n,
		.headers = headers,
	};
	char *text = NULL;

	*reason = tg_cache_record_incomplete(r);
	if (*reason != NULL)
		return NULL;

	parts = malloc((n ? n : 1) * sizeof(*parts));
	h.bytes = malloc((n ? n : 1) * sizeof(*h.bytes));
	*reason = "out of memory";
	if (parts != NULL && h.bytes != NULL) {
		for (size_t i = 0; i < n; i++) {
			parts[i] = json_string_value(json_array_get(r->events, i));
			h.bytes[i] = json_string_length(json_array_get(r->events, i));
		}
		text = write_envelope(&h, parts, len, reason);
	}
	free(parts);
	free(h.bytes);
	return text;
}

/*
 * 1 when body, a Responses API response, is unfinished: a "status" other
 * than "completed". A "failed", "incomplete" or "cancelled" response
 * ended short of its output, and a "queued" or "in_progress" one (a
 * background response) is still running, to be fetched later by its id. A body is a Responses API response by its
 * "object", or by its "output" list when a server leaves "object" out.
 */
static int
response_unfinished(const json_t *body)
{
	const char *object = json_string_value(json_object_get(body, "object"));
	const char *status = json_string_value(json_object_get(body, "status"));

	if ((object == NULL || strcmp(object, "response") != 0) &&
	    !json_is_array(json_object_get(body, "output")))
		return 0;
	return status == NULL || strcmp(status, "completed") != 0;
}

/* Returns the reason a JSON response body must not be stored, or NULL. */
static const char *
check_body(const json_t *body)
{
	json_t *choices = json_object_get(body, "choices");
	json_t *choice;
	size_t i;

	if (!json_is_object(body))
		return "the body is not a JSON object";
	if (tg_reply_tree_has_error(body))
		return "the body is an error";
	if (response_unfinished(body))
		return UNFINISHED_RESPONSE;
	if (is_refusal(json_object_get(body, "stop_reason")))
		return "stopped by a refusal";

	json_array_foreach(choices, i, choice) {
		json_t *finish = json_object_get(choice, "finish_reason");

		if (!json_is_string(finish))
			return "a choice has no finish_reason";
		if (strcmp(json_string_value(finish), "content_filter") == 0)
			return "stopped by a content filter";
	}
	return NULL;
}

char *
tg_cache_entry_from_body(const char *body, size_t body_len, const json_t *parsed,
                         const struct tg_headers *headers, int64_t created_ms, size_t *len,
                         const char **reason)
{
	struct tg_cache_header h = {
		.created_ms = created_ms, .kind = TG_CACHE_KIND_JSON,
		.bytes = &body_len, .n_parts = 1, .headers = headers,
	};

	*reason = parsed != NULL ? check_body(parsed) : "the body is not JSON";
	if (*reason != NULL)
		return NULL;
	return write_envelope(&h, &body, len, reason);
}

/* --- decoding -------------------------------------------------------------- */

/*
 * Copy the parts of payload, whose lengths h gives, into e: each is
 * followed by a NUL of its own, so that it can be read as a string too.
 * Returns 0, or -1 when the lengths do not add up to payload_len or
 * memory ran out.
 */
static int
decode_parts(struct tg_cache_entry *e, const struct tg_cache_header *h, const char *payload,
             size_t payload_len)
{
	size_t at = 0;
	char *copy;

	if (h->n_parts == 0)
		return -1;
	e->parts = malloc(h->n_parts * sizeof(*e->parts));
	e->payload = malloc(payload_len + h->n_parts);
	if (e->parts == NULL || e->payload == NULL)
		return -1;

	copy = e->payload;
	for (size_t i = 0; i < h->n_parts; i++) {
		size_t len = h->bytes[i];

		if (len > payload_len - at)
			return -1;
		memcpy(copy, payload + at, len);
		copy[len] = '\0';
		e->parts[i] = (struct tg_cache_part){copy, len};
		copy += len + 1;
		at += len;
	}
	e->n_parts = h->n_parts;
	return at == payload_len ? 0 : -1;
}

static int
decode_stream(struct tg_cache_entry *e, const struct tg_cache_header *h)
{
	if (h->usage_event < -1 || h->usage_event >= (long long)e->n_parts)
		return -1;
	e->is_stream = 1;
	e->has_usage = h->has_usage;
	e->usage_event = (long)h->usage_event;
	return 0;
}

/* Each part of an Anthropic stream must be "NAME\nDATA". */
static int
decode_named(struct tg_cache_entry *e)
{
	for (size_t i = 0; i < e->n_parts; i++) {
		if (memchr(e->parts[i].data, '\n', e->parts[i].len) == NULL)
			return -1;
	}
	e->is_stream = 1;
	e->named = 1;
	return 0;
}

static int
decode_json(struct tg_cache_entry *e)
{
	if (e->n_parts != 1)
		return -1;
	e->body = e->parts[0].data;
	e->body_len = e->parts[0].len;
	return 0;
}

int
tg_cache_entry_decode(const char *data, size_t len, struct tg_cache_entry *e)
{
	const char *line_end = memchr(data, '\n', len);
	size_t head_len = line_end != NULL ? (size_t)(line_end - data) : 0;
	struct tg_cache_header h;
	int rc = -1;

	memset(e, 0, sizeof(*e));
	e->usage_event = -1;
	if (line_end == NULL || tg_cache_header_read(data, head_len, &h) != 0)
		return -1;

	if (decode_parts(e, &h, line_end + 1, len - head_len - 1) == 0) {
		e->created_ms = h.created_ms;
		e->headers = h.kept;
		tg_headers_init(&h.kept);
		if (h.kind == TG_CACHE_KIND_STREAM)
			rc = decode_stream(e, &h);
		else if (h.kind == TG_CACHE_KIND_EVENTS)
			rc = decode_named(e);
		else if (h.kind == TG_CACHE_KIND_JSON)
			rc = decode_json(e);
	}
	tg_cache_header_free(&h);
	if (rc != 0)
		tg_cache_entry_free(e);
	return rc;
}

void
tg_cache_entry_free(struct tg_cache_entry *e)
{
	free(e->parts);
	free(e->payload);
	tg_headers_free(&e->headers);
	memset(e, 0, sizeof(*e));
	e->usage_event = -1;
}

/* --- replay ---------------------------------------------------------------- */

int
tg_cache_write_event(struct evbuffer *out, const char *data, size_t len)
{
	const char *end = data + len;
	int rc = 0;

	/* A line break inside data would end the field. So each line of the
	 * data goes into a "data:" line of its own, and readers join them
	 * with LF. */
	for (;;) {
		const char *nl = memchr(data, '\n', (size_t)(end - data));
		const char *line_end = nl != NULL ? nl : end;

		rc |= evbuffer_add(out, "data: ", 6);
		rc |= evbuffer_add(out, data, (size_t)(line_end - data));
		rc |= evbuffer_add(out, "\n", 1);
		if (nl == NULL)
			break;
		data = nl + 1;
	}
	rc |= evbuffer_add(out, "\n", 1);
	return rc == 0 ? 0 : -1;
}

static int
write_done(struct evbuffer *out)
{
	return tg_cache_write_event(out, "[DONE]", 6);
}

/* Write the stored chunk of len bytes at data without its top-level
 * "usage": null, when it has one. */
static int
write_without_null_usage(struct evbuffer *out, const char *data, size_t len)
{
	const char *from, *to;
	char *cut;
	int rc;

	if (!tg_null_usage_find(data, len, &from, &to))
		return tg_cache_write_event(out, data, len);
	tg_null_usage_widen(data, data + len, &from, &to);
	cut = malloc(len);
	if (cut == NULL)
		return -1;
	memcpy(cut, data, (size_t)(from - data));
	memcpy(cut + (from - data), to, (size_t)(data + len - to));
	rc = tg_cache_write_event(out, cut, len - (size_t)(to - from));
	free(cut);
	return rc;
}

/* The stored events, without the usage chunk unless the client asked. A
 * stream stored from a client that asked for usage has "usage": null in
 * its other chunks, which a client that did not ask gets without, as from
 * the relay. */
static int
render_stored_stream(const struct tg_cache_entry *e, int want_usage, struct evbuffer *out)
{
	if (want_usage && !e->has_usage)
		return -1;
	for (size_t i = 0; i < e->n_parts; i++) {
		const struct tg_cache_part *part = &e->parts[i];
		int rc;

		if ((long)i == e->usage_event && !want_usage)
			continue;
		if (want_usage || !e->has_usage)
			rc = tg_cache_write_event(out, part->data, part->len);
		else
			rc = write_without_null_usage(out, part->data, part->len);
		if (rc != 0)
			return -1;
	}
	return write_done(out);
}

/* Write the stored events of a named stream, each under its name. The
 * stream ends with its own message_stop or response.completed, since those
 * APIs send no "[DONE]". */
static int
render_named_stream(const struct tg_cache_entry *e, struct evbuffer *out)
{
	for (size_t i = 0; i < e->n_parts; i++) {
		const char *data = e->parts[i].data;
		const char *nl = memchr(data, '\n', e->parts[i].len);
		size_t name_len = (size_t)(nl - data);

		if (evbuffer_add(out, "event: ", 7) != 0 || evbuffer_add(out, data, name_len + 1) != 0 ||
		    tg_cache_write_event(out, nl + 1, e->parts[i].len - name_len - 1) != 0)
			return -1;
	}
	return 0;
}

static int
render_converted_stream(const struct tg_cache_entry *e, int want_usage, struct evbuffer *out)
{
	json_error_t error;
	json_t *body = json_loadb(e->body, e->body_len, 0, &error);
	json_t *chunks = body != NULL ? tg_cache_body_to_chunks(body, want_usage) : NULL;
	json_t *chunk;
	size_t i;
	int rc = chunks != NULL ? 0 : -1;

	json_decref(body);
	json_array_foreach(chunks, i, chunk) {
		char *text = json_dumps(chunk, JSON_COMPACT);

		rc |= text != NULL ? tg_cache_write_event(out, text, strlen(text)) : -1;
		free(text);
	}
	json_decref(chunks);
	return rc == 0 ? write_done(out) : -1;
}

/* A non-streaming client always gets usage, so a stream without it cannot
 * serve one. */
static int
render_converted_body(const struct tg_cache_entry *e, struct evbuffer *out)
{
	json_t *body;
	char *text;
	int rc;

	if (!e->has_usage)
		return -1;
	body = tg_cache_chunks_to_body(e->parts, e->n_parts);
	text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL)
		return -1;
	rc = evbuffer_add(out, text, strlen(text));
	free(text);
	return rc;
}

int
tg_cache_entry_kind_serves(const struct tg_cache_entry *e, int stream)
{
	return stream == e->is_stream;
}

int
tg_cache_entry_render(const struct tg_cache_entry *e, int stream, int want_usage,
                      struct evbuffer *out)
{
	struct evbuffer *staged = evbuffer_new();
	int rc;

	if (staged == NULL)
		return -1;

	/* Render into a buffer of our own, so that a conversion that fails
	 * half way leaves out as it was. */
	if (e->named)
		rc = stream ? render_named_stream(e, staged) : -1;
	else if (stream && e->is_stream)
		rc = render_stored_stream(e, want_usage, staged);
	else if (stream)
		rc = render_converted_stream(e, want_usage, staged);
	else if (e->is_stream)
		rc = render_converted_body(e, staged);
	else
		rc = evbuffer_add(staged, e->body, e->body_len);

	if (rc == 0)
		rc = evbuffer_add_buffer(out, staged);
	evbuffer_free(staged);
	return rc == 0 ? 0 : -1;
}
