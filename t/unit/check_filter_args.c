/*
 * Unit tests for the decoder of JSON texts inside strings: which strings
 * it passes on, decoded, whatever the pieces the text comes in, and where
 * it holds the text while a string with an escape is not complete.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter-args.h"

/* The escaped strings passed on, joined with '|'. */
struct seen {
	char text[256];
	size_t len;
};

static int
collect(void *arg, const char *text, size_t len)
{
	struct seen *seen = arg;

	ck_assert_uint_lt(seen->len + len + 1, sizeof(seen->text));
	memcpy(seen->text + seen->len, text, len);
	seen->len += len;
	seen->text[seen->len++] = '|';
	seen->text[seen->len] = '\0';
	return 0;
}

static int
stop(void *arg, const char *text, size_t len)
{
	(void)arg;
	(void)text;
	(void)len;
	return 1;
}

static int
collect_value(void *arg, const char *text, size_t len, size_t end)
{
	(void)end;
	return collect(arg, text, len);
}

static int
stop_value(void *arg, const char *text, size_t len, size_t end)
{
	(void)end;
	return stop(arg, text, len);
}

/* The end of each value as written, kept at the position past it. */
struct value_ends {
	size_t at[8];
	size_t n;
};

static int
keep_end(void *arg, const char *text, size_t len, size_t end)
{
	struct value_ends *e = arg;

	(void)text;
	(void)len;
	ck_assert_uint_lt(e->n, 8);
	e->at[e->n++] = end;
	return 0;
}

/* Only strings and keys written with an escape are passed on, decoded. */
START_TEST(escaped_strings_decoded)
{
	const char *text = "{\"to\":\"a\\u0040b.com\",\"plain\":\"x@y.com\",\"k\\u0065y\":[1,\"a\\/b\"]}";
	struct seen seen = {{0}, 0};

	ck_assert_int_eq(tg_args_read(text, strlen(text), collect, &seen), 0);
	ck_assert_str_eq(seen.text, "a@b.com|key|a/b|");
	ck_assert_int_eq(tg_args_read(text, strlen(text), stop, NULL), 1);
}
END_TEST

/* A text that is not JSON before its escaped string, or has no
 * backslash, passes nothing on. */
START_TEST(not_json_or_no_escape)
{
	const char *bad = "{\"to\" \"a\\u0040b.com\"}";
	const char *trailing = "{\"a\":1} {\"to\":\"a\\u0040b.com\"}";
	const char *plain = "{\"to\":\"a@b.com\"}";
	struct seen seen = {{0}, 0};

	ck_assert_int_eq(tg_args_read(bad, strlen(bad), collect, &seen), 0);
	ck_assert_int_eq(tg_args_read(trailing, strlen(trailing), collect, &seen), 0);
	ck_assert_int_eq(tg_args_read(plain, strlen(plain), stop, NULL), 0);
	ck_assert_uint_eq(seen.len, 0);
}
END_TEST

/* Fed in two pieces cut at every byte, the text decodes as it does whole,
 * and the decoder holds from the start of an escaped string that is not
 * complete, or from the end of the last string when the rest has a
 * backslash. */
START_TEST(pieces_cut_anywhere)
{
	const char *text = "{\"n\":12,\"to\":\"ja\\u0040b.com\",\"x\":\"y\"}";
	size_t len = strlen(text);
	size_t open = strstr(text, "\"ja") - text;
	size_t close = strstr(text, ".com\"") - text + 5;

	for (size_t cut = 1; cut < len; cut++) {
		struct tg_args_decoder d;
		struct seen seen = {{0}, 0};
		size_t hold;

		ck_assert_int_eq(tg_args_open(&d, collect, &seen), 0);
		ck_assert_int_eq(tg_args_feed(&d, text, cut, 0), 0);
		hold = tg_args_hold(&d, 0);
		if (cut > open + 3 && cut < close)
			ck_assert_msg(hold != SIZE_MAX && hold <= open,
			              "cut at %zu: hold %zu, the string opens at %zu", cut, hold, open);
		else
			ck_assert_msg(hold == SIZE_MAX, "cut at %zu: hold %zu", cut, hold);
		if (cut <= open + 3 && cut > 12)
			ck_assert_uint_eq(tg_args_hold(&d, 1), 12);
		ck_assert_int_eq(tg_args_feed(&d, text + cut, len - cut, 1), 0);
		ck_assert_msg(strcmp(seen.text, "ja@b.com|") == 0, "cut at %zu: %s", cut, seen.text);
		ck_assert_uint_eq(tg_args_hold(&d, 1), SIZE_MAX);
		tg_args_close(&d);
	}
}
END_TEST

/* The values of a whole text are its strings, decoded, and its numbers as
 * written. Keys go to the key function alone, and literals are left out. */
START_TEST(values_of_whole_text)
{
	const char *text = "{\"to\":\"a\\u0040b.com\",\"k\\u0065y\":[12,\"x@y.com\",true,null,-1.5e3]}";
	const char *bad = "{\"to\":\"a@b.com\"";
	struct seen seen = {{0}, 0};

	ck_assert_int_eq(tg_args_values(text, strlen(text), collect_value, NULL, &seen), 0);
	ck_assert_str_eq(seen.text, "a@b.com|12|x@y.com|-1.5e3|");
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(tg_args_values(text, strlen(text), collect_value, collect, &seen), 0);
	ck_assert_str_eq(seen.text, "to|a@b.com|key|12|x@y.com|-1.5e3|");
	ck_assert_int_eq(tg_args_values(text, strlen(text), stop_value, NULL, NULL), 1);
	ck_assert_int_eq(tg_args_values(bad, strlen(bad), stop_value, NULL, NULL), 1);
	ck_assert_int_eq(tg_args_values(bad, strlen(bad), collect_value, NULL, &seen), TG_ARGS_NOT_JSON);
}
END_TEST

/* A string value ends past its closing quote, escaped or not, so that a
 * mask can write it again in place. */
START_TEST(values_end_past_their_quotes)
{
	const char *text = "{\"to\":\"a\\u0040b.com\",\"q\":[\"x\\\\\\\"y\", \"z\"]}";
	struct value_ends ends = {{0}, 0};

	ck_assert_int_eq(tg_args_values(text, strlen(text), keep_end, NULL, &ends), 0);
	ck_assert_uint_eq(ends.n, 3);
	ck_assert_uint_eq(ends.at[0], strlen("{\"to\":\"a\\u0040b.com\""));
	ck_assert_uint_eq(ends.at[1], strlen("{\"to\":\"a\\u0040b.com\",\"q\":[\"x\\\\\\\"y\""));
	ck_assert_uint_eq(ends.at[2], strlen(text) - 2);
}
END_TEST

/* A decoder with what it passed on. A '\\' after a string marks one that
 * was written with an escape. */
struct marked {
	struct tg_args_decoder d;
	struct seen seen;
};

static int
collect_marked(void *arg, const char *text, size_t len)
{
	struct marked *m = arg;

	collect(&m->seen, text, len);
	if (m->d.last_escaped)
		collect(&m->seen, "\\", 1);
	return 0;
}

/* With values set, the decoder passes every string value as it completes,
 * wherever the pieces are cut, and marks the ones written with an escape.
 * It passes keys only when they were. */
START_TEST(decoder_passes_every_value)
{
	const char *text = "{\"a\":\"tok\",\"k\\u0065y\":\"b\\u0040c\",\"plain\":[\"x\"]}";
	size_t len = strlen(text);

	for (size_t cut = 1; cut < len; cut++) {
		struct marked m;

		memset(&m, 0, sizeof(m));
		ck_assert_int_eq(tg_args_open(&m.d, collect_marked, &m), 0);
		m.d.values = 1;
		ck_assert_int_eq(tg_args_feed(&m.d, text, cut, 0), 0);
		ck_assert_int_eq(tg_args_feed(&m.d, text + cut, len - cut, 1), 0);
		ck_assert_msg(strcmp(m.seen.text, "tok|key|\\|b@c|\\|x|") == 0, "cut at %zu: %s",
		              cut, m.seen.text);
		tg_args_close(&m.d);
	}
}
END_TEST

static Suite *
filter_args_suite(void)
{
	Suite *s = suite_create("filter_args");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, escaped_strings_decoded);
	tcase_add_test(tc, not_json_or_no_escape);
	tcase_add_test(tc, pieces_cut_anywhere);
	tcase_add_test(tc, values_of_whole_text);
	tcase_add_test(tc, values_end_past_their_quotes);
	tcase_add_test(tc, decoder_passes_every_value);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(filter_args_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
