/*
 * Unit tests for the chunk reader of the stream filters: the texts of a
 * chunk with their places in the data, their order, and the data it
 * leaves to jansson because yajl may read it otherwise.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter-chunk.h"
#include "reply-digest.h"

/* Read data, which must be a JSON object to the reply digest, as the
 * stream filters do. */
static enum tg_chunk_result
read_chunk(struct tg_chunk *c, const char *data)
{
	struct tg_reply_digest d;

	ck_assert_int_eq(tg_reply_digest(&d, data, strlen(data)), 0);
	ck_assert(d.object);
	return tg_chunk_read(c, data, strlen(data));
}

/* Check text i of c: its choice, kind, tool, decoded bytes and string. */
static void
check_text(const struct tg_chunk *c, const char *data, size_t i, size_t choice,
           enum tg_chunk_kind kind, long tool, const char *text, const char *json)
{
	const struct tg_chunk_text *t = &c->texts[i];

	ck_assert_uint_lt(i, c->n_texts);
	ck_assert_uint_eq(t->choice, choice);
	ck_assert_int_eq(t->kind, kind);
	if (kind == TG_CHUNK_ARGUMENTS)
		ck_assert_int_eq(t->tool, tool);
	ck_assert_uint_eq(t->len, strlen(text));
	ck_assert(memcmp(c->buf + t->text, text, t->len) == 0);
	ck_assert_uint_eq(t->end - t->at, strlen(json));
	ck_assert(memcmp(data + t->at, json, t->end - t->at) == 0);
}

/* A text with escapes, between members with escapes, and an index after
 * the delta: the string is found where it is, quotes included. */
START_TEST(text_placed_among_escapes)
{
	const char *data = "{\"id\":\"a\\\"b\\\\\" , \"choices\" : [ {\"delta\": {\"role\":\"x\\\"\","
	                   "\"content\" :  \"x\\\"y\\u00e9z\\n\"}, \"index\": 3} ],"
	                   "\"model\":\"m\\t\\\"\"}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_int_eq(c.choices[0].index, 3);
	ck_assert_int_eq(c.choices[0].finished, 0);
	ck_assert_uint_eq(c.n_texts, 1);
	check_text(&c, data, 0, 0, TG_CHUNK_CONTENT, 0, "x\"y\xc3\xa9z\n",
	           "\"x\\\"y\\u00e9z\\n\"");
	tg_chunk_free(&c);
}
END_TEST

/* Several choices and tool calls in one chunk: texts come by choice, then
 * content, refusal, text, arguments, and a call's index may follow its
 * function. Choices that are not objects count for positions only. */
START_TEST(texts_in_filter_order)
{
	const char *data =
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"A\"},"
		"\"index\":5},{\"index\":2,\"function\":{\"name\":\"f\",\"arguments\":\"B\"}},"
		"{\"function\":{\"arguments\":\"C\"}}],\"content\":\"D\",\"refusal\":\"E\"},"
		"\"text\":\"F\",\"index\":0},7,{\"text\":\"G\",\"finish_reason\":\"stop\"},"
		"{\"index\":1.0,\"finish_reason\":null,\"delta\":{\"content\":null}}]}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 3);
	ck_assert_int_eq(c.choices[0].index, 0);
	ck_assert_int_eq(c.choices[1].index, 2);
	ck_assert_int_eq(c.choices[1].finished, 1);
	ck_assert_int_eq(c.choices[2].index, 3);
	ck_assert_int_eq(c.choices[2].finished, 0);
	ck_assert_uint_eq(c.n_texts, 7);
	check_text(&c, data, 0, 0, TG_CHUNK_CONTENT, 0, "D", "\"D\"");
	check_text(&c, data, 1, 0, TG_CHUNK_REFUSAL, 0, "E", "\"E\"");
	check_text(&c, data, 2, 0, TG_CHUNK_TEXT, 0, "F", "\"F\"");
	check_text(&c, data, 3, 0, TG_CHUNK_ARGUMENTS, 5, "A", "\"A\"");
	check_text(&c, data, 4, 0, TG_CHUNK_ARGUMENTS, 2, "B", "\"B\"");
	check_text(&c, data, 5, 0, TG_CHUNK_ARGUMENTS, 2, "C", "\"C\"");
	check_text(&c, data, 6, 1, TG_CHUNK_TEXT, 0, "G", "\"G\"");
	tg_chunk_free(&c);
}
END_TEST

/* Members outside the shape are not texts, though they have the names. */
START_TEST(texts_only_in_shape)
{
	const char *data = "{\"content\":\"a\",\"delta\":{\"content\":\"b\"},"
	                   "\"choices\":[{\"message\":{\"content\":\"c\"},\"delta\":[\"d\"],"
	                   "\"x\":{\"text\":\"e\"}}],\"text\":\"f\"}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_uint_eq(c.n_texts, 0);
	tg_chunk_free(&c);
}
END_TEST

/* Anthropic events: the texts of a block start and of each delta type,
 * in a choice that is the content block, with the event's index, also
 * when the index comes after the delta. */
START_TEST(anthropic_texts)
{
	static const struct {
		const char *data;
		long index;
		enum tg_chunk_kind kind;
		const char *text, *json;
	} events[] = {
		{"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
		 "{\"type\":\"text\",\"text\":\"Hi\"}}", 0, TG_CHUNK_CONTENT, "Hi", "\"Hi\""},
		{"{\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
		 "{\"type\":\"thinking\",\"thinking\":\"\"}}", 1, TG_CHUNK_THINKING, "", "\"\""},
		{"{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\","
		 "\"text\":\"he\\\"llo\"}}", 2, TG_CHUNK_CONTENT, "he\"llo", "\"he\\\"llo\""},
		{"{\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": \"},"
		 "\"type\":\"content_block_delta\",\"index\":4}", 4, TG_CHUNK_INPUT_JSON,
		 "{\"a\": ", "\"{\\\"a\\\": \""},
		{"{\"type\":\"content_block_delta\",\"index\":5,\"delta\":{\"type\":\"thinking_delta\","
		 "\"thinking\":\"so \\u00e9\"}}", 5, TG_CHUNK_THINKING, "so \xc3\xa9",
		 "\"so \\u00e9\""},
	};
	struct tg_chunk c = {0};

	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		ck_assert_int_eq(read_chunk(&c, events[i].data), TG_CHUNK_READ);
		ck_assert_uint_eq(c.n_choices, 1);
		ck_assert_int_eq(c.choices[0].index, events[i].index);
		ck_assert_int_eq(c.choices[0].finished, 0);
		ck_assert_uint_eq(c.n_texts, 1);
		check_text(&c, events[i].data, 0, 0, events[i].kind, 0, events[i].text,
		           events[i].json);
	}
	tg_chunk_free(&c);
}
END_TEST

/* message_start's blocks are choices by position; the strings inside a
 * tool_use input and a citation are values, each read on its own. */
START_TEST(anthropic_message_start_and_values)
{
	const char *start = "{\"type\":\"message_start\",\"message\":{\"content\":["
	                    "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"tool_use\","
	                    "\"input\":{\"k\":[\"b\",1]}}]}}";
	const char *block = "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":"
	                    "{\"type\":\"tool_use\",\"input\":{\"k\":{\"j\":\"c\"}}}}";
	const char *cite = "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
	                   "\"citations_delta\",\"citation\":{\"cited_text\":\"d\"}}}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, start), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 2);
	ck_assert_int_eq(c.choices[0].index, 0);
	ck_assert_int_eq(c.choices[1].index, 1);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, start, 0, 0, TG_CHUNK_CONTENT, 0, "a", "\"a\"");
	check_text(&c, start, 1, 1, TG_CHUNK_VALUE, 0, "b", "\"b\"");

	ck_assert_int_eq(read_chunk(&c, block), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_int_eq(c.choices[0].index, 2);
	ck_assert_uint_eq(c.n_texts, 1);
	check_text(&c, block, 0, 0, TG_CHUNK_VALUE, 0, "c", "\"c\"");

	ck_assert_int_eq(read_chunk(&c, cite), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 1);
	ck_assert_int_eq(c.choices[0].index, 1);
	check_text(&c, cite, 0, 0, TG_CHUNK_VALUE, 0, "d", "\"d\"");
	tg_chunk_free(&c);
}
END_TEST

/* A chat audio reply's transcript is a streamed text of its own; its
 * audio data is not. */
START_TEST(audio_transcript_read)
{
	const char *data = "{\"choices\":[{\"index\":0,\"delta\":{\"audio\":{\"id\":\"a\","
	                   "\"data\":\"UklG\",\"transcript\":\"hi\"},\"content\":\"c\"}}]}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, data, 0, 0, TG_CHUNK_CONTENT, 0, "c", "\"c\"");
	check_text(&c, data, 1, 0, TG_CHUNK_TRANSCRIPT, 0, "hi", "\"hi\"");
	ck_assert_int_eq(c.odd_text, 0);
	tg_chunk_free(&c);
}
END_TEST

/* The blocks of content_block_start and message_start are read by the
 * member tables of a body: a server tool's output, a fetched document's
 * title and text, a file the text editor viewed, each a value. A block's
 * name, ids and base64 data are not texts. */
START_TEST(anthropic_blocks_read_as_bodies)
{
	const char *bash = "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
	                   "{\"type\":\"bash_code_execution_tool_result\",\"tool_use_id\":\"t\","
	                   "\"content\":{\"type\":\"bash_code_execution_result\",\"stdout\":\"o\","
	                   "\"stderr\":\"e\",\"return_code\":0,\"content\":[]}}}";
	const char *fetch = "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":"
	                    "{\"type\":\"web_fetch_tool_result\",\"content\":{\"type\":"
	                    "\"web_fetch_result\",\"url\":\"u\",\"content\":{\"type\":\"document\","
	                    "\"title\":\"t\",\"source\":{\"type\":\"text\",\"data\":\"d\"}}}}}";
	const char *pdf = "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
	                  "{\"type\":\"server_tool_use\",\"name\":\"n\",\"content\":{\"content\":"
	                  "{\"source\":{\"type\":\"base64\",\"data\":\"JVBE\"}}}}}";
	const char *start = "{\"type\":\"message_start\",\"message\":{\"content\":[{\"type\":"
	                    "\"text\",\"text\":\"a\"},{\"type\":"
	                    "\"text_editor_code_execution_tool_result\",\"content\":{\"type\":"
	                    "\"text_editor_code_execution_view_result\",\"content\":\"v\"}}]}}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, bash), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_int_eq(c.choices[0].index, 1);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, bash, 0, 0, TG_CHUNK_VALUE, 0, "o", "\"o\"");
	check_text(&c, bash, 1, 0, TG_CHUNK_VALUE, 0, "e", "\"e\"");

	ck_assert_int_eq(read_chunk(&c, fetch), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, fetch, 0, 0, TG_CHUNK_VALUE, 0, "t", "\"t\"");
	check_text(&c, fetch, 1, 0, TG_CHUNK_VALUE, 0, "d", "\"d\"");

	ck_assert_int_eq(read_chunk(&c, pdf), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 0);

	ck_assert_int_eq(read_chunk(&c, start), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 2);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, start, 0, 0, TG_CHUNK_CONTENT, 0, "a", "\"a\"");
	check_text(&c, start, 1, 1, TG_CHUNK_VALUE, 0, "v", "\"v\"");
	tg_chunk_free(&c);
}
END_TEST

/* An error's param, and an error given as a string, are values of the
 * event, which has no choice. */
START_TEST(error_param_and_string)
{
	const char *object = "{\"error\":{\"message\":\"m\",\"param\":\"p\",\"code\":null}}";
	const char *string = "{\"error\":\"s\"}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, object), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, object, 0, 0, TG_CHUNK_VALUE, 0, "m", "\"m\"");
	check_text(&c, object, 1, 0, TG_CHUNK_VALUE, 0, "p", "\"p\"");

	ck_assert_int_eq(read_chunk(&c, string), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_uint_eq(c.n_texts, 1);
	check_text(&c, string, 0, 0, TG_CHUNK_VALUE, 0, "s", "\"s\"");
	tg_chunk_free(&c);
}
END_TEST

/* content_block_stop finishes its block; the other events carry no text
 * the filters read, whatever members they have. */
START_TEST(anthropic_stop_and_other_events)
{
	static const char *const others[] = {
		"{\"type\":\"message_start\",\"message\":{\"id\":\"msg\",\"content\":"
		"[],\"text\":\"x\",\"usage\":{\"input_tokens\":3}}}",
		"{\"type\":\"ping\"}",
		"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
		"\"text\":[\"x\"]},\"usage\":{\"output_tokens\":2}}",
		"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
		"\"signature_delta\",\"signature\":\"s\"}}",
		"{\"type\":\"message_stop\"}",
	};
	const char *stop = "{\"type\":\"content_block_stop\",\"index\":3}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, stop), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_int_eq(c.choices[0].index, 3);
	ck_assert_int_eq(c.choices[0].finished, 1);
	ck_assert_uint_eq(c.n_texts, 0);

	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		ck_assert_int_eq(read_chunk(&c, others[i]), TG_CHUNK_READ);
		ck_assert_uint_eq(c.n_texts, 0);
		for (size_t k = 0; k < c.n_choices; k++)
			ck_assert_int_eq(c.choices[k].finished, 0);
	}
	tg_chunk_free(&c);
}
END_TEST

/* The arguments of the legacy function_call are a text of their own kind,
 * after those of the tool calls. */
START_TEST(function_call_read)
{
	const char *data =
		"{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"f\","
		"\"arguments\":\"A\"},\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":"
		"\"B\"}}]}}]}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 2);
	check_text(&c, data, 0, 0, TG_CHUNK_ARGUMENTS, 1, "B", "\"B\"");
	check_text(&c, data, 1, 0, TG_CHUNK_FUNCTION_CALL, 0, "A", "\"A\"");
	tg_chunk_free(&c);
}
END_TEST

/* "" is no finish_reason: some servers send it on every chunk. */
START_TEST(empty_finish_reason)
{
	const char *data = "{\"choices\":[{\"index\":0,\"finish_reason\":\"\"},"
	                   "{\"index\":1,\"finish_reason\":\"length\"}]}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 2);
	ck_assert_int_eq(c.choices[0].finished, 0);
	ck_assert_int_eq(c.choices[1].finished, 1);
	tg_chunk_free(&c);
}
END_TEST

/* An index that is not an integer from 0 to TG_CHUNK_MAX_INDEX, where
 * texts are keyed by it, and indexes elsewhere or within the bounds. */
static const struct {
	const char *data;
	int bad;
} indexes[] = {
	{"{\"choices\":[{\"index\":1.0}]}", 1},
	{"{\"choices\":[{\"index\":1e0}]}", 1},
	{"{\"choices\":[{\"index\":\"1\"}]}", 1},
	{"{\"choices\":[{\"index\":-1}]}", 1},
	{"{\"choices\":[{\"index\":null}]}", 1},
	{"{\"choices\":[{\"index\":[1]}]}", 1},
	{"{\"choices\":[{\"index\":2147483648}]}", 1},
	{"{\"choices\":[{\"index\":18446744073709551617}]}", 1},
	{"{\"choices\":[],\"usage\":{\"prompt_tokens\":18446744073709551617}}", 0},
	{"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0.0}]}}]}", 1},
	{"{\"type\":\"content_block_delta\",\"index\":true}", 1},
	{"{\"choices\":[{\"index\":2147483647,\"x\":{\"index\":1.5}}]}", 0},
	{"{\"choices\":[{\"delta\":{\"index\":\"a\"},\"logprobs\":{\"index\":-1}}]}", 0},
};

START_TEST(index_not_integer)
{
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, indexes[_i].data), TG_CHUNK_READ);
	ck_assert_int_eq(c.bad_index, indexes[_i].bad);
	tg_chunk_free(&c);
}
END_TEST

/* Each part of a content array gives its "text" as content and its
 * "refusal" as a refusal, whatever its "type". */
START_TEST(content_parts_read)
{
	const char *data =
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"B\"},"
		"{\"type\":\"refusal\",\"refusal\":\"C\"},{\"text\":\"D\"}]}}]}";
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 3);
	check_text(&c, data, 0, 0, TG_CHUNK_CONTENT, 0, "B", "\"B\"");
	check_text(&c, data, 1, 0, TG_CHUNK_CONTENT, 0, "D", "\"D\"");
	check_text(&c, data, 2, 0, TG_CHUNK_REFUSAL, 0, "C", "\"C\"");
	tg_chunk_free(&c);
}
END_TEST

/* Data the reader reads as jansson does. */
static const char *const sure[] = {
	"{\"x\":[{\"k\":1},{\"k\":1}],\"k\":{\"k\":2}}",      /* one key per object */
	"{\"choices\":[]}",
	"{\"a\":\"\\\\ud800\"}",        /* an escaped backslash, then "ud800" */
	"{\"a\":\"\\u00e9\\uD7FF\\uE000\"}",
};

START_TEST(read_sure)
{
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, sure[_i]), TG_CHUNK_READ);
	tg_chunk_free(&c);
}
END_TEST

/* Data that jansson may read otherwise, or reject, so it must decide. */
static const char *const unsure[] = {
	"{\"a\":1,\"a\":2}",
	"{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"y\"}}]}",
	"{\"x\":[{\"k\":1,\"k\":1}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}",
	"{\"\\u0000\":1}",
	"{\"choices\":[{\"text\":\"\\ud800\"}]}",
	"{\"choices\":[{\"text\":\"\\uDC00x\"}]}",
	"{\"choices\":[{\"text\":\"\\ud800\\u0041\"}]}",
	"{\"\\u0063hoices\":[]}",
	"{\"a\":1,\f\"b\":2}",
	"{\"a\":1,\v\"b\":2}",
	"{\"choices\":[{\"text\":\"\xed\xa0\x80\"}]}",      /* an encoded surrogate */
	"{\"choices\":[{\"text\":\"\xc0\xaf\"}]}",          /* overlong */
	"{\"k\":\"\xf4\x90\x80\x80\"}",                     /* past U+10FFFF */
	"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"text\":\"a\",\"text\":\"b\"}}",
};

START_TEST(read_unsure)
{
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, unsure[_i]), TG_CHUNK_UNSURE);
	tg_chunk_free(&c);
}
END_TEST

/* An object with many keys, or deep nesting, leaves the key check to
 * jansson; the texts are still read. */
START_TEST(read_large_unsure)
{
	char data[1024] = "{\"choices\":[{\"text\":\"t\"}]";
	struct tg_chunk c = {0};
	size_t len;

	for (int i = 0; i < 40; i++)
		snprintf(data + strlen(data), sizeof(data) - strlen(data), ",\"k%d\":%d", i, i);
	strcat(data, "}");
	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_UNSURE);
	ck_assert_uint_eq(c.n_texts, 1);

	strcpy(data, "{\"choices\":[{\"text\":\"t\"}],\"deep\":");
	len = strlen(data);
	for (int i = 0; i < 40; i++)
		data[len++] = '[';
	for (int i = 0; i < 40; i++)
		data[len++] = ']';
	strcpy(data + len, "}");
	ck_assert_int_eq(read_chunk(&c, data), TG_CHUNK_UNSURE);
	ck_assert_uint_eq(c.n_texts, 1);
	tg_chunk_free(&c);
}
END_TEST

/* One reader reads chunk after chunk, and each read drops the last. */
START_TEST(reused_between_reads)
{
	struct tg_chunk c = {0};

	ck_assert_int_eq(read_chunk(&c, "{\"choices\":[{\"text\":\"one\"},{\"text\":\"two\"}]}"),
	                 TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_texts, 2);
	ck_assert_int_eq(read_chunk(&c, "{\"choices\":[{\"index\":4,\"text\":\"three\"}]}"),
	                 TG_CHUNK_READ);
	ck_assert_uint_eq(c.n_choices, 1);
	ck_assert_int_eq(c.choices[0].index, 4);
	ck_assert_uint_eq(c.n_texts, 1);
	ck_assert_uint_eq(c.texts[0].text, 0);
	ck_assert(memcmp(c.buf, "three", 5) == 0);
	tg_chunk_free(&c);
}
END_TEST

static Suite *
filter_chunk_suite(void)
{
	Suite *s = suite_create("filter_chunk");
	TCase *tc = tcase_create("read");

	tcase_add_test(tc, text_placed_among_escapes);
	tcase_add_test(tc, texts_in_filter_order);
	tcase_add_test(tc, texts_only_in_shape);
	tcase_add_test(tc, anthropic_texts);
	tcase_add_test(tc, anthropic_stop_and_other_events);
	tcase_add_test(tc, anthropic_message_start_and_values);
	tcase_add_test(tc, audio_transcript_read);
	tcase_add_test(tc, anthropic_blocks_read_as_bodies);
	tcase_add_test(tc, error_param_and_string);
	tcase_add_test(tc, function_call_read);
	tcase_add_test(tc, empty_finish_reason);
	tcase_add_loop_test(tc, index_not_integer, 0, (int)(sizeof(indexes) / sizeof(indexes[0])));
	tcase_add_test(tc, content_parts_read);
	tcase_add_loop_test(tc, read_sure, 0, (int)(sizeof(sure) / sizeof(sure[0])));
	tcase_add_loop_test(tc, read_unsure, 0, (int)(sizeof(unsure) / sizeof(unsure[0])));
	tcase_add_test(tc, read_large_unsure);
	tcase_add_test(tc, reused_between_reads);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(filter_chunk_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
