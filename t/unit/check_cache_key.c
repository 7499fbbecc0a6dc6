/*
 * Unit tests for cache keys (src/cache-key.c): which request differences
 * change the key and which do not, number normalisation and tenants.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache-key.h"

static const char *const base_request =
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5}";

/* The scope of a key on a route without response filters. The result
 * lives until the next call. */
static const struct tg_cache_key_scope *
scope(const char *path, const char *route, const char *tenant, char *const *ignore_fields,
      size_t n_ignore_fields)
{
	static struct tg_cache_key_scope s;

	s = (struct tg_cache_key_scope){
		.path = path, .route = route, .tenant = tenant,
		.ignore_fields = ignore_fields, .n_ignore_fields = n_ignore_fields,
	};
	return &s;
}

/* The key of body (JSON text) under route "chat" and tenant "t". */
static void
key_of(const char *body, unsigned char key[TG_CACHE_KEY_LEN])
{
	ck_assert_int_eq(tg_cache_key(body, strlen(body),
	                              scope("/v1/chat/completions", "chat", "t", NULL, 0), key), 0);
}

static int
same_key(const char *a, const char *b)
{
	unsigned char ka[TG_CACHE_KEY_LEN], kb[TG_CACHE_KEY_LEN];

	key_of(a, ka);
	key_of(b, kb);
	return memcmp(ka, kb, TG_CACHE_KEY_LEN) == 0;
}

/* Requests that differ from base_request in one output-affecting field. */
static const char *const changed_requests[] = {
	/* model */
	"{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5}",
	/* system prompt */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be long.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5}",
	/* an earlier turn, same last user message */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}],"
	" \"temperature\": 0.5}",
	/* whitespace inside content is content */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi \"}], \"temperature\": 0.5}",
	/* temperature */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.7}",
	/* and each further parameter */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"top_p\": 0.9}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"max_tokens\": 10}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"max_completion_tokens\": 10}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"stop\": [\"\\n\"]}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"seed\": 7}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5,"
	" \"response_format\": {\"type\": \"json_object\"}}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"n\": 2}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"logprobs\": true}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5,"
	" \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"tool_choice\": \"none\"}",
	/* a field the gateway does not know */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"x_new_knob\": 1}",
};

START_TEST(key_changes_with_field)
{
	ck_assert_msg(!same_key(base_request, changed_requests[_i]),
	              "same key for\n%s\nand\n%s", base_request, changed_requests[_i]);
}
END_TEST

/* Requests that must share base_request's key. */
static const char *const equal_requests[] = {
	/* key order and whitespace */
	"{\"temperature\":0.5,\"messages\":[{\"content\":\"Be brief.\",\"role\":\"system\"},"
	"{\"content\":\"Hi\",\"role\":\"user\"}],\"model\":\"gpt-4o\"}",
	/* user, stream and stream_options */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"user\": \"alice\"}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.5, \"stream\": true,"
	" \"stream_options\": {\"include_usage\": true}}",
	/* the same number written another way */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 5e-1}",
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0.50}",
	/* an escape for a plain character */
	"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"\\u0048i\"}], \"temperature\": 0.5}",
};

START_TEST(key_ignores_presentation)
{
	ck_assert_msg(same_key(base_request, equal_requests[_i]),
	              "different keys for\n%s\nand\n%s", base_request, equal_requests[_i]);
}
END_TEST

START_TEST(integral_numbers_compare_equal)
{
	ck_assert(same_key("{\"model\": \"m\", \"n\": 1}", "{\"model\": \"m\", \"n\": 1.0}"));
	ck_assert(same_key("{\"model\": \"m\", \"n\": 1}", "{\"model\": \"m\", \"n\": 1e0}"));
	ck_assert(same_key("{\"model\": \"m\", \"n\": 100}", "{\"model\": \"m\", \"n\": 1E2}"));
	ck_assert(same_key("{\"model\": \"m\", \"t\": 0}", "{\"model\": \"m\", \"t\": -0.0}"));
	ck_assert(same_key("{\"model\": \"m\", \"a\": [{\"x\": 2}]}",
	                   "{\"model\": \"m\", \"a\": [{\"x\": 2.0}]}"));
	ck_assert(!same_key("{\"model\": \"m\", \"n\": 1}", "{\"model\": \"m\", \"n\": 1.5}"));
	ck_assert(!same_key("{\"model\": \"m\", \"n\": 1}", "{\"model\": \"m\", \"n\": \"1\"}"));
	ck_assert(!same_key("{\"model\": \"m\", \"n\": 0.1}", "{\"model\": \"m\", \"n\": 0.10000001}"));
}
END_TEST

START_TEST(null_differs_from_absent)
{
	ck_assert(!same_key("{\"model\": \"m\"}", "{\"model\": \"m\", \"tools\": null}"));
}
END_TEST

START_TEST(canonical_text_is_sorted_and_compact)
{
	const char *body = "{\"b\": 1.0, \"a\": {\"d\": 2, \"c\": [3.5, 4.0]},"
	                   " \"user\": \"u\", \"stream\": true, \"meta\": 1}";
	char *ignored[] = {"meta"};
	char *text;

	text = tg_cache_canonical(body, strlen(body), scope("/p", "r", "t", ignored, 1));
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "{\"path\":\"/p\",\"request\":{\"a\":{\"c\":[3.5,4],\"d\":2},\"b\":1},"
	                       "\"route\":\"r\",\"tenant\":\"t\",\"v\":2}");
	free(text);
}
END_TEST

START_TEST(ignore_fields_leave_key)
{
	const char *a = "{\"model\": \"m\", \"metadata\": {\"trace\": \"1\"}}";
	const char *b = "{\"model\": \"m\", \"metadata\": {\"trace\": \"2\"}}";
	char *ignored[] = {"metadata"};
	unsigned char ka[TG_CACHE_KEY_LEN], kb[TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(a, strlen(a), scope("/v1/chat/completions", "chat", "", NULL, 0), ka), 0);
	ck_assert_int_eq(tg_cache_key(b, strlen(b), scope("/v1/chat/completions", "chat", "", NULL, 0), kb), 0);
	ck_assert_mem_ne(ka, kb, TG_CACHE_KEY_LEN);

	ck_assert_int_eq(tg_cache_key(a, strlen(a), scope("/v1/chat/completions", "chat", "", ignored, 1), ka), 0);
	ck_assert_int_eq(tg_cache_key(b, strlen(b), scope("/v1/chat/completions", "chat", "", ignored, 1), kb), 0);
	ck_assert_mem_eq(ka, kb, TG_CACHE_KEY_LEN);
}
END_TEST

START_TEST(route_path_and_tenant_change_key)
{
	const char *body = base_request;
	unsigned char k[4][TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/v1/chat/completions", "chat", "a", NULL, 0), k[0]), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/v1/chat/completions", "chat2", "a", NULL, 0), k[1]), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/v1/completions", "chat", "a", NULL, 0), k[2]), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/v1/chat/completions", "chat", "b", NULL, 0), k[3]), 0);
	for (int i = 0; i < 4; i++) {
		for (int j = i + 1; j < 4; j++)
			ck_assert_msg(memcmp(k[i], k[j], TG_CACHE_KEY_LEN) != 0, "keys %d and %d equal", i, j);
	}
}
END_TEST

/* The query counts as sent. A target without one, or with an empty one,
 * keeps the key it had before queries counted. */
START_TEST(query_changes_key)
{
	const char *body = base_request;
	struct tg_cache_key_scope with = *scope("/v1/chat/completions", "chat", "a", NULL, 0);
	unsigned char none[TG_CACHE_KEY_LEN], empty[TG_CACHE_KEY_LEN];
	unsigned char v1[TG_CACHE_KEY_LEN], v2[TG_CACHE_KEY_LEN], again[TG_CACHE_KEY_LEN];
	unsigned char ab[TG_CACHE_KEY_LEN], ba[TG_CACHE_KEY_LEN];
	char *text;

	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, none), 0);
	with.query = "";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, empty), 0);
	ck_assert_mem_eq(none, empty, TG_CACHE_KEY_LEN);

	with.query = "api-version=1";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, v1), 0);
	text = tg_cache_canonical(body, strlen(body), &with);
	ck_assert_ptr_nonnull(strstr(text, "\"path\":\"/v1/chat/completions\","
	                                   "\"query\":\"api-version=1\",\"request\":"));
	free(text);
	with.query = "api-version=2";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, v2), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, again), 0);
	ck_assert_mem_ne(none, v1, TG_CACHE_KEY_LEN);
	ck_assert_mem_ne(v1, v2, TG_CACHE_KEY_LEN);
	ck_assert_mem_eq(v2, again, TG_CACHE_KEY_LEN);

	/* Parameters in another order are another query. */
	with.query = "a=1&b=2";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, ab), 0);
	with.query = "b=2&a=1";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, ba), 0);
	ck_assert_mem_ne(ab, ba, TG_CACHE_KEY_LEN);

	with.query = "q=\xff";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, again), TG_CACHE_KEY_NOT_UTF8);
}
END_TEST

START_TEST(response_filters_change_key)
{
	const char *body = base_request;
	struct tg_cache_key_scope with = *scope("/v1/chat/completions", "chat", "a", NULL, 0);
	unsigned char none[TG_CACHE_KEY_LEN], one[TG_CACHE_KEY_LEN], two[TG_CACHE_KEY_LEN];
	unsigned char again[TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/v1/chat/completions", "chat", "a", NULL, 0),
	                              none), 0);
	with.filters = "[\"{\\\"pattern\\\":\\\"a\\\"}\"]";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, one), 0);
	with.filters = "[\"{\\\"pattern\\\":\\\"b\\\"}\"]";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, two), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, again), 0);

	ck_assert_mem_ne(none, one, TG_CACHE_KEY_LEN);
	ck_assert_mem_ne(one, two, TG_CACHE_KEY_LEN);
	ck_assert_mem_eq(two, again, TG_CACHE_KEY_LEN);
}
END_TEST

/* Headers that choose a provider's API version or beta features change
 * the key by value, whatever the case of their names. Other headers do
 * not. Without them the canonical text has no "headers" member. */
START_TEST(varying_headers_change_key)
{
	const char *body = base_request;
	struct tg_cache_key_scope with = *scope("/v1/messages", "chat", "a", NULL, 0);
	struct tg_headers h;
	unsigned char none[TG_CACHE_KEY_LEN], other[TG_CACHE_KEY_LEN];
	unsigned char beta[TG_CACHE_KEY_LEN], beta2[TG_CACHE_KEY_LEN], upper[TG_CACHE_KEY_LEN];
	char *text;

	tg_headers_init(&h);
	with.headers = &h;
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, none), 0);
	text = tg_cache_canonical(body, strlen(body), &with);
	ck_assert_ptr_null(strstr(text, "\"headers\""));
	free(text);

	ck_assert_int_eq(tg_headers_add(&h, "X-Trace", 7, "1", 1), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, other), 0);
	ck_assert_mem_eq(none, other, TG_CACHE_KEY_LEN);

	ck_assert_int_eq(tg_headers_add(&h, "anthropic-beta", 14, "tools-1", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, beta), 0);
	ck_assert_mem_ne(none, beta, TG_CACHE_KEY_LEN);
	text = tg_cache_canonical(body, strlen(body), &with);
	ck_assert_ptr_nonnull(strstr(text, "\"headers\":{\"anthropic-beta\":\"tools-1\"}"));
	free(text);
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "Anthropic-Beta", 14, "tools-2", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, beta2), 0);
	ck_assert_mem_ne(beta, beta2, TG_CACHE_KEY_LEN);
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "ANTHROPIC-BETA", 14, "tools-1", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, upper), 0);
	ck_assert_mem_eq(beta, upper, TG_CACHE_KEY_LEN);
	tg_headers_free(&h);
}
END_TEST

START_TEST(key_is_sha256_of_canonical)
{
	const char *body = "{\"model\": \"m\"}";
	unsigned char key[TG_CACHE_KEY_LEN];
	char hex[TG_CACHE_KEY_HEX_LEN + 1];

	/* sha256 of {"path":"/p","request":{"model":"m"},"route":"r","tenant":"","v":2},
	 * computed with: printf '%s' '...' | sha256sum */
	ck_assert_int_eq(tg_cache_key(body, strlen(body), scope("/p", "r", "", NULL, 0), key), 0);
	tg_cache_key_hex(key, hex);
	ck_assert_str_eq(hex, "0c89e2d5a7c7f60587faf1ca7407d74f53739d54b51ea140033deac3693d9e3c");
}
END_TEST

/* --- the canonical text against jansson's dump --------------------------- */

/* Reference form of a number, as the key defines it: an integral real of
 * magnitude up to 2^53 becomes an integer. */
static json_t *
reference_number(const json_t *value)
{
	double d = json_real_value(value);

	if (json_is_real(value) && d == floor(d) && fabs(d) <= 9007199254740992.0)
		return json_integer((json_int_t)d);
	return json_deep_copy(value);
}

/* A deep copy of value with its numbers in reference form. */
static json_t *
reference_copy(const json_t *value)
{
	const char *key;
	json_t *child, *copy;
	size_t i;

	if (json_is_object(value)) {
		copy = json_object();
		json_object_foreach((json_t *)value, key, child)
			json_object_set_new(copy, key, reference_copy(child));
		return copy;
	}
	if (json_is_array(value)) {
		copy = json_array();
		json_array_foreach(value, i, child)
			json_array_append_new(copy, reference_copy(child));
		return copy;
	}
	return reference_number(value);
}

/* The canonical text as the key defines it, built as a jansson tree and
 * dumped by jansson with sorted keys. */
static char *
reference_canonical(const json_t *body, const struct tg_cache_key_scope *s)
{
	json_t *request = reference_copy(body);
	json_t *canonical, *headers = json_object();
	const char *names[] = {"anthropic-version", "anthropic-beta", "openai-beta"};
	char *text;

	json_object_del(request, "stream");
	json_object_del(request, "stream_options");
	json_object_del(request, "user");
	for (size_t i = 0; i < s->n_ignore_fields; i++)
		json_object_del(request, s->ignore_fields[i]);
	canonical = json_pack("{s:i, s:s, s:s, s:s, s:o}", "v", TG_CACHE_KEY_VERSION, "path", s->path,
	                      "route", s->route, "tenant", s->tenant, "request", request);
	if (s->query != NULL && s->query[0] != '\0')
		json_object_set_new(canonical, "query", json_string(s->query));
	if (s->filters != NULL)
		json_object_set_new(canonical, "filters", json_string(s->filters));
	for (size_t i = 0; s->headers != NULL && i < 3; i++) {
		const char *value = tg_headers_get(s->headers, names[i]);

		if (value != NULL)
			json_object_set_new(headers, names[i], json_string(value));
	}
	if (json_object_size(headers) > 0)
		json_object_set(canonical, "headers", headers);
	json_decref(headers);
	text = json_dumps(canonical, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(canonical);
	return text;
}

/* Bodies whose canonical text must be what jansson dumps: escapes, UTF-8
 * keys and values, keys that are prefixes of others, more members than
 * fit on the stack, reals at and past 2^53, extreme integers. */
static const char *const dump_bodies[] = {
	"{}",
	"{\"model\": \"m\", \"messages\": [], \"tools\": {}}",
	"{\"b\": 1, \"a\": 2, \"ab\": 3, \"a\\u00e9\": 4, \"A\": 5, \"\\u00e9\": 6, \"\\ud83d\\ude00\": 7}",
	"{\"s\": \"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f\"}",
	"{\"s\": \"\\u0001\\u001f\\u007f \\u2028 \\u00e9 \\ud83d\\ude00 caf\\u00e9\"}",
	"{\"r\": [0.1, 1.5, -0.0, 1.0, 1e300, -1e-300, 9007199254740992.0,"
	" 9007199254740994.0, 123456789.123456789, 5e-324]}",
	"{\"i\": [0, -1, 9223372036854775807, -9223372036854775808]}",
	"{\"v\": [true, false, null, [], {}, [[[]]], {\"x\": {\"y\": {\"z\": null}}}]}",
	"{\"k01\": 1, \"k02\": 2, \"k03\": 3, \"k04\": 4, \"k05\": 5, \"k06\": 6, \"k07\": 7,"
	" \"k08\": 8, \"k09\": 9, \"k10\": 10, \"k11\": 11, \"k12\": 12, \"k13\": 13, \"k14\": 14,"
	" \"k15\": 15, \"k16\": 16, \"k17\": 17, \"k00\": {\"z\": 1, \"y\": 2}, \"stream\": true}",
	"{\"model\": \"m\", \"user\": \"u\", \"stream\": true, \"stream_options\": {},"
	" \"metadata\": {\"b\": 1, \"a\": 2}, \"temperature\": 0.7}",
};

START_TEST(canonical_text_matches_jansson)
{
	const char *body_text = dump_bodies[_i];
	char *ignored[] = {"metadata"};
	struct tg_cache_key_scope s = *scope("/v1/chat/completions", "chat", "t\\u00e9", ignored, 1);
	struct tg_headers h;
	json_error_t error;
	json_t *body = json_loads(body_text, 0, &error);
	char *text, *expected;

	ck_assert_msg(body != NULL, "test body is not JSON: %s: %s", body_text, error.text);
	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "OpenAI-Beta", 11, "assistants=v2", 13), 0);
	ck_assert_int_eq(tg_headers_add(&h, "anthropic-version", 17, "2023-06-01", 10), 0);
	ck_assert_int_eq(tg_headers_add(&h, "anthropic-beta", 14, "b\xc3\xa9ta", 6), 0);

	for (int variant = 0; variant < 4; variant++) {
		s.filters = variant == 1 ? "[\"{\\\"pattern\\\":\\\"\\u00e9\\\"}\"]" : NULL;
		s.headers = variant >= 2 ? &h : NULL;
		s.query = variant == 3 ? "api-version=2024-10-21&x=%22\xc3\xa9\"" : NULL;
		text = tg_cache_canonical(body_text, strlen(body_text), &s);
		expected = reference_canonical(body, &s);
		ck_assert_ptr_nonnull(text);
		ck_assert_ptr_nonnull(expected);
		ck_assert_str_eq(text, expected);
		free(text);
		free(expected);
	}
	tg_headers_free(&h);
	json_decref(body);
}
END_TEST

/* A path or varying header value that is not UTF-8 keeps the request
 * out of the cache: written as U+FFFD, two such values would share a key. */
START_TEST(header_not_utf8_has_no_key)
{
	const char *body = base_request;
	struct tg_cache_key_scope with = *scope("/v1/messages", "chat", "a", NULL, 0);
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_headers h;

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "anthropic-beta", 14, "beta-\xff", 6), 0);
	with.headers = &h;
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, key), TG_CACHE_KEY_NOT_UTF8);

	with.headers = NULL;
	with.path = "/v1/\xfe";
	ck_assert_int_eq(tg_cache_key(body, strlen(body), &with, key), TG_CACHE_KEY_NOT_UTF8);
	tg_headers_free(&h);
}
END_TEST

static void
tenant_of(const char *name, const char *value, const char *tenant_header,
          char out[TG_CACHE_KEY_HEX_LEN + 1])
{
	struct tg_headers h;

	tg_headers_init(&h);
	if (name != NULL)
		ck_assert_int_eq(tg_headers_add(&h, name, strlen(name), value, strlen(value)), 0);
	ck_assert_int_eq(tg_cache_tenant(&h, tenant_header, NULL, out), 0);
	tg_headers_free(&h);
}

START_TEST(tenant_from_credential)
{
	char a[TG_CACHE_KEY_HEX_LEN + 1], b[TG_CACHE_KEY_HEX_LEN + 1];
	char a2[TG_CACHE_KEY_HEX_LEN + 1], none[TG_CACHE_KEY_HEX_LEN + 1];

	tenant_of("Authorization", "Bearer sk-a", NULL, a);
	tenant_of("authorization", "Bearer sk-a", NULL, a2);
	tenant_of("Authorization", "Bearer sk-b", NULL, b);
	tenant_of(NULL, NULL, NULL, none);

	ck_assert_uint_eq(strlen(a), TG_CACHE_KEY_HEX_LEN);
	ck_assert_str_eq(a, a2);
	ck_assert_str_ne(a, b);
	ck_assert_str_eq(none, "");
	/* The credential is not in the tenant. */
	ck_assert_ptr_null(strstr(a, "sk-a"));
}
END_TEST

/* The tenant of a request with an Authorization credential (NULL: none)
 * and an X-Tenant header (NULL: none), with X-Tenant configured. */
static void
tenant_with_header(const char *credential, const char *tenant_value,
                   char out[TG_CACHE_KEY_HEX_LEN + 1])
{
	struct tg_headers h;

	tg_headers_init(&h);
	if (credential != NULL)
		ck_assert_int_eq(tg_headers_add(&h, "Authorization", 13, credential,
		                                strlen(credential)), 0);
	if (tenant_value != NULL)
		ck_assert_int_eq(tg_headers_add(&h, "X-Tenant", 8, tenant_value,
		                                strlen(tenant_value)), 0);
	ck_assert_int_eq(tg_cache_tenant(&h, "X-Tenant", NULL, out), 0);
	tg_headers_free(&h);
}

START_TEST(tenant_from_header)
{
	char by_header[TG_CACHE_KEY_HEX_LEN + 1], by_key[TG_CACHE_KEY_HEX_LEN + 1];
	char fallback[TG_CACHE_KEY_HEX_LEN + 1];

	/* The same text as a tenant header and as a credential gives two
	 * tenants. */
	tenant_of("X-Tenant", "acme", "X-Tenant", by_header);
	tenant_of("x-api-key", "acme", "X-Tenant", by_key);
	ck_assert_str_ne(by_header, by_key);
	ck_assert_uint_eq(strlen(by_header), TG_CACHE_KEY_HEX_LEN);

	/* Without the configured header, the credential decides. */
	tenant_of("x-api-key", "acme", NULL, fallback);
	ck_assert_str_eq(by_key, fallback);
}
END_TEST

/* The tenant header splits one credential's entries but never crosses
 * credentials: another key, or none, with the same header value is
 * another tenant. */
START_TEST(tenant_header_keeps_credentials_apart)
{
	char victim[TG_CACHE_KEY_HEX_LEN + 1], again[TG_CACHE_KEY_HEX_LEN + 1];
	char other_key[TG_CACHE_KEY_HEX_LEN + 1], no_key[TG_CACHE_KEY_HEX_LEN + 1];
	char other_tenant[TG_CACHE_KEY_HEX_LEN + 1], key_alone[TG_CACHE_KEY_HEX_LEN + 1];
	char header_alone[TG_CACHE_KEY_HEX_LEN + 1];

	tenant_with_header("Bearer kV", "t1", victim);
	tenant_with_header("Bearer kV", "t1", again);
	tenant_with_header("Bearer kA", "t1", other_key);
	tenant_with_header(NULL, "t1", no_key);
	tenant_with_header("Bearer kV", "t2", other_tenant);
	tenant_with_header("Bearer kV", NULL, key_alone);
	tenant_of("Authorization", "Bearer kV", NULL, header_alone);

	ck_assert_str_eq(victim, again);
	ck_assert_str_ne(victim, other_key);
	ck_assert_str_ne(victim, no_key);
	ck_assert_str_ne(victim, other_tenant);
	ck_assert_str_ne(victim, key_alone);
	ck_assert_str_ne(no_key, "");

	/* A credential without the header keeps the tenant it has when no
	 * header is configured, so its entries keep their keys. */
	ck_assert_str_eq(key_alone, header_alone);
}
END_TEST

/* The tenant of a request whose credential header name carries value,
 * identified as the gateway key gateway_key. */
static void
tenant_of_key(const char *name, const char *value, const char *gateway_key,
              char out[TG_CACHE_KEY_HEX_LEN + 1])
{
	struct tg_headers h;

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, name, strlen(name), value, strlen(value)), 0);
	ck_assert_int_eq(tg_cache_tenant(&h, NULL, gateway_key, out), 0);
	tg_headers_free(&h);
}

/* With gateway keys, the key's name is the identity: one key under any
 * header is one tenant, two keys are two, and neither is the tenant of
 * the same text taken for a provider credential. */
START_TEST(tenant_from_gateway_key)
{
	char bearer[TG_CACHE_KEY_HEX_LEN + 1], header[TG_CACHE_KEY_HEX_LEN + 1];
	char other[TG_CACHE_KEY_HEX_LEN + 1], as_credential[TG_CACHE_KEY_HEX_LEN + 1];

	tenant_of_key("Authorization", "Bearer secret-a", "team", bearer);
	tenant_of_key("x-api-key", "secret-a", "team", header);
	tenant_of_key("Authorization", "Bearer secret-b", "ci", other);
	tenant_of("Authorization", "Bearer secret-a", NULL, as_credential);

	ck_assert_str_eq(bearer, header);
	ck_assert_str_ne(bearer, other);
	ck_assert_str_ne(bearer, as_credential);
}
END_TEST

static Suite *
cache_key_suite(void)
{
	Suite *s = suite_create("cache-key");
	TCase *fields = tcase_create("fields");
	TCase *form = tcase_create("canonical form");
	TCase *tenants = tcase_create("tenants");

	tcase_add_loop_test(fields, key_changes_with_field, 0,
	                    sizeof(changed_requests) / sizeof(changed_requests[0]));
	tcase_add_loop_test(fields, key_ignores_presentation, 0,
	                    sizeof(equal_requests) / sizeof(equal_requests[0]));
	tcase_add_test(fields, ignore_fields_leave_key);
	tcase_add_test(fields, route_path_and_tenant_change_key);
	tcase_add_test(fields, query_changes_key);
	tcase_add_test(fields, response_filters_change_key);
	tcase_add_test(fields, varying_headers_change_key);
	suite_add_tcase(s, fields);

	tcase_add_test(form, integral_numbers_compare_equal);
	tcase_add_test(form, null_differs_from_absent);
	tcase_add_test(form, canonical_text_is_sorted_and_compact);
	tcase_add_test(form, key_is_sha256_of_canonical);
	tcase_add_loop_test(form, canonical_text_matches_jansson, 0,
	                    sizeof(dump_bodies) / sizeof(dump_bodies[0]));
	tcase_add_test(form, header_not_utf8_has_no_key);
	suite_add_tcase(s, form);

	tcase_add_test(tenants, tenant_from_credential);
	tcase_add_test(tenants, tenant_from_header);
	tcase_add_test(tenants, tenant_header_keeps_credentials_apart);
	tcase_add_test(tenants, tenant_from_gateway_key);
	suite_add_tcase(s, tenants);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(cache_key_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
