/*
 * Unit tests for the header line of cache entries (src/cache-header.c):
 * the reader takes exactly the headers that the jansson reading it
 * replaced took, with the same values, and reads back what the writer
 * writes.
 */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cache-header.h"

/* The header as jansson reads it: the reading that tg_cache_header_read()
 * replaced, kept here as the test's oracle. */
static int
oracle_read(const char *text, struct tg_cache_header *h, size_t bytes[], size_t max)
{
	json_error_t error;
	json_t *header = json_loadb(text, strlen(text), 0, &error);
	json_t *version = json_object_get(header, "v");
	json_t *created = json_object_get(header, "created_ms");
	json_t *kind = json_object_get(header, "kind");
	json_t *lengths = json_object_get(header, "bytes");
	json_t *usage = json_object_get(header, "usage");
	json_t *usage_event = json_object_get(header, "usage_event");
	json_t *item;
	size_t i;
	int rc = -1;

	memset(h, 0, sizeof(*h));
	h->usage_event = -1;
	if (!json_is_object(header) || !json_is_integer(version) ||
	    json_integer_value(version) != TG_CACHE_ENTRY_VERSION ||
	    !json_is_integer(created) || !json_is_string(kind) || !json_is_array(lengths) ||
	    json_array_size(lengths) > max)
		goto out;
	json_array_foreach(lengths, i, item) {
		if (!json_is_integer(item) || json_integer_value(item) < 0)
			goto out;
		bytes[i] = (size_t)json_integer_value(item);
	}
	h->n_parts = json_array_size(lengths);
	h->created_ms = json_integer_value(created);
	if (strcmp(json_string_value(kind), "json") == 0)
		h->kind = TG_CACHE_KIND_JSON;
	else if (strcmp(json_string_value(kind), "events") == 0)
		h->kind = TG_CACHE_KIND_EVENTS;
	else if (strcmp(json_string_value(kind), "stream") == 0)
		h->kind = TG_CACHE_KIND_STREAM;
	if (h->kind == TG_CACHE_KIND_STREAM) {
		if (!json_is_boolean(usage) || !json_is_integer(usage_event))
			goto out;
		h->has_usage = json_is_true(usage);
		h->usage_event = json_integer_value(usage_event);
	}
	rc = 0;
out:
	json_decref(header);
	return rc;
}

/* Headers on both sides of every check the reader makes. */
static const char *const CASES[] = {
	/* what the writer writes, and the same in other forms */
	"{\"v\":2,\"created_ms\":1700000000000,\"kind\":\"json\",\"bytes\":[336]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage\":true,\"usage_event\":4,"
	"\"bytes\":[10,20,30,40,50]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage\":false,\"usage_event\":-1,"
	"\"bytes\":[1]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"events\",\"bytes\":[5,0,7]}",
	" { \"bytes\" : [ 3 ] , \"kind\" : \"json\" , \"created_ms\" : -5 , \"v\" : 2 } ",
	"{\"v\":2,\"created_ms\":0,\"kind\":\"json\",\"bytes\":[]}",
	"{\"v\":2,\"created_ms\":9223372036854775807,\"kind\":\"json\",\"bytes\":[0]}",
	/* response headers: kept names with values that can be sent */
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"headers\":"
	"{\"content-type\":\"application/json\",\"request-id\":\"req_1\"}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"headers\":"
	"{\"Set-Cookie\":\"a\",\"request-id\":1,\"cache-control\":\"a\\r\\nb\","
	"\"openai-version\":\"a\\u0001\",\"openai-project\":[\"p\"],\"openai-organization\":\"o\"}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"headers\":"
	"{\"request-id\":\"a\",\"request-id\":\"b\",\"openai-version\":\"c\",\"openai-version\":null}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"headers\":"
	"{\"request-id\":\"a\"},\"headers\":{\"openai-version\":\"c\"}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"headers\":"
	"{\"request-id\":\"a\"},\"headers\":[\"x\"]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"headers\":\"x\",\"bytes\":[2]}",
	/* unknown members, of every type, at any depth */
	"{\"x\":{\"v\":1,\"bytes\":[\"a\"],\"y\":[[{}]]},\"v\":2,\"created_ms\":1,"
	"\"kind\":\"json\",\"z\":null,\"w\":1.5,\"u\":true,\"bytes\":[2],\"t\":\"s\"}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"other\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"usage\":\"yes\"}",
	/* a member given twice counts with its last value */
	"{\"v\":1,\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"v\":1,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"bytes\":[3,4]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],\"bytes\":{}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[\"2\"],\"bytes\":[5]}",
	"{\"v\":2,\"created_ms\":\"1\",\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"created_ms\":null,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage\":true,\"usage\":1,"
	"\"usage_event\":0,\"bytes\":[2]}",
	/* a member missing, or of the wrong type */
	"{\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\"}",
	"{\"v\":2.0,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":\"2\",\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1e3,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":[\"json\"],\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":2}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2.0]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[-1]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[[2]]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2,null]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[{}]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage_event\":0,\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage\":true,\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"usage\":true,\"usage_event\":0.0,"
	"\"bytes\":[2]}",
	/* not an object, or not JSON */
	"",
	"[]",
	"2",
	"\"json\"",
	"null",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]} {}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2],}",
	"{\"v\":2,\"created_ms\":99999999999999999999,\"kind\":\"json\",\"bytes\":[2]}",
	"{\"v\":2,\"created_ms\":1,\"kind\":\"js\xc3on\",\"bytes\":[2]}",
	"{'v':2}",
};

/* 1 when value has no control character but HTAB. */
static int
sendable(const char *value)
{
	for (; *value != '\0'; value++) {
		if (((unsigned char)*value < 0x20 && *value != '\t') || *value == 0x7f)
			return 0;
	}
	return 1;
}

/* The headers of text's "headers" as jansson reads them are those in
 * kept: the members with a kept name and a string value that can be sent. */
static void
check_kept_headers(const char *text, const struct tg_headers *kept)
{
	json_t *header = json_loadb(text, strlen(text), 0, NULL);
	json_t *headers = json_object_get(header, "headers");
	const char *name;
	json_t *value;
	size_t want = 0;

	json_object_foreach(headers, name, value) {
		const char *got = tg_headers_find(kept, name, strlen(name));

		if (!tg_cache_header_keeps(name, strlen(name)) || !json_is_string(value) ||
		    !sendable(json_string_value(value))) {
			ck_assert_msg(got == NULL, "%s was read from %s", name, text);
			continue;
		}
		ck_assert_msg(got != NULL, "%s was not read from %s", name, text);
		ck_assert_str_eq(got, json_string_value(value));
		want++;
	}
	ck_assert_uint_eq(kept->count, want);
	json_decref(header);
}

START_TEST(reader_agrees_with_jansson)
{
	const char *text = CASES[_i];
	struct tg_cache_header want, got;
	size_t want_bytes[16];
	int want_rc = oracle_read(text, &want, want_bytes, 16);
	int got_rc = tg_cache_header_read(text, strlen(text), &got);

	ck_assert_msg(got_rc == want_rc, "read %d, jansson %d: %s", got_rc, want_rc, text);
	if (got_rc != 0)
		return;
	ck_assert_int_eq(got.created_ms, want.created_ms);
	ck_assert_int_eq(got.kind, want.kind);
	ck_assert_int_eq(got.n_parts, want.n_parts);
	for (size_t i = 0; i < got.n_parts; i++)
		ck_assert_uint_eq(got.bytes[i], want_bytes[i]);
	if (got.kind == TG_CACHE_KIND_STREAM) {
		ck_assert_int_eq(got.has_usage, want.has_usage);
		ck_assert_int_eq(got.usage_event, want.usage_event);
	}
	check_kept_headers(text, &got.kept);
	tg_cache_header_free(&got);
}
END_TEST

/* Every header the writer makes reads back to the same values. */
START_TEST(written_header_reads_back)
{
	size_t lengths[] = {0, 1, 127, 128, 4194304};
	const struct tg_cache_header headers[] = {
		{.created_ms = 1764950400123, .kind = TG_CACHE_KIND_JSON, .bytes = lengths,
		 .n_parts = 1},
		{.created_ms = 0, .kind = TG_CACHE_KIND_STREAM, .has_usage = 1, .usage_event = 4,
		 .bytes = lengths, .n_parts = 5},
		{.created_ms = -1, .kind = TG_CACHE_KIND_STREAM, .usage_event = -1,
		 .bytes = lengths, .n_parts = 2},
		{.created_ms = 7, .kind = TG_CACHE_KIND_EVENTS, .bytes = lengths, .n_parts = 3},
	};

	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		const struct tg_cache_header *h = &headers[i];
		struct tg_json_writer w = {0};
		struct tg_cache_header got;

		tg_cache_header_write(&w, h);
		ck_assert_int_eq(w.failed, 0);
		ck_assert_int_eq(tg_cache_header_read(w.data, w.len, &got), 0);
		ck_assert_int_eq(got.created_ms, h->created_ms);
		ck_assert_int_eq(got.kind, h->kind);
		ck_assert_int_eq(got.has_usage, h->has_usage);
		ck_assert_int_eq(got.usage_event, h->kind == TG_CACHE_KIND_STREAM ? h->usage_event : -1);
		ck_assert_uint_eq(got.n_parts, h->n_parts);
		ck_assert_mem_eq(got.bytes, h->bytes, h->n_parts * sizeof(size_t));
		tg_cache_header_free(&got);
		tg_json_writer_free(&w);
	}
}
END_TEST

/* The writer's bytes are those jansson's compact dump gave, so entries
 * stored by older instances and newer ones look alike. */
START_TEST(written_header_as_jansson_wrote_it)
{
	size_t lengths[] = {12, 0, 345};
	struct tg_cache_header h = {
		.created_ms = 1764950400123, .kind = TG_CACHE_KIND_STREAM, .has_usage = 1,
		.usage_event = 2, .bytes = lengths, .n_parts = 3,
	};
	static const char want[] =
		"{\"v\":2,\"created_ms\":1764950400123,\"kind\":\"stream\",\"usage\":true,"
		"\"usage_event\":2,\"bytes\":[12,0,345]}";
	struct tg_json_writer w = {0};

	tg_cache_header_write(&w, &h);
	ck_assert_int_eq(w.failed, 0);
	ck_assert_uint_eq(w.len, sizeof(want) - 1);
	ck_assert_mem_eq(w.data, want, w.len);
	tg_json_writer_free(&w);
}
END_TEST

static Suite *
cache_header_suite(void)
{
	Suite *s = suite_create("cache-header");
	TCase *read = tcase_create("read");
	TCase *write = tcase_create("write");

	tcase_add_loop_test(read, reader_agrees_with_jansson, 0, sizeof(CASES) / sizeof(CASES[0]));
	suite_add_tcase(s, read);

	tcase_add_test(write, written_header_reads_back);
	tcase_add_test(write, written_header_as_jansson_wrote_it);
	suite_add_tcase(s, write);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(cache_header_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
