/*
 * Unit tests for the JSON writer (src/json-writer.c): the exact text of
 * escaped and cut strings and of numbers, checked byte for byte, and read
 * back with jansson to prove the text is JSON that means the value written.
 */
#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json-writer.h"
#include "random-helpers.h"

/* The text w holds, NUL-terminated, to free(). */
static char *
text_of(const struct tg_json_writer *w)
{
	char *text = malloc(w->len + 1);

	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(w->failed, 0);
	memcpy(text, w->data, w->len);
	text[w->len] = '\0';
	return text;
}

/* Write len bytes of in as a string; the text must be want, and jansson
 * must read it back as decoded (decoded_len bytes). */
static void
check_string(const char *in, size_t len, const char *want, const char *decoded,
             size_t decoded_len)
{
	struct tg_json_writer w = {0};
	json_error_t error;
	json_t *back;
	char *text;

	tg_json_stringn(&w, in, len);
	text = text_of(&w);
	ck_assert_str_eq(text, want);
	back = json_loadb(w.data, w.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
	ck_assert_msg(back != NULL, "jansson cannot read %s back: %s", text, error.text);
	ck_assert_uint_eq(json_string_length(back), decoded_len);
	ck_assert_mem_eq(json_string_value(back), decoded, decoded_len);
	json_decref(back);
	free(text);
	tg_json_writer_free(&w);
}

#define CHECK_STRING(in, want, decoded) \
	check_string((in), sizeof(in) - 1, (want), (decoded), sizeof(decoded) - 1)

/* The text that write() leaves in a fresh writer must be want. */
#define CHECK_TEXT(write, want) do { \
		struct tg_json_writer w = {0}; \
		char *text; \
		write; \
		text = text_of(&w); \
		ck_assert_str_eq(text, want); \
		free(text); \
		tg_json_writer_free(&w); \
	} while (0)

START_TEST(plain_ascii_is_copied)
{
	CHECK_STRING("gpt-4o /v1/chat?x=1&y=<2>", "\"gpt-4o /v1/chat?x=1&y=<2>\"",
	             "gpt-4o /v1/chat?x=1&y=<2>");
	CHECK_STRING("", "\"\"", "");
	/* DEL and '/' need no escape, and jansson writes neither escaped. */
	CHECK_STRING("\x7f/", "\"\x7f/\"", "\x7f/");
}
END_TEST

START_TEST(quotes_and_backslashes_are_escaped)
{
	CHECK_STRING("say \"hi\" \\ bye", "\"say \\\"hi\\\" \\\\ bye\"", "say \"hi\" \\ bye");
}
END_TEST

START_TEST(control_characters_are_escaped)
{
	CHECK_STRING("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t");
	/* Those without a short form as \u00XX, upper case as jansson writes. */
	CHECK_STRING("a\x01" "b\x1f" "c\x1b", "\"a\\u0001b\\u001Fc\\u001B\"",
	             "a\x01" "b\x1f" "c\x1b");
	/* A NUL inside the given length is a character like the others. */
	CHECK_STRING("x\0y", "\"x\\u0000y\"", "x\0y");
}
END_TEST

START_TEST(multibyte_utf8_is_copied)
{
	/* 2, 3 and 4 bytes: é, €, U+1F600; and U+2028, which JSON allows. */
	CHECK_STRING("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8",
	             "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8\"",
	             "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8");
	/* The largest code point, U+10FFFF. */
	CHECK_STRING("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf");
}
END_TEST

#define FFFD "\xef\xbf\xbd"

START_TEST(invalid_utf8_becomes_replacement_characters)
{
	/* A lone byte above 0x7F and a stray continuation byte. */
	CHECK_STRING("a\xff" "b\x80" "c", "\"a" FFFD "b" FFFD "c\"", "a" FFFD "b" FFFD "c");
	/* A sequence cut by the end of the string: each byte is replaced. */
	CHECK_STRING("x\xe2\x82", "\"x" FFFD FFFD "\"", "x" FFFD FFFD);
	/* A sequence cut by an ASCII byte keeps the ASCII byte. */
	CHECK_STRING("\xc3" "A", "\"" FFFD "A\"", FFFD "A");
	/* An overlong '/', a UTF-16 surrogate (U+D800), and U+110000. */
	CHECK_STRING("\xc0\xaf", "\"" FFFD FFFD "\"", FFFD FFFD);
	CHECK_STRING("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\"", FFFD FFFD FFFD);
	CHECK_STRING("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"",
	             FFFD FFFD FFFD FFFD);
	/* Valid text after the bad bytes comes out as it is. */
	CHECK_STRING("\xfe\xc3\xa9\"", "\"" FFFD "\xc3\xa9\\\"\"", FFFD "\xc3\xa9\"");
}
END_TEST

/* s written by tg_json_string_cut() with limit, NUL-terminated, to free(). */
static char *
cut(const char *s, size_t limit)
{
	struct tg_json_writer w = {0};
	char *text;

	tg_json_string_cut(&w, s, limit);
	text = text_of(&w);
	tg_json_writer_free(&w);
	return text;
}

/* Strings cut by tg_json_string_cut(): in, limit, and the text written. */
static const struct {
	const char *in;
	size_t limit;
	const char *want;
} cuts[] = {
	{"abcdef", 4, "\"abcd\""},
	/* U+00E9 is 2 bytes: 3 bytes of room keep one, never half of the next. */
	{"\xc3\xa9\xc3\xa9", 3, "\"\xc3\xa9\""},
	/* The cut counts the replacement's 3 bytes, not the 1 invalid byte. */
	{"a\xff" "b", 3, "\"a\""},
	/* An escape counts as the one byte it stands for. */
	{"\"\"\"x", 3, "\"\\\"\\\"\\\"\""},
	{"", 0, "\"\""},
	{"x", 0, "\"\""},
};

START_TEST(cut_falls_between_characters)
{
	char *text = cut(cuts[_i].in, cuts[_i].limit);

	ck_assert_str_eq(text, cuts[_i].want);
	free(text);
}
END_TEST

START_TEST(cut_keeps_exactly_the_limit)
{
	char in[1000];
	char *text;

	memset(in, 'p', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	text = cut(in, 256);
	ck_assert_uint_eq(strlen(text), 256 + 2);
	free(text);
	text = cut(in, SIZE_MAX);
	ck_assert_uint_eq(strlen(text), sizeof(in) - 1 + 2);
	free(text);
}
END_TEST

START_TEST(null_string_is_null)
{
	CHECK_TEXT(tg_json_string_cut(&w, NULL, 10), "null");
	CHECK_TEXT(tg_json_string(&w, NULL), "null");
}
END_TEST

START_TEST(utf8_sequence_lengths)
{
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"a", 1), 1);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xc3\xa9", 2), 2);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xc3\xa9", 1), 0);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xe0\x9f\xbf", 3), 0);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xe0\xa0\x80", 3), 3);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xf0\x8f\xbf\xbf", 4), 0);
	ck_assert_uint_eq(tg_utf8_sequence((const unsigned char *)"\xf8\x88\x80\x80", 4), 0);
}
END_TEST

START_TEST(integers)
{
	CHECK_TEXT(tg_json_int(&w, 0), "0");
	CHECK_TEXT(tg_json_int(&w, -42), "-42");
	CHECK_TEXT(tg_json_int(&w, INT64_MIN), "-9223372036854775808");
	CHECK_TEXT(tg_json_int(&w, INT64_MAX), "9223372036854775807");
	CHECK_TEXT(tg_json_uint(&w, UINT64_MAX), "18446744073709551615");
	/* Around the splits into 8 digits, where zeros come in between. */
	CHECK_TEXT(tg_json_uint(&w, 99999999), "99999999");
	CHECK_TEXT(tg_json_uint(&w, 100000000), "100000000");
	CHECK_TEXT(tg_json_uint(&w, 10000000000000000u), "10000000000000000");
	CHECK_TEXT(tg_json_uint(&w, 1700000000000000005u), "1700000000000000005");
}
END_TEST

START_TEST(doubles_as_jansson_writes_them)
{
	static const double values[] = {
		0.5, 2.0, -0.0, 0.1, 1e-7, 1e20, 1.5e300, -2.5e-300, DBL_MAX, DBL_MIN,
		123456789.125, 4.9e-324,
	};

	CHECK_TEXT(tg_json_double(&w, 0.5), "0.5");
	CHECK_TEXT(tg_json_double(&w, 2.0), "2.0");
	CHECK_TEXT(tg_json_double(&w, 1e-7), "9.9999999999999995e-8");
	CHECK_TEXT(tg_json_double(&w, 1e20), "1e20");
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		json_t *real = json_real(values[i]);
		char *want = json_dumps(real, JSON_ENCODE_ANY | JSON_COMPACT);

		CHECK_TEXT(tg_json_double(&w, values[i]), want);
		free(want);
		json_decref(real);
	}
}
END_TEST

START_TEST(bools)
{
	CHECK_TEXT(tg_json_bool(&w, 1), "true");
	CHECK_TEXT(tg_json_bool(&w, 0), "false");
}
END_TEST

START_TEST(doubles_with_a_precision_as_jansson_writes_them)
{
	static const double values[] = {
		0.0, 1.0, 2.5, 0.000480925, 6.8802e-5, 1e-7, 0.1, 123456.0,
		1234567.0, 12345678.9, 1e21, 1.5e300, DBL_MIN, -0.25, 30.000001,
	};

	CHECK_TEXT(tg_json_double_precision(&w, 0.000480925, 6), "0.000480925");
	CHECK_TEXT(tg_json_double_precision(&w, 1234567.0, 6), "1.23457e6");
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		json_t *real = json_real(values[i]);
		char *want = json_dumps(real, JSON_ENCODE_ANY | JSON_COMPACT |
		                              JSON_REAL_PRECISION(6));

		CHECK_TEXT(tg_json_double_precision(&w, values[i], 6), want);
		free(want);
		json_decref(real);
	}
}
END_TEST

START_TEST(writer_grows_and_resets)
{
	struct tg_json_writer w = {0};
	char big[10000];

	memset(big, 'x', sizeof(big));
	tg_json_stringn(&w, big, sizeof(big));
	tg_json_literal(&w, ",");
	ck_assert_uint_eq(w.len, sizeof(big) + 3);
	ck_assert_int_eq(w.data[0], '"');
	ck_assert_int_eq(w.data[w.len - 1], ',');
	tg_json_writer_reset(&w);
	ck_assert_uint_eq(w.len, 0);
	tg_json_literal(&w, "{}");
	ck_assert_mem_eq(w.data, "{}", 2);
	tg_json_writer_free(&w);
	ck_assert_ptr_null(w.data);
}
END_TEST

/* --- random inputs against a reference ---------------------------------- */

static struct random_seq rng = {0x6a736f6e77726974u};      /* "jsonwrit" */

/* Write into out the escape that jansson writes for the ASCII byte c,
 * and return its length. */
static size_t
reference_escape(unsigned char c, char *out)
{
	switch (c) {
	case '"': return (size_t)sprintf(out, "\\\"");
	case '\\': return (size_t)sprintf(out, "\\\\");
	case '\b': return (size_t)sprintf(out, "\\b");
	case '\f': return (size_t)sprintf(out, "\\f");
	case '\n': return (size_t)sprintf(out, "\\n");
	case '\r': return (size_t)sprintf(out, "\\r");
	case '\t': return (size_t)sprintf(out, "\\t");
	default: return (size_t)sprintf(out, "\\u%04X", c);
	}
}

/* Write into out (6 * len + 3 bytes) the text that tg_json_string_cut()
 * documents, one character at a time without the writer's shortcuts, and
 * return its length. */
static size_t
reference_string(const unsigned char *in, size_t len, size_t limit, char *out)
{
	size_t at = 0, kept = 0, i = 0;

	out[at++] = '"';
	while (i < len) {
		size_t n = tg_utf8_sequence(in + i, len - i);
		int escaped = in[i] < 0x20 || in[i] == '"' || in[i] == '\\';

		if (escaped && kept + 1 <= limit) {
			at += reference_escape(in[i], out + at);
			kept++;
			i++;
		} else if (n == 0 && kept + 3 <= limit) {
			memcpy(out + at, "\xEF\xBF\xBD", 3);
			at += 3;
			kept += 3;
			i++;
		} else if (!escaped && n > 0 && kept + n <= limit) {
			memcpy(out + at, in + i, n);
			at += n;
			kept += n;
			i += n;
		} else {
			break;          /* the next character does not fit */
		}
	}
	out[at++] = '"';
	return at;
}

/* Fill out with up to max - 4 random bytes, and return how many: mostly
 * runs of plain ASCII of any length, with escapes, well-formed and
 * broken UTF-8, and any byte, NUL included, between them. */
static size_t
random_bytes(unsigned char *out, size_t max)
{
	static const char *const pieces[] = {
		"\"", "\\", "\n", "\b", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xff", "\x80", "\xc0\xaf",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xc3",
	};
	size_t len = 0, want = random_below(&rng, max - 4);

	while (len < want) {
		size_t kind = random_below(&rng, 10);

		if (kind < 6) {
			size_t run = random_below(&rng, 24) + 1;

			for (size_t j = 0; j < run && len < want; j++)
				out[len++] = (unsigned char)(0x20 + random_below(&rng, 0x60));
		} else if (kind < 7) {
			out[len++] = (unsigned char)random_below(&rng, 256);
		} else {
			const char *piece = pieces[random_below(&rng, sizeof(pieces) / sizeof(pieces[0]))];

			memcpy(out + len, piece, strlen(piece));
			len += strlen(piece);
		}
	}
	return len;
}

/* Write in through one of the three string functions, chosen at random,
 * with *limit as the cut (SIZE_MAX for none). A C string ends at its NUL,
 * so text with a NUL goes through tg_json_stringn() uncut. */
static void
write_random_way(struct tg_json_writer *w, const unsigned char *in, size_t len,
                 size_t *limit)
{
	char text[256];
	size_t way = random_below(&rng, 3);

	ck_assert_uint_lt(len, sizeof(text));
	memcpy(text, in, len);
	text[len] = '\0';
	if (way == 0 || memchr(in, 0, len) != NULL) {
		*limit = SIZE_MAX;
		tg_json_stringn(w, text, len);
	} else if (way == 1) {
		*limit = SIZE_MAX;
		tg_json_string(w, text);
	} else {
		*limit = random_below(&rng, len + 8);
		tg_json_string_cut(w, text, *limit);
	}
}

/* The copy also reports whether the bytes need an escape. One byte that
 * does, of every kind and at every place of strings up to 3 words long,
 * makes the result 0, and the copy is exact either way. */
START_TEST(copy_plain_finds_every_escape)
{
	static const char bad[] = {'"', '\\', '\n', 0x01, 0x1f, 0x7f, (char)0x80, (char)0xff};
	char in[25], out[25];

	for (size_t len = 0; len < sizeof(in); len++) {
		memset(in, 'a', sizeof(in));
		ck_assert_int_eq(tg_json_copy_plain(out, in, len), 1);
		ck_assert_int_eq(tg_json_is_plain(in, len), 1);
		ck_assert_mem_eq(out, in, len);
		for (size_t at = 0; at < len; at++) {
			for (size_t k = 0; k < sizeof(bad); k++) {
				int want = bad[k] == 0x7f;      /* DEL needs no escape */

				in[at] = bad[k];
				ck_assert_int_eq(tg_json_copy_plain(out, in, len), want);
				ck_assert_int_eq(tg_json_is_plain(in, len), want);
				ck_assert_mem_eq(out, in, len);
				in[at] = 'a';
			}
		}
	}
}
END_TEST

START_TEST(random_strings_match_reference)
{
	unsigned char in[200];
	char want[6 * sizeof(in) + 3];

	for (int round = 0; round < 200000; round++) {
		size_t len = random_bytes(in, sizeof(in));
		struct tg_json_writer w = {0};
		size_t limit, want_len;

		write_random_way(&w, in, len, &limit);
		want_len = reference_string(in, len, limit, want);
		ck_assert_int_eq(w.failed, 0);
		ck_assert_uint_eq(w.len, want_len);
		ck_assert_mem_eq(w.data, want, want_len);
		tg_json_writer_free(&w);
	}
}
END_TEST

START_TEST(random_integers_match_printf)
{
	for (int round = 0; round < 200000; round++) {
		uint64_t bits = random_next(&rng);
		uint64_t u = bits >> random_below(&rng, 64);
		int64_t i = (int64_t)bits >> random_below(&rng, 64);
		char want[24];

		snprintf(want, sizeof(want), "%" PRIu64, u);
		CHECK_TEXT(tg_json_uint(&w, u), want);
		snprintf(want, sizeof(want), "%" PRId64, i);
		CHECK_TEXT(tg_json_int(&w, i), want);
	}
}
END_TEST

/* A double of one of the kinds that the fast path of tg_json_double_text()
 * must get right: any bits, its range, ties, near powers of ten. */
static double
random_double(void)
{
	uint64_t bits = random_next(&rng);
	int scale = (int)random_below(&rng, 60) - 20;
	double v;

	switch (random_below(&rng, 5)) {
	case 0:
		memcpy(&v, &bits, sizeof(v));
		return isfinite(v) ? v : 0.5;
	case 1:
		/* Anywhere from below 1e-5 to above 1e15. */
		return ldexp((double)(bits >> 11), scale - 53);
	case 2:
		/* An exact binary fraction: many are ties at some digit. */
		return ldexp((double)(bits % 2000000001), -(int)random_below(&rng, 30));
	case 3:
		/* A power of ten and its neighbours. */
		v = pow(10.0, (double)((int)random_below(&rng, 24) - 7));
		for (size_t steps = random_below(&rng, 4); steps > 0; steps--)
			v = nextafter(v, bits & 1 ? INFINITY : 0.0);
		return v;
	default:
		/* A few decimal digits, as durations and parameters have. */
		return (double)(bits % 10000000) / pow(10.0, (double)random_below(&rng, 12));
	}
}

START_TEST(random_doubles_match_jansson)
{
	for (int round = 0; round < 300000; round++) {
		double v = random_double();
		int precision = 1 + (int)random_below(&rng, 17);
		json_t *real = json_real(random_below(&rng, 2) ? v : -v);
		char *want = json_dumps(real, JSON_ENCODE_ANY | JSON_COMPACT |
		                              JSON_REAL_PRECISION(precision));

		CHECK_TEXT(tg_json_double_precision(&w, json_real_value(real), precision), want);
		free(want);
		json_decref(real);
	}
}
END_TEST

/* Ties at the last digit kept go to the even digit, as printf rounds;
 * and a carry moves the exponent. */
START_TEST(doubles_round_ties_to_even)
{
	CHECK_TEXT(tg_json_double_precision(&w, 0.125, 2), "0.12");
	CHECK_TEXT(tg_json_double_precision(&w, 0.375, 2), "0.38");
	CHECK_TEXT(tg_json_double_precision(&w, 2.5, 1), "2.0");
	CHECK_TEXT(tg_json_double_precision(&w, 3.5, 1), "4.0");
	CHECK_TEXT(tg_json_double_precision(&w, 1234565.0, 6), "1.23456e6");
	CHECK_TEXT(tg_json_double_precision(&w, 9.9999996, 6), "10.0");
	CHECK_TEXT(tg_json_double_precision(&w, 999999.5, 6), "1e6");
	CHECK_TEXT(tg_json_double_precision(&w, 0.000099999996, 6), "0.0001");
	CHECK_TEXT(tg_json_double_precision(&w, -0.00001, 6), "-1e-5");
	CHECK_TEXT(tg_json_double_precision(&w, 0.00001, 17), "1.0000000000000001e-5");
	CHECK_TEXT(tg_json_double_precision(&w, 123456789012345.0, 17), "123456789012345.0");
	CHECK_TEXT(tg_json_double_precision(&w, 0.7, 17), "0.69999999999999996");
}
END_TEST

static Suite *
json_writer_suite(void)
{
	Suite *s = suite_create("json_writer");
	TCase *strings = tcase_create("strings");
	TCase *numbers = tcase_create("numbers");
	TCase *buffer = tcase_create("buffer");

	/* The random comparisons run hundreds of thousands of rounds, which
	 * under AddressSanitizer take longer than Check's default 4 s. The
	 * timeout only guards against a hang. */
	tcase_set_timeout(strings, 120);
	tcase_set_timeout(numbers, 120);
	tcase_add_test(strings, plain_ascii_is_copied);
	tcase_add_test(strings, quotes_and_backslashes_are_escaped);
	tcase_add_test(strings, control_characters_are_escaped);
	tcase_add_test(strings, multibyte_utf8_is_copied);
	tcase_add_test(strings, invalid_utf8_becomes_replacement_characters);
	tcase_add_loop_test(strings, cut_falls_between_characters, 0,
	                    sizeof(cuts) / sizeof(cuts[0]));
	tcase_add_test(strings, cut_keeps_exactly_the_limit);
	tcase_add_test(strings, null_string_is_null);
	tcase_add_test(strings, utf8_sequence_lengths);
	tcase_add_test(strings, random_strings_match_reference);
	tcase_add_test(strings, copy_plain_finds_every_escape);
	tcase_add_test(numbers, integers);
	tcase_add_test(numbers, bools);
	tcase_add_test(numbers, random_integers_match_printf);
	tcase_add_test(numbers, doubles_as_jansson_writes_them);
	tcase_add_test(numbers, doubles_with_a_precision_as_jansson_writes_them);
	tcase_add_test(numbers, random_doubles_match_jansson);
	tcase_add_test(numbers, doubles_round_ties_to_even);
	tcase_add_test(buffer, writer_grows_and_resets);
	suite_add_tcase(s, strings);
	suite_add_tcase(s, numbers);
	suite_add_tcase(s, buffer);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(json_writer_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
