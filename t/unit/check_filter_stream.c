/*
 * Unit tests for the sliding window over streamed responses: matches split
 * across events at every byte offset, byte-identical untouched events,
 * blocking mid-stream, the hold bound, tool call arguments, and the
 * hold_timeout timer, run on an event base of the test's own.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "filter-helpers.h"
#include "filter-stream.h"
#include "filter.h"
#include "relay.h"

/* A chat.completion.chunk event carrying content, as raw SSE bytes. */
static char *
content_event(const char *content, const char *finish_reason)
{
	json_t *chunk = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:{s:s%}, s:s?}]}",
	                          "id", "chatcmpl-1", "object", "chat.completion.chunk",
	                          "created", 1, "model", "m", "choices", "index", 0,
	                          "delta", "content", content, strlen(content),
	                          "finish_reason", finish_reason);
	char *text = json_dumps(chunk, JSON_COMPACT);
	char *event;

	ck_assert_int_gt(asprintf(&event, "data: %s\n\n", text), 0);
	free(text);
	json_decref(chunk);
	return event;
}

/* The emit callback: the events go to the evbuffer in arg. */
static void
collect(void *arg, struct tg_stream_event *ev)
{
	evbuffer_add_buffer(arg, ev->raw);
}

/* Feed one raw event the way the relay hands it over: parsed from its one
 * "data: " line, after an "event: " line or not, classified as done
 * ([DONE] or Anthropic's message_stop) or not. The output goes to out,
 * which must be the evbuffer the stream was created with. */
static enum tg_stream_verdict
feed(struct tg_filter_stream *s, const char *event, struct evbuffer *out)
{
	size_t len = strlen(event);
	const char *data = strstr(event, "data: ") + 6;
	size_t data_len = len - (size_t)(data - event) - 2;
	struct tg_stream_event ev = {.kind = TG_EVENT_CONTENT, .raw = evbuffer_new()};
	enum tg_stream_verdict v;

	(void)out;
	ck_assert(strncmp(event, "data: ", 6) == 0 || strncmp(event, "event: ", 7) == 0);
	evbuffer_add(ev.raw, event, len);
	if (data_len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		ev.kind = TG_EVENT_DONE;
	} else if (tg_reply_digest(&ev.digest, data, data_len) == 0 && ev.digest.object) {
		ev.data = data;
		ev.data_len = data_len;
		if (ev.digest.type == TG_REPLY_TYPE_MESSAGE_STOP)
			ev.kind = TG_EVENT_DONE;
	}
	v = tg_filter_stream_event(s, &ev);
	json_decref(ev.json);
	evbuffer_free(ev.raw);
	return v;
}

static char *
take(struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out);
	char *text = malloc(len + 1);

	evbuffer_remove(out, text, len);
	text[len] = '\0';
	return text;
}

/* The content of every chunk in an SSE text, concatenated. */
static char *
joined_content(const char *sse)
{
	char *out = calloc(1, strlen(sse) + 1);
	const char *p = sse;

	while ((p = strstr(p, "data: ")) != NULL) {
		const char *end = strstr(p, "\n\n");
		json_t *chunk = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
		json_t *content = json_object_get(json_object_get(json_array_get(
		                      json_object_get(chunk, "choices"), 0), "delta"), "content");

		if (json_is_string(content))
			strcat(out, json_string_value(content));
		json_decref(chunk);
		p = end;
	}
	return out;
}

/* A stream of filter f alone whose held events may take max_held bytes. */
static struct tg_filter_stream *
new_bounded_stream(struct tg_filter *f, struct tg_filter_log *log, const struct tg_filter **slot,
                   struct tg_filter_chain *chain, struct evbuffer *out, size_t max_held)
{
	struct tg_filter_stream *s;
	int none;

	slot[0] = f;
	chain->n = 1;
	chain->filters = slot;
	s = tg_filter_stream_new(chain, log, NULL, collect, out, max_held, &none);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(none, 0);
	return s;
}

static struct tg_filter_stream *
new_stream(struct tg_filter *f, struct tg_filter_log *log, const struct tg_filter **slot,
           struct tg_filter_chain *chain, struct evbuffer *out)
{
	return new_bounded_stream(f, log, slot, chain, out, SIZE_MAX);
}

static const char *const card_rules[] = {"preset:credit_card", "preset:phone", "ticket=TCK-[0-9]{6}", NULL};

static const char whole_text[] = "Your card 4111 1111 1111 1111 and ticket TCK-123456 are noted.";
static const char masked_text[] =
	"Your card [REDACTED:credit_card] and ticket [REDACTED:ticket] are noted.";

/* Split whole_text into two content events at every byte offset; the
 * client must never see the card digits, and the text must come out
 * masked exactly once. */
START_TEST(split_match_masked_at_every_offset)
{
	size_t cut = (size_t)_i;
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char first[sizeof(whole_text)], second[sizeof(whole_text)];
	char *e1, *e2, *e3, *sent, *content;

	memcpy(first, whole_text, cut);
	first[cut] = '\0';
	strcpy(second, whole_text + cut);
	e1 = content_event(first, NULL);
	e2 = content_event(second, NULL);
	e3 = content_event("", "stop");

	ck_assert_int_eq(feed(s, e1, out), TG_STREAM_OK);
	/* Nothing of the card may have left after the first event. */
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "4111 1111 1111 1111"));
	/* What went out is the start of the masked text. */
	content = joined_content(sent);
	ck_assert_msg(strstr(masked_text, content) == masked_text, "sent \"%s\"", content);
	free(content);
	evbuffer_add(out, sent, strlen(sent));
	free(sent);

	ck_assert_int_eq(feed(s, e2, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e3, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);

	sent = take(out);
	content = joined_content(sent);
	ck_assert_str_eq(content, masked_text);
	ck_assert_ptr_nonnull(strstr(sent, "data: [DONE]\n\n"));
	ck_assert_uint_eq(log.n, 2);

	free(content);
	free(sent);
	free(e1);
	free(e2);
	free(e3);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* One character per event: the match spans many events. */
START_TEST(match_over_many_events)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *sent, *content;

	for (size_t i = 0; whole_text[i] != '\0'; i++) {
		char piece[2] = {whole_text[i], '\0'};
		char *e = content_event(piece, NULL);

		ck_assert_int_eq(feed(s, e, out), TG_STREAM_OK);
		free(e);
	}
	ck_assert_int_eq(tg_filter_stream_finish(s), TG_STREAM_OK);
	sent = take(out);
	content = joined_content(sent);
	ck_assert_str_eq(content, masked_text);
	free(content);
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Events around the match go out byte for byte; only the events that
 * carry matched text are written again. */
START_TEST(untouched_events_byte_identical)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *role = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":"
	                   "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
	/* Spacing the gateway would not produce, so a rewrite shows. */
	const char *hello = "data: {\"choices\": [ {\"index\": 0, \"delta\": {\"content\": \"Hello. \"}} ]}\n\n";
	const char *card1 = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Card 4111 1111\"}}]}\n\n";
	const char *card2 = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \" 1111 1111.\"}}]}\n\n";
	const char *bye = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \" Bye.\"}}]}\n\n";
	const char *stop = "data: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n";
	char *sent;

	ck_assert_int_eq(feed(s, role, out), TG_STREAM_OK);
	sent = take(out);
	ck_assert_str_eq(sent, role);
	free(sent);
	ck_assert_int_eq(feed(s, hello, out), TG_STREAM_OK);
	sent = take(out);
	ck_assert_str_eq(sent, hello);
	free(sent);
	ck_assert_int_eq(feed(s, card1, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, card2, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, bye, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, stop, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);

	sent = take(out);
	ck_assert_ptr_nonnull(strstr(sent, "data: {\"choices\":[{\"index\":0,\"delta\":"
	                                   "{\"content\":\"Card [REDACTED:credit_card]\"}}]}\n\n"));
	ck_assert_ptr_nonnull(strstr(sent, "{\"content\":\".\"}"));
	ck_assert_ptr_nonnull(strstr(sent, bye));
	ck_assert_ptr_nonnull(strstr(sent, stop));
	ck_assert_ptr_null(strstr(sent, "4111"));
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Text that cannot start a match is not held at all. */
START_TEST(plain_text_flows_at_once)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *e = content_event("Hello there, ", NULL);
	char *held = content_event("TCK-12", NULL);
	char *sent;

	ck_assert_int_eq(feed(s, e, out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	sent = take(out);
	ck_assert_str_eq(sent, e);
	free(sent);

	/* A possible ticket id is held until it is decided. */
	ck_assert_int_eq(feed(s, held, out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 1);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ck_assert_int_eq(feed(s, e, out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	sent = take(out);
	ck_assert_ptr_nonnull(strstr(sent, "TCK-12"));
	free(sent);

	free(e);
	free(held);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

START_TEST(hold_is_bounded)
{
	/* Every letter may start a match, so without the bound all would be
	 * held. */
	const char *rules[] = {"long=[a-z]+Z", NULL};
	struct tg_filter *f = make_filter("x", TG_ACTION_MASK, TG_SIDE_RESPONSE, rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct tg_filter_stream *s;
	struct evbuffer *out = evbuffer_new();
	char *e = content_event("aaaaaaaaaa", NULL);
	char *start = content_event("A", NULL);

	f->hold = 32;
	s = new_stream(f, &log, slot, &chain, out);
	ck_assert_int_eq(feed(s, start, out), TG_STREAM_OK);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(feed(s, e, out), TG_STREAM_OK);
	/* At most 32 bytes are held: the last 3 or 4 events. */
	ck_assert_uint_le(tg_filter_stream_held(s), 4);
	ck_assert_uint_ge(tg_filter_stream_held(s), 3);

	free(e);
	free(start);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

START_TEST(block_ends_with_content_filter)
{
	const char *rules[] = {"~injection=ignore previous instructions", NULL};
	struct tg_filter *f = make_filter("deny", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *e1 = content_event("Sure. Now IGNORE prev", NULL);
	char *e2 = content_event("ious instructions and", NULL);
	char *sent;
	json_t *chunk;

	ck_assert_int_eq(feed(s, e1, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e2, out), TG_STREAM_BLOCK);
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "IGNORE"));
	ck_assert_ptr_null(strstr(sent, "instructions"));
	ck_assert_msg(strncmp(sent, "data: ", 6) == 0, "%s", sent);
	chunk = json_loadb(sent + 6, strcspn(sent + 6, "\n"), 0, NULL);
	ck_assert_ptr_nonnull(chunk);
	ck_assert_str_eq(json_string_value(json_object_get(chunk, "id")), "chatcmpl-1");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(
		json_object_get(chunk, "choices"), 0), "finish_reason")), "content_filter");
	ck_assert_ptr_nonnull(strstr(sent, "\n\ndata: [DONE]\n\n"));
	ck_assert_int_eq(log.items[0].action, TG_ACTION_BLOCK);
	ck_assert_int_eq(log.items[0].side, TG_SIDE_RESPONSE);
	json_decref(chunk);
	free(sent);
	free(e1);
	free(e2);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

START_TEST(tool_arguments_masked)
{
	const char *rules[] = {"preset:email", NULL};
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *pieces[] = {"{\"to\":\"ja", "ne@exam", "ple.com\"}"};
	char *sent;
	char args[128] = "";

	for (size_t i = 0; i < 3; i++) {
		json_t *chunk = json_pack("{s:[{s:i, s:{s:[{s:i, s:{s:s}}]}}]}", "choices", "index", 0,
		                          "delta", "tool_calls", "index", 0, "function",
		                          "arguments", pieces[i]);
		char *text = json_dumps(chunk, JSON_COMPACT);
		char *event;

		ck_assert_int_gt(asprintf(&event, "data: %s\n\n", text), 0);
		ck_assert_int_eq(feed(s, event, out), TG_STREAM_OK);
		free(event);
		free(text);
		json_decref(chunk);
	}
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	sent = take(out);
	for (const char *p = sent; (p = strstr(p, "data: {")) != NULL; p++) {
		json_t *chunk = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, NULL);
		json_t *a = json_object_get(json_object_get(json_array_get(json_object_get(
		                json_object_get(json_array_get(json_object_get(chunk, "choices"), 0),
		                "delta"), "tool_calls"), 0), "function"), "arguments");

		strcat(args, json_string_value(a));
		json_decref(chunk);
	}
	ck_assert_str_eq(args, "{\"to\":\"[REDACTED:email]\"}");
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

START_TEST(flag_passes_unchanged)
{
	struct tg_filter *f = make_filter("audit", TG_ACTION_FLAG, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *e1 = content_event("id TCK-12", NULL);
	char *e2 = content_event("3456 ok", "stop");
	char *sent;

	/* A flag changes no text, so a possible match is not held. */
	ck_assert_int_eq(feed(s, e1, out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), strlen(e1));
	ck_assert_int_eq(feed(s, e2, out), TG_STREAM_OK);
	sent = take(out);
	ck_assert_uint_eq(strlen(sent), strlen(e1) + strlen(e2));
	ck_assert_int_eq(strncmp(sent, e1, strlen(e1)), 0);
	ck_assert_str_eq(sent + strlen(e1), e2);
	ck_assert_uint_eq(log.n, 1);
	ck_assert_int_eq(log.items[0].action, TG_ACTION_FLAG);
	free(sent);
	free(e1);
	free(e2);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* An event whose match is masked (a longer replacement) leaves at once
 * when nothing after the match could start another. */
START_TEST(masked_event_not_held)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *e = content_event("ticket TCK-123456 noted.", NULL);
	char *sent, *content;

	ck_assert_int_eq(feed(s, e, out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	sent = take(out);
	content = joined_content(sent);
	ck_assert_str_eq(content, "ticket [REDACTED:ticket] noted.");

	free(content);
	free(sent);
	free(e);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* --- reading events without a tree ---------------------------------------- */

static const char *const mail_rules[] = {"preset:email", NULL};

/* Feed data as the relay hands over an event that carried it: has_data
 * set, and data kept only when the digest finds a JSON object. With
 * tapped, the stream reads the texts in the digest's pass, as the relay
 * has it do (tg_filter_response_tap). */
static enum tg_stream_verdict
feed_data(struct tg_filter_stream *s, const char *data, int tapped)
{
	struct tg_stream_event ev = {.kind = TG_EVENT_CONTENT, .raw = evbuffer_new(),
	                             .has_data = 1, .tapped = tapped};
	struct tg_reply_tap tap;
	yajl_handle *handle = tapped ? tg_filter_stream_tap(s, data, strlen(data), &tap) : NULL;
	int rc = tg_reply_digest_tap(&ev.digest, NULL, data, strlen(data),
	                             tapped ? &tap : NULL, handle);
	enum tg_stream_verdict v;

	if (tapped)
		tg_filter_stream_tapped(s, rc);
	evbuffer_add_printf(ev.raw, "data: %s\n\n", data);
	if (rc == 0 && ev.digest.object) {
		ev.data = data;
		ev.data_len = strlen(data);
	}
	v = tg_filter_stream_event(s, &ev);
	json_decref(ev.json);
	evbuffer_free(ev.raw);
	return v;
}

/* Counts of the events the emit callback received. */
struct seen {
	struct evbuffer *out;
	size_t events;
	size_t with_tree;       /* came with a tree already built */
	size_t tree_matches;    /* the tree a feature builds is the data's */
};

static void
collect_seen(void *arg, struct tg_stream_event *ev)
{
	struct seen *seen = arg;
	size_t len = evbuffer_get_length(ev->raw);
	const char *raw = (const char *)evbuffer_pullup(ev->raw, -1);
	json_t *json, *sent;

	seen->events++;
	seen->with_tree += ev->json != NULL;
	json = tg_stream_event_json(ev);
	sent = json_loadb(raw + 6, len - 8, 0, NULL);
	seen->tree_matches += json != NULL && json_equal(json, sent);
	json_decref(sent);
	evbuffer_add_buffer(seen->out, ev->raw);
}

/* An event no filter changes goes out without a tree, and a feature after
 * the filters that wants one builds it from the event's data. */
START_TEST(unchanged_event_without_tree)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1] = {f};
	struct tg_filter_chain chain = {1, slot};
	struct tg_filter_log log = {0};
	struct seen seen = {.out = evbuffer_new()};
	int none;
	struct tg_filter_stream *s = tg_filter_stream_new(&chain, &log, NULL, collect_seen, &seen,
	                                                  SIZE_MAX, &none);
	const char *later = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}";

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(feed_data(s, "{\"id\":\"c\",\"choices\":[{\"index\":0,"
	                              "\"delta\":{\"content\":\"Hello\"}}]}", 0), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, later, 0), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, later, 0), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, "{\"choices\":[{\"index\":0,\"delta\":{},"
	                              "\"finish_reason\":\"stop\"}]}", 0), TG_STREAM_OK);
	ck_assert_uint_eq(seen.events, 4);
	/* The first chunk's tree is built once, for the end of a block. */
	ck_assert_uint_le(seen.with_tree, 1);
	ck_assert_uint_eq(seen.tree_matches, 4);

	tg_filter_stream_free(s);
	evbuffer_free(seen.out);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* A masked text is written where its string was, between members and
 * texts with escapes, and the event goes out as the tree jansson would
 * write with the masked text set. */
START_TEST(mask_among_escapes)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *data = "{\"id\":\"q\\\"1\\\\\", \"choices\": [{\"delta\": {\"role\": \"a\\u00e9\","
	                   "\"content\": \"mail \\\"jane@example.com\\\"\\n\\u00e9\"}, \"index\": 0,"
	                   "\"text\": \"\\t\\\"\"}], \"note\": \"b\\\\\\\"\\n\"}";
	json_t *expected = json_loads(data, 0, NULL);
	json_t *delta = json_object_get(json_array_get(json_object_get(expected, "choices"), 0),
	                                "delta");
	char *want, *text, *sent;

	json_object_set_new(delta, "content", json_string("mail \"[REDACTED:email]\"\n\xc3\xa9"));
	text = json_dumps(expected, JSON_COMPACT);
	ck_assert_int_gt(asprintf(&want, "data: %s\n\n", text), 0);

	ck_assert_int_eq(feed_data(s, data, 0), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	sent = take(out);
	ck_assert_ptr_nonnull(strstr(sent, want));
	ck_assert_ptr_eq(strstr(sent, want), sent);

	free(sent);
	free(want);
	free(text);
	json_decref(expected);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* The content of choice index c in every chunk of an SSE text. */
static char *
choice_content(const char *sse, long c, const char *kind)
{
	char *out = calloc(1, strlen(sse) + 1);
	const char *p = sse;

	while ((p = strstr(p, "data: {")) != NULL) {
		const char *end = strstr(p, "\n\n");
		json_t *chunk = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
		size_t i;
		json_t *choice;

		json_array_foreach(json_object_get(chunk, "choices"), i, choice) {
			json_t *text = json_object_get(json_object_get(choice, "delta"), kind);

			if (json_integer_value(json_object_get(choice, "index")) == c &&
			    json_is_string(text))
				strcat(out, json_string_value(text));
		}
		json_decref(chunk);
		p = end;
	}
	return out;
}

/* Two choices in each event, their index after their delta: an address
 * split over events in one choice is masked there alone, and the other
 * choice's text comes through whole. */
START_TEST(multi_choice_events)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *events[] = {
		"{\"choices\":[{\"delta\":{\"content\":\"Ask ja\"},\"index\":1},"
		"{\"delta\":{\"content\":\"One, \"},\"index\":0}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"two, \"},\"index\":0},"
		"{\"delta\":{\"content\":\"ne@exa\"},\"index\":1}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"mple.com now\"},\"index\":1},"
		"{\"delta\":{\"content\":\"three.\"},\"index\":0,\"finish_reason\":\"stop\"}]}",
		"{\"choices\":[{\"delta\":{},\"index\":1,\"finish_reason\":\"stop\"}]}",
	};
	char *sent, *first, *second;

	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		ck_assert_int_eq(feed_data(s, events[i], 0), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	sent = take(out);
	first = choice_content(sent, 0, "content");
	second = choice_content(sent, 1, "content");
	ck_assert_str_eq(first, "One, two, three.");
	ck_assert_str_eq(second, "Ask [REDACTED:email] now");

	free(first);
	free(second);
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* The arguments of one tool call, out of two in each event, with the
 * call's index after its function. */
START_TEST(tool_calls_share_events)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *events[] = {
		"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
		"{\"function\":{\"arguments\":\"{\\\"to\\\":\\\"ja\"},\"index\":1},"
		"{\"function\":{\"arguments\":\"{\\\"n\\\":\"},\"index\":0}]}}]}",
		"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
		"{\"function\":{\"arguments\":\"1}\"},\"index\":0},"
		"{\"function\":{\"arguments\":\"ne@example.com\\\"}\"},\"index\":1}]}}]}",
	};
	char args[2][128] = {"", ""};
	char *sent;

	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		ck_assert_int_eq(feed_data(s, events[i], 0), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	sent = take(out);
	for (const char *p = sent; (p = strstr(p, "data: {")) != NULL; p++) {
		json_t *chunk = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, NULL);
		json_t *calls = json_object_get(json_object_get(json_array_get(
		                    json_object_get(chunk, "choices"), 0), "delta"), "tool_calls");
		size_t i;
		json_t *call;

		json_array_foreach(calls, i, call) {
			json_int_t k = json_integer_value(json_object_get(call, "index"));
			json_t *a = json_object_get(json_object_get(call, "function"), "arguments");

			ck_assert(k == 0 || k == 1);
			strcat(args[k], json_string_value(a));
		}
		json_decref(chunk);
	}
	ck_assert_str_eq(args[0], "{\"n\":1}");
	ck_assert_str_eq(args[1], "{\"to\":\"[REDACTED:email]\"}");

	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Rules for the values of arguments: one anchored, one not. */
static const char *const value_rules[] = {"tok=^token$", "preset:email", NULL};

/* Feed the arguments args of one tool call in events: the first cut
 * bytes, then pieces of step bytes (0: the rest in one), then [DONE].
 * Returns the verdict of the first event that was not OK, or OK; *sent
 * gets what went out, *early whether anything went out before the last
 * piece. */
static enum tg_stream_verdict
feed_arguments(struct tg_filter *f, struct tg_filter_log *log, const char *args, size_t cut,
               size_t step, char **sent, int *early)
{
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, log, slot, &chain, out);
	enum tg_stream_verdict v = TG_STREAM_OK;
	size_t len = strlen(args);

	*early = 0;
	for (size_t from = 0, to = cut; from < len && v == TG_STREAM_OK;) {
		json_t *piece = json_stringn(args + from, to - from);
		json_t *chunk = json_pack("{s:[{s:i, s:{s:[{s:i, s:{s:o}}]}}]}", "choices", "index", 0,
		                          "delta", "tool_calls", "index", 0, "function",
		                          "arguments", piece);
		char *data = json_dumps(chunk, JSON_COMPACT);

		if (to == len)
			*early = evbuffer_get_length(out) > 0;
		v = feed_data(s, data, 0);
		free(data);
		json_decref(chunk);
		from = to;
		to = step == 0 || len - to < step ? len : to + step;
	}
	if (v == TG_STREAM_OK)
		v = feed(s, "data: [DONE]\n\n", out);
	*sent = take(out);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	return v;
}

/* The arguments in the chunks of an SSE text, joined. */
static void
joined_arguments(const char *sse, char *args)
{
	args[0] = '\0';
	for (const char *p = sse; (p = strstr(p, "data: {")) != NULL; p++) {
		json_t *chunk = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, NULL);
		json_t *a = json_object_get(json_object_get(json_array_get(json_object_get(
		                json_object_get(json_array_get(json_object_get(chunk, "choices"), 0),
		                "delta"), "tool_calls"), 0), "function"), "arguments");

		if (json_is_string(a))
			strcat(args, json_string_value(a));
		json_decref(chunk);
	}
}

/* Each string value of streamed arguments is a text of its own: an
 * anchored rule matches one whole, and a mask rewrites it in place, once,
 * wherever the events cut the text. */
START_TEST(argument_value_masked_at_every_cut)
{
	const char *args = "{\"a\":\"token\",\"b\":[\"x token\",\"mail jane@example.com\"]}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, value_rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char joined[256];
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 0, &sent, &early), TG_STREAM_OK);
		joined_arguments(sent, joined);
		ck_assert_msg(strcmp(joined, "{\"a\":\"[REDACTED:tok]\",\"b\":[\"x token\","
		                     "\"mail [REDACTED:email]\"]}") == 0, "cut %zu: %s", cut, joined);
		ck_assert_uint_eq(log.n, 2);
		ck_assert_uint_eq(log.counts[0], 1);
		ck_assert_uint_eq(log.counts[1], 1);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* Rules for numbers in arguments: one anchored, so that only the scan of
 * a value matches it. */
static const char *const number_rules[] = {"acct=^[0-9]{6}$", NULL};

/* Arguments with a value that a block filter of the rules matches. */
static const struct {
	const char *args;
	const char *const *rules;
	const char *value;
} blocked_values[] = {
	{"{\"a\":\"token\"}", value_rules, "token"},
	{"{\"acct\":123456}", number_rules, "123456"},
};

/* A block filter ends the stream before the value, a string or a number,
 * goes out. */
START_TEST(argument_value_blocked_at_every_cut)
{
	const char *args = blocked_values[_i].args;
	struct tg_filter *f = make_filter("deny", TG_ACTION_BLOCK, TG_SIDE_RESPONSE,
	                                  blocked_values[_i].rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 0, &sent, &early), TG_STREAM_BLOCK);
		ck_assert_msg(strstr(sent, blocked_values[_i].value) == NULL, "cut %zu: %s", cut, sent);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* A number is a value too: an anchored rule matches it whole, and a mask
 * writes it again as a JSON string, so the arguments stay JSON wherever
 * the events cut them. */
START_TEST(argument_number_masked_at_every_cut)
{
	const char *args = "{\"acct\":123456,\"list\":[1,654321],\"n\":1234567}";
	const char *want = "{\"acct\":\"[REDACTED:acct]\",\"list\":[1,\"[REDACTED:acct]\"],"
	                   "\"n\":1234567}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, number_rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		json_t *parsed;
		char joined[256];
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 3, &sent, &early), TG_STREAM_OK);
		joined_arguments(sent, joined);
		ck_assert_msg(strcmp(joined, want) == 0, "cut %zu: %s", cut, joined);
		parsed = json_loads(joined, 0, NULL);
		ck_assert_ptr_nonnull(parsed);
		ck_assert_uint_eq(log.n, 1);
		ck_assert_uint_eq(log.counts[0], 2);
		json_decref(parsed);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* Arguments with a card number, and the same masked: a number with a
 * match is written again as a string, one inside a string or a key is
 * masked in place. */
static const struct {
	const char *args, *masked;
} card_numbers[] = {
	{"{\"card\":4111111111111111,\"to\":\"x\"}",
	 "{\"card\":\"[REDACTED:credit_card]\",\"to\":\"x\"}"},
	{"{\"s\":\"4111111111111111\",\"n\":4111111111111111}",
	 "{\"s\":\"[REDACTED:credit_card]\",\"n\":\"[REDACTED:credit_card]\"}"},
	{"{\"4111111111111111\":1,\"a\":[5,4111111111111111]}",
	 "{\"[REDACTED:credit_card]\":1,\"a\":[5,\"[REDACTED:credit_card]\"]}"},
	{"{\"to\":\"a\\nb\",\"card\":4111111111111111}",
	 "{\"to\":\"a\\nb\",\"card\":\"[REDACTED:credit_card]\"}"},
};

/* The scan of the whole text finds a card number outside quotes before
 * the decoder reads it. The number still comes out as a JSON string,
 * wherever the events cut the text. */
START_TEST(card_number_quoted_at_every_cut)
{
	static const char *const rules[] = {"preset:credit_card", NULL};
	const char *args = card_numbers[_i].args;
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, rules);

	for (size_t step = 0; step < 8; step += 3) {
		for (size_t cut = 1; cut < strlen(args); cut++) {
			struct tg_filter_log log = {0};
			json_t *parsed;
			char joined[256];
			char *sent;
			int early;

			ck_assert_int_eq(feed_arguments(f, &log, args, cut, step, &sent, &early),
			                 TG_STREAM_OK);
			joined_arguments(sent, joined);
			ck_assert_msg(strcmp(joined, card_numbers[_i].masked) == 0, "cut %zu step %zu: %s",
			              cut, step, joined);
			parsed = json_loads(joined, 0, NULL);
			ck_assert_ptr_nonnull(parsed);
			json_decref(parsed);
			free(sent);
			tg_filter_log_free(&log);
		}
	}
	destroy_filter(f);
}
END_TEST

/* A number the scan of the whole text masked leaves the arguments JSON,
 * so the decoder reads on, and a match that only a decoded string after
 * it shows still ends the stream. */
START_TEST(decoded_match_after_card_blocks)
{
	static const char *const rules[] = {"preset:credit_card", "preset:email", NULL};
	const char *args = "{\"card\":4111111111111111,\"to\":\"a\\u0040b.com\"}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char *sent;
		int early;

		ck_assert_msg(feed_arguments(f, &log, args, cut, 3, &sent, &early) == TG_STREAM_BLOCK,
		              "cut %zu: %s", cut, sent);
		ck_assert_ptr_null(strstr(sent, "4111"));
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* A flag filter records a match once, though the scan of the whole text
 * and the scan of the value both find it. The order of the two rules
 * depends on where the events cut the text. */
START_TEST(argument_value_flagged_once)
{
	const char *args = "{\"a\":\"token\",\"to\":\"jane@example.com\"}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_FLAG, TG_SIDE_RESPONSE, value_rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 0, &sent, &early), TG_STREAM_OK);
		ck_assert_uint_eq(log.n, 2);
		ck_assert_str_ne(log.items[0].rule, log.items[1].rule);
		ck_assert_uint_eq(log.counts[0], 1);
		ck_assert_uint_eq(log.counts[1], 1);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* A flag filter keeps no text back, so a value's start goes out before
 * its end comes. The value is still scanned whole. */
START_TEST(sent_value_start_still_flagged)
{
	static const char *const rules[] = {"tok=^token$", NULL};
	const char *args = "{\"n\":1,\"a\":\"token\"}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_FLAG, TG_SIDE_RESPONSE, rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 0, &sent, &early), TG_STREAM_OK);
		ck_assert_msg(log.n == 1, "cut %zu: %zu decisions", cut, log.n);
		ck_assert_uint_eq(log.counts[0], 1);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* In a string written with an escape, a match that the scan of the whole
 * text finds too is flagged once, and one that only the decoded string
 * shows is flagged as well. */
START_TEST(escaped_value_flagged_once)
{
	const char *args = "{\"a\":\"line\\nmail jane@example.com\",\"b\":\"j\\u0040e.com\"}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_FLAG, TG_SIDE_RESPONSE, value_rules);

	for (size_t cut = 1; cut < strlen(args); cut++) {
		struct tg_filter_log log = {0};
		char *sent;
		int early;

		ck_assert_int_eq(feed_arguments(f, &log, args, cut, 0, &sent, &early), TG_STREAM_OK);
		ck_assert_uint_eq(log.n, 1);
		ck_assert_str_eq(log.items[0].rule, "email");
		ck_assert_msg(log.counts[0] == 2, "cut %zu: %u flags", cut, log.counts[0]);
		free(sent);
		tg_filter_log_free(&log);
	}
	destroy_filter(f);
}
END_TEST

/* A match that only the decoded value shows still blocks a mask filter. */
START_TEST(argument_escaped_value_blocks)
{
	const char *args = "{\"a\":\"tok\\u0065n\"}";
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, value_rules);
	struct tg_filter_log log = {0};
	char *sent;
	int early;

	ck_assert_int_eq(feed_arguments(f, &log, args, 8, 0, &sent, &early), TG_STREAM_BLOCK);
	free(sent);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* An open value is held at most "hold" bytes: the start of a long one
 * goes out before its end comes. */
START_TEST(argument_value_hold_bounded)
{
	char args[256] = "{\"a\":\"";
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, value_rules);
	struct tg_filter_log log = {0};
	char *sent;
	int early;

	memset(args + strlen(args), 'x', 200);
	strcat(args, "\"}");
	f->hold = 32;
	ck_assert_int_eq(feed_arguments(f, &log, args, 20, 20, &sent, &early), TG_STREAM_OK);
	ck_assert_int_eq(early, 1);
	free(sent);

	f->hold = TG_FILTER_HOLD;
	ck_assert_int_eq(feed_arguments(f, &log, args, 20, 20, &sent, &early), TG_STREAM_OK);
	ck_assert_int_eq(early, 0);
	free(sent);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* The bound the "limit" tests give the held events, in bytes. */
#define TEST_MAX_HELD 4096

/* Feed an argument piece of one tool call as an event. */
static enum tg_stream_verdict
feed_argument_piece(struct tg_filter_stream *s, const char *piece)
{
	json_t *chunk = json_pack("{s:[{s:i, s:{s:[{s:i, s:{s:s}}]}}]}", "choices", "index", 0,
	                          "delta", "tool_calls", "index", 0, "function", "arguments",
	                          piece);
	char *data = json_dumps(chunk, JSON_COMPACT);
	enum tg_stream_verdict v = feed_data(s, data, 0);

	free(data);
	json_decref(chunk);
	return v;
}

/* Feed pieces of "x" after first until the stream stops taking them, at
 * most max events. Returns the verdict that stopped it, or OK; *events
 * gets how many were fed. */
static enum tg_stream_verdict
feed_until_stopped(struct tg_filter_stream *s, const char *first, size_t max, size_t *events)
{
	enum tg_stream_verdict v = feed_argument_piece(s, first);

	for (*events = 1; v == TG_STREAM_OK && *events < max; (*events)++)
		v = feed_argument_piece(s, "xxxxxxxxxxxxxxxx");
	return v;
}

/* A string with an escape is held until its end: one without an end
 * fails the stream at max_held, sending none of it. */
START_TEST(escaped_argument_hold_limited)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_bounded_stream(f, &log, slot, &chain, out, TEST_MAX_HELD);
	size_t events;
	char why[192];

	ck_assert_int_eq(feed_until_stopped(s, "{\"a\":\"\\n", 10000, &events), TG_STREAM_TOO_LARGE);
	ck_assert_uint_lt(events, 100);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	tg_filter_stream_describe_error(s, why, sizeof(why));
	ck_assert_str_eq(why, "the events held back to be screened passed 4096 bytes");

	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Events behind held text wait for it, even those without text: their
 * bytes count toward max_held too. */
START_TEST(empty_events_hold_limited)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, card_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_bounded_stream(f, &log, slot, &chain, out, TEST_MAX_HELD);
	char *start = content_event("card 4111 1111", NULL);
	enum tg_stream_verdict v = feed(s, start, out);
	size_t events = 0;
	char *sent;

	for (; v == TG_STREAM_OK && events < 10000; events++)
		v = feed_data(s, "{\"choices\":[{\"index\":0,\"delta\":{}}]}", 0);
	ck_assert_int_eq(v, TG_STREAM_TOO_LARGE);
	ck_assert_uint_lt(events, 200);
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "4111"));

	free(sent);
	free(start);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* A string without an escape goes out as it comes, past "hold", but the
 * decoder keeps its text until it ends, so the arguments it reads are
 * bounded too. */
START_TEST(plain_argument_length_limited)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s;
	size_t events;
	char why[192];

	f->hold = 16;
	s = new_bounded_stream(f, &log, slot, &chain, out, TEST_MAX_HELD);

	ck_assert_int_eq(feed_until_stopped(s, "{\"a\":\"", 10000, &events), TG_STREAM_TOO_LARGE);
	ck_assert_uint_gt(events, TEST_MAX_HELD / 16);
	ck_assert_uint_lt(events, TEST_MAX_HELD / 16 + 4);
	ck_assert_uint_gt(evbuffer_get_length(out), 0);
	tg_filter_stream_describe_error(s, why, sizeof(why));
	ck_assert_str_eq(why, "the arguments of a tool call passed 4096 bytes");

	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Arguments within the bound stream as before. */
START_TEST(arguments_within_limit_pass)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_bounded_stream(f, &log, slot, &chain, out, TEST_MAX_HELD);
	size_t events;
	char *sent;
	char args[1024];

	ck_assert_int_eq(feed_until_stopped(s, "{\"a\":\"\\n", 8, &events), TG_STREAM_OK);
	ck_assert_int_eq(feed_argument_piece(s, "\"}"), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	sent = take(out);
	joined_arguments(sent, args);
	ck_assert_uint_eq(strlen(args), strlen("{\"a\":\"\\n\"}") + 7 * 16);

	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Data that a tree would not keep whole fails the stream, also when the
 * texts look harmless, read by the stream or in the relay's digest pass. */
static const char *const unreadable[] = {
	"{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
	"{\"id\":\"x\",\"id\":\"x\",\"choices\":[]}",
	"{\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"\\ud800\"}}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"\\ud800\\u0041\"}}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"\xc0\xaf\"}}]}",
	"{\"choices\":[],\f\"x\":1}",
	"{\"choices\":[{\"delta\":{\"content\":\"a\"}}]} x",
	"[1]",
};

START_TEST(unreadable_event_fails)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	size_t n = sizeof(unreadable) / sizeof(unreadable[0]);
	char why[192];

	ck_assert_int_eq(feed_data(s, unreadable[(size_t)_i % n], (size_t)_i >= n),
	                 TG_STREAM_ERROR);
	tg_filter_stream_describe_error(s, why, sizeof(why));
	ck_assert_ptr_nonnull(strstr(why, "cannot read"));
	ck_assert_uint_eq(evbuffer_get_length(out), 0);

	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Streams that once let an address through, as the data of their events.
 * Each comes out masked, or fails at its last event without having sent
 * the address's domain. */
static const struct {
	const char *data[2];
	enum tg_stream_verdict last;    /* of the last event */
} bypass[] = {
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"send\","
	  "\"arguments\":\"{\\\"to\\\":\\\"jane@example.com\\\"}\"}}}]}"}, TG_STREAM_OK},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"jane\"}}}]}",
	  "{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":"
	  "\"@example.com\"}}}]}"}, TG_STREAM_OK},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane\"},\"finish_reason\":\"\"}]}",
	  "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@example.com\"},"
	  "\"finish_reason\":\"\"}]}"}, TG_STREAM_OK},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane\"},"
	  "\"finish_reason\":\"stop\"}]}",
	  "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@example.com\"}}]}"},
	 TG_STREAM_ERROR},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane\"}}]}",
	  "{\"choices\":[{\"index\":1.0,\"delta\":{\"content\":\"@example.com\"}}]}"},
	 TG_STREAM_ERROR},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane\"}}]}",
	  "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@example.com\"}},"
	  "{\"index\":\"0\",\"delta\":{\"content\":\"x\"}}]}"}, TG_STREAM_ERROR},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane\"}}]}",
	  "{\"choices\":[{\"index\":-1,\"delta\":{\"content\":\"@example.com\"}}]}"},
	 TG_STREAM_ERROR},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1e0,"
	  "\"function\":{\"arguments\":\"x\"}}]}}]}"}, TG_STREAM_ERROR},
	{{"{\"type\":\"content_block_delta\",\"index\":2147483648,\"delta\":{\"text\":\"x\"}}"},
	 TG_STREAM_ERROR},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\","
	  "\"text\":\"jane@example.com\"}]}}]}"}, TG_STREAM_OK},
	{{"{\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\","
	  "\"text\":\"jane\"}]}}]}",
	  "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@example.com\"}}]}"}, TG_STREAM_OK},
};

START_TEST(bypass_closed)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	const char *const *data = bypass[_i].data;
	size_t n = data[1] != NULL ? 2 : 1;
	char *sent;

	if (n == 2)
		ck_assert_int_eq(feed_data(s, data[0], _i % 2), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, data[n - 1], _i % 2), bypass[_i].last);
	if (bypass[_i].last == TG_STREAM_OK) {
		ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
		ck_assert_uint_eq(log.n, 1);
	}
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "example.com"));

	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Data that jansson reads though the chunk reader left it to jansson: the
 * texts are yajl's. */
START_TEST(unsure_event_read)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *sent, *content;

	ck_assert_int_eq(feed_data(s, "{\"choices\":[{\"delta\":{\"\\u0063ontent\":"
	                              "\"\\ud83d\\ude00 jane@example.com\"}}]}", 0), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, "data: [DONE]\n\n", out), TG_STREAM_OK);
	sent = take(out);
	content = joined_content(sent);
	ck_assert_str_eq(content, "\xf0\x9f\x98\x80 [REDACTED:email]");

	free(content);
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* The events of a stream in which an address is split, masked among
 * escapes, between two choices, and in data the reader leaves to jansson. */
static const char *const tapped_events[] = {
	"{\"id\":\"q\\\"1\",\"choices\":[{\"delta\":{\"content\":\"Ask \\\"ja\"},\"index\":1},"
	"{\"delta\":{\"content\":\"One, \\n\"},\"index\":0}]}",
	"{\"choices\": [ {\"delta\": {\"content\": \"ne@exa\"}, \"index\": 1} ], \"x\": \"\\\\\"}",
	"{\"choices\":[{\"delta\":{\"content\":\"mple.com\\\" \\ud83d\\ude00\"},\"index\":1},"
	"{\"delta\":{\"content\":\"two.\"},\"index\":0,\"finish_reason\":\"stop\"}]}",
	"{\"choices\":[{\"delta\":{},\"index\":1,\"finish_reason\":\"stop\"}]}",
};

/* Texts read in the relay's digest pass come out as those the filters
 * read themselves: same bytes, same masks. */
START_TEST(tapped_read_same_output)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, mail_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *own, *tapped, *second;

	for (size_t i = 0; i < sizeof(tapped_events) / sizeof(tapped_events[0]); i++)
		ck_assert_int_eq(feed_data(s, tapped_events[i], 0), TG_STREAM_OK);
	own = take(out);
	tg_filter_stream_free(s);

	s = new_stream(f, &log, slot, &chain, out);
	for (size_t i = 0; i < sizeof(tapped_events) / sizeof(tapped_events[0]); i++)
		ck_assert_int_eq(feed_data(s, tapped_events[i], 1), TG_STREAM_OK);
	tapped = take(out);
	ck_assert_str_eq(tapped, own);
	second = choice_content(tapped, 1, "content");
	ck_assert_str_eq(second, "Ask \"[REDACTED:email]\" \xf0\x9f\x98\x80");

	free(second);
	free(own);
	free(tapped);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST


/* --- hold_timeout --------------------------------------------------------- */

static const char *const email_rules[] = {"preset:email", NULL};

/* A stream over filters with its timer on an event base of its own. Tests
 * run the timer with event_base_dispatch(), which returns once no timer is
 * pending. */
struct timed {
	struct event_base *base;
	const struct tg_filter *slots[2];
	struct tg_filter_chain chain;
	struct tg_filter_log log;
	struct evbuffer *out;
	struct tg_filter_stream *s;
};

static void
timed_start(struct timed *t, struct tg_filter *f1, struct tg_filter *f2)
{
	int none;

	memset(t, 0, sizeof(*t));
	t->base = event_base_new();
	ck_assert_ptr_nonnull(t->base);
	t->slots[0] = f1;
	t->slots[1] = f2;
	t->chain.n = f2 != NULL ? 2 : 1;
	t->chain.filters = t->slots;
	t->out = evbuffer_new();
	t->s = tg_filter_stream_new(&t->chain, &t->log, t->base, collect, t->out, SIZE_MAX, &none);
	ck_assert_ptr_nonnull(t->s);
}

/* Timers pending on the stream's base. */
static int
timers(const struct timed *t)
{
	return event_base_get_num_events(t->base, EVENT_BASE_COUNT_ADDED);
}

static void
timed_end(struct timed *t)
{
	tg_filter_stream_free(t->s);
	ck_assert_int_eq(timers(t), 0);
	evbuffer_free(t->out);
	tg_filter_log_free(&t->log);
	event_base_free(t->base);
}

/* The upstream pauses after a word that could begin an address: the word
 * goes out, unchanged, once hold_timeout passed. */
START_TEST(timeout_releases_held_word)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	char *e = content_event("Mail jane", NULL);
	char *sent;
	struct timed t;

	f->hold_timeout = 1;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e, t.out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_uint_eq(evbuffer_get_length(t.out), 0);
	ck_assert_int_eq(timers(&t), 1);

	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 0);
	sent = take(t.out);
	ck_assert_str_eq(sent, e);
	ck_assert_uint_eq(t.log.n, 0);

	free(sent);
	free(e);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* An open value of tool call arguments, held so that a mask can rewrite
 * it in place, goes out too once hold_timeout passed. */
START_TEST(timeout_releases_open_value)
{
	static const char *const rules[] = {"tok=^token$", NULL};
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, rules);
	const char *data = "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
	                   "\"function\":{\"arguments\":\"{\\\"a\\\":\\\"tok\"}}]}}]}";
	char *sent;
	struct timed t;

	f->hold_timeout = 1;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed_data(t.s, data, 0), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_int_eq(timers(&t), 1);

	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 0);
	sent = take(t.out);
	ck_assert_ptr_nonnull(strstr(sent, data));

	free(sent);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* Without hold_timeout there is no timer: the word waits for the event
 * that decides it. */
START_TEST(no_timeout_holds_until_next_event)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	char *e1 = content_event("Mail jane", NULL);
	char *e2 = content_event("@example.com, bye!", NULL);
	char *sent, *content;
	struct timed t;

	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(timers(&t), 0);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_uint_eq(evbuffer_get_length(t.out), 0);

	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 0);
	sent = take(t.out);
	content = joined_content(sent);
	ck_assert_str_eq(content, "Mail [REDACTED:email], bye!");

	free(content);
	free(sent);
	free(e1);
	free(e2);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* A filter's timeout lets go only of its own hold: text that another
 * filter, without a timeout, still holds stays held. */
START_TEST(timeout_keeps_other_filters_hold)
{
	const char *ticket_rules[] = {"ticket=TCK-[0-9]{6}", NULL};
	struct tg_filter *mail = make_filter("mail", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	struct tg_filter *ticket = make_filter("tck", TG_ACTION_MASK, TG_SIDE_RESPONSE, ticket_rules);
	char *e1 = content_event("See TCK-12", NULL);
	char *e2 = content_event("3456 today!", NULL);
	char *sent, *content;
	struct timed t;

	mail->hold_timeout = 1;
	timed_start(&t, mail, ticket);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_uint_eq(evbuffer_get_length(t.out), 0);

	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_OK);
	sent = take(t.out);
	content = joined_content(sent);
	ck_assert_str_eq(content, "See [REDACTED:ticket] today!");

	free(content);
	free(sent);
	free(e1);
	free(e2);
	timed_end(&t);
	destroy_filter(mail);
	destroy_filter(ticket);
}
END_TEST

/* The start of an address went out by the timeout; the events that
 * complete it have the rest masked, and the decision is a mask. */
START_TEST(match_after_timeout_masks_rest)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	char *e1 = content_event("Mail jane", NULL);
	char *e2 = content_event("@exa", NULL);
	char *e3 = content_event("mple.com, bye!", NULL);
	char *sent, *content;
	struct timed t;

	f->hold_timeout = 1;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	sent = take(t.out);
	ck_assert_str_eq(sent, e1);
	free(sent);

	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_int_eq(feed(t.s, e3, t.out), TG_STREAM_OK);
	ck_assert_int_eq(feed(t.s, "data: [DONE]\n\n", t.out), TG_STREAM_OK);
	ck_assert_int_eq(timers(&t), 0);
	sent = take(t.out);
	ck_assert_ptr_null(strstr(sent, "exa"));
	content = joined_content(sent);
	ck_assert_str_eq(content, "[REDACTED:email], bye!");
	ck_assert_uint_eq(t.log.n, 1);
	ck_assert_int_eq(t.log.items[0].action, TG_ACTION_MASK);

	free(content);
	free(sent);
	free(e1);
	free(e2);
	free(e3);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* A whole address went out by the timeout (its domain could still have
 * grown): the match found later changes nothing and counts as a flag. */
START_TEST(match_all_sent_is_flagged)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	char *e1 = content_event("Mail jane@example.com", NULL);
	char *e2 = content_event(", bye!", NULL);
	char *sent;
	struct timed t;

	f->hold_timeout = 1;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 1);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_OK);
	sent = take(t.out);
	ck_assert_uint_eq(strlen(sent), strlen(e1) + strlen(e2));
	ck_assert_int_eq(strncmp(sent, e1, strlen(e1)), 0);
	ck_assert_str_eq(sent + strlen(e1), e2);
	ck_assert_uint_eq(t.log.n, 1);
	ck_assert_int_eq(t.log.items[0].action, TG_ACTION_FLAG);

	free(sent);
	free(e1);
	free(e2);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* A block still ends the stream when the match completes after its start
 * went out by the timeout. */
START_TEST(block_after_timeout_ends_stream)
{
	const char *rules[] = {"~injection=ignore previous instructions", NULL};
	struct tg_filter *f = make_filter("deny", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, rules);
	char *e1 = content_event("Now IGNORE prev", NULL);
	char *e2 = content_event("ious instructions", NULL);
	char *sent;
	struct timed t;

	f->hold_timeout = 1;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);
	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_BLOCK);
	ck_assert_int_eq(timers(&t), 0);
	sent = take(t.out);
	ck_assert_int_eq(strncmp(sent, e1, strlen(e1)), 0);
	ck_assert_ptr_null(strstr(sent, "instructions"));
	ck_assert_ptr_nonnull(strstr(sent, "\"finish_reason\":\"content_filter\""));
	ck_assert_ptr_nonnull(strstr(sent, "data: [DONE]\n\n"));

	free(sent);
	free(e1);
	free(e2);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* The event that decides held text stops the timer. Freeing the stream
 * while text is held (the client left) must leave no timer on the base. */
START_TEST(timer_stopped_by_event_and_free)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	char *e1 = content_event("Mail jane", NULL);
	char *e2 = content_event(" and bob, bye!", NULL);
	struct timed t;

	f->hold_timeout = 3600 * 1000;
	timed_start(&t, f, NULL);
	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(timers(&t), 1);
	ck_assert_int_eq(feed(t.s, e2, t.out), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(t.s), 0);
	ck_assert_int_eq(timers(&t), 0);

	ck_assert_int_eq(feed(t.s, e1, t.out), TG_STREAM_OK);
	ck_assert_int_eq(timers(&t), 1);
	tg_filter_stream_free(t.s);
	t.s = NULL;
	ck_assert_int_eq(timers(&t), 0);
	ck_assert_int_eq(event_base_dispatch(t.base), 1);

	free(e1);
	free(e2);
	timed_end(&t);
	destroy_filter(f);
}
END_TEST

/* --- Anthropic's Messages stream ---------------------------------------- */

/* An Anthropic event: data (JSON) under the event name its "type" gives. */
static char *
anthropic_event(const char *data)
{
	json_t *json = json_loads(data, 0, NULL);
	char *event;

	ck_assert_ptr_nonnull(json);
	ck_assert_int_gt(asprintf(&event, "event: %s\ndata: %s\n\n",
	                          json_string_value(json_object_get(json, "type")), data), 0);
	json_decref(json);
	return event;
}

/* A content_block_delta of block index whose delta has text as its
 * member ("text", "thinking" or "partial_json"). */
static char *
anthropic_delta(long index, const char *member, const char *text)
{
	const char *type = strcmp(member, "text") == 0 ? "text_delta"
	                   : strcmp(member, "thinking") == 0 ? "thinking_delta" : "input_json_delta";
	json_t *data = json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta",
	                         "index", (json_int_t)index, "delta", "type", type, member, text);
	char *text_json = json_dumps(data, JSON_COMPACT);
	char *event = anthropic_event(text_json);

	free(text_json);
	json_decref(data);
	return event;
}

/* Feed the data of each event in turn; each must return want. */
static void
feed_anthropic(struct tg_filter_stream *s, struct evbuffer *out, const char *const *events,
               size_t n, enum tg_stream_verdict want)
{
	for (size_t i = 0; i < n; i++) {
		char *e = anthropic_event(events[i]);

		ck_assert_int_eq(feed(s, e, out), want);
		free(e);
	}
}

/* The delta's member of each content_block_delta of block index in an
 * SSE text, joined. Every event there must carry its event name. */
static char *
joined_anthropic(const char *sse, long index, const char *member)
{
	char *out = calloc(1, strlen(sse) + 1);
	const char *p = sse;

	while ((p = strstr(p, "data: ")) != NULL) {
		const char *end = strstr(p, "\n\n");
		json_t *data = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
		const char *type = json_string_value(json_object_get(data, "type"));
		json_t *text = json_object_get(json_object_get(data, "delta"), member);
		char name[64];

		ck_assert_ptr_nonnull(type);
		snprintf(name, sizeof(name), "event: %s\n", type);
		ck_assert_msg(p - sse >= (long)strlen(name) &&
		              strncmp(p - strlen(name), name, strlen(name)) == 0,
		              "no \"%s\" before %.*s", name, (int)(end - p), p);
		if (json_is_string(text) &&
		    json_integer_value(json_object_get(data, "index")) == index)
			strcat(out, json_string_value(text));
		json_decref(data);
		p = end;
	}
	return out;
}

static const char *const anthropic_start[] = {
	"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
	"\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":5}}}",
	"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
	"\"text\":\"\"}}",
};
static const char *const anthropic_end[] = {
	"{\"type\":\"content_block_stop\",\"index\":0}",
	"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
	"\"usage\":{\"output_tokens\":9}}",
	"{\"type\":\"message_stop\"}",
};

/* An address split across two text_delta events at every byte offset is
 * masked. The changed events keep their event name, and the others go
 * out as they came. */
START_TEST(anthropic_split_text_masked)
{
	static const char text[] = "Mail jane@example.com now.";
	size_t cut = (size_t)_i;
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char first[sizeof(text)], *e1, *e2, *sent, *joined, *start;

	memcpy(first, text, cut);
	first[cut] = '\0';
	e1 = anthropic_delta(0, "text", first);
	e2 = anthropic_delta(0, "text", text + cut);
	feed_anthropic(s, out, anthropic_start, 2, TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e1, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e2, out), TG_STREAM_OK);
	feed_anthropic(s, out, anthropic_end, 3, TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);

	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "jane"));
	joined = joined_anthropic(sent, 0, "text");
	ck_assert_str_eq(joined, "Mail [REDACTED:email] now.");
	start = anthropic_event(anthropic_start[0]);
	ck_assert_msg(strncmp(sent, start, strlen(start)) == 0, "%s", sent);
	ck_assert_ptr_nonnull(strstr(sent, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
	ck_assert_uint_eq(log.n, 1);
	free(start);
	free(joined);
	free(sent);
	free(e1);
	free(e2);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* Windows go by content block: a thinking block, a text block and the
 * partial JSON of a tool_use block, interleaved, are masked each in its
 * own, and a match never spans two blocks. content_block_stop ends a
 * block's window, so its held text goes out then. */
START_TEST(anthropic_blocks_have_own_windows)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *events[] = {
		anthropic_delta(0, "thinking", "ask jane@exa"),
		anthropic_delta(1, "text", "Hello joe@exa"),
		anthropic_delta(2, "partial_json", "{\"to\": \"ann@exa"),
		anthropic_delta(0, "thinking", "mple.com"),
		anthropic_delta(1, "text", "mple.org"),
		anthropic_delta(2, "partial_json", "mple.net\"}"),
		anthropic_delta(3, "text", "bob@exa"),
		anthropic_event("{\"type\":\"content_block_stop\",\"index\":3}"),
		anthropic_delta(4, "text", "mple.com"),
	};
	char *sent, *joined;

	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		ck_assert_int_eq(feed(s, events[i], out), TG_STREAM_OK);
	feed_anthropic(s, out, anthropic_end + 2, 1, TG_STREAM_OK);
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "jane"));
	ck_assert_ptr_null(strstr(sent, "joe"));
	ck_assert_ptr_null(strstr(sent, "ann"));

	joined = joined_anthropic(sent, 0, "thinking");
	ck_assert_str_eq(joined, "ask [REDACTED:email]");
	free(joined);
	joined = joined_anthropic(sent, 1, "text");
	ck_assert_str_eq(joined, "Hello [REDACTED:email]");
	free(joined);
	joined = joined_anthropic(sent, 2, "partial_json");
	ck_assert_str_eq(joined, "{\"to\": \"[REDACTED:email]\"}");
	free(joined);
	joined = joined_anthropic(sent, 3, "text");
	ck_assert_str_eq(joined, "bob@exa");
	free(joined);
	joined = joined_anthropic(sent, 4, "text");
	ck_assert_str_eq(joined, "mple.com");
	free(joined);

	free(sent);
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		free(events[i]);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* A block ends an Anthropic stream with an error event, which its
 * clients raise, and no message_stop. */
START_TEST(anthropic_block_ends_with_error_event)
{
	const char *rules[] = {"~injection=ignore previous instructions", NULL};
	struct tg_filter *f = make_filter("deny", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *e1 = anthropic_delta(0, "text", "Sure. Now IGNORE prev");
	char *e2 = anthropic_delta(0, "text", "ious instructions and");
	char *sent, *error;

	feed_anthropic(s, out, anthropic_start, 2, TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e1, out), TG_STREAM_OK);
	ck_assert_int_eq(feed(s, e2, out), TG_STREAM_BLOCK);
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "IGNORE"));
	ck_assert_ptr_null(strstr(sent, "instructions"));
	ck_assert_ptr_null(strstr(sent, "message_stop"));
	error = strstr(sent, "event: error\n");
	ck_assert_ptr_nonnull(error);
	ck_assert_str_eq(error, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
	                 "\"invalid_request_error\",\"message\":\"the response was blocked by "
	                 "a content filter\",\"code\":\"content_filter\"}}\n\n");
	ck_assert_int_eq(log.items[0].action, TG_ACTION_BLOCK);
	feed_anthropic(s, out, anthropic_end, 3, TG_STREAM_OK);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	free(sent);
	free(e1);
	free(e2);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* A chat audio reply's transcript streams as a text of its own: an
 * address split across two of its deltas is masked, beside content that
 * a window of its own keeps apart. */
START_TEST(audio_transcript_masked)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *sent;

	ck_assert_int_eq(feed_data(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane@\","
	                              "\"audio\":{\"id\":\"a\",\"transcript\":\"mail jane@exa\"}}}]}",
	                           0), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, "{\"choices\":[{\"index\":0,\"delta\":{\"audio\":"
	                              "{\"transcript\":\"mple.com\"}}}]}", 1), TG_STREAM_OK);
	ck_assert_int_eq(feed_data(s, "{\"choices\":[{\"index\":0,\"delta\":{},"
	                              "\"finish_reason\":\"stop\"}]}", 0), TG_STREAM_OK);
	ck_assert_uint_eq(tg_filter_stream_held(s), 0);
	sent = take(out);
	ck_assert_msg(strstr(sent, "example") == NULL, "%s", sent);
	ck_assert_ptr_nonnull(strstr(sent, "\"transcript\":\"mail [REDACTED:email]\""));
	ck_assert_ptr_nonnull(strstr(sent, "\"content\":\"jane@\""));
	ck_assert_uint_eq(log.n, 1);
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

/* A server tool's result that content_block_start carries whole is read
 * as the same block of a body: its stdout blocks the stream. */
START_TEST(anthropic_tool_result_block_blocks)
{
	static const char *const events[] = {
		"{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
		"\"bash_code_execution_tool_result\",\"tool_use_id\":\"s\",\"content\":{\"type\":"
		"\"bash_code_execution_result\",\"stdout\":\"jane@example.com\",\"stderr\":\"\","
		"\"return_code\":0}}}",
	};
	struct tg_filter *f = make_filter("pii", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, email_rules);
	const struct tg_filter *slot[1];
	struct tg_filter_chain chain;
	struct tg_filter_log log = {0};
	struct evbuffer *out = evbuffer_new();
	struct tg_filter_stream *s = new_stream(f, &log, slot, &chain, out);
	char *sent;

	feed_anthropic(s, out, anthropic_start, 2, TG_STREAM_OK);
	feed_anthropic(s, out, events, 1, TG_STREAM_BLOCK);
	sent = take(out);
	ck_assert_ptr_null(strstr(sent, "jane"));
	ck_assert_ptr_nonnull(strstr(sent, "event: error\n"));
	free(sent);
	evbuffer_free(out);
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	destroy_filter(f);
}
END_TEST

START_TEST(request_only_chain_has_no_stream)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_REQUEST, card_rules);
	const struct tg_filter *slot[1] = {f};
	struct tg_filter_chain chain = {1, slot};
	struct tg_filter_log log = {0};
	int none = 0;

	ck_assert_ptr_null(tg_filter_stream_new(&chain, &log, NULL, collect, NULL, SIZE_MAX, &none));
	ck_assert_int_eq(none, 1);
	destroy_filter(f);
}
END_TEST

static Suite *
filter_stream_suite(void)
{
	Suite *s = suite_create("filter_stream");
	TCase *tc = tcase_create("window");

	tcase_add_loop_test(tc, split_match_masked_at_every_offset, 0, (int)strlen(whole_text) + 1);
	tcase_add_test(tc, match_over_many_events);
	tcase_add_test(tc, untouched_events_byte_identical);
	tcase_add_test(tc, plain_text_flows_at_once);
	tcase_add_test(tc, hold_is_bounded);
	tcase_add_test(tc, block_ends_with_content_filter);
	tcase_add_test(tc, tool_arguments_masked);
	tcase_add_test(tc, flag_passes_unchanged);
	tcase_add_test(tc, request_only_chain_has_no_stream);
	tcase_add_test(tc, masked_event_not_held);
	suite_add_tcase(s, tc);

	tc = tcase_create("reading");
	tcase_add_test(tc, unchanged_event_without_tree);
	tcase_add_test(tc, mask_among_escapes);
	tcase_add_test(tc, multi_choice_events);
	tcase_add_test(tc, tool_calls_share_events);
	tcase_add_test(tc, argument_value_masked_at_every_cut);
	tcase_add_loop_test(tc, argument_value_blocked_at_every_cut, 0,
	                    (int)(sizeof(blocked_values) / sizeof(blocked_values[0])));
	tcase_add_test(tc, argument_number_masked_at_every_cut);
	tcase_add_loop_test(tc, card_number_quoted_at_every_cut, 0,
	                    (int)(sizeof(card_numbers) / sizeof(card_numbers[0])));
	tcase_add_test(tc, decoded_match_after_card_blocks);
	tcase_add_test(tc, argument_value_flagged_once);
	tcase_add_test(tc, argument_escaped_value_blocks);
	tcase_add_test(tc, escaped_value_flagged_once);
	tcase_add_test(tc, sent_value_start_still_flagged);
	tcase_add_test(tc, argument_value_hold_bounded);
	tcase_add_loop_test(tc, unreadable_event_fails, 0,
	                    2 * (int)(sizeof(unreadable) / sizeof(unreadable[0])));
	tcase_add_test(tc, unsure_event_read);
	tcase_add_loop_test(tc, bypass_closed, 0, (int)(sizeof(bypass) / sizeof(bypass[0])));
	tcase_add_test(tc, tapped_read_same_output);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_test(tc, escaped_argument_hold_limited);
	tcase_add_test(tc, empty_events_hold_limited);
	tcase_add_test(tc, plain_argument_length_limited);
	tcase_add_test(tc, arguments_within_limit_pass);
	suite_add_tcase(s, tc);

	tc = tcase_create("hold_timeout");
	tcase_add_test(tc, timeout_releases_open_value);
	tcase_add_test(tc, timeout_releases_held_word);
	tcase_add_test(tc, no_timeout_holds_until_next_event);
	tcase_add_test(tc, timeout_keeps_other_filters_hold);
	tcase_add_test(tc, match_after_timeout_masks_rest);
	tcase_add_test(tc, match_all_sent_is_flagged);
	tcase_add_test(tc, block_after_timeout_ends_stream);
	tcase_add_test(tc, timer_stopped_by_event_and_free);
	suite_add_tcase(s, tc);

	tc = tcase_create("anthropic");
	tcase_add_loop_test(tc, anthropic_split_text_masked, 0, 27);
	tcase_add_test(tc, anthropic_blocks_have_own_windows);
	tcase_add_test(tc, anthropic_block_ends_with_error_event);
	tcase_add_test(tc, audio_transcript_masked);
	tcase_add_test(tc, anthropic_tool_result_block_blocks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(filter_stream_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
