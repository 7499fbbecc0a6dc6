/*
 * The thread's block for yajl handles (src/yajl-arena.c): allocation,
 * growth in place, the fall back to malloc, the reset, nested handles,
 * and whole parses whose buffers outgrow the block.
 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The source file rather than its header, so that the tests can call the
 * allocator directly and see how much of the block is used. */
#include "yajl-arena.c"

static struct arena *
arena(void)
{
	return &thread_arena;
}

/* Each test starts with an empty block, also when Check does not fork. */
static void
empty_block(void)
{
	memset(&thread_arena, 0, sizeof(thread_arena));
}

static int
aligned(const void *p)
{
	return (uintptr_t)p % ALIGNMENT == 0;
}

START_TEST(malloc_bumps_through_block)
{
	struct arena *a = arena();
	unsigned char *p = arena_malloc(a, 10);
	unsigned char *q = arena_malloc(a, 1);

	ck_assert_ptr_eq(p, a->block);
	ck_assert(aligned(q));
	ck_assert_ptr_eq(q, p + ALIGNMENT);
	ck_assert_uint_eq(a->used, 2 * ALIGNMENT);
	ck_assert_uint_eq(a->last, ALIGNMENT);
	arena_free(a, p);
	ck_assert_uint_eq(a->used, 2 * ALIGNMENT);      /* freed only by a reset */
}
END_TEST

START_TEST(realloc_of_latest_grows_in_place)
{
	struct arena *a = arena();
	char *p = arena_malloc(a, 8);
	char *grown;

	memcpy(p, "abcdefg", 8);
	grown = arena_realloc(a, p, 2048);
	ck_assert_ptr_eq(grown, p);
	ck_assert_str_eq(grown, "abcdefg");
	ck_assert_uint_eq(a->used, 2048);
	grown = arena_realloc(a, grown, 4096);
	ck_assert_ptr_eq(grown, p);
	ck_assert_uint_eq(a->used, 4096);
}
END_TEST

START_TEST(realloc_of_earlier_moves)
{
	struct arena *a = arena();
	char *p = arena_malloc(a, 16);
	char *q = arena_malloc(a, 16);
	char *moved;

	memcpy(p, "first", 6);
	memcpy(q, "second", 7);
	moved = arena_realloc(a, p, 64);
	ck_assert(in_block(a, moved));
	ck_assert_ptr_ne(moved, p);
	ck_assert_ptr_eq(moved, q + 16);
	ck_assert_str_eq(moved, "first");
	ck_assert_str_eq(q, "second");
	ck_assert_uint_eq(a->used, 96);
}
END_TEST

START_TEST(malloc_past_block_falls_back)
{
	struct arena *a = arena();
	char *small = arena_malloc(a, 100);
	char *large = arena_malloc(a, BLOCK_SIZE);
	char *rest, *single_byte;

	ck_assert(in_block(a, small));
	ck_assert_ptr_nonnull(large);
	ck_assert(!in_block(a, large));
	ck_assert_uint_eq(a->used, 112);
	ck_assert_uint_eq(a->last, 0);

	/* What still fits comes from the block again. */
	rest = arena_malloc(a, BLOCK_SIZE - 112);
	ck_assert(in_block(a, rest));
	ck_assert_uint_eq(a->used, BLOCK_SIZE);
	single_byte = arena_malloc(a, 1);
	ck_assert_ptr_nonnull(single_byte);
	ck_assert(!in_block(a, single_byte));

	large = arena_realloc(a, large, 2 * BLOCK_SIZE);
	ck_assert(!in_block(a, large));
	arena_free(a, large);
	arena_free(a, single_byte);
}
END_TEST

START_TEST(realloc_past_block_moves_to_malloc)
{
	struct arena *a = arena();
	char *p = arena_malloc(a, 2048);
	char *moved;

	memset(p, 'x', 2048);
	moved = arena_realloc(a, p, BLOCK_SIZE + 1);
	ck_assert(!in_block(a, moved));
	for (size_t i = 0; i < 2048; i++)
		ck_assert_int_eq(moved[i], 'x');
	arena_free(a, moved);
}
END_TEST

/* --- handles -------------------------------------------------------------- */

/* The strings of a parse, concatenated, and the number of its maps. */
struct seen {
	char text[4 * BLOCK_SIZE];
	size_t len;
	int maps;
};

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct seen *seen = ctx;

	ck_assert_uint_le(seen->len + len, sizeof(seen->text));
	memcpy(seen->text + seen->len, s, len);
	seen->len += len;
	return 1;
}

static int
on_start_map(void *ctx)
{
	struct seen *seen = ctx;

	seen->maps++;
	return 1;
}

static const yajl_callbacks CALLBACKS = {
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
};

/* Feed len bytes of text to h in pieces of at most step bytes. */
static yajl_status
feed(yajl_handle h, const char *text, size_t len, size_t step)
{
	for (size_t at = 0; at < len; at += step) {
		size_t n = len - at < step ? len - at : step;
		yajl_status st = yajl_parse(h, (const unsigned char *)text + at, n);

		if (st != yajl_status_ok)
			return st;
	}
	return yajl_complete_parse(h);
}

START_TEST(free_of_last_handle_resets)
{
	static const char text[] = "{\"a\": \"b\\nc\"}";
	struct seen *seen = calloc(1, sizeof(*seen));
	yajl_handle h = tg_yajl_alloc(&CALLBACKS, seen);

	ck_assert_ptr_nonnull(h);
	ck_assert(in_block(arena(), h));
	ck_assert_uint_eq(arena()->open, 1);
	ck_assert_int_eq(feed(h, text, strlen(text), 3), yajl_status_ok);
	ck_assert_uint_gt(arena()->used, 0);
	tg_yajl_free(h);

	ck_assert_uint_eq(arena()->open, 0);
	ck_assert_uint_eq(arena()->used, 0);
	ck_assert_uint_eq(seen->len, 3);
	ck_assert_mem_eq(seen->text, "b\nc", 3);
	free(seen);
}
END_TEST

START_TEST(nested_handles_share_block)
{
	static const char outer_text[] = "{\"x\": {\"y\": \"outer\\ttext\"}}";
	static const char inner_text[] = "[\"inner\\ttext\", {}]";
	struct seen *outer = calloc(1, sizeof(*outer));
	struct seen *inner = calloc(1, sizeof(*inner));
	yajl_handle a = tg_yajl_alloc(&CALLBACKS, outer);
	yajl_handle b;
	size_t used;

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(yajl_parse(a, (const unsigned char *)outer_text, 10), yajl_status_ok);
	b = tg_yajl_alloc(&CALLBACKS, inner);
	ck_assert_ptr_nonnull(b);
	ck_assert(in_block(arena(), b));
	ck_assert_uint_eq(arena()->open, 2);
	ck_assert_int_eq(feed(b, inner_text, strlen(inner_text), 4), yajl_status_ok);
	ck_assert_int_eq(feed(a, outer_text + 10, strlen(outer_text) - 10, 5), yajl_status_ok);

	/* The outer handle goes first, while the inner one still uses the block. */
	used = arena()->used;
	tg_yajl_free(a);
	ck_assert_uint_eq(arena()->open, 1);
	ck_assert_uint_eq(arena()->used, used);
	tg_yajl_free(b);
	ck_assert_uint_eq(arena()->used, 0);

	ck_assert_uint_eq(outer->len, 10);
	ck_assert_mem_eq(outer->text, "outer\ttext", 10);
	ck_assert_int_eq(outer->maps, 2);
	ck_assert_uint_eq(inner->len, 10);
	ck_assert_mem_eq(inner->text, "inner\ttext", 10);
	ck_assert_int_eq(inner->maps, 1);
	free(outer);
	free(inner);
}
END_TEST

/* A string with escapes, longer than the block: yajl's decode buffer
 * grows in place, then moves to malloc. Cut into pieces, the lexer's
 * buffer grows too. The parse must give the text as it was. */
START_TEST(parse_outgrows_block)
{
	size_t n = 3 * BLOCK_SIZE;
	char *text = malloc(n + 8), *decoded = malloc(n);
	struct seen *seen = calloc(1, sizeof(*seen));
	size_t len = 0, n_decoded = 0;

	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(decoded);
	text[len++] = '[';
	text[len++] = '"';
	while (len < n) {
		if (n_decoded % 64 == 0) {
			text[len++] = '\\';
			text[len++] = 'n';
			decoded[n_decoded++] = '\n';
		} else {
			text[len++] = 'a';
			decoded[n_decoded++] = 'a';
		}
	}
	text[len++] = '"';
	text[len++] = ']';

	/* In pieces of 1,000 bytes, then whole. */
	for (size_t step = 1000; step <= len; step = step < len ? len : len + 1) {
		yajl_handle h = tg_yajl_alloc(&CALLBACKS, seen);

		seen->len = 0;
		ck_assert_ptr_nonnull(h);
		ck_assert_int_eq(feed(h, text, len, step), yajl_status_ok);
		tg_yajl_free(h);
		ck_assert_uint_eq(arena()->used, 0);
		ck_assert_uint_eq(seen->len, n_decoded);
		ck_assert_mem_eq(seen->text, decoded, n_decoded);
	}
	free(seen);
	free(decoded);
	free(text);
}
END_TEST

/* Freeing a handle that is not open breaks the contract. */
START_TEST(free_without_open_handle_aborts)
{
	release_handle(arena());
}
END_TEST

static Suite *
yajl_arena_suite(void)
{
	Suite *s = suite_create("yajl-arena");
	TCase *block = tcase_create("block");
	TCase *handles = tcase_create("handles");

	tcase_add_checked_fixture(block, empty_block, NULL);
	tcase_add_checked_fixture(handles, empty_block, NULL);

	tcase_add_test(block, malloc_bumps_through_block);
	tcase_add_test(block, realloc_of_latest_grows_in_place);
	tcase_add_test(block, realloc_of_earlier_moves);
	tcase_add_test(block, malloc_past_block_falls_back);
	tcase_add_test(block, realloc_past_block_moves_to_malloc);
	suite_add_tcase(s, block);

	tcase_add_test(handles, free_of_last_handle_resets);
	tcase_add_test(handles, nested_handles_share_block);
	tcase_add_test(handles, parse_outgrows_block);
	tcase_add_test_raise_signal(handles, free_without_open_handle_aborts, SIGABRT);
	suite_add_tcase(s, handles);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(yajl_arena_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
