/*
 * Unit tests for the checks of a client request head.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "request-head.h"

/* A header list built from "Name: value" lines. */
static void
headers_from(struct tg_headers *h, const char *const *lines, size_t n)
{
	tg_headers_init(h);
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(lines[i], ':');
		const char *value = colon + 1;

		while (*value == ' ')
			value++;
		ck_assert_int_eq(tg_headers_add(h, lines[i], (size_t)(colon - lines[i]), value,
		                                strlen(value)), 0);
	}
}

static enum tg_error
check_host(const char *const *lines, size_t n, int http_minor, char *message, size_t size)
{
	struct tg_headers h;
	enum tg_error err;

	headers_from(&h, lines, n);
	message[0] = '\0';
	err = tg_request_head_check_host(&h, 1, http_minor, message, size);
	tg_headers_free(&h);
	return err;
}

START_TEST(host_once_accepted)
{
	static const char *const lines[] = {"host: api.example"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 1, message, sizeof(message)), TG_OK);
	ck_assert_int_eq(check_host(lines, 1, 0, message, sizeof(message)), TG_OK);
}
END_TEST

START_TEST(host_missing_in_http11)
{
	static const char *const lines[] = {"Content-Type: application/json"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "no Host header"));
}
END_TEST

START_TEST(host_missing_in_http10_accepted)
{
	static const char *const lines[] = {"Content-Type: application/json"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 0, message, sizeof(message)), TG_OK);
	ck_assert_str_eq(message, "");
}
END_TEST

START_TEST(host_twice_rejected)
{
	static const char *const lines[] = {"Host: a.example", "HOST: b.example"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 2, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_str_eq(message, "the request has 2 Host headers; send exactly one");
	ck_assert_int_eq(check_host(lines, 2, 0, message, sizeof(message)), TG_E_BAD_REQUEST);
}
END_TEST

static Suite *
request_head_suite(void)
{
	Suite *s = suite_create("request-head");
	TCase *host = tcase_create("host");

	tcase_add_test(host, host_once_accepted);
	tcase_add_test(host, host_missing_in_http11);
	tcase_add_test(host, host_missing_in_http10_accepted);
	tcase_add_test(host, host_twice_rejected);
	suite_add_tcase(s, host);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(request_head_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
