/*
 * Unit tests for cache keys (src/cache-key.c): which request differences
 * change the key and which do not, number normalisation and tenants.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

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
key_of(const char *body_text, unsigned char key[TG_CACHE_KEY_LEN])
{
	json_error_t error;
	json_t *body = json_loads(body_text, 0, &error);

	ck_assert_msg(body != NULL, "test body is not JSON: %s: %s", body_text, error.text);
	ck_assert_int_eq(tg_cache_key(body, scope("/v1/chat/completions", "chat", "t", NULL, 0), key), 0);
	json_decref(body);
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
	json_error_t error;
	json_t *body = json_loads("{\"b\": 1.0, \"a\": {\"d\": 2, \"c\": [3.5, 4.0]},"
	                          " \"user\": \"u\", \"stream\": true, \"meta\": 1}", 0, &error);
	char *ignored[] = {"meta"};
	char *text;

	ck_assert_ptr_nonnull(body);
	text = tg_cache_canonical(body, scope("/p", "r", "t", ignored, 1));
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "{\"path\":\"/p\",\"request\":{\"a\":{\"c\":[3.5,4],\"d\":2},\"b\":1},"
	                       "\"route\":\"r\",\"tenant\":\"t\",\"v\":1}");
	free(text);

	/* The body itself is left as it was. */
	ck_assert(json_is_real(json_object_get(body, "b")));
	ck_assert_ptr_nonnull(json_object_get(body, "user"));
	json_decref(body);
}
END_TEST

START_TEST(ignore_fields_leave_key)
{
	json_error_t error;
	json_t *a = json_loads("{\"model\": \"m\", \"metadata\": {\"trace\": \"1\"}}", 0, &error);
	json_t *b = json_loads("{\"model\": \"m\", \"metadata\": {\"trace\": \"2\"}}", 0, &error);
	char *ignored[] = {"metadata"};
	unsigned char ka[TG_CACHE_KEY_LEN], kb[TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(a, scope("/v1/chat/completions", "chat", "", NULL, 0), ka), 0);
	ck_assert_int_eq(tg_cache_key(b, scope("/v1/chat/completions", "chat", "", NULL, 0), kb), 0);
	ck_assert_mem_ne(ka, kb, TG_CACHE_KEY_LEN);

	ck_assert_int_eq(tg_cache_key(a, scope("/v1/chat/completions", "chat", "", ignored, 1), ka), 0);
	ck_assert_int_eq(tg_cache_key(b, scope("/v1/chat/completions", "chat", "", ignored, 1), kb), 0);
	ck_assert_mem_eq(ka, kb, TG_CACHE_KEY_LEN);
	json_decref(a);
	json_decref(b);
}
END_TEST

START_TEST(route_path_and_tenant_change_key)
{
	json_error_t error;
	json_t *body = json_loads(base_request, 0, &error);
	unsigned char k[4][TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(body, scope("/v1/chat/completions", "chat", "a", NULL, 0), k[0]), 0);
	ck_assert_int_eq(tg_cache_key(body, scope("/v1/chat/completions", "chat2", "a", NULL, 0), k[1]), 0);
	ck_assert_int_eq(tg_cache_key(body, scope("/v1/completions", "chat", "a", NULL, 0), k[2]), 0);
	ck_assert_int_eq(tg_cache_key(body, scope("/v1/chat/completions", "chat", "b", NULL, 0), k[3]), 0);
	for (int i = 0; i < 4; i++) {
		for (int j = i + 1; j < 4; j++)
			ck_assert_msg(memcmp(k[i], k[j], TG_CACHE_KEY_LEN) != 0, "keys %d and %d equal", i, j);
	}
	json_decref(body);
}
END_TEST

START_TEST(response_filters_change_key)
{
	json_error_t error;
	json_t *body = json_loads(base_request, 0, &error);
	struct tg_cache_key_scope with = *scope("/v1/chat/completions", "chat", "a", NULL, 0);
	unsigned char none[TG_CACHE_KEY_LEN], one[TG_CACHE_KEY_LEN], two[TG_CACHE_KEY_LEN];
	unsigned char again[TG_CACHE_KEY_LEN];

	ck_assert_int_eq(tg_cache_key(body, scope("/v1/chat/completions", "chat", "a", NULL, 0),
	                              none), 0);
	with.filters = "[\"{\\\"pattern\\\":\\\"a\\\"}\"]";
	ck_assert_int_eq(tg_cache_key(body, &with, one), 0);
	with.filters = "[\"{\\\"pattern\\\":\\\"b\\\"}\"]";
	ck_assert_int_eq(tg_cache_key(body, &with, two), 0);
	ck_assert_int_eq(tg_cache_key(body, &with, again), 0);

	ck_assert_mem_ne(none, one, TG_CACHE_KEY_LEN);
	ck_assert_mem_ne(one, two, TG_CACHE_KEY_LEN);
	ck_assert_mem_eq(two, again, TG_CACHE_KEY_LEN);
	json_decref(body);
}
END_TEST

/* Headers that choose a provider's API version or beta features change
 * the key by value, whatever the case of their names. Other headers do
 * not. Without them the canonical text has no "headers" member. */
START_TEST(varying_headers_change_key)
{
	json_error_t error;
	json_t *body = json_loads(base_request, 0, &error);
	struct tg_cache_key_scope with = *scope("/v1/messages", "chat", "a", NULL, 0);
	struct tg_headers h;
	unsigned char none[TG_CACHE_KEY_LEN], other[TG_CACHE_KEY_LEN];
	unsigned char beta[TG_CACHE_KEY_LEN], beta2[TG_CACHE_KEY_LEN], upper[TG_CACHE_KEY_LEN];
	char *text;

	tg_headers_init(&h);
	with.headers = &h;
	ck_assert_int_eq(tg_cache_key(body, &with, none), 0);
	text = tg_cache_canonical(body, &with);
	ck_assert_ptr_null(strstr(text, "\"headers\""));
	free(text);

	ck_assert_int_eq(tg_headers_add(&h, "X-Trace", 7, "1", 1), 0);
	ck_assert_int_eq(tg_cache_key(body, &with, other), 0);
	ck_assert_mem_eq(none, other, TG_CACHE_KEY_LEN);

	ck_assert_int_eq(tg_headers_add(&h, "anthropic-beta", 14, "tools-1", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, &with, beta), 0);
	ck_assert_mem_ne(none, beta, TG_CACHE_KEY_LEN);
	text = tg_cache_canonical(body, &with);
	ck_assert_ptr_nonnull(strstr(text, "\"headers\":{\"anthropic-beta\":\"tools-1\"}"));
	free(text);
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "Anthropic-Beta", 14, "tools-2", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, &with, beta2), 0);
	ck_assert_mem_ne(beta, beta2, TG_CACHE_KEY_LEN);
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "ANTHROPIC-BETA", 14, "tools-1", 7), 0);
	ck_assert_int_eq(tg_cache_key(body, &with, upper), 0);
	ck_assert_mem_eq(beta, upper, TG_CACHE_KEY_LEN);
	tg_headers_free(&h);
	json_decref(body);
}
END_TEST

START_TEST(key_is_sha256_of_canonical)
{
	json_error_t error;
	json_t *body = json_loads("{\"model\": \"m\"}", 0, &error);
	unsigned char key[TG_CACHE_KEY_LEN];
	char hex[TG_CACHE_KEY_HEX_LEN + 1];

	/* sha256 of {"path":"/p","request":{"model":"m"},"route":"r","tenant":"","v":1},
	 * computed with: printf '%s' '...' | sha256sum */
	ck_assert_int_eq(tg_cache_key(body, scope("/p", "r", "", NULL, 0), key), 0);
	tg_cache_key_hex(key, hex);
	ck_assert_str_eq(hex, "328d134238c2876f634c6370e9606752d84e7f4719510e2bdec227068217d37d");
	json_decref(body);
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
	ck_assert_int_eq(tg_cache_tenant(&h, tenant_header, out), 0);
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

START_TEST(tenant_from_header)
{
	char by_header[TG_CACHE_KEY_HEX_LEN + 1], by_key[TG_CACHE_KEY_HEX_LEN + 1];
	char fallback[TG_CACHE_KEY_HEX_LEN + 1];

	/* The same text as a tenant header and as a credential gives two
	 * tenants. */
	tenant_of("X-Tenant", "acme", "X-Tenant", by_header);
	tenant_of("x-api-key", "acme", "X-Tenant", by_key);
	ck_assert_str_ne(by_header, by_key);

	/* Without the configured header, the credential decides. */
	tenant_of("x-api-key", "acme", NULL, fallback);
	ck_assert_str_eq(by_key, fallback);
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
	tcase_add_test(fields, response_filters_change_key);
	tcase_add_test(fields, varying_headers_change_key);
	suite_add_tcase(s, fields);

	tcase_add_test(form, integral_numbers_compare_equal);
	tcase_add_test(form, null_differs_from_absent);
	tcase_add_test(form, canonical_text_is_sorted_and_compact);
	tcase_add_test(form, key_is_sha256_of_canonical);
	suite_add_tcase(s, form);

	tcase_add_test(tenants, tenant_from_credential);
	tcase_add_test(tenants, tenant_from_header);
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
