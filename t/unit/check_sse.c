/*
 * Unit tests for the server-sent events parser (src/sse.c).
 *
 * Every framing case is fed whole, one byte at a time, and in two pieces
 * split at every offset, and must produce the same events each time. The
 * input sits in a heap block of its exact length, so AddressSanitizer catches
 * a read past its end, and is compared afterwards to prove it was not changed.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define MAX_EVENTS      16
#define MAX_COMMENTS    8
#define MAX_WANTED      4       /* events or comments per framing case */

struct seen_event {
	char *type;
	size_t type_len;
	char *data;
	size_t data_len;
	char *id;               /* NULL when the event had no id */
	size_t id_len;
	size_t data_at;
	size_t raw_len;
};

struct capture {
	struct tg_sse_parser parser;
	struct seen_event events[MAX_EVENTS];
	size_t n_events;
	char *comments[MAX_COMMENTS];
	size_t n_comments;
	int stop_value;         /* on_event returns this */
	int feed_rc;            /* first non-zero tg_sse_feed() result, or 0 */
	int finish_rc;          /* tg_sse_finish() result; -100 when not called */
	size_t tail_raw_len;    /* bytes counted toward no event at the end */
};

enum feed_mode {
	FEED_WHOLE,
	FEED_BYTES,
	FEED_SPLIT,
};

static char *
copy_bytes(const char *s, size_t n)
{
	char *copy = malloc(n + 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, s, n);
	copy[n] = '\0';
	return copy;
}

static int
record_event(void *arg, const struct tg_sse_event *ev)
{
	struct capture *c = arg;
	struct seen_event *seen;

	ck_assert_uint_lt(c->n_events, MAX_EVENTS);
	ck_assert_ptr_nonnull(ev->type);
	ck_assert_ptr_nonnull(ev->data);
	ck_assert_int_eq(ev->type[ev->type_len], '\0');
	ck_assert_int_eq(ev->data[ev->data_len], '\0');
	if (ev->id != NULL)
		ck_assert_int_eq(ev->id[ev->id_len], '\0');

	seen = &c->events[c->n_events++];
	seen->type = copy_bytes(ev->type, ev->type_len);
	seen->type_len = ev->type_len;
	seen->data = copy_bytes(ev->data, ev->data_len);
	seen->data_len = ev->data_len;
	seen->id = ev->id != NULL ? copy_bytes(ev->id, ev->id_len) : NULL;
	seen->id_len = ev->id_len;
	seen->data_at = ev->data_at;
	seen->raw_len = ev->raw_len;
	return c->stop_value;
}

static void
record_comment(void *arg, const char *text, size_t len)
{
	struct capture *c = arg;

	ck_assert_uint_lt(c->n_comments, MAX_COMMENTS);
	c->comments[c->n_comments++] = copy_bytes(text, len);
}

static void
capture_init(struct capture *c, size_t max_event)
{
	memset(c, 0, sizeof(*c));
	c->finish_rc = -100;
	tg_sse_init(&c->parser, max_event, record_event, record_comment, c);
}

static void
capture_free(struct capture *c)
{
	size_t i;

	for (i = 0; i < c->n_events; i++) {
		free(c->events[i].type);
		free(c->events[i].data);
		free(c->events[i].id);
	}
	for (i = 0; i < c->n_comments; i++)
		free(c->comments[i]);
	tg_sse_free(&c->parser);
}

static size_t
raw_len_sum(const struct capture *c)
{
	size_t i, sum = 0;

	for (i = 0; i < c->n_events; i++)
		sum += c->events[i].raw_len;
	return sum;
}

/* Feed in[0..len) to c's parser in the given mode, stopping at the first
 * non-zero result, then finish the stream when every feed succeeded. */
static void
capture_feed(struct capture *c, const char *in, size_t len,
             enum feed_mode mode, size_t split)
{
	char *buf = malloc(len ? len : 1);
	size_t i;
	int rc = 0;

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, in, len);

	switch (mode) {
	case FEED_WHOLE:
		rc = tg_sse_feed(&c->parser, buf, len);
		break;
	case FEED_BYTES:
		for (i = 0; i < len && rc == 0; i++)
			rc = tg_sse_feed(&c->parser, buf + i, 1);
		break;
	case FEED_SPLIT:
		rc = tg_sse_feed(&c->parser, buf, split);
		if (rc == 0)
			rc = tg_sse_feed(&c->parser, buf + split, len - split);
		break;
	}

	ck_assert_msg(memcmp(buf, in, len) == 0, "the parser changed its input");
	free(buf);

	c->feed_rc = rc;
	if (rc == 0) {
		c->tail_raw_len = c->parser.raw_len;
		c->finish_rc = tg_sse_finish(&c->parser);
	}
}

static const char *
mode_name(enum feed_mode mode)
{
	switch (mode) {
	case FEED_WHOLE:
		return "whole";
	case FEED_BYTES:
		return "byte by byte";
	case FEED_SPLIT:
		return "split";
	}
	return "?";
}

/* --- framing cases ------------------------------------------------------ */

struct want_event {
	const char *type;
	const char *data;       /* NULL ends the list */
	const char *id;         /* NULL: the event has no id */
	size_t raw_len;
};

struct framing_case {
	const char *name;
	const char *input;
	size_t len;
	struct want_event events[MAX_WANTED];
	const char *comments[MAX_WANTED];
	int finish_rc;
};

#define INPUT(s) (s), sizeof(s) - 1

static const struct framing_case framing_cases[] = {
	{ "LF line ends", INPUT("data: hello\n\n"),
	  { { "", "hello", NULL, 13 } }, { NULL }, 0 },

	/* Dispatch happens on the CR of the blank line's CRLF, so its LF
	 * counts toward the next event (10 + 11 + 1 left over). */
	{ "CRLF line ends", INPUT("data: a\r\n\r\ndata: b\r\n\r\n"),
	  { { "", "a", NULL, 10 }, { "", "b", NULL, 11 } }, { NULL }, 0 },

	{ "lone CR line ends", INPUT("data: a\r\rdata: b\r\r"),
	  { { "", "a", NULL, 9 }, { "", "b", NULL, 9 } }, { NULL }, 0 },

	{ "mixed line ends", INPUT("data: a\r\ndata: b\rdata: c\n\r\n"),
	  { { "", "a\nb\nc", NULL, 26 } }, { NULL }, 0 },

	{ "LF after CRLF event", INPUT("data: a\r\n\r\n\ndata: b\n\n"),
	  { { "", "a", NULL, 10 }, { "", "b", NULL, 11 } }, { NULL }, 0 },

	{ "data without space", INPUT("data:x\n\n"),
	  { { "", "x", NULL, 8 } }, { NULL }, 0 },

	{ "data with two spaces", INPUT("data:  x\n\n"),
	  { { "", " x", NULL, 10 } }, { NULL }, 0 },

	{ "multi-line data", INPUT("data: a\ndata:\ndata\ndata: b\n\n"),
	  { { "", "a\n\n\nb", NULL, 28 } }, { NULL }, 0 },

	{ "field name only", INPUT("data\n\n"),
	  { { "", "", NULL, 6 } }, { NULL }, 0 },

	{ "colon in value", INPUT("data: a: b\n\n"),
	  { { "", "a: b", NULL, 12 } }, { NULL }, 0 },

	{ "comments", INPUT(": keepalive\n:\ndata: x\n\n"),
	  { { "", "x", NULL, 23 } }, { " keepalive", "" }, 0 },

	{ "event without data", INPUT("event: ping\n\ndata: x\n\n"),
	  { { "", "x", NULL, 22 } }, { NULL }, 0 },

	{ "event type", INPUT("event: delta\ndata: {}\n\n"),
	  { { "delta", "{}", NULL, 23 } }, { NULL }, 0 },

	{ "event type per event", INPUT("event: a\ndata: 1\n\ndata: 2\n\n"),
	  { { "a", "1", NULL, 18 }, { "", "2", NULL, 9 } }, { NULL }, 0 },

	{ "id per event", INPUT("id: 42\ndata: x\n\ndata: y\n\n"),
	  { { "", "x", "42", 16 }, { "", "y", NULL, 9 } }, { NULL }, 0 },

	{ "id with NUL ignored", INPUT("id: 1\nid: a\0b\ndata: x\n\n"),
	  { { "", "x", "1", 23 } }, { NULL }, 0 },

	{ "empty id", INPUT("id\ndata: x\n\n"),
	  { { "", "x", "", 12 } }, { NULL }, 0 },

	{ "ignored fields",
	  INPUT("retry: 100\nfoo: bar\n data: no\ndata: x\n\n"),
	  { { "", "x", NULL, 39 } }, { NULL }, 0 },

	{ "blank lines before event", INPUT("\n\n\ndata: x\n\n"),
	  { { "", "x", NULL, 12 } }, { NULL }, 0 },

	{ "BOM at stream start", INPUT("\xEF\xBB\xBF" "data: x\n\n"),
	  { { "", "x", NULL, 12 } }, { NULL }, 0 },

	{ "BOM before comment", INPUT("\xEF\xBB\xBF" ": hi\ndata: x\n\n"),
	  { { "", "x", NULL, 17 } }, { " hi" }, 0 },

	/* Past the stream start a BOM is part of the field name, which makes
	 * "\xEF\xBB\xBFdata" an unknown field. */
	{ "BOM after stream start",
	  INPUT("data: x\n\n\xEF\xBB\xBF" "data: y\n\n"),
	  { { "", "x", NULL, 9 } }, { NULL }, 0 },

	{ "BOM on second line", INPUT(": c\n\xEF\xBB\xBF" "data: y\n\n"),
	  { { 0 } }, { " c" }, 0 },

	{ "UTF-8 multi-byte data", INPUT("data: é 日本 😀\n\n"),
	  { { "", "é 日本 😀", NULL, 22 } }, { NULL }, 0 },

	{ "UTF-8 event type and id", INPUT("event: 日本\nid: é\ndata: 😀\n\n"),
	  { { "日本", "😀", "é", 14 + 7 + 11 + 1 } }, { NULL }, 0 },

	{ "end after data line", INPUT("data: x\n\ndata: y\n"),
	  { { "", "x", NULL, 9 } }, { NULL }, 1 },

	{ "end inside data line", INPUT("data: x\n\ndata: y"),
	  { { "", "x", NULL, 9 } }, { NULL }, 1 },

	{ "end inside comment", INPUT("data: x\n\n: partial"),
	  { { "", "x", NULL, 9 } }, { NULL }, 1 },

	{ "end after event type", INPUT("event: x\n"),
	  { { 0 } }, { NULL }, 1 },

	{ "end after id", INPUT("id: 3\n"),
	  { { 0 } }, { NULL }, 1 },

	{ "end after comment line", INPUT(": ping\n"),
	  { { 0 } }, { " ping" }, 0 },

	{ "empty stream", INPUT(""),
	  { { 0 } }, { NULL }, 0 },
};

static void
check_framing(const struct framing_case *fc, const struct capture *c,
              enum feed_mode mode, size_t split)
{
	char where[128];
	size_t i, n_want = 0;

	snprintf(where, sizeof(where), "case \"%s\", fed %s (at %zu)",
	         fc->name, mode_name(mode), split);

	ck_assert_msg(c->feed_rc == 0, "%s: feed returned %d", where,
	              c->feed_rc);
	ck_assert_msg(c->finish_rc == fc->finish_rc,
	              "%s: finish returned %d, expected %d", where,
	              c->finish_rc, fc->finish_rc);

	while (n_want < MAX_WANTED && fc->events[n_want].data != NULL)
		n_want++;
	ck_assert_msg(c->n_events == n_want, "%s: %zu events, expected %zu",
	              where, c->n_events, n_want);

	for (i = 0; i < n_want; i++) {
		const struct want_event *want = &fc->events[i];
		const struct seen_event *seen = &c->events[i];

		ck_assert_msg(seen->type_len == strlen(want->type) &&
		              memcmp(seen->type, want->type, seen->type_len) == 0,
		              "%s: event %zu type \"%s\", expected \"%s\"",
		              where, i, seen->type, want->type);
		ck_assert_msg(seen->data_len == strlen(want->data) &&
		              memcmp(seen->data, want->data, seen->data_len) == 0,
		              "%s: event %zu data \"%s\", expected \"%s\"",
		              where, i, seen->data, want->data);
		if (want->id == NULL) {
			ck_assert_msg(seen->id == NULL,
			              "%s: event %zu has id \"%s\", expected none",
			              where, i, seen->id);
		} else {
			ck_assert_msg(seen->id != NULL &&
			              seen->id_len == strlen(want->id) &&
			              strcmp(seen->id, want->id) == 0,
			              "%s: event %zu id \"%s\", expected \"%s\"",
			              where, i, seen->id ? seen->id : "(none)",
			              want->id);
		}
		ck_assert_msg(seen->raw_len == want->raw_len,
		              "%s: event %zu raw_len %zu, expected %zu",
		              where, i, seen->raw_len, want->raw_len);
	}

	for (i = 0; i < MAX_WANTED && fc->comments[i] != NULL; i++) {
		ck_assert_msg(i < c->n_comments, "%s: comment %zu missing",
		              where, i);
		ck_assert_msg(strcmp(c->comments[i], fc->comments[i]) == 0,
		              "%s: comment %zu \"%s\", expected \"%s\"",
		              where, i, c->comments[i], fc->comments[i]);
	}
	ck_assert_msg(c->n_comments == i, "%s: %zu comments, expected %zu",
	              where, c->n_comments, i);
	ck_assert_uint_eq(c->parser.comments, i);
	ck_assert_uint_eq(c->parser.events, n_want);

	/* Every input byte counts toward exactly one event or the tail. */
	ck_assert_msg(raw_len_sum(c) + c->tail_raw_len == fc->len,
	              "%s: raw_len sum %zu + tail %zu != input length %zu",
	              where, raw_len_sum(c), c->tail_raw_len, fc->len);
}

static void
run_framing(const struct framing_case *fc, enum feed_mode mode, size_t split)
{
	struct capture c;

	capture_init(&c, 0);
	capture_feed(&c, fc->input, fc->len, mode, split);
	check_framing(fc, &c, mode, split);
	capture_free(&c);
}

/* Events whose data is one line, after a comment, a field, a BOM or the
 * LF of a CRLF, and one whose data is joined from two lines. */
static const char DATA_AT_STREAM[] =
	"\xEF\xBB\xBF: hi\nid: 1\ndata: {\"a\":1}\n\n"
	"data:x\r\n\r\n"
	"data: y\n\n"
	"data: a\ndata: b\n\n";

static void
check_data_at(enum feed_mode mode)
{
	static const size_t expected[] = {20, 5, 7, 0};
	struct capture c;
	size_t start = 0;

	capture_init(&c, 0);
	capture_feed(&c, DATA_AT_STREAM, sizeof(DATA_AT_STREAM) - 1, mode, 0);
	ck_assert_uint_eq(c.n_events, 4);
	for (size_t i = 0; i < c.n_events; i++) {
		const struct seen_event *ev = &c.events[i];

		ck_assert_uint_eq(ev->data_at, expected[i]);
		if (ev->data_at != 0)
			ck_assert_int_eq(memcmp(DATA_AT_STREAM + start + ev->data_at, ev->data,
			                        ev->data_len), 0);
		start += ev->raw_len;
	}
	capture_free(&c);
}

START_TEST(data_at_points_into_raw)
{
	check_data_at(FEED_WHOLE);
	check_data_at(FEED_BYTES);
}
END_TEST

START_TEST(framing_whole)
{
	run_framing(&framing_cases[_i], FEED_WHOLE, 0);
}
END_TEST

START_TEST(framing_byte_by_byte)
{
	run_framing(&framing_cases[_i], FEED_BYTES, 0);
}
END_TEST

START_TEST(framing_split_everywhere)
{
	const struct framing_case *fc = &framing_cases[_i];
	size_t split;

	for (split = 0; split <= fc->len; split++)
		run_framing(fc, FEED_SPLIT, split);
}
END_TEST

/* --- a recorded OpenAI stream ------------------------------------------- */

/* The first two and the last three events of the chat completion stream in
 * t/fixtures/openai-recorded/chat-streaming.yaml (Apache-2.0, see the
 * LICENSE there), with the LF line ends of the recording. */
static const char openai_stream[] =
	"data: {\"id\":\"chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp\",\"object\":"
	"\"chat.completion.chunk\",\"created\":1755137933,\"model\":"
	"\"gpt-5-nano-2025-08-07\",\"service_tier\":\"default\","
	"\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":"
	"{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
	"\"finish_reason\":null}],\"obfuscation\":\"nX\"}\n"
	"\n"
	"data: {\"id\":\"chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp\",\"object\":"
	"\"chat.completion.chunk\",\"created\":1755137933,\"model\":"
	"\"gpt-5-nano-2025-08-07\",\"service_tier\":\"default\","
	"\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":"
	"{\"content\":\"Hi\"},\"finish_reason\":null}],\"obfuscation\":\"UC\"}\n"
	"\n"
	"data: {\"id\":\"chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp\",\"object\":"
	"\"chat.completion.chunk\",\"created\":1755137933,\"model\":"
	"\"gpt-5-nano-2025-08-07\",\"service_tier\":\"default\","
	"\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":"
	"{\"content\":\".\"},\"finish_reason\":null}],\"obfuscation\":\"OdX\"}\n"
	"\n"
	"data: {\"id\":\"chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp\",\"object\":"
	"\"chat.completion.chunk\",\"created\":1755137933,\"model\":"
	"\"gpt-5-nano-2025-08-07\",\"service_tier\":\"default\","
	"\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{},"
	"\"finish_reason\":\"stop\"}],\"obfuscation\":\"XQdNwPP14L3TH0\"}\n"
	"\n"
	"data: [DONE]\n"
	"\n";

static void
check_openai(const struct capture *c)
{
	const struct seen_event *last;
	size_t i;

	ck_assert_int_eq(c->feed_rc, 0);
	ck_assert_int_eq(c->finish_rc, 0);
	ck_assert_uint_eq(c->n_events, 5);

	for (i = 0; i < c->n_events; i++) {
		ck_assert_str_eq(c->events[i].type, "");
		ck_assert_ptr_null(c->events[i].id);
	}
	ck_assert_str_eq(c->events[1].data,
	                 "{\"id\":\"chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp\","
	                 "\"object\":\"chat.completion.chunk\",\"created\":"
	                 "1755137933,\"model\":\"gpt-5-nano-2025-08-07\","
	                 "\"service_tier\":\"default\",\"system_fingerprint\":"
	                 "null,\"choices\":[{\"index\":0,\"delta\":{\"content\":"
	                 "\"Hi\"},\"finish_reason\":null}],\"obfuscation\":"
	                 "\"UC\"}");

	last = &c->events[c->n_events - 1];
	ck_assert_str_eq(last->data, "[DONE]");
	ck_assert_uint_eq(last->raw_len, strlen("data: [DONE]\n\n"));

	ck_assert_uint_eq(raw_len_sum(c), sizeof(openai_stream) - 1);
	ck_assert_uint_eq(c->tail_raw_len, 0);
}

START_TEST(openai_stream_all_splits)
{
	size_t len = sizeof(openai_stream) - 1;
	struct capture c;
	size_t split;

	capture_init(&c, 0);
	capture_feed(&c, openai_stream, len, FEED_WHOLE, 0);
	check_openai(&c);
	capture_free(&c);

	capture_init(&c, 0);
	capture_feed(&c, openai_stream, len, FEED_BYTES, 0);
	check_openai(&c);
	capture_free(&c);

	for (split = 0; split <= len; split++) {
		capture_init(&c, 0);
		capture_feed(&c, openai_stream, len, FEED_SPLIT, split);
		check_openai(&c);
		capture_free(&c);
	}
}
END_TEST

/* --- limits, stopping, reuse -------------------------------------------- */

/* Feed in with max_event and expect TG_SSE_ERR_TOO_LARGE and no event, in
 * every feeding mode. */
static void
expect_too_large(const char *in, size_t len, size_t max_event)
{
	struct capture c;
	size_t split;

	capture_init(&c, max_event);
	capture_feed(&c, in, len, FEED_WHOLE, 0);
	ck_assert_int_eq(c.feed_rc, TG_SSE_ERR_TOO_LARGE);
	ck_assert_uint_eq(c.n_events, 0);
	capture_free(&c);

	capture_init(&c, max_event);
	capture_feed(&c, in, len, FEED_BYTES, 0);
	ck_assert_int_eq(c.feed_rc, TG_SSE_ERR_TOO_LARGE);
	ck_assert_uint_eq(c.n_events, 0);
	capture_free(&c);

	for (split = 0; split <= len; split++) {
		capture_init(&c, max_event);
		capture_feed(&c, in, len, FEED_SPLIT, split);
		ck_assert_msg(c.feed_rc == TG_SSE_ERR_TOO_LARGE,
		              "split at %zu: feed returned %d", split, c.feed_rc);
		ck_assert_uint_eq(c.n_events, 0);
		capture_free(&c);
	}
}

START_TEST(max_event_line)
{
	static const char fits[] = "data: 0123456789\n\n";
	struct capture c;

	/* A 16-byte line fits in max_event 16; one more byte does not. */
	capture_init(&c, 16);
	capture_feed(&c, fits, sizeof(fits) - 1, FEED_BYTES, 0);
	ck_assert_int_eq(c.feed_rc, 0);
	ck_assert_uint_eq(c.n_events, 1);
	ck_assert_str_eq(c.events[0].data, "0123456789");
	capture_free(&c);

	expect_too_large(INPUT("data: 0123456789a\n\n"), 16);
	expect_too_large(INPUT("data: 0123456789a"), 16);
	expect_too_large(INPUT(": a comment longer than 16\n"), 16);
}
END_TEST

START_TEST(max_event_data_lines)
{
	static const char line[] = "data: 0123456789\n\n";
	char stream[10 * (sizeof(line) - 1) + 1];
	struct capture c;
	size_t i;

	/* The third line would bring the event to 10 + 1 + 10 + 16 bytes. */
	expect_too_large(INPUT("data: 0123456789\ndata: 0123456789\n"
	                       "data: 0123456789\n\n"), 32);

	/* The limit applies to each event, not to the stream. */
	stream[0] = '\0';
	for (i = 0; i < 10; i++)
		strcat(stream, line);
	capture_init(&c, 32);
	capture_feed(&c, stream, strlen(stream), FEED_WHOLE, 0);
	ck_assert_int_eq(c.feed_rc, 0);
	ck_assert_uint_eq(c.n_events, 10);
	capture_free(&c);
}
END_TEST

START_TEST(max_event_default)
{
	struct tg_sse_parser p;

	tg_sse_init(&p, 0, record_event, NULL, NULL);
	ck_assert_uint_eq(p.max_event, 1024 * 1024);
	tg_sse_free(&p);
}
END_TEST

START_TEST(event_callback_stops_feed)
{
	static const char in[] = "data: a\r\n\r\ndata: b\r\n\r\n";
	size_t len = sizeof(in) - 1;
	struct capture c;
	size_t done;

	capture_init(&c, 0);
	c.stop_value = 7;
	ck_assert_int_eq(tg_sse_feed(&c.parser, in, len), 7);
	ck_assert_uint_eq(c.n_events, 1);
	ck_assert_str_eq(c.events[0].data, "a");

	/* The sum of raw_len locates the unread rest, and the LF of the CRLF
	 * that ended event "a" must not end a line of its own. */
	done = raw_len_sum(&c);
	ck_assert_uint_eq(done, 10);
	c.stop_value = 0;
	ck_assert_int_eq(tg_sse_feed(&c.parser, in + done, len - done), 0);
	ck_assert_uint_eq(c.n_events, 2);
	ck_assert_str_eq(c.events[1].data, "b");
	ck_assert_uint_eq(c.events[1].raw_len, 11);
	ck_assert_int_eq(tg_sse_finish(&c.parser), 0);
	capture_free(&c);
}
END_TEST

START_TEST(large_event_in_small_chunks)
{
	size_t n_lines = 3000, i, len = 0, want_len = 0, pos;
	char *in = malloc(n_lines * 32 + 2);
	char *want = malloc(n_lines * 32);
	struct capture c;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(want);
	for (i = 0; i < n_lines; i++) {
		len += (size_t)sprintf(in + len, "data: line %zu\n", i);
		want_len += (size_t)sprintf(want + want_len, "%sline %zu",
		                            i ? "\n" : "", i);
	}
	in[len++] = '\n';

	capture_init(&c, 0);
	for (pos = 0; pos < len; pos += 7) {
		size_t n = len - pos < 7 ? len - pos : 7;

		ck_assert_int_eq(tg_sse_feed(&c.parser, in + pos, n), 0);
	}
	ck_assert_uint_eq(c.n_events, 1);
	ck_assert_uint_eq(c.events[0].data_len, want_len);
	ck_assert_mem_eq(c.events[0].data, want, want_len);
	ck_assert_uint_eq(c.events[0].raw_len, len);
	capture_free(&c);

	free(in);
	free(want);
}
END_TEST

START_TEST(comment_without_callback)
{
	static const char in[] = ": one\n: two\ndata: x\n\n";
	struct capture c;

	capture_init(&c, 0);
	c.parser.on_comment = NULL;
	ck_assert_int_eq(tg_sse_feed(&c.parser, in, sizeof(in) - 1), 0);
	ck_assert_uint_eq(c.parser.comments, 2);
	ck_assert_uint_eq(c.parser.events, 1);
	ck_assert_uint_eq(c.n_comments, 0);
	capture_free(&c);
}
END_TEST

/* The comment callback takes the bytes since the last event when no field
 * came among them, and the next event's raw_len starts after them. */
static size_t taken_at_comment[MAX_COMMENTS];
static size_t n_taken;

static void
take_at_comment(void *arg, const char *text, size_t len)
{
	struct capture *c = arg;

	(void)text;
	(void)len;
	ck_assert_uint_lt(n_taken, MAX_COMMENTS);
	taken_at_comment[n_taken++] = tg_sse_take_between(&c->parser);
}

START_TEST(comments_taken_between_events)
{
	static const char in[] = ": a\r\n\ndata: x\n: b\n\n: c\ndata: y\n\n";
	struct capture c;

	n_taken = 0;
	capture_init(&c, 0);
	c.parser.on_comment = take_at_comment;
	ck_assert_int_eq(tg_sse_feed(&c.parser, in, sizeof(in) - 1), 0);
	ck_assert_uint_eq(n_taken, 3);
	ck_assert_uint_eq(taken_at_comment[0], 4);     /* ": a\r", its LF comes after */
	ck_assert_uint_eq(taken_at_comment[1], 0);     /* ": b" inside event x */
	ck_assert_uint_eq(taken_at_comment[2], 4);     /* ": c\n" after event x */
	ck_assert_uint_eq(c.n_events, 2);
	ck_assert_uint_eq(c.events[0].raw_len, strlen("\n\ndata: x\n: b\n\n"));
	ck_assert_uint_eq(c.events[1].raw_len, strlen("data: y\n\n"));
	capture_free(&c);
}
END_TEST

/* A stream that stops after the whole lines of an event with data can be
 * completed by feeding the line end tg_sse_unended_event() names. */
START_TEST(unended_event_completed)
{
	struct capture c;
	struct tg_sse_event ev;

	capture_init(&c, 0);
	ck_assert_ptr_null(tg_sse_unended_event(&c.parser, &ev));
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("data: [DONE]")), 0);
	ck_assert_ptr_null(tg_sse_unended_event(&c.parser, &ev));      /* the line is unfinished */
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("\n")), 0);
	ck_assert_str_eq(tg_sse_unended_event(&c.parser, &ev), "\n");
	ck_assert_str_eq(ev.data, "[DONE]");
	ck_assert_uint_eq(ev.type_len, 0);
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("\n")), 0);
	ck_assert_uint_eq(c.n_events, 1);
	ck_assert_str_eq(c.events[0].data, "[DONE]");
	ck_assert_ptr_null(tg_sse_unended_event(&c.parser, &ev));

	/* After a lone CR an LF would end that line, not the event. */
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("event: message_stop\rdata: {}\r")), 0);
	ck_assert_str_eq(tg_sse_unended_event(&c.parser, &ev), "\r");
	ck_assert_str_eq(ev.type, "message_stop");
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("\r")), 0);
	ck_assert_uint_eq(c.n_events, 2);
	ck_assert_str_eq(c.events[1].type, "message_stop");

	/* An event without data has nothing to dispatch. */
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("event: ping\n")), 0);
	ck_assert_ptr_null(tg_sse_unended_event(&c.parser, &ev));
	capture_free(&c);
}
END_TEST

START_TEST(finish_is_idempotent)
{
	struct capture c;

	capture_init(&c, 0);
	ck_assert_int_eq(tg_sse_feed(&c.parser, INPUT("data: x")), 0);
	ck_assert_int_eq(tg_sse_finish(&c.parser), 1);
	ck_assert_int_eq(tg_sse_finish(&c.parser), 0);
	ck_assert_uint_eq(c.n_events, 0);
	capture_free(&c);
}
END_TEST

START_TEST(reinit_after_free)
{
	struct capture c;

	capture_init(&c, 0);
	capture_feed(&c, INPUT("data: first\n\n"), FEED_WHOLE, 0);
	ck_assert_uint_eq(c.n_events, 1);
	capture_free(&c);

	capture_init(&c, 0);
	capture_feed(&c, INPUT("\xEF\xBB\xBF" "data: second\n\n"), FEED_WHOLE, 0);
	ck_assert_uint_eq(c.n_events, 1);
	ck_assert_str_eq(c.events[0].data, "second");
	capture_free(&c);
}
END_TEST

static Suite *
sse_suite(void)
{
	int n_cases = (int)(sizeof(framing_cases) / sizeof(framing_cases[0]));
	Suite *s = suite_create("sse");
	TCase *framing = tcase_create("framing");
	TCase *stream = tcase_create("stream");

	tcase_add_loop_test(framing, framing_whole, 0, n_cases);
	tcase_add_loop_test(framing, framing_byte_by_byte, 0, n_cases);
	tcase_add_loop_test(framing, framing_split_everywhere, 0, n_cases);
	suite_add_tcase(s, framing);

	tcase_add_test(stream, openai_stream_all_splits);
	tcase_add_test(stream, data_at_points_into_raw);
	tcase_add_test(stream, max_event_line);
	tcase_add_test(stream, max_event_data_lines);
	tcase_add_test(stream, max_event_default);
	tcase_add_test(stream, event_callback_stops_feed);
	tcase_add_test(stream, large_event_in_small_chunks);
	tcase_add_test(stream, comment_without_callback);
	tcase_add_test(stream, finish_is_idempotent);
	tcase_add_test(stream, comments_taken_between_events);
	tcase_add_test(stream, unended_event_completed);
	tcase_add_test(stream, reinit_after_free);
	suite_add_tcase(s, stream);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(sse_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
