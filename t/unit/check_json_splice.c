/*
 * Unit tests for a JSON text written again with some string values
 * replaced: the places of values as tg_args_values() passes them, and the
 * splice of a changed tree's strings into the text it was parsed from.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter-args.h"
#include "json-splice.h"

/* The places of the values of a text, in order. */
struct places {
	const char *raw;
	size_t raw_len;
	struct tg_splice_place at[8];
	int known[8];
	size_t n;
};

static int
keep_place(void *arg, const char *text, size_t len, size_t end)
{
	struct places *p = arg;

	ck_assert_uint_lt(p->n, 8);
	p->known[p->n] = tg_splice_place(p->raw, p->raw_len, text, len, end, &p->at[p->n]) == 0;
	p->n++;
	return 0;
}

static void
read_places(const char *raw, struct places *p)
{
	*p = (struct places){.raw = raw, .raw_len = strlen(raw)};
	ck_assert_int_eq(tg_args_values(raw, p->raw_len, keep_place, NULL, p), 0);
}

/* Check that place i of p covers exactly the bytes want of its text. */
static void
assert_place(const struct places *p, size_t i, const char *want, int string)
{
	const struct tg_splice_place *at = &p->at[i];

	ck_assert(p->known[i]);
	ck_assert_int_eq(at->string, string);
	ck_assert_uint_eq(at->to - at->from, strlen(want));
	ck_assert(memcmp(p->raw + at->from, want, strlen(want)) == 0);
}

START_TEST(places_cover_values_as_written)
{
	struct places p;

	read_places("{\"a\": \"x\", \"b\": [1E2, \"q\\\"\\\\\\\"\", \"\"], \"c\": -0.7}", &p);
	ck_assert_uint_eq(p.n, 5);
	assert_place(&p, 0, "\"x\"", 1);
	assert_place(&p, 1, "1E2", 0);
	assert_place(&p, 2, "\"q\\\"\\\\\\\"\"", 1);
	assert_place(&p, 3, "\"\"", 1);
	assert_place(&p, 4, "-0.7", 0);
}
END_TEST

/* A number that ends the text reaches the reader only as the parse
 * completes, from yajl's buffer, without an end. */
START_TEST(place_of_number_ending_text_is_unknown)
{
	struct places p;

	read_places("12", &p);
	ck_assert_uint_eq(p.n, 1);
	ck_assert(!p.known[0]);
}
END_TEST

START_TEST(splice_replaces_only_the_places)
{
	static const char raw[] = "[ \"ab\" , 0.7, \"cd\" ]";
	struct tg_splice s;

	tg_splice_init(&s, raw, strlen(raw));
	tg_splice_string(&s, (struct tg_splice_place){2, 6, 1}, "a\"b", 3);
	tg_splice_string(&s, (struct tg_splice_place){14, 18, 1}, "", 0);
	ck_assert_int_eq(tg_splice_finish(&s), 0);
	ck_assert(s.changed);
	ck_assert_uint_eq(s.out.len, strlen("[ \"a\\\"b\" , 0.7, \"\" ]"));
	ck_assert(memcmp(s.out.data, "[ \"a\\\"b\" , 0.7, \"\" ]", s.out.len) == 0);
	tg_json_writer_free(&s.out);
}
END_TEST

/* Parse raw as the request path does, set the string member key to
 * value (unless key is NULL), splice, and return the text (malloc). */
static char *
splice_after(const char *raw, const char *key, const char *value, int *rc)
{
	json_error_t error;
	json_t *tree = json_loads(raw, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &error);
	struct tg_json_writer out;
	char *text = NULL;

	ck_assert_msg(tree != NULL, "%s: %s", raw, error.text);
	if (key != NULL)
		ck_assert_int_eq(json_string_set(json_object_get(tree, key), value), 0);
	*rc = tg_splice_tree(raw, strlen(raw), tree, &out);
	if (*rc == 0) {
		text = strndup(out.data, out.len);
		tg_json_writer_free(&out);
	}
	json_decref(tree);
	return text;
}

START_TEST(tree_splice_keeps_other_bytes)
{
	static const char raw[] = " {\"z\" : 0.7, \"seed\":9223372036854775808,\"n\": 1E2,"
	                          "\"m\":\"caf\\u00e9\", \"t\": \"x\\\"y a@b.io\" ,\"e\":[]}\n";
	static const char want[] = " {\"z\" : 0.7, \"seed\":9223372036854775808,\"n\": 1E2,"
	                           "\"m\":\"caf\\u00e9\", \"t\": \"x\\\"y [mail]\" ,\"e\":[]}\n";
	int rc;
	char *text = splice_after(raw, "t", "x\"y [mail]", &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(text, want);
	free(text);
}
END_TEST

START_TEST(tree_splice_of_unchanged_tree_copies_text)
{
	static const char raw[] = "{\"a\":[\"\\u0041\",{\"b\":\"\\/\"}],\"c\":true}";
	int rc;
	char *text = splice_after(raw, NULL, NULL, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(text, raw);
	free(text);
}
END_TEST

/* A tree that gained a string, or made a string a number, pairs no
 * longer with the text; nor does a text that yajl cannot read. */
/* A number that a mask made a string is written as one in its place. */
START_TEST(tree_splice_writes_masked_number)
{
	static const char raw[] = "{\"a\": 4.1e15, \"b\": 0.7}";
	json_t *tree = json_loads(raw, 0, NULL);
	struct tg_json_writer out;

	ck_assert_ptr_nonnull(tree);
	json_object_set_new(tree, "a", json_string("[REDACTED]"));
	ck_assert_int_eq(tg_splice_tree(raw, strlen(raw), tree, &out), 0);
	ck_assert_int_eq((int)out.len, (int)strlen("{\"a\": \"[REDACTED]\", \"b\": 0.7}"));
	ck_assert(memcmp(out.data, "{\"a\": \"[REDACTED]\", \"b\": 0.7}", out.len) == 0);
	tg_json_writer_free(&out);
	json_decref(tree);
}
END_TEST

START_TEST(tree_splice_refuses_unpaired_tree)
{
	static const char raw[] = "{\"a\":\"x\",\"b\":1}";
	json_t *tree = json_loads(raw, 0, NULL);
	struct tg_json_writer out;

	ck_assert_ptr_nonnull(tree);
	json_object_set_new(tree, "c", json_string("y"));
	ck_assert_int_eq(tg_splice_tree(raw, strlen(raw), tree, &out), TG_SPLICE_UNPAIRED);
	ck_assert_ptr_null(out.data);
	json_object_del(tree, "c");
	json_object_set_new(tree, "a", json_integer(1));
	ck_assert_int_eq(tg_splice_tree(raw, strlen(raw), tree, &out), TG_SPLICE_UNPAIRED);
	ck_assert_int_eq(tg_splice_tree("{\"a\":", 5, tree, &out), TG_SPLICE_UNPAIRED);
	json_decref(tree);
}
END_TEST

static Suite *
splice_suite(void)
{
	Suite *s = suite_create("json-splice");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, places_cover_values_as_written);
	tcase_add_test(tc, place_of_number_ending_text_is_unknown);
	tcase_add_test(tc, splice_replaces_only_the_places);
	tcase_add_test(tc, tree_splice_keeps_other_bytes);
	tcase_add_test(tc, tree_splice_of_unchanged_tree_copies_text);
	tcase_add_test(tc, tree_splice_refuses_unpaired_tree);
	tcase_add_test(tc, tree_splice_writes_masked_number);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(splice_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
