/*
 * The stream filters on an OpenAI Responses API stream.
 *
 * The events are read from their trees (filter-responses.h). A delta
 * appends to its text's window, as a chat chunk's delta does, and a held
 * event goes out with its masked texts written into its tree. The .done
 * events and the end of the response repeat whole texts. A repeat ends its
 * window's text, and goes out as that window sent the text (write_tree()).
 * A client thus reads the same masked text in the deltas and in the
 * repeat. A text that a filter blocked never goes out, because the block
 * ends the stream before the event that repeats it. A whole text
 * without a window before it (no deltas came) starts its window, and is
 * scanned as complete.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "errors.h"
#include "filter-stream-int.h"

int
tg_stream_read_responses(struct tg_filter_stream *s, struct tg_stream_event *in)
{
	json_t *tree = tg_stream_event_json(in);
	struct tg_responses_event *r = &s->responses_read;

	if (tree == NULL) {
		s->unreadable = NOT_AN_OBJECT;
		return -1;
	}
	if (tg_responses_read(r, tree) != 0)
		return -1;
	if (r->bad_index) {
		s->unreadable = BAD_INDEX;
		return -1;
	}
	if (r->unread == NULL)
		return 0;
	snprintf(s->unread_type, sizeof(s->unread_type), "%s", r->unread);
	return 1;
}

static int
add_repeat(struct tg_filter_stream *s, struct held_event *ev, json_t *string, struct window *w)
{
	struct repeat *p = realloc(ev->repeats, (ev->n_repeats + 1) * sizeof(*p));

	if (p == NULL)
		return -1;
	ev->repeats = p;
	ev->repeats[ev->n_repeats++] = (struct repeat){string, (size_t)(w - s->windows)};
	w->finished = 1;
	w->dirty = 1;
	return 0;
}

/*
 * Add text t of ev to its window: a repeat of the text of a window that
 * had text, or a piece. A text of its own (TG_CHUNK_VALUE) gets a window
 * of its own, complete.
 * NOTE: a repeat is taken to be the text its deltas gave when its length
 * matches theirs, and goes out as the deltas did. Its own bytes are not
 * compared, which would take a copy of every text as it came.
 */
static int
add_responses_text(struct tg_filter_stream *s, struct held_event *ev,
                   const struct tg_responses_text *t)
{
	size_t len = json_string_length(t->string);
	int value = t->kind == TG_CHUNK_VALUE;
	long part = value ? s->values++ : t->part;
	struct window *w = tg_window_lookup(s, t->item, t->kind, part);

	if (w != NULL && t->role == TG_RESPONSES_WHOLE && w->received > 0) {
		if (len != w->received) {
			s->unreadable = REPEAT_DIFFERS;
			return -1;
		}
		return add_repeat(s, ev, t->string, w);
	}
	if (w == NULL)
		w = tg_window_find(s, t->item, t->kind, part);
	if (w == NULL)
		return -1;
	if (w->finished && len > 0) {
		s->unreadable = TEXT_AFTER_FINISH;
		return -1;
	}
	if (tg_window_add_piece(w, ev, json_string_value(t->string), len, 0, 0) != 0)
		return -1;
	w->pieces[w->n_pieces - 1].string = t->string;
	w->received += len;
	w->keeps_sent = !value;
	w->finished |= value || t->role == TG_RESPONSES_WHOLE;
	w->dirty = 1;
	if (!value)
		s->kept_bytes += len;
	return 0;
}

/* Finish every window of choice, or every window when choice is -1. */
static void
finish_windows(struct tg_filter_stream *s, long choice)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		struct window *w = &s->windows[k];

		if (choice == -1 || w->choice == choice) {
			w->finished = 1;
			w->dirty = 1;
		}
	}
}

/* The texts that later events repeat are kept as they went out, so they
 * are bounded as a body that is not streamed is. */
int
tg_stream_add_responses_texts(struct tg_filter_stream *s, struct held_event *ev)
{
	const struct tg_responses_event *r = &s->responses_read;

	for (size_t i = 0; i < r->n_texts; i++) {
		if (add_responses_text(s, ev, &r->texts[i]) != 0)
			return -1;
	}
	if (s->kept_bytes > s->max_held) {
		s->unreadable = RESPONSES_TOO_LONG;
		return -1;
	}
	if (r->ends_item >= 0)
		finish_windows(s, r->ends_item);
	if (r->ends_response)
		finish_windows(s, -1);
	return 0;
}

static int
append_sent(struct window *w, const char *text, size_t len)
{
	if (len == 0)
		return 0;       /* w->sent may still be NULL, which memcpy may not take */
	if (w->sent_len + len > w->sent_cap) {
		size_t cap = w->sent_cap ? w->sent_cap : 256;
		char *p;

		while (cap < w->sent_len + len)
			cap *= 2;
		p = realloc(w->sent, cap);
		if (p == NULL)
			return -1;
		w->sent = p;
		w->sent_cap = cap;
	}
	memcpy(w->sent + w->sent_len, text, len);
	w->sent_len += len;
	return 0;
}

/* Empty each "logprobs" array in value: its tokens would repeat the
 * text that a mask changed. The API sends an empty one when the request
 * did not ask for logprobs. */
static void
empty_logprobs(json_t *value)
{
	const char *key;
	json_t *member;
	size_t i;

	if (json_is_array(value)) {
		json_array_foreach(value, i, member)
			empty_logprobs(member);
		return;
	}
	json_object_foreach(value, key, member) {
		if (strcmp(key, "logprobs") == 0 && json_array_size(member) > 0)
			json_array_clear(member);
		else
			empty_logprobs(member);
	}
}

/* Write the pieces of ev, the first of their windows, into its tree when a
 * mask changed one, and keep them as their windows sent them. */
static int
write_pieces(struct tg_filter_stream *s, struct held_event *ev)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		struct window *w = &s->windows[k];

		for (size_t i = 0; i < w->n_pieces && w->pieces[i].event == ev; i++) {
			const struct piece *p = &w->pieces[i];
			const char *text = w->text + p->start;
			size_t len = p->end - p->start;

			if (ev->changed && json_string_setn(p->string, text, len) != 0)
				return -1;
			if (w->keeps_sent && append_sent(w, text, len) != 0)
				return -1;
		}
	}
	return 0;
}

/* Write each repeat of ev as its window sent the text. The window's
 * events went out before ev, so the text is whole. */
static int
write_repeats(struct tg_filter_stream *s, struct held_event *ev)
{
	for (size_t i = 0; i < ev->n_repeats; i++) {
		const struct window *w = &s->windows[ev->repeats[i].window];
		json_t *string = ev->repeats[i].string;

		if (json_string_length(string) == w->sent_len &&
		    memcmp(json_string_value(string), w->sent, w->sent_len) == 0)
			continue;
		if (json_string_setn(string, w->sent, w->sent_len) != 0)
			return -1;
		ev->changed = 1;
	}
	return 0;
}

int
tg_stream_write_tree(struct tg_filter_stream *s, struct held_event *ev)
{
	json_t *number = json_object_get(ev->json, "sequence_number");
	json_int_t sequence = json_integer_value(number);

	if (write_pieces(s, ev) != 0 || write_repeats(s, ev) != 0)
		return -1;

	if (json_is_integer(number) && sequence >= 0 && sequence < LLONG_MAX)
		s->next_sequence = sequence + 1;
	else
		s->next_sequence = s->n_emitted + 1;
	if (ev->changed)
		empty_logprobs(ev->json);
	return 0;
}

/* The filters that mask or block record a block they could not check, so
 * that the access log and the metrics show why the stream ended. */
static int
log_unread(struct tg_filter_stream *s)
{
	for (size_t i = 0; i < s->n_filters; i++) {
		if (s->filters[i]->action != TG_ACTION_FLAG &&
		    tg_filter_log_add(s->log, s->filters[i], NULL, TG_ACTION_BLOCK,
		                      TG_SIDE_RESPONSE, 1) != 0)
			return -1;
	}
	return 0;
}

/*
 * End the stream with the Responses API's "error" event ("type", "code",
 * "message", "param", "sequence_number"), which its SDKs raise as a failed
 * response. No response.completed follows, so the response does not read
 * as complete.
 */
enum tg_stream_verdict
tg_stream_end_responses(struct tg_filter_stream *s, int unread)
{
	/* The event's data starts after its first line and "data: ", and ends
	 * before the blank line. */
	static const size_t head = sizeof("event: error\ndata: ") - 1;
	const char *message = unread ? "the response was blocked: it has an event that the "
	                               "gateway's content filters cannot screen"
	                             : "the response was blocked by a content filter";
	struct evbuffer *out = evbuffer_new();
	struct tg_reply_digest digest;
	const char *event;
	size_t len;
	int rc = -1;

	if (unread) {
		s->unreadable = RESPONSES_UNREAD;
		if (log_unread(s) != 0)
			goto out;
	}
	tg_stream_drop_held(s);
	if (out == NULL ||
	    tg_error_responses_event(out, TG_E_CONTENT_FILTER, message, s->next_sequence) != 0)
		goto out;
	len = evbuffer_get_length(out);
	event = (const char *)evbuffer_pullup(out, -1);
	tg_reply_digest(&digest, event + head, len - head - 2);
	rc = tg_stream_emit_end(s, TG_EVENT_ERROR, event, len, &digest);
out:
	if (out != NULL)
		evbuffer_free(out);
	return rc == 0 ? TG_STREAM_BLOCK : TG_STREAM_ERROR;
}
