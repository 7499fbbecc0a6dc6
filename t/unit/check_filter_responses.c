/*
 * Unit tests for the reader of Responses API stream events: the texts it
 * keys by item, kind and part, the texts of their own, the events it
 * leaves unread, and indexes it cannot place.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "filter-responses.h"

static json_t *
load(const char *data)
{
	json_t *event = json_loads(data, 0, NULL);

	ck_assert_ptr_nonnull(event);
	return event;
}

/* Check text i of r: its key, role and string. */
static void
check_text(const struct tg_responses_event *r, size_t i, enum tg_chunk_kind kind, long item,
           long part, enum tg_responses_role role, const char *text)
{
	const struct tg_responses_text *t = &r->texts[i];

	ck_assert_uint_lt(i, r->n_texts);
	ck_assert_int_eq(t->kind, kind);
	ck_assert_int_eq(t->item, item);
	ck_assert_int_eq(t->part, part);
	ck_assert_int_eq(t->role, role);
	ck_assert_str_eq(json_string_value(t->string), text);
}

START_TEST(deltas_keyed)
{
	static const struct {
		const char *data;
		enum tg_chunk_kind kind;
		long item, part;
	} cases[] = {
		{"{\"type\":\"response.output_text.delta\",\"output_index\":2,\"content_index\":1,"
		 "\"delta\":\"x\",\"obfuscation\":\"pad\"}", TG_CHUNK_CONTENT, 2, 1},
		{"{\"type\":\"response.refusal.delta\",\"output_index\":0,\"content_index\":3,"
		 "\"delta\":\"x\"}", TG_CHUNK_REFUSAL, 0, 3},
		{"{\"type\":\"response.function_call_arguments.delta\",\"output_index\":4,"
		 "\"delta\":\"x\"}", TG_CHUNK_ARGUMENTS, 4, 0},
		{"{\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":1,"
		 "\"summary_index\":2,\"delta\":\"x\"}", TG_CHUNK_REASONING, 1, 2},
	};
	struct tg_responses_event r = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *event = load(cases[i].data);

		ck_assert_int_eq(tg_responses_read(&r, event), 0);
		ck_assert_ptr_null(r.unread);
		ck_assert_int_eq(r.bad_index, 0);
		ck_assert_uint_eq(r.n_texts, 1);
		check_text(&r, 0, cases[i].kind, cases[i].item, cases[i].part, TG_RESPONSES_APPEND,
		           "x");
		json_decref(event);
	}
	tg_responses_free(&r);
}
END_TEST

/* An item repeats its texts whole: the streamed ones keyed, an
 * annotation's title as a text of its own. */
START_TEST(item_done_keyed)
{
	json_t *event = load("{\"type\":\"response.output_item.done\",\"output_index\":3,"
	                     "\"item\":{\"type\":\"message\",\"content\":["
	                     "{\"type\":\"output_text\",\"text\":\"a\",\"annotations\":"
	                     "[{\"type\":\"url_citation\",\"title\":\"t\",\"url\":\"u\"}]},"
	                     "{\"type\":\"refusal\",\"refusal\":\"b\"}]}}");
	struct tg_responses_event r = {0};

	ck_assert_int_eq(tg_responses_read(&r, event), 0);
	ck_assert_ptr_null(r.unread);
	ck_assert_int_eq(r.ends_item, 3);
	ck_assert_int_eq(r.ends_response, 0);
	ck_assert_uint_eq(r.n_texts, 3);
	check_text(&r, 0, TG_CHUNK_CONTENT, 3, 0, TG_RESPONSES_WHOLE, "a");
	check_text(&r, 1, TG_CHUNK_VALUE, -1, 0, TG_RESPONSES_WHOLE, "t");
	check_text(&r, 2, TG_CHUNK_REFUSAL, 3, 1, TG_RESPONSES_WHOLE, "b");
	json_decref(event);
	tg_responses_free(&r);
}
END_TEST

/* The end of a response keys each item's texts by its position in
 * "output". */
START_TEST(response_completed_keyed)
{
	json_t *event = load("{\"type\":\"response.completed\",\"response\":{\"output\":["
	                     "{\"type\":\"reasoning\",\"summary\":[{\"text\":\"s0\"},{\"text\":\"s1\"}]},"
	                     "{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}],"
	                     "\"output_text\":\"joined\"}}");
	struct tg_responses_event r = {0};

	ck_assert_int_eq(tg_responses_read(&r, event), 0);
	ck_assert_ptr_null(r.unread);
	ck_assert_int_eq(r.ends_response, 1);
	ck_assert_uint_eq(r.n_texts, 4);
	check_text(&r, 0, TG_CHUNK_REASONING, 0, 0, TG_RESPONSES_WHOLE, "s0");
	check_text(&r, 1, TG_CHUNK_REASONING, 0, 1, TG_RESPONSES_WHOLE, "s1");
	check_text(&r, 2, TG_CHUNK_ARGUMENTS, 1, 0, TG_RESPONSES_WHOLE, "{}");
	check_text(&r, 3, TG_CHUNK_VALUE, -1, 0, TG_RESPONSES_WHOLE, "joined");
	json_decref(event);
	tg_responses_free(&r);
}
END_TEST

START_TEST(part_added_keyed)
{
	json_t *event = load("{\"type\":\"response.content_part.added\",\"output_index\":1,"
	                     "\"content_index\":2,\"part\":{\"type\":\"output_text\",\"text\":\"\"}}");
	struct tg_responses_event r = {0};

	ck_assert_int_eq(tg_responses_read(&r, event), 0);
	ck_assert_uint_eq(r.n_texts, 1);
	check_text(&r, 0, TG_CHUNK_CONTENT, 1, 2, TG_RESPONSES_APPEND, "");
	json_decref(event);
	tg_responses_free(&r);
}
END_TEST

/* A custom tool's input and a code interpreter's code are read as
 * content of their item. */
START_TEST(free_text_events)
{
	static const struct {
		const char *data;
		enum tg_responses_role role;
	} cases[] = {
		{"{\"type\":\"response.custom_tool_call_input.delta\",\"output_index\":2,"
		 "\"item_id\":\"ct_1\",\"delta\":\"x\"}", TG_RESPONSES_APPEND},
		{"{\"type\":\"response.custom_tool_call_input.done\",\"output_index\":2,"
		 "\"item_id\":\"ct_1\",\"input\":\"x\"}", TG_RESPONSES_WHOLE},
		{"{\"type\":\"response.code_interpreter_call_code.delta\",\"output_index\":2,"
		 "\"item_id\":\"ci_1\",\"delta\":\"x\"}", TG_RESPONSES_APPEND},
		{"{\"type\":\"response.code_interpreter_call_code.done\",\"output_index\":2,"
		 "\"item_id\":\"ci_1\",\"code\":\"x\"}", TG_RESPONSES_WHOLE},
	};
	struct tg_responses_event r = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *event = load(cases[i].data);

		ck_assert_int_eq(tg_responses_read(&r, event), 0);
		ck_assert_ptr_null(r.unread);
		ck_assert_uint_eq(r.n_texts, 1);
		ck_assert_str_eq(json_string_value(r.texts[0].string), "x");
		ck_assert_int_eq(r.texts[0].kind, TG_CHUNK_CONTENT);
		ck_assert_int_eq(r.texts[0].item, 2);
		ck_assert_int_eq(r.texts[0].part, 0);
		ck_assert_int_eq(r.texts[0].role, cases[i].role);
		json_decref(event);
	}
	tg_responses_free(&r);
}
END_TEST

/* Events with model text the reader does not follow, and events without
 * text. */
START_TEST(unread_events)
{
	static const struct {
		const char *data;
		int unread;
	} cases[] = {
		{"{\"type\":\"response.audio.transcript.delta\",\"delta\":\"x\"}", 1},
		{"{\"type\":\"response.future\",\"output_index\":0,\"thing\":{\"text\":\"x\"}}", 1},
		{"{\"type\":\"response.output_text.delta\",\"output_index\":0,"
		 "\"content_index\":0,\"delta\":5}", 1},
		{"{\"type\":\"response.web_search_call.searching\",\"output_index\":0,"
		 "\"item_id\":\"ws_1\"}", 0},
		{"{\"type\":\"response.audio.delta\",\"delta\":\"AAAA\"}", 0},
	};
	struct tg_responses_event r = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *event = load(cases[i].data);

		ck_assert_int_eq(tg_responses_read(&r, event), 0);
		ck_assert_int_eq(r.unread != NULL, cases[i].unread);
		ck_assert_uint_eq(r.n_texts, 0);
		json_decref(event);
	}
	tg_responses_free(&r);
}
END_TEST

START_TEST(index_missing_or_invalid)
{
	static const char *const cases[] = {
		"{\"type\":\"response.output_text.delta\",\"content_index\":0,\"delta\":\"x\"}",
		"{\"type\":\"response.output_text.delta\",\"output_index\":-1,\"content_index\":0,"
		"\"delta\":\"x\"}",
		"{\"type\":\"response.output_text.delta\",\"output_index\":1.0,\"content_index\":0,"
		"\"delta\":\"x\"}",
		"{\"type\":\"response.refusal.delta\",\"output_index\":0,\"content_index\":\"1\","
		"\"delta\":\"x\"}",
		"{\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\"}}",
	};
	struct tg_responses_event r = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *event = load(cases[i]);

		ck_assert_int_eq(tg_responses_read(&r, event), 0);
		ck_assert_int_eq(r.bad_index, 1);
		json_decref(event);
	}
	tg_responses_free(&r);
}
END_TEST

START_TEST(error_message_read)
{
	json_t *event = load("{\"type\":\"error\",\"code\":\"c\",\"message\":\"m\",\"param\":null}");
	struct tg_responses_event r = {0};

	ck_assert_int_eq(tg_responses_read(&r, event), 0);
	ck_assert_ptr_null(r.unread);
	ck_assert_int_eq(r.bad_index, 0);
	ck_assert_uint_eq(r.n_texts, 1);
	check_text(&r, 0, TG_CHUNK_VALUE, -1, 0, TG_RESPONSES_WHOLE, "m");
	json_decref(event);
	tg_responses_free(&r);
}
END_TEST

/* A param the server filled in is a text of the event too. */
START_TEST(error_param_read)
{
	json_t *event = load("{\"type\":\"error\",\"code\":\"c\",\"message\":\"m\",\"param\":\"p\"}");
	struct tg_responses_event r = {0};

	ck_assert_int_eq(tg_responses_read(&r, event), 0);
	ck_assert_ptr_null(r.unread);
	ck_assert_uint_eq(r.n_texts, 2);
	check_text(&r, 0, TG_CHUNK_VALUE, -1, 0, TG_RESPONSES_WHOLE, "m");
	check_text(&r, 1, TG_CHUNK_VALUE, -1, 0, TG_RESPONSES_WHOLE, "p");
	json_decref(event);
	tg_responses_free(&r);
}
END_TEST

static Suite *
filter_responses_suite(void)
{
	Suite *s = suite_create("filter_responses");
	TCase *tc = tcase_create("read");

	tcase_add_test(tc, deltas_keyed);
	tcase_add_test(tc, item_done_keyed);
	tcase_add_test(tc, response_completed_keyed);
	tcase_add_test(tc, part_added_keyed);
	tcase_add_test(tc, free_text_events);
	tcase_add_test(tc, unread_events);
	tcase_add_test(tc, index_missing_or_invalid);
	tcase_add_test(tc, error_message_read);
	tcase_add_test(tc, error_param_read);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(filter_responses_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
