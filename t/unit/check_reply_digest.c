/*
 * Unit tests for the reply digest (src/reply-digest.c) and the relay's
 * classification of stream events built on it. Each member is found at
 * its place in OpenAI's and Anthropic's shapes and nowhere else. Texts
 * that are not JSON read as nothing, and a body split over many buffer
 * segments reads as the same body in one piece.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "relay.h"
#include "reply-digest.h"

static struct tg_reply_digest
digest_of(const char *text)
{
	struct tg_reply_digest d;

	tg_reply_digest(&d, text, strlen(text));
	return d;
}

/* --- what is found where -------------------------------------------------- */

START_TEST(openai_content_chunk)
{
	struct tg_reply_digest d = digest_of(
	        "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
	        "\"delta\":{\"content\":\" Hello\"},\"logprobs\":null,\"finish_reason\":null}],"
	        "\"usage\":null}");

	ck_assert(d.object);
	ck_assert(d.choices);
	ck_assert_uint_eq(d.n_choices, 1);
	ck_assert(d.output);
	ck_assert(!d.finish);
	ck_assert(!d.error);
	ck_assert_int_eq(d.type, TG_REPLY_TYPE_NONE);
	ck_assert_int_eq(d.usage.shape, TG_USAGE_NULL);
}
END_TEST

START_TEST(openai_role_and_finish_chunks)
{
	struct tg_reply_digest role = digest_of(
	        "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	        "\"finish_reason\":null}]}");
	struct tg_reply_digest end = digest_of(
	        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}");

	ck_assert(!role.output);
	ck_assert(!role.finish);
	ck_assert(!end.output);
	ck_assert(end.finish);
}
END_TEST

START_TEST(outputs_other_than_content)
{
	ck_assert(digest_of("{\"choices\":[{\"text\":\"a\"}]}").output);
	ck_assert(digest_of("{\"choices\":[{\"delta\":{\"refusal\":\"no\"}}]}").output);
	ck_assert(digest_of("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}").output);
	ck_assert(!digest_of("{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}").output);
	ck_assert(digest_of("{\"choices\":[{\"delta\":{\"function_call\":{\"name\":\"f\"}}}]}").output);
	ck_assert(!digest_of("{\"choices\":[{\"delta\":{\"function_call\":null}}]}").output);
	ck_assert(digest_of("{\"choices\":[{\"delta\":{\"reasoning_content\":\"x\"}}]}").reasoning);
	ck_assert(digest_of("{\"choices\":[{\"delta\":{\"reasoning\":\"x\"}}]}").reasoning);
	ck_assert(!digest_of("{\"choices\":[{\"delta\":{\"reasoning\":\"x\"}}]}").output);
}
END_TEST

/* The same names elsewhere than their place mean nothing. */
START_TEST(members_out_of_place_are_ignored)
{
	struct tg_reply_digest d = digest_of(
	        "{\"delta\":{\"content\":\"x\"},\"data\":{\"choices\":[{\"text\":\"y\"}],"
	        "\"usage\":{\"prompt_tokens\":5},\"error\":1},"
	        "\"choices\":[{\"delta\":{\"usage\":{\"prompt_tokens\":9}},"
	        "\"message\":{\"content\":\"z\"}}]}");

	ck_assert(d.choices);
	ck_assert(!d.output);
	ck_assert(!d.error);
	ck_assert_int_eq(d.usage.shape, TG_USAGE_ABSENT);
	ck_assert_uint_eq(d.usage.present, 0);
}
END_TEST

/* The top-level "sequence_number" of a Responses API event counts, and the
 * last one wins. A nested, negative or non-integer one does not count. */
START_TEST(responses_sequence_number)
{
	struct tg_reply_digest d = digest_of(
	        "{\"type\":\"response.output_text.delta\",\"delta\":\"x\",\"sequence_number\":7}");

	ck_assert_int_eq(d.type, TG_REPLY_TYPE_RESPONSE_EVENT);
	ck_assert(d.has_sequence);
	ck_assert_int_eq(d.sequence, 7);

	d = digest_of("{\"sequence_number\":3,\"sequence_number\":12}");
	ck_assert(d.has_sequence);
	ck_assert_int_eq(d.sequence, 12);

	d = digest_of("{\"sequence_number\":3,\"sequence_number\":\"4\"}");
	ck_assert(!d.has_sequence);

	d = digest_of("{\"sequence_number\":-1}");
	ck_assert(!d.has_sequence);

	d = digest_of("{\"response\":{\"sequence_number\":5}}");
	ck_assert(!d.has_sequence);
}
END_TEST

/* The offsets of a top-level "usage": null, kept only while no other key
 * is named usage. */
START_TEST(null_usage_offsets)
{
	const char *text = "{\"choices\":[], \"usage\" : null }";
	struct tg_reply_digest d = digest_of(text);
	struct evbuffer *buf = evbuffer_new();

	ck_assert_uint_eq(d.null_usage_key_end, strlen("{\"choices\":[], \"usage\""));
	ck_assert_uint_eq(d.null_usage_end, strlen("{\"choices\":[], \"usage\" : null"));

	/* Read in segments of 3 bytes, the offsets are the same. */
	for (size_t at = 0; at < strlen(text); at += 3) {
		struct evbuffer *piece = evbuffer_new();

		evbuffer_add(piece, text + at, strlen(text) - at < 3 ? strlen(text) - at : 3);
		evbuffer_add_buffer(buf, piece);
		evbuffer_free(piece);
	}
	tg_reply_digest_buffer(&d, buf);
	ck_assert_uint_eq(d.null_usage_key_end, strlen("{\"choices\":[], \"usage\""));
	ck_assert_uint_eq(d.null_usage_end, strlen("{\"choices\":[], \"usage\" : null"));
	evbuffer_free(buf);

	d = digest_of("{\"choices\":[{\"usage\":null}],\"usage\":null}");
	ck_assert_uint_eq(d.null_usage_end, 0);
	d = digest_of("{\"usage\":{\"prompt_tokens\":1}}");
	ck_assert_uint_eq(d.null_usage_end, 0);
	d = digest_of("{\"message\":{\"usage\":null}}");
	ck_assert_uint_eq(d.null_usage_end, 0);
}
END_TEST

START_TEST(openai_usage_counts)
{
	struct tg_reply_digest d = digest_of(
	        "{\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":30,"
	        "\"total_tokens\":1230,\"prompt_tokens_details\":{\"cached_tokens\":1024},"
	        "\"completion_tokens_details\":{\"reasoning_tokens\":12}}}");

	ck_assert(d.choices);
	ck_assert_uint_eq(d.n_choices, 0);
	ck_assert_int_eq(d.usage.shape, TG_USAGE_OBJECT);
	ck_assert(tg_usage_has(&d.usage, TG_USAGE_PROMPT_TOKENS));
	ck_assert(!tg_usage_has(&d.usage, TG_USAGE_INPUT_TOKENS));
	ck_assert_uint_eq(d.usage.count[TG_USAGE_PROMPT_TOKENS], 1200);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_COMPLETION_TOKENS], 30);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_CACHED_TOKENS], 1024);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_REASONING_TOKENS], 12);
}
END_TEST

/* A count that is not a positive integer is there, and counts 0. */
START_TEST(counts_that_are_not_positive_integers)
{
	struct tg_reply_digest d = digest_of(
	        "{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.5,"
	        "\"input_tokens\":\"7\",\"output_tokens\":null}}");

	ck_assert(tg_usage_has(&d.usage, TG_USAGE_PROMPT_TOKENS));
	ck_assert(tg_usage_has(&d.usage, TG_USAGE_OUTPUT_TOKENS));
	for (int c = 0; c < TG_USAGE_COUNTS; c++)
		ck_assert_uint_eq(d.usage.count[c], 0);
}
END_TEST

/* Only an integer of 0 or more is readable; a missing count does not
 * make the object unreadable. */
START_TEST(counts_readable_only_as_integers)
{
	struct tg_reply_digest d = digest_of(
	        "{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.5,"
	        "\"input_tokens\":\"7\",\"output_tokens\":null,"
	        "\"cache_read_input_tokens\":0,"
	        "\"prompt_tokens_details\":{\"cached_tokens\":4}}}");

	ck_assert(!tg_usage_readable(&d.usage, TG_USAGE_PROMPT_TOKENS));
	ck_assert(!tg_usage_readable(&d.usage, TG_USAGE_COMPLETION_TOKENS));
	ck_assert(!tg_usage_readable(&d.usage, TG_USAGE_INPUT_TOKENS));
	ck_assert(!tg_usage_readable(&d.usage, TG_USAGE_OUTPUT_TOKENS));
	ck_assert(tg_usage_readable(&d.usage, TG_USAGE_CACHE_READ_INPUT_TOKENS));
	ck_assert(tg_usage_readable(&d.usage, TG_USAGE_CACHED_TOKENS));
	ck_assert(tg_usage_readable(&d.usage, TG_USAGE_REASONING_TOKENS));
}
END_TEST

/* An integer beyond 64 bits is valid JSON: the read goes on, and takes
 * it as a count that is not one. jansson builds no tree of the text, so
 * the detail is not usable. */
START_TEST(count_beyond_64_bits_is_unreadable)
{
	static const char text[] = "{\"choices\":[],\"usage\":{\"prompt_tokens\":"
	                           "18446744073709551617,\"completion_tokens\":5}}";
	struct tg_reply_digest d;
	struct tg_reply_detail x;

	ck_assert_int_eq(tg_reply_digest_detail(&d, &x, text, strlen(text)), 0);
	ck_assert(d.object);
	ck_assert(tg_usage_has(&d.usage, TG_USAGE_PROMPT_TOKENS));
	ck_assert(!tg_usage_readable(&d.usage, TG_USAGE_PROMPT_TOKENS));
	ck_assert_uint_eq(d.usage.count[TG_USAGE_PROMPT_TOKENS], 0);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_COMPLETION_TOKENS], 5);
	ck_assert_int_eq(x.usable, 0);

	/* A real beyond a double's range stays an error, as in jansson. */
	ck_assert_int_eq(tg_reply_digest(&d, "{\"usage\":{\"prompt_tokens\":1e999}}", 33), -1);
}
END_TEST

/* A later member replaces an earlier one, as in a jansson tree. */
START_TEST(later_usage_replaces_earlier)
{
	struct tg_reply_digest d = digest_of(
	        "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},"
	        "\"usage\":{\"prompt_tokens\":10}}");

	ck_assert_uint_eq(d.usage.count[TG_USAGE_PROMPT_TOKENS], 10);
	ck_assert(!tg_usage_has(&d.usage, TG_USAGE_COMPLETION_TOKENS));
	ck_assert_int_eq(digest_of("{\"usage\":{\"prompt_tokens\":1},\"usage\":null}").usage.shape,
	                 TG_USAGE_NULL);
	ck_assert_int_eq(digest_of("{\"usage\":[1]}").usage.shape, TG_USAGE_OTHER);
}
END_TEST

START_TEST(anthropic_events)
{
	struct tg_reply_digest start = digest_of(
	        "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":"
	        "{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}");
	struct tg_reply_digest delta = digest_of(
	        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
	        "\"usage\":{\"output_tokens\":15}}");
	struct tg_reply_digest text = digest_of(
	        "{\"type\":\"content_block_delta\",\"index\":0,"
	        "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}");

	ck_assert_int_eq(start.type, TG_REPLY_TYPE_MESSAGE_START);
	ck_assert_int_eq(start.usage.shape, TG_USAGE_ABSENT);
	ck_assert_int_eq(start.message_usage.shape, TG_USAGE_OBJECT);
	ck_assert_uint_eq(start.message_usage.count[TG_USAGE_INPUT_TOKENS], 25);
	ck_assert_uint_eq(start.message_usage.count[TG_USAGE_CACHE_READ_INPUT_TOKENS], 100);
	ck_assert_int_eq(delta.type, TG_REPLY_TYPE_MESSAGE_DELTA);
	ck_assert(delta.stop_reason);
	ck_assert_uint_eq(delta.usage.count[TG_USAGE_OUTPUT_TOKENS], 15);
	ck_assert_int_eq(text.type, TG_REPLY_TYPE_CONTENT_BLOCK_DELTA);
	ck_assert(!text.output);        /* Anthropic's event type shows output */
	ck_assert_int_eq(digest_of("{\"type\":\"something_new\"}").type, TG_REPLY_TYPE_OTHER);
	ck_assert_int_eq(digest_of("{\"type\":7}").type, TG_REPLY_TYPE_NONE);
}
END_TEST

START_TEST(errors)
{
	ck_assert(digest_of("{\"error\":{\"message\":\"overloaded\"}}").error);
	/* Some OpenAI-compatible servers send "error": null in every chunk. */
	ck_assert(!digest_of("{\"error\":null}").error);
	ck_assert_int_eq(digest_of("{\"type\":\"error\",\"error\":{}}").type, TG_REPLY_TYPE_ERROR);
}
END_TEST

/* Text that is not a JSON object reads as nothing, and -1 marks the
 * texts that are not JSON at all. */
START_TEST(texts_that_are_not_objects)
{
	static const char *const not_json[] = {
		"", "{", "{\"a\":1}}", "{\"a\":1} x", "{'a':1}", "{\"a\":01}",
		"{\"a\":\"\xff\"}", "{\"a\":1e999}",
		"{\"choices\":[{\"text\":\"a\"}] /* c */}",
	};
	struct tg_reply_digest d;

	for (size_t i = 0; i < sizeof(not_json) / sizeof(not_json[0]); i++) {
		ck_assert_msg(tg_reply_digest(&d, not_json[i], strlen(not_json[i])) == -1,
		              "\"%s\" was read as JSON", not_json[i]);
		ck_assert(!d.object && !d.output && !d.choices);
	}
	ck_assert_int_eq(tg_reply_digest(&d, "[1,2]", 5), 0);
	ck_assert(!d.object);
	ck_assert_int_eq(tg_reply_digest(&d, "\"[DONE]\"", 8), 0);
	ck_assert(!d.object);
}
END_TEST

/* Deeper than the frames kept, members are still out of place; deeper
 * than jansson reads, the text is not JSON. */
START_TEST(deep_nesting)
{
	char text[3 * 2100 + 64];
	size_t n = 0;
	struct tg_reply_digest d;

	n += (size_t)sprintf(text + n, "{\"x\":");
	for (int i = 0; i < 40; i++)
		n += (size_t)sprintf(text + n, "{\"usage\":");
	n += (size_t)sprintf(text + n, "{\"prompt_tokens\":3}");
	for (int i = 0; i < 41; i++)
		text[n++] = '}';
	ck_assert_int_eq(tg_reply_digest(&d, text, n), 0);
	ck_assert_int_eq(d.usage.shape, TG_USAGE_ABSENT);

	n = 0;
	for (int i = 0; i < 2100; i++)
		text[n++] = '[';
	for (int i = 0; i < 2100; i++)
		text[n++] = ']';
	ck_assert_int_eq(tg_reply_digest(&d, text, n), -1);
}
END_TEST

/* yajl takes an unterminated string after the value for a token that
 * has yet to end, so text after the object must be checked apart. */
START_TEST(text_after_the_object)
{
	static const char *const after[] = {"\"", " \"x", "\"}}", " x", " 1"};
	static const char object[] = "{\"usage\":{\"input_tokens\":5}}";
	char text[64];
	struct evbuffer *buf = evbuffer_new();
	struct tg_reply_digest d;

	for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
		size_t n = (size_t)snprintf(text, sizeof(text), "%s%s", object, after[i]);

		ck_assert_msg(tg_reply_digest(&d, text, n) == -1, "\"%s\" was read as JSON", text);
		ck_assert(!d.object);

		evbuffer_add(buf, object, sizeof(object) - 1);
		evbuffer_add_reference(buf, after[i], strlen(after[i]), NULL, NULL);
		ck_assert_msg(tg_reply_digest_buffer(&d, buf) == -1, "\"%s\" in two segments was read as JSON",
		              text);
		ck_assert(!d.object);
		evbuffer_drain(buf, evbuffer_get_length(buf));
	}

	evbuffer_add(buf, object, sizeof(object) - 1);
	evbuffer_add_reference(buf, " \r\n\t", 4, NULL, NULL);
	ck_assert_int_eq(tg_reply_digest_buffer(&d, buf), 0);
	ck_assert(d.object);
	evbuffer_free(buf);
}
END_TEST

/* Write inner inside depth arrays into text, and return the length. */
static size_t
nested(char *text, int depth, const char *inner)
{
	size_t n = 0;

	for (int i = 0; i < depth; i++)
		text[n++] = '[';
	n += (size_t)sprintf(text + n, "%s", inner);
	for (int i = 0; i < depth; i++)
		text[n++] = ']';
	return n;
}

/* jansson counts a scalar as one more level than its container. So a
 * number inside 2048 arrays is too deep for it, but 2048 empty arrays are
 * not, and the digest must draw the line at the same place. */
START_TEST(depth_limit_counts_scalars)
{
	static char text[2 * 2048 + 16];
	struct tg_reply_digest d;

	ck_assert_int_eq(tg_reply_digest(&d, text, nested(text, 2048, "")), 0);
	ck_assert_int_eq(tg_reply_digest(&d, text, nested(text, 2047, "1")), 0);
	ck_assert_int_eq(tg_reply_digest(&d, text, nested(text, 2048, "1")), -1);
	ck_assert_int_eq(tg_reply_digest(&d, text, nested(text, 2048, "\"a\"")), -1);
	ck_assert_int_eq(tg_reply_digest(&d, text, nested(text, 2048, "null")), -1);
}
END_TEST

/* A body that arrived in many pieces reads as the same body. */
START_TEST(buffer_in_many_segments)
{
	static const char body[] =
	        "{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"Hi\"},\"finish_reason\":"
	        "\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";
	struct evbuffer *buf = evbuffer_new();
	struct tg_reply_digest d;

	for (size_t i = 0; i < sizeof(body) - 1; i++)
		evbuffer_add_reference(buf, body + i, 1, NULL, NULL);
	ck_assert_int_gt(evbuffer_peek(buf, -1, NULL, NULL, 0), 1);
	ck_assert_int_eq(tg_reply_digest_buffer(&d, buf), 0);
	ck_assert(d.object && d.finish);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_PROMPT_TOKENS], 12);
	ck_assert_uint_eq(d.usage.count[TG_USAGE_COMPLETION_TOKENS], 3);
	ck_assert_uint_eq(evbuffer_get_length(buf), sizeof(body) - 1);

	evbuffer_drain(buf, evbuffer_get_length(buf));
	ck_assert_int_eq(tg_reply_digest_buffer(&d, buf), -1);  /* empty is not JSON */
	evbuffer_free(buf);
}
END_TEST

/* --- a tap --------------------------------------------------------------- */

/* The events a reader saw, written out one per line. A tap that stops
 * after stop_at events, unless that is 0. */
struct event_log {
	char text[1024];
	size_t len;
	int n, stop_at;
};

static int
log_event(struct event_log *log, const char *event, const unsigned char *s, size_t len)
{
	int n = snprintf(log->text + log->len, sizeof(log->text) - log->len, "%s %.*s\n", event,
	                 (int)len, s != NULL ? (const char *)s : "");

	ck_assert_int_lt(n, (int)(sizeof(log->text) - log->len));
	log->len += (size_t)n;
	return ++log->n != log->stop_at;
}

static int
log_null(void *ctx)
{
	return log_event(ctx, "null", NULL, 0);
}

static int
log_boolean(void *ctx, int value)
{
	return log_event(ctx, value ? "true" : "false", NULL, 0);
}

static int
log_integer(void *ctx, long long value)
{
	char s[32];

	return log_event(ctx, "integer", (const unsigned char *)s,
	                 (size_t)snprintf(s, sizeof(s), "%lld", value));
}

static int
log_double(void *ctx, double value)
{
	char s[32];

	return log_event(ctx, "double", (const unsigned char *)s,
	                 (size_t)snprintf(s, sizeof(s), "%g", value));
}

static int
log_string(void *ctx, const unsigned char *s, size_t len)
{
	return log_event(ctx, "string", s, len);
}

static int
log_key(void *ctx, const unsigned char *s, size_t len)
{
	return log_event(ctx, "key", s, len);
}

static int
log_start_map(void *ctx)
{
	return log_event(ctx, "{", NULL, 0);
}

static int
log_end_map(void *ctx)
{
	return log_event(ctx, "}", NULL, 0);
}

static int
log_start_array(void *ctx)
{
	return log_event(ctx, "[", NULL, 0);
}

static int
log_end_array(void *ctx)
{
	return log_event(ctx, "]", NULL, 0);
}

static const yajl_callbacks LOG_CALLBACKS = {
	.yajl_null = log_null,
	.yajl_boolean = log_boolean,
	.yajl_integer = log_integer,
	.yajl_double = log_double,
	.yajl_string = log_string,
	.yajl_start_map = log_start_map,
	.yajl_map_key = log_key,
	.yajl_end_map = log_end_map,
	.yajl_start_array = log_start_array,
	.yajl_end_array = log_end_array,
};

static const char tapped_body[] =
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"content\":\"Hi\\n\","
        "\"refusal\":null,\"parsed\":[true,false,1.5,-2]},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";

/* The tap gets the events that yajl reports to a reader of its own, and
 * the digest is the same as without a tap. */
START_TEST(tap_gets_every_event)
{
	struct evbuffer *buf = evbuffer_new();
	struct event_log *alone = calloc(1, sizeof(*alone));
	struct event_log *tapped = calloc(1, sizeof(*tapped));
	struct tg_reply_tap tap = {&LOG_CALLBACKS, tapped};
	struct tg_reply_digest d, untapped;
	yajl_handle h = yajl_alloc(&LOG_CALLBACKS, NULL, alone);

	ck_assert_int_eq(yajl_parse(h, (const unsigned char *)tapped_body,
	                            sizeof(tapped_body) - 1), yajl_status_ok);
	ck_assert_int_eq(yajl_complete_parse(h), yajl_status_ok);
	yajl_free(h);

	evbuffer_add(buf, tapped_body, sizeof(tapped_body) - 1);
	ck_assert_int_eq(tg_reply_digest_tap_buffer(&d, NULL, buf, &tap), 0);
	ck_assert_int_eq(tg_reply_digest_buffer(&untapped, buf), 0);
	ck_assert_mem_eq(&d, &untapped, sizeof(d));
	ck_assert_int_eq(tapped->n, 34);
	ck_assert_str_eq(tapped->text, alone->text);
	evbuffer_free(buf);
	free(alone);
	free(tapped);
}
END_TEST

/* A tap that stops the read leaves a zeroed digest and an empty detail,
 * and one that takes only some events gets only those. */
START_TEST(tap_stops_read)
{
	static const yajl_callbacks strings_only = {.yajl_string = log_string};
	struct evbuffer *buf = evbuffer_new();
	struct event_log *log = calloc(1, sizeof(*log));
	struct tg_reply_tap tap = {&LOG_CALLBACKS, log};
	struct tg_reply_digest d, zero;
	struct tg_reply_detail x;

	memset(&zero, 0, sizeof(zero));
	evbuffer_add(buf, tapped_body, sizeof(tapped_body) - 1);
	log->stop_at = 4;
	ck_assert_int_eq(tg_reply_digest_tap_buffer(&d, &x, buf, &tap), 1);
	ck_assert_str_eq(log->text, "{ \nkey id\nstring c\nkey choices\n");
	ck_assert_mem_eq(&d, &zero, sizeof(d));
	ck_assert_int_eq(x.usable, 0);
	ck_assert_ptr_null(x.id);

	memset(log, 0, sizeof(*log));
	tap.callbacks = &strings_only;
	ck_assert_int_eq(tg_reply_digest_tap_buffer(&d, &x, buf, &tap), 0);
	ck_assert_str_eq(log->text, "string c\nstring Hi\n\nstring stop\n");
	ck_assert(x.usable);
	ck_assert_str_eq(x.id, "c");
	tg_reply_detail_free(&x);
	evbuffer_free(buf);
	free(log);
}
END_TEST

/* --- the detail ------------------------------------------------------------ */

/* Read text, which must be valid, with a detail that must be usable. */
static void
read_detail(struct tg_reply_detail *x, const char *text)
{
	struct tg_reply_digest d;

	ck_assert_int_eq(tg_reply_digest_detail(&d, x, text, strlen(text)), 0);
	ck_assert_msg(x->usable, "%s: detail not usable", text);
}

/* Strings of every length keep their text, whether they fit in the
 * detail's block or not, and the last of a member wins. */
START_TEST(detail_strings_of_any_length)
{
	char id[301], model[61], text[600];
	struct tg_reply_detail x;

	memset(id, 'i', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	memset(model, 'm', sizeof(model) - 1);
	model[sizeof(model) - 1] = '\0';

	for (size_t len = 0; len < sizeof(id); len += 7) {
		snprintf(text, sizeof(text), "{\"id\":\"first\",\"model\":\"%s\",\"id\":\"%.*s\"}",
		         model, (int)len, id);
		read_detail(&x, text);
		ck_assert_uint_eq(strlen(x.id), len);
		ck_assert_int_eq(strncmp(x.id, id, len), 0);
		ck_assert_str_eq(x.model, model);
		tg_reply_detail_free(&x);
	}

	read_detail(&x, "{\"id\":\"a\",\"id\":null,\"model\":\"b\",\"model\":3}");
	ck_assert_ptr_null(x.id);
	ck_assert_ptr_null(x.model);
	tg_reply_detail_free(&x);
}
END_TEST

/* Every choice keeps its place, index and finish reason, past the first
 * few that the detail's block holds, known reasons or not. */
START_TEST(detail_many_choices)
{
	static const char *const reasons[] = {
		"stop", "length", "tool_calls", "content_filter", "function_call",
		"end_turn", "", "stop_sequence_with_a_long_name", NULL,
	};
	const size_t n = sizeof(reasons) / sizeof(reasons[0]);
	char text[2000];
	size_t len;
	struct tg_reply_detail x;

	len = (size_t)snprintf(text, sizeof(text), "{\"choices\":[{\"finish_reason\":\"x\"}],"
	                       "\"choices\":[");
	for (size_t i = 0; i < n; i++) {
		len += (size_t)snprintf(text + len, sizeof(text) - len,
		                        "%s{\"index\":%zu,\"finish_reason\":\"replaced\","
		                        "\"finish_reason\":%s%s%s}", i ? "," : "", n - 1 - i,
		                        reasons[i] ? "\"" : "", reasons[i] ? reasons[i] : "null",
		                        reasons[i] ? "\"" : "");
	}
	snprintf(text + len, sizeof(text) - len, "]}");

	read_detail(&x, text);
	ck_assert_uint_eq(x.n_choices, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(x.choices[i].position, i);
		ck_assert_int_eq(x.choices[i].index, (int64_t)(n - 1 - i));
		if (reasons[i] == NULL)
			ck_assert_ptr_null(x.choices[i].finish_reason);
		else
			ck_assert_str_eq(x.choices[i].finish_reason, reasons[i]);
	}
	ck_assert_ptr_eq(x.choices[0].finish_reason, tg_known_finish_reason("stop", 4));
	tg_reply_detail_free(&x);
}
END_TEST

/* A string or key that jansson rejects costs the detail only the member
 * it is. UTF-8 without a NUL, escaped or not, is kept. An overlong form,
 * an encoded surrogate, a code point past U+10FFFF or a NUL, all of which
 * yajl takes, leaves that id out and keeps the model. It is the same
 * when the text comes in two pieces split anywhere, so that a string is
 * read from one piece of the text or from yajl's buffer when it straddles
 * two. */
START_TEST(detail_drops_only_rejected_strings)
{
	static const struct {
		const char *text;
		const char *id;         /* expected; NULL: left out */
	} cases[] = {
		{"{\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[]}", "chatcmpl-1"},
		{"{\"id\":\"caf\xc3\xa9\",\"model\":\"m\"}", "caf\xc3\xa9"},
		{"{\"id\":\"a\\n\\u00e9\",\"model\":\"m\"}", "a\n\xc3\xa9"},
		{"{\"id\":\"a\xc0\xaf\",\"model\":\"m\"}", NULL},
		{"{\"id\":\"a\xed\xa0\x80\",\"model\":\"m\"}", NULL},
		{"{\"id\":\"a\xf4\x90\x80\x80\",\"model\":\"m\"}", NULL},
		{"{\"id\":\"a\\u0000\",\"model\":\"m\"}", NULL},
		{"{\"k\xc0\xaf\":1,\"id\":\"b\",\"model\":\"m\"}", "b"},
		{"{\"k\\u0000\":1,\"id\":\"b\",\"model\":\"m\"}", "b"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *text = cases[i].text;
		size_t len = strlen(text);

		for (size_t at = 0; at <= len; at++) {
			struct evbuffer *buf = evbuffer_new();
			struct tg_reply_digest d;
			struct tg_reply_detail x;

			evbuffer_add_reference(buf, text, at, NULL, NULL);
			evbuffer_add_reference(buf, text + at, len - at, NULL, NULL);
			ck_assert_int_eq(tg_reply_digest_detail_buffer(&d, &x, buf), 0);
			ck_assert_msg(x.usable, "%s split at %zu: not usable", text, at);
			if (cases[i].id == NULL)
				ck_assert_msg(x.id == NULL, "%s split at %zu: id kept", text, at);
			else
				ck_assert_str_eq(x.id, cases[i].id);
			ck_assert_msg(x.model != NULL && strcmp(x.model, "m") == 0,
			              "%s split at %zu: model lost", text, at);
			tg_reply_detail_free(&x);
			evbuffer_free(buf);
		}
	}
}
END_TEST

/* A finish reason that jansson rejects is left out of its choice alone. */
START_TEST(detail_drops_rejected_finish_reason)
{
	struct tg_reply_detail x;

	read_detail(&x, "{\"choices\":[{\"index\":0,\"finish_reason\":\"st\\u0000op\"},"
	            "{\"index\":1,\"finish_reason\":\"length\"}],"
	            "\"usage\":{\"prompt_tokens\":3}}");
	ck_assert_uint_eq(x.n_choices, 2);
	ck_assert_ptr_null(x.choices[0].finish_reason);
	ck_assert_str_eq(x.choices[1].finish_reason, "length");
	ck_assert_uint_eq(x.usage_integer, 1u << TG_USAGE_PROMPT_TOKENS);
	ck_assert_int_eq(x.usage[TG_USAGE_PROMPT_TOKENS], 3);
	tg_reply_detail_free(&x);
}
END_TEST

/* --- the relay's classification ------------------------------------------- */

static const struct {
	const char *type;       /* the SSE event type, or NULL */
	const char *data;
	enum tg_event_kind kind;
	int finish;
} events[] = {
	{NULL, "[DONE]", TG_EVENT_DONE, 0},
	{"error", "{\"message\":\"x\"}", TG_EVENT_ERROR, 0},
	{NULL, "{\"error\":{\"message\":\"x\"}}", TG_EVENT_ERROR, 0},
	{NULL, "not json", TG_EVENT_CONTENT, 0},
	{NULL, "{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", TG_EVENT_EMPTY, 0},
	{NULL, "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}", TG_EVENT_CONTENT, 0},
	{NULL, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}", TG_EVENT_CONTENT, 1},
	{NULL, "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", TG_EVENT_CONTENT, 0},
	{NULL, "{\"type\":\"message_start\",\"message\":{}}", TG_EVENT_EMPTY, 0},
	{NULL, "{\"type\":\"ping\"}", TG_EVENT_EMPTY, 0},
	{NULL, "{\"type\":\"content_block_delta\",\"delta\":{\"text\":\"a\"}}", TG_EVENT_CONTENT, 0},
	{NULL, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}",
	 TG_EVENT_CONTENT, 1},
	{NULL, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null}}", TG_EVENT_CONTENT, 0},
	{NULL, "{\"type\":\"message_stop\"}", TG_EVENT_DONE, 0},
	{NULL, "{\"type\":\"error\",\"error\":{}}", TG_EVENT_ERROR, 0},
	{NULL, "{\"object\":\"something\"}", TG_EVENT_CONTENT, 0},
};

START_TEST(relay_classifies_events)
{
	struct tg_sse_event sse = {0};
	struct tg_reply_digest d;
	int finish;

	sse.type = events[_i].type;
	sse.type_len = sse.type ? strlen(sse.type) : 0;
	sse.data = events[_i].data;
	sse.data_len = strlen(events[_i].data);
	ck_assert_int_eq(tg_relay_classify(&sse, &d, NULL, &finish), events[_i].kind);
	ck_assert_int_eq(finish, events[_i].finish);
}
END_TEST

/* The tree is built once, when asked for, without the member the metrics
 * took out of the bytes. */
START_TEST(event_tree_built_on_demand)
{
	static const char data[] = "{\"choices\":[],\"usage\":null}";
	struct tg_stream_event ev = {.data = data, .data_len = sizeof(data) - 1};
	json_t *tree;

	ev.usage_stripped = 1;
	tree = tg_stream_event_json(&ev);
	ck_assert_ptr_nonnull(tree);
	ck_assert_ptr_null(json_object_get(tree, "usage"));
	ck_assert_ptr_nonnull(json_object_get(tree, "choices"));
	ck_assert_ptr_null(ev.data);
	ck_assert_ptr_eq(tg_stream_event_json(&ev), tree);
	json_decref(tree);

	ev = (struct tg_stream_event){.data = "[1]", .data_len = 3};
	ck_assert_ptr_null(tg_stream_event_json(&ev));
}
END_TEST

/* The tree check that the cache and the relay share: an "error" member
 * reports an error unless it is null. */
START_TEST(tree_error_member)
{
	static const struct {
		const char *text;
		int error;
	} cases[] = {
		{"{\"error\":{\"message\":\"bad\"}}", 1},
		{"{\"error\":\"bad\"}", 1},
		{"{\"error\":false}", 1},
		{"{\"error\":null,\"choices\":[]}", 0},
		{"{\"choices\":[]}", 0},
		{"[{\"error\":{}}]", 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *tree = json_loads(cases[i].text, 0, NULL);

		ck_assert_ptr_nonnull(tree);
		ck_assert_msg(tg_reply_tree_has_error(tree) == cases[i].error, "%s", cases[i].text);
		json_decref(tree);
	}
	ck_assert_int_eq(tg_reply_tree_has_error(NULL), 0);
}
END_TEST

static Suite *
reply_digest_suite(void)
{
	Suite *s = suite_create("reply-digest");
	TCase *shapes = tcase_create("shapes");
	TCase *tap = tcase_create("tap");
	TCase *detail = tcase_create("detail");
	TCase *relay = tcase_create("relay");

	tcase_add_test(shapes, openai_content_chunk);
	tcase_add_test(shapes, null_usage_offsets);
	tcase_add_test(shapes, openai_role_and_finish_chunks);
	tcase_add_test(shapes, outputs_other_than_content);
	tcase_add_test(shapes, members_out_of_place_are_ignored);
	tcase_add_test(shapes, responses_sequence_number);
	tcase_add_test(shapes, openai_usage_counts);
	tcase_add_test(shapes, counts_that_are_not_positive_integers);
	tcase_add_test(shapes, counts_readable_only_as_integers);
	tcase_add_test(shapes, count_beyond_64_bits_is_unreadable);
	tcase_add_test(shapes, later_usage_replaces_earlier);
	tcase_add_test(shapes, anthropic_events);
	tcase_add_test(shapes, errors);
	tcase_add_test(shapes, tree_error_member);
	tcase_add_test(shapes, texts_that_are_not_objects);
	tcase_add_test(shapes, text_after_the_object);
	tcase_add_test(shapes, deep_nesting);
	tcase_add_test(shapes, depth_limit_counts_scalars);
	tcase_add_test(shapes, buffer_in_many_segments);
	tcase_add_test(tap, tap_gets_every_event);
	tcase_add_test(tap, tap_stops_read);
	tcase_add_test(detail, detail_strings_of_any_length);
	tcase_add_test(detail, detail_many_choices);
	tcase_add_test(detail, detail_drops_only_rejected_strings);
	tcase_add_test(detail, detail_drops_rejected_finish_reason);
	tcase_add_loop_test(relay, relay_classifies_events, 0, sizeof(events) / sizeof(events[0]));
	tcase_add_test(relay, event_tree_built_on_demand);
	suite_add_tcase(s, shapes);
	suite_add_tcase(s, tap);
	suite_add_tcase(s, detail);
	suite_add_tcase(s, relay);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(reply_digest_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
